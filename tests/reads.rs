//! Linearizable reads on a lab (issue 14, item 4): a read served by any manager, including a
//! leader that was killed and restarted and may lag behind, sees every write acknowledged
//! before it began.
//!
//! A writer records each acknowledged write while reads go to every manager; a checker then
//! compares each read with the history, as Jepsen's linearizability check does for a register.
//! The tests need root; without it they are skipped with a printed reason, or fail when `CI`
//! is set. Waits are bounded; no test asserts on durations.

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hive::lab_swarm;
use support::{HIVE, PATIENCE, Swarm, privileged, text};

const MANAGERS: [&str; 3] = ["n1", "n2", "n3"];
const SERVICE: &str = "tr-register";
const LABEL: &str = "k";
/// Writes acknowledged while the leader is down, so that its state misses them when it
/// comes back.
const WRITES_WHILE_DOWN: usize = 15;
/// Reads answered by the restarted ex-leader before the test stops.
const EX_LEADER_READS: usize = 12;

/// One acknowledged write: the label took `value` no later than `acked`.
#[derive(Debug, Clone, Copy)]
struct Write {
    value: u64,
    invoked: Instant,
    acked: Instant,
}

/// One answered read: through `node`, begun at `started`, it saw the label at `seen` (0: not
/// set yet).
#[derive(Debug, Clone)]
struct Read {
    node: String,
    started: Instant,
    finished: Instant,
    seen: u64,
}

/// The reads that break linearizability, with why. The writes are one sequential writer's
/// (each invoked after the previous one was acknowledged), each setting the label to the next
/// number, so a state that contains writes 1..=n shows `n`. A read must then show at least the
/// last write acknowledged before it started (else it missed an acknowledged write) and at
/// most the last write invoked before it finished (else it saw a write from its future).
fn violations(writes: &[Write], reads: &[Read]) -> Vec<String> {
    let mut found = Vec::new();
    for read in reads {
        let must_see = writes
            .iter()
            .filter(|w| w.acked < read.started)
            .map(|w| w.value)
            .max()
            .unwrap_or(0);
        let may_see = writes
            .iter()
            .filter(|w| w.invoked < read.finished)
            .map(|w| w.value)
            .max()
            .unwrap_or(0);
        if read.seen < must_see {
            found.push(format!(
                "a read through {} saw {LABEL}={} although write {must_see} was acknowledged \
                 before it began",
                read.node, read.seen
            ));
        } else if read.seen > may_see {
            found.push(format!(
                "a read through {} saw {LABEL}={}, a write not yet sent when it ended \
                 (last sent: {may_see})",
                read.node, read.seen
            ));
        }
    }
    found
}

/// The value of the label in `hive service inspect` output (0 if not set).
fn label_value(inspect: &str) -> u64 {
    let services: serde_json::Value = serde_json::from_str(inspect)
        .unwrap_or_else(|e| panic!("service inspect printed no JSON ({e}): {inspect}"));
    let spec = &services[0]["Spec"];
    assert!(
        spec.is_object(),
        "no Spec in service inspect output: {inspect}"
    );
    match &spec["Labels"][LABEL] {
        serde_json::Value::Null => 0,
        serde_json::Value::String(value) => value
            .parse()
            .unwrap_or_else(|e| panic!("label {LABEL}={value}: {e}")),
        other => panic!("label {LABEL} is {other}"),
    }
}

