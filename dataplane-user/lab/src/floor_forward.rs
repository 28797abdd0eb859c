//! `xdp_lab_forward` and `tc_lab_forward` on a lab node: the hops of the floor of any path
//! through an ingress node (`docs/dsr.md`, "The floor of a path through the ingress
//! node").
//!
//! Each attached [`Forward`] sends the TCP frames of one address and port on with only
//! their Ethernet addresses rewritten: from XDP back out of the same veth, or from tc
//! ingress out of the same device, into a task's namespace or out of another device.
//! Through hive's tunnel instead ([`Hook::XdpVxlan`], [`Hook::XdpDecap`]; `docs/dsr.md`,
//! "A floor with hive's tunnel"), the frames leave from XDP in hive's VXLAN headers and
//! are unwrapped by XDP on the backend's node.
//! Where the frames go after that is the caller's to arrange (the kernel path's tasks
//! hold the ingress node's address, `hive-mesh-bench`). Dropping the returned
//! [`Attached`] detaches the program; nothing is pinned, so a process that dies leaves
//! nothing behind.

use std::net::Ipv4Addr;

use aya::{
    Ebpf,
    maps::Array,
    programs::{LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode, tc::TcAttachOptions},
};
use hive_common::maps::{LAB_FORWARD, LAB_FORWARD_BACKENDS, LabForward};
use hive_dataplane::{netns, programs::EBPF_OBJECT};

use crate::{Lab, LabError, topology::parse_mac};

/// Where on its device a [`Forward`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `xdp_lab_forward`, driver mode; the frame goes back out with `XDP_TX`.
    Xdp,
    /// `tc_lab_forward` on tc ingress (tcx); the frame goes on as [`Out`] says.
    Tc,
    /// `xdp_lab_vxlan`, driver mode: the frame goes back out with `XDP_TX` in hive's VXLAN
    /// headers, as [`Forward::tunnel`] says.
    XdpVxlan,
    /// `xdp_lab_decap`, driver mode: VXLAN frames to `addr:port` (UDP) lose their outer
    /// headers, the inner frame is addressed to `to[0]` (the node's own MAC) and passed on.
    XdpDecap,
}

impl Hook {
    /// The program's name in the object.
    pub fn program(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp_lab_forward",
            Hook::Tc => "tc_lab_forward",
            Hook::XdpVxlan => "xdp_lab_vxlan",
            Hook::XdpDecap => "xdp_lab_decap",
        }
    }
}

/// The outer headers of [`Hook::XdpVxlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// The sending node's underlay address.
    pub source: Ipv4Addr,
    /// The underlay address of the node of each of [`Forward::to`], in the same order.
    pub nodes: Vec<Ipv4Addr>,
    /// The VXLAN port (UDP destination).
    pub port: u16,
    pub vni: u32,
}

/// Where a tc [`Forward`] sends a frame (XDP always sends it back out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Out of the device it came in by.
    Same,
    /// Into the namespace at the other end of this veth (`bpf_redirect_peer`).
    Peer(String),
    /// Out of this device.
    Egress(String),
}

/// One hop: on `node`'s `device`, TCP frames whose destination (or, with
/// `match_source`, source) is `addr:port` leave with source MAC `from` and destination
/// MAC `to[client port's low bit]`.
#[derive(Debug, Clone)]
pub struct Forward<'a> {
    /// The lab member it runs on.
    pub node: &'a str,
    /// The device in that member's namespace it is attached to.
    pub device: &'a str,
    pub hook: Hook,
    pub addr: Ipv4Addr,
    pub port: u16,
    pub match_source: bool,
    pub from: [u8; 6],
    pub to: Vec<[u8; 6]>,
    pub out: Out,
    /// [`Hook::XdpVxlan`]'s outer headers; `None` for every other hook.
    pub tunnel: Option<Tunnel>,
}

/// Errors from attaching a hop of the floor.
#[derive(Debug, thiserror::Error)]
pub enum FloorForwardError {
    #[error(
        "this binary carries no eBPF programs (built with AYA_BUILD_SKIP=1); rebuild without that variable"
    )]
    NotEmbedded,
    #[error("a floor hop sends to 1 to {LAB_FORWARD_BACKENDS} MACs, not {0}")]
    Backends(usize),
    #[error(
        "a tunnel hop needs one underlay address per MAC ({macs}), not {nodes:?}; a hop of another hook none"
    )]
    Tunnel { macs: usize, nodes: Option<usize> },
    #[error(
        "{member}'s MAC {mac:?} in the lab's state is not a MAC; run `hive lab down`, then up again"
    )]
    Mac { member: String, mac: String },
    #[error("lab: {0}")]
    Lab(#[from] LabError),
    #[error("entering {node}'s namespace: {source}")]
    Netns {
        node: String,
        source: netns::NetnsError,
    },
    #[error("{node} has no device {device:?}")]
    NoDevice { node: String, device: String },
    #[error("{action} {program} on {node}'s {device}: {detail}")]
    Program {
        action: &'static str,
        program: &'static str,
        node: String,
        device: String,
        detail: String,
    },
}

/// A hop attached; detached on drop.
#[derive(Debug)]
pub struct Attached {
    _ebpf: Ebpf,
}

