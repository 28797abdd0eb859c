//! hive's own `inspect` commands print the Engine API's objects (issue 17, "Object JSON in
//! Docker's shape"), `docker swarm ca [--rotate]` works through the Engine API, and a
//! service's `UpdateStatus` is the one `docker service update` follows. The client is the
//! stock docker CLI 28.2.2, unmodified, against a lab manager's socket.
//!
//! One swarm (manager n1, worker n2). The scenarios run in order, each recording its failure
//! instead of stopping the others. Needs root (skipped with a reason without it, fails when
//! `CI` is set) and the docker CLI at `/usr/local/bin/docker`.

use crate::support;

use std::path::Path;

use serde_json::Value;
use support::docker_cli::{DOCKER, all, converged, docker, docker_ok, wait_docker};
use support::tasks::wait_running;
use support::{Swarm, privileged, scenario, text};

const LAB: &str = "engine-insp";

fn json(what: &str, out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{what} printed no JSON ({e}): {out}"))
}

/// Where `a` and `b` differ, as JSON paths with both values.
fn differences(path: &str, a: &Value, b: &Value, found: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let (l, r) = (
                    x.get(key).unwrap_or(&Value::Null),
                    y.get(key).unwrap_or(&Value::Null),
                );
                differences(&format!("{path}.{key}"), l, r, found);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (l, r)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), l, r, found);
            }
        }
        // Go prints a float64 zero as `0`, serde as `0.0`: the same JSON number.
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if a != b => found.push(format!("{path}: hive {a} / docker {b}")),
        _ => {}
    }
}

/// `hive KIND inspect ARGS` and `docker KIND inspect ARGS` print the same JSON.
fn same_inspect(swarm: &Swarm, args: &[&str]) -> Value {
    let hive = json(
        &format!("hive {}", args.join(" ")),
        &swarm.hive_ok("n1", args),
    );
    let docker = json(
        &format!("docker {}", args.join(" ")),
        &docker_ok(swarm, args),
    );
    let mut found = Vec::new();
    differences("", &hive, &docker, &mut found);
    assert!(
        found.is_empty(),
        "`{}` differs between hive and docker:\n{}",
        args.join(" "),
        found.join("\n")
    );
    assert!(
        hive.as_array().is_some_and(|a| !a.is_empty()),
        "an array of objects: {hive}"
    );
    hive
}

