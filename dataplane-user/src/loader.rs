//! [`Dataplane`]: the programs and maps of one node, loaded, pinned and
//! attached — or found again after an agent restart.
//!
//! Everything lives under `<pin root>/<node>/` (default
//! `/sys/fs/bpf/hive/<node>/`):
//!
//! | pin | what |
//! |---|---|
//! | `HIVE_*` | every map of the object (names from `hive_common::maps`) |
//! | `HIVE_AGENT_LB`, `HIVE_AGENT_BE` | the agent's records (`maps::records`) |
//! | `prog_xdp_from_underlay`, `prog_tc_from_underlay`, `prog_tc_from_task` | the loaded programs |
//! | `link_tc_from_underlay` | tcx ingress of the underlay NIC (6.6+) |
//! | `link_xdp_from_underlay` | XDP on the underlay NIC (a bpf_link, 5.9+) |
//! | `link_tc_from_task_<ifindex>` | tcx ingress of a task's veth (6.6+) |
//! | `prog_resolver_*`, `link_resolver_*` | the tasks' resolver redirect ([`crate::resolver`]) |
//!
//! A pinned link keeps its program attached after our process exits, and a
//! pinned map keeps its contents. [`Dataplane::open`] therefore loads and
//! attaches only when the XDP link pin is missing; otherwise it opens what
//! is pinned and changes nothing, so established connections and running
//! load do not notice a restarted agent.
//!
//! Interface names and indexes are those of the calling thread's network
//! namespace: call `open` and `attach_task_iface` from the node's.

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::{
    EbpfLoader,
    maps::MapInfo,
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, LinkError, PinnedLink},
        tc::TcAttachOptions,
    },
};
use nix::errno::Errno;
use tracing::{info, warn};

use crate::{
    maps::{MapsError, MeshMaps, RcuBarrier, detach_pinned_link},
    mesh::{
        ApplyError, ApplyStats, KernelMaps, MeshApplier, MeshDelta, MeshState, Reconciler,
        UnderlayLink,
    },
    programs::{EBPF_OBJECT, LoadError},
};

/// Where node pin directories live unless told otherwise.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/hive";
/// Where the BPF filesystem is mounted on every distribution.
pub const BPFFS_MOUNT: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

const XDP_PROGRAM: &str = "xdp_from_underlay";
const TC_PROGRAM: &str = "tc_from_task";
/// Pin file of `xdp_from_underlay` in a node's directory.
pub const XDP_PROGRAM_PIN: &str = "prog_xdp_from_underlay";
const TC_PROGRAM_PIN: &str = "prog_tc_from_task";
const XDP_LINK_PIN: &str = "link_xdp_from_underlay";
const HANDOFF_PROGRAM: &str = "tc_from_underlay";
const HANDOFF_PROGRAM_PIN: &str = "prog_tc_from_underlay";
const HANDOFF_LINK_PIN: &str = "link_tc_from_underlay";
const TC_LINK_PIN_PREFIX: &str = "link_tc_from_task_";

/// How `xdp_from_underlay` runs on the underlay NIC.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum XdpAttachMode {
    /// In the driver (native XDP).
    Driver,
    /// In the generic (SKB) path: slower, used when the driver refuses.
    Generic,
    /// Attached by an earlier agent and left as it was.
    Inherited,
}

