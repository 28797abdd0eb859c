//! The benchmark's figures: a printed table with hive/kernel ratios, and
//! JSON under `target/hive-bench/`.

use std::{fmt::Write as _, path::Path, time::Duration};

use serde::Serialize;

use crate::wrk::WrkResult;

/// Load through one path: keep-alive requests and new connections.
#[derive(Debug, Clone, Serialize)]
pub struct PathFigures {
    /// `hive`, `iptables`, `nftables`, or `direct` (no mesh at all).
    pub path: String,
    /// Services installed, the measured one included; 0 for `direct`.
    pub services: u32,
    pub keep_alive: WrkResult,
    pub new_connections: WrkResult,
    /// Time to add one more service at this size, in milliseconds.
    pub add_one_service_ms: Option<f64>,
}

/// One open-loop run (`crate::open_loop`): new connections offered at a
/// fixed rate, the same on every path at one size.
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoopFigures {
    /// As [`PathFigures::path`].
    pub path: String,
    /// Services installed; for `direct`, the size whose rate it was offered.
    pub services: u32,
    pub result: crate::open_loop::OpenLoopResult,
    /// Where the machine's softirq work ran during the run, per CPU.
    pub softirq: crate::softirq::SoftirqDelta,
}

/// The open-loop runs of one path and size over the rounds: medians, and
/// the range of the latency figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OpenLoopRow {
    pub path: String,
    pub services: u32,
    pub rounds: usize,
    pub offered_per_sec: f64,
    pub offered_range: (f64, f64),
    pub completed_per_sec: f64,
    pub p50_ms: f64,
    pub p50_range: (f64, f64),
    pub p99_ms: f64,
    pub p99_range: (f64, f64),
    pub errors: u64,
    pub late_starts: u64,
    /// Median per run of the machine's NET_RX softirq runs, all CPUs.
    pub net_rx: f64,
    /// Median per run of the machine's softirq ticks, all CPUs.
    pub softirq_ticks: f64,
    /// Median per run of the ksoftirqd threads' ticks, all CPUs.
    pub ksoftirqd_ticks: f64,
}

/// One [`OpenLoopRow`] per path and size, in the order first measured.
pub fn open_loop_medians(runs: &[OpenLoopFigures]) -> Vec<OpenLoopRow> {
    let mut rows: Vec<OpenLoopRow> = Vec::new();
    for run in runs {
        if rows
            .iter()
            .any(|r| r.path == run.path && r.services == run.services)
        {
            continue;
        }
        let same: Vec<&OpenLoopFigures> = runs
            .iter()
            .filter(|r| r.path == run.path && r.services == run.services)
            .collect();
        let values =
            |f: fn(&OpenLoopFigures) -> f64| -> Vec<f64> { same.iter().map(|r| f(r)).collect() };
        let range = |v: &[f64]| {
            (
                v.iter().copied().fold(f64::INFINITY, f64::min),
                v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            )
        };
        let sum = |v: &[u64]| v.iter().sum::<u64>() as f64;
        let offered = values(|r| r.result.offered_per_sec);
        let p50 = values(|r| r.result.p50_ms);
        let p99 = values(|r| r.result.p99_ms);
        rows.push(OpenLoopRow {
            path: run.path.clone(),
            services: run.services,
            rounds: same.len(),
            offered_range: range(&offered),
            offered_per_sec: median_f64(offered),
            completed_per_sec: median_f64(values(|r| r.result.completed_per_sec)),
            p50_range: range(&p50),
            p50_ms: median_f64(p50),
            p99_range: range(&p99),
            p99_ms: median_f64(p99),
            errors: same.iter().map(|r| r.result.errors).sum(),
            late_starts: same.iter().map(|r| r.result.late_starts).sum(),
            net_rx: median_f64(same.iter().map(|r| sum(&r.softirq.net_rx)).collect()),
            softirq_ticks: median_f64(same.iter().map(|r| sum(&r.softirq.softirq_ticks)).collect()),
            ksoftirqd_ticks: median_f64(
                same.iter()
                    .map(|r| sum(&r.softirq.ksoftirqd_ticks))
                    .collect(),
            ),
        });
    }
    rows
}

