//! `hive stack` on a 3-node lab swarm (issue 19): a two-service Compose file (web: 3 replicas
//! of hive/whoami published on a port; backend: hive/echo on an overlay that web shares)
//! deploys with docker's lines, answers through every node's published port, and web's tasks
//! reach backend by its service name; a redeploy with one change updates that service only;
//! `--prune` removes a service dropped from the file; `stack ls/services/ps` print docker's
//! columns; `stack rm` leaves no service and no network behind.
//!
//! Needs root (skipped with a reason without it, a failure when `CI` is set). Waits are
//! bounded polls; nothing asserts on durations.

use crate::support;

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hive::store::objects::{Network, Service};
use hive_dataplane::netns;
use support::dns::resolve;
use support::tasks::{
    hostnames, live, node_names, task_netns, tasks, vip, wait_mesh, wait_running,
};
use support::{PATIENCE, Swarm, privileged};

const PORT: u16 = 8490;

fn stack_file(backend_env: &str, with_backend: bool) -> String {
    let mut text = format!(
        r#"version: "3.8"
x-web: &web
  image: hive/whoami
services:
  web:
    <<: *web
    ports:
      - "{PORT}:80"
    networks: [front, back]
    deploy:
      replicas: 3
"#
    );
    if with_backend {
        text.push_str(&format!(
            "  backend:\n    image: hive/echo\n    environment:\n      LEVEL: {backend_env}\n    networks: [back]\n"
        ));
    }
    text.push_str("networks:\n  front:\n    driver: overlay\n  back:\n    driver: overlay\n");
    text
}

fn inspect(swarm: &Swarm, service: &str) -> Service {
    let mut client = swarm.client("n1");
    swarm
        .rt
        .block_on(client.control.inspect_service(service))
        .unwrap_or_else(|e| panic!("inspect {service}: {e}"))
}

fn networks(swarm: &Swarm) -> Vec<Network> {
    let mut client = swarm.client("n1");
    swarm
        .rt
        .block_on(client.control.list_networks())
        .expect("list networks")
}

