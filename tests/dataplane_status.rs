//! A daemon whose data plane failed to load (issue 15, item 6): it says so where a user
//! looks (`hive info`, `hive node inspect`) and gets none of the tasks that need it, instead of
//! running them cut off from their networks.
//!
//! The failure is provoked without a test hook: a one-node swarm advertising 127.0.0.1, an
//! address the data plane refuses (it will not attach XDP to `lo`), as a user trying hive
//! on one machine might. The test needs root; without it it is skipped with a printed
//! reason, or fails when `CI` is set. Waits are bounded.

use crate::support;

use std::path::Path;
use std::process::{Child, Output};
use std::time::Instant;

use hive::lab_swarm;
use hive_lab::{Lab, LabGuard, LabSpec};
use support::{HIVE, PATIENCE, hive_in, privileged, runtime, text};

const LOOPBACK_CAUSE: &str = "the advertise address 127.0.0.1 is a loopback address";

/// The lab and its one daemon; the lab goes down (tasks included) before the daemon is
/// reaped, also when the test fails.
struct OneNode {
    lab: Option<LabGuard>,
    daemon: Child,
}

impl Drop for OneNode {
    fn drop(&mut self) {
        drop(self.lab.take());
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

impl OneNode {
    fn lab(&self) -> &Lab {
        self.lab.as_deref().expect("the lab is up until dropped")
    }

    fn hive(&self, args: &[&str]) -> Output {
        hive_in(self.lab(), "n1", args)
    }

    fn hive_ok(&self, args: &[&str]) -> Output {
        let out = self.hive(args);
        assert!(
            out.status.success(),
            "hive {}: {}{}",
            args.join(" "),
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }
}

#[test]
fn a_node_whose_data_plane_failed_says_so_and_refuses_tasks_that_need_it() {
    if !privileged("a_node_whose_data_plane_failed_says_so_and_refuses_tasks_that_need_it") {
        return;
    }
    let _group = support::file_group();
    let lab = LabGuard::up(&LabSpec::new("hn-dpfail", 1)).expect("lab up");
    let daemon = lab_swarm::start_daemon(&lab, "n1", Path::new(HIVE)).expect("start daemon");
    let node = OneNode {
        lab: Some(lab),
        daemon,
    };
    runtime()
        .block_on(lab_swarm::connect(node.lab(), "n1", PATIENCE))
        .expect("the daemon answers");

    // First as it should be (the daemon advertises the lab's underlay): the data plane
    // loads, nothing is reported, a published port's task runs.
    node.hive_ok(&["swarm", "init"]);
    node.hive_ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        "hive/whoami",
    ]);
    wait_ps(&node, "web", "Running", |ps| {
        current_states(ps).iter().any(|s| s.starts_with("Running"))
    });
    let info = node.hive_ok(&["info"]);
    assert!(
        !text(&info.stderr).contains("WARNING"),
        "{}",
        text(&info.stderr)
    );
    let pretty = text(
        &node
            .hive_ok(&["node", "inspect", "--pretty", "self"])
            .stdout,
    );
    assert!(!pretty.contains("Data Plane"), "{pretty}");
    node.hive_ok(&["swarm", "leave", "--force"]);

    // Then advertising loopback, where the data plane cannot load.
    node.hive_ok(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);

    // `hive info`: the report as before, the warning on stderr with the cause.
    let info = node.hive_ok(&["info"]);
    assert!(
        text(&info.stdout).contains(" Swarm: active"),
        "{}",
        text(&info.stdout)
    );
    let warning = text(&info.stderr);
    assert!(
        warning.contains("WARNING: the data plane of this node failed to load: ")
            && warning.contains(LOOPBACK_CAUSE),
        "{warning}"
    );

    // `hive node inspect`: the cause, once the node registered.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let pretty = text(
            &node
                .hive_ok(&["node", "inspect", "--pretty", "self"])
                .stdout,
        );
        if pretty.contains("Data Plane Error:") {
            assert!(pretty.contains(LOOPBACK_CAUSE), "{pretty}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no data plane error shown: {pretty}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let json = text(&node.hive_ok(&["node", "inspect", "self"]).stdout);
    assert!(json.contains("\"DataplaneError\""), "{json}");

    // A published port needs the data plane: the scheduler places its task on no node
    // whose data plane failed (this is the only one), and it never runs.
    node.hive_ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        "hive/whoami",
    ]);
    // Pending from the allocator first, then with the scheduler's explanation.
    let ps = wait_ps(
        &node,
        "web",
        "Pending with the scheduler's explanation",
        |ps| {
            current_states(ps).iter().any(|s| s.starts_with("Pending"))
                && ps.contains("no suitable node (data plane failed to load on 1 node)")
        },
    );
    assert!(
        !current_states(&ps).iter().any(|s| s.starts_with("Running")),
        "{ps}"
    );
}

/// The CURRENT STATE column of each task row of `service ps`, cut at the header's columns
/// (an unplaced task has an empty NODE, so splitting on spaces would shift the columns).
fn current_states(ps: &str) -> Vec<String> {
    let mut lines = ps.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let (Some(from), Some(to)) = (header.find("CURRENT STATE"), header.find("ERROR")) else {
        panic!("no CURRENT STATE and ERROR columns: {ps}");
    };
    lines
        .filter_map(|line| line.get(from..to.min(line.len())))
        .map(|state| state.trim().to_owned())
        .collect()
}

/// `service ps --no-trunc service` once `reached` holds for it, polled (bounded).
fn wait_ps(node: &OneNode, service: &str, what: &str, reached: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let ps = text(
            &node
                .hive_ok(&["service", "ps", "--no-trunc", service])
                .stdout,
        );
        if reached(&ps) {
            return ps;
        }
        assert!(Instant::now() < deadline, "no task {what}: {ps}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
