//! Removing a lab completely, from whatever state it is in.
//!
//! Nothing here trusts the state file. The lab's resources are found by
//! name and by the kernel's own records:
//! - network namespaces: `/run/netns/hive-<lab>-{n<i>,client,underlay}`;
//! - UTS namespaces and any other mount: mount points under
//!   `/run/hive/lab/<lab>/` in `/proc/self/mountinfo`;
//! - processes: those whose `/proc/<pid>/ns/{net,uts}` is one of the above,
//!   and their descendants;
//! - BPF pins: `/sys/fs/bpf/hive/lab-<lab>/`.
//!
//! Links need no step of their own: a veth dies with either of its
//! namespaces, and the bridge with the underlay namespace.

use std::{
    collections::HashSet,
    fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use nix::{errno::Errno, mount::MntFlags};

use super::{
    naming,
    procs::{self, NsId},
};
use hive_dataplane::netns;

/// How many stacked mounts to peel off one mount point.
const MAX_UNMOUNTS: usize = 8;

/// Errors while removing a lab. Removal carries on past each problem and
/// reports them all at the end.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("lab {lab:?} was only partly removed: {}; fix the cause and run `hive lab down --name {lab}` again", problems.join("; "))]
    Incomplete { lab: String, problems: Vec<String> },
}

/// What `down` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownReport {
    pub lab: String,
    /// PIDs that were sent SIGTERM (and SIGKILL if they lingered).
    pub killed: Vec<i32>,
    /// Network namespaces removed from `/run/netns`.
    pub namespaces: Vec<String>,
    /// Other mounts removed under the lab's state dir (UTS namespaces).
    pub mounts: Vec<PathBuf>,
    /// The BPF pin dir, if there was one.
    pub pin_dir: Option<PathBuf>,
    /// Cgroup directories of the lab's tasks (one per hierarchy).
    pub cgroups: Vec<PathBuf>,
    /// The state dir, if there was one.
    pub state_dir: Option<PathBuf>,
}

impl DownReport {
    /// Whether there was anything of the lab at all.
    pub fn found_anything(&self) -> bool {
        !(self.killed.is_empty()
            && self.namespaces.is_empty()
            && self.mounts.is_empty()
            && self.pin_dir.is_none()
            && self.cgroups.is_empty()
            && self.state_dir.is_none())
    }
}

/// Names of the network namespaces in `/run/netns` that belong to `lab`.
pub fn lab_netns_names(lab: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(netns::NETNS_RUN_DIR)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| naming::lab_of_netns(name) == Some(lab))
        .collect();
    names.sort();
    names
}

/// Mount points at or below `dir` in a mountinfo text, deepest first so
/// they can be unmounted in order.
pub fn mount_points_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    deepest_first(
        mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(|field| PathBuf::from(unescape_mountinfo(field)))
            .filter(|point| point.starts_with(dir)),
    )
}

/// Both lists of mount points as one, deepest first (as
/// [`mount_points_under`] orders them).
pub fn merge_deepest_first(a: Vec<PathBuf>, b: Vec<PathBuf>) -> Vec<PathBuf> {
    deepest_first(a.into_iter().chain(b))
}

/// Mount points without repeats (shared propagation can show the same path
/// more than once), deepest first so they can be unmounted in order.
fn deepest_first(points: impl Iterator<Item = PathBuf>) -> Vec<PathBuf> {
    let unique: std::collections::BTreeSet<PathBuf> = points.collect();
    let mut points: Vec<PathBuf> = unique.into_iter().collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points
}

/// Mount points of cgroup hierarchies (v1 and v2) in a mountinfo text.
pub fn cgroup_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fstype = after.split(' ').next()?;
            let point = before.split(' ').nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(unescape_mountinfo(point)))
        })
        .collect()
}

