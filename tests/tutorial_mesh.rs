//! The Swarm tutorials' mesh commands replayed through the `hive` CLI (issue 13): global
//! services on the ingress and on a user overlay, two published ports to one target, ports
//! added by `service update`, specs no node could program refused by the manager, and a
//! service one node cannot program reported alone while every other service is programmed.
//!
//! The scenarios share one swarm (forming it is the slow part) and use their own service
//! names and ports, so they do not disturb each other; they run one after the other in one
//! test so the lab is removed when it ends (also when it fails). The test needs root;
//! without it it is skipped with a printed reason, or fails when `CI` is set. Waits are
//! bounded; nothing is asserted on durations.

use crate::support;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hive::store::objects::Service;
use support::dns::resolve;
use support::tasks::{
    self, Answers, hostname, hostnames, live, node_names, node_of, task_netns, tasks, vip,
    wait_running, wait_tasks,
};
use support::{PATIENCE, Swarm, privileged};

const NODES: [&str; 3] = ["n1", "n2", "n3"];
/// New connections sent to one published port to see every task behind it: with 3 tasks
/// the chance that Maglev never picks one in 40 tries is 3 × (2/3)^40 ≈ 3·10⁻⁷.
const PROBES: usize = 40;
/// The service the agents make unprogrammable on purpose (their test hook).
const UNPROGRAMMABLE: &str = "unprog";

fn probe(swarm: &Swarm, node: &str, port: u16) -> Answers {
    tasks::probe(swarm, node, port, PROBES)
}

fn wait_answered(swarm: &Swarm, node: &str, port: u16, hosts: &BTreeSet<String>) {
    tasks::wait_answered(swarm, node, port, hosts, PROBES);
}

/// Every node's `port` answered by every one of `hosts` (the routing mesh).
fn wait_mesh(swarm: &Swarm, port: u16, hosts: &BTreeSet<String>) {
    tasks::wait_mesh(swarm, &NODES, port, hosts, PROBES);
}

/// The service as the manager stores it (its allocated VIPs).
fn inspect(swarm: &Swarm, service: &str) -> Service {
    let mut client = swarm.client("n1");
    swarm
        .rt
        .block_on(client.control.inspect_service(service))
        .unwrap_or_else(|e| panic!("inspect {service}: {e}"))
}

/// From inside `ns`, `name` resolves to `expected` and connections to it on port 80 are
/// answered by every one of `hosts` (and by nothing else).
fn wait_east_west(ns: &Path, name: &str, expected: Ipv4Addr, hosts: &BTreeSet<String>) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = resolve(ns, name, false);
        if matches!(&got, Ok((ResponseCode::NoError, addrs)) if addrs == &[expected]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name} resolves to {got:?}, expected {expected}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let to = SocketAddr::from((expected, 80));
    let mut seen = BTreeSet::new();
    while &seen != hosts {
        if let Ok(answer) = hive::demo::http_get(ns, to) {
            assert!(hosts.contains(&answer.hostname), "{answer:?} from {to}");
            seen.insert(answer.hostname);
        }
        assert!(
            Instant::now() < deadline,
            "{name} ({to}) east-west: only {seen:?} of {hosts:?}"
        );
    }
}

/// The `service ls` row of `name`.
fn ls_row(swarm: &Swarm, name: &str) -> String {
    let ls = swarm.hive_line("n1", "service ls");
    ls.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("{name} in {ls}"))
        .to_owned()
}

/// The test hook's variable (`UNPROGRAMMABLE_ENV`), set for the daemons this test starts
/// and removed when it ends: the binary's later tests start daemons too.
struct UnprogrammableHook;

impl UnprogrammableHook {
    fn set() -> Self {
        // SAFETY: std serialises its own reads of the environment (`std::env`, `Command`
        // spawning the daemons) with this write, and the only tests that may run beside this
        // one (it holds its file's group and the swarm lock) are ones that make nothing, which
        // read the environment through std only.
        unsafe { std::env::set_var(hive::agent::mesh::UNPROGRAMMABLE_ENV, UNPROGRAMMABLE) };
        Self
    }
}

impl Drop for UnprogrammableHook {
    fn drop(&mut self) {
        // SAFETY: as in `set`.
        unsafe { std::env::remove_var(hive::agent::mesh::UNPROGRAMMABLE_ENV) };
    }
}

#[test]
fn tutorial_mesh_commands_behave_as_in_swarm() {
    if !privileged("tutorial_mesh_commands_behave_as_in_swarm") {
        return;
    }
    let _serial = support::serial();
    let _hook = UnprogrammableHook::set();
    let swarm = Swarm::up("tm-mesh", 3, 1);

    global_services_answer_on_every_node_on_the_ingress_and_on_an_overlay(&swarm);
    mesh_stats_and_trace_show_services_and_tasks_by_name(&swarm);
    two_published_ports_to_one_target_and_ports_added_by_update_are_answered(&swarm);
    specs_no_node_could_program_are_refused_by_the_manager(&swarm);
    a_service_a_node_cannot_program_is_reported_alone(&swarm);
}