/// Errors from loading, attaching, applying or tearing down.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(
        "cannot mount the BPF filesystem at {BPFFS_MOUNT}: {source}; hive needs root (CAP_SYS_ADMIN)"
    )]
    MountBpffs { source: Errno },
    #[error("{} is not on a BPF filesystem; choose a pin root under {BPFFS_MOUNT}", path.display())]
    NotBpffs { path: PathBuf },
    #[error("cannot create the pin directory {}: {source}", path.display())]
    PinDir { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Object(Box<LoadError>),
    #[error("cannot read the maps of the embedded eBPF object: {detail}")]
    Parse { detail: String },
    #[error("pinned map {} does not match this hive's ({detail}); the pins were left by another hive version: destroy this node's data plane and load again", path.display())]
    PinnedMapMismatch { path: PathBuf, detail: String },
    #[error("the embedded eBPF object has no program {name}; rebuild hive")]
    MissingProgram { name: &'static str },
    #[error("program {name}: cannot {action}: {source}")]
    Program {
        name: &'static str,
        action: &'static str,
        source: Box<ProgramError>,
    },
    #[error("program {name}: cannot {action}: {source}")]
    Link {
        name: &'static str,
        action: &'static str,
        source: Box<LinkError>,
    },
    #[error("cannot pin {}: {source}", path.display())]
    Pin {
        path: PathBuf,
        source: Box<aya::pin::PinError>,
    },
    #[error("cannot open the pinned {}: {detail}; destroy this node's data plane and load it again", path.display())]
    OpenPinned { path: PathBuf, detail: String },
    #[error(
        "cannot attach {XDP_PROGRAM} to {iface:?} in driver mode ({driver}) nor in generic mode ({generic})"
    )]
    XdpAttach {
        iface: String,
        driver: Box<ProgramError>,
        generic: Box<ProgramError>,
    },
    #[error("interface {iface:?}: {source}; does it exist in this network namespace?")]
    UnknownInterface { iface: String, source: Errno },
    #[error("interface index {ifindex}: {source}; does it exist in this network namespace?")]
    UnknownIfindex { ifindex: u32, source: Errno },
    #[error("interface {iface:?} has no Ethernet address; the underlay must be an Ethernet NIC")]
    NoMac { iface: String },
    #[error(
        "the data plane is attached to {attached:?} but the state's underlay is {wanted:?}; destroy and open it on the new interface"
    )]
    UnderlayChanged { attached: String, wanted: String },
    #[error("cannot set up the grace-period barrier: {source}")]
    Barrier { source: io::Error },
    #[error(transparent)]
    Maps(Box<MapsError>),
    #[error(transparent)]
    Apply(Box<ApplyError>),
    #[error("cannot detach the link pinned at {}: {source}", path.display())]
    Detach { path: PathBuf, source: io::Error },
    #[error("cannot remove {}: {source}", path.display())]
    Remove { path: PathBuf, source: io::Error },
    #[error("the tasks' cgroup {}: {source}; the resolver redirect needs cgroup v2", path.display())]
    Cgroup { path: PathBuf, source: io::Error },
    #[error("cannot {action} the resolver ports map: {source}")]
    ResolverMap {
        action: &'static str,
        source: Box<aya::maps::MapError>,
    },
}

// Boxed: these are large, and every `Result` of this module carries them.
impl From<MapsError> for DataplaneError {
    fn from(e: MapsError) -> Self {
        Self::Maps(Box::new(e))
    }
}

impl From<LoadError> for DataplaneError {
    fn from(e: LoadError) -> Self {
        Self::Object(Box::new(e))
    }
}

impl From<ApplyError> for DataplaneError {
    fn from(e: ApplyError) -> Self {
        Self::Apply(Box::new(e))
    }
}

// Keep errors cheap to return (clippy's `result_large_err`).
const _: () = assert!(size_of::<DataplaneError>() <= 64);

/// One node's data plane.
#[derive(Debug)]
pub struct Dataplane {
    dir: PathBuf,
    underlay_iface: String,
    underlay: UnderlayLink,
    xdp_mode: XdpAttachMode,
    maps: KernelMaps,
    mesh: MeshApplier,
    tc_program: SchedClassifier,
}

