//! Finding and stopping the processes that live in a lab's namespaces.
//!
//! A process belongs to the lab if its network or UTS namespace is one of
//! the lab's (compared by the namespace inode, as `/proc/<pid>/ns/*` shows
//! it), or if it descends from such a process (a daemon's task that moved to
//! a namespace of its own). This needs no record of PIDs, so it works after
//! whatever started those processes was killed with SIGKILL.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use procfs::process::{Process, Stat, all_processes};
use procfs::{FromRead as _, ProcError};

use nix::{
    errno::Errno,
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// How long processes get to exit after SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for SIGKILLed processes to disappear.
const KILL_GRACE: Duration = Duration::from_secs(3);
/// Rounds of scan-and-kill, for processes forked while we were killing.
const MAX_ROUNDS: usize = 4;
const POLL: Duration = Duration::from_millis(20);
/// Bound on walking up the parent chain (pid_max is at most 4M, but real
/// chains are short; this only guards against a corrupt read).
const MAX_ANCESTRY: usize = 4096;

/// Errors while stopping a lab's processes.
#[derive(Debug, thiserror::Error)]
pub enum ProcsError {
    #[error("cannot list processes in /proc: {source}")]
    ListProcesses { source: ProcError },
    #[error("cannot signal process {pid} with {signal}: {source}")]
    Signal {
        pid: i32,
        signal: Signal,
        source: Errno,
    },
    #[error(
        "processes {pids:?} are still in the lab after SIGKILL (stuck in the kernel?); inspect them with `ps -o pid,stat,wchan,cmd -p <pid>` and run `hive lab down` again"
    )]
    Survivors { pids: Vec<i32> },
}

/// Identity of a namespace: the nsfs device and inode behind a namespace
/// file or a `/proc/<pid>/ns/<kind>` link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NsId {
    dev: u64,
    ino: u64,
}

/// The namespace a file refers to, if it is a live namespace: a mounted
/// namespace file, or a `/proc/<pid>/ns/*` link. An empty placeholder file
/// (the creator died before mounting) is not one.
pub fn ns_id(path: &Path) -> Option<NsId> {
    let nsfs = fs::metadata("/proc/self/ns/net").ok()?.dev();
    let meta = fs::metadata(path).ok()?;
    (meta.dev() == nsfs).then(|| NsId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// One process as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEntry {
    pub pid: i32,
    pub ppid: i32,
    /// Start time in clock ticks since boot: tells a process from a later
    /// one that reused its PID.
    pub start_time: u64,
    pub net: Option<NsId>,
    pub uts: Option<NsId>,
}

/// `pid`, `ppid`, state and start time from `/proc/<pid>/stat` text, read by
/// the `procfs` crate (which copes with a command name that itself contains
/// ") ").
pub fn parse_stat(stat: &str) -> Option<(i32, char, i32, u64)> {
    let stat = Stat::from_read(stat.as_bytes()).ok()?;
    Some((stat.pid, stat.state, stat.ppid, stat.starttime))
}

/// One process as `procfs` reads it; `None` if it is gone or is a zombie (a
/// zombie holds no namespace and cannot be killed any further).
fn entry_of(process: &Process) -> Option<ProcEntry> {
    let stat = process.stat().ok()?;
    if matches!(stat.state, 'Z' | 'X' | 'x') {
        return None;
    }
    let pid = process.pid();
    Some(ProcEntry {
        pid,
        ppid: stat.ppid,
        start_time: stat.starttime,
        net: ns_id(Path::new(&format!("/proc/{pid}/ns/net"))),
        uts: ns_id(Path::new(&format!("/proc/{pid}/ns/uts"))),
    })
}

/// Read one process by PID (see [`entry_of`]).
fn read_entry(pid: i32) -> Option<ProcEntry> {
    entry_of(&Process::new(pid).ok()?)
}

/// Every live process.
pub fn process_table() -> Result<Vec<ProcEntry>, ProcsError> {
    let processes = all_processes().map_err(|source| ProcsError::ListProcesses { source })?;
    Ok(processes
        .filter_map(Result::ok)
        .filter_map(|process| entry_of(&process))
        .collect())
}

/// The processes to stop: those in one of `namespaces`, plus all their
/// descendants, minus `protected` (ourselves and our ancestors: a
/// `hive lab down` run from a shell inside the lab must finish its work).
pub fn select_victims(
    table: &[ProcEntry],
    namespaces: &HashSet<NsId>,
    protected: &BTreeSet<i32>,
) -> BTreeSet<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for entry in table {
        children.entry(entry.ppid).or_default().push(entry.pid);
    }
    let in_lab = |e: &ProcEntry| {
        [e.net, e.uts]
            .into_iter()
            .flatten()
            .any(|ns| namespaces.contains(&ns))
    };
    let mut victims = BTreeSet::new();
    let mut queue: Vec<i32> = table.iter().filter(|e| in_lab(e)).map(|e| e.pid).collect();
    // Each PID enters `victims` once, so this ends after at most
    // table.len() steps.
    while let Some(pid) = queue.pop() {
        if protected.contains(&pid) || !victims.insert(pid) {
            continue;
        }
        queue.extend(children.get(&pid).into_iter().flatten());
    }
    victims
}

