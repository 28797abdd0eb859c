//! The agent's node side on real kernels: two lab nodes each run the agent's mesh
//! (`NodeMesh`: the data plane driven by `MeshView → MeshState`) and worker, as `hive daemon`
//! does, with the test playing the leader (it hands out the assignment snapshots). A
//! `hive/whoami` task runs on n1 through the real executor and `MeshAttacher`; a client
//! outside reaches it on the published port of both nodes (n2 forwards over VXLAN) and the
//! task sees the client's address; when n2 hears n1 is dead, n1's backend leaves n2's mesh.
//!
//! Needs root; skipped with a reason without it, failing when `CI` is set.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hive::agent::assignment::Assignment;
use hive::agent::mesh::{MeshAttacher, NodeMesh, find_underlay};
use hive::agent::status::StatusQueue;
use hive::agent::task_runner::PreparedStore;
use hive::agent::worker::Worker;
use hive::api::mesh_view::{
    MeshAttachment, MeshNetwork, MeshNode, MeshService, MeshTask, MeshView,
};
use hive::executor::{Executor, ExecutorConfig, NamespaceExecutor};
use hive::store::objects::{
    Endpoint, NetworkAttachment, NodeState, PortConfig, Protocol, Task, TaskState, VirtualIp,
};
use hive_dataplane::netns;
use hive_lab::{LabGuard, LabSpec, naming};
use support::dns::resolve;
use tokio::sync::watch;

use crate::support;

const HIVE: &str = env!("CARGO_BIN_EXE_hive");
const PATIENCE: Duration = Duration::from_secs(20);
const TASK: &str = "agenttask1";
const TASK_ADDR: &str = "10.0.0.3";

fn privileged(test: &str) -> bool {
    hive_test_support::root_or_skip(test, "it builds a lab, loads BPF programs and runs tasks")
}

/// What the test tells one node's agent.
struct NodeInputs {
    assignments: watch::Sender<Option<Arc<Assignment>>>,
    dead: watch::Sender<BTreeSet<String>>,
    statuses: StatusQueue,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Drop for NodeInputs {
    /// A failed test still stops the node's agent (its tasks, its data plane) before the
    /// lab goes: the stop signal is sent by `Stopper`, dropped first.
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends the stop signal when dropped.
struct Stopper(watch::Sender<bool>);

impl Drop for Stopper {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// Runs one node's mesh and worker on a thread inside the node's namespace until `stop`.
fn start_node(
    lab: &LabGuard,
    node: &str,
    dir: &Path,
    run_tasks: bool,
    stop: watch::Receiver<bool>,
    keep_tasks: Arc<AtomicBool>,
) -> NodeInputs {
    let ns = lab.netns_path(node).expect("netns").to_owned();
    let addr = lab.node_addr(node).expect("addr");
    let pin_dir = naming::bpf_pin_dir(lab.name(), node.parse().expect("member"));
    let (assignments, follow) = watch::channel(None);
    let (dead, mut dead_rx) = watch::channel(BTreeSet::new());
    let statuses = StatusQueue::default();
    let cgroup_parent = PathBuf::from(format!(
        "hive-test/agent-{}-{node}-{}",
        lab.name(),
        std::process::id()
    ));
    let node = node.to_owned();
    let dir = dir.join(&node);
    let worker_statuses = statuses.clone();
    let thread = std::thread::spawn(move || {
        netns::run_in(&ns, move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let underlay = find_underlay(addr.into())
                    .await
                    .map_err(|e| e.to_string())?;
                let mesh = NodeMesh::open(
                    &node,
                    &underlay,
                    Vec::new(),
                    &pin_dir,
                    Vec::new(),
                    stop.clone(),
                )
                .await
                .map_err(|e| e.to_string())?;
                let namespace = if run_tasks {
                    let config = ExecutorConfig {
                        run_dir: dir.join("run"),
                        state_dir: dir.join("tasks"),
                        cgroup_parent,
                        hive_binary: PathBuf::from(HIVE),
                    };
                    Some(Arc::new(
                        NamespaceExecutor::new(config, Arc::new(MeshAttacher(mesh.clone())))
                            .map_err(|e| e.to_string())?,
                    ))
                } else {
                    None
                };
                let executor: Arc<dyn Executor> = match &namespace {
                    Some(e) => e.clone(),
                    None => Arc::new(hive::agent::worker::NoExecutor {
                        reason: "not this node".into(),
                    }),
                };
                let gossip = {
                    let mesh = mesh.clone();
                    tokio::spawn(async move {
                        while dead_rx.changed().await.is_ok() {
                            let dead = dead_rx.borrow_and_update().clone();
                            for n in ["n1", "n2"] {
                                mesh.set_dead(n, dead.contains(n));
                            }
                        }
                    })
                };
                let worker = Worker {
                    executor,
                    statuses: worker_statuses,
                    prepared: PreparedStore {
                        dir: dir.join("prepared"),
                    },
                    mesh: Some(mesh.clone()),
                    keep_tasks: keep_tasks.clone(),
                    mesh_link: Default::default(),
                };
                worker.run(follow, stop).await;
                gossip.abort();
                if let Some(namespace) = namespace {
                    namespace.release().await;
                }
                // A restart keeps the data plane pinned; a final stop removes it.
                mesh.close(!keep_tasks.load(Ordering::Acquire)).await;
                Ok(())
            })
        })
        .map_err(|e| e.to_string())?
    });
    NodeInputs {
        assignments,
        dead,
        statuses,
        thread: Some(thread),
    }
}

