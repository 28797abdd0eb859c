//! BPF_PROG_RUN fixtures for every packet path of `docs/dataplane.md`: the
//! real embedded programs, run by the real kernel on crafted packets, with
//! the maps set up as user space would. Needs root (see `require_root`).
//!
//! Topology of the fixtures: client C (outside) → node A (the node under
//! test unless a fixture says otherwise) and node B; tasks on network VNI
//! 4097; published port 8080 (service 1) targets port 80 of its tasks;
//! VIP 10.2.0.100:80 (service 2).

#[macro_use]
mod prog_run_support;

use std::net::{Ipv4Addr, SocketAddrV4};

use hive_common::{
    DropReason, flow_hash,
    handoff::TaskHandoff,
    maps::{Backend, Endpoint, FlowKind, LabForward, PacketCounterSlot, Ring, TcpState, task_mac},
};
use hive_prog_run::{
    packet::{
        self, Frame, IPPROTO_TCP, L4, Mac, PacketBuilder, TCP_ACK, TCP_SYN, parse, parse_vxlan,
        vxlan_frame,
    },
    prog_run::{
        ProgRun, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX,
    },
};

use hive_prog_run::world::*;
use prog_run_support::*;

/// The task `xdp_from_underlay` handed the frame to (its metadata), if any.
fn handed_to(h: &mut ProgRun, frame: &[u8]) -> (u32, Vec<u8>, Option<u32>) {
    let out = h.run(XDP, frame).unwrap_or_else(|e| panic!("{e}"));
    let handoff = (!out.meta.is_empty()).then(|| {
        TaskHandoff::parse(&out.meta)
            .unwrap_or_else(|| panic!("metadata that is no hand-off: {:?}", out.meta))
            .ifindex
    });
    (out.verdict, out.output, handoff)
}

/// Checksums of every layer are valid.
fn assert_checksums(frame: &Frame) {
    let ip = ip(frame);
    assert!(ip.header_checksum_ok, "IPv4 header checksum: {ip:?}");
    match &ip.l4 {
        L4::Tcp { checksum_ok, .. }
        | L4::Udp { checksum_ok, .. }
        | L4::Icmp { checksum_ok, .. } => {
            assert!(*checksum_ok, "L4 checksum: {ip:?}")
        }
        L4::Other => {}
    }
}

fn tcp_mss(frame: &Frame) -> Option<u16> {
    match ip(frame).l4 {
        L4::Tcp { mss, .. } => mss,
        _ => None,
    }
}

/// Checks a VXLAN frame from `from` (MAC, addr) to `to` and returns the inner frame.
fn assert_vxlan(out: &[u8], from: (Mac, Ipv4Addr), to: (Mac, Ipv4Addr)) -> Frame {
    let v = parse_vxlan(out).expect("a VXLAN frame");
    assert_eq!(
        (v.outer.eth_src, v.outer.eth_dst),
        (from.0, to.0),
        "outer MACs"
    );
    let outer = ip(&v.outer);
    assert_eq!((outer.src, outer.dst), (from.1, to.1), "outer addresses");
    assert!(outer.header_checksum_ok, "outer IPv4 checksum");
    assert_eq!(outer.frag & 0x4000, 0x4000, "outer DF");
    match outer.l4 {
        L4::Udp {
            sport,
            dport,
            checksum,
            len,
            ..
        } => {
            assert_eq!(dport, VXLAN_PORT);
            assert!(sport >= 49152, "source port {sport} in the dynamic range");
            assert_eq!(checksum, 0, "outer UDP checksum 0");
            assert_eq!(usize::from(len), outer.payload.len());
        }
        _ => panic!("outer is not UDP"),
    }
    // The steady mark is the ingress node's to set (`tests/prog_run_dsr.rs` checks when).
    assert_eq!((v.flags & !FLAG_STEADY, v.vni), (FLAG_I, VNI));
    let inner = parse(&v.inner).expect("inner frame");
    assert_eq!(
        usize::from(outer.tot_len),
        20 + 8 + 8 + 14 + usize::from(ip(&inner).tot_len)
    );
    inner
}

fn drops(h: &mut ProgRun, reason: DropReason) -> u64 {
    h.maps().drops(reason).expect("drop counter")
}

/// Run `frame`, expect `verdict`, and the counter of `reason` to move by one.
fn assert_drop(h: &mut ProgRun, prog: &str, frame: &[u8], reason: DropReason) {
    let before = drops(h, reason);
    let (verdict, _) = run(h, prog, frame);
    let dropped = if prog == TC { TC_ACT_SHOT } else { XDP_DROP };
    assert_eq!(verdict, dropped, "{} should be dropped", reason.name());
    assert_eq!(drops(h, reason), before + 1, "counter of {}", reason.name());
}

#[test]
fn programs_pass_the_verifier() {
    root!("programs_pass_the_verifier");
    let mut h = ProgRun::load().expect("load object");
    for name in [
        XDP,
        TC,
        TC_UNDERLAY,
        FLOOR,
        LAB_FORWARD,
        TC_LAB_FORWARD,
        LAB_VXLAN,
        LAB_DECAP,
    ] {
        let (verdict, _) = run(&mut h, name, &client_tcp(TCP_SYN).build());
        // Unconfigured node: everything passes.
        assert!(
            verdict == XDP_PASS || verdict == TC_ACT_OK,
            "{name}: {verdict}"
        );
    }
}

#[test]
fn north_south_tcp_new_flow_to_remote_backend_is_dnated_clamped_and_tunnelled() {
    root!("north_south_tcp_new_flow_to_remote_backend");
    let mut h = node_a(BE_REMOTE);
    let (verdict, out) = run(&mut h, XDP, &client_tcp(TCP_SYN).mss(1460).build());
    assert_eq!(verdict, XDP_TX);
    let inner = assert_vxlan(&out, (MAC_A, NODE_A), (MAC_B, NODE_B));
    assert_checksums(&inner);
    assert_eq!(
        (ip(&inner).src, ip(&inner).dst),
        (*CLIENT.ip(), T_REMOTE),
        "DNAT, client address kept"
    );
    assert_eq!(ports(&inner), (CLIENT.port(), TARGET));
    assert_eq!(tcp_mss(&inner), Some(OVERLAY_MTU - 40), "MSS clamped");
    let mut m = h.maps();
    let fwd = m
        .flow(&key(CLIENT, published(), IPPROTO_TCP, FlowKind::Forward))
        .expect("ct")
        .expect("Forward entry");
    assert_eq!(
        (fwd.addr_be, fwd.backend, fwd.tcp_state),
        (be(T_REMOTE), BE_REMOTE, TcpState::SynSent as u8)
    );
    let reply = SocketAddrV4::new(T_REMOTE, TARGET);
    let rev = m
        .flow(&key(reply, CLIENT, IPPROTO_TCP, FlowKind::ReverseNat))
        .expect("ct")
        .expect("ReverseNat entry");
    assert_eq!(
        (rev.addr_be, rev.port_be, rev.client_mac),
        (be(NODE_A), PUBLISHED.to_be(), MAC_ROUTER)
    );
    assert_ne!(
        rev.flags & hive_common::maps::FlowEntry::FLAG_NORTH_SOUTH,
        0
    );
    let svc = m.service_stats(SVC_PUBLISHED).expect("stats");
    assert_eq!((svc.packets, svc.new_flows), (1, 1));
    assert_eq!(m.backend_stats(BE_REMOTE).expect("stats").packets, 1);
}

