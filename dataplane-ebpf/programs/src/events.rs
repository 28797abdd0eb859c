//! Trace events into the `HIVE_TRACE` ring buffer (ABI and meaning:
//! `hive_common::trace`; user guide: `docs/observability.md`).
//!
//! Cost model. While tracing is off an event site costs [`on`]: one
//! lookup of a one-entry array with a constant key, which the verifier
//! inlines into a few instructions (`array_map_gen_lookup`, 4.16+), and a
//! flag test. While it is on, a site makes one out-of-line call that
//! filters on what the site already knows (kind, flow, service), checks the
//! lease and the rate limit, then reserves a ring record and writes the
//! event straight into it, with as many bytes of the packet as the tracer
//! asked for (`TraceConfig::snaplen`: only a pcap writer asks). Nothing is
//! built twice: an event the filter rejects costs no record, and an event
//! that goes out is never copied (Cilium's `send_trace_notify` model).
//!
//! An event's timestamp is its own reading of the precise clock
//! (`bpf_ktime_get_ns`), taken once the filter has let the event through.
//! Conntrack reads the coarse clock instead (`conntrack::now`): its timeouts
//! are seconds, and a trace's timeline needs nanoseconds.
//!
//! Events a site does not know the service of (the tunnel from `tc::encap`,
//! drops) take it from [`note_flow`], which the balancing code calls while
//! tracing is on; every event consumes the note, so it does not outlive the
//! packet that made it.

use aya_ebpf::{
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_skb_load_bytes, bpf_xdp_load_bytes},
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf, ring_buf::RingBufEntry},
    programs::{TcContext, XdpContext},
};
use hive_common::{
    DropReason,
    maps::{FlowEntry, IPPROTO_TCP, IPPROTO_UDP},
    trace::{
        MAX_TRACE_ADDRS, MAX_TRACE_SERVICES, TRACE_CAPTURE_MAX, TRACE_RING_BYTES, TRACE_VERSION,
        TraceConfig, TraceEvent, TraceKind, TraceLost, TraceProgram, TraceRecord, TraceVerdict,
    },
};

use crate::{
    headers::{ETH_HDR_LEN, ETH_P_IP_BE, Ipv4Hdr},
    lb::Target,
    packet::{Packet, TcPacket, XdpPacket},
    parse::{Ipv4, L4},
    vxlan::Tunnel,
};

#[map(name = "HIVE_TRACE")]
static RING: RingBuf = RingBuf::with_byte_size(TRACE_RING_BYTES, 0);

#[map(name = "HIVE_TRACE_CONFIG")]
static CONFIG: Array<TraceConfig> = Array::with_max_entries(1, 0);

#[map(name = "HIVE_TRACE_LOST")]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(TraceLost::SLOTS, 0);

#[map(name = "HIVE_TRACE_ADDRS")]
static ADDRS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_TRACE_ADDRS, 0);

#[map(name = "HIVE_TRACE_SERVICES")]
static SERVICES: HashMap<u32, u32> = HashMap::with_max_entries(MAX_TRACE_SERVICES, 0);

/// Per-CPU working state. Not part of the ABI: user space never reads it.
#[repr(C)]
pub struct Scratch {
    /// Token bucket, in units of 1e-9 events (no division per packet).
    tokens: u64,
    last_refill_ns: u64,
    /// See [`note_flow`] and [`note_balanced`].
    pending_service: u32,
    pending_backend: u32,
    pending_addr_be: u32,
    pending_port_be: u16,
    pending_flags: u16,
    /// See [`encap_begin_tc`]: the flow before the outer headers go on.
    pending_flow: Flow,
    pending_tunnel_be: u32,
    pending_vni: u32,
}

/// The flow an event is about, as the site knows it when the event starts.
#[repr(C)]
#[derive(Copy, Clone, Default)]
pub struct Flow {
    saddr_be: u32,
    daddr_be: u32,
    sport_be: u16,
    dport_be: u16,
    proto: u8,
    tcp_flags: u8,
    _pad: [u8; 2],
}

