//! End-to-end tests of the control plane on a lab: real `hive daemon`s in node namespaces,
//! joined with real tokens over mTLS, driven through the `hive` CLI and the local API.
//!
//! Every test uses its own lab and a guard that removes it (daemons included) when the test
//! ends, also when it fails. The tests need root; without it they are skipped with a printed
//! reason, or fail when `CI` is set. Waits are bounded; no test asserts on durations.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hive::api::pb;
use hive::lab_swarm;
use support::{HIVE, PATIENCE, Swarm, privileged, runtime, text};

const LOST_QUORUM: &str = "Error response from daemon: rpc error: code = Unknown desc = The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.";

fn by_host<'a>(nodes: &'a [pb::Node], host: &str) -> Option<&'a pb::Node> {
    nodes
        .iter()
        .find(|n| n.description.as_ref().is_some_and(|d| d.hostname == host))
}

fn is_manager(node: Option<&pb::Node>) -> bool {
    node.is_some_and(|n| n.manager_status.is_some())
}

fn all_ready(nodes: &[pb::Node], expected: usize) -> bool {
    nodes.len() == expected
        && nodes.iter().all(|n| {
            n.status
                .as_ref()
                .is_some_and(|s| s.state() == pb::NodeState::Ready)
        })
}

const MANAGERS: [&str; 3] = ["n1", "n2", "n3"];

