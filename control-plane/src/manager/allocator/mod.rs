//! The allocator (SwarmKit `manager/allocator`): networks, service endpoints (published ports,
//! VIPs) and task addresses. It moves tasks from `NEW` to `PENDING`.
//!
//! Allocation state is not persisted on its own: a full pass rebuilds it from the store (the
//! networks' subnets, the services' endpoints, the addresses of tasks that have not stopped),
//! so a new leader starts from exactly what the old one wrote. Between full passes the loop
//! keeps it in memory and follows the committed changes (a deleted service or a stopped task
//! frees what it held), and a pass looks only at the services and tasks the changes touched.
//! A change of a network, a node's removal or of the cluster settings brings a full pass.
//!
//! A failure (a port taken, a subnet full) is written on the tasks it holds back
//! (`status.err`) and the pass goes on with the others; while any failure stands, every change
//! and every tick brings a full pass, so whatever freed the port or address is noticed.

pub mod ipam;
pub mod networks;
pub mod ports;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use ipam::AddressPool;
use ipnetwork::Ipv4Network;
use ports::{PortError, PortTable, ingress_ports};

use crate::manager::leader_loop::{Reconciler, Scope};
use crate::store::objects::{
    Endpoint, EndpointMode, Network, NetworkAttachment, Node, Object, ObjectKind, Service, Task,
    TaskState, Timestamp, VirtualIp,
};
use crate::store::{Event, ReadView, Store, StoreError, WriteTx};

/// Attempts of one pass when other writes conflict with it.
const ATTEMPTS: usize = 8;

/// Why a service or task could not be allocated; the text lands in the task's `ERROR` column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("could not find an available IP while allocating VIP on network {network}")]
    NoVip { network: String },
    #[error("could not find an available IP while allocating task address on network {network}")]
    NoTaskAddress { network: String },
    #[error("network {network} not found; it may have been removed, update the service")]
    NoNetwork { network: String },
}

/// The allocator loop: what is taken (see the module docs), and the problems it last logged,
/// so that a network or service that cannot be allocated is logged once, not at every pass.
#[derive(Debug, Default)]
pub struct Allocator {
    reported: BTreeSet<String>,
    /// What is taken; `None` until a full pass built it.
    state: Option<State>,
}

/// What a pass after a change looks at.
#[derive(Debug, Default)]
pub struct Work {
    services: BTreeSet<String>,
    tasks: BTreeSet<String>,
}

impl Work {
    fn is_empty(&self) -> bool {
        self.services.is_empty() && self.tasks.is_empty()
    }
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub wrote: bool,
    /// Networks and services that could not be allocated, as log lines.
    pub problems: BTreeSet<String>,
}

impl Reconciler for Allocator {
    const NAME: &'static str = "allocator";

    fn kinds(&self) -> &'static [ObjectKind] {
        &[
            ObjectKind::Network,
            ObjectKind::Service,
            ObjectKind::Task,
            ObjectKind::Cluster,
            ObjectKind::Node,
        ]
    }

    async fn pass(&mut self, store: &Store, scope: Scope) -> Result<bool, StoreError> {
        let mut work = match scope {
            Scope::Tick if self.reported.is_empty() => return Ok(false),
            Scope::Changed(events) if self.reported.is_empty() => self.follow(&events),
            Scope::Tick | Scope::Changed(_) | Scope::Full => None,
        };
        if work.as_ref().is_some_and(Work::is_empty) {
            return Ok(false);
        }
        let mut state = if work.is_some() {
            self.state.take()
        } else {
            None
        };
        let mut attempt = 1;
        let result = loop {
            let result = store
                .update(|tx| match (&work, state.as_mut()) {
                    (Some(work), Some(state)) => allocate_some(tx, state, work),
                    _ => {
                        let (outcome, read) = allocate(tx)?;
                        state = Some(read);
                        Ok(outcome)
                    }
                })
                .await;
            match result {
                // What this attempt took in memory was not written: start again from the store.
                Err(err) if err.is_version_conflict() && attempt < ATTEMPTS => {
                    attempt += 1;
                    work = None;
                    state = None;
                }
                other => break other,
            }
        };
        // A failed pass may have taken in memory what it did not write.
        self.state = if result.is_ok() { state } else { None };
        let outcome = result?;
        for problem in outcome.problems.difference(&self.reported) {
            tracing::warn!(%problem, "allocator: not allocated; retrying when something changes");
        }
        self.reported = outcome.problems;
        Ok(outcome.wrote)
    }

    fn reset(&mut self) {
        self.reported.clear();
        self.state = None;
    }
}