impl Flow {
    /// From headers the caller parsed.
    #[inline(always)]
    fn parsed(ip: &Ipv4, l4: Option<&L4>) -> Flow {
        let (sport_be, dport_be, tcp_flags) =
            l4.map_or((0, 0, 0), |l4| (l4.sport_be, l4.dport_be, l4.tcp_flags));
        Flow {
            saddr_be: ip.saddr_be,
            daddr_be: ip.daddr_be,
            sport_be,
            dport_be,
            proto: ip.proto,
            tcp_flags,
            _pad: [0; 2],
        }
    }
}

impl Flow {
    /// A balanced packet's flow after DNAT, from its headers as parsed before it.
    #[inline(always)]
    fn balanced(ip: &Ipv4, l4: &L4, target: &Target) -> Flow {
        Flow {
            daddr_be: target.addr_be,
            dport_be: target.port_be,
            ..Flow::parsed(ip, Some(l4))
        }
    }
}

/// [`Scratch::pending_flags`]: `tc::balance` gave a flow a backend...
const PENDING_BALANCED: u16 = 1 << 0;
/// ... and it was a new flow (Maglev pick) ...
const PENDING_NEW: u16 = 1 << 1;
/// ... on this node ...
const PENDING_LOCAL: u16 = 1 << 2;
/// ... and it is the sender itself: the packet goes back into it from the
/// VIP (`tc::hairpin`).
const PENDING_HAIRPIN: u16 = 1 << 3;

#[map(name = "HIVE_TRACE_SCRATCH")]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

const NS_PER_SEC: u64 = 1_000_000_000;
const HDR_LEN: u16 = core::mem::size_of::<TraceEvent>() as u16;

/// The event's timestamp: the precise clock, comparable across the nodes
/// (`TraceEvent::timestamp_ns`).
#[inline(always)]
fn now() -> u64 {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// The configuration while tracing is switched on; `None` is the whole
/// cost of tracing when it is off: one lookup of a one-entry array with a
/// constant key (inlined by the verifier) and a flag test.
#[inline(always)]
fn enabled() -> Option<&'static mut TraceConfig> {
    if !cfg!(feature = "trace") {
        return None;
    }
    let cfg = CONFIG.get_ptr_mut(0)?;
    // SAFETY: a pointer to the map's one value; plain data. User space
    // replaces the whole value; a concurrent write can at worst be
    // overwritten by the lease's flag clear, which the tracer's next
    // renewal repairs (see `lease_valid`).
    let cfg = unsafe { &mut *cfg };
    if cfg.flags & TraceConfig::FLAG_ENABLED == 0 {
        return None;
    }
    Some(cfg)
}

/// The lease check: a tracer renews `expires_ns` while it runs; one that
/// died stops the trace within a lease. The first event after expiry
/// switches tracing off in the map, so later packets pay only the lookup
/// again. (A tracer starting in the same instant could see its fresh
/// config switched off; tracers write their whole config on every
/// renewal, which heals that within a renewal period.)
#[inline(always)]
fn lease_valid(cfg: &mut TraceConfig, now: u64) -> bool {
    if now > cfg.expires_ns {
        cfg.flags &= !TraceConfig::FLAG_ENABLED;
        return false;
    }
    true
}

#[inline(always)]
fn scratch() -> Option<&'static mut Scratch> {
    let s = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot; programs on one CPU do not interleave (XDP
    // and tc both run in softirq context, which does not nest), and no
    // state is kept in it across program runs except the token bucket.
    Some(unsafe { &mut *s })
}

/// A record reserved in the ring with its header written; the site adds
/// its own fields through [`Open::event`], then [`Open::finish`] captures
/// the packet and submits.
struct Open {
    record: RingBufEntry<TraceRecord>,
    /// [`TraceConfig::snaplen`] when the event started.
    snaplen: u16,
}

