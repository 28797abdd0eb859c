//! Kernel-level tracing and mesh observability (issue 6), end to end:
//!
//! * `BPF_PROG_RUN` fixtures for the event layout, the switch, the lease,
//!   the filter and the rate limit;
//! * a lab with real traffic: one request through a published port
//!   followed across both nodes by `hive mesh trace` (and the pcap it
//!   writes opened by tshark), forced drops with their reasons and
//!   counters, the filter, and silence once tracing is off;
//! * `hive mesh stats` and the Prometheus endpoint over real HTTP.
//!
//! Needs root. Without it: fails when `CI` is set, otherwise skips with a
//! printed reason.

use crate::support;
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    process::{Child, Command, Stdio},
    sync::{Arc, mpsc},
    time::Duration,
};

use hive_common::{
    DropReason,
    maps::{Backend, Endpoint, Frontend, NodeConfig, Peer, Ring, ServiceKey},
    trace::{
        TRACE_CAPTURE_MAX, TRACE_VERSION, TraceConfig, TraceEvent, TraceKind, TraceProgram,
        TraceVerdict,
    },
};
use hive_dataplane::{
    ebpf_log::{EbpfLog, LogLine},
    mesh::{Protocol, ServicePort},
    netns,
    node_pins::{NodeChoice, PinsQuery},
    programs::EBPF_OBJECT_LOG,
    stats::monotonic_ns,
};
use hive_lab::{
    LabGuard, LabSpec,
    static_mesh::{ServiceDef, StaticMesh},
};
use hive_test_support::{
    packet::{IPPROTO_TCP, Mac, PacketBuilder, TCP_ACK, TCP_SYN},
    prog_run::{ProgRun, TC_ACT_REDIRECT, XDP_DROP, XDP_TX},
    world,
};
use hive_trace::{Event, TraceMaps};
use serde_json::Value;

const HIVE: &str = env!("CARGO_BIN_EXE_hive");
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 100);
const N1: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const IO_TIMEOUT: Duration = Duration::from_secs(3);
const WEB: &str = "websvc0000000000000000001";
const API: &str = "apisvc0000000000000000001";

fn privileged(test: &str) -> bool {
    hive_test_support::root_or_skip(test, "network namespaces, eBPF")
}

// ---------------------------------------------------------------------------
// BPF_PROG_RUN fixtures: the event layout.

const NODE_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const NODE_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const MAC_A: Mac = [0x02, 0, 0, 0, 0, 0xa1];
const MAC_B: Mac = [0x02, 0, 0, 0, 0, 0xb2];
const MAC_ROUTER: Mac = [0x02, 0, 0, 0, 0, 0xee];
const T_REMOTE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
const FIX_CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), 40000);
const VNI: u32 = 4097;
const SVC: u32 = 1;
const BE: u32 = 5;

