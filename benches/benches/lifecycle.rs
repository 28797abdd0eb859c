//! `cargo bench -p hive-bench --bench lifecycle`: what a client sees while the cluster
//! replaces, removes or moves tasks (issue 20, docs/lifecycle.md), on hive and on the kernel
//! path's baseline, in one run.
//!
//! For each scenario of `tests/lifecycle.rs` — rolling updates of 4 replicas at parallelism 1
//! and 2 in both orders, `--force`, a rollback, scale 4 → 1, a single replica updated
//! start-first, the drain of a node running two of the tasks — two loads from the lab's
//! `client` to the published port, at the same time:
//!
//! - **keep-alive**: `wrk` (its connections reused until the server closes them);
//! - **new connection per request**: one thread, `GET /` with `Connection: close` in a loop.
//!
//! Each load runs a *before* window (3 s, nothing changing) and a *during* window (from just
//! before the command to just after the service converged): requests sent, failed, and p99
//! latency in each.
//!
//! The same scenarios then run on the **kernel path's baseline**, as Swarm's IPVS path
//! treats a task: a 3-node lab without hive, the published port DNATed by iptables on n1 to
//! backends (`hive builtin whoami`, the same server as `hive/whoami`, SIGTERM handling
//! included) on the nodes' addresses; a new backend is added to the rules as soon as its
//! process started (Swarm adds a task once its container runs, whether it listens yet or
//! not); a replaced one is removed from the rules, then gets SIGTERM at once. This is a best
//! case for that path: one ingress node whose rules change synchronously, where Swarm's other
//! nodes learn of a removed task through gossip, later.
//!
//! Last, **health check → out of every mesh**: a service whose check writes the time it
//! fails (`date +%s%N`, the same clock as the benchmark) is made to fail; every node's pinned
//! mesh is polled until none has the task in its rings. Figures: from the failing check to
//! the first and the last node without it (3 samples, median and spread).
//!
//! Figures, never assertions. JSON in `target/hive-bench/lifecycle.json`.
//!
//! Environment: `HIVE_BENCH_LIFECYCLE_CONNECTIONS` (wrk's connections, default 8),
//! `HIVE_BENCH_LIFECYCLE_HEALTH_SAMPLES` (default 3), `HIVE_BENCH_LIFECYCLE_SKIP_BASELINE`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hive::client::{DaemonClient, TaskFilter};
use hive::lab_swarm::{self, SwarmLab};
use hive::store::objects::{Health, Task, TaskState};
use hive_bench::lab_bench;
use hive_dataplane::maps::MeshMaps;
use hive_dataplane::node_pins::{NodeChoice, PinsQuery};
use hive_dataplane::stats::Names;
use hive_lab::{Lab, LabGuard, LabSpec};
use hive_mesh_bench::wrk::{self, ConnMode, WrkResult, WrkRun};
use serde::Serialize;