impl Dataplane {
    /// Load (or find again) the data plane of node `node_id` under
    /// `pin_root` (usually [`DEFAULT_PIN_ROOT`]), with `xdp_from_underlay`
    /// on `underlay_iface`. Mounts bpffs at [`BPFFS_MOUNT`] if needed.
    pub fn open(
        pin_root: impl AsRef<Path>,
        node_id: &str,
        underlay_iface: &str,
    ) -> Result<Self, DataplaneError> {
        let pin_root = pin_root.as_ref();
        ensure_bpffs(pin_root)?;
        let dir = pin_root.join(node_id);
        std::fs::create_dir_all(&dir).map_err(|source| DataplaneError::PinDir {
            path: dir.clone(),
            source,
        })?;
        let underlay = resolve_underlay(underlay_iface)?;

        let xdp_mode = if dir.join(XDP_LINK_PIN).exists() {
            // An earlier agent attached everything; keep it exactly as is.
            PinnedLink::from_pin(dir.join(XDP_LINK_PIN)).map_err(|e| {
                DataplaneError::OpenPinned {
                    path: dir.join(XDP_LINK_PIN),
                    detail: e.to_string(),
                }
            })?;
            info!(dir = %dir.display(), "found a pinned data plane; reusing it untouched");
            XdpAttachMode::Inherited
        } else {
            load_and_attach(&dir, underlay_iface)?
        };

        let maps = MeshMaps::open_pinned(&dir)?;
        let barrier = RcuBarrier::new().map_err(|source| DataplaneError::Barrier { source })?;
        let maps = KernelMaps { maps, barrier };
        let mesh = MeshApplier::new(Reconciler::recover(&maps)?);
        let tc_path = dir.join(TC_PROGRAM_PIN);
        let tc_program =
            SchedClassifier::from_pin(&tc_path).map_err(|e| DataplaneError::OpenPinned {
                path: tc_path,
                detail: e.to_string(),
            })?;
        let dataplane = Self {
            dir,
            underlay_iface: underlay_iface.to_owned(),
            underlay,
            xdp_mode,
            maps,
            mesh,
            tc_program,
        };
        dataplane.forget_dead_task_links();
        Ok(dataplane)
    }

    /// Make the maps hold `state`; only what differs from the applied state
    /// is validated, compiled and written (see [`crate::mesh`]).
    pub fn apply(&mut self, state: &MeshState) -> Result<ApplyStats, DataplaneError> {
        if state.node.underlay_iface != self.underlay_iface {
            // An invalid state is reported as such, whatever its NIC.
            state.validate().map_err(ApplyError::from)?;
            return Err(DataplaneError::UnderlayChanged {
                attached: self.underlay_iface.clone(),
                wanted: state.node.underlay_iface.clone(),
            });
        }
        Ok(self.mesh.apply(state, self.underlay, &mut self.maps)?)
    }

    /// Make the maps hold the applied state with `delta` on top: only what `delta` names is
    /// validated, compiled and written (see [`crate::mesh`]). Needs a whole state applied
    /// before ([`ApplyError::NothingApplied`] otherwise).
    pub fn apply_delta(&mut self, delta: &MeshDelta) -> Result<ApplyStats, DataplaneError> {
        Ok(self.mesh.apply_delta(delta, &mut self.maps)?)
    }

    /// Attach `tc_from_task` at tc ingress (tcx) of a task's host-side veth
    /// and pin the link. Idempotent: an attachment that is already there is
    /// left alone.
    pub fn attach_task_iface(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        let name = ifname(ifindex)?;
        let pin = self.task_link_pin(ifindex);
        if pin.exists() {
            let ours = self.tc_program.info().map(|i| i.id()).map_err(|source| {
                DataplaneError::Program {
                    name: TC_PROGRAM,
                    action: "read its id",
                    source: Box::new(source),
                }
            })?;
            let attached = SchedClassifier::query_tcx(&name, TcAttachType::Ingress)
                .map(|(_, progs)| progs.iter().any(|p| p.id() == ours))
                .unwrap_or(false);
            if attached {
                return Ok(());
            }
            // Left by a veth that is gone (its ifindex came back): stale.
            remove_file(&pin)?;
        }
        attach_tcx_ingress(&mut self.tc_program, TC_PROGRAM, &name, &pin)
    }

    /// Detach `tc_from_task` from a task's veth (unpin its link). Deleting
    /// the veth detaches it too; this also forgets the pin.
    pub fn detach_task_iface(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        let pin = self.task_link_pin(ifindex);
        detach_pinned_link(&pin).map_err(|source| DataplaneError::Detach {
            path: pin.clone(),
            source,
        })?;
        remove_file(&pin)
    }

    /// Detach everything and remove the node's pin directory (and the pin
    /// root if nothing else is left in it).
    pub fn destroy(self) -> Result<(), DataplaneError> {
        let dir = self.dir.clone();
        drop(self);
        destroy_pins(&dir)
    }

