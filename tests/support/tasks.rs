//! Tasks and published ports as a test sees them: the tasks of a service read through a
//! manager's API, bounded waits on their state, and new connections from the lab's outside
//! `client` to a node's published port. Shared by the lab suites so that each one asserts the
//! same things the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hive::client::TaskFilter;
use hive::store::objects::{Service, Task, TaskState};
use hive_lab::naming;

use super::{PATIENCE, Swarm};

/// The lab's outside client (`hive lab` gives it this address).
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 100);

/// The tasks of `service`, as n1's `ListTasks` returns them.
pub fn tasks(swarm: &Swarm, service: &str) -> Vec<Task> {
    let mut client = swarm.client("n1");
    swarm
        .rt
        .block_on(client.control.list_tasks(TaskFilter {
            service: Some(service),
            node: None,
        }))
        .unwrap_or_else(|e| panic!("listing the tasks of {service}: {e}"))
        .tasks
}

/// Node names (hostnames) by node ID, as n1 lists them.
pub fn node_names(swarm: &Swarm) -> BTreeMap<String, String> {
    swarm
        .nodes("n1")
        .expect("node ls")
        .into_iter()
        .filter_map(|n| Some((n.id.clone(), n.description?.hostname)))
        .collect()
}

/// The name of the node `task` is on ("" if unplaced).
pub fn node_of(names: &BTreeMap<String, String>, task: &Task) -> String {
    task.node_id
        .as_deref()
        .and_then(|n| names.get(n))
        .cloned()
        .unwrap_or_default()
}

/// The network namespace of `task` (under its node's `--task-run-dir`, see docs/agent.md).
pub fn task_netns(swarm: &Swarm, names: &BTreeMap<String, String>, task: &Task) -> PathBuf {
    let node = node_of(names, task);
    let member: naming::Member = node
        .parse()
        .unwrap_or_else(|e| panic!("task {} on {node:?}: {e}", task.id));
    naming::member_dir(swarm.lab().name(), member)
        .join("run")
        .join("netns")
        .join(&task.id)
}

/// The VIP of `service` on `network` (an ID), without the prefix length.
pub fn vip(service: &Service, network: &str) -> Ipv4Addr {
    let endpoint = service.endpoint.as_ref().expect("an allocated endpoint");
    let vip = endpoint
        .virtual_ips
        .iter()
        .find(|v| v.network_id == network)
        .unwrap_or_else(|| panic!("{} has no VIP on {network}", service.spec.annotations.name));
    vip.addr.ip()
}

/// Whether the manager wants `task` running and it runs.
pub fn is_running(task: &Task) -> bool {
    task.desired_state == TaskState::Running && task.status.state == TaskState::Running
}

pub fn live(tasks: &[Task]) -> Vec<&Task> {
    tasks.iter().filter(|t| is_running(t)).collect()
}

/// The hostname of a started task: its short container ID, as Docker's ("" before it ran).
pub fn hostname(task: &Task) -> String {
    task.status
        .runtime
        .as_ref()
        .map(|r| r.runtime_id.chars().take(12).collect())
        .unwrap_or_default()
}

/// The hostnames of started tasks.
pub fn hostnames(tasks: &[&Task]) -> BTreeSet<String> {
    tasks
        .iter()
        .filter(|t| t.status.runtime.is_some())
        .map(|t| hostname(t))
        .collect()
}

/// Waits until `check` holds for the tasks of `service`; returns them.
pub fn wait_tasks(
    swarm: &Swarm,
    service: &str,
    what: &str,
    check: impl Fn(&[Task]) -> bool,
) -> Vec<Task> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = tasks(swarm, service);
        if check(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {PATIENCE:?}; tasks: {:#?}",
            seen.iter()
                .map(|t| (
                    &t.id,
                    t.slot,
                    &t.node_id,
                    t.desired_state,
                    t.status.state,
                    &t.status.err,
                    t.networks.len()
                ))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until exactly `n` tasks of `service` run, each started; returns all its tasks.
pub fn wait_running(swarm: &Swarm, service: &str, n: usize) -> Vec<Task> {
    wait_tasks(
        swarm,
        service,
        &format!("{n} running tasks of {service}"),
        |t| {
            let live = live(t);
            live.len() == n && hostnames(&live).len() == n
        },
    )
}

/// What answered new connections to one node's published port.
#[derive(Debug, Default)]
pub struct Answers {
    /// Hostname → how many connections it answered.
    pub hosts: BTreeMap<String, usize>,
    /// Every remote address the tasks saw.
    pub remotes: BTreeSet<SocketAddr>,
    pub failures: usize,
}

impl Answers {
    pub fn hostnames(&self) -> BTreeSet<String> {
        self.hosts.keys().cloned().collect()
    }
}

/// `probes` new HTTP connections from the lab's `client` to `node`'s published `port`.
pub fn probe(swarm: &Swarm, node: &str, port: u16, probes: usize) -> Answers {
    let lab = swarm.lab();
    let client = lab.netns_path("client").expect("client namespace");
    let to = SocketAddr::from((lab.node_addr(node).expect("node address"), port));
    let mut answers = Answers::default();
    for _ in 0..probes {
        match hive::demo::http_get(client, to) {
            Ok(answer) => {
                *answers.hosts.entry(answer.hostname).or_default() += 1;
                answers.remotes.insert(answer.remote);
            }
            Err(_) => answers.failures += 1,
        }
    }
    answers
}

/// Waits until `node`'s published `port` is answered by exactly `hosts` in `probes` new
/// connections, none failing, each task seeing the client's own address.
pub fn wait_answered(
    swarm: &Swarm,
    node: &str,
    port: u16,
    hosts: &BTreeSet<String>,
    probes: usize,
) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answers = probe(swarm, node, port, probes);
        if &answers.hostnames() == hosts && answers.failures == 0 {
            assert!(
                answers.remotes.iter().all(|r| r.ip() == CLIENT),
                "a task behind {node}:{port} saw another address than the client's: {:?}",
                answers.remotes
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{node}:{port} answered by {:?} with {} failures; expected {hosts:?}",
            answers.hosts,
            answers.failures
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits until every one of `nodes` answers its published `port` as [`wait_answered`] asks:
/// the routing mesh.
pub fn wait_mesh(
    swarm: &Swarm,
    nodes: &[&str],
    port: u16,
    hosts: &BTreeSet<String>,
    probes: usize,
) {
    for node in nodes {
        wait_answered(swarm, node, port, hosts, probes);
    }
}
