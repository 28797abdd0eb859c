//! Pre-vote on a lab (issue 14, item 3): a manager cut off from the others, and back after
//! several election timeouts, does not depose the healthy leader — its candidacies were
//! withheld while it could not win, so it comes back with the leader's term and follows.
//!
//! The test needs root; without it it is skipped with a printed reason, or fails when `CI` is
//! set. Waits are bounded; no assertion is on a duration.

use crate::support;

use std::time::Duration;

use hive::api::pb;
use support::{Swarm, privileged};

/// How long the manager stays cut off: openraft would have it stand for election about once a
/// second, each time with a higher term.
const CUT_OFF: Duration = Duration::from_secs(5);

/// The Raft term `node`'s daemon reports on its metrics endpoint.
fn raft_term(swarm: &Swarm, node: &str) -> u64 {
    let metrics = swarm.metrics(node);
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("hive_raft_term "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|term| term as u64)
        .unwrap_or_else(|| panic!("no hive_raft_term in {node}'s metrics:\n{metrics}"))
}

fn link(swarm: &Swarm, node: &str, state: &str) {
    let status = swarm
        .lab()
        .command(node, "ip")
        .expect("lab command")
        .args(["link", "set", "dev", "eth0", state])
        .status()
        .expect("ip link set");
    assert!(status.success(), "ip link set dev eth0 {state} in {node}");
}

fn reachability(nodes: &[pb::Node], name: &str) -> Option<pb::Reachability> {
    nodes
        .iter()
        .find(|n| n.description.as_ref().is_some_and(|d| d.hostname == name))
        .and_then(|n| n.manager_status.as_ref())
        .map(|m| m.reachability())
}

#[test]
fn a_manager_cut_off_and_back_does_not_depose_the_leader() {
    if !privileged("a_manager_cut_off_and_back_does_not_depose_the_leader") {
        return;
    }
    let _serial = support::serial();
    let swarm = Swarm::up("tpv", 3, 3);
    let leader = swarm.leader("n1").expect("a leader");
    let returning = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != leader)
        .expect("a follower");
    let term = raft_term(&swarm, &leader);

    link(&swarm, returning, "down");
    swarm.wait_nodes(&format!("{returning} unreachable"), &[&leader], |nodes| {
        reachability(nodes, returning) == Some(pb::Reachability::Unreachable)
    });
    std::thread::sleep(CUT_OFF);
    link(&swarm, returning, "up");

    // Back: the leader sees it keeping up, and a write forwarded through it is applied.
    swarm.wait_nodes(&format!("{returning} reachable"), &[&leader], |nodes| {
        reachability(nodes, returning) == Some(pb::Reachability::Reachable)
    });
    swarm.hive_line(
        returning,
        "service create -d --name after-return hive/whoami",
    );

    assert_eq!(
        swarm.leader(returning).as_deref(),
        Some(leader.as_str()),
        "the leader changed when {returning} came back"
    );
    assert_eq!(
        raft_term(&swarm, &leader),
        term,
        "{returning} came back with a higher term and forced an election"
    );
}
