//! The lab's record on disk: `/run/hive/lab/<lab>/state.json`.
//!
//! `hive lab up` writes the whole plan (every namespace, address and path)
//! with status `creating` before it creates the first resource, and flips it
//! to `ready` at the end. Other commands read it to find nodes. Cleanup never
//! depends on it: `hive lab down` also sweeps by naming convention, so a
//! missing or damaged file only costs the pretty output.

use std::{
    fs, io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::naming::{self, Member};

/// Version of the file format; bump on incompatible changes.
pub const STATE_VERSION: u32 = 1;

/// Errors reading or writing a lab's state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("lab {lab:?} already exists ({path} is there); run `hive lab down --name {lab}` first")]
    Exists { lab: String, path: PathBuf },
    #[error(
        "no lab named {lab:?} ({path} does not exist); create it with `hive lab up --name {lab}`"
    )]
    NotFound { lab: String, path: PathBuf },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "{path} is not a valid lab state file: {source}; run `hive lab down --name {lab}` to remove the lab"
    )]
    Parse {
        lab: String,
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{path} has state format version {version}, this hive reads version {STATE_VERSION}; remove the lab with the hive that made it"
    )]
    UnsupportedVersion { path: PathBuf, version: u32 },
}

/// Where `hive lab up` got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabStatus {
    /// `up` is running, or was interrupted; `down` cleans it up.
    Creating,
    /// Every namespace, link and address is in place.
    Ready,
}

/// What a member is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs a hive node.
    Node,
    /// Plays the outside world.
    Client,
}

/// The underlay: a bridge in its own namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnderlayState {
    pub netns: String,
    pub netns_path: PathBuf,
    pub bridge: String,
    pub subnet: String,
}

/// One node or the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    /// `n1`..`n99` or `client`; also the hostname in its UTS namespace.
    pub name: String,
    pub role: Role,
    pub netns: String,
    pub netns_path: PathBuf,
    pub uts_path: PathBuf,
    /// `eth0`, inside the member's namespace.
    pub link: String,
    /// `u-<member>`, inside the underlay namespace, enslaved to the bridge.
    pub peer_link: String,
    pub underlay_addr: Ipv4Addr,
    pub underlay_prefix_len: u8,
    pub mac: String,
    /// Reserved for the node's `hive daemon` (nodes only).
    pub data_dir: Option<PathBuf>,
    /// Reserved for the node's `hive daemon` (nodes only).
    pub api_socket: Option<PathBuf>,
    /// Reserved for the node's BPF pins (nodes only).
    pub bpf_pin_dir: Option<PathBuf>,
    /// The node's `hive daemon`, once `hive lab up` started one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<DaemonState>,
}

/// A node's `hive daemon` as `hive lab up` started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonState {
    pub pid: u32,
    pub log: PathBuf,
    /// `manager` or `worker`, as the node joined the swarm.
    pub swarm_role: String,
}

impl MemberState {
    /// The typed member; `None` if the file was edited into nonsense.
    pub fn member(&self) -> Option<Member> {
        self.name.parse().ok()
    }
}

/// The whole record of one lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    pub version: u32,
    pub name: String,
    pub status: LabStatus,
    /// Seconds since the Unix epoch when `up` started.
    pub created_unix_secs: u64,
    /// PID of the `hive lab up` (or test) process that made it.
    pub creator_pid: u32,
    pub underlay: UnderlayState,
    /// `/sys/fs/bpf/hive/lab-<lab>`, removed recursively by `down`.
    pub bpf_pin_root: PathBuf,
    /// Nodes n1..nN, then the client.
    pub members: Vec<MemberState>,
    /// Managers of the lab's swarm (0: no daemons were started).
    #[serde(default)]
    pub managers: u32,
}

impl LabState {
    /// The full plan of lab `lab` with `nodes` nodes, status `creating`.
    /// Names must already be validated.
    pub fn plan(lab: &str, nodes: u8, created_unix_secs: u64, creator_pid: u32) -> Self {
        let underlay = naming::underlay_netns(lab);
        Self {
            version: STATE_VERSION,
            name: lab.to_owned(),
            status: LabStatus::Creating,
            created_unix_secs,
            creator_pid,
            underlay: UnderlayState {
                netns_path: hive_dataplane::netns::netns_path(&underlay),
                netns: underlay,
                bridge: naming::BRIDGE.to_owned(),
                subnet: naming::underlay_cidr(),
            },
            bpf_pin_root: naming::bpf_lab_dir(lab),
            members: naming::members(nodes)
                .into_iter()
                .map(|member| plan_member(lab, member))
                .collect(),
            managers: 0,
        }
    }

    /// The member named `name` (`n1`, `client`).
    pub fn member(&self, name: &str) -> Option<&MemberState> {
        self.members.iter().find(|m| m.name == name)
    }

    /// Parse the JSON of a state file.
    pub fn parse(lab: &str, path: &Path, text: &str) -> Result<Self, StateError> {
        let state: Self = serde_json::from_str(text).map_err(|source| StateError::Parse {
            lab: lab.to_owned(),
            path: path.to_path_buf(),
            source,
        })?;
        if state.version != STATE_VERSION {
            return Err(StateError::UnsupportedVersion {
                path: path.to_path_buf(),
                version: state.version,
            });
        }
        Ok(state)
    }
}