const HIVE_LAB: &str = "lifecycle-h";
const BASE_LAB: &str = "lifecycle-k";
const NODES: [&str; 3] = ["n1", "n2", "n3"];
const PORT: u16 = 8080;
const HEALTH_PORT: u16 = 8081;
const BEFORE: Duration = Duration::from_secs(3);
/// Load before the command and after convergence, inside the during window.
const MARGIN: Duration = Duration::from_millis(300);
/// wrk's run length in the during window; it is stopped (SIGINT) once the service converged.
const WRK_MAX: Duration = Duration::from_secs(170);
/// Bound of one operation; far above anything measured, it only stops a broken run.
const GIVE_UP: Duration = Duration::from_secs(150);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// A stopped baseline backend gets this long to exit before SIGKILL (Docker's default).
const GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Loop {
    sent: u64,
    failed: u64,
    p50_ms: f64,
    p99_ms: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Window {
    seconds: f64,
    /// wrk, keep-alive.
    keep_alive: WrkResult,
    /// One new connection per request.
    new_connection: Loop,
}

#[derive(Debug, Serialize)]
struct Scenario {
    scenario: String,
    /// `hive` or `iptables` (the kernel path's baseline).
    path: &'static str,
    /// From the command to the service converged (hive) or the last old backend gone
    /// (baseline).
    operation_ms: f64,
    before: Window,
    during: Window,
}

#[derive(Debug, Serialize)]
struct HealthSample {
    /// The check failed (its own timestamp) → the first node's mesh without the task.
    first_node_ms: f64,
    /// The check failed → the last node's mesh without the task.
    last_node_ms: f64,
    /// The benchmark made the check fail (the next probe fails) → the last node's mesh
    /// without the task: includes the wait for the next probe (up to one interval).
    marked_to_last_node_ms: f64,
}

#[derive(Debug, Serialize)]
struct HealthFigures {
    interval_s: f64,
    retries: u32,
    samples: Vec<HealthSample>,
    last_node_median_ms: f64,
    last_node_min_ms: f64,
    last_node_max_ms: f64,
    /// Mean time of one poll over the three nodes' pinned maps: the figures' resolution.
    poll_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    what: &'static str,
    nodes: usize,
    wrk: String,
    scenarios: Vec<Scenario>,
    health: Option<HealthFigures>,
    baseline: &'static str,
}

fn main() -> ExitCode {
    if let Some(code) = hive::cli::run_as_hive_if_asked() {
        return code;
    }
    lab_bench::main("lifecycle", "network namespaces and daemons in them", run)
}

fn env_number(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn run() -> Result<(), String> {
    let connections = env_number("HIVE_BENCH_LIFECYCLE_CONNECTIONS", 8).max(1);
    let health_samples = env_number("HIVE_BENCH_LIFECYCLE_HEALTH_SAMPLES", 3);
    let rt = lab_bench::runtime()?;
    let mut scenarios = Vec::new();
    let health = {
        let swarm = lab_bench::swarm_up(&rt, HIVE_LAB, 3, 1)?;
        let outcome = hive_side(&rt, &swarm, connections, health_samples, &mut scenarios);
        drop(swarm);
        outcome?
    };
    if std::env::var_os("HIVE_BENCH_LIFECYCLE_SKIP_BASELINE").is_none() {
        let lab = LabGuard::up(&LabSpec::new(BASE_LAB, 3)).map_err(|e| e.to_string())?;
        let outcome = baseline(&lab, connections, &mut scenarios);
        drop(lab);
        outcome?;
    }
    let report = Report {
        what: "requests sent, failed and p99 latency before and during each task lifecycle operation, from the lab's client to a published port; hive beside the kernel path's baseline",
        nodes: NODES.len(),
        wrk: format!(
            "wrk -t1 -c{connections} (keep-alive) + one new connection per request in a loop"
        ),
        scenarios,
        health,
        baseline: "iptables DNAT on n1 to backends on the nodes' addresses; a new backend added when its process started; a replaced one removed from the rules, then SIGTERM at once (Swarm's order); one ingress node, rules changed synchronously",
    };
    print_report(&report);
    lab_bench::write_json("lifecycle", &report)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Load

/// The new-connection loop: one `GET /` per connection until stopped.
struct Fresh {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<(u64, Vec<f64>), String>>,
}

impl Fresh {
    fn start(lab: &Lab, to: SocketAddr) -> Result<Self, String> {
        let client = lab
            .netns_path("client")
            .map_err(|e| e.to_string())?
            .to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            hive_dataplane::netns::run_in(&client, || {
                let (mut failed, mut latencies) = (0u64, Vec::new());
                while !flag.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    if one_get(to).is_ok() {
                        latencies.push(start.elapsed().as_secs_f64() * 1e3);
                    } else {
                        failed += 1;
                    }
                }
                (failed, latencies)
            })
            .map_err(|e| e.to_string())
        });
        Ok(Self { stop, thread })
    }

    fn stop(self) -> Result<Loop, String> {
        self.stop.store(true, Ordering::Relaxed);
        let (failed, mut latencies) = self
            .thread
            .join()
            .map_err(|_| "the new-connection loop panicked".to_owned())??;
        latencies.sort_by(f64::total_cmp);
        let at = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
        };
        Ok(Loop {
            sent: latencies.len() as u64 + failed,
            failed,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
        })
    }
}

/// One `GET /` on a new connection, `Connection: close`; an error unless whoami answered.
fn one_get(to: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&to, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: lifecycle\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    if answer.starts_with("HTTP/1.1 200") && answer.contains("Hostname:") {
        Ok(())
    } else {
        Err(std::io::Error::other("not a whoami answer"))
    }
}

