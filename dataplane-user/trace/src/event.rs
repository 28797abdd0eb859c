//! A trace record decoded: what user space prints, writes as JSON and
//! puts into pcap files.

use std::{fmt::Write as _, net::Ipv4Addr};

use hive_common::{
    DropReason,
    trace::{TRACE_CAPTURE_MAX, TRACE_VERSION, TraceEvent, TraceKind, TraceProgram, TraceVerdict},
};
use serde::Serialize;

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("trace record of {len} bytes is shorter than the {min}-byte header")]
    Short { len: usize, min: usize },
    #[error(
        "trace record version {found}, this hive reads version {TRACE_VERSION}; use the hive that loaded the data plane"
    )]
    Version { found: u8 },
}

/// One event, as the programs reported it, plus where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Node (lab member or node ID) whose programs emitted it.
    pub node: String,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, one clock for all lab nodes.
    pub timestamp_ns: u64,
    pub kind: String,
    pub program: String,
    pub verdict: String,
    /// Drop reason name for drops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_reason: Option<String>,
    pub ifindex: u32,
    pub cpu: u32,
    /// `tcp`, `udp`, `icmp`, the number, or empty when unparsed.
    pub proto: String,
    pub src: String,
    pub dst: String,
    /// TCP flags of the captured packet (`SYN`, `SYN|ACK`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<String>,
    /// Dense service id on the node; 0 = not known at this point.
    pub service_id: u32,
    /// The service's Swarm ID, when the node's records know it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub backend_id: u32,
    /// The backend's task ID, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The translated address: backend for lb-select, service for reverse-nat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xlate: Option<String>,
    /// The node tunnelled to (encap) or from (decap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel_peer: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    pub orig_len: u32,
    pub cap_len: u16,
    /// The captured bytes (not in JSON: they go to pcap).
    #[serde(skip)]
    pub data: Vec<u8>,
    /// Raw header, for callers that need a field as the kernel wrote it.
    #[serde(skip)]
    pub raw: TraceEvent,
}

fn addr(be: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be(be))
}

fn proto_name(proto: u8) -> String {
    match proto {
        0 => String::new(),
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        n => n.to_string(),
    }
}

fn endpoint(addr_be: u32, port_be: u16, proto: u8) -> String {
    if addr_be == 0 {
        return "?".into();
    }
    if proto == 6 || proto == 17 {
        format!("{}:{}", addr(addr_be), u16::from_be(port_be))
    } else {
        addr(addr_be).to_string()
    }
}

/// Bytes of the header every version-1 record has: the fields up to `vni`.
/// Fields appended since (`tcp_flags`) count only when `hdr_len` covers them.
const BASE_HDR_LEN: usize = std::mem::offset_of!(TraceEvent, tcp_flags);

/// Names of the TCP flags set in `flags`, `|`-separated.
fn flag_names(flags: u8) -> String {
    let names = [
        (0x02, "SYN"),
        (0x10, "ACK"),
        (0x08, "PSH"),
        (0x01, "FIN"),
        (0x04, "RST"),
    ];
    let set: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    set.join("|")
}

/// The flags the header carries, for a TCP flow whose header the program
/// parsed (0: not parsed, e.g. a drop before parsing; the captured bytes,
/// if any, may still tell).
fn header_tcp_flags(proto: u8, flags: u8) -> Option<String> {
    (proto == 6 && flags != 0).then(|| flag_names(flags))
}

/// The TCP flags of the (innermost) TCP header in `data`, if it has one.
pub fn tcp_flags(data: &[u8]) -> Option<String> {
    let mut off = 0usize;
    // At most one VXLAN layer (outer Eth+IPv4+UDP+VXLAN = 50 bytes).
    for _ in 0..2 {
        let ethertype = u16::from_be_bytes([*data.get(off + 12)?, *data.get(off + 13)?]);
        if ethertype != 0x0800 {
            return None;
        }
        let ip = off + 14;
        let ihl = usize::from(data.get(ip)? & 0x0f) * 4;
        let proto = *data.get(ip + 9)?;
        let l4 = ip + ihl;
        if proto == 17 {
            let dport = u16::from_be_bytes([*data.get(l4 + 2)?, *data.get(l4 + 3)?]);
            if dport == 4789 && off == 0 {
                off = l4 + 16;
                continue;
            }
            return None;
        }
        if proto != 6 {
            return None;
        }
        return Some(flag_names(*data.get(l4 + 13)?));
    }
    None
}

