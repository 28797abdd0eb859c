//! The direct-return mesh mode on a lab swarm (docs/dsr.md): `hive swarm update --mesh-mode`
//! reaches every node's data plane; with `dsr`, requests from the lab's `client` to n1's
//! published port that n1 balances to the task on n2 are answered by n2 itself (n2's
//! direct-return counter moves, the tasks still see the client's address); switching back to
//! `snat` at runtime keeps connections opened before the switch working, and new ones take
//! today's path again (n2's counter stays still). The same swarm then carries its mesh over
//! the lab's wire switched from n1 to n2 (`hive_lab::wire`, what the bulk bench's
//! `/switched` rows measure).
//!
//! Needs root.

use crate::support;

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hive::demo::parse_answer;
use hive_dataplane::node_pins::{NodeChoice, PinsQuery};
use support::tasks::{CLIENT, hostname, live, probe, wait_mesh, wait_running};
use support::{PATIENCE, Swarm, privileged};

const PORT: u16 = 8080;
const PROBES: usize = 12;

/// n2's and n1's direct-return counters: (replies n2 sent straight to clients, client
/// packets n1 tunnelled for direct return).
fn counters(swarm: &Swarm) -> (u64, u64) {
    let read = |node: &str| {
        let pins = PinsQuery {
            lab: Some(swarm.lab().name().to_owned()),
            pin_dir: None,
            nodes: NodeChoice::One(node.to_owned()),
        }
        .resolve()
        .expect("the node's pins");
        let stats = hive_dataplane::stats::read_node(&pins[0], None).expect("the node's counters");
        (stats.direct_return_packets, stats.direct_ingress_packets)
    };
    (read("n2").0, read("n1").1)
}

/// Probes n1's published port until every probe is answered with the client's address and
/// `done(before, after)` holds for the counters around one round of probes.
fn probe_until(swarm: &Swarm, what: &str, done: impl Fn((u64, u64), (u64, u64)) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let before = counters(swarm);
        let answers = probe(swarm, "n1", PORT, PROBES);
        let after = counters(swarm);
        let clean = answers.failures == 0 && answers.remotes.iter().all(|r| r.ip() == CLIENT);
        if clean && done(before, after) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: answers {:?} ({} failures, remotes {:?}), counters {before:?} -> {after:?}",
            answers.hosts,
            answers.failures,
            answers.remotes
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A keep-alive connection from the client to n1's published port.
fn open(swarm: &Swarm) -> TcpStream {
    let lab = swarm.lab();
    let client = lab.netns_path("client").expect("client namespace");
    let to = SocketAddr::from((lab.node_addr("n1").expect("n1's address"), PORT));
    hive_dataplane::netns::run_in(client, || {
        let stream = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok::<_, std::io::Error>(stream)
    })
    .expect("entering the client namespace")
    .expect("connecting to n1's published port")
}

/// One request on an open keep-alive connection: the hostname that answered.
fn request_on(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: dsr\r\n\r\n")
        .expect("send on the open connection");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut chunk)
            .expect("read on the open connection");
        assert!(n > 0, "the open connection was closed");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse().ok())
                .expect("a Content-Length");
            if body.len() >= len {
                let answer = parse_answer(&text).expect("a whoami answer");
                assert_eq!(answer.remote.ip(), CLIENT, "the task sees the client");
                return answer.hostname;
            }
        }
    }
}

