//! Map names, keys and values shared with user space.
//!
//! Map names are also the file names under a node's pin directory
//! (`/sys/fs/bpf/hive/<node>/`), so they are part of the on-disk interface
//! that lets a restarted agent find the maps the previous one left behind.
//!
//! How the maps fit together (see `docs/dataplane.md`):
//!
//! ```text
//! ServiceKey{addr,port,proto} --HIVE_SERVICES--> Frontend{service, target_port}
//! service ------------------------HIVE_RINGS---> Ring{offset, size}
//! offset + flow_hash % size ------HIVE_MAGLEV--> backend id
//! backend id ---------------------HIVE_BACKENDS-> Backend{addr, node, vni}
//! FlowKey ------------------------HIVE_CT------> FlowEntry (LRU conntrack)
//! task addr ----------------------HIVE_ENDPOINTS-> Endpoint{node, vni, ifindex}
//! node underlay addr -------------HIVE_PEERS---> Peer{mac}
//! ```
//!
//! Service and backend ids are dense slots allocated by user space, not
//! Swarm's string IDs; they index the per-CPU statistics arrays directly.

/// `PerCpuArray<u64>` indexed by `DropReason as u32`.
pub const DROP_COUNTERS: &str = "HIVE_DROPS";
/// `PerCpuArray<PacketCounter>` indexed by [`PacketCounterSlot`].
pub const PACKET_COUNTERS: &str = "HIVE_PACKETS";
/// `Array<NodeConfig>` with one entry: this node's identity.
pub const NODE_CONFIG: &str = "HIVE_NODE";
/// `HashMap<ServiceKey, Frontend>`: VIP:port and published ports.
pub const SERVICES: &str = "HIVE_SERVICES";
/// `Array<Ring>` indexed by service id.
pub const RINGS: &str = "HIVE_RINGS";
/// `Array<u32>` of backend ids: every service's Maglev lookup table,
/// each a contiguous segment `[offset, offset + size)`.
pub const MAGLEV: &str = "HIVE_MAGLEV";
/// `Array<Backend>` indexed by backend id.
pub const BACKENDS: &str = "HIVE_BACKENDS";
/// `LruHashMap<FlowKey, FlowEntry>`: connection tracking.
pub const CONNTRACK: &str = "HIVE_CT";
/// `HashMap<u32 /* task addr, network order */, Endpoint>`: every task on
/// every overlay network, local and remote.
pub const ENDPOINTS: &str = "HIVE_ENDPOINTS";
/// `HashMap<u32 /* underlay addr, network order */, Peer>`: the other nodes
/// VXLAN is accepted from and sent to.
pub const PEERS: &str = "HIVE_PEERS";
/// `Array<LabForward>`, one entry: the benchmark's floor forwarders (`xdp_lab_forward`,
/// `tc_lab_forward`, `xdp_lab_vxlan`, `xdp_lab_decap`) and the lab's switch
/// (`xdp_lab_switch`).
/// Without the `HIVE_` prefix the agent's loader never pins it.
pub const LAB_FORWARD: &str = "LAB_FORWARD";
/// `PerCpuArray<ServiceCounters>` indexed by service id.
pub const SERVICE_STATS: &str = "HIVE_SVC_STATS";
/// `PerCpuArray<ServiceCounters>` indexed by backend id.
pub const BACKEND_STATS: &str = "HIVE_BE_STATS";

/// Capacity of [`SERVICES`], [`RINGS`] and [`SERVICE_STATS`].
pub const MAX_SERVICES: u32 = 65_536;
/// Capacity of [`BACKENDS`] and [`BACKEND_STATS`].
pub const MAX_BACKENDS: u32 = 65_536;
/// Capacity of [`MAGLEV`]: 4 Mi slots (16 MiB), room for 10,000 services of
/// two backends (ring size 211) twice over during updates, or one service
/// with 40,000 backends.
pub const MAGLEV_SLOTS: u32 = 1 << 22;
/// Default capacity of [`CONNTRACK`]; user space may resize at load time.
pub const CONNTRACK_ENTRIES: u32 = 1 << 18;
/// Capacity of [`ENDPOINTS`].
pub const MAX_ENDPOINTS: u32 = 65_536;
/// Capacity of [`PEERS`].
pub const MAX_PEERS: u32 = 1_024;

