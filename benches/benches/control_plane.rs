//! `cargo bench -p hive-bench --bench control_plane`: what one change costs the leader as the
//! cluster grows. In a 3-node lab (n1 manager and leader, n2 and n3 workers) filled with
//! 100, 1,000 and 10,000 services, it measures
//!
//! - **service create**: the `CreateService` call (what `service create -d` waits for), the
//!   wall time until its one task runs, and the leader's CPU for all of it;
//! - **scale change**: `service scale` 1 → 2 and back, until the tasks running match;
//! - **task state change**: a running task's processes killed (`cgroup.kill`) until the store
//!   shows it `FAILED` (restart condition `none`, so nothing else follows);
//! - **idle**: the leader's CPU over a few seconds with nothing happening.
//!
//! The services that fill the cluster have one replica each and a placement constraint no node
//! meets, so the store holds as many tasks as services (all `PENDING`, "no suitable node")
//! without ten thousand processes on the machine.
//!
//! Leader CPU is what its threads ran (`/proc/<pid>/task/*/schedstat`, in ns) over the window
//! from the change until it settled, less what the leader burns idle over as long. It is
//! summed per thread (a thread that ended during the window loses its part of it; runtime
//! threads end only after seconds of doing nothing), not as one total: a total falls when a
//! thread ends, which once made a whole idle window read as 0.
//! Figures, not a test; JSON in `target/hive-bench/control_plane.json`.
//!
//! Environment: `HIVE_BENCH_CP_SERVICES` (comma-separated, default `100,1000,10000`),
//! `HIVE_BENCH_CP_SAMPLES` (per measurement, default 7).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hive::client::{DaemonClient, TaskFilter};
use hive::lab_swarm;
use hive::store::objects::{RestartCondition, ServiceMode, ServiceSpec, Task, TaskState};
use hive_bench::lab_bench;
use hive_lab::naming;
use serde::Serialize;

const LAB: &str = "lperf-cp";
const LEADER: &str = "n1";
/// Bound of one measurement; far above anything measured, it only stops a broken run.
const GIVE_UP: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(20);
/// After a change reached its end state, how long its trailing work (loops, streams) may run
/// before the CPU window closes.
const SETTLE: Duration = Duration::from_millis(500);
/// Concurrent creates while filling the cluster.
const FILL_CONCURRENCY: usize = 16;
const IDLE_WINDOW: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Serialize)]
struct Stat {
    samples: Vec<f64>,
    median: f64,
    min: f64,
    max: f64,
}

impl Stat {
    fn of(samples: Vec<f64>) -> Self {
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let pick = |i: usize| sorted.get(i).copied().unwrap_or(f64::NAN);
        Self {
            median: pick(sorted.len() / 2),
            min: pick(0),
            max: pick(sorted.len().saturating_sub(1)),
            samples,
        }
    }
}

/// One kind of change at one cluster size.
#[derive(Debug, Default, Serialize)]
struct Change {
    /// The API call alone (create: what `service create -d` waits for).
    call_ms: Stat,
    /// Until the change's end state is in the store.
    wall_ms: Stat,
    /// Leader CPU for the change, idle burn subtracted.
    leader_cpu_ms: Stat,
}

#[derive(Debug, Serialize)]
struct Size {
    services: usize,
    tasks: usize,
    fill_s: f64,
    idle_leader_cpu_percent: f64,
    create: Change,
    scale: Change,
    task_state: Change,
}

#[derive(Debug, Serialize)]
struct Report {
    what: &'static str,
    nodes: usize,
    samples: usize,
    sizes: Vec<Size>,
}

