//! The Swarm tutorials' commands replayed through the `hive` CLI, where hive answered
//! differently from Docker (issue 13, items 2, 4, 5, 6 and the manager's `swarm leave`).
//!
//! What a user checks: a flag hive does not know is refused before anything is created, and
//! what follows the image goes to the task; a task that keeps being rejected shows why in the
//! progress bar and Ctrl-C leaves the service as it is; `service ps` puts the running task of a
//! slot above its history; a manager is warned with the manager count before it leaves; and
//! with a node dead, then removed, create/scale/update/rollback still say "converged", while the
//! dead node's tasks read as Docker shows them.
//!
//! All of it runs on one swarm (3 nodes: managers n1 and n2, worker n3): lab setup is the slow
//! part. The scenarios run one after the other (each leaves the swarm as it found it); the one
//! that kills n3 runs last. Every failure is collected and reported together. The test needs
//! root; without it, it is skipped with a printed reason, or fails when `CI` is set. Waits are
//! bounded; nothing asserts on durations.

use crate::support;

use std::io::{BufRead as _, BufReader};
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hive::api::pb;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{HIVE, PATIENCE, Swarm, privileged, scenario, text, wait_output};

fn all_output(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// One row of `service ps`, the columns a user reads here.
#[derive(Debug, Clone)]
struct TaskRow {
    line: String,
    name: String,
    node: String,
    desired: String,
    current: String,
}

/// The rows of `service ps SERVICE`, cut at the header's column starts (a cell may be empty,
/// as NODE is for a task not placed yet).
fn ps_rows(swarm: &Swarm, service: &str) -> Vec<TaskRow> {
    let out = swarm.hive_ok("n1", &["service", "ps", service]);
    let mut lines = out.lines();
    let header: Vec<char> = lines.next().unwrap_or_default().chars().collect();
    let start = |column: &str| {
        let column: Vec<char> = column.chars().collect();
        header
            .windows(column.len())
            .position(|w| w == column.as_slice())
            .unwrap_or_else(|| panic!("no {column:?} column in service ps: {out}"))
    };
    let [name, image, node, desired, current, error] = [
        "NAME",
        "IMAGE",
        "NODE",
        "DESIRED STATE",
        "CURRENT STATE",
        "ERROR",
    ]
    .map(start);
    lines
        .map(|line| {
            let chars: Vec<char> = line.chars().collect();
            let cell = |from: usize, to: usize| {
                chars
                    .get(from.min(chars.len())..to.min(chars.len()))
                    .map(|c| c.iter().collect::<String>().trim().to_owned())
                    .unwrap_or_default()
            };
            TaskRow {
                line: line.to_owned(),
                name: cell(name, image),
                node: cell(node, desired),
                desired: cell(desired, current),
                current: cell(current, error),
            }
        })
        .collect()
}

fn table(rows: &[TaskRow]) -> String {
    rows.iter()
        .map(|r| r.line.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls `check` on `service ps SERVICE`'s rows until it holds; returns them.
fn wait_ps(
    swarm: &Swarm,
    service: &str,
    what: &str,
    check: impl Fn(&[TaskRow]) -> bool,
) -> Vec<TaskRow> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let rows = ps_rows(swarm, service);
        if check(&rows) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not seen within {PATIENCE:?}; service ps {service}:\n{}",
            table(&rows)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn service_names(swarm: &Swarm) -> Vec<String> {
    let mut client = swarm.client("n1");
    let list = swarm
        .rt
        .block_on(client.control.list_services())
        .expect("service ls");
    list.into_iter()
        .map(|s| s.service.spec.annotations.name)
        .collect()
}

/// Node IDs by hostname.
fn node_ids(swarm: &Swarm) -> Vec<(String, String)> {
    let mut nodes: Vec<(String, String)> = swarm
        .nodes("n1")
        .expect("node ls")
        .into_iter()
        .filter_map(|n| Some((n.description?.hostname, n.id)))
        .collect();
    nodes.sort();
    nodes
}

/// Item 2: every flag hive does not know, before the image, is refused with docker's words and
/// status, and nothing is created; what follows the image is the task's.
fn unknown_flags_are_refused_and_task_arguments_pass(swarm: &Swarm) {
    for flag in ["--dns-search", "--log-driver", "--nonexistent-flag"] {
        let out = swarm.hive(
            "n1",
            &[
                "service",
                "create",
                "--name",
                "t2",
                flag,
                "2",
                "hive/whoami",
            ],
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{flag}: {}", all_output(&out));
        assert_eq!(
            stderr,
            format!(
                "unknown flag: {flag}\n\n\
                 Usage:  hive service create [OPTIONS] IMAGE [COMMAND] [ARG...]\n\n\
                 Run 'hive service create --help' for more information\n"
            ),
            "{flag}"
        );
        assert!(text(&out.stdout).is_empty(), "{flag}: {}", all_output(&out));
    }
    let out = swarm.hive("n1", &["service", "update", "--nonexistent-flag", "t2"]);
    assert_eq!(out.status.code(), Some(125), "{}", all_output(&out));
    assert!(
        text(&out.stderr)
            .starts_with("unknown flag: --nonexistent-flag\n\nUsage:  hive service update"),
        "{}",
        all_output(&out)
    );
    assert!(
        !service_names(swarm).contains(&"t2".to_owned()),
        "a refused create made a service"
    );

    swarm.hive_ok(
        "n1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "a",
            "hive/echo",
            "--verbose",
            "-x",
        ],
    );
    // Docker's shape, as `docker service inspect` prints it.
    let inspected: serde_json::Value =
        serde_json::from_str(&swarm.hive_ok("n1", &["service", "inspect", "a"]))
            .expect("inspect JSON");
    let container = &inspected[0]["Spec"]["TaskTemplate"]["ContainerSpec"];
    assert_eq!(container["Image"], "hive/echo", "{inspected}");
    assert_eq!(
        container["Args"],
        serde_json::json!(["--verbose", "-x"]),
        "{inspected}"
    );
    swarm.hive_ok("n1", &["service", "rm", "a"]);
}

/// Item 5: tasks that cannot run show why in the progress bars while the display keeps
/// waiting; Ctrl-C ends the display only.
fn a_rejected_task_shows_its_error_and_ctrl_c_leaves_the_service(swarm: &Swarm) {
    let mut command = swarm.lab().command("n1", HIVE).expect("lab command");
    command
        .args([
            "service",
            "create",
            "--name",
            "toms",
            "--replicas",
            "3",
            "-p",
            "9000:8080",
            "tomcat:8.5.49",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn hive");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // The executor's refusal names the image (`image "tomcat:8.5.49" is not available: …`).
    let shows_error = |l: &String| l.starts_with("1/3: ") && l.contains("tomcat:8.5.49");
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    while !seen.iter().any(shows_error) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "no bar with the task's error within {PATIENCE:?}; progress:\n{}",
                    seen.join("\n")
                );
            }
        }
    }
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the display ended by itself although no task runs:\n{}",
        seen.join("\n")
    );
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    kill(pid, Signal::SIGINT).expect("SIGINT");
    let out = wait_output(child, "hive service create --name toms (after Ctrl-C)");
    reader.join().expect("reader");
    seen.extend(lines.try_iter());
    let all = format!("{}\n{}", seen.join("\n"), text(&out.stderr));
    assert!(out.status.success(), "Ctrl-C is not a failure: {all}");
    assert!(
        all.contains("Operation continuing in background.\nUse `hive service ps "),
        "{all}"
    );
    assert!(
        service_names(swarm).contains(&"toms".to_owned()),
        "Ctrl-C removed the service"
    );
    let rows = ps_rows(swarm, "toms");
    assert!(
        rows.iter().any(|r| r.current.starts_with("Rejected")),
        "{}",
        table(&rows)
    );
    swarm.hive_ok("n1", &["service", "rm", "toms"]);
}

