//! Figures of the gossip benchmark (`cargo bench -p hive-bench --bench
//! gossip`): how long every other member takes to report a SIGKILLed node
//! down, a gracefully leaving one left, and a restarted one up again, beside
//! Swarm's defaults. The measuring itself (lab, agents, signals) is in
//! `benches/gossip.rs`; this module turns the agents' JSON lines into figures,
//! a table and `target/hive-bench/gossip.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

/// Median, min and max of a set of samples, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    pub runs: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    /// `None` without samples. The median of an even count is the mean of the
    /// two middle samples.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|s| s.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        } else {
            sorted[mid]
        };
        Some(Summary {
            runs: sorted.len(),
            median_ms: median,
            min_ms: sorted[0],
            max_ms: sorted[sorted.len() - 1],
        })
    }
}

/// One event (kill, leave, restart) and when each other member reported it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    /// The node killed, stopped or restarted.
    pub node: String,
    /// Milliseconds from the action to each observer's report.
    pub observers_ms: BTreeMap<String, f64>,
    /// Until the last observer reported it: "seen by every other member".
    pub all_ms: f64,
    /// Until the first observer reported it.
    pub first_ms: f64,
    /// The observers' failure-detector timeouts for the node just before the
    /// action (kills only): what the phi threshold meant at that moment.
    pub failure_timeouts_ms: BTreeMap<String, f64>,
}

impl Sample {
    /// From per-observer delays; `None` unless every observer reported.
    pub fn new(node: &str, observers_ms: BTreeMap<String, f64>, expected: usize) -> Option<Sample> {
        if observers_ms.len() < expected || observers_ms.is_empty() {
            return None;
        }
        let all_ms = observers_ms.values().copied().fold(f64::MIN, f64::max);
        let first_ms = observers_ms.values().copied().fold(f64::MAX, f64::min);
        Some(Sample {
            node: node.to_string(),
            observers_ms,
            all_ms,
            first_ms,
            failure_timeouts_ms: BTreeMap::new(),
        })
    }
}

/// Swarm's figures for the same events, from its defaults (not measured here).
#[derive(Debug, Clone, Serialize)]
pub struct SwarmBaseline {
    /// Dispatcher heartbeat expiry: node `DOWN` (and its tasks rescheduled).
    pub node_down_s: [f64; 2],
    /// NetworkDB (memberlist LAN defaults) declaring a silent 5-node member
    /// dead: probe, then a suspicion timeout of 4 s that starts at 6x and
    /// shrinks as other members confirm. Derived, not measured.
    pub networkdb_dead_s: [f64; 2],
    pub source: &'static str,
}

impl Default for SwarmBaseline {
    fn default() -> Self {
        SwarmBaseline {
            node_down_s: [13.5, 16.5],
            networkdb_dead_s: [5.0, 25.0],
            source: "swarm-reference.md 2.3/4.2: dispatcher heartbeat 5 s x grace 3 (±0.5 s); \
                     memberlist DefaultLANConfig probe 1 s, timeout 500 ms, suspicion mult 4 \
                     (timeout = 4 x max(1, log10 n) x 1 s, up to 6x before confirmations)",
        }
    }
}

/// Everything one gossip benchmark run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GossipReport {
    pub kernel: String,
    pub cpus: usize,
    pub nodes: usize,
    pub gossip_interval_ms: u64,
    pub phi_threshold: f64,
    /// SIGKILL -> `node_down` (reason `failed`) at every other member.
    pub kills: Vec<Sample>,
    /// Of `kills`: until every other member reported it.
    pub kill_all: Option<Summary>,
    /// Of `kills`: every single observer's delay.
    pub kill_each: Option<Summary>,
    /// SIGTERM (graceful leave) -> `node_down` (reason `left`) everywhere.
    pub leaves: Vec<Sample>,
    pub leave_all: Option<Summary>,
    /// Restart with a new generation -> `node_up` everywhere.
    pub rejoins: Vec<Sample>,
    pub rejoin_all: Option<Summary>,
    /// `node_down` reports of nodes nobody had touched, over the whole run.
    pub false_downs: usize,
    /// Seconds spent with every core busy (spinning threads) and no action,
    /// and the false downs during them: detection must not trade accuracy
    /// for speed on a loaded host.
    pub loaded_seconds: f64,
    pub loaded_false_downs: usize,
    pub swarm: SwarmBaseline,
}

impl GossipReport {
    /// Fills the summaries from the samples.
    pub fn summarise(&mut self) {
        let all = |s: &[Sample]| Summary::of(&s.iter().map(|s| s.all_ms).collect::<Vec<_>>());
        self.kill_all = all(&self.kills);
        self.leave_all = all(&self.leaves);
        self.rejoin_all = all(&self.rejoins);
        let each: Vec<f64> = self
            .kills
            .iter()
            .flat_map(|s| s.observers_ms.values().copied())
            .collect();
        self.kill_each = Summary::of(&each);
    }