fn main() -> ExitCode {
    if let Some(code) = hive::cli::run_as_hive_if_asked() {
        return code;
    }
    hive_bench::lab_bench::main(
        "control_plane",
        "network namespaces and daemons in them",
        run,
    )
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

fn run() -> Result<(), String> {
    let sizes = env_list("HIVE_BENCH_CP_SERVICES", &[100, 1_000, 10_000]);
    let samples = env_list("HIVE_BENCH_CP_SAMPLES", &[7])[0].max(1);
    let rt = lab_bench::runtime()?;
    let mut swarm = lab_bench::swarm_up(&rt, LAB, 3, 1)?;
    let leader = swarm.take_daemon(LEADER).ok_or("no leader daemon")?;
    let pid = leader.id();
    swarm.put_daemon(LEADER, leader);
    let report = |sizes| Report {
        what: "leader wall time and CPU per change, by cluster size (3-node lab, 1 manager)",
        nodes: 3,
        samples,
        sizes,
    };
    let outcome = rt.block_on(async {
        let mut api = lab_swarm::connect(swarm.lab(), LEADER, GIVE_UP)
            .await
            .map_err(|e| e.to_string())?;
        let mut bench = Bench {
            api: &mut api,
            cpu: LeaderCpu { pid },
            lab: LAB,
            filled: 0,
            made: 0,
        };
        let mut out = Vec::new();
        for &size in &sizes {
            out.push(bench.size(size, samples).await?);
            // What is measured so far survives a later size failing.
            let partial = report(std::mem::take(&mut out));
            print_report(&partial);
            write_report(&partial)?;
            out = partial.sizes;
        }
        Ok::<_, String>(out)
    });
    drop(swarm);
    outcome.map(drop)
}

fn write_report(report: &Report) -> Result<(), String> {
    lab_bench::write_json("control_plane", report)?;
    Ok(())
}

fn print_report(report: &Report) {
    println!(
        "\nCONTROL PLANE (3-node lab, 1 manager; median [min..max] of {} samples)",
        report.samples
    );
    println!(
        "{:>8} {:<12} {:>22} {:>22} {:>22}",
        "services", "change", "call ms", "wall ms", "leader CPU ms"
    );
    let cell = |s: &Stat| format!("{:.1} [{:.1}..{:.1}]", s.median, s.min, s.max);
    for size in &report.sizes {
        for (name, change) in [
            ("create", &size.create),
            ("scale", &size.scale),
            ("task state", &size.task_state),
        ] {
            println!(
                "{:>8} {:<12} {:>22} {:>22} {:>22}",
                size.services,
                name,
                cell(&change.call_ms),
                cell(&change.wall_ms),
                cell(&change.leader_cpu_ms)
            );
        }
        println!(
            "{:>8} {:<12} {:>22}",
            size.services,
            "idle",
            format!("{:.2} % CPU", size.idle_leader_cpu_percent)
        );
    }
}

/// The leader daemon's CPU time.
struct LeaderCpu {
    pid: u32,
}

/// Nanoseconds each thread of the leader has run, by thread ID.
struct CpuSample(std::collections::HashMap<String, u64>);

impl CpuSample {
    /// Nanoseconds the leader's threads ran since `before` (threads that started since count
    /// whole).
    fn since(&self, before: &Self) -> u64 {
        self.0
            .iter()
            .map(|(tid, ns)| ns.saturating_sub(before.0.get(tid).copied().unwrap_or(0)))
            .sum()
    }
}

impl LeaderCpu {
    fn sample(&self) -> CpuSample {
        let Ok(threads) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return CpuSample(Default::default());
        };
        CpuSample(
            threads
                .filter_map(Result::ok)
                .filter_map(|t| {
                    let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
                    let ns = stat.split_whitespace().next()?.parse::<u64>().ok()?;
                    Some((t.file_name().to_string_lossy().into_owned(), ns))
                })
                .collect(),
        )
    }
}

struct Bench<'a> {
    api: &'a mut DaemonClient,
    cpu: LeaderCpu,
    lab: &'static str,
    /// Filler services made so far.
    filled: usize,
    /// Measured services made so far (for unique names).
    made: usize,
}

/// A 1-replica `hive/whoami` service.
fn whoami(name: &str, restart: RestartCondition) -> ServiceSpec {
    let mut spec = hive::demo::whoami_spec(name, 1, 0);
    spec.endpoint_spec.ports.clear();
    spec.task_template.restart_policy.condition = restart;
    spec
}