fn wrk_run(to: SocketAddr, connections: u32, duration: Duration) -> WrkRun {
    WrkRun {
        url: format!("http://{to}/"),
        threads: 1,
        connections,
        duration,
        mode: ConnMode::KeepAlive,
    }
}

/// The before window: both loads for [`BEFORE`], nothing changing.
fn before(lab: &Lab, to: SocketAddr, connections: u32) -> Result<Window, String> {
    let started = Instant::now();
    let command = lab.command("client", "wrk").map_err(|e| e.to_string())?;
    let child = wrk_run(to, connections, BEFORE)
        .spawn(command)
        .map_err(|e| e.to_string())?;
    let fresh = Fresh::start(lab, to)?;
    let keep_alive = wrk::finish(child).map_err(|e| e.to_string());
    let new_connection = fresh.stop()?;
    Ok(Window {
        seconds: started.elapsed().as_secs_f64(),
        keep_alive: keep_alive?,
        new_connection,
    })
}

/// The during window: both loads from [`MARGIN`] before `operation` to [`MARGIN`] after it
/// returned; wrk is stopped with SIGINT (it then prints its report). Returns the window and
/// the operation's time.
fn during(
    lab: &Lab,
    to: SocketAddr,
    connections: u32,
    operation: impl FnOnce() -> Result<(), String>,
) -> Result<(Window, f64), String> {
    let started = Instant::now();
    let command = lab.command("client", "wrk").map_err(|e| e.to_string())?;
    let child = wrk_run(to, connections, WRK_MAX)
        .spawn(command)
        .map_err(|e| e.to_string())?;
    let fresh = match Fresh::start(lab, to) {
        Ok(fresh) => fresh,
        Err(err) => {
            stop_wrk(child);
            return Err(err);
        }
    };
    std::thread::sleep(MARGIN);
    let op_start = Instant::now();
    let outcome = operation();
    let operation_ms = op_start.elapsed().as_secs_f64() * 1e3;
    std::thread::sleep(MARGIN);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let keep_alive = wrk::finish(child).map_err(|e| e.to_string());
    let new_connection = fresh.stop()?;
    outcome?;
    Ok((
        Window {
            seconds: started.elapsed().as_secs_f64(),
            keep_alive: keep_alive?,
            new_connection,
        },
        operation_ms,
    ))
}

fn stop_wrk(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn measure(
    lab: &Lab,
    to: SocketAddr,
    connections: u32,
    scenario: &str,
    path: &'static str,
    operation: impl FnOnce() -> Result<(), String>,
) -> Result<Scenario, String> {
    let before = before(lab, to, connections)?;
    let (during, operation_ms) = during(lab, to, connections, operation)?;
    let s = Scenario {
        scenario: scenario.to_owned(),
        path,
        operation_ms,
        before,
        during,
    };
    eprintln!(
        "{path:<8} {scenario:<36} {:>6.0} ms: keep-alive {} sent, {} failed; new connections {} sent, {} failed",
        s.operation_ms,
        s.during.keep_alive.requests,
        s.during.keep_alive.errors,
        s.during.new_connection.sent,
        s.during.new_connection.failed
    );
    Ok(s)
}

// ---------------------------------------------------------------------------------------
// hive

fn hive(lab: &Lab, args: &[&str]) -> Result<String, String> {
    lab_bench::hive_cli(lab, "n1", args)
}

fn hive_line(lab: &Lab, line: &str) -> Result<String, String> {
    hive(lab, &line.split_whitespace().collect::<Vec<_>>())
}

fn is_running(t: &Task) -> bool {
    t.desired_state == TaskState::Running && t.status.state == TaskState::Running
}

/// No task between its stop and its end (one told to stop before it reached a node never
/// runs: not counted).
fn no_task_stopping(tasks: &[Task]) -> bool {
    !tasks.iter().any(|t| {
        t.desired_state > TaskState::Running
            && !t.status.state.is_terminal()
            && t.status.state >= TaskState::Assigned
    })
}

struct Api<'a> {
    rt: &'a tokio::runtime::Runtime,
    client: DaemonClient,
}

