//! `hive mesh stats`: the data plane's always-on counters of one node, with
//! the dense ids mapped back to Swarm IDs through the agent's records
//! (`maps::records`): per service and backend packets, bytes, new flows and
//! live conntrack entries; drops per reason; trace events lost.

use std::{collections::BTreeMap, net::Ipv4Addr};

use hive_common::{
    DropReason,
    maps::{Backend, FlowKind, IPPROTO_TCP, PacketCounterSlot, TcpState},
};
use serde::Serialize;

use crate::{
    maps::{MapsError, MeshMaps, records::id_from_field},
    node_pins::NodePins,
    trace_maps::{LostCounts, TraceMaps, TraceMapsError},
};

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("node {node}: {source}")]
    Maps {
        node: String,
        #[source]
        source: MapsError,
    },
    #[error("node {node}: {source}")]
    Trace {
        node: String,
        #[source]
        source: TraceMapsError,
    },
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always
    // exists on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Idle timeouts of `dataplane-ebpf/programs/src/conntrack.rs`: an entry
/// idle for longer is dead to the programs, so it is not counted live.
fn timeout_ns(proto: u8, state: u8) -> u64 {
    const S: u64 = 1_000_000_000;
    if proto != IPPROTO_TCP {
        return 60 * S;
    }
    if state == TcpState::Established as u8 {
        6 * 3600 * S
    } else if state == TcpState::Closing as u8 || state == TcpState::Reset as u8 {
        10 * S
    } else {
        60 * S
    }
}

/// What the records say a dense id stands for.
#[derive(Clone, Debug, Default)]
pub struct Names {
    /// service id → (Swarm service ID, VNI).
    pub services: BTreeMap<u32, (String, u32)>,
    /// backend id → (task ID, service id, backend entry).
    pub backends: BTreeMap<u32, (String, u32, Backend)>,
}

impl Names {
    pub fn read(maps: &MeshMaps) -> Result<Names, MapsError> {
        let mut names = Names::default();
        for (id, rec) in maps.balancer_records()? {
            let service = id_from_field(&rec.service_id).unwrap_or_else(|| format!("#{id}"));
            names.services.insert(id, (service, rec.vni));
        }
        for (id, rec) in maps.backend_records()? {
            let task = id_from_field(&rec.task_id).unwrap_or_else(|| format!("#{id}"));
            let backend = maps.backend(id)?;
            names.backends.insert(id, (task, rec.balancer, backend));
        }
        Ok(names)
    }

    /// Service ids whose Swarm ID is `query` or starts with it (docker's
    /// ID-prefix rule).
    pub fn service_ids(&self, query: &str) -> Vec<u32> {
        self.services
            .iter()
            .filter(|(_, (id, _))| id == query || id.starts_with(query))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Task addresses (network order) of the backends of service id `service`.
    pub fn backend_addrs(&self, service: u32) -> Vec<u32> {
        self.backends
            .values()
            .filter(|(_, s, b)| *s == service && b.addr_be != 0)
            .map(|(_, _, b)| b.addr_be)
            .collect()
    }
}

/// The names users know services and tasks by (those of `service ps`: `web`, `web.3`), to
/// show in place of their Swarm IDs. An ID without a name is shown as it is, as every ID
/// is with no names at all (`hive mesh stats --no-trunc`, or no manager to ask).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DisplayNames {
    /// Swarm service ID → name.
    pub services: BTreeMap<String, String>,
    /// Task ID → task name.
    pub tasks: BTreeMap<String, String>,
}

impl DisplayNames {
    pub fn service<'a>(&'a self, id: &'a str) -> &'a str {
        self.services.get(id).map_or(id, String::as_str)
    }

    pub fn task<'a>(&'a self, id: &'a str) -> &'a str {
        self.tasks.get(id).map_or(id, String::as_str)
    }

    /// The ID of the service named `name`, if a service has that name.
    pub fn service_id(&self, name: &str) -> Option<&str> {
        self.services
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(id, _)| id.as_str())
    }
}

/// Counters of one backend on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendStats {
    pub id: u32,
    pub task: String,
    pub addr: Ipv4Addr,
    pub node_addr: Ipv4Addr,
    pub local: bool,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    pub live_flows: u64,
}