/// A filler: one replica no node may take.
fn filler(i: usize) -> ServiceSpec {
    let mut spec = whoami(&format!("fill{i}"), RestartCondition::Any);
    spec.task_template.placement.constraints = vec!["node.labels.lperf-nowhere==true".to_owned()];
    spec
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Bench<'_> {
    async fn size(&mut self, services: usize, samples: usize) -> Result<Size, String> {
        let fill_start = Instant::now();
        // The measured services of earlier sizes count too.
        let want = services.saturating_sub(self.made);
        self.fill(want).await?;
        let fill_s = fill_start.elapsed().as_secs_f64();
        eprintln!("{services} services: filled in {fill_s:.1} s; waiting for the leader to settle");
        self.quiet().await;
        let idle = self.idle().await;
        eprintln!("{services} services: idle leader {idle:.2} % CPU");
        let idle_per_ms = idle / 100.0;

        let mut create = Measured::default();
        let mut names = Vec::new();
        for _ in 0..samples {
            self.made += 1;
            let name = format!("cp{}", self.made);
            let m = self
                .measure(
                    idle_per_ms,
                    async |b: &mut Self| {
                        b.create(&whoami(&name, RestartCondition::Any)).await?;
                        Ok(())
                    },
                    async |b: &mut Self| b.running(&name, 1).await,
                )
                .await?;
            create.push(m);
            names.push(name);
        }
        eprintln!("{services} services: create {}", create.line());

        let mut scale = Measured::default();
        for i in 0..samples {
            let name = &names[i % names.len()];
            for replicas in [2, 1] {
                let m = self
                    .measure(
                        idle_per_ms,
                        async |b: &mut Self| b.scale(name, replicas).await,
                        async |b: &mut Self| b.running(name, replicas).await,
                    )
                    .await?;
                scale.push(m);
            }
        }
        eprintln!("{services} services: scale {}", scale.line());

        let mut task_state = Measured::default();
        for _ in 0..samples {
            self.made += 1;
            let name = format!("cp{}", self.made);
            self.create(&whoami(&name, RestartCondition::None)).await?;
            self.wait(async |b: &mut Self| b.running(&name, 1).await)
                .await?;
            tokio::time::sleep(SETTLE).await;
            let task = self
                .tasks(&name)
                .await?
                .into_iter()
                .next()
                .ok_or("no task")?;
            let m = self
                .measure(
                    idle_per_ms,
                    async |b: &mut Self| b.kill(&task.id),
                    async |b: &mut Self| {
                        Ok(b.tasks(&name)
                            .await?
                            .iter()
                            .any(|t| t.id == task.id && t.status.state == TaskState::Failed))
                    },
                )
                .await?;
            task_state.push(m);
        }
        eprintln!("{services} services: task state {}", task_state.line());
        let tasks = self.all_tasks().await?.len();
        Ok(Size {
            services: self.filled + self.made,
            tasks,
            fill_s,
            idle_leader_cpu_percent: idle,
            create: create.into_change(),
            scale: scale.into_change(),
            task_state: task_state.into_change(),
        })
    }

    /// Makes `count` more filler services, `FILL_CONCURRENCY` at a time, and waits until the
    /// scheduler explained every filler task.
    async fn fill(&mut self, count: usize) -> Result<(), String> {
        let start = self.filled;
        let mut next = start;
        let end = start + count;
        let mut running = tokio::task::JoinSet::new();
        while next < end || !running.is_empty() {
            while next < end && running.len() < FILL_CONCURRENCY {
                let mut api = self.api.clone();
                let spec = filler(next);
                running.spawn(async move { create_with(&mut api, &spec).await });
                next += 1;
            }
            if let Some(done) = running.join_next().await {
                done.map_err(|e| e.to_string())??;
            }
        }
        self.filled = end;
        let deadline = Instant::now() + GIVE_UP;
        loop {
            let tasks = self.all_tasks().await?;
            let explained = tasks
                .iter()
                .filter(|t| t.status.state == TaskState::Pending && !t.status.err.is_empty())
                .count();
            if explained >= self.filled {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{explained} of {} filler tasks pending",
                    self.filled
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Waits until the leader used less than a fifth of a CPU over a second (at most a minute).
    async fn quiet(&mut self) {
        for _ in 0..60 {
            let before = self.cpu.sample();
            tokio::time::sleep(Duration::from_secs(1)).await;
            if self.cpu.sample().since(&before) < 200_000_000 {
                return;
            }
        }
    }

    /// The leader's CPU over `IDLE_WINDOW`, in percent of one CPU.
    async fn idle(&mut self) -> f64 {
        let before = self.cpu.sample();
        let start = Instant::now();
        tokio::time::sleep(IDLE_WINDOW).await;
        let used = self.cpu.sample().since(&before) as f64;
        used / start.elapsed().as_nanos() as f64 * 100.0
    }

    /// Runs `act`, times it, polls `done` until true, lets the leader settle and returns the
    /// call time, the wall time and the leader's CPU less `idle_per_ms` of the window.
    async fn measure(
        &mut self,
        idle_per_ms: f64,
        act: impl AsyncFnOnce(&mut Self) -> Result<(), String>,
        done: impl AsyncFnMut(&mut Self) -> Result<bool, String>,
    ) -> Result<(f64, f64, f64), String> {
        let cpu_before = self.cpu.sample();
        let start = Instant::now();
        act(self).await?;
        let call = start.elapsed();
        self.wait(done).await?;
        let wall = start.elapsed();
        tokio::time::sleep(SETTLE).await;
        let window = start.elapsed();
        let cpu = self.cpu.sample().since(&cpu_before) as f64 / 1e6;
        let net = (cpu - ms(window) * idle_per_ms).max(0.0);
        Ok((ms(call), ms(wall), net))
    }

    async fn wait(
        &mut self,
        mut done: impl AsyncFnMut(&mut Self) -> Result<bool, String>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + GIVE_UP;
        while !done(self).await? {
            if Instant::now() > deadline {
                return Err(format!("no end state within {GIVE_UP:?}"));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    async fn create(&mut self, spec: &ServiceSpec) -> Result<(), String> {
        create_with(self.api, spec).await
    }

    async fn scale(&mut self, name: &str, replicas: u64) -> Result<(), String> {
        let service = self
            .api
            .control
            .inspect_service(name)
            .await
            .map_err(|e| format!("service inspect {name}: {e}"))?;
        let mut spec = service.spec.clone();
        spec.mode = ServiceMode::Replicated { replicas };
        self.api
            .control
            .update_service(name, service.meta.version, &spec)
            .await
            .map_err(|e| format!("service scale {name}: {e}"))?;
        Ok(())
    }

    async fn tasks(&mut self, service: &str) -> Result<Vec<Task>, String> {
        list_tasks(self.api, service).await
    }

    async fn all_tasks(&mut self) -> Result<Vec<Task>, String> {
        list_tasks(self.api, "").await
    }

    /// Whether exactly `n` tasks of `service` should run and do.
    async fn running(&mut self, service: &str, n: u64) -> Result<bool, String> {
        let tasks = self.tasks(service).await?;
        let live = tasks
            .iter()
            .filter(|t| t.desired_state <= TaskState::Running && !t.status.state.is_terminal())
            .count();
        let running = tasks
            .iter()
            .filter(|t| {
                t.desired_state == TaskState::Running && t.status.state == TaskState::Running
            })
            .count();
        Ok(live as u64 == n && running as u64 == n)
    }

    /// Kills the processes of task `id` wherever in the lab it runs.
    fn kill(&self, id: &str) -> Result<(), String> {
        let root = Path::new("/sys/fs/cgroup");
        let root = if root.join("unified/cgroup.controllers").exists() {
            root.join("unified")
        } else {
            root.to_path_buf()
        };
        let lab = root.join(naming::cgroup_lab_parent(self.lab));
        let found: Option<PathBuf> = std::fs::read_dir(&lab)
            .map_err(|e| format!("{}: {e}", lab.display()))?
            .filter_map(Result::ok)
            .map(|node| node.path().join(id))
            .find(|dir| dir.is_dir());
        let dir = found.ok_or_else(|| format!("no cgroup of task {id} under {}", lab.display()))?;
        std::fs::write(dir.join("cgroup.kill"), "1")
            .map_err(|e| format!("{}: {e}", dir.join("cgroup.kill").display()))
    }
}

/// Creates a service; a create the leader did not commit in time is tried again (and counts as
/// done if it was committed after all).
async fn create_with(api: &mut DaemonClient, spec: &ServiceSpec) -> Result<(), String> {
    let mut attempt = 1;
    loop {
        match api.control.create_service(spec).await {
            Ok(_) => return Ok(()),
            Err(err) if attempt > 1 && err.code() == Some(tonic::Code::AlreadyExists) => {
                return Ok(());
            }
            Err(err) if attempt < 3 && err.code() != Some(tonic::Code::InvalidArgument) => {
                eprintln!(
                    "service create {} (attempt {attempt}): {err}",
                    spec.annotations.name
                );
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => {
                return Err(format!("service create {}: {err}", spec.annotations.name));
            }
        }
    }
}

async fn list_tasks(api: &mut DaemonClient, service: &str) -> Result<Vec<Task>, String> {
    let filter = TaskFilter {
        service: (!service.is_empty()).then_some(service),
        node: None,
    };
    let list = api
        .control
        .list_tasks(filter)
        .await
        .map_err(|e| format!("service ps {service}: {e}"))?;
    Ok(list.tasks)
}

#[derive(Debug, Default)]
struct Measured {
    call: Vec<f64>,
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl Measured {
    fn push(&mut self, (call, wall, cpu): (f64, f64, f64)) {
        self.call.push(call);
        self.wall.push(wall);
        self.cpu.push(cpu);
    }

    fn line(&self) -> String {
        let median = |v: &[f64]| Stat::of(v.to_vec()).median;
        format!(
            "call {:.1} ms, wall {:.1} ms, leader CPU {:.1} ms (medians)",
            median(&self.call),
            median(&self.wall),
            median(&self.cpu)
        )
    }

    fn into_change(self) -> Change {
        Change {
            call_ms: Stat::of(self.call),
            wall_ms: Stat::of(self.wall),
            leader_cpu_ms: Stat::of(self.cpu),
        }
    }
}
