//! Trace events into the `HIVE_TRACE` ring buffer (ABI and meaning:
//! `hive_common::trace`; user guide: `docs/observability.md`).
//!
//! Cost model. While tracing is off an event site costs [`on`]: one
//! lookup of a one-entry array with a constant key, which the verifier
//! inlines into a few instructions (`array_map_gen_lookup`, 4.16+), and a
//! flag test. While it is on, a site fills the event in a per-CPU scratch
//! slot (not the stack: the verifier gives a call chain 512 bytes and the
//! paths that emit are already deep), and one out-of-line call per event
//! filters, rate-limits, reserves a ring record, copies the header and the
//! first bytes of the packet, and submits.
//!
//! Events a site does not know the service of (the tunnel from `tc::encap`,
//! drops) take it from [`note_flow`], which the balancing code calls while
//! tracing is on; every event consumes the note, so it does not outlive the
//! packet that made it.

use aya_ebpf::{
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_skb_load_bytes, bpf_xdp_load_bytes},
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use hive_common::{
    DropReason,
    maps::{FlowEntry, IPPROTO_TCP, IPPROTO_UDP},
    trace::{
        MAX_TRACE_ADDRS, TRACE_CAPTURE_MAX, TRACE_RING_BYTES, TRACE_VERSION, TraceConfig,
        TraceEvent, TraceKind, TraceLost, TraceProgram, TraceRecord, TraceVerdict,
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

/// Per-CPU working state. Not part of the ABI: user space never reads it.
#[repr(C)]
pub struct Scratch {
    /// The event being built.
    event: TraceEvent,
    /// Token bucket, in units of 1e-9 events (no division per packet).
    tokens: u64,
    last_refill_ns: u64,
    /// See [`note_flow`] and [`note_balanced`].
    pending_service: u32,
    pending_backend: u32,
    pending_addr_be: u32,
    pending_port_be: u16,
    pending_flags: u16,
}

/// [`Scratch::pending_flags`]: `tc::balance` gave a flow a backend...
const PENDING_BALANCED: u16 = 1 << 0;
/// ... and it was a new flow (Maglev pick) ...
const PENDING_NEW: u16 = 1 << 1;
/// ... on this node.
const PENDING_LOCAL: u16 = 1 << 2;

#[map(name = "HIVE_TRACE_SCRATCH")]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

const NS_PER_SEC: u64 = 1_000_000_000;
const HDR_LEN: u16 = core::mem::size_of::<TraceEvent>() as u16;

#[inline(always)]
fn now() -> u64 {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// The configuration while tracing is switched on; `None` is the whole
/// cost of tracing when it is off: one lookup of a one-entry array with a
/// constant key (inlined by the verifier) and a flag test.
#[inline(always)]
fn enabled() -> Option<&'static TraceConfig> {
    if !cfg!(feature = "trace") {
        return None;
    }
    let cfg = CONFIG.get(0)?;
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
fn lease_valid(now: u64) -> bool {
    let Some(cfg) = CONFIG.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a pointer to the map's one value; plain data. A concurrent
    // write from user space can at worst be overwritten by the flag
    // clear, which the next renewal repairs (see above).
    unsafe {
        if now > (*cfg).expires_ns {
            (*cfg).flags &= !TraceConfig::FLAG_ENABLED;
            return false;
        }
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

/// Start an event of `kind` in the scratch slot, or `None` when tracing is
/// off.
#[inline(always)]
fn begin(kind: TraceKind, verdict: TraceVerdict) -> Option<&'static mut TraceEvent> {
    enabled()?;
    let now = now();
    if !lease_valid(now) {
        return None;
    }
    let s = scratch()?;
    s.event = TraceEvent {
        version: TRACE_VERSION,
        kind: kind as u8,
        verdict: verdict as u8,
        hdr_len: HDR_LEN,
        timestamp_ns: now,
        service: s.pending_service,
        backend: s.pending_backend,
        ..TraceEvent::default()
    };
    s.pending_service = 0;
    s.pending_backend = 0;
    s.pending_flags = 0;
    Some(&mut s.event)
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
pub fn note_balanced(target: &Target, new: bool) {
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
    if flags & PENDING_NEW != 0 {
        let verdict = if local {
            TraceVerdict::Pass
        } else {
            TraceVerdict::Redirect
        };
        if let Some(e) = begin(TraceKind::LbSelect, verdict) {
            set_flow(e, ip, Some(l4));
            e.service = service;
            e.backend = backend;
            e.xlate_addr_be = addr_be;
            e.xlate_port_be = port_be;
            submit(ctx);
        }
    }
    if local {
        if let Some(e) = begin(TraceKind::LocalDelivery, TraceVerdict::Pass) {
            set_flow(e, ip, Some(l4));
            e.daddr_be = addr_be;
            e.dport_be = port_be;
            e.service = service;
            e.backend = backend;
            submit(ctx);
        }
    } else if let Some(s) = scratch() {
        // For the Encap event of `tc::encap`.
        s.pending_service = service;
        s.pending_backend = backend;
    }
}

/// Fill the flow fields from parsed headers.
#[inline(always)]
fn set_flow(e: &mut TraceEvent, ip: &Ipv4, l4: Option<&L4>) {
    e.saddr_be = ip.saddr_be;
    e.daddr_be = ip.daddr_be;
    e.proto = ip.proto;
    if let Some(l4) = l4 {
        e.sport_be = l4.sport_be;
        e.dport_be = l4.dport_be;
    }
}

// The event sites. Each is out of line and called only when [`on`]: the
// event pointer then lives in the callee's registers only. (Kept inline, it
// sat in a callee-saved register of the caller, where LLVM later reused the
// register for a value it considered undefined on that path; the verifier
// refuses any arithmetic on a pointer, even a dead one.)

/// A new flow was given `target` (before DNAT: the flow the client sent).
#[inline(never)]
pub fn lb_select<C: Source>(ctx: &C, ip: &Ipv4, l4: &L4, target: &Target, verdict: TraceVerdict) {
    let Some(e) = begin(TraceKind::LbSelect, verdict) else {
        return;
    };
    set_flow(e, ip, Some(l4));
    e.service = target.service;
    e.backend = target.backend;
    e.xlate_addr_be = target.addr_be;
    e.xlate_port_be = target.port_be;
    submit(ctx);
}

/// A balanced packet after DNAT: delivered locally (`verdict` Pass) or
/// encapsulated towards the backend's node (`ip`/`l4` are the headers as
/// parsed before DNAT).
#[inline(never)]
pub fn to_backend<C: Source>(ctx: &C, ip: &Ipv4, l4: &L4, target: &Target, verdict: TraceVerdict) {
    let kind = if verdict == TraceVerdict::Pass {
        TraceKind::LocalDelivery
    } else {
        TraceKind::Encap
    };
    let Some(e) = begin(kind, verdict) else {
        return;
    };
    set_flow(e, ip, Some(l4));
    e.daddr_be = target.addr_be;
    e.dport_be = target.port_be;
    e.service = target.service;
    e.backend = target.backend;
    if kind == TraceKind::Encap {
        e.tunnel_be = target.node_be;
        e.vni = target.vni;
    }
    submit(ctx);
}

/// A VXLAN packet from `peer_be` was decapsulated; the flow is the inner one.
#[inline(never)]
pub fn decap<C: Source>(ctx: &C, ip: &Ipv4, l4: Option<&L4>, peer_be: u32, vni: u32) {
    // The verdict is not known yet: the next event (or a drop) says it.
    let Some(e) = begin(TraceKind::Decap, TraceVerdict::Pass) else {
        return;
    };
    set_flow(e, ip, l4);
    e.tunnel_be = peer_be;
    e.vni = vni;
    submit(ctx);
}

/// A packet for a task on this node goes to the kernel (overlay traffic,
/// or decapsulated traffic; the service is not known here).
#[inline(never)]
pub fn delivered<C: Source>(ctx: &C, ip: &Ipv4, l4: Option<&L4>, vni: u32) {
    let Some(e) = begin(TraceKind::LocalDelivery, TraceVerdict::Pass) else {
        return;
    };
    set_flow(e, ip, l4);
    e.vni = vni;
    submit(ctx);
}

/// A reply got its service address back (`ip`/`l4` as parsed, before SNAT).
#[inline(never)]
pub fn reverse_nat<C: Source>(
    ctx: &C,
    ip: &Ipv4,
    l4: &L4,
    entry: &FlowEntry,
    verdict: TraceVerdict,
) {
    let Some(e) = begin(TraceKind::ReverseNat, verdict) else {
        return;
    };
    set_flow(e, ip, Some(l4));
    e.service = entry.service;
    e.backend = entry.backend;
    e.xlate_addr_be = entry.addr_be;
    e.xlate_port_be = entry.port_be;
    submit(ctx);
}

/// First half of an Encap event from tc: the flow as the bytes carry it
/// now (after any DNAT), before the outer headers go on. `true` if an
/// event was started; then call [`submit_tc`] after encapsulating, so
/// that the capture shows the packet as it leaves.
#[inline(never)]
pub fn encap_begin_tc(ctx: &TcContext, tunnel: &Tunnel) -> bool {
    let Some(e) = begin(TraceKind::Encap, TraceVerdict::Redirect) else {
        return false;
    };
    flow_from_packet(&TcPacket { ctx }, e);
    e.tunnel_be = tunnel.node_be;
    e.vni = tunnel.vni;
    true
}

/// Whether the configured filter lets `e` through.
#[inline(always)]
fn matches(cfg: &TraceConfig, e: &TraceEvent) -> bool {
    if cfg.flags & TraceConfig::FLAG_DROPS_ONLY != 0 && e.kind != TraceKind::Drop as u8 {
        return false;
    }
    if cfg.flags & TraceConfig::FLAG_SERVICE != 0 && e.service != cfg.service {
        // Events without a service id (the backend node sees a tunnelled
        // flow, not a service) match by the service's backend addresses.
        // SAFETY: plain-data values, only tested for presence.
        let known = e.service == 0
            && (unsafe { ADDRS.get(e.saddr_be) }.is_some()
                || unsafe { ADDRS.get(e.daddr_be) }.is_some());
        if !known {
            return false;
        }
    }
    if cfg.flags & TraceConfig::FLAG_CLIENT != 0 {
        let port = cfg.client_port_be;
        let src = e.saddr_be == cfg.client_addr_be && (port == 0 || e.sport_be == port);
        let dst = e.daddr_be == cfg.client_addr_be && (port == 0 || e.dport_be == port);
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
    fn len(&self) -> u32;
    fn ifindex(&self) -> u32;
    /// Copy `len` (1..=TRACE_CAPTURE_MAX) bytes from the start of the
    /// packet to `dst`; `false` if the helper refused.
    fn capture(&self, dst: *mut u8, len: u32) -> bool;
}

impl Source for XdpContext {
    const PROGRAM: TraceProgram = TraceProgram::XdpFromUnderlay;

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

#[inline(always)]
fn submit<C: Source>(ctx: &C) {
    let Some(cfg) = enabled() else {
        return;
    };
    let Some(s) = scratch() else {
        return;
    };
    if !matches(cfg, &s.event) {
        return;
    }
    // The event's time, taken by `begin`: one clock read per event.
    let now = s.event.timestamp_ns;
    if !within_rate(cfg, s, now) {
        lost(TraceLost::RateLimited);
        return;
    }
    let Some(mut rec) = RING.reserve::<TraceRecord>(0) else {
        lost(TraceLost::RingFull);
        return;
    };
    let len = ctx.len();
    let cap = if len > TRACE_CAPTURE_MAX as u32 {
        TRACE_CAPTURE_MAX as u32
    } else {
        len
    };
    let r = rec.as_mut_ptr();
    // SAFETY: `r` points at a reserved record of size_of::<TraceRecord>()
    // bytes that only this program writes until it submits or discards it.
    unsafe {
        (*r).event = s.event;
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
    rec.submit(0);
}

/// Write the event [`encap_begin_tc`] started.
#[inline(never)]
pub fn submit_tc(ctx: &TcContext) {
    submit(ctx)
}

/// The flow as the packet's bytes carry it now: for a drop, which may have
/// happened before (or because) parsing failed, and after NAT, which
/// leaves the parsed headers stale.
#[inline(always)]
fn flow_from_packet<P: Packet>(pkt: &P, e: &mut TraceEvent) {
    let Ok(ethertype) = pkt.load::<u16>(12) else {
        return;
    };
    if ethertype != ETH_P_IP_BE {
        return;
    }
    let Ok(ip) = pkt.load::<Ipv4Hdr>(ETH_HDR_LEN) else {
        return;
    };
    e.saddr_be = ip.saddr_be;
    e.daddr_be = ip.daddr_be;
    e.proto = ip.protocol;
    let ihl = usize::from(ip.version_ihl & 0x0f) * 4;
    if ihl < 20 || (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP) {
        return;
    }
    if let Ok(ports) = pkt.load::<[u16; 2]>(ETH_HDR_LEN + ihl) {
        e.sport_be = ports[0];
        e.dport_be = ports[1];
    }
}

/// A drop event (XDP), for the entry program's error path and for packets
/// answered instead of forwarded (ICMP fragmentation-needed).
#[inline(never)]
pub fn drop_xdp(ctx: &XdpContext, reason: DropReason, verdict: TraceVerdict) {
    let Some(e) = begin(TraceKind::Drop, verdict) else {
        return;
    };
    e.drop_reason = reason as u8;
    flow_from_packet(&XdpPacket { ctx }, e);
    submit(ctx);
}

/// A drop event (tc).
#[inline(never)]
pub fn drop_tc(ctx: &TcContext, reason: DropReason, verdict: TraceVerdict) {
    let Some(e) = begin(TraceKind::Drop, verdict) else {
        return;
    };
    e.drop_reason = reason as u8;
    flow_from_packet(&TcPacket { ctx }, e);
    submit(ctx);
}