#[test]
fn north_south_udp_new_flow_to_local_backend_is_dnated_and_passed() {
    root!("north_south_udp_new_flow_to_local_backend");
    let mut h = node_a(BE_LOCAL);
    let frame = PacketBuilder::udp(CLIENT, published())
        .macs(MAC_ROUTER, MAC_A)
        .payload(*b"hello")
        .build();
    let (verdict, out) = run(&mut h, XDP, &frame);
    assert_eq!(verdict, XDP_PASS);
    let f = parse(&out).expect("frame");
    assert_checksums(&f);
    assert_eq!((ip(&f).src, ip(&f).dst), (*CLIENT.ip(), T_LOCAL));
    assert_eq!(ports(&f), (CLIENT.port(), TARGET));
    assert_eq!(ip(&f).payload[8..], *b"hello");
    // UDP without checksum stays without one (RFC 768).
    let frame = PacketBuilder::udp(SocketAddrV4::new(*CLIENT.ip(), 40001), published())
        .macs(MAC_ROUTER, MAC_A)
        .no_udp_checksum()
        .build();
    let (verdict, out) = run(&mut h, XDP, &frame);
    assert_eq!(verdict, XDP_PASS);
    let f = parse(&out).expect("frame");
    assert!(matches!(ip(&f).l4, L4::Udp { checksum: 0, .. }));
    assert!(ip(&f).header_checksum_ok);
}

#[test]
fn established_flow_keeps_its_backend_when_the_ring_changes() {
    root!("established_flow_keeps_its_backend");
    let mut h = node_a(BE_REMOTE);
    let (_, out) = run(&mut h, XDP, &client_tcp(TCP_SYN).build());
    assert_eq!(
        ip(&assert_vxlan(&out, (MAC_A, NODE_A), (MAC_B, NODE_B))).dst,
        T_REMOTE
    );
    // User space installs a new table (all slots → BE_OTHER).
    h.maps()
        .set_maglev(0, &[BE_OTHER; RING_SIZE as usize])
        .expect("maglev");
    let (_, out) = run(&mut h, XDP, &client_tcp(TCP_ACK).build());
    assert_eq!(
        ip(&assert_vxlan(&out, (MAC_A, NODE_A), (MAC_B, NODE_B))).dst,
        T_REMOTE,
        "established flow kept"
    );
    let fwd = h
        .maps()
        .flow(&key(CLIENT, published(), IPPROTO_TCP, FlowKind::Forward))
        .expect("ct")
        .expect("entry");
    assert_eq!(fwd.tcp_state, TcpState::Established as u8);
    // A new flow goes to the new backend.
    let other = SocketAddrV4::new(*CLIENT.ip(), 40002);
    let frame = PacketBuilder::tcp(other, published())
        .macs(MAC_ROUTER, MAC_A)
        .flags(TCP_SYN)
        .build();
    let (_, out) = run(&mut h, XDP, &frame);
    assert_eq!(
        ip(&assert_vxlan(&out, (MAC_A, NODE_A), (MAC_B, NODE_B))).dst,
        T_OTHER,
        "new flow rebalanced"
    );
}

#[test]
fn north_south_reply_through_the_tunnel_is_reverse_natted_and_sent_to_the_client() {
    root!("north_south_reply_reverse_nat");
    let mut h = node_a(BE_REMOTE);
    run(&mut h, XDP, &client_tcp(TCP_SYN).build());
    let reply = PacketBuilder::tcp(SocketAddrV4::new(T_REMOTE, TARGET), CLIENT)
        .macs(MAC_TASK, MAC_B)
        .flags(TCP_SYN | TCP_ACK)
        .payload(*b"ok")
        .build();
    let frame = vxlan_frame(
        MAC_B, MAC_A, NODE_B, NODE_A, 50000, VXLAN_PORT, 0x08, VNI, &reply,
    );
    let (verdict, out) = run(&mut h, XDP, &frame);
    assert_eq!(verdict, XDP_TX);
    let f = parse(&out).expect("frame");
    assert_checksums(&f);
    assert_eq!(
        (f.eth_src, f.eth_dst),
        (MAC_A, MAC_ROUTER),
        "straight back to the client's next hop"
    );
    assert_eq!(
        (ip(&f).src, ip(&f).dst),
        (NODE_A, *CLIENT.ip()),
        "source restored to the published address"
    );
    assert_eq!(ports(&f), (PUBLISHED, CLIENT.port()));
}

#[test]
fn decap_delivers_to_the_local_task_and_records_the_tunnel_back() {
    root!("decap_delivers_and_records_tunnel");
    let mut h = node_b();
    let inner = PacketBuilder::tcp(CLIENT, SocketAddrV4::new(T_REMOTE, TARGET))
        .macs(MAC_ROUTER, MAC_A)
        .flags(TCP_SYN)
        .build();
    let frame = vxlan_frame(
        MAC_A, MAC_B, NODE_A, NODE_B, 50000, VXLAN_PORT, 0x08, VNI, &inner,
    );
    let (verdict, out, handoff) = handed_to(&mut h, &frame);
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(
        handoff,
        Some(VETH_T_REMOTE),
        "handed to tc_from_underlay for the task's veth"
    );
    let f = parse(&out).expect("inner frame");
    assert_eq!(f.eth_dst, MAC_B, "inner destination MAC is the node's");
    assert_eq!(out[6..], inner[6..], "nothing else changed");
    let t = h
        .maps()
        .flow(&key(
            SocketAddrV4::new(T_REMOTE, TARGET),
            CLIENT,
            IPPROTO_TCP,
            FlowKind::Tunnel,
        ))
        .expect("ct")
        .expect("Tunnel entry");
    assert_eq!((t.node_be, t.vni), (be(NODE_A), VNI));
}

#[test]
fn tc_from_underlay_leaves_frames_without_a_hand_off_to_the_kernel() {
    root!("tc_from_underlay_without_handoff");
    let mut h = node_b();
    // A decapsulated frame as the kernel would hand it over, but without
    // metadata (`BPF_PROG_RUN` cannot give an skb any): not for a task.
    let frame = PacketBuilder::tcp(CLIENT, SocketAddrV4::new(T_REMOTE, TARGET))
        .macs(MAC_A, MAC_B)
        .flags(TCP_SYN)
        .build();
    let (verdict, out) = run(&mut h, TC_UNDERLAY, &frame);
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!(out, frame, "untouched");
    assert_eq!(handed_into_tasks(&mut h), 0);
}

#[test]
fn reply_of_a_tunnelled_flow_is_clamped_encapsulated_and_redirected_back() {
    root!("tunnel_reply_encap");
    let mut h = node_b();
    let inner = PacketBuilder::tcp(CLIENT, SocketAddrV4::new(T_REMOTE, TARGET))
        .macs(MAC_ROUTER, MAC_A)
        .flags(TCP_SYN)
        .build();
    run(
        &mut h,
        XDP,
        &vxlan_frame(
            MAC_A, MAC_B, NODE_A, NODE_B, 50000, VXLAN_PORT, 0x08, VNI, &inner,
        ),
    );
    let synack = PacketBuilder::tcp(SocketAddrV4::new(T_REMOTE, TARGET), CLIENT)
        .macs(MAC_TASK, MAC_VETH)
        .flags(TCP_SYN | TCP_ACK)
        .mss(1460)
        .build();
    let (verdict, out) = run(&mut h, TC, &synack);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let f = assert_vxlan(&out, (MAC_B, NODE_B), (MAC_A, NODE_A));
    assert_checksums(&f);
    assert_eq!(
        (ip(&f).src, ip(&f).dst),
        (T_REMOTE, *CLIENT.ip()),
        "no NAT on the backend's node"
    );
    assert_eq!(tcp_mss(&f), Some(OVERLAY_MTU - 40));
}

