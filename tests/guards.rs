//! What a user types, or leaves on disk, must not take the swarm down (issue 14, items 1, 2
//! and 8): real `hive daemon`s in a lab of three managers, driven through the `hive` CLI.
//!
//! - The swarm's own ports (2377, 7946, the metrics port) cannot be published, and a service
//!   map entry forced onto them by hand does not take the managers' Raft traffic.
//! - A replica count that would wedge the orchestrator, and specs every node would reject, are
//!   refused at create; a task its node rejects is retried with its restart delay and a
//!   backoff, not in a loop of Raft writes.
//! - The data directory is private (0700/0600) after init and after a restart that found it
//!   open, the API socket is 0660, and a user without access is told "permission denied".
//!
//! One swarm serves every check (lab setup is slow); they run in order in one test and do not
//! disturb each other. The test needs root; without it it is skipped with a printed reason,
//! or fails when `CI` is set. Waits are bounded; nothing asserts on durations.

use crate::support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hive::api::pb;
use hive::store::objects::TaskState;
use hive_common::maps::{Frontend, IPPROTO_TCP, MAX_SERVICES, ServiceKey};
use hive_dataplane::maps::MeshMaps;
use hive_lab::naming;
use support::tasks::tasks;
use support::{HIVE, PATIENCE, Swarm, privileged, text, wait_output};

const LAB: &str = "tg-guard";
const NODES: [&str; 3] = ["n1", "n2", "n3"];
/// The user the permission check runs the CLI as.
const NOBODY: u32 = 65534;

fn member(node: &str) -> naming::Member {
    node.parse().expect("a lab node name")
}

#[test]
fn the_swarm_refuses_what_would_hurt_it_and_keeps_its_files_private() {
    if !privileged("the_swarm_refuses_what_would_hurt_it_and_keeps_its_files_private") {
        return;
    }
    let _serial = support::serial();
    let mut swarm = Swarm::up(LAB, 3, 3);

    reserved_ports_are_refused(&swarm);
    a_forced_map_entry_does_not_capture_raft_traffic(&swarm);
    a_huge_replica_count_and_specs_nodes_reject_are_refused(&swarm);
    a_rejected_task_is_retried_with_backoff(&swarm);
    files_are_private_after_init_and_after_a_restart(&mut swarm);
    a_user_without_access_is_told_permission_denied(&swarm);
}

/// `-p 2377`, `-p 7946/udp` and the metrics port are refused with the port and its owner, on
/// create and on update.
fn reserved_ports_are_refused(swarm: &Swarm) {
    let refused = [
        (
            "2377:80",
            "published port 2377/tcp is reserved: the swarm's managers use it for the cluster API and Raft",
        ),
        (
            "7946:80/udp",
            "published port 7946/udp is reserved: the swarm's nodes use it for gossip",
        ),
        (
            "9323:80",
            "published port 9323/tcp is reserved: hive daemons serve their metrics on it",
        ),
    ];
    for (publish, message) in refused {
        let err = swarm.hive_err(
            "n2",
            &[
                "service",
                "create",
                "-d",
                "--name",
                "taken",
                "-p",
                publish,
                "hive/whoami",
            ],
        );
        assert!(err.contains(message), "-p {publish}: {err}");
    }
    swarm.hive_line("n1", "service create -d --name web -p 8080:80 hive/whoami");
    let err = swarm.hive_err(
        "n3",
        &["service", "update", "--publish-add", "2377:80", "web"],
    );
    assert!(err.contains("published port 2377/tcp is reserved"), "{err}");
    let ls = swarm.hive_line("n1", "service ls");
    assert!(!ls.contains("taken"), "nothing was created: {ls}");
}

/// Every node's XDP program is given a published-port entry for 2377/tcp by hand (as a bug or
/// a stale pin could leave it): the managers' Raft traffic still reaches them, so writes still
/// commit through every manager.
fn a_forced_map_entry_does_not_capture_raft_traffic(swarm: &Swarm) {
    let key = ServiceKey {
        addr_be: 0,
        port_be: 2377u16.to_be(),
        proto: IPPROTO_TCP,
        _pad: 0,
    };
    // A service slot the agents never use: its Maglev ring is empty, so a balanced packet
    // would be dropped.
    let frontend = Frontend {
        service: MAX_SERVICES - 1,
        target_port_be: 80u16.to_be(),
        flags: Frontend::FLAG_PUBLISHED,
    };
    for node in NODES {
        let dir = naming::bpf_pin_dir(LAB, member(node));
        let mut maps = MeshMaps::open_pinned(&dir).expect("open the node's pinned maps");
        maps.put_frontend(&key, &frontend)
            .expect("force a published-port entry for 2377");
    }
    for (i, node) in NODES.iter().enumerate() {
        swarm.hive_ok(
            node,
            &[
                "service",
                "create",
                "-d",
                "--name",
                &format!("raft-ok-{i}"),
                "hive/whoami",
            ],
        );
    }
    swarm.wait_nodes("every manager reachable", &NODES, |nodes| {
        nodes.len() == 3
            && nodes.iter().all(|n| {
                n.manager_status
                    .as_ref()
                    .is_some_and(|m| m.reachability == i32::from(pb::Reachability::Reachable))
            })
    });
    for node in NODES {
        let dir = naming::bpf_pin_dir(LAB, member(node));
        let mut maps = MeshMaps::open_pinned(&dir).expect("open the node's pinned maps");
        maps.remove_frontend(&key).expect("remove the forced entry");
    }
}

