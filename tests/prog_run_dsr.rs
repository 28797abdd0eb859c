//! BPF_PROG_RUN fixtures for the direct-return mesh mode (`docs/dsr.md`): the
//! real embedded programs on crafted packets, in the two-node world of
//! `tests/prog_run.rs` (client C → published port 8080 on node A → task
//! T_REMOTE on node B). Needs root.

#[macro_use]
mod prog_run_support;

use std::net::SocketAddrV4;

use hive_common::maps::{FlowEntry, FlowKey, FlowKind, NodeConfig, PacketCounterSlot};
use hive_prog_run::{
    netns,
    packet::{
        self, Frame, IPPROTO_TCP, IPPROTO_UDP, L4, PacketBuilder, TCP_ACK, TCP_FIN, TCP_RST,
        TCP_SYN, parse, parse_vxlan, vxlan_frame,
    },
    prog_run::{ProgRun, TC_ACT_REDIRECT, XDP_PASS, XDP_TX},
    world::*,
};
use prog_run_support::*;

fn assert_checksums(frame: &Frame) {
    let ip = ip(frame);
    assert!(ip.header_checksum_ok, "IPv4 header checksum: {ip:?}");
    match &ip.l4 {
        L4::Tcp { checksum_ok, .. } | L4::Udp { checksum_ok, .. } => {
            assert!(*checksum_ok, "L4 checksum: {ip:?}")
        }
        _ => {}
    }
}

fn set_mode(h: &mut ProgRun, addr: std::net::Ipv4Addr, mac: packet::Mac, extra: u16) {
    let mut config = node(addr, mac);
    config.flags |= extra;
    h.maps().set_node(&config).expect("node config");
}

const DSR: u16 = NodeConfig::FLAG_DIRECT_RETURN_TCP | NodeConfig::FLAG_DIRECT_RETURN_UDP;
const HYBRID: u16 = NodeConfig::FLAG_DIRECT_RETURN_TCP;

/// The VXLAN flags and the port in bytes 2–3 of an encapsulated frame.
fn mark(out: &[u8]) -> (u8, u16) {
    assert!(parse_vxlan(out).is_ok(), "a VXLAN frame");
    (
        out[VXLAN_AT],
        u16::from_be_bytes([out[VXLAN_AT + 2], out[VXLAN_AT + 3]]),
    )
}

fn counter(h: &mut ProgRun, slot: PacketCounterSlot) -> u64 {
    h.maps().packet_counter(slot).expect("counter").packets
}

fn client_udp() -> PacketBuilder {
    PacketBuilder::udp(CLIENT, published())
        .macs(MAC_ROUTER, MAC_A)
        .payload(*b"ping")
}

#[test]
fn dsr_ingress_tunnels_a_new_flow_with_its_published_port_and_keeps_no_reverse_nat() {
    root!("dsr_ingress");
    let mut h = node_a(BE_REMOTE);
    set_mode(&mut h, NODE_A, MAC_A, DSR);
    let (verdict, out) = run(&mut h, XDP, &client_tcp(TCP_SYN).mss(1460).build());
    assert_eq!(verdict, XDP_TX);
    assert_eq!(mark(&out), (FLAG_I | FLAG_DIRECT_RETURN, PUBLISHED));
    let v = parse_vxlan(&out).expect("vxlan");
    assert_eq!(v.vni, VNI);
    assert_eq!(
        (ip(&v.outer).src, ip(&v.outer).dst),
        (NODE_A, NODE_B),
        "the outer source is the address the client used"
    );
    let inner = parse(&v.inner).expect("inner");
    assert_checksums(&inner);
    assert_eq!((ip(&inner).src, ip(&inner).dst), (*CLIENT.ip(), T_REMOTE));
    let fwd = h
        .maps()
        .flow(&key(CLIENT, published(), IPPROTO_TCP, FlowKind::Forward))
        .expect("ct")
        .expect("Forward entry");
    assert_ne!(fwd.flags & FlowEntry::FLAG_DIRECT_RETURN, 0);
    let reverse = key(
        SocketAddrV4::new(T_REMOTE, TARGET),
        CLIENT,
        IPPROTO_TCP,
        FlowKind::ReverseNat,
    );
    assert_eq!(
        h.maps().flow(&reverse).expect("ct"),
        None,
        "replies never come back here"
    );
    assert_eq!(counter(&mut h, PacketCounterSlot::DirectIngress), 1);
}