#[test]
fn north_south_reply_from_a_local_backend_is_reverse_natted_and_redirected() {
    root!("north_south_local_reply");
    let mut h = node_a(BE_LOCAL);
    run(&mut h, XDP, &client_tcp(TCP_SYN).build());
    let reply = PacketBuilder::tcp(SocketAddrV4::new(T_LOCAL, TARGET), CLIENT)
        .macs(MAC_TASK, MAC_VETH)
        .flags(TCP_SYN | TCP_ACK)
        .build();
    let (verdict, out) = run(&mut h, TC, &reply);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let f = parse(&out).expect("frame");
    assert_checksums(&f);
    assert_eq!((f.eth_src, f.eth_dst), (MAC_A, MAC_ROUTER));
    assert_eq!((ip(&f).src, ip(&f).dst), (NODE_A, *CLIENT.ip()));
    assert_eq!(ports(&f), (PUBLISHED, CLIENT.port()));
}

#[test]
fn east_west_vip_to_remote_backend_and_its_reply() {
    root!("east_west_vip_remote");
    let mut h = node_a(BE_REMOTE);
    let vip = SocketAddrV4::new(VIP, TARGET);
    let syn = PacketBuilder::tcp(X, vip)
        .macs(MAC_TASK, MAC_VETH)
        .flags(TCP_SYN)
        .mss(1410)
        .build();
    let (verdict, out) = run(&mut h, TC, &syn);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let f = assert_vxlan(&out, (MAC_A, NODE_A), (MAC_B, NODE_B));
    assert_checksums(&f);
    assert_eq!((ip(&f).src, ip(&f).dst), (*X.ip(), T_REMOTE));
    assert_eq!(tcp_mss(&f), Some(1410), "an MSS that fits is left alone");
    // The reply comes back through the tunnel to A's XDP.
    let reply = PacketBuilder::tcp(SocketAddrV4::new(T_REMOTE, TARGET), X)
        .macs(MAC_TASK, MAC_B)
        .flags(TCP_SYN | TCP_ACK)
        .build();
    let frame = vxlan_frame(
        MAC_B, MAC_A, NODE_B, NODE_A, 50000, VXLAN_PORT, 0x08, VNI, &reply,
    );
    let (verdict, out, handoff) = handed_to(&mut h, &frame);
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(handoff, Some(VETH_X), "handed off into the caller's veth");
    let f = parse(&out).expect("frame");
    assert_checksums(&f);
    assert_eq!(f.eth_dst, MAC_A);
    assert_eq!(
        (ip(&f).src, ip(&f).dst),
        (VIP, *X.ip()),
        "the VIP is the source of the reply"
    );
    assert_eq!(ports(&f), (TARGET, X.port()));
    assert_eq!(h.maps().service_stats(SVC_VIP).expect("stats").packets, 2);
}

#[test]
fn east_west_vip_to_local_backend_and_its_reply() {
    root!("east_west_vip_local");
    let mut h = node_a(BE_LOCAL);
    let vip = SocketAddrV4::new(VIP, TARGET);
    let (verdict, out) = run(
        &mut h,
        TC,
        &PacketBuilder::tcp(X, vip)
            .macs(MAC_TASK, MAC_VETH)
            .flags(TCP_SYN)
            .build(),
    );
    assert_eq!(verdict, TC_ACT_REDIRECT, "into the backend's namespace");
    let f = parse(&out).expect("frame");
    assert_checksums(&f);
    // Another task than the backend: no hairpin, its own address stays.
    assert_eq!((ip(&f).src, ip(&f).dst), (*X.ip(), T_LOCAL));
    assert_eq!(f.eth_dst, task_mac(be(T_LOCAL)), "the backend's MAC");
    let reply = PacketBuilder::tcp(SocketAddrV4::new(T_LOCAL, TARGET), X)
        .macs(MAC_TASK, MAC_VETH)
        .flags(TCP_SYN | TCP_ACK)
        .build();
    let (verdict, out) = run(&mut h, TC, &reply);
    assert_eq!(verdict, TC_ACT_REDIRECT, "into the caller's namespace");
    let f = parse(&out).expect("frame");
    assert_checksums(&f);
    assert_eq!((ip(&f).src, ports(&f).0), (VIP, TARGET));
    assert_eq!(f.eth_dst, task_mac(be(*X.ip())), "the caller's MAC");
    assert_eq!(
        handed_into_tasks(&mut h),
        2,
        "both went past the node's stack"
    );
}

/// Packets a program moved straight into a local task.
fn handed_into_tasks(h: &mut ProgRun) -> u64 {
    h.maps()
        .packet_counter(PacketCounterSlot::TaskHandoff)
        .expect("counter")
        .packets
}

#[test]
fn a_task_that_is_its_services_only_replica_reaches_itself_through_the_vip() {
    root!("own_vip_hairpin");
    // node_a(BE_LOCAL): the VIP's only backend is T_LOCAL, which also sends.
    let mut h = node_a(BE_LOCAL);
    let me = SocketAddrV4::new(T_LOCAL, 33000);
    let vip = SocketAddrV4::new(VIP, TARGET);
    for flags in [TCP_SYN, TCP_ACK] {
        let (verdict, out) = run(
            &mut h,
            TC,
            &PacketBuilder::tcp(me, vip)
                .macs(MAC_TASK, MAC_VETH)
                .flags(flags)
                .build(),
        );
        assert_eq!(verdict, TC_ACT_REDIRECT, "sent straight back into the task");
        let f = parse(&out).expect("frame");
        assert_checksums(&f);
        assert_eq!((f.eth_dst, f.eth_src), (MAC_TASK, MAC_VETH));
        assert_eq!(
            (ip(&f).src, ip(&f).dst),
            (VIP, T_LOCAL),
            "the task sees the flow come from the VIP, not from itself"
        );
        assert_eq!(ports(&f), (me.port(), TARGET));
    }
    // The task answers the VIP; the answer returns as VIP:80 → itself.
    let (verdict, out) = run(
        &mut h,
        TC,
        &PacketBuilder::tcp(
            SocketAddrV4::new(T_LOCAL, TARGET),
            SocketAddrV4::new(VIP, me.port()),
        )
        .macs(MAC_TASK, MAC_VETH)
        .flags(TCP_SYN | TCP_ACK)
        .build(),
    );
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let f = parse(&out).expect("frame");
    assert_checksums(&f);
    assert_eq!((f.eth_dst, f.eth_src), (MAC_TASK, MAC_VETH));
    assert_eq!((ip(&f).src, ip(&f).dst), (VIP, T_LOCAL));
    assert_eq!(ports(&f), (TARGET, me.port()));
}

#[test]
fn a_task_calling_its_own_vip_gets_another_replica_even_inside_a_long_run_of_its_own_slots() {
    root!("own_vip_long_run");
    // A 2-replica service whose 211-slot table gives the sender (T_LOCAL)
    // slots 0..120 in a row, as Maglev tables of few backends do: a flow
    // hashing early in that run has only the sender within 32 slots.
    let mut h = node_a(BE_LOCAL);
    let size = 211u32;
    let slots: Vec<u32> = (0..size)
        .map(|i| if i < 120 { BE_LOCAL } else { BE_REMOTE })
        .collect();
    let mut m = h.maps();
    m.set_ring(SVC_VIP, Ring { offset: 100, size })
        .expect("ring");
    m.set_maglev(100, &slots).expect("maglev");
    let sender = |port: u16| SocketAddrV4::new(T_LOCAL, port);
    let early = (1024..u16::MAX)
        .find(|&p| {
            let hash = hive_common::flow_hash(
                SEED,
                u32::from_ne_bytes(T_LOCAL.octets()),
                p.to_be(),
                TARGET.to_be(),
                IPPROTO_TCP,
            );
            hash % size < 60
        })
        .expect("a source port hashing early in the sender's run");
    let (verdict, out) = run(
        &mut h,
        TC,
        &PacketBuilder::tcp(sender(early), SocketAddrV4::new(VIP, TARGET))
            .macs(MAC_TASK, MAC_VETH)
            .flags(TCP_SYN)
            .build(),
    );
    assert_eq!(verdict, TC_ACT_REDIRECT, "tunnelled to the other replica");
    let inner = assert_vxlan(&out, (MAC_A, NODE_A), (MAC_B, NODE_B));
    assert_eq!(ip(&inner).dst, T_REMOTE, "not the sender itself");
}

