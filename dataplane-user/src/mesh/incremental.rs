//! [`MeshApplier`]: `apply(&MeshState)` with a cost proportional to what
//! changed since the last apply.
//!
//! The control plane hands over the whole desired state every time. The
//! applier keeps a copy of the last state it applied and an index of it
//! (`index.rs`); a new state is compared list by list (`seqdiff.rs`: plain
//! equality over the unchanged prefix and suffix, keys only in between),
//! and only the services, endpoints and peers that differ are validated
//! (against the index for the global rules), compiled, and handed to
//! [`Reconciler::apply_delta`].
//!
//! The full path — validate everything, compile everything,
//! [`Reconciler::apply`] — remains for the first apply, after a restart or
//! a failed apply (the maps may then hold a mix of both states), and when
//! the node or the networks change (everything depends on them; both are
//! rare). A state the incremental checks reject is validated in full, so
//! the error is exactly the one [`MeshState::validate`] gives.

use std::net::Ipv4Addr;

use super::{
    apply::{ApplyError, ApplyStats, Reconciler},
    delta::Delta,
    desired::{
        BalancerKey, CompileContext, Desired, UnderlayLink, addr_be, local_ifindexes, node_config,
        peer_entry,
    },
    fast::{FastMap, FastSet},
    index::{DeltaClaims, Index},
    ops::MeshMapOps,
    seqdiff::{self, ListDiff},
    state::{MeshState, Service, TaskEndpoint},
    validate::{MeshStateError, check_id, validate_endpoint, validate_service},
};
use hive_common::maps::Endpoint;

/// The reconciler plus what it last applied.
#[derive(Debug)]
pub struct MeshApplier {
    reconciler: Reconciler,
    last: Option<Applied>,
}

/// A state the maps hold exactly (as of the end of a successful apply).
#[derive(Debug)]
struct Applied {
    state: MeshState,
    underlay: UnderlayLink,
    index: Index,
}

/// The incremental checks found something wrong, or something they do not
/// decide: let the full validation speak.
#[derive(Debug)]
struct Recheck;

impl From<MeshStateError> for Recheck {
    fn from(_: MeshStateError) -> Self {
        Self
    }
}

impl From<seqdiff::DuplicateKey> for Recheck {
    fn from(_: seqdiff::DuplicateKey) -> Self {
        Self
    }
}

/// Which path an apply took (for tests and measurements).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ApplyPath {
    Full,
    Incremental,
}

impl MeshApplier {
    /// Start from what `reconciler` holds; the first apply takes the full
    /// path (the reconciler may have been recovered from the maps, and no
    /// state is known to match them).
    pub fn new(reconciler: Reconciler) -> Self {
        Self {
            reconciler,
            last: None,
        }
    }

    pub fn reconciler(&self) -> &Reconciler {
        &self.reconciler
    }

    /// Make the maps hold `state`.
    pub fn apply(
        &mut self,
        state: &MeshState,
        underlay: UnderlayLink,
        maps: &mut impl MeshMapOps,
    ) -> Result<ApplyStats, ApplyError> {
        self.apply_with_path(state, underlay, maps).map(|(s, _)| s)
    }

    /// [`Self::apply`], saying which path it took.
    pub fn apply_with_path(
        &mut self,
        state: &MeshState,
        underlay: UnderlayLink,
        maps: &mut impl MeshMapOps,
    ) -> Result<(ApplyStats, ApplyPath), ApplyError> {
        let Self { reconciler, last } = self;
        if let Some(applied) = last
            && applied.underlay == underlay
            && applied.state.node == state.node
            && applied.state.networks == state.networks
        {
            match incremental(reconciler, applied, state, maps) {
                Ok(Some(stats)) => return Ok((stats, ApplyPath::Incremental)),
                Ok(None) => {}
                Err(e) => {
                    // The maps may hold part of the new state: only the
                    // full diff knows how to finish from there.
                    *last = None;
                    return Err(e);
                }
            }
        }
        // Invalid: nothing was written, what was applied stays applied.
        state.validate()?;
        let desired = Desired::compile(state, underlay);
        let result = reconciler.apply(&desired, maps);
        *last = result.is_ok().then(|| Applied {
            state: state.clone(),
            underlay,
            index: Index::build(state),
        });
        Ok((result?, ApplyPath::Full))
    }
}

