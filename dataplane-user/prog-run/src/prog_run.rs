//! `BPF_PROG_RUN` harness: the real embedded object, the real kernel, a
//! crafted packet in, the verdict and the packet out.
//!
//! ```ignore
//! let mut h = ProgRun::load()?;
//! h.maps().set_node(&node)?;
//! let out = h.run("xdp_from_underlay", &frame)?;
//! assert_eq!(out.verdict, XDP_TX);
//! ```
//!
//! Runs with `repeat > 1` give the kernel-measured average per run
//! (`duration`). The kernel reruns the program on the same buffer, so a
//! program that rewrites or resizes the packet sees its own output from the
//! second run on (Katran's tester calls `BPF_PROG_RUN` with `repeat = 1` for
//! that reason, `katran/lib/testing/framework/BpfTester.cpp`);
//! [`ProgRun::bench`] does the same and reports the median.

use std::time::Duration;

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray},
    programs::{Program, ProgramError, TestRun, TestRunOptions},
};
use hive_common::{
    DropReason,
    maps::{
        BACKEND_STATS, BACKENDS, Backend, CONNTRACK, DROP_COUNTERS, ENDPOINTS, Endpoint, FlowEntry,
        FlowKey, Frontend, LAB_FORWARD, LabForward, MAGLEV, NODE_CONFIG, NodeConfig,
        PACKET_COUNTERS, PEERS, PacketCounter, PacketCounterSlot, Peer, RINGS, Ring, SERVICE_STATS,
        SERVICES, ServiceCounters, ServiceKey,
    },
};

/// XDP verdicts (`enum xdp_action`, include/uapi/linux/bpf.h).
pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;
/// tc verdicts (include/uapi/linux/pkt_cls.h).
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

/// Room for the output frame: the largest input plus any encapsulation.
const OUT_ROOM: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Load(#[from] hive_dataplane::programs::LoadError),
    #[error("the object has no program named {name:?}")]
    NoProgram { name: String },
    #[error("program {name:?} is neither XDP nor a tc classifier; the harness cannot run it")]
    UnsupportedProgram { name: String },
    #[error("the verifier rejected {name:?}: {error}\n--- verifier log ---\n{log}")]
    Verifier {
        name: String,
        error: String,
        log: String,
    },
    #[error("loading {name:?}: {source}")]
    ProgramLoad {
        name: String,
        #[source]
        source: ProgramError,
    },
    #[error("BPF_PROG_RUN of {name:?} failed: {source}")]
    Run {
        name: String,
        #[source]
        source: ProgramError,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("map {name} is missing from the object")]
    NoMap { name: &'static str },
}

/// What one (or the average of `repeat`) run(s) produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The program's return value (an XDP action or a tc verdict).
    pub verdict: u32,
    /// The packet as the program left it.
    pub output: Vec<u8>,
    /// The XDP metadata the program left in front of the packet
    /// (`bpf_xdp_adjust_meta`); empty for tc and when there is none.
    pub meta: Vec<u8>,
    /// Kernel-measured average duration of one run.
    pub duration: Duration,
}

/// `struct xdp_md` as `BPF_PROG_RUN` takes and returns it: offsets into the
/// data buffer, which starts at the metadata (`net/bpf/test_run.c`).
struct XdpMd {
    data_end: u32,
}

impl XdpMd {
    /// data, data_end, data_meta, ingress_ifindex, rx_queue_index,
    /// egress_ifindex: six `u32`.
    const SIZE: usize = 24;

    /// A frame of `len` bytes with no metadata in front of it.
    fn frame(len: usize) -> Self {
        XdpMd {
            data_end: u32::try_from(len).unwrap_or(u32::MAX),
        }
    }

    fn bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[4..8].copy_from_slice(&self.data_end.to_ne_bytes());
        b
    }

    /// Where the frame starts in the output buffer: the metadata's length.
    fn data_offset(out: &[u8; Self::SIZE]) -> usize {
        u32::from_ne_bytes([out[0], out[1], out[2], out[3]]) as usize
    }
}

