//! `hive gossip-agent` (hidden): one gossip member in the foreground, without
//! the daemon, for lab tests and the gossip benchmark.
//!
//! Stdout: one JSON object per line: `ready` once bound, then every membership
//! change (`node_up`, `node_updated`, `node_down` with the member, as
//! `MembershipEvent` serialises), each with `observer` (this node) and
//! `time_ns` (wall clock, so lines of agents on one machine compare).
//! Stdin, one command per line: `set KEY VALUE`, `delete KEY`, `members`,
//! `timeouts`, `leave`. SIGTERM or SIGINT leave gracefully; SIGKILL is a crash.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::gossip::{DEFAULT_GOSSIP_PORT, Gossip, GossipConfig, WatchError};

#[derive(Debug, Args)]
pub struct GossipAgentArgs {
    /// This node's ID.
    #[arg(long)]
    pub node_id: String,
    /// The cluster's ID; nodes of another cluster are ignored.
    #[arg(long)]
    pub cluster_id: String,
    /// IP:PORT peers reach this node at.
    #[arg(long, value_parser = parse_addr)]
    pub advertise_addr: SocketAddr,
    /// IP:PORT to bind; defaults to the advertise address.
    #[arg(long, value_parser = parse_addr)]
    pub listen_addr: Option<SocketAddr>,
    /// A node to contact first (repeat for several).
    #[arg(long = "seed", value_parser = parse_addr)]
    pub seeds: Vec<SocketAddr>,
    /// Incarnation number; defaults to the current time in milliseconds.
    #[arg(long)]
    pub generation: Option<u64>,
    /// Gossip interval in milliseconds (default 100).
    #[arg(long)]
    pub gossip_interval_ms: Option<u64>,
    /// Failure-detector phi threshold (default 12).
    #[arg(long)]
    pub phi_threshold: Option<f64>,
    /// Publish KEY=VALUE from the start (repeat for several).
    #[arg(long = "set", value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,
}

pub fn run(args: GossipAgentArgs) -> anyhow::Result<ExitCode> {
    let config = config(&args);
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(agent(config))
}

fn config(args: &GossipAgentArgs) -> GossipConfig {
    let mut config = GossipConfig::new(&args.node_id, &args.cluster_id, args.advertise_addr);
    if let Some(listen) = args.listen_addr {
        config.listen_addr = listen;
    }
    config.seeds = args.seeds.clone();
    if let Some(generation) = args.generation {
        config.generation = generation;
    }
    if let Some(ms) = args.gossip_interval_ms {
        config.gossip_interval = Duration::from_millis(ms);
        config.failure_detection.initial_interval = config.gossip_interval;
        config.leave_grace = config.gossip_interval * 3;
    }
    if let Some(phi) = args.phi_threshold {
        config.failure_detection.phi_threshold = phi;
    }
    config.initial_state = args.set.iter().cloned().collect();
    config
}

async fn agent(config: GossipConfig) -> anyhow::Result<ExitCode> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let addr = config.advertise_addr;
    let gossip = Gossip::start(config).await?;
    let mut watch = gossip.watch();
    let observer = gossip.node_id().to_string();
    emit(
        &observer,
        json!({"event": "ready", "generation": gossip.generation(), "gossip_addr": addr}),
    );
    let mut stdin = Some(stdin_lines());
    loop {
        tokio::select! {
            event = watch.recv() => match event {
                Ok(event) => emit(&observer, serde_json::to_value(&event)?),
                Err(WatchError::Lagged { missed }) => {
                    emit(&observer, json!({"event": "lagged", "missed": missed}));
                    emit(&observer, json!({"event": "members", "members": gossip.members()}));
                }
                Err(WatchError::Closed) => anyhow::bail!("gossip stopped"),
            },
            line = next_line(&mut stdin) => match line {
                Some(line) => {
                    if command(&gossip, &observer, line.trim()).await? == Flow::Leave {
                        break;
                    }
                }
                // Stdin closed: keep running on signals alone.
                None => stdin = None,
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    gossip.leave().await?;
    emit(&observer, json!({"event": "left"}));
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Leave,
}

async fn command(gossip: &Gossip, observer: &str, line: &str) -> anyhow::Result<Flow> {
    let mut words = line.splitn(3, ' ');
    match (words.next(), words.next(), words.next()) {
        (Some("set"), Some(key), Some(value)) => match gossip.set_local(key, value).await {
            Ok(()) => {}
            Err(err) => emit(
                observer,
                json!({"event": "error", "error": err.to_string()}),
            ),
        },
        (Some("delete"), Some(key), None) => match gossip.delete_local(key).await {
            Ok(_) => {}
            Err(err) => emit(
                observer,
                json!({"event": "error", "error": err.to_string()}),
            ),
        },
        (Some("members"), None, None) => {
            emit(
                observer,
                json!({"event": "members", "members": gossip.members()}),
            );
        }
        (Some("timeouts"), None, None) => {
            let timeouts: serde_json::Map<String, Value> = gossip
                .failure_timeouts()
                .await
                .into_iter()
                .map(|(node, t)| (node, json!(t.as_secs_f64() * 1000.0)))
                .collect();
            emit(
                observer,
                json!({"event": "timeouts", "timeouts_ms": timeouts}),
            );
        }
        (Some("leave"), None, None) => return Ok(Flow::Leave),
        (Some(""), None, None) => {}
        _ => emit(
            observer,
            json!({"event": "error", "error": format!(
                "unknown command {line:?}: use `set KEY VALUE`, `delete KEY`, `members`, \
                 `timeouts` or `leave`"
            )}),
        ),
    }
    Ok(Flow::Continue)
}

/// Stdin lines, read on a thread of their own (a blocking read cannot be
/// cancelled; the thread ends with the process).
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}

async fn next_line(stdin: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match stdin {
        Some(lines) => lines.recv().await,
        None => std::future::pending().await,
    }
}

/// Writes one JSON line with `observer` and `time_ns` added, flushed at once
/// (a benchmark reads the time of each line as it comes).
fn emit(observer: &str, mut line: Value) {
    let time_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    if let Value::Object(map) = &mut line {
        map.insert("observer".into(), json!(observer));
        map.insert(
            "time_ns".into(),
            json!(u64::try_from(time_ns).unwrap_or(u64::MAX)),
        );
    }
    let mut out = std::io::stdout().lock();
    // A closed stdout (the reader went away) is not worth dying for.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `IP:PORT`, or a bare IP meaning port 7946.
fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    s.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_GOSSIP_PORT))
        .map_err(|_| format!("{s:?} is not an IP or IP:PORT"))
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_default_to_port_7946() {
        assert_eq!(
            parse_addr("192.168.77.2").unwrap(),
            "192.168.77.2:7946".parse().unwrap()
        );
        assert_eq!(parse_addr("192.168.77.2:9000").unwrap().port(), 9000);
        assert!(parse_addr("n2").is_err());
    }

    #[test]
    fn key_values_split_at_the_first_equals() {
        assert_eq!(
            parse_key_value("node.addr=a=b").unwrap(),
            ("node.addr".to_string(), "a=b".to_string())
        );
        assert!(parse_key_value("novalue").is_err());
    }
}
