//! `cargo bench -p hive-bench --bench gossip`: in a 5-node lab, one real
//! gossip agent process per node; how long the other members take to report a
//! SIGKILLed node down, a SIGTERMed (leaving) node left, and a restarted node
//! up again, over several runs, beside Swarm's defaults; then false downs with
//! every core busy. Figures, not a test; JSON in `target/hive-bench/gossip.json`.
//!
//! The benchmark binary is also a `hive`: the agents it starts in the lab's
//! namespaces are this executable run as `<bench> gossip-agent …`, so no
//! separately built binary has to be found.
//!
//! Environment: `HIVE_BENCH_GOSSIP_RUNS` (kills, default 9; leaves are
//! measured min(runs, 5) times), `HIVE_BENCH_GOSSIP_LOADED_SECS` (default 10).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hive::gossip::{DEFAULT_GOSSIP_INTERVAL, FailureDetection};
use hive_bench::gossip::{GossipReport, Sample, reported_after};
use hive_lab::{LabGuard, LabSpec};
use serde_json::Value;

const LAB: &str = "bench-gsp";
const NODES: u32 = 5;
const CLUSTER: &str = "gossip-bench";
/// Bound of any one wait; far above anything measured, it only stops a broken run.
const GIVE_UP: Duration = Duration::from_secs(30);
/// Quiet time before each action, so every failure detector has a window of
/// samples again after the previous restart.
const SETTLE: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    // Started by the benchmark itself as a lab node's agent (or any other hive command).
    if let Some(code) = hive::cli::run_as_hive_if_asked() {
        return code;
    }
    hive_bench::lab_bench::main("gossip", "network namespaces", run)
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run() -> Result<(), String> {
    let runs = env_number("HIVE_BENCH_GOSSIP_RUNS", 9) as usize;
    let loaded_secs = env_number("HIVE_BENCH_GOSSIP_LOADED_SECS", 10);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let lab = LabGuard::up(&LabSpec::new(LAB, NODES)).map_err(|e| e.to_string())?;
    let mut bench = Bench {
        agents: BTreeMap::new(),
        retired_downs: 0,
        exe,
        lab,
    };
    let nodes: Vec<String> = (1..=NODES).map(|i| format!("n{i}")).collect();
    let mut report = GossipReport {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        nodes: nodes.len(),
        gossip_interval_ms: DEFAULT_GOSSIP_INTERVAL.as_millis() as u64,
        phi_threshold: FailureDetection::default().phi_threshold,
        ..GossipReport::default()
    };
    for node in &nodes {
        bench.start(node, 1)?;
    }
    bench.wait_converged(&nodes)?;
    let mut expected_downs = 0;

    for run in 0..runs {
        let victim = &nodes[run % nodes.len()];
        let observers: Vec<&String> = nodes.iter().filter(|n| *n != victim).collect();
        std::thread::sleep(SETTLE);
        let timeouts = bench.failure_timeouts(&observers, victim)?;
        let killed_at = now_ns();
        bench.signal(victim, nix::sys::signal::Signal::SIGKILL)?;
        let mut sample =
            bench.wait_reports(&observers, victim, "node_down", Some("failed"), killed_at)?;
        sample.failure_timeouts_ms = timeouts;
        eprintln!(
            "kill {}/{runs} ({victim}): every other member in {:.0} ms (first {:.0} ms)",
            run + 1,
            sample.all_ms,
            sample.first_ms
        );
        report.kills.push(sample);
        expected_downs += observers.len();

        let generation = bench.agents[victim].generation + 1;
        let restarted_at = now_ns();
        bench.start(victim, generation)?;
        let sample = bench.wait_reports(&observers, victim, "node_up", None, restarted_at)?;
        eprintln!("  restart: up at every member in {:.0} ms", sample.all_ms);
        report.rejoins.push(sample);
        bench.wait_converged(&nodes)?;
    }

    for run in 0..runs.min(5) {
        let victim = &nodes[(run + 2) % nodes.len()];
        let observers: Vec<&String> = nodes.iter().filter(|n| *n != victim).collect();
        std::thread::sleep(SETTLE);
        let stopped_at = now_ns();
        bench.signal(victim, nix::sys::signal::Signal::SIGTERM)?;
        let sample =
            bench.wait_reports(&observers, victim, "node_down", Some("left"), stopped_at)?;
        eprintln!(
            "leave {}: every other member in {:.0} ms",
            run + 1,
            sample.all_ms
        );
        report.leaves.push(sample);
        expected_downs += observers.len();
        let generation = bench.agents[victim].generation + 1;
        bench.start(victim, generation)?;
        bench.wait_converged(&nodes)?;
    }

    // Every core busy at the agents' own priority: the detector must hold.
    std::thread::sleep(SETTLE);
    let downs_before = bench.total_downs();
    spin_all_cores(Duration::from_secs(loaded_secs));
    std::thread::sleep(Duration::from_secs(1));
    report.loaded_seconds = loaded_secs as f64;
    report.loaded_false_downs = bench.total_downs() - downs_before;

    report.false_downs = bench.total_downs().saturating_sub(expected_downs);
    drop(bench);
    report.summarise();
    println!("\n{}", report.table());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hive-bench");
    let path = report.write_json(&dir).map_err(|e| e.to_string())?;
    println!("wrote {}", path.display());
    Ok(())
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Busy threads on every core for `duration`.
fn spin_all_cores(duration: Duration) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let until = Instant::now() + duration;
    let spinners: Vec<_> = (0..cores)
        .map(|_| {
            std::thread::spawn(move || {
                let mut x = 0u64;
                while Instant::now() < until {
                    for i in 0..10_000u64 {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                    }
                }
                x
            })
        })
        .collect();
    for spinner in spinners {
        let _ = spinner.join();
    }
}

