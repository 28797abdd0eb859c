//! `hive daemon`: thin glue — parse, validate before binding, bind, run until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::daemon::config::{
    DEFAULT_DATA_DIR, DEFAULT_LISTEN_ADDR, DEFAULT_SHUTDOWN_GRACE, parse_dns_upstreams,
    parse_listen_addr,
};
use crate::daemon::{self, DaemonConfig, Listeners};

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Where the node keeps its swarm state (certificates, Raft store).
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Address other nodes connect to (IP:PORT).
    #[arg(long, default_value = DEFAULT_LISTEN_ADDR)]
    pub listen_addr: String,
    /// Address advertised to other nodes (IP, IP:PORT or interface); detected if omitted.
    #[arg(long)]
    pub advertise_addr: Option<String>,
    /// The local API socket the `hive` CLI uses.
    #[arg(long, default_value = crate::transport::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// UDP port for VXLAN data traffic used by `swarm init` on this node (1024-49151).
    #[arg(long)]
    pub data_path_port: Option<u16>,
    /// How long in-flight requests may run on SIGTERM/SIGINT (e.g. 10s).
    #[arg(long, value_parser = super::output::parse_duration, default_value = "10s")]
    pub shutdown_grace: std::time::Duration,
    /// Run without the data plane: tasks get no networks and no mesh is programmed.
    #[arg(long)]
    pub no_dataplane: bool,
    /// Where this node's BPF programs and maps are pinned [default: /sys/fs/bpf/hive/<node-id>].
    #[arg(long)]
    pub bpf_pin_dir: Option<PathBuf>,
    /// Where task network namespaces are mounted [default: /run/hive/<node-id>].
    #[arg(long)]
    pub task_run_dir: Option<PathBuf>,
    /// Cgroup of this node's tasks, relative to each hierarchy's root [default: hive/<node-id>].
    #[arg(long)]
    pub cgroup_parent: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (IP:PORT, e.g. 0.0.0.0:9323): data-plane
    /// counters, Raft, task and node gauges at GET /metrics.
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// A name server the tasks' embedded resolver forwards names that are not the swarm's
    /// to (IP or IP:PORT; repeat for several) [default: those of /etc/resolv.conf]. `none`
    /// forwards nothing: such names get SERVFAIL.
    #[arg(long = "dns-upstream", value_name = "ADDR")]
    pub dns_upstream: Vec<String>,
    /// A registry to pull images from over plain HTTP (HOST or HOST:PORT; repeat for
    /// several), as dockerd's flag. Every other registry is reached over HTTPS only.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registry: Vec<String>,
    /// Serve the Docker Engine API here, for the docker CLI and SDKs (unix://PATH; repeat
    /// for several) [default: unix:///run/hive/docker.sock]. tcp:// is refused: it needs
    /// mutual TLS, which hive does not serve yet.
    #[arg(long = "docker-api", value_name = "ADDR")]
    pub docker_api: Vec<String>,
}

pub fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let config = DaemonConfig {
        data_dir: args.data_dir,
        listen_addr: parse_listen_addr(&args.listen_addr)?,
        advertise_addr: args.advertise_addr,
        socket: args.socket,
        data_path_port: args.data_path_port,
        shutdown_grace: if args.shutdown_grace.is_zero() {
            DEFAULT_SHUTDOWN_GRACE
        } else {
            args.shutdown_grace
        },
        no_dataplane: args.no_dataplane,
        bpf_pin_dir: args.bpf_pin_dir,
        task_run_dir: args.task_run_dir,
        cgroup_parent: args.cgroup_parent,
        metrics_addr: args
            .metrics_addr
            .as_deref()
            .map(parse_listen_addr)
            .transpose()?,
        dns_upstreams: parse_dns_upstreams(&args.dns_upstream)?,
        insecure_registries: args.insecure_registry,
        docker_api: docker_api_addrs(&args.docker_api)?,
    };
    config.validate()?;
    // Everything the daemon creates is its own: the Raft store holds the CA key and the join
    // tokens (docs/security.md, "Files"). Tasks get Docker's 022 back (executor/process.rs).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        daemon::data_dir::DAEMON_UMASK,
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the daemon's runtime")?;
    runtime.block_on(async move {
        let listeners = Listeners::bind(&config).await?;
        daemon::run(config, listeners, shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `--docker-api` values, or the default socket when none is given.
fn docker_api_addrs(
    values: &[String],
) -> Result<Vec<crate::engine_api::DockerApiAddr>, crate::engine_api::AddrError> {
    if values.is_empty() {
        return Ok(vec![crate::engine_api::DockerApiAddr::Unix(
            crate::engine_api::DEFAULT_DOCKER_SOCKET.into(),
        )]);
    }
    values.iter().map(|v| v.parse()).collect()
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}
