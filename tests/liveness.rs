//! Liveness of nodes and managers end to end (issue 13 item 7, issue 14 items 3, 5 and 6), as
//! a user sees it through `hive node ls`, the task list, writes and requests to published
//! ports.
//!
//! - A daemon restart is not a node death: the node keeps its tasks (same task IDs, nothing
//!   runs twice) and no request fails, while a node whose daemon stays dead has its tasks
//!   replaced after the dispatcher's grace.
//! - Managers dead before `swarm init --force-new-cluster` turn `Down`, as Docker shows them.
//! - A write forwarded to a leader that is cut off is answered honestly, not after a timeout
//!   with the lost-quorum error.
//! - A manager back after many large writes catches up, and the swarm survives its leader.
//!
//! Every test uses its own lab, removed when the test ends (also when it fails). The tests
//! need root; without it they are skipped with a printed reason, or fail when `CI` is set.
//! Waits are bounded; no test asserts on durations.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hive::api::pb;
use hive::store::objects::Task;
use support::tasks::{is_running, node_names, wait_tasks};
use support::{PATIENCE, Swarm, privileged};

/// Waits until `observer`'s daemon logged that gossip lost `node`.
fn wait_gossip_down(swarm: &Swarm, observer: &str, names: &BTreeMap<String, String>, node: &str) {
    let id = names
        .iter()
        .find(|(_, host)| host.as_str() == node)
        .map(|(id, _)| id.clone())
        .expect("node ID");
    let log = hive::lab_swarm::log_path(swarm.lab(), observer).expect("log path");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text
            .lines()
            .any(|l| l.contains("gossip: node down") && l.contains(&id))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{observer}'s gossip never lost {node}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `node ls` rows by hostname: (STATUS, MANAGER STATUS), as the table prints them.
fn node_rows(swarm: &Swarm, via: &str) -> BTreeMap<String, (String, String)> {
    let table = swarm.hive_ok(via, &["node", "ls"]);
    let header = table.lines().next().unwrap_or_default();
    let column = |name: &str| {
        header
            .find(name)
            .unwrap_or_else(|| panic!("no {name} column in {table}"))
    };
    let (host, status, availability, manager, engine) = (
        column("HOSTNAME"),
        column("STATUS"),
        column("AVAILABILITY"),
        column("MANAGER STATUS"),
        column("ENGINE VERSION"),
    );
    let cell = |line: &str, from: usize, to: usize| {
        line.get(from..to.min(line.len()))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    table
        .lines()
        .skip(1)
        .map(|line| {
            (
                cell(line, host, status),
                (
                    cell(line, status, availability),
                    cell(line, manager, engine),
                ),
            )
        })
        .collect()
}

/// Sends new connections to `node`'s published `port` from the lab's client, one after the
/// other, until stopped; counts them and their failures.
///
/// Two loops may reach one backend from the same client port through two nodes: each
/// node's flows are answered from that node (issue 14 item 7, `tests/conntrack.rs`).
struct RequestLoop {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, usize)>,
}

impl RequestLoop {
    fn start(swarm: &Swarm, node: &str, port: u16) -> Self {
        let lab = swarm.lab();
        let client = lab
            .netns_path("client")
            .expect("client namespace")
            .to_path_buf();
        let to = SocketAddr::from((lab.node_addr(node).expect("node address"), port));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut sent, mut failed) = (0, 0);
            while !stopped.load(Ordering::Relaxed) {
                sent += 1;
                if let Err(err) = hive::demo::http_get(&client, to) {
                    failed += 1;
                    eprintln!("GET http://{to}/ failed: {err}");
                }
            }
            (sent, failed)
        });
        Self { stop, thread }
    }

    /// Requests sent and failed.
    fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("request loop")
    }
}

/// The node whose published port the request loop uses: a manager, never restarted here.
const LOAD_NODE: &str = "n1";

