//! [`MeshApplier`]: apply a change to the mesh with a cost proportional to the
//! change, not to the mesh.
//!
//! The applier keeps the state it last applied, by key (services by ID, endpoints by
//! address), and an index of it (`index.rs`). A change comes in two forms:
//!
//! - a [`MeshDelta`] ([`MeshApplier::apply_delta`]): the control plane says which
//!   services, endpoints, peers and local endpoints changed. Only those are validated
//!   (against the index for the global rules: unique IDs, VIPs, published ports and
//!   addresses, no peer removed while something runs on it), compiled, and handed to
//!   [`Reconciler::apply_delta`]. Nothing else of the state is looked at;
//! - a whole [`MeshState`] ([`MeshApplier::apply`]): compared with the applied one key by
//!   key (a hash lookup per service and endpoint, no compilation), which gives the same
//!   [`MeshDelta`], applied the same way.
//!
//! The full path — validate everything, compile everything, [`Reconciler::apply`] —
//! remains for the first apply, after a restart or a failed apply (the maps may then hold
//! a mix of both states), and when the node or the networks change (everything depends
//! on them; both are rare). A change the incremental checks reject is validated in full
//! (the whole new state is put together for it), so the error is exactly the one
//! [`MeshState::validate`] gives.

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
    state::{LocalEndpoint, MeshDelta, MeshState, OverlayPeer, Service, TaskEndpoint},
    validate::{MeshStateError, check_id, validate_endpoint, validate_peers, validate_service},
};
use hive_common::maps::Endpoint;

/// The reconciler plus what it last applied.
#[derive(Debug)]
pub struct MeshApplier {
    reconciler: Reconciler,
    last: Option<Applied>,
    work: usize,
}

/// A state the maps hold exactly (as of the end of a successful apply).
#[derive(Debug)]
struct Applied {
    /// Node, networks, peers and local endpoints as applied; its services and endpoints
    /// are empty (they are below, by key).
    shell: MeshState,
    services: FastMap<String, Service>,
    endpoints: FastMap<Ipv4Addr, TaskEndpoint>,
    underlay: UnderlayLink,
    index: Index,
}

impl Applied {
    fn of(state: &MeshState, underlay: UnderlayLink) -> Self {
        Self {
            shell: MeshState {
                node: state.node.clone(),
                networks: state.networks.clone(),
                peers: state.peers.clone(),
                services: Vec::new(),
                endpoints: Vec::new(),
                local_endpoints: state.local_endpoints.clone(),
            },
            services: state
                .services
                .iter()
                .map(|s| (s.id.clone(), s.clone()))
                .collect(),
            endpoints: state
                .endpoints
                .iter()
                .map(|e| (e.addr, e.clone()))
                .collect(),
            underlay,
            index: Index::build(state),
        }
    }

