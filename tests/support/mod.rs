//! The lab-swarm harness the end-to-end tests share: real `hive daemon`s in a lab's node
//! namespaces, formed into a swarm with real tokens, driven through the `hive` CLI and the
//! local API, and removed with the lab when the test ends (also when it fails).
//!
//! Each module of the test binary (tests/integration.rs) uses a different subset of it.
#![allow(dead_code)]

pub mod busybox;
pub mod dns;
pub mod docker_cli;
pub mod file_group;
pub mod registry;
pub mod tasks;

pub use file_group::file_group;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hive::api::pb;
use hive::client::DaemonClient;
use hive::lab_swarm::{self, SwarmLab};
use hive_lab::{Lab, LabSpec};

pub const HIVE: &str = env!("CARGO_BIN_EXE_hive");
/// Bound of any one `hive` command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound of any wait for the swarm to reach a state.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// One swarm at a time: five daemons per test already keep two cores busy, and Raft timers
/// are tuned for hosts that are not starved. Taken through [`serial`] only.
static SERIAL: Mutex<()> = Mutex::new(());

/// A test's hold on [`SERIAL`], inside its file's group; released before the group.
#[must_use = "the swarm lock is released when this is dropped"]
pub struct Serial {
    _serial: MutexGuard<'static, ()>,
    _group: file_group::FileGroup<'static>,
}

/// For a test that forms a swarm: enters the caller's file group ([`file_group`]), then takes
/// [`SERIAL`], so no other swarm test runs beside it, of its own file or of another. A test
/// that failed holding it leaves it poisoned; the next one takes it as it is.
#[track_caller]
pub fn serial() -> Serial {
    let group = file_group();
    Serial {
        _serial: SERIAL.lock().unwrap_or_else(PoisonError::into_inner),
        _group: group,
    }
}

pub fn privileged(test: &str) -> bool {
    hive_test_support::root_or_skip(
        test,
        "it creates network namespaces and starts daemons in them",
    )
}