    /// Writes `gossip.json` into `dir` (created if missing).
    pub fn write_json(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("gossip.json");
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&path, json)?;
        Ok(path)
    }

    /// The human table: hive's figures beside Swarm's defaults.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "GOSSIP ({} nodes, lab, gossip every {} ms, phi threshold {})",
            self.nodes, self.gossip_interval_ms, self.phi_threshold
        );
        let _ = writeln!(
            out,
            "{:<44} {:>5} {:>10} {:>10} {:>10}",
            "", "runs", "median", "min", "max"
        );
        let row = |out: &mut String, what: &str, s: &Option<Summary>| {
            let _ = match s {
                Some(s) => writeln!(
                    out,
                    "{:<44} {:>5} {:>8.0}ms {:>8.0}ms {:>8.0}ms",
                    what, s.runs, s.median_ms, s.min_ms, s.max_ms
                ),
                None => writeln!(out, "{what:<44} {:>5}", 0),
            };
        };
        row(
            &mut out,
            "SIGKILL -> down at every other member",
            &self.kill_all,
        );
        row(&mut out, "SIGKILL -> down, each observer", &self.kill_each);
        row(
            &mut out,
            "SIGTERM (leave) -> left at every member",
            &self.leave_all,
        );
        row(
            &mut out,
            "restart -> up again at every member",
            &self.rejoin_all,
        );
        let _ = writeln!(
            out,
            "{:<44} {:>5} {:>9.1}s {:>9.1}s {:>9.1}s",
            "Swarm default: node DOWN (dispatcher)",
            "-",
            self.swarm.node_down_s.iter().sum::<f64>() / 2.0,
            self.swarm.node_down_s[0],
            self.swarm.node_down_s[1]
        );
        let _ = writeln!(
            out,
            "{:<44} {:>5} {:>10} {:>9.1}s {:>9.1}s",
            "Swarm NetworkDB dead (derived)",
            "-",
            "-",
            self.swarm.networkdb_dead_s[0],
            self.swarm.networkdb_dead_s[1]
        );
        if let Some(kill) = &self.kill_all
            && kill.median_ms > 0.0
        {
            let swarm_mid = self.swarm.node_down_s.iter().sum::<f64>() / 2.0 * 1000.0;
            let _ = writeln!(
                out,
                "Swarm node-down midpoint / hive median: {:.0}x",
                swarm_mid / kill.median_ms
            );
        }
        let _ = writeln!(
            out,
            "false downs: {} over the run, {} during {:.0} s with every core busy",
            self.false_downs, self.loaded_false_downs, self.loaded_seconds
        );
        out
    }
}

/// When `observer`'s agent reported `node` with `event` (and `reason`, if
/// given) at or after `since_ns`: milliseconds after `since_ns`.
pub fn reported_after(
    lines: &[Value],
    node: &str,
    event: &str,
    reason: Option<&str>,
    since_ns: u64,
) -> Option<f64> {
    lines.iter().find_map(|line| {
        let at = line["time_ns"].as_u64()?;
        let matches = at >= since_ns
            && line["event"] == event
            && line["member"]["node_id"] == node
            && reason.is_none_or(|r| line["reason"] == r);
        matches.then(|| (at - since_ns) as f64 / 1e6)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn summary_median_of_odd_and_even_counts() {
        let s = Summary::of(&[300.0, 100.0, 200.0]).unwrap();
        assert_eq!(
            (s.runs, s.median_ms, s.min_ms, s.max_ms),
            (3, 200.0, 100.0, 300.0)
        );
        assert_eq!(Summary::of(&[1.0, 2.0, 3.0, 4.0]).unwrap().median_ms, 2.5);
        assert!(Summary::of(&[]).is_none());
    }

    fn down(observer: &str, node: &str, reason: &str, t: u64) -> Value {
        json!({"event": "node_down", "observer": observer, "reason": reason, "time_ns": t,
               "member": {"node_id": node}})
    }

    #[test]
    fn detection_is_the_first_matching_report_after_the_action() {
        let lines = vec![
            down("n1", "n5", "failed", 1_000_000), // before the kill: an earlier run
            down("n1", "n5", "left", 9_000_000),
            down("n1", "n5", "failed", 11_000_000),
        ];
        assert_eq!(
            reported_after(&lines, "n5", "node_down", Some("failed"), 5_000_000),
            Some(6.0)
        );
        assert_eq!(
            reported_after(&lines, "n5", "node_down", None, 5_000_000),
            Some(4.0)
        );
        assert_eq!(reported_after(&lines, "n4", "node_down", None, 0), None);
    }

    #[test]
    fn a_sample_needs_every_observer() {
        let per: BTreeMap<String, f64> =
            [("n1".to_string(), 500.0), ("n2".to_string(), 700.0)].into();
        let s = Sample::new("n5", per.clone(), 2).unwrap();
        assert_eq!((s.first_ms, s.all_ms), (500.0, 700.0));
        assert!(Sample::new("n5", per, 3).is_none());
    }

    #[test]
    fn table_and_json() {
        let per: BTreeMap<String, f64> = [("n1".to_string(), 600.0)].into();
        let mut report = GossipReport {
            nodes: 5,
            gossip_interval_ms: 100,
            phi_threshold: 12.0,
            kills: vec![Sample::new("n5", per, 1).unwrap()],
            ..GossipReport::default()
        };
        report.summarise();
        let table = report.table();
        assert!(
            table.contains("SIGKILL -> down at every other member"),
            "{table}"
        );
        assert!(table.contains("600ms"), "{table}");
        assert!(table.contains("/ hive median: 25x"), "{table}");
        let dir = tempfile::tempdir().unwrap();
        let path = report.write_json(dir.path()).unwrap();
        let value: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(value["kill_all"]["median_ms"], 600.0);
        assert_eq!(value["swarm"]["node_down_s"][0], 13.5);
    }
}
