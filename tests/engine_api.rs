//! The Docker Engine API (issue 17) driven by real Docker clients: the stock `docker` CLI
//! 28.2.2, unmodified, and docker-py, against a lab swarm's `hive daemon`s, plus the bad
//! requests a daemon must survive, answered with dockerd's status codes.
//!
//! One swarm (3 nodes: manager n1, workers n2 and n3): lab setup is the slow part. The
//! scenarios run in order, each recording its failure instead of stopping the others. Needs
//! root (skipped with a reason without it, fails when `CI` is set) and the docker CLI at
//! `/usr/local/bin/docker`; docker-py comes from `cargo xtask setup`.

use crate::support;

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hive_lab::Member;
use hive_lab::naming;
use support::docker_cli::{
    DOCKER, DOCKER_PY, all, converged, docker_in, docker_ok_on, http, lab_docker, service_json,
};
use support::tasks::{hostnames, live, wait_answered, wait_running};
use support::{PATIENCE, Swarm, privileged, scenario, text, wait_output};

const LAB: &str = "eapi";

fn socket(node: u8) -> PathBuf {
    naming::docker_socket(LAB, Member::Node(node))
}

#[test]
fn docker_clients_drive_a_lab_swarm() {
    if !privileged("docker_clients_drive_a_lab_swarm") {
        return;
    }
    assert!(
        Path::new(DOCKER).exists(),
        "the stock docker CLI is expected at {DOCKER}"
    );
    let _serial = support::serial();
    let swarm = Swarm::up(LAB, 3, 1);
    let mut failures = Vec::new();

    scenario(&mut failures, "ping headers", || {
        let mut stream = UnixStream::connect(socket(1)).expect("connect");
        stream
            .write_all(b"HEAD /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
            .expect("send");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        for header in [
            "api-version: 1.50",
            "ostype: linux",
            "swarm: active/manager",
        ] {
            assert!(
                answer.to_ascii_lowercase().contains(header),
                "no `{header}` in {answer}"
            );
        }
    });

    scenario(&mut failures, "docker version and info", || {
        let version = docker_ok_on(&swarm, "n1", &["version"]);
        assert!(
            version.contains("1.50 (minimum version 1.24)"),
            "docker version: {version}"
        );
        let info = docker_ok_on(&swarm, "n1", &["info"]);
        for line in [
            "Swarm: active",
            "Is Manager: true",
            "Managers: 1",
            "Nodes: 3",
        ] {
            assert!(info.contains(line), "no `{line}` in docker info: {info}");
        }
    });

    scenario(&mut failures, "docker node ls", || {
        let out = docker_ok_on(&swarm, "n1", &["node", "ls"]);
        for node in ["n1", "n2", "n3"] {
            let line = out
                .lines()
                .find(|l| l.split_whitespace().any(|w| w == node))
                .unwrap_or_else(|| panic!("{node} missing from docker node ls: {out}"));
            assert!(line.contains("Ready"), "{line}");
            if node == "n1" {
                assert!(line.contains(" * ") && line.contains("Leader"), "{line}");
            } else {
                assert!(!line.contains('*') && !line.contains("Leader"), "{line}");
            }
        }
    });

    scenario(
        &mut failures,
        "docker service create converges and publishes",
        || {
            let out = docker_in(
                &swarm,
                "n1",
                None,
                &[
                    "service",
                    "create",
                    "--name",
                    "web",
                    "--replicas",
                    "3",
                    "-p",
                    "8080:80",
                    "hive/whoami",
                ],
            );
            let shown = all(&out);
            assert!(out.status.success(), "docker service create: {shown}");
            assert!(converged(&shown), "{shown}");
            let tasks = wait_running(&swarm, "web", 3);
            let hosts = hostnames(&live(&tasks));
            wait_answered(&swarm, "n2", 8080, &hosts, 6);
        },
    );

    scenario(&mut failures, "docker service ls, ps and inspect", || {
        let ls = docker_ok_on(&swarm, "n1", &["service", "ls"]);
        let line = ls
            .lines()
            .find(|l| l.contains("web"))
            .unwrap_or_else(|| panic!("web missing from docker service ls: {ls}"));
        for cell in ["replicated", "3/3", "hive/whoami", "*:8080->80/tcp"] {
            assert!(line.contains(cell), "no {cell} in {line}");
        }
        let ps = docker_ok_on(&swarm, "n1", &["service", "ps", "web"]);
        let running = ps.lines().filter(|l| l.contains("Running")).count();
        assert_eq!(running, 3, "docker service ps web: {ps}");
        for slot in ["web.1", "web.2", "web.3"] {
            assert!(ps.contains(slot), "no {slot} in {ps}");
        }
        let service = service_json(&swarm, "web");
        assert_eq!(service["Spec"]["Name"], "web");
        assert_eq!(service["Spec"]["Mode"]["Replicated"]["Replicas"], 3);
        assert_eq!(service["Endpoint"]["Ports"][0]["PublishedPort"], 8080);
    });

    scenario(&mut failures, "docker service scale and update", || {
        let out = docker_in(&swarm, "n1", None, &["service", "scale", "web=2"]);
        assert!(out.status.success(), "scale: {}", all(&out));
        assert!(converged(&all(&out)), "{}", all(&out));
        let ls = docker_ok_on(&swarm, "n1", &["service", "ls"]);
        assert!(ls.contains("2/2"), "after scale: {ls}");
        let out = docker_in(
            &swarm,
            "n1",
            None,
            &["service", "update", "--env-add", "GREETING=hi", "web"],
        );
        assert!(out.status.success(), "update: {}", all(&out));
        let service = service_json(&swarm, "web");
        assert_eq!(
            service["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"][0], "GREETING=hi",
            "{service}"
        );
    });

    scenario(
        &mut failures,
        "a stale version is refused, never applied",
        || {
            // The orchestrator still writes the service once the update's monitor period
            // ends (`UpdateStatus` completed, as SwarmKit's updater): read it after that.
            let deadline = Instant::now() + PATIENCE;
            let service = loop {
                let service = service_json(&swarm, "web");
                if service["UpdateStatus"]["State"] == "completed" {
                    break service;
                }
                assert!(
                    Instant::now() < deadline,
                    "the update never completed: {service}"
                );
                std::thread::sleep(Duration::from_millis(200));
            };
            let version = service["Version"]["Index"].as_u64().expect("version");
            let mut spec = service["Spec"].clone();
            spec["Mode"]["Replicated"]["Replicas"] = serde_json::json!(5);
            let body = serde_json::to_vec(&spec).expect("spec");
            let (status, answer) = http(
                &socket(1),
                "POST",
                &format!("/v1.50/services/web/update?version={}", version - 1),
                &body,
            );
            assert_eq!(status, 409, "{answer}");
            assert!(answer.contains("update out of sequence"), "{answer}");
            let after = service_json(&swarm, "web");
            assert_eq!(after["Spec"]["Mode"]["Replicated"]["Replicas"], 2);
            assert_eq!(after["Version"]["Index"].as_u64(), Some(version));
        },
    );

    scenario(&mut failures, "bad requests", || {
        let (status, body) = http(&socket(1), "POST", "/v1.50/services/create", b"{\"Name\": ");
        assert_eq!(status, 400, "malformed JSON: {body}");
        assert!(body.contains("\"message\""), "{body}");
        let (status, body) = http(
            &socket(1),
            "POST",
            "/v1.50/services/create",
            br#"{"Name": 5}"#,
        );
        assert_eq!(status, 400, "wrong type: {body}");
        let (status, body) = http(&socket(1), "GET", "/v1.50/containers/json", b"");
        assert_eq!(status, 404, "unknown endpoint: {body}");
        assert!(body.contains("page not found"), "{body}");
        let (status, body) = http(&socket(1), "GET", "/v1.99/info", b"");
        assert_eq!(status, 400, "too new: {body}");
        assert!(
            body.contains("Maximum supported API version is 1.50"),
            "{body}"
        );
        let huge = vec![b' '; 64 * 1024 * 1024];
        let (status, body) = http(&socket(1), "POST", "/v1.50/services/create", &huge);
        assert_eq!(status, 413, "huge body: {body}");
        // The daemon is unharmed.
        let (status, _) = http(&socket(1), "GET", "/v1.50/services", b"");
        assert_eq!(status, 200);
    });

    scenario(&mut failures, "a worker answers as a Docker worker", || {
        let out = docker_in(&swarm, "n2", None, &["service", "ls"]);
        assert!(!out.status.success());
        assert!(
            all(&out).contains("This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state."),
            "{}",
            all(&out)
        );
    });

    scenario(
        &mut failures,
        "an overlay network and a service on it",
        || {
            let id = docker_ok_on(
                &swarm,
                "n1",
                &["network", "create", "-d", "overlay", "eapinet"],
            );
            let id = id.trim();
            let ls = docker_ok_on(&swarm, "n1", &["network", "ls"]);
            assert!(
                ls.contains("eapinet") && ls.contains("overlay") && ls.contains("swarm"),
                "{ls}"
            );
            let out = docker_in(
                &swarm,
                "n1",
                None,
                &[
                    "service",
                    "create",
                    "--name",
                    "api",
                    "--network",
                    "eapinet",
                    "hive/whoami",
                ],
            );
            assert!(out.status.success(), "create on eapinet: {}", all(&out));
            assert!(converged(&all(&out)), "{}", all(&out));
            let service = service_json(&swarm, "api");
            assert_eq!(service["Spec"]["TaskTemplate"]["Networks"][0]["Target"], id);
            docker_ok_on(&swarm, "n1", &["service", "rm", "api"]);
            // Its tasks go away before the network can.
            let deadline = std::time::Instant::now() + support::PATIENCE;
            loop {
                let out = docker_in(&swarm, "n1", None, &["network", "rm", "eapinet"]);
                if out.status.success() {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "network rm: {}",
                    all(&out)
                );
                std::thread::sleep(Duration::from_millis(300));
            }
        },
    );

    scenario(&mut failures, "docker-py", || {
        if !Path::new(DOCKER_PY).exists() {
            panic!("docker-py is expected at {DOCKER_PY} (cargo xtask setup)");
        }
        let script = r#"
import docker
client = docker.DockerClient(base_url="unix://" + SOCKET, version="1.44")
assert client.swarm.attrs["ID"], client.swarm.attrs
assert client.swarm.attrs["JoinTokens"]["Worker"].startswith("SWMTKN-"), client.swarm.attrs
assert len(client.nodes.list()) == 3
svc = client.services.create("hive/whoami", name="py", labels={"app": "py"})
assert [s.name for s in client.services.list(filters={"label": "app=py"})] == ["py"]
got = client.services.get("py")
assert got.id == svc.id
got.update(name="py", labels={"app": "py", "v": "2"})
assert client.services.get(svc.id).attrs["Spec"]["Labels"]["v"] == "2"
got.remove()
assert client.services.list(filters={"name": "py"}) == []
print("docker-py ok")
"#
        .replace("SOCKET", &format!("{:?}", socket(1).display().to_string()));
        let child = std::process::Command::new(DOCKER_PY)
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python");
        let out = wait_output(child, "docker-py");
        assert!(
            out.status.success() && text(&out.stdout).contains("docker-py ok"),
            "{}",
            all(&out)
        );
    });

    scenario(&mut failures, "docker service rm", || {
        docker_ok_on(&swarm, "n1", &["service", "rm", "web"]);
        let ls = docker_ok_on(&swarm, "n1", &["service", "ls"]);
        assert!(!ls.contains("web"), "{ls}");
        let out = docker_in(&swarm, "n1", None, &["service", "inspect", "web"]);
        assert!(!out.status.success());
    });

    drop(swarm);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Two lab daemons started in no swarm (not [`Swarm`]: the test forms it): the lab goes down
/// (daemons' tasks included) before the daemons are reaped, also when the test fails.
struct Unformed {
    lab: Option<hive_lab::LabGuard>,
    daemons: Vec<std::process::Child>,
}

impl Drop for Unformed {
    fn drop(&mut self) {
        drop(self.lab.take());
        for daemon in &mut self.daemons {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
    }
}

impl Unformed {
    fn lab(&self) -> &hive_lab::Lab {
        self.lab.as_deref().expect("the lab is up until dropped")
    }

    fn docker(&self, node: &str, args: &[&str]) -> Output {
        lab_docker(self.lab(), node, None, args)
    }

    fn docker_ok(&self, node: &str, args: &[&str]) -> String {
        let out = self.docker(node, args);
        assert!(
            out.status.success(),
            "docker {} failed: {}",
            args.join(" "),
            all(&out)
        );
        text(&out.stdout)
    }

    /// Creates overlay network `name` on n1 and checks that `docker events --since since`
    /// shows its creation.
    fn created_network_is_an_event(&self, name: &str, since: &str) {
        self.docker_ok("n1", &["network", "create", "-d", "overlay", name]);
        let until = (unix_seconds() + 1).to_string();
        let shown = self.docker_ok(
            "n1",
            &[
                "events",
                "--since",
                since,
                "--until",
                &until,
                "--filter",
                "type=network",
                "--format",
                "{{.Action}} {{.Actor.Attributes.name}}",
            ],
        );
        assert!(
            shown.lines().any(|line| line == format!("create {name}")),
            "docker events after swarm init: {shown:?}"
        );
    }

    fn docker_err(&self, node: &str, args: &[&str]) -> String {
        let out = self.docker(node, args);
        assert!(
            !out.status.success(),
            "docker {} should fail: {}",
            args.join(" "),
            all(&out)
        );
        text(&out.stderr)
    }
}

/// `docker swarm init|join|leave` (issue 17 item 3) form and undo a swarm through the Engine
/// API, with dockerd's words for success and refusal.
#[test]
fn docker_swarm_init_join_and_leave() {
    if !privileged("docker_swarm_init_join_and_leave") {
        return;
    }
    let _serial = support::serial();
    let lab = hive_lab::LabGuard::up(&hive_lab::LabSpec::new("swapi", 2)).expect("lab up");
    let mut nodes = Unformed {
        lab: Some(lab),
        daemons: Vec::new(),
    };
    for node in ["n1", "n2"] {
        let daemon = hive::lab_swarm::start_daemon(nodes.lab(), node, Path::new(support::HIVE))
            .expect("start daemon");
        nodes.daemons.push(daemon);
    }
    let rt = support::runtime();
    for node in ["n1", "n2"] {
        rt.block_on(hive::lab_swarm::connect(nodes.lab(), node, PATIENCE))
            .expect("the daemon answers");
    }
    let n1 = nodes.lab().node_addr("n1").expect("n1 address").to_string();

    let refused = nodes.docker_err("n1", &["swarm", "leave"]);
    assert!(
        refused.contains("This node is not part of a swarm"),
        "leave outside a swarm: {refused}"
    );

    let before_init = unix_seconds().to_string();
    let init = nodes.docker_ok("n1", &["swarm", "init", "--advertise-addr", &n1]);
    assert!(
        init.starts_with("Swarm initialized: current node (")
            && init.contains(") is now a manager."),
        "docker swarm init: {init}"
    );
    assert!(
        init.contains("docker swarm join --token SWMTKN-1-"),
        "{init}"
    );
    let id = docker_line_id(&init);

    // A change made right after `swarm init` is on `/events`, however soon after the new
    // manager the daemon's event follower finds it.
    nodes.created_network_is_an_event("initnet", &before_init);
    let token = nodes
        .docker_ok("n1", &["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_owned();

    let joined = nodes.docker_ok(
        "n2",
        &["swarm", "join", "--token", &token, &format!("{n1}:2377")],
    );
    assert_eq!(joined.trim(), "This node joined a swarm as a worker.");

    let deadline = Instant::now() + PATIENCE;
    loop {
        let ls = nodes.docker_ok("n1", &["node", "ls"]);
        let rows: Vec<&str> = ls.lines().skip(1).collect();
        let ready = rows.iter().filter(|r| r.contains(" Ready ")).count();
        if rows.len() == 2 && ready == 2 {
            assert!(
                rows.iter().any(|r| r.starts_with(&format!("{id} *"))),
                "n1 ({id}) is not the current node in: {ls}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "docker node ls: {ls}");
        std::thread::sleep(Duration::from_millis(300));
    }

    let again = nodes.docker_err("n1", &["swarm", "init", "--advertise-addr", &n1]);
    assert!(
        again.contains("This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one."),
        "second init: {again}"
    );
    let again = nodes.docker_err(
        "n2",
        &["swarm", "join", "--token", &token, &format!("{n1}:2377")],
    );
    assert!(
        again.contains("already part of a swarm"),
        "second join: {again}"
    );
    let manager = nodes.docker_err("n1", &["swarm", "leave"]);
    assert!(
        manager.contains(
            "You are attempting to leave the swarm on a node that is participating as a manager."
        ),
        "manager leave without --force: {manager}"
    );

    let left = nodes.docker_ok("n2", &["swarm", "leave"]);
    assert_eq!(left.trim(), "Node left the swarm.");
    let info = nodes.docker_ok("n2", &["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!(info.trim(), "inactive");
    let left = nodes.docker_ok("n1", &["swarm", "leave", "--force"]);
    assert_eq!(left.trim(), "Node left the swarm.");

    // AutoLockManagers: the new swarm is locked at restart; the CLI shows the unlock key.
    let before_init = unix_seconds().to_string();
    let init = nodes.docker_ok(
        "n1",
        &["swarm", "init", "--autolock", "--advertise-addr", &n1],
    );
    assert!(
        init.contains("To unlock a swarm manager after it restarts") && init.contains("SWMKEY-1-"),
        "docker swarm init --autolock: {init}"
    );
    let key = nodes.docker_ok("n1", &["swarm", "unlock-key", "-q"]);
    assert!(key.trim().starts_with("SWMKEY-1-"), "unlock key: {key}");
    // The events of the node's new swarm, its new manager's.
    nodes.created_network_is_an_event("againnet", &before_init);
    nodes.docker_ok("n1", &["swarm", "leave", "--force"]);
}

/// Whole seconds since the epoch.
fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The node ID in `Swarm initialized: current node (ID) is now a manager.`
fn docker_line_id(init: &str) -> String {
    init.split_once("current node (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(id, _)| id.to_owned())
        .unwrap_or_else(|| panic!("no node ID in: {init}"))
}
