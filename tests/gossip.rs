//! Gossip membership across lab nodes: every member is a real `hive
//! gossip-agent` process inside its node's network namespace, talking real
//! UDP on the lab underlay, so a SIGKILL is a real crash.
//!
//! Every test has its own lab; the harness kills its agents and the lab guard
//! removes the lab when the test ends, also when it fails. The tests need
//! root; without it they are skipped with a printed reason, or fail when `CI`
//! is set. Waits are bounded; detection *times* are the benchmark's business
//! (`cargo bench --bench gossip`), not asserted here.

use crate::support;
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hive_lab::{LabGuard, LabSpec};
use serde_json::Value;

const HIVE: &str = env!("CARGO_BIN_EXE_hive");
/// Upper bound for any convergence, detection or propagation in these tests
/// (the expected figures are well under a second; this only catches hangs).
const WAIT: Duration = Duration::from_secs(20);
const CLUSTER: &str = "gossip-test-cluster";

/// Whether the test may run: root, or a skip (panic under CI).
fn privileged(test: &str) -> bool {
    hive_test_support::root_or_skip(test, "it creates network namespaces")
}

/// One `hive gossip-agent` process and the JSON lines it printed so far.
struct Agent {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<Value>>>,
    generation: u64,
}

/// A lab with one agent per node. Field order matters: agents are killed
/// (Drop) before the lab guard removes the namespaces.
struct GossipLab {
    agents: BTreeMap<String, Agent>,
    logs: tempfile::TempDir,
    lab: LabGuard,
}

impl GossipLab {
    fn up(name: &str, nodes: u32) -> Self {
        let lab = LabGuard::up(&LabSpec::new(name, nodes)).expect("lab up");
        GossipLab {
            agents: BTreeMap::new(),
            logs: tempfile::tempdir().expect("temp dir for agent logs"),
            lab,
        }
    }

    fn addr(&self, node: &str) -> String {
        self.lab.node_addr(node).expect("node address").to_string()
    }

