//! A trace across nodes: switch tracing on in each node's
//! `HIVE_TRACE_CONFIG`, read the ring buffers, merge the events of all
//! nodes by timestamp, switch tracing off again.
//!
//! Off again, whatever happens: [`Tracer`] switches every node off when it
//! is dropped (normal end, error, panic), and the programs themselves
//! ignore a configuration whose lease (`expires_ns`) has run out, which
//! the tracer renews while it runs — so a tracer that was SIGKILLed stops
//! costing anything within [`TraceOptions::lease`].

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use hive_common::trace::{TRACE_CAPTURE_MAX, TraceConfig};

use hive_dataplane::{
    maps::{MapsError, MeshMaps},
    node_pins::NodePins,
    stats::{Names, monotonic_ns},
};

use crate::{DecodeError, Event, LostCounts, TraceMaps, TraceMapsError};

/// Which events to keep (in the kernel, before they cost a ring record).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceFilter {
    /// A Swarm service ID or a unique prefix of one.
    pub service: Option<String>,
    /// Flows with this address on either side...
    pub client: Option<Ipv4Addr>,
    /// ...and this port on the same side.
    pub client_port: Option<u16>,
    pub drops_only: bool,
}

/// How to trace.
///
/// `snaplen` is 0 unless the caller writes the bytes somewhere (pcap):
/// copying them is about a third of what a delivered event costs the
/// packet (`docs/observability.md`).
#[derive(Clone, Debug)]
pub struct TraceOptions {
    pub filter: TraceFilter,
    /// Events per second and CPU (0 = no limit); more are counted as lost.
    pub rate_per_sec: u32,
    pub burst: u32,
    /// Bytes of each packet to capture (at most `TRACE_CAPTURE_MAX`).
    pub snaplen: u16,
    /// How long tracing stays on without the tracer renewing it.
    pub lease: Duration,
    /// Take over a node another tracer is tracing.
    pub force: bool,
    /// Events are held this long before being released in timestamp order,
    /// so that a slower node's events sort in between.
    pub reorder_window: Duration,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            filter: TraceFilter::default(),
            rate_per_sec: 10_000,
            burst: 1_000,
            snaplen: 0,
            lease: Duration::from_secs(10),
            force: false,
            reorder_window: Duration::from_millis(100),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("node {node}: {source}")]
    Maps {
        node: String,
        #[source]
        source: TraceMapsError,
    },
    #[error("node {node}: {source}")]
    Mesh {
        node: String,
        #[source]
        source: MapsError,
    },
    #[error(
        "node {node} is already being traced (by another `hive mesh trace`, for {seconds}s more unless it renews); stop that one, wait, or pass --force"
    )]
    Busy { node: String, seconds: u64 },
    #[error(
        "no service {query:?} on any of the nodes traced ({nodes}); `hive mesh stats --all-nodes` lists the services by ID"
    )]
    UnknownService { query: String, nodes: String },
    #[error(
        "service {query:?} is ambiguous on node {node}: it matches {matches}; give more of the ID"
    )]
    AmbiguousService {
        query: String,
        node: String,
        matches: String,
    },
}

/// What `--service` becomes in the kernel.
struct ServiceFilter {
    /// The service's dense ids on each node (one per network it is on), in
    /// node order; empty where the node does not know it.
    ids: Vec<Vec<u32>>,
    /// Its backends' addresses (network order), on every node.
    addrs: Vec<u32>,
}

struct NodeTrace {
    pins: NodePins,
    maps: TraceMaps,
    mesh: MeshMaps,
    names: Names,
    names_read: Instant,
    /// Whether this tracer switched the node on (and must switch it off).
    on: bool,
    /// What this tracer wrote; renewals write it whole again (see `renew`).
    config: TraceConfig,
}

/// A running trace over one or more nodes.
pub struct Tracer {
    nodes: Vec<NodeTrace>,
    options: TraceOptions,
    pending: Vec<Event>,
    last_renew: Instant,
    /// CLOCK_REALTIME − CLOCK_MONOTONIC at start, to print wall times.
    realtime_offset_ns: i128,
    decode_errors: u64,
    first_decode_error: Option<DecodeError>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| &n.pins.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn realtime_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// `HH:MM:SS.uuuuuu` (UTC) of a Unix time in nanoseconds.
pub fn wall_time(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let micros = (unix_ns % 1_000_000_000) / 1_000;
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{micros:06}",
        day / 3600,
        day % 3600 / 60,
        day % 60
    )
}

