//! The routing mesh with real traffic on a lab, each node's data plane driven
//! by a hand-written `MeshState` (no control plane): published ports on every
//! node answered by every backend with the client's real address, UDP, a VIP
//! from inside a task, drain of a removed backend, and agent restarts under
//! a running connection and a running load.
//!
//! Needs root. Without it: fails when `CI` is set, otherwise skips with a
//! printed reason.

use crate::support;
use std::{
    collections::BTreeSet,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use hive::demo::{Answer, http_get, parse_answer};
use hive_common::maps::PacketCounterSlot;
use hive_dataplane::{
    mesh::{Protocol, ServicePort},
    netns,
};
use hive_lab::{
    LabGuard, LabSpec,
    static_mesh::{ServiceDef, StaticMesh},
};

const HIVE: &str = env!("CARGO_BIN_EXE_hive");
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 100);
const IO_TIMEOUT: Duration = Duration::from_secs(3);

fn privileged(test: &str) -> bool {
    hive_test_support::root_or_skip(test, "network namespaces, eBPF")
}

/// A 3-node lab with whoami tasks t1..t3 (one per node) behind service `web`,
/// published on 8080 and reachable at VIP 10.0.0.2:80.
fn web_mesh(lab_name: &str) -> (LabGuard, StaticMesh) {
    let lab = LabGuard::up(&LabSpec::new(lab_name, 3)).expect("lab up");
    let mut mesh = StaticMesh::new(&lab, 0x5eed).expect("data plane on every node");
    for (task, node) in [("t1", "n1"), ("t2", "n2"), ("t3", "n3")] {
        mesh.add_task(
            task,
            node,
            HIVE,
            &["builtin", "whoami", "--listen", "0.0.0.0:80"],
        )
        .expect("start task");
    }
    mesh.set_service(ServiceDef {
        id: "websvc0000000000000000001".into(),
        name: "web".into(),
        vip: Some(Ipv4Addr::new(10, 0, 0, 2)),
        ports: vec![ServicePort {
            protocol: Protocol::Tcp,
            target_port: 80,
            published_port: Some(8080),
        }],
        backends: vec!["t1".into(), "t2".into(), "t3".into()],
    });
    mesh.apply().expect("apply");
    for task in ["t1", "t2", "t3"] {
        wait_for_listener(&mesh, task, 80);
    }
    (lab, mesh)
}

/// Wait (bounded) until a task's server accepts on its own address.
fn wait_for_listener(mesh: &StaticMesh, task: &str, port: u16) {
    let task = mesh.task(task).expect("task");
    let addr = SocketAddr::from((task.addr, port));
    for _ in 0..100 {
        let up = netns::run_in(&task.netns, || {
            TcpStream::connect_timeout(&addr, IO_TIMEOUT).is_ok()
        })
        .expect("enter task namespace");
        if up {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("task {} never listened on {addr}", task.id);
}

/// One request on an open keep-alive connection.
fn request_on(stream: &mut TcpStream) -> Answer {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: mesh\r\n\r\n")
        .expect("send on the open connection");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read until the body (Content-Length) is complete.
    loop {
        let n = stream
            .read(&mut chunk)
            .expect("read on the open connection");
        assert!(n > 0, "the open connection was closed by the mesh");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse().ok())
                .expect("content-length");
            if body.len() >= len {
                return parse_answer(&text).expect("a whoami response");
            }
        }
    }
}

/// A keep-alive connection from `client` to `to`, and the replica that
/// answered its first request.
fn open_keep_alive(client: &Path, to: SocketAddr) -> (TcpStream, String) {
    let mut stream = netns::run_in(client, || TcpStream::connect_timeout(&to, IO_TIMEOUT))
        .expect("client ns")
        .expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let pinned = request_on(&mut stream).hostname;
    (stream, pinned)
}

/// Packets `node`'s programs moved straight into one of its tasks.
fn handed_into_tasks(mesh: &StaticMesh, node: &str) -> u64 {
    mesh.dataplane(node)
        .expect("data plane")
        .maps()
        .packet_counter(PacketCounterSlot::TaskHandoff)
        .expect("counter")
        .packets
}

fn client_ns(lab: &LabGuard) -> std::path::PathBuf {
    lab.netns_path("client").expect("client").to_path_buf()
}