    /// Detach and remove the pins of node `node_id` without opening them
    /// (e.g. after a crash, or pins of another hive version).
    pub fn destroy_pins(pin_root: impl AsRef<Path>, node_id: &str) -> Result<(), DataplaneError> {
        destroy_pins(&pin_root.as_ref().join(node_id))
    }

    pub fn pin_dir(&self) -> &Path {
        &self.dir
    }

    pub fn xdp_mode(&self) -> XdpAttachMode {
        self.xdp_mode
    }

    /// The typed maps, for readers (counters, conntrack, tests).
    pub fn maps(&self) -> &MeshMaps {
        &self.maps.maps
    }

    /// The maps for writing, for tests and tools (e.g. seeding conntrack).
    /// Writing entries [`Dataplane::apply`] owns (front ends, rings,
    /// backends, endpoints, peers, node) desynchronises it from the maps.
    pub fn maps_mut(&mut self) -> &mut MeshMaps {
        &mut self.maps.maps
    }

    /// The dense service id of a service on a network, once applied.
    pub fn service_slot(&self, service_id: &str, vni: u32) -> Option<u32> {
        self.mesh.reconciler().service_slot(service_id, vni)
    }

    /// The dense backend id of a task in a service on a network.
    pub fn backend_slot(&self, service_id: &str, vni: u32, task_id: &str) -> Option<u32> {
        self.mesh
            .reconciler()
            .backend_slot(service_id, vni, task_id)
    }

    fn task_link_pin(&self, ifindex: u32) -> PathBuf {
        self.dir.join(format!("{TC_LINK_PIN_PREFIX}{ifindex}"))
    }

    /// Unpin task links whose interface no longer exists (the veth went
    /// away while no agent ran). Best effort.
    fn forget_dead_task_links(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(ifindex) = name
                .to_str()
                .and_then(|n| n.strip_prefix(TC_LINK_PIN_PREFIX))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if ifname(ifindex).is_err()
                && let Err(e) = std::fs::remove_file(entry.path())
            {
                warn!(path = %entry.path().display(), "cannot remove a dead task link: {e}");
            }
        }
    }
}

/// Load the object with every map pinned under `dir` (reusing pins that
/// exist), pin the programs, attach XDP and pin its link.
fn load_and_attach(dir: &Path, underlay_iface: &str) -> Result<XdpAttachMode, DataplaneError> {
    if EBPF_OBJECT.is_empty() {
        return Err(LoadError::NotEmbedded.into());
    }
    let object = aya_obj::Object::parse(EBPF_OBJECT).map_err(|e| DataplaneError::Parse {
        detail: e.to_string(),
    })?;
    let mut loader = EbpfLoader::new();
    // Only our named maps: bpffs refuses names with dots (`.rodata`, ...),
    // and those are per-load constants anyway.
    let names: Vec<&String> = object
        .maps
        .keys()
        .filter(|n| n.starts_with("HIVE_"))
        .collect();
    for name in &names {
        let path = dir.join(name.as_str());
        if path.exists() {
            check_pinned_map(&path, &object.maps[name.as_str()])?;
        }
        loader.map_pin_path(name.as_str(), path);
    }
    let mut ebpf = loader.load(EBPF_OBJECT).map_err(LoadError::from)?;

    // Load and pin every program before attaching anything, so that a
    // program the verifier refuses leaves no half-attached node behind.
    for (name, pin) in [
        (TC_PROGRAM, TC_PROGRAM_PIN),
        (HANDOFF_PROGRAM, HANDOFF_PROGRAM_PIN),
    ] {
        let tc: &mut SchedClassifier = program(&mut ebpf, name)?;
        tc.load().map_err(|source| DataplaneError::Program {
            name,
            action: "load (verifier)",
            source: Box::new(source),
        })?;
        pin_program(dir, pin, |p| tc.pin(p))?;
    }
    crate::resolver::load_and_pin(&mut ebpf, dir)?;
    let xdp: &mut Xdp = program(&mut ebpf, XDP_PROGRAM)?;
    xdp.load().map_err(|source| DataplaneError::Program {
        name: XDP_PROGRAM,
        action: "load (verifier)",
        source: Box::new(source),
    })?;
    pin_program(dir, XDP_PROGRAM_PIN, |p| xdp.pin(p))?;

    // tc behind XDP first: a frame XDP hands off must find it there. A
    // load that failed after this point left its link: replace it, or the
    // NIC would run the program twice.
    let handoff_pin = dir.join(HANDOFF_LINK_PIN);
    detach_pinned_link(&handoff_pin).map_err(|source| DataplaneError::Detach {
        path: handoff_pin.clone(),
        source,
    })?;
    remove_file(&handoff_pin)?;
    let handoff: &mut SchedClassifier = program(&mut ebpf, HANDOFF_PROGRAM)?;
    attach_tcx_ingress(handoff, HANDOFF_PROGRAM, underlay_iface, &handoff_pin)?;
    let xdp: &mut Xdp = program(&mut ebpf, XDP_PROGRAM)?;
    let (link_id, mode) = match xdp.attach(underlay_iface, XdpMode::Driver) {
        Ok(id) => (id, XdpAttachMode::Driver),
        Err(driver) => {
            warn!(
                iface = underlay_iface,
                "native XDP refused ({driver}); falling back to generic (SKB) mode, which is slower"
            );
            match xdp.attach(underlay_iface, XdpMode::Skb) {
                Ok(id) => (id, XdpAttachMode::Generic),
                Err(generic) => {
                    return Err(DataplaneError::XdpAttach {
                        iface: underlay_iface.to_owned(),
                        driver: Box::new(driver),
                        generic: Box::new(generic),
                    });
                }
            }
        }
    };
    let link = xdp
        .take_link(link_id)
        .map_err(|source| DataplaneError::Program {
            name: XDP_PROGRAM,
            action: "take its link",
            source: Box::new(source),
        })?;
    // The link pin is written last: its presence means "fully loaded".
    pin_link(
        link,
        XDP_PROGRAM,
        "get a bpf_link (kernel 5.9+) to pin",
        &dir.join(XDP_LINK_PIN),
    )?;
    info!(dir = %dir.display(), iface = underlay_iface, ?mode, "data plane loaded and attached");
    Ok(mode)
}