/// The open-loop table: one row per path and size, p99 against iptables'
/// at the same size and rate.
pub fn open_loop_table(rows: &[OpenLoopRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<11} {:>8} {:>9} {:>9} {:>18} {:>20} {:>8} {:>7} {:>7} {:>8} {:>9}",
        "OPEN LOOP",
        "SERVICES",
        "offered/s",
        "done/s",
        "p50 ms (range)",
        "p99 ms (range)",
        "p99÷ipt",
        "errors",
        "late",
        "sirq tck",
        "ksirqd tck"
    );
    for r in rows {
        let base = rows
            .iter()
            .find(|b| b.path == IPTABLES && b.services == r.services)
            .map(|b| b.p99_ms)
            .filter(|b| *b > 0.0);
        let _ = writeln!(
            out,
            "{:<11} {:>8} {:>9.0} {:>9.0} {:>18} {:>20} {:>8} {:>7} {:>7} {:>8.0} {:>9.0}",
            r.path,
            r.services,
            r.offered_per_sec,
            r.completed_per_sec,
            format!(
                "{:.2} ({:.2}–{:.2})",
                r.p50_ms, r.p50_range.0, r.p50_range.1
            ),
            format!(
                "{:.2} ({:.2}–{:.2})",
                r.p99_ms, r.p99_range.0, r.p99_range.1
            ),
            base.map_or("-".to_string(), |b| format!("{:.2}", r.p99_ms / b)),
            r.errors,
            r.late_starts,
            r.softirq_ticks,
            r.ksoftirqd_ticks,
        );
    }
    out.push_str(
        "(open loop: connections started on a fixed schedule, the same rate on every path at          one size; latency from the scheduled start; direct = no mesh at that size's rate;          sirq/ksirqd tck: the machine's softirq and ksoftirqd clock ticks during the run)\n",
    );
    out
}

/// ns/packet of one program path under `BPF_PROG_RUN`.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramCost {
    pub path: String,
    pub ns_per_packet: f64,
    /// Ratio to the trivial XDP floor program measured in the same run.
    pub ratio_to_floor: f64,
}

/// Everything one `hive mesh bench` run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub kernel: String,
    pub cpus: usize,
    pub wrk: String,
    /// The CPU-bound neighbour's share during the run (`--neighbour`), if any.
    pub neighbour_percent: Option<u32>,
    pub program_costs: Vec<ProgramCost>,
    /// What tracing costs a packet (`crate::trace_cost`).
    pub trace_costs: Vec<crate::trace_cost::TraceCost>,
    /// Rounds of load measured (every path at every size each round).
    pub rounds: u32,
    /// Per path and size, the median of each figure over the rounds.
    pub paths: Vec<PathFigures>,
    /// Every measurement of every round, in the order taken.
    pub runs: Vec<PathFigures>,
    /// Bulk throughput per path and direction, the median over the rounds
    /// (`--bulk`; empty without).
    pub bulk_paths: Vec<crate::bulk::BulkRow>,
    /// Every bulk run, in the order taken.
    pub bulk: Vec<crate::bulk::BulkFigures>,
    /// `--open-loop PERCENT`: the share of each size's slowest closed-loop
    /// rate every path was offered in the open-loop runs.
    pub open_loop_percent: Option<u32>,
    /// Open-loop figures per path and size, over the rounds (empty without).
    pub open_loop_paths: Vec<OpenLoopRow>,
    /// Every open-loop run, in the order taken.
    pub open_loop: Vec<OpenLoopFigures>,
}