impl Open {
    /// Start an event of `kind` about `flow`, or `None` when tracing is
    /// off, the filter rejects it, the lease ran out, the rate limit says
    /// no or the ring is full (the last two are counted). `service` and
    /// `backend` 0 mean "the noted ones" ([`note_flow`]).
    #[inline(always)]
    fn start(
        kind: TraceKind,
        verdict: TraceVerdict,
        flow: &Flow,
        service: u32,
        backend: u32,
    ) -> Option<Open> {
        let cfg = enabled()?;
        let s = scratch()?;
        let (service, backend) = if service == 0 {
            (s.pending_service, s.pending_backend)
        } else {
            (service, backend)
        };
        s.pending_service = 0;
        s.pending_backend = 0;
        s.pending_flags = 0;
        if !matches(cfg, kind, flow, service) {
            return None;
        }
        let now = now();
        if !lease_valid(cfg, now) {
            return None;
        }
        if !within_rate(cfg, s, now) {
            lost(TraceLost::RateLimited);
            return None;
        }
        let Some(mut record) = RING.reserve::<TraceRecord>(0) else {
            lost(TraceLost::RingFull);
            return None;
        };
        let r = record.as_mut_ptr();
        // SAFETY: `r` points at a reserved record of size_of::<TraceRecord>()
        // bytes that only this program writes until it submits or discards it.
        // Field by field: a struct literal is built on the stack first, and
        // the tc encap path has no 64 bytes to spare. `finish` writes the
        // fields not written here (program, ifindex, cpu, lengths).
        unsafe {
            let e = &mut (*r).event;
            e.version = TRACE_VERSION;
            e.kind = kind as u8;
            e.verdict = verdict as u8;
            e.drop_reason = 0;
            e.proto = flow.proto;
            e.hdr_len = HDR_LEN;
            e.timestamp_ns = now;
            e.saddr_be = flow.saddr_be;
            e.daddr_be = flow.daddr_be;
            e.sport_be = flow.sport_be;
            e.dport_be = flow.dport_be;
            e.service = service;
            e.backend = backend;
            e.xlate_addr_be = 0;
            e.tunnel_be = 0;
            e.xlate_port_be = 0;
            e.vni = 0;
            e.tcp_flags = flow.tcp_flags;
            e._pad = [0; 7];
        }
        Some(Open {
            record,
            snaplen: cfg.snaplen,
        })
    }

    /// The event's header, to add what only the site knows.
    #[inline(always)]
    fn event(&mut self) -> &mut TraceEvent {
        // SAFETY: `start` initialised the header; the record is ours until
        // `finish`.
        unsafe { &mut (*self.record.as_mut_ptr()).event }
    }

    /// Fill what the program context knows, capture the first bytes of the
    /// packet as it is now (as many as the tracer asked for), and submit.
    #[inline(always)]
    fn finish<C: Source>(mut self, ctx: &C) {
        let len = ctx.len();
        let want = u32::from(self.snaplen).min(TRACE_CAPTURE_MAX as u32);
        let cap = if len > want { want } else { len };
        let r = self.record.as_mut_ptr();
        // SAFETY: as in `start`.
        unsafe {
            (*r).event.program = C::PROGRAM as u8;
            (*r).event.ifindex = ctx.ifindex();
            (*r).event.cpu = bpf_get_smp_processor_id();
            (*r).event.orig_len = len;
            // The helpers take a length in [1, size of dst]; LLVM turns a plain
            // range check into a compare on a copy the verifier does not link
            // back, so the bound is rebuilt by a mask the optimiser cannot see
            // through (cap is 1..=128 here, so the value is unchanged).
            let captured = cap >= 1 && {
                let m = core::hint::black_box(cap - 1) & (TRACE_CAPTURE_MAX as u32 - 1);
                ctx.capture((*r).data.as_mut_ptr(), m + 1)
            };
            (*r).event.cap_len = if captured { cap as u16 } else { 0 };
        }
        self.record.submit(0);
    }
}

/// Whether tracing is on: the one test every event site makes first, so
/// that nothing else runs (and no call is made) while it is off.
#[inline(always)]
pub fn on() -> bool {
    enabled().is_some()
}

/// Remember the service and backend of the packet being processed for an
/// event emitted further down its path by code that does not know them.
/// Call only when [`on`].
#[inline(never)]
pub fn note_flow(service: u32, backend: u32) {
    if let Some(s) = scratch() {
        s.pending_service = service;
        s.pending_backend = backend;
    }
}

