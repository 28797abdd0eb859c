//! Measuring the kernel's path (iptables, nftables) on a lab at each
//! service count.

use std::{path::Path, time::Duration};

use hive_dataplane::lab::Lab;

use crate::{
    kernel_path::{KernelPath, KernelPathError, RuleEngine},
    report::{PathFigures, median},
    rules::ADD_ONE_SAMPLES,
    wrk::{ConnMode, WrkError, WrkRun},
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
    Lab(#[from] hive_dataplane::lab::LabError),
}

/// Measure keep-alive and new-connection load from `client` to `url`.
pub fn measure(
    lab: &Lab,
    url: &str,
    load: &Load,
) -> Result<(crate::wrk::WrkResult, crate::wrk::WrkResult), RunError> {
    let run = |mode| -> Result<_, RunError> {
        let wrk = WrkRun {
            url: url.to_string(),
            threads: load.threads,
            connections: load.connections,
            duration: load.duration,
            mode,
        };
        Ok(wrk.run(lab.command("client", "wrk")?)?)
    };
    // A short warm-up fills ARP/neighbour and conntrack caches.
    let warm = Load {
        duration: Duration::from_secs(1),
        ..load.clone()
    };
    let _ = WrkRun {
        url: url.to_string(),
        threads: warm.threads,
        connections: warm.connections,
        duration: warm.duration,
        mode: ConnMode::KeepAlive,
    }
    .run(lab.command("client", "wrk")?);
    Ok((run(ConnMode::KeepAlive)?, run(ConnMode::Close)?))
}

/// Kernel path figures for each engine at each service count.
pub fn kernel_paths(
    lab: &Lab,
    run_dir: &Path,
    service_counts: &[u32],
    load: &Load,
) -> Result<Vec<PathFigures>, RunError> {
    let path = KernelPath::up(lab, run_dir.to_path_buf())?;
    let real = path.real_service();
    let url = format!("http://{}:{}/", real.published_addr, real.published_port);
    let mut figures = Vec::new();
    let result = (|| -> Result<(), RunError> {
        for &services in service_counts {
            for (engine, name) in [
                (RuleEngine::Iptables, "iptables"),
                (RuleEngine::Nftables, "nftables"),
            ] {
                // `services` counts the measured one too.
                path.install(engine, services.saturating_sub(1))?;
                let (keep_alive, new_connections) = measure(lab, &url, load)?;
                let add = median(
                    (0..ADD_ONE_SAMPLES)
                        .map(|k| path.time_add_one(engine, k))
                        .collect::<Result<Vec<_>, _>>()?,
                );
                eprintln!(
                    "  {name:<9} {services:>6} services: {:>8.0} req/s, {:>7.0} new conn/s, add one service {:.1} ms",
                    keep_alive.requests_per_sec,
                    new_connections.requests_per_sec,
                    add.as_secs_f64() * 1000.0
                );
                figures.push(PathFigures {
                    path: name.to_string(),
                    services,
                    keep_alive,
                    new_connections,
                    add_one_service_ms: Some(add.as_secs_f64() * 1000.0),
                });
            }
        }
        Ok(())
    })();
    let down = path.down();
    result?;
    down?;
    Ok(figures)
}