impl Allocator {
    /// Follows `events` in the state kept; returns what to look at, or `None` if a full pass
    /// is due (no state yet, a network, node or cluster change).
    fn follow(&mut self, events: &[Event]) -> Option<Work> {
        let state = self.state.as_mut()?;
        let mut work = Work::default();
        let seen_through = state.seen_through;
        for event in events.iter().filter(|e| e.index() > seen_through) {
            let (old, new) = match event {
                Event::Created { object, .. } => (None, Some(object)),
                Event::Updated { old, object, .. } => (Some(old), Some(object)),
                Event::Deleted { object, .. } => (Some(object), None),
            };
            match (old, new) {
                (_, Some(Object::Node(node))) => {
                    state.nodes.insert(node.id.clone());
                }
                (Some(Object::Service(old)), new) => {
                    state.release_service(old);
                    if let Some(Object::Service(new)) = new {
                        state.reserve_service(new);
                        work.services.insert(new.id.clone());
                    }
                }
                (None, Some(Object::Service(new))) => {
                    state.reserve_service(new);
                    work.services.insert(new.id.clone());
                }
                (Some(Object::Task(old)), new) => {
                    state.release_task(old);
                    if let Some(Object::Task(new)) = new {
                        state.reserve_task(new);
                        work.tasks.insert(new.id.clone());
                    }
                }
                (None, Some(Object::Task(new))) => {
                    state.reserve_task(new);
                    work.tasks.insert(new.id.clone());
                }
                // A network or cluster change, or a node removed.
                _ => return None,
            }
        }
        Some(work)
    }
}

/// One full allocator pass in `tx`; returns what it did and what is taken afterwards.
pub fn allocate(tx: &mut WriteTx) -> Result<(Outcome, State), StoreError> {
    let (mut wrote, ingress_problem) = networks::ensure_ingress(tx)?;
    let (networks_wrote, errors) = networks::allocate_networks(tx)?;
    wrote |= networks_wrote;
    let mut problems: BTreeSet<String> = errors.iter().map(ToString::to_string).collect();
    problems.extend(ingress_problem);
    let mut state = State::load(tx)?;
    let services = tx.list::<Service>()?;
    let tasks = tx.find::<Task>(|t| {
        t.status.state == TaskState::New && t.desired_state <= TaskState::Running
    })?;
    let mut outcome = allocate_these(tx, &mut state, services, tasks)?;
    outcome.wrote |= wrote;
    outcome.problems.extend(problems);
    Ok((outcome, state))
}

/// A pass over what `work` names, with the state kept since the last full pass: the services
/// (and their new tasks, which may have waited for the service), and the tasks.
fn allocate_some(tx: &mut WriteTx, state: &mut State, work: &Work) -> Result<Outcome, StoreError> {
    let mut services = Vec::new();
    let mut task_ids = work.tasks.clone();
    for id in &work.services {
        if let Some(service) = tx.get::<Service>(id)? {
            services.push(service);
            task_ids.extend(tx.tasks_of_service(id)?.into_iter().map(|t| t.id));
        }
    }
    let mut tasks = Vec::new();
    for id in &task_ids {
        if let Some(task) = tx.get::<Task>(id)?
            && task.status.state == TaskState::New
            && task.desired_state <= TaskState::Running
        {
            if !services.iter().any(|s| s.id == task.service_id)
                && let Some(service) = tx.get::<Service>(&task.service_id)?
            {
                services.push(service);
            }
            tasks.push(task);
        }
    }
    allocate_these(tx, state, services, tasks)
}