/// `tc::balance` has no stack to spare for an event call (its frame plus
/// `record_balanced`'s fill the verifier's 512 bytes), so it notes what it
/// decided and `tc_from_task` emits the events with [`balanced_tc`].
/// Call only when [`on`].
#[inline(never)]
pub fn note_balanced(target: &Target, new: bool, hairpin: bool) {
    if let Some(s) = scratch() {
        s.pending_service = target.service;
        s.pending_backend = target.backend;
        s.pending_addr_be = target.addr_be;
        s.pending_port_be = target.port_be;
        let mut flags = PENDING_BALANCED;
        if new {
            flags |= PENDING_NEW;
        }
        if !target.remote {
            flags |= PENDING_LOCAL;
        }
        if hairpin {
            flags |= PENDING_HAIRPIN;
        }
        s.pending_flags = flags;
    }
}

/// The events of a flow `tc::balance` noted: LbSelect for a new flow (the
/// capture shows the packet after DNAT: it is emitted after the fact),
/// LocalDelivery for a local backend; for a remote one the note stays for
/// the Encap event.
#[inline(never)]
pub fn balanced_tc(ctx: &TcContext, ip: &Ipv4, l4: &L4) {
    let Some(s) = scratch() else {
        return;
    };
    let flags = s.pending_flags;
    if flags & PENDING_BALANCED == 0 {
        return;
    }
    let (service, backend) = (s.pending_service, s.pending_backend);
    let (addr_be, port_be) = (s.pending_addr_be, s.pending_port_be);
    let local = flags & PENDING_LOCAL != 0;
    let hairpin = flags & PENDING_HAIRPIN != 0;
    let flow = Flow::parsed(ip, Some(l4));
    // Every way on is a redirect: into the tunnel, into a local backend's
    // namespace, or, for a hairpin, straight back into the sender.
    if flags & PENDING_NEW != 0
        && let Some(mut open) = Open::start(
            TraceKind::LbSelect,
            TraceVerdict::Redirect,
            &flow,
            service,
            backend,
        )
    {
        let e = open.event();
        e.xlate_addr_be = addr_be;
        e.xlate_port_be = port_be;
        open.finish(ctx);
    }
    if local {
        let delivered = Flow {
            // A hairpinned flow reaches the task from the VIP.
            saddr_be: if hairpin { ip.daddr_be } else { flow.saddr_be },
            daddr_be: addr_be,
            dport_be: port_be,
            ..flow
        };
        if let Some(open) = Open::start(
            TraceKind::LocalDelivery,
            TcContext::LOCAL,
            &delivered,
            service,
            backend,
        ) {
            open.finish(ctx);
        }
    } else if let Some(s) = scratch() {
        // For the Encap event of `tc::encap`.
        s.pending_service = service;
        s.pending_backend = backend;
    }
}

// The event sites. Each is out of line and called only when [`on`]: the
// record pointer then lives in the callee's registers only. (Kept inline, an
// event pointer sat in a callee-saved register of the caller, where LLVM
// later reused the register for a value it considered undefined on that
// path; the verifier refuses any arithmetic on a pointer, even a dead one.)

/// A new flow was given `target` (before DNAT: the flow the client sent).
#[inline(never)]
pub fn lb_select<C: Source>(ctx: &C, ip: &Ipv4, l4: &L4, target: &Target) {
    let flow = Flow::parsed(ip, Some(l4));
    let Some(mut open) = Open::start(
        TraceKind::LbSelect,
        C::verdict(target.remote),
        &flow,
        target.service,
        target.backend,
    ) else {
        return;
    };
    let e = open.event();
    e.xlate_addr_be = target.addr_be;
    e.xlate_port_be = target.port_be;
    open.finish(ctx);
}

/// A balanced packet after DNAT, delivered to a backend on this node (`ip`/`l4` are the
/// headers as parsed before DNAT).
#[inline(never)]
pub fn to_local_backend<C: Source>(ctx: &C, ip: &Ipv4, l4: &L4, target: &Target) {
    if let Some(open) = start_to_backend::<C>(TraceKind::LocalDelivery, false, ip, l4, target) {
        open.finish(ctx);
    }
}