/// Removes a cgroup directory and its children, deepest first (`rmdir` is how a cgroup is
/// removed; its control files go with it).
fn remove_cgroup_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    match fs::remove_dir(dir) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
pub fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Remove everything of lab `lab`. The name must be valid. The caller holds
/// the lab lock.
pub fn remove_lab(lab: &str, grace: Duration) -> Result<DownReport, CleanupError> {
    let mut report = DownReport {
        lab: lab.to_owned(),
        ..DownReport::default()
    };
    let mut problems = Vec::new();
    let lab_dir = naming::lab_dir(lab);

    let netns_names = lab_netns_names(lab);
    let netns_paths: Vec<PathBuf> = netns_names.iter().map(|n| netns::netns_path(n)).collect();
    let lab_mounts = match fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => mount_points_under(&text, &lab_dir),
        Err(err) => {
            problems.push(format!("cannot read /proc/self/mountinfo: {err}"));
            Vec::new()
        }
    };

    // 1. Processes first, so nothing re-creates pins or holds namespaces.
    let namespaces: HashSet<NsId> = netns_paths
        .iter()
        .chain(&lab_mounts)
        .filter_map(|path| procs::ns_id(path))
        .collect();
    match procs::terminate(&namespaces, grace) {
        Ok(killed) => report.killed = killed,
        Err(err) => problems.push(err.to_string()),
    }

    // 1b. Tasks: in namespaces of their own, but always in the lab's cgroups.
    let task_cgroups: Vec<PathBuf> = fs::read_to_string("/proc/self/mountinfo")
        .map(|text| {
            cgroup_mounts(&text)
                .into_iter()
                .map(|root| root.join(naming::cgroup_lab_parent(lab)))
                .filter(|dir| dir.exists())
                .collect()
        })
        .unwrap_or_default();
    match procs::terminate_cgroup_members(&task_cgroups, grace) {
        Ok(killed) => report.killed.extend(killed),
        Err(err) => problems.push(err.to_string()),
    }

    // 2. BPF pins.
    let pin_dir = naming::bpf_lab_dir(lab);
    match fs::remove_dir_all(&pin_dir) {
        Ok(()) => report.pin_dir = Some(pin_dir.clone()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => problems.push(format!("cannot remove {}: {err}", pin_dir.display())),
    }
    // `/sys/fs/bpf/hive` itself, if no other lab or daemon pins there
    // (ENOTEMPTY otherwise), as for the cgroup parent below.
    if let Some(root) = pin_dir.parent() {
        let _ = fs::remove_dir(root);
    }

    // 2b. Cgroups of the lab's tasks: empty now that their processes are gone.
    if let Ok(text) = fs::read_to_string("/proc/self/mountinfo") {
        for root in cgroup_mounts(&text) {
            let dir = root.join(naming::cgroup_lab_parent(lab));
            if !dir.exists() {
                continue;
            }
            match remove_cgroup_tree(&dir) {
                Ok(()) => report.cgroups.push(dir),
                Err(err) => problems.push(format!("cannot remove cgroup {}: {err}", dir.display())),
            }
            // `hive/` itself, if no other lab or daemon uses it (ENOTEMPTY otherwise).
            let _ = fs::remove_dir(root.join("hive"));
        }
    }

    // 3. Namespaces: unmount and unlink; the kernel frees them, and their
    //    links, once the last reference is gone.
    for (name, path) in netns_names.iter().zip(&netns_paths) {
        match netns::remove(path) {
            Ok(_) => report.namespaces.push(name.clone()),
            Err(err) => problems.push(err.to_string()),
        }
    }
    // Mounts made while the processes were being stopped (a daemon that was
    // creating a task's namespace) were not in the first scan: look again,
    // now that nothing is left to make more.
    let lab_mounts = match fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => merge_deepest_first(lab_mounts, mount_points_under(&text, &lab_dir)),
        Err(_) => lab_mounts,
    };
    for point in &lab_mounts {
        match detach(point) {
            Ok(()) => report.mounts.push(point.clone()),
            Err(err) => problems.push(format!("cannot unmount {}: {err}", point.display())),
        }
    }

    // 4. The state dir, last: while it exists, `hive lab ls` still shows
    //    the lab, so an interrupted `down` is visible and can be repeated.
    match fs::remove_dir_all(&lab_dir) {
        Ok(()) => report.state_dir = Some(lab_dir),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => problems.push(format!("cannot remove {}: {err}", lab_dir.display())),
    }

    if problems.is_empty() {
        Ok(report)
    } else {
        Err(CleanupError::Incomplete {
            lab: lab.to_owned(),
            problems,
        })
    }
}

