//! Measuring the kernel's path (iptables, nftables) on a lab at each
//! service count.

use std::{
    net::{SocketAddr, SocketAddrV4},
    time::Duration,
};

use hive_lab::{Lab, floor_forward::FloorForwardError};

use crate::{
    kernel_path::{KernelPath, KernelPathError, RuleEngine},
    open_loop::{OpenLoop, OpenLoopError},
    report::{OpenLoopFigures, PathFigures, median},
    rules::ADD_ONE_SAMPLES,
    softirq::Snapshot,
    wrk::{ConnMode, WrkError, WrkResult, WrkRun},
};

/// Load parameters shared by every path of one run.
#[derive(Debug, Clone)]
pub struct Load {
    pub duration: Duration,
    pub threads: u32,
    pub connections: u32,
}

impl Default for Load {
    /// The kernel baseline's shape (`wrk -t2 -c32`), shorter.
    fn default() -> Self {
        Load {
            duration: Duration::from_secs(5),
            threads: 2,
            connections: 32,
        }
    }
}

/// Errors of a measured run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    KernelPath(#[from] KernelPathError),
    #[error(transparent)]
    Wrk(#[from] WrkError),
    #[error("lab: {0}")]
    Lab(#[from] hive_lab::LabError),
    #[error(transparent)]
    OpenLoop(#[from] OpenLoopError),
    #[error("the floor forwarder: {0}")]
    Floor(#[from] FloorForwardError),
}

/// Measure keep-alive and new-connection load from `client` to `url`.
pub fn measure(lab: &Lab, url: &str, load: &Load) -> Result<(WrkResult, WrkResult), RunError> {
    measure_split(lab, &[url.to_string()], load)
}

/// [`measure`] with the load split evenly over `urls`: one wrk per URL, all
/// running at the same time, with a share of the threads and connections
/// each; their figures are merged ([`crate::wrk::merge`]).
pub fn measure_split(
    lab: &Lab,
    urls: &[String],
    load: &Load,
) -> Result<(WrkResult, WrkResult), RunError> {
    let share = |total: u32| (total / urls.len().max(1) as u32).max(1);
    let run = |mode, duration| -> Result<WrkResult, RunError> {
        let mut children = Vec::with_capacity(urls.len());
        for url in urls {
            let wrk = WrkRun {
                url: url.clone(),
                threads: share(load.threads),
                connections: share(load.connections),
                duration,
                mode,
            };
            let spawned = lab
                .command("client", "wrk")
                .map_err(RunError::from)
                .and_then(|command| Ok(wrk.spawn(command)?));
            match spawned {
                Ok(child) => children.push(child),
                Err(err) => {
                    // Leave no load running behind a failed start.
                    for mut child in children {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                    return Err(err);
                }
            }
        }
        let results = children
            .into_iter()
            .map(crate::wrk::finish)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::wrk::merge(&results))
    };
    // A short warm-up fills ARP/neighbour and conntrack caches.
    let _ = run(ConnMode::KeepAlive, Duration::from_secs(1));
    Ok((
        run(ConnMode::KeepAlive, load.duration)?,
        run(ConnMode::Close, load.duration)?,
    ))
}

/// The ceiling of every path: the same two nginx backends, each loaded
/// straight from `client` by its own wrk (half the threads and connections
/// each), with no mesh, no NAT and no tunnel in between; only the
/// underlay. What a connection costs the endpoints themselves.
pub fn direct(lab: &Lab, path: &KernelPath<'_>, load: &Load) -> Result<PathFigures, RunError> {
    let urls: Vec<String> = path
        .route_client_to_backends()?
        .iter()
        .map(|addr| format!("http://{addr}:80/"))
        .collect();
    let measured = measure_split(lab, &urls, load);
    let unrouted = path.unroute_client();
    let (keep_alive, new_connections) = measured?;
    unrouted?;
    eprintln!(
        "  {:<9} no mesh:    {:>8.0} req/s, {:>7.0} new conn/s",
        "direct", keep_alive.requests_per_sec, new_connections.requests_per_sec,
    );
    Ok(PathFigures {
        path: DIRECT.to_string(),
        services: 0,
        keep_alive,
        new_connections,
        add_one_service_ms: None,
    })
}

/// The name of [`direct`]'s row.
pub const DIRECT: &str = "direct";

/// The kernel path's figures through `engine` with `services` services
/// installed (the measured one included). The rules are cleared afterwards,
/// so the next path can use the published port.
pub fn kernel_at(
    lab: &Lab,
    path: &KernelPath<'_>,
    engine: RuleEngine,
    services: u32,
    load: &Load,
) -> Result<PathFigures, RunError> {
    let real = path.real_service();
    let url = format!("http://{}:{}/", real.published_addr, real.published_port);
    path.install(engine, services.saturating_sub(1))?;
    let (keep_alive, new_connections) = measure(lab, &url, load)?;
    let add = median(
        (0..ADD_ONE_SAMPLES)
            .map(|k| path.time_add_one(engine, k))
            .collect::<Result<Vec<_>, _>>()?,
    );
    path.clear()?;
    let name = engine.name();
    eprintln!(
        "  {name:<9} {services:>6} services: {:>8.0} req/s, {:>7.0} new conn/s, add one service {:.1} ms",
        keep_alive.requests_per_sec,
        new_connections.requests_per_sec,
        add.as_secs_f64() * 1000.0
    );
    Ok(PathFigures {
        path: name.to_string(),
        services,
        keep_alive,
        new_connections,
        add_one_service_ms: Some(add.as_secs_f64() * 1000.0),
    })
}

/// An open-loop run (`crate::open_loop`) from `client` to `targets` at `rate`
/// new connections/s for `duration`, after a one-second warm-up at the same
/// rate; the machine's softirq counters are read around the measured part.
pub fn open_loop(
    lab: &Lab,
    path: &str,
    services: u32,
    targets: Vec<SocketAddr>,
    rate: u32,
    duration: Duration,
) -> Result<OpenLoopFigures, RunError> {
    let netns = lab.netns_path("client")?;
    let warm_up = OpenLoop::new(targets.clone(), rate, Duration::from_secs(1))?;
    let _ = crate::open_loop::run_in(netns, &warm_up);
    let spec = OpenLoop::new(targets, rate, duration)?;
    let before = Snapshot::take();
    let result = crate::open_loop::run_in(netns, &spec)?;
    let softirq = before.delta(&Snapshot::take());
    eprintln!(
        "  {path:<11} {services:>6} services, open loop at {rate} conn/s: p50 {:.2} ms, p99 {:.2} ms, {:.0} done/s, {} errors, {} late starts; NET_RX/CPU {:?}, ksoftirqd ticks/CPU {:?}",
        result.p50_ms,
        result.p99_ms,
        result.completed_per_sec,
        result.errors,
        result.late_starts,
        softirq.net_rx,
        softirq.ksoftirqd_ticks,
    );
    Ok(OpenLoopFigures {
        path: path.to_owned(),
        services,
        result,
        softirq,
    })
}

/// [`direct`] at a fixed rate: each backend loaded straight from `client`,
/// connections alternating between them. `services` is the size whose rate
/// it was offered (the row has no mesh, so no size of its own).
pub fn direct_open_loop(
    lab: &Lab,
    path: &KernelPath<'_>,
    services: u32,
    rate: u32,
    duration: Duration,
) -> Result<OpenLoopFigures, RunError> {
    let targets = path
        .route_client_to_backends()?
        .into_iter()
        .map(|addr| SocketAddr::V4(SocketAddrV4::new(addr, 80)))
        .collect();
    let measured = open_loop(lab, DIRECT, services, targets, rate, duration);
    let unrouted = path.unroute_client();
    let figures = measured?;
    unrouted?;
    Ok(figures)
}

/// [`kernel_at`] at a fixed rate (`crate::open_loop`).
pub fn kernel_open_loop(
    lab: &Lab,
    path: &KernelPath<'_>,
    engine: RuleEngine,
    services: u32,
    rate: u32,
    duration: Duration,
) -> Result<OpenLoopFigures, RunError> {
    let real = path.real_service();
    let target = SocketAddr::V4(SocketAddrV4::new(real.published_addr, real.published_port));
    path.install(engine, services.saturating_sub(1))?;
    let measured = open_loop(lab, engine.name(), services, vec![target], rate, duration);
    let cleared = path.clear();
    let figures = measured?;
    cleared?;
    Ok(figures)
}
