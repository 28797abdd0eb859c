//! Running `wrk` inside a lab namespace and reading its report.
//!
//! wrk is the load generator of the kernel baseline in
//! `../shared/reference/kernel-baseline/`, so hive's figures and the
//! kernel's are measured with the same tool and the same shape of load.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde::Serialize;

/// Errors of a wrk run.
#[derive(Debug, thiserror::Error)]
pub enum WrkError {
    #[error("could not start wrk: {0}; install it with `cargo xtask setup`")]
    Spawn(#[source] std::io::Error),
    #[error("waiting for wrk's report: {0}")]
    Wait(#[source] std::io::Error),
    #[error("wrk failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
    #[error("wrk's report has no {what} line:\n{report}")]
    Unparsable { what: &'static str, report: String },
}

/// How connections are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnMode {
    /// HTTP/1.1 keep-alive: requests/s through established flows.
    KeepAlive,
    /// `Connection: close`: one new TCP connection per request, i.e. new
    /// connections/s through the load balancer's new-flow path.
    Close,
}

/// One load run.
#[derive(Debug, Clone)]
pub struct WrkRun {
    pub url: String,
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
    pub mode: ConnMode,
}

/// What a run measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WrkResult {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    /// Connect/read/write/timeout socket errors plus non-2xx responses.
    pub errors: u64,
}

impl WrkRun {
    /// The wrk command line (without any namespace wrapper).
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            format!("-t{}", self.threads),
            format!("-c{}", self.connections),
            format!("-d{}s", self.duration.as_secs().max(1)),
            "--latency".to_string(),
        ];
        if self.mode == ConnMode::Close {
            args.extend(["-H".to_string(), "Connection: close".to_string()]);
        }
        args.push(self.url.clone());
        args
    }

    /// Start wrk through `command` (already set up to enter the client's
    /// namespace); [`finish`] waits for its report. Runs started one after
    /// the other this way load at the same time.
    pub fn spawn(&self, mut command: Command) -> Result<Child, WrkError> {
        command
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(WrkError::Spawn)
    }
}

/// Wait for a run [`WrkRun::spawn`] started and parse its report.
pub fn finish(child: Child) -> Result<WrkResult, WrkError> {
    let out = child.wait_with_output().map_err(WrkError::Wait)?;
    if !out.status.success() {
        return Err(WrkError::Failed {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// The figures of runs that loaded at the same time, as one: rates,
/// requests and errors add up; p50 is the request-weighted mean of the
/// runs' p50s and p99 the largest p99 (wrk prints percentiles, not its
/// histogram, so these two are estimates, close when the runs are alike).
pub fn merge(runs: &[WrkResult]) -> WrkResult {
    let requests: u64 = runs.iter().map(|r| r.requests).sum();
    let weighted_p50 = if requests == 0 {
        runs.iter().map(|r| r.p50_ms).fold(0.0, f64::max)
    } else {
        runs.iter()
            .map(|r| r.p50_ms * r.requests as f64)
            .sum::<f64>()
            / requests as f64
    };
    WrkResult {
        requests_per_sec: runs.iter().map(|r| r.requests_per_sec).sum(),
        p50_ms: weighted_p50,
        p99_ms: runs.iter().map(|r| r.p99_ms).fold(0.0, f64::max),
        requests,
        errors: runs.iter().map(|r| r.errors).sum(),
    }
}

/// Parse wrk's `--latency` report.
pub fn parse(report: &str) -> Result<WrkResult, WrkError> {
    let missing = |what| WrkError::Unparsable {
        what,
        report: report.to_string(),
    };
    let mut result = WrkResult::default();
    let mut rps = None;
    for line in report.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("50%") {
            result.p50_ms = duration_ms(v.trim()).ok_or_else(|| missing("50% latency"))?;
        } else if let Some(v) = line.strip_prefix("99%") {
            result.p99_ms = duration_ms(v.trim()).ok_or_else(|| missing("99% latency"))?;
        } else if line.contains(" requests in ") {
            result.requests = line
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            result.errors += v
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            result.errors += v.trim().parse::<u64>().unwrap_or(0);
        }
    }
    result.requests_per_sec = rps.ok_or_else(|| missing("Requests/sec"))?;
    Ok(result)
}

/// `123.45us`, `1.23ms`, `2.00s` → milliseconds.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        _ => return None,
    };
    Some(value * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 5s test @ http://192.168.77.1:8080/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   640.12us  300.00us   9.00ms   90.00%
    Req/Sec    12.00k     1.00k   14.00k    70.00%
  Latency Distribution
     50%  559.00us
     75%  700.00us
     90%    1.00ms
     99%    2.01ms
  120000 requests in 5.00s, 20.00MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:  23893.47
Transfer/sec:      4.00MB
";

    #[test]
    fn parses_a_latency_report() {
        let r = parse(REPORT).unwrap();
        assert_eq!(r.requests_per_sec, 23893.47);
        assert!((r.p50_ms - 0.559).abs() < 1e-9);
        assert!((r.p99_ms - 2.01).abs() < 1e-9);
        assert_eq!(r.requests, 120_000);
        assert_eq!(r.errors, 10);
    }

    #[test]
    fn runs_at_the_same_time_add_up() {
        let run = |rps: f64, p50: f64, p99: f64, requests: u64| WrkResult {
            requests_per_sec: rps,
            p50_ms: p50,
            p99_ms: p99,
            requests,
            errors: 1,
        };
        let merged = merge(&[
            run(6_000.0, 1.0, 4.0, 30_000),
            run(4_000.0, 2.0, 9.0, 10_000),
        ]);
        assert_eq!(merged.requests_per_sec, 10_000.0);
        assert_eq!(merged.requests, 40_000);
        assert_eq!(merged.errors, 2);
        assert!((merged.p50_ms - 1.25).abs() < 1e-9, "{}", merged.p50_ms);
        assert_eq!(merged.p99_ms, 9.0);
        assert_eq!(merge(&[]), WrkResult::default());
    }

    #[test]
    fn a_report_without_a_rate_is_an_error() {
        assert!(matches!(parse("nothing"), Err(WrkError::Unparsable { .. })));
    }

    #[test]
    fn close_mode_asks_for_a_new_connection_per_request() {
        let run = WrkRun {
            url: "http://x/".into(),
            threads: 2,
            connections: 32,
            duration: Duration::from_secs(5),
            mode: ConnMode::Close,
        };
        assert_eq!(
            run.args(),
            [
                "-t2",
                "-c32",
                "-d5s",
                "--latency",
                "-H",
                "Connection: close",
                "http://x/"
            ]
        );
    }
}
