//! `XDP_PASS` on the far end of a veth, so that frames a program sends with
//! `XDP_TX` (or redirects) into the veth actually arrive.
//!
//! On veth, an `XDP_TX` frame is queued on the peer's receive ring, and the
//! kernel schedules the peer's NAPI to drain that ring only if the peer has
//! an XDP program of its own (`veth_xdp_flush()`; checked on 6.18: with GRO
//! enabled instead, the frames wait until unrelated traffic wakes the peer).
//! A physical NIC has no such condition; a lab's underlay, built of veths
//! into a bridge, does. So the lab attaches `xdp_floor` (`XDP_PASS`) to the
//! bridge side of every member's veth.

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    programs::{Xdp, XdpMode, links::FdLink},
};

use hive_dataplane::programs::EBPF_OBJECT;

/// The trivial program attached: it passes every frame.
pub(crate) const PASS_PROGRAM: &str = "xdp_floor";

/// Errors from attaching the pass program.
#[derive(Debug, thiserror::Error)]
pub enum VethPeerError {
    #[error(
        "this hive binary carries no eBPF programs (built with AYA_BUILD_SKIP=1), so XDP_TX into the lab's veths cannot work; rebuild without that variable"
    )]
    NotEmbedded,
    #[error("loading {PASS_PROGRAM} for {iface}: {detail}")]
    Load { iface: String, detail: String },
    #[error("attaching {PASS_PROGRAM} to {iface}: {detail}")]
    Attach { iface: String, detail: String },
    #[error("pinning the XDP link of {iface} at {}: {detail}", path.display())]
    Pin {
        iface: String,
        path: std::path::PathBuf,
        detail: String,
    },
}

/// A fresh load of the embedded object for a lab program that uses at most one entry of
/// any map: every map the object declares is made with one entry (created at load, freed
/// when the returned `Ebpf` is dropped), instead of the agent's full capacities.
pub(crate) fn load_with_tiny_maps() -> Result<Ebpf, String> {
    let object = aya_obj::Object::parse(EBPF_OBJECT).map_err(|e| e.to_string())?;
    let mut loader = EbpfLoader::new();
    for name in object.maps.keys() {
        loader.map_max_entries(name, 1);
    }
    loader.load(EBPF_OBJECT).map_err(|e| e.to_string())
}

/// Attach `XDP_PASS` to `iface` (in the calling thread's namespace) and pin
/// the link at `pin`, so it outlives this process; removing the pin (or the
/// interface) detaches it.
pub fn attach_pass(iface: &str, pin: &Path) -> Result<(), VethPeerError> {
    if EBPF_OBJECT.is_empty() {
        return Err(VethPeerError::NotEmbedded);
    }
    let load_error = |detail: String| VethPeerError::Load {
        iface: iface.to_owned(),
        detail,
    };
    let mut ebpf = load_with_tiny_maps().map_err(load_error)?;
    let program: &mut Xdp = ebpf
        .program_mut(PASS_PROGRAM)
        .ok_or_else(|| load_error("the object has no such program".to_owned()))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| load_error(e.to_string()))?;
    program.load().map_err(|e| load_error(e.to_string()))?;
    let attach_error = |detail: String| VethPeerError::Attach {
        iface: iface.to_owned(),
        detail,
    };
    let link_id = program
        .attach(iface, XdpMode::Driver)
        .map_err(|e| attach_error(e.to_string()))?;
    let link = program
        .take_link(link_id)
        .map_err(|e| attach_error(e.to_string()))?;
    let link = FdLink::try_from(link).map_err(|e| attach_error(e.to_string()))?;
    if let Some(dir) = pin.parent() {
        std::fs::create_dir_all(dir).map_err(|e| VethPeerError::Pin {
            iface: iface.to_owned(),
            path: pin.to_path_buf(),
            detail: e.to_string(),
        })?;
    }
    link.pin(pin).map_err(|e| VethPeerError::Pin {
        iface: iface.to_owned(),
        path: pin.to_path_buf(),
        detail: e.to_string(),
    })?;
    Ok(())
}