fn downs(lines: &[Value]) -> usize {
    lines.iter().filter(|l| l["event"] == "node_down").count()
}

/// One gossip agent process and the JSON lines it printed so far.
struct Agent {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<Value>>>,
    generation: u64,
}

/// The lab and its agents. Field order matters: agents are killed (Drop)
/// before the lab guard removes the namespaces.
struct Bench {
    agents: BTreeMap<String, Agent>,
    /// `node_down` lines of agents since replaced by a restart.
    retired_downs: usize,
    exe: PathBuf,
    lab: LabGuard,
}

impl Drop for Bench {
    fn drop(&mut self) {
        for agent in self.agents.values_mut() {
            let _ = agent.child.kill();
            let _ = agent.child.wait();
        }
    }
}

impl Bench {
    fn addr(&self, node: &str) -> Result<String, String> {
        self.lab
            .node_addr(node)
            .map(|a| a.to_string())
            .map_err(|e| e.to_string())
    }

    fn start(&mut self, node: &str, generation: u64) -> Result<(), String> {
        // The previous incarnation must be gone first: a leaving one still
        // holds the UDP port for its leave grace.
        self.retire(node);
        let addr = self.addr(node)?;
        let mut command = self
            .lab
            .command(node, &self.exe)
            .map_err(|e| e.to_string())?;
        command
            .args(["gossip-agent", "--node-id", node, "--cluster-id", CLUSTER])
            .args([
                "--advertise-addr",
                &addr,
                "--generation",
                &generation.to_string(),
            ])
            .args(["--seed", &self.addr("n1")?, "--seed", &self.addr("n2")?])
            .args(["--log-level", "error"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command.spawn().map_err(|e| format!("spawn agent: {e}"))?;
        let stdin = child.stdin.take().ok_or("agent stdin")?;
        let stdout = child.stdout.take().ok_or("agent stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && let Ok(mut sink) = sink.lock()
                {
                    sink.push(value);
                }
            }
        });
        let agent = Agent {
            child,
            stdin,
            lines,
            generation,
        };
        self.agents.insert(node.to_string(), agent);
        self.wait(&format!("{node} ready"), || {
            self.lines(node).iter().any(|l| l["event"] == "ready")
        })
    }

