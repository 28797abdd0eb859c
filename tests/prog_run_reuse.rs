//! BPF_PROG_RUN fixtures for a client port that is used again (issue 21):
//! a load generator that opens a connection per request wraps its ephemeral
//! ports within seconds, so a new SYN meets the conntrack entries of the
//! port's previous connection (closed by FIN or RST, not yet expired) on
//! both nodes. The new connection must be a new flow everywhere, in `snat`
//! and in `dsr` mode. Same two-node world as `tests/prog_run.rs`. Needs
//! root.

#[macro_use]
mod prog_run_support;

use std::net::{Ipv4Addr, SocketAddrV4};

use hive_common::maps::{FlowEntry, FlowKey, FlowKind, NodeConfig, TcpState};
use hive_prog_run::{
    packet::{
        IPPROTO_TCP, Mac, PacketBuilder, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, parse,
        parse_vxlan, vxlan_frame,
    },
    prog_run::{ProgRun, TC_ACT_REDIRECT, XDP_PASS, XDP_TX},
    world::*,
};
use prog_run_support::*;

const DSR: u16 = NodeConfig::FLAG_DIRECT_RETURN_TCP | NodeConfig::FLAG_DIRECT_RETURN_UDP;
/// Longer than the 10 s a closed connection's entry lives, far shorter than
/// an established one's 6 h (`conntrack.rs`).
const IDLE_NS: u64 = 11_000_000_000;

fn task() -> SocketAddrV4 {
    SocketAddrV4::new(T_REMOTE, TARGET)
}

fn state(h: &mut ProgRun, key: &FlowKey) -> u8 {
    h.maps()
        .flow(key)
        .expect("ct")
        .unwrap_or_else(|| panic!("an entry for {key:?}"))
        .tcp_state
}

/// Make the entry at `key` look idle for [`IDLE_NS`] (a pause of the
/// connection, without waiting for it).
fn idle(h: &mut ProgRun, key: &FlowKey) {
    let mut entry: FlowEntry = h.maps().flow(key).expect("ct").expect("an entry");
    entry.last_seen_ns = entry.last_seen_ns.saturating_sub(IDLE_NS);
    h.maps().set_flow(*key, entry).expect("set entry");
}

// --- The ingress node A ---

fn node_a_in(mode: u16) -> ProgRun {
    node_a_with(BE_REMOTE, mode)
}

fn node_a_with(backend: u32, mode: u16) -> ProgRun {
    let mut h = node_a(backend);
    let mut config = node(NODE_A, MAC_A);
    config.flags |= mode;
    h.maps().set_node(&config).expect("node config");
    h
}

/// T_REMOTE's segment to the client, tunnelled from B to A (snat mode).
fn tunnelled_reply(flags: u8) -> Vec<u8> {
    let reply = PacketBuilder::tcp(task(), CLIENT)
        .macs(MAC_TASK, MAC_B)
        .flags(flags)
        .build();
    vxlan_frame(
        MAC_B, MAC_A, NODE_B, NODE_A, 50000, VXLAN_PORT, FLAG_I, VNI, &reply,
    )
}

/// A whole connection from CLIENT through A, ended by `close` from the
/// client (FIN or RST); in snat mode the task's packets come back through A.
fn connection_through_a(h: &mut ProgRun, mode: u16, close: u8) {
    let (verdict, _) = run(h, XDP, &client_tcp(TCP_SYN).build());
    assert_eq!(verdict, XDP_TX);
    if mode == 0 {
        let (verdict, _) = run(h, XDP, &tunnelled_reply(TCP_SYN | TCP_ACK));
        assert_eq!(verdict, XDP_TX);
    }
    run(h, XDP, &client_tcp(TCP_ACK).build());
    if close == TCP_RST {
        run(h, XDP, &client_tcp(TCP_RST).build());
        return;
    }
    // The server closes first (`Connection: close`), then the client.
    if mode == 0 {
        run(h, XDP, &tunnelled_reply(TCP_FIN | TCP_ACK));
    }
    run(h, XDP, &client_tcp(TCP_FIN | TCP_ACK).build());
    if mode == 0 {
        run(h, XDP, &tunnelled_reply(TCP_ACK));
    }
}