#[test]
fn snat_mode_and_local_backends_are_not_marked() {
    root!("dsr_not_marked");
    let mut h = node_a(BE_REMOTE);
    let (_, out) = run(&mut h, XDP, &client_tcp(TCP_SYN).build());
    assert_eq!(mark(&out), (FLAG_I, 0), "snat: today's header");
    let mut h = node_a(BE_LOCAL);
    set_mode(&mut h, NODE_A, MAC_A, DSR);
    let (verdict, _) = run(&mut h, XDP, &client_tcp(TCP_SYN).build());
    assert_eq!(verdict, XDP_PASS, "a local backend needs no tunnel at all");
    assert_eq!(counter(&mut h, PacketCounterSlot::DirectIngress), 0);
}

#[test]
fn hybrid_returns_tcp_directly_and_udp_through_the_ingress_node() {
    root!("dsr_hybrid");
    let mut h = node_a(BE_REMOTE);
    set_mode(&mut h, NODE_A, MAC_A, HYBRID);
    let (_, out) = run(&mut h, XDP, &client_tcp(TCP_SYN).build());
    assert_eq!(mark(&out), (FLAG_I | FLAG_DIRECT_RETURN, PUBLISHED));
    let (verdict, out) = run(&mut h, XDP, &client_udp().build());
    assert_eq!(verdict, XDP_TX);
    assert_eq!(mark(&out), (FLAG_I, 0), "UDP keeps today's path");
    let reverse = key(
        SocketAddrV4::new(T_REMOTE, TARGET),
        CLIENT,
        IPPROTO_UDP,
        FlowKind::ReverseNat,
    );
    assert!(h.maps().flow(&reverse).expect("ct").is_some());
    set_mode(&mut h, NODE_A, MAC_A, DSR);
    let other = PacketBuilder::udp(SocketAddrV4::new(*CLIENT.ip(), 40001), published())
        .macs(MAC_ROUTER, MAC_A)
        .payload(*b"ping")
        .build();
    let (_, out) = run(&mut h, XDP, &other);
    assert_eq!(
        mark(&out),
        (FLAG_I | FLAG_DIRECT_RETURN, PUBLISHED),
        "dsr: UDP too"
    );
}

#[test]
fn an_established_flow_keeps_its_path_when_the_mode_changes() {
    root!("dsr_mode_switch");
    let mut h = node_a(BE_REMOTE);
    set_mode(&mut h, NODE_A, MAC_A, DSR);
    run(&mut h, XDP, &client_tcp(TCP_SYN).build());
    set_mode(&mut h, NODE_A, MAC_A, 0);
    let (_, out) = run(&mut h, XDP, &client_tcp(TCP_ACK).build());
    assert_eq!(
        mark(&out),
        (FLAG_I | FLAG_DIRECT_RETURN, PUBLISHED),
        "started direct, stays direct"
    );
    // And the other way: a flow that started through the ingress node stays there.
    let later = SocketAddrV4::new(*CLIENT.ip(), 40002);
    let syn = PacketBuilder::tcp(later, published())
        .macs(MAC_ROUTER, MAC_A)
        .flags(TCP_SYN)
        .build();
    run(&mut h, XDP, &syn);
    set_mode(&mut h, NODE_A, MAC_A, DSR);
    let ack = PacketBuilder::tcp(later, published())
        .macs(MAC_ROUTER, MAC_A)
        .flags(TCP_ACK)
        .build();
    let (_, out) = run(&mut h, XDP, &ack);
    assert_eq!(
        mark(&out),
        (FLAG_I, 0),
        "started through A, stays through A"
    );
    // A new connection follows the new mode.
    let fresh = PacketBuilder::tcp(SocketAddrV4::new(*CLIENT.ip(), 40003), published())
        .macs(MAC_ROUTER, MAC_A)
        .flags(TCP_SYN)
        .build();
    let (_, out) = run(&mut h, XDP, &fresh);
    assert_eq!(mark(&out), (FLAG_I | FLAG_DIRECT_RETURN, PUBLISHED));
}