/// The incremental apply. `Ok(None)`: the incremental checks rejected the
/// state, go the full way (which reports the precise error).
fn incremental(
    reconciler: &mut Reconciler,
    applied: &mut Applied,
    state: &MeshState,
    maps: &mut impl MeshMapOps,
) -> Result<Option<ApplyStats>, ApplyError> {
    let Applied {
        state: old,
        underlay,
        index,
    } = applied;
    let Ok(plan) = plan(old, index, state, *underlay) else {
        return Ok(None);
    };
    let stats = reconciler.apply_delta(&plan.delta, maps)?;

    // The maps hold `state` now: bring the index and the copy along.
    let here = state.node.underlay_addr;
    plan.services.olds().for_each(|s| index.remove_service(s));
    plan.services.news().for_each(|s| index.add_service(s));
    plan.endpoints
        .olds()
        .for_each(|e| index.remove_endpoint(e, here));
    plan.endpoints
        .news()
        .for_each(|e| index.add_endpoint(e, here));
    if plan.peers_changed {
        index.peers = state.peers.iter().map(|p| p.underlay_addr).collect();
    }
    let (services, endpoints) = (plan.services.window, plan.endpoints.window);
    let (peers_changed, locals_changed) = (plan.peers_changed, plan.locals_changed);
    drop(plan);
    splice(&mut old.services, &state.services, services);
    splice(&mut old.endpoints, &state.endpoints, endpoints);
    if peers_changed {
        old.peers.clone_from(&state.peers);
    }
    if locals_changed {
        old.local_endpoints.clone_from(&state.local_endpoints);
    }
    debug_assert!(*old == *state, "the copy of the applied state diverged");
    Ok(Some(stats))
}

/// Replace `old[start..old_end]` by `new[start..new_end]`: clones only the
/// window.
fn splice<T: Clone>(old: &mut Vec<T>, new: &[T], (start, old_end, new_end): (usize, usize, usize)) {
    if start != old_end || start != new_end {
        old.splice(start..old_end, new[start..new_end].iter().cloned());
    }
}

/// What changed, checked and compiled.
#[derive(Debug)]
struct Plan<'a> {
    services: ListDiff<'a, Service>,
    endpoints: ListDiff<'a, TaskEndpoint>,
    peers_changed: bool,
    locals_changed: bool,
    delta: Delta,
}

