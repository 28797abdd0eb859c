//! Lab tests of who the swarm trusts (issue 18, items 5 and 6; docs/security.md): a removed
//! node's certificate is refused by every API, gossip from a host that is not a node (or from a
//! removed node) changes nothing, and the root CA rotates under load without a restart.

use crate::support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hive::api::pb;
use support::tasks::{is_running, wait_running};
use support::{PATIENCE, Swarm, privileged, runtime, text};

fn node_id(swarm: &Swarm, host: &str) -> String {
    swarm
        .nodes("n1")
        .expect("node ls")
        .into_iter()
        .find(|n| n.description.as_ref().is_some_and(|d| d.hostname == host))
        .unwrap_or_else(|| panic!("{host} in node ls"))
        .id
}

/// Every API of a manager's node port, called with `tls` from `netns`: what each answered.
fn call_every_manager_api(
    netns: &std::path::Path,
    tls: Arc<rustls::ClientConfig>,
    manager: &'static str,
) -> Vec<(&'static str, Result<(), tonic::Status>)> {
    hive_dataplane::netns::run_in(netns, move || {
        runtime().block_on(async move {
            let channel =
                hive::transport::mtls_channel(manager, tls, hive::pki::manager_server_name())
                    .expect("channel");
            let mut control = pb::control_client::ControlClient::new(channel.clone());
            let mut dispatcher = pb::dispatcher_client::DispatcherClient::new(channel.clone());
            let mut ca = pb::ca_client::CaClient::new(channel.clone());
            let mut raft = pb::raft_client::RaftClient::new(channel);
            vec![
                (
                    "JoinToken(manager)",
                    control
                        .join_token(pb::JoinTokenRequest {
                            role: pb::Role::Manager.into(),
                            ..Default::default()
                        })
                        .await
                        .map(drop),
                ),
                (
                    "ListNodes",
                    control.list_nodes(pb::ListNodesRequest {}).await.map(drop),
                ),
                (
                    "Dispatcher.Register",
                    dispatcher
                        .register(pb::RegisterRequest::default())
                        .await
                        .map(drop),
                ),
                (
                    "Ca.RenewNodeCertificate",
                    ca.renew_node_certificate(pb::RenewNodeCertificateRequest::default())
                        .await
                        .map(drop),
                ),
                (
                    "Raft.Ping",
                    raft.ping(pb::PingRequest::default()).await.map(drop),
                ),
            ]
        })
    })
    .expect("run in the namespace")
}