impl Tracer {
    /// Open every node's trace maps and switch tracing on with `options`.
    pub fn start(nodes: &[NodePins], options: TraceOptions) -> Result<Tracer, TraceError> {
        let now = monotonic_ns();
        let mut opened = Vec::new();
        for pins in nodes {
            let node = pins.name.clone();
            let maps = TraceMaps::open_pinned(&pins.dir).map_err(|source| TraceError::Maps {
                node: node.clone(),
                source,
            })?;
            let current = maps.config().map_err(|source| TraceError::Maps {
                node: node.clone(),
                source,
            })?;
            if !options.force
                && current.flags & TraceConfig::FLAG_ENABLED != 0
                && current.expires_ns > now
            {
                return Err(TraceError::Busy {
                    node,
                    seconds: (current.expires_ns - now).div_ceil(1_000_000_000),
                });
            }
            let mesh = MeshMaps::open_pinned(&pins.dir).map_err(|source| TraceError::Mesh {
                node: node.clone(),
                source,
            })?;
            let names = Names::read(&mesh).map_err(|source| TraceError::Mesh {
                node: node.clone(),
                source,
            })?;
            opened.push(NodeTrace {
                pins: pins.clone(),
                maps,
                mesh,
                names,
                names_read: Instant::now(),
                on: false,
                config: TraceConfig::default(),
            });
        }
        let mut tracer = Tracer {
            nodes: opened,
            options,
            pending: Vec::new(),
            last_renew: Instant::now(),
            realtime_offset_ns: realtime_ns() - i128::from(monotonic_ns()),
            decode_errors: 0,
            first_decode_error: None,
        };
        tracer.switch_on()?;
        Ok(tracer)
    }