/// The SYN of a direct-return flow as node B receives it from A.
fn marked_syn(flags: u8, port: u16) -> Vec<u8> {
    let inner = PacketBuilder::tcp(CLIENT, SocketAddrV4::new(T_REMOTE, TARGET))
        .macs(MAC_ROUTER, MAC_A)
        .flags(TCP_SYN)
        .build();
    let mut frame = vxlan_frame(
        MAC_A, MAC_B, NODE_A, NODE_B, 50000, VXLAN_PORT, flags, VNI, &inner,
    );
    frame[VXLAN_AT + 2..VXLAN_AT + 4].copy_from_slice(&port.to_be_bytes());
    frame
}

fn synack() -> Vec<u8> {
    PacketBuilder::tcp(SocketAddrV4::new(T_REMOTE, TARGET), CLIENT)
        .macs(MAC_TASK, MAC_VETH)
        .flags(TCP_SYN | TCP_ACK)
        .payload(*b"hello")
        .build()
}

#[test]
fn the_backends_node_learns_the_ingress_address_and_port_from_the_tunnel() {
    root!("dsr_backend_learns");
    let mut h = node_b();
    let (verdict, out) = run(
        &mut h,
        XDP,
        &marked_syn(FLAG_I | FLAG_DIRECT_RETURN, PUBLISHED),
    );
    assert_eq!(verdict, XDP_PASS, "delivered to the task as today");
    assert_eq!(ip(&parse(&out).expect("inner")).dst, T_REMOTE);
    let t = h
        .maps()
        .flow(&tunnel_key())
        .expect("ct")
        .expect("Tunnel entry");
    assert_ne!(t.flags & FlowEntry::FLAG_DIRECT_RETURN, 0);
    assert_eq!(
        (t.addr_be, t.port_be, t.node_be, t.vni),
        (be(NODE_A), PUBLISHED.to_be(), be(NODE_A), VNI)
    );
}

/// B's `Tunnel` entry of the client's flow to its task.
fn tunnel_key() -> FlowKey {
    key(
        SocketAddrV4::new(T_REMOTE, TARGET),
        CLIENT,
        IPPROTO_TCP,
        FlowKind::Tunnel,
    )
}

/// B takes a client's SYN that A balanced for direct return, then its task's SYN-ACK:
/// the reply's verdict and frame.
fn direct_synack(h: &mut ProgRun) -> (u32, Vec<u8>) {
    run(h, XDP, &marked_syn(FLAG_I | FLAG_DIRECT_RETURN, PUBLISHED));
    run(h, TC, &synack())
}

#[test]
fn the_reply_leaves_the_backends_node_straight_to_the_client_from_the_published_address() {
    root!("dsr_reply");
    let mut h = node_b();
    let (verdict, out) = direct_synack(&mut h);
    assert_eq!(verdict, TC_ACT_REDIRECT, "out of the underlay NIC");
    assert!(
        parse_vxlan(&out).is_err() || ip(&parse(&out).expect("frame")).dst == *CLIENT.ip(),
        "not tunnelled"
    );
    let f = parse(&out).expect("frame");
    assert_checksums(&f);
    assert_eq!(
        (ip(&f).src, ip(&f).dst),
        (NODE_A, *CLIENT.ip()),
        "from the address the client used"
    );
    assert_eq!(ports(&f), (PUBLISHED, CLIENT.port()));
    assert_eq!(counter(&mut h, PacketCounterSlot::DirectReturn), 1);
}

/// The SYN-ACK of a direct-return flow, run on B in a namespace whose underlay knows the
/// way to the client (a route, and a neighbour entry if given).
/// ... and the flow's `Tunnel` entry after it.
fn direct_synack_with_route_to_client(neighbour: Option<packet::Mac>) -> (u32, Frame, FlowEntry) {
    netns::private_underlay(NODE_B, MAC_B, *CLIENT.ip(), neighbour).expect("private underlay");
    let mut h = node_b();
    let (verdict, out) = direct_synack(&mut h);
    let f = parse(&out).expect("frame");
    assert_checksums(&f);
    assert_eq!((ip(&f).src, ip(&f).dst), (NODE_A, *CLIENT.ip()));
    assert_eq!(counter(&mut h, PacketCounterSlot::DirectReturn), 1);
    let e = h
        .maps()
        .flow(&tunnel_key())
        .expect("ct")
        .expect("Tunnel entry");
    (verdict, f, e)
}

