//! cgroups of tasks: one per task under `<hierarchy>/<parent>/<task-id>`
//! (`parent` is e.g. `hive/<node-id>`), made at `prepare`, removed at
//! `remove`.
//!
//! cgroup v2 is the target: the task's directory in the unified hierarchy
//! holds the process from its first instruction (`clone3` with
//! `CLONE_INTO_CGROUP`, 5.7+), carries `memory.max` and `cpu.max`, and
//! `cgroup.kill` (5.14+) ends everything in it at once.
//!
//! Hosts in "hybrid" mode (systemd's `unified_cgroup_hierarchy=0`, and some
//! VMs and CI runners) mount cgroup2 at `/sys/fs/cgroup/unified` with the
//! memory and cpu controllers still bound to cgroup v1 hierarchies. A
//! controller can be in only one hierarchy at a time, so there hive keeps
//! the unified directory for membership and `cgroup.kill`, and puts the
//! limits in a v1 directory of the same name (`memory.limit_in_bytes`,
//! `cpu.cfs_quota_us`), as runc does. Which hierarchy carries which
//! controller is read from `/proc/self/mountinfo` and `cgroup.controllers`.

use std::{
    collections::BTreeSet,
    fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use super::spec::ResourceLimits;

/// CFS period hive uses, as Docker (`--cpu-period` default 100 ms).
pub const CPU_PERIOD_US: i64 = 100_000;

/// How long `remove` waits for a cgroup to become empty before giving up:
/// the processes were killed already, this only covers the kernel's
/// asynchronous bookkeeping (`populated` drops after the last exit).
const REMOVE_ATTEMPTS: u32 = 250;
const REMOVE_INTERVAL: Duration = Duration::from_millis(20);

/// The controllers hive sets limits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    Memory,
    Cpu,
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Cpu => "cpu",
        }
    }
}

/// Where the cgroup hierarchies are mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// The cgroup2 mount (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts).
    pub unified: Option<PathBuf>,
    /// cgroup v1 mounts carrying the memory and cpu controllers.
    pub memory_v1: Option<PathBuf>,
    pub cpu_v1: Option<PathBuf>,
}

impl CgroupMounts {
    /// Read this process's mount table.
    pub fn discover() -> Result<Self, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        fs::read_to_string(path)
            .map(|text| Self::from_mountinfo(&text))
            .map_err(|source| CgroupError::Io {
                path: path.to_path_buf(),
                action: "read",
                source,
            })
    }

    /// Parse `/proc/<pid>/mountinfo` (proc(5)): `id parent dev root mount-point
    /// options [optional...] - fstype source super-options`. The first mount
    /// of each kind wins.
    pub fn from_mountinfo(text: &str) -> Self {
        let mut mounts = Self::default();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = left.split(' ').nth(4).map(unescape_octal) else {
                continue;
            };
            let mut right = right.split(' ');
            let (Some(fstype), Some(_source), Some(options)) =
                (right.next(), right.next(), right.next())
            else {
                continue;
            };
            match fstype {
                "cgroup2" => {
                    mounts.unified.get_or_insert(mount_point);
                }
                "cgroup" => {
                    for option in options.split(',') {
                        let slot = match option {
                            "memory" => &mut mounts.memory_v1,
                            "cpu" => &mut mounts.cpu_v1,
                            _ => continue,
                        };
                        slot.get_or_insert_with(|| mount_point.clone());
                    }
                }
                _ => {}
            }
        }
        mounts
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &str) -> PathBuf {
    PathBuf::from(hive_lab::cleanup::unescape_mountinfo(field))
}

/// Where one controller's files live.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Placement {
    /// In the task's unified (v2) directory.
    Unified,
    /// In a v1 hierarchy mounted here.
    V1(PathBuf),
}

/// The cgroup layout of one executor: hierarchies, and the parent under
/// which every task's cgroup is made.
#[derive(Debug, Clone)]
pub struct Cgroups {
    mounts: CgroupMounts,
    /// Relative to each hierarchy's root, e.g. `hive/<node-id>`.
    parent: PathBuf,
    memory: Option<Placement>,
    cpu: Option<Placement>,
}

impl Cgroups {
    /// `<cgroup2 mount>/<parent>`, if the host has cgroup v2.
    pub fn unified_parent(&self) -> Option<PathBuf> {
        Some(self.mounts.unified.as_ref()?.join(&self.parent))
    }