#[test]
fn a_restarted_daemon_keeps_its_tasks_and_a_dead_one_loses_them_after_the_grace() {
    if !privileged("a_restarted_daemon_keeps_its_tasks_and_a_dead_one_loses_them_after_the_grace") {
        return;
    }
    let _serial = support::serial();
    let mut swarm = Swarm::up("tl-restart", 5, 3);
    let info = swarm.hive_ok("n1", &["info"]);
    assert!(
        info.contains("  Dispatcher:\n   Heartbeat Period: 5 seconds\n"),
        "{info}"
    );
    let names = node_names(&swarm);
    let on = |t: &Task| {
        t.node_id
            .as_deref()
            .and_then(|n| names.get(n))
            .cloned()
            .unwrap_or_default()
    };
    swarm.hive_line(
        "n1",
        "service create -d --name web --replicas 5 -p 8080:80 hive/whoami",
    );
    let before = wait_tasks(&swarm, "web", "a running task on every node", |t| {
        let nodes: BTreeSet<String> = t.iter().filter(|t| is_running(t)).map(&on).collect();
        t.iter().filter(|t| is_running(t)).count() == 5 && nodes.len() == 5
    });
    // The published port answers before the load starts.
    let lab = swarm.lab();
    let client = lab.netns_path("client").expect("client namespace");
    let to = SocketAddr::from((lab.node_addr(LOAD_NODE).expect("address"), 8080));
    let deadline = Instant::now() + PATIENCE;
    while hive::demo::http_get(client, to).is_err() {
        assert!(Instant::now() < deadline, "{to} never answered");
        std::thread::sleep(Duration::from_millis(200));
    }

    let load = RequestLoop::start(&swarm, LOAD_NODE, 8080);
    // And n4's own published port, through the daemon's restart: its pinned data plane
    // keeps serving while no daemon runs, and the new one takes it over as it is.
    let restarting_load = RequestLoop::start(&swarm, "n4", 8080);
    // n4's daemon is killed, and started again once gossip has reported it down (as an
    // upgrade takes longer than gossip's detection): its task runs on, the new daemon adopts
    // it.
    swarm.kill("n4");
    wait_gossip_down(&swarm, "n1", &names, "n4");
    swarm.restart("n4");
    swarm.wait_nodes("n4 ready again", &["n1"], |nodes| {
        nodes.iter().any(|n| {
            n.description.as_ref().is_some_and(|d| d.hostname == "n4")
                && n.status.as_ref().map(|s| s.state()) == Some(pb::NodeState::Ready)
        })
    });
    let (restart_sent, restart_failed) = restarting_load.stop();
    // n5's daemon is killed for good after n4's restart; its tasks run on, cut from the
    // swarm. Once n5's tasks are replaced, n4's grace (which started earlier) has passed too.
    swarm.kill("n5");
    let after = wait_tasks(&swarm, "web", "n5's task replaced", |t| {
        let live: Vec<&Task> = t.iter().filter(|t| is_running(t)).collect();
        live.len() == 5 && live.iter().all(|t| on(t) != "n5")
    });
    swarm.wait_nodes("n5 down and n4 ready", &["n1"], |nodes| {
        let state = |host: &str| {
            nodes
                .iter()
                .find(|n| n.description.as_ref().is_some_and(|d| d.hostname == host))
                .and_then(|n| n.status.as_ref())
                .map(|s| s.state())
        };
        state("n5") == Some(pb::NodeState::Down) && state("n4") == Some(pb::NodeState::Ready)
    });
    let (sent, failed) = load.stop();
    // n4 kept its task: same ID, still running; no task of the other nodes changed, and the
    // only new task is n5's replacement.
    let ids = |tasks: &[Task], keep: &dyn Fn(&Task) -> bool| -> BTreeSet<String> {
        tasks
            .iter()
            .filter(|t| keep(t))
            .map(|t| t.id.clone())
            .collect()
    };
    let kept_before = ids(&before, &|t| on(t) != "n5");
    let kept_after = ids(&after, &|t| {
        on(t) != "n5" && before.iter().any(|b| b.id == t.id)
    });
    assert_eq!(kept_after, kept_before, "tasks outside n5 were replaced");
    assert!(
        after
            .iter()
            .filter(|t| before.iter().any(|b| b.id == t.id) && on(t) != "n5")
            .all(is_running),
        "a kept task is not running: {after:#?}"
    );
    let new: Vec<&Task> = after
        .iter()
        .filter(|t| !before.iter().any(|b| b.id == t.id))
        .collect();
    assert_eq!(new.len(), 1, "one replacement, for n5's task: {new:#?}");
    let n5_slots: BTreeSet<u64> = before
        .iter()
        .filter(|t| on(t) == "n5")
        .map(|t| t.slot)
        .collect();
    assert!(
        n5_slots.contains(&new[0].slot),
        "the new task takes n5's slot: {new:#?}"
    );

    assert!(sent > 0, "no request sent");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
    assert!(restart_sent > 0, "no request sent to n4");
    assert_eq!(
        restart_failed, 0,
        "{restart_failed} of {restart_sent} requests to the restarting n4 failed"
    );
}