/// Pin name of the embedded resolvers' ports: a task namespace's cookie
/// (`SO_NETNS_COOKIE`) to the port its resolver listens on at
/// [`EMBEDDED_RESOLVER`] (an LRU map: entries of namespaces gone without a
/// word age out).
pub const RESOLVER_PORTS: &str = "HIVE_RESOLVERS";
/// Capacity of [`RESOLVER_PORTS`].
pub const MAX_RESOLVERS: u32 = 65_536;
/// The address every task asks for names (Docker's), and the port it asks on.
pub const EMBEDDED_RESOLVER: [u8; 4] = [127, 0, 0, 11];
pub const DNS_PORT: u16 = 53;

/// IP protocol numbers hive balances.
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Packets and bytes seen at one point of a program.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct PacketCounter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<PacketCounter>() == 16);

/// Slots of [`PACKET_COUNTERS`].
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PacketCounterSlot {
    /// Every frame `xdp_from_underlay` saw.
    UnderlayRx = 0,
    /// IPv4 frames `xdp_from_underlay` parsed successfully.
    UnderlayIpv4 = 1,
    /// Packets moved straight into a local task's namespace
    /// (`bpf_redirect_peer`), past the node's IP stack: decapsulated ones by
    /// `tc_from_underlay`, those of another local task by `tc_from_task`.
    TaskHandoff = 2,
    /// Frames to one of the node's control-plane ports
    /// ([`NodeConfig::control_ports`]), passed to the kernel unbalanced.
    ControlPort = 3,
    /// Direct return (`docs/dsr.md`), on the backend's node: replies sent
    /// straight to the client with the ingress node's address as source.
    DirectReturn = 4,
    /// Direct return, on the ingress node: client packets tunnelled with
    /// the direct-return mark (their replies will not come back here).
    DirectIngress = 5,
}

impl PacketCounterSlot {
    pub const SLOTS: u32 = 16;
}

/// This node, as the programs need to know it. One entry, index 0.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeConfig {
    /// The node's underlay IPv4 address; published ports answer on it.
    pub underlay_addr_be: u32,
    /// ifindex of the underlay NIC (where `xdp_from_underlay` is attached).
    pub underlay_ifindex: u32,
    /// Cluster-wide seed of [`crate::flow_hash`]; equal on every node so that
    /// every node picks the same backend for the same flow.
    pub hash_seed: u32,
    /// MAC address of the underlay NIC.
    pub underlay_mac: [u8; 6],
    /// VXLAN destination UDP port (4789 unless configured).
    pub vxlan_port_be: u16,
    /// MTU of task interfaces: underlay MTU minus the 50 bytes of VXLAN.
    /// TCP MSS is clamped to `overlay_mtu - 40`; larger UDP/ICMP packets
    /// that must be tunnelled get an ICMP fragmentation-needed.
    pub overlay_mtu: u16,
    /// [`NodeConfig::FLAG_*`] bits.
    pub flags: u16,
    /// The ports this node's own control plane listens on (cluster API and Raft, gossip,
    /// metrics): `xdp_from_underlay` never balances a packet addressed to one, whatever
    /// [`SERVICES`] holds (issue 14). Unused slots have port 0.
    pub control_ports: [ControlPort; MAX_CONTROL_PORTS],
}
const _: () = assert!(core::mem::size_of::<NodeConfig>() == 56);

/// Capacity of [`NodeConfig::control_ports`].
pub const MAX_CONTROL_PORTS: usize = 8;

/// A port of the node's own control plane, as `xdp_from_underlay` matches it.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlPort {
    /// Destination port (network order); 0 for an unused slot.
    pub port_be: u16,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<ControlPort>() == 4);

impl NodeConfig {
    /// Set once user space has filled the entry; until then every program
    /// passes traffic untouched.
    pub const FLAG_CONFIGURED: u16 = 1 << 0;
    /// Mesh mode (`docs/dsr.md`): new TCP flows to a remote backend are
    /// balanced for direct return (`--mesh-mode dsr` or `hybrid`).
    pub const FLAG_DIRECT_RETURN_TCP: u16 = 1 << 1;
    /// Mesh mode: new UDP flows too (`--mesh-mode dsr`).
    pub const FLAG_DIRECT_RETURN_UDP: u16 = 1 << 2;
}