impl Report {
    /// Write `mesh.json` into `dir` (created if missing).
    pub fn write_json(&self, dir: &Path) -> std::io::Result<std::path::PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("mesh.json");
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&path, json)?;
        Ok(path)
    }

    /// The human table: one row per path and size, ratios against iptables
    /// at the same size.
    pub fn table(&self) -> String {
        let mut out = String::new();
        if !self.program_costs.is_empty() {
            let _ = writeln!(
                out,
                "{:<34} {:>10} {:>10}",
                "PROGRAM PATH (BPF_PROG_RUN)", "ns/pkt", "x floor"
            );
            for c in &self.program_costs {
                let _ = writeln!(
                    out,
                    "{:<34} {:>10.1} {:>10.2}",
                    c.path, c.ns_per_packet, c.ratio_to_floor
                );
            }
            out.push('\n');
        }
        if !self.trace_costs.is_empty() {
            out.push_str(&crate::trace_cost::table(&self.trace_costs));
            out.push('\n');
        }
        if !self.bulk_paths.is_empty() {
            out.push_str(&crate::bulk::table(&self.bulk_paths));
            out.push('\n');
        }
        if !self.open_loop_paths.is_empty() {
            out.push_str(&open_loop_table(&self.open_loop_paths));
            out.push('\n');
        }
        if self.paths.is_empty() {
            return out;
        }
        let _ = writeln!(
            out,
            "{:<12} {:>8} {:>11} {:>8} {:>8} {:>11} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "PATH",
            "SERVICES",
            "KA req/s",
            "p50 ms",
            "p99 ms",
            "new conn/s",
            "p50 ms",
            "p99 ms",
            "add ms",
            "conn/s÷dir",
            "conn/s÷ipt",
            "p99÷ipt"
        );
        let no_mesh = self
            .paths
            .iter()
            .find(|b| b.path == crate::kernel_runs::DIRECT)
            .map(|b| b.new_connections.requests_per_sec);
        let smallest = self
            .paths
            .iter()
            .filter(|b| b.path == IPTABLES)
            .min_by_key(|b| b.services);
        for p in &self.paths {
            // The no-mesh row has no size: it is held against the smallest.
            let base = if p.services == 0 {
                smallest
            } else {
                self.paths
                    .iter()
                    .find(|b| b.path == IPTABLES && b.services == p.services)
            };
            let services = if p.services == 0 {
                "-".to_string()
            } else {
                p.services.to_string()
            };
            let ratio = |a: f64, b: Option<f64>| match b {
                Some(b) if b > 0.0 => format!("{:.2}", a / b),
                _ => "-".to_string(),
            };
            let add = p
                .add_one_service_ms
                .map_or("-".to_string(), |ms| format!("{ms:.3}"));
            let _ = writeln!(
                out,
                "{:<12} {:>8} {:>11.0} {:>8.3} {:>8.3} {:>11.0} {:>8.3} {:>8.3} {:>9} {:>9} {:>9} {:>9}",
                p.path,
                services,
                p.keep_alive.requests_per_sec,
                p.keep_alive.p50_ms,
                p.keep_alive.p99_ms,
                p.new_connections.requests_per_sec,
                p.new_connections.p50_ms,
                p.new_connections.p99_ms,
                add,
                ratio(p.new_connections.requests_per_sec, no_mesh),
                ratio(
                    p.new_connections.requests_per_sec,
                    base.map(|b| b.new_connections.requests_per_sec)
                ),
                ratio(
                    p.new_connections.p99_ms,
                    base.map(|b| b.new_connections.p99_ms)
                ),
            );
        }
        if self.rounds > 1 {
            let _ = writeln!(
                out,
                "(each figure: the median over {} rounds; every round's in the JSON, `runs`)",
                self.rounds
            );
        }
        if self.paths.iter().any(|p| p.path.starts_with("floor")) {
            out.push_str(
                "(floor*: the same backends behind n1's address, n1 forwarding every frame by \
                 its MACs alone (floor-tc, floor-min-tc: from tc, else XDP), the backend's node \
                 routing it into the task (floor, floor-tc) or handing it in from tc \
                 (floor-min*): what n1's hop costs with no mesh work; floor-vxlan: floor-min \
                 through hive's VXLAN tunnel, XDP on both nodes, no other work; docs/dsr.md)\n",
            );
        }
        if self.paths.iter().any(|p| p.services == 0) {
            out.push_str(
                "(direct: no mesh, each backend loaded straight from client by its own wrk with \
                 half the threads and connections: the ceiling of every path; its p50 is the \
                 runs' request-weighted mean, its p99 the larger; ratios against iptables at \
                 the smallest size; conn/s÷dir: new connections against it)\n",
            );
        }
        out
    }
}

