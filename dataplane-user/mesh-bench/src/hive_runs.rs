//! Measuring hive's own path on the same lab: the same nginx backends, as
//! tasks in their own namespaces on n2 and n3 (where the kernel path's run
//! too, `kernel_path`) behind hive's eBPF mesh, the same published port on
//! n1, the same load from `client`.

use std::{
    net::{SocketAddr, SocketAddrV4},
    path::Path,
    time::{Duration, Instant},
};

use hive_dataplane::mesh::{Protocol, ServicePort, mode::MeshMode};
use hive_lab::{
    Lab,
    static_mesh::{ServiceDef, StaticMesh, StaticMeshError},
};

use crate::{
    kernel_runs::{Load, RunError, measure},
    report::{OpenLoopFigures, PathFigures, median},
    rules::{ADD_ONE_SAMPLES, ADDED_SERVICE_PORT, DUMMY_BASE_PORT},
};

/// Errors of the hive path.
#[derive(Debug, thiserror::Error)]
pub enum HiveRunError {
    #[error(transparent)]
    Mesh(#[from] StaticMeshError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("writing nginx's configuration {path}: {source}")]
    Config {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

const REAL_SERVICE: &str = "benchreal0000000000000001";
const PUBLISHED_PORT: u16 = 8080;
const BACKENDS: [(&str, &str); 2] = [("ng2", "n2"), ("ng3", "n3")];

/// hive's figures with `services` services installed (the measured one
/// included): a mesh of its own, brought up for this size and torn down
/// after it, so that the kernel path, measured on the same lab just before,
/// has the published port and the VXLAN port to itself again.
pub fn hive_at(
    lab: &Lab,
    run_dir: &Path,
    services: u32,
    mode: MeshMode,
    load: &Load,
) -> Result<PathFigures, HiveRunError> {
    let mut mesh = StaticMesh::new(lab, 0x00be_7c4e)?;
    mesh.set_mesh_mode(mode);
    // Today's path keeps its name (`hive`); the direct-return modes are rows of their own.
    let path = crate::mesh::BenchPath::Hive(mode).to_string();
    let measured = measure_on(&mut mesh, lab, run_dir, services, load, &path);
    let down = mesh.teardown();
    let figures = measured?;
    down?;
    Ok(figures)
}

/// [`hive_at`] at a fixed rate (`crate::open_loop`): the same mesh, brought
/// up for this run and torn down after it.
pub fn hive_open_loop(
    lab: &Lab,
    run_dir: &Path,
    services: u32,
    mode: MeshMode,
    rate: u32,
    duration: Duration,
) -> Result<OpenLoopFigures, HiveRunError> {
    let mut mesh = StaticMesh::new(lab, 0x00be_7c4e)?;
    mesh.set_mesh_mode(mode);
    let path = crate::mesh::BenchPath::Hive(mode).to_string();
    let measured = set_up(&mut mesh, run_dir, services).and_then(|()| {
        let addr = lab.node_addr("n1").map_err(RunError::from)?;
        let target = SocketAddr::V4(SocketAddrV4::new(addr, PUBLISHED_PORT));
        Ok(crate::kernel_runs::open_loop(
            lab,
            &path,
            services,
            vec![target],
            rate,
            duration,
        )?)
    });
    let down = mesh.teardown();
    let figures = measured?;
    down?;
    Ok(figures)
}

/// The two nginx tasks and `services` published services (the real one
/// included), applied; returns once nginx has had a moment to listen.
fn set_up(mesh: &mut StaticMesh, run_dir: &Path, services: u32) -> Result<(), HiveRunError> {
    for (task, node) in BACKENDS {
        let conf = nginx_conf(run_dir, task)?;
        mesh.add_task(task, node, "nginx", &["-c", &conf, "-g", "daemon off;"])?;
    }
    mesh.set_service(service(REAL_SERVICE, PUBLISHED_PORT));
    // `services` counts the real one too.
    for i in 0..services.saturating_sub(1) {
        mesh.set_service(service(&dummy_id(i), DUMMY_BASE_PORT + i as u16));
    }
    mesh.apply()?;
    // nginx takes a moment to listen; the warm-up in `measure` absorbs it,
    // and a short wait keeps its first connections from being refused.
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}

fn measure_on(
    mesh: &mut StaticMesh,
    lab: &Lab,
    run_dir: &Path,
    services: u32,
    load: &Load,
    path: &str,
) -> Result<PathFigures, HiveRunError> {
    set_up(mesh, run_dir, services)?;
    let url = format!(
        "http://{}:{PUBLISHED_PORT}/",
        lab.node_addr("n1").map_err(RunError::from)?
    );
    let (keep_alive, new_connections) = measure(lab, &url, load)?;
    let add = time_add_one(mesh)?;
    eprintln!(
        "  {:<11} {services:>6} services: {:>8.0} req/s, {:>7.0} new conn/s, add one service {:.3} ms",
        path,
        keep_alive.requests_per_sec,
        new_connections.requests_per_sec,
        add.as_secs_f64() * 1000.0
    );
    Ok(PathFigures {
        path: path.to_owned(),
        services,
        keep_alive,
        new_connections,
        add_one_service_ms: Some(add.as_secs_f64() * 1000.0),
    })
}

/// Time to add one more service on the ingress node, as the kernel path's
/// figure is the rule update on its ingress node: the median of
/// [`ADD_ONE_SAMPLES`] services added one after the other (the mesh is torn
/// down afterwards, so they are not taken away again). Timed:
/// `Dataplane::apply` of the new desired state, which the control plane
/// hands over ready-made; building that state is the harness's work,
/// outside the timing.
fn time_add_one(mesh: &mut StaticMesh) -> Result<Duration, StaticMeshError> {
    let added = |k: u16| format!("benchadded{k:015}");
    let mut samples = Vec::with_capacity(usize::from(ADD_ONE_SAMPLES));
    for k in 0..ADD_ONE_SAMPLES {
        mesh.set_service(service(&added(k), ADDED_SERVICE_PORT + k));
        let state = mesh.state_for("n1")?;
        let start = Instant::now();
        mesh.apply_state("n1", &state)?;
        samples.push(start.elapsed());
    }
    Ok(median(samples))
}

fn dummy_id(i: u32) -> String {
    format!("benchdummy{i:015}")
}

/// A published TCP service balanced over the two nginx tasks.
fn service(id: &str, published: u16) -> ServiceDef {
    ServiceDef {
        id: id.to_owned(),
        name: id.to_owned(),
        vip: None,
        ports: vec![ServicePort {
            protocol: Protocol::Tcp,
            target_port: 80,
            published_port: Some(published),
        }],
        backends: BACKENDS.iter().map(|(t, _)| (*t).to_owned()).collect(),
    }
}

fn nginx_conf(dir: &Path, task: &str) -> Result<String, HiveRunError> {
    let path = dir.join(format!("hive-nginx-{task}.conf"));
    let body = format!(
        "worker_processes 1;\npid {dir}/hive-nginx-{task}.pid;\nerror_log {dir}/hive-nginx-{task}.err warn;\n\
         events {{ worker_connections 16384; }}\n\
         http {{\n  access_log off;\n  default_type text/plain;\n  keepalive_requests 100000000;\n\
         keepalive_timeout 120s;\n  client_body_temp_path {dir}/hive-tmp-{task};\n\
         server {{\n    listen 0.0.0.0:80 backlog=4096;\n    location / {{ return 200 \"hello from {task}\\n\"; }}\n  }}\n}}\n",
        dir = dir.display(),
    );
    std::fs::create_dir_all(dir.join(format!("hive-tmp-{task}")))
        .and_then(|()| std::fs::write(&path, body))
        .map_err(|source| HiveRunError::Config {
            path: path.clone(),
            source,
        })?;
    Ok(path.display().to_string())
}
