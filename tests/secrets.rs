//! Secrets and configs end to end (issue 18, docs/secrets.md), on one 3-node swarm (n1
//! manager, n2 and n3 workers) running a busybox image by runc:
//! - a secret with uid, gid and mode and a config reach the task that names them, as files
//!   the task reads (owner and mode as asked), and no other task, also on the same node;
//! - the worker that runs no such task has no trace of the secret in its data directory;
//! - `secret rm` of a secret in use is refused with Docker's message;
//! - `service update --secret-rm` takes it away from the service's new tasks;
//! - `config inspect` shows the config's data (base64 in JSON, plain with `--pretty`);
//! - a stack file's `secrets:` and `configs:` are made as `STACK_key` from their files,
//!   reach its task, survive an unchanged redeploy untouched and go with `stack rm`.
//!
//! Needs root and runc, umoci, skopeo, busybox (`cargo xtask setup`); skipped otherwise.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::busybox::{self, tools_or_skip};
use support::tasks::wait_running;
use support::{Swarm, privileged};

const IMAGE: &str = "hive-test/busybox:1";
const SECRET: &str = "sec-0f9c2e7d-the-secret-bytes";
const CONFIG: &str = "listen 8080; # sec-config";

/// A busybox image whose command the services give.
fn build_archive(dir: &Path) -> PathBuf {
    busybox::docker_archive(
        dir,
        IMAGE,
        &["sh", "cat", "stat", "sleep", "echo", "ls", "hostname"],
        |_| {},
        &["--config.cmd", "/bin/sh"],
    )
}

/// What every task prints: its secret's owner, mode and bytes, or `NOSECRET`; its config.
const PROBE: &str = "if [ -e /run/secrets/pw ]; then stat -c 'OWNER %u %g %a' /run/secrets/pw; \
     echo \"SECRET $(cat /run/secrets/pw)\"; else echo \"NOSECRET $(hostname)\"; fi; \
     if [ -e /etc/app.conf ]; then echo \"CONFIG $(cat /etc/app.conf)\"; fi; sleep 100000";

fn wait_logs(swarm: &Swarm, service: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = swarm.hive("n1", &["service", "logs", service]);
        let logs = support::text(&out.stdout);
        if check(&logs) {
            return logs;
        }
        assert!(
            Instant::now() < deadline,
            "{what}; logs of {service}:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Whether any regular file under `dir` holds `needle`.
fn holds(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if let Some(found) = holds(&path, needle) {
                return Some(found);
            }
        } else if kind.is_file()
            && let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            return Some(path);
        }
    }
    None
}