    /// Starts `node`'s agent in `cluster`, seeded with n1 (and n2, so that n1
    /// itself has a seed), publishing `node.addr`.
    fn start_in(&mut self, node: &str, cluster: &str, generation: u64) {
        // The previous incarnation must be gone first: it holds the UDP port.
        if let Some(mut old) = self.agents.remove(node) {
            stop(&mut old);
        }
        let addr = self.addr(node);
        let stderr =
            std::fs::File::create(self.logs.path().join(format!("{node}-{generation}.log")))
                .expect("agent log file");
        let mut command = self.lab.command(node, HIVE).expect("command in the node");
        command
            .args(["gossip-agent", "--node-id", node, "--cluster-id", cluster])
            .args([
                "--advertise-addr",
                &addr,
                "--generation",
                &generation.to_string(),
            ])
            .args(["--seed", &self.addr("n1"), "--seed", &self.addr("n2")])
            .arg("--set")
            .arg(format!("node.addr={addr}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = command.spawn().expect("spawn hive gossip-agent");
        let stdin = child.stdin.take().expect("agent stdin");
        let stdout = child.stdout.take().expect("agent stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        // Ends at EOF, when the agent exits.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    sink.lock().expect("lines lock").push(value);
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
        });
    }

    fn start(&mut self, node: &str, generation: u64) {
        self.start_in(node, CLUSTER, generation);
    }

    fn lines(&self, node: &str) -> Vec<Value> {
        self.agents[node].lines.lock().expect("lines lock").clone()
    }

    /// Membership events `observer` printed about `node`.
    fn events_about(&self, observer: &str, node: &str) -> Vec<Value> {
        self.lines(observer)
            .into_iter()
            .filter(|l| l["member"]["node_id"] == node)
            .collect()
    }

    /// The last membership event `observer` printed about `node`.
    fn last_about(&self, observer: &str, node: &str) -> Option<Value> {
        self.events_about(observer, node).pop()
    }

    /// Whether `observer`'s last word on `node` is `event` (and `check` holds).
    fn says(
        &self,
        observer: &str,
        node: &str,
        event: &str,
        check: impl Fn(&Value) -> bool,
    ) -> bool {
        self.last_about(observer, node)
            .is_some_and(|l| l["event"] == event && check(&l))
    }

    fn send(&mut self, node: &str, command: &str) {
        let agent = self.agents.get_mut(node).expect("agent");
        writeln!(agent.stdin, "{command}").expect("write to the agent's stdin");
        agent.stdin.flush().expect("flush the agent's stdin");
    }

    fn signal(&mut self, node: &str, signal: nix::sys::signal::Signal) {
        let agent = &self.agents[node];
        let pid = nix::unistd::Pid::from_raw(agent.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the agent");
    }

    /// Polls `done` until it holds; fails after [`WAIT`] with what was seen.
    fn wait(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done() {
            if Instant::now() >= deadline {
                let seen: Vec<String> = self
                    .agents
                    .iter()
                    .map(|(node, a)| format!("{node}: {:?}", a.lines.lock().map(|l| l.len())))
                    .collect();
                panic!("{what}: not within {WAIT:?} (lines per agent: {seen:?})");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every running agent in `nodes` sees every other one up.
    fn wait_converged(&self, nodes: &[&str]) {
        for observer in nodes {
            for node in nodes.iter().filter(|n| *n != observer) {
                let generation = self.agents[*node].generation;
                self.wait(&format!("{observer} sees {node} up"), || {
                    self.says(observer, node, "node_up", |l| {
                        l["member"]["generation"] == generation
                    }) || self.says(observer, node, "node_updated", |l| {
                        l["member"]["generation"] == generation
                    })
                });
            }
        }
    }
}

/// SIGKILL and reap, bounded (kill cannot be refused).
fn stop(agent: &mut Agent) {
    let _ = agent.child.kill();
    let _ = agent.child.wait();
}

impl Drop for GossipLab {
    fn drop(&mut self) {
        for agent in self.agents.values_mut() {
            stop(agent);
        }
        if std::thread::panicking() {
            // The agents' stderr (chitchat's warnings) explains most failures.
            if let Ok(dir) = std::fs::read_dir(self.logs.path()) {
                for entry in dir.flatten() {
                    let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(20).collect();
                    eprintln!("--- {} (last lines, newest first)", entry.path().display());
                    for line in tail {
                        eprintln!("{line}");
                    }
                }
            }
        }
    }
}

const FIVE: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];

#[test]
fn five_members_converge_and_their_published_state_reaches_everyone() {
    if !privileged("five_members_converge_and_their_published_state_reaches_everyone") {
        return;
    }
    let _group = support::file_group();
    let mut lab = GossipLab::up("gsp-conv", 5);
    for node in FIVE {
        lab.start(node, 1);
    }
    lab.wait_converged(&FIVE);
    // Every NodeUp already carries what the node published at start.
    for observer in FIVE {
        for node in FIVE.iter().filter(|n| **n != observer) {
            let up = lab.events_about(observer, node);
            let first = up.first().expect("an event");
            assert_eq!(
                first["event"], "node_up",
                "{observer} about {node}: {first}"
            );
            assert_eq!(
                first["member"]["state"]["node.addr"],
                lab.addr(node).as_str()
            );
        }
    }

    lab.send("n3", "set endpoints.task1 healthy");
    for observer in FIVE.iter().filter(|n| **n != "n3") {
        lab.wait(&format!("{observer} sees n3's endpoint healthy"), || {
            lab.says(observer, "n3", "node_updated", |l| {
                l["member"]["state"]["endpoints.task1"] == "healthy"
            })
        });
    }
    lab.send("n3", "set endpoints.task1 unhealthy");
    lab.send("n3", "set endpoints.task2 healthy");
    for observer in FIVE.iter().filter(|n| **n != "n3") {
        lab.wait(&format!("{observer} sees n3's endpoints change"), || {
            lab.says(observer, "n3", "node_updated", |l| {
                let state = &l["member"]["state"];
                state["endpoints.task1"] == "unhealthy" && state["endpoints.task2"] == "healthy"
            })
        });
    }
    lab.send("n3", "delete endpoints.task1");
    for observer in FIVE.iter().filter(|n| **n != "n3") {
        lab.wait(&format!("{observer} sees n3's endpoint removed"), || {
            lab.says(observer, "n3", "node_updated", |l| {
                l["member"]["state"].get("endpoints.task1").is_none()
            })
        });
    }
    // Nobody was ever reported down.
    for observer in FIVE {
        let downs: Vec<Value> = lab
            .lines(observer)
            .into_iter()
            .filter(|l| l["event"] == "node_down")
            .collect();
        assert!(downs.is_empty(), "{observer} reported {downs:?}");
    }
}

#[test]
fn a_killed_member_is_down_everywhere_and_up_again_after_a_restart() {
    if !privileged("a_killed_member_is_down_everywhere_and_up_again_after_a_restart") {
        return;
    }
    let _group = support::file_group();
    let nodes = ["n1", "n2", "n3", "n4"];
    let mut lab = GossipLab::up("gsp-kill", 4);
    for node in nodes {
        lab.start(node, 1);
    }
    lab.wait_converged(&nodes);

    // SIGKILL: no goodbye, the failure detector must notice.
    lab.signal("n4", nix::sys::signal::Signal::SIGKILL);
    for observer in &nodes[..3] {
        lab.wait(&format!("{observer} sees n4 down"), || {
            lab.says(observer, "n4", "node_down", |l| {
                l["reason"] == "failed" && l["member"]["status"] == "down"
            })
        });
    }

    // Back with a new incarnation: up again everywhere, with its state.
    lab.start("n4", 2);
    for observer in &nodes[..3] {
        lab.wait(&format!("{observer} sees n4's generation 2 up"), || {
            lab.says(observer, "n4", "node_up", |l| {
                l["member"]["generation"] == 2
                    && l["member"]["state"]["node.addr"] == "192.168.77.4"
            })
        });
    }
    lab.wait_converged(&nodes);
    // Only n4 ever went down, and only once per observer.
    for observer in &nodes[..3] {
        let downs: Vec<Value> = lab
            .lines(observer)
            .into_iter()
            .filter(|l| l["event"] == "node_down")
            .collect();
        assert_eq!(downs.len(), 1, "{observer}: {downs:?}");
        assert_eq!(downs[0]["member"]["node_id"], "n4");
    }
}

#[test]
fn a_node_of_another_cluster_is_not_admitted() {
    if !privileged("a_node_of_another_cluster_is_not_admitted") {
        return;
    }
    let _group = support::file_group();
    let mut lab = GossipLab::up("gsp-iso", 3);
    lab.start("n1", 1);
    lab.start("n2", 1);
    // Seeds n1 and n2, which refuse it: a different swarm on the same wire.
    lab.start_in("n3", "another-cluster", 1);
    lab.wait_converged(&["n1", "n2"]);
    // Give it many gossip rounds to sneak in.
    std::thread::sleep(Duration::from_secs(2));
    assert!(lab.events_about("n1", "n3").is_empty());
    assert!(lab.events_about("n2", "n3").is_empty());
    let admitted: Vec<Value> = lab
        .lines("n3")
        .into_iter()
        .filter(|l| l.get("member").is_some())
        .collect();
    assert!(admitted.is_empty(), "n3 saw {admitted:?}");
    lab.send("n1", "members");
    lab.wait("n1 lists its members", || {
        lab.lines("n1").iter().any(|l| l["event"] == "members")
    });
    let members = lab
        .lines("n1")
        .into_iter()
        .rfind(|l| l["event"] == "members")
        .expect("members line");
    let ids: Vec<&str> = members["members"]
        .as_array()
        .expect("members array")
        .iter()
        .filter_map(|m| m["node_id"].as_str())
        .collect();
    assert_eq!(ids, ["n1", "n2"]);
}

#[test]
fn a_graceful_leave_is_reported_as_left_by_every_member() {
    if !privileged("a_graceful_leave_is_reported_as_left_by_every_member") {
        return;
    }
    let _group = support::file_group();
    let nodes = ["n1", "n2", "n3"];
    let mut lab = GossipLab::up("gsp-leave", 3);
    for node in nodes {
        lab.start(node, 1);
    }
    lab.wait_converged(&nodes);

    // SIGTERM is the agent's (and later the daemon's) graceful way out.
    lab.signal("n3", nix::sys::signal::Signal::SIGTERM);
    for observer in &nodes[..2] {
        lab.wait(&format!("{observer} sees n3 leave"), || {
            lab.says(observer, "n3", "node_down", |l| {
                l["reason"] == "left" && l["member"]["status"] == "left"
            })
        });
    }
    lab.wait("n3 says it left and exits", || {
        lab.lines("n3").iter().any(|l| l["event"] == "left")
    });
    let agent = lab.agents.get_mut("n3").expect("n3");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = agent.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "n3's agent did not exit after leaving"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}