impl Api<'_> {
    /// The tasks of `service` and the node names.
    fn tasks(&mut self, service: &str) -> Result<(Vec<Task>, BTreeMap<String, String>), String> {
        let list = self
            .rt
            .block_on(self.client.control.list_tasks(TaskFilter {
                service: Some(service),
                node: None,
            }))
            .map_err(|e| format!("service ps {service}: {}", e.into_status().message()))?;
        Ok((list.tasks, list.node_names.into_iter().collect()))
    }

    fn running_ids(&mut self, service: &str) -> Result<BTreeSet<String>, String> {
        Ok(self
            .tasks(service)?
            .0
            .iter()
            .filter(|t| is_running(t))
            .map(|t| t.id.clone())
            .collect())
    }

    /// Polls until `done` holds for the service's tasks and none is stopping.
    fn wait(
        &mut self,
        service: &str,
        what: &str,
        done: impl Fn(&[Task], &BTreeMap<String, String>) -> bool,
    ) -> Result<Vec<Task>, String> {
        let deadline = Instant::now() + GIVE_UP;
        loop {
            let (tasks, names) = self.tasks(service)?;
            if done(&tasks, &names) && no_task_stopping(&tasks) {
                return Ok(tasks);
            }
            if Instant::now() > deadline {
                return Err(format!("{what}: not converged within {GIVE_UP:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// When a scenario's service has converged, from its tasks and the node names.
type Converged = Box<dyn Fn(&[Task], &BTreeMap<String, String>) -> bool>;

/// `n` tasks run, none of them one of `old`.
fn replaced(
    n: usize,
    old: BTreeSet<String>,
) -> impl Fn(&[Task], &BTreeMap<String, String>) -> bool {
    move |tasks, _| {
        let now: Vec<&Task> = tasks.iter().filter(|t| is_running(t)).collect();
        now.len() == n && now.iter().all(|t| !old.contains(&t.id))
    }
}

fn running_count(n: usize) -> impl Fn(&[Task], &BTreeMap<String, String>) -> bool {
    move |tasks, _| tasks.iter().filter(|t| is_running(t)).count() == n
}

fn node_of(names: &BTreeMap<String, String>, t: &Task) -> String {
    t.node_id
        .as_ref()
        .and_then(|n| names.get(n))
        .cloned()
        .unwrap_or_default()
}

/// The scenarios of `tests/lifecycle.rs`, one after the other on one service, then the
/// health figures.
fn hive_side(
    rt: &tokio::runtime::Runtime,
    swarm: &SwarmLab,
    connections: u32,
    health_samples: u32,
    out: &mut Vec<Scenario>,
) -> Result<Option<HealthFigures>, String> {
    let lab = swarm.lab();
    let client = rt
        .block_on(lab_swarm::connect(lab, "n1", GIVE_UP))
        .map_err(|e| e.to_string())?;
    let mut api = Api { rt, client };
    let to = SocketAddr::from((lab.node_addr("n1").map_err(|e| e.to_string())?, PORT));
    hive_line(
        lab,
        "service create -d --name web --replicas 4 -p 8080:80 hive/whoami",
    )?;
    api.wait("web", "4 running", running_count(4))?;
    wait_answering(lab, to)?;

    let updates: [(&str, &str); 5] = [
        (
            "update, parallelism 1, stop-first",
            "service update -d --env-add STEP=1 web",
        ),
        (
            "update, parallelism 2, stop-first",
            "service update -d --update-parallelism 2 --env-add STEP=2 web",
        ),
        (
            "update, parallelism 1, start-first",
            "service update -d --update-parallelism 1 --update-order start-first --env-add STEP=3 web",
        ),
        (
            "update, parallelism 2, start-first",
            "service update -d --update-parallelism 2 --env-add STEP=4 web",
        ),
        ("update --force", "service update -d --force web"),
    ];
    let mut step =
        |api: &mut Api<'_>, what: &str, command: &str, done: Converged| -> Result<(), String> {
            let s = measure(lab, to, connections, what, "hive", || {
                hive_line(lab, command)?;
                api.wait("web", what, done).map(drop)
            })?;
            out.push(s);
            Ok(())
        };
    for (what, command) in updates {
        let old = api.running_ids("web")?;
        step(&mut api, what, command, Box::new(replaced(4, old)))?;
    }
    let old = api.running_ids("web")?;
    step(
        &mut api,
        "rollback",
        "service rollback -d web",
        Box::new(replaced(4, old)),
    )?;
    step(
        &mut api,
        "scale 4 → 1",
        "service update -d --replicas 1 web",
        Box::new(running_count(1)),
    )?;
    let old = api.running_ids("web")?;
    step(
        &mut api,
        "single replica, start-first",
        "service update -d --update-order start-first --env-add STEP=5 web",
        Box::new(replaced(1, old)),
    )?;

    // Four tasks again; drain a node that runs two of them.
    hive_line(lab, "service update -d --replicas 4 web")?;
    let tasks = api.wait("web", "4 running again", running_count(4))?;
    let names = api.tasks("web")?.1;
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks.iter().filter(|t| is_running(t)) {
        *per_node.entry(node_of(&names, t)).or_default() += 1;
    }
    let busy = per_node
        .iter()
        .find(|(_, n)| **n >= 2)
        .map(|(node, _)| node.clone())
        .ok_or("4 tasks on 3 nodes, none with two")?;
    let busy_for = busy.clone();
    step(
        &mut api,
        "drain of a node with two tasks",
        &format!("node update --availability drain {busy}"),
        Box::new(move |tasks: &[Task], names: &BTreeMap<String, String>| {
            let now: Vec<&Task> = tasks.iter().filter(|t| is_running(t)).collect();
            now.len() == 4 && now.iter().all(|t| node_of(names, t) != busy_for)
        }),
    )?;
    hive_line(lab, &format!("node update --availability active {busy}"))?;
    hive_line(lab, "service rm web")?;

    if health_samples == 0 {
        return Ok(None);
    }
    health(lab, &mut api, health_samples).map(Some)
}

fn wait_answering(lab: &Lab, to: SocketAddr) -> Result<(), String> {
    let client = lab.netns_path("client").map_err(|e| e.to_string())?;
    let deadline = Instant::now() + GIVE_UP;
    while hive::demo::http_get(client, to).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{to} never answered"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A directory the health checks look into and write to; removed on drop.
struct CheckDir(PathBuf);

impl Drop for CheckDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Health check failing → every node's mesh without the task.
fn health(lab: &Lab, api: &mut Api<'_>, samples: u32) -> Result<HealthFigures, String> {
    let dir =
        CheckDir(std::env::temp_dir().join(format!("lifecycle-bench-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).map_err(|e| format!("{}: {e}", dir.0.display()))?;
    let d = dir.0.display();
    // The check runs in the task's UTS namespace: `hostname` is the task's. When it fails it
    // writes the time first (nanoseconds since the epoch: the benchmark's clock).
    let check = format!(
        "test ! -e {d}/sick-$(hostname) || {{ date +%s%N > {d}/failed-$(hostname); exit 1; }}"
    );
    let port = format!("{HEALTH_PORT}:80");
    hive(
        lab,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "sick",
            "--replicas",
            "3",
            "-p",
            &port,
            "--health-cmd",
            &check,
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
            "hive/whoami",
        ],
    )?;
    let healthy = |tasks: &[Task], _: &BTreeMap<String, String>| {
        let now: Vec<&Task> = tasks.iter().filter(|t| is_running(t)).collect();
        now.len() == 3 && now.iter().all(|t| t.status.health == Some(Health::Healthy))
    };
    let mut maps = Vec::new();
    for node in NODES {
        let pins = PinsQuery {
            lab: Some(lab.name().to_owned()),
            pin_dir: None,
            nodes: NodeChoice::One(node.to_owned()),
        }
        .resolve()
        .map_err(|e| e.to_string())?;
        let pin = pins
            .first()
            .ok_or_else(|| format!("{node}: no pinned mesh"))?;
        maps.push(MeshMaps::open_pinned(&pin.dir).map_err(|e| format!("{node}: {e}"))?);
    }
    let in_ring = |maps: &MeshMaps, task: &str| {
        Names::read(maps).is_ok_and(|n| n.backends.values().any(|(t, _, _)| t == task))
    };
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    let (mut polls, mut poll_time) = (0u32, Duration::ZERO);
    for _ in 0..samples {
        let tasks = api.wait("sick", "3 healthy", healthy)?;
        let Some(sick) = tasks
            .iter()
            .find(|t| is_running(t) && !done.contains(&t.id))
            .cloned()
        else {
            break;
        };
        done.insert(sick.id.clone());
        // Every node has it in its mesh before the check fails.
        let deadline = Instant::now() + GIVE_UP;
        while !maps.iter().all(|m| in_ring(m, &sick.id)) {
            if Instant::now() > deadline {
                return Err(format!("task {} never in every node's mesh", sick.id));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let host = task_hostname(&sick);
        std::fs::write(dir.0.join(format!("sick-{host}")), b"")
            .map_err(|e| format!("marking {host} sick: {e}"))?;
        let marked_at = SystemTime::now();
        let mut gone: Vec<Option<SystemTime>> = vec![None; maps.len()];
        let deadline = Instant::now() + GIVE_UP;
        while gone.iter().any(Option::is_none) {
            let round = Instant::now();
            for (i, m) in maps.iter().enumerate() {
                if gone[i].is_none() && !in_ring(m, &sick.id) {
                    gone[i] = Some(SystemTime::now());
                }
            }
            polls += 1;
            poll_time += round.elapsed();
            std::thread::sleep(Duration::from_millis(1));
            if Instant::now() > deadline {
                return Err(format!("task {} never left every node's mesh", sick.id));
            }
        }
        let failed_file = dir.0.join(format!("failed-{host}"));
        let since = |from: SystemTime, t: SystemTime| {
            t.duration_since(from)
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        let last_gone = gone.iter().flatten().copied().max().unwrap_or(marked_at);
        let Some(failed_at) = std::fs::read_to_string(&failed_file)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(|ns| UNIX_EPOCH + Duration::from_nanos(ns))
        else {
            eprintln!(
                "health: {}: the check wrote no time; sample left out (marked → last node {:.1} ms)",
                failed_file.display(),
                since(marked_at, last_gone)
            );
            continue;
        };
        let times: Vec<f64> = gone
            .iter()
            .flatten()
            .map(|t| since(failed_at, *t))
            .collect();
        let sample = HealthSample {
            first_node_ms: times.iter().copied().fold(f64::INFINITY, f64::min),
            last_node_ms: times.iter().copied().fold(0.0, f64::max),
            marked_to_last_node_ms: since(marked_at, last_gone),
        };
        eprintln!(
            "health: check failed → first node {:.1} ms, last node {:.1} ms (marked → last node {:.1} ms)",
            sample.first_node_ms, sample.last_node_ms, sample.marked_to_last_node_ms
        );
        out.push(sample);
    }
    let _ = hive(lab, &["service", "rm", "sick"]);
    let last: Vec<f64> = out.iter().map(|s| s.last_node_ms).collect();
    let (median, min, max) = lab_bench::median_min_max(&last);
    Ok(HealthFigures {
        interval_s: 1.0,
        retries: 1,
        samples: out,
        last_node_median_ms: median,
        last_node_min_ms: min,
        last_node_max_ms: max,
        poll_ms: poll_time.as_secs_f64() * 1e3 / f64::from(polls.max(1)),
    })
}

/// A task's hostname: the first 12 characters of its runtime ID (the container's ID).
fn task_hostname(task: &Task) -> String {
    task.status
        .runtime
        .as_ref()
        .map(|r| r.runtime_id.chars().take(12).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// The kernel path's baseline

/// One backend: `hive builtin whoami` on a node's address.
struct Backend {
    node: &'static str,
    addr: SocketAddr,
    child: Child,
}

/// The baseline's service: backends behind iptables DNAT on n1.
struct Baseline<'a> {
    lab: &'a Lab,
    exe: PathBuf,
    published: Ipv4Addr,
    next_port: u16,
    backends: Vec<Backend>,
}

impl Baseline<'_> {
    /// Starts a backend on `node`; Swarm's path balances to it from now on (call
    /// [`Self::sync`]), listening or not.
    fn start(&mut self, node: &'static str) -> Result<Backend, String> {
        let addr = SocketAddr::from((
            self.lab.node_addr(node).map_err(|e| e.to_string())?,
            self.next_port,
        ));
        self.next_port += 1;
        let child = self
            .lab
            .command(node, &self.exe)
            .map_err(|e| e.to_string())?
            .args(["builtin", "whoami", "--listen", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting a backend on {node}: {e}"))?;
        Ok(Backend { node, addr, child })
    }

    /// The nat table of n1: the published port DNATed over the backends, each new flow to
    /// one of them at random (kube-proxy's and the mesh bench's `statistic` chain).
    fn rules(&self) -> String {
        let mut o = String::from(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:LIFECYCLE - [0:0]\n",
        );
        o.push_str(&format!(
            "-A PREROUTING -d {}/32 -p tcp -m tcp --dport {PORT} -j LIFECYCLE\n",
            self.published
        ));
        o.push_str("-A POSTROUTING -m conntrack --ctstate DNAT -o eth0 -j MASQUERADE\n");
        let n = self.backends.len();
        for (i, b) in self.backends.iter().enumerate() {
            let left = n - i;
            if left > 1 {
                o.push_str(&format!(
                    "-A LIFECYCLE -p tcp -m statistic --mode random --probability {:.11} -j DNAT --to-destination {}\n",
                    1.0 / left as f64,
                    b.addr
                ));
            } else {
                o.push_str(&format!(
                    "-A LIFECYCLE -p tcp -j DNAT --to-destination {}\n",
                    b.addr
                ));
            }
        }
        o.push_str("COMMIT\n");
        o
    }

    /// Installs the rules for the current backends (one atomic `iptables-restore`).
    fn sync(&self) -> Result<(), String> {
        let mut child = self
            .lab
            .command("n1", "iptables-legacy-restore")
            .map_err(|e| e.to_string())?
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("iptables-legacy-restore: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(self.rules().as_bytes())
                .map_err(|e| format!("iptables-legacy-restore: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("iptables-legacy-restore: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "iptables-legacy-restore: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// Takes the backends at `indexes` out of the rules (new flows go elsewhere; established
    /// ones keep their conntrack entries) and returns them, to be stopped.
    fn remove(&mut self, indexes: &[usize]) -> Result<Vec<Backend>, String> {
        let mut sorted = indexes.to_vec();
        sorted.sort_unstable();
        let mut out = Vec::new();
        for i in sorted.into_iter().rev() {
            out.push(self.backends.remove(i));
        }
        self.sync()?;
        Ok(out)
    }

    /// Adds new backends on `nodes` to the rules as soon as their processes started.
    fn add(&mut self, nodes: &[&'static str]) -> Result<(), String> {
        for node in nodes {
            let b = self.start(node)?;
            self.backends.push(b);
        }
        self.sync()
    }

    /// A rolling replacement of every backend, `parallelism` at a time, in `order`.
    fn update(&mut self, parallelism: usize, start_first: bool) -> Result<(), String> {
        let olds: Vec<SocketAddr> = self.backends.iter().map(|b| b.addr).collect();
        for batch in olds.chunks(parallelism.max(1)) {
            let indexes: Vec<usize> = batch
                .iter()
                .filter_map(|a| self.backends.iter().position(|b| b.addr == *a))
                .collect();
            let nodes: Vec<&'static str> = indexes.iter().map(|i| self.backends[*i].node).collect();
            if start_first {
                self.add(&nodes)?;
                let stopped = self.remove(&indexes)?;
                stop_all(stopped);
            } else {
                let stopped = self.remove(&indexes)?;
                stop_all(stopped);
                self.add(&nodes)?;
            }
        }
        Ok(())
    }

    /// Every backend answers when asked directly.
    fn wait_listening(&self) -> Result<(), String> {
        let client = self.lab.netns_path("client").map_err(|e| e.to_string())?;
        for b in &self.backends {
            let deadline = Instant::now() + GIVE_UP;
            while hive::demo::http_get(client, b.addr).is_err() {
                if Instant::now() > deadline {
                    return Err(format!("backend {} never answered", b.addr));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }
}

impl Drop for Baseline<'_> {
    fn drop(&mut self) {
        for mut b in self.backends.drain(..) {
            let _ = b.child.kill();
            let _ = b.child.wait();
        }
    }
}

/// SIGTERM to every backend at once, then waits for each (SIGKILL after [`GRACE`]).
fn stop_all(backends: Vec<Backend>) {
    for b in &backends {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(b.child.id()).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    let deadline = Instant::now() + GRACE;
    for mut b in backends {
        loop {
            match b.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = b.child.kill();
                    let _ = b.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

fn baseline(lab: &Lab, connections: u32, out: &mut Vec<Scenario>) -> Result<(), String> {
    let published = lab.node_addr("n1").map_err(|e| e.to_string())?;
    let to = SocketAddr::from((published, PORT));
    let mut base = Baseline {
        lab,
        exe: lab_bench::hive_exe()?,
        published,
        next_port: 9001,
        backends: Vec::new(),
    };
    // Four tasks, two on n2 (the node the drain empties), as a scheduler spreads them.
    base.add(&["n2", "n3", "n1", "n2"])?;
    base.wait_listening()?;
    wait_answering(lab, to)?;
    let path = "iptables";
    // The update config the hive scenarios leave behind at each step: parallelism 1 then 2
    // stop-first, 1 then 2 start-first, `--force` at 2 start-first; the rollback follows the
    // rollback config (Swarm's default: 1, stop-first).
    let updates: [(&str, usize, bool); 6] = [
        ("update, parallelism 1, stop-first", 1, false),
        ("update, parallelism 2, stop-first", 2, false),
        ("update, parallelism 1, start-first", 1, true),
        ("update, parallelism 2, start-first", 2, true),
        ("update --force", 2, true),
        ("rollback", 1, false),
    ];
    for (what, parallelism, start_first) in updates {
        base.wait_listening()?;
        let s = measure(lab, to, connections, what, path, || {
            base.update(parallelism, start_first)
        })?;
        out.push(s);
    }
    base.wait_listening()?;
    let s = measure(lab, to, connections, "scale 4 → 1", path, || {
        let gone = base.remove(&[1, 2, 3])?;
        stop_all(gone);
        Ok(())
    })?;
    out.push(s);
    base.wait_listening()?;
    let s = measure(
        lab,
        to,
        connections,
        "single replica, start-first",
        path,
        || base.update(1, true),
    )?;
    out.push(s);

    // Four again, two on n2; drain n2: both leave the rules and get SIGTERM, their
    // replacements start elsewhere (Swarm's orchestrator does both at once).
    let mut more = vec!["n2", "n3", "n1", "n2"];
    let kept = base.backends.first().map(|b| b.node);
    match more.iter().position(|n| Some(*n) == kept) {
        Some(i) => drop(more.remove(i)),
        None => drop(more.pop()),
    }
    base.add(&more)?;
    base.wait_listening()?;
    let s = measure(
        lab,
        to,
        connections,
        "drain of a node with two tasks",
        path,
        || {
            let on_n2: Vec<usize> = base
                .backends
                .iter()
                .enumerate()
                .filter(|(_, b)| b.node == "n2")
                .map(|(i, _)| i)
                .collect();
            let count = on_n2.len();
            let gone = base.remove(&on_n2)?;
            let elsewhere: Vec<&'static str> =
                ["n1", "n3"].into_iter().cycle().take(count).collect();
            base.add(&elsewhere)?;
            stop_all(gone);
            Ok(())
        },
    )?;
    out.push(s);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Report

fn print_report(report: &Report) {
    println!(
        "\nLIFECYCLE (3-node lab; {}; failed = errors of wrk / failed requests of the loop)",
        report.wrk
    );
    println!(
        "{:<36} {:<8} {:>8} | {:>8} {:>6} {:>17} | {:>7} {:>6} {:>17}",
        "scenario",
        "path",
        "op ms",
        "kept",
        "failed",
        "p99 ms before→in",
        "new",
        "failed",
        "p99 ms before→in"
    );
    for s in &report.scenarios {
        println!(
            "{:<36} {:<8} {:>8.0} | {:>8} {:>6} {:>17} | {:>7} {:>6} {:>17}",
            s.scenario,
            s.path,
            s.operation_ms,
            s.during.keep_alive.requests,
            s.during.keep_alive.errors,
            format!(
                "{:.1} → {:.1}",
                s.before.keep_alive.p99_ms, s.during.keep_alive.p99_ms
            ),
            s.during.new_connection.sent,
            s.during.new_connection.failed,
            format!(
                "{:.1} → {:.1}",
                s.before.new_connection.p99_ms, s.during.new_connection.p99_ms
            ),
        );
    }
    if let Some(h) = &report.health {
        println!(
            "\nhealth check failing → last node's mesh without the task (interval {} s, retries {}): median {:.1} ms (min {:.1}, max {:.1}; {} samples; poll {:.1} ms)",
            h.interval_s,
            h.retries,
            h.last_node_median_ms,
            h.last_node_min_ms,
            h.last_node_max_ms,
            h.samples.len(),
            h.poll_ms
        );
        for s in &h.samples {
            println!(
                "  first node {:.1} ms, last node {:.1} ms (made to fail → last node {:.1} ms)",
                s.first_node_ms, s.last_node_ms, s.marked_to_last_node_ms
            );
        }
    }
}
