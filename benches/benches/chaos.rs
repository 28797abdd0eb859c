//! `cargo bench -p hive-bench --bench chaos`: a fixed schedule of faults on a lab swarm of
//! five nodes (three managers) — leader kills, partitions of a manager, of a worker and of the
//! leader, daemon restarts and a stalled follower — under a write loop, a read loop on every
//! manager and a request load through the published port of every node. Figures, not a test
//! (issue 14): acknowledged writes, writes lost (must be 0), stale reads (must be 0), requests
//! sent and failed, and the longest time no write was acknowledged, per fault. JSON in
//! `target/hive-bench/chaos.json`.
//!
//! A read is stale when it misses a write acknowledged before it began, or shows one not yet
//! invoked when it ended (the register check of Jepsen, as `tests/reads.rs`). A write is lost
//! when it was acknowledged and the final state, read through the leader, does not hold it.
//! Requests go only to nodes whose network is up: a partitioned node is unreachable for any
//! client, so it is not asked; a node whose daemon is down is (its data plane keeps serving).
//!
//! Environment: `HIVE_BENCH_CHAOS_ROUNDS` (default 1): how many times the schedule runs.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hive::api::pb;
use hive::client::DaemonClient;
use hive::lab_swarm::{self, SwarmLab};
use hive_bench::lab_bench;
use hive_lab::Lab;
use serde::Serialize;

const LAB: &str = "bench-ch";
const NODES: u32 = 5;
const MANAGERS: [&str; 3] = ["n1", "n2", "n3"];
const WORKERS: [&str; 2] = ["n4", "n5"];
/// The register: a label of this node, rewritten with 1, 2, 3, ...
const REGISTER_NODE: &str = "n5";
const REGISTER_LABEL: &str = "chaos";
const PORT: u16 = 8080;
/// Bound of every wait; far above anything measured, it only stops a broken run.
const GIVE_UP: Duration = Duration::from_secs(90);
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long each fault lasts.
const FAULT: Duration = Duration::from_secs(4);
const SETTLE: Duration = Duration::from_secs(3);

