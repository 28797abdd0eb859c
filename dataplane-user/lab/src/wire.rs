//! The lab's wire between two nodes as a switch makes it (`docs/dsr.md`, "The lab's
//! wire"): `xdp_lab_switch` in place of the pass program on one node's bridge port, so
//! that the frames that node sends to another node's MAC go straight to that node's
//! bridge port with `bpf_redirect`, still XDP frames.
//!
//! What it takes away is a cost of the lab, not of any path: a frame that crosses the
//! lab's bridge reaches the next veth as an skb in the sender's buffer, and veth copies
//! it before that node's XDP program runs whenever its headroom is under the 256 bytes
//! XDP wants. Every frame an encapsulation has grown falls short (n1's VXLAN encap takes
//! 50 of them). A NIC receives into its own buffers and runs XDP there. A redirected frame is received the same way: veth
//! runs the receiving node's program on the frame as it is.
//!
//! The receiving veth takes redirected frames only while it runs its NAPI: while an XDP
//! program is attached to it (or GRO is on, which the lab leaves off); frames to it are
//! otherwise dropped. So the caller switches a hop only while the receiving node runs
//! XDP: hive's mesh, or the floor's `xdp_lab_decap`.
//!
//! [`switch`] swaps the program of the bridge port's pinned link in place
//! (`bpf_link_update`), and dropping the returned [`Switched`] swaps the pass program
//! back, so the port never runs without one.

use std::path::PathBuf;

use aya::programs::{Xdp, links::FdLink, links::PinnedLink, xdp::XdpLink};
use hive_common::maps::LabForward;
use hive_dataplane::{netns, programs::EBPF_OBJECT};

use crate::{
    Lab, LabError,
    floor_forward::{load_configured, member_mac},
    topology, veth_peer,
};

/// The switch program.
const SWITCH_PROGRAM: &str = "xdp_lab_switch";

/// Errors from switching a hop of the lab's wire.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(
        "this binary carries no eBPF programs (built with AYA_BUILD_SKIP=1); rebuild without that variable"
    )]
    NotEmbedded,
    #[error("lab: {0}")]
    Lab(#[from] LabError),
    #[error(transparent)]
    Mac(#[from] crate::floor_forward::FloorForwardError),
    #[error("entering the lab's underlay namespace: {0}")]
    Netns(#[from] netns::NetnsError),
    #[error("the underlay has no bridge port {0:?}")]
    NoPort(String),
    #[error("reading the program on the bridge port {port}: {detail}")]
    Inspect { port: String, detail: String },
    #[error("{action} {program} on the bridge port {port}: {detail}")]
    Program {
        action: &'static str,
        program: &'static str,
        port: String,
        detail: String,
    },
}

/// A switched hop; the pass program is back on the port when this is dropped.
#[derive(Debug)]
pub struct Switched {
    port: String,
    pin: PathBuf,
}

/// Frames from `from` to `to`'s MAC cross the lab's wire as XDP frames, past the bridge,
/// until the returned [`Switched`] is dropped.
pub fn switch(lab: &Lab, from: &str, to: &str) -> Result<Switched, WireError> {
    if EBPF_OBJECT.is_empty() {
        return Err(WireError::NotEmbedded);
    }
    let state = lab.state();
    let port = lab.member(from)?.peer_link.clone();
    let to_port = lab.member(to)?.peer_link.clone();
    let mac = member_mac(lab, to)?;
    let pin = topology::underlay_pin(state, &port);
    let failed = |action: &'static str, detail: String| WireError::Program {
        action,
        program: SWITCH_PROGRAM,
        port: port.clone(),
        detail,
    };
    let ifindex = netns::run_in(&state.underlay.netns_path, || {
        nix::net::if_::if_nametoindex(to_port.as_str())
    })?
    .map_err(|_| WireError::NoPort(to_port.clone()))?;
    let config = LabForward {
        backends: 1,
        to: [mac, [0; 6]],
        ifindex,
        ..LabForward::default()
    };
    let mut ebpf = load_configured(config).map_err(|(action, detail)| failed(action, detail))?;
    replace(&mut ebpf, SWITCH_PROGRAM, &pin).map_err(|(action, detail)| failed(action, detail))?;
    Ok(Switched { port, pin })
}

/// The name of the program on `member`'s bridge port: `xdp_floor`, or `xdp_lab_switch`
/// while its hop is switched.
pub fn bridge_port_program(lab: &Lab, member: &str) -> Result<String, WireError> {
    let port = lab.member(member)?.peer_link.clone();
    let failed = |detail: String| WireError::Inspect {
        port: port.clone(),
        detail,
    };
    let pin = topology::underlay_pin(lab.state(), &port);
    let link = PinnedLink::from_pin(&pin).map_err(|e| failed(e.to_string()))?;
    let id = FdLink::from(link)
        .info()
        .map_err(|e| failed(e.to_string()))?
        .program_id();
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|program| program.id() == id)
        .and_then(|program| program.name_as_str().map(str::to_owned))
        .ok_or_else(|| failed(format!("no loaded program has the link's ID {id}")))
}

impl Drop for Switched {
    fn drop(&mut self) {
        let restored = veth_peer::load_with_tiny_maps()
            .map_err(|e| ("loading", e))
            .and_then(|mut ebpf| replace(&mut ebpf, veth_peer::PASS_PROGRAM, &self.pin));
        if let Err((action, detail)) = restored {
            tracing::warn!(
                "{action} {} on the bridge port {} to undo the switch: {detail}; `hive lab down` removes the lab and its programs",
                veth_peer::PASS_PROGRAM,
                self.port
            );
        }
    }
}

/// Load `program` of `ebpf` and make the link pinned at `pin` run it. The link's pin
/// keeps the program attached after `ebpf` is dropped.
fn replace(
    ebpf: &mut aya::Ebpf,
    program: &str,
    pin: &std::path::Path,
) -> Result<(), (&'static str, String)> {
    let xdp: &mut Xdp = ebpf
        .program_mut(program)
        .ok_or(("finding", "the object has no such program".to_owned()))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| ("finding", e.to_string()))?;
    xdp.load()
        .map_err(|e| ("loading (verifier)", e.to_string()))?;
    let link = PinnedLink::from_pin(pin).map_err(|e| ("opening the pinned link", e.to_string()))?;
    let link = XdpLink::try_from(FdLink::from(link))
        .map_err(|e| ("opening the pinned link", e.to_string()))?;
    xdp.attach_to_link(link)
        .map_err(|e| ("replacing the program of the pinned link", e.to_string()))?;
    Ok(())
}
