//! Health checks as Docker's, and a mesh that routes new flows only to tasks that serve
//! (issue 20, item 1; docs/health.md). Real daemons in a lab, built-in whoami tasks whose
//! check runs inside each task's namespaces, requests from the lab's outside `client` to a
//! published port on every node.

use crate::support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hive::store::objects::{Health, TaskState};
use support::tasks::{hostname, hostnames, live, probe, tasks, wait_mesh, wait_tasks};
use support::{PATIENCE, Swarm, privileged};

const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// A directory the checks read, removed when the test ends.
struct CheckDir(PathBuf);

impl CheckDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hlt-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("check directory");
        Self(dir)
    }
}

impl Drop for CheckDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_task_whose_check_fails_gets_no_new_request_and_is_replaced() {
    if !privileged("a_task_whose_check_fails_gets_no_new_request_and_is_replaced") {
        return;
    }
    let _serial = support::serial();
    let dir = CheckDir::new("fail");
    let swarm = Swarm::up("hlt-fail", 3, 1);
    // Healthy unless the test marks a task sick: the check runs in the task's UTS namespace,
    // so `hostname` is the task's.
    let check = format!("test ! -e {}/sick-$(hostname)", dir.0.display());
    swarm.hive_ok(
        "n1",
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--replicas",
            "3",
            "-p",
            "8080:80",
            "--health-cmd",
            &check,
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
            "hive/whoami",
        ],
    );
    let running = wait_tasks(&swarm, "web", "3 healthy tasks", |t| {
        let live = live(t);
        live.len() == 3
            && live
                .iter()
                .all(|t| t.status.health == Some(Health::Healthy))
    });
    let first = live(&running);
    let all = hostnames(&first);
    wait_mesh(&swarm, &NODES, 8080, &all, 24);
    let ps = swarm.hive_ok("n1", &["service", "ps", "web"]);
    assert_eq!(
        ps.lines().filter(|l| l.contains("(healthy)")).count(),
        3,
        "service ps shows each task's health as docker ps does:\n{ps}"
    );

    // One task's check starts failing: within an interval (plus the time to tell every
    // node), no node sends it a new request any more.
    let sick = first[0];
    let sick_name = hostname(sick);
    std::fs::write(dir.0.join(format!("sick-{sick_name}")), b"").expect("mark sick");
    let marked = Instant::now();
    let healthy: BTreeSet<String> = all.iter().filter(|h| **h != sick_name).cloned().collect();
    for node in NODES {
        loop {
            let answers = probe(&swarm, node, 8080, 12);
            if !answers.hosts.contains_key(&sick_name) && answers.failures == 0 {
                break;
            }
            assert!(
                marked.elapsed() < PATIENCE,
                "{node} still sends new requests to the unhealthy task: {:?}",
                answers.hosts
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    eprintln!(
        "an unhealthy task left every node's mesh {:?} after its check started failing (interval 1s)",
        marked.elapsed()
    );
    // And it stays out: many requests on every node, none to it.
    for node in NODES {
        let answers = probe(&swarm, node, 8080, 30);
        assert!(
            !answers.hosts.contains_key(&sick_name),
            "{node}: {:?}",
            answers.hosts
        );
        assert_eq!(answers.failures, 0, "{node}: {:?}", answers.hosts);
    }

    // Swarm's words for it, and a replacement that is healthy and serves.
    let replaced = wait_tasks(&swarm, "web", "the unhealthy task replaced", |t| {
        let failed = t.iter().find(|t| t.id == sick.id);
        failed.is_some_and(|f| f.status.state == TaskState::Failed)
            && live(t).len() == 3
            && live(t)
                .iter()
                .all(|t| t.status.health == Some(Health::Healthy))
    });
    let failed = replaced.iter().find(|t| t.id == sick.id).expect("the task");
    assert!(
        failed.status.err.starts_with("task: non-zero exit (")
            && failed.status.err.ends_with("): unhealthy container"),
        "{:?}",
        failed.status.err
    );
    let now = hostnames(&live(&replaced));
    assert!(
        now.is_superset(&healthy) && !now.contains(&sick_name),
        "{now:?}"
    );
    wait_mesh(&swarm, &NODES, 8080, &now, 24);
    let ps = swarm.hive_ok("n1", &["service", "ps", "--no-trunc", "web"]);
    assert!(ps.contains("): unhealthy container"), "{ps}");
}

#[test]
fn a_task_that_never_becomes_healthy_is_never_in_the_mesh() {
    if !privileged("a_task_that_never_becomes_healthy_is_never_in_the_mesh") {
        return;
    }
    let _serial = support::serial();
    let swarm = Swarm::up("hlt-never", 2, 1);
    swarm.hive_ok(
        "n1",
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "sick",
            "-p",
            "8081:80",
            "--health-cmd",
            "false",
            "--health-interval",
            "1s",
            "--health-retries",
            "2",
            "hive/whoami",
        ],
    );
    // Started, and starting: service ps says so as docker ps does.
    wait_tasks(&swarm, "sick", "a task starting", |t| {
        t.iter().any(|t| {
            t.status.state == TaskState::Starting && t.status.health == Some(Health::Starting)
        })
    });
    let ps = swarm.hive_ok("n1", &["service", "ps", "sick"]);
    assert!(ps.contains("(health: starting)"), "{ps}");
    // While its tasks start, fail their check and are replaced, none ever runs and no
    // request reaches one.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = tasks(&swarm, "sick");
        assert!(
            seen.iter().all(|t| t.status.state != TaskState::Running),
            "a task that never passed its check runs: {seen:#?}"
        );
        for node in ["n1", "n2"] {
            let answers = probe(&swarm, node, 8081, 3);
            assert!(answers.hosts.is_empty(), "{node}: {:?}", answers.hosts);
        }
        let failed = seen
            .iter()
            .filter(|t| {
                t.status.state == TaskState::Failed && t.status.err.ends_with("unhealthy container")
            })
            .count();
        if failed >= 1 && seen.len() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no unhealthy task replaced: {seen:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
