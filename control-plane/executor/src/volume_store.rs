//! This node's named local volumes (`hive volume ...`, `--mount type=volume`). The one owner
//! of their layout on disk, Docker's local driver's:
//!
//! - `<volumes_dir>/<name>/_data`: the data, bind-mounted into containers;
//! - `<volumes_dir>/<name>/volume.json`: driver, labels, options and creation time.
//!
//! Options are the local driver's (moby `volume/local/local_unix.go`): `type`, `device` and
//! `o` mount `device` (fstype `type`, mount options `o`, `o=bind` style flags understood) on
//! `_data` when a task first mounts the volume; it stays mounted until the volume is removed.
//!
//! A volume is in use while a task of this node mounts it: some `<tasks_dir>/<task-id>/config.json`
//! (the task's OCI bundle, removed with the task) bind-mounts its `_data`. Reading the bundles
//! rather than keeping a count in memory keeps the answer right across daemon restarts, which
//! adopt running containers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

const DATA: &str = "_data";
const META: &str = "volume.json";
/// Docker's label on volumes a container made without a name; `prune` without `--all`
/// removes only these.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(
        "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
    )]
    Name { name: String },
    /// dockerd's text for an unknown driver.
    #[error(
        "create {name}: error looking up volume plugin {driver}: plugin \"{driver}\" not found"
    )]
    Driver { name: String, driver: String },
    #[error("create {name}: {source}")]
    Option { name: String, source: OptionError },
    /// dockerd's text (`volume/local`).
    #[error(
        "error while mounting volume '{}': failed to mount local volume: mount {device}:{}, data: {data}: {source}",
        path.display(), path.display()
    )]
    Mount {
        name: String,
        device: String,
        path: PathBuf,
        data: String,
        source: nix::errno::Errno,
    },
    #[error("remove {name}: failed to unmount {}: {source}", path.display())]
    Unmount {
        name: String,
        path: PathBuf,
        source: nix::errno::Errno,
    },
    /// dockerd's text (`volume/service`).
    #[error("get {name}: no such volume")]
    NotFound { name: String },
    #[error("remove {name}: volume is in use - [{}]", users.join(", "))]
    InUse { name: String, users: Vec<String> },
    #[error("volume {name}: {action} {}: {source}", path.display())]
    Io {
        name: String,
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A local driver option dockerd refuses, with its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("invalid option: {0:?}")]
    Unknown(String),
    #[error("missing required option: {0:?}")]
    Missing(&'static str),
    /// `size` is an XFS project quota in dockerd; hive's volume directories have none.
    #[error("quota size requested but no quota support")]
    Quota,
}

/// The local driver's option check (moby `validateOpts`): only `type`, `device`, `o` and
/// `size`; `type` and `device` go together, and `o` needs both.
pub fn validate_options(options: &BTreeMap<String, String>) -> Result<(), OptionError> {
    if let Some(key) = options
        .keys()
        .find(|k| !matches!(k.as_str(), "type" | "device" | "o" | "size"))
    {
        return Err(OptionError::Unknown(key.clone()));
    }
    if options.contains_key("size") {
        return Err(OptionError::Quota);
    }
    for (option, required) in [
        ("device", &["type"][..]),
        ("type", &["device"][..]),
        ("o", &["device", "type"][..]),
    ] {
        if options.contains_key(option)
            && let Some(missing) = required.iter().find(|r| !options.contains_key(**r))
        {
            return Err(OptionError::Missing(missing));
        }
    }
    Ok(())
}

/// `o=...` split as moby's `mount.Mount` does: the flags it knows (`bind`, `ro`, `nosuid`,
/// ...) and the rest, passed to the filesystem as data. Returns (flags, propagation, data).
fn parse_mount_options(o: &str) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for option in o.split(',').filter(|o| !o.is_empty()) {
        let (set, clear) = match option {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "private" | "shared" | "slave" | "unbindable" | "rprivate" | "rshared" | "rslave"
            | "runbindable" => {
                let kind = match option.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                propagation |= kind;
                if option.starts_with('r') {
                    propagation |= MsFlags::MS_REC;
                }
                continue;
            }
            other => {
                data.push(other);
                continue;
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, propagation, data.join(","))
}

/// Whether `path` is a mount point in this mount namespace (`/proc/self/mountinfo`).
fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let Some(path) = path.to_str() else {
        return false;
    };
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| unescape_mountinfo(point) == path)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
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

