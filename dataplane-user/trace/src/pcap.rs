//! pcapng (draft-ietf-opsawg-pcapng) for captured trace bytes: one
//! interface per node (named after it, nanosecond timestamps), one
//! Enhanced Packet Block per event with the event's line as its comment,
//! so Wireshark/tshark show what the mesh did next to each packet
//! (`frame.comment`). The blocks are encoded by the `pcap-file` crate.

use std::borrow::Cow;
use std::io::{self, Write};
use std::time::Duration;

use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::{DataLink, Endianness, PcapError};

/// `if_tsresol`: timestamps in nanoseconds (10^-9), as `pcap-file` writes a
/// `Duration`.
const NANOSECONDS: u8 = 9;

/// An option's length is 16 bits; a longer comment is cut at a character
/// boundary.
fn option_text(text: &str) -> Cow<'_, str> {
    let max = usize::from(u16::MAX) - 3;
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Borrowed(&text[..end])
}

fn io_error(err: PcapError) -> io::Error {
    match err {
        PcapError::IoError(err) => err,
        other => io::Error::other(other),
    }
}

/// Writes a pcapng stream: section header first, interfaces as nodes
/// appear, then packets.
pub struct PcapWriter<W: Write> {
    out: PcapNgWriter<W>,
    interfaces: Vec<String>,
    snaplen: u32,
}

impl<W: Write> std::fmt::Debug for PcapWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapWriter")
            .field("interfaces", &self.interfaces)
            .field("snaplen", &self.snaplen)
            .finish_non_exhaustive()
    }
}

impl<W: Write> PcapWriter<W> {
    /// Start a section; `snaplen` is the most bytes a packet carries.
    pub fn new(out: W, snaplen: u32) -> io::Result<Self> {
        let section = SectionHeaderBlock {
            endianness: Endianness::Little,
            options: vec![SectionHeaderOption::Comment("hive mesh trace".into())],
            ..Default::default()
        };
        let out = PcapNgWriter::with_section_header(out, section).map_err(io_error)?;
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
        let interface = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: self.snaplen,
            options: vec![
                InterfaceDescriptionOption::IfName(option_text(node)),
                InterfaceDescriptionOption::IfTsResol(NANOSECONDS),
            ],
        };
        self.out.write_pcapng_block(interface).map_err(io_error)?;
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
        let interface_id = self.interface(node)?;
        let packet = EnhancedPacketBlock {
            interface_id,
            timestamp: Duration::from_nanos(unix_ns),
            original_len: orig_len.max(data.len() as u32),
            data: Cow::Borrowed(data),
            options: vec![EnhancedPacketOption::Comment(option_text(comment))],
        };
        self.out.write_pcapng_block(packet).map_err(io_error)?;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.get_mut().flush()
    }
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
        const SHB: u32 = 0x0A0D_0D0A;
        const IDB: u32 = 0x0000_0001;
        const EPB: u32 = 0x0000_0006;
        assert_eq!(kinds, vec![SHB, IDB, EPB, IDB, EPB, EPB]);
    }

    #[test]
    fn a_reader_sees_nodes_times_bytes_and_comments() {
        use pcap_file::pcapng::{Block, PcapNgReader};

        let mut buf = Vec::new();
        {
            let mut w = PcapWriter::new(&mut buf, 128).expect("section");
            w.packet("n1", 1_700_000_000_123_456_789, 74, &[0xaa; 5], "to n2")
                .expect("packet");
            w.packet("n2", 7, 3, &[1, 2, 3, 4], "").expect("packet");
        }
        let mut reader = PcapNgReader::new(&buf[..]).expect("a pcapng section");
        let mut seen = Vec::new();
        while let Some(block) = reader.next_block() {
            match block.expect("a well-formed block") {
                Block::InterfaceDescription(idb) => {
                    assert_eq!(idb.snaplen, 128);
                    assert!(
                        idb.options
                            .contains(&InterfaceDescriptionOption::IfTsResol(9))
                    );
                    seen.push(format!("{:?}", idb.options[0]));
                }
                Block::EnhancedPacket(epb) => seen.push(format!(
                    "{} {} {} {:?} {:?}",
                    epb.interface_id,
                    epb.timestamp.as_nanos(),
                    epb.original_len,
                    epb.data,
                    epb.options
                )),
                other => panic!("unexpected block {other:?}"),
            }
        }
        assert_eq!(
            seen,
            [
                r#"IfName("n1")"#,
                r#"0 1700000000123456789 74 [170, 170, 170, 170, 170] [Comment("to n2")]"#,
                r#"IfName("n2")"#,
                r#"1 7 4 [1, 2, 3, 4] [Comment("")]"#,
            ]
        );
    }
}
