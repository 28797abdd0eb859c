//! The two-node world of the `BPF_PROG_RUN` fixtures and the program-cost
//! benchmark: client C (outside) → node A and node B; tasks on network VNI
//! 4097; published port 8080 (service 1) targets port 80 of its tasks; VIP
//! 10.2.0.100:80 (service 2). Maps are filled as user space would.

use std::net::{Ipv4Addr, SocketAddrV4};

use hive_common::maps::{
    Backend, Endpoint, FlowKey, FlowKind, Frontend, IPPROTO_TCP, IPPROTO_UDP, NodeConfig, Peer,
    Ring, ServiceKey,
};

use crate::{
    packet::{Mac, PacketBuilder},
    prog_run::ProgRun,
};

pub const XDP: &str = "xdp_from_underlay";
pub const TC: &str = "tc_from_task";
pub const TC_UNDERLAY: &str = "tc_from_underlay";
pub const FLOOR: &str = "xdp_floor";
pub const LAB_FORWARD: &str = "xdp_lab_forward";
pub const TC_LAB_FORWARD: &str = "tc_lab_forward";
pub const LAB_VXLAN: &str = "xdp_lab_vxlan";
pub const LAB_DECAP: &str = "xdp_lab_decap";
pub const LAB_SWITCH: &str = "xdp_lab_switch";

pub const NODE_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const NODE_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const MAC_A: Mac = [0x02, 0, 0, 0, 0, 0xa1];
pub const MAC_B: Mac = [0x02, 0, 0, 0, 0, 0xb2];
pub const MAC_ROUTER: Mac = [0x02, 0, 0, 0, 0, 0xee];
pub const MAC_TASK: Mac = [0x02, 0, 0, 0, 0x7a, 0x51];
pub const MAC_VETH: Mac = [0x02, 0, 0, 0, 0x7a, 0x52];
pub const UNDERLAY_IFINDEX: u32 = 2;
pub const VXLAN_PORT: u16 = 4789;
pub const OVERLAY_MTU: u16 = 1450;
pub const VNI: u32 = 4097;
pub const SEED: u32 = 7;

pub const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), 40000);
pub const PUBLISHED: u16 = 8080;
pub const TARGET: u16 = 80;
pub const SVC_PUBLISHED: u32 = 1;
pub const SVC_VIP: u32 = 2;
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 100);

/// Task on B (backend id 5), task on A (id 6), another task on B (id 7).
pub const T_REMOTE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
pub const T_LOCAL: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 6);
pub const T_OTHER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 7);
pub const BE_REMOTE: u32 = 5;
pub const BE_LOCAL: u32 = 6;
pub const BE_OTHER: u32 = 7;
/// A local client task X (on A) for east-west paths.
pub const X: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 9), 33000);
pub const RING_SIZE: u32 = 7;
/// Host sides of the local tasks' veths: T_REMOTE's on B, T_LOCAL's and
/// X's on A.
pub const VETH_T_REMOTE: u32 = 35;
pub const VETH_T_LOCAL: u32 = 36;
pub const VETH_X: u32 = 39;