#[test]
fn managers_and_workers_join_and_every_manager_sees_the_same_changes() {
    if !privileged("managers_and_workers_join_and_every_manager_sees_the_same_changes") {
        return;
    }
    let _serial = support::serial();
    let swarm = Swarm::up("sw-join", 5, 3);

    // docker's table from every manager, `*` on the node asked.
    for node in MANAGERS {
        let ls = swarm.hive_ok(node, &["node", "ls"]);
        let lines: Vec<&str> = ls.lines().collect();
        assert!(lines[0].starts_with("ID                            HOSTNAME   STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION"), "{ls}");
        assert_eq!(lines.len(), 6, "{ls}");
        let own = lines.iter().find(|l| l.contains(" *   ")).expect("a * row");
        assert!(own.contains(&format!("   {node}   ")), "{ls}");
        assert_eq!(ls.matches("Leader").count(), 1, "{ls}");
        assert_eq!(ls.matches("Reachable").count(), 2, "{ls}");
        assert_eq!(ls.matches("Ready").count(), 5, "{ls}");
    }
    // Workers cannot use the cluster API, with docker's words.
    assert_eq!(
        swarm.hive_err("n4", &["node", "ls"]).trim(),
        "Error response from daemon: This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager."
    );
    let info = swarm.hive_ok("n5", &["info"]);
    assert!(
        info.contains(" Swarm: active\n") && info.contains("  Is Manager: false\n"),
        "{info}"
    );

    // node update on one manager, seen by the others.
    swarm.hive_ok(
        "n2",
        &[
            "node",
            "update",
            "--label-add",
            "zone=a",
            "--availability",
            "drain",
            "n5",
        ],
    );
    swarm.wait_nodes("n5 drained with its label", &MANAGERS, |nodes| {
        by_host(nodes, "n5")
            .and_then(|n| n.spec.as_ref())
            .is_some_and(|s| {
                s.availability() == pb::Availability::Drain
                    && s.labels.get("zone").map(String::as_str) == Some("a")
            })
    });
    let pretty = swarm.hive_ok("n3", &["node", "inspect", "--pretty", "n5"]);
    assert!(
        pretty.contains(" Availability:         \tDrain") && pretty.contains(" - zone=a"),
        "{pretty}"
    );
    // `node ls` filters and formats as docker's.
    assert_eq!(
        swarm.hive_ok(
            "n3",
            &[
                "node",
                "ls",
                "--filter",
                "node.label=zone=a",
                "--format",
                "{{.Hostname}} {{.Availability}}"
            ]
        ),
        "n5 Drain\n"
    );
    let managers = swarm.hive_ok(
        "n1",
        &[
            "node",
            "ls",
            "-f",
            "role=manager",
            "--format",
            "table {{.Hostname}}\t{{.ManagerStatus}}",
        ],
    );
    assert!(
        managers.starts_with("HOSTNAME   MANAGER STATUS\n"),
        "{managers}"
    );
    assert_eq!(managers.lines().count(), 4, "{managers}");
    swarm.hive_ok(
        "n1",
        &[
            "node",
            "update",
            "--label-rm",
            "zone",
            "--availability",
            "active",
            "n5",
        ],
    );

    // Promotion: n4 becomes a Raft member, shown as such everywhere.
    assert_eq!(
        swarm.hive_ok("n3", &["node", "promote", "n4"]).trim(),
        "Node n4 promoted to a manager in the swarm."
    );
    swarm.wait_nodes(
        "n4 a reachable manager",
        &["n1", "n2", "n3", "n4"],
        |nodes| {
            by_host(nodes, "n4")
                .and_then(|n| n.manager_status.as_ref())
                .is_some_and(|m| m.leader || m.reachability() == pb::Reachability::Reachable)
        },
    );
    assert_eq!(
        swarm.hive_ok("n4", &["node", "promote", "n4"]).trim(),
        "Node n4 is already a manager."
    );
    // Demotion: back to a worker, everywhere; n4's own API then refuses.
    assert_eq!(
        swarm.hive_ok("n1", &["node", "demote", "n4"]).trim(),
        "Manager n4 demoted in the swarm."
    );
    swarm.wait_nodes("n4 a worker again", &MANAGERS, |nodes| {
        !is_manager(by_host(nodes, "n4"))
    });
    let deadline = Instant::now() + PATIENCE;
    while swarm.hive("n4", &["node", "ls"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "n4 still answers the cluster API after its demotion"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A manager does not leave without --force.
    let refused = swarm.hive_err("n2", &["swarm", "leave"]);
    assert!(refused.starts_with("Error response from daemon: You are attempting to leave the swarm on a node that is participating as a manager. "), "{refused}");
    assert!(
        refused
            .trim_end()
            .ends_with("Use `--force` to suppress this message."),
        "{refused}"
    );

    // Join tokens: a malformed one, a rotated one, then the current one.
    assert_eq!(
        swarm.hive_ok("n5", &["swarm", "leave"]).trim(),
        "Node left the swarm."
    );
    let bad = swarm.hive_err(
        "n5",
        &[
            "swarm",
            "join",
            "--token",
            "SWMTKN-1-nonsense",
            "192.168.77.1:2377",
        ],
    );
    assert!(bad.contains("invalid join token"), "{bad}");
    let old = swarm.hive_ok("n1", &["swarm", "join-token", "-q", "worker"]);
    let rotated = swarm.hive_ok("n2", &["swarm", "join-token", "--rotate", "worker"]);
    assert!(rotated.starts_with("Successfully rotated worker join token.\n\nTo add a worker to this swarm, run the following command:\n\n    hive swarm join --token SWMTKN-1-"), "{rotated}");
    let refused = swarm.hive_err(
        "n5",
        &["swarm", "join", "--token", old.trim(), "192.168.77.2:2377"],
    );
    assert!(
        refused
            .contains("the join token is not valid: it was rotated or never issued by this swarm"),
        "{refused}"
    );
    let new = swarm.hive_ok("n3", &["swarm", "join-token", "-q", "worker"]);
    assert_ne!(new.trim(), old.trim());
    assert_eq!(
        swarm
            .hive_ok(
                "n5",
                &["swarm", "join", "--token", new.trim(), "192.168.77.3:2377"]
            )
            .trim(),
        "This node joined a swarm as a worker."
    );
    // The node that left stays listed until removed: two nodes are called n5 now.
    let ambiguous = swarm.hive_err("n1", &["node", "rm", "n5"]);
    assert_eq!(
        ambiguous.trim(),
        "Error response from daemon: node n5 is ambiguous (2 matches found)"
    );
    let manager = swarm.hive_err("n1", &["node", "rm", "n2"]);
    assert!(
        manager.contains("is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal"),
        "{manager}"
    );
    let nodes = swarm.nodes("n1").expect("node ls");
    let old_n5 = nodes
        .iter()
        .filter(|n| n.description.as_ref().is_some_and(|d| d.hostname == "n5"))
        .min_by_key(|n| n.created_at.map(|t| t.seconds))
        .expect("the old n5")
        .id
        .clone();
    assert_eq!(
        swarm.hive_ok("n2", &["node", "rm", "-f", &old_n5]).trim(),
        old_n5
    );
    swarm.wait_nodes("five nodes again", &MANAGERS, |nodes| nodes.len() == 5);
    // The new n5 is Ready.
    swarm.wait_nodes("n5 ready again", &["n1"], |nodes| {
        nodes
            .iter()
            .filter(|n| n.description.as_ref().is_some_and(|d| d.hostname == "n5"))
            .any(|n| {
                n.status
                    .as_ref()
                    .is_some_and(|s| s.state() == pb::NodeState::Ready)
            })
    });
}

#[test]
fn a_workers_call_to_a_manager_api_is_refused() {
    if !privileged("a_workers_call_to_a_manager_api_is_refused") {
        return;
    }
    let _serial = support::serial();
    let swarm = Swarm::up("sw-authz", 2, 1);
    let worker = swarm.lab().member("n2").expect("n2").clone();
    let creds = hive::pki::CertDir::in_data_dir(worker.data_dir.as_deref().expect("data dir"))
        .load(std::time::SystemTime::now())
        .expect("the worker's certificates");
    let tls = Arc::new(hive::pki::client_config(&creds).expect("client config"));
    // From inside the worker's namespace, with the worker's own certificate.
    let status = hive_dataplane::netns::run_in(&worker.netns_path, move || {
        let rt = runtime();
        rt.block_on(async move {
            let channel = hive::transport::mtls_channel(
                "192.168.77.1:2377",
                tls,
                hive::pki::manager_server_name(),
            )
            .expect("channel");
            pb::control_client::ControlClient::new(channel)
                .list_nodes(pb::ListNodesRequest {})
                .await
                .expect_err("a worker must not list nodes")
        })
    })
    .expect("run in the worker's namespace");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("is a worker and this API needs a manager"),
        "{}",
        status.message()
    );
}

#[test]
fn a_new_leader_takes_writes_after_the_leader_is_killed_and_state_survives_a_full_restart() {
    if !privileged(
        "a_new_leader_takes_writes_after_the_leader_is_killed_and_state_survives_a_full_restart",
    ) {
        return;
    }
    let _serial = support::serial();
    let mut swarm = Swarm::up("sw-fail", 4, 3);
    let leader = swarm.leader("n1").expect("a leader");
    let writer = *MANAGERS.iter().find(|n| **n != leader).expect("a follower");
    let socket = lab_swarm::socket_path(swarm.lab(), writer).expect("socket");

    // Writes keep going from a follower while the leader dies.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted_after_kill = Arc::new(AtomicU64::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let writes = {
        let (stop, accepted, killed) = (stop.clone(), accepted_after_kill.clone(), killed.clone());
        std::thread::spawn(move || {
            let host = format!("unix://{}", socket.display());
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let was_killed = killed.load(Ordering::SeqCst);
                let out = std::process::Command::new(HIVE)
                    .args([
                        "-H",
                        &host,
                        "node",
                        "update",
                        "--label-add",
                        &format!("seq={i}"),
                        "n4",
                    ])
                    .output()
                    .expect("hive");
                if out.status.success() && was_killed {
                    accepted.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            i
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    swarm.kill(&leader);
    killed.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + PATIENCE;
    while accepted_after_kill.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline,
            "no write accepted after the leader was killed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    let last = writes.join().expect("writer");
    assert!(last > 0);
    let new_leader = swarm.leader(writer).expect("a new leader");
    assert_ne!(new_leader, leader);
    let ls = swarm.hive_ok(writer, &["node", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.contains(&format!("   {leader}   ")) && l.contains("Unreachable")),
        "{ls}"
    );

    // The old leader comes back as a follower.
    swarm.restart(&leader);
    swarm.wait_nodes("the old leader reachable again", &[writer], |nodes| {
        by_host(nodes, &leader)
            .and_then(|n| n.manager_status.as_ref())
            .is_some_and(|m| m.reachability() == pb::Reachability::Reachable)
    });

    // Every daemon killed and started again: the same swarm, the same state.
    let before = swarm.nodes("n1").expect("node ls");
    let label_before = by_host(&before, "n4")
        .and_then(|n| n.spec.as_ref())
        .and_then(|s| s.labels.get("seq").cloned());
    assert!(label_before.is_some());
    for node in ["n1", "n2", "n3", "n4"] {
        swarm.kill(node);
    }
    for node in ["n1", "n2", "n3", "n4"] {
        swarm.restart(node);
    }
    swarm.wait_nodes("all four ready after the restart", &MANAGERS, |nodes| {
        all_ready(nodes, 4)
    });
    let after = swarm.nodes("n2").expect("node ls");
    let ids = |nodes: &[pb::Node]| {
        let mut ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&after), ids(&before));
    let label_after = by_host(&after, "n4")
        .and_then(|n| n.spec.as_ref())
        .and_then(|s| s.labels.get("seq").cloned());
    assert_eq!(label_after, label_before);
    swarm.hive_ok(
        "n3",
        &["node", "update", "--label-add", "after=restart", "n4"],
    );
}

#[test]
fn losing_quorum_gives_dockers_error_and_the_swarm_recovers_when_managers_return() {
    if !privileged("losing_quorum_gives_dockers_error_and_the_swarm_recovers_when_managers_return")
    {
        return;
    }
    let _serial = support::serial();
    let mut swarm = Swarm::up("sw-quorum", 3, 3);
    swarm.kill("n2");
    swarm.kill("n3");
    // The survivor notices within a few probes; writes and reads then fail with docker's text.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let out = swarm.hive("n1", &["node", "update", "--label-add", "x=1", "n1"]);
        if !out.status.success() {
            assert_eq!(text(&out.stderr).trim(), LOST_QUORUM);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes still accepted without a quorum"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(swarm.hive_err("n1", &["node", "ls"]).trim(), LOST_QUORUM);
    // `info` is local and still answers.
    assert!(swarm.hive_ok("n1", &["info"]).contains("  Managers: 3\n"));

    swarm.restart("n2");
    swarm.restart("n3");
    let deadline = Instant::now() + PATIENCE;
    while !swarm
        .hive("n1", &["node", "update", "--label-add", "x=2", "n1"])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the swarm did not recover when the managers returned"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    swarm.wait_nodes("three managers again", &MANAGERS, |nodes| {
        nodes
            .iter()
            .filter(|n| {
                n.manager_status
                    .as_ref()
                    .is_some_and(|m| m.leader || m.reachability() == pb::Reachability::Reachable)
            })
            .count()
            == 3
    });
}

#[test]
fn force_new_cluster_recovers_the_swarm_from_its_only_surviving_manager() {
    if !privileged("force_new_cluster_recovers_the_swarm_from_its_only_surviving_manager") {
        return;
    }
    let _serial = support::serial();
    let mut swarm = Swarm::up("sw-force", 3, 3);
    // Acknowledged state from before the disaster.
    swarm.hive_ok("n1", &["node", "update", "--label-add", "kept=yes", "n1"]);
    swarm.kill("n2");
    swarm.kill("n3");
    swarm.wait_quorum_lost("n1");

    let init = swarm.hive_ok("n1", &["swarm", "init", "--force-new-cluster"]);
    assert!(init.contains("Swarm initialized"), "{init}");
    // n1 leads alone; the dead managers are kept as workers, down; the state survived.
    let ls = swarm.hive_ok("n1", &["node", "ls"]);
    assert_eq!(ls.matches("Leader").count(), 1, "{ls}");
    assert_eq!(ls.matches("Reachable").count(), 0, "{ls}");
    let nodes = swarm.nodes("n1").expect("node ls");
    assert_eq!(nodes.len(), 3, "{ls}");
    let n1 = by_host(&nodes, "n1").expect("n1");
    assert_eq!(
        n1.spec
            .as_ref()
            .and_then(|s| s.labels.get("kept"))
            .map(String::as_str),
        Some("yes"),
        "the label written before the quorum was lost"
    );
    assert!(!is_manager(by_host(&nodes, "n2")) && !is_manager(by_host(&nodes, "n3")));
    // Writes are accepted again.
    swarm.hive_ok("n1", &["node", "update", "--label-add", "after=yes", "n1"]);
    let info = swarm.hive_ok("n1", &["info"]);
    assert!(info.contains("  Managers: 1\n"), "{info}");
}