    /// The applied state with `delta` on top, whole (services and endpoints in key order).
    fn with(&self, delta: &MeshDelta) -> MeshState {
        let mut services = self.services.clone();
        for (id, service) in &delta.services {
            match service {
                Some(s) => services.insert(id.clone(), s.clone()),
                None => services.remove(id),
            };
        }
        let mut endpoints = self.endpoints.clone();
        for (addr, ep) in &delta.endpoints {
            match ep {
                Some(e) => endpoints.insert(*addr, e.clone()),
                None => endpoints.remove(addr),
            };
        }
        let mut state = self.shell.clone();
        state.services = services.into_values().collect();
        state.services.sort_by(|a, b| a.id.cmp(&b.id));
        state.endpoints = endpoints.into_values().collect();
        state.endpoints.sort_by_key(|e| e.addr);
        if let Some(peers) = &delta.peers {
            state.peers.clone_from(peers);
        }
        if let Some(locals) = &delta.local_endpoints {
            state.local_endpoints.clone_from(locals);
        }
        state
    }
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
            work: 0,
        }
    }

    pub fn reconciler(&self) -> &Reconciler {
        &self.reconciler
    }

    /// How many services, endpoints, peers and local endpoints the last apply validated
    /// and compiled: all of them on the full path, only the changed ones otherwise (for
    /// tests and measurements).
    pub fn work(&self) -> usize {
        self.work
    }

    /// Is a state applied, so that [`Self::apply_delta`] has something to change?
    pub fn has_base(&self) -> bool {
        self.last.is_some()
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
        if let Some(applied) = &self.last
            && applied.underlay == underlay
            && applied.shell.node == state.node
            && applied.shell.networks == state.networks
            && let Ok(delta) = diff(applied, state)
        {
            match self.incremental(&delta, maps) {
                Ok(Some(stats)) => return Ok((stats, ApplyPath::Incremental)),
                Ok(None) => {}
                Err(e) => return Err(e),
            }
        }
        self.full(state, underlay, maps)
            .map(|stats| (stats, ApplyPath::Full))
    }

    /// Make the maps hold the last applied state with `delta` on top. Only what `delta`
    /// names is validated, compiled and written. Needs a state applied before
    /// ([`ApplyError::NothingApplied`] otherwise: apply a whole state).
    pub fn apply_delta(
        &mut self,
        delta: &MeshDelta,
        maps: &mut impl MeshMapOps,
    ) -> Result<ApplyStats, ApplyError> {
        if self.last.is_none() {
            return Err(ApplyError::NothingApplied);
        }
        if let Some(stats) = self.incremental(delta, maps)? {
            return Ok(stats);
        }
        let Some(applied) = &self.last else {
            return Err(ApplyError::NothingApplied);
        };
        // Rejected by the incremental checks: the whole new state says exactly why (or,
        // for what they do not decide, is applied the full way).
        let (state, underlay) = (applied.with(delta), applied.underlay);
        self.full(&state, underlay, maps)
    }

    /// Validate, compile and apply `state` whole.
    fn full(
        &mut self,
        state: &MeshState,
        underlay: UnderlayLink,
        maps: &mut impl MeshMapOps,
    ) -> Result<ApplyStats, ApplyError> {
        // Invalid: nothing was written, what was applied stays applied.
        state.validate()?;
        self.work = state.services.len()
            + state.endpoints.len()
            + state.peers.len()
            + state.local_endpoints.len();
        let desired = Desired::compile(state, underlay);
        let result = self.reconciler.apply(&desired, maps);
        self.last = result.is_ok().then(|| Applied::of(state, underlay));
        result
    }

    /// The incremental apply of `delta` on the applied state. `Ok(None)`: the incremental
    /// checks rejected it (nothing was written), go the full way.
    fn incremental(
        &mut self,
        delta: &MeshDelta,
        maps: &mut impl MeshMapOps,
    ) -> Result<Option<ApplyStats>, ApplyError> {
        let Some(applied) = &mut self.last else {
            return Ok(None);
        };
        let Applied {
            shell,
            services,
            endpoints,
            underlay,
            index,
        } = applied;
        let Ok(plan) = plan(shell, services, endpoints, index, delta, *underlay) else {
            return Ok(None);
        };
        self.work = plan.work;
        let stats = match self.reconciler.apply_delta(&plan.delta, maps) {
            Ok(stats) => stats,
            Err(e) => {
                // The maps may hold part of the new state: only the full diff knows how
                // to finish from there.
                self.last = None;
                return Err(e);
            }
        };

        // The maps hold the new state now: bring the index and the copy along.
        let here = shell.node.underlay_addr;
        plan.services
            .old
            .iter()
            .for_each(|s| index.remove_service(s));
        plan.services.new.iter().for_each(|s| index.add_service(s));
        plan.endpoints
            .old
            .iter()
            .for_each(|e| index.remove_endpoint(e, here));
        plan.endpoints
            .new
            .iter()
            .for_each(|e| index.add_endpoint(e, here));
        let (new_peers, new_locals) = (plan.peers, plan.locals);
        if let Some(peers) = new_peers {
            index.peers = peers.iter().map(|p| p.underlay_addr).collect();
            shell.peers = peers.to_vec();
        }
        if let Some(locals) = new_locals {
            shell.local_endpoints = locals.to_vec();
        }
        for (id, service) in &delta.services {
            match service {
                Some(s) => services.insert(id.clone(), s.clone()),
                None => services.remove(id),
            };
        }
        for (addr, ep) in &delta.endpoints {
            match ep {
                Some(e) => endpoints.insert(*addr, e.clone()),
                None => endpoints.remove(addr),
            };
        }
        Ok(Some(stats))
    }
}

/// A whole state compared with the applied one, key by key: the [`MeshDelta`] between
/// them. `Err`: a key appears twice in `state` (the full validation says which).
fn diff(applied: &Applied, state: &MeshState) -> Result<MeshDelta, Recheck> {
    let mut delta = MeshDelta::default();
    let mut seen: FastSet<&str> = FastSet::default();
    let mut kept = 0;
    for s in &state.services {
        if !seen.insert(&s.id) {
            return Err(Recheck);
        }
        match applied.services.get(&s.id) {
            Some(old) => {
                kept += 1;
                if old != s {
                    delta.services.push((s.id.clone(), Some(s.clone())));
                }
            }
            None => delta.services.push((s.id.clone(), Some(s.clone()))),
        }
    }
    if kept < applied.services.len() {
        delta.services.extend(
            applied
                .services
                .keys()
                .filter(|id| !seen.contains(id.as_str()))
                .map(|id| (id.clone(), None)),
        );
    }
    let mut seen: FastSet<Ipv4Addr> = FastSet::default();
    let mut kept = 0;
    for e in &state.endpoints {
        if !seen.insert(e.addr) {
            return Err(Recheck);
        }
        match applied.endpoints.get(&e.addr) {
            Some(old) => {
                kept += 1;
                if old != e {
                    delta.endpoints.push((e.addr, Some(e.clone())));
                }
            }
            None => delta.endpoints.push((e.addr, Some(e.clone()))),
        }
    }
    if kept < applied.endpoints.len() {
        delta.endpoints.extend(
            applied
                .endpoints
                .keys()
                .filter(|a| !seen.contains(a))
                .map(|a| (*a, None)),
        );
    }
    if applied.shell.peers != state.peers {
        delta.peers = Some(state.peers.clone());
    }
    if applied.shell.local_endpoints != state.local_endpoints {
        delta.local_endpoints = Some(state.local_endpoints.clone());
    }
    Ok(delta)
}