/// Counters of one service (on one network) on one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServiceStats {
    pub id: u32,
    pub service: String,
    pub vni: u32,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    pub live_flows: u64,
    pub backends: Vec<BackendStats>,
}

/// Everything `hive mesh stats` shows of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeStats {
    pub node: String,
    pub services: Vec<ServiceStats>,
    /// Every reason, by name, zeros included (stable columns for scripts).
    pub drops: BTreeMap<String, u64>,
    pub underlay_rx_packets: u64,
    pub underlay_rx_bytes: u64,
    /// Packets moved straight into a local task, past the node's IP stack
    /// (`PacketCounterSlot::TaskHandoff`).
    pub task_handoff_packets: u64,
    /// Direct return (docs/dsr.md), as the backend's node: replies sent straight to the
    /// client (`PacketCounterSlot::DirectReturn`).
    pub direct_return_packets: u64,
    /// Direct return, as the ingress node: client packets tunnelled with the direct-return
    /// mark (`PacketCounterSlot::DirectIngress`); their replies never come back here.
    pub direct_ingress_packets: u64,
    pub trace_lost: LostCounts,
}

fn addr(be: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be(be))
}

/// Read one node's counters; `service` keeps only services whose ID is it
/// or starts with it.
pub fn read_node(pins: &NodePins, service: Option<&str>) -> Result<NodeStats, StatsError> {
    let node = pins.name.clone();
    let maps_err = |source| StatsError::Maps {
        node: node.clone(),
        source,
    };
    let maps = MeshMaps::open_pinned(&pins.dir).map_err(maps_err)?;
    let names = Names::read(&maps).map_err(maps_err)?;

    // Live flows: one Forward entry per flow on the node that balanced it.
    let now = monotonic_ns();
    let mut live_services: BTreeMap<u32, u64> = BTreeMap::new();
    let mut live_backends: BTreeMap<u32, u64> = BTreeMap::new();
    for (key, entry) in maps.conntrack().map_err(maps_err)? {
        if key.kind != FlowKind::Forward as u8 {
            continue;
        }
        if now.saturating_sub(entry.last_seen_ns) > timeout_ns(key.proto, entry.tcp_state) {
            continue;
        }
        *live_services.entry(entry.service).or_default() += 1;
        *live_backends.entry(entry.backend).or_default() += 1;
    }

    let mut services = Vec::new();
    for (&id, (service_id, vni)) in &names.services {
        if let Some(q) = service
            && !(service_id == q || service_id.starts_with(q))
        {
            continue;
        }
        let c = maps.service_counters(id).map_err(maps_err)?;
        let mut backends = Vec::new();
        for (&bid, (task, balancer, be)) in &names.backends {
            if *balancer != id {
                continue;
            }
            let b = maps.backend_counters(bid).map_err(maps_err)?;
            backends.push(BackendStats {
                id: bid,
                task: task.clone(),
                addr: addr(be.addr_be),
                node_addr: addr(be.node_be),
                local: be.flags & Backend::FLAG_LOCAL != 0,
                packets: b.packets,
                bytes: b.bytes,
                new_flows: b.new_flows,
                live_flows: live_backends.get(&bid).copied().unwrap_or(0),
            });
        }
        services.push(ServiceStats {
            id,
            service: service_id.clone(),
            vni: *vni,
            packets: c.packets,
            bytes: c.bytes,
            new_flows: c.new_flows,
            live_flows: live_services.get(&id).copied().unwrap_or(0),
            backends,
        });
    }
    let drops = maps
        .drop_counts()
        .map_err(maps_err)?
        .into_iter()
        .map(|(r, n)| (r.name().to_owned(), n))
        .collect();
    let rx = maps
        .packet_counter(PacketCounterSlot::UnderlayRx)
        .map_err(maps_err)?;
    let handoff = maps
        .packet_counter(PacketCounterSlot::TaskHandoff)
        .map_err(maps_err)?;
    let direct_return = maps
        .packet_counter(PacketCounterSlot::DirectReturn)
        .map_err(maps_err)?;
    let direct_ingress = maps
        .packet_counter(PacketCounterSlot::DirectIngress)
        .map_err(maps_err)?;
    // Pins of a hive without tracing have no trace maps: report zeros.
    let trace_lost = match TraceMaps::open_pinned(&pins.dir) {
        Ok(t) => t.lost().map_err(|source| StatsError::Trace {
            node: node.clone(),
            source,
        })?,
        Err(_) => LostCounts::default(),
    };
    Ok(NodeStats {
        node,
        services,
        drops,
        underlay_rx_packets: rx.packets,
        underlay_rx_bytes: rx.bytes,
        task_handoff_packets: handoff.packets,
        direct_return_packets: direct_return.packets,
        direct_ingress_packets: direct_ingress.packets,
        trace_lost,
    })
}

