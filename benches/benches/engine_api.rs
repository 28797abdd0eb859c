//! `cargo bench -p hive-bench --bench engine_api`: the Engine API under the polls the docker
//! CLI's progress display makes (`GET /services?status=true`, `GET /tasks?filters=...`, every
//! 200 ms per client) with many services and tasks in the store, and create→converged of a
//! 10-replica service through the stock `docker service create` against `hive service
//! create`. Figures, not a test; JSON in `target/hive-bench/engine_api.json`.
//!
//! The store is filled with services whose placement no node satisfies, so their tasks exist
//! (pending) without running anything. Environment: `HIVE_BENCH_EAPI_SERVICES` (default
//! 1000), `HIVE_BENCH_EAPI_REPLICAS` (tasks per filler service, default 10),
//! `HIVE_BENCH_EAPI_REQUESTS` (per endpoint, default 200), `HIVE_BENCH_EAPI_ROUNDS`
//! (create→converged rounds per client, default 3).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hive::client::DaemonClient;
use hive::lab_swarm;
use hive::store::objects::{ServiceMode, ServiceSpec};
use hive_bench::lab_bench;
use hive_lab::{Member, naming};
use serde::Serialize;

const LAB: &str = "hbeapi";
const NODES: u32 = 2;
const MANAGER: &str = "n1";
const DOCKER: &str = "/usr/local/bin/docker";
const GIVE_UP: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(20);
const CONVERGE_REPLICAS: u64 = 10;

#[derive(Debug, Serialize)]
struct Report {
    what: &'static str,
    nodes: u32,
    services_in_store: usize,
    tasks_in_store: usize,
    fill_seconds: f64,
    services_status: Endpoint,
    tasks_filtered: Endpoint,
    docker_create_to_converged_ms: Figure,
    hive_create_to_converged_ms: Figure,
}

#[derive(Debug, Serialize)]
struct Endpoint {
    path: String,
    requests: usize,
    answer_bytes: usize,
    requests_per_second: f64,
    latency_ms: Figure,
    p99_ms: f64,
}

#[derive(Debug, Serialize)]
struct Figure {
    median: f64,
    min: f64,
    max: f64,
    samples: Vec<f64>,
}

impl Figure {
    fn of(samples: Vec<f64>, keep: bool) -> Self {
        let (median, min, max) = lab_bench::median_min_max(&samples);
        Self {
            median,
            min,
            max,
            samples: if keep { samples } else { Vec::new() },
        }
    }
}

