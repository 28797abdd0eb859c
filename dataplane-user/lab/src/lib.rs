//! The lab: a whole multi-node swarm on one machine, each node in its own
//! network and UTS namespace on a virtual underlay (design §5, docs/lab.md).
//!
//! ```no_run
//! use hive_lab::{LabGuard, LabSpec};
//!
//! let lab = LabGuard::up(&LabSpec::new("demo", 3))?; // downs the lab on drop
//! let n2 = lab.node_addr("n2")?;
//! let status = lab.command("client", "ping")?.args(["-c1", &n2.to_string()]).status();
//! # Ok::<(), hive_lab::LabError>(())
//! ```
//!
//! Every call here blocks (namespaces are made on short-lived threads, netlink
//! runs on a private runtime); from async code, use `spawn_blocking`.

pub mod cleanup;
pub mod ethtool;
pub mod floor_forward;
pub mod host;
pub mod naming;
pub mod procs;
pub mod state;
pub mod static_mesh;
pub mod topology;
pub mod veth_peer;
pub mod wire;

use std::{
    net::Ipv4Addr,
    ops::Deref,
    path::Path,
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

pub use cleanup::{CleanupError, DownReport};
pub use host::HostError;
pub use naming::{DEFAULT_LAB, MAX_NODES, Member, NamingError};
pub use state::{DaemonState, LabState, LabStatus, MemberState, Role, StateError};
pub use topology::TopologyError;

use hive_dataplane::netns::{self, NetnsError, NsKind};

/// Errors of lab operations.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Naming(#[from] NamingError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Cleanup(#[from] CleanupError),
    #[error(
        "lab {lab:?} already exists (namespace {netns} is there); run `hive lab down --name {lab}` first"
    )]
    AlreadyExists { lab: String, netns: String },
    #[error("building lab {lab:?} failed: {source}; everything it had made was removed again")]
    Build {
        lab: String,
        source: Box<TopologyError>,
    },
    #[error(
        "building lab {lab:?} failed: {source}; removing what it had made failed too ({cleanup}); run `hive lab down --name {lab}`"
    )]
    BuildAndCleanup {
        lab: String,
        source: Box<TopologyError>,
        cleanup: CleanupError,
    },
    #[error(
        "lab {lab:?} is not ready (its `hive lab up` is still running or was interrupted); run `hive lab down --name {lab}`, then `hive lab up` again"
    )]
    NotReady { lab: String },
    #[error("lab {lab:?} has no member {member:?}; it has {known}")]
    UnknownMember {
        lab: String,
        member: String,
        known: String,
    },
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    /// Lab name (`[a-z0-9-]`, at most 11 characters).
    pub name: String,
    /// Number of nodes, 1..=99.
    pub nodes: u32,
}

impl LabSpec {
    pub fn new(name: impl Into<String>, nodes: u32) -> Self {
        Self {
            name: name.into(),
            nodes,
        }
    }
}

impl Default for LabSpec {
    /// The lab a newcomer gets: `default`, 3 nodes.
    fn default() -> Self {
        Self::new(DEFAULT_LAB, 3)
    }
}

/// A lab that is up. Cheap to open; holds no resources itself, so dropping
/// it leaves the lab running (see [`LabGuard`] for the opposite).
#[derive(Debug, Clone)]
pub struct Lab {
    state: LabState,
}

impl Lab {
    /// Build the lab `spec` describes. Fails if a lab of that name exists.
    /// If building fails half-way, what was made is removed again.
    pub fn up(spec: &LabSpec) -> Result<Self, LabError> {
        naming::validate_lab_name(&spec.name)?;
        let nodes = naming::validate_node_count(spec.nodes)?;
        host::require_root()?;
        let lab = spec.name.as_str();
        let _lock = host::lock()?;
        if let Some(netns) = cleanup::lab_netns_names(lab).into_iter().next() {
            return Err(LabError::AlreadyExists {
                lab: lab.to_owned(),
                netns,
            });
        }
        host::ensure_bpffs()?;
        netns::ensure_shared_dir(Path::new(netns::NETNS_RUN_DIR))?;
        netns::ensure_shared_dir(Path::new(naming::LAB_RUN_DIR))?;
        state::create_lab_dir(lab)?;

        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut plan = LabState::plan(lab, nodes, created, std::process::id());
        // The plan is on disk before the first namespace exists.
        let built = state::write(&plan)
            .map_err(LabError::from)
            .and_then(|()| {
                topology::build(&plan).map_err(|source| LabError::Build {
                    lab: lab.to_owned(),
                    source: Box::new(source),
                })
            })
            .and_then(|()| {
                plan.status = LabStatus::Ready;
                state::write(&plan).map_err(LabError::from)
            });
        match built {
            Ok(()) => Ok(Self { state: plan }),
            Err(err) => Err(roll_back(lab, err)),
        }
    }

    /// Open an existing, ready lab.
    pub fn open(name: &str) -> Result<Self, LabError> {
        naming::validate_lab_name(name)?;
        let state = state::read(name)?;
        if state.status != LabStatus::Ready {
            return Err(LabError::NotReady {
                lab: name.to_owned(),
            });
        }
        Ok(Self { state })
    }

    /// Remove lab `name` and everything it made, whatever state it is in
    /// (also after `up` was killed, also without a state file). Removing a
    /// lab that does not exist is not an error: see
    /// [`DownReport::found_anything`].
    pub fn down_by_name(name: &str) -> Result<DownReport, LabError> {
        naming::validate_lab_name(name)?;
        host::require_root()?;
        let _lock = host::lock()?;
        Ok(cleanup::remove_lab(name, procs::TERM_GRACE)?)
    }

