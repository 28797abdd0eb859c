//! The floor of every path through the ingress node: the load of the connection and bulk
//! runs sent through n1 to the kernel path's tasks by hops that only rewrite Ethernet
//! addresses (`hive_lab::floor_forward`), with no lookup, NAT, tunnel or state
//! (`docs/dsr.md`, "The floor of a path through the ingress node"). Each task holds n1's
//! address itself, as a direct-routing backend holds its virtual address, and answers the
//! client straight from its node. What a mesh through n1 costs beyond its floor is its
//! own; what the floor costs beyond no mesh is the lab's hop.
//!
//! Five floors, by the hook on n1 and the way into the task on the backend's node:
//!
//! - `floor`: n1 sends each client frame on from XDP (`XDP_TX`); the backend's node
//!   routes it into its task, as it routes no mesh's (an `ip rule` for n1's address),
//!   and routes the task's replies back to the client.
//! - `floor-tc`: the same from tc ingress on n1 (`bpf_redirect` to the same device).
//! - `floor-min`: n1 from XDP; the backend's node hands the frame into the task from tc
//!   (`bpf_redirect_peer`) and sends the task's replies out of its `eth0` from tc on the
//!   task's veth: the fewest hops any path through n1 can take here, hive's own way into
//!   and out of a task with no program work.
//! - `floor-min-tc`: `floor-min` with n1's hop from tc.
//! - `floor-vxlan`: `floor-min` with hive's tunnel between n1 and the backend's node: n1
//!   wraps each client frame in the VXLAN headers hive's ingress writes (from XDP,
//!   `XDP_TX`); XDP on the backend's `eth0` unwraps it and passes it to the tc hop into
//!   the task, as hive's own programs do on both nodes without their lookups, conntrack,
//!   NAT or MSS clamp (`docs/dsr.md`, "A floor with hive's tunnel"). No clamp is needed:
//!   the task's MTU is the overlay's (`kernel_path`), so its SYN-ACK holds the client's
//!   segments to what fits the underlay with the 50 bytes of VXLAN, as on every path.

use std::net::Ipv4Addr;

use hive_lab::{
    Lab,
    floor_forward::{self, Attached, FloorForwardError, Forward, Hook, Out, Tunnel},
};

use crate::{
    kernel_path::{KernelPath, KernelPathError, TASK_VETH},
    kernel_runs::{Load, RunError, measure},
    report::PathFigures,
};

/// Which floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    /// `floor`: n1's hop from XDP; the backend's node routes the frames.
    Routed,
    /// `floor-tc`: n1's hop from tc; the backend's node routes the frames.
    RoutedTc,
    /// `floor-min`: n1's hop from XDP; the backend's node hands them in from tc.
    Min,
    /// `floor-min-tc`: n1's hop from tc; the backend's node hands them in from tc.
    MinTc,
    /// `floor-vxlan`: [`Floor::Min`] through hive's tunnel.
    Vxlan,
}

impl Floor {
    /// Every floor, in the order of a round: `floor-vxlan` right after `floor-min`, the
    /// floor it differs from by the tunnel alone.
    pub const ALL: [Floor; 5] = [
        Floor::Routed,
        Floor::RoutedTc,
        Floor::Min,
        Floor::Vxlan,
        Floor::MinTc,
    ];

    /// The row's name.
    pub fn name(self) -> &'static str {
        match self {
            Floor::Routed => "floor",
            Floor::RoutedTc => "floor-tc",
            Floor::Min => "floor-min",
            Floor::MinTc => "floor-min-tc",
            Floor::Vxlan => "floor-vxlan",
        }
    }

    /// The hook of n1's hop.
    fn ingress(self) -> Hook {
        match self {
            Floor::Routed | Floor::Min => Hook::Xdp,
            Floor::RoutedTc | Floor::MinTc => Hook::Tc,
            Floor::Vxlan => Hook::XdpVxlan,
        }
    }

    /// Whether the backend's node hands the frames into the task from tc (else it routes
    /// them).
    fn handoff(self) -> bool {
        !matches!(self, Floor::Routed | Floor::RoutedTc)
    }
}

/// The ingress node.
const INGRESS: &str = "n1";
/// The connection runs' port: nginx's, on n1's address in every task.
const HTTP_PORT: u16 = 80;
/// `floor-vxlan`'s VXLAN port: not the kernel path's (4789), so that no frame the floor's
/// XDP on the backend's node misses reaches the kernel's VXLAN device instead.
const TUNNEL_PORT: u16 = 4799;
/// `floor-vxlan`'s VNI (nothing reads it: written as hive writes one).
const TUNNEL_VNI: u32 = 4097;