#[test]
fn a_vip_port_the_service_does_not_declare_goes_to_the_same_port_of_a_task() {
    root!("east_west_vip_any_port");
    let mut h = node_a(BE_LOCAL);
    let other = TARGET + 5352;
    let (verdict, out) = run(
        &mut h,
        TC,
        &PacketBuilder::udp(X, SocketAddrV4::new(VIP, other))
            .macs(MAC_TASK, MAC_VETH)
            .build(),
    );
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let f = parse(&out).expect("frame");
    assert_checksums(&f);
    assert_eq!((ip(&f).dst, ports(&f).1), (T_LOCAL, other));
    let reply = PacketBuilder::udp(SocketAddrV4::new(T_LOCAL, other), X)
        .macs(MAC_TASK, MAC_VETH)
        .build();
    let (verdict, out) = run(&mut h, TC, &reply);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let f = parse(&out).expect("frame");
    assert_checksums(&f);
    assert_eq!(
        (ip(&f).src, ports(&f).0),
        (VIP, other),
        "the reply comes from the VIP"
    );
}

#[test]
fn overlay_packets_to_remote_tasks_are_tunnelled_and_into_local_tasks_redirected() {
    root!("overlay_endpoint_forwarding");
    let mut h = node_a(BE_REMOTE);
    let ping = PacketBuilder::icmp_echo(*X.ip(), T_OTHER)
        .macs(MAC_TASK, MAC_VETH)
        .payload(vec![0xab; 32])
        .build();
    let (verdict, out) = run(&mut h, TC, &ping);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let f = assert_vxlan(&out, (MAC_A, NODE_A), (MAC_B, NODE_B));
    assert_checksums(&f);
    assert_eq!(ip(&f).dst, T_OTHER);
    let local = PacketBuilder::udp(X, SocketAddrV4::new(T_LOCAL, 53))
        .macs(MAC_TASK, MAC_VETH)
        .build();
    let (verdict, out) = run(&mut h, TC, &local);
    assert_eq!(verdict, TC_ACT_REDIRECT, "into T_LOCAL's namespace");
    let f = parse(&out).expect("frame");
    assert_eq!(
        (f.eth_dst, f.eth_src),
        (task_mac(be(T_LOCAL)), MAC_VETH),
        "addressed to T_LOCAL's MAC, from the node's side"
    );
    assert_eq!(out[12..], local[12..], "nothing but the MACs changed");
    assert_eq!(handed_into_tasks(&mut h), 1);
    // A local task whose veth's index the map lacks: the kernel routes it.
    let unindexed = Ipv4Addr::new(10, 1, 0, 20);
    h.maps()
        .set_endpoint(
            be(unindexed),
            Endpoint {
                node_be: be(NODE_A),
                vni: VNI,
                ifindex: 0,
                flags: Endpoint::FLAG_LOCAL,
            },
        )
        .expect("endpoint");
    let to_unindexed = PacketBuilder::udp(X, SocketAddrV4::new(unindexed, 53))
        .macs(MAC_TASK, MAC_VETH)
        .build();
    assert_eq!(
        run(&mut h, TC, &to_unindexed),
        (TC_ACT_OK, to_unindexed),
        "no redirect to ifindex 0"
    );
    assert_eq!(handed_into_tasks(&mut h), 1);
    // Not an overlay address (the internet, via the node's own NAT): untouched.
    let web =
        PacketBuilder::tcp(X, SocketAddrV4::new(Ipv4Addr::new(93, 184, 216, 34), 443)).build();
    assert_eq!(run(&mut h, TC, &web), (TC_ACT_OK, web));
}

#[test]
fn oversized_udp_to_a_remote_backend_gets_icmp_fragmentation_needed() {
    root!("icmp_too_big_xdp");
    let mut h = node_a(BE_REMOTE);
    let big = PacketBuilder::udp(CLIENT, published())
        .macs(MAC_ROUTER, MAC_A)
        .payload(vec![7u8; 1432])
        .build();
    assert_eq!(big.len(), 14 + 20 + 8 + 1432);
    let before = drops(&mut h, DropReason::FragmentationNeeded);
    let (verdict, out) = run(&mut h, XDP, &big);
    assert_eq!(verdict, XDP_TX);
    let f = parse(&out).expect("ICMP frame");
    assert_checksums(&f);
    assert_eq!((f.eth_src, f.eth_dst), (MAC_A, MAC_ROUTER));
    assert_eq!((ip(&f).src, ip(&f).dst), (NODE_A, *CLIENT.ip()));
    match ip(&f).l4 {
        L4::Icmp {
            kind, code, rest, ..
        } => {
            assert_eq!((kind, code), (3, 4));
            assert_eq!(
                u16::from_be_bytes([rest[2], rest[3]]),
                OVERLAY_MTU,
                "next-hop MTU"
            );
        }
        _ => panic!("not ICMP: {f:?}"),
    }
    // The quote is the client's packet as sent (to the published port).
    assert_eq!(ip(&f).payload[8..], big[14..14 + 28]);
    assert_eq!(drops(&mut h, DropReason::FragmentationNeeded), before + 1);
    // Exactly the overlay MTU still fits.
    let fits = PacketBuilder::udp(CLIENT, published())
        .macs(MAC_ROUTER, MAC_A)
        .payload(vec![7u8; 1422])
        .build();
    assert_eq!(run(&mut h, XDP, &fits).0, XDP_TX);
    assert!(parse_vxlan(&run(&mut h, XDP, &fits).1).is_ok());
}

#[test]
fn oversized_udp_from_a_task_to_a_remote_task_gets_icmp_fragmentation_needed() {
    root!("icmp_too_big_tc");
    let mut h = node_a(BE_REMOTE);
    let big = PacketBuilder::udp(X, SocketAddrV4::new(T_OTHER, 53))
        .macs(MAC_TASK, MAC_VETH)
        .payload(vec![1u8; 1500])
        .build();
    let (verdict, out) = run(&mut h, TC, &big);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let f = parse(&out).expect("ICMP frame");
    assert_checksums(&f);
    assert_eq!((f.eth_src, f.eth_dst), (MAC_VETH, MAC_TASK));
    assert_eq!(ip(&f).dst, *X.ip());
    assert!(matches!(
        ip(&f).l4,
        L4::Icmp {
            kind: 3,
            code: 4,
            ..
        }
    ));
    assert_eq!(drops(&mut h, DropReason::FragmentationNeeded), 1);
}