/// The name of the kernel path's iptables rows, which the ratios divide by.
const IPTABLES: &str = "iptables";

/// One row per path and size, in the order first measured: each figure
/// the median of that figure over the rounds (each on its own, so a p99 is
/// the median p99, not the p99 of the median-rate run). Counts add up.
pub fn medians(runs: &[PathFigures]) -> Vec<PathFigures> {
    let mut rows: Vec<PathFigures> = Vec::new();
    for run in runs {
        if rows
            .iter()
            .any(|r| r.path == run.path && r.services == run.services)
        {
            continue;
        }
        let same: Vec<&PathFigures> = runs
            .iter()
            .filter(|r| r.path == run.path && r.services == run.services)
            .collect();
        let add: Vec<f64> = same.iter().filter_map(|r| r.add_one_service_ms).collect();
        rows.push(PathFigures {
            path: run.path.clone(),
            services: run.services,
            keep_alive: median_result(same.iter().map(|r| &r.keep_alive)),
            new_connections: median_result(same.iter().map(|r| &r.new_connections)),
            add_one_service_ms: (!add.is_empty()).then(|| median_f64(add)),
        });
    }
    rows
}

fn median_result<'a>(results: impl Iterator<Item = &'a WrkResult> + Clone) -> WrkResult {
    let of = |field: fn(&WrkResult) -> f64| median_f64(results.clone().map(field).collect());
    WrkResult {
        requests_per_sec: of(|r| r.requests_per_sec),
        p50_ms: of(|r| r.p50_ms),
        p99_ms: of(|r| r.p99_ms),
        requests: results.clone().map(|r| r.requests).sum(),
        errors: results.map(|r| r.errors).sum(),
    }
}

fn median_f64(values: Vec<f64>) -> f64 {
    median_by(values, f64::total_cmp)
}

/// The median of `samples` (the upper one of an even count); zero for none.
pub fn median(samples: Vec<Duration>) -> Duration {
    median_by(samples, Ord::cmp)
}