/// Mounts the volume's device on `data` unless something is mounted there already
/// (a daemon restart finds its earlier mounts). Nothing to do without `type`/`device`.
fn mount_device(
    name: &str,
    data: &Path,
    options: &BTreeMap<String, String>,
) -> Result<(), VolumeError> {
    let (Some(fstype), Some(device)) = (options.get("type"), options.get("device")) else {
        return Ok(());
    };
    if is_mount_point(data) {
        return Ok(());
    }
    let (flags, propagation, data_opts) =
        parse_mount_options(options.get("o").map_or("", String::as_str));
    let failed = |source| VolumeError::Mount {
        name: name.to_owned(),
        device: device.clone(),
        path: data.to_owned(),
        data: data_opts.clone(),
        source,
    };
    nix::mount::mount(
        Some(device.as_str()),
        data,
        Some(fstype.as_str()),
        flags,
        (!data_opts.is_empty()).then_some(data_opts.as_str()),
    )
    .map_err(failed)?;
    // A bind mount takes ro/nosuid/... only on a remount; propagation needs its own call.
    let remount = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
    let mut follow_ups = Vec::new();
    if flags.contains(MsFlags::MS_BIND) && !remount.is_empty() {
        follow_ups.push(MsFlags::MS_REMOUNT | MsFlags::MS_BIND | remount);
    }
    if !propagation.is_empty() {
        follow_ups.push(propagation);
    }
    for extra in follow_ups {
        if let Err(errno) = nix::mount::mount(None::<&str>, data, None::<&str>, extra, None::<&str>)
        {
            // Leave nothing half-mounted behind.
            let _ = nix::mount::umount2(data, MntFlags::MNT_DETACH);
            return Err(failed(errno));
        }
    }
    Ok(())
}

/// What `volume.json` keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    created_at: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
}

/// One volume as `volume inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub mountpoint: PathBuf,
    /// RFC 3339.
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// The task IDs of this node's tasks that mount it.
    pub used_by: Vec<String>,
}

/// Docker's volume name rule (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    first_ok
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The data directory of volume `name` in `volumes_dir`.
pub fn data_dir(volumes_dir: &Path, name: &str) -> PathBuf {
    volumes_dir.join(name).join(DATA)
}

/// Volume `name` as a task's mount finds it: made (empty, no labels, with `options`) on first
/// use; an existing volume keeps its own options, as dockerd keeps it. Its device, if it has
/// one, is mounted. Returns its data directory. Blocking.
pub fn ensure(
    volumes_dir: &Path,
    name: &str,
    options: &BTreeMap<String, String>,
) -> Result<PathBuf, VolumeError> {
    let io = |action, path: &Path| {
        let name = name.to_owned();
        let path = path.to_owned();
        move |source| VolumeError::Io {
            name,
            action,
            path,
            source,
        }
    };
    let data = data_dir(volumes_dir, name);
    let meta_path = volumes_dir.join(name).join(META);
    let existing = data.is_dir().then(|| read_meta(&meta_path)).flatten();
    let meta = match existing {
        Some(meta) => meta,
        None if data.is_dir() && !meta_path.exists() && options.is_empty() => {
            // Made before volume.json existed: a plain directory.
            let meta = Meta::new();
            write_meta(&meta_path, &meta).map_err(io("write", &meta_path))?;
            meta
        }
        None => {
            validate_options(options).map_err(|source| VolumeError::Option {
                name: name.to_owned(),
                source,
            })?;
            std::fs::create_dir_all(&data).map_err(io("create", &data))?;
            let meta = Meta {
                options: options.clone(),
                ..Meta::new()
            };
            write_meta(&meta_path, &meta).map_err(io("write", &meta_path))?;
            meta
        }
    };
    mount_device(name, &data, &meta.options)?;
    Ok(data)
}

fn read_meta(path: &Path) -> Option<Meta> {
    std::fs::read(path)
        .ok()
        .and_then(|text| serde_json::from_slice::<Meta>(&text).ok())
}

impl Meta {
    fn new() -> Self {
        Self {
            created_at: now_rfc3339(),
            ..Self::default()
        }
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Written to a temporary file and renamed, so a crash never leaves half a file.
fn write_meta(path: &Path, meta: &Meta) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}

/// The bytes under `path`, not following symlinks.
fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| disk_usage(&entry.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// This node's volumes. Blocking: call off the async threads.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    volumes_dir: PathBuf,
    tasks_dir: PathBuf,
}

impl VolumeStore {
    /// The daemon's: `<data_dir>/volumes`, with the executor's tasks in `<data_dir>/tasks`.
    pub fn for_daemon(data_dir: &Path) -> Self {
        Self::new(data_dir.join("volumes"), data_dir.join("tasks"))
    }