/// Sets the label to 1, 2, 3, ... through `socket` until `stop`, recording each write the
/// manager acknowledged. A failed write (no leader during the election, or fate unknown)
/// is not recorded and its number is not reused: the next write sets a higher one.
fn write_loop(socket: std::path::PathBuf, stop: Arc<AtomicBool>, history: Arc<Mutex<Vec<Write>>>) {
    let host = format!("unix://{}", socket.display());
    let mut value = 0u64;
    while !stop.load(Ordering::SeqCst) {
        value += 1;
        let invoked = Instant::now();
        let out = std::process::Command::new(HIVE)
            .args([
                "-H",
                &host,
                "service",
                "update",
                "-d",
                "--label-add",
                &format!("{LABEL}={value}"),
                SERVICE,
            ])
            .output()
            .expect("run hive");
        if out.status.success() {
            let acked = Instant::now();
            history
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Write {
                    value,
                    invoked,
                    acked,
                });
        } else {
            // Spaces the retries while there is no leader.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Reads the label through every manager in turn until `stop`, recording each answer. A
/// refusal (no leader yet, daemon down) is allowed and counted; a wrong answer is not.
fn read_loop(
    sockets: Vec<(String, std::path::PathBuf)>,
    stop: Arc<AtomicBool>,
    reads: Arc<Mutex<Vec<Read>>>,
) -> usize {
    let mut refused = 0;
    while !stop.load(Ordering::SeqCst) {
        for (node, socket) in &sockets {
            let host = format!("unix://{}", socket.display());
            let started = Instant::now();
            let out = std::process::Command::new(HIVE)
                .args(["-H", &host, "service", "inspect", SERVICE])
                .output()
                .expect("run hive");
            let finished = Instant::now();
            if out.status.success() {
                let seen = label_value(&text(&out.stdout));
                reads.lock().unwrap_or_else(|e| e.into_inner()).push(Read {
                    node: node.clone(),
                    started,
                    finished,
                    seen,
                });
            } else {
                refused += 1;
                // Paces the calls to a daemon that is down.
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    refused
}

#[test]
fn a_restarted_ex_leader_never_answers_a_read_that_misses_an_acknowledged_write() {
    if !privileged("a_restarted_ex_leader_never_answers_a_read_that_misses_an_acknowledged_write") {
        return;
    }
    let _serial = support::serial();
    let mut swarm = Swarm::up("tr-reads", 3, 3);
    swarm.hive_line(
        "n1",
        &format!("service create -d --name {SERVICE} --replicas 0 hive/whoami"),
    );
    let leader = swarm.leader("n1").expect("a leader");
    let writer = *MANAGERS.iter().find(|n| **n != leader).expect("a follower");
    let socket = |node: &str| lab_swarm::socket_path(swarm.lab(), node).expect("socket");

    // One writer, and one reader asking every manager in turn, from before the leader dies
    // (reads served by the new leader right after its election) until after it is back.
    let stop = Arc::new(AtomicBool::new(false));
    // Stops the threads also when an assertion fails, before the lab goes down.
    let _stop_on_exit = StopOnDrop(stop.clone());
    let writes = Arc::new(Mutex::new(Vec::new()));
    let reads = Arc::new(Mutex::new(Vec::new()));
    let writing = {
        let (stop, writes, socket) = (stop.clone(), writes.clone(), socket(writer));
        std::thread::spawn(move || write_loop(socket, stop, writes))
    };
    let reading = {
        let sockets = MANAGERS
            .iter()
            .map(|node| (node.to_string(), socket(node)))
            .collect();
        let (stop, reads) = (stop.clone(), reads.clone());
        std::thread::spawn(move || read_loop(sockets, stop, reads))
    };
    // And one that asks only the leader-to-be-killed: the moments right after its restart,
    // when it may still believe it leads, are short.
    let reading_ex_leader = {
        let sockets = vec![(leader.clone(), socket(&leader))];
        let (stop, reads) = (stop.clone(), reads.clone());
        std::thread::spawn(move || read_loop(sockets, stop, reads))
    };
    let acknowledged = || writes.lock().unwrap_or_else(|e| e.into_inner()).len();
    let wait_writes = |count: usize, what: &str| {
        let deadline = Instant::now() + PATIENCE;
        while acknowledged() < count {
            assert!(
                Instant::now() < deadline,
                "{what}: {} acknowledged",
                acknowledged()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // The leader dies while writes go on; the new leader acknowledges writes it never saw.
    wait_writes(3, "writes before the kill");
    swarm.kill(&leader);
    let before_restart = acknowledged() + WRITES_WHILE_DOWN;
    wait_writes(before_restart, "writes while the leader is down");

    // It comes back, believing it still leads its old term and behind the log, and is asked
    // like every other manager while the writes go on.
    let answered_before = reads_through(&reads, &leader);
    swarm.restart(&leader);
    let deadline = Instant::now() + PATIENCE;
    while reads_through(&reads, &leader) < answered_before + EX_LEADER_READS {
        assert!(
            Instant::now() < deadline,
            "the restarted ex-leader answered {} reads within {PATIENCE:?}",
            reads_through(&reads, &leader) - answered_before
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    writing.join().expect("writer");
    let refused = reading.join().expect("reader") + reading_ex_leader.join().expect("reader");

    let writes = writes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let reads = reads.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let wrong = violations(&writes, &reads);
    eprintln!(
        "{} writes acknowledged, {} reads answered, {refused} refused, {} wrong",
        writes.len(),
        reads.len(),
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "{} of {} reads missed acknowledged writes ({} writes acknowledged):\n{}",
        wrong.len(),
        reads.len(),
        writes.len(),
        wrong.join("\n")
    );
}

/// Sets the flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn reads_through(reads: &Mutex<Vec<Read>>, node: &str) -> usize {
    reads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|r| r.node == node)
        .count()
}

#[test]
fn the_checker_flags_a_read_that_misses_an_acknowledged_write_or_sees_the_future() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let writes = [
        Write {
            value: 1,
            invoked: at(0),
            acked: at(10),
        },
        Write {
            value: 2,
            invoked: at(20),
            acked: at(30),
        },
    ];
    let read = |started, finished, seen| Read {
        node: "n1".to_owned(),
        started: at(started),
        finished: at(finished),
        seen,
    };
    // Concurrent with write 2: either state is fine.
    assert!(violations(&writes, &[read(15, 25, 1), read(15, 25, 2)]).is_empty());
    // Began after write 2 was acknowledged, yet saw only write 1.
    assert_eq!(violations(&writes, &[read(31, 40, 1)]).len(), 1);
    // Ended before write 2 was sent, yet saw it.
    assert_eq!(violations(&writes, &[read(11, 19, 2)]).len(), 1);
}