fn view(lab: &LabGuard, running: bool) -> MeshView {
    let node = |name: &str| {
        let member = lab.member(name).expect("member");
        MeshNode {
            id: name.to_owned(),
            addr: Some(member.underlay_addr),
            mac: Some(member.mac.parse().expect("the lab's MAC")),
            state: NodeState::Ready,
        }
    };
    MeshView {
        hash_seed: 7,
        vxlan_port: 4789,
        mesh_mode: Default::default(),
        networks: vec![MeshNetwork {
            id: "ing".into(),
            name: "ingress".into(),
            vni: 4096,
            subnet: "10.0.0.0/24".parse().expect("a subnet"),
            gateway: Some("10.0.0.1".parse().expect("an address")),
            ingress: true,
        }],
        services: vec![MeshService {
            id: "web".into(),
            name: "web".into(),
            endpoint: Endpoint {
                ports: vec![PortConfig {
                    protocol: Protocol::Tcp,
                    target_port: 80,
                    published_port: 8080,
                    ..PortConfig::default()
                }],
                virtual_ips: vec![VirtualIp {
                    network_id: "ing".into(),
                    addr: "10.0.0.2/24".parse().expect("a VIP"),
                }],
                ..Endpoint::default()
            },
        }],
        tasks: if running {
            vec![MeshTask {
                id: TASK.into(),
                service_id: "web".into(),
                node_id: "n1".into(),
                networks: vec![MeshAttachment {
                    network_id: "ing".into(),
                    addresses: vec![format!("{TASK_ADDR}/24").parse().expect("an address")],
                    aliases: Vec::new(),
                }],
                draining: false,
            }]
        } else {
            Vec::new()
        },
        nodes: lab.nodes().map(|m| node(&m.name)).collect(),
    }
}

fn attachment() -> NetworkAttachment {
    NetworkAttachment {
        network_id: "ing".into(),
        addresses: vec![format!("{TASK_ADDR}/24").parse().expect("an address")],
        aliases: Vec::new(),
    }
}

fn the_task(state: TaskState) -> Task {
    let mut task = Task {
        id: TASK.into(),
        service_id: "web".into(),
        node_id: Some("n1".into()),
        desired_state: TaskState::Running,
        networks: vec![attachment()],
        ..Task::default()
    };
    task.spec.container.image = "hive/whoami".into();
    task.spec.container.stop_grace_period = Duration::from_secs(2);
    task.status.state = state;
    task
}

fn assign(node: &NodeInputs, tasks: Vec<Task>, mesh: MeshView) {
    node.assignments.send_replace(Some(Arc::new(Assignment {
        tasks,
        mesh: mesh.into(),
        version: 1,
        files: Default::default(),
        mesh_journal: Default::default(),
    })));
}

/// `GET /` from the client to `to`; the whole answer.
fn get(client: &Path, to: SocketAddr) -> std::io::Result<String> {
    netns::run_in(client, || {
        let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET / HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    })
    .map_err(std::io::Error::other)?
}

