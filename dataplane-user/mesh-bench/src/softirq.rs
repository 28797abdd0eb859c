//! Where a run's packet work ran (issue 21, item 3, softirq placement): the
//! machine's softirq counters before and after a run, per CPU. The lab's
//! namespaces share the host's CPUs, so these are the whole machine's,
//! neighbour and other work included; runs side by side compare.
//!
//! - `NET_RX` and `NET_TX` from `/proc/softirqs`: how many times the receive
//!   and transmit softirqs ran on each CPU;
//! - the `softirq` column of `/proc/stat`: time each CPU spent serving
//!   softirqs (clock ticks, `USER_HZ`);
//! - utime + stime of each `ksoftirqd/N` thread: the part of that work the
//!   kernel deferred to the per-CPU thread, which the scheduler weighs against
//!   every other runnable task (a CPU-bound neighbour included) instead of
//!   running it at the end of an interrupt.

use serde::Serialize;

/// Counters of the whole machine at one moment, one entry per CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub net_rx: Vec<u64>,
    pub net_tx: Vec<u64>,
    /// `/proc/stat` softirq ticks.
    pub softirq_ticks: Vec<u64>,
    /// ksoftirqd/N utime + stime ticks, by N.
    pub ksoftirqd_ticks: Vec<u64>,
}

/// What changed between two snapshots, per CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SoftirqDelta {
    pub net_rx: Vec<u64>,
    pub net_tx: Vec<u64>,
    pub softirq_ticks: Vec<u64>,
    pub ksoftirqd_ticks: Vec<u64>,
}

impl Snapshot {
    /// Read the machine's counters now; a file that cannot be read leaves
    /// its counters empty (the figures are a side note of a bench run).
    pub fn take() -> Snapshot {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let softirqs = read("/proc/softirqs");
        let stat = read("/proc/stat");
        let cpus = stat_softirq_ticks(&stat).len();
        Snapshot {
            net_rx: softirq_row(&softirqs, "NET_RX"),
            net_tx: softirq_row(&softirqs, "NET_TX"),
            softirq_ticks: stat_softirq_ticks(&stat),
            ksoftirqd_ticks: ksoftirqd_ticks(cpus),
        }
    }

    /// `later` minus `self`, per CPU (zero where a counter went backwards
    /// or is missing).
    pub fn delta(&self, later: &Snapshot) -> SoftirqDelta {
        let sub = |a: &[u64], b: &[u64]| -> Vec<u64> {
            b.iter()
                .enumerate()
                .map(|(i, b)| b.saturating_sub(a.get(i).copied().unwrap_or(*b)))
                .collect()
        };
        SoftirqDelta {
            net_rx: sub(&self.net_rx, &later.net_rx),
            net_tx: sub(&self.net_tx, &later.net_tx),
            softirq_ticks: sub(&self.softirq_ticks, &later.softirq_ticks),
            ksoftirqd_ticks: sub(&self.ksoftirqd_ticks, &later.ksoftirqd_ticks),
        }
    }
}

/// One row of `/proc/softirqs` (`NET_RX:  12  34`), per CPU.
pub fn softirq_row(text: &str, name: &str) -> Vec<u64> {
    text.lines()
        .find_map(|line| {
            let rest = line.trim_start().strip_prefix(name)?.strip_prefix(':')?;
            Some(
                rest.split_whitespace()
                    .map(|n| n.parse().unwrap_or(0))
                    .collect(),
            )
        })
        .unwrap_or_default()
}

/// The softirq column (the 7th value) of each `cpuN` line of `/proc/stat`.
pub fn stat_softirq_ticks(text: &str) -> Vec<u64> {
    text.lines()
        .filter(|line| {
            line.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(|line| {
            line.split_whitespace()
                .nth(7)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        })
        .collect()
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command may hold spaces and parentheses: fields count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Ticks of each `ksoftirqd/N`, N in `0..cpus` (zero where not found).
fn ksoftirqd_ticks(cpus: usize) -> Vec<u64> {
    let mut ticks = vec![0; cpus];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return ticks;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        let Some(cpu) = std::fs::read_to_string(path.join("comm"))
            .ok()
            .and_then(|comm| {
                comm.trim()
                    .strip_prefix("ksoftirqd/")?
                    .parse::<usize>()
                    .ok()
            })
        else {
            continue;
        };
        if let (Some(slot), Some(t)) = (
            ticks.get_mut(cpu),
            std::fs::read_to_string(path.join("stat"))
                .ok()
                .and_then(|s| stat_cpu_ticks(&s)),
        ) {
            *slot = t;
        }
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_softirqs_row_per_cpu() {
        let text = "                    CPU0       CPU1\n\
                          HI:          1          0\n\
                      NET_TX:        12         34\n\
                      NET_RX:     56789      1011\n";
        assert_eq!(softirq_row(text, "NET_RX"), [56_789, 1_011]);
        assert_eq!(softirq_row(text, "NET_TX"), [12, 34]);
        assert!(softirq_row(text, "TASKLET").is_empty());
    }

    #[test]
    fn reads_the_softirq_column_of_each_cpu() {
        let text = "cpu  10 0 20 30 0 1 99 0 0 0\n\
                    cpu0 5 0 10 15 0 1 40 0 0 0\n\
                    cpu1 5 0 10 15 0 0 59 0 0 0\n\
                    intr 1 2 3\n";
        assert_eq!(stat_softirq_ticks(text), [40, 59]);
    }

    #[test]
    fn reads_a_threads_cpu_time_past_an_odd_command_name() {
        let stat = "15 (ksoftirqd/1) S 2 0 0 0 -1 69238880 0 0 0 0 7 93 0 0 20 0 1 0 9";
        assert_eq!(stat_cpu_ticks(stat), Some(100));
        let odd = "16 (a) b) S 2 0 0 0 -1 0 0 0 0 0 1 2 0 0";
        assert_eq!(stat_cpu_ticks(odd), Some(3));
        assert_eq!(stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn a_delta_is_per_cpu_and_never_negative() {
        let before = Snapshot {
            net_rx: vec![10, 20],
            net_tx: vec![1],
            softirq_ticks: vec![5, 5],
            ksoftirqd_ticks: vec![100, 3],
        };
        let after = Snapshot {
            net_rx: vec![15, 60],
            net_tx: vec![0],
            softirq_ticks: vec![7, 9],
            ksoftirqd_ticks: vec![150, 3],
        };
        let d = before.delta(&after);
        assert_eq!(d.net_rx, [5, 40]);
        assert_eq!(d.net_tx, [0]);
        assert_eq!(d.softirq_ticks, [2, 4]);
        assert_eq!(d.ksoftirqd_ticks, [50, 0]);
    }
}