#[test]
fn published_port_on_every_node_reaches_every_backend_with_the_client_ip() {
    if !privileged("published_port_on_every_node_reaches_every_backend_with_the_client_ip") {
        return;
    }
    let _group = support::file_group();
    let (lab, mesh) = web_mesh("mesh-pub");
    let client = client_ns(&lab);
    for node in ["n1", "n2", "n3"] {
        let published = SocketAddr::from((lab.node_addr(node).expect("addr"), 8080));
        let mut seen = BTreeSet::new();
        // New connections come from new source ports, so Maglev spreads
        // them; 60 tries make missing one of 3 backends vanishingly rare.
        for _ in 0..60 {
            let answer = http_get(&client, published).expect("request through the mesh");
            assert_eq!(
                answer.remote.ip(),
                CLIENT,
                "the task saw {} instead of the client's address",
                answer.remote
            );
            seen.insert(answer.hostname);
            if seen.len() == 3 {
                break;
            }
        }
        assert_eq!(
            seen,
            BTreeSet::from(["t1".to_owned(), "t2".to_owned(), "t3".to_owned()]),
            "{node}:8080 did not reach every backend (local and remote)"
        );
    }
    // Each node's task got requests through the other nodes' tunnels; those
    // went into it past the node's IP stack.
    for node in ["n1", "n2", "n3"] {
        assert!(
            handed_into_tasks(&mesh, node) > 0,
            "{node}: no decapsulated packet was handed straight to its task"
        );
    }
    mesh.teardown().expect("teardown");
}

#[test]
fn udp_published_port_answers_from_the_address_the_client_used() {
    if !privileged("udp_published_port_answers_from_the_address_the_client_used") {
        return;
    }
    let _group = support::file_group();
    let lab = LabGuard::up(&LabSpec::new("mesh-udp", 3)).expect("lab up");
    let mut mesh = StaticMesh::new(&lab, 7).expect("data plane");
    for (task, node) in [("u1", "n2"), ("u2", "n3")] {
        mesh.add_task(
            task,
            node,
            HIVE,
            &["builtin", "echo", "--listen", "0.0.0.0:7"],
        )
        .expect("start task");
    }
    mesh.set_service(ServiceDef {
        id: "echosvc000000000000000001".into(),
        name: "echo".into(),
        vip: None,
        ports: vec![ServicePort {
            protocol: Protocol::Udp,
            target_port: 7,
            published_port: Some(5353),
        }],
        backends: vec!["u1".into(), "u2".into()],
    });
    mesh.apply().expect("apply");
    let client = client_ns(&lab);
    for node in ["n1", "n2", "n3"] {
        let published = SocketAddr::from((lab.node_addr(node).expect("addr"), 5353));
        netns::run_in(&client, || {
            let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
            socket
                .set_read_timeout(Some(Duration::from_millis(500)))
                .expect("timeout");
            let payload = format!("hello {node}");
            let mut buf = [0u8; 128];
            // UDP may lose the first datagram while neighbours resolve.
            let answer = (0..10).find_map(|_| {
                socket.send_to(payload.as_bytes(), published).ok()?;
                socket.recv_from(&mut buf).ok()
            });
            let (len, from) = answer.unwrap_or_else(|| panic!("no UDP echo through {published}"));
            assert_eq!(&buf[..len], payload.as_bytes());
            assert_eq!(
                from, published,
                "the reply must come from the published address"
            );
        })
        .expect("client namespace");
    }
    let veths: Vec<(String, String)> = ["u1", "u2"]
        .into_iter()
        .map(|id| {
            let task = mesh.task(id).expect("task");
            (task.node.clone(), task.link.host_ifname.clone())
        })
        .collect();
    // Something still holds the tasks' namespaces (as a slow-exiting worker
    // would), so the kernel cannot free them, and their veths, by itself.
    let held: Vec<_> = ["u1", "u2"]
        .into_iter()
        .map(|id| netns::open(&mesh.task(id).expect("task").netns).expect("task namespace"))
        .collect();
    mesh.teardown().expect("teardown");
    // A task's veth goes with the mesh, not whenever the kernel frees its
    // namespace: a mesh started next on the same nodes must be able to
    // attach tasks of the same IDs at once.
    for (node, veth) in &veths {
        let node_ns = lab.netns_path(node).expect("node").to_path_buf();
        let left = netns::run_in(&node_ns, || {
            nix::net::if_::if_nametoindex(veth.as_str()).ok()
        })
        .expect("node namespace");
        assert_eq!(
            left, None,
            "{node}: veth {veth} outlived the mesh's teardown"
        );
    }
    drop(held);
    let mut again = StaticMesh::new(&lab, 7).expect("data plane");
    for (task, node) in [("u1", "n2"), ("u2", "n3")] {
        again
            .add_task(
                task,
                node,
                HIVE,
                &["builtin", "echo", "--listen", "0.0.0.0:7"],
            )
            .expect("the same task IDs attach again after a teardown");
    }
    again.teardown().expect("teardown");
}