/// Allocates `services` (their endpoints), then `tasks` (their addresses).
fn allocate_these(
    tx: &mut WriteTx,
    state: &mut State,
    mut services: Vec<Service>,
    mut tasks: Vec<Task>,
) -> Result<Outcome, StoreError> {
    let mut wrote = false;
    let mut problems = BTreeSet::new();
    services.sort_by(|a, b| (a.meta.created_at, &a.id).cmp(&(b.meta.created_at, &b.id)));
    let mut failed: BTreeMap<String, AllocError> = BTreeMap::new();
    for service in &mut services {
        match state.service_endpoint(service) {
            Ok(None) => {}
            Ok(Some(endpoint)) => {
                service.endpoint = Some(endpoint);
                tx.update(service.clone())?;
                wrote = true;
            }
            Err(err) => {
                problems.insert(err.to_string());
                failed.insert(service.id.clone(), err);
            }
        }
    }
    let services: BTreeMap<String, Service> =
        services.into_iter().map(|s| (s.id.clone(), s)).collect();
    tasks.sort_by_key(|t| (t.service_id.clone(), t.slot, t.id.clone()));
    for mut task in tasks {
        let Some(service) = services.get(&task.service_id) else {
            continue;
        };
        let result = match failed.get(&service.id) {
            Some(err) => Err(err.clone()),
            None => match &service.endpoint {
                Some(endpoint) if state.is_current(service) => state
                    .task_networks(service, &task)
                    .map(|networks| networks.map(|networks| (endpoint.clone(), networks))),
                // The service is not allocated yet; the next pass allocates it.
                _ => Ok(None),
            },
        };
        match result {
            Ok(None) => {}
            Ok(Some((endpoint, networks))) => {
                task.endpoint = Some(endpoint);
                task.networks = networks;
                task.status.state = TaskState::Pending;
                task.status.timestamp = Timestamp::now();
                task.status.message = "pending task scheduling".to_owned();
                task.status.err.clear();
                tx.update(task)?;
                wrote = true;
            }
            Err(err) => {
                let text = err.to_string();
                if task.status.err != text {
                    tracing::info!(task = %task.id, %text, "allocator: task held back");
                    task.status.err = text;
                    task.status.timestamp = Timestamp::now();
                    tx.update(task)?;
                    wrote = true;
                }
            }
        }
    }
    Ok(Outcome { wrote, problems })
}

/// What is taken: read by a full pass, then kept by the changes that follow.
#[derive(Debug)]
pub struct State {
    networks: BTreeMap<String, Network>,
    pools: BTreeMap<String, AddressPool>,
    ports: PortTable,
    ingress_id: Option<String>,
    /// Nodes that exist: the addresses of tasks on removed nodes are free.
    nodes: BTreeSet<String>,
    /// Index of the last change reflected.
    seen_through: u64,
}

impl State {
    fn reserve_service(&mut self, service: &Service) {
        if let Some(endpoint) = &service.endpoint {
            self.ports
                .reserve(&service.id, &service.spec.annotations.name, &endpoint.ports);
            for vip in &endpoint.virtual_ips {
                self.reserve(&vip.network_id, &vip.addr);
            }
        }
    }

    fn release_service(&mut self, service: &Service) {
        self.ports.release(&service.id);
        if let Some(endpoint) = &service.endpoint {
            for vip in &endpoint.virtual_ips {
                self.release(&vip.network_id, &vip.addr);
            }
        }
    }

    /// Whether `task` holds its addresses: it has not stopped, and its node was not removed.
    fn holds(&self, task: &Task) -> bool {
        !task.status.state.is_terminal()
            && task.node_id.as_ref().is_none_or(|n| self.nodes.contains(n))
    }