    /// Decide, per controller, which hierarchy carries it on this host.
    pub fn new(mounts: CgroupMounts, parent: PathBuf) -> Result<Self, CgroupError> {
        if parent.is_absolute()
            || parent.as_os_str().is_empty()
            || parent
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(CgroupError::Parent { parent });
        }
        let unified_controllers: BTreeSet<String> = match &mounts.unified {
            Some(root) => {
                let path = root.join("cgroup.controllers");
                fs::read_to_string(&path)
                    .map_err(|source| CgroupError::Io {
                        path,
                        action: "read",
                        source,
                    })?
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            }
            None => BTreeSet::new(),
        };
        let place = |controller: Controller, v1: &Option<PathBuf>| {
            if unified_controllers.contains(controller.name()) {
                Some(Placement::Unified)
            } else {
                v1.clone().map(Placement::V1)
            }
        };
        Ok(Self {
            memory: place(Controller::Memory, &mounts.memory_v1),
            cpu: place(Controller::Cpu, &mounts.cpu_v1),
            mounts,
            parent,
        })
    }

    /// Make the task's cgroup directories and write its limits. On error,
    /// whatever was made is removed again.
    pub fn create(
        &self,
        task_id: &str,
        limits: ResourceLimits,
    ) -> Result<Vec<PathBuf>, CgroupError> {
        let wanted = [
            (Controller::Memory, limits.memory_bytes != 0, &self.memory),
            (Controller::Cpu, limits.nano_cpus != 0, &self.cpu),
        ];
        for (controller, needed, placement) in &wanted {
            if *needed && placement.is_none() {
                return Err(CgroupError::NoController {
                    controller: controller.name(),
                });
            }
        }
        let mut made = Vec::new();
        let result = self.create_dirs(task_id, limits, &mut made);
        if result.is_err() {
            // Best effort; the original error is the one worth reporting.
            let _ = remove(&made);
        }
        result.map(|()| made)
    }

    fn create_dirs(
        &self,
        task_id: &str,
        limits: ResourceLimits,
        made: &mut Vec<PathBuf>,
    ) -> Result<(), CgroupError> {
        if let Some(root) = &self.mounts.unified {
            let enable: Vec<&str> = [
                (Controller::Memory, &self.memory),
                (Controller::Cpu, &self.cpu),
            ]
            .into_iter()
            .filter(|(_, p)| **p == Some(Placement::Unified))
            .map(|(c, _)| c.name())
            .collect();
            let dir = make_task_dir(root, &self.parent, task_id, &enable)?;
            made.push(dir);
        }
        let mut v1_mounts: Vec<&PathBuf> = [&self.memory, &self.cpu]
            .into_iter()
            .filter_map(|p| match p {
                Some(Placement::V1(mount)) => Some(mount),
                _ => None,
            })
            .collect();
        // cpu and memory may share one v1 hierarchy.
        v1_mounts.sort();
        v1_mounts.dedup();
        for mount in v1_mounts {
            made.push(make_task_dir(mount, &self.parent, task_id, &[])?);
        }
        let dir_of = |placement: &Option<Placement>| -> Option<PathBuf> {
            match placement.as_ref()? {
                Placement::Unified => Some(
                    self.mounts
                        .unified
                        .as_ref()?
                        .join(&self.parent)
                        .join(task_id),
                ),
                Placement::V1(mount) => Some(mount.join(&self.parent).join(task_id)),
            }
        };
        if limits.memory_bytes != 0
            && let Some(dir) = dir_of(&self.memory)
        {
            let file = match self.memory {
                Some(Placement::Unified) => "memory.max",
                _ => "memory.limit_in_bytes",
            };
            write(&dir.join(file), &limits.memory_bytes.to_string())?;
        }
        if limits.nano_cpus != 0
            && let Some(dir) = dir_of(&self.cpu)
        {
            let quota = cpu_quota_us(limits.nano_cpus);
            if self.cpu == Some(Placement::Unified) {
                write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
            } else {
                // Period first: the kernel checks the quota against it.
                write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
        }
        Ok(())
    }

    /// Remove the parent directories (`hive/<node-id>`, then `hive`) where
    /// they are empty: on daemon shutdown, and in tests.
    pub fn release_parent(&self) {
        let roots = [
            &self.mounts.unified,
            &self.mounts.memory_v1,
            &self.mounts.cpu_v1,
        ];
        for root in roots.into_iter().flatten() {
            let mut dir = root.join(&self.parent);
            while dir != *root {
                // ENOTEMPTY/EBUSY: another task or daemon still uses it.
                if fs::remove_dir(&dir).is_err() {
                    break;
                }
                if !dir.pop() {
                    break;
                }
            }
        }
    }
}

/// Docker's conversion: quota = CPUs × period.
pub fn cpu_quota_us(nano_cpus: i64) -> i64 {
    nano_cpus.saturating_mul(CPU_PERIOD_US) / 1_000_000_000
}

/// Create `<root>/<parent>/<task_id>`, enabling `controllers` for the
/// children of every cgroup from the root down to `parent` (cgroup v2 only
/// lets a cgroup use the controllers its parent enabled).
fn make_task_dir(
    root: &Path,
    parent: &Path,
    task_id: &str,
    controllers: &[&str],
) -> Result<PathBuf, CgroupError> {
    let mut dir = root.to_path_buf();
    let enable = controllers
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    for component in parent.components() {
        if !enable.is_empty() {
            write(&dir.join("cgroup.subtree_control"), &enable)?;
        }
        dir.push(component);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(CgroupError::Io {
                    path: dir,
                    action: "create",
                    source,
                });
            }
        }
    }
    if !enable.is_empty() {
        write(&dir.join("cgroup.subtree_control"), &enable)?;
    }
    dir.push(task_id);
    if dir.exists() {
        // Left by a daemon that crashed; empty cgroups go away with rmdir.
        fs::remove_dir(&dir).map_err(|_| CgroupError::Leftover { path: dir.clone() })?;
    }
    fs::create_dir(&dir).map_err(|source| CgroupError::Io {
        path: dir.clone(),
        action: "create",
        source,
    })?;
    Ok(dir)
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_owned(),
        source,
    })
}