#[test]
fn malformed_and_unbalanceable_packets_are_dropped_with_their_reason() {
    root!("drop_reasons");
    let mut h = node_a(BE_REMOTE);
    let syn = || client_tcp(TCP_SYN);
    assert_drop(
        &mut h,
        XDP,
        &syn().ihl(4).build(),
        DropReason::MalformedIpv4,
    );
    assert_drop(
        &mut h,
        XDP,
        &syn().tot_len(1000).build(),
        DropReason::MalformedIpv4,
    );
    // IP total length says 30 bytes: 10 bytes of a 20-byte TCP header.
    assert_drop(
        &mut h,
        XDP,
        &syn().tot_len(30).truncate(14 + 30).build(),
        DropReason::TruncatedPacket,
    );
    assert_drop(
        &mut h,
        XDP,
        &syn().fragment(true, 0).build(),
        DropReason::Ipv4Fragment,
    );
    assert_drop(
        &mut h,
        XDP,
        &syn().ip_options(vec![1, 1, 1, 0]).build(),
        DropReason::Ipv4Options,
    );
    let inner = PacketBuilder::tcp(CLIENT, SocketAddrV4::new(T_LOCAL, TARGET)).build();
    let from = |src, flags, vni, inner: &[u8]| {
        vxlan_frame(
            MAC_B, MAC_A, src, NODE_A, 50000, VXLAN_PORT, flags, vni, inner,
        )
    };
    assert_drop(
        &mut h,
        XDP,
        &from(Ipv4Addr::new(10, 0, 0, 99), 0x08, VNI, &inner),
        DropReason::VxlanFromNonPeer,
    );
    assert_drop(
        &mut h,
        XDP,
        &from(NODE_B, 0x00, VNI, &inner),
        DropReason::MalformedVxlan,
    );
    let arp = PacketBuilder::tcp(CLIENT, published())
        .ethertype(packet::ETH_P_ARP)
        .build();
    assert_drop(
        &mut h,
        XDP,
        &from(NODE_B, 0x08, VNI, &arp),
        DropReason::MalformedVxlan,
    );
    assert_drop(
        &mut h,
        XDP,
        &from(NODE_B, 0x08, VNI, &inner[..20]),
        DropReason::MalformedVxlan,
    );
    assert_drop(
        &mut h,
        XDP,
        &from(NODE_B, 0x08, VNI + 1, &inner),
        DropReason::UnknownVni,
    );
    let elsewhere = PacketBuilder::tcp(CLIENT, SocketAddrV4::new(T_OTHER, TARGET)).build();
    assert_drop(
        &mut h,
        XDP,
        &from(NODE_B, 0x08, VNI, &elsewhere),
        DropReason::NoEndpoint,
    );
    // Tasks: ICMP and later fragments to a VIP; no peer for the backend's node.
    let ping_vip = PacketBuilder::icmp_echo(*X.ip(), VIP).build();
    assert_drop(&mut h, TC, &ping_vip, DropReason::UnsupportedProtocol);
    let frag = PacketBuilder::udp(X, SocketAddrV4::new(VIP, 53))
        .fragment(false, 100)
        .build();
    assert_drop(&mut h, TC, &frag, DropReason::Ipv4Fragment);
    h.maps()
        .set_backend(
            BE_OTHER,
            Backend {
                addr_be: be(T_OTHER),
                node_be: be(Ipv4Addr::new(10, 0, 0, 77)),
                vni: VNI,
                flags: 0,
            },
        )
        .expect("backend");
    h.maps()
        .set_maglev(0, &[BE_OTHER; RING_SIZE as usize])
        .expect("maglev");
    assert_drop(&mut h, XDP, &syn().build(), DropReason::UnknownPeer);
    h.maps()
        .set_ring(SVC_PUBLISHED, Ring { offset: 0, size: 0 })
        .expect("ring");
    assert_drop(&mut h, XDP, &syn().build(), DropReason::NoBackend);
    assert_eq!(
        h.maps()
            .service_stats(SVC_PUBLISHED)
            .expect("stats")
            .packets,
        0,
        "dropped packets are not counted as served"
    );
}

#[test]
fn traffic_that_is_not_the_meshs_passes_untouched() {
    root!("pass_through");
    let mut h = node_a(BE_REMOTE);
    let cases = [
        PacketBuilder::tcp(CLIENT, SocketAddrV4::new(NODE_A, 22)).build(),
        PacketBuilder::icmp_echo(*CLIENT.ip(), NODE_A).build(),
        PacketBuilder::tcp(
            CLIENT,
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 50), PUBLISHED),
        )
        .build(),
        PacketBuilder::tcp(CLIENT, published())
            .ethertype(packet::ETH_P_ARP)
            .build(),
        // A later fragment to the node: no ports, the kernel reassembles.
        PacketBuilder::udp(CLIENT, published())
            .fragment(false, 10)
            .build(),
        // IP options on traffic that is not the mesh's are the kernel's business.
        PacketBuilder::tcp(CLIENT, SocketAddrV4::new(NODE_A, 22))
            .ip_options(vec![1, 1, 1, 0])
            .build(),
    ];
    for frame in cases {
        assert_eq!(run(&mut h, XDP, &frame), (XDP_PASS, frame.clone()));
    }
    // Until user space sets FLAG_CONFIGURED, even a published port passes.
    let mut unconfigured = node(NODE_A, MAC_A);
    unconfigured.flags = 0;
    h.maps().set_node(&unconfigured).expect("node");
    let syn = client_tcp(TCP_SYN).build();
    assert_eq!(run(&mut h, XDP, &syn), (XDP_PASS, syn.clone()));
    assert_eq!(run(&mut h, TC, &syn), (TC_ACT_OK, syn));
}

/// Issue 14: a service entry forced onto one of the node's own control-plane ports (2377/tcp
/// for Raft and the cluster API, 7946/udp for gossip) does not capture the node's traffic:
/// `xdp_from_underlay` passes it to the kernel untouched, counts it, and balances nothing.
#[test]
fn a_service_entry_on_a_control_plane_port_does_not_capture_the_nodes_traffic() {
    root!("control_plane_ports_are_not_balanced");
    use hive_common::maps::{ControlPort, Frontend, IPPROTO_UDP, ServiceKey};
    const RAFT: u16 = 2377;
    const GOSSIP: u16 = 7946;
    let mut h = node_a(BE_LOCAL);
    let mut config = node(NODE_A, MAC_A);
    config.control_ports[0] = ControlPort {
        port_be: RAFT.to_be(),
        proto: IPPROTO_TCP,
        _pad: 0,
    };
    config.control_ports[1] = ControlPort {
        port_be: GOSSIP.to_be(),
        proto: IPPROTO_UDP,
        _pad: 0,
    };
    let mut m = h.maps();
    m.set_node(&config).expect("node");
    for (port, proto) in [
        (RAFT, IPPROTO_TCP),
        (GOSSIP, IPPROTO_UDP),
        (RAFT, IPPROTO_UDP),
    ] {
        let key = ServiceKey {
            addr_be: 0,
            port_be: port.to_be(),
            proto,
            _pad: 0,
        };
        let frontend = Frontend {
            service: SVC_PUBLISHED,
            target_port_be: TARGET.to_be(),
            flags: Frontend::FLAG_PUBLISHED,
        };
        m.set_service(key, frontend).expect("forced service entry");
    }
    let before = m
        .packet_counter(PacketCounterSlot::ControlPort)
        .expect("counter")
        .packets;
    let raft = PacketBuilder::tcp(CLIENT, SocketAddrV4::new(NODE_A, RAFT))
        .macs(MAC_ROUTER, MAC_A)
        .flags(TCP_SYN)
        .build();
    let gossip = PacketBuilder::udp(CLIENT, SocketAddrV4::new(NODE_A, GOSSIP))
        .macs(MAC_ROUTER, MAC_A)
        .payload(*b"gossip")
        .build();
    for frame in [&raft, &gossip] {
        assert_eq!(run(&mut h, XDP, frame), (XDP_PASS, frame.clone()));
    }
    let mut m = h.maps();
    assert_eq!(
        m.packet_counter(PacketCounterSlot::ControlPort)
            .expect("counter")
            .packets,
        before + 2
    );
    let stats = m.service_stats(SVC_PUBLISHED).expect("stats");
    assert_eq!(stats.new_flows, 0, "nothing was balanced");
    assert!(
        m.flow(&key(
            CLIENT,
            SocketAddrV4::new(NODE_A, RAFT),
            IPPROTO_TCP,
            FlowKind::Forward
        ))
        .expect("ct")
        .is_none(),
        "no conntrack entry for the node's own traffic"
    );
    // The same number on the other protocol is no control-plane port: balanced as published.
    let udp_2377 = PacketBuilder::udp(CLIENT, SocketAddrV4::new(NODE_A, RAFT))
        .macs(MAC_ROUTER, MAC_A)
        .payload(*b"x")
        .build();
    let (verdict, out) = run(&mut h, XDP, &udp_2377);
    assert_eq!(verdict, XDP_PASS);
    let f = parse(&out).expect("frame");
    assert_eq!(ip(&f).dst, T_LOCAL, "balanced to the local backend");
}