/// The loaded object plus the programs loaded into the kernel so far.
#[derive(Debug)]
pub struct ProgRun {
    ebpf: Ebpf,
}

impl ProgRun {
    /// Load the embedded object (creates fresh, empty maps).
    pub fn load() -> Result<Self, HarnessError> {
        Ok(ProgRun {
            ebpf: hive_dataplane::programs::load()?,
        })
    }

    /// Load another build of the programs, e.g.
    /// [`hive_dataplane::programs::EBPF_OBJECT_NOTRACE`] (the benchmark's baseline).
    pub fn load_object(object: &[u8]) -> Result<Self, HarnessError> {
        if object.is_empty() {
            return Err(hive_dataplane::programs::LoadError::NotEmbedded.into());
        }
        let ebpf = aya::EbpfLoader::new()
            .load(object)
            .map_err(hive_dataplane::programs::LoadError::from)?;
        Ok(ProgRun { ebpf })
    }

    /// Typed access to the maps, for setting up a fixture and checking it.
    pub fn maps(&mut self) -> Maps<'_> {
        Maps {
            ebpf: &mut self.ebpf,
        }
    }

    /// The underlying object, for what [`Maps`] does not cover.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Run program `name` once on `packet`.
    pub fn run(&mut self, name: &str, packet: &[u8]) -> Result<RunOutput, HarnessError> {
        self.run_repeat(name, packet, 1)
    }

    /// Run program `name` `repeat` times on `packet`; `duration` is the
    /// kernel's average per run. Later runs see what earlier ones left in
    /// the buffer (see the module documentation).
    pub fn run_repeat(
        &mut self,
        name: &str,
        packet: &[u8],
        repeat: u32,
    ) -> Result<RunOutput, HarnessError> {
        let mut out = vec![0u8; packet.len() + OUT_ROOM];
        // XDP: a context in (the frame, no metadata) and out, whose `data`
        // then says how much metadata precedes the frame in `out`.
        let xdp_in = XdpMd::frame(packet.len());
        let mut xdp_out = [0u8; XdpMd::SIZE];
        let program = self.loaded(name)?;
        let result = match program {
            Program::Xdp(p) => p.test_run(TestRunOptions {
                data_in: Some(packet),
                data_out: Some(&mut out),
                ctx_in: Some(&xdp_in.bytes()),
                ctx_out: Some(&mut xdp_out),
                repeat,
                ..TestRunOptions::default()
            }),
            Program::SchedClassifier(p) => p.test_run(TestRunOptions {
                data_in: Some(packet),
                data_out: Some(&mut out),
                repeat,
                ..TestRunOptions::default()
            }),
            _ => {
                return Err(HarnessError::UnsupportedProgram {
                    name: name.to_owned(),
                });
            }
        }
        .map_err(|source| HarnessError::Run {
            name: name.to_owned(),
            source,
        })?;
        out.truncate(result.data_size_out as usize);
        let meta_len = XdpMd::data_offset(&xdp_out).min(out.len());
        let output = out.split_off(meta_len);
        Ok(RunOutput {
            verdict: result.return_value,
            output,
            meta: out,
            duration: result.duration,
        })
    }

    /// ns/packet of `name`: one `BPF_PROG_RUN` with `repeat = 1` per
    /// packet of `packets`, cycled `rounds` times; the median of the
    /// kernel-measured durations (robust against a vCPU being descheduled
    /// during one run). Give distinct packets (e.g. source ports) to measure
    /// new flows, one packet to measure an established one.
    pub fn bench(
        &mut self,
        name: &str,
        packets: &[Vec<u8>],
        rounds: u32,
    ) -> Result<f64, HarnessError> {
        let mut samples = Vec::with_capacity(packets.len() * rounds as usize);
        for _ in 0..rounds.max(1) {
            for packet in packets {
                let out = self.run_repeat(name, packet, 1)?;
                samples.push(out.duration.as_nanos() as f64);
            }
        }
        if samples.is_empty() {
            return Ok(0.0);
        }
        samples.sort_by(f64::total_cmp);
        Ok(samples[samples.len() / 2])
    }

    /// The program, loaded into the kernel on first use.
    fn loaded(&mut self, name: &str) -> Result<&mut Program, HarnessError> {
        let program = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| HarnessError::NoProgram {
                name: name.to_owned(),
            })?;
        let result = match program {
            Program::Xdp(p) if p.fd().is_err() => p.load(),
            Program::SchedClassifier(p) if p.fd().is_err() => p.load(),
            _ => Ok(()),
        };
        match result {
            Ok(()) => {}
            Err(ProgramError::LoadError {
                io_error,
                verifier_log,
            }) => {
                return Err(HarnessError::Verifier {
                    name: name.to_owned(),
                    error: io_error.to_string(),
                    log: verifier_log.to_string(),
                });
            }
            Err(source) => {
                return Err(HarnessError::ProgramLoad {
                    name: name.to_owned(),
                    source,
                });
            }
        }
        Ok(program)
    }
}