/// Check the changes from `old` (indexed by `index`) to `new` and compile
/// them. Node and networks are equal in both.
fn plan<'a>(
    old: &'a MeshState,
    index: &Index,
    new: &'a MeshState,
    underlay: UnderlayLink,
) -> Result<Plan<'a>, Recheck> {
    let here = new.node.underlay_addr;
    let networks = new.validate_networks()?;
    let peers_changed = old.peers != new.peers;
    let new_peers = if peers_changed {
        Some(new.validate_peers()?)
    } else {
        None
    };
    let known_node = |addr: Ipv4Addr| {
        addr == here
            || match &new_peers {
                Some(peers) => peers.contains_key(&addr),
                None => index.peers.contains(&addr),
            }
    };

    let services = seqdiff::diff(
        &old.services,
        &new.services,
        |s| s.id.as_str(),
        |id| index.service_ids.contains(*id),
    )?;
    let mut claims = DeltaClaims::new(index, services.olds().map(|s| s.id.as_str()));
    for service in services.news() {
        check_id("service ID", &service.id)?;
        validate_service(service, &networks, &mut claims, &known_node)?;
    }

    let endpoints = seqdiff::diff(
        &old.endpoints,
        &new.endpoints,
        |e| e.addr,
        |addr| index.endpoint_addrs.contains(addr),
    )?;
    for ep in endpoints.news() {
        validate_endpoint(ep, &networks, &known_node)?;
    }

    // A peer may go only once nothing runs on it any more. (New versions
    // naming it were refused above.)
    if let Some(new_peers) = &new_peers {
        for gone in index.peers.iter().filter(|a| !new_peers.contains_key(*a)) {
            let leaving = services
                .olds()
                .flat_map(|s| &s.backends)
                .filter(|b| b.node == *gone)
                .count()
                + endpoints.olds().filter(|e| e.node == *gone).count();
            if index.node_refs(*gone) as usize > leaving {
                return Err(Recheck);
            }
        }
    }

    // Endpoints on this node and their veths: rechecked (all of them, they
    // are few) when either side changed.
    let locals_changed = old.local_endpoints != new.local_endpoints;
    let touches_here = endpoints
        .olds()
        .chain(endpoints.news())
        .any(|e| e.node == here);
    let ctx = CompileContext::new(new);
    let mut endpoint_delta: FastMap<u32, Option<Endpoint>> = FastMap::default();
    for ep in &endpoints.removed {
        endpoint_delta.insert(addr_be(ep.addr), None);
    }
    if locals_changed || touches_here {
        let ifindex_of = local_ifindexes(&new.local_endpoints);
        let here_now = endpoints_here(index, &endpoints, here);
        check_local(&here_now, new)?;
        for ep in endpoints.news() {
            let ifindex = ifindex_of.get(&(ep.task_id.as_str(), ep.vni)).copied();
            endpoint_delta.insert(addr_be(ep.addr), Some(ctx.endpoint(ep, ifindex)));
        }
        if locals_changed {
            // A veth's ifindex is part of its endpoint's entry.
            for (&addr, &(task, vni)) in &here_now {
                let ep = TaskEndpoint {
                    task_id: task.to_owned(),
                    addr,
                    node: here,
                    vni,
                };
                let ifindex = ifindex_of.get(&(task, vni)).copied();
                endpoint_delta.insert(addr_be(addr), Some(ctx.endpoint(&ep, ifindex)));
            }
        }
    } else {
        for ep in endpoints.news() {
            endpoint_delta.insert(addr_be(ep.addr), Some(ctx.endpoint(ep, None)));
        }
    }

    let mut delta = Delta {
        node: node_config(&new.node, underlay),
        endpoints: endpoint_delta.into_iter().collect(),
        ..Delta::default()
    };
    if peers_changed {
        let before: FastMap<u32, _> = old
            .peers
            .iter()
            .map(|p| (addr_be(p.underlay_addr), peer_entry(p)))
            .collect();
        let after: FastMap<u32, _> = new
            .peers
            .iter()
            .map(|p| (addr_be(p.underlay_addr), peer_entry(p)))
            .collect();
        delta.peers = after
            .iter()
            .filter(|(addr, peer)| before.get(*addr) != Some(*peer))
            .map(|(&addr, &peer)| (addr, Some(peer)))
            .chain(
                before
                    .keys()
                    .filter(|a| !after.contains_key(*a))
                    .map(|&a| (a, None)),
            )
            .collect();
    }

    let mut compiled = Vec::new();
    for service in services.olds() {
        ctx.service(service, &mut compiled);
        for (vni, balancer) in compiled.drain(..) {
            delta
                .old_frontends
                .extend(balancer.frontends.keys().copied());
            delta.balancers.insert(key(service, vni), None);
        }
    }
    for service in services.news() {
        ctx.service(service, &mut compiled);
        for (vni, balancer) in compiled.drain(..) {
            delta.balancers.insert(key(service, vni), Some(balancer));
        }
    }
    Ok(Plan {
        services,
        endpoints,
        peers_changed,
        locals_changed,
        delta,
    })
}

fn key(service: &Service, vni: u32) -> BalancerKey {
    BalancerKey {
        service_id: service.id.clone(),
        vni,
    }
}

/// The endpoints on this node once `endpoints` is applied: address →
/// (task ID, VNI).
fn endpoints_here<'a>(
    index: &'a Index,
    endpoints: &ListDiff<'a, TaskEndpoint>,
    here: Ipv4Addr,
) -> FastMap<Ipv4Addr, (&'a str, u32)> {
    let mut now: FastMap<Ipv4Addr, (&str, u32)> = index
        .here
        .iter()
        .map(|(&addr, (task, vni))| (addr, (task.as_str(), *vni)))
        .collect();
    for ep in endpoints.olds().filter(|e| e.node == here) {
        now.remove(&ep.addr);
    }
    for ep in endpoints.news().filter(|e| e.node == here) {
        now.insert(ep.addr, (ep.task_id.as_str(), ep.vni));
    }
    now
}

/// Every endpoint on this node has its veth, every veth an endpoint and an
/// ifindex (the rules `MeshState::validate` applies to the whole lists).
fn check_local(here_now: &FastMap<Ipv4Addr, (&str, u32)>, new: &MeshState) -> Result<(), Recheck> {
    let locals: FastSet<(&str, u32)> = new
        .local_endpoints
        .iter()
        .map(|l| (l.task_id.as_str(), l.vni))
        .collect();
    let tasks: FastSet<(&str, u32)> = here_now.values().copied().collect();
    let complete = tasks.iter().all(|t| locals.contains(t))
        && new
            .local_endpoints
            .iter()
            .all(|l| l.host_ifindex != 0 && tasks.contains(&(l.task_id.as_str(), l.vni)));
    if complete { Ok(()) } else { Err(Recheck) }
}