/// Attach a loaded classifier at tcx ingress of `iface` and pin the link at
/// `pin`, so it stays attached after this process exits.
fn attach_tcx_ingress(
    program: &mut SchedClassifier,
    name: &'static str,
    iface: &str,
    pin: &Path,
) -> Result<(), DataplaneError> {
    let link_id = program
        .attach_with_options(
            iface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(program_failed(name, "attach to tcx ingress"))?;
    let link = program
        .take_link(link_id)
        .map_err(program_failed(name, "take its link"))?;
    pin_link(link, name, "turn its tcx link into a bpf_link", pin)
}

/// The error of program `name` failing to `action`.
pub(crate) fn program_failed(
    name: &'static str,
    action: &'static str,
) -> impl FnOnce(ProgramError) -> DataplaneError {
    move |source| DataplaneError::Program {
        name,
        action,
        source: Box::new(source),
    }
}

/// Pin a program's link at `pin` as a bpf_link, so it stays attached after
/// this process exits; `action` says what failed if the kernel gave none.
pub(crate) fn pin_link<L>(
    link: L,
    name: &'static str,
    action: &'static str,
    pin: &Path,
) -> Result<(), DataplaneError>
where
    FdLink: TryFrom<L, Error = LinkError>,
{
    let link = FdLink::try_from(link).map_err(|e| DataplaneError::Link {
        name,
        action,
        source: Box::new(e),
    })?;
    link.pin(pin).map_err(|source| DataplaneError::Pin {
        path: pin.to_path_buf(),
        source: Box::new(source),
    })?;
    Ok(())
}

pub(crate) fn program<'a, T>(
    ebpf: &'a mut aya::Ebpf,
    name: &'static str,
) -> Result<&'a mut T, DataplaneError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or(DataplaneError::MissingProgram { name })?;
    program
        .try_into()
        .map_err(|source| DataplaneError::Program {
            name,
            action: "be used as the expected program type",
            source: Box::new(source),
        })
}

