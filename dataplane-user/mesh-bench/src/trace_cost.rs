//! What tracing costs a packet, under `BPF_PROG_RUN` (kernel-measured
//! ns/packet, trimmed mean of one-packet runs, best of several rounds): the new-flow and established
//! paths of `xdp_from_underlay` (north-south, remote backend: Maglev,
//! conntrack, DNAT, MSS clamp, VXLAN encap), measured
//!
//! * in a build without trace code (`HIVE_EBPF_NOTRACE=1` at build time;
//!   skipped otherwise),
//! * with tracing off (the default: one inlined array lookup per site),
//! * on with a filter that does not match (the event is built, then
//!   dropped by the filter),
//! * on with every event delivered, as `hive mesh trace` asks for them
//!   (the header only),
//! * the same with 128 bytes of each packet captured, as `hive mesh trace
//!   --pcap` asks for them,
//!
//! beside the trivial `xdp_floor` program of the same run. Targets
//! (issue 6): off ≤ 2 % over no trace code, on ≤ 30 %.

use std::net::{Ipv4Addr, SocketAddrV4};

use hive_common::maps::{Backend, Endpoint, Frontend, NodeConfig, Peer, Ring, ServiceKey};
use hive_common::trace::{TRACE_CAPTURE_MAX, TraceConfig};
use hive_dataplane::{programs::EBPF_OBJECT_NOTRACE, stats::monotonic_ns};
use hive_prog_run::{
    packet::{IPPROTO_TCP, Mac, PacketBuilder, TCP_ACK, TCP_SYN},
    prog_run::{HarnessError, ProgRun},
};
use hive_trace::{TraceMaps, TraceMapsError};
use serde::Serialize;

const NODE_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const NODE_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const MAC_A: Mac = [0x02, 0, 0, 0, 0, 0xa1];
const MAC_B: Mac = [0x02, 0, 0, 0, 0, 0xb2];
const MAC_ROUTER: Mac = [0x02, 0, 0, 0, 0, 0xee];
const T_REMOTE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const XDP: &str = "xdp_from_underlay";

/// One path's figures, ns/packet.
#[derive(Debug, Clone, Serialize)]
pub struct TraceCost {
    pub path: String,
    /// Build without trace code; `None` unless built with `HIVE_EBPF_NOTRACE=1`.
    pub no_trace_code: Option<f64>,
    pub off: f64,
    pub on_filter_misses: f64,
    pub on_every_event: f64,
    /// Every event delivered with 128 bytes of the packet (`--pcap`).
    pub on_every_event_captured: f64,
    /// `xdp_floor` in the same run.
    pub floor: f64,
    /// Events per packet while on (for reading the `on` column).
    pub events_per_packet: u32,
}