/// A service front end: a VIP:port, or a published port on the node's
/// underlay address (`addr_be == 0`).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    /// VIP in network order, or 0 for a published (ingress) port.
    pub addr_be: u32,
    pub port_be: u16,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<ServiceKey>() == 8);

/// What a [`ServiceKey`] leads to.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontend {
    /// Service id: index into [`RINGS`] and [`SERVICE_STATS`].
    pub service: u32,
    /// Port the tasks listen on (network order).
    pub target_port_be: u16,
    /// [`Frontend::FLAG_*`] bits.
    pub flags: u16,
}
const _: () = assert!(core::mem::size_of::<Frontend>() == 8);

impl Frontend {
    /// A published port (north-south) rather than a VIP (east-west).
    pub const FLAG_PUBLISHED: u16 = 1 << 0;
}

/// Where a service's Maglev table lives in [`MAGLEV`]. User space replaces a
/// service's table by writing a new segment and then this one entry, so a
/// packet sees either the old table or the new one, never a mix.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    /// First slot of the table in [`MAGLEV`].
    pub offset: u32,
    /// Table size M: a prime at least 100 × backends; 0 = no backends.
    pub size: u32,
}
const _: () = assert!(core::mem::size_of::<Ring>() == 8);

/// One backend: a task's address on the service's network.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// Task address (network order).
    pub addr_be: u32,
    /// Underlay address of the node the task runs on (network order).
    pub node_be: u32,
    /// VXLAN network identifier of the task's network.
    pub vni: u32,
    /// [`Backend::FLAG_*`] bits.
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<Backend>() == 16);

impl Backend {
    /// The task runs on this node: deliver locally, no tunnel.
    pub const FLAG_LOCAL: u32 = 1 << 0;
    /// No ring names this backend any more (its task was removed or
    /// replaced, or its address or node changed): its established flows
    /// drain, but a new connection whose `Forward` entry still names it is
    /// balanced afresh. User space sets it on the id it retires, after the
    /// flip; a reused id is overwritten whole.
    pub const FLAG_DRAINING: u32 = 1 << 1;
}

/// What a conntrack entry is for; part of [`FlowKey`].
#[repr(u8)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FlowKind {
    /// At the node that balanced the flow, keyed by the flow as the client
    /// sent it: which backend it was given.
    Forward = 1,
    /// At the node that balanced the flow, keyed by the backend's reply
    /// tuple: which service address to restore (reverse NAT).
    ReverseNat = 2,
    /// At the backend's node when the flow came through a tunnel from an
    /// external client, keyed by the reply tuple: which node to tunnel the
    /// replies back to.
    Tunnel = 3,
}

/// Conntrack key: a directed 5-tuple plus the entry's kind.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub saddr_be: u32,
    pub daddr_be: u32,
    pub sport_be: u16,
    pub dport_be: u16,
    pub proto: u8,
    /// A [`FlowKind`] as `u8`.
    pub kind: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 16);

/// TCP states conntrack tells apart (enough to pick a timeout).
#[repr(u8)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TcpState {
    /// Not TCP, or TCP not yet classified.
    None = 0,
    SynSent = 1,
    Established = 2,
    /// A FIN was seen in either direction.
    Closing = 3,
    /// An RST was seen; the entry is forgotten after a short timeout.
    Reset = 4,
}

/// Conntrack value. Which fields matter depends on the key's [`FlowKind`].
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowEntry {
    /// `bpf_ktime_get_coarse_ns()` (`CLOCK_MONOTONIC_COARSE`) of the last
    /// packet; idle entries expire by
    /// [`TcpState`]/protocol timeout and are then treated as absent.
    pub last_seen_ns: u64,
    /// Forward: chosen backend address. ReverseNat: the service address to
    /// restore as the reply's source (VIP, or the node's underlay address).
    pub addr_be: u32,
    /// Forward: the backend's node. Tunnel: the node to tunnel replies to.
    pub node_be: u32,
    /// VNI for the tunnel, when one is used.
    pub vni: u32,
    /// Service id (statistics).
    pub service: u32,
    /// Backend id (statistics).
    pub backend: u32,
    /// Forward: backend port. ReverseNat: the service port to restore.
    pub port_be: u16,
    /// A [`TcpState`] as `u8`.
    pub tcp_state: u8,
    /// [`FlowEntry::FLAG_*`] bits.
    pub flags: u8,
    /// ReverseNat of a north-south flow: the L2 next hop towards the client
    /// (the source MAC of the client's first packet), for `XDP_TX`. Tunnel
    /// of a direct-return flow with [`FlowEntry::FLAG_NEXT_HOP`]: this node's
    /// next hop towards the client.
    pub client_mac: [u8; 6],
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FlowEntry>() == 40);