/// Sets every node of `nodes` active again when dropped (also when a scenario fails midway).
struct Reactivate<'a> {
    swarm: &'a Swarm,
    nodes: Vec<String>,
}

impl Drop for Reactivate<'_> {
    fn drop(&mut self) {
        for node in &self.nodes {
            let _ = self
                .swarm
                .hive("n1", &["node", "update", "--availability", "active", node]);
        }
    }
}

/// Item 6: after a drain, the running task leads its slot and the stopped one follows as
/// history. The task starts on the node whose ID sorts first, so that ordering by node (the
/// old bug) and by age disagree.
fn service_ps_lists_the_running_task_above_its_history(swarm: &Swarm) {
    let nodes = node_ids(swarm);
    let first = nodes
        .iter()
        .min_by_key(|(_, id)| id.clone())
        .expect("nodes")
        .0
        .clone();
    let others: Vec<&str> = nodes
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|n| *n != first)
        .collect();
    let availability = |node: &str, value: &str| {
        swarm.hive_ok("n1", &["node", "update", "--availability", value, node]);
    };
    // Whatever happens below, every node is active again afterwards for the next scenario.
    let _reactivate = Reactivate {
        swarm,
        nodes: nodes.iter().map(|(name, _)| name.clone()).collect(),
    };
    for node in &others {
        availability(node, "drain");
    }
    swarm.hive_ok(
        "n1",
        &["service", "create", "-d", "--name", "hist", "hive/whoami"],
    );
    wait_ps(swarm, "hist", "hist.1 running on the first node", |rows| {
        rows.len() == 1 && rows[0].node == first && rows[0].current.starts_with("Running")
    });
    for node in &others {
        availability(node, "active");
    }
    availability(&first, "drain");
    let rows = wait_ps(
        swarm,
        "hist",
        "hist.1 running again off the drained node",
        |rows| {
            rows.len() == 2
                && rows
                    .iter()
                    .any(|r| r.node != first && r.current.starts_with("Running"))
        },
    );
    availability(&first, "active");
    let (running, history) = (&rows[0], &rows[1]);
    assert!(
        running.name == "hist.1" && running.node != first && running.current.starts_with("Running"),
        "the running task must lead:\n{}",
        table(&rows)
    );
    assert!(
        history.name == "\\_ hist.1" && history.node == first && history.desired == "Shutdown",
        "the drained node's task must follow as history:\n{}",
        table(&rows)
    );
    swarm.hive_ok("n1", &["service", "rm", "hist"]);
}