/// Whether `dir` is a cgroup v2 directory (only v2 has `cgroup.controllers`).
pub fn is_unified(dir: &Path) -> bool {
    dir.join("cgroup.controllers").exists()
}

/// Kill every process in the task's cgroups where the kernel offers
/// `cgroup.kill` (v2, 5.14+). Processes of a task are also all in its PID
/// namespace, so SIGKILL to its PID 1 reaches them too; this is the second
/// net under the first.
pub fn kill(dirs: &[PathBuf]) -> Result<(), CgroupError> {
    for dir in dirs.iter().filter(|d| is_unified(d)) {
        match fs::write(dir.join("cgroup.kill"), "1") {
            Ok(()) => {}
            // The cgroup is gone already, or the kernel predates cgroup.kill.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(CgroupError::Write {
                    path: dir.join("cgroup.kill"),
                    value: "1".to_owned(),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Remove the task's cgroup directories; missing ones are fine. Waits a
/// bounded time for each to empty (blocking: call off the async threads).
pub fn remove(dirs: &[PathBuf]) -> Result<(), CgroupError> {
    for dir in dirs {
        let mut attempt = 0;
        loop {
            match fs::remove_dir(dir) {
                Ok(()) => break,
                Err(err) if err.kind() == io::ErrorKind::NotFound => break,
                Err(err)
                    if err.raw_os_error() == Some(libc::EBUSY) && attempt < REMOVE_ATTEMPTS =>
                {
                    attempt += 1;
                    std::thread::sleep(REMOVE_INTERVAL);
                }
                Err(source) => {
                    return Err(CgroupError::Io {
                        path: dir.clone(),
                        action: "remove",
                        source,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Errors about cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error(
        "this node has no cgroup {controller} controller, so a {controller} limit cannot be enforced: enable it in cgroup v2 (cgroup.subtree_control) or mount a cgroup v1 {controller} hierarchy, or run the task without the limit"
    )]
    NoController { controller: &'static str },
    #[error(
        "cgroup {path} already exists and is in use: a task with this ID still runs from an earlier daemon; remove it first"
    )]
    Leftover { path: PathBuf },
    #[error("cgroup parent {parent:?} must be a relative path of plain names, e.g. hive/<node-id>")]
    Parent { parent: PathBuf },
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
32 24 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
33 32 0:28 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
36 32 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
40 32 0:35 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,memory
41 32 0:36 / /sys/fs/cgroup/name\\040with\\040space rw - cgroup cgroup rw,name=x
";

    #[test]
    fn hybrid_hosts_have_v1_controllers_beside_the_unified_hierarchy() {
        let mounts = CgroupMounts::from_mountinfo(HYBRID);
        assert_eq!(
            mounts,
            CgroupMounts {
                unified: Some(PathBuf::from("/sys/fs/cgroup/unified")),
                memory_v1: Some(PathBuf::from("/sys/fs/cgroup/memory")),
                cpu_v1: Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")),
            }
        );
    }

    #[test]
    fn pure_v2_hosts_have_only_the_unified_hierarchy() {
        let info = "30 1 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let mounts = CgroupMounts::from_mountinfo(info);
        assert_eq!(mounts.unified, Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!((mounts.memory_v1, mounts.cpu_v1), (None, None));
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_octal("/a\\040b\\134c"), PathBuf::from("/a b\\c"));
        assert_eq!(unescape_octal("/plain\\"), PathBuf::from("/plain\\"));
    }

    #[test]
    fn cpu_limits_become_cfs_quotas_as_in_docker() {
        assert_eq!(cpu_quota_us(500_000_000), 50_000);
        assert_eq!(cpu_quota_us(1_500_000_000), 150_000);
        assert_eq!(cpu_quota_us(10_000_000), 1_000);
    }

    #[test]
    fn the_parent_must_stay_inside_the_hierarchy() {
        for bad in ["", "/abs", "../up", "hive/../x"] {
            assert!(
                Cgroups::new(CgroupMounts::default(), PathBuf::from(bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_limit_without_its_controller_is_a_clear_error() {
        let cgroups = Cgroups::new(CgroupMounts::default(), PathBuf::from("hive/n1"))
            .expect("no hierarchies at all is a valid layout");
        let err = cgroups
            .create(
                "t1",
                ResourceLimits {
                    memory_bytes: 64 << 20,
                    nano_cpus: 0,
                },
            )
            .expect_err("no memory controller");
        assert!(
            err.to_string().contains("memory limit cannot be enforced"),
            "{err}"
        );
        assert_eq!(
            cgroups
                .create("t1", ResourceLimits::default())
                .expect("no limits"),
            Vec::<PathBuf>::new()
        );
    }
}