fn main() -> ExitCode {
    if let Some(code) = hive::cli::run_as_hive_if_asked() {
        return code;
    }
    lab_bench::main("engine_api", "network namespaces and daemons in them", run)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn run() -> Result<(), String> {
    if !Path::new(DOCKER).exists() {
        return Err(format!("the stock docker CLI is expected at {DOCKER}"));
    }
    let services = env_usize("HIVE_BENCH_EAPI_SERVICES", 1000);
    let replicas = env_usize("HIVE_BENCH_EAPI_REPLICAS", 10) as u64;
    let requests = env_usize("HIVE_BENCH_EAPI_REQUESTS", 200);
    let rounds = env_usize("HIVE_BENCH_EAPI_ROUNDS", 3);

    let rt = lab_bench::runtime()?;
    let swarm = lab_bench::swarm_up(&rt, LAB, NODES, 1)?;
    let mut api = rt
        .block_on(lab_swarm::connect(swarm.lab(), MANAGER, GIVE_UP))
        .map_err(|e| e.to_string())?;
    let socket = naming::docker_socket(LAB, Member::Node(1));

    let started = Instant::now();
    let first = rt.block_on(fill(&mut api, services, replicas))?;
    let tasks = rt.block_on(wait_tasks(&mut api, services as u64 * replicas))?;
    let fill_seconds = started.elapsed().as_secs_f64();
    eprintln!("store: {services} services, {tasks} tasks in {fill_seconds:.0} s");

    let services_status = measure(&socket, "/v1.50/services?status=true", requests)?;
    let filters = format!(r#"{{"_up-to-date":{{"true":true}},"service":{{"{first}":true}}}}"#);
    let tasks_path = format!("/v1.50/tasks?filters={}", percent_encode(&filters));
    let tasks_filtered = measure(&socket, &tasks_path, requests)?;

    let (mut docker, mut hive) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let name = format!("dk{round}");
        let replicas = CONVERGE_REPLICAS.to_string();
        let args = [
            "service",
            "create",
            "-d",
            "--name",
            &name,
            "--replicas",
            &replicas,
            "hive/whoami",
        ];
        let started = Instant::now();
        docker_cli(&swarm, &args)?;
        rt.block_on(converged(&mut api, &name))?;
        docker.push(ms(started.elapsed()));
        lab_bench::hive_cli(swarm.lab(), MANAGER, &["service", "rm", &name])?;

        let name = format!("hv{round}");
        let args = [
            "service",
            "create",
            "-d",
            "--name",
            &name,
            "--replicas",
            &replicas,
            "hive/whoami",
        ];
        let started = Instant::now();
        lab_bench::hive_cli(swarm.lab(), MANAGER, &args)?;
        rt.block_on(converged(&mut api, &name))?;
        hive.push(ms(started.elapsed()));
        lab_bench::hive_cli(swarm.lab(), MANAGER, &["service", "rm", &name])?;
        eprintln!(
            "round {round}/{rounds}: docker {:.0} ms, hive {:.0} ms",
            docker[round - 1],
            hive[round - 1]
        );
    }
    drop(swarm);

    let report = Report {
        what: "Engine API polls with a full store, and create->converged of 10 replicas (2-node lab, 1 manager)",
        nodes: NODES,
        services_in_store: services,
        tasks_in_store: tasks,
        fill_seconds,
        services_status,
        tasks_filtered,
        docker_create_to_converged_ms: Figure::of(docker, true),
        hive_create_to_converged_ms: Figure::of(hive, true),
    };
    print_report(&report);
    lab_bench::write_json("engine_api", &report).map(drop)
}

/// `services` replicated services no node can run; returns the first one's ID.
async fn fill(api: &mut DaemonClient, services: usize, replicas: u64) -> Result<String, String> {
    let mut first = String::new();
    for i in 0..services {
        let mut spec = ServiceSpec::default();
        spec.annotations.name = format!("fill{i:04}");
        spec.mode = ServiceMode::Replicated { replicas };
        spec.task_template.container.image = "hive/whoami".to_owned();
        spec.task_template.placement.constraints = vec!["node.labels.bench==nowhere".to_owned()];
        let created = api
            .control
            .create_service(&spec)
            .await
            .map_err(|e| format!("create fill{i:04}: {e}"))?;
        if first.is_empty() {
            first = created.id;
        }
    }
    Ok(first)
}

/// Waits until the orchestrator made `want` tasks (or gave up: the count reached is kept).
async fn wait_tasks(api: &mut DaemonClient, want: u64) -> Result<usize, String> {
    let deadline = Instant::now() + GIVE_UP;
    loop {
        let tasks = api
            .control
            .list_tasks(hive::client::TaskFilter::default())
            .await
            .map_err(|e| format!("task ls: {e}"))?
            .tasks
            .len();
        if tasks as u64 >= want || Instant::now() > deadline {
            return Ok(tasks);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn converged(api: &mut DaemonClient, name: &str) -> Result<(), String> {
    let deadline = Instant::now() + GIVE_UP;
    loop {
        let rows = api
            .control
            .list_services()
            .await
            .map_err(|e| format!("service ls: {e}"))?;
        if rows
            .iter()
            .any(|r| r.service.spec.annotations.name == name && r.running == CONVERGE_REPLICAS)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{name} did not converge in {GIVE_UP:?}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn docker_cli(swarm: &lab_swarm::SwarmLab, args: &[&str]) -> Result<(), String> {
    let out = swarm
        .lab()
        .command(MANAGER, DOCKER)
        .map_err(|e| e.to_string())?
        .args(args)
        .env("DOCKER_CLI_HINTS", "false")
        .output()
        .map_err(|e| format!("docker: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `requests` sequential GETs of `path` on one keep-alive connection.
fn measure(socket: &PathBuf, path: &str, requests: usize) -> Result<Endpoint, String> {
    let stream = UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut latencies = Vec::with_capacity(requests);
    let mut answer_bytes = 0;
    let started = Instant::now();
    for _ in 0..requests {
        let sent = Instant::now();
        write!(writer, "GET {path} HTTP/1.1\r\nHost: docker\r\n\r\n").map_err(|e| e.to_string())?;
        answer_bytes = read_answer(&mut reader)?;
        latencies.push(ms(sent.elapsed()));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
    Ok(Endpoint {
        path: path.to_owned(),
        requests,
        answer_bytes,
        requests_per_second: requests as f64 / elapsed,
        latency_ms: Figure::of(latencies, false),
        p99_ms: p99,
    })
}

/// One answer with a `Content-Length` (every JSON answer of the API); its body's size.
fn read_answer(reader: &mut BufReader<UnixStream>) -> Result<usize, String> {
    let mut status = String::new();
    reader.read_line(&mut status).map_err(|e| e.to_string())?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("answer: {}", status.trim()));
    }
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let length = length.ok_or("an answer without Content-Length")?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(length)
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_report(report: &Report) {
    println!(
        "\nENGINE API ({} services, {} tasks in the store, {}-node lab)",
        report.services_in_store, report.tasks_in_store, report.nodes
    );
    for e in [&report.services_status, &report.tasks_filtered] {
        println!(
            "{:<60} {:>7.1} req/s  median {:.1} ms  p99 {:.1} ms  ({} bytes)",
            e.path.chars().take(60).collect::<String>(),
            e.requests_per_second,
            e.latency_ms.median,
            e.p99_ms,
            e.answer_bytes
        );
    }
    for (what, f) in [
        (
            "docker service create -d -> 10 running",
            &report.docker_create_to_converged_ms,
        ),
        (
            "hive service create -d -> 10 running",
            &report.hive_create_to_converged_ms,
        ),
    ] {
        println!(
            "{what:<60} {:>7.0} ms  [{:.0}..{:.0}]",
            f.median, f.min, f.max
        );
    }
}