/// Sum of every node's counters per service ID (for the TOTAL rows).
pub fn totals(nodes: &[NodeStats]) -> BTreeMap<String, ServiceStats> {
    let mut out: BTreeMap<String, ServiceStats> = BTreeMap::new();
    for s in nodes.iter().flat_map(|n| &n.services) {
        let t = out
            .entry(s.service.clone())
            .or_insert_with(|| ServiceStats {
                service: s.service.clone(),
                vni: s.vni,
                ..ServiceStats::default()
            });
        t.packets += s.packets;
        t.bytes += s.bytes;
        t.new_flows += s.new_flows;
        t.live_flows += s.live_flows;
    }
    out
}

/// The human table: services with their backends (` \_ task`), then the
/// drops that are not zero, then totals over the nodes shown. Services and
/// tasks are shown by their `names` where it has them. The second column is
/// as wide as its longest entry, so the figures stay aligned.
pub fn table(nodes: &[NodeStats], names: &DisplayNames) -> String {
    let label = |b: &BackendStats| {
        let place = if b.local {
            "local".to_owned()
        } else {
            format!("on {}", b.node_addr)
        };
        format!(" \\_ {} ({place})", names.task(&b.task))
    };
    let width = nodes
        .iter()
        .flat_map(|n| &n.services)
        .flat_map(|s| {
            std::iter::once(names.service(&s.service).len())
                .chain(s.backends.iter().map(|b| label(b).len()))
        })
        .fold("SERVICE / BACKEND".len(), usize::max);
    let mut out = String::new();
    let mut line = |cells: [&str; 8]| {
        let [node, name, vni, addr, packets, bytes, new_flows, live] = cells;
        out.push_str(&format!(
            "{node:<8} {name:<width$} {vni:>6} {addr:<16} {packets:>10} {bytes:>12} {new_flows:>9} {live:>6}\n"
        ));
    };
    line([
        "NODE",
        "SERVICE / BACKEND",
        "VNI",
        "ADDRESS",
        "PACKETS",
        "BYTES",
        "NEW FLOWS",
        "LIVE",
    ]);
    let counts = |packets: u64, bytes: u64, new_flows: u64, live: u64| {
        [packets, bytes, new_flows, live].map(|c| c.to_string())
    };
    for n in nodes {
        for s in &n.services {
            let [p, b, f, l] = counts(s.packets, s.bytes, s.new_flows, s.live_flows);
            let service = names.service(&s.service);
            line([&n.node, service, &s.vni.to_string(), "", &p, &b, &f, &l]);
            for be in &s.backends {
                let [p, b, f, l] = counts(be.packets, be.bytes, be.new_flows, be.live_flows);
                line(["", &label(be), "", &be.addr.to_string(), &p, &b, &f, &l]);
            }
        }
    }
    if nodes.len() > 1 {
        for (id, t) in totals(nodes) {
            let [p, b, f, l] = counts(t.packets, t.bytes, t.new_flows, t.live_flows);
            let service = names.service(&id);
            line(["TOTAL", service, &t.vni.to_string(), "", &p, &b, &f, &l]);
        }
    }
    with_drops(nodes, out)
}

