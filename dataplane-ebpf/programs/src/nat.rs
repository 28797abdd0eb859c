//! Address and port rewriting with checksum updates.

use hive_common::DropReason;

use crate::{
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