#[test]
fn a_reused_client_port_opens_a_new_flow_on_the_ingress_node() {
    root!("reuse_ingress");
    let fwd = key(CLIENT, published(), IPPROTO_TCP, FlowKind::Forward);
    let reverse = key(task(), CLIENT, IPPROTO_TCP, FlowKind::ReverseNat);
    for mode in [0, DSR] {
        for close in [TCP_FIN, TCP_RST] {
            let what = format!("mode flags {mode:#x}, closed by {close:#x}");
            let mut h = node_a_in(mode);
            connection_through_a(&mut h, mode, close);
            let closed = state(&mut h, &fwd);
            assert!(
                closed == TcpState::Closing as u8 || closed == TcpState::Reset as u8,
                "{what}: the first connection is over ({closed})"
            );

            // The client's port wraps: the next connection's SYN.
            let (verdict, out) = run(&mut h, XDP, &client_tcp(TCP_SYN).build());
            assert_eq!(verdict, XDP_TX, "{what}: tunnelled");
            let v = parse_vxlan(&out).expect("vxlan");
            let inner = parse(&v.inner).expect("inner");
            assert_eq!(ip(&inner).dst, T_REMOTE, "{what}");
            let marked = if mode == DSR {
                (FLAG_I | FLAG_DIRECT_RETURN, PUBLISHED)
            } else {
                (FLAG_I, 0)
            };
            assert_eq!(
                (
                    out[VXLAN_AT],
                    u16::from_be_bytes([out[VXLAN_AT + 2], out[VXLAN_AT + 3]])
                ),
                marked,
                "{what}: the mode's tunnel"
            );
            assert_eq!(
                state(&mut h, &fwd),
                TcpState::SynSent as u8,
                "{what}: a new flow"
            );
            if mode == DSR {
                assert_eq!(h.maps().flow(&reverse).expect("ct"), None, "{what}");
                continue;
            }
            assert_eq!(state(&mut h, &reverse), TcpState::SynSent as u8, "{what}");
            let (verdict, out) = run(&mut h, XDP, &tunnelled_reply(TCP_SYN | TCP_ACK));
            assert_eq!(verdict, XDP_TX, "{what}: the SYN-ACK goes back");
            let f = parse(&out).expect("frame");
            assert_eq!((ip(&f).src, ip(&f).dst), (NODE_A, *CLIENT.ip()), "{what}");
            assert_eq!(ports(&f), (PUBLISHED, CLIENT.port()), "{what}");
        }
    }
}

// --- The backend's node B ---

/// The client's segment as B receives it from A: tunnelled, with the
/// direct-return mark and the published port when `direct`.
fn from_a(flags: u8, direct: bool) -> Vec<u8> {
    tunnelled(task(), (MAC_A, NODE_A), (MAC_B, NODE_B), flags, direct)
}

/// The client's segment to `to` as the node `(mac, addr)` `dst` receives it
/// through the tunnel of `src`, which balanced it from its own published
/// port: marked for direct return, with the published port, when `direct`.
fn tunnelled(
    to: SocketAddrV4,
    (src_mac, src_node): (Mac, Ipv4Addr),
    (dst_mac, dst_node): (Mac, Ipv4Addr),
    flags: u8,
    direct: bool,
) -> Vec<u8> {
    let inner = PacketBuilder::tcp(CLIENT, to)
        .macs(MAC_ROUTER, src_mac)
        .flags(flags)
        .build();
    let vx_flags = if direct {
        FLAG_I | FLAG_DIRECT_RETURN
    } else {
        FLAG_I
    };
    let mut frame = vxlan_frame(
        src_mac, dst_mac, src_node, dst_node, 50000, VXLAN_PORT, vx_flags, VNI, &inner,
    );
    if direct {
        frame[VXLAN_AT + 2..VXLAN_AT + 4].copy_from_slice(&PUBLISHED.to_be_bytes());
    }
    frame
}

fn from_task(flags: u8) -> Vec<u8> {
    PacketBuilder::tcp(task(), CLIENT)
        .macs(MAC_TASK, MAC_VETH)
        .flags(flags)
        .payload(*b"data")
        .build()
}

/// The task's segment reaches the client the flow's way: from A's published
/// address (direct return) or tunnelled back to A.
fn assert_reaches_client(h: &mut ProgRun, flags: u8, direct: bool, what: &str) {
    let (verdict, out) = run(h, TC, &from_task(flags));
    assert_eq!(
        verdict, TC_ACT_REDIRECT,
        "{what}: the flow's path, not the kernel's"
    );
    if direct {
        let f = parse(&out).expect("frame");
        assert_eq!((ip(&f).src, ip(&f).dst), (NODE_A, *CLIENT.ip()), "{what}");
        assert_eq!(ports(&f), (PUBLISHED, CLIENT.port()), "{what}");
    } else {
        let v = parse_vxlan(&out).expect("tunnelled back to A");
        assert_eq!(ip(&v.outer).dst, NODE_A, "{what}");
    }
}

/// Connection setup on B: SYN from A, SYN-ACK and the client's ACK.
fn open_on_b(h: &mut ProgRun, direct: bool, what: &str) {
    run(h, XDP, &from_a(TCP_SYN, direct));
    assert_reaches_client(h, TCP_SYN | TCP_ACK, direct, what);
    run(h, XDP, &from_a(TCP_ACK, direct));
}