fn be(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

/// Node A's configuration in the fixtures.
fn node_a_config() -> NodeConfig {
    NodeConfig {
        underlay_addr_be: be(NODE_A),
        underlay_ifindex: 2,
        hash_seed: 7,
        underlay_mac: MAC_A,
        vxlan_port_be: 4789u16.to_be(),
        overlay_mtu: 1450,
        flags: NodeConfig::FLAG_CONFIGURED,
        control_ports: Default::default(),
    }
}

/// Node A with published port 8080 → port 80 of T_REMOTE on node B, and
/// the trace maps taken out of the object.
fn fixture() -> (ProgRun, TraceMaps) {
    let mut h = ProgRun::load().expect("load the embedded object");
    let mut m = h.maps();
    m.set_node(&node_a_config()).expect("node");
    m.set_peer(
        be(NODE_B),
        Peer {
            mac: MAC_B,
            _pad: [0; 2],
        },
    )
    .expect("peer");
    m.set_service(
        ServiceKey {
            addr_be: 0,
            port_be: 8080u16.to_be(),
            proto: IPPROTO_TCP,
            _pad: 0,
        },
        Frontend {
            service: SVC,
            target_port_be: 80u16.to_be(),
            flags: Frontend::FLAG_PUBLISHED,
        },
    )
    .expect("service");
    m.set_ring(SVC, Ring { offset: 0, size: 7 }).expect("ring");
    m.set_maglev(0, &[BE; 7]).expect("maglev");
    m.set_backend(
        BE,
        Backend {
            addr_be: be(T_REMOTE),
            node_be: be(NODE_B),
            vni: VNI,
            flags: 0,
        },
    )
    .expect("backend");
    m.set_endpoint(
        be(T_REMOTE),
        Endpoint {
            node_be: be(NODE_B),
            vni: VNI,
            ifindex: 0,
            flags: 0,
        },
    )
    .expect("endpoint");
    let trace = TraceMaps::from_ebpf(h.ebpf_mut()).expect("trace maps");
    (h, trace)
}

/// Tracing on with `flags`, capturing what a pcap writer would.
fn on(flags: u32) -> TraceConfig {
    TraceConfig {
        flags: TraceConfig::FLAG_ENABLED | flags,
        snaplen: TRACE_CAPTURE_MAX as u16,
        expires_ns: monotonic_ns() + 60_000_000_000,
        ..TraceConfig::default()
    }
}

fn syn(port: u16) -> Vec<u8> {
    PacketBuilder::tcp(
        SocketAddrV4::new(*FIX_CLIENT.ip(), port),
        SocketAddrV4::new(NODE_A, 8080),
    )
    .macs(MAC_ROUTER, MAC_A)
    .flags(TCP_SYN)
    .mss(1460)
    .build()
}

fn records(trace: &mut TraceMaps) -> Vec<(TraceEvent, Vec<u8>)> {
    let mut out = Vec::new();
    trace.drain(|bytes| {
        let ev = Event::decode("a", bytes).expect("a record this hive can read");
        out.push((ev.raw, ev.data));
    });
    out
}

#[test]
fn prog_run_a_new_flow_emits_lb_select_then_encap_with_the_bytes() {
    if !privileged("prog_run_a_new_flow_emits_lb_select_then_encap_with_the_bytes") {
        return;
    }
    let _group = support::file_group();
    let (mut h, mut trace) = fixture();
    trace.set_config(&on(0)).expect("config");
    let frame = syn(40000);
    let before = monotonic_ns();
    let out = h.run("xdp_from_underlay", &frame).expect("run");
    let after = monotonic_ns();
    assert_eq!(out.verdict, XDP_TX);
    let recs = records(&mut trace);
    assert_eq!(recs.len(), 2, "{recs:?}");
    let (lb, lb_bytes) = &recs[0];
    let common = |e: &TraceEvent| {
        assert_eq!(e.version, TRACE_VERSION);
        assert_eq!(e.hdr_len as usize, size_of::<TraceEvent>());
        assert_eq!(e.tcp_flags, TCP_SYN);
        assert_eq!(e.program, TraceProgram::XdpFromUnderlay as u8);
        assert_eq!(e.verdict, TraceVerdict::Tx as u8);
        assert_eq!(e.proto, IPPROTO_TCP);
        assert_eq!((e.service, e.backend), (SVC, BE));
        assert_eq!(e.saddr_be, be(*FIX_CLIENT.ip()));
        assert_eq!(e.sport_be, FIX_CLIENT.port().to_be());
        assert!(
            (before..=after).contains(&e.timestamp_ns),
            "event time {} outside the run [{before}, {after}]",
            e.timestamp_ns
        );
    };
    common(lb);
    assert_eq!(lb.kind, TraceKind::LbSelect as u8);
    assert_eq!((lb.daddr_be, lb.dport_be), (be(NODE_A), 8080u16.to_be()));
    assert_eq!(
        (lb.xlate_addr_be, lb.xlate_port_be),
        (be(T_REMOTE), 80u16.to_be())
    );
    // Captured before DNAT: the frame as the client sent it.
    assert_eq!(lb.orig_len as usize, frame.len());
    assert_eq!(lb_bytes.as_slice(), &frame[..frame.len().min(128)]);
    let (encap, encap_bytes) = &recs[1];
    common(encap);
    assert_eq!(encap.kind, TraceKind::Encap as u8);
    assert_eq!(
        (encap.daddr_be, encap.dport_be),
        (be(T_REMOTE), 80u16.to_be())
    );
    assert_eq!((encap.tunnel_be, encap.vni), (be(NODE_B), VNI));
    // Captured after encapsulation: what left the node.
    assert_eq!(encap.orig_len as usize, out.output.len());
    assert_eq!(
        encap_bytes.as_slice(),
        &out.output[..out.output.len().min(128)]
    );
    // Each event reads the precise clock itself (conntrack's is the coarse
    // one): the packet's events are in the order they happened.
    assert!(
        encap.timestamp_ns >= lb.timestamp_ns,
        "Encap at {} before LbSelect at {}",
        encap.timestamp_ns,
        lb.timestamp_ns
    );
}

#[test]
fn prog_run_without_a_snaplen_events_carry_the_header_and_flags_but_no_bytes() {
    if !privileged("prog_run_without_a_snaplen_events_carry_the_header_and_flags_but_no_bytes") {
        return;
    }
    let _group = support::file_group();
    let (mut h, mut trace) = fixture();
    trace
        .set_config(&TraceConfig {
            snaplen: 0,
            ..on(0)
        })
        .expect("config");
    let frame = syn(40001);
    let out = h.run("xdp_from_underlay", &frame).expect("run");
    assert_eq!(out.verdict, XDP_TX);
    let mut events = Vec::new();
    trace.drain(|bytes| events.push(Event::decode("a", bytes).expect("a readable record")));
    assert_eq!(events.len(), 2, "{events:?}");
    for ev in &events {
        assert_eq!(ev.raw.cap_len, 0);
        assert!(ev.data.is_empty(), "{:?}", ev.data);
        assert_eq!(ev.raw.tcp_flags, TCP_SYN);
        assert_eq!((ev.raw.service, ev.raw.backend), (SVC, BE));
        // The line shows the flags all the same.
        assert!(ev.line("t").contains("[SYN]"), "{}", ev.line("t"));
    }
    assert_eq!(events[0].orig_len as usize, frame.len());
    assert_eq!(events[1].orig_len as usize, out.output.len());
}

#[test]
fn prog_run_a_hairpinned_flow_is_traced_as_sent_back_into_the_task_from_the_vip() {
    if !privileged("prog_run_a_hairpinned_flow_is_traced_as_sent_back_into_the_task_from_the_vip") {
        return;
    }
    let _group = support::file_group();
    // The VIP's only backend is T_LOCAL, which also calls it.
    let mut h = world::node_a(world::BE_LOCAL);
    let mut trace = TraceMaps::from_ebpf(h.ebpf_mut()).expect("trace maps");
    trace.set_config(&on(0)).expect("config");
    let me = SocketAddrV4::new(world::T_LOCAL, 33000);
    let call = PacketBuilder::tcp(me, SocketAddrV4::new(world::VIP, world::TARGET))
        .macs(world::MAC_TASK, world::MAC_VETH)
        .flags(TCP_SYN)
        .build();
    assert_eq!(
        h.run(world::TC, &call).expect("run").verdict,
        TC_ACT_REDIRECT
    );
    let recs = records(&mut trace);
    let kinds: Vec<u8> = recs.iter().map(|(e, _)| e.kind).collect();
    assert_eq!(
        kinds,
        [TraceKind::LbSelect as u8, TraceKind::LocalDelivery as u8]
    );
    for (e, _) in &recs {
        assert_eq!(e.verdict, TraceVerdict::Redirect as u8, "{e:?}");
    }
    let delivered = &recs[1].0;
    assert_eq!(
        (delivered.saddr_be, delivered.daddr_be),
        (be(world::VIP), be(world::T_LOCAL)),
        "delivered from the VIP to the task"
    );
    let reply = PacketBuilder::tcp(
        SocketAddrV4::new(world::T_LOCAL, world::TARGET),
        SocketAddrV4::new(world::VIP, me.port()),
    )
    .macs(world::MAC_TASK, world::MAC_VETH)
    .flags(TCP_SYN | TCP_ACK)
    .build();
    assert_eq!(
        h.run(world::TC, &reply).expect("run").verdict,
        TC_ACT_REDIRECT
    );
    let recs = records(&mut trace);
    assert_eq!(recs.len(), 1, "{recs:?}");
    let rnat = &recs[0].0;
    assert_eq!(rnat.kind, TraceKind::ReverseNat as u8);
    assert_eq!(rnat.verdict, TraceVerdict::Redirect as u8);
    assert_eq!(
        (rnat.xlate_addr_be, rnat.xlate_port_be),
        (be(world::VIP), world::TARGET.to_be())
    );
}

#[test]
fn prog_run_off_expired_filtered_and_rate_limited_traces_emit_nothing_more() {
    if !privileged("prog_run_off_expired_filtered_and_rate_limited_traces_emit_nothing_more") {
        return;
    }
    let _group = support::file_group();
    let (mut h, mut trace) = fixture();
    let run = |h: &mut ProgRun, trace: &mut TraceMaps, cfg: TraceConfig, port: u16| {
        trace.set_config(&cfg).expect("config");
        h.run("xdp_from_underlay", &syn(port)).expect("run");
        records(trace)
    };
    // Off (the default), and on with an expired lease: nothing.
    assert!(run(&mut h, &mut trace, TraceConfig::default(), 1000).is_empty());
    let expired = TraceConfig {
        expires_ns: 1,
        ..on(0)
    };
    assert!(run(&mut h, &mut trace, expired, 1001).is_empty());
    // Service filter: another service id matches nothing; this one does.
    let other = TraceConfig {
        service: SVC + 1,
        ..on(TraceConfig::FLAG_SERVICE)
    };
    assert!(run(&mut h, &mut trace, other, 1002).is_empty());
    let this = TraceConfig {
        service: SVC,
        ..on(TraceConfig::FLAG_SERVICE)
    };
    assert_eq!(run(&mut h, &mut trace, this, 1003).len(), 2);
    // A service on two networks has two ids: the config names one, the
    // set the other, and events of either match.
    trace.set_filter_services(&[SVC]).expect("service set");
    assert_eq!(run(&mut h, &mut trace, other, 1008).len(), 2);
    trace.set_filter_services(&[]).expect("service set");
    assert!(run(&mut h, &mut trace, other, 1009).is_empty());
    // Client filter: address and port on the same side.
    let client = |port: u16| TraceConfig {
        client_addr_be: be(*FIX_CLIENT.ip()),
        client_port_be: port.to_be(),
        ..on(TraceConfig::FLAG_CLIENT)
    };
    assert_eq!(run(&mut h, &mut trace, client(1004), 1004).len(), 2);
    assert!(run(&mut h, &mut trace, client(9), 1005).is_empty());
    // Drops only: a new flow is no drop; a malformed packet is.
    let drops = on(TraceConfig::FLAG_DROPS_ONLY);
    assert!(run(&mut h, &mut trace, drops, 1006).is_empty());
    let bad = PacketBuilder::tcp(FIX_CLIENT, SocketAddrV4::new(NODE_A, 8080))
        .macs(MAC_ROUTER, MAC_A)
        .ihl(4)
        .build();
    let out = h.run("xdp_from_underlay", &bad).expect("run");
    assert_eq!(out.verdict, XDP_DROP);
    let recs = records(&mut trace);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].0.kind, TraceKind::Drop as u8);
    assert_eq!(recs[0].0.verdict, TraceVerdict::Drop as u8);
    assert_eq!(recs[0].0.drop_reason, DropReason::MalformedIpv4 as u8);
    assert_eq!(
        recs[0].0.daddr_be,
        be(NODE_A),
        "flow read back from the bytes"
    );
    // Rate limit: one event per second, burst one: the second event of the
    // packet is over the limit and counted as lost.
    let before = trace.lost().expect("lost").rate_limited;
    let limited = TraceConfig {
        rate_per_sec: 1,
        burst: 1,
        ..on(0)
    };
    assert_eq!(run(&mut h, &mut trace, limited, 1007).len(), 1);
    assert!(trace.lost().expect("lost").rate_limited > before);
}