#[test]
fn hive_inspect_is_docker_inspect_and_docker_swarm_ca_rotates() {
    if !privileged("hive_inspect_is_docker_inspect_and_docker_swarm_ca_rotates") {
        return;
    }
    assert!(
        Path::new(DOCKER).exists(),
        "the stock docker CLI is expected at {DOCKER}"
    );
    let _serial = support::serial();
    let swarm = Swarm::up(LAB, 2, 1);
    let mut failures = Vec::new();

    scenario(&mut failures, "service, node and network inspect", || {
        docker_ok(
            &swarm,
            &[
                "network",
                "create",
                "-d",
                "overlay",
                "--label",
                "tier=front",
                "insnet",
            ],
        );
        swarm.hive_line(
            "n1",
            "service create -d --name insweb --replicas 2 --network insnet -p 8493:80 --label app=web hive/whoami",
        );
        wait_running(&swarm, "insweb", 2);
        // Updated once, so that it has a PreviousSpec and an UpdateStatus too.
        swarm.hive_line("n1", "service update --env-add LEVEL=2 insweb");
        let service = same_inspect(&swarm, &["service", "inspect", "insweb"]);
        assert_eq!(service[0]["Spec"]["Name"], "insweb", "{service}");
        assert_eq!(service[0]["Spec"]["Labels"]["app"], "web", "{service}");
        assert!(service[0]["PreviousSpec"].is_object(), "{service}");
        same_inspect(&swarm, &["node", "inspect", "self"]);
        let nodes = same_inspect(&swarm, &["node", "inspect", "n1", "n2"]);
        assert_eq!(nodes.as_array().map(Vec::len), Some(2), "{nodes}");
        let network = same_inspect(&swarm, &["network", "inspect", "insnet"]);
        assert_eq!(network[0]["Labels"]["tier"], "front", "{network}");
        assert_eq!(network[0]["Driver"], "overlay", "{network}");

        // A script written against docker's shape reads hive's the same way.
        for args in [
            &[
                "node",
                "inspect",
                "--format",
                "{{.ManagerStatus.Addr}}",
                "self",
            ][..],
            &[
                "service",
                "inspect",
                "--format",
                "{{.Spec.Name}} {{json .Spec.Labels}}",
                "insweb",
            ],
            &[
                "network",
                "inspect",
                "-f",
                "{{.Name}} {{.Driver}} {{.Scope}}",
                "insnet",
            ],
        ] {
            let hive = swarm.hive_ok("n1", args);
            assert!(!hive.trim().is_empty(), "{args:?}");
            assert_eq!(hive, docker_ok(&swarm, args), "{args:?}");
        }
        let pretty = swarm.hive_ok("n1", &["service", "inspect", "--pretty", "insweb"]);
        assert!(pretty.contains("Name:"), "--pretty stays human: {pretty}");
    });

    scenario(&mut failures, "secret and config inspect", || {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("data");
        std::fs::write(&file, "worker_processes 1;\n").expect("write");
        let file = file.display().to_string();
        swarm.hive_ok("n1", &["secret", "create", "inspw", &file]);
        swarm.hive_ok("n1", &["config", "create", "insconf", &file]);
        let secret = same_inspect(&swarm, &["secret", "inspect", "inspw"]);
        assert!(secret[0]["Spec"].get("Data").is_none(), "{secret}");
        let config = same_inspect(&swarm, &["config", "inspect", "insconf"]);
        assert_eq!(
            config[0]["Spec"]["Data"], "d29ya2VyX3Byb2Nlc3NlcyAxOwo=",
            "{config}"
        );
    });

    scenario(&mut failures, "UpdateStatus", || {
        // `docker service update` follows the update to its end.
        let out = docker(
            &swarm,
            &["service", "update", "--env-add", "LEVEL=3", "insweb"],
        );
        let shown = all(&out);
        assert!(out.status.success(), "service update: {shown}");
        assert!(converged(&shown), "{shown}");
        let format = [
            "service",
            "inspect",
            "--format",
            "{{.UpdateStatus.State}}",
            "insweb",
        ];
        wait_docker(&swarm, &format, |s| s.trim() == "completed");
        assert_eq!(swarm.hive_ok("n1", &format).trim(), "completed");
        let status = &same_inspect(&swarm, &["service", "inspect", "insweb"])[0]["UpdateStatus"];
        assert_eq!(status["Message"], "update completed", "{status}");
        assert!(status["StartedAt"].is_string() && status["CompletedAt"].is_string());

        // A scale replaces no task: the last update's `completed` must not end the display
        // before the new replica runs.
        let out = docker(&swarm, &["service", "scale", "insweb=3"]);
        let shown = all(&out);
        assert!(out.status.success(), "service scale: {shown}");
        assert!(converged(&shown), "{shown}");
        let ps = docker_ok(&swarm, &["service", "ps", "insweb"]);
        assert_eq!(
            ps.lines()
                .filter(|l| l.contains("Running") && !l.contains("\\_"))
                .count(),
            3,
            "{ps}"
        );
    });

    scenario(&mut failures, "docker swarm ca --rotate", || {
        let root = docker_ok(&swarm, &["swarm", "ca"]);
        assert!(root.starts_with("-----BEGIN CERTIFICATE-----"), "{root}");
        assert_eq!(root.trim(), swarm.hive_ok("n1", &["swarm", "ca"]).trim());
        let out = docker(&swarm, &["swarm", "ca", "--rotate"]);
        let shown = all(&out);
        assert!(out.status.success(), "swarm ca --rotate: {shown}");
        // Without a terminal docker prints each progress state as a line.
        assert!(shown.contains("desired root digest: sha256:"), "{shown}");
        let new_root = text(&out.stdout)
            .find("-----BEGIN CERTIFICATE-----")
            .map(|at| text(&out.stdout)[at..].trim().to_owned())
            .unwrap_or_else(|| panic!("no root printed: {shown}"));
        assert_ne!(new_root, root.trim(), "a new root");
        assert_eq!(docker_ok(&swarm, &["swarm", "ca"]).trim(), new_root);
        assert_eq!(swarm.hive_ok("n1", &["swarm", "ca"]).trim(), new_root);
        // Every node trusts it alone and holds a certificate it issued.
        let nodes = json(
            "docker node inspect",
            &docker_ok(&swarm, &["node", "inspect", "n1", "n2"]),
        );
        for node in nodes.as_array().into_iter().flatten() {
            let tls = &node["Description"]["TLSInfo"];
            assert_eq!(
                tls["TrustRoot"].as_str().map(str::trim),
                Some(new_root.as_str()),
                "{node}"
            );
        }
        wait_docker(&swarm, &["node", "ls"], |s| {
            s.lines().skip(1).filter(|l| l.contains(" Ready ")).count() == 2
        });
        // The swarm still works: a service converges through the new certificates.
        let out = docker(
            &swarm,
            &[
                "service",
                "create",
                "--name",
                "afterca",
                "--replicas",
                "2",
                "hive/whoami",
            ],
        );
        let shown = all(&out);
        assert!(
            out.status.success(),
            "service create after the rotation: {shown}"
        );
        assert!(converged(&shown), "{shown}");
    });

    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