    /// Per node: the service id to filter on and, for all nodes, the
    /// backend addresses (nodes may number the same service differently).
    fn service_filter(&self) -> Result<Option<ServiceFilter>, TraceError> {
        let Some(query) = &self.options.filter.service else {
            return Ok(None);
        };
        let mut ids = Vec::new();
        let mut addrs = Vec::new();
        let mut found = false;
        for n in &self.nodes {
            let matches = n.names.service_ids(query);
            // Several ids for one Swarm ID are one service on several
            // networks; several Swarm IDs are an ambiguous prefix.
            let distinct: std::collections::BTreeSet<&str> = matches
                .iter()
                .filter_map(|id| n.names.services.get(id).map(|(s, _)| s.as_str()))
                .collect();
            if distinct.len() > 1 {
                return Err(TraceError::AmbiguousService {
                    query: query.clone(),
                    node: n.pins.name.clone(),
                    matches: distinct.into_iter().collect::<Vec<_>>().join(", "),
                });
            }
            found |= !matches.is_empty();
            for id in &matches {
                addrs.extend(n.names.backend_addrs(*id));
            }
            ids.push(matches);
        }
        if !found {
            return Err(TraceError::UnknownService {
                query: query.clone(),
                nodes: self
                    .nodes
                    .iter()
                    .map(|n| n.pins.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        addrs.sort_unstable();
        addrs.dedup();
        Ok(Some(ServiceFilter { ids, addrs }))
    }

    fn config(&self, service: Option<u32>) -> TraceConfig {
        let f = &self.options.filter;
        let mut flags = TraceConfig::FLAG_ENABLED;
        if f.drops_only {
            flags |= TraceConfig::FLAG_DROPS_ONLY;
        }
        if service.is_some() {
            flags |= TraceConfig::FLAG_SERVICE;
        }
        if f.client.is_some() {
            flags |= TraceConfig::FLAG_CLIENT;
        }
        TraceConfig {
            flags,
            service: service.unwrap_or(0),
            client_addr_be: f.client.map_or(0, |a| u32::from(a).to_be()),
            client_port_be: f.client_port.unwrap_or(0).to_be(),
            snaplen: self.options.snaplen.min(TRACE_CAPTURE_MAX as u16),
            rate_per_sec: self.options.rate_per_sec,
            burst: self.options.burst,
            expires_ns: monotonic_ns() + self.options.lease.as_nanos() as u64,
        }
    }

    fn switch_on(&mut self) -> Result<(), TraceError> {
        let service = self.service_filter()?;
        for i in 0..self.nodes.len() {
            let ids = service
                .as_ref()
                .map(|f| f.ids[i].clone())
                .unwrap_or_default();
            // The config holds the first id (`u32::MAX`, which no event has,
            // where the node does not know the service); the map the others.
            let config = self.config(
                service
                    .as_ref()
                    .map(|_| ids.first().copied().unwrap_or(u32::MAX)),
            );
            let addrs = service
                .as_ref()
                .map(|f| f.addrs.clone())
                .unwrap_or_default();
            let others = ids.get(1..).unwrap_or_default();
            let n = &mut self.nodes[i];
            let err = |source| TraceError::Maps {
                node: n.pins.name.clone(),
                source,
            };
            // The address set first: the filter is complete once enabled.
            n.maps.set_filter_addrs(&addrs).map_err(err)?;
            n.maps.set_filter_services(others).map_err(err)?;
            // Records of an earlier trace are not ours.
            n.maps.drain(|_| {});
            n.maps.set_config(&config).map_err(err)?;
            n.config = config;
            n.on = true;
        }
        self.last_renew = Instant::now();
        Ok(())
    }

    /// Renew the lease about every fifth of it. The whole configuration is
    /// written again, not just the expiry: a program that found the lease
    /// expired clears the enabled flag, and could have raced with our
    /// start.
    fn renew(&mut self) -> Result<(), TraceError> {
        if self.last_renew.elapsed() < self.options.lease / 5 {
            return Ok(());
        }
        let expires = monotonic_ns() + self.options.lease.as_nanos() as u64;
        for n in &mut self.nodes {
            let err = |source| TraceError::Maps {
                node: n.pins.name.clone(),
                source,
            };
            n.config.expires_ns = expires;
            n.maps.set_config(&n.config).map_err(err)?;
        }
        self.last_renew = Instant::now();
        Ok(())
    }

    fn read_rings(&mut self) {
        for n in &mut self.nodes {
            let mut unknown = false;
            let mut errors = Vec::new();
            let node = n.pins.name.clone();
            let pending = &mut self.pending;
            n.maps.drain(|bytes| match Event::decode(&node, bytes) {
                Ok(ev) => pending.push(ev),
                Err(e) => errors.push(e),
            });
            self.decode_errors += errors.len() as u64;
            if self.first_decode_error.is_none() {
                self.first_decode_error = errors.into_iter().next();
            }
            for ev in self.pending.iter_mut().filter(|e| e.node == node) {
                if ev.service.is_none() && ev.service_id != 0 {
                    unknown |= !n.names.services.contains_key(&ev.service_id);
                }
            }
            // A service applied after the start: read the records again,
            // at most once a second.
            if unknown && n.names_read.elapsed() > Duration::from_secs(1) {
                if let Ok(names) = Names::read(&n.mesh) {
                    n.names = names;
                }
                n.names_read = Instant::now();
            }
            for ev in self.pending.iter_mut().filter(|e| e.node == node) {
                if ev.service.is_none()
                    && let Some((s, _)) = n.names.services.get(&ev.service_id)
                {
                    ev.service = Some(s.clone());
                }
                if ev.backend.is_none()
                    && let Some((t, _, _)) = n.names.backends.get(&ev.backend_id)
                {
                    ev.backend = Some(t.clone());
                }
            }
        }
    }

    /// Events older than the reorder window, in timestamp order.
    pub fn poll(&mut self) -> Result<Vec<Event>, TraceError> {
        self.renew()?;
        self.read_rings();
        let horizon = monotonic_ns().saturating_sub(self.options.reorder_window.as_nanos() as u64);
        self.pending.sort_by_key(|e| e.timestamp_ns);
        let split = self.pending.partition_point(|e| e.timestamp_ns <= horizon);
        Ok(self.pending.drain(..split).collect())
    }

    /// Switch tracing off on every node and return what is left, in order.
    pub fn stop(&mut self) -> Result<Vec<Event>, TraceError> {
        self.switch_off()?;
        self.read_rings();
        self.pending.sort_by_key(|e| e.timestamp_ns);
        Ok(std::mem::take(&mut self.pending))
    }

    fn switch_off(&mut self) -> Result<(), TraceError> {
        let mut first = None;
        for n in &mut self.nodes {
            if !n.on {
                continue;
            }
            let off = TraceConfig::default();
            match n.maps.set_config(&off) {
                Ok(()) => {
                    n.on = false;
                    let _ = n.maps.set_filter_addrs(&[]);
                    let _ = n.maps.set_filter_services(&[]);
                }
                Err(source) => {
                    first.get_or_insert(TraceError::Maps {
                        node: n.pins.name.clone(),
                        source,
                    });
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Events the kernel could not deliver, per node.
    pub fn lost(&self) -> Vec<(String, LostCounts)> {
        self.nodes
            .iter()
            .map(|n| (n.pins.name.clone(), n.maps.lost().unwrap_or_default()))
            .collect()
    }

    /// Records that could not be decoded, and why the first one failed.
    pub fn decode_errors(&self) -> (u64, Option<&DecodeError>) {
        (self.decode_errors, self.first_decode_error.as_ref())
    }

    /// Unix time in nanoseconds of an event's monotonic timestamp.
    pub fn unix_ns(&self, ev: &Event) -> u64 {
        (i128::from(ev.timestamp_ns) + self.realtime_offset_ns).max(0) as u64
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Err(err) = self.switch_off() {
            tracing::warn!(%err, "could not switch tracing off; it stops by itself when its lease runs out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_is_utc_hours_to_micros() {
        assert_eq!(
            wall_time(86_400 * 1_000_000_000 + 3_723_000_456_789),
            "01:02:03.000456"
        );
    }
}