impl TraceCost {
    /// Overhead of `x` over the baseline (the build without trace code if
    /// measured, else tracing off), in percent of the path's whole cost,
    /// as the targets are stated.
    pub fn overhead_pct(&self, x: f64) -> f64 {
        let base = self.no_trace_code.unwrap_or(self.off);
        if base <= 0.0 {
            return 0.0;
        }
        (x - base) / base * 100.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TraceCostError {
    #[error(transparent)]
    Harness(#[from] HarnessError),
    #[error(transparent)]
    Trace(#[from] TraceMapsError),
}

fn be(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

fn setup(h: &mut ProgRun) -> Result<(), HarnessError> {
    let mut m = h.maps();
    m.set_node(&NodeConfig {
        underlay_addr_be: be(NODE_A),
        underlay_ifindex: 2,
        hash_seed: 7,
        underlay_mac: MAC_A,
        vxlan_port_be: 4789u16.to_be(),
        overlay_mtu: 1450,
        flags: NodeConfig::FLAG_CONFIGURED,
        control_ports: Default::default(),
    })?;
    m.set_peer(
        be(NODE_B),
        Peer {
            mac: MAC_B,
            _pad: [0; 2],
        },
    )?;
    m.set_service(
        ServiceKey {
            addr_be: 0,
            port_be: 8080u16.to_be(),
            proto: IPPROTO_TCP,
            _pad: 0,
        },
        Frontend {
            service: 1,
            target_port_be: 80u16.to_be(),
            flags: Frontend::FLAG_PUBLISHED,
        },
    )?;
    m.set_ring(1, Ring { offset: 0, size: 7 })?;
    m.set_maglev(0, &[5; 7])?;
    m.set_backend(
        5,
        Backend {
            addr_be: be(T_REMOTE),
            node_be: be(NODE_B),
            vni: 4097,
            flags: 0,
        },
    )?;
    m.set_endpoint(
        be(T_REMOTE),
        Endpoint {
            node_be: be(NODE_B),
            vni: 4097,
            ifindex: 0,
            flags: 0,
        },
    )
}

fn segment(port: u16, flags: u8) -> Vec<u8> {
    PacketBuilder::tcp(
        SocketAddrV4::new(CLIENT, port),
        SocketAddrV4::new(NODE_A, 8080),
    )
    .macs(MAC_ROUTER, MAC_A)
    .flags(flags)
    .mss(1460)
    .build()
}

/// A harness with the fixture, and its trace maps when it has them.
struct Bench {
    h: ProgRun,
    trace: Option<TraceMaps>,
    next_port: u16,
}

impl Bench {
    fn new(object: Option<&[u8]>) -> Result<Self, TraceCostError> {
        let mut h = match object {
            Some(o) => ProgRun::load_object(o)?,
            None => ProgRun::load()?,
        };
        setup(&mut h)?;
        let trace = match object {
            Some(_) => None,
            None => Some(TraceMaps::from_ebpf(h.ebpf_mut())?),
        };
        Ok(Bench {
            h,
            trace,
            next_port: 1024,
        })
    }

    fn configure(&mut self, config: &TraceConfig) -> Result<(), TraceCostError> {
        if let Some(t) = &mut self.trace {
            t.set_config(config)?;
            t.drain(|_| {});
        }
        Ok(())
    }

    /// (new flow, established) ns/packet.
    fn paths(&mut self, rounds: u32) -> Result<(f64, f64), TraceCostError> {
        let new: Vec<Vec<u8>> = (0..rounds)
            .map(|_| {
                self.next_port = self.next_port.wrapping_add(1).max(1024);
                segment(self.next_port, TCP_SYN)
            })
            .collect();
        let new_ns = trimmed_mean(&mut self.h, &new, 1)?;
        self.next_port = self.next_port.wrapping_add(1).max(1024);
        let port = self.next_port;
        self.h.run(XDP, &segment(port, TCP_SYN))?;
        let est_ns = trimmed_mean(&mut self.h, &[segment(port, TCP_ACK)], rounds * 5)?;
        if let Some(t) = &mut self.trace {
            t.drain(|_| {});
        }
        Ok((new_ns, est_ns))
    }
}

/// Mean of the middle 80 % of one-packet runs: the kernel reports each run
/// in whole nanoseconds with a granularity near 10 ns here, so a median
/// cannot resolve the few ns the targets are about; a trimmed mean of
/// thousands of runs can, and still ignores descheduled outliers.
fn trimmed_mean(h: &mut ProgRun, packets: &[Vec<u8>], rounds: u32) -> Result<f64, HarnessError> {
    let mut samples = Vec::new();
    for _ in 0..rounds.max(1) {
        for p in packets {
            samples.push(h.run_repeat(XDP, p, 1)?.duration.as_nanos() as f64);
        }
    }
    samples.sort_by(f64::total_cmp);
    let cut = samples.len() / 10;
    let middle = &samples[cut..samples.len() - cut];
    Ok(middle.iter().sum::<f64>() / middle.len().max(1) as f64)
}

fn lease() -> u64 {
    monotonic_ns() + 600_000_000_000
}

/// Measure every configuration `repeats` times in short blocks, interleaved
/// and in a rotating order (so that a noisy moment of this shared machine,
/// which lasts seconds, hits every configuration alike and none always
/// runs first), and keep each one's best block.
pub fn measure(rounds: u32, repeats: u32) -> Result<Vec<TraceCost>, TraceCostError> {
    let mut traced = Bench::new(None)?;
    let mut plain = if EBPF_OBJECT_NOTRACE.is_empty() {
        None
    } else {
        Some(Bench::new(Some(EBPF_OBJECT_NOTRACE))?)
    };
    let off = TraceConfig::default();
    let misses = TraceConfig {
        flags: TraceConfig::FLAG_ENABLED | TraceConfig::FLAG_CLIENT,
        client_addr_be: be(Ipv4Addr::new(203, 0, 113, 1)),
        expires_ns: lease(),
        ..TraceConfig::default()
    };
    let every = TraceConfig {
        flags: TraceConfig::FLAG_ENABLED,
        expires_ns: lease(),
        ..TraceConfig::default()
    };
    let captured = TraceConfig {
        snaplen: TRACE_CAPTURE_MAX as u16,
        ..every
    };
    let mut best = [(f64::MAX, f64::MAX); 5];
    let mut floor = f64::MAX;
    let keep = |slot: &mut (f64, f64), (n, e): (f64, f64)| {
        slot.0 = slot.0.min(n);
        slot.1 = slot.1.min(e);
    };
    let configs = [
        None,
        Some(&off),
        Some(&misses),
        Some(&every),
        Some(&captured),
    ];
    for repeat in 0..repeats.max(1) {
        for k in 0..configs.len() {
            let i = (k + repeat as usize) % configs.len();
            let r = match (configs[i], &mut plain) {
                (None, Some(p)) => p.paths(rounds)?,
                (None, None) => continue,
                (Some(cfg), _) => {
                    traced.configure(cfg)?;
                    traced.paths(rounds)?
                }
            };
            keep(&mut best[i], r);
        }
        traced.configure(&off)?;
        let syn = segment(1, TCP_SYN);
        floor = floor.min(traced.h.bench("xdp_floor", &[syn], rounds * 5)?);
    }
    let plain_measured = plain.is_some();
    let cost = |path: &str, pick: fn(&(f64, f64)) -> f64, events| TraceCost {
        path: path.into(),
        no_trace_code: plain_measured.then(|| pick(&best[0])),
        off: pick(&best[1]),
        on_filter_misses: pick(&best[2]),
        on_every_event: pick(&best[3]),
        on_every_event_captured: pick(&best[4]),
        floor,
        events_per_packet: events,
    };
    Ok(vec![
        cost("xdp north-south new flow, remote backend", |b| b.0, 2),
        cost("xdp north-south established, remote backend", |b| b.1, 1),
    ])
}

/// The table `hive mesh bench` and `cargo bench --bench trace` print.
pub fn table(costs: &[TraceCost]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<46} {:>10} {:>14} {:>16} {:>16} {:>16} {:>7}",
        "TRACING COST (BPF_PROG_RUN ns/pkt)",
        "no trace",
        "off",
        "on, filter miss",
        "on, every event",
        "+ 128 B capture",
        "floor"
    );
    for c in costs {
        let pct = |x: f64| format!("{x:.0} ({:+.1}%)", c.overhead_pct(x));
        let _ = writeln!(
            out,
            "{:<46} {:>10} {:>14} {:>16} {:>16} {:>16} {:>7.0}",
            c.path,
            c.no_trace_code.map_or("-".into(), |n| format!("{n:.0}")),
            if c.no_trace_code.is_some() {
                pct(c.off)
            } else {
                format!("{:.0}", c.off)
            },
            pct(c.on_filter_misses),
            pct(c.on_every_event),
            pct(c.on_every_event_captured),
            c.floor
        );
    }
    if costs.iter().all(|c| c.no_trace_code.is_none()) {
        out.push_str(
            "(no-trace build not embedded: rebuild with HIVE_EBPF_NOTRACE=1 to measure the 'off' overhead; percentages are over 'off')\n",
        );
    }
    out
}