#[test]
fn ebpf_log_lines_of_a_drop_are_read_back_and_the_default_build_logs_nothing() {
    if !privileged("ebpf_log_lines_of_a_drop_are_read_back_and_the_default_build_logs_nothing") {
        return;
    }
    let _group = support::file_group();
    let mut h = ProgRun::load_object(EBPF_OBJECT_LOG).expect("the programs built with aya-log");
    h.maps().set_node(&node_a_config()).expect("node");
    let mut log = EbpfLog::from_ebpf(h.ebpf_mut())
        .expect("open the log buffer")
        .expect("a build with aya-log has AYA_LOGS");
    let bad = PacketBuilder::tcp(FIX_CLIENT, SocketAddrV4::new(NODE_A, 8080))
        .macs(MAC_ROUTER, MAC_A)
        .ihl(4)
        .build();
    assert_eq!(
        h.run("xdp_from_underlay", &bad).expect("run").verdict,
        XDP_DROP
    );
    assert_eq!(
        log.read(),
        vec![LogLine {
            level: log::Level::Debug,
            text: format!(
                "xdp_from_underlay: drop, reason {}",
                DropReason::MalformedIpv4 as u8
            ),
        }]
    );
    // A packet that is not dropped logs nothing; nor does the default build.
    h.run("xdp_from_underlay", &syn(2000)).expect("run");
    assert!(log.read().is_empty());
    let (mut plain, _) = fixture();
    assert!(
        EbpfLog::from_ebpf(plain.ebpf_mut())
            .expect("open")
            .is_none(),
        "the default build carries aya-log"
    );
}