fn plan_member(lab: &str, member: Member) -> MemberState {
    let netns = naming::member_netns(lab, member);
    let node_only = |path: PathBuf| member.is_node().then_some(path);
    MemberState {
        name: member.to_string(),
        role: if member.is_node() {
            Role::Node
        } else {
            Role::Client
        },
        netns_path: hive_dataplane::netns::netns_path(&netns),
        netns,
        uts_path: naming::uts_path(lab, member),
        link: naming::MEMBER_LINK.to_owned(),
        peer_link: member.peer_link(),
        underlay_addr: member.underlay_addr(),
        underlay_prefix_len: naming::UNDERLAY_PREFIX_LEN,
        mac: naming::format_mac(member.mac()),
        data_dir: node_only(naming::data_dir(lab, member)),
        api_socket: node_only(naming::api_socket(lab, member)),
        bpf_pin_dir: node_only(naming::bpf_pin_dir(lab, member)),
        daemon: None,
    }
}

/// Create `/run/hive/lab/<lab>` exclusively: the first step of `up`, and
/// what makes two `up`s of the same lab refuse each other.
pub fn create_lab_dir(lab: &str) -> Result<(), StateError> {
    let path = naming::lab_dir(lab);
    match fs::create_dir(&path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Err(StateError::Exists {
            lab: lab.to_owned(),
            path,
        }),
        Err(source) => Err(StateError::Io {
            action: "create",
            path,
            source,
        }),
    }
}

/// Write the state atomically (temporary file + rename), so a reader, or a
/// `down` after SIGKILL, sees either the old or the new file, never half.
pub fn write(state: &LabState) -> Result<(), StateError> {
    let path = naming::state_file(&state.name);
    let tmp = path.with_extension("json.tmp");
    let io_err = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| StateError::Io {
            action,
            path,
            source,
        }
    };
    let mut text = serde_json::to_string_pretty(state).map_err(|source| StateError::Parse {
        lab: state.name.clone(),
        path: path.clone(),
        source,
    })?;
    text.push('\n');
    fs::write(&tmp, text).map_err(io_err("write", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_err("rename into place", &path))
}

/// Read lab `lab`'s state.
pub fn read(lab: &str) -> Result<LabState, StateError> {
    let path = naming::state_file(lab);
    match fs::read_to_string(&path) {
        Ok(text) => LabState::parse(lab, &path, &text),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Err(StateError::NotFound {
            lab: lab.to_owned(),
            path,
        }),
        Err(source) => Err(StateError::Io {
            action: "read",
            path,
            source,
        }),
    }
}

/// Names of the labs that have a directory under `/run/hive/lab`.
pub fn lab_dirs() -> Result<Vec<String>, StateError> {
    let dir = Path::new(naming::LAB_RUN_DIR);
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateError::Io {
                action: "list",
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut labs: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| naming::validate_lab_name(name).is_ok())
        .collect();
    labs.sort();
    Ok(labs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_names_everything_after_the_lab() {
        let state = LabState::plan("t1", 2, 1_700_000_000, 42);
        assert_eq!(state.status, LabStatus::Creating);
        assert_eq!(state.underlay.netns, "hive-t1-underlay");
        assert_eq!(
            state.underlay.netns_path,
            PathBuf::from("/run/netns/hive-t1-underlay")
        );
        assert_eq!(state.bpf_pin_root, PathBuf::from("/sys/fs/bpf/hive/lab-t1"));
        let names: Vec<&str> = state.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["n1", "n2", "client"]);

        let n2 = state.member("n2").expect("n2");
        assert_eq!(n2.role, Role::Node);
        assert_eq!(n2.netns, "hive-t1-n2");
        assert_eq!(n2.underlay_addr, Ipv4Addr::new(192, 168, 77, 2));
        assert_eq!(n2.peer_link, "u-n2");
        assert_eq!(n2.mac, "02:68:69:76:00:02");
        assert_eq!(n2.uts_path, PathBuf::from("/run/hive/lab/t1/n2/uts"));
        assert_eq!(
            n2.api_socket.as_deref(),
            Some(Path::new("/run/hive/lab/t1/n2/hive.sock"))
        );
        assert_eq!(
            n2.bpf_pin_dir.as_deref(),
            Some(Path::new("/sys/fs/bpf/hive/lab-t1/n2"))
        );
        assert_eq!(n2.member(), Some(Member::Node(2)));

        let client = state.member("client").expect("client");
        assert_eq!(client.role, Role::Client);
        assert_eq!(client.underlay_addr, Ipv4Addr::new(192, 168, 77, 100));
        assert_eq!(client.data_dir, None);
        assert_eq!(client.bpf_pin_dir, None);
    }

    #[test]
    fn state_round_trips_through_json() {
        let state = LabState::plan("rt", 3, 1, 2);
        let text = serde_json::to_string(&state).expect("serialize");
        let path = Path::new("/run/hive/lab/rt/state.json");
        assert_eq!(LabState::parse("rt", path, &text).expect("parse"), state);
        assert!(text.contains("\"status\":\"creating\""), "{text}");
        assert!(text.contains("\"role\":\"client\""), "{text}");
    }

    #[test]
    fn damaged_state_is_reported_with_what_to_do() {
        let path = Path::new("/run/hive/lab/x/state.json");
        let err = LabState::parse("x", path, "{\"version\": 1, \"name\": ").expect_err("partial");
        assert!(matches!(err, StateError::Parse { .. }));
        assert!(err.to_string().contains("hive lab down --name x"), "{err}");
    }

    #[test]
    fn future_versions_are_refused() {
        let mut state = LabState::plan("v", 1, 1, 2);
        state.version = STATE_VERSION + 1;
        let text = serde_json::to_string(&state).expect("serialize");
        let err = LabState::parse("v", Path::new("s.json"), &text).expect_err("newer");
        assert!(
            matches!(err, StateError::UnsupportedVersion { .. }),
            "{err}"
        );
    }
}