    fn reserve_task(&mut self, task: &Task) {
        if self.holds(task) {
            for attachment in &task.networks {
                for addr in &attachment.addresses {
                    self.reserve(&attachment.network_id, addr);
                }
            }
        }
    }

    fn release_task(&mut self, task: &Task) {
        if self.holds(task) {
            for attachment in &task.networks {
                for addr in &attachment.addresses {
                    self.release(&attachment.network_id, addr);
                }
            }
        }
    }

    fn release(&mut self, network_id: &str, addr: &Ipv4Network) {
        if let Some(pool) = self.pools.get_mut(network_id) {
            pool.release(addr.ip());
        }
    }

    fn load(tx: &WriteTx) -> Result<Self, StoreError> {
        let networks: BTreeMap<String, Network> = tx
            .list::<Network>()?
            .into_iter()
            .map(|n| (n.id.clone(), n))
            .collect();
        let ingress_id = networks
            .values()
            .find(|n| n.spec.ingress)
            .map(|n| n.id.clone());
        let pools = networks
            .values()
            .filter_map(|n| Some((n.id.clone(), pool_of(n)?)))
            .collect();
        let mut state = Self {
            networks,
            pools,
            ports: PortTable::default(),
            ingress_id,
            // Addresses of tasks that stopped, or whose node was removed, are free again (a
            // restart makes a new task).
            nodes: tx.list::<Node>()?.into_iter().map(|n| n.id).collect(),
            seen_through: tx.applied_index(),
        };
        for service in tx.list::<Service>()? {
            state.reserve_service(&service);
        }
        for task in tx.list::<Task>()? {
            state.reserve_task(&task);
        }
        Ok(state)
    }

    fn reserve(&mut self, network_id: &str, addr: &Ipv4Network) {
        if let Some(pool) = self.pools.get_mut(network_id) {
            pool.reserve(addr.ip());
        }
    }

    fn network_name(&self, id: &str) -> String {
        self.networks
            .get(id)
            .map_or_else(|| id.to_owned(), |n| n.spec.annotations.name.clone())
    }

    /// The networks a service's tasks attach to: `ingress` if it publishes a port (SwarmKit
    /// `IsIngressNetworkNeeded` for ingress mode; host-mode ports are delivered over the same
    /// veth, see docs/agent.md), then the template's networks.
    fn service_networks(&self, service: &Service) -> Vec<String> {
        let mut ids = Vec::new();
        if ports::publishes(&service.spec.endpoint_spec.ports)
            && let Some(ingress) = &self.ingress_id
        {
            ids.push(ingress.clone());
        }
        for attachment in &service.spec.task_template.networks {
            if !ids.contains(&attachment.target) {
                ids.push(attachment.target.clone());
            }
        }
        ids
    }

    /// Networks that need a VIP: all of them in VIP mode, none with DNS round robin.
    /// A service that publishes host-mode ports only is on ingress for delivery, not for
    /// balancing: it gets no ingress VIP (as in Swarm, where it is not on ingress at all).
    fn vip_networks(&self, service: &Service) -> Vec<String> {
        match service.spec.endpoint_spec.mode {
            EndpointMode::Vip => {
                let mut ids = self.service_networks(service);
                if ingress_ports(&service.spec.endpoint_spec.ports)
                    .next()
                    .is_none()
                {
                    ids.retain(|id| Some(id) != self.ingress_id.as_ref());
                }
                ids
            }
            EndpointMode::Dnsrr => Vec::new(),
        }
    }

    /// Whether the service's endpoint matches its spec.
    fn is_current(&self, service: &Service) -> bool {
        let Some(endpoint) = &service.endpoint else {
            return false;
        };
        let have: Vec<&str> = endpoint
            .virtual_ips
            .iter()
            .map(|v| v.network_id.as_str())
            .collect();
        let want = self.vip_networks(service);
        endpoint.spec == service.spec.endpoint_spec
            && have.len() == want.len()
            && want.iter().all(|w| have.contains(&w.as_str()))
    }