impl Event {
    /// Decode a ring-buffer record from `node`.
    pub fn decode(node: &str, bytes: &[u8]) -> Result<Event, DecodeError> {
        if bytes.len() < BASE_HDR_LEN {
            return Err(DecodeError::Short {
                len: bytes.len(),
                min: BASE_HDR_LEN,
            });
        }
        // The header as long as the record says it is (`hdr_len`, at byte 6):
        // fields appended after the programs were built read as zero, so a
        // newer reader understands programs still pinned from before.
        let hdr_len = usize::from(u16::from_ne_bytes([bytes[6], bytes[7]]));
        let known = hdr_len
            .clamp(BASE_HDR_LEN, size_of::<TraceEvent>())
            .min(bytes.len());
        let mut head = [0u8; size_of::<TraceEvent>()];
        head[..known].copy_from_slice(&bytes[..known]);
        // SAFETY: `head` holds size_of::<TraceEvent>() bytes and TraceEvent
        // is plain data valid for any bit pattern; unaligned, because a byte
        // array promises no alignment.
        let raw: TraceEvent = unsafe { std::ptr::read_unaligned(head.as_ptr().cast()) };
        if raw.version != TRACE_VERSION {
            return Err(DecodeError::Version { found: raw.version });
        }
        let start = hdr_len.max(BASE_HDR_LEN);
        let cap = usize::from(raw.cap_len).min(TRACE_CAPTURE_MAX);
        let data = bytes
            .get(start..start.saturating_add(cap))
            .unwrap_or_default()
            .to_vec();
        let kind = TraceKind::from_u8(raw.kind)
            .map_or_else(|| format!("kind-{}", raw.kind), |k| k.name().into());
        let program = TraceProgram::from_u8(raw.program)
            .map_or_else(|| format!("program-{}", raw.program), |p| p.name().into());
        let verdict = TraceVerdict::from_u8(raw.verdict)
            .map_or_else(|| format!("verdict-{}", raw.verdict), |v| v.name().into());
        let drop_reason = (raw.kind == TraceKind::Drop as u8).then(|| {
            DropReason::from_u8(raw.drop_reason).map_or_else(
                || format!("reason-{}", raw.drop_reason),
                |r| r.name().into(),
            )
        });
        let xlate = (raw.xlate_addr_be != 0)
            .then(|| endpoint(raw.xlate_addr_be, raw.xlate_port_be, raw.proto));
        Ok(Event {
            node: node.to_owned(),
            timestamp_ns: raw.timestamp_ns,
            kind,
            program,
            verdict,
            drop_reason,
            ifindex: raw.ifindex,
            cpu: raw.cpu,
            proto: proto_name(raw.proto),
            src: endpoint(raw.saddr_be, raw.sport_be, raw.proto),
            dst: endpoint(raw.daddr_be, raw.dport_be, raw.proto),
            tcp_flags: header_tcp_flags(raw.proto, raw.tcp_flags).or_else(|| tcp_flags(&data)),
            service_id: raw.service,
            service: None,
            backend_id: raw.backend,
            backend: None,
            xlate,
            tunnel_peer: (raw.tunnel_be != 0).then(|| addr(raw.tunnel_be)),
            vni: (raw.vni != 0).then_some(raw.vni),
            orig_len: raw.orig_len,
            cap_len: data.len() as u16,
            data,
            raw,
        })
    }

