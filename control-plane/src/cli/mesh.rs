//! `hive mesh trace|stats|log|bench`: the data plane seen from the kernel, read
//! straight from the pinned maps of a lab's nodes or of this node (no
//! daemon needed). See `docs/observability.md`.

use std::{
    fs::File,
    io::{BufWriter, Write as _},
    net::Ipv4Addr,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use hive_dataplane::{
    ebpf_log::EbpfLog,
    node_pins::{NodeChoice, NodePins, PinsQuery},
    stats::{self, DisplayNames},
};
use hive_trace::{
    Event, PcapWriter, TRACE_CAPTURE_MAX, TraceFilter, TraceOptions, Tracer, wall_time,
};

use crate::metrics::{MetricsWriter, render_stats};

#[derive(Debug, Args)]
pub struct MeshArgs {
    #[command(subcommand)]
    command: MeshCommand,
}

#[derive(Debug, Subcommand)]
enum MeshCommand {
    /// Stream the data plane's trace events (like `cilium monitor`): tracing is switched on
    /// for the nodes chosen and off again on exit.
    Trace(TraceArgs),
    /// Per-service and per-backend packets, bytes, new and live flows; drops per reason.
    Stats(StatsArgs),
    /// Follow the aya-log debug lines of the programs (only those built with
    /// HIVE_EBPF_LOG=1 log; others say so).
    Log(LogArgs),
    /// Measure the mesh beside the kernel's own path (iptables, nftables) on a lab: ns/packet
    /// per program path, req/s, new conn/s and p50/p99 at 1, 1,000 and 10,000 services.
    Bench(super::mesh_bench::BenchArgs),
}

/// Which nodes to read.
#[derive(Debug, Args)]
struct Where {
    /// Lab whose nodes to read (default: $HIVE_LAB, else `default` if it runs a mesh).
    #[arg(long)]
    lab: Option<String>,
    /// Pin directory of a node, or a root holding node directories (default:
    /// /sys/fs/bpf/hive when no lab is chosen).
    #[arg(long, conflicts_with = "lab")]
    pin_dir: Option<PathBuf>,
    /// Only this node (default: $HIVE_NODE inside `hive lab exec`, else every node).
    #[arg(long, conflicts_with = "all_nodes")]
    node: Option<String>,
    /// Every node.
    #[arg(long)]
    all_nodes: bool,
}

impl Where {
    /// The lab chosen, by `--lab` or `$HIVE_LAB` (none with `--pin-dir`).
    fn lab(&self) -> Option<String> {
        match (&self.lab, &self.pin_dir) {
            (Some(lab), _) => Some(lab.clone()),
            (None, None) => std::env::var("HIVE_LAB").ok().filter(|l| !l.is_empty()),
            (None, Some(_)) => None,
        }
    }

    /// The names of services and tasks, from a manager: `for_display` if they are to be
    /// shown (when no manager answers, stderr says the IDs are shown instead), else only
    /// to find a `--service NAME` (none are needed without one).
    fn names(&self, for_display: bool, service_query: Option<&str>) -> DisplayNames {
        if !for_display && service_query.is_none() {
            return DisplayNames::default();
        }
        super::mesh_names::lookup(self.lab().as_deref()).unwrap_or_else(|| {
            if for_display {
                eprintln!("no manager answered: services and tasks are shown by their IDs");
            }
            DisplayNames::default()
        })
    }

    fn resolve(&self) -> anyhow::Result<Vec<NodePins>> {
        let lab = self.lab();
        let nodes = match (&self.node, self.all_nodes) {
            (Some(n), _) => NodeChoice::One(n.clone()),
            (None, true) => NodeChoice::All,
            (None, false) => NodeChoice::Default,
        };
        let query = PinsQuery {
            lab,
            pin_dir: self.pin_dir.clone(),
            nodes,
        };
        Ok(query.resolve()?)
    }
}

#[derive(Debug, Args)]
struct TraceArgs {
    /// Only events of this service (name, Swarm service ID or a unique prefix).
    #[arg(long)]
    service: Option<String>,
    /// Show services and backends by their IDs, not by name.
    #[arg(long)]
    no_trunc: bool,
    /// Only drops.
    #[arg(long)]
    drops: bool,
    /// Only flows of this client (ADDR or ADDR:PORT).
    #[arg(long, value_parser = parse_client)]
    client: Option<(Ipv4Addr, Option<u16>)>,
    #[command(flatten)]
    place: Where,
    /// One JSON object per event and line.
    #[arg(long)]
    json: bool,
    /// Also write the captured bytes (first 128 of each packet) to this pcapng file.
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// Stop after this many events.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this long (e.g. 10s, 500ms, 2m).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Most events per second and CPU; more are counted as lost.
    #[arg(long, default_value_t = 10_000)]
    rate: u32,
    /// Take over nodes another tracer is tracing.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StatsFormat {
    Table,
    Json,
    Prometheus,
}

#[derive(Debug, Args)]
struct StatsArgs {
    /// Only this service (name, Swarm service ID or prefix).
    #[arg(long)]
    service: Option<String>,
    /// Show services and backends by their IDs, not by name (JSON always has IDs).
    #[arg(long)]
    no_trunc: bool,
    #[command(flatten)]
    place: Where,
    #[arg(long, value_enum, default_value_t = StatsFormat::Table)]
    format: StatsFormat,
}

#[derive(Debug, Args)]
struct LogArgs {
    #[command(flatten)]
    place: Where,
    /// Stop after this long (e.g. 10s, 500ms, 2m); default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
}

fn parse_client(s: &str) -> Result<(Ipv4Addr, Option<u16>), String> {
    if let Ok(addr) = s.parse::<Ipv4Addr>() {
        return Ok((addr, None));
    }
    match s.parse::<std::net::SocketAddrV4>() {
        Ok(sa) => Ok((*sa.ip(), Some(sa.port()))),
        Err(_) => Err(format!("{s:?} is not ADDR or ADDR:PORT (IPv4)")),
    }
}

/// `10s`, `500ms`, `2m`, `1h`, or bare seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s, 500ms or 2m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("unknown unit {unit:?} in {s:?}: use ms, s, m or h")),
    }
}