    /// Remove this lab; see [`Lab::down_by_name`].
    pub fn down(self) -> Result<DownReport, LabError> {
        Self::down_by_name(&self.state.name)
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The full record: namespaces, addresses, MACs, reserved paths.
    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// The nodes n1..nN (not the client).
    pub fn nodes(&self) -> impl Iterator<Item = &MemberState> {
        self.state.members.iter().filter(|m| m.role == Role::Node)
    }

    /// The client, the lab's outside world.
    pub fn client(&self) -> Result<&MemberState, LabError> {
        self.member(naming::CLIENT)
    }

    /// A node (`n1`) or the client (`client`).
    pub fn member(&self, name: &str) -> Result<&MemberState, LabError> {
        self.state
            .member(name)
            .ok_or_else(|| LabError::UnknownMember {
                lab: self.state.name.clone(),
                member: name.to_owned(),
                known: self
                    .state
                    .members
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The member's underlay address (`n2` is 192.168.77.2).
    pub fn node_addr(&self, name: &str) -> Result<Ipv4Addr, LabError> {
        Ok(self.member(name)?.underlay_addr)
    }

    /// The member's network namespace file, for [`netns::run_in`] (to
    /// attach XDP programs, open sockets, read sysctls inside the node).
    pub fn netns_path(&self, name: &str) -> Result<&Path, LabError> {
        Ok(&self.member(name)?.netns_path)
    }

    /// A command that runs `program` inside the member's network and UTS
    /// namespaces (so `hostname` prints the member's name), with
    /// `HIVE_LAB` and `HIVE_NODE` set. The mount namespace is the caller's,
    /// so `/sys/fs/bpf` stays visible.
    pub fn command(
        &self,
        name: &str,
        program: impl AsRef<std::ffi::OsStr>,
    ) -> Result<Command, LabError> {
        let member = self.member(name)?;
        let net = netns::open(&member.netns_path)?;
        let uts = netns::open(&member.uts_path)?;
        let mut command = Command::new(program);
        command
            .env("HIVE_LAB", &self.state.name)
            .env("HIVE_NODE", &member.name);
        // The stock docker CLI inside `hive lab exec NODE -- docker ...` talks to the node's
        // Engine API.
        if let Ok(parsed) = member.name.parse::<naming::Member>()
            && parsed.is_node()
        {
            command.env(
                "DOCKER_HOST",
                format!(
                    "unix://{}",
                    naming::docker_socket(&self.state.name, parsed).display()
                ),
            );
        }
        netns::enter_on_spawn(&mut command, vec![(NsKind::Net, net), (NsKind::Uts, uts)]);
        Ok(command)
    }
}

/// Undo a failed `up`. The caller holds the lock, so this uses the unlocked
/// cleanup directly.
fn roll_back(lab: &str, err: LabError) -> LabError {
    match (cleanup::remove_lab(lab, procs::TERM_GRACE), err) {
        (Ok(_), err) => err,
        (Err(cleanup), LabError::Build { lab, source }) => LabError::BuildAndCleanup {
            lab,
            source,
            cleanup,
        },
        (Err(cleanup), err) => {
            tracing::warn!(%cleanup, "removing the half-built lab failed");
            err
        }
    }
}

/// What `hive lab ls` shows for one lab.
#[derive(Debug, Clone)]
pub struct LabListing {
    pub name: String,
    /// The state, if it could be read.
    pub state: Option<LabState>,
    /// Why the state could not be read, or why the lab is not ready.
    pub problem: Option<String>,
    /// Network namespaces of the lab found in `/run/netns`.
    pub netns: Vec<String>,
}

/// Every lab on this machine: those with a state dir, and those only
/// namespaces are left of.
pub fn list() -> Result<Vec<LabListing>, LabError> {
    let mut names = state::lab_dirs()?;
    names.extend(
        std::fs::read_dir(netns::NETNS_RUN_DIR)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter_map(|ns| naming::lab_of_netns(&ns).map(str::to_owned)),
    );
    names.sort();
    names.dedup();
    Ok(names.iter().map(|name| listing(name)).collect())
}

/// One lab's listing; see [`list`].
pub fn listing(name: &str) -> LabListing {
    let netns = cleanup::lab_netns_names(name);
    let (state, problem) = match state::read(name) {
        Ok(state) if state.status == LabStatus::Ready => (Some(state), None),
        Ok(state) => (
            Some(state),
            Some(format!(
                "`hive lab up` is still running or was interrupted; run `hive lab down --name {name}`"
            )),
        ),
        Err(err) => (None, Some(err.to_string())),
    };
    LabListing {
        name: name.to_owned(),
        state,
        problem,
        netns,
    }
}

/// Owns a lab for a test or a benchmark: downs it when dropped, also while
/// unwinding from a panic, so a failing test leaves the machine clean.
#[derive(Debug)]
pub struct LabGuard {
    lab: Lab,
    armed: bool,
}

impl LabGuard {
    /// Bring a lab up; if a lab of that name was left behind by an earlier,
    /// crashed run, remove it first.
    pub fn up(spec: &LabSpec) -> Result<Self, LabError> {
        naming::validate_lab_name(&spec.name)?;
        Lab::down_by_name(&spec.name)?;
        Ok(Self {
            lab: Lab::up(spec)?,
            armed: true,
        })
    }

    /// Keep the lab running after the guard is gone.
    pub fn into_inner(mut self) -> Lab {
        self.armed = false;
        self.lab.clone()
    }
}

impl Deref for LabGuard {
    type Target = Lab;

    fn deref(&self) -> &Lab {
        &self.lab
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if self.armed
            && let Err(err) = Lab::down_by_name(self.lab.name())
        {
            eprintln!("LabGuard: removing lab {:?} failed: {err}", self.lab.name());
        }
    }
}