// ---------------------------------------------------------------------------
// Lab with real traffic.

/// A 2-node lab: task t2 on n2 serves service web (published 8080);
/// with `api`, task t3 on n2 serves service api (published 8081).
fn lab_mesh(name: &str, api: bool) -> (LabGuard, StaticMesh) {
    let lab = LabGuard::up(&LabSpec::new(name, 2)).expect("lab up");
    let mut mesh = StaticMesh::new(&lab, 0x5eed).expect("data plane on every node");
    let mut tasks = vec!["t2"];
    if api {
        tasks.push("t3");
    }
    for task in &tasks {
        mesh.add_task(
            task,
            "n2",
            HIVE,
            &["builtin", "whoami", "--listen", "0.0.0.0:80"],
        )
        .expect("start task");
    }
    let service = |id: &str, name: &str, port: u16, task: &str| ServiceDef {
        id: id.into(),
        name: name.into(),
        vip: None,
        ports: vec![ServicePort {
            protocol: Protocol::Tcp,
            target_port: 80,
            published_port: Some(port),
        }],
        backends: vec![task.into()],
    };
    mesh.set_service(service(WEB, "web", 8080, "t2"));
    if api {
        mesh.set_service(service(API, "api", 8081, "t3"));
    }
    mesh.apply().expect("apply");
    for task in &tasks {
        let t = mesh.task(task).expect("task");
        let addr = SocketAddr::from((t.addr, 80));
        let up = (0..100).any(|_| {
            let ok = netns::run_in(&t.netns, || {
                TcpStream::connect_timeout(&addr, IO_TIMEOUT).is_ok()
            })
            .expect("task ns");
            if !ok {
                std::thread::sleep(Duration::from_millis(50));
            }
            ok
        });
        assert!(up, "task {task} never listened");
    }
    (lab, mesh)
}

