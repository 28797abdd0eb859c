//! The desired mesh ([`MeshState`]) and how it reaches the maps: validation,
//! compilation into map entries, the diff against what is applied, id and
//! segment allocation, and recovery after a restart.

pub mod alloc;
mod apply;
mod balancer;
mod delta;
mod desired;
pub mod fake;
mod fast;
mod incremental;
mod index;
pub mod mode;
mod ops;
mod recover;
pub mod state;
mod validate;

#[cfg(test)]
mod incremental_tests;
#[cfg(test)]
mod tests;

pub use apply::{ApplyError, ApplyStats, Reconciler};
pub use delta::Delta;
pub use desired::{BalancerKey, Desired, DesiredBalancer, FrontendSpec, UnderlayLink, addr_be};
pub use incremental::{ApplyPath, MeshApplier};
pub use ops::{KernelMaps, MeshMapOps};
pub use state::{
    LocalEndpoint, MacAddr, MeshDelta, MeshState, Network, NodeIdentity, OverlayPeer, Protocol,
    Service, ServiceBackend, ServicePort, ServiceVip, TaskEndpoint,
};
pub use validate::{MIN_OVERLAY_MTU, MeshStateError, RefusedService};