pub fn run(args: MeshArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        MeshCommand::Trace(a) => trace(a),
        MeshCommand::Stats(a) => stats_cmd(a),
        MeshCommand::Log(a) => log_cmd(a),
        MeshCommand::Bench(a) => super::mesh_bench::run(a),
    }
}

struct Output {
    json: bool,
    names: DisplayNames,
    pcap: Option<PcapWriter<BufWriter<File>>>,
    printed: u64,
    limit: Option<u64>,
}

impl Output {
    /// `ev` with its service and backend shown by name (JSON keeps the IDs).
    fn named(&self, ev: &Event) -> Event {
        let mut ev = ev.clone();
        ev.service = ev.service.map(|id| self.names.service(&id).to_owned());
        ev.backend = ev.backend.map(|id| self.names.task(&id).to_owned());
        ev
    }

    /// Write one event; `false` once the count is reached.
    fn event(&mut self, tracer: &Tracer, ev: &Event) -> anyhow::Result<bool> {
        if self.limit.is_some_and(|l| self.printed >= l) {
            return Ok(false);
        }
        let unix = tracer.unix_ns(ev);
        let line = self.named(ev).line(&wall_time(unix));
        let mut stdout = std::io::stdout().lock();
        if self.json {
            let mut value = serde_json::to_value(ev)?;
            value["time_unix_ns"] = unix.into();
            writeln!(stdout, "{value}")?;
        } else {
            writeln!(stdout, "{line}")?;
        }
        if let Some(p) = &mut self.pcap {
            p.packet(&ev.node, unix, ev.orig_len, &ev.data, &line)
                .context("writing the pcap file")?;
        }
        self.printed += 1;
        Ok(self.limit.is_none_or(|l| self.printed < l))
    }
}

/// The service query as the data plane's records know it: a service name becomes its ID.
fn service_query(query: Option<&str>, names: &DisplayNames) -> Option<String> {
    query.map(|q| names.service_id(q).unwrap_or(q).to_owned())
}

