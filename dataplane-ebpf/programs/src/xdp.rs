//! `xdp_from_underlay`: everything that reaches the node from the outside
//! world or from another node. VXLAN to the configured port → decap path;
//! a published port → ingress (north-south) balancing; anything else → the
//! kernel.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use hive_common::{
    DropReason,
    maps::{
        Endpoint, FlowEntry, FlowKind, Frontend, IPPROTO_UDP, MAX_CONTROL_PORTS, NodeConfig,
        PacketCounterSlot,
    },
    trace::TraceVerdict,
};

use crate::{
    balance::{self, Decision},
    conntrack::{self, Balanced},
    counters, events, handoff,
    headers::{
        ETH_HDR_LEN, EthHdr, TCP_HDR_LEN, VXLAN_ENCAP_LEN, VXLAN_FLAG_DIRECT_RETURN, VXLAN_FLAG_I,
        VXLAN_FLAG_STEADY, VxlanHdr,
    },
    icmp, lb, maps, mss, nat,
    packet::{Packet, XdpPacket},
    parse::{self, Ipv4, L4},
    vxlan::{self, Tunnel},
};

pub fn try_from_underlay(ctx: &XdpContext) -> Result<u32, DropReason> {
    let pkt = XdpPacket { ctx };
    let len = pkt.len() as u64;
    counters::count(PacketCounterSlot::UnderlayRx, len);
    let Some(node) = maps::node() else {
        return Ok(xdp_action::XDP_PASS);
    };
    let Some(ip) = parse::ipv4(&pkt, 0)? else {
        return Ok(xdp_action::XDP_PASS);
    };
    counters::count(PacketCounterSlot::UnderlayIpv4, len);
    if ip.daddr_be != node.underlay_addr_be {
        return Ok(xdp_action::XDP_PASS);
    }
    // Other protocols (ICMP to the node, ...) and later fragments, which
    // carry no ports, are the kernel's.
    let Some(l4) = parse::l4(&pkt, &ip)? else {
        return Ok(xdp_action::XDP_PASS);
    };
    if ip.proto == IPPROTO_UDP && l4.dport_be == node.vxlan_port_be {
        check_balanceable(&ip)?;
        return from_peer(ctx, node, &ip);
    }
    // The node's own Raft, gossip and metrics traffic is the kernel's, whatever a service
    // map holds: a published port there would cut the node off the swarm (issue 14).
    if is_control_port(node, ip.proto, l4.dport_be) {
        counters::count(PacketCounterSlot::ControlPort, len);
        return Ok(xdp_action::XDP_PASS);
    }
    let Some(fe) = lb::frontend(0, l4.dport_be, ip.proto) else {
        return Ok(xdp_action::XDP_PASS);
    };
    check_balanceable(&ip)?;
    ingress(ctx, node, &ip, &l4, &fe)
}

/// Whether `(proto, dport_be)` is one of the node's control-plane ports.
#[inline(always)]
fn is_control_port(node: &NodeConfig, proto: u8, dport_be: u16) -> bool {
    // A fixed, small bound: the verifier sees an unrolled loop.
    let mut i = 0;
    while i < MAX_CONTROL_PORTS {
        let port = &node.control_ports[i];
        if port.port_be != 0 && port.port_be == dport_be && port.proto == proto {
            return true;
        }
        i += 1;
    }
    false
}

/// Fragments cannot be balanced (later ones have no ports) and IP options
/// are not forwarded; both are dropped once we know the packet is ours.
#[inline(always)]
pub fn check_balanceable(ip: &Ipv4) -> Result<(), DropReason> {
    if ip.is_fragment() {
        return Err(DropReason::Ipv4Fragment);
    }
    if ip.has_options() {
        return Err(DropReason::Ipv4Options);
    }
    Ok(())
}

/// Largest TCP MSS that fits the overlay.
#[inline(always)]
pub fn overlay_mss(node: &NodeConfig) -> u16 {
    node.overlay_mtu
        .saturating_sub((crate::headers::IPV4_HDR_LEN + TCP_HDR_LEN) as u16)
}