/// One HTTP GET from the client namespace; the whoami body.
fn http_get(lab: &LabGuard, to: SocketAddr) -> String {
    let client = lab.netns_path("client").expect("client").to_path_buf();
    netns::run_in(&client, || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&to, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.write_all(b"GET / HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    })
    .expect("client namespace")
    .expect("request through the mesh")
}

/// `hive mesh trace` running in the background.
struct TraceRun {
    child: Child,
}

impl TraceRun {
    /// Start it and wait until tracing is on.
    fn start(lab: &str, args: &[&str]) -> TraceRun {
        let mut child = Command::new(HIVE)
            .args(["mesh", "trace", "--lab", lab, "--all-nodes", "--json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hive mesh trace");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[hive mesh trace] {line}");
                let _ = tx.send(line);
            }
        });
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.starts_with("tracing on") => break,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    panic!("hive mesh trace did not switch tracing on");
                }
            }
        }
        TraceRun { child }
    }

    /// Ctrl-C it, as a user would, and return its events.
    fn stop(mut self) -> Vec<Value> {
        // Let the last packets' events reach the rings.
        std::thread::sleep(Duration::from_millis(300));
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("read events");
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "hive mesh trace failed: {status}");
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

impl Drop for TraceRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

fn stats_json(lab: &str, node: &str) -> Value {
    let out = Command::new(HIVE)
        .args([
            "mesh", "stats", "--lab", lab, "--node", node, "--format", "json",
        ])
        .output()
        .expect("hive mesh stats");
    assert!(
        out.status.success(),
        "hive mesh stats: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn one_request_is_followed_across_both_nodes_and_the_pcap_opens_in_tshark() {
    if !privileged("one_request_is_followed_across_both_nodes_and_the_pcap_opens_in_tshark") {
        return;
    }
    let _group = support::file_group();
    let (lab, mesh) = lab_mesh("trc-seq", false);
    let dir = tempfile::tempdir().expect("tmp");
    let pcap = dir.path().join("trace.pcapng");
    let pcap_arg = pcap.to_str().expect("utf-8 path");
    let run = TraceRun::start(
        "trc-seq",
        &["--client", "192.168.77.100", "--pcap", pcap_arg],
    );
    let body = http_get(&lab, SocketAddr::from((N1, 8080)));
    assert!(body.contains("Hostname: t2"), "{body}");
    let events = run.stop();
    assert!(!events.is_empty(), "no events at all");

    // The SYN, then the SYN-ACK, in timestamp order across both nodes.
    let step = |e: &Value| (s(e, "node").to_owned(), s(e, "kind").to_owned());
    let syn: Vec<_> = events
        .iter()
        .filter(|e| s(e, "tcp_flags") == "SYN")
        .map(step)
        .collect();
    let pair = |n: &str, k: &str| (n.to_owned(), k.to_owned());
    assert_eq!(
        syn,
        [
            pair("n1", "lb-select"),
            pair("n1", "encap"),
            pair("n2", "decap"),
            pair("n2", "local-delivery"),
        ],
        "SYN events: {events:#?}"
    );
    let syn_ack: Vec<_> = events
        .iter()
        .filter(|e| s(e, "tcp_flags") == "SYN|ACK")
        .map(step)
        .collect();
    assert_eq!(
        syn_ack,
        [
            pair("n2", "encap"),
            pair("n1", "decap"),
            pair("n1", "reverse-nat"),
        ],
        "SYN-ACK events: {events:#?}"
    );
    let times: Vec<u64> = events
        .iter()
        .map(|e| e["timestamp_ns"].as_u64().expect("timestamp"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "merged by timestamp"
    );

    let lb = events
        .iter()
        .find(|e| s(e, "kind") == "lb-select")
        .expect("lb-select");
    let t2 = mesh.task("t2").expect("t2").addr;
    assert_eq!(s(lb, "service"), WEB);
    assert_eq!(s(lb, "backend"), "t2");
    assert_eq!(s(lb, "xlate"), format!("{t2}:80"));
    assert_eq!(s(lb, "dst"), "192.168.77.1:8080");
    assert!(s(lb, "src").starts_with("192.168.77.100:"));
    assert_eq!(s(lb, "program"), "xdp_from_underlay");
    let encap = events
        .iter()
        .find(|e| s(e, "kind") == "encap" && s(e, "node") == "n1")
        .expect("encap");
    assert_eq!(s(encap, "tunnel_peer"), "192.168.77.2");
    assert_eq!(s(encap, "dst"), format!("{t2}:80"));
    let delivered = events
        .iter()
        .find(|e| s(e, "kind") == "local-delivery" && s(e, "node") == "n2")
        .expect("local-delivery");
    assert_eq!(
        s(delivered, "verdict"),
        "redirect",
        "handed straight into the task, past n2's IP stack"
    );
    let rnat = events
        .iter()
        .find(|e| s(e, "kind") == "reverse-nat")
        .expect("reverse-nat");
    assert_eq!(s(rnat, "xlate"), "192.168.77.1:8080");
    assert_eq!(s(rnat, "verdict"), "tx");
    let reply_encap = events
        .iter()
        .find(|e| s(e, "kind") == "encap" && s(e, "node") == "n2")
        .expect("reply encap");
    assert_eq!(s(reply_encap, "program"), "tc_from_task");

    // The pcap: tshark reads every packet and shows the annotations.
    match Command::new("tshark")
        .args([
            "-r",
            pcap_arg,
            "-T",
            "fields",
            "-e",
            "frame.comment",
            "-e",
            "ip.dst",
        ])
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "tshark could not read the pcap: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(text.lines().count(), events.len(), "{text}");
            assert!(text.contains("lb-select"), "{text}");
            assert!(text.contains("reverse-nat"), "{text}");
            // The encap frames carry the outer header to n2.
            assert!(text.contains("192.168.77.2"), "{text}");
        }
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("tshark is needed to check the pcap ({e}); `cargo xtask setup` installs it")
        }
        Err(e) => eprintln!("tshark not found ({e}); pcap not checked"),
    }
    drop(mesh);
}

