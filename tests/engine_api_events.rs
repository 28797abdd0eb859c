//! `docker events`, `docker secret|config create/ls/inspect/rm` and a stack with a secret and
//! a config, through the stock docker CLI 28.2.2 and docker-py against a lab swarm's Engine
//! API (issue 17).
//!
//! One swarm (2 nodes: manager n1, worker n2). The scenarios run in order, each recording its
//! failure instead of stopping the others. Needs root (skipped with a reason without it,
//! fails when `CI` is set), the docker CLI at `/usr/local/bin/docker` and docker-py from
//! `cargo xtask setup`.

use crate::support;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hive_lab::Member;
use hive_lab::naming;
use serde_json::Value;
use support::docker_cli::{
    DOCKER, DOCKER_PY, all, docker, docker_command, docker_in, docker_ok, wait_docker,
};
use support::{PATIENCE, Swarm, privileged, scenario, text, wait_output};

const LAB: &str = "apiev";

fn socket() -> PathBuf {
    naming::docker_socket(LAB, Member::Node(1))
}

/// Whole seconds since the epoch, rounded down (`up`) or up (`!up`).
fn unix_seconds(up: bool) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    now.as_secs() + u64::from(up && now.subsec_nanos() > 0)
}

/// The JSON lines `docker events --format '{{json .}}'` printed.
fn events(output: &str) -> Vec<Value> {
    output
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn attribute<'a>(event: &'a Value, key: &str) -> &'a str {
    event["Actor"]["Attributes"][key].as_str().unwrap_or("")
}

/// A running `docker events`, its lines read as they come.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
}