/// A balanced packet after DNAT, encapsulated towards the backend's node (`ip`/`l4` as
/// parsed before DNAT). Apart from [`to_local_backend`]: one site per kind keeps this frame,
/// which sits under the ingress path's, small (512 bytes per call chain).
#[inline(never)]
pub fn to_remote_backend<C: Source>(ctx: &C, ip: &Ipv4, l4: &L4, target: &Target) {
    let Some(mut open) = start_to_backend::<C>(TraceKind::Encap, true, ip, l4, target) else {
        return;
    };
    let e = open.event();
    e.tunnel_be = target.node_be;
    e.vni = target.vni;
    open.finish(ctx);
}

/// The start of [`to_local_backend`]'s and [`to_remote_backend`]'s events: `kind` and
/// `remote` are constants at each, once inlined.
#[inline(always)]
fn start_to_backend<C: Source>(
    kind: TraceKind,
    remote: bool,
    ip: &Ipv4,
    l4: &L4,
    target: &Target,
) -> Option<Open> {
    Open::start(
        kind,
        C::verdict(remote),
        &Flow::balanced(ip, l4, target),
        target.service,
        target.backend,
    )
}

/// Where a decapsulated packet came from: one argument, for the five a BPF
/// function takes.
#[repr(C)]
pub struct TunnelFrom {
    pub peer_be: u32,
    pub vni: u32,
}

/// A VXLAN packet was decapsulated; the flow is the inner one.
#[inline(never)]
pub fn decap<C: Source>(ctx: &C, ip: &Ipv4, l4: Option<&L4>, from: &TunnelFrom) {
    // The verdict is not known yet: the next event (or a drop) says it.
    let flow = Flow::parsed(ip, l4);
    let Some(mut open) = Open::start(TraceKind::Decap, TraceVerdict::Pass, &flow, 0, 0) else {
        return;
    };
    let e = open.event();
    e.tunnel_be = from.peer_be;
    e.vni = from.vni;
    open.finish(ctx);
}

/// How a packet for a task on this node gets there: one argument of
/// [`delivered`], for the five a BPF function takes.
#[repr(C)]
pub struct Delivery {
    /// The task's network.
    pub vni: u32,
    /// Handed to `tc_from_underlay`, which redirects it into the task
    /// (`handoff`); otherwise the kernel routes it there.
    pub handed_off: bool,
}

/// A packet for a task on this node goes to the kernel (overlay traffic,
/// or decapsulated traffic; the service is not known here), or, handed
/// off, straight into the task.
#[inline(never)]
pub fn delivered<C: Source>(ctx: &C, ip: &Ipv4, l4: Option<&L4>, to: &Delivery) {
    let flow = Flow::parsed(ip, l4);
    let Some(mut open) = Open::start(
        TraceKind::LocalDelivery,
        if to.handed_off {
            TraceVerdict::Redirect
        } else {
            TraceVerdict::Pass
        },
        &flow,
        0,
        0,
    ) else {
        return;
    };
    open.event().vni = to.vni;
    open.finish(ctx);
}

/// A reply got its service address back (`ip`/`l4` as parsed, before
/// SNAT); a north-south one goes back out through the underlay.
#[inline(never)]
pub fn reverse_nat<C: Source>(ctx: &C, ip: &Ipv4, l4: &L4, entry: &FlowEntry) {
    let flow = Flow::parsed(ip, Some(l4));
    let Some(mut open) = Open::start(
        TraceKind::ReverseNat,
        // North-south replies and hairpinned ones are sent on by redirect;
        // east-west ones are for a task of this node.
        C::verdict(entry.flags & (FlowEntry::FLAG_NORTH_SOUTH | FlowEntry::FLAG_HAIRPIN) != 0),
        &flow,
        entry.service,
        entry.backend,
    ) else {
        return;
    };
    let e = open.event();
    e.xlate_addr_be = entry.addr_be;
    e.xlate_port_be = entry.port_be;
    open.finish(ctx);
}

/// First half of an Encap event from tc: notes the flow as the bytes carry
/// it now (after any DNAT), before the outer headers go on. Call only when
/// [`on`]; if it returns `true`, call [`submit_tc`] after encapsulating, so
/// that the capture shows the packet as it leaves.
#[inline(never)]
pub fn encap_begin_tc(ctx: &TcContext, tunnel: &Tunnel) -> bool {
    let Some(s) = scratch() else {
        return false;
    };
    s.pending_flow = flow_from_packet(&TcPacket { ctx });
    s.pending_tunnel_be = tunnel.node_be;
    s.pending_vni = tunnel.vni;
    true
}

