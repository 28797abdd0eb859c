//! MSS clamping of SYN and SYN-ACK segments that will be tunnelled, so that
//! neither end ever sends a segment that no longer fits once VXLAN's 50
//! bytes are added.

use hive_common::{DropReason, maps::IPPROTO_TCP};

use crate::{
    headers::{TCP_HDR_LEN, TCP_SYN},
    packet::Packet,
    parse::{Ipv4, L4},
};

const TCPOPT_EOL: u8 = 0;
const TCPOPT_NOP: u8 = 1;
const TCPOPT_MSS: u8 = 2;
/// Options looked at before giving up. Every common stack puts MSS first
/// in its SYN (Linux `tcp_options_write`, Windows, macOS), possibly behind
/// NOPs; walking all 40 possible one-byte options multiplies the verifier's
/// work for nothing. A SYN whose MSS comes later keeps its MSS.
const MAX_OPTIONS: usize = 8;

/// If `l4` is a SYN (or SYN-ACK) with an MSS option above `max_mss`,
/// lower it, patching the TCP checksum.
#[inline(always)]
pub fn clamp<P: Packet>(pkt: &mut P, ip: &Ipv4, l4: &L4, max_mss: u16) -> Result<(), DropReason> {
    if ip.proto != IPPROTO_TCP || l4.tcp_flags & TCP_SYN == 0 {
        return Ok(());
    }
    let end = l4.off + l4.hdr_len;
    let mut off = l4.off + TCP_HDR_LEN;
    let mut mss_off = 0usize;
    // Find the option first, rewrite after the loop: keeps the loop body
    // to loads only, which is what keeps the verifier's work small.
    for _ in 0..MAX_OPTIONS {
        if off >= end {
            break;
        }
        let kind = pkt.load_byte(off)?;
        if kind == TCPOPT_EOL {
            break;
        }
        if kind == TCPOPT_NOP {
            off += 1;
            continue;
        }
        if off + 2 > end {
            break;
        }
        let len = pkt.load_byte(off + 1)?;
        if kind == TCPOPT_MSS && len == 4 {
            if off + 4 <= end {
                mss_off = off + 2;
            }
            break;
        }
        if len < 2 {
            // A malformed option list; leave it to the endpoint to reject.
            break;
        }
        off += usize::from(len);
    }
    if mss_off == 0 {
        return Ok(());
    }
    let mss_be: u16 = pkt.load(mss_off)?;
    if u16::from_be(mss_be) > max_mss {
        pkt.replace_l4_u16(mss_off, mss_be, max_mss.to_be(), l4.csum)?;
    }
    Ok(())
}