impl Watcher {
    fn start(swarm: &Swarm, args: &[&str]) -> Self {
        let mut child = docker_command(swarm.lab(), "n1", None, args)
            .spawn()
            .expect("spawn docker events");
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for an event `wanted` accepts; every event seen so far is in `self.seen`.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(found) = self.seen.iter().find(|e| wanted(e)) {
            return found.clone();
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let event: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("docker events printed {line:?}: {e}"));
                    self.seen.push(event.clone());
                    if wanted(&event) {
                        return event;
                    }
                }
                Err(_) => panic!(
                    "docker events never showed {what}; it showed {:?}",
                    self.seen
                ),
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is(event: &Value, typ: &str, action: &str, name: &str) -> bool {
    event["Type"] == typ && event["Action"] == action && attribute(event, "name") == name
}

#[test]
fn docker_events_secrets_configs_and_stacks_through_the_engine_api() {
    if !privileged("docker_events_secrets_configs_and_stacks_through_the_engine_api") {
        return;
    }
    assert!(
        Path::new(DOCKER).exists(),
        "the stock docker CLI is expected at {DOCKER}"
    );
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let swarm = Swarm::up(LAB, 2, 1);
    let mut failures = Vec::new();
    // Rounded down: every event of this test happens at or after it.
    let start = unix_seconds(false).to_string();

    scenario(
        &mut failures,
        "docker events sees another client's create, update and remove",
        || {
            let mut watcher = Watcher::start(
                &swarm,
                &[
                    "events",
                    "--since",
                    &start,
                    "--filter",
                    "type=service",
                    "--format",
                    "{{json .}}",
                ],
            );
            docker_ok(
                &swarm,
                &["service", "create", "-d", "--name", "evweb", "hive/whoami"],
            );
            let created = watcher.wait_for("the create of evweb", |e| {
                is(e, "service", "create", "evweb")
            });
            assert_eq!(created["scope"], "swarm", "{created}");
            let id = created["Actor"]["ID"].as_str().unwrap_or("").to_owned();
            let inspected = docker_ok(&swarm, &["service", "inspect", "-f", "{{.ID}}", "evweb"]);
            assert_eq!(inspected.trim(), id, "{created}");
            let time = created["time"].as_i64().expect("time");
            let nanos = created["timeNano"].as_i64().expect("timeNano");
            assert_eq!(nanos / 1_000_000_000, time, "{created}");

            // Seen by the watcher after it showed the create: these come live.
            docker_ok(&swarm, &["service", "scale", "-d", "evweb=2"]);
            let scaled = watcher.wait_for("the scale of evweb", |e| {
                is(e, "service", "update", "evweb") && attribute(e, "replicas.new") == "2"
            });
            assert_eq!(attribute(&scaled, "replicas.old"), "1", "{scaled}");
            docker_ok(&swarm, &["service", "rm", "evweb"]);
            watcher.wait_for("the remove of evweb", |e| {
                is(e, "service", "remove", "evweb")
            });
            assert!(
                watcher.seen.iter().all(|e| e["Type"] == "service"),
                "type=service shows only services: {:?}",
                watcher.seen
            );
        },
    );
    let end = unix_seconds(true).to_string();

    scenario(
        &mut failures,
        "docker events --since --until replays and ends",
        || {
            let out = docker_ok(
                &swarm,
                &[
                    "events",
                    "--since",
                    &start,
                    "--until",
                    &end,
                    "--filter",
                    "type=service",
                    "--filter",
                    "service=evweb",
                    "--format",
                    "{{json .}}",
                ],
            );
            let shown = events(&out);
            let actions: Vec<&str> = shown
                .iter()
                .map(|e| e["Action"].as_str().unwrap_or(""))
                .collect();
            assert_eq!(actions.first(), Some(&"create"), "{out}");
            assert_eq!(actions.last(), Some(&"remove"), "{out}");
            assert!(actions.contains(&"update"), "{out}");
            assert!(
                shown.iter().all(|e| attribute(e, "name") == "evweb"),
                "{out}"
            );
            let removes = docker_ok(
                &swarm,
                &[
                    "events",
                    "--since",
                    &start,
                    "--until",
                    &end,
                    "--filter",
                    "event=remove",
                    "--format",
                    "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
                ],
            );
            assert_eq!(removes.trim(), "service remove evweb", "{removes}");
        },
    );

    scenario(&mut failures, "docker-py client.events", || {
        assert!(
            Path::new(DOCKER_PY).exists(),
            "docker-py is expected at {DOCKER_PY} (cargo xtask setup)"
        );
        let script = format!(
            r#"
import docker
client = docker.DockerClient(base_url="unix://{socket}", version="1.44")
seen = list(client.events(decode=True, since={start}, until={end}, filters={{"type": "service", "event": "create"}}))
assert [e["Actor"]["Attributes"]["name"] for e in seen] == ["evweb"], seen
assert seen[0]["scope"] == "swarm", seen
print("docker-py events ok")
"#,
            socket = socket().display()
        );
        let child = std::process::Command::new(DOCKER_PY)
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python");
        let out = wait_output(child, "docker-py");
        assert!(
            out.status.success() && text(&out.stdout).contains("docker-py events ok"),
            "{}",
            all(&out)
        );
    });

    scenario(&mut failures, "docker secret create/ls/inspect/rm", || {
        let file = dir.path().join("token.txt");
        std::fs::write(&file, "s3cr3t\n").expect("write secret file");
        let created = docker_ok(
            &swarm,
            &[
                "secret",
                "create",
                "--label",
                "team=blue",
                "evtoken",
                &file.display().to_string(),
            ],
        );
        let id = created.trim();
        assert!(!id.is_empty() && !id.contains(' '), "an ID: {created}");
        let ls = docker_ok(&swarm, &["secret", "ls"]);
        let line = ls
            .lines()
            .find(|l| l.contains("evtoken"))
            .unwrap_or_else(|| panic!("no evtoken in docker secret ls: {ls}"));
        assert!(line.starts_with(id), "{ls}");
        assert!(ls.starts_with("ID"), "{ls}");
        let inspect = docker_ok(&swarm, &["secret", "inspect", "evtoken"]);
        let parsed: Value = serde_json::from_str(&inspect).expect("inspect JSON");
        assert_eq!(parsed[0]["ID"], id, "{inspect}");
        assert_eq!(parsed[0]["Spec"]["Name"], "evtoken", "{inspect}");
        assert_eq!(parsed[0]["Spec"]["Labels"]["team"], "blue", "{inspect}");
        assert!(
            parsed[0]["Spec"].get("Data").is_none() && !inspect.contains("czNjcjN0"),
            "a secret's data is never shown: {inspect}"
        );
        let removed = docker_ok(&swarm, &["secret", "rm", "evtoken"]);
        assert_eq!(removed.trim(), "evtoken", "{removed}");
        let ls = docker_ok(&swarm, &["secret", "ls"]);
        assert!(!ls.contains("evtoken"), "{ls}");
        let out = docker(&swarm, &["secret", "inspect", "evtoken"]);
        assert!(!out.status.success(), "{}", all(&out));
        assert!(all(&out).contains("evtoken"), "{}", all(&out));
    });

    scenario(&mut failures, "docker config create/ls/inspect/rm", || {
        let file = dir.path().join("settings.txt");
        std::fs::write(&file, "level=debug\n").expect("write config file");
        let created = docker_ok(
            &swarm,
            &[
                "config",
                "create",
                "evsettings",
                &file.display().to_string(),
            ],
        );
        let id = created.trim();
        assert!(!id.is_empty() && !id.contains(' '), "an ID: {created}");
        let ls = docker_ok(&swarm, &["config", "ls"]);
        assert!(
            ls.lines()
                .any(|l| l.starts_with(id) && l.contains("evsettings")),
            "{ls}"
        );
        let inspect = docker_ok(&swarm, &["config", "inspect", "evsettings"]);
        let parsed: Value = serde_json::from_str(&inspect).expect("inspect JSON");
        assert_eq!(parsed[0]["Spec"]["Name"], "evsettings", "{inspect}");
        // A config's data is shown, base64 as Docker's.
        assert_eq!(parsed[0]["Spec"]["Data"], "bGV2ZWw9ZGVidWcK", "{inspect}");
        let pretty = docker_ok(&swarm, &["config", "inspect", "--pretty", "evsettings"]);
        assert!(pretty.contains("level=debug"), "{pretty}");
        let removed = docker_ok(&swarm, &["config", "rm", "evsettings"]);
        assert_eq!(removed.trim(), "evsettings", "{removed}");
        let ls = docker_ok(&swarm, &["config", "ls"]);
        assert!(!ls.contains("evsettings"), "{ls}");
    });

    scenario(
        &mut failures,
        "a stack with a secret and a config deploys and leaves nothing behind",
        || {
            std::fs::write(dir.path().join("token.txt"), "t0ken\n").expect("secret file");
            std::fs::write(dir.path().join("settings.txt"), "a=1\n").expect("config file");
            std::fs::write(
                dir.path().join("stack.yml"),
                r#"version: "3.8"
services:
  app:
    image: hive/whoami
    secrets: [token]
    configs:
      - source: settings
        target: /etc/settings.txt
secrets:
  token:
    file: ./token.txt
configs:
  settings:
    file: ./settings.txt
"#,
            )
            .expect("stack file");
            let out = docker_in(
                &swarm,
                "n1",
                Some(dir.path()),
                &["stack", "deploy", "-c", "stack.yml", "vault"],
            );
            let shown = all(&out);
            assert!(out.status.success(), "stack deploy: {shown}");
            for line in [
                "Creating network vault_default",
                "Creating secret vault_token",
                "Creating config vault_settings",
                "Creating service vault_app",
            ] {
                assert!(shown.contains(line), "no `{line}` in {shown}");
            }
            // hive/whoami runs on the host's file system, where no secret is mounted: its
            // tasks are refused with that reason (tests/secrets.rs runs an OCI image with
            // both). What the stack made is what this checks.
            let services = docker_ok(&swarm, &["stack", "services", "vault"]);
            assert!(services.contains("vault_app"), "{services}");
            let secrets = docker_ok(&swarm, &["secret", "ls"]);
            assert!(secrets.contains("vault_token"), "{secrets}");
            let configs = docker_ok(&swarm, &["config", "ls"]);
            assert!(configs.contains("vault_settings"), "{configs}");
            let app = docker_ok(&swarm, &["service", "inspect", "vault_app"]);
            let app: Value = serde_json::from_str(&app).expect("inspect JSON");
            let container = &app[0]["Spec"]["TaskTemplate"]["ContainerSpec"];
            assert_eq!(
                container["Secrets"][0]["SecretName"], "vault_token",
                "{app}"
            );
            assert_eq!(
                container["Configs"][0]["ConfigName"], "vault_settings",
                "{app}"
            );

            let out = docker(&swarm, &["stack", "rm", "vault"]);
            let shown = all(&out);
            assert!(out.status.success(), "stack rm: {shown}");
            for line in [
                "Removing service vault_app",
                "Removing secret vault_token",
                "Removing config vault_settings",
                "Removing network vault_default",
            ] {
                assert!(shown.contains(line), "no `{line}` in {shown}");
            }
            for (what, args) in [
                ("services", ["service", "ls"]),
                ("networks", ["network", "ls"]),
                ("secrets", ["secret", "ls"]),
                ("configs", ["config", "ls"]),
            ] {
                let left = wait_docker(&swarm, &args, |s| !s.contains("vault_"));
                assert!(!left.contains("vault_"), "{what} left behind: {left}");
            }
            let stacks = docker_ok(&swarm, &["stack", "ls"]);
            assert!(!stacks.contains("vault"), "{stacks}");
        },
    );

    scenario(
        &mut failures,
        "docker events shows network, secret and config changes",
        || {
            let until = unix_seconds(true).to_string();
            let out = docker_ok(
                &swarm,
                &[
                    "events",
                    "--since",
                    &start,
                    "--until",
                    &until,
                    "--filter",
                    "scope=swarm",
                    "--filter",
                    "event=create",
                    "--filter",
                    "event=remove",
                    "--format",
                    "{{json .}}",
                ],
            );
            let shown = events(&out);
            for (typ, action, name) in [
                ("secret", "create", "evtoken"),
                ("secret", "remove", "evtoken"),
                ("config", "create", "evsettings"),
                ("config", "remove", "evsettings"),
                ("network", "create", "vault_default"),
                ("network", "remove", "vault_default"),
                ("secret", "create", "vault_token"),
                ("config", "remove", "vault_settings"),
            ] {
                assert!(
                    shown.iter().any(|e| is(e, typ, action, name)),
                    "no {typ} {action} {name} in {out}"
                );
            }
        },
    );

    drop(swarm);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