/// Path 1/2 of `docs/dataplane.md`: a client's packet to a published port.
/// Not inlined, for the stack frame (see `from_peer`).
#[inline(never)]
fn ingress(
    ctx: &XdpContext,
    node: &NodeConfig,
    ip: &Ipv4,
    l4: &L4,
    fe: &Frontend,
) -> Result<u32, DropReason> {
    let pkt = &mut XdpPacket { ctx };
    let now = conntrack::now();
    let hash = balance::hash(node, ip, l4);
    let fwd = balance::forward_key(ip, l4);
    let decision = balance::decide(fe, &fwd, hash, l4.tcp_flags, now, None)?;
    let direct = balance::direct_return(node, &decision, ip.proto);
    let Decision {
        target,
        new,
        refresh,
        tcp_state,
        steady,
        ..
    } = decision;
    let tunnel = if target.remote {
        let peer_mac = maps::peer_mac(target.node_be).ok_or(DropReason::UnknownPeer)?;
        if ip.tot_len > node.overlay_mtu {
            // Answer before rewriting: the quote must show what the client sent.
            icmp::too_big_xdp(ctx, ip, node.underlay_addr_be, node.overlay_mtu)?;
            counters::drop(DropReason::FragmentationNeeded);
            if events::on() {
                events::note_flow(target.service, target.backend);
                events::drop_xdp(ctx, DropReason::FragmentationNeeded, TraceVerdict::Tx);
            }
            return Ok(xdp_action::XDP_TX);
        }
        let mut tunnel = Tunnel::new(target.node_be, peer_mac, target.vni);
        if direct {
            tunnel.direct_port_be = l4.dport_be;
        }
        // What the backend's node records of the flow (`from_peer`) changes only when this
        // node's own entry does: at a refresh, and with the TCP state.
        tunnel.steady = steady;
        Some(tunnel)
    } else {
        None
    };
    if new && events::on() {
        events::lb_select(ctx, ip, l4, &target);
    }
    if refresh {
        let eth: EthHdr = pkt.load(0)?;
        let b = Balanced {
            service_addr_be: ip.daddr_be,
            service_port_be: l4.dport_be,
            north_south: true,
            client_mac: eth.src,
            tcp_state,
            hairpin: false,
            direct,
            new,
        };
        conntrack::record_balanced(&fwd, &target, &b, now);
        if tunnel.is_none() {
            conntrack::forget_tunnel(&fwd, &target);
        }
    }
    nat::dnat(pkt, ip, l4, target.addr_be, target.port_be)?;
    counters::flow(target.service, target.backend, u64::from(ip.tot_len), new);
    let Some(tunnel) = tunnel else {
        // Local backend: the kernel forwards to the task's veth.
        if events::on() {
            events::to_local_backend(ctx, ip, l4, &target);
        }
        return Ok(xdp_action::XDP_PASS);
    };
    mss::clamp(pkt, ip, l4, overlay_mss(node))?;
    vxlan::encap_xdp(ctx, node, &tunnel, ip.tot_len, hash)?;
    if direct {
        counters::count(PacketCounterSlot::DirectIngress, u64::from(ip.tot_len));
    }
    if events::on() {
        events::to_remote_backend(ctx, ip, l4, &target);
    }
    Ok(xdp_action::XDP_TX)
}