    /// One readable line, `cilium monitor`/`hubble observe` style:
    /// time, node, program, event and verdict, flow, service → backend,
    /// tunnel, reason.
    pub fn line(&self, wall: &str) -> String {
        let mut out = format!(
            "{wall} {:<6} {:<17} {:<14} {:<8} {} -> {}",
            self.node, self.program, self.kind, self.verdict, self.src, self.dst
        );
        if !self.proto.is_empty() {
            let _ = write!(out, " {}", self.proto);
        }
        if let Some(flags) = &self.tcp_flags {
            let _ = write!(out, " [{flags}]");
        }
        if self.service_id != 0 {
            let service = self
                .service
                .clone()
                .unwrap_or_else(|| format!("#{}", self.service_id));
            let backend = self
                .backend
                .clone()
                .unwrap_or_else(|| format!("#{}", self.backend_id));
            let _ = write!(out, " service {service} -> {backend}");
            if let Some(x) = &self.xlate {
                let _ = write!(out, " ({x})");
            }
        } else if let Some(x) = &self.xlate {
            let _ = write!(out, " xlate {x}");
        }
        if let Some(peer) = self.tunnel_peer {
            let dir = if self.kind == TraceKind::Decap.name() {
                "from"
            } else {
                "to"
            };
            let _ = write!(out, " vxlan {dir} {peer}");
            if let Some(vni) = self.vni {
                let _ = write!(out, " vni {vni}");
            }
        }
        if let Some(reason) = &self.drop_reason {
            let _ = write!(out, " reason {reason}");
            if let Some(r) = DropReason::from_u8(self.raw.drop_reason) {
                let _ = write!(out, " ({})", r.description());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_common::trace::TraceRecord;

    fn record(e: TraceEvent, data: &[u8]) -> Vec<u8> {
        // SAFETY: TraceEvent is plain data; reading its bytes is fine.
        let head: [u8; size_of::<TraceEvent>()] = unsafe { std::mem::transmute(e) };
        let mut v = head.to_vec();
        v.extend_from_slice(data);
        v.resize(size_of::<TraceRecord>(), 0);
        v
    }

    #[test]
    fn decodes_and_formats_a_drop() {
        let e = TraceEvent {
            version: TRACE_VERSION,
            kind: TraceKind::Drop as u8,
            program: TraceProgram::XdpFromUnderlay as u8,
            verdict: TraceVerdict::Drop as u8,
            drop_reason: DropReason::NoBackend as u8,
            proto: 6,
            hdr_len: size_of::<TraceEvent>() as u16,
            saddr_be: u32::from(Ipv4Addr::new(192, 168, 77, 100)).to_be(),
            daddr_be: u32::from(Ipv4Addr::new(192, 168, 77, 1)).to_be(),
            sport_be: 40000u16.to_be(),
            dport_be: 9090u16.to_be(),
            cap_len: 4,
            ..TraceEvent::default()
        };
        let ev = Event::decode("n1", &record(e, &[1, 2, 3, 4])).unwrap();
        assert_eq!(ev.data, vec![1, 2, 3, 4]);
        assert_eq!(ev.drop_reason.as_deref(), Some("no-backend"));
        let line = ev.line("12:00:00.000000");
        assert!(
            line.contains("192.168.77.100:40000 -> 192.168.77.1:9090 tcp"),
            "{line}"
        );
        assert!(line.contains("reason no-backend"), "{line}");
    }

    #[test]
    fn refuses_other_versions_and_short_records() {
        let e = TraceEvent {
            version: TRACE_VERSION + 1,
            ..TraceEvent::default()
        };
        assert_eq!(
            Event::decode("n1", &record(e, &[])),
            Err(DecodeError::Version {
                found: TRACE_VERSION + 1
            })
        );
        assert!(matches!(
            Event::decode("n1", &[0; 10]),
            Err(DecodeError::Short { .. })
        ));
    }

    /// A TCP Encap event whose header says it is `hdr_len` bytes long.
    fn tcp_encap(hdr_len: usize) -> TraceEvent {
        TraceEvent {
            version: TRACE_VERSION,
            kind: TraceKind::Encap as u8,
            proto: 6,
            hdr_len: hdr_len as u16,
            ..TraceEvent::default()
        }
    }

    #[test]
    fn takes_tcp_flags_from_the_header_without_a_capture() {
        let e = TraceEvent {
            tcp_flags: 0x12,
            ..tcp_encap(size_of::<TraceEvent>())
        };
        let ev = Event::decode("n1", &record(e, &[])).unwrap();
        assert!(ev.data.is_empty());
        assert_eq!(ev.tcp_flags.as_deref(), Some("SYN|ACK"));
        let udp = TraceEvent { proto: 17, ..e };
        assert_eq!(
            Event::decode("n1", &record(udp, &[])).unwrap().tcp_flags,
            None
        );
    }

    #[test]
    fn reads_a_record_of_programs_built_before_the_header_grew() {
        // A 64-byte header (no `tcp_flags`) and its bytes right after it.
        let e = TraceEvent {
            cap_len: 4,
            ..tcp_encap(BASE_HDR_LEN)
        };
        // SAFETY: TraceEvent is plain data; reading its bytes is fine.
        let head: [u8; size_of::<TraceEvent>()] = unsafe { std::mem::transmute(e) };
        let mut bytes = head[..BASE_HDR_LEN].to_vec();
        bytes.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        bytes.resize(BASE_HDR_LEN + TRACE_CAPTURE_MAX, 0xee);
        let ev = Event::decode("n1", &bytes).unwrap();
        assert_eq!(ev.data, vec![0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(ev.raw.tcp_flags, 0);
        assert_eq!(ev.tcp_flags, None);
    }

    #[test]
    fn a_record_shorter_than_its_stated_header_decodes_without_the_missing_fields() {
        let e = TraceEvent {
            tcp_flags: 0x12,
            ..tcp_encap(size_of::<TraceEvent>())
        };
        let whole = record(e, &[]);
        let ev = Event::decode("n1", &whole[..BASE_HDR_LEN]).unwrap();
        assert_eq!(ev.raw.tcp_flags, 0);
        assert!(ev.data.is_empty());
    }

    #[test]
    fn finds_tcp_flags_inside_vxlan() {
        let mut inner = vec![0u8; 14 + 20 + 20];
        inner[12] = 0x08;
        inner[14] = 0x45;
        inner[14 + 9] = 6;
        inner[14 + 20 + 13] = 0x12;
        let mut outer = vec![0u8; 50];
        outer[12] = 0x08;
        outer[14] = 0x45;
        outer[14 + 9] = 17;
        outer[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&4789u16.to_be_bytes());
        outer.extend_from_slice(&inner);
        assert_eq!(tcp_flags(&outer).as_deref(), Some("SYN|ACK"));
        assert_eq!(tcp_flags(&inner).as_deref(), Some("SYN|ACK"));
    }
}