#[test]
fn managers_dead_before_a_forced_new_cluster_turn_down() {
    if !privileged("managers_dead_before_a_forced_new_cluster_turn_down") {
        return;
    }
    let _serial = support::serial();
    let mut swarm = Swarm::up("tl-force", 4, 3);
    swarm.kill("n2");
    swarm.kill("n3");
    // The quorum is lost once n1 says so.
    swarm.wait_quorum_lost("n1");
    swarm.hive_ok("n1", &["swarm", "init", "--force-new-cluster"]);

    // As Docker after a forced new cluster: the other managers are no Raft members any more
    // (no MANAGER STATUS) and, being dead, `Down`; the live worker stays `Ready`.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let rows = node_rows(&swarm, "n1");
        let expected: BTreeMap<String, (String, String)> = [
            ("n1", ("Ready", "Leader")),
            ("n2", ("Down", "")),
            ("n3", ("Down", "")),
            ("n4", ("Ready", "")),
        ]
        .into_iter()
        .map(|(h, (s, m))| (h.to_owned(), (s.to_owned(), m.to_owned())))
        .collect();
        if rows == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node ls after --force-new-cluster: {rows:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_write_forwarded_to_a_cut_off_leader_is_answered_honestly() {
    if !privileged("a_write_forwarded_to_a_cut_off_leader_is_answered_honestly") {
        return;
    }
    let _serial = support::serial();
    let swarm = Swarm::up("tl-forward", 3, 3);
    let leader = swarm.leader("n1").expect("a leader");
    let follower = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != leader)
        .expect("a follower");
    // The leader is cut off from the other managers, its daemon running on.
    let cut = swarm
        .lab()
        .command(&leader, "ip")
        .expect("lab command")
        .args(["link", "set", "dev", "eth0", "down"])
        .status()
        .expect("ip link set down");
    assert!(cut.success(), "cutting {leader} off");

    // A write through a follower, forwarded to the leader that no longer answers: it ends
    // once the follower sees the leader gone, either applied by the new leader (if it never
    // left) or with its fate said as it is; never with the lost-quorum error, since a new
    // leader exists.
    let out = swarm.hive(
        follower,
        &["service", "create", "-d", "--name", "during", "hive/whoami"],
    );
    let stderr = support::text(&out.stderr);
    assert!(
        out.status.success() || stderr.contains("the write may or may not have been applied"),
        "`service create` during the cut: {stderr}"
    );
    assert!(
        !stderr.contains("does not have a leader"),
        "a new leader existed: {stderr}"
    );
    // And the next write goes to the new leader.
    swarm.hive_line(follower, "service create -d --name after hive/whoami");
}

/// Large writes a follower misses while it is down: more than one batch of appends, each
/// entry tens of kilobytes (one node label, rewritten).
const MISSED_WRITES: usize = 400;
const LARGE_VALUE: usize = 40_000;

fn label_write(swarm: &Swarm, via: &str, i: usize) -> Result<(), tonic::Status> {
    let mut client = swarm.client(via);
    let value = char::from(b'a' + (i % 26) as u8)
        .to_string()
        .repeat(LARGE_VALUE);
    swarm
        .rt
        .block_on(client.control.update_node(pb::UpdateNodeRequest {
            node: "n4".to_owned(),
            label_add: [("big".to_owned(), value)].into_iter().collect(),
            ..pb::UpdateNodeRequest::default()
        }))
        .map(drop)
        .map_err(hive::client::ClientError::into_status)
}

#[test]
fn a_manager_back_after_many_large_writes_catches_up_and_the_swarm_survives_its_leader() {
    if !privileged(
        "a_manager_back_after_many_large_writes_catches_up_and_the_swarm_survives_its_leader",
    ) {
        return;
    }
    let _serial = support::serial();
    let mut swarm = Swarm::up("tl-lag", 4, 3);
    let leader = swarm.leader("n1").expect("a leader");
    let lagging = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != leader)
        .expect("a follower");
    let other = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != leader && *n != lagging)
        .expect("another follower");
    swarm.kill(lagging);
    for i in 0..MISSED_WRITES {
        label_write(&swarm, &leader, i).unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
    swarm.restart(lagging);
    // It catches up: the leader sees it keeping up again.
    swarm.wait_nodes(&format!("{lagging} reachable"), &[&leader], |nodes| {
        nodes.iter().any(|n| {
            n.description
                .as_ref()
                .is_some_and(|d| d.hostname == lagging)
                && n.manager_status
                    .as_ref()
                    .is_some_and(|m| m.reachability() == pb::Reachability::Reachable)
        })
    });
    // The leader dies: the two others elect one of them, and writes go on.
    swarm.kill(&leader);
    let deadline = Instant::now() + PATIENCE;
    let mut i = MISSED_WRITES;
    loop {
        match label_write(&swarm, other, i) {
            Ok(()) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no write accepted after the leader died: {e}"
            ),
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
}