    pub fn new(volumes_dir: PathBuf, tasks_dir: PathBuf) -> Self {
        Self {
            volumes_dir,
            tasks_dir,
        }
    }

    pub fn volumes_dir(&self) -> &Path {
        &self.volumes_dir
    }

    fn io(
        name: &str,
        action: &'static str,
        path: &Path,
    ) -> impl FnOnce(std::io::Error) -> VolumeError {
        let name = name.to_owned();
        let path = path.to_owned();
        move |source| VolumeError::Io {
            name,
            action,
            path,
            source,
        }
    }

    /// `volume create`: an existing volume of that name is returned as it is (as dockerd
    /// does); `name` `None` makes one with a random 64-hex name.
    pub fn create(
        &self,
        name: Option<&str>,
        driver: &str,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<Volume, VolumeError> {
        let name = match name {
            Some(name) => name.to_owned(),
            None => {
                let bytes: [u8; 32] = rand::random();
                bytes.iter().map(|b| format!("{b:02x}")).collect()
            }
        };
        if !valid_name(&name) {
            return Err(VolumeError::Name { name });
        }
        if driver != "local" {
            return Err(VolumeError::Driver {
                name,
                driver: driver.to_owned(),
            });
        }
        validate_options(&options).map_err(|source| VolumeError::Option {
            name: name.clone(),
            source,
        })?;
        if let Ok(existing) = self.inspect(&name) {
            return Ok(existing);
        }
        let dir = self.volumes_dir.join(&name);
        let data = dir.join(DATA);
        std::fs::create_dir_all(&data).map_err(Self::io(&name, "create", &data))?;
        let meta = Meta {
            labels,
            options,
            ..Meta::new()
        };
        let path = dir.join(META);
        write_meta(&path, &meta).map_err(Self::io(&name, "write", &path))?;
        self.inspect(&name)
    }

    /// `volume inspect`.
    pub fn inspect(&self, name: &str) -> Result<Volume, VolumeError> {
        let not_found = || VolumeError::NotFound {
            name: name.to_owned(),
        };
        if !valid_name(name) {
            return Err(not_found());
        }
        let dir = self.volumes_dir.join(name);
        let data = dir.join(DATA);
        if !data.is_dir() {
            return Err(not_found());
        }
        // A volume made before volume.json existed, or whose file was lost: the directory's
        // own time.
        let meta = read_meta(&dir.join(META)).unwrap_or_else(|| Meta {
            created_at: std::fs::metadata(&dir)
                .and_then(|m| m.modified())
                .ok()
                .map(time::OffsetDateTime::from)
                .and_then(|t| {
                    t.replace_nanosecond(0)
                        .ok()?
                        .format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default(),
            ..Meta::default()
        });
        Ok(Volume {
            name: name.to_owned(),
            driver: "local".to_owned(),
            mountpoint: data.clone(),
            created_at: meta.created_at,
            labels: meta.labels,
            options: meta.options,
            used_by: self.users(&data),
        })
    }

    /// `volume ls`, by name.
    pub fn list(&self) -> Vec<Volume> {
        let Ok(entries) = std::fs::read_dir(&self.volumes_dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid_name(n))
            .collect();
        names.sort();
        names.iter().filter_map(|n| self.inspect(n).ok()).collect()
    }

    /// The tasks whose bundle bind-mounts `data`, sorted.
    fn users(&self, data: &Path) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.tasks_dir) else {
            return Vec::new();
        };
        let mut users: Vec<String> = entries
            .flatten()
            .filter(|task| {
                std::fs::read(task.path().join("config.json"))
                    .ok()
                    .and_then(|text| serde_json::from_slice::<serde_json::Value>(&text).ok())
                    .and_then(|spec| {
                        spec.get("mounts")?.as_array().map(|mounts| {
                            mounts
                                .iter()
                                .any(|m| m.get("source").and_then(|s| s.as_str()) == data.to_str())
                        })
                    })
                    .unwrap_or(false)
            })
            .filter_map(|task| task.file_name().into_string().ok())
            .collect();
        users.sort();
        users
    }

    /// `volume rm`: refused while a task mounts it.
    pub fn remove(&self, name: &str) -> Result<u64, VolumeError> {
        let volume = self.inspect(name)?;
        if !volume.used_by.is_empty() {
            return Err(VolumeError::InUse {
                name: name.to_owned(),
                users: volume.used_by,
            });
        }
        let dir = self.volumes_dir.join(name);
        let data = dir.join(DATA);
        let size = disk_usage(&data);
        // A device mounted on first use goes first; its data is the device's, never removed.
        if is_mount_point(&data) {
            nix::mount::umount2(&data, MntFlags::MNT_DETACH).map_err(|source| {
                VolumeError::Unmount {
                    name: name.to_owned(),
                    path: data.clone(),
                    source,
                }
            })?;
        }
        std::fs::remove_dir_all(&dir).map_err(Self::io(name, "remove", &dir))?;
        Ok(size)
    }

    /// `volume prune`: the unused volumes (only anonymous ones unless `all`), with the
    /// bytes their data took.
    pub fn prune(&self, all: bool) -> Result<(Vec<String>, u64), VolumeError> {
        let mut removed = Vec::new();
        let mut space = 0;
        for volume in self.list() {
            if !volume.used_by.is_empty() || (!all && !volume.labels.contains_key(ANONYMOUS_LABEL))
            {
                continue;
            }
            match self.remove(&volume.name) {
                Ok(size) => {
                    removed.push(volume.name);
                    space += size;
                }
                // Mounted by a task that started meanwhile: kept, as dockerd keeps it.
                Err(VolumeError::InUse { .. } | VolumeError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok((removed, space))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, VolumeStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = VolumeStore::for_daemon(dir.path());
        (dir, store)
    }

    fn mount_in_task(store: &VolumeStore, task: &str, name: &str) {
        let dir = store.tasks_dir.join(task);
        std::fs::create_dir_all(&dir).expect("task dir");
        let source = data_dir(store.volumes_dir(), name);
        let spec = serde_json::json!({"mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": source},
        ]});
        std::fs::write(dir.join("config.json"), spec.to_string()).expect("config");
    }

    #[test]
    fn create_inspect_ls_as_docker() {
        let (_dir, store) = store();
        let labels = BTreeMap::from([("team".to_owned(), "web".to_owned())]);
        let made = store
            .create(Some("web-data"), "local", labels.clone(), BTreeMap::new())
            .expect("create");
        assert_eq!(made.driver, "local");
        assert_eq!(made.labels, labels);
        assert!(made.mountpoint.ends_with("volumes/web-data/_data"));
        assert!(made.mountpoint.is_dir());
        assert!(made.created_at.contains('T'), "{}", made.created_at);
        // Creating it again returns it unchanged.
        let again = store
            .create(Some("web-data"), "local", BTreeMap::new(), BTreeMap::new())
            .expect("again");
        assert_eq!(again, made);
        let anonymous = store
            .create(None, "local", BTreeMap::new(), BTreeMap::new())
            .expect("unnamed");
        assert_eq!(anonymous.name.len(), 64);
        let names: Vec<String> = store.list().into_iter().map(|v| v.name).collect();
        let mut expected = vec![anonymous.name.clone(), "web-data".to_owned()];
        expected.sort();
        assert_eq!(names, expected);
    }

    #[test]
    fn bad_names_drivers_and_options_are_refused() {
        let (_dir, store) = store();
        let none = BTreeMap::new;
        let err = store
            .create(Some("/x"), "local", none(), none())
            .unwrap_err();
        assert!(
            err.to_string().contains("includes invalid characters"),
            "{err}"
        );
        let err = store.create(Some("v1"), "nfs", none(), none()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "create v1: error looking up volume plugin nfs: plugin \"nfs\" not found"
        );
        let opts = BTreeMap::from([("type".to_owned(), "tmpfs".to_owned())]);
        assert_eq!(
            store
                .create(Some("v1"), "local", none(), opts.clone())
                .unwrap_err()
                .to_string(),
            "create v1: missing required option: \"device\""
        );
        // A task's mount whose options came over the API is checked the same way.
        assert!(matches!(
            ensure(store.volumes_dir(), "v1", &opts),
            Err(VolumeError::Option { .. })
        ));
        assert!(store.list().is_empty());
        assert_eq!(
            store.inspect("v1").unwrap_err().to_string(),
            "get v1: no such volume"
        );
    }

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn local_driver_options_are_checked_as_dockerd_checks_them() {
        for good in [
            options(&[]),
            options(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")]),
            options(&[("type", "none"), ("device", "/srv/x"), ("o", "bind")]),
            options(&[("type", "nfs"), ("device", ":/export")]),
        ] {
            assert_eq!(validate_options(&good), Ok(()), "{good:?}");
        }
        for (bad, text) in [
            (options(&[("foo", "bar")]), "invalid option: \"foo\""),
            (
                options(&[("type", "tmpfs"), ("device", "tmpfs"), ("uid", "1")]),
                "invalid option: \"uid\"",
            ),
            (
                options(&[("type", "tmpfs")]),
                "missing required option: \"device\"",
            ),
            (
                options(&[("device", "tmpfs")]),
                "missing required option: \"type\"",
            ),
            (
                options(&[("o", "size=1m")]),
                "missing required option: \"device\"",
            ),
            (
                options(&[("size", "10G")]),
                "quota size requested but no quota support",
            ),
        ] {
            assert_eq!(
                validate_options(&bad).map_err(|e| e.to_string()),
                Err(text.to_owned()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn mount_options_split_into_flags_and_filesystem_data() {
        let (flags, propagation, data) = parse_mount_options("size=1m,ro,nosuid,mode=755");
        assert_eq!(flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert!(propagation.is_empty());
        assert_eq!(data, "size=1m,mode=755");
        let (flags, propagation, data) = parse_mount_options("bind,rprivate,ro,rw");
        assert_eq!(flags, MsFlags::MS_BIND);
        assert_eq!(propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(data, "");
        assert_eq!(unescape_mountinfo("/a\\040b\\134c"), "/a b\\c");
    }

    #[test]
    fn options_are_recorded_and_an_existing_volume_keeps_its_own() {
        let (_dir, store) = store();
        // `type=none,o=bind` of an existing directory: recorded, not mounted before use.
        let host = tempfile::tempdir().expect("host dir");
        let device = host.path().to_string_lossy().into_owned();
        let opts = options(&[("type", "none"), ("device", &device), ("o", "bind")]);
        let made = store
            .create(Some("bound"), "local", BTreeMap::new(), opts.clone())
            .expect("create");
        assert_eq!(made.options, opts);
        let again = store
            .create(Some("bound"), "local", BTreeMap::new(), BTreeMap::new())
            .expect("again");
        assert_eq!(again.options, opts);
        // A plain volume first made by a task, then asked for with options: kept plain.
        ensure(store.volumes_dir(), "plain", &BTreeMap::new()).expect("plain");
        let tmpfs = options(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")]);
        ensure(store.volumes_dir(), "plain", &tmpfs).expect("plain again");
        assert!(store.inspect("plain").expect("plain").options.is_empty());
        assert!(!is_mount_point(&data_dir(store.volumes_dir(), "plain")));
    }

    #[test]
    fn a_volume_a_task_mounts_cannot_be_removed_until_the_task_is_gone() {
        let (_dir, store) = store();
        let data = ensure(store.volumes_dir(), "db", &BTreeMap::new()).expect("first use");
        std::fs::write(data.join("file"), b"12345").expect("write");
        mount_in_task(&store, "task-b", "db");
        mount_in_task(&store, "task-a", "db");
        mount_in_task(&store, "task-c", "other");
        assert_eq!(
            store.inspect("db").expect("db").used_by,
            ["task-a", "task-b"]
        );
        assert_eq!(
            store.remove("db").unwrap_err().to_string(),
            "remove db: volume is in use - [task-a, task-b]"
        );
        let (removed, _) = store.prune(true).expect("prune");
        assert!(removed.is_empty());
        for task in ["task-a", "task-b"] {
            std::fs::remove_dir_all(store.tasks_dir.join(task)).expect("task gone");
        }
        assert_eq!(store.remove("db").expect("rm"), 5);
        assert!(!data.exists());
        assert!(matches!(
            store.remove("db"),
            Err(VolumeError::NotFound { .. })
        ));
    }

    #[test]
    fn prune_removes_unused_anonymous_volumes_or_all_unused_ones() {
        let (_dir, store) = store();
        let anonymous = BTreeMap::from([(ANONYMOUS_LABEL.to_owned(), String::new())]);
        store
            .create(Some("anon"), "local", anonymous, BTreeMap::new())
            .expect("anon");
        let named = ensure(store.volumes_dir(), "named", &BTreeMap::new()).expect("named");
        std::fs::write(named.join("f"), b"abc").expect("write");
        ensure(store.volumes_dir(), "busy", &BTreeMap::new()).expect("busy");
        mount_in_task(&store, "t1", "busy");
        assert_eq!(
            store.prune(false).expect("prune"),
            (vec!["anon".to_owned()], 0)
        );
        assert_eq!(
            store.prune(true).expect("prune all"),
            (vec!["named".to_owned()], 3)
        );
        let left: Vec<String> = store.list().into_iter().map(|v| v.name).collect();
        assert_eq!(left, ["busy"]);
    }
}