/// Issue 13, item 1: global services had no network at all.
fn global_services_answer_on_every_node_on_the_ingress_and_on_an_overlay(swarm: &Swarm) {
    let names = node_names(swarm);
    let overlay = swarm
        .hive_line("n1", "network create -d overlay tm-ov")
        .trim()
        .to_owned();
    // The tutorial's command: a global service on the ingress network only.
    swarm.hive_line(
        "n1",
        "service create -d --name gx --mode global -p 8383:80 hive/whoami",
    );
    // The same on a user overlay, and one with a host-mode port on it.
    swarm.hive_line(
        "n1",
        "service create -d --name gi --mode global --network tm-ov -p 8384:80 hive/whoami",
    );
    swarm.hive_line(
        "n1",
        "service create -d --name gh --mode global --network tm-ov \
         --publish mode=host,target=80,published=8080 hive/whoami",
    );
    let gx = wait_running(swarm, "gx", 3);
    let gi = wait_running(swarm, "gi", 3);
    let gh = wait_running(swarm, "gh", 3);
    for task in live(&gx).into_iter().chain(live(&gi)).chain(live(&gh)) {
        assert!(
            !task.networks.is_empty(),
            "a global task with no network: {task:#?}"
        );
    }

    // Ingress ports: every node, every task, the client's address seen.
    wait_mesh(swarm, 8383, &hostnames(&live(&gx)));
    wait_mesh(swarm, 8384, &hostnames(&live(&gi)));
    // The host-mode port: each node by its own task only.
    for task in live(&gh) {
        let node = node_of(&names, task);
        wait_answered(swarm, &node, 8080, &BTreeSet::from([hostname(task)]));
    }
    let ps = swarm.hive_line("n1", "service ps gh");
    assert_eq!(
        ps.matches("*:8080->80/tcp").count(),
        3,
        "host-mode port in every task's PORTS: {ps}"
    );
    assert!(ls_row(swarm, "gx").contains("*:8383->80/tcp"));

    // East-west on the overlay, by DNS name and VIP, both ways.
    let gi_vip = vip(&inspect(swarm, "gi"), &overlay);
    let gh_vip = vip(&inspect(swarm, "gh"), &overlay);
    let from_gh = task_netns(swarm, &names, live(&gh)[0]);
    wait_east_west(&from_gh, "gi", gi_vip, &hostnames(&live(&gi)));
    let from_gi = task_netns(swarm, &names, live(&gi)[0]);
    wait_east_west(&from_gi, "gh", gh_vip, &hostnames(&live(&gh)));
}

/// Issue 13, item 3: two published ports to one target, and a host port added by update.
fn two_published_ports_to_one_target_and_ports_added_by_update_are_answered(swarm: &Swarm) {
    let names = node_names(swarm);
    swarm.hive_line(
        "n1",
        "service create -d --name pp -p 8686:80 -p 8687:80 hive/whoami",
    );
    let pp = wait_running(swarm, "pp", 1);
    for port in [8686, 8687] {
        wait_mesh(swarm, port, &hostnames(&live(&pp)));
    }
    // Docker groups published ports that lead to one target: `*:8686-8687->80/tcp`.
    assert!(
        ls_row(swarm, "pp").ends_with(" *:8686-8687->80/tcp"),
        "{}",
        ls_row(swarm, "pp")
    );

    swarm.hive_line(
        "n1",
        "service create -d --name hm --replicas 2 \
         --publish mode=host,target=80,published=8181 hive/whoami",
    );
    let before = hostnames(&live(&wait_running(swarm, "hm", 2)));
    swarm.hive_line(
        "n1",
        "service update -d --publish-add mode=host,target=80,published=8484 hm",
    );
    let hm = wait_tasks(swarm, "hm", "hm's tasks replaced", |t| {
        let live = live(t);
        live.len() == 2 && hostnames(&live).len() == 2 && hostnames(&live).is_disjoint(&before)
    });
    for task in live(&hm) {
        let node = node_of(&names, task);
        for port in [8181, 8484] {
            wait_answered(swarm, &node, port, &BTreeSet::from([hostname(task)]));
        }
    }
    // The nodes of hm's tasks still program new services.
    swarm.hive_line("n1", "service create -d --name p85 -p 8585:80 hive/whoami");
    let p85 = wait_running(swarm, "p85", 1);
    wait_mesh(swarm, 8585, &hostnames(&live(&p85)));
}

/// Issue 13, item 3: a spec no node could program is refused, naming the port.
fn specs_no_node_could_program_are_refused_by_the_manager(swarm: &Swarm) {
    let p85 = inspect(swarm, "p85");
    let hm = inspect(swarm, "hm");
    let err = swarm.hive_err(
        "n1",
        &[
            "service",
            "create",
            "--name",
            "clash",
            "--publish",
            "mode=host,target=80,published=8585",
            "hive/whoami",
        ],
    );
    assert!(
        err.contains(&format!(
            "port '8585' is already in use by service 'p85' ({}) as an ingress port",
            p85.id
        )),
        "{err}"
    );
    let err = swarm.hive_err(
        "n1",
        &["service", "update", "--publish-add", "8181:80", "pp"],
    );
    assert!(
        err.contains(&format!(
            "port '8181' is already in use by service 'hm' ({}) as a host-published port",
            hm.id
        )),
        "{err}"
    );
    let ls = swarm.hive_line("n1", "service ls");
    assert!(!ls.contains(" clash "), "nothing created: {ls}");
    assert!(
        ls_row(swarm, "pp").ends_with(" *:8686-8687->80/tcp"),
        "pp unchanged: {ls}"
    );
}