/// The old and new versions of what a delta changes.
#[derive(Debug)]
struct Changes<'a, T> {
    /// Every old version that goes away or is replaced.
    old: Vec<&'a T>,
    /// Every new version that comes in or replaces an old one.
    new: Vec<&'a T>,
    /// Old versions with no new one.
    removed: Vec<&'a T>,
}

impl<T> Default for Changes<'_, T> {
    fn default() -> Self {
        Self {
            old: Vec::new(),
            new: Vec::new(),
            removed: Vec::new(),
        }
    }
}

/// The changes `delta` makes to `applied` (keyed by `key`); entries equal to what is
/// applied are left out. `Err`: a key twice, or an entry under another key than its own.
fn changes<'a, K, T>(
    applied: &'a FastMap<K, T>,
    delta: &'a [(K, Option<T>)],
    key: impl Fn(&T) -> &K,
) -> Result<Changes<'a, T>, Recheck>
where
    K: std::hash::Hash + Eq,
    T: PartialEq,
{
    let mut out = Changes::default();
    let mut seen: FastSet<&K> = FastSet::default();
    for (k, new) in delta {
        if !seen.insert(k) || new.as_ref().is_some_and(|n| key(n) != k) {
            return Err(Recheck);
        }
        let old = applied.get(k);
        if old == new.as_ref() {
            continue;
        }
        if let Some(old) = old {
            out.old.push(old);
            if new.is_none() {
                out.removed.push(old);
            }
        }
        if let Some(new) = new {
            out.new.push(new);
        }
    }
    Ok(out)
}

/// What changed, checked and compiled.
#[derive(Debug)]
struct Plan<'a> {
    services: Changes<'a, Service>,
    endpoints: Changes<'a, TaskEndpoint>,
    /// The new peers, if they changed.
    peers: Option<&'a [OverlayPeer]>,
    /// The new local endpoints, if they changed.
    locals: Option<&'a [LocalEndpoint]>,
    /// Entries validated and compiled.
    work: usize,
    delta: Delta,
}