    /// Lets `node`'s agent finish leaving (bounded), kills it otherwise, and
    /// keeps the count of the downs it reported.
    fn retire(&mut self, node: &str) {
        let Some(mut old) = self.agents.remove(node) else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(old.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = old.child.kill();
        let _ = old.child.wait();
        self.retired_downs += downs(&old.lines.lock().map(|l| l.clone()).unwrap_or_default());
    }

    fn lines(&self, node: &str) -> Vec<Value> {
        self.agents
            .get(node)
            .and_then(|a| a.lines.lock().ok().map(|l| l.clone()))
            .unwrap_or_default()
    }

    /// All `node_down` lines of all agents so far, replaced ones included.
    fn total_downs(&self) -> usize {
        self.retired_downs
            + self
                .agents
                .keys()
                .map(|n| downs(&self.lines(n)))
                .sum::<usize>()
    }

    fn signal(&self, node: &str, signal: nix::sys::signal::Signal) -> Result<(), String> {
        let agent = self.agents.get(node).ok_or("no such agent")?;
        let pid = nix::unistd::Pid::from_raw(agent.child.id() as i32);
        nix::sys::signal::kill(pid, signal).map_err(|e| format!("signal {node}: {e}"))
    }

    fn wait(&self, what: &str, done: impl Fn() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + GIVE_UP;
        while !done() {
            if Instant::now() >= deadline {
                return Err(format!("{what}: not within {GIVE_UP:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    fn wait_converged(&self, nodes: &[String]) -> Result<(), String> {
        for observer in nodes {
            for node in nodes.iter().filter(|n| *n != observer) {
                let generation = self.agents[node].generation;
                self.wait(&format!("{observer} sees {node} up"), || {
                    self.lines(observer)
                        .iter()
                        .rfind(|l| l["member"]["node_id"] == node.as_str())
                        .is_some_and(|l| {
                            (l["event"] == "node_up" || l["event"] == "node_updated")
                                && l["member"]["generation"] == generation
                        })
                })?;
            }
        }
        Ok(())
    }

    /// Waits until every observer reported `event` about `node` after
    /// `since_ns`, and returns the delays.
    fn wait_reports(
        &self,
        observers: &[&String],
        node: &str,
        event: &str,
        reason: Option<&str>,
        since_ns: u64,
    ) -> Result<Sample, String> {
        let delays = || -> BTreeMap<String, f64> {
            observers
                .iter()
                .filter_map(|o| {
                    let ms = reported_after(&self.lines(o), node, event, reason, since_ns)?;
                    Some(((*o).clone(), ms))
                })
                .collect()
        };
        self.wait(&format!("{event} of {node} at every member"), || {
            delays().len() == observers.len()
        })?;
        Sample::new(node, delays(), observers.len()).ok_or_else(|| "incomplete sample".to_string())
    }

    /// Each observer's current failure-detector timeout for `node`, in ms.
    fn failure_timeouts(
        &mut self,
        observers: &[&String],
        node: &str,
    ) -> Result<BTreeMap<String, f64>, String> {
        let asked_at = now_ns();
        for observer in observers {
            let agent = self.agents.get_mut(observer.as_str()).ok_or("no agent")?;
            writeln!(agent.stdin, "timeouts").map_err(|e| e.to_string())?;
            agent.stdin.flush().map_err(|e| e.to_string())?;
        }
        let answer = |o: &str| {
            self.lines(o).into_iter().rfind(|l| {
                l["event"] == "timeouts" && l["time_ns"].as_u64().is_some_and(|t| t >= asked_at)
            })
        };
        self.wait("failure timeouts", || {
            observers.iter().all(|o| answer(o).is_some())
        })?;
        Ok(observers
            .iter()
            .filter_map(|o| {
                let ms = answer(o)?["timeouts_ms"][node].as_f64()?;
                Some(((*o).clone(), ms))
            })
            .collect())
    }
}