/// A manager's `swarm leave` without `--force` is refused with Docker's warning and the
/// manager count, and the node stays in the swarm.
fn a_manager_is_warned_before_leaving(swarm: &Swarm) {
    let stderr = swarm.hive_err("n2", &["swarm", "leave"]);
    assert!(
        stderr.contains(
            "Error response from daemon: You are attempting to leave the swarm on a node that is participating as a manager. \
             Removing this node leaves 1 managers out of 2. Without a Raft quorum your swarm will \
             be inaccessible. The only way to restore a swarm that has lost consensus is to \
             reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message."
        ),
        "{stderr}"
    );
    let info = swarm.hive_ok("n2", &["info"]);
    assert!(info.contains("Swarm: active"), "{info}");
}

/// Attached `hive ARGS` ends with docker's last progress line.
fn converges(swarm: &Swarm, args: &[&str]) {
    let out = swarm.hive("n1", args);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("verify: Service converged"),
        "`hive {}` did not converge:\n{}",
        args.join(" "),
        all_output(&out)
    );
}

/// Item 4: with n3's daemon killed, then n3 removed, the progress display converges as soon as
/// the desired tasks run elsewhere, and n3's tasks read as Docker shows them.
fn a_dead_node_does_not_hold_the_progress_display(swarm: &mut Swarm) {
    let n3 = node_ids(swarm)
        .into_iter()
        .find(|(name, _)| name == "n3")
        .expect("n3")
        .1;
    converges(
        swarm,
        &[
            "service",
            "create",
            "--name",
            "keep",
            "--replicas",
            "3",
            "hive/whoami",
        ],
    );
    wait_ps(swarm, "keep", "a task running on n3", |rows| {
        rows.iter()
            .any(|r| r.node == "n3" && r.current.starts_with("Running"))
    });
    swarm.kill("n3");
    swarm.wait_nodes("n3 down", &["n1"], |nodes| {
        nodes.iter().any(|n| {
            n.id == n3
                && n.status
                    .as_ref()
                    .is_some_and(|s| s.state() == pb::NodeState::Down)
        })
    });
    converges(swarm, &["service", "scale", "keep=5"]);
    converges(swarm, &["service", "update", "--env-add", "A=1", "keep"]);
    converges(swarm, &["service", "rollback", "keep"]);
    converges(
        swarm,
        &[
            "service",
            "create",
            "--name",
            "keep2",
            "--replicas",
            "2",
            "hive/whoami",
        ],
    );
    // While n3 exists, its tasks name it.
    let rows = ps_rows(swarm, "keep");
    assert!(rows.iter().any(|r| r.node == "n3"), "{}", table(&rows));

    swarm.hive_ok("n1", &["node", "rm", "n3"]);
    // Once n3 is gone, the tasks it never stopped are Orphaned, not Running.
    // Its tasks show its ID, as Docker's once the node cannot be resolved.
    let on_n3 = |rows: &[TaskRow]| -> Vec<TaskRow> {
        rows.iter().filter(|r| r.node == n3).cloned().collect()
    };
    let rows = wait_ps(swarm, "keep", "n3's tasks orphaned", |rows| {
        let on_n3 = on_n3(rows);
        !on_n3.is_empty()
            && on_n3
                .iter()
                .all(|r| !r.current.starts_with("Running") && !r.current.starts_with("Starting"))
    });
    assert!(
        on_n3(&rows)
            .iter()
            .any(|r| r.desired == "Shutdown" && r.current.starts_with("Orphaned")),
        "{}",
        table(&rows)
    );
    converges(swarm, &["service", "scale", "keep=2"]);
    swarm.hive_ok("n1", &["service", "rm", "keep", "keep2"]);
}

#[test]
fn swarm_tutorial_commands_answer_as_docker_does() {
    if !privileged("swarm_tutorial_commands_answer_as_docker_does") {
        return;
    }
    let _serial = support::serial();
    let mut swarm = Swarm::up("tc-tour", 3, 2);
    let mut failures = Vec::new();
    scenario(&mut failures, "unknown flags (item 2)", || {
        unknown_flags_are_refused_and_task_arguments_pass(&swarm)
    });
    scenario(&mut failures, "rejected tasks (item 5)", || {
        a_rejected_task_shows_its_error_and_ctrl_c_leaves_the_service(&swarm)
    });
    scenario(&mut failures, "service ps history (item 6)", || {
        service_ps_lists_the_running_task_above_its_history(&swarm)
    });
    scenario(&mut failures, "manager leave warning", || {
        a_manager_is_warned_before_leaving(&swarm)
    });
    // Last: it kills and removes n3.
    scenario(&mut failures, "dead node (item 4)", || {
        a_dead_node_does_not_hold_the_progress_display(&mut swarm)
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