/// `hive ARGS` inside `node` of `lab`, bounded by [`COMMAND_TIMEOUT`].
pub fn hive_in(lab: &Lab, node: &str, args: &[&str]) -> Output {
    let mut command = lab.command(node, HIVE).expect("lab command");
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("spawn hive");
    wait_output(child, &format!("hive {}", args.join(" ")))
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// `GET /metrics` of `node`'s daemon in `lab`, from the lab's client.
pub fn metrics_of(lab: &Lab, node: &str) -> String {
    let to = std::net::SocketAddr::from((
        lab.node_addr(node).expect("node address"),
        lab_swarm::METRICS_PORT,
    ));
    let client = lab.netns_path("client").expect("client namespace");
    hive_dataplane::netns::run_in(client, || {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: hive\r\nConnection: close\r\n\r\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok::<_, std::io::Error>(text)
    })
    .expect("entering the client namespace")
    .unwrap_or_else(|e| panic!("GET http://{to}/metrics: {e}"))
}

/// A lab with a formed swarm; downs the lab (daemons included) and reaps the daemons on drop.
pub struct Swarm {
    swarm: SwarmLab,
    pub rt: tokio::runtime::Runtime,
}

impl Swarm {
    pub fn up(name: &str, nodes: u32, managers: u32) -> Self {
        let rt = runtime();
        let swarm = rt
            .block_on(SwarmLab::up(
                &LabSpec::new(name, nodes),
                managers,
                Path::new(HIVE),
            ))
            .unwrap_or_else(|e| panic!("forming the swarm: {e}"));
        Self { swarm, rt }
    }

    /// [`Self::up`] with daemon options made from the lab before the daemons start.
    pub fn up_with_options(
        name: &str,
        nodes: u32,
        managers: u32,
        options: impl FnOnce(&Lab) -> lab_swarm::LabDaemonOptions,
    ) -> Self {
        let rt = runtime();
        let swarm = rt
            .block_on(SwarmLab::up_with_options(
                &LabSpec::new(name, nodes),
                managers,
                Path::new(HIVE),
                options,
            ))
            .unwrap_or_else(|e| panic!("forming the swarm: {e}"));
        Self { swarm, rt }
    }

    pub fn lab(&self) -> &Lab {
        self.swarm.lab()
    }

    /// `hive ARGS` inside `node` (the CLI finds the node's daemon through HIVE_LAB/HIVE_NODE).
    pub fn hive(&self, node: &str, args: &[&str]) -> Output {
        hive_in(self.lab(), node, args)
    }

    /// `GET /metrics` of `node`'s daemon, from the lab's client.
    pub fn metrics(&self, node: &str) -> String {
        metrics_of(self.lab(), node)
    }

    /// Waits until `node`'s daemon refuses `node ls` for want of a quorum.
    pub fn wait_quorum_lost(&self, node: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self.hive(node, &["node", "ls"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "{node} never noticed the lost quorum"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn hive_ok(&self, node: &str, args: &[&str]) -> String {
        let out = self.hive(node, args);
        assert!(
            out.status.success(),
            "`hive {}` on {node} failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `hive_ok` with the arguments written as one line (split on whitespace; no quoting).
    pub fn hive_line(&self, node: &str, line: &str) -> String {
        self.hive_ok(node, &line.split_whitespace().collect::<Vec<_>>())
    }

    pub fn hive_err(&self, node: &str, args: &[&str]) -> String {
        let out = self.hive(node, args);
        assert!(
            !out.status.success(),
            "`hive {}` on {node} succeeded: {}",
            args.join(" "),
            text(&out.stdout)
        );
        text(&out.stderr)
    }

    pub fn client(&self, node: &str) -> DaemonClient {
        let socket = lab_swarm::socket_path(self.lab(), node).expect("socket");
        self.rt
            .block_on(DaemonClient::connect(Some(&format!(
                "unix://{}",
                socket.display()
            ))))
            .unwrap_or_else(|e| panic!("connecting to {node}'s daemon: {e}"))
    }

    pub fn nodes(&self, via: &str) -> Result<Vec<pb::Node>, tonic::Status> {
        let mut client = self.client(via);
        self.rt
            .block_on(client.control.list_nodes())
            .map(|r| r.nodes)
            .map_err(hive::client::ClientError::into_status)
    }

    pub fn leader(&self, via: &str) -> Option<String> {
        let nodes = self.nodes(via).ok()?;
        nodes
            .iter()
            .find(|n| n.manager_status.as_ref().is_some_and(|m| m.leader))
            .and_then(|n| n.description.as_ref().map(|d| d.hostname.clone()))
    }

    pub fn kill(&mut self, node: &str) {
        if let Some(mut child) = self.swarm.take_daemon(node) {
            child.kill().expect("SIGKILL the daemon");
            child.wait().expect("reap the daemon");
        }
    }

    /// Kills `node` as a power cut would: SIGKILL to its daemon's process group (the daemon
    /// runs in a group of its own, and the tasks it starts are in it), then its underlay link
    /// down, so whatever still runs there is cut off from the other nodes.
    pub fn kill_node(&mut self, node: &str) {
        self.swarm.power_off(node).unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn restart(&mut self, node: &str) {
        self.kill(node);
        let child =
            lab_swarm::start_daemon(self.lab(), node, Path::new(HIVE)).expect("start daemon");
        self.swarm.put_daemon(node, child);
        self.rt
            .block_on(lab_swarm::connect(self.lab(), node, PATIENCE))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Waits until `check` holds for `node ls` as seen from each of `via`.
    pub fn wait_nodes(&self, what: &str, via: &[&str], check: impl Fn(&[pb::Node]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        for node in via {
            loop {
                match self.nodes(node) {
                    Ok(nodes) if check(&nodes) => break,
                    seen => assert!(
                        Instant::now() < deadline,
                        "{what}: not seen from {node} within {PATIENCE:?}; last: {seen:?}"
                    ),
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

pub fn wait_output(mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collect output")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs one scenario of a long lab test; a panic is recorded in `failures` (with the
/// scenario's name) instead of ending the test, so one run reports every broken scenario.
pub fn scenario(failures: &mut Vec<String>, name: &str, scenario: impl FnOnce()) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(scenario)) {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        failures.push(format!("{name}: {message}"));
    }
}