/// Pin a program, replacing a pin a failed earlier load may have left.
pub(crate) fn pin_program(
    dir: &Path,
    file: &str,
    pin: impl FnOnce(&Path) -> Result<(), aya::pin::PinError>,
) -> Result<(), DataplaneError> {
    let path = dir.join(file);
    remove_file(&path)?;
    pin(&path).map_err(|source| DataplaneError::Pin {
        path,
        source: Box::new(source),
    })
}

/// A pinned map must have the shape the object declares, or the programs
/// would be verified against the wrong layout.
fn check_pinned_map(path: &Path, want: &aya_obj::Map) -> Result<(), DataplaneError> {
    let info = MapInfo::from_pin(path).map_err(|e| DataplaneError::OpenPinned {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let got = (info.key_size(), info.value_size(), info.max_entries());
    let expected = (want.key_size(), want.value_size(), want.max_entries());
    if got != expected {
        return Err(DataplaneError::PinnedMapMismatch {
            path: path.to_path_buf(),
            detail: format!(
                "key/value size and capacity are {}/{}/{}, this hive expects {}/{}/{}",
                got.0, got.1, got.2, expected.0, expected.1, expected.2
            ),
        });
    }
    Ok(())
}

fn remove_file(path: &Path) -> Result<(), DataplaneError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DataplaneError::Remove {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Unpin everything in a node directory and remove it. Removing a link's
/// last reference detaches it; removing a map's frees it once no program
/// uses it.
fn destroy_pins(dir: &Path) -> Result<(), DataplaneError> {
    // Detach the links first: unpinning alone releases a link only when the
    // kernel gets round to it (a deferred work item), and a caller that
    // destroys a node expects its programs gone when this returns.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let is_link = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("link_"));
            if is_link {
                detach_pinned_link(&entry.path()).map_err(|source| DataplaneError::Detach {
                    path: entry.path(),
                    source,
                })?;
            }
        }
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(DataplaneError::Remove {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    // The pin root, if this was its last node; another node's pins keep it.
    if let Some(root) = dir.parent() {
        let _ = std::fs::remove_dir(root);
    }
    Ok(())
}

/// Mount bpffs at [`BPFFS_MOUNT`] if it is not there (fresh machines, `ip
/// netns exec` mount namespaces), and check `pin_root` is on it.
fn ensure_bpffs(pin_root: &Path) -> Result<(), DataplaneError> {
    let is_bpffs =
        |p: &Path| nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC);
    let mount = Path::new(BPFFS_MOUNT);
    if pin_root.starts_with(mount) && !is_bpffs(mount) {
        nix::mount::mount(
            Some("bpf"),
            mount,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|source| DataplaneError::MountBpffs { source })?;
        info!("mounted the BPF filesystem at {BPFFS_MOUNT}");
    }
    // The nearest existing ancestor tells which filesystem the pins land on.
    let probe = pin_root.ancestors().find(|p| p.exists()).unwrap_or(mount);
    if !is_bpffs(probe) {
        return Err(DataplaneError::NotBpffs {
            path: pin_root.to_path_buf(),
        });
    }
    Ok(())
}

fn ifname(ifindex: u32) -> Result<String, DataplaneError> {
    nix::net::if_::if_indextoname(ifindex)
        .map_err(|source| DataplaneError::UnknownIfindex { ifindex, source })
        .map(|name| name.to_string_lossy().into_owned())
}

/// ifindex and MAC of the underlay NIC, in the calling thread's namespace.
fn resolve_underlay(iface: &str) -> Result<UnderlayLink, DataplaneError> {
    let ifindex = nix::net::if_::if_nametoindex(iface).map_err(|source| {
        DataplaneError::UnknownInterface {
            iface: iface.to_owned(),
            source,
        }
    })?;
    let addrs = nix::ifaddrs::getifaddrs().map_err(|source| DataplaneError::UnknownInterface {
        iface: iface.to_owned(),
        source,
    })?;
    let mac = addrs
        .filter(|a| a.interface_name == iface)
        .find_map(|a| {
            a.address
                .as_ref()
                .and_then(|s| s.as_link_addr())
                .and_then(|l| l.addr())
        })
        .ok_or_else(|| DataplaneError::NoMac {
            iface: iface.to_owned(),
        })?;
    Ok(UnderlayLink { ifindex, mac })
}