fn header(out: &str) -> Vec<String> {
    out.lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

fn tcp_echo(ns: &Path, to: SocketAddr, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    netns::run_in(ns, || {
        let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(payload)?;
        let mut back = vec![0; payload.len()];
        stream.read_exact(&mut back)?;
        Ok(back)
    })
    .expect("entering the task namespace")
}

/// Waits until `name` resolves to `expected` inside `ns`.
fn wait_resolves(ns: &Path, name: &str, expected: Ipv4Addr) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = resolve(ns, name, false);
        if let Ok((ResponseCode::NoError, addrs)) = &got
            && addrs.as_slice() == [expected]
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {got:?}, expected {expected}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn eventually<T>(what: &str, mut attempt: impl FnMut() -> std::io::Result<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match attempt() {
            Ok(value) => return value,
            Err(err) => assert!(Instant::now() < deadline, "{what}: still failing: {err}"),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_stack_deploys_answers_redeploys_prunes_and_goes_away() {
    if !privileged("a_stack_deploys_answers_redeploys_prunes_and_goes_away") {
        return;
    }
    let _serial = support::serial();
    let swarm = Swarm::up("stk-stack", 3, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("app.yml");
    let file_arg = file.to_str().expect("utf-8 path");
    let deploy = |text: &str, extra: &[&str]| {
        std::fs::write(&file, text).expect("write the stack file");
        let mut args = vec!["stack", "deploy", "-c", file_arg];
        args.extend_from_slice(extra);
        args.push("app");
        swarm.hive_ok("n1", &args)
    };

    // Deploy: docker's lines, networks first.
    let out = deploy(&stack_file("info", true), &[]);
    assert_eq!(
        out,
        "Creating network app_back\nCreating network app_front\nCreating service app_backend\nCreating service app_web\n"
    );
    let web_tasks = wait_running(&swarm, "app_web", 3);
    wait_running(&swarm, "app_backend", 1);
    let web_hosts = hostnames(&live(&web_tasks));
    wait_mesh(&swarm, &["n1", "n2", "n3"], PORT, &web_hosts, 9);

    // web reaches backend by its service name on the shared overlay.
    let back_id = networks(&swarm)
        .into_iter()
        .find(|n| n.spec.annotations.name == "app_back")
        .expect("app_back exists")
        .id;
    let backend_vip = vip(&inspect(&swarm, "app_backend"), &back_id);
    let names = node_names(&swarm);
    let web_ns = task_netns(&swarm, &names, live(&web_tasks)[0]);
    wait_resolves(&web_ns, "backend", backend_vip);
    let echoed = eventually("TCP echo to backend by name", || {
        tcp_echo(&web_ns, SocketAddr::from((backend_vip, 7)), b"stack")
    });
    assert_eq!(echoed, b"stack");

    // Columns as docker prints them.
    let ls = swarm.hive_ok("n1", &["stack", "ls"]);
    assert_eq!(header(&ls), ["NAME", "SERVICES"]);
    assert!(
        ls.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["app", "2"]),
        "{ls}"
    );
    let services = swarm.hive_ok("n1", &["stack", "services", "app"]);
    assert_eq!(
        header(&services),
        ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]
    );
    assert!(
        services.contains("app_web") && services.contains("3/3"),
        "{services}"
    );
    let ps = swarm.hive_ok("n1", &["stack", "ps", "app"]);
    assert_eq!(
        header(&ps),
        [
            "ID",
            "NAME",
            "IMAGE",
            "NODE",
            "DESIRED STATE",
            "CURRENT STATE",
            "ERROR",
            "PORTS"
        ]
    );
    assert_eq!(
        ps.lines().filter(|l| l.contains("app_web.")).count(),
        3,
        "{ps}"
    );
    // --format and --filter as docker's: a Go template per row, a table with headers, JSON.
    let running = swarm.hive_ok(
        "n1",
        &[
            "stack",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Name}} {{lower .DesiredState}}",
            "app",
        ],
    );
    let mut rows: Vec<&str> = running.lines().collect();
    rows.sort_unstable();
    assert_eq!(
        rows,
        [
            "app_backend.1 running",
            "app_web.1 running",
            "app_web.2 running",
            "app_web.3 running"
        ],
        "{running}"
    );
    let table = swarm.hive_ok(
        "n1",
        &[
            "stack",
            "services",
            "--format",
            "table {{.Name}}\t{{.Replicas}}",
            "app",
        ],
    );
    assert_eq!(header(&table), ["NAME", "REPLICAS"], "{table}");
    let json = swarm.hive_ok("n1", &["stack", "ls", "--format", "json"]);
    assert!(
        json.lines()
            .any(|l| l == r#"{"Name":"app","Services":"2"}"#),
        "{json}"
    );
    let refused = swarm.hive("n1", &["stack", "ps", "--format", "{{.Nope}}", "app"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("can't evaluate field Nope"),
        "{refused:?}"
    );

    // Redeploy with one change: only backend gets a new spec; web's tasks stay.
    let web_before = inspect(&swarm, "app_web");
    let backend_before = inspect(&swarm, "app_backend");
    let web_task_ids: BTreeSet<String> = live(&tasks(&swarm, "app_web"))
        .iter()
        .map(|t| t.id.clone())
        .collect();
    let out = deploy(&stack_file("debug", true), &[]);
    assert_eq!(
        out,
        format!(
            "Updating service app_backend (id: {})\nUpdating service app_web (id: {})\n",
            backend_before.id, web_before.id
        )
    );
    let web_after = inspect(&swarm, "app_web");
    let backend_after = inspect(&swarm, "app_backend");
    assert_eq!(
        web_after.spec_version, web_before.spec_version,
        "web was updated"
    );
    assert_ne!(
        backend_after.spec_version, backend_before.spec_version,
        "backend was not updated"
    );
    assert!(
        backend_after
            .spec
            .task_template
            .container
            .env
            .contains(&"LEVEL=debug".to_owned())
    );
    let web_task_ids_after: BTreeSet<String> = live(&tasks(&swarm, "app_web"))
        .iter()
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(
        web_task_ids_after, web_task_ids,
        "web's tasks were replaced"
    );

    // --prune removes the service the file dropped.
    let out = deploy(&stack_file("debug", false), &["--prune"]);
    assert!(out.starts_with("Removing service app_backend\n"), "{out}");
    let services = swarm.hive_ok("n1", &["stack", "services", "app"]);
    assert!(!services.contains("app_backend"), "{services}");

    // stack rm: services, then networks; nothing left.
    let out = swarm.hive_ok("n1", &["stack", "rm", "app"]);
    assert_eq!(
        out,
        "Removing service app_web\nRemoving network app_back\nRemoving network app_front\n"
    );
    let left: Vec<String> = networks(&swarm)
        .into_iter()
        .map(|n| n.spec.annotations.name)
        .filter(|n| n.starts_with("app_"))
        .collect();
    assert!(left.is_empty(), "networks left behind: {left:?}");
    let ls = swarm.hive_ok("n1", &["stack", "ls"]);
    assert!(!ls.lines().any(|l| l.starts_with("app ")), "{ls}");
    let nothing = swarm.hive("n1", &["stack", "rm", "app"]);
    assert!(!nothing.status.success());
    assert!(support::text(&nothing.stderr).contains("Nothing found in stack: app"));
}
