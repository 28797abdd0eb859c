//! This node's named local volumes (`hive volume ...`, `--mount type=volume`). The one owner
//! of their layout on disk, Docker's local driver's:
//!
//! - `<volumes_dir>/<name>/_data`: the data, bind-mounted into containers;
//! - `<volumes_dir>/<name>/volume.json`: driver, labels, options and creation time.
//!
//! A volume is in use while a task of this node mounts it: some `<tasks_dir>/<task-id>/config.json`
//! (the task's OCI bundle, removed with the task) bind-mounts its `_data`. Reading the bundles
//! rather than keeping a count in memory keeps the answer right across daemon restarts, which
//! adopt running containers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    #[error(
        "create {name}: option {key:?} is not supported: hive's local volumes are directories on the node"
    )]
    Option { name: String, key: String },
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

/// Volume `name` as a task's mount finds it: made (empty, no labels) on first use.
/// Returns its data directory. Blocking.
pub fn ensure(volumes_dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let data = data_dir(volumes_dir, name);
    std::fs::create_dir_all(&data)?;
    let meta = volumes_dir.join(name).join(META);
    if !meta.exists() {
        write_meta(&meta, &Meta::new())?;
    }
    Ok(data)
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
        if let Some(key) = options.keys().next() {
            return Err(VolumeError::Option {
                name,
                key: key.clone(),
            });
        }
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
        let meta = std::fs::read(dir.join(META))
            .ok()
            .and_then(|text| serde_json::from_slice::<Meta>(&text).ok())
            .unwrap_or_else(|| Meta {
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
        let size = disk_usage(&dir.join(DATA));
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
        assert!(matches!(
            store.create(Some("v1"), "local", none(), opts),
            Err(VolumeError::Option { .. })
        ));
        assert!(store.list().is_empty());
        assert_eq!(
            store.inspect("v1").unwrap_err().to_string(),
            "get v1: no such volume"
        );
    }

    #[test]
    fn a_volume_a_task_mounts_cannot_be_removed_until_the_task_is_gone() {
        let (_dir, store) = store();
        let data = ensure(store.volumes_dir(), "db").expect("first use");
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
        let named = ensure(store.volumes_dir(), "named").expect("named");
        std::fs::write(named.join("f"), b"abc").expect("write");
        ensure(store.volumes_dir(), "busy").expect("busy");
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