/// Check the changes `delta` makes to the applied state (`shell` with `services` and
/// `endpoints`, indexed by `index`) and compile them.
fn plan<'a>(
    shell: &MeshState,
    services: &'a FastMap<String, Service>,
    endpoints: &'a FastMap<Ipv4Addr, TaskEndpoint>,
    index: &Index,
    delta: &'a MeshDelta,
    underlay: UnderlayLink,
) -> Result<Plan<'a>, Recheck> {
    let here = shell.node.underlay_addr;
    let networks = shell.validate_networks()?;
    let peers = delta
        .peers
        .as_deref()
        .filter(|p| *p != shell.peers.as_slice());
    let new_peers = match peers {
        Some(peers) => Some(validate_peers(here, peers)?),
        None => None,
    };
    let known_node = |addr: Ipv4Addr| {
        addr == here
            || match &new_peers {
                Some(peers) => peers.contains_key(&addr),
                None => index.peers.contains(&addr),
            }
    };

    let service_changes = changes(services, &delta.services, |s| &s.id)?;
    let mut claims = DeltaClaims::new(index, service_changes.old.iter().map(|s| s.id.as_str()));
    for service in &service_changes.new {
        check_id("service ID", &service.id)?;
        validate_service(service, &networks, &mut claims, &known_node)?;
    }

    let endpoint_changes = changes(endpoints, &delta.endpoints, |e| &e.addr)?;
    for ep in &endpoint_changes.new {
        validate_endpoint(ep, &networks, &known_node)?;
    }

    // A peer may go only once nothing runs on it any more. (New versions
    // naming it were refused above.)
    if let Some(new_peers) = &new_peers {
        for gone in index.peers.iter().filter(|a| !new_peers.contains_key(*a)) {
            let leaving = service_changes
                .old
                .iter()
                .flat_map(|s| &s.backends)
                .filter(|b| b.node == *gone)
                .count()
                + endpoint_changes
                    .old
                    .iter()
                    .filter(|e| e.node == *gone)
                    .count();
            if index.node_refs(*gone) as usize > leaving {
                return Err(Recheck);
            }
        }
    }

    // Endpoints on this node and their veths: rechecked (all of them, they
    // are few) when either side changed.
    let locals = delta
        .local_endpoints
        .as_deref()
        .filter(|l| *l != shell.local_endpoints.as_slice());
    let touches_here = endpoint_changes
        .old
        .iter()
        .chain(&endpoint_changes.new)
        .any(|e| e.node == here);
    let ctx = CompileContext::new(shell);
    let mut endpoint_delta: FastMap<u32, Option<Endpoint>> = FastMap::default();
    for ep in &endpoint_changes.removed {
        endpoint_delta.insert(addr_be(ep.addr), None);
    }
    if locals.is_some() || touches_here {
        let new_locals = locals.unwrap_or(&shell.local_endpoints);
        let ifindex_of = local_ifindexes(new_locals);
        let here_now = endpoints_here(index, &endpoint_changes, here);
        check_local(&here_now, new_locals)?;
        for ep in &endpoint_changes.new {
            let ifindex = ifindex_of.get(&(ep.task_id.as_str(), ep.vni)).copied();
            endpoint_delta.insert(addr_be(ep.addr), Some(ctx.endpoint(ep, ifindex)));
        }
        if locals.is_some() {
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
        for ep in &endpoint_changes.new {
            endpoint_delta.insert(addr_be(ep.addr), Some(ctx.endpoint(ep, None)));
        }
    }

    let mut compiled_delta = Delta {
        node: node_config(&shell.node, underlay),
        endpoints: endpoint_delta.into_iter().collect(),
        ..Delta::default()
    };
    if let Some(peers) = peers {
        let before: FastMap<u32, _> = shell
            .peers
            .iter()
            .map(|p| (addr_be(p.underlay_addr), peer_entry(p)))
            .collect();
        let after: FastMap<u32, _> = peers
            .iter()
            .map(|p| (addr_be(p.underlay_addr), peer_entry(p)))
            .collect();
        compiled_delta.peers = after
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
    for service in &service_changes.old {
        ctx.service(service, &mut compiled);
        for (vni, balancer) in compiled.drain(..) {
            compiled_delta
                .old_frontends
                .extend(balancer.frontends.keys().copied());
            compiled_delta.balancers.insert(key(service, vni), None);
        }
    }
    for service in &service_changes.new {
        ctx.service(service, &mut compiled);
        for (vni, balancer) in compiled.drain(..) {
            compiled_delta
                .balancers
                .insert(key(service, vni), Some(balancer));
        }
    }
    let work = service_changes.old.len()
        + service_changes.new.len()
        + endpoint_changes.old.len()
        + endpoint_changes.new.len()
        + peers.map_or(0, <[_]>::len)
        + locals.map_or(0, <[_]>::len);
    Ok(Plan {
        services: service_changes,
        endpoints: endpoint_changes,
        peers,
        locals,
        work,
        delta: compiled_delta,
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
    endpoints: &Changes<'a, TaskEndpoint>,
    here: Ipv4Addr,
) -> FastMap<Ipv4Addr, (&'a str, u32)> {
    let mut now: FastMap<Ipv4Addr, (&str, u32)> = index
        .here
        .iter()
        .map(|(&addr, (task, vni))| (addr, (task.as_str(), *vni)))
        .collect();
    for ep in endpoints.old.iter().filter(|e| e.node == here) {
        now.remove(&ep.addr);
    }
    for ep in endpoints.new.iter().filter(|e| e.node == here) {
        now.insert(ep.addr, (ep.task_id.as_str(), ep.vni));
    }
    now
}

/// Every endpoint on this node has its veth, every veth an endpoint and an
/// ifindex (the rules `MeshState::validate` applies to the whole lists).
fn check_local(
    here_now: &FastMap<Ipv4Addr, (&str, u32)>,
    new_locals: &[LocalEndpoint],
) -> Result<(), Recheck> {
    let locals: FastSet<(&str, u32)> = new_locals
        .iter()
        .map(|l| (l.task_id.as_str(), l.vni))
        .collect();
    let tasks: FastSet<(&str, u32)> = here_now.values().copied().collect();
    let complete = tasks.iter().all(|t| locals.contains(t))
        && new_locals
            .iter()
            .all(|l| l.host_ifindex != 0 && tasks.contains(&(l.task_id.as_str(), l.vni)));
    if complete { Ok(()) } else { Err(Recheck) }
}