/// VXLAN from another node: replies to flows this node balanced, or
/// packets for this node's tasks. Not inlined: its own stack frame, a
/// sibling of the ingress path's (the verifier limits the combined depth of
/// a call chain to 512 bytes).
#[inline(never)]
fn from_peer(ctx: &XdpContext, node: &NodeConfig, outer: &Ipv4) -> Result<u32, DropReason> {
    if maps::peer_mac(outer.saddr_be).is_none() {
        return Err(DropReason::VxlanFromNonPeer);
    }
    let pkt = XdpPacket { ctx };
    // Outer Ethernet + IPv4 (no options, checked) + UDP, then VXLAN, then at
    // least an inner Ethernet header.
    let vxlan_off = VXLAN_ENCAP_LEN - core::mem::size_of::<VxlanHdr>();
    if outer.end() < VXLAN_ENCAP_LEN + ETH_HDR_LEN {
        return Err(DropReason::MalformedVxlan);
    }
    let vx: VxlanHdr = pkt
        .load(vxlan_off)
        .map_err(|_| DropReason::MalformedVxlan)?;
    if vx.flags & VXLAN_FLAG_I == 0 {
        return Err(DropReason::MalformedVxlan);
    }
    let vni = u32::from_be(vx.vni_be) >> 8;
    let peer_be = outer.saddr_be;
    // Direct return (`docs/dsr.md`): the peer balanced this flow from its
    // published port, carried here; its address is the outer source.
    let direct_port_be = if vx.flags & VXLAN_FLAG_DIRECT_RETURN != 0 {
        u16::from_ne_bytes([vx._reserved1[1], vx._reserved1[2]])
    } else {
        0
    };

    // A steady packet (`docs/dsr.md`, "Steady packets") is a client's, of a flow the peer
    // balanced and whose state this node recorded at the peer's last refresh: nothing to
    // look up or record here but its task.
    let steady = vx.flags & VXLAN_FLAG_STEADY != 0;

    vxlan::decap_xdp(ctx)?;
    let mut pkt = XdpPacket { ctx };
    let inner = parse::ipv4(&pkt, 0)
        .map_err(|_| DropReason::MalformedVxlan)?
        .ok_or(DropReason::MalformedVxlan)?;
    let l4 = parse::l4(&pkt, &inner).map_err(|_| DropReason::MalformedVxlan)?;
    // The ports conntrack works with, and its clock: none for a packet
    // without them (ICMP between tasks), nor for a steady one.
    let tracked = match &l4 {
        Some(l4) if !steady => Some((l4, conntrack::now())),
        _ => None,
    };
    if events::on() {
        let from = events::TunnelFrom { peer_be, vni };
        events::decap(ctx, &inner, l4.as_ref(), &from);
    }
    // A marked packet is a client's, on its way to a task here: never a
    // reply to a flow this node balanced, so it skips that lookup (a
    // conntrack miss, a cold bucket of a 262,144-entry table, on every
    // packet of every direct-return flow).
    if let Some((l4, now)) = tracked
        && direct_port_be == 0
    {
        let rkey = conntrack::reply_key(
            inner.saddr_be,
            l4.sport_be,
            inner.daddr_be,
            l4.dport_be,
            inner.proto,
            FlowKind::ReverseNat,
        );
        if let Some(hit) = conntrack::lookup(&rkey, l4.tcp_flags, now, false) {
            return reverse_nat(&mut pkt, node, &inner, l4, hit.entry);
        }
    }
    let ep = maps::endpoint(inner.daddr_be).ok_or(DropReason::NoEndpoint)?;
    if ep.flags & Endpoint::FLAG_LOCAL == 0 {
        return Err(DropReason::NoEndpoint);
    }
    if ep.vni != vni {
        return Err(DropReason::UnknownVni);
    }
    if let Some((l4, now)) = tracked {
        // A sender that is no task of the overlay is an external client
        // balanced by `peer`: remember to tunnel the replies back there.
        // The peer marks only such clients' flows.
        if direct_port_be != 0 || maps::endpoint(inner.saddr_be).is_none() {
            let key = conntrack::reply_key(
                inner.daddr_be,
                l4.dport_be,
                inner.saddr_be,
                l4.sport_be,
                inner.proto,
                FlowKind::Tunnel,
            );
            conntrack::record_tunnel(&key, peer_be, vni, direct_port_be, l4.tcp_flags, now);
        }
    }
    // Addressed to this node, so that the kernel takes the frame even where
    // the hand-off is not possible.
    pkt.store(0, &node.underlay_mac)?;
    let handed_off = handoff::mark(ctx, ep.ifindex);
    if events::on() {
        let to = events::Delivery { vni, handed_off };
        events::delivered(ctx, &inner, l4.as_ref(), &to);
    }
    Ok(xdp_action::XDP_PASS)
}

/// A backend's reply to a flow this node balanced: restore the service
/// address as the source; north-south replies go straight back out.
#[inline(always)]
fn reverse_nat(
    pkt: &mut XdpPacket<'_>,
    node: &NodeConfig,
    ip: &Ipv4,
    l4: &L4,
    e: &FlowEntry,
) -> Result<u32, DropReason> {
    let north_south = nat::restore_service(pkt, ip, l4, e)?;
    if events::on() {
        events::reverse_nat(pkt.ctx, ip, l4, e);
    }
    if north_south {
        nat::to_client(pkt, node, e)?;
        return Ok(xdp_action::XDP_TX);
    }
    // The reply to one of this node's tasks (it called a VIP).
    pkt.store(0, &node.underlay_mac)?;
    if let Some(ep) = maps::endpoint(ip.daddr_be)
        && ep.flags & Endpoint::FLAG_LOCAL != 0
    {
        handoff::mark(pkt.ctx, ep.ifindex);
    }
    Ok(xdp_action::XDP_PASS)
}