/// The MAC of `member`'s `eth0`, as the lab made it.
pub fn member_mac(lab: &Lab, member: &str) -> Result<[u8; 6], FloorForwardError> {
    let state = lab.member(member)?;
    parse_mac(&state.mac).ok_or_else(|| FloorForwardError::Mac {
        member: member.to_owned(),
        mac: state.mac.clone(),
    })
}

/// A fresh copy of the object whose `LAB_FORWARD` entry is `config`, every map of one entry
/// (`veth_peer::load_with_tiny_maps`); on failure, what failed and why.
pub(crate) fn load_configured(config: LabForward) -> Result<Ebpf, (&'static str, String)> {
    let mut ebpf = crate::veth_peer::load_with_tiny_maps().map_err(|e| ("loading", e))?;
    let mut map: Array<_, LabForward> = ebpf
        .map_mut(LAB_FORWARD)
        .ok_or_else(|| {
            (
                "configuring",
                format!("the object has no map {LAB_FORWARD}"),
            )
        })?
        .try_into()
        .map_err(|e: aya::maps::MapError| ("configuring", e.to_string()))?;
    map.set(0, config, 0)
        .map_err(|e| ("configuring", e.to_string()))?;
    Ok(ebpf)
}

/// Load a fresh copy of the object, configure `hop` and attach it.
pub fn attach(lab: &Lab, hop: &Forward<'_>) -> Result<Attached, FloorForwardError> {
    if EBPF_OBJECT.is_empty() {
        return Err(FloorForwardError::NotEmbedded);
    }
    if hop.to.is_empty() || hop.to.len() > LAB_FORWARD_BACKENDS {
        return Err(FloorForwardError::Backends(hop.to.len()));
    }
    let mut config = LabForward {
        addr_be: u32::from(hop.addr).to_be(),
        port_be: hop.port.to_be(),
        backends: hop.to.len() as u16,
        from: hop.from,
        flags: if hop.match_source {
            LabForward::MATCH_SOURCE
        } else {
            0
        },
        ..LabForward::default()
    };
    for (slot, mac) in config.to.iter_mut().zip(&hop.to) {
        *slot = *mac;
    }
    match (&hop.tunnel, hop.hook) {
        (Some(tunnel), Hook::XdpVxlan) if tunnel.nodes.len() == hop.to.len() => {
            for (slot, node) in config.nodes_be.iter_mut().zip(&tunnel.nodes) {
                *slot = u32::from(*node).to_be();
            }
            config.underlay_be = u32::from(tunnel.source).to_be();
            config.vxlan_port_be = tunnel.port.to_be();
            config.vni = tunnel.vni;
        }
        (None, hook) if hook != Hook::XdpVxlan => {}
        (tunnel, _) => {
            return Err(FloorForwardError::Tunnel {
                macs: hop.to.len(),
                nodes: tunnel.as_ref().map(|t| t.nodes.len()),
            });
        }
    }
    let program = hop.hook.program();
    let failed = |action: &'static str, detail: String| FloorForwardError::Program {
        action,
        program,
        node: hop.node.to_owned(),
        device: hop.device.to_owned(),
        detail,
    };
    let netns_path = lab.netns_path(hop.node)?;
    netns::run_in(netns_path, || -> Result<Ebpf, FloorForwardError> {
        let index = |device: &str| {
            nix::net::if_::if_nametoindex(device).map_err(|_| FloorForwardError::NoDevice {
                node: hop.node.to_owned(),
                device: device.to_owned(),
            })
        };
        (config.out, config.ifindex) = match &hop.out {
            Out::Same => (LabForward::OUT_SAME, 0),
            Out::Peer(device) => (LabForward::OUT_PEER, index(device)?),
            Out::Egress(device) => (LabForward::OUT_EGRESS, index(device)?),
        };
        let mut ebpf =
            load_configured(config).map_err(|(action, detail)| failed(action, detail))?;
        let found = ebpf
            .program_mut(program)
            .ok_or_else(|| failed("finding", "the object has no such program".to_owned()))?;
        match hop.hook {
            Hook::Xdp | Hook::XdpVxlan | Hook::XdpDecap => {
                let xdp: &mut Xdp = found
                    .try_into()
                    .map_err(|e: aya::programs::ProgramError| failed("finding", e.to_string()))?;
                xdp.load()
                    .map_err(|e| failed("loading (verifier)", e.to_string()))?;
                xdp.attach(hop.device, XdpMode::Driver)
                    .map_err(|e| failed("attaching", e.to_string()))?;
            }
            Hook::Tc => {
                let tc: &mut SchedClassifier = found
                    .try_into()
                    .map_err(|e: aya::programs::ProgramError| failed("finding", e.to_string()))?;
                tc.load()
                    .map_err(|e| failed("loading (verifier)", e.to_string()))?;
                tc.attach_with_options(
                    hop.device,
                    TcAttachType::Ingress,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .map_err(|e| failed("attaching", e.to_string()))?;
            }
        }
        Ok(ebpf)
    })
    .map_err(|source| FloorForwardError::Netns {
        node: hop.node.to_owned(),
        source,
    })?
    .map(|ebpf| Attached { _ebpf: ebpf })
}