/// Our PID and our ancestors'.
fn protected_pids(table: &[ProcEntry]) -> BTreeSet<i32> {
    let parents: BTreeMap<i32, i32> = table.iter().map(|e| (e.pid, e.ppid)).collect();
    let mut protected = BTreeSet::new();
    let mut pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    for _ in 0..MAX_ANCESTRY {
        if pid <= 0 || !protected.insert(pid) {
            break;
        }
        pid = parents.get(&pid).copied().unwrap_or(0);
    }
    protected
}

/// Stop every process of the lab: SIGTERM, up to `grace` to exit, then
/// SIGKILL; repeated a few rounds for processes forked meanwhile. Returns
/// the PIDs that were signalled.
pub fn terminate(namespaces: &HashSet<NsId>, grace: Duration) -> Result<Vec<i32>, ProcsError> {
    if namespaces.is_empty() {
        return Ok(Vec::new());
    }
    terminate_rounds(grace, |table| {
        select_victims(table, namespaces, &protected_pids(table))
            .into_iter()
            .collect()
    })
}

/// Stop every process in the cgroup trees `dirs` (a lab's task cgroups): the same rounds as
/// [`terminate`]. Tasks live in namespaces of their own, which the lab's namespace scan does
/// not see once their daemon is gone; their cgroup always holds them.
pub fn terminate_cgroup_members(dirs: &[PathBuf], grace: Duration) -> Result<Vec<i32>, ProcsError> {
    terminate_rounds(grace, |_| {
        dirs.iter().flat_map(|d| cgroup_members(d)).collect()
    })
}

/// SIGTERM to what `select` picks from the process table, up to `grace` to exit, then
/// SIGKILL; a few rounds for processes forked meanwhile. Returns the PIDs signalled.
fn terminate_rounds(
    grace: Duration,
    select: impl Fn(&[ProcEntry]) -> BTreeSet<i32>,
) -> Result<Vec<i32>, ProcsError> {
    let mut signalled = BTreeSet::new();
    for _ in 0..MAX_ROUNDS {
        let table = process_table()?;
        let chosen = select(&table);
        let victims: Vec<(i32, u64)> = table
            .iter()
            .filter(|e| chosen.contains(&e.pid))
            .map(|e| (e.pid, e.start_time))
            .collect();
        if victims.is_empty() {
            return Ok(signalled.into_iter().collect());
        }
        tracing::debug!(?victims, "stopping lab processes");
        signal_all(&victims, Signal::SIGTERM)?;
        signalled.extend(victims.iter().map(|(pid, _)| *pid));
        let left = wait_gone(&victims, grace);
        signal_all(&left, Signal::SIGKILL)?;
        let stuck = wait_gone(&left, KILL_GRACE);
        if !stuck.is_empty() {
            return Err(ProcsError::Survivors {
                pids: stuck.into_iter().map(|(pid, _)| pid).collect(),
            });
        }
    }
    // Still forking after every round: report what is there now.
    let left = select(&process_table()?);
    if left.is_empty() {
        Ok(signalled.into_iter().collect())
    } else {
        Err(ProcsError::Survivors {
            pids: left.into_iter().collect(),
        })
    }
}