#[test]
fn a_task_reaches_a_service_vip_and_the_reply_comes_from_the_vip() {
    if !privileged("a_task_reaches_a_service_vip_and_the_reply_comes_from_the_vip") {
        return;
    }
    let _group = support::file_group();
    let (_lab, mut mesh) = web_mesh("mesh-vip");
    // A task without a server, on n1, acting as the caller.
    let caller_addr = mesh
        .add_task("caller", "n1", "sleep", &["600"])
        .expect("caller task");
    mesh.apply().expect("apply");
    let caller_ns = mesh.task("caller").expect("caller").netns.clone();
    let vip = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 2), 80));
    let mut seen = BTreeSet::new();
    for _ in 0..60 {
        // `connect` only succeeds if the SYN-ACK came back from the VIP.
        let answer = http_get(&caller_ns, vip).expect("request to the VIP");
        assert_eq!(
            answer.remote.ip(),
            caller_addr,
            "the backend saw {}",
            answer.remote
        );
        seen.insert(answer.hostname);
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(seen.len(), 3, "the VIP reached only {seen:?}");

    // A task of the same node by its own address: both ways straight from
    // one task's veth into the other's namespace, past n1's IP stack.
    let handed_before = handed_into_tasks(&mesh, "n1");
    let t1 = mesh.task("t1").expect("t1").addr;
    let answer = http_get(&caller_ns, SocketAddr::from((t1, 80))).expect("request to t1");
    assert_eq!(answer.hostname, "t1");
    assert_eq!(answer.remote.ip(), caller_addr);
    assert!(
        handed_into_tasks(&mesh, "n1") > handed_before,
        "the exchange between two tasks of n1 went through n1's IP stack"
    );

    // A task that is its service's only replica reaches itself through the
    // VIP (hairpin), as a Swarm task can, and sees the VIP as the caller.
    let solo_vip = Ipv4Addr::new(10, 0, 0, 3);
    mesh.set_service(ServiceDef {
        id: "solosvc000000000000000001".into(),
        name: "solo".into(),
        vip: Some(solo_vip),
        ports: vec![ServicePort {
            protocol: Protocol::Tcp,
            target_port: 80,
            published_port: None,
        }],
        backends: vec!["t1".into()],
    });
    mesh.apply().expect("apply");
    let t1_ns = mesh.task("t1").expect("t1").netns.clone();
    for _ in 0..3 {
        let answer = http_get(&t1_ns, SocketAddr::from((solo_vip, 80)))
            .expect("t1 reaches its own service's VIP");
        assert_eq!(answer.hostname, "t1");
        assert_eq!(answer.remote.ip(), solo_vip, "t1 saw {}", answer.remote);
    }
    mesh.teardown().expect("teardown");
}

#[test]
fn a_removed_backend_keeps_its_open_connection_and_gets_no_new_ones() {
    if !privileged("a_removed_backend_keeps_its_open_connection_and_gets_no_new_ones") {
        return;
    }
    let _group = support::file_group();
    let (lab, mut mesh) = web_mesh("mesh-drain");
    let client = client_ns(&lab);
    let published = SocketAddr::from((lab.node_addr("n1").expect("addr"), 8080));
    let (mut stream, pinned) = open_keep_alive(&client, published);

    let others: Vec<&str> = ["t1", "t2", "t3"]
        .into_iter()
        .filter(|t| *t != pinned)
        .collect();
    mesh.set_backends("web", &others).expect("backends");
    mesh.apply().expect("apply without the backend");

    for _ in 0..3 {
        assert_eq!(
            request_on(&mut stream).hostname,
            pinned,
            "the established connection must stay on its backend"
        );
    }
    for _ in 0..40 {
        let answer = http_get(&client, published).expect("new connection");
        assert_ne!(
            answer.hostname, pinned,
            "a removed backend got a new connection"
        );
    }
    drop(stream);
    mesh.teardown().expect("teardown");
}

#[test]
fn restarting_the_agent_drops_no_connection_and_no_request() {
    if !privileged("restarting_the_agent_drops_no_connection_and_no_request") {
        return;
    }
    let _group = support::file_group();
    let (lab, mut mesh) = web_mesh("mesh-rst");
    let client = client_ns(&lab);
    let published = SocketAddr::from((lab.node_addr("n1").expect("addr"), 8080));
    let (mut stream, pinned) = open_keep_alive(&client, published);

    // A running load: new connections back to back until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, ok, failed, client) = (stop.clone(), ok.clone(), failed.clone(), client.clone());
        std::thread::spawn(move || {
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match http_get(&client, published) {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    for node in ["n1", "n2", "n3"] {
        mesh.restart_agent(node).expect("agent restart");
        assert_eq!(
            request_on(&mut stream).hostname,
            pinned,
            "the open connection moved or broke"
        );
    }
    stop.store(true, Ordering::Relaxed);
    load.join().expect("load thread");
    assert!(
        ok.load(Ordering::Relaxed) > 0,
        "the load made no request at all"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the agent restarts"
    );
    mesh.teardown().expect("teardown");
}