// --- Conntrack that never blackholes a client port (issue 14, item 7) ---

/// The backend a published-port SYN from `client` is DNATed and tunnelled to.
fn syn_goes_to(h: &mut ProgRun, client: SocketAddrV4) -> Ipv4Addr {
    let frame = PacketBuilder::tcp(client, published())
        .macs(MAC_ROUTER, MAC_A)
        .flags(TCP_SYN)
        .build();
    let (verdict, out) = run(h, XDP, &frame);
    assert_eq!(verdict, XDP_TX, "SYN from {client} tunnelled");
    ip(&assert_vxlan(&out, (MAC_A, NODE_A), (MAC_B, NODE_B))).dst
}

#[test]
fn a_syn_on_an_entry_whose_backend_left_the_ring_is_balanced_to_a_live_backend() {
    root!("a_syn_on_an_entry_whose_backend_left_the_ring");
    let mut h = node_a(BE_REMOTE);
    // Port 40000: a SYN that got no answer yet (its entry is SynSent).
    // Port 40001: an established connection.
    let half_open = CLIENT;
    let established = SocketAddrV4::new(*CLIENT.ip(), 40001);
    assert_eq!(syn_goes_to(&mut h, half_open), T_REMOTE);
    assert_eq!(syn_goes_to(&mut h, established), T_REMOTE);
    let ack = PacketBuilder::tcp(established, published())
        .macs(MAC_ROUTER, MAC_A)
        .flags(TCP_ACK)
        .build();
    run(&mut h, XDP, &ack);

    // T_REMOTE's task is replaced: user space flips the ring to the new
    // backend, then marks the old id as draining.
    let mut m = h.maps();
    m.set_maglev(0, &[BE_OTHER; RING_SIZE as usize])
        .expect("maglev");
    m.set_backend(
        BE_REMOTE,
        Backend {
            addr_be: be(T_REMOTE),
            node_be: be(NODE_B),
            vni: VNI,
            flags: Backend::FLAG_DRAINING,
        },
    )
    .expect("backend");

    // The established connection drains on its backend.
    let (_, out) = run(&mut h, XDP, &ack);
    assert_eq!(
        ip(&assert_vxlan(&out, (MAC_A, NODE_A), (MAC_B, NODE_B))).dst,
        T_REMOTE,
        "an established flow keeps its draining backend"
    );
    // The retried SYN of the half-open one, and a new connection on the
    // established entry's port (the old one vanished without a FIN), go to
    // the live backend, and their entries follow.
    assert_eq!(
        syn_goes_to(&mut h, half_open),
        T_OTHER,
        "the retried SYN must not follow its entry into the replaced task"
    );
    assert_eq!(syn_goes_to(&mut h, established), T_OTHER);
    for client in [half_open, established] {
        let fwd = h
            .maps()
            .flow(&key(client, published(), IPPROTO_TCP, FlowKind::Forward))
            .expect("ct")
            .expect("Forward entry");
        assert_eq!(
            (fwd.addr_be, fwd.backend, fwd.tcp_state),
            (be(T_OTHER), BE_OTHER, TcpState::SynSent as u8),
            "{client}"
        );
        let rev = h
            .maps()
            .flow(&key(
                SocketAddrV4::new(T_OTHER, TARGET),
                client,
                IPPROTO_TCP,
                FlowKind::ReverseNat,
            ))
            .expect("ct");
        assert!(
            rev.is_some(),
            "{client}: replies of the new backend restored"
        );
    }
    // The same when the id was reused for another task (no mark needed):
    // the entry's address no longer matches the id's.
    let reused = SocketAddrV4::new(*CLIENT.ip(), 40002);
    h.maps()
        .set_maglev(0, &[BE_REMOTE; RING_SIZE as usize])
        .expect("maglev");
    h.maps()
        .set_backend(
            BE_REMOTE,
            Backend {
                addr_be: be(T_REMOTE),
                node_be: be(NODE_B),
                vni: VNI,
                flags: 0,
            },
        )
        .expect("backend");
    assert_eq!(syn_goes_to(&mut h, reused), T_REMOTE);
    h.maps()
        .set_backend(
            BE_REMOTE,
            Backend {
                addr_be: be(T_OTHER),
                node_be: be(NODE_B),
                vni: VNI,
                flags: 0,
            },
        )
        .expect("backend");
    assert_eq!(syn_goes_to(&mut h, reused), T_OTHER);
}

#[test]
fn a_syn_through_another_node_takes_the_reply_tuple_over_from_this_nodes_leftover_entry() {
    root!("a_syn_through_another_node_takes_the_reply_tuple_over");
    // Node A publishes the service with its task T_LOCAL; node B (behind
    // the same external load balancer) balances to T_LOCAL as well.
    let mut h = node_a(BE_LOCAL);
    let task = SocketAddrV4::new(T_LOCAL, TARGET);
    let synack = PacketBuilder::tcp(task, CLIENT)
        .macs(MAC_TASK, MAC_VETH)
        .flags(TCP_SYN | TCP_ACK)
        .build();

    // 1. The client's connection through A's published port, answered by A.
    let (verdict, _) = run(&mut h, XDP, &client_tcp(TCP_SYN).build());
    assert_eq!(verdict, XDP_PASS, "to the local backend");
    let (verdict, out) = run(&mut h, TC, &synack);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let f = parse(&out).expect("frame");
    assert_eq!((ip(&f).src, ports(&f).0), (NODE_A, PUBLISHED));

    // 2. The same client port's next connection comes in through B, which
    // tunnels it to T_LOCAL. A's entry of connection 1 is still there.
    let inner = PacketBuilder::tcp(CLIENT, task)
        .macs(MAC_ROUTER, MAC_B)
        .flags(TCP_SYN)
        .build();
    let frame = vxlan_frame(
        MAC_B, MAC_A, NODE_B, NODE_A, 50000, VXLAN_PORT, 0x08, VNI, &inner,
    );
    let (verdict, _, handoff) = handed_to(&mut h, &frame);
    assert_eq!(
        (verdict, handoff),
        (XDP_PASS, Some(VETH_T_LOCAL)),
        "delivered"
    );
    let mut m = h.maps();
    assert_eq!(
        m.flow(&key(task, CLIENT, IPPROTO_TCP, FlowKind::ReverseNat))
            .expect("ct"),
        None,
        "the reply tuple now belongs to B's flow"
    );
    let t = m
        .flow(&key(task, CLIENT, IPPROTO_TCP, FlowKind::Tunnel))
        .expect("ct")
        .expect("Tunnel entry");
    assert_eq!(t.node_be, be(NODE_B));
    // The SYN-ACK goes back through B, untranslated, not out of A with A's
    // address (the client waits for B's).
    let (verdict, out) = run(&mut h, TC, &synack);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let f = assert_vxlan(&out, (MAC_A, NODE_A), (MAC_B, NODE_B));
    assert_checksums(&f);
    assert_eq!((ip(&f).src, ip(&f).dst), (T_LOCAL, *CLIENT.ip()));
    assert_eq!(ports(&f), (TARGET, CLIENT.port()));

    // 3. And back through A: A's SYN takes the tuple back at once (no
    // second of refresh interval to wait for).
    let (verdict, _) = run(&mut h, XDP, &client_tcp(TCP_SYN).build());
    assert_eq!(verdict, XDP_PASS);
    let (verdict, out) = run(&mut h, TC, &synack);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let f = parse(&out).expect("frame");
    assert_checksums(&f);
    assert_eq!((f.eth_src, f.eth_dst), (MAC_A, MAC_ROUTER));
    assert_eq!((ip(&f).src, ip(&f).dst), (NODE_A, *CLIENT.ip()));
    assert_eq!(ports(&f), (PUBLISHED, CLIENT.port()));
}

