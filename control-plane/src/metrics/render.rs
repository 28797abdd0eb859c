//! Prometheus text exposition (format 0.0.4) of the data plane's counters,
//! and the hook through which the daemon adds its own gauges (Raft,
//! scheduler, tasks): anything that implements [`Collector`] is rendered
//! by [`Registry::render`]; the HTTP server is the parent module
//! (`hive::metrics`). It moved here from the data-plane crate, which only
//! provides the counters it reads ([`hive_dataplane::stats`]).

use std::{collections::BTreeMap, fmt::Write as _, sync::Arc};

use hive_dataplane::{node_pins::NodePins, stats};

/// Prometheus text for one scrape. Families are written whole: HELP,
/// TYPE, then every sample.
#[derive(Debug, Default)]
pub struct MetricsWriter {
    out: String,
}

/// Metric types hive uses.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl MetricsWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Start a family; `name` must match `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    pub fn family(&mut self, name: &str, kind: MetricType, help: &str) {
        let kind = match kind {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A source of metrics rendered on every scrape.
pub trait Collector: Send + Sync {
    fn collect(&self, out: &mut MetricsWriter);
}

/// The collectors served at `/metrics`.
#[derive(Clone, Default)]
pub struct Registry {
    collectors: Vec<Arc<dyn Collector>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("collectors", &self.collectors.len())
            .finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a collector (the daemon adds Raft, scheduler and task gauges).
    pub fn register(&mut self, collector: Arc<dyn Collector>) {
        self.collectors.push(collector);
    }

    pub fn render(&self) -> String {
        let mut w = MetricsWriter::new();
        for c in &self.collectors {
            c.collect(&mut w);
        }
        w.finish()
    }
}

/// The data-plane counters of some nodes (the daemon: its own node; a lab:
/// every node), read from their pins on every scrape.
#[derive(Clone, Debug)]
pub struct DataplaneCollector {
    nodes: Vec<NodePins>,
}

impl DataplaneCollector {
    pub fn new(nodes: Vec<NodePins>) -> Self {
        Self { nodes }
    }
}

impl Collector for DataplaneCollector {
    fn collect(&self, out: &mut MetricsWriter) {
        let mut all = Vec::new();
        let mut failed = Vec::new();
        for n in &self.nodes {
            match stats::read_node(n, None) {
                Ok(s) => all.push(s),
                Err(e) => {
                    tracing::warn!(node = %n.name, %e, "metrics: cannot read the data plane's counters");
                    failed.push(n.name.clone());
                }
            }
        }
        render_stats(out, &all, &failed);
    }
}

/// The families of `hive mesh stats`, from already-read stats; `failed`
/// nodes get `hive_dataplane_up 0`.
pub fn render_stats(out: &mut MetricsWriter, nodes: &[stats::NodeStats], failed: &[String]) {
    out.family(
        "hive_dataplane_up",
        MetricType::Gauge,
        "1 if the node's data-plane maps could be read",
    );
    for n in nodes {
        out.sample("hive_dataplane_up", &[("node", &n.node)], 1.0);
    }
    for f in failed {
        out.sample("hive_dataplane_up", &[("node", f)], 0.0);
    }
    type Field = fn(&stats::ServiceStats) -> u64;
    let service_families: [(&str, MetricType, &str, Field); 4] = [
        (
            "hive_service_packets_total",
            MetricType::Counter,
            "Packets of balanced flows, both directions, on the node that balanced them",
            |s| s.packets,
        ),
        (
            "hive_service_bytes_total",
            MetricType::Counter,
            "Bytes (IP) of balanced flows, both directions",
            |s| s.bytes,
        ),
        (
            "hive_service_new_flows_total",
            MetricType::Counter,
            "Flows given a backend by Maglev",
            |s| s.new_flows,
        ),
        (
            "hive_service_live_flows",
            MetricType::Gauge,
            "Live conntrack entries (flows) the node balanced",
            |s| s.live_flows,
        ),
    ];
    for (name, kind, help, field) in service_families {
        out.family(name, kind, help);
        for n in nodes {
            for s in &n.services {
                let vni = s.vni.to_string();
                let labels = [
                    ("node", n.node.as_str()),
                    ("service", &s.service),
                    ("vni", &vni),
                ];
                out.sample(name, &labels, field(s) as f64);
            }
        }
    }
    type BackendField = fn(&stats::BackendStats) -> u64;
    let backend_families: [(&str, MetricType, &str, BackendField); 4] = [
        (
            "hive_backend_packets_total",
            MetricType::Counter,
            "Packets per backend task",
            |b| b.packets,
        ),
        (
            "hive_backend_bytes_total",
            MetricType::Counter,
            "Bytes per backend task",
            |b| b.bytes,
        ),
        (
            "hive_backend_new_flows_total",
            MetricType::Counter,
            "New flows per backend task",
            |b| b.new_flows,
        ),
        (
            "hive_backend_live_flows",
            MetricType::Gauge,
            "Live flows per backend task",
            |b| b.live_flows,
        ),
    ];
    for (name, kind, help, field) in backend_families {
        out.family(name, kind, help);
        for n in nodes {
            for s in &n.services {
                for b in &s.backends {
                    let addr = b.addr.to_string();
                    let labels = [
                        ("node", n.node.as_str()),
                        ("service", &s.service),
                        ("task", &b.task),
                        ("addr", &addr),
                    ];
                    out.sample(name, &labels, field(b) as f64);
                }
            }
        }
    }
    out.family(
        "hive_drops_total",
        MetricType::Counter,
        "Packets dropped by the data plane, per reason",
    );
    for n in nodes {
        for (reason, count) in &n.drops {
            out.sample(
                "hive_drops_total",
                &[("node", &n.node), ("reason", reason)],
                *count as f64,
            );
        }
    }
    type NodeField = fn(&stats::NodeStats) -> u64;
    let node_families: [(&str, &str, NodeField); 4] = [
        (
            "hive_underlay_rx_packets_total",
            "Frames xdp_from_underlay saw",
            |n| n.underlay_rx_packets,
        ),
        (
            "hive_task_handoff_packets_total",
            "Packets moved straight into a local task, past the node's IP stack",
            |n| n.task_handoff_packets,
        ),
        (
            "hive_direct_return_packets_total",
            "Replies sent straight to the client by the backend's node (direct return)",
            |n| n.direct_return_packets,
        ),
        (
            "hive_direct_ingress_packets_total",
            "Client packets tunnelled for direct return by the ingress node",
            |n| n.direct_ingress_packets,
        ),
    ];
    for (name, help, field) in node_families {
        out.family(name, MetricType::Counter, help);
        for n in nodes {
            out.sample(name, &[("node", &n.node)], field(n) as f64);
        }
    }
    out.family(
        "hive_trace_lost_total",
        MetricType::Counter,
        "Trace events not delivered (over the rate limit, or ring buffer full)",
    );
    for n in nodes {
        let mut why: BTreeMap<&str, u64> = BTreeMap::new();
        why.insert("rate-limited", n.trace_lost.rate_limited);
        why.insert("ring-full", n.trace_lost.ring_full);
        for (cause, count) in why {
            out.sample(
                "hive_trace_lost_total",
                &[("node", &n.node), ("cause", cause)],
                count as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Collector for Fixed {
        fn collect(&self, out: &mut MetricsWriter) {
            out.family("hive_raft_term", MetricType::Gauge, "Current Raft term");
            out.sample("hive_raft_term", &[("node", "a\"b")], 3.0);
        }
    }

    #[test]
    fn renders_families_and_escapes_labels() {
        let mut r = Registry::new();
        r.register(Arc::new(Fixed));
        let text = r.render();
        assert_eq!(
            text,
            "# HELP hive_raft_term Current Raft term\n# TYPE hive_raft_term gauge\nhive_raft_term{node=\"a\\\"b\"} 3\n"
        );
    }

    #[test]
    fn stats_become_counters_per_node_service_and_reason() {
        let node = stats::NodeStats {
            node: "n1".into(),
            services: vec![stats::ServiceStats {
                id: 1,
                service: "websvc".into(),
                vni: 4096,
                packets: 10,
                ..Default::default()
            }],
            drops: BTreeMap::from([("no-backend".to_owned(), 2)]),
            underlay_rx_packets: 40,
            task_handoff_packets: 7,
            ..Default::default()
        };
        let mut w = MetricsWriter::new();
        render_stats(&mut w, &[node], &["n2".to_owned()]);
        let text = w.finish();
        assert!(
            text.contains(
                "hive_service_packets_total{node=\"n1\",service=\"websvc\",vni=\"4096\"} 10\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("hive_drops_total{node=\"n1\",reason=\"no-backend\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("hive_dataplane_up{node=\"n2\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("hive_underlay_rx_packets_total{node=\"n1\"} 40\n"),
            "{text}"
        );
        assert!(
            text.contains("hive_task_handoff_packets_total{node=\"n1\"} 7\n"),
            "{text}"
        );
    }
}
