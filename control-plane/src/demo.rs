//! `hive demo`: the main job in one command.
//!
//! A 3-node lab on this machine, hive's eBPF data plane on every node, a
//! `hive/whoami` service with 5 replicas published on port 8080, and
//! requests from an outside `client` to every node's published port,
//! answered by every replica — local and remote — each of which sees the
//! client's own address. Then what the kernel counted, and clean-up.
//!
//! Until the control plane schedules services (issue #5), the demo places
//! the replicas itself and hands each node the `MeshState` the control
//! plane will compute ([`hive_dataplane::static_mesh`]).

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::Duration,
};

use hive_dataplane::{
    lab::{Lab, LabGuard, LabSpec},
    mesh::{Protocol, ServicePort},
    netns,
    static_mesh::{INGRESS_VNI, ServiceDef, StaticMesh},
};

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
    /// The `hive` binary the replicas run (`hive builtin whoami`).
    pub hive_binary: PathBuf,
}

/// Errors of the demo, each saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Lab(#[from] hive_dataplane::lab::LabError),
    #[error("{0}")]
    Mesh(#[from] hive_dataplane::static_mesh::StaticMeshError),
    #[error("{0}")]
    Netns(#[from] hive_dataplane::netns::NetnsError),
    #[error(
        "replica {task} did not start listening on port 80 within {waited:?}; see its log in {log}"
    )]
    ReplicaDown {
        task: String,
        waited: Duration,
        log: String,
    },
    #[error("reading the data plane's counters on {node}: {detail}")]
    Counters { node: String, detail: String },
}

const SERVICE_ID: &str = "whoamidemo000000000000001";
const SERVICE_NAME: &str = "whoami";
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// One answer of whoami, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub hostname: String,
    /// The peer address the replica saw.
    pub remote: SocketAddr,
}

/// Run the demo, printing as it goes.
pub fn run(config: &DemoConfig) -> Result<(), DemoError> {
    println!("hive demo: Docker Swarm's routing mesh in eBPF, on this machine\n");
    let lab = LabGuard::up(&LabSpec::new(config.lab.clone(), 3))?;
    let nodes: Vec<(String, Ipv4Addr)> = lab
        .nodes()
        .map(|m| (m.name.clone(), m.underlay_addr))
        .collect();
    let client = lab.client()?.underlay_addr;
    println!(
        "[1/5] lab {:?}: nodes {} on an underlay bridge, outside client {client}",
        config.lab,
        nodes
            .iter()
            .map(|(n, a)| format!("{n} {a}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut mesh = StaticMesh::new(&lab, 0x6869_7665)?;
    println!(
        "[2/5] data plane: xdp_from_underlay on eth0 of every node, maps and links pinned under {}",
        hive_dataplane::lab::naming::bpf_lab_dir(&config.lab).display()
    );

    let mut placement = Vec::new();
    for slot in 1..=config.replicas {
        let (node, _) = &nodes[(slot as usize - 1) % nodes.len()];
        let task = format!("{SERVICE_NAME}.{slot}");
        let addr = mesh.add_task(
            &task,
            node,
            config.hive_binary.clone(),
            &["builtin", "whoami", "--listen", "0.0.0.0:80"],
        )?;
        placement.push((task, node.clone(), addr));
    }
    mesh.set_service(ServiceDef {
        id: SERVICE_ID.into(),
        name: SERVICE_NAME.into(),
        vip: Some(Ipv4Addr::new(10, 0, 0, 2)),
        ports: vec![ServicePort {
            protocol: Protocol::Tcp,
            target_port: 80,
            published_port: Some(config.published_port),
        }],
        backends: placement.iter().map(|(t, _, _)| t.clone()).collect(),
    });
    mesh.apply()?;
    for (task, _, _) in &placement {
        wait_for_replica(&mesh, task)?;
    }
    println!(
        "[3/5] service {SERVICE_NAME:?}: {} replicas of hive/whoami, published on port {} of every node",
        config.replicas, config.published_port
    );
    for (task, node, addr) in &placement {
        println!("        {task:<10} on {node}  {addr}");
    }

    println!(
        "[4/5] {} requests from client to each node's published port:",
        config.requests_per_node
    );
    let client_ns = lab.netns_path("client")?.to_path_buf();
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
                            "        GET http://{to}/  ->  Hostname: {:<9} RemoteAddr: {}",
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

    println!("[5/5] what the kernel counted on each node:");
    print_counters(&mesh, &nodes)?;

    if config.keep {
        mesh.keep();
        let _kept: Lab = lab.into_inner();
        println!(
            "\nThe lab {0:?} is still up. Try:\n  hive lab exec --name {0} client -- curl -s http://{1}:{2}/\n  hive lab ls --name {0}\n  hive lab down --name {0}",
            config.lab, nodes[0].1, config.published_port
        );
    } else {
        mesh.teardown()?;
        drop(lab);
        println!("\nLab removed. `hive demo --keep` leaves it up to explore.");
    }
    Ok(())
}

fn wait_for_replica(mesh: &StaticMesh, task: &str) -> Result<(), DemoError> {
    let task = mesh.task(task)?;
    let addr = SocketAddr::from((task.addr, 80));
    let waited = Duration::from_secs(5);
    for _ in 0..100 {
        if netns::run_in(&task.netns, || {
            TcpStream::connect_timeout(&addr, IO_TIMEOUT).is_ok()
        })? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(DemoError::ReplicaDown {
        task: task.id.clone(),
        waited,
        log: hive_dataplane::lab::naming::lab_dir(mesh.lab().name())
            .join("tasks")
            .join(format!("{}.log", task.id))
            .display()
            .to_string(),
    })
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

fn print_counters(mesh: &StaticMesh, nodes: &[(String, Ipv4Addr)]) -> Result<(), DemoError> {
    println!(
        "        {:<5} {:>10} {:>10} {:>12} {:>7}",
        "NODE", "NEW FLOWS", "PACKETS", "BYTES", "DROPS"
    );
    for (node, _) in nodes {
        let dataplane = mesh.dataplane(node)?;
        let counters_error = |detail: String| DemoError::Counters {
            node: node.clone(),
            detail,
        };
        let service = match dataplane.service_slot(SERVICE_ID, INGRESS_VNI) {
            Some(slot) => dataplane
                .maps()
                .service_counters(slot)
                .map_err(|e| counters_error(e.to_string()))?,
            None => Default::default(),
        };
        let drops: Vec<_> = dataplane
            .maps()
            .drop_counts()
            .map_err(|e| counters_error(e.to_string()))?
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        let total: u64 = drops.iter().map(|(_, n)| n).sum();
        println!(
            "        {:<5} {:>10} {:>10} {:>12} {:>7}{}",
            node,
            service.new_flows,
            service.packets,
            service.bytes,
            total,
            drops
                .iter()
                .map(|(r, n)| format!("  {}={n}", r.name()))
                .collect::<String>()
        );
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
