//! `hive demo`: the main job in one command.
//!
//! A 3-node lab on this machine, `hive daemon` in every node (n1 the manager,
//! n2 and n3 workers joined with real tokens), a `hive/whoami` service with 5
//! replicas published on port 8080 created through the cluster API — the
//! manager's orchestrator, allocator and scheduler place the tasks, every
//! node's agent runs its tasks and programs its eBPF mesh from the store —
//! and requests from an outside `client` to every node's published port,
//! answered by every replica, local and remote, each of which sees the
//! client's own address. Then what the kernel counted, and clean-up.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use hive_dataplane::{
    netns,
    node_pins::{NodeChoice, PinsQuery},
};
use hive_lab::{Lab, LabSpec};

use crate::client::{DaemonClient, TaskFilter};
use crate::lab_swarm::{self, LabSwarmError, SwarmLab};
use crate::store::objects::{
    Annotations, ContainerSpec, EndpointSpec, PortConfig, Protocol, PublishMode, ServiceMode,
    ServiceSpec, TaskSpec, TaskState,
};
use hive_dataplane::stats::DisplayNames;

/// What the demo builds.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub lab: String,
    pub replicas: u32,
    pub published_port: u16,
    /// Requests sent to each node's published port.
    pub requests_per_node: u32,
    /// Leave the lab running afterwards.
    pub keep: bool,
    /// The `hive` binary the daemons run.
    pub hive_binary: PathBuf,
}

/// Errors of the demo, each saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Lab(#[from] hive_lab::LabError),
    #[error("{0}")]
    Swarm(#[from] LabSwarmError),
    #[error("{0}")]
    Netns(#[from] hive_dataplane::netns::NetnsError),
    #[error("the cluster API refused {what}: {source}")]
    Api {
        what: &'static str,
        #[source]
        source: crate::client::ClientError,
    },
    #[error(
        "{running} of {replicas} replicas were running after {waited:?}; see `hive lab exec --name {lab} n1 -- hive service ps {service}` (run the demo with --keep) and the daemon logs in {logs}"
    )]
    NotRunning {
        running: usize,
        replicas: u32,
        waited: Duration,
        lab: String,
        service: &'static str,
        logs: String,
    },
    #[error("reading the data plane's counters: {detail}")]
    Counters { detail: String },
    #[error("cannot start the demo's async runtime: {0}")]
    Runtime(std::io::Error),
}

const SERVICE_NAME: &str = "whoami";
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the replicas may take to run and answer.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);

/// One answer of whoami, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub hostname: String,
    /// The peer address the replica saw.
    pub remote: SocketAddr,
}

