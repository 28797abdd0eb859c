//! [`Names`]: what the embedded resolver answers, cut from the mesh view.
//!
//! Docker's rules (`shared/reference/swarm-reference.md` §2, "Service discovery"), per
//! network, so a task only finds services of the networks it is attached to:
//! - `<service>` and each of its network aliases: the service's VIP on that network, or with
//!   `--endpoint-mode dnsrr` the addresses of its running tasks;
//! - `tasks.<service>` and `tasks.<alias>`: the addresses of its running tasks, whatever the
//!   endpoint mode.
//!
//! Past Docker: tasks of a node gossip declares dead leave `tasks.` answers at once, as their
//! backends leave the mesh, instead of after the manager has rescheduled them.
//! The ingress network is for published ports, not for discovery: no names there.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use crate::api::mesh_view::MeshView;
use crate::store::objects::EndpointMode;

/// The prefix of the names that list a service's tasks.
const TASKS_PREFIX: &str = "tasks.";

/// What a name means on one network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Entry {
    /// The VIP, for services in VIP mode.
    vip: Option<Ipv4Addr>,
    /// Addresses of the running tasks on live nodes, sorted.
    tasks: BTreeSet<Ipv4Addr>,
}

/// Every name the resolver knows, per network ID (lower-case names, no trailing dot).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    networks: HashMap<String, HashMap<String, Entry>>,
}

/// The answer to a name on a task's networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A swarm name; its IPv4 addresses (none for a service without running tasks).
    Found(Vec<Ipv4Addr>),
    /// Not a name of the swarm on these networks: a name for the node's own resolvers.
    NotInSwarm,
}

impl Names {
    /// The names of `view`, leaving out tasks on the nodes in `dead`.
    pub fn from_view(view: &MeshView, dead: &BTreeSet<String>) -> Self {
        let discovery: BTreeSet<&str> = view
            .networks
            .iter()
            .filter(|n| !n.ingress)
            .map(|n| n.id.as_str())
            .collect();
        let services: HashMap<&str, _> = view.services.iter().map(|s| (s.id.as_str(), s)).collect();
        // (network, service) → the names and entry being built.
        let mut built: BTreeMap<(&str, &str), (BTreeSet<String>, Entry)> = BTreeMap::new();
        for service in &view.services {
            for vip in &service.endpoint.virtual_ips {
                if !discovery.contains(vip.network_id.as_str()) {
                    continue;
                }
                let (names, entry) = built
                    .entry((vip.network_id.as_str(), service.id.as_str()))
                    .or_default();
                names.insert(service.name.to_ascii_lowercase());
                if service.endpoint.spec.mode == EndpointMode::Vip {
                    entry.vip = Some(vip.addr.ip());
                }
            }
        }
        for task in &view.tasks {
            // A task being shut down answers no new name lookups, as it takes no new flows.
            if task.draining || dead.contains(&task.node_id) {
                continue;
            }
            let Some(service) = services.get(task.service_id.as_str()) else {
                continue;
            };
            for attachment in &task.networks {
                if !discovery.contains(attachment.network_id.as_str()) {
                    continue;
                }
                let (names, entry) = built
                    .entry((attachment.network_id.as_str(), service.id.as_str()))
                    .or_default();
                names.insert(service.name.to_ascii_lowercase());
                names.extend(attachment.aliases.iter().map(|a| a.to_ascii_lowercase()));
                let addr = attachment.addresses.first().map(|a| a.ip());
                entry.tasks.extend(addr);
            }
        }
        let mut networks: HashMap<String, HashMap<String, Entry>> = HashMap::new();
        for ((network, _), (names, entry)) in built {
            let table = networks.entry(network.to_owned()).or_default();
            for name in names {
                // Two services claiming one name on a network: the first by ID keeps it, so
                // every node answers the same.
                table.entry(name).or_insert_with(|| entry.clone());
            }
        }
        Self { networks }
    }