#[test]
fn a_removed_managers_saved_certificate_gets_nothing_from_any_api() {
    if !privileged("a_removed_managers_saved_certificate_gets_nothing_from_any_api") {
        return;
    }
    let _serial = support::serial();
    let swarm = Swarm::up("pki-rm", 4, 3);
    let n3 = swarm.lab().member("n3").expect("n3").clone();
    // The manager certificate, copied while n3 is a manager.
    let saved = hive::pki::CertDir::in_data_dir(n3.data_dir.as_deref().expect("data dir"))
        .load(std::time::SystemTime::now())
        .expect("n3's certificates");
    assert_eq!(saved.identity().role, hive::pki::Role::Manager);
    let tls = Arc::new(hive::pki::client_config(&saved).expect("client config"));
    let n3_id = node_id(&swarm, "n3");

    swarm.hive_ok("n1", &["node", "demote", "n3"]);
    swarm.wait_nodes("n3 a worker", &["n1"], |nodes| {
        nodes
            .iter()
            .any(|n| n.id == n3_id && n.manager_status.is_none() && n.role() == pb::Role::Worker)
    });
    // Demoted but not removed, the saved manager certificate still works (as in Swarm: the
    // node's role changes with its next certificate).
    let before = call_every_manager_api(&n3.netns_path, tls.clone(), "192.168.77.1:2377");
    assert!(before[0].1.is_ok(), "before removal: {:?}", before[0]);

    swarm.hive_ok("n1", &["node", "rm", "--force", "n3"]);
    for manager in ["192.168.77.1:2377", "192.168.77.2:2377"] {
        let after = call_every_manager_api(&n3.netns_path, tls.clone(), manager);
        for (api, result) in after {
            let status = result.expect_err(&format!("{api} on {manager} answered a removed node"));
            assert_eq!(
                status.code(),
                tonic::Code::PermissionDenied,
                "{api} on {manager}: {status:?}"
            );
            assert!(
                status.message().contains("was removed from the swarm"),
                "{api} on {manager}: {}",
                status.message()
            );
        }
    }

    // A worker learns the removed nodes from its session (each heartbeat): its Agent service
    // refuses the saved certificate too.
    let n4_id = node_id(&swarm, "n4");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (tls, n4_id) = (tls.clone(), n4_id.clone());
        let status = hive_dataplane::netns::run_in(&n3.netns_path, move || {
            runtime().block_on(async move {
                let channel = hive::transport::mtls_channel(
                    "192.168.77.4:2377",
                    tls,
                    hive::pki::node_server_name(&n4_id).expect("server name"),
                )
                .expect("channel");
                pb::agent_client::AgentClient::new(channel)
                    .task_logs(pb::TaskLogsRequest::default())
                    .await
                    .map(drop)
            })
        })
        .expect("run in n3");
        match status {
            Err(s) if s.message().contains("was removed from the swarm") => break,
            other => assert!(
                Instant::now() < deadline,
                "n4's Agent service still answers the removed node: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `hive_gossip_peer_up{node="ID"}` on `node`, if present.
fn peer_up(swarm: &Swarm, node: &str, peer: &str) -> Option<bool> {
    let metrics = swarm.metrics(node);
    let prefix = format!("hive_gossip_peer_up{{node=\"{peer}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim() == "1")
}

fn dropped(swarm: &Swarm, node: &str) -> u64 {
    swarm
        .metrics(node)
        .lines()
        .find_map(|l| l.strip_prefix("hive_gossip_dropped_datagrams_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[test]
fn forged_gossip_from_the_client_changes_no_nodes_state() {
    if !privileged("forged_gossip_from_the_client_changes_no_nodes_state") {
        return;
    }
    let _serial = support::serial();
    let swarm = Swarm::up("pki-gsp", 3, 1);
    let n2_id = node_id(&swarm, "n2");
    let cluster_id = {
        let mut client = swarm.client("n1");
        swarm
            .rt
            .block_on(client.control.inspect_swarm())
            .expect("inspect")
            .cluster_id
    };
    // Gossip is authenticated and up: n1 and n3 see n2.
    let deadline = Instant::now() + PATIENCE;
    while !(peer_up(&swarm, "n1", &n2_id) == Some(true)
        && peer_up(&swarm, "n3", &n2_id) == Some(true))
    {
        assert!(Instant::now() < deadline, "gossip never saw n2 up");
        std::thread::sleep(Duration::from_millis(200));
    }
    let dropped_before = dropped(&swarm, "n1");

    // `hive swarm ca` prints the root every node trusts; rotation is refused, not ignored.
    let root = swarm.hive_ok("n1", &["swarm", "ca"]);
    let n2 = swarm.lab().member("n2").expect("n2").clone();
    let saved = std::fs::read_to_string(
        n2.data_dir
            .as_deref()
            .expect("data dir")
            .join("certificates/swarm-root-ca.crt"),
    )
    .expect("n2's root");
    assert!(root.starts_with("-----BEGIN CERTIFICATE-----"), "{root}");
    assert_eq!(root.trim(), saved.trim());
    let refused = swarm.hive_err("n1", &["swarm", "ca", "--cert-expiry", "1h"]);
    assert!(
        refused.contains("`--cert-expiry` flag requires the `--rotate` flag"),
        "{refused}"
    );

    // From the client: chitchat's own format, the right cluster ID, n2's node ID with a newer
    // generation (a "restart"), then a graceful leave. Unauthenticated, this would take n2
    // down in every mesh.
    let client_ip = swarm.lab().node_addr("client").expect("client address");
    let mut forger = swarm
        .lab()
        .command("client", support::HIVE)
        .expect("client command");
    forger
        .args([
            "gossip-agent",
            "--node-id",
            &n2_id,
            "--cluster-id",
            &cluster_id,
            "--advertise-addr",
            &format!("{client_ip}:7946"),
            "--seed",
            "192.168.77.1:7946",
            "--seed",
            "192.168.77.3:7946",
            "--generation",
            &u64::MAX.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let child = forger.spawn().expect("start the forger");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        for node in ["n1", "n3"] {
            assert_eq!(
                peer_up(&swarm, node, &n2_id),
                Some(true),
                "{node} lost n2 to forged gossip"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGTERM: the forger "leaves" as n2.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let output = support::wait_output(child, "the forger");
    let events = text(&output.stdout);
    assert!(
        !events.contains("\"NodeUp\"") && !events.contains("node_up"),
        "the forger met the swarm: {events}"
    );
    std::thread::sleep(Duration::from_secs(1));
    for node in ["n1", "n3"] {
        assert_eq!(
            peer_up(&swarm, node, &n2_id),
            Some(true),
            "{node} lost n2 to the forged leave"
        );
    }
    assert!(
        dropped(&swarm, "n1") > dropped_before,
        "the forged datagrams reached n1 and were dropped"
    );
}

/// New connections from the lab's client to `to`, one after the other until stopped:
/// (sent, failed).
struct RequestLoop {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, usize)>,
}

impl RequestLoop {
    fn start(swarm: &Swarm, to: SocketAddr) -> Self {
        let client = swarm
            .lab()
            .netns_path("client")
            .expect("client namespace")
            .to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut sent, mut failed) = (0, 0);
            while !stopped.load(Ordering::Relaxed) {
                sent += 1;
                if let Err(err) = hive::demo::http_get(&client, to) {
                    failed += 1;
                    eprintln!("GET http://{to}/ failed: {err}");
                }
            }
            (sent, failed)
        });
        Self { stop, thread }
    }

    fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("request loop")
    }
}

/// Stops the loop when the test fails before [`RequestLoop::stop`].
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Task ID → (node, container ID, process) of the running tasks of `service`.
fn running(swarm: &Swarm, service: &str) -> BTreeMap<String, (String, String, u32)> {
    support::tasks::tasks(swarm, service)
        .into_iter()
        .filter(is_running)
        .map(|t| {
            let runtime = t.status.runtime.clone().unwrap_or_default();
            (
                t.id.clone(),
                (
                    t.node_id.clone().unwrap_or_default(),
                    runtime.runtime_id,
                    runtime.pid,
                ),
            )
        })
        .collect()
}

#[test]
fn the_root_ca_rotates_under_load_without_a_restart_and_old_join_tokens_stop_working() {
    if !privileged(
        "the_root_ca_rotates_under_load_without_a_restart_and_old_join_tokens_stop_working",
    ) {
        return;
    }
    let _serial = support::serial();
    let swarm = Swarm::up("ca-rot", 5, 3);
    // n5 leaves, to come back with a token after the rotation.
    assert_eq!(
        swarm.hive_ok("n5", &["swarm", "leave"]).trim(),
        "Node left the swarm."
    );
    swarm.hive_line(
        "n1",
        "service create -d --name web --replicas 4 -p 8080:80 hive/whoami",
    );
    wait_running(&swarm, "web", 4);
    let before = running(&swarm, "web");
    let to = SocketAddr::from((swarm.lab().node_addr("n1").expect("n1"), 8080));
    let client = swarm.lab().netns_path("client").expect("client namespace");
    let deadline = Instant::now() + PATIENCE;
    while hive::demo::http_get(client, to).is_err() {
        assert!(Instant::now() < deadline, "{to} never answered");
        std::thread::sleep(Duration::from_millis(200));
    }
    let old_root = swarm.hive_ok("n1", &["swarm", "ca"]);
    let old_token = swarm.hive_ok("n1", &["swarm", "join-token", "-q", "worker"]);

    let load = RequestLoop::start(&swarm, to);
    let _stop_on_failure = StopOnDrop(load.stop.clone());
    // Blocks until the rotation is done, showing Docker's progress; then prints the new root.
    let rotated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        swarm.hive_ok("n2", &["swarm", "ca", "--rotate"])
    }))
    .unwrap_or_else(|failure| {
        // What the daemons said about certificates, to see which node held the rotation up.
        for n in 1..=5 {
            let log = hive_lab::naming::daemon_log("ca-rot", hive_lab::naming::Member::Node(n));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            for line in text.lines().filter(|l| {
                l.contains("certificate") || l.contains("root CA") || l.contains("WARN")
            }) {
                eprintln!("n{n}: {line}");
            }
        }
        std::panic::resume_unwind(failure)
    });
    let (sent, failed) = load.stop();

    assert!(
        rotated.starts_with("desired root digest: sha256:"),
        "{rotated}"
    );
    assert!(
        rotated.contains("  rotated TLS certificates:  [==================================================>] 4/4 nodes\n")
            && rotated.contains("  rotated CA certificates:   [==================================================>] 4/4 nodes\n"),
        "{rotated}"
    );
    let new_root = &rotated[rotated
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no root in {rotated}"))..];
    assert_ne!(new_root.trim(), old_root.trim());
    assert_eq!(
        swarm.hive_ok("n3", &["swarm", "ca"]).trim(),
        new_root.trim()
    );
    let new_root = hive::pki::RootCert::from_pem(new_root).expect("the new root");

    // Every node holds a certificate issued by the new root, and trusts it.
    for node in ["n1", "n2", "n3", "n4"] {
        let member = swarm.lab().member(node).expect("node").clone();
        let creds = hive::pki::CertDir::in_data_dir(member.data_dir.as_deref().expect("dir"))
            .load(std::time::SystemTime::now())
            .unwrap_or_else(|e| panic!("{node}'s certificates: {e}"));
        assert_eq!(
            creds.root().digest(),
            new_root.digest(),
            "{node}'s certificate is not chained to the new root"
        );
    }

    // No request failed, and no task restarted: same tasks, containers and processes.
    assert!(sent > 0);
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the rotation"
    );
    assert_eq!(
        running(&swarm, "web"),
        before,
        "tasks restarted during the rotation"
    );

    // The old join token is refused; the new one admits a node.
    let refused = swarm.hive_err(
        "n5",
        &[
            "swarm",
            "join",
            "--token",
            old_token.trim(),
            "192.168.77.1:2377",
        ],
    );
    assert!(refused.contains("rotated CA"), "{refused}");
    let new_token = swarm.hive_ok("n1", &["swarm", "join-token", "-q", "worker"]);
    assert_ne!(new_token.trim(), old_token.trim());
    assert_eq!(
        swarm
            .hive_ok(
                "n5",
                &[
                    "swarm",
                    "join",
                    "--token",
                    new_token.trim(),
                    "192.168.77.2:2377"
                ]
            )
            .trim(),
        "This node joined a swarm as a worker."
    );
    swarm.wait_nodes("the new n5 ready", &["n1"], |nodes| {
        nodes.iter().any(|n| {
            n.description.as_ref().is_some_and(|d| d.hostname == "n5")
                && n.status.as_ref().map(|s| s.state()) == Some(pb::NodeState::Ready)
        })
    });
}