pub fn be(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

pub fn node(addr: Ipv4Addr, mac: Mac) -> NodeConfig {
    NodeConfig {
        underlay_addr_be: be(addr),
        underlay_ifindex: UNDERLAY_IFINDEX,
        hash_seed: SEED,
        underlay_mac: mac,
        vxlan_port_be: VXLAN_PORT.to_be(),
        overlay_mtu: OVERLAY_MTU,
        flags: NodeConfig::FLAG_CONFIGURED,
        control_ports: Default::default(),
    }
}

pub fn key(src: SocketAddrV4, dst: SocketAddrV4, proto: u8, kind: FlowKind) -> FlowKey {
    FlowKey {
        saddr_be: be(*src.ip()),
        daddr_be: be(*dst.ip()),
        sport_be: src.port().to_be(),
        dport_be: dst.port().to_be(),
        proto,
        kind: kind as u8,
        _pad: [0; 2],
    }
}

/// The harness with node A configured: published port 8080 (TCP and UDP)
/// and VIP 10.2.0.100:80 (TCP), both on a ring that maps every slot to
/// `backend`; peer B; endpoints for every task.
pub fn node_a(backend: u32) -> ProgRun {
    let mut h = ProgRun::load().expect("load the embedded object");
    let mut m = h.maps();
    m.set_node(&node(NODE_A, MAC_A)).expect("node");
    m.set_peer(
        be(NODE_B),
        Peer {
            mac: MAC_B,
            _pad: [0; 2],
        },
    )
    .expect("peer");
    for proto in [IPPROTO_TCP, IPPROTO_UDP] {
        let published = ServiceKey {
            addr_be: 0,
            port_be: PUBLISHED.to_be(),
            proto,
            _pad: 0,
        };
        let fe = Frontend {
            service: SVC_PUBLISHED,
            target_port_be: TARGET.to_be(),
            flags: Frontend::FLAG_PUBLISHED,
        };
        m.set_service(published, fe).expect("published service");
    }
    let vip = ServiceKey {
        addr_be: be(VIP),
        port_be: TARGET.to_be(),
        proto: IPPROTO_TCP,
        _pad: 0,
    };
    m.set_service(
        vip,
        Frontend {
            service: SVC_VIP,
            target_port_be: TARGET.to_be(),
            flags: 0,
        },
    )
    .expect("vip");
    m.set_service(
        ServiceKey {
            addr_be: be(VIP),
            port_be: 0,
            proto: 0,
            _pad: 0,
        },
        // As user space writes it: the marker belongs to the VIP's balancer.
        Frontend {
            service: SVC_VIP,
            target_port_be: 0,
            flags: 0,
        },
    )
    .expect("vip marker");
    m.set_ring(
        SVC_PUBLISHED,
        Ring {
            offset: 0,
            size: RING_SIZE,
        },
    )
    .expect("ring");
    m.set_ring(
        SVC_VIP,
        Ring {
            offset: 100,
            size: RING_SIZE,
        },
    )
    .expect("ring");
    m.set_maglev(0, &[backend; RING_SIZE as usize])
        .expect("maglev");
    m.set_maglev(100, &[backend; RING_SIZE as usize])
        .expect("maglev");
    let remote = |addr| Backend {
        addr_be: be(addr),
        node_be: be(NODE_B),
        vni: VNI,
        flags: 0,
    };
    m.set_backend(BE_REMOTE, remote(T_REMOTE)).expect("backend");
    m.set_backend(BE_OTHER, remote(T_OTHER)).expect("backend");
    m.set_backend(
        BE_LOCAL,
        Backend {
            addr_be: be(T_LOCAL),
            node_be: be(NODE_A),
            vni: VNI,
            flags: Backend::FLAG_LOCAL,
        },
    )
    .expect("backend");
    m.set_endpoint(be(T_REMOTE), endpoint(NODE_B, None))
        .expect("endpoint");
    m.set_endpoint(be(T_OTHER), endpoint(NODE_B, None))
        .expect("endpoint");
    m.set_endpoint(be(T_LOCAL), endpoint(NODE_A, Some(VETH_T_LOCAL)))
        .expect("endpoint");
    m.set_endpoint(be(*X.ip()), endpoint(NODE_A, Some(VETH_X)))
        .expect("endpoint");
    h
}

/// A task on network VNI on `node`; `local_veth` is the host side of its
/// veth when it runs on the node under test.
fn endpoint(node: Ipv4Addr, local_veth: Option<u32>) -> Endpoint {
    Endpoint {
        node_be: be(node),
        vni: VNI,
        ifindex: local_veth.unwrap_or(0),
        flags: if local_veth.is_some() {
            Endpoint::FLAG_LOCAL
        } else {
            0
        },
    }
}

/// Node B's view: T_REMOTE is local there, A is the peer.
pub fn node_b() -> ProgRun {
    let mut h = ProgRun::load().expect("load the embedded object");
    let mut m = h.maps();
    m.set_node(&node(NODE_B, MAC_B)).expect("node");
    m.set_peer(
        be(NODE_A),
        Peer {
            mac: MAC_A,
            _pad: [0; 2],
        },
    )
    .expect("peer");
    m.set_endpoint(be(T_REMOTE), endpoint(NODE_B, Some(VETH_T_REMOTE)))
        .expect("endpoint");
    m.set_endpoint(be(*X.ip()), endpoint(NODE_A, None))
        .expect("endpoint");
    h
}

pub fn published() -> SocketAddrV4 {
    SocketAddrV4::new(NODE_A, PUBLISHED)
}

/// A client's TCP segment to A's published port, as the router delivers it.
pub fn client_tcp(flags: u8) -> PacketBuilder {
    PacketBuilder::tcp(CLIENT, published())
        .macs(MAC_ROUTER, MAC_A)
        .flags(flags)
}