#[test]
fn forced_drops_give_drop_events_with_their_reason_and_move_the_counters() {
    if !privileged("forced_drops_give_drop_events_with_their_reason_and_move_the_counters") {
        return;
    }
    let _group = support::file_group();
    let (lab, mut mesh) = lab_mesh("trc-drop", false);
    // A published port with no backend.
    mesh.set_service(ServiceDef {
        id: "emptysvc00000000000000001".into(),
        name: "empty".into(),
        vip: None,
        ports: vec![ServicePort {
            protocol: Protocol::Tcp,
            target_port: 80,
            published_port: Some(9090),
        }],
        backends: vec![],
    });
    mesh.apply().expect("apply");
    let before = stats_json("trc-drop", "n1");
    let run = TraceRun::start("trc-drop", &["--drops"]);
    let client = lab.netns_path("client").expect("client").to_path_buf();
    netns::run_in(&client, || {
        // 1. No backend: the SYN is dropped (connect times out).
        let _ =
            TcpStream::connect_timeout(&SocketAddr::from((N1, 9090)), Duration::from_millis(300));
        // 2. VXLAN from the client, which is no peer.
        let udp = UdpSocket::bind("0.0.0.0:0").expect("udp");
        let mut vxlan = vec![0x08, 0, 0, 0, 0, 0x10, 0, 0];
        vxlan.extend_from_slice(&[0u8; 64]);
        udp.send_to(&vxlan, (N1, 4789)).expect("send vxlan");
        // 3. A malformed packet: TCP whose header is cut short.
        send_truncated_tcp(N1, 8080);
    })
    .expect("client namespace");
    let events = run.stop();
    let reasons: Vec<&str> = events.iter().map(|e| s(e, "drop_reason")).collect();
    for (reason, dst) in [
        ("no-backend", "192.168.77.1:9090"),
        ("vxlan-from-non-peer", "192.168.77.1:4789"),
        ("truncated-packet", "192.168.77.1"),
    ] {
        let ev = events
            .iter()
            .find(|e| s(e, "drop_reason") == reason)
            .unwrap_or_else(|| panic!("no {reason} event among {reasons:?}"));
        assert_eq!(s(ev, "kind"), "drop");
        assert_eq!(s(ev, "verdict"), "drop");
        assert_eq!(s(ev, "node"), "n1");
        assert!(s(ev, "dst").starts_with(dst), "{ev}");
        assert_eq!(s(ev, "src").split(':').next(), Some("192.168.77.100"));
    }
    assert!(
        events.iter().all(|e| s(e, "kind") == "drop"),
        "--drops let other events through"
    );
    let after = stats_json("trc-drop", "n1");
    for reason in ["no-backend", "vxlan-from-non-peer", "truncated-packet"] {
        let (b, a) = (
            before["drops"][reason].as_u64().expect("counter"),
            after["drops"][reason].as_u64().expect("counter"),
        );
        assert!(a > b, "counter of {reason} did not move ({b} → {a})");
    }
    drop(mesh);
}