/// New connections and keep-alive requests through `floor` to the two backends.
pub fn connections(
    lab: &Lab,
    path: &KernelPath<'_>,
    floor: Floor,
    load: &Load,
) -> Result<PathFigures, RunError> {
    let url = format!("http://{}:{HTTP_PORT}/", path.ingress_addr());
    let (keep_alive, new_connections) = through(lab, path, floor, HTTP_PORT, false, || {
        measure(lab, &url, load)
    })?;
    let name = floor.name();
    let work = if floor == Floor::Vxlan {
        "hive's VXLAN tunnel"
    } else {
        "MACs rewritten"
    };
    eprintln!(
        "  {name:<12} n1's hop:   {:>8.0} req/s, {:>7.0} new conn/s ({work}, nothing else)",
        keep_alive.requests_per_sec, new_connections.requests_per_sec,
    );
    Ok(PathFigures {
        path: name.to_string(),
        services: 0,
        keep_alive,
        new_connections,
        add_one_service_ms: None,
    })
}

/// `measured` with `floor` in place for `port` (to the bulk backend only, with `bulk`),
/// and everything it put in place removed again, also on failure.
pub fn through<T, E>(
    lab: &Lab,
    path: &KernelPath<'_>,
    floor: Floor,
    port: u16,
    bulk: bool,
    measured: impl FnOnce() -> Result<T, E>,
) -> Result<T, E>
where
    E: From<FloorForwardError> + From<KernelPathError>,
{
    let hops = attach(lab, path, floor, port, bulk)?;
    let routed = !floor.handoff();
    if routed && let Err(err) = path.route_floor(bulk) {
        let _ = path.unroute_floor(bulk);
        return Err(err.into());
    }
    let result = measured();
    drop(hops);
    let unrouted = if routed {
        path.unroute_floor(bulk)
    } else {
        Ok(())
    };
    let value = result?;
    unrouted?;
    Ok(value)
}

/// Every hop of `floor`, attached; they detach when the list is dropped (also when a
/// later one fails to attach).
fn attach(
    lab: &Lab,
    path: &KernelPath<'_>,
    floor: Floor,
    port: u16,
    bulk: bool,
) -> Result<Vec<Attached>, FloorForwardError> {
    let serving = path.serving(bulk);
    let addr = path.ingress_addr();
    let backend_macs = serving
        .iter()
        .map(|(node, _)| floor_forward::member_mac(lab, node))
        .collect::<Result<Vec<_>, _>>()?;
    let backend_addrs = serving
        .iter()
        .map(|(node, _)| lab.node_addr(node))
        .collect::<Result<Vec<_>, _>>()?;
    let tunnel = (floor == Floor::Vxlan).then(|| Tunnel {
        source: addr,
        nodes: backend_addrs.clone(),
        port: TUNNEL_PORT,
        vni: TUNNEL_VNI,
    });
    let mut hops = vec![floor_forward::attach(
        lab,
        &Forward {
            node: INGRESS,
            device: "eth0",
            hook: floor.ingress(),
            addr,
            port,
            match_source: false,
            from: floor_forward::member_mac(lab, INGRESS)?,
            to: backend_macs.clone(),
            out: Out::Same,
            tunnel,
        },
    )?];
    if !floor.handoff() {
        return Ok(hops);
    }
    let client = floor_forward::member_mac(lab, "client")?;
    for (((node, task_mac), node_mac), node_addr) in
        serving.into_iter().zip(backend_macs).zip(backend_addrs)
    {
        if floor == Floor::Vxlan {
            hops.push(decap(lab, node, node_addr, node_mac)?);
        }
        // Into the task: addressed to its MAC, from its node's.
        hops.push(floor_forward::attach(
            lab,
            &Forward {
                node,
                device: "eth0",
                hook: Hook::Tc,
                addr,
                port,
                match_source: false,
                from: node_mac,
                to: vec![task_mac],
                out: Out::Peer(TASK_VETH.to_owned()),
                tunnel: None,
            },
        )?);
        // Its replies: straight out of the node to the client.
        hops.push(floor_forward::attach(
            lab,
            &Forward {
                node,
                device: TASK_VETH,
                hook: Hook::Tc,
                addr,
                port,
                match_source: true,
                from: node_mac,
                to: vec![client],
                out: Out::Egress("eth0".to_owned()),
                tunnel: None,
            },
        )?);
    }
    Ok(hops)
}

/// `floor-vxlan`'s XDP on `node`'s `eth0`: the tunnel's frames to `node_addr` lose their
/// outer headers and go on addressed to `node_mac`.
fn decap(
    lab: &Lab,
    node: &str,
    node_addr: Ipv4Addr,
    node_mac: [u8; 6],
) -> Result<Attached, FloorForwardError> {
    floor_forward::attach(
        lab,
        &Forward {
            node,
            device: "eth0",
            hook: Hook::XdpDecap,
            addr: node_addr,
            port: TUNNEL_PORT,
            match_source: false,
            from: node_mac,
            to: vec![node_mac],
            out: Out::Same,
            tunnel: None,
        },
    )
}