fn get_until_ok(client: &Path, to: SocketAddr) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match get(client, to) {
            Ok(answer) if answer.contains(TASK_ADDR) => return answer,
            other if Instant::now() > deadline => {
                panic!("no answer from the task through {to}: {other:?}")
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn a_task_runs_and_is_reached_through_every_nodes_published_port() {
    if !privileged("a_task_runs_and_is_reached_through_every_nodes_published_port") {
        return;
    }
    let _group = support::file_group();
    let lab = LabGuard::up(&LabSpec::new("agentmesh", 2)).expect("lab up");
    let dir = tempfile::tempdir().expect("tempdir");
    let (stop, stopping) = watch::channel(false);
    let no = || Arc::new(AtomicBool::new(false));
    let mut n1 = start_node(&lab, "n1", dir.path(), true, stopping.clone(), no());
    let mut n2 = start_node(&lab, "n2", dir.path(), false, stopping, no());
    let stop = Stopper(stop);

    // The leader assigns the task to n1; every node gets the mesh view.
    assign(&n1, vec![the_task(TaskState::Assigned)], view(&lab, false));
    assign(&n2, Vec::new(), view(&lab, false));
    let deadline = Instant::now() + PATIENCE;
    let running = loop {
        let pending = n1.statuses.pending();
        if let Some((_, status)) = pending.iter().find(|(id, _)| id == TASK) {
            assert!(
                !status.state.is_terminal(),
                "the task did not run: {status:?}"
            );
            if status.state == TaskState::Running {
                break status.clone();
            }
        }
        assert!(Instant::now() < deadline, "the task never ran: {pending:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(running.runtime.as_ref().is_some_and(|r| r.pid > 0));

    // The leader took the status: the task is a backend in every node's view.
    assign(&n1, vec![the_task(TaskState::Running)], view(&lab, true));
    assign(&n2, Vec::new(), view(&lab, true));
    let client = lab.netns_path("client").expect("client ns").to_owned();
    let client_ip = lab.member("client").expect("client").underlay_addr;
    for node in ["n1", "n2"] {
        let to = SocketAddr::new(lab.node_addr(node).expect("addr").into(), 8080);
        let answer = get_until_ok(&client, to);
        eprintln!("through {node}: {answer}");
        assert!(
            answer.contains(&client_ip.to_string()),
            "the task did not see the client's address {client_ip} through {node}: {answer}"
        );
    }

    // Tasks n1 cannot run are rejected with the reason, and the mesh goes on serving.
    let mut unknown_image = the_task(TaskState::Assigned);
    unknown_image.id = "agenttask2".into();
    unknown_image.spec.container.image = "hive/nope".into();
    unknown_image.networks.clear();
    let mut unknown_network = the_task(TaskState::Assigned);
    unknown_network.id = "agenttask3".into();
    unknown_network.networks[0].network_id = "missing".into();
    assign(
        &n1,
        vec![the_task(TaskState::Running), unknown_image, unknown_network],
        view(&lab, true),
    );
    let deadline = Instant::now() + PATIENCE;
    let rejected = loop {
        let pending = n1.statuses.pending();
        let rejected: Vec<_> = pending
            .iter()
            .filter(|(_, s)| s.state == TaskState::Rejected)
            .map(|(id, s)| (id.clone(), s.err.clone()))
            .collect();
        if rejected.len() == 2 {
            break rejected;
        }
        assert!(Instant::now() < deadline, "not rejected: {pending:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(rejected[0].1.contains("hive/nope"), "{rejected:?}");
    assert!(rejected[1].1.contains("missing"), "{rejected:?}");
    get_until_ok(
        &client,
        SocketAddr::new(lab.node_addr("n1").expect("addr").into(), 8080),
    );

    // Gossip on n2 says n1 died: n1's backend leaves n2's mesh at once.
    n2.dead.send_replace(BTreeSet::from(["n1".to_owned()]));
    let to = SocketAddr::new(lab.node_addr("n2").expect("addr").into(), 8080);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if get(&client, to).is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n2 still balances to the dead node's task"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The task leaves the set: the worker stops and removes it.
    assign(&n1, Vec::new(), view(&lab, false));
    let n1_addr = SocketAddr::new(lab.node_addr("n1").expect("addr").into(), 8080);
    let deadline = Instant::now() + PATIENCE;
    while get(&client, n1_addr).is_ok() {
        assert!(Instant::now() < deadline, "the removed task still answers");
        std::thread::sleep(Duration::from_millis(100));
    }

    stop.0.send_replace(true);
    for node in [&mut n1, &mut n2] {
        let result = node
            .thread
            .take()
            .expect("thread")
            .join()
            .expect("no panic");
        result.expect("the node's agent ran and stopped cleanly");
    }
    for node in ["n1", "n2"] {
        let pins = naming::bpf_pin_dir(lab.name(), node.parse().expect("member"));
        assert!(!pins.exists(), "{} is left", pins.display());
    }
}

/// Real daemons: each one programs its data plane from the leader's assignment stream (the
/// peers are the other nodes, with the MACs they registered), and a daemon killed without a
/// word is marked `Down` by the leader: gossip's verdict (about a second) plus the dispatcher
/// heartbeat period a node gets to come back (5 s by default, issue 14: a restart is not a
/// death), still well before Swarm's 15 s heartbeat grace.
#[test]
fn daemons_program_their_mesh_from_the_leader_and_gossip_marks_a_killed_node_down() {
    use hive::api::pb;
    use hive::client::DaemonClient;
    use hive::lab_swarm;
    use hive_dataplane::maps::MeshMaps;

    if !privileged("daemons_program_their_mesh_from_the_leader_and_gossip_marks_a_killed_node_down")
    {
        return;
    }
    let _group = support::file_group();
    struct Daemons(Vec<std::process::Child>);
    impl Drop for Daemons {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let lab = LabGuard::up(&LabSpec::new("agentswarm", 3)).expect("lab up");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut daemons = Daemons(
        runtime
            .block_on(lab_swarm::form(&lab, 1, Path::new(HIVE)))
            .expect("forming the swarm"),
    );
    let nodes = ["n1", "n2", "n3"];
    for node in nodes {
        let pins = naming::bpf_pin_dir(lab.name(), node.parse().expect("member"));
        let mut want: Vec<(Ipv4Addr, String)> = nodes
            .iter()
            .filter(|n| **n != node)
            .map(|n| {
                let member = lab.member(n).expect("member");
                (member.underlay_addr, member.mac.clone())
            })
            .collect();
        want.sort();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut peers: Vec<(Ipv4Addr, String)> = MeshMaps::open_pinned(&pins)
                .and_then(|maps| maps.peers())
                .map(|peers| {
                    peers
                        .into_iter()
                        .map(|(addr, peer)| {
                            (
                                Ipv4Addr::from(u32::from_be(addr)),
                                hive_dataplane::mesh::MacAddr(peer.mac).to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            peers.sort();
            if peers == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{node}'s data plane has peers {peers:?}, expected {want:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let socket = lab_swarm::socket_path(&lab, "n1").expect("socket");
    let mut client = runtime
        .block_on(DaemonClient::connect(Some(&format!(
            "unix://{}",
            socket.display()
        ))))
        .expect("n1's daemon");
    let n3_state = |client: &mut DaemonClient| {
        runtime
            .block_on(client.control.list_nodes())
            .ok()
            .and_then(|list| {
                list.nodes
                    .into_iter()
                    .find(|n| n.description.as_ref().is_some_and(|d| d.hostname == "n3"))
            })
            .and_then(|n| n.status)
            .map(|s| s.state())
    };
    assert_eq!(n3_state(&mut client), Some(pb::NodeState::Ready));
    // Gossip is authenticated (docs/security.md): a joining node gossips once its session
    // handed it the cluster's key. Its death is gossip's to see once n1 has seen it alive.
    let formed = Instant::now();
    loop {
        let metrics = support::metrics_of(&lab, "n1");
        let up = metrics
            .lines()
            .filter(|l| l.starts_with("hive_gossip_peer_up{") && l.ends_with(" 1"))
            .count();
        if up == 2 {
            break;
        }
        assert!(
            formed.elapsed() < PATIENCE,
            "n1's gossip does not see both peers up:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "n1's gossip saw both peers {:?} after the swarm formed",
        formed.elapsed()
    );
    let killed = Instant::now();
    let mut n3 = daemons.0.remove(2);
    n3.kill().expect("SIGKILL n3's daemon");
    n3.wait().expect("reap it");
    loop {
        if n3_state(&mut client) == Some(pb::NodeState::Down) {
            break;
        }
        // The default heartbeat period, plus as much again for gossip and a busy machine.
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "n3 is not down 10 s after its daemon was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("n3 down {:?} after SIGKILL", killed.elapsed());
    drop(daemons);
}

/// The `Agent` service of a worker: a manager reads a task's log (all of it, or its tail);
/// a worker's certificate is refused.
#[test]
fn a_workers_agent_serves_task_logs_to_managers_only() {
    use hive::api::pb;
    use hive::daemon::node_file::NodeFile;
    use hive::lab_swarm;
    use hive::pki::{self, CertDir};
    use hive::transport::mtls_channel;

    if !privileged("a_workers_agent_serves_task_logs_to_managers_only") {
        return;
    }
    let _group = support::file_group();
    struct Daemons(Vec<std::process::Child>);
    impl Drop for Daemons {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let lab = LabGuard::up(&LabSpec::new("agentlogs", 2)).expect("lab up");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _daemons = Daemons(
        runtime
            .block_on(lab_swarm::form(&lab, 1, Path::new(HIVE)))
            .expect("forming the swarm"),
    );
    let data_dir = |node: &str| {
        lab.member(node)
            .expect("member")
            .data_dir
            .clone()
            .expect("a daemon's data dir")
    };
    // A task's log as the executor writes it, on the worker.
    let log_dir = data_dir("n2").join("tasks").join("logtask1");
    std::fs::create_dir_all(&log_dir).expect("log dir");
    std::fs::write(
        log_dir.join(hive::executor::LOG_FILE),
        concat!(
            r#"{"log":"hello\n","stream":"stdout","time":"2026-01-02T03:04:05.000000001Z"}"#,
            "\n",
            r#"{"log":"oops\n","stream":"stderr","time":"2026-01-02T03:04:06Z"}"#,
            "\n"
        ),
    )
    .expect("log file");
    let worker_id = NodeFile::load(&data_dir("n2"))
        .expect("n2's node file")
        .expect("n2 is in the swarm")
        .node_id;
    let worker_addr = format!("{}:2377", lab.node_addr("n2").expect("addr"));
    let client_ns = lab.netns_path("client").expect("client").to_owned();

    let logs = |caller: &str, tail: u64| -> Result<Vec<(bool, String)>, tonic::Status> {
        let creds = CertDir::in_data_dir(&data_dir(caller))
            .load(std::time::SystemTime::now())
            .expect("credentials");
        let tls = Arc::new(pki::client_config(&creds).expect("tls"));
        let (addr, name) = (worker_addr.clone(), worker_id.clone());
        netns::run_in(&client_ns, move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let channel = mtls_channel(&addr, tls, pki::node_server_name(&name).expect("name"))
                    .expect("channel");
                let mut client = pb::agent_client::AgentClient::new(channel);
                let mut stream = client
                    .task_logs(pb::TaskLogsRequest {
                        task_ids: vec!["logtask1".into()],
                        follow: false,
                        tail,
                        timestamps: true,
                    })
                    .await?
                    .into_inner();
                let mut lines = Vec::new();
                while let Some(line) = stream.message().await? {
                    assert_eq!(line.task_id, "logtask1");
                    assert!(line.timestamp.is_some());
                    lines.push((
                        line.stderr,
                        String::from_utf8_lossy(&line.line).into_owned(),
                    ));
                }
                Ok(lines)
            })
        })
        .expect("client ns")
    };
    assert_eq!(
        logs("n1", 0).expect("a manager reads the log"),
        vec![(false, "hello\n".to_owned()), (true, "oops\n".to_owned())]
    );
    assert_eq!(
        logs("n1", 1).expect("a manager reads the tail"),
        vec![(true, "oops\n".to_owned())]
    );
    let refused = logs("n2", 0).expect_err("a worker may not read logs");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
}

/// One request on an open keep-alive connection; the answering task's hostname.
fn request_on(stream: &mut TcpStream) -> std::io::Result<String> {
    stream.write_all(b"GET / HTTP/1.1\r\nHost: mesh\r\n\r\n")?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other("the connection was closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse().ok())
                })
                .unwrap_or(0);
            if body.len() >= len {
                let hostname = body
                    .lines()
                    .find_map(|l| l.strip_prefix("Hostname: "))
                    .unwrap_or_default();
                return Ok(hostname.to_owned());
            }
        }
    }
}

fn wait_for_status(node: &NodeInputs, task: &str, state: TaskState) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let pending = node.statuses.pending();
        if pending
            .iter()
            .any(|(id, status)| id == task && status.state == state)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{task} never reported {state}: {pending:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A daemon restart: the agent stops keeping its task running and the data plane pinned;
/// the next agent adopts the task (its process, its veth, its output) and an open connection
/// to it through the published port goes on answering.
#[test]
fn a_restarted_agent_adopts_its_running_task_and_keeps_its_connections() {
    if !privileged("a_restarted_agent_adopts_its_running_task_and_keeps_its_connections") {
        return;
    }
    let _group = support::file_group();
    let lab = LabGuard::up(&LabSpec::new("agentrst", 1)).expect("lab up");
    let dir = tempfile::tempdir().expect("tempdir");
    let (stop, stopping) = watch::channel(false);
    let keep = Arc::new(AtomicBool::new(false));
    let mut first = start_node(&lab, "n1", dir.path(), true, stopping, keep.clone());
    let stop = Stopper(stop);
    assign(
        &first,
        vec![the_task(TaskState::Assigned)],
        view(&lab, false),
    );
    wait_for_status(&first, TASK, TaskState::Running);
    assign(&first, vec![the_task(TaskState::Running)], view(&lab, true));

    let client = lab.netns_path("client").expect("client ns").to_owned();
    let to = SocketAddr::new(lab.node_addr("n1").expect("addr").into(), 8080);
    get_until_ok(&client, to);
    let mut open = netns::run_in(&client, || TcpStream::connect_timeout(&to, PATIENCE))
        .expect("client ns")
        .expect("connect");
    open.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let hostname = request_on(&mut open).expect("an answer before the restart");
    // The task's embedded resolver answers (this agent forwards nothing: SERVFAIL for a name
    // that is not the swarm's).
    let task_ns = dir.path().join("n1").join("run").join("netns").join(TASK);
    let (code, _) = resolve(&task_ns, "example.com", false).expect("the task's resolver");
    assert_eq!(code, ResponseCode::ServFail);

    // The daemon stops for a restart: the task and the data plane stay.
    keep.store(true, Ordering::Release);
    stop.0.send_replace(true);
    first
        .thread
        .take()
        .expect("thread")
        .join()
        .expect("no panic")
        .expect("the first agent stopped cleanly");
    assert_eq!(
        request_on(&mut open).expect("an answer while no agent runs"),
        hostname
    );

    // The next agent: same directories and pins; the leader still shows the task running.
    let (stop, stopping) = watch::channel(false);
    let mut second = start_node(
        &lab,
        "n1",
        dir.path(),
        true,
        stopping,
        Arc::new(AtomicBool::new(false)),
    );
    let stop = Stopper(stop);
    assign(
        &second,
        vec![the_task(TaskState::Running)],
        view(&lab, true),
    );
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        assert_eq!(
            request_on(&mut open).expect("an answer on the same connection after the restart"),
            hostname
        );
    }
    assert!(
        second
            .statuses
            .pending()
            .iter()
            .all(|(_, s)| s.state == TaskState::Running),
        "the adopted task was reported otherwise: {:?}",
        second.statuses.pending()
    );
    get_until_ok(&client, to);
    // The next agent serves the adopted task's resolver again.
    let deadline = Instant::now() + PATIENCE;
    loop {
        match resolve(&task_ns, "example.com", false) {
            Ok((code, _)) => {
                assert_eq!(code, ResponseCode::ServFail);
                break;
            }
            Err(err) => assert!(
                Instant::now() < deadline,
                "the adopted task's resolver never answered: {err}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // The adopted task stops when the manager asks.
    let mut stopping_task = the_task(TaskState::Running);
    stopping_task.desired_state = TaskState::Shutdown;
    assign(&second, vec![stopping_task], view(&lab, false));
    wait_for_status(&second, TASK, TaskState::Shutdown);

    stop.0.send_replace(true);
    second
        .thread
        .take()
        .expect("thread")
        .join()
        .expect("no panic")
        .expect("the second agent stopped cleanly");
    let pins = naming::bpf_pin_dir(lab.name(), "n1".parse().expect("member"));
    assert!(!pins.exists(), "{} is left", pins.display());
}