/// Lazily unmount everything mounted on `point`.
fn detach(point: &Path) -> Result<(), Errno> {
    for _ in 0..MAX_UNMOUNTS {
        match nix::mount::umount2(point, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(Errno::EINVAL | Errno::ENOENT) => return Ok(()),
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw
30 22 0:21 /netns /run/netns rw shared:12 - tmpfs tmpfs rw
31 30 0:4 net:[4026532300] /run/netns/hive-x-n1 rw shared:5 - nsfs nsfs rw
40 22 0:21 /hive/lab /run/hive/lab rw shared:13 - tmpfs tmpfs rw
41 40 0:4 uts:[4026532301] /run/hive/lab/x/n1/uts rw shared:5 - nsfs nsfs rw
42 40 0:4 uts:[4026532302] /run/hive/lab/x/client/uts rw shared:5 - nsfs nsfs rw
43 40 0:4 uts:[4026532303] /run/hive/lab/xy/n1/uts rw shared:5 - nsfs nsfs rw
44 40 0:21 / /run/hive/lab/x/odd\\040name rw - tmpfs tmpfs rw
45 40 0:21 / /run/hive/lab/x/n1/data/deep rw - tmpfs tmpfs rw
46 22 0:4 uts:[4026532301] /run/hive/lab/x/n1/uts rw shared:5 - nsfs nsfs rw
";

    #[test]
    fn finds_only_this_labs_mounts_deepest_first() {
        let points = mount_points_under(MOUNTINFO, Path::new("/run/hive/lab/x"));
        assert_eq!(
            points,
            vec![
                PathBuf::from("/run/hive/lab/x/n1/data/deep"),
                PathBuf::from("/run/hive/lab/x/client/uts"),
                PathBuf::from("/run/hive/lab/x/n1/uts"),
                PathBuf::from("/run/hive/lab/x/odd name"),
            ]
        );
    }

    #[test]
    fn a_mount_made_after_the_first_scan_is_added_once() {
        let first = mount_points_under(MOUNTINFO, Path::new("/run/hive/lab/x"));
        let later = vec![
            PathBuf::from("/run/hive/lab/x/n1/uts"),
            PathBuf::from("/run/hive/lab/x/n1/run/netns/task"),
        ];
        assert_eq!(
            merge_deepest_first(first, later),
            vec![
                PathBuf::from("/run/hive/lab/x/n1/run/netns/task"),
                PathBuf::from("/run/hive/lab/x/n1/data/deep"),
                PathBuf::from("/run/hive/lab/x/client/uts"),
                PathBuf::from("/run/hive/lab/x/n1/uts"),
                PathBuf::from("/run/hive/lab/x/odd name"),
            ]
        );
    }

    #[test]
    fn cgroup_hierarchies_are_found_in_mountinfo() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/unified rw,relatime shared:13 - cgroup2 cgroup2 rw
32 25 0:28 / /sys/fs/bpf rw,relatime shared:14 - bpf bpf rw
33 25 0:29 / /run/my\\040dir rw - tmpfs tmpfs rw";
        assert_eq!(
            cgroup_mounts(mountinfo),
            vec![
                PathBuf::from("/sys/fs/cgroup/memory"),
                PathBuf::from("/sys/fs/cgroup/unified")
            ]
        );
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape_mountinfo("trailing\\04"), "trailing\\04");
        assert_eq!(unescape_mountinfo("plain"), "plain");
    }

    #[test]
    fn an_empty_report_found_nothing() {
        assert!(!DownReport::default().found_anything());
        let report = DownReport {
            namespaces: vec!["hive-x-n1".to_owned()],
            ..DownReport::default()
        };
        assert!(report.found_anything());
    }
}