fn a_huge_replica_count_and_specs_nodes_reject_are_refused(swarm: &Swarm) {
    let err = swarm.hive_err(
        "n1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "huge",
            "--replicas",
            "18446744073709551615",
            "hive/whoami",
        ],
    );
    assert!(
        err.contains("invalid replicas value 18446744073709551615"),
        "{err}"
    );
    let err = swarm.hive_err(
        "n2",
        &[
            "service",
            "update",
            "--replicas",
            "18446744073709551615",
            "web",
        ],
    );
    assert!(err.contains("invalid replicas value"), "{err}");

    let long_hostname = "h".repeat(300);
    let rejected = [
        (
            vec!["--limit-memory", "1b"],
            "Minimum memory limit allowed is 6MB",
        ),
        (
            vec!["-w", "relative/dir"],
            "the working directory 'relative/dir' is invalid, it needs to be an absolute path",
        ),
        (
            vec!["--hostname", long_hostname.as_str()],
            "invalid hostname",
        ),
    ];
    for (flags, message) in rejected {
        let mut args = vec!["service", "create", "-d", "--name", "reject"];
        args.extend(&flags);
        args.push("hive/whoami");
        let err = swarm.hive_err("n1", &args);
        assert!(err.contains(message), "{flags:?}: {err}");
    }
    let ls = swarm.hive_line("n1", "service ls");
    assert!(!ls.contains("huge") && !ls.contains("reject"), "{ls}");
}

/// The leader's Raft applied index, from its metrics endpoint.
fn applied_index(swarm: &Swarm) -> u64 {
    let leader = swarm.leader("n1").expect("a leader");
    let body = swarm.metrics(&leader);
    body.lines()
        .find_map(|l| l.strip_prefix("hive_raft_last_applied_index "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no hive_raft_last_applied_index in {body}"))
}

/// A task its node rejects (an image no node has) is retried with the restart delay and a
/// backoff: over 10 s, a handful of retries and Raft entries, not hundreds.
fn a_rejected_task_is_retried_with_backoff(swarm: &Swarm) {
    swarm.hive_line(
        "n1",
        "service create -d --name bad --restart-delay 1s nosuch/image",
    );
    let deadline = Instant::now() + PATIENCE;
    while !tasks(swarm, "bad")
        .iter()
        .any(|t| t.status.state == TaskState::Rejected)
    {
        assert!(Instant::now() < deadline, "no rejected task of bad");
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = applied_index(swarm);
    let mut seen = BTreeSet::new();
    let window = Instant::now() + Duration::from_secs(10);
    while Instant::now() < window {
        seen.extend(tasks(swarm, "bad").into_iter().map(|t| t.id));
        std::thread::sleep(Duration::from_millis(100));
    }
    let entries = applied_index(swarm) - before;
    println!(
        "a rejected service over 10 s: {} tasks seen, {entries} Raft entries",
        seen.len()
    );
    // With a 1 s delay doubling per rejection: retries ~1, 3 and 7 s after the first, and
    // the history already there. A hot loop made ~80 entries and ~10 tasks per second.
    assert!(
        (2..=10).contains(&seen.len()),
        "tasks of bad seen over 10 s: {}",
        seen.len()
    );
    assert!(
        entries < 200,
        "{entries} Raft entries in 10 s with one rejected service"
    );
    swarm.hive_line("n1", "service rm bad");
}

/// Every entry under `dir` with a mode other than 0700 (directories) or 0600 (files).
fn open_entries(dir: &Path) -> Vec<String> {
    let mut open = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode() & 0o7777;
        if mode != 0o700 {
            open.push(format!("{} {mode:o}", dir.display()));
        }
        for entry in std::fs::read_dir(&dir).expect("list").flatten() {
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                let mode = entry.metadata().expect("stat").permissions().mode() & 0o7777;
                if mode != 0o600 {
                    open.push(format!("{} {mode:o}", entry.path().display()));
                }
            }
        }
    }
    open
}

fn files_are_private_after_init_and_after_a_restart(swarm: &mut Swarm) {
    for node in NODES {
        let data = naming::data_dir(LAB, member(node));
        assert!(
            data.join("raft").is_dir(),
            "{node} is a manager with a store"
        );
        let open = open_entries(&data);
        assert!(open.is_empty(), "{node}: not private after init: {open:#?}");
        let socket = naming::api_socket(LAB, member(node));
        let mode = std::fs::metadata(&socket)
            .expect("socket")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o660, "{node}'s API socket");
    }
    // As an earlier hive left them: the store readable by everyone.
    let data = naming::data_dir(LAB, member("n2"));
    for (path, mode) in [
        (data.clone(), 0o755),
        (data.join("raft"), 0o755),
        (data.join("raft/state.redb"), 0o644),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    swarm.restart("n2");
    let open = open_entries(&data);
    assert!(
        open.is_empty(),
        "n2: not private after a restart: {open:#?}"
    );
}

/// The CLI run as `nobody` cannot use the socket, and says so as docker does.
fn a_user_without_access_is_told_permission_denied(swarm: &Swarm) {
    // A copy `nobody` may execute, whatever the permissions of the build directory.
    let bin = tempfile::tempdir().expect("temporary directory");
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let hive = bin.path().join("hive");
    std::fs::copy(HIVE, &hive).expect("copy hive");
    let socket = naming::api_socket(LAB, member("n1"));
    let host = format!("unix://{}", socket.display());
    let child = Command::new(&hive)
        .args(["-H", &host, "info"])
        .uid(NOBODY)
        .gid(NOBODY)
        .env_remove("HIVE_LAB")
        .env_remove("HIVE_NODE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hive as nobody");
    let out = wait_output(child, "hive info as nobody");
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "nobody used the daemon: {}",
        text(&out.stdout)
    );
    assert!(
        stderr.contains(&format!(
            "permission denied while trying to connect to the hive daemon socket at {host}"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("Is the hive daemon running?"), "{stderr}");
    // Root still can.
    swarm.hive_line("n1", "info");
}