#[test]
fn dsr_replies_come_straight_from_the_backends_node_and_the_mode_switches_at_runtime() {
    if !privileged("dsr_replies_come_straight_from_the_backends_node") {
        return;
    }
    let _serial = support::serial();
    let swarm = Swarm::up("dsr", 2, 1);

    let info = swarm.hive_line("n1", "info");
    assert!(info.contains("Mesh Mode: snat"), "snat by default: {info}");
    let refused = swarm.hive_err("n1", &["swarm", "update", "--mesh-mode", "direct"]);
    assert!(refused.contains("direct"), "{refused}");
    swarm.hive_line("n1", "swarm update --mesh-mode dsr");
    let info = swarm.hive_line("n1", "info");
    assert!(info.contains("Mesh Mode: dsr"), "{info}");

    // One task per node: n1 balances some flows to its own task, the others to n2's.
    swarm.hive_line(
        "n1",
        "service create -d --name web --mode global -p 8080:80 hive/whoami",
    );
    let running = wait_running(&swarm, "web", 2);
    let hosts: BTreeSet<String> = live(&running).iter().map(|t| hostname(t)).collect();
    wait_mesh(&swarm, &["n1", "n2"], PORT, &hosts, PROBES);

    // n1 marks its remote flows, n2 answers them itself.
    probe_until(&swarm, "dsr: n2 answers directly", |before, after| {
        after.0 > before.0 && after.1 > before.1
    });

    // Connections opened in dsr mode, kept open across the switch.
    let mut open_conns: Vec<(TcpStream, String)> = (0..6)
        .map(|_| {
            let mut s = open(&swarm);
            let host = request_on(&mut s);
            (s, host)
        })
        .collect();

    swarm.hive_line("n1", "swarm update --mesh-mode snat");
    let info = swarm.hive_line("n1", "info");
    assert!(info.contains("Mesh Mode: snat"), "{info}");
    // New connections go back through n1: n2's direct-return counter stays still.
    probe_until(&swarm, "snat: replies through n1", |before, after| {
        after == before
    });
    for (stream, host) in &mut open_conns {
        assert_eq!(
            &request_on(stream),
            host,
            "a connection opened in dsr mode keeps its task after the switch"
        );
    }

    // hybrid: TCP is returned directly again.
    swarm.hive_line("n1", "swarm update --mesh-mode hybrid");
    probe_until(&swarm, "hybrid: TCP answered directly", |before, after| {
        after.0 > before.0
    });
    for (stream, host) in &mut open_conns {
        assert_eq!(&request_on(stream), host);
    }

    the_switched_wire_carries_the_mesh_and_gives_the_bridge_port_back(&swarm, &mut open_conns);
}

/// The lab's wire from n1 to n2 switched past the bridge (`hive_lab::wire`, the bulk
/// bench's `/switched` rows): n1's frames reach n2 as XDP frames through n2's bridge port,
/// the mesh answers as before, open connections keep their task, and the bridge port runs
/// its pass program again once the switch is dropped.
fn the_switched_wire_carries_the_mesh_and_gives_the_bridge_port_back(
    swarm: &Swarm,
    open_conns: &mut [(TcpStream, String)],
) {
    let lab = swarm.lab();
    let program = || hive_lab::wire::bridge_port_program(lab, "n1").expect("n1's bridge port");
    assert_eq!(program(), "xdp_floor");
    let switched = hive_lab::wire::switch(lab, "n1", "n2").expect("switching n1's hop to n2");
    assert_eq!(program(), "xdp_lab_switch");
    let before = xdp_frames_into(swarm, "n2");
    probe_until(swarm, "answered over the switched hop", |before, after| {
        after.0 > before.0
    });
    for (stream, host) in open_conns.iter_mut() {
        assert_eq!(&request_on(stream), host, "an open connection, switched");
    }
    let switched_frames = xdp_frames_into(swarm, "n2");
    assert!(
        switched_frames > before,
        "n1's frames reached n2 past the bridge: {before} -> {switched_frames}"
    );
    drop(switched);
    assert_eq!(program(), "xdp_floor", "the pass program is back");
    // The first round also lets a frame that was on its way at the swap arrive.
    probe_until(swarm, "answered over the bridge again", |before, after| {
        after.0 > before.0
    });
    let bridged = xdp_frames_into(swarm, "n2");
    probe_until(swarm, "answered over the bridge again", |before, after| {
        after.0 > before.0
    });
    assert_eq!(
        xdp_frames_into(swarm, "n2"),
        bridged,
        "nothing is redirected to n2 once the switch is gone"
    );
}

/// Frames redirected into `node`'s `eth0` through its bridge port as XDP frames: the
/// port's `tx_queue_*_xdp_xmit` counters (`ethtool -S`; veth counts there what it hands
/// to its peer's XDP ring).
fn xdp_frames_into(swarm: &Swarm, node: &str) -> u64 {
    let lab = swarm.lab();
    let port = &lab.member(node).expect("the node").peer_link;
    let out = std::process::Command::new("nsenter")
        .arg(format!(
            "--net={}",
            lab.state().underlay.netns_path.display()
        ))
        .args(["ethtool", "-S", port])
        .output()
        .expect("running ethtool -S in the underlay");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ethtool -S {port}: {text}");
    let counters: Vec<u64> = text
        .lines()
        .filter_map(|line| line.trim().split_once(':'))
        .filter(|(name, _)| name.ends_with("_xdp_xmit"))
        .map(|(_, value)| value.trim().parse().expect("a counter"))
        .collect();
    assert!(
        !counters.is_empty(),
        "ethtool -S {port} has no peer_tq_*_xdp_xmit: {text}"
    );
    counters.iter().sum()
}