/// One write of the register, acknowledged or not (a failed write may still be applied).
#[derive(Debug, Clone, Copy)]
struct Write {
    value: u64,
    invoked: Instant,
    acked: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct ReadSample {
    started: Instant,
    finished: Instant,
    seen: u64,
}

/// What the loops record, shared with the schedule.
#[derive(Debug, Default)]
struct Record {
    writes: Mutex<Vec<Write>>,
    reads: Mutex<Vec<ReadSample>>,
    write_errors: AtomicU64,
    reads_refused: AtomicU64,
    requests: AtomicU64,
    requests_failed: AtomicU64,
    /// Nodes whose underlay link is down: the request load leaves them alone.
    cut_off: Mutex<BTreeSet<String>>,
}

#[derive(Debug, Serialize)]
struct Phase {
    fault: String,
    seconds: f64,
    writes_acked: usize,
    write_errors: u64,
    longest_write_gap_ms: f64,
    reads: usize,
    stale_reads: usize,
    requests: u64,
    requests_failed: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    what: &'static str,
    nodes: u32,
    managers: usize,
    rounds: usize,
    phases: Vec<Phase>,
    writes_acked: usize,
    writes_lost: usize,
    stale_reads: usize,
    reads: usize,
    reads_refused: u64,
    requests: u64,
    requests_failed: u64,
    longest_write_gap_ms: f64,
}

fn main() -> ExitCode {
    // Started by the benchmark itself as a lab node's daemon (or any other hive command).
    if let Some(code) = hive::cli::run_as_hive_if_asked() {
        return code;
    }
    hive_bench::lab_bench::main("chaos", "network namespaces and daemons in them", run)
}

fn run() -> Result<(), String> {
    let rounds: usize = std::env::var("HIVE_BENCH_CHAOS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let exe = lab_bench::hive_exe()?;
    let rt = lab_bench::runtime()?;
    let mut swarm = lab_bench::swarm_up(&rt, LAB, NODES, 3)?;
    lab_bench::hive_cli(
        swarm.lab(),
        "n1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "4",
            "-p",
            &format!("{PORT}:80"),
            "hive/whoami",
        ],
    )?;
    wait_answered(swarm.lab())?;

    let record = Arc::new(Record::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sockets: Vec<(String, PathBuf)> = MANAGERS
        .iter()
        .map(|m| {
            lab_swarm::socket_path(swarm.lab(), m)
                .map(|p| ((*m).to_owned(), p))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let writer = rt.spawn(write_loop(sockets.clone(), stop.clone(), record.clone()));
    let reader = rt.spawn(read_loop(sockets.clone(), stop.clone(), record.clone()));
    let load = {
        let lab = swarm.lab();
        let client = lab
            .netns_path("client")
            .map_err(|e| e.to_string())?
            .to_owned();
        let targets: Vec<(String, Ipv4Addr)> = (1..=NODES)
            .map(|i| {
                let name = format!("n{i}");
                lab.node_addr(&name)
                    .map(|a| (name, a))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        let (stop, record) = (stop.clone(), record.clone());
        std::thread::spawn(move || request_loop(&client, &targets, &stop, &record))
    };

    let outcome = schedule(&rt, &mut swarm, &exe, &record, rounds);
    stop.store(true, Ordering::SeqCst);
    let _ = rt.block_on(writer);
    let _ = rt.block_on(reader);
    let _ = load.join();
    let phases = outcome?;
    let final_value = rt.block_on(final_read(&sockets))?;
    drop(swarm);

    let writes = record
        .writes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let reads = record
        .reads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let report = Report {
        what: "faults under writes, reads and requests",
        nodes: NODES,
        managers: MANAGERS.len(),
        rounds,
        writes_acked: writes.iter().filter(|w| w.acked.is_some()).count(),
        writes_lost: writes
            .iter()
            .filter(|w| w.acked.is_some() && w.value > final_value)
            .count(),
        stale_reads: stale(&writes, &reads),
        reads: reads.len(),
        reads_refused: record.reads_refused.load(Ordering::SeqCst),
        requests: record.requests.load(Ordering::SeqCst),
        requests_failed: record.requests_failed.load(Ordering::SeqCst),
        longest_write_gap_ms: phases
            .iter()
            .map(|p| p.longest_write_gap_ms)
            .fold(0.0, f64::max),
        phases,
    };
    print_report(&report);
    lab_bench::write_json("chaos", &report)?;
    Ok(())
}

/// The faults, in order, each followed by a wait until every manager is reachable again.
fn schedule(
    rt: &tokio::runtime::Runtime,
    swarm: &mut SwarmLab,
    exe: &Path,
    record: &Arc<Record>,
    rounds: usize,
) -> Result<Vec<Phase>, String> {
    let mut phases = Vec::new();
    let mut measure = |name: String, fault: &mut dyn FnMut() -> Result<(), String>| {
        let from = Instant::now();
        let counts = Counts::now(record);
        fault()?;
        phases.push(counts.phase(name, from, record));
        Ok::<(), String>(())
    };
    measure("quiet".to_owned(), &mut || {
        std::thread::sleep(SETTLE);
        Ok(())
    })?;
    for round in 1..=rounds {
        let leader = rt.block_on(leader_with_all_reachable(swarm.lab()))?;
        measure(
            format!("{round}: SIGKILL of the leader {leader}, restart after 4 s"),
            &mut || {
                let mut daemon = swarm
                    .take_daemon(&leader)
                    .ok_or("leader not started by us")?;
                daemon.kill().map_err(|e| e.to_string())?;
                let _ = daemon.wait();
                std::thread::sleep(FAULT);
                let daemon = lab_swarm::start_daemon(swarm.lab(), &leader, exe)
                    .map_err(|e| e.to_string())?;
                swarm.put_daemon(&leader, daemon);
                rt.block_on(leader_with_all_reachable(swarm.lab()))
                    .map(drop)
            },
        )?;

        let leader = rt.block_on(leader_with_all_reachable(swarm.lab()))?;
        let follower = follower_of(&leader);
        measure(
            format!("{round}: partition of the manager {follower}, 4 s"),
            &mut || {
                partition(swarm.lab(), record, follower, FAULT)?;
                rt.block_on(leader_with_all_reachable(swarm.lab()))
                    .map(drop)
            },
        )?;

        measure(
            format!("{round}: partition of the worker {}, 4 s", WORKERS[0]),
            &mut || {
                partition(swarm.lab(), record, WORKERS[0], FAULT)?;
                std::thread::sleep(SETTLE);
                Ok(())
            },
        )?;

        measure(
            format!("{round}: daemon restart of the worker {}", WORKERS[1]),
            &mut || {
                let mut daemon = swarm
                    .take_daemon(WORKERS[1])
                    .ok_or("worker not started by us")?;
                daemon.kill().map_err(|e| e.to_string())?;
                let _ = daemon.wait();
                let daemon = lab_swarm::start_daemon(swarm.lab(), WORKERS[1], exe)
                    .map_err(|e| e.to_string())?;
                swarm.put_daemon(WORKERS[1], daemon);
                std::thread::sleep(SETTLE);
                Ok(())
            },
        )?;

        let leader = rt.block_on(leader_with_all_reachable(swarm.lab()))?;
        let follower = follower_of(&leader);
        measure(
            format!("{round}: follower {follower} stalled (SIGSTOP), 4 s"),
            &mut || {
                let pid = swarm
                    .take_daemon(follower)
                    .ok_or("follower not started by us")?;
                signal(&pid, nix::sys::signal::Signal::SIGSTOP)?;
                std::thread::sleep(FAULT);
                signal(&pid, nix::sys::signal::Signal::SIGCONT)?;
                swarm.put_daemon(follower, pid);
                rt.block_on(leader_with_all_reachable(swarm.lab()))
                    .map(drop)
            },
        )?;

        let leader = rt.block_on(leader_with_all_reachable(swarm.lab()))?;
        measure(
            format!("{round}: partition of the leader {leader}, 4 s"),
            &mut || {
                partition(swarm.lab(), record, &leader, FAULT)?;
                rt.block_on(leader_with_all_reachable(swarm.lab()))
                    .map(drop)
            },
        )?;
    }
    measure("after".to_owned(), &mut || {
        std::thread::sleep(SETTLE);
        Ok(())
    })?;
    Ok(phases)
}

/// The counters at the start of a phase.
struct Counts {
    writes: usize,
    write_errors: u64,
    reads: usize,
    requests: u64,
    requests_failed: u64,
}

impl Counts {
    fn now(record: &Record) -> Self {
        Self {
            writes: record
                .writes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len(),
            write_errors: record.write_errors.load(Ordering::SeqCst),
            reads: record.reads.lock().unwrap_or_else(|e| e.into_inner()).len(),
            requests: record.requests.load(Ordering::SeqCst),
            requests_failed: record.requests_failed.load(Ordering::SeqCst),
        }
    }

    fn phase(self, fault: String, from: Instant, record: &Record) -> Phase {
        let until = Instant::now();
        let writes = record
            .writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let reads = record
            .reads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let acks: Vec<Instant> = std::iter::once(from)
            .chain(writes[self.writes..].iter().filter_map(|w| w.acked))
            .chain(std::iter::once(until))
            .collect();
        let longest = acks
            .windows(2)
            .map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1e3)
            .fold(0.0, f64::max);
        Phase {
            fault,
            seconds: until.duration_since(from).as_secs_f64(),
            writes_acked: writes[self.writes..]
                .iter()
                .filter(|w| w.acked.is_some())
                .count(),
            write_errors: record.write_errors.load(Ordering::SeqCst) - self.write_errors,
            longest_write_gap_ms: longest,
            reads: reads.len() - self.reads,
            stale_reads: stale(&writes, &reads[self.reads..]),
            requests: record.requests.load(Ordering::SeqCst) - self.requests,
            requests_failed: record.requests_failed.load(Ordering::SeqCst) - self.requests_failed,
        }
    }
}

/// Reads that miss a write acknowledged before they began, or show one invoked after they
/// ended. The writer is sequential and writes 1, 2, 3, ..., so a state shows its last write;
/// a write that failed may have been applied, so it counts as invoked, never as acknowledged.
fn stale(writes: &[Write], reads: &[ReadSample]) -> usize {
    reads
        .iter()
        .filter(|read| {
            let must_see = writes
                .iter()
                .filter(|w| w.acked.is_some_and(|at| at < read.started))
                .map(|w| w.value)
                .max()
                .unwrap_or(0);
            let may_see = writes
                .iter()
                .filter(|w| w.invoked <= read.finished)
                .map(|w| w.value)
                .max()
                .unwrap_or(0);
            read.seen < must_see || read.seen > may_see
        })
        .count()
}

fn follower_of(leader: &str) -> &'static str {
    MANAGERS
        .into_iter()
        .find(|m| *m != leader)
        .expect("three managers")
}

fn signal(daemon: &std::process::Child, signal: nix::sys::signal::Signal) -> Result<(), String> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(daemon.id()).map_err(|e| e.to_string())?);
    nix::sys::signal::kill(pid, signal).map_err(|e| format!("{signal} to the daemon: {e}"))
}

/// Takes `node`'s underlay link down for `how_long`, then up again.
fn partition(lab: &Lab, record: &Record, node: &str, how_long: Duration) -> Result<(), String> {
    record
        .cut_off
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(node.to_owned());
    let result = link(lab, node, "down").map(|()| std::thread::sleep(how_long));
    let up = link(lab, node, "up");
    // The first requests after the link comes back may race the neighbour tables.
    std::thread::sleep(Duration::from_millis(500));
    record
        .cut_off
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(node);
    result.and(up)
}

fn link(lab: &Lab, node: &str, state: &str) -> Result<(), String> {
    let status = lab
        .command(node, "ip")
        .map_err(|e| e.to_string())?
        .args(["link", "set", "dev", "eth0", state])
        .status()
        .map_err(|e| e.to_string())?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("ip link set dev eth0 {state} in {node}: {status}"))
}

async fn connect(socket: &Path) -> Result<DaemonClient, String> {
    DaemonClient::connect(Some(&format!("unix://{}", socket.display())))
        .await
        .map_err(|e| e.to_string())
}

/// One sequential writer: value n+1 is written only once n was answered; a failed call moves
/// on to the next manager, and so does a manager that is cut off.
async fn write_loop(sockets: Vec<(String, PathBuf)>, stop: Arc<AtomicBool>, record: Arc<Record>) {
    let mut value = 0;
    let mut at = 0;
    while !stop.load(Ordering::SeqCst) {
        // A client on the majority's side: a manager cut off is not asked.
        let cut_off = record
            .cut_off
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if cut_off.contains(&sockets[at].0) {
            at = (at + 1) % sockets.len();
        }
        value += 1;
        let invoked = Instant::now();
        let written = async {
            let mut client = connect(&sockets[at].1).await?;
            let update = client.control.update_node(pb::UpdateNodeRequest {
                node: REGISTER_NODE.to_owned(),
                label_add: [(REGISTER_LABEL.to_owned(), value.to_string())].into(),
                ..Default::default()
            });
            match tokio::time::timeout(CALL_TIMEOUT, update).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(err.to_string()),
                Err(_) => Err("timed out".to_owned()),
            }
        }
        .await;
        let acked = written.is_ok().then(Instant::now);
        record
            .writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Write {
                value,
                invoked,
                acked,
            });
        if written.is_err() {
            record.write_errors.fetch_add(1, Ordering::SeqCst);
            at = (at + 1) % sockets.len();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The register as `node`'s manager answers it (0: never written).
async fn read_register(socket: &Path) -> Result<u64, String> {
    let mut client = connect(socket).await?;
    let inspect = client.control.inspect_node(REGISTER_NODE);
    let node = match tokio::time::timeout(CALL_TIMEOUT, inspect).await {
        Ok(Ok(node)) => node,
        Ok(Err(err)) => return Err(err.to_string()),
        Err(_) => return Err("timed out".to_owned()),
    };
    Ok(node
        .spec
        .and_then(|s| s.labels.get(REGISTER_LABEL).cloned())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Reads the register through every manager in turn; a refusal is counted, not judged.
async fn read_loop(sockets: Vec<(String, PathBuf)>, stop: Arc<AtomicBool>, record: Arc<Record>) {
    while !stop.load(Ordering::SeqCst) {
        for (_, socket) in &sockets {
            let started = Instant::now();
            match read_register(socket).await {
                Ok(seen) => {
                    record
                        .reads
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(ReadSample {
                            started,
                            finished: Instant::now(),
                            seen,
                        })
                }
                Err(_) => {
                    record.reads_refused.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// The register once the faults are over, through any manager that answers (reads are
/// linearizable, so any answer is the current state).
async fn final_read(sockets: &[(String, PathBuf)]) -> Result<u64, String> {
    let deadline = Instant::now() + GIVE_UP;
    loop {
        for (_, socket) in sockets {
            if let Ok(value) = read_register(socket).await {
                return Ok(value);
            }
        }
        if Instant::now() > deadline {
            return Err("no manager answered the final read".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// New connections to the published port of every node in turn, from the lab's client.
fn request_loop(client: &Path, targets: &[(String, Ipv4Addr)], stop: &AtomicBool, record: &Record) {
    let result = hive_dataplane::netns::run_in(client, || {
        while !stop.load(Ordering::SeqCst) {
            for (name, addr) in targets {
                let cut = record
                    .cut_off
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(name);
                if cut {
                    continue;
                }
                record.requests.fetch_add(1, Ordering::SeqCst);
                if get(SocketAddr::from((*addr, PORT))).is_err() {
                    record.requests_failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    });
    if let Err(err) = result {
        eprintln!("chaos: the request load could not enter the client namespace: {err}");
    }
}

fn get(to: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&to, REQUEST_TIMEOUT)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: chaos\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    if answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200") {
        Ok(())
    } else {
        Err(std::io::Error::other("not a 200 answer"))
    }
}

/// Until the published port answers through every node.
fn wait_answered(lab: &Lab) -> Result<(), String> {
    let client = lab.netns_path("client").map_err(|e| e.to_string())?;
    let addrs: Vec<Ipv4Addr> = (1..=NODES)
        .map(|i| lab.node_addr(&format!("n{i}")).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let deadline = Instant::now() + GIVE_UP;
    loop {
        let all = hive_dataplane::netns::run_in(client, || {
            addrs
                .iter()
                .all(|a| get(SocketAddr::from((*a, PORT))).is_ok())
        })
        .map_err(|e| e.to_string())?;
        if all {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("port {PORT} is not answered through every node"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The leader's name, once some manager names one and shows every manager reachable.
async fn leader_with_all_reachable(lab: &Lab) -> Result<String, String> {
    let deadline = Instant::now() + GIVE_UP;
    loop {
        for node in MANAGERS {
            let Ok(socket) = lab_swarm::socket_path(lab, node) else {
                continue;
            };
            let Ok(mut client) = connect(&socket).await else {
                continue;
            };
            let listed = tokio::time::timeout(CALL_TIMEOUT, client.control.list_nodes()).await;
            if let Ok(Ok(list)) = listed {
                let nodes = list.nodes;
                let all_up = nodes.iter().all(|n| {
                    n.manager_status
                        .as_ref()
                        .is_none_or(|m| m.leader || m.reachability() == pb::Reachability::Reachable)
                });
                let leader = nodes
                    .iter()
                    .find(|n| n.manager_status.as_ref().is_some_and(|m| m.leader))
                    .and_then(|n| n.description.as_ref())
                    .map(|d| d.hostname.clone());
                if all_up && let Some(leader) = leader {
                    return Ok(leader);
                }
            }
        }
        if Instant::now() > deadline {
            return Err("no leader with every manager reachable".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn print_report(report: &Report) {
    println!(
        "\nCHAOS ({} nodes, {} managers, {} round(s))",
        report.nodes, report.managers, report.rounds
    );
    println!(
        "{:<52} {:>6} {:>7} {:>9} {:>6} {:>6} {:>8} {:>7}",
        "fault", "s", "writes", "gap ms", "reads", "stale", "requests", "failed"
    );
    for p in &report.phases {
        println!(
            "{:<52} {:>6.1} {:>7} {:>9.0} {:>6} {:>6} {:>8} {:>7}",
            p.fault,
            p.seconds,
            p.writes_acked,
            p.longest_write_gap_ms,
            p.reads,
            p.stale_reads,
            p.requests,
            p.requests_failed
        );
    }
    println!(
        "acknowledged writes {}, lost {} (must be 0); reads {}, stale {} (must be 0), refused {}; requests {}, failed {}; longest time without an acknowledged write {:.0} ms",
        report.writes_acked,
        report.writes_lost,
        report.reads,
        report.stale_reads,
        report.reads_refused,
        report.requests,
        report.requests_failed,
        report.longest_write_gap_ms
    );
}