fn trace(args: TraceArgs) -> anyhow::Result<ExitCode> {
    let nodes = args.place.resolve()?;
    let for_display = !args.json && !args.no_trunc;
    let names = args.place.names(for_display, args.service.as_deref());
    let options = TraceOptions {
        filter: TraceFilter {
            service: service_query(args.service.as_deref(), &names),
            client: args.client.map(|(a, _)| a),
            client_port: args.client.and_then(|(_, p)| p),
            drops_only: args.drops,
        },
        rate_per_sec: args.rate,
        // Packet bytes only for the pcap file: the lines need none.
        snaplen: if args.pcap.is_some() {
            TRACE_CAPTURE_MAX as u16
        } else {
            0
        },
        force: args.force,
        ..TraceOptions::default()
    };
    let pcap = match &args.pcap {
        Some(path) => {
            let file = File::create(path)
                .with_context(|| format!("cannot create the pcap file {}", path.display()))?;
            Some(PcapWriter::new(
                BufWriter::new(file),
                TRACE_CAPTURE_MAX as u32,
            )?)
        }
        None => None,
    };
    let mut out = Output {
        json: args.json,
        names: if for_display {
            names
        } else {
            DisplayNames::default()
        },
        pcap,
        printed: 0,
        limit: args.count,
    };
    let mut tracer = Tracer::start(&nodes, options)?;
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    eprintln!(
        "tracing on {} ({}); Ctrl-C to stop",
        names.join(", "),
        nodes
            .first()
            .and_then(|n| n.dir.parent())
            .map_or_else(String::new, |p| p.display().to_string())
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal handler")?;
    let deadline = args.duration.map(|d| Instant::now() + d);
    let result: anyhow::Result<()> = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            tokio::select! {
                _ = &mut ctrl_c => return Ok(()),
                _ = term.recv() => return Ok(()),
                _ = hup.recv() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            for ev in tracer.poll()? {
                if !out.event(&tracer, &ev)? {
                    return Ok(());
                }
            }
            std::io::stdout().flush()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(());
            }
        }
    });
    // Off first, then what was still buffered.
    let rest = tracer.stop()?;
    result?;
    let lost = tracer.lost();
    let (bad, first_bad) = tracer.decode_errors();
    let first_bad = first_bad.map(ToString::to_string);
    for ev in rest {
        if !out.event(&tracer, &ev)? {
            break;
        }
    }
    if let Some(p) = &mut out.pcap {
        p.flush().context("writing the pcap file")?;
    }
    std::io::stdout().flush()?;
    let lost_total: u64 = lost.iter().map(|(_, l)| l.rate_limited + l.ring_full).sum();
    eprintln!("{} events", out.printed);
    if lost_total > 0 {
        for (node, l) in lost {
            eprintln!(
                "{node}: {} events lost over the rate limit, {} with the ring buffer full (since the node's maps were created)",
                l.rate_limited, l.ring_full
            );
        }
    }
    if bad > 0 {
        eprintln!(
            "{bad} records could not be read: {}",
            first_bad.unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `hive mesh log`: every node's `AYA_LOGS`, one line per record,
/// `NODE LEVEL text`.
fn log_cmd(args: LogArgs) -> anyhow::Result<ExitCode> {
    let nodes = args.place.resolve()?;
    let mut readers = Vec::with_capacity(nodes.len());
    for n in &nodes {
        let reader = EbpfLog::from_pins(&n.dir).with_context(|| format!("node {}", n.name))?;
        readers.push((n.name.clone(), reader));
    }
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    eprintln!(
        "following the programs' log on {}; Ctrl-C to stop",
        names.join(", ")
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal handler")?;
    let deadline = args.duration.map(|d| Instant::now() + d);
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            for (node, reader) in &mut readers {
                for line in reader.read() {
                    println!("{node} {:<5} {}", line.level, line.text);
                }
            }
            std::io::stdout().flush()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(ExitCode::SUCCESS);
            }
            tokio::select! {
                _ = &mut ctrl_c => return Ok(ExitCode::SUCCESS),
                _ = term.recv() => return Ok(ExitCode::SUCCESS),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    })
}

fn stats_cmd(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let nodes = args.place.resolve()?;
    let for_display = args.format == StatsFormat::Table && !args.no_trunc;
    let names = args.place.names(for_display, args.service.as_deref());
    let query = service_query(args.service.as_deref(), &names);
    let all: Vec<stats::NodeStats> = nodes
        .iter()
        .map(|n| stats::read_node(n, query.as_deref()))
        .collect::<Result<_, _>>()?;
    if let Some(q) = &args.service
        && all.iter().all(|n| n.services.is_empty())
    {
        bail!(
            "no service {q:?} on {}; `hive mesh stats` without --service lists them",
            nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut stdout = std::io::stdout().lock();
    match args.format {
        StatsFormat::Table if for_display => write!(stdout, "{}", stats::table(&all, &names))?,
        StatsFormat::Table => write!(stdout, "{}", stats::table(&all, &DisplayNames::default()))?,
        StatsFormat::Json => {
            for n in &all {
                writeln!(stdout, "{}", serde_json::to_string(n)?)?;
            }
        }
        StatsFormat::Prometheus => {
            let mut w = MetricsWriter::new();
            render_stats(&mut w, &all, &[]);
            write!(stdout, "{}", w.finish())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_clients_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3d").is_err());
        assert_eq!(
            parse_client("192.168.77.100:40000"),
            Ok((Ipv4Addr::new(192, 168, 77, 100), Some(40000)))
        );
        assert_eq!(
            parse_client("10.0.0.1"),
            Ok((Ipv4Addr::new(10, 0, 0, 1), None))
        );
        assert!(parse_client("web").is_err());
    }
}
