//! pcapng (draft-ietf-opsawg-pcapng) for captured trace bytes: one
//! interface per node (named after it, nanosecond timestamps), one
//! Enhanced Packet Block per event with the event's line as its comment,
//! so Wireshark/tshark show what the mesh did next to each packet
//! (`frame.comment`). Written by hand: three block types, no dependency.

use std::io::{self, Write};

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const LINKTYPE_ETHERNET: u16 = 1;
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

fn option(body: &mut Vec<u8>, code: u16, value: &[u8]) {
    // Option lengths are 16-bit; a longer value is cut (comments only).
    let len = value.len().min(usize::from(u16::MAX) - 3);
    body.extend_from_slice(&code.to_le_bytes());
    body.extend_from_slice(&(len as u16).to_le_bytes());
    body.extend_from_slice(&value[..len]);
    body.extend(std::iter::repeat_n(0u8, pad4(len)));
}

/// Writes a pcapng stream: section header first, interfaces as nodes
/// appear, then packets.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    interfaces: Vec<String>,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Start a section; `snaplen` is the most bytes a packet carries.
    pub fn new(mut out: W, snaplen: u32) -> io::Result<Self> {
        let mut body = Vec::new();
        body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        // Section length unknown.
        body.extend_from_slice(&(-1i64).to_le_bytes());
        option(&mut body, OPT_COMMENT, b"hive mesh trace");
        body.extend_from_slice(&[0; 4]);
        write_block(&mut out, SHB, &body)?;
        Ok(Self {
            out,
            interfaces: Vec::new(),
            snaplen,
        })
    }

    /// The interface id of `node`, describing it on first use.
    fn interface(&mut self, node: &str) -> io::Result<u32> {
        if let Some(i) = self.interfaces.iter().position(|n| n == node) {
            return Ok(i as u32);
        }
        let mut body = Vec::new();
        body.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&self.snaplen.to_le_bytes());
        option(&mut body, IF_NAME, node.as_bytes());
        // Timestamps in nanoseconds (10^-9).
        option(&mut body, IF_TSRESOL, &[9]);
        option(&mut body, OPT_END, &[]);
        write_block(&mut self.out, IDB, &body)?;
        self.interfaces.push(node.to_owned());
        Ok((self.interfaces.len() - 1) as u32)
    }

    /// One packet seen on `node` at `unix_ns`, `orig_len` bytes long of
    /// which `data` were captured, with a comment.
    pub fn packet(
        &mut self,
        node: &str,
        unix_ns: u64,
        orig_len: u32,
        data: &[u8],
        comment: &str,
    ) -> io::Result<()> {
        let interface = self.interface(node)?;
        let mut body = Vec::with_capacity(32 + data.len() + comment.len());
        body.extend_from_slice(&interface.to_le_bytes());
        body.extend_from_slice(&((unix_ns >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(unix_ns as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(&orig_len.max(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        body.extend(std::iter::repeat_n(0u8, pad4(data.len())));
        option(&mut body, OPT_COMMENT, comment.as_bytes());
        option(&mut body, OPT_END, &[]);
        write_block(&mut self.out, EPB, &body)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn write_block(out: &mut impl Write, kind: u32, body: &[u8]) -> io::Result<()> {
    let total = (12 + body.len()) as u32;
    out.write_all(&kind.to_le_bytes())?;
    out.write_all(&total.to_le_bytes())?;
    out.write_all(body)?;
    out.write_all(&total.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_and_self_describing() {
        let mut buf = Vec::new();
        {
            let mut w = PcapWriter::new(&mut buf, 128).unwrap();
            w.packet("n1", 1_700_000_000_000_000_000, 74, &[0xaa; 5], "odd")
                .unwrap();
            w.packet("n2", 1, 60, &[0xbb; 60], "x").unwrap();
            w.packet("n1", 2, 60, &[], "").unwrap();
        }
        // Walk the blocks: every length is a multiple of 4 and repeated.
        let mut off = 0;
        let mut kinds = Vec::new();
        while off < buf.len() {
            let kind = u32::from_le_bytes(buf[off..off + 4].try_into().unwrap());
            let len = u32::from_le_bytes(buf[off + 4..off + 8].try_into().unwrap()) as usize;
            assert_eq!(len % 4, 0);
            let trailer = u32::from_le_bytes(buf[off + len - 4..off + len].try_into().unwrap());
            assert_eq!(trailer as usize, len);
            kinds.push(kind);
            off += len;
        }
        assert_eq!(kinds, vec![SHB, IDB, EPB, IDB, EPB, EPB]);
    }
}