impl FlowEntry {
    /// ReverseNat: the client is outside the mesh; replies leave through
    /// the underlay NIC towards `client_mac`.
    pub const FLAG_NORTH_SOUTH: u8 = 1 << 0;
    /// Forward/ReverseNat: the backend is on another node.
    pub const FLAG_REMOTE: u8 = 1 << 1;
    /// ReverseNat: the client is the backend itself (a task that reached
    /// its own service's VIP). The flow runs VIP:client-port ↔ task:target
    /// port inside the task, so the reply's destination (the VIP) is turned
    /// back into the task's own address as well.
    pub const FLAG_HAIRPIN: u8 = 1 << 2;
    /// Direct return (`docs/dsr.md`). Forward (ingress node): the flow was
    /// tunnelled with the direct-return mark and has no `ReverseNat` entry;
    /// it keeps that path whatever the mesh mode becomes. Tunnel (backend's
    /// node): replies leave straight to the client, with `addr_be:port_be`
    /// (the ingress node's address and published port) as their source.
    pub const FLAG_DIRECT_RETURN: u8 = 1 << 3;
    /// Tunnel of a direct-return flow (backend's node): `client_mac` holds the
    /// L2 next hop towards the client, as this node's FIB and neighbour table
    /// gave it for an earlier reply (`docs/dsr.md`, "The reply's next hop").
    /// Good until the entry's next refresh, at most a second of traffic, which
    /// clears it.
    pub const FLAG_NEXT_HOP: u8 = 1 << 4;
}

/// A task on an overlay network.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// Underlay address of the task's node (network order).
    pub node_be: u32,
    /// VNI of the task's network.
    pub vni: u32,
    /// Local tasks: ifindex of the host side of the task's veth; 0 otherwise.
    pub ifindex: u32,
    /// [`Endpoint::FLAG_*`] bits.
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<Endpoint>() == 16);

impl Endpoint {
    pub const FLAG_LOCAL: u32 = 1 << 0;
}

/// The MAC of a task's interface with address `addr_be` (network order):
/// `02:42` and the address's four bytes, as Docker derives a container's
/// MAC from its IP (libnetwork `GenerateMACFromIP`). hive gives every task
/// interface this MAC, so the programs know it from the address alone.
#[inline(always)]
pub const fn task_mac(addr_be: u32) -> [u8; 6] {
    let [a, b, c, d] = addr_be.to_ne_bytes();
    [0x02, 0x42, a, b, c, d]
}

/// Another node of the overlay.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// MAC address of the peer's underlay NIC: the outer destination MAC of
    /// VXLAN packets sent to it (the lab's underlay is one L2 segment; a
    /// routed underlay would put the gateway's MAC here).
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<Peer>() == 8);

/// Per-service and per-backend counters.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    pub packets: u64,
    pub bytes: u64,
    /// Flows balanced (new conntrack Forward entries).
    pub new_flows: u64,
}
const _: () = assert!(core::mem::size_of::<ServiceCounters>() == 24);

/// How many backend nodes [`LabForward`] can alternate between.
pub const LAB_FORWARD_BACKENDS: usize = 2;