#[test]
fn a_direct_reply_to_a_resolved_client_leaves_addressed_by_the_route_lookup() {
    root!("dsr_reply_fib");
    let (verdict, f, e) = direct_synack_with_route_to_client(Some(MAC_ROUTER));
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(
        (f.eth_dst, f.eth_src),
        (MAC_ROUTER, MAC_B),
        "to the neighbour the kernel knows, from the underlay NIC"
    );
    assert_ne!(
        e.flags & FlowEntry::FLAG_NEXT_HOP,
        0,
        "the next hop is kept"
    );
    assert_eq!(e.client_mac, MAC_ROUTER);
}

#[test]
fn a_flows_next_hop_is_looked_up_once_and_again_after_the_entrys_refresh() {
    root!("dsr_next_hop_cache");
    netns::private_underlay(NODE_B, MAC_B, *CLIENT.ip(), Some(MAC_ROUTER))
        .expect("private underlay");
    let mut h = node_b();
    let (_, out) = direct_synack(&mut h);
    assert_eq!(parse(&out).expect("frame").eth_dst, MAC_ROUTER);
    let tunnel = tunnel_key();

    // The client's next hop changes: the flow keeps the one it found...
    const NEW_ROUTER: packet::Mac = [0x02, 0, 0, 0, 0, 0xef];
    netns::set_neighbour(*CLIENT.ip(), NEW_ROUTER).expect("neighbour");
    let reply = || {
        PacketBuilder::tcp(SocketAddrV4::new(T_REMOTE, TARGET), CLIENT)
            .macs(MAC_TASK, MAC_VETH)
            .flags(TCP_ACK)
            .payload(*b"world")
            .build()
    };
    let (verdict, out) = run(&mut h, TC, &reply());
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let f = parse(&out).expect("frame");
    assert_eq!((f.eth_dst, f.eth_src), (MAC_ROUTER, MAC_B), "no lookup");
    assert_checksums(&f);

    // ... until the entry's next refresh, at most a second of traffic.
    let mut e = h.maps().flow(&tunnel).expect("ct").expect("Tunnel entry");
    e.last_seen_ns = e.last_seen_ns.saturating_sub(2_000_000_000);
    h.maps().set_flow(tunnel, e).expect("age the entry");
    let (_, out) = run(&mut h, TC, &reply());
    assert_eq!(
        parse(&out).expect("frame").eth_dst,
        NEW_ROUTER,
        "looked up again"
    );
    let e = h.maps().flow(&tunnel).expect("ct").expect("Tunnel entry");
    assert_eq!(e.client_mac, NEW_ROUTER);
    assert_eq!(counter(&mut h, PacketCounterSlot::DirectReturn), 3);
}

#[test]
fn a_direct_reply_to_a_client_not_resolved_yet_is_left_to_the_kernels_neighbour_output() {
    root!("dsr_reply_no_neigh");
    let (verdict, f, e) = direct_synack_with_route_to_client(None);
    assert_eq!(verdict, TC_ACT_REDIRECT, "redirected all the same");
    assert_eq!(
        (f.eth_dst, f.eth_src),
        (MAC_VETH, MAC_TASK),
        "Ethernet header untouched: bpf_redirect_neigh writes it once it resolves"
    );
    assert_eq!(e.flags & FlowEntry::FLAG_NEXT_HOP, 0, "no next hop to keep");
}