#[test]
fn a_reused_client_port_gets_a_fresh_tunnel_entry_on_the_backends_node() {
    root!("reuse_backend_node");
    let tunnel = key(task(), CLIENT, IPPROTO_TCP, FlowKind::Tunnel);
    for direct in [false, true] {
        for close in [TCP_FIN, TCP_RST] {
            let what = format!("direct {direct}, closed by {close:#x}");
            let mut h = node_b();
            // A connection that pauses longer than 10 s keeps its path.
            open_on_b(&mut h, direct, &what);
            idle(&mut h, &tunnel);
            assert_reaches_client(&mut h, TCP_PSH | TCP_ACK, direct, &what);
            // It ends: the server closes first, or the client resets it.
            if close == TCP_RST {
                run(&mut h, XDP, &from_a(TCP_RST, direct));
            } else {
                assert_reaches_client(&mut h, TCP_FIN | TCP_ACK, direct, &what);
                run(&mut h, XDP, &from_a(TCP_FIN | TCP_ACK, direct));
                assert_reaches_client(&mut h, TCP_ACK, direct, &what);
            }

            // The client port wraps within seconds: the next connection
            // meets the closed one's entry, and must get its own.
            open_on_b(&mut h, direct, &what);
            idle(&mut h, &tunnel);
            assert_reaches_client(&mut h, TCP_PSH | TCP_ACK, direct, &what);
            assert_eq!(
                state(&mut h, &tunnel),
                TcpState::Established as u8,
                "{what}: the new connection's state, not the old one's"
            );
        }
    }
}

// --- One client port through this node's own published port and through
// another node's tunnel, one connection after the other ---

fn local_task() -> SocketAddrV4 {
    SocketAddrV4::new(T_LOCAL, TARGET)
}

/// The client's segment to T_LOCAL as A receives it through B's tunnel (B
/// balanced it from its own published port), marked for direct return
/// when `direct`.
fn through_b(flags: u8, direct: bool) -> Vec<u8> {
    tunnelled(
        local_task(),
        (MAC_B, NODE_B),
        (MAC_A, NODE_A),
        flags,
        direct,
    )
}

/// Which way T_LOCAL's reply left A.
#[derive(Debug, PartialEq)]
enum Answer {
    /// From A's published address: the client came through A.
    FromA,
    /// Straight to the client from B's published address (direct return).
    FromB,
    /// Back into the tunnel to B (B restores its published address).
    TunnelToB,
}

fn answer(h: &mut ProgRun, flags: u8, what: &str) -> Answer {
    let reply = PacketBuilder::tcp(local_task(), CLIENT)
        .macs(MAC_TASK, MAC_VETH)
        .flags(flags)
        .build();
    let (verdict, out) = run(h, TC, &reply);
    assert_eq!(
        verdict, TC_ACT_REDIRECT,
        "{what}: a flow's path, not the kernel's"
    );
    if let Ok(v) = parse_vxlan(&out) {
        assert_eq!(ip(&v.outer).dst, NODE_B, "{what}");
        return Answer::TunnelToB;
    }
    let f = parse(&out).expect("frame");
    assert_eq!(ip(&f).dst, *CLIENT.ip(), "{what}");
    assert_eq!(ports(&f), (PUBLISHED, CLIENT.port()), "{what}");
    match ip(&f).src {
        NODE_A => Answer::FromA,
        NODE_B => Answer::FromB,
        other => panic!("{what}: a reply from {other}"),
    }
}

/// `tc_from_task` looks for a reply's `Tunnel` entry first where the node
/// returns the protocol directly, its `ReverseNat` entry first in `snat`.
/// Either way the client port's newest connection decides where its task
/// answers from, even while the previous connection's entry of the other
/// kind is still live (a connection that vanished without FIN or RST).
#[test]
fn a_stale_entry_of_the_other_kind_never_takes_a_reply() {
    root!("reuse_other_kind");
    for mode in [0, DSR] {
        for direct in [false, true] {
            let what = format!("A's mode flags {mode:#x}, B's tunnel direct {direct}");
            let through_tunnel = if direct {
                Answer::FromB
            } else {
                Answer::TunnelToB
            };
            // T_LOCAL is A's own task, and the ring's every slot.
            let mut h = node_a_with(BE_LOCAL, mode);
            for turn in 0..2 {
                let what = format!("{what}, turn {turn}");
                // Through B's tunnel; the connection is never closed.
                let (verdict, _) = run(&mut h, XDP, &through_b(TCP_SYN, direct));
                assert_eq!(verdict, XDP_PASS, "{what}: into T_LOCAL");
                assert_eq!(
                    answer(&mut h, TCP_SYN | TCP_ACK, &what),
                    through_tunnel,
                    "{what}: the SYN-ACK of a connection through B"
                );
                run(&mut h, XDP, &through_b(TCP_ACK, direct));
                assert_eq!(answer(&mut h, TCP_ACK, &what), through_tunnel, "{what}");

                // The same client port, now through A's own published port.
                let (verdict, _) = run(&mut h, XDP, &client_tcp(TCP_SYN).build());
                assert_eq!(verdict, XDP_PASS, "{what}: to the local task");
                assert_eq!(
                    answer(&mut h, TCP_SYN | TCP_ACK, &what),
                    Answer::FromA,
                    "{what}: the SYN-ACK of a connection through A"
                );
                run(&mut h, XDP, &client_tcp(TCP_ACK).build());
                assert_eq!(answer(&mut h, TCP_ACK, &what), Answer::FromA, "{what}");
            }
        }
    }
}
