//! Lab tests of who the swarm trusts (issue 18, item 6; docs/security.md): a removed node's
//! certificate is refused by every API, and gossip from a host that is not a node (or from a
//! removed node) changes nothing.

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hive::api::pb;
use support::{PATIENCE, SERIAL, Swarm, privileged, runtime, text};

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
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
