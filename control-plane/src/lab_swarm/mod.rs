//! A swarm in a lab: `hive daemon` in every node's namespaces, `swarm init` on n1, managers
//! and workers joined with real tokens, and the wait until every node is `Ready`
//! (`hive lab up --managers M`, the swarm tests and the failover benchmark).
//!
//! Daemons are started through the lab's `command()`, so they run in the node's network and
//! UTS namespaces (hostname `nI`, address 192.168.77.I), with the node's reserved data dir and
//! socket, logging to `daemon.log` in the node's directory. `hive lab down` stops them with
//! everything else in the lab. The CLI side talks to each daemon through its socket, which is
//! a path on the host's file system, so no `lab exec` is needed for that.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use hive_lab::{self as lab, DaemonState, Lab, LabError, Member, StateError, naming};

use crate::api::pb;
use crate::client::{ClientError, DaemonClient};
use crate::store::objects::NodeRole;

/// Where a lab daemon serves Prometheus metrics, on its node's address (docker's usual
/// `metrics-addr` port).
pub const METRICS_PORT: u16 = 9323;
/// How long a started daemon may take to answer on its socket.
pub const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the whole swarm may take to show every node `Ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum LabSwarmError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the lab's daemon options {}: {reason}; remove the lab and make it again", path.display())]
    DaemonOptions { path: PathBuf, reason: String },
    #[error("cannot open the daemon log {}: {source}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start hive daemon in node {node}: {source}")]
    Spawn {
        node: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the hive daemon of node {node} did not answer within {timeout:?}; see {}", log.display())]
    NoAnswer {
        node: String,
        timeout: Duration,
        log: PathBuf,
    },
    #[error("node {node}: {source}")]
    Daemon {
        node: String,
        #[source]
        source: ClientError,
    },
    #[error("cannot cut node {node} off: {detail}")]
    PowerOff { node: String, detail: String },
    #[error("the swarm did not become ready within {timeout:?}: {detail}; see the daemon logs in {}", dir.display())]
    NotReady {
        timeout: Duration,
        detail: String,
        dir: PathBuf,
    },
}

fn member(name: &str) -> Result<Member, LabSwarmError> {
    name.parse::<Member>()
        .map_err(|e| LabSwarmError::Lab(LabError::Naming(e)))
}

/// The daemon log of `node`.
pub fn log_path(lab: &Lab, node: &str) -> Result<PathBuf, LabSwarmError> {
    Ok(naming::daemon_log(lab.name(), member(node)?))
}

/// The API socket of `node`.
pub fn socket_path(lab: &Lab, node: &str) -> Result<PathBuf, LabSwarmError> {
    Ok(lab
        .member(node)?
        .api_socket
        .clone()
        .unwrap_or_else(|| naming::api_socket(lab.name(), Member::Client)))
}

/// Daemon options `hive lab up` was given, kept in the lab's directory so every start of a
/// node's daemon (also a test's restart) gets them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LabDaemonOptions {
    /// `--insecure-registry` of every node.
    #[serde(default)]
    pub insecure_registries: Vec<String>,
}

fn daemon_options_path(lab: &Lab) -> PathBuf {
    naming::lab_dir(lab.name()).join("daemon-options.json")
}

/// Records `options` for the daemons `start_daemon` starts in `lab`.
pub fn save_daemon_options(lab: &Lab, options: &LabDaemonOptions) -> Result<(), LabSwarmError> {
    let path = daemon_options_path(lab);
    let fail = |reason: String| LabSwarmError::DaemonOptions {
        path: path.clone(),
        reason,
    };
    let bytes = serde_json::to_vec_pretty(options).map_err(|e| fail(e.to_string()))?;
    std::fs::write(&path, bytes).map_err(|e| fail(e.to_string()))
}

/// The options `hive lab up` recorded; none for a lab made without any (or by an older hive).
pub fn daemon_options(lab: &Lab) -> Result<LabDaemonOptions, LabSwarmError> {
    let path = daemon_options_path(lab);
    let fail = |reason: String| LabSwarmError::DaemonOptions {
        path: path.clone(),
        reason,
    };
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LabDaemonOptions::default()),
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Starts `hive daemon` (the binary `hive`) in `node` of `lab`, in its own process group so a
/// Ctrl-C of the caller does not reach it. The log is appended to, so a restarted daemon's
/// history stays.
pub fn start_daemon(lab: &Lab, node: &str, hive: &Path) -> Result<Child, LabSwarmError> {
    use std::os::unix::process::CommandExt as _;
    let state = lab.member(node)?.clone();
    let log = log_path(lab, node)?;
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|source| LabSwarmError::Log {
                path: log.clone(),
                source,
            })
    };
    let (stdout, stderr) = (open()?, open()?);
    let data_dir = state
        .data_dir
        .unwrap_or_else(|| naming::data_dir(lab.name(), Member::Client));
    let socket = socket_path(lab, node)?;
    let options = daemon_options(lab)?;
    let mut command = lab.command(node, hive)?;
    command
        .arg("daemon")
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--socket")
        .arg(&socket)
        .arg("--docker-api")
        .arg(format!(
            "unix://{}",
            naming::docker_socket(lab.name(), member(node)?).display()
        ))
        .args(["--listen-addr", "0.0.0.0:2377"])
        .args(["--metrics-addr", &format!("0.0.0.0:{METRICS_PORT}")])
        .arg("--advertise-addr")
        .arg(state.underlay_addr.to_string())
        // Under the lab's pin directory, so `hive lab down` removes the pins.
        .arg("--bpf-pin-dir")
        .arg(naming::bpf_pin_dir(lab.name(), member(node)?))
        // Task namespaces under the node's directory, where `hive lab down` unmounts them.
        .arg("--task-run-dir")
        .arg(naming::member_dir(lab.name(), member(node)?).join("run"))
        // Task cgroups under hive/lab-<lab>/, which `hive lab down` removes.
        .arg("--cgroup-parent")
        .arg(naming::cgroup_parent(lab.name(), member(node)?))
        // A lab's traffic stays on this machine: tasks' queries for names that are not the
        // swarm's get SERVFAIL instead of going to the host's name servers.
        .args(["--dns-upstream", "none"])
        .args(
            options
                .insecure_registries
                .iter()
                .flat_map(|registry| ["--insecure-registry", registry.as_str()]),
        )
        .env(
            "HIVE_LOG",
            std::env::var("HIVE_LOG").unwrap_or_else(|_| "info".to_owned()),
        )
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    command.spawn().map_err(|source| LabSwarmError::Spawn {
        node: node.to_owned(),
        source,
    })
}

/// Cuts `node` off as a power cut would, for tests and benchmarks of node loss: SIGKILL to its
/// daemon's process group (the daemon runs in a group of its own and the tasks it starts are
/// in it), then the node's underlay link down, so whatever still runs there is cut off.
pub fn power_off(lab: &Lab, node: &str, daemon: &mut Child) -> Result<(), LabSwarmError> {
    let failed = |detail: String| LabSwarmError::PowerOff {
        node: node.to_owned(),
        detail,
    };
    let group = i32::try_from(daemon.id())
        .map(nix::unistd::Pid::from_raw)
        .map_err(|e| failed(e.to_string()))?;
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| failed(format!("SIGKILL to the daemon's process group: {e}")))?;
    let _ = daemon.wait();
    let status = lab
        .command(node, "ip")?
        .args(["link", "set", "dev", "eth0", "down"])
        .status()
        .map_err(|e| failed(format!("running ip: {e}")))?;
    if !status.success() {
        return Err(failed(format!(
            "`ip link set dev eth0 down` exited with {status}"
        )));
    }
    Ok(())
}

/// Connects to `node`'s daemon, waiting up to `timeout` for it to listen.
pub async fn connect(
    lab: &Lab,
    node: &str,
    timeout: Duration,
) -> Result<DaemonClient, LabSwarmError> {
    let socket = socket_path(lab, node)?;
    let host = format!("unix://{}", socket.display());
    let deadline = Instant::now() + timeout;
    loop {
        match DaemonClient::connect(Some(&host)).await {
            Ok(client) => return Ok(client),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
            Err(_) => {
                return Err(LabSwarmError::NoAnswer {
                    node: node.to_owned(),
                    timeout,
                    log: log_path(lab, node)?,
                });
            }
        }
    }
}

fn daemon_error<E: Into<ClientError>>(node: &str) -> impl Fn(E) -> LabSwarmError + '_ {
    move |error| LabSwarmError::Daemon {
        node: node.to_owned(),
        source: error.into(),
    }
}

/// Starts every node's daemon and forms a swarm of `managers` managers (n1..nM) and workers
/// (the rest), joined with the tokens `swarm join-token -q` gives; waits until every node is
/// `Ready` and records the daemons in the lab state. Returns the daemons' processes, in node
/// order (the caller may keep them to reap, or drop them: they run on).
pub async fn form(lab: &Lab, managers: u32, hive: &Path) -> Result<Vec<Child>, LabSwarmError> {
    let nodes: Vec<String> = lab.nodes().map(|n| n.name.clone()).collect();
    let mut children = Vec::with_capacity(nodes.len());
    for node in &nodes {
        children.push(start_daemon(lab, node, hive)?);
    }
    let mut clients = Vec::with_capacity(nodes.len());
    for node in &nodes {
        clients.push(connect(lab, node, DAEMON_START_TIMEOUT).await?);
    }
    let first = nodes.first().map(String::as_str).unwrap_or("n1");
    let leader_addr = format!("{}:2377", lab.node_addr(first)?);
    clients[0]
        .swarm
        .init(pb::InitRequest {
            advertise_addr: lab.node_addr(first)?.to_string(),
            ..Default::default()
        })
        .await
        .map_err(daemon_error(first))?;
    let token = |role: NodeRole| {
        let mut client = clients[0].clone();
        async move {
            client
                .control
                .join_token(role, false)
                .await
                .map(|r| r.token)
                .map_err(daemon_error(first))
        }
    };
    let manager_token = token(NodeRole::Manager).await?;
    let worker_token = token(NodeRole::Worker).await?;
    let mut roles = vec!["manager".to_owned()];
    // Managers join one at a time: each join changes the Raft membership.
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let is_manager = u32::try_from(i).unwrap_or(u32::MAX) < managers;
        let token = if is_manager {
            &manager_token
        } else {
            &worker_token
        };
        clients[i]
            .swarm
            .join(pb::JoinRequest {
                token: token.clone(),
                remote_addr: leader_addr.clone(),
                advertise_addr: lab.node_addr(node)?.to_string(),
                ..Default::default()
            })
            .await
            .map_err(daemon_error(node))?;
        roles.push(if is_manager { "manager" } else { "worker" }.to_owned());
    }
    wait_ready(&mut clients[0], nodes.len(), READY_TIMEOUT)
        .await
        .map_err(|detail| LabSwarmError::NotReady {
            timeout: READY_TIMEOUT,
            detail,
            dir: naming::lab_dir(lab.name()),
        })?;
    record(lab, managers, &children, &roles)?;
    Ok(children)
}

/// Waits until `client`'s `node ls` shows `expected` nodes, all `Ready`; the error says what
/// was seen last.
pub async fn wait_ready(
    client: &mut DaemonClient,
    expected: usize,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        match client.control.list_nodes().await {
            Ok(list) => {
                let ready = list
                    .nodes
                    .iter()
                    .filter(|n| {
                        n.status
                            .as_ref()
                            .is_some_and(|s| s.state() == pb::NodeState::Ready)
                    })
                    .count();
                if list.nodes.len() == expected && ready == expected {
                    return Ok(());
                }
                last = format!(
                    "{ready} of {} nodes ready, {expected} expected",
                    list.nodes.len()
                );
            }
            Err(err) => last = err.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(POLL * 2).await;
    }
}

/// Writes the daemons into the lab's state file.
fn record(
    lab: &Lab,
    managers: u32,
    children: &[Child],
    roles: &[String],
) -> Result<(), LabSwarmError> {
    let mut state = lab::state::read(lab.name())?;
    state.managers = managers;
    let nodes: Vec<String> = lab.nodes().map(|n| n.name.clone()).collect();
    for ((node, child), role) in nodes.iter().zip(children).zip(roles) {
        let log = log_path(lab, node)?;
        if let Some(member) = state.members.iter_mut().find(|m| m.name == *node) {
            member.daemon = Some(DaemonState {
                pid: child.id(),
                log,
                swarm_role: role.clone(),
            });
        }
    }
    lab::state::write(&state)?;
    Ok(())
}

/// A lab with a formed swarm, owned: dropping it downs the lab — daemons, their tasks and
/// their pins with it — and reaps the daemons, also when the owner fails half-way.
#[derive(Debug)]
pub struct SwarmLab {
    lab: Option<hive_lab::LabGuard>,
    daemons: std::collections::BTreeMap<String, Child>,
}

impl SwarmLab {
    /// Brings up the lab `spec` and forms a swarm of `managers` managers on it (see [`form`]).
    pub async fn up(
        spec: &hive_lab::LabSpec,
        managers: u32,
        hive: &Path,
    ) -> Result<Self, LabSwarmError> {
        let lab = hive_lab::LabGuard::up(spec)?;
        let children = form(&lab, managers, hive).await?;
        let daemons = lab.nodes().map(|n| n.name.clone()).zip(children).collect();
        Ok(Self {
            lab: Some(lab),
            daemons,
        })
    }

    /// [`Self::up`], with daemon options made from the lab once it is up (a registry on a
    /// node's address, for example), recorded before any daemon starts.
    pub async fn up_with_options(
        spec: &hive_lab::LabSpec,
        managers: u32,
        hive: &Path,
        options: impl FnOnce(&Lab) -> LabDaemonOptions,
    ) -> Result<Self, LabSwarmError> {
        let lab = hive_lab::LabGuard::up(spec)?;
        save_daemon_options(&lab, &options(&lab))?;
        let children = form(&lab, managers, hive).await?;
        let daemons = lab.nodes().map(|n| n.name.clone()).zip(children).collect();
        Ok(Self {
            lab: Some(lab),
            daemons,
        })
    }

    pub fn lab(&self) -> &Lab {
        self.lab.as_deref().expect("the lab is up until dropped")
    }

    /// Takes `node`'s daemon process out (to kill or wait for it).
    pub fn take_daemon(&mut self, node: &str) -> Option<Child> {
        self.daemons.remove(node)
    }

    /// Records a daemon started again on `node`.
    pub fn put_daemon(&mut self, node: &str, daemon: Child) {
        self.daemons.insert(node.to_owned(), daemon);
    }

    /// Cuts `node` off as a power cut would ([`power_off`]).
    pub fn power_off(&mut self, node: &str) -> Result<(), LabSwarmError> {
        let mut daemon = self
            .take_daemon(node)
            .ok_or_else(|| LabSwarmError::PowerOff {
                node: node.to_owned(),
                detail: "no daemon of this lab runs there".to_owned(),
            })?;
        power_off(self.lab(), node, &mut daemon)
    }

    /// Leaves the lab and its swarm running (`hive lab down` removes them later).
    pub fn keep(mut self) {
        if let Some(guard) = self.lab.take() {
            let _kept: Lab = guard.into_inner();
        }
        self.daemons.clear();
    }
}

impl Drop for SwarmLab {
    fn drop(&mut self) {
        // Downing the lab stops every daemon and task in it; then reap the daemons.
        drop(self.lab.take());
        for child in self.daemons.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