/// Issue 13, item 3: one service a node cannot program is reported, by its task in
/// `service ps` and in the agent's log, while every other service keeps being programmed.
fn a_service_a_node_cannot_program_is_reported_alone(swarm: &Swarm) {
    let names = node_names(swarm);
    swarm.hive_line(
        "n1",
        &format!("service create -d --name {UNPROGRAMMABLE} -p 8787:80 hive/whoami"),
    );
    let refused = wait_tasks(swarm, UNPROGRAMMABLE, "its task says why", |t| {
        live(t).iter().any(|t| {
            t.status
                .err
                .contains("this node's data plane cannot program the service")
        })
    });
    let home = node_of(&names, live(&refused)[0]);
    let ps = swarm.hive_line("n1", &format!("service ps --no-trunc {UNPROGRAMMABLE}"));
    assert!(
        ps.contains(&format!(
            "this node's data plane cannot program the service: service \\\"{UNPROGRAMMABLE}\\\": port 0 is not a port"
        )) || ps.contains(&format!(
            "this node's data plane cannot program the service: service \"{UNPROGRAMMABLE}\": port 0 is not a port"
        )),
        "{ps}"
    );
    let log_path = hive::lab_swarm::log_path(swarm.lab(), &home).expect("the daemon's log");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("mesh: service not programmed; the other services are")
            && log.contains("port 0 is not a port")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no refusal in {}",
            log_path.display()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // A service created afterwards is answered on every node, and the earlier ones still are.
    swarm.hive_line(
        "n1",
        "service create -d --name after -p 8888:80 hive/whoami",
    );
    let after = wait_running(swarm, "after", 1);
    wait_mesh(swarm, 8888, &hostnames(&live(&after)));
    let gx = tasks(swarm, "gx");
    wait_mesh(swarm, 8383, &hostnames(&live(&gx)));
    // The refused one is not answered anywhere.
    for node in NODES {
        let answers = probe(swarm, node, 8787);
        assert!(
            answers.hosts.is_empty(),
            "{node}:8787 answered by {:?}",
            answers.hosts
        );
    }
}

/// Issue 13, "Also": `hive mesh stats` and `hive mesh trace` name services and backends as
/// `service ps` does; `--no-trunc` shows the IDs.
fn mesh_stats_and_trace_show_services_and_tasks_by_name(swarm: &Swarm) {
    let gx = inspect(swarm, "gx");
    let names = node_names(swarm);
    let gx_tasks = tasks(swarm, "gx");
    let on_n1 = live(&gx_tasks)
        .into_iter()
        .find(|t| node_of(&names, t) == "n1")
        .expect("gx runs on n1");
    let task_name = format!("gx.{}", on_n1.node_id.as_deref().unwrap_or_default());

    let stats = swarm.hive_line("n1", "mesh stats");
    assert!(
        stats
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("gx")),
        "gx by name: {stats}"
    );
    assert!(
        stats.contains(&format!(" \\_ {task_name} (local)")),
        "n1's gx task by name: {stats}"
    );
    assert!(!stats.contains(&gx.id), "no IDs: {stats}");
    let stats = swarm.hive_line("n1", "mesh stats --no-trunc --service gx");
    assert!(stats.contains(&gx.id), "IDs with --no-trunc: {stats}");
    assert!(
        stats.contains(&format!(" \\_ {} (local)", on_n1.id)),
        "{stats}"
    );

    // A trace of gx on n1 while the client asks n1's published port.
    let mut command = swarm
        .lab()
        .command("n1", support::HIVE)
        .expect("lab command");
    command
        .args([
            "mesh",
            "trace",
            "--service",
            "gx",
            "--count",
            "3",
            "--duration",
            "30s",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let trace = command.spawn().expect("spawn hive mesh trace");
    let deadline = Instant::now() + PATIENCE;
    // The trace is on once its first line went to stderr; probe until it has its events.
    let mut done = None;
    let mut trace = Some(trace);
    while done.is_none() {
        probe(swarm, "n1", 8383);
        if let Some(child) = trace.as_mut()
            && child.try_wait().expect("try_wait").is_some()
        {
            done = trace.take();
        }
        assert!(Instant::now() < deadline, "no trace events of gx on n1");
    }
    let out = support::wait_output(done.expect("ended"), "hive mesh trace");
    let lines = support::text(&out.stdout);
    assert!(
        lines.lines().any(|l| l.contains(" service gx -> gx.")),
        "trace lines name the service and its task: {lines}\n{}",
        support::text(&out.stderr)
    );
    assert!(!lines.contains(&gx.id), "{lines}");
}
