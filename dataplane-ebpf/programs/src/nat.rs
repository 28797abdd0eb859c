//! Address and port rewriting with checksum updates.

use hive_common::{
    DropReason,
    maps::{FlowEntry, NodeConfig},
};

use crate::{
    counters,
    headers::EthHdr,
    packet::Packet,
    parse::{Ipv4, L4},
};

/// Destination := `addr_be:port_be` (service → backend).
#[inline(always)]
pub fn dnat<P: Packet>(
    pkt: &mut P,
    ip: &Ipv4,
    l4: &L4,
    addr_be: u32,
    port_be: u16,
) -> Result<(), DropReason> {
    if addr_be != ip.daddr_be {
        pkt.replace_addr(
            ip.daddr_off(),
            ip.daddr_be,
            addr_be,
            ip.csum_off(),
            Some(l4.csum),
        )?;
    }
    if port_be != l4.dport_be {
        pkt.replace_l4_u16(l4.dport_off(), l4.dport_be, port_be, l4.csum)?;
    }
    Ok(())
}

/// Source := `addr_be:port_be` (backend → service, on replies).
#[inline(always)]
pub fn snat<P: Packet>(
    pkt: &mut P,
    ip: &Ipv4,
    l4: &L4,
    addr_be: u32,
    port_be: u16,
) -> Result<(), DropReason> {
    if addr_be != ip.saddr_be {
        pkt.replace_addr(
            ip.saddr_off(),
            ip.saddr_be,
            addr_be,
            ip.csum_off(),
            Some(l4.csum),
        )?;
    }
    if port_be != l4.sport_be {
        pkt.replace_l4_u16(l4.sport_off(), l4.sport_be, port_be, l4.csum)?;
    }
    Ok(())
}

/// A backend's reply to a flow this node balanced (`e` is the flow's
/// `ReverseNat` entry) gets the service address back as its source, and
/// counts for the service and backend. Returns whether the flow is
/// north-south: the reply then goes straight back out ([`to_client`]).
#[inline(always)]
pub fn restore_service<P: Packet>(
    pkt: &mut P,
    ip: &Ipv4,
    l4: &L4,
    e: &FlowEntry,
) -> Result<bool, DropReason> {
    snat(pkt, ip, l4, e.addr_be, e.port_be)?;
    counters::flow(e.service, e.backend, u64::from(ip.tot_len), false);
    Ok(e.flags & FlowEntry::FLAG_NORTH_SOUTH != 0)
}

/// Address a north-south reply from this node to the client's next hop
/// (the MAC the client's packets came from, kept in the flow's entry).
#[inline(always)]
pub fn to_client<P: Packet>(
    pkt: &mut P,
    node: &NodeConfig,
    e: &FlowEntry,
) -> Result<(), DropReason> {
    let eth: EthHdr = pkt.load(0)?;
    pkt.store(
        0,
        &EthHdr {
            dst: e.client_mac,
            src: node.underlay_mac,
            proto_be: eth.proto_be,
        },
    )
}