/// An IPv4 packet to `dst` claiming TCP with only 10 bytes of header.
fn send_truncated_tcp(dst: Ipv4Addr, port: u16) {
    let mut pkt = vec![0x45, 0, 0, 30, 0, 0, 0x40, 0, 64, 6, 0, 0];
    pkt.extend_from_slice(&CLIENT.octets());
    pkt.extend_from_slice(&dst.octets());
    pkt.extend_from_slice(&40000u16.to_be_bytes());
    pkt.extend_from_slice(&port.to_be_bytes());
    pkt.extend_from_slice(&[0u8; 6]);
    // SAFETY: plain socket(2); the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `pkt` and `to` are valid for the lengths given; IPPROTO_RAW
    // implies IP_HDRINCL, the kernel fills in the checksum and length.
    let sent = unsafe {
        libc::sendto(
            fd,
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&raw const to).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    assert_eq!(sent, pkt.len() as isize, "sendto: {err}");
}

#[test]
fn the_filter_filters_and_tracing_switched_off_emits_nothing() {
    if !privileged("the_filter_filters_and_tracing_switched_off_emits_nothing") {
        return;
    }
    let _group = support::file_group();
    let (lab, mesh) = lab_mesh("trc-filt", true);
    let t2 = mesh.task("t2").expect("t2").addr.to_string();
    // --service api: traffic to web gives nothing, traffic to api does.
    let run = TraceRun::start("trc-filt", &["--service", "apisvc"]);
    http_get(&lab, SocketAddr::from((N1, 8080)));
    http_get(&lab, SocketAddr::from((N1, 8081)));
    let events = run.stop();
    assert!(!events.is_empty(), "no event for service api");
    for e in &events {
        assert_ne!(s(e, "service"), WEB, "a web event passed the filter: {e}");
        assert!(!s(e, "dst").starts_with(&t2), "t2's traffic passed: {e}");
        assert!(!s(e, "dst").ends_with(":8080"), "web's traffic passed: {e}");
    }
    assert!(events.iter().any(|e| s(e, "service") == API));
    assert!(
        events.iter().any(|e| s(e, "node") == "n2"),
        "n2's events matched by address"
    );

    // --client: another client address matches nothing.
    let run = TraceRun::start("trc-filt", &["--client", "192.168.77.99"]);
    http_get(&lab, SocketAddr::from((N1, 8080)));
    assert!(
        run.stop().is_empty(),
        "the client filter let events through"
    );

    // Off: the tracer switched every node off on exit; traffic now leaves
    // the rings empty.
    http_get(&lab, SocketAddr::from((N1, 8080)));
    let nodes = PinsQuery {
        lab: Some("trc-filt".into()),
        pin_dir: None,
        nodes: NodeChoice::All,
    }
    .resolve()
    .expect("nodes");
    for n in &nodes {
        let mut maps = TraceMaps::open_pinned(&n.dir).expect("trace maps");
        let cfg = maps.config().expect("config");
        assert_eq!(
            cfg.flags & TraceConfig::FLAG_ENABLED,
            0,
            "{} still on",
            n.name
        );
        let mut count = 0;
        maps.drain(|_| count += 1);
        assert_eq!(count, 0, "{} emitted events while off", n.name);
    }

    // `hive mesh log` on programs built without aya-log says what to do.
    let out = Command::new(HIVE)
        .args([
            "mesh",
            "log",
            "--lab",
            "trc-filt",
            "--node",
            "n1",
            "--duration",
            "1s",
        ])
        .output()
        .expect("hive mesh log");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "hive mesh log succeeded: {stderr}");
    assert!(
        stderr.contains("built without debug logging") && stderr.contains("HIVE_EBPF_LOG=1"),
        "{stderr}"
    );

    // A tracer that dies without cleaning up leaves a lease of at most 10 s.
    let mut killed = TraceRun::start("trc-filt", &[]);
    killed.child.kill().expect("SIGKILL");
    let _ = killed.child.wait();
    let maps = TraceMaps::open_pinned(&nodes[0].dir).expect("trace maps");
    let cfg = maps.config().expect("config");
    assert_ne!(cfg.flags & TraceConfig::FLAG_ENABLED, 0);
    assert!(
        cfg.expires_ns <= monotonic_ns() + 10_000_000_000,
        "lease too long"
    );
    drop(mesh);
}

