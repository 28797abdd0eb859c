//! ns/packet of every program path under `BPF_PROG_RUN`, beside the trivial
//! `xdp_floor` program measured in the same run: the real embedded
//! programs, the fixtures' two-node world (`hive_prog_run::world`).
//!
//! Each figure is the median of one-packet runs (`repeat = 1`), as Katran
//! measures: a new flow needs a distinct packet each time, and the median
//! resists a vCPU being descheduled mid-run. The kernel's per-run timer adds
//! a constant to every figure, floor included; compare differences.

use std::net::SocketAddrV4;

use hive_prog_run::{
    packet::{PacketBuilder, TCP_ACK, TCP_SYN, vxlan_frame},
    prog_run::HarnessError,
    world::*,
};

use crate::report::ProgramCost;

const ROUNDS: u32 = 200;

/// Measure every path; the first entry is the floor itself.
pub fn program_costs() -> Result<Vec<ProgramCost>, HarnessError> {
    let mut a = node_a(BE_REMOTE);
    let syn = client_tcp(TCP_SYN).build();
    let floor = a.bench(FLOOR, std::slice::from_ref(&syn), ROUNDS * 10)?;

    let new_flows: Vec<Vec<u8>> = (0..ROUNDS as u16)
        .map(|i| {
            PacketBuilder::tcp(SocketAddrV4::new(*CLIENT.ip(), 1024 + i), published())
                .macs(MAC_ROUTER, MAC_A)
                .flags(TCP_SYN)
                .build()
        })
        .collect();
    let xdp_new = a.bench(XDP, &new_flows, 1)?;
    a.run(XDP, &syn)?;
    let xdp_established = a.bench(XDP, &[client_tcp(TCP_ACK).build()], ROUNDS * 10)?;
    let reply = PacketBuilder::tcp(SocketAddrV4::new(T_REMOTE, TARGET), CLIENT)
        .macs(MAC_TASK, MAC_B)
        .flags(TCP_ACK)
        .build();
    let reply = vxlan_frame(
        MAC_B, MAC_A, NODE_B, NODE_A, 50000, VXLAN_PORT, 0x08, VNI, &reply,
    );
    let xdp_reply = a.bench(XDP, &[reply], ROUNDS * 10)?;
    let not_ours = PacketBuilder::tcp(CLIENT, SocketAddrV4::new(NODE_A, 22)).build();
    let xdp_pass = a.bench(XDP, &[not_ours], ROUNDS * 10)?;

    let vip = SocketAddrV4::new(VIP, TARGET);
    let vip_new: Vec<Vec<u8>> = (0..ROUNDS as u16)
        .map(|i| {
            PacketBuilder::tcp(SocketAddrV4::new(*X.ip(), 1024 + i), vip)
                .flags(TCP_SYN)
                .build()
        })
        .collect();
    let tc_new = a.bench(TC, &vip_new, 1)?;
    let tc_established = a.bench(
        TC,
        &[PacketBuilder::tcp(SocketAddrV4::new(*X.ip(), 1024), vip).build()],
        ROUNDS * 10,
    )?;
    let tc_overlay = a.bench(
        TC,
        &[PacketBuilder::icmp_echo(*X.ip(), T_OTHER).build()],
        ROUNDS * 10,
    )?;

    let mut b = node_b();
    let inner = PacketBuilder::tcp(CLIENT, SocketAddrV4::new(T_REMOTE, TARGET))
        .flags(TCP_ACK)
        .build();
    let tunnelled = vxlan_frame(
        MAC_A, MAC_B, NODE_A, NODE_B, 50000, VXLAN_PORT, 0x08, VNI, &inner,
    );
    let decap = b.bench(XDP, &[tunnelled], ROUNDS * 10)?;

    Ok([
        ("xdp_floor (XDP_PASS)", floor),
        ("xdp: not the mesh's (pass)", xdp_pass),
        ("xdp: published port new flow, remote", xdp_new),
        ("xdp: published port established, remote", xdp_established),
        ("xdp: decap + reverse NAT + XDP_TX", xdp_reply),
        ("xdp: decap to a local task", decap),
        ("tc: VIP new flow, remote", tc_new),
        ("tc: VIP established, remote", tc_established),
        ("tc: overlay encap", tc_overlay),
    ]
    .into_iter()
    .map(|(path, ns)| ProgramCost {
        path: path.to_string(),
        ns_per_packet: ns,
        ratio_to_floor: if floor > 0.0 { ns / floor } else { 0.0 },
    })
    .collect())
}