/// One hop of the benchmark's floor of a path through an ingress node
/// (`xdp_lab_forward`, `tc_lab_forward`, `xdp_lab_vxlan`, `xdp_lab_decap`; never loaded
/// by the agent; `docs/dsr.md`, "The floor of a path through the ingress node" and "A
/// floor with hive's tunnel"): a TCP frame of `addr_be:port_be` leaves with only its
/// Ethernet addresses rewritten (`xdp_lab_forward`, `tc_lab_forward`) or wrapped in
/// hive's VXLAN headers (`xdp_lab_vxlan`); `xdp_lab_decap` unwraps the VXLAN frames to
/// `addr_be:port_be`. `xdp_lab_switch`, on a bridge port of the lab's underlay, sends
/// frames to `to[0]` to the bridge port `ifindex` (`docs/dsr.md`, "The lab's wire").
/// One entry, index 0; all zero forwards nothing.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct LabForward {
    /// The address matched: the frame's destination, or its source with
    /// [`Self::MATCH_SOURCE`]. For `xdp_lab_decap`, the node's own underlay address.
    pub addr_be: u32,
    /// The TCP port matched, on the same side as the address. For `xdp_lab_decap`, the
    /// VXLAN (UDP) port.
    pub port_be: u16,
    /// How many of `to` are in use (1..=[`LAB_FORWARD_BACKENDS`]); 0 forwards nothing.
    pub backends: u16,
    /// The frame's new source MAC (`xdp_lab_vxlan`: the outer one): the sending node's,
    /// so that the underlay's bridge never learns another member's MAC on this port.
    /// `xdp_lab_decap` leaves the source MAC alone.
    pub from: [u8; 6],
    /// The new destination MACs (`xdp_lab_vxlan`: the outer one); a flow's is picked by
    /// the client port's low bit. `xdp_lab_decap` writes `to[0]`, the node's own MAC, as
    /// the inner frame's destination, as hive's decapsulation does.
    pub to: [[u8; 6]; LAB_FORWARD_BACKENDS],
    /// [`Self::MATCH_SOURCE`] or 0 (match the destination).
    pub flags: u8,
    /// How the tc program sends the frame on ([`Self::OUT_SAME`], [`Self::OUT_PEER`],
    /// [`Self::OUT_EGRESS`]); XDP always sends it back out (`XDP_TX`).
    pub out: u8,
    /// The device of [`Self::OUT_PEER`] and [`Self::OUT_EGRESS`]; `xdp_lab_switch`'s
    /// destination bridge port.
    pub ifindex: u32,
    /// `xdp_lab_vxlan` only: the underlay addresses of the nodes of `to`, the outer
    /// destination, picked with the MAC.
    pub nodes_be: [u32; LAB_FORWARD_BACKENDS],
    /// `xdp_lab_vxlan` only: the sending node's underlay address, the outer source.
    pub underlay_be: u32,
    /// `xdp_lab_vxlan` only: the VNI written in the VXLAN header.
    pub vni: u32,
    /// `xdp_lab_vxlan` only: the VXLAN port, the outer UDP destination.
    pub vxlan_port_be: u16,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<LabForward>() == 52);

impl LabForward {
    /// Match the frame's source address and port (a task's replies), not its destination.
    pub const MATCH_SOURCE: u8 = 1;
    /// Out of the device the frame came in by (as `XDP_TX`).
    pub const OUT_SAME: u8 = 0;
    /// Into the namespace at the other end of the veth `ifindex` (`bpf_redirect_peer`).
    pub const OUT_PEER: u8 = 1;
    /// Out of the device `ifindex`.
    pub const OUT_EGRESS: u8 = 2;
}

#[cfg(feature = "user")]
mod pod {
    use super::*;

    /// `aya::Pod` for ABI types.
    macro_rules! pod {
        ($($ty:ty),+ $(,)?) => {$(
            // SAFETY: `repr(C)`, padding-free (size assert next to the type,
            // explicit `_pad` fields) and valid for any bit pattern.
            unsafe impl aya::Pod for $ty {}
        )+};
    }

    pod!(
        PacketCounter,
        NodeConfig,
        ControlPort,
        ServiceKey,
        Frontend,
        Ring,
        Backend,
        FlowKey,
        FlowEntry,
        Endpoint,
        Peer,
        ServiceCounters,
        LabForward,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn field_offsets_match_the_c_layout() {
        assert_eq!(offset_of!(NodeConfig, underlay_mac), 12);
        assert_eq!(offset_of!(NodeConfig, vxlan_port_be), 18);
        assert_eq!(offset_of!(NodeConfig, flags), 22);
        assert_eq!(offset_of!(NodeConfig, control_ports), 24);
        assert_eq!(offset_of!(ControlPort, proto), 2);
        assert_eq!(offset_of!(ServiceKey, proto), 6);
        assert_eq!(offset_of!(FlowKey, proto), 12);
        assert_eq!(offset_of!(FlowKey, kind), 13);
        assert_eq!(offset_of!(FlowEntry, port_be), 28);
        assert_eq!(offset_of!(FlowEntry, client_mac), 32);
    }
}