#[test]
fn stats_and_the_metrics_endpoint_show_the_services_counters() {
    if !privileged("stats_and_the_metrics_endpoint_show_the_services_counters") {
        return;
    }
    let _group = support::file_group();
    let (lab, mesh) = lab_mesh("trc-stat", false);
    for _ in 0..3 {
        http_get(&lab, SocketAddr::from((N1, 8080)));
    }
    let stats = stats_json("trc-stat", "n1");
    let web = &stats["services"][0];
    assert_eq!(web["service"], WEB);
    assert!(web["new_flows"].as_u64() >= Some(3), "{stats}");
    assert!(web["packets"].as_u64() > Some(6), "{stats}");
    assert_eq!(web["backends"][0]["task"], "t2");
    assert!(web["live_flows"].as_u64() >= Some(1), "{stats}");

    let table = Command::new(HIVE)
        .args(["mesh", "stats", "--lab", "trc-stat", "--all-nodes"])
        .output()
        .expect("table");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains(WEB) && table.contains("\\_ t2"), "{table}");

    // Prometheus over real HTTP on loopback.
    let nodes = PinsQuery {
        lab: Some("trc-stat".into()),
        pin_dir: None,
        nodes: NodeChoice::All,
    }
    .resolve()
    .expect("nodes");
    let mut registry = hive::metrics::Registry::new();
    registry.register(Arc::new(hive::metrics::DataplaneCollector::new(nodes)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let body = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(hive::metrics::serve(listener, Arc::new(registry), async {
            let _ = stopped.await;
        }));
        let body = tokio::task::spawn_blocking(move || {
            let mut c = TcpStream::connect(addr).expect("connect");
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .expect("send");
            let mut r = String::new();
            c.read_to_string(&mut r).expect("read");
            r
        })
        .await
        .expect("client");
        let _ = stop.send(());
        let _ = server.await;
        body
    });
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let line = body
        .lines()
        .find(|l| l.starts_with("hive_service_new_flows_total{node=\"n1\"") && l.contains(WEB))
        .unwrap_or_else(|| panic!("no new-flows sample for n1: {body}"));
    let value: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("value");
    assert!(value >= 3.0, "{line}");
    assert!(body.contains("hive_drops_total{node=\"n2\",reason=\"no-backend\"} "));
    drop(mesh);
}