    /// Resolve `name` (any case, trailing dot or not) for a task attached to `networks`.
    pub fn lookup<'a>(&self, networks: impl IntoIterator<Item = &'a str>, name: &str) -> Lookup {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let (wanted, tasks) = match name.strip_prefix(TASKS_PREFIX) {
            Some(service) => (service, true),
            None => (name.as_str(), false),
        };
        let mut found: Option<Vec<Ipv4Addr>> = None;
        for network in networks {
            let Some(entry) = self.networks.get(network).and_then(|t| t.get(wanted)) else {
                continue;
            };
            let addrs = found.get_or_insert_with(Vec::new);
            match entry.vip {
                Some(vip) if !tasks => addrs.push(vip),
                _ => addrs.extend(&entry.tasks),
            }
        }
        match found {
            Some(mut addrs) => {
                addrs.dedup();
                Lookup::Found(addrs)
            }
            None => Lookup::NotInSwarm,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::mesh_view::{MeshAttachment, MeshNetwork, MeshService, MeshTask};
    use crate::store::objects::{Endpoint, EndpointSpec, VirtualIp};

    fn network(id: &str, ingress: bool) -> MeshNetwork {
        MeshNetwork {
            id: id.into(),
            name: id.into(),
            vni: 4097,
            subnet: "10.0.1.0/24".parse().unwrap(),
            gateway: None,
            ingress,
        }
    }

    fn service(id: &str, name: &str, mode: EndpointMode, vips: &[(&str, &str)]) -> MeshService {
        MeshService {
            id: id.into(),
            name: name.into(),
            endpoint: Endpoint {
                spec: EndpointSpec {
                    mode,
                    ports: Vec::new(),
                },
                ports: Vec::new(),
                virtual_ips: vips
                    .iter()
                    .map(|(network_id, addr)| VirtualIp {
                        network_id: (*network_id).into(),
                        addr: addr.parse().unwrap(),
                    })
                    .collect(),
            },
        }
    }

    fn task(id: &str, service: &str, node: &str, nets: &[(&str, &str, &[&str])]) -> MeshTask {
        MeshTask {
            id: id.into(),
            service_id: service.into(),
            node_id: node.into(),
            networks: nets
                .iter()
                .map(|(network_id, addr, aliases)| MeshAttachment {
                    network_id: (*network_id).into(),
                    addresses: vec![(*addr).parse().unwrap()],
                    aliases: aliases.iter().map(|a| (*a).into()).collect(),
                })
                .collect(),
            draining: false,
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    /// `db` (VIP) on back and ingress with two tasks, `cache` (dnsrr) on back, `web` on front.
    fn view() -> MeshView {
        MeshView {
            networks: vec![
                network("back", false),
                network("front", false),
                network("ing", true),
            ],
            services: vec![
                service(
                    "s1",
                    "db",
                    EndpointMode::Vip,
                    &[("back", "10.0.1.2/24"), ("ing", "10.255.0.5/16")],
                ),
                service("s2", "cache", EndpointMode::Dnsrr, &[]),
                service("s3", "web", EndpointMode::Vip, &[("front", "10.0.2.2/24")]),
            ],
            tasks: vec![
                task(
                    "t1",
                    "s1",
                    "n1",
                    &[
                        ("back", "10.0.1.4/24", &["database"]),
                        ("ing", "10.255.0.7/16", &[]),
                    ],
                ),
                task("t2", "s1", "n2", &[("back", "10.0.1.3/24", &["database"])]),
                task("t3", "s2", "n2", &[("back", "10.0.1.9/24", &[])]),
                task("t4", "s3", "n1", &[("front", "10.0.2.5/24", &[])]),
            ],
            ..MeshView::default()
        }
    }

    #[test]
    fn a_service_name_gives_its_vip_and_tasks_dot_name_its_tasks() {
        let names = Names::from_view(&view(), &BTreeSet::new());
        assert_eq!(
            names.lookup(["back"], "db"),
            Lookup::Found(vec![ip("10.0.1.2")])
        );
        assert_eq!(
            names.lookup(["back"], "tasks.db"),
            Lookup::Found(vec![ip("10.0.1.3"), ip("10.0.1.4")])
        );
    }

    #[test]
    fn names_are_case_insensitive_and_may_end_in_a_dot() {
        let names = Names::from_view(&view(), &BTreeSet::new());
        assert_eq!(
            names.lookup(["back"], "DB."),
            Lookup::Found(vec![ip("10.0.1.2")])
        );
        assert_eq!(
            names.lookup(["back"], "Tasks.Db."),
            Lookup::Found(vec![ip("10.0.1.3"), ip("10.0.1.4")])
        );
    }

    #[test]
    fn network_aliases_resolve_like_the_service_name() {
        let names = Names::from_view(&view(), &BTreeSet::new());
        assert_eq!(
            names.lookup(["back"], "database"),
            Lookup::Found(vec![ip("10.0.1.2")])
        );
        assert_eq!(
            names.lookup(["back"], "tasks.database"),
            Lookup::Found(vec![ip("10.0.1.3"), ip("10.0.1.4")])
        );
    }

    #[test]
    fn dnsrr_services_resolve_to_their_tasks() {
        let names = Names::from_view(&view(), &BTreeSet::new());
        assert_eq!(
            names.lookup(["back"], "cache"),
            Lookup::Found(vec![ip("10.0.1.9")])
        );
    }

    #[test]
    fn a_task_finds_only_the_services_of_its_own_networks() {
        let names = Names::from_view(&view(), &BTreeSet::new());
        assert_eq!(names.lookup(["front"], "db"), Lookup::NotInSwarm);
        assert_eq!(names.lookup(["back"], "web"), Lookup::NotInSwarm);
        assert_eq!(
            names.lookup(["back", "front"], "web"),
            Lookup::Found(vec![ip("10.0.2.2")])
        );
        assert_eq!(names.lookup(["back"], "example.com"), Lookup::NotInSwarm);
    }

    #[test]
    fn the_ingress_network_resolves_nothing() {
        let names = Names::from_view(&view(), &BTreeSet::new());
        assert_eq!(names.lookup(["ing"], "db"), Lookup::NotInSwarm);
        assert_eq!(names.lookup(["ing"], "tasks.db"), Lookup::NotInSwarm);
    }

    #[test]
    fn tasks_of_a_dead_node_leave_the_answers_at_once() {
        let dead = BTreeSet::from(["n1".to_owned()]);
        let names = Names::from_view(&view(), &dead);
        assert_eq!(
            names.lookup(["back"], "tasks.db"),
            Lookup::Found(vec![ip("10.0.1.3")])
        );
        // The VIP stays: the mesh balances it over the live tasks.
        assert_eq!(
            names.lookup(["back"], "db"),
            Lookup::Found(vec![ip("10.0.1.2")])
        );
    }

    #[test]
    fn a_service_without_running_tasks_is_known_with_no_task_addresses() {
        let mut view = view();
        view.tasks.clear();
        let names = Names::from_view(&view, &BTreeSet::new());
        assert_eq!(
            names.lookup(["back"], "tasks.db"),
            Lookup::Found(Vec::new())
        );
        assert_eq!(
            names.lookup(["back"], "db"),
            Lookup::Found(vec![ip("10.0.1.2")])
        );
    }

    #[test]
    fn two_services_claiming_one_name_resolve_the_same_on_every_node() {
        let mut view = view();
        view.services.push(service(
            "s0",
            "other",
            EndpointMode::Vip,
            &[("back", "10.0.1.50/24")],
        ));
        view.tasks
            .push(task("t9", "s0", "n3", &[("back", "10.0.1.51/24", &["db"])]));
        let names = Names::from_view(&view, &BTreeSet::new());
        // s0 sorts before s1: its alias wins, whatever order the view lists them in.
        assert_eq!(
            names.lookup(["back"], "db"),
            Lookup::Found(vec![ip("10.0.1.50")])
        );
        view.services.reverse();
        view.tasks.reverse();
        assert_eq!(Names::from_view(&view, &BTreeSet::new()), names);
    }
}