/// The drops section under the table.
fn with_drops(nodes: &[NodeStats], mut out: String) -> String {
    use std::fmt::Write as _;
    let drops: Vec<(&str, &str, u64)> = nodes
        .iter()
        .flat_map(|n| {
            n.drops
                .iter()
                .filter(|(_, c)| **c > 0)
                .map(|(r, c)| (n.node.as_str(), r.as_str(), *c))
        })
        .collect();
    out.push('\n');
    if drops.is_empty() {
        out.push_str("DROPS: none\n");
    } else {
        let _ = writeln!(
            out,
            "{:<8} {:<24} {:>10}  WHY",
            "NODE", "DROP REASON", "PACKETS"
        );
        for (node, reason, count) in drops {
            let why = DropReason::ALL
                .iter()
                .find(|r| r.name() == reason)
                .map_or("", |r| r.description());
            let _ = writeln!(out, "{node:<8} {reason:<24} {count:>10}  {why}");
        }
    }
    for n in nodes {
        let lost = n.trace_lost;
        if lost.rate_limited + lost.ring_full > 0 {
            let _ = writeln!(
                out,
                "{}: trace events lost: {} over the rate limit, {} with the ring buffer full",
                n.node, lost.rate_limited, lost.ring_full
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, packets: u64) -> NodeStats {
        NodeStats {
            node: name.into(),
            services: vec![ServiceStats {
                id: 1,
                service: "websvc".into(),
                vni: 4096,
                packets,
                bytes: packets * 100,
                new_flows: 1,
                live_flows: 1,
                backends: vec![BackendStats {
                    id: 2,
                    task: "t1".into(),
                    addr: Ipv4Addr::new(10, 0, 0, 10),
                    node_addr: Ipv4Addr::new(192, 168, 77, 1),
                    local: true,
                    packets,
                    bytes: 0,
                    new_flows: 0,
                    live_flows: 0,
                }],
            }],
            drops: BTreeMap::from([
                ("no-backend".to_owned(), 3),
                ("malformed-ipv4".to_owned(), 0),
            ]),
            ..NodeStats::default()
        }
    }

    #[test]
    fn table_lists_backends_totals_and_only_nonzero_drops() {
        let t = table(&[node("n1", 5), node("n2", 7)], &DisplayNames::default());
        assert!(t.contains(" \\_ t1 (local)"), "{t}");
        let total = t.lines().find(|l| l.starts_with("TOTAL")).expect(&t);
        assert!(total.contains(" 12 "), "{total}");
        assert!(t.contains("no-backend"), "{t}");
        assert!(!t.contains("malformed-ipv4"), "{t}");
    }

    #[test]
    fn columns_stay_aligned_past_a_long_backend_label() {
        let mut remote = node("n2", 7);
        let backend = &mut remote.services[0].backends[0];
        backend.task = "bmd0l4jfk7iouttzsuv0299wa".into();
        backend.local = false;
        let t = table(&[node("n1", 5), remote], &DisplayNames::default());
        let rows: Vec<&str> = t.lines().take_while(|l| !l.is_empty()).collect();
        assert!(
            rows.iter()
                .any(|r| r.contains("bmd0l4jfk7iouttzsuv0299wa (on 192.168.77.1)"))
        );
        let at = |row: &str| row.find("10.0.0.10").or_else(|| row.find("ADDRESS"));
        let header = at(rows[0]).expect("ADDRESS column");
        for row in &rows {
            assert_eq!(row.len(), rows[0].len(), "{t}");
            if let Some(col) = at(row) {
                assert_eq!(col, header, "{t}");
            }
        }
    }

    #[test]
    fn services_and_backends_are_shown_by_name_where_known() {
        let names = DisplayNames {
            services: BTreeMap::from([("websvc".to_owned(), "web".to_owned())]),
            tasks: BTreeMap::new(),
        };
        let t = table(&[node("n1", 5), node("n2", 7)], &names);
        let rows: Vec<&str> = t.lines().collect();
        assert!(rows[1].starts_with("n1       web "), "{t}");
        assert!(t.contains(" \\_ t1 (local)"), "a task without a name: {t}");
        assert!(t.lines().any(|l| l.starts_with("TOTAL    web ")), "{t}");
        assert!(!t.contains("websvc"), "{t}");
        assert_eq!(names.service_id("web"), Some("websvc"));
    }

    #[test]
    fn timeouts_follow_the_programs() {
        assert_eq!(timeout_ns(17, 0), 60_000_000_000);
        assert_eq!(
            timeout_ns(IPPROTO_TCP, TcpState::Established as u8),
            6 * 3600 * 1_000_000_000
        );
    }
}