/// Write the Encap event [`encap_begin_tc`] noted.
#[inline(never)]
pub fn submit_tc(ctx: &TcContext) {
    let Some(s) = scratch() else {
        return;
    };
    let (flow, tunnel_be, vni) = (s.pending_flow, s.pending_tunnel_be, s.pending_vni);
    let Some(mut open) = Open::start(TraceKind::Encap, TraceVerdict::Redirect, &flow, 0, 0) else {
        return;
    };
    let e = open.event();
    e.tunnel_be = tunnel_be;
    e.vni = vni;
    open.finish(ctx);
}

/// Whether the configured filter lets an event of `kind` about `flow` and
/// `service` through.
#[inline(always)]
fn matches(cfg: &TraceConfig, kind: TraceKind, flow: &Flow, service: u32) -> bool {
    if cfg.flags & TraceConfig::FLAG_DROPS_ONLY != 0 && kind != TraceKind::Drop {
        return false;
    }
    if cfg.flags & TraceConfig::FLAG_SERVICE != 0 && service != cfg.service {
        // The service's ids on its other networks; events without a service
        // id (the backend node sees a tunnelled flow, not a service) match
        // by the service's backend addresses.
        // SAFETY: plain-data values, only tested for presence.
        let known = if service == 0 {
            unsafe { ADDRS.get(flow.saddr_be) }.is_some()
                || unsafe { ADDRS.get(flow.daddr_be) }.is_some()
        } else {
            unsafe { SERVICES.get(service) }.is_some()
        };
        if !known {
            return false;
        }
    }
    if cfg.flags & TraceConfig::FLAG_CLIENT != 0 {
        let port = cfg.client_port_be;
        let src = flow.saddr_be == cfg.client_addr_be && (port == 0 || flow.sport_be == port);
        let dst = flow.daddr_be == cfg.client_addr_be && (port == 0 || flow.dport_be == port);
        if !(src || dst) {
            return false;
        }
    }
    true
}

#[inline(always)]
fn lost(slot: TraceLost) {
    if let Some(c) = LOST.get_ptr_mut(slot as u32) {
        // SAFETY: this CPU's slot of a per-CPU array; no concurrent writer.
        unsafe { *c += 1 };
    }
}

/// Token bucket: `true` if one more event may go out now.
#[inline(always)]
fn within_rate(cfg: &TraceConfig, s: &mut Scratch, now: u64) -> bool {
    if cfg.rate_per_sec == 0 {
        return true;
    }
    let unit = NS_PER_SEC;
    let burst = u64::from(cfg.burst.max(1)) * unit;
    // Capping the interval at a second keeps the product below 2^64 for
    // any u32 rate.
    let elapsed = now.saturating_sub(s.last_refill_ns).min(NS_PER_SEC);
    s.last_refill_ns = now;
    let tokens = s
        .tokens
        .saturating_add(elapsed * u64::from(cfg.rate_per_sec))
        .min(burst);
    if tokens < unit {
        s.tokens = tokens;
        return false;
    }
    s.tokens = tokens - unit;
    true
}

/// What differs between XDP and tc when a record is written.
pub trait Source {
    const PROGRAM: TraceProgram;
    /// The verdict of a packet this program sends on through the underlay.
    const FORWARDED: TraceVerdict;
    /// The verdict of a packet for a task of this node: XDP passes it (to
    /// the kernel, or handed off to `tc_from_underlay`), tc redirects it
    /// into the task itself.
    const LOCAL: TraceVerdict;

    /// The verdict of a balanced packet: [`Self::FORWARDED`] when it leaves
    /// through the underlay, [`Self::LOCAL`] when it stays on this node.
    #[inline(always)]
    fn verdict(forwarded: bool) -> TraceVerdict {
        if forwarded {
            Self::FORWARDED
        } else {
            Self::LOCAL
        }
    }

    fn len(&self) -> u32;
    fn ifindex(&self) -> u32;
    /// Copy `len` (1..=TRACE_CAPTURE_MAX) bytes from the start of the
    /// packet to `dst`; `false` if the helper refused.
    fn capture(&self, dst: *mut u8, len: u32) -> bool;
}