/// The median of `values` in the order `cmp` gives (the upper one of an
/// even count); the default for none.
fn median_by<T: Copy + Default>(
    mut values: Vec<T>,
    cmp: impl FnMut(&T, &T) -> std::cmp::Ordering,
) -> T {
    values.sort_unstable_by(cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(path: &str, conn_per_sec: f64, p99: f64) -> PathFigures {
        PathFigures {
            path: path.into(),
            services: 1,
            keep_alive: WrkResult::default(),
            new_connections: WrkResult {
                requests_per_sec: conn_per_sec,
                p99_ms: p99,
                ..WrkResult::default()
            },
            add_one_service_ms: Some(0.25),
        }
    }

    #[test]
    fn table_shows_ratios_against_iptables_at_the_same_size() {
        let report = Report {
            paths: vec![
                figures("iptables", 20_000.0, 2.0),
                figures("hive", 40_000.0, 1.0),
            ],
            ..Report::default()
        };
        let table = report.table();
        let hive_row = table.lines().find(|l| l.starts_with("hive")).unwrap();
        assert!(hive_row.contains(" 2.00 "), "{hive_row}");
        assert!(hive_row.trim_end().ends_with("0.50"), "{hive_row}");
    }

    #[test]
    fn the_no_mesh_row_is_held_against_iptables_at_the_smallest_size() {
        let mut direct = figures("direct", 30_000.0, 1.5);
        direct.services = 0;
        direct.add_one_service_ms = None;
        let mut large = figures("iptables", 5_000.0, 9.0);
        large.services = 10_000;
        let report = Report {
            paths: vec![direct, large, figures("iptables", 20_000.0, 3.0)],
            ..Report::default()
        };
        let table = report.table();
        let row = table.lines().find(|l| l.starts_with("direct")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1], "-", "{row}");
        assert_eq!(
            &cells[cells.len() - 4..],
            ["-", "1.00", "1.50", "0.50"],
            "{row}"
        );
        assert!(table.contains("(direct: no mesh"), "{table}");
    }

    #[test]
    fn rounds_become_one_row_per_path_and_size_of_per_figure_medians() {
        let round = |rate: f64, p99: f64, add: f64| {
            let mut f = figures("hive", rate, p99);
            f.add_one_service_ms = Some(add);
            f.new_connections.requests = 10;
            f
        };
        let runs = vec![
            round(9_000.0, 9.0, 0.3),
            figures("iptables", 7_000.0, 5.0),
            round(12_000.0, 4.0, 0.1),
            round(10_000.0, 7.0, 0.2),
        ];
        let rows = medians(&runs);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].path.as_str(), rows[1].path.as_str()),
            ("hive", "iptables")
        );
        let hive = &rows[0];
        assert_eq!(hive.new_connections.requests_per_sec, 10_000.0);
        // The median p99 (7.0), not the p99 of the median-rate round.
        assert_eq!(hive.new_connections.p99_ms, 7.0);
        assert_eq!(hive.new_connections.requests, 30);
        assert_eq!(hive.add_one_service_ms, Some(0.2));
        assert_eq!(rows[1].new_connections.requests_per_sec, 7_000.0);
    }

    #[test]
    fn open_loop_rounds_become_medians_with_ranges_against_iptables() {
        let run = |path: &str, p99: f64, ticks: u64| OpenLoopFigures {
            path: path.into(),
            services: 1_000,
            result: crate::open_loop::OpenLoopResult {
                offered_per_sec: 2_000.0,
                p50_ms: p99 / 4.0,
                p99_ms: p99,
                errors: 1,
                ..Default::default()
            },
            softirq: crate::softirq::SoftirqDelta {
                softirq_ticks: vec![ticks, ticks],
                ..Default::default()
            },
        };
        let runs = vec![
            run("hive", 8.0, 10),
            run("iptables", 10.0, 30),
            run("hive", 4.0, 20),
            run("hive", 6.0, 40),
        ];
        let rows = open_loop_medians(&runs);
        assert_eq!(rows.len(), 2);
        let hive = &rows[0];
        assert_eq!((hive.path.as_str(), hive.rounds), ("hive", 3));
        assert_eq!(hive.p99_ms, 6.0);
        assert_eq!(hive.p99_range, (4.0, 8.0));
        assert_eq!(hive.p50_ms, 1.5);
        assert_eq!(hive.errors, 3);
        // Both CPUs' ticks per run (20, 40, 80): the median run's.
        assert_eq!(hive.softirq_ticks, 40.0);
        let table = open_loop_table(&rows);
        let row = table.lines().find(|l| l.starts_with("hive")).unwrap();
        assert!(row.contains(" 0.60 "), "{row}");
    }

    #[test]
    fn json_round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let report = Report {
            paths: vec![figures("hive", 1.0, 1.0)],
            ..Report::default()
        };
        let path = report.write_json(dir.path()).unwrap();
        let value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(value["paths"][0]["path"], "hive");
    }

    #[test]
    fn median_takes_the_middle_sample() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        assert_eq!(median(ms(&[9, 1, 5, 3, 7])), Duration::from_millis(5));
        assert_eq!(median(ms(&[4, 2])), Duration::from_millis(4));
        assert_eq!(median(Vec::new()), Duration::ZERO);
    }
}