/// PIDs in the cgroup `dir` and every cgroup below it (`cgroup.procs`); none if it is gone.
fn cgroup_members(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(cgroup_members(&entry.path()));
            }
        }
    }
    pids
}

fn signal_all(victims: &[(i32, u64)], signal: Signal) -> Result<(), ProcsError> {
    for &(pid, _) in victims {
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(source) => {
                return Err(ProcsError::Signal {
                    pid,
                    signal,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Wait up to `timeout` for the processes to exit; returns those left.
fn wait_gone(victims: &[(i32, u64)], timeout: Duration) -> Vec<(i32, u64)> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<(i32, u64)> = victims
            .iter()
            .copied()
            .filter(|&(pid, start)| read_entry(pid).is_some_and(|e| e.start_time == start))
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(ino: u64) -> Option<NsId> {
        Some(NsId { dev: 4, ino })
    }

    fn entry(pid: i32, ppid: i32, net: u64) -> ProcEntry {
        ProcEntry {
            pid,
            ppid,
            start_time: 0,
            net: ns(net),
            uts: ns(1000),
        }
    }

    #[test]
    fn stat_lines_parse_even_with_odd_command_names() {
        let mut fields = vec!["S".to_owned(), "77".to_owned()];
        fields.extend((5..=21).map(|i| i.to_string()));
        fields.push("123456".to_owned()); // field 22: start time
        fields.extend((23..=52).map(|i| i.to_string()));
        let rest = fields.join(" ");
        assert_eq!(
            parse_stat(&format!("42 (sleep) {rest}")),
            Some((42, 'S', 77, 123456))
        );
        assert_eq!(
            parse_stat(&format!("42 (a) b (c)) {rest}")),
            Some((42, 'S', 77, 123456))
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("42 (x) S"), None);
    }

    #[test]
    fn victims_are_lab_processes_and_their_descendants() {
        let table = vec![
            entry(1, 0, 1),    // init, host namespace
            entry(10, 1, 1),   // test runner on the host
            entry(20, 10, 50), // `sleep` in the lab's node namespace
            entry(21, 20, 60), // its child, moved to a task namespace
            entry(22, 21, 61), // grandchild
            entry(30, 1, 1),   // unrelated host process
            entry(40, 1, 51),  // in another lab
        ];
        let lab: HashSet<NsId> = [ns(50), ns(52)].into_iter().flatten().collect();
        let victims = select_victims(&table, &lab, &BTreeSet::from([1, 10]));
        assert_eq!(victims, BTreeSet::from([20, 21, 22]));
    }

    #[test]
    fn protected_processes_are_never_victims() {
        // `hive lab down` run from a shell inside the lab.
        let table = vec![
            entry(1, 0, 1),
            entry(5, 1, 50),
            entry(6, 5, 50),
            entry(7, 5, 50),
        ];
        let lab: HashSet<NsId> = ns(50).into_iter().collect();
        let victims = select_victims(&table, &lab, &BTreeSet::from([1, 5, 6]));
        assert_eq!(victims, BTreeSet::from([7]));
    }

    #[test]
    fn uts_membership_counts_too() {
        let mut sleeper = entry(9, 1, 1);
        sleeper.uts = ns(70);
        let lab: HashSet<NsId> = ns(70).into_iter().collect();
        let victims = select_victims(&[entry(1, 0, 1), sleeper], &lab, &BTreeSet::new());
        assert_eq!(victims, BTreeSet::from([9]));
    }

    #[test]
    fn own_namespace_is_recognised_and_plain_files_are_not() {
        assert!(ns_id(Path::new("/proc/self/ns/net")).is_some());
        assert_eq!(ns_id(Path::new("/etc/hostname")), None);
        assert_eq!(ns_id(Path::new("/nonexistent")), None);
    }
}