#[test]
fn an_unmarked_syn_after_a_marked_one_moves_the_flow_back_to_the_tunnel() {
    root!("dsr_back_to_tunnel");
    let mut h = node_b();
    run(
        &mut h,
        XDP,
        &marked_syn(FLAG_I | FLAG_DIRECT_RETURN, PUBLISHED),
    );
    // The mode went back to snat and the client reused its port.
    run(&mut h, XDP, &marked_syn(FLAG_I, 0));
    let (verdict, out) = run(&mut h, TC, &synack());
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let v = parse_vxlan(&out).expect("tunnelled back to A");
    assert_eq!(ip(&v.outer).dst, NODE_A);
    let inner = parse(&v.inner).expect("inner");
    assert_eq!(
        (ip(&inner).src, ip(&inner).dst),
        (T_REMOTE, *CLIENT.ip()),
        "no NAT on the backend's node"
    );
    assert_eq!(counter(&mut h, PacketCounterSlot::DirectReturn), 0);
}

#[test]
fn only_a_packet_that_changes_nothing_on_the_ingress_node_is_marked_steady() {
    root!("dsr_steady_mark");
    for (mode, direct) in [(DSR, FLAG_DIRECT_RETURN), (0, 0)] {
        let mut h = node_a(BE_REMOTE);
        set_mode(&mut h, NODE_A, MAC_A, mode);
        let port = if direct != 0 { PUBLISHED } else { 0 };
        let mut send = |flags: u8| {
            let (_, out) = run(&mut h, XDP, &client_tcp(flags).build());
            mark(&out)
        };
        assert_eq!(send(TCP_SYN), (FLAG_I | direct, port), "a new flow");
        assert_eq!(send(TCP_ACK), (FLAG_I | direct, port), "established now");
        let steady = (FLAG_I | direct | FLAG_STEADY, port);
        assert_eq!(send(TCP_ACK), steady, "nothing changed");
        assert_eq!(
            send(TCP_FIN | TCP_ACK),
            (FLAG_I | direct, port),
            "closing now"
        );
        assert_eq!(send(TCP_ACK), steady);
        assert_eq!(send(TCP_RST), (FLAG_I | direct, port), "reset now");
        // Idle past the refresh interval: the next packet refreshes both nodes' entries.
        let fwd = key(CLIENT, published(), IPPROTO_TCP, FlowKind::Forward);
        let mut e = h.maps().flow(&fwd).expect("ct").expect("Forward entry");
        e.last_seen_ns = e.last_seen_ns.saturating_sub(2_000_000_000);
        h.maps().set_flow(fwd, e).expect("age the entry");
        let mut send = |flags: u8| {
            let (_, out) = run(&mut h, XDP, &client_tcp(flags).build());
            mark(&out)
        };
        assert_eq!(send(TCP_ACK), (FLAG_I | direct, port), "a refresh");
        assert_eq!(send(TCP_ACK), steady);
    }
}

/// An established packet of a direct-return flow as node B receives it from A.
fn marked_ack(flags: u8) -> Vec<u8> {
    let inner = PacketBuilder::tcp(CLIENT, SocketAddrV4::new(T_REMOTE, TARGET))
        .macs(MAC_ROUTER, MAC_A)
        .flags(TCP_ACK)
        .payload(*b"GET /")
        .build();
    let mut frame = vxlan_frame(
        MAC_A, MAC_B, NODE_A, NODE_B, 50000, VXLAN_PORT, flags, VNI, &inner,
    );
    frame[VXLAN_AT + 2..VXLAN_AT + 4].copy_from_slice(&PUBLISHED.to_be_bytes());
    frame
}

#[test]
fn the_backends_node_hands_a_steady_packet_to_its_task_and_records_only_the_others() {
    root!("dsr_steady_backend");
    let mut h = node_b();
    let tunnel = tunnel_key();
    let (verdict, out) = run(
        &mut h,
        XDP,
        &marked_ack(FLAG_I | FLAG_DIRECT_RETURN | FLAG_STEADY),
    );
    assert_eq!(verdict, XDP_PASS, "delivered to the task");
    assert_eq!(ip(&parse(&out).expect("inner")).dst, T_REMOTE);
    assert_eq!(
        h.maps().flow(&tunnel).expect("ct"),
        None,
        "a steady packet records nothing"
    );
    run(&mut h, XDP, &marked_ack(FLAG_I | FLAG_DIRECT_RETURN));
    let t = h
        .maps()
        .flow(&tunnel)
        .expect("ct")
        .expect("an unmarked packet is recorded");
    assert_eq!((t.addr_be, t.port_be), (be(NODE_A), PUBLISHED.to_be()));
}