#[test]
fn secrets_and_configs_reach_only_the_tasks_that_name_them() {
    let test = "secrets_and_configs_reach_only_the_tasks_that_name_them";
    if !privileged(test) || !tools_or_skip(test) {
        return;
    }
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("temporary directory");
    let archive = build_archive(dir.path());
    let archive = archive.to_str().expect("UTF-8 path");
    let secret_file = dir.path().join("pw");
    std::fs::write(&secret_file, SECRET).expect("secret file");
    let config_file = dir.path().join("app.conf");
    std::fs::write(&config_file, CONFIG).expect("config file");

    let swarm = Swarm::up("sec-lab", 3, 1);
    for node in ["n1", "n2", "n3"] {
        swarm.hive_ok(node, &["image", "load", "-i", archive]);
    }

    // Create, list, inspect: the secret's data is never shown; the config's is.
    let secret_file = secret_file.to_str().expect("UTF-8 path");
    let id = swarm.hive_ok(
        "n1",
        &[
            "secret",
            "create",
            "--label",
            "tier=db",
            "app_pw",
            secret_file,
        ],
    );
    assert_eq!(id.trim().len(), 25, "an ID: {id}");
    let err = swarm.hive_err("n1", &["secret", "create", "app_pw", secret_file]);
    assert!(err.contains("secret app_pw already exists"), "{err}");
    let err = swarm.hive_err("n1", &["secret", "create", "bad/name", secret_file]);
    assert!(err.contains("invalid name, only 64"), "{err}");
    let err = swarm.hive_err(
        "n1",
        &["secret", "create", "--driver", "vault", "x", secret_file],
    );
    assert!(
        err.contains("secret driver \"vault\" is not supported"),
        "{err}"
    );
    let ls = swarm.hive_ok("n1", &["secret", "ls"]);
    assert!(ls.starts_with("ID"), "{ls}");
    assert!(ls.contains("app_pw"), "{ls}");
    for args in [
        &["secret", "inspect", "app_pw"][..],
        &["secret", "inspect", "--pretty", "app_pw"][..],
    ] {
        let shown = swarm.hive_ok("n1", args);
        assert!(
            shown.contains("app_pw") && shown.contains("tier"),
            "{shown}"
        );
        assert!(!shown.contains(SECRET), "secret data shown: {shown}");
    }
    let config_file = config_file.to_str().expect("UTF-8 path");
    swarm.hive_ok("n1", &["config", "create", "app_conf", config_file]);
    let json = swarm.hive_ok("n1", &["config", "inspect", "app_conf"]);
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(CONFIG);
    assert!(json.contains(&format!("\"Data\": \"{encoded}\"")), "{json}");
    let pretty = swarm.hive_ok("n1", &["config", "inspect", "--pretty", "app_conf"]);
    assert!(pretty.contains(&format!("Data:\n{CONFIG}")), "{pretty}");
    let err = swarm.hive_err(
        "n1",
        &[
            "config",
            "create",
            "--template-driver",
            "golang",
            "t",
            config_file,
        ],
    );
    assert!(err.contains("not supported"), "{err}");

    // An unknown secret is refused at the door.
    let err = swarm.hive_err(
        "n1",
        &["service", "create", "-d", "--secret", "nope", IMAGE, "sh"],
    );
    assert!(err.contains("secret not found: nope"), "{err}");

    // web on n2 names both; probe runs everywhere and names neither.
    swarm.hive_ok(
        "n1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--constraint",
            "node.hostname==n2",
            "--secret",
            "source=app_pw,target=pw,uid=1000,gid=1001,mode=0440",
            "--config",
            "source=app_conf,target=/etc/app.conf",
            IMAGE,
            "sh",
            "-c",
            PROBE,
        ],
    );
    swarm.hive_ok(
        "n1",
        &[
            "service", "create", "-d", "--name", "probe", "--mode", "global", IMAGE, "sh", "-c",
            PROBE,
        ],
    );
    wait_running(&swarm, "web", 1);
    wait_running(&swarm, "probe", 3);
    let logs = wait_logs(&swarm, "web", "web reads its secret and config", |l| {
        l.contains("SECRET ") && l.contains("CONFIG ")
    });
    assert!(logs.contains("OWNER 1000 1001 440"), "{logs}");
    assert!(logs.contains(&format!("SECRET {SECRET}")), "{logs}");
    assert!(logs.contains(&format!("CONFIG {CONFIG}")), "{logs}");
    let logs = wait_logs(&swarm, "probe", "every probe task reports", |l| {
        l.matches("NOSECRET").count() >= 3
    });
    assert!(!logs.contains("SECRET sec-"), "{logs}");
    assert!(!logs.contains("CONFIG "), "{logs}");

    // n3 runs no task naming the secret: nothing of it in its data directory. Nor in the
    // manager n1's, whose store is sealed: neither the bytes nor their base64 (as the store's
    // JSON holds them). (n2's task logs hold it: web prints it.)
    let encoded_secret = base64::engine::general_purpose::STANDARD.encode(SECRET);
    for node in ["n3", "n1"] {
        let member = swarm.lab().member(node).expect("lab member");
        let data_dir = member.data_dir.clone().expect("the node's data directory");
        for needle in [SECRET, encoded_secret.as_str()] {
            assert_eq!(
                holds(&data_dir, needle.as_bytes()),
                None,
                "{node}: the secret ({needle}) is readable on its disk"
            );
        }
    }

    // In use: refused, with Docker's message.
    let err = swarm.hive_err("n1", &["secret", "rm", "app_pw"]);
    assert!(
        err.contains("secret 'app_pw' is in use by the following service: web"),
        "{err}"
    );
    let err = swarm.hive_err("n1", &["config", "rm", "app_conf"]);
    assert!(
        err.contains("config 'app_conf' is in use by the following service: web"),
        "{err}"
    );

    // --secret-rm: the new task has no secret, still its config.
    swarm.hive_ok(
        "n1",
        &["service", "update", "-d", "--secret-rm", "app_pw", "web"],
    );
    wait_logs(&swarm, "web", "web's new task has no secret", |l| {
        l.contains("NOSECRET")
    });

    // Unused now: removed.
    let removed = swarm.hive_ok("n1", &["secret", "rm", "app_pw"]);
    assert_eq!(removed.trim(), "app_pw");
    let ls = swarm.hive_ok("n1", &["secret", "ls", "-q"]);
    assert!(ls.trim().is_empty(), "{ls}");

    // A stack's own secret and config, from files next to the Compose file.
    let command = serde_json::to_string(&PROBE.replace('$', "$$")).expect("JSON");
    let stack_file = dir.path().join("stack.yml");
    std::fs::write(
        &stack_file,
        format!(
            "version: \"3.8\"\nservices:\n  web:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", {command}]\n    secrets:\n      - source: pw\n        mode: 0400\n    configs:\n      - source: conf\n        target: /etc/app.conf\nsecrets:\n  pw:\n    file: ./pw\nconfigs:\n  conf:\n    file: ./app.conf\n"
        ),
    )
    .expect("stack file");
    let stack_file = stack_file.to_str().expect("UTF-8 path");
    let deployed = swarm.hive_ok("n1", &["stack", "deploy", "-d", "-c", stack_file, "st"]);
    assert!(
        deployed.contains("Creating secret st_pw") && deployed.contains("Creating config st_conf"),
        "{deployed}"
    );
    wait_running(&swarm, "st_web", 1);
    let logs = wait_logs(&swarm, "st_web", "the stack's task reads its files", |l| {
        l.contains("SECRET ") && l.contains("CONFIG ")
    });
    assert!(logs.contains("OWNER 0 0 400"), "{logs}");
    assert!(logs.contains(&format!("SECRET {SECRET}")), "{logs}");
    let version = |swarm: &Swarm| {
        let mut client = swarm.client("n1");
        swarm
            .rt
            .block_on(client.control.inspect_service("st_web"))
            .expect("inspect st_web")
            .spec_version
    };
    let before = version(&swarm);
    let again = swarm.hive_ok("n1", &["stack", "deploy", "-d", "-c", stack_file, "st"]);
    assert!(!again.contains("Creating secret"), "{again}");
    assert_eq!(
        version(&swarm),
        before,
        "an unchanged redeploy updated st_web"
    );
    let removed = swarm.hive_ok("n1", &["stack", "rm", "st"]);
    assert!(
        removed.contains("Removing secret st_pw") && removed.contains("Removing config st_conf"),
        "{removed}"
    );
    let ls = swarm.hive_ok("n1", &["secret", "ls", "-q"]);
    assert!(ls.trim().is_empty(), "{ls}");
}