    /// A new endpoint if the service needs one (`None` if it is current, or must wait for a
    /// network to be allocated).
    fn service_endpoint(&mut self, service: &Service) -> Result<Option<Endpoint>, AllocError> {
        if self.is_current(service) {
            return Ok(None);
        }
        let want = self.vip_networks(service);
        for id in &want {
            if !self.networks.contains_key(id) {
                return Err(AllocError::NoNetwork {
                    network: id.clone(),
                });
            }
            if !self.pools.contains_key(id) {
                return Ok(None);
            }
        }
        let previous = service.endpoint.clone().unwrap_or_default();
        let name = &service.spec.annotations.name;
        // On error the port table is left as it was; VIPs taken here are given back, so a
        // failure leaves nothing half taken.
        let mut virtual_ips = Vec::new();
        let mut taken: Vec<(String, Ipv4Network)> = Vec::new();
        for id in &want {
            if let Some(kept) = previous.virtual_ips.iter().find(|v| &v.network_id == id) {
                virtual_ips.push(kept.clone());
                continue;
            }
            let Some(addr) = self.pools.get_mut(id).and_then(AddressPool::allocate) else {
                for (network, addr) in &taken {
                    self.release(network, addr);
                }
                return Err(AllocError::NoVip {
                    network: self.network_name(id),
                });
            };
            taken.push((id.clone(), addr));
            virtual_ips.push(VirtualIp {
                network_id: id.clone(),
                addr,
            });
        }
        let ports_out = match self.ports.allocate(
            &service.id,
            name,
            &service.spec.endpoint_spec.ports,
            &previous.ports,
        ) {
            Ok(ports) => ports,
            Err(err) => {
                for (network, addr) in &taken {
                    self.release(network, addr);
                }
                return Err(err.into());
            }
        };
        Ok(Some(Endpoint {
            spec: service.spec.endpoint_spec.clone(),
            ports: ports_out,
            virtual_ips,
        }))
    }

    /// One address on each of the service's networks for `task`; `None` if a network is not
    /// allocated yet.
    fn task_networks(
        &mut self,
        service: &Service,
        task: &Task,
    ) -> Result<Option<Vec<NetworkAttachment>>, AllocError> {
        let mut ids = Vec::new();
        if let Some(ingress) = &self.ingress_id
            && ports::publishes(&service.spec.endpoint_spec.ports)
        {
            ids.push((ingress.clone(), Vec::new()));
        }
        for attachment in &task.spec.networks {
            if !ids.iter().any(|(id, _)| id == &attachment.target) {
                ids.push((attachment.target.clone(), attachment.aliases.clone()));
            }
        }
        for (id, _) in &ids {
            if !self.networks.contains_key(id) {
                return Err(AllocError::NoNetwork {
                    network: id.clone(),
                });
            }
            if !self.pools.contains_key(id) {
                return Ok(None);
            }
        }
        let mut out: Vec<NetworkAttachment> = Vec::with_capacity(ids.len());
        for (id, aliases) in ids {
            match self.pools.get_mut(&id).and_then(AddressPool::allocate) {
                Some(addr) => out.push(NetworkAttachment {
                    network_id: id,
                    addresses: vec![addr],
                    aliases,
                }),
                None => {
                    // Give back what this task took so far.
                    for taken in &out {
                        if let Some(pool) = self.pools.get_mut(&taken.network_id) {
                            taken.addresses.iter().for_each(|a| pool.release(a.ip()));
                        }
                    }
                    return Err(AllocError::NoTaskAddress {
                        network: self.network_name(&id),
                    });
                }
            }
        }
        Ok(Some(out))
    }
}

/// The address pool of an allocated network (its first subnet); `None` before allocation.
fn pool_of(network: &Network) -> Option<AddressPool> {
    let config = network.ipam.first()?;
    Some(AddressPool::new(
        config.subnet,
        config.range,
        config.gateway,
    ))
}