impl Source for XdpContext {
    const PROGRAM: TraceProgram = TraceProgram::XdpFromUnderlay;
    const FORWARDED: TraceVerdict = TraceVerdict::Tx;
    const LOCAL: TraceVerdict = TraceVerdict::Pass;

    #[inline(always)]
    fn len(&self) -> u32 {
        (self.data_end() - self.data()) as u32
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: reading a field of the context the kernel passed us.
        unsafe { (*self.ctx).ingress_ifindex }
    }

    #[inline(always)]
    fn capture(&self, dst: *mut u8, len: u32) -> bool {
        // SAFETY: `dst` has TRACE_CAPTURE_MAX writable bytes (the ring
        // record's data) and `len` is at most that; the helper (5.18+)
        // bounds-checks the packet side.
        unsafe { bpf_xdp_load_bytes(self.ctx, 0, dst.cast(), len) == 0 }
    }
}

impl Source for TcContext {
    const PROGRAM: TraceProgram = TraceProgram::TcFromTask;
    const FORWARDED: TraceVerdict = TraceVerdict::Redirect;
    const LOCAL: TraceVerdict = TraceVerdict::Redirect;

    #[inline(always)]
    fn len(&self) -> u32 {
        TcContext::len(self)
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: reading a field of the context the kernel passed us.
        unsafe { (*self.skb.skb).ifindex }
    }

    #[inline(always)]
    fn capture(&self, dst: *mut u8, len: u32) -> bool {
        // SAFETY: as for XDP; bpf_skb_load_bytes reads non-linear skbs too.
        unsafe { bpf_skb_load_bytes(self.skb.skb.cast(), 0, dst.cast(), len) == 0 }
    }
}

/// The flow as the packet's bytes carry it now: for a drop, which may have
/// happened before (or because) parsing failed, and after NAT, which
/// leaves the parsed headers stale.
#[inline(always)]
fn flow_from_packet<P: Packet>(pkt: &P) -> Flow {
    let mut flow = Flow::default();
    let Ok(ethertype) = pkt.load::<u16>(12) else {
        return flow;
    };
    if ethertype != ETH_P_IP_BE {
        return flow;
    }
    let Ok(ip) = pkt.load::<Ipv4Hdr>(ETH_HDR_LEN) else {
        return flow;
    };
    flow.saddr_be = ip.saddr_be;
    flow.daddr_be = ip.daddr_be;
    flow.proto = ip.protocol;
    let ihl = usize::from(ip.version_ihl & 0x0f) * 4;
    if ihl < 20 || (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP) {
        return flow;
    }
    if let Ok(ports) = pkt.load::<[u16; 2]>(ETH_HDR_LEN + ihl) {
        flow.sport_be = ports[0];
        flow.dport_be = ports[1];
    }
    // Data offset and flags: bytes 12 and 13 of the TCP header.
    if ip.protocol == IPPROTO_TCP
        && let Ok(off_flags) = pkt.load::<[u8; 2]>(ETH_HDR_LEN + ihl + 12)
    {
        flow.tcp_flags = off_flags[1];
    }
    flow
}

/// A drop event (XDP), for the entry program's error path and for packets
/// answered instead of forwarded (ICMP fragmentation-needed).
#[inline(never)]
pub fn drop_xdp(ctx: &XdpContext, reason: DropReason, verdict: TraceVerdict) {
    let flow = flow_from_packet(&XdpPacket { ctx });
    let Some(mut open) = Open::start(TraceKind::Drop, verdict, &flow, 0, 0) else {
        return;
    };
    open.event().drop_reason = reason as u8;
    open.finish(ctx);
}

/// A drop event (tc).
#[inline(never)]
pub fn drop_tc(ctx: &TcContext, reason: DropReason, verdict: TraceVerdict) {
    let flow = flow_from_packet(&TcPacket { ctx });
    let Some(mut open) = Open::start(TraceKind::Drop, verdict, &flow, 0, 0) else {
        return;
    };
    open.event().drop_reason = reason as u8;
    open.finish(ctx);
}