/// Small typed helpers over the object's maps for fixtures. TODO(#3): use
/// the typed wrappers of `hive_dataplane::maps` once they exist.
#[derive(Debug)]
pub struct Maps<'a> {
    ebpf: &'a mut Ebpf,
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> HarnessError {
    move |source| HarnessError::Map { name, source }
}

impl Maps<'_> {
    fn data(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, HarnessError> {
        self.ebpf.map_mut(name).ok_or(HarnessError::NoMap { name })
    }

    fn array<V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<Array<&mut MapData, V>, HarnessError> {
        Array::try_from(self.data(name)?).map_err(map_err(name))
    }

    fn hash<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<HashMap<&mut MapData, K, V>, HarnessError> {
        HashMap::try_from(self.data(name)?).map_err(map_err(name))
    }

    fn per_cpu_sum<V: aya::Pod, R>(
        &mut self,
        name: &'static str,
        index: u32,
        init: R,
        add: impl Fn(R, &V) -> R,
    ) -> Result<R, HarnessError> {
        let map: PerCpuArray<&mut MapData, V> =
            PerCpuArray::try_from(self.data(name)?).map_err(map_err(name))?;
        let values = map.get(&index, 0).map_err(map_err(name))?;
        Ok(values.iter().fold(init, add))
    }

    pub fn set_node(&mut self, node: &NodeConfig) -> Result<(), HarnessError> {
        self.array::<NodeConfig>(NODE_CONFIG)?
            .set(0, node, 0)
            .map_err(map_err(NODE_CONFIG))
    }

    /// The benchmark's floor forwarder's configuration (`xdp_lab_forward`,
    /// `tc_lab_forward`, `xdp_lab_vxlan`, `xdp_lab_decap`).
    pub fn set_lab_forward(&mut self, to: &LabForward) -> Result<(), HarnessError> {
        self.array::<LabForward>(LAB_FORWARD)?
            .set(0, to, 0)
            .map_err(map_err(LAB_FORWARD))
    }

    pub fn set_service(&mut self, key: ServiceKey, frontend: Frontend) -> Result<(), HarnessError> {
        self.hash::<ServiceKey, Frontend>(SERVICES)?
            .insert(key, frontend, 0)
            .map_err(map_err(SERVICES))
    }

    pub fn set_ring(&mut self, service: u32, ring: Ring) -> Result<(), HarnessError> {
        self.array::<Ring>(RINGS)?
            .set(service, ring, 0)
            .map_err(map_err(RINGS))
    }

    /// Write `table` into `HIVE_MAGLEV` from slot `offset` on.
    pub fn set_maglev(&mut self, offset: u32, table: &[u32]) -> Result<(), HarnessError> {
        let mut map = self.array::<u32>(MAGLEV)?;
        for (i, backend) in table.iter().enumerate() {
            map.set(offset + i as u32, backend, 0)
                .map_err(map_err(MAGLEV))?;
        }
        Ok(())
    }

    pub fn set_backend(&mut self, id: u32, backend: Backend) -> Result<(), HarnessError> {
        self.array::<Backend>(BACKENDS)?
            .set(id, backend, 0)
            .map_err(map_err(BACKENDS))
    }

    pub fn set_endpoint(&mut self, addr_be: u32, endpoint: Endpoint) -> Result<(), HarnessError> {
        self.hash::<u32, Endpoint>(ENDPOINTS)?
            .insert(addr_be, endpoint, 0)
            .map_err(map_err(ENDPOINTS))
    }

    pub fn set_peer(&mut self, addr_be: u32, peer: Peer) -> Result<(), HarnessError> {
        self.hash::<u32, Peer>(PEERS)?
            .insert(addr_be, peer, 0)
            .map_err(map_err(PEERS))
    }

    /// A conntrack entry, `None` when absent.
    pub fn flow(&mut self, key: &FlowKey) -> Result<Option<FlowEntry>, HarnessError> {
        match self.hash::<FlowKey, FlowEntry>(CONNTRACK)?.get(key, 0) {
            Ok(entry) => Ok(Some(entry)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(HarnessError::Map {
                name: CONNTRACK,
                source,
            }),
        }
    }

    pub fn set_flow(&mut self, key: FlowKey, entry: FlowEntry) -> Result<(), HarnessError> {
        self.hash::<FlowKey, FlowEntry>(CONNTRACK)?
            .insert(key, entry, 0)
            .map_err(map_err(CONNTRACK))
    }

    /// Drops counted for `reason`, summed over CPUs.
    pub fn drops(&mut self, reason: DropReason) -> Result<u64, HarnessError> {
        self.per_cpu_sum(DROP_COUNTERS, reason as u32, 0u64, |a, v: &u64| a + v)
    }

    /// Packets and bytes counted at `slot`, summed over CPUs.
    pub fn packet_counter(
        &mut self,
        slot: PacketCounterSlot,
    ) -> Result<PacketCounter, HarnessError> {
        self.per_cpu_sum(
            PACKET_COUNTERS,
            slot as u32,
            PacketCounter::default(),
            |a, v: &PacketCounter| PacketCounter {
                packets: a.packets + v.packets,
                bytes: a.bytes + v.bytes,
            },
        )
    }

    fn stats(&mut self, name: &'static str, index: u32) -> Result<ServiceCounters, HarnessError> {
        self.per_cpu_sum(
            name,
            index,
            ServiceCounters::default(),
            |a, v: &ServiceCounters| ServiceCounters {
                packets: a.packets + v.packets,
                bytes: a.bytes + v.bytes,
                new_flows: a.new_flows + v.new_flows,
            },
        )
    }

    /// Per-service counters summed over CPUs.
    pub fn service_stats(&mut self, service: u32) -> Result<ServiceCounters, HarnessError> {
        self.stats(SERVICE_STATS, service)
    }

    /// Per-backend counters summed over CPUs.
    pub fn backend_stats(&mut self, backend: u32) -> Result<ServiceCounters, HarnessError> {
        self.stats(BACKEND_STATS, backend)
    }
}

/// Whether the caller may run `BPF_PROG_RUN` (needs root). Tests call this
/// first: without root they panic when `CI` is set (a CI run must not pass
/// by skipping) and otherwise print why they skip.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: BPF_PROG_RUN fixtures need root (CAP_BPF + CAP_NET_ADMIN); CI must run them as root"
        );
    }
    eprintln!(
        "{test}: skipped, BPF_PROG_RUN needs root; run `sudo -E cargo test -p hive-dataplane --test prog_run`"
    );
    false
}