/// A whole connection through the ingress node, as a client makes it: SYN, ACK, request, FIN.
/// Its entries are written when it opens; its state changes are written in place (no
/// conntrack insert per change), and every reply, the last one after the client's FIN
/// included, still reaches the client from the published address.
#[test]
fn a_connections_state_changes_keep_its_backend_and_its_replies() {
    root!("a_connections_state_changes");
    let mut h = node_a(BE_REMOTE);
    let reply = |flags: u8| {
        let inner = PacketBuilder::tcp(SocketAddrV4::new(T_REMOTE, TARGET), CLIENT)
            .macs(MAC_TASK, MAC_B)
            .flags(flags)
            .build();
        vxlan_frame(
            MAC_B, MAC_A, NODE_B, NODE_A, 50000, VXLAN_PORT, 0x08, VNI, &inner,
        )
    };
    let fwd_key = key(CLIENT, published(), IPPROTO_TCP, FlowKind::Forward);
    let steps = [
        (TCP_SYN, TCP_SYN | TCP_ACK, TcpState::SynSent),
        (TCP_ACK, TCP_ACK, TcpState::Established),
        (
            TCP_ACK | packet::TCP_PSH,
            TCP_ACK | packet::TCP_PSH,
            TcpState::Established,
        ),
        (
            packet::TCP_FIN | TCP_ACK,
            packet::TCP_FIN | TCP_ACK,
            TcpState::Closing,
        ),
    ];
    for (from_client, from_task, state) in steps {
        let (verdict, out) = run(&mut h, XDP, &client_tcp(from_client).build());
        assert_eq!(verdict, XDP_TX, "client's {from_client:#x}");
        assert_eq!(
            ip(&assert_vxlan(&out, (MAC_A, NODE_A), (MAC_B, NODE_B))).dst,
            T_REMOTE,
            "client's {from_client:#x} to its backend"
        );
        let fwd = h.maps().flow(&fwd_key).expect("ct").expect("Forward entry");
        assert_eq!(
            (fwd.addr_be, fwd.tcp_state),
            (be(T_REMOTE), state as u8),
            "after the client's {from_client:#x}"
        );
        let (verdict, out) = run(&mut h, XDP, &reply(from_task));
        assert_eq!(verdict, XDP_TX, "task's {from_task:#x}");
        let f = parse(&out).expect("frame");
        assert_checksums(&f);
        assert_eq!(
            (ip(&f).src, ip(&f).dst, ports(&f)),
            (NODE_A, *CLIENT.ip(), (PUBLISHED, CLIENT.port())),
            "task's {from_task:#x} back to the client from the published address"
        );
    }
}

/// A packet without ports through the tunnel (a ping from a task on A to a
/// task on B) is decapsulated and handed to its task like any other: the
/// decap path takes no clock reading for it when tracing is off, and needs
/// none.
#[test]
fn a_ping_through_the_tunnel_reaches_the_local_task() {
    root!("decap_ping");
    let mut h = node_b();
    let ping = PacketBuilder::icmp_echo(*X.ip(), T_REMOTE)
        .macs(MAC_TASK, MAC_A)
        .payload(vec![0xab; 32])
        .build();
    let frame = vxlan_frame(
        MAC_A, MAC_B, NODE_A, NODE_B, 50000, VXLAN_PORT, 0x08, VNI, &ping,
    );
    let (verdict, out, handoff) = handed_to(&mut h, &frame);
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(handoff, Some(VETH_T_REMOTE), "handed to the task's veth");
    let f = parse(&out).expect("inner frame");
    assert_eq!(f.eth_dst, MAC_B, "inner destination MAC is the node's");
    assert_eq!(out[6..], ping[6..], "nothing else changed");
    assert_checksums(&f);
}

/// The bench's floor of a path through an ingress node (`xdp_lab_forward`, and
/// `tc_lab_forward` from tc ingress): a client's frame for the node's port goes back out
/// towards a backend node with only its Ethernet addresses changed, two backends
/// alternating by the client port's low bit; anything else is the kernel's.
/// Frames a floor hop configured for TCP to NODE_A:PUBLISHED must leave alone: another
/// port, UDP to the same port, the same port on another address.
fn not_the_floors_frames() -> [Vec<u8>; 3] {
    [
        PacketBuilder::tcp(CLIENT, SocketAddrV4::new(NODE_A, 22))
            .macs(MAC_ROUTER, MAC_A)
            .build(),
        PacketBuilder::udp(CLIENT, published())
            .macs(MAC_ROUTER, MAC_A)
            .build(),
        PacketBuilder::tcp(CLIENT, SocketAddrV4::new(NODE_B, PUBLISHED))
            .macs(MAC_ROUTER, MAC_A)
            .build(),
    ]
}

#[test]
fn the_lab_forwarder_rewrites_only_the_ethernet_addresses() {
    root!("lab_forward");
    let mut h = ProgRun::load().expect("load object");
    let mac_c: Mac = [0x02, 0, 0, 0, 0, 0xc3];
    h.maps()
        .set_lab_forward(&LabForward {
            addr_be: be(NODE_A),
            port_be: PUBLISHED.to_be(),
            backends: 2,
            from: MAC_A,
            to: [MAC_B, mac_c],
            ..LabForward::default()
        })
        .expect("configure");
    for (program, forwarded, passed) in [
        (LAB_FORWARD, XDP_TX, XDP_PASS),
        (TC_LAB_FORWARD, TC_ACT_REDIRECT, TC_ACT_OK),
    ] {
        for (port, to) in [(40000, MAC_B), (40001, mac_c)] {
            let syn = PacketBuilder::tcp(SocketAddrV4::new(*CLIENT.ip(), port), published())
                .macs(MAC_ROUTER, MAC_A)
                .flags(TCP_SYN)
                .build();
            let (verdict, out) = run(&mut h, program, &syn);
            assert_eq!(verdict, forwarded, "{program}, client port {port}");
            assert_eq!(
                out[..6],
                to,
                "{program}, client port {port}: to its backend node"
            );
            assert_eq!(out[6..12], MAC_A, "{program}: from the ingress node");
            assert_eq!(
                out[12..],
                syn[12..],
                "{program}: only the Ethernet addresses changed"
            );
        }
        for frame in not_the_floors_frames() {
            assert_eq!(
                run(&mut h, program, &frame),
                (passed, frame.clone()),
                "{program}"
            );
        }
    }
}

/// The lab's wire as a switch (`xdp_lab_switch` on a bridge port, `hive_lab::wire`):
/// frames to the configured node's MAC are redirected, untouched, to its bridge port;
/// every other frame, and every frame while nothing is configured, passes to the bridge.
#[test]
fn the_lab_switch_redirects_only_frames_to_its_node() {
    root!("lab_switch");
    let mut h = ProgRun::load().expect("load object");
    let to_b = PacketBuilder::tcp(CLIENT, published())
        .macs(MAC_A, MAC_B)
        .build();
    let tunnelled = vxlan_frame(
        MAC_A, MAC_B, NODE_A, NODE_B, 50000, VXLAN_PORT, 0x08, VNI, &to_b,
    );
    let to_a = PacketBuilder::tcp(CLIENT, published())
        .macs(MAC_B, MAC_A)
        .build();
    let broadcast = PacketBuilder::tcp(CLIENT, published())
        .macs(MAC_A, [0xff; 6])
        .build();
    assert_eq!(
        run(&mut h, LAB_SWITCH, &to_b),
        (XDP_PASS, to_b.clone()),
        "not configured: the bridge's"
    );
    h.maps()
        .set_lab_forward(&LabForward {
            backends: 1,
            to: [MAC_B, [0; 6]],
            ifindex: 7,
            ..LabForward::default()
        })
        .expect("configure");
    for frame in [&to_b, &tunnelled] {
        assert_eq!(
            run(&mut h, LAB_SWITCH, frame),
            (XDP_REDIRECT, frame.clone())
        );
    }
    for frame in [&to_a, &broadcast] {
        assert_eq!(run(&mut h, LAB_SWITCH, frame), (XDP_PASS, frame.clone()));
    }
}