/// Run the demo, printing as it goes.
pub fn run(config: &DemoConfig) -> Result<(), DemoError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DemoError::Runtime)?;
    println!("hive demo: Docker Swarm's routing mesh in eBPF, on this machine\n");
    let demo = rt.block_on(SwarmLab::up(
        &LabSpec::new(config.lab.clone(), 3),
        1,
        &config.hive_binary,
    ))?;
    let nodes: Vec<(String, Ipv4Addr)> = demo
        .lab()
        .nodes()
        .map(|m| (m.name.clone(), m.underlay_addr))
        .collect();
    let client = demo.lab().client()?.underlay_addr;
    println!(
        "[1/6] lab {:?}: nodes {} on an underlay bridge, outside client {client}",
        config.lab,
        nodes
            .iter()
            .map(|(n, a)| format!("{n} {a}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "[2/6] swarm: `hive daemon` on every node; n1 initialised it, n2 and n3 joined with the worker token (mTLS, Raft store on disk)"
    );

    let mut api = rt.block_on(lab_swarm::connect(
        demo.lab(),
        "n1",
        lab_swarm::DAEMON_START_TIMEOUT,
    ))?;
    let spec = whoami_spec(
        SERVICE_NAME,
        u64::from(config.replicas),
        config.published_port,
    );
    rt.block_on(api.control.create_service(&spec))
        .map_err(|source| DemoError::Api {
            what: "creating the service",
            source,
        })?;
    println!(
        "[3/6] hive service create --name {SERVICE_NAME} --replicas {} -p {}:80 hive/whoami",
        config.replicas, config.published_port
    );
    let running = rt.block_on(wait_running(&mut api, config, demo.lab()))?;
    println!(
        "        the manager placed the replicas; each node's agent runs its own and programs its mesh:"
    );
    for (name, node, addr) in &running {
        println!("        {name:<10} on {node}  {addr}");
    }

    println!(
        "[4/6] {} requests from client to each node's published port:",
        config.requests_per_node
    );
    let client_ns = demo.lab().netns_path("client")?.to_path_buf();
    let mut all_saw_client = true;
    for (node, addr) in &nodes {
        let to = SocketAddr::from((*addr, config.published_port));
        let mut answered: BTreeMap<String, u32> = BTreeMap::new();
        let mut failures = 0;
        for i in 0..config.requests_per_node {
            match http_get(&client_ns, to) {
                Ok(answer) => {
                    if i < 3 {
                        println!(
                            "        GET http://{to}/  ->  Hostname: {:<12} RemoteAddr: {}",
                            answer.hostname, answer.remote
                        );
                    }
                    all_saw_client &= answer.remote.ip() == client;
                    *answered.entry(answer.hostname).or_default() += 1;
                }
                Err(err) => {
                    failures += 1;
                    tracing::warn!(%err, %to, "request failed");
                }
            }
        }
        println!(
            "        {node}:{}  answered by {}/{} replicas ({}){}",
            config.published_port,
            answered.len(),
            config.replicas,
            answered
                .iter()
                .map(|(h, n)| format!("{h} x{n}"))
                .collect::<Vec<_>>()
                .join(", "),
            if failures > 0 {
                format!(", {failures} failed")
            } else {
                String::new()
            }
        );
    }
    if all_saw_client {
        println!(
            "        every replica saw the client's own address {client} (Swarm's mesh shows its own)"
        );
    } else {
        println!("        WARNING: some replica saw an address other than the client's");
    }

    println!("[5/6] what the kernel counted on each node (hive mesh stats):");
    let names = rt
        .block_on(crate::cli::mesh_names::from_manager(&mut api))
        .map_err(|source| DemoError::Api {
            what: "listing the names of services and tasks",
            source,
        })?;
    print_counters(&config.lab, &names)?;

    if config.keep {
        demo.keep();
        println!(
            "[6/6] kept.\n\nThe lab {0:?} is still up, with its swarm. Try:\n  hive lab exec --name {0} n1 -- hive service ps {SERVICE_NAME}\n  hive lab exec --name {0} client -- curl -s http://{1}:{2}/\n  hive mesh stats --lab {0} --all-nodes\n  hive lab down --name {0}",
            config.lab, nodes[0].1, config.published_port
        );
    } else {
        drop(demo);
        println!(
            "[6/6] lab, daemons, tasks and BPF pins removed. `hive demo --keep` leaves them up to explore."
        );
    }
    Ok(())
}

/// `hive service create --name NAME --replicas N -p PORT:80 hive/whoami`.
pub fn whoami_spec(name: &str, replicas: u64, published_port: u16) -> ServiceSpec {
    ServiceSpec {
        annotations: Annotations::named(name),
        mode: ServiceMode::Replicated { replicas },
        task_template: TaskSpec {
            container: ContainerSpec {
                image: "hive/whoami".to_owned(),
                ..ContainerSpec::default()
            },
            ..TaskSpec::default()
        },
        endpoint_spec: EndpointSpec {
            ports: vec![PortConfig {
                protocol: Protocol::Tcp,
                target_port: 80,
                published_port,
                publish_mode: PublishMode::Ingress,
                ..PortConfig::default()
            }],
            ..EndpointSpec::default()
        },
        ..ServiceSpec::default()
    }
}

/// Waits until every replica runs; returns `(name.slot, node, address)` per replica.
async fn wait_running(
    api: &mut DaemonClient,
    config: &DemoConfig,
    lab: &Lab,
) -> Result<Vec<(String, String, String)>, DemoError> {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let reply = api
            .control
            .list_tasks(TaskFilter {
                service: Some(SERVICE_NAME),
                node: None,
            })
            .await
            .map_err(|source| DemoError::Api {
                what: "listing the tasks",
                source,
            })?;
        let tasks = &reply.tasks;
        let mut running: Vec<(String, String, String)> = tasks
            .iter()
            .filter(|t| {
                t.desired_state == TaskState::Running && t.status.state == TaskState::Running
            })
            .map(|t| {
                let node = t
                    .node_id
                    .as_ref()
                    .and_then(|id| reply.node_names.get(id))
                    .cloned()
                    .unwrap_or_default();
                let addr = t
                    .networks
                    .iter()
                    .flat_map(|n| n.addresses.first())
                    .next()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                (format!("{SERVICE_NAME}.{}", t.slot), node, addr)
            })
            .collect();
        if running.len() >= config.replicas as usize {
            running.sort();
            return Ok(running);
        }
        if Instant::now() >= deadline {
            return Err(DemoError::NotRunning {
                running: running.len(),
                replicas: config.replicas,
                waited: CONVERGE_TIMEOUT,
                lab: config.lab.clone(),
                service: SERVICE_NAME,
                logs: hive_lab::naming::lab_dir(lab.name()).display().to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One `GET /` on a new connection made inside `ns`.
pub fn http_get(ns: &Path, to: SocketAddr) -> std::io::Result<Answer> {
    netns::run_in(ns, || -> std::io::Result<Answer> {
        let mut stream = TcpStream::connect_timeout(&to, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.write_all(b"GET / HTTP/1.1\r\nHost: hive-demo\r\nConnection: close\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        parse_answer(&response).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not a whoami response")
        })
    })
    .map_err(std::io::Error::other)?
}

/// Hostname and RemoteAddr of a whoami response.
pub fn parse_answer(response: &str) -> Option<Answer> {
    let field = |name: &str| {
        response
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    Some(Answer {
        hostname: field("Hostname:")?,
        remote: field("RemoteAddr:")?.parse().ok()?,
    })
}

fn print_counters(lab: &str, names: &DisplayNames) -> Result<(), DemoError> {
    let counters_error = |detail: String| DemoError::Counters { detail };
    let pins = PinsQuery {
        lab: Some(lab.to_owned()),
        pin_dir: None,
        nodes: NodeChoice::All,
    }
    .resolve()
    .map_err(|e| counters_error(e.to_string()))?;
    let stats = pins
        .iter()
        .map(|node| hive_dataplane::stats::read_node(node, None))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| counters_error(e.to_string()))?;
    for line in hive_dataplane::stats::table(&stats, names).lines() {
        println!("        {line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hostname_and_remote_address() {
        let response = "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nHostname: whoami.2\nIP: 10.0.0.11\nRemoteAddr: 192.168.77.100:40000\n";
        assert_eq!(
            parse_answer(response),
            Some(Answer {
                hostname: "whoami.2".into(),
                remote: "192.168.77.100:40000".parse().unwrap()
            })
        );
        assert_eq!(parse_answer("HTTP/1.1 500\r\n\r\n"), None);
    }
}