/// The floor's hops on the backend's node (`tc_lab_forward`): the client's frame into the
/// task (`bpf_redirect_peer`), the task's replies matched by their source and sent out
/// of the underlay device, each with only its Ethernet addresses changed.
#[test]
fn the_lab_forwarder_hands_frames_in_and_replies_out_by_their_macs() {
    root!("lab_forward_tc");
    let mut h = ProgRun::load().expect("load object");
    let syn = client_tcp(TCP_SYN).build();
    let reply = PacketBuilder::tcp(published(), CLIENT)
        .macs(MAC_TASK, MAC_VETH)
        .flags(TCP_SYN | TCP_ACK)
        .build();
    let into_task = LabForward {
        addr_be: be(NODE_A),
        port_be: PUBLISHED.to_be(),
        backends: 1,
        from: MAC_B,
        to: [MAC_TASK, [0; 6]],
        out: LabForward::OUT_PEER,
        ifindex: VETH_T_REMOTE,
        ..LabForward::default()
    };
    let out_of_node = LabForward {
        flags: LabForward::MATCH_SOURCE,
        from: MAC_B,
        to: [MAC_ROUTER, [0; 6]],
        out: LabForward::OUT_EGRESS,
        ifindex: UNDERLAY_IFINDEX,
        ..into_task
    };
    for (hop, frame, to, other) in [
        (into_task, &syn, MAC_TASK, &reply),
        (out_of_node, &reply, MAC_ROUTER, &syn),
    ] {
        h.maps().set_lab_forward(&hop).expect("configure");
        let (verdict, out) = run(&mut h, TC_LAB_FORWARD, frame);
        assert_eq!(verdict, TC_ACT_REDIRECT, "out = {}", hop.out);
        assert_eq!(
            (out[..6].to_vec(), out[6..12].to_vec()),
            (to.to_vec(), MAC_B.to_vec())
        );
        assert_eq!(
            out[12..],
            frame[12..],
            "only the Ethernet addresses changed"
        );
        // The other direction is not this hop's.
        assert_eq!(
            run(&mut h, TC_LAB_FORWARD, other),
            (TC_ACT_OK, other.clone())
        );
    }
    // A way out the forwarder does not know sends nothing anywhere.
    h.maps()
        .set_lab_forward(&LabForward {
            out: 9,
            ..into_task
        })
        .expect("configure");
    assert_eq!(run(&mut h, TC_LAB_FORWARD, &syn).0, TC_ACT_SHOT);
}

/// A frame in the outer headers hive's ingress writes (`vxlan::outer`): IPv4 id 0, DF,
/// TTL 64; UDP checksum 0; VXLAN flags I, [`VNI`].
fn in_hives_vxlan(from: (Mac, Ipv4Addr), to: (Mac, Ipv4Addr), sport: u16, inner: &[u8]) -> Vec<u8> {
    let mut payload = vec![0x08, 0, 0, 0];
    payload.extend_from_slice(&(VNI << 8).to_be_bytes());
    payload.extend_from_slice(inner);
    let mut outer = PacketBuilder::udp(
        SocketAddrV4::new(from.1, sport),
        SocketAddrV4::new(to.1, VXLAN_PORT),
    )
    .no_udp_checksum()
    .macs(from.0, to.0)
    .payload(payload);
    outer.id = 0;
    outer.build()
}

/// The floor through hive's tunnel (`xdp_lab_vxlan` on the ingress node, `xdp_lab_decap`
/// on the backend's): a client's frame for the node's port leaves in exactly the VXLAN
/// headers hive's ingress writes (UDP source port from the flow hash), towards the
/// backend node of its client port's low bit, the frame inside untouched; unwrapped on
/// that node, it is the client's frame again, addressed to the node. Anything else is
/// the kernel's.
#[test]
fn the_lab_tunnel_wraps_frames_as_hive_does_and_unwraps_them() {
    root!("lab_tunnel");
    let mut h = ProgRun::load().expect("load object");
    let mac_c: Mac = [0x02, 0, 0, 0, 0, 0xc3];
    let node_c = Ipv4Addr::new(10, 0, 0, 3);
    let ingress = LabForward {
        addr_be: be(NODE_A),
        port_be: PUBLISHED.to_be(),
        backends: 2,
        from: MAC_A,
        to: [MAC_B, mac_c],
        nodes_be: [be(NODE_B), be(node_c)],
        underlay_be: be(NODE_A),
        vni: VNI,
        vxlan_port_be: VXLAN_PORT.to_be(),
        ..LabForward::default()
    };
    let decap = |mac: Mac, node: Ipv4Addr| LabForward {
        addr_be: be(node),
        port_be: VXLAN_PORT.to_be(),
        backends: 1,
        from: mac,
        to: [mac, [0; 6]],
        ..LabForward::default()
    };
    for (port, mac, node) in [(40000, MAC_B, NODE_B), (40001, mac_c, node_c)] {
        let client = SocketAddrV4::new(*CLIENT.ip(), port);
        let syn = PacketBuilder::tcp(client, published())
            .macs(MAC_ROUTER, MAC_A)
            .flags(TCP_SYN)
            .mss(1460)
            .build();
        h.maps().set_lab_forward(&ingress).expect("configure");
        let (verdict, wrapped) = run(&mut h, LAB_VXLAN, &syn);
        assert_eq!(verdict, XDP_TX, "client port {port}");
        let hash = flow_hash(
            0,
            be(*CLIENT.ip()),
            port.to_be(),
            PUBLISHED.to_be(),
            IPPROTO_TCP,
        );
        let sport = 49152 | (hash as u16 & 0x3fff);
        assert_eq!(
            wrapped,
            in_hives_vxlan((MAC_A, NODE_A), (mac, node), sport, &syn),
            "client port {port}: hive's outer headers to its backend's node, the frame inside untouched"
        );
        h.maps()
            .set_lab_forward(&decap(mac, node))
            .expect("configure");
        let (verdict, unwrapped) = run(&mut h, LAB_DECAP, &wrapped);
        assert_eq!(verdict, XDP_PASS, "client port {port}");
        assert_eq!(unwrapped[..6], mac, "addressed to the backend's node");
        assert_eq!(unwrapped[6..], syn[6..], "the client's frame otherwise");
    }
    h.maps().set_lab_forward(&ingress).expect("configure");
    for frame in not_the_floors_frames() {
        assert_eq!(run(&mut h, LAB_VXLAN, &frame), (XDP_PASS, frame.clone()));
    }
    // On the backend's node: VXLAN to another port or node, and the client's own frames,
    // are the kernel's.
    h.maps()
        .set_lab_forward(&decap(MAC_B, NODE_B))
        .expect("configure");
    let syn = client_tcp(TCP_SYN).build();
    let to_port = |dport: u16, dst: Ipv4Addr| {
        vxlan_frame(MAC_A, MAC_B, NODE_A, dst, 50000, dport, 0x08, VNI, &syn)
    };
    for frame in [
        to_port(VXLAN_PORT + 1, NODE_B),
        to_port(VXLAN_PORT, node_c),
        syn.clone(),
    ] {
        assert_eq!(run(&mut h, LAB_DECAP, &frame), (XDP_PASS, frame.clone()));
    }
}
