//! The kernel's own mesh path, built on a hive lab for comparison: kernel
//! VXLAN devices between nodes, nginx backends on two nodes, and iptables or
//! nftables DNAT + MASQUERADE on the ingress node — the topology of
//! `../shared/reference/kernel-baseline/topo.sh`, with one change: each
//! backend runs in a task namespace of its own, its veth in a bridge with the
//! node's VXLAN device, as Docker's overlay driver attaches a task (the
//! reference let nginx listen on the node itself; hive's tasks have a
//! namespace and a veth, so the kernel's backends get the same).
//!
//! This is the reference being measured, configured with the kernel's own
//! tools (`ip`, `bridge`, `iptables-restore`, `nft`) exactly as operators
//! and kube-proxy do; hive's own plumbing never shells out.

use std::{
    io::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use hive_dataplane::netns;
use hive_lab::{Lab, naming, topology::BRIDGE_WITHOUT_NETFILTER};

use crate::rules::{self, RealService, VXLAN_DEV};

/// Errors while building or driving the kernel path.
#[derive(Debug, thiserror::Error)]
pub enum KernelPathError {
    #[error("lab: {0}")]
    Lab(#[from] hive_lab::LabError),
    #[error("`{command}` on {node} failed: {detail}")]
    Command {
        node: String,
        command: String,
        detail: String,
    },
    #[error("the kernel path needs a lab with at least 3 nodes; this one has {nodes}")]
    TooSmall { nodes: usize },
    #[error("backend {addr} on {node} did not answer within {waited:?}")]
    BackendDown {
        node: String,
        addr: Ipv4Addr,
        waited: Duration,
    },
    #[error("the backend namespace {path}: {detail}")]
    Netns { path: PathBuf, detail: String },
    #[error("writing nginx's configuration {path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which rule engine balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleEngine {
    Iptables,
    Nftables,
}

impl RuleEngine {
    /// The path's name in the report.
    pub fn name(self) -> &'static str {
        match self {
            RuleEngine::Iptables => "iptables",
            RuleEngine::Nftables => "nftables",
        }
    }
}

/// VNI and overlay subnet of the kernel path (Swarm's first overlay VNI).
const VNI: &str = "4096";
fn overlay_addr(node_index: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, node_index)
}
/// The address of the backend task on node `node_index`, on the overlay.
fn task_addr(node_index: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 10 + node_index)
}
/// The MAC of the backend task's `eth0` on node `node_index`: hive's rule for its own
/// tasks (`task_mac`), so that the floor (`crate::floor`) can address it.
fn task_mac(node_index: u8) -> [u8; 6] {
    hive_common::maps::task_mac(u32::from(task_addr(node_index)).to_be())
}
/// The overlay bridge of a backend node: its VXLAN device and the task's
/// veth, as the bridge in the network namespace Docker's overlay driver
/// keeps per network.
const OVERLAY_BRIDGE: &str = "br-ov";
/// The host side of the backend task's veth.
pub const TASK_VETH: &str = "ov-task";
/// MTU of the overlay (the underlay's 1500 − 50 of VXLAN), as Docker sets on
/// a task's interface.
const OVERLAY_MTU: &str = "1450";

/// The routing table (and rule preference) of the floor's route on a backend node.
const FLOOR_TABLE: &str = "77";

/// The lab member that generates load.
const CLIENT: &str = "client";
/// Overlay indexes (node numbers) of the nodes that run a backend.
const BACKEND_NODES: [u8; 2] = [2, 3];
/// The node whose task serves the bulk runs (one remote backend).
const BULK_BACKEND_NODE: u8 = 2;

/// The kernel path on a lab: node 1 balances, nodes 2 and 3 serve.
#[derive(Debug)]
pub struct KernelPath<'a> {
    lab: &'a Lab,
    nodes: Vec<(String, Ipv4Addr)>,
    run_dir: PathBuf,
}

impl<'a> KernelPath<'a> {
    /// Build VXLAN devices on every node and start nginx on nodes 2 and 3.
    pub fn up(lab: &'a Lab, run_dir: PathBuf) -> Result<Self, KernelPathError> {
        let nodes: Vec<(String, Ipv4Addr)> = lab
            .nodes()
            .map(|m| (m.name.clone(), m.underlay_addr))
            .collect();
        if nodes.len() < 3 {
            return Err(KernelPathError::TooSmall { nodes: nodes.len() });
        }
        let path = KernelPath {
            lab,
            nodes,
            run_dir,
        };
        for (i, (node, addr)) in path.nodes.iter().enumerate() {
            let index = i as u8 + 1;
            path.run(
                node,
                "ip",
                &[
                    "link",
                    "add",
                    VXLAN_DEV,
                    "type",
                    "vxlan",
                    "id",
                    VNI,
                    "dstport",
                    "4789",
                    "local",
                    &addr.to_string(),
                    "dev",
                    "eth0",
                ],
            )?;
            for (peer, peer_addr) in &path.nodes {
                if peer != node {
                    path.run(
                        node,
                        "bridge",
                        &[
                            "fdb",
                            "append",
                            "00:00:00:00:00:00",
                            "dev",
                            VXLAN_DEV,
                            "dst",
                            &peer_addr.to_string(),
                        ],
                    )?;
                }
            }
            // The node's overlay address: on the bridge where tasks run.
            let overlay_dev = if BACKEND_NODES.contains(&index) {
                path.bridge_overlay(node)?;
                OVERLAY_BRIDGE
            } else {
                VXLAN_DEV
            };
            path.run(
                node,
                "ip",
                &[
                    "addr",
                    "add",
                    &format!("{}/24", overlay_addr(index)),
                    "dev",
                    overlay_dev,
                ],
            )?;
            path.run(node, "ip", &["link", "set", VXLAN_DEV, "up"])?;
        }
        for index in BACKEND_NODES {
            path.start_task(index)?;
            path.start_nginx(index)?;
        }
        Ok(path)
    }

    /// The service the load is aimed at.
    pub fn real_service(&self) -> RealService {
        RealService {
            published_addr: self.nodes[0].1,
            published_port: 8080,
            backends: BACKEND_NODES.map(task_addr),
            backend_port: 80,
        }
    }

    /// Route `client` straight to each backend task's address through the
    /// backend's own node, which forwards into its overlay bridge; returns
    /// the addresses. For the no-mesh ceiling
    /// ([`crate::kernel_runs::direct`]).
    pub fn route_client_to_backends(&self) -> Result<Vec<Ipv4Addr>, KernelPathError> {
        let mut routed = Vec::new();
        for (index, (_, via)) in self.backend_nodes() {
            let addr = task_addr(index);
            self.run(
                CLIENT,
                "ip",
                &[
                    "route",
                    "replace",
                    &format!("{addr}/32"),
                    "via",
                    &via.to_string(),
                ],
            )?;
            routed.push(addr);
        }
        Ok(routed)
    }

    /// Remove the routes [`Self::route_client_to_backends`] added.
    pub fn unroute_client(&self) -> Result<(), KernelPathError> {
        for (index, _) in self.backend_nodes() {
            let addr = task_addr(index);
            self.run(CLIENT, "ip", &["route", "del", &format!("{addr}/32")])?;
        }
        Ok(())
    }

    /// The ingress node's (node 1's) underlay address: the published address.
    pub fn ingress_addr(&self) -> Ipv4Addr {
        self.nodes[0].1
    }

    /// The nodes whose tasks serve, with their task's MAC: the connection runs' (nodes 2
    /// and 3) or, with `bulk`, the bulk runs' (node 2).
    pub fn serving(&self, bulk: bool) -> Vec<(&str, [u8; 6])> {
        self.serving_nodes(bulk)
            .map(|(index, node)| (node, task_mac(index)))
            .collect()
    }

    /// [`Self::serving`]'s nodes with their overlay index.
    fn serving_nodes(&self, bulk: bool) -> impl Iterator<Item = (u8, &str)> {
        self.backend_nodes()
            .filter(move |(index, _)| !bulk || *index == BULK_BACKEND_NODE)
            .map(|(index, (node, _))| (index, node.as_str()))
    }

    /// For the floor of a path through the ingress node (`crate::floor`):
    /// on each backend node, frames from the underlay addressed to the ingress node's
    /// address go into the node's task, which holds that address; the task's replies
    /// leave by its default route, through its node, straight to the client. The rule
    /// matches only frames from `eth0` for that address, which no other path sends to a
    /// backend node.
    pub fn route_floor(&self, bulk: bool) -> Result<(), KernelPathError> {
        let ingress = format!("{}/32", self.ingress_addr());
        for (index, node) in self.serving_nodes(bulk) {
            let task = task_addr(index).to_string();
            self.run(
                node,
                "ip",
                &[
                    "route",
                    "replace",
                    &ingress,
                    "via",
                    &task,
                    "table",
                    FLOOR_TABLE,
                ],
            )?;
            self.run(
                node,
                "ip",
                &[
                    "rule",
                    "add",
                    "pref",
                    FLOOR_TABLE,
                    "iif",
                    "eth0",
                    "to",
                    &ingress,
                    "lookup",
                    FLOOR_TABLE,
                ],
            )?;
        }
        Ok(())
    }

    /// Remove what [`Self::route_floor`] added.
    pub fn unroute_floor(&self, bulk: bool) -> Result<(), KernelPathError> {
        let ingress = format!("{}/32", self.ingress_addr());
        for (_, node) in self.serving_nodes(bulk) {
            self.run(node, "ip", &["rule", "del", "pref", FLOOR_TABLE])?;
            self.run(
                node,
                "ip",
                &["route", "del", &ingress, "table", FLOOR_TABLE],
            )?;
        }
        Ok(())
    }

    /// Nodes 2 and 3, the backends' nodes, with their overlay index.
    fn backend_nodes(&self) -> impl Iterator<Item = (u8, &(String, Ipv4Addr))> {
        BACKEND_NODES
            .into_iter()
            .filter_map(|index| Some((index, self.nodes.get(usize::from(index) - 1)?)))
    }

    /// The backend task the bulk runs load (`crate::bulk`): node 2's, the
    /// same remote node hive's bulk task runs on.
    pub fn bulk_backend(&self) -> Ipv4Addr {
        task_addr(BULK_BACKEND_NODE)
    }

    /// Start `program` with `args` in the bulk backend's task namespace (an
    /// iperf3 server); the caller owns the child.
    pub fn spawn_in_bulk_backend(
        &self,
        program: &str,
        args: &[&str],
    ) -> Result<std::process::Child, KernelPathError> {
        self.task_command(BULK_BACKEND_NODE, program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| self.failed("bulk backend", program, args, e.to_string()))
    }

    /// iptables DNAT of node 1's `port` to the bulk backend's `port`, with
    /// MASQUERADE out of the kernel VXLAN device, as [`Self::install`]
    /// does for the real service ([`Self::clear`] removes it).
    pub fn install_bulk(&self, port: u16) -> Result<(), KernelPathError> {
        self.clear()?;
        self.run_stdin(
            &self.nodes[0].0,
            "iptables-legacy-restore",
            &[],
            &rules::iptables_forward(self.nodes[0].1, port, self.bulk_backend(), port),
        )
    }

    /// Install `dummies` dummy services plus the real one on node 1.
    pub fn install(&self, engine: RuleEngine, dummies: u32) -> Result<(), KernelPathError> {
        self.clear()?;
        let real = self.real_service();
        match engine {
            RuleEngine::Iptables => self.run_stdin(
                &self.nodes[0].0,
                "iptables-legacy-restore",
                &[],
                &rules::iptables(&real, dummies),
            ),
            RuleEngine::Nftables => self.run_stdin(
                &self.nodes[0].0,
                "nft",
                &["-f", "-"],
                &rules::nftables(&real, dummies),
            ),
        }
    }

    /// Time to add the `k`-th added service with the engine's incremental
    /// tool.
    pub fn time_add_one(&self, engine: RuleEngine, k: u16) -> Result<Duration, KernelPathError> {
        let real = self.real_service();
        let node = &self.nodes[0].0;
        let start = Instant::now();
        match engine {
            RuleEngine::Iptables => self.run_stdin(
                node,
                "iptables-legacy-restore",
                &["--noflush"],
                &rules::iptables_add_one(&real, k),
            )?,
            RuleEngine::Nftables => self.run_stdin(
                node,
                "nft",
                &["-f", "-"],
                &rules::nftables_add_one(&real, k),
            )?,
        }
        Ok(start.elapsed())
    }

    /// Remove every rule the kernel path installed on node 1.
    pub fn clear(&self) -> Result<(), KernelPathError> {
        let node = &self.nodes[0].0;
        let empty = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n";
        self.run_stdin(node, "iptables-legacy-restore", &[], empty)?;
        // Absent table: nft fails, which is the state we want.
        let _ = self.command(node, "nft").map(|mut c| {
            c.args(["delete", "table", "ip", "hive_bench"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
        });
        Ok(())
    }

    /// Remove the VXLAN devices and stop nginx (the lab's own `down` would
    /// also do it; this lets one lab host both paths in turn).
    pub fn down(self) -> Result<(), KernelPathError> {
        self.clear()?;
        for index in BACKEND_NODES {
            let pid_file = self.run_dir.join(format!("nginx-{index}.pid"));
            if let Ok(pid) = std::fs::read_to_string(&pid_file) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
        for (node, _) in &self.nodes {
            self.run(node, "ip", &["link", "del", VXLAN_DEV])?;
        }
        for (index, (node, _)) in self.backend_nodes() {
            // The task's veth goes with its namespace.
            self.run(node, "ip", &["link", "del", OVERLAY_BRIDGE])?;
            let task = self.task_netns(index);
            netns::remove(&task).map_err(|e| KernelPathError::Netns {
                path: task,
                detail: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// A bridge for the node's VXLAN device, as Docker's overlay network
    /// has. Bridged frames skip the node's netfilter, as in the underlay
    /// (`docs/lab.md`): the baseline pays for its rules, not for
    /// `br_netfilter`.
    fn bridge_overlay(&self, node: &str) -> Result<(), KernelPathError> {
        self.run(
            node,
            "ip",
            &["link", "add", OVERLAY_BRIDGE, "type", "bridge"],
        )?;
        self.run(
            node,
            "ip",
            &["link", "set", VXLAN_DEV, "master", OVERLAY_BRIDGE],
        )?;
        self.run(node, "ip", &["link", "set", OVERLAY_BRIDGE, "up"])?;
        for (key, value) in BRIDGE_WITHOUT_NETFILTER {
            // Absent without br_netfilter, and then nothing to turn off.
            if Path::new("/proc/sys").join(key.replace('.', "/")).exists() {
                self.run(node, "sysctl", &["-qw", &format!("{key}={value}")])?;
            }
        }
        Ok(())
    }

    /// The backend task's namespace on node `index`: a veth whose host side
    /// joins the overlay bridge, the task's address on the other, the node's
    /// overlay address as its gateway. The namespace is mounted under the
    /// lab's directory, so `hive lab down` removes it whatever happens here.
    fn start_task(&self, index: u8) -> Result<(), KernelPathError> {
        let node = &self.nodes[usize::from(index) - 1].0;
        let task = self.task_netns(index);
        if let Some(dir) = task.parent() {
            std::fs::create_dir_all(dir).map_err(|e| KernelPathError::Netns {
                path: task.clone(),
                detail: e.to_string(),
            })?;
        }
        netns::create_netns(&task).map_err(|e| KernelPathError::Netns {
            path: task.clone(),
            detail: e.to_string(),
        })?;
        let node_netns = self.lab.netns_path(node)?;
        let node_netns = node_netns
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| KernelPathError::Netns {
                path: node_netns.to_path_buf(),
                detail: "is not a named network namespace".into(),
            })?;
        let addr = format!("{}/24", task_addr(index));
        let mac = task_mac(index)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let gateway = overlay_addr(index).to_string();
        self.run_in_task(
            index,
            "ip",
            &[
                "link",
                "add",
                "eth0",
                "address",
                &mac,
                "mtu",
                OVERLAY_MTU,
                "type",
                "veth",
                "peer",
                "name",
                TASK_VETH,
                "mtu",
                OVERLAY_MTU,
                "netns",
                node_netns,
            ],
        )?;
        self.run_in_task(index, "ip", &["addr", "add", &addr, "dev", "eth0"])?;
        self.run_in_task(index, "ip", &["link", "set", "lo", "up"])?;
        // The ingress node's address too, as a direct-routing backend holds its virtual
        // address: the floor's frames arrive addressed to it (`Self::route_floor`).
        self.run_in_task(
            index,
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/32", self.ingress_addr()),
                "dev",
                "lo",
            ],
        )?;
        self.run_in_task(index, "ip", &["link", "set", "eth0", "up"])?;
        self.run_in_task(index, "ip", &["route", "add", "default", "via", &gateway])?;
        self.run(
            node,
            "ip",
            &["link", "set", TASK_VETH, "master", OVERLAY_BRIDGE, "up"],
        )
    }

    /// Where the backend task of node `index` has its network namespace.
    fn task_netns(&self, index: u8) -> PathBuf {
        naming::lab_dir(self.lab.name())
            .join("kernel-path")
            .join(format!("task-{index}.net"))
    }

    /// `program` inside the backend task's namespace of node `index`.
    fn task_command(&self, index: u8, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.task_netns(index).display()))
            .arg("--")
            .arg(program);
        command
    }

    fn run_in_task(&self, index: u8, program: &str, args: &[&str]) -> Result<(), KernelPathError> {
        let command = self.task_command(index, program);
        self.execute(&format!("task on node {index}"), command, program, args)
    }

    fn start_nginx(&self, index: u8) -> Result<(), KernelPathError> {
        let node = &self.nodes[index as usize - 1].0;
        let addr = task_addr(index);
        let dir = &self.run_dir;
        let conf = dir.join(format!("nginx-{index}.conf"));
        let body = format!(
            "worker_processes 1;\npid {pid};\nerror_log {dir}/nginx-{index}.err warn;\n\
             events {{ worker_connections 16384; }}\n\
             http {{\n  access_log off;\n  default_type text/plain;\n  keepalive_requests 100000000;\n\
             keepalive_timeout 120s;\n  client_body_temp_path {dir}/tmp-{index};\n\
             server {{\n    listen {addr}:80 backlog=4096;\n    listen {ingress}:80 backlog=4096;\n    location / {{ return 200 \"hello from {node}\\n\"; }}\n  }}\n}}\n",
            pid = dir.join(format!("nginx-{index}.pid")).display(),
            ingress = self.ingress_addr(),
            dir = dir.display(),
        );
        std::fs::create_dir_all(dir.join(format!("tmp-{index}")))
            .and_then(|()| std::fs::write(&conf, body))
            .map_err(|source| KernelPathError::Config {
                path: conf.clone(),
                source,
            })?;
        self.run_in_task(index, "nginx", &["-c", &conf.to_string_lossy()])?;
        wait_for_http(self, node, addr)
    }

    fn command(&self, node: &str, program: &str) -> Result<Command, KernelPathError> {
        Ok(self.lab.command(node, program)?)
    }

    fn run(&self, node: &str, program: &str, args: &[&str]) -> Result<(), KernelPathError> {
        let command = self.command(node, program)?;
        self.execute(node, command, program, args)
    }

    /// Run `command` (`program` with `args`, in `place`) to completion; its
    /// stderr becomes the error if it fails.
    fn execute(
        &self,
        place: &str,
        mut command: Command,
        program: &str,
        args: &[&str],
    ) -> Result<(), KernelPathError> {
        let out = command
            .args(args)
            .output()
            .map_err(|e| self.failed(place, program, args, e.to_string()))?;
        if !out.status.success() {
            let detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(self.failed(place, program, args, detail));
        }
        Ok(())
    }

    fn run_stdin(
        &self,
        node: &str,
        program: &str,
        args: &[&str],
        input: &str,
    ) -> Result<(), KernelPathError> {
        let mut child = self
            .command(node, program)?
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.failed(node, program, args, e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .map_err(|e| self.failed(node, program, args, e.to_string()))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| self.failed(node, program, args, e.to_string()))?;
        if !out.status.success() {
            let detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(self.failed(node, program, args, detail));
        }
        Ok(())
    }

    fn failed(&self, node: &str, program: &str, args: &[&str], detail: String) -> KernelPathError {
        KernelPathError::Command {
            node: node.to_string(),
            command: format!("{program} {}", args.join(" ")),
            detail,
        }
    }
}

/// Wait (bounded) until nginx answers on `addr:80` from its own node.
fn wait_for_http(path: &KernelPath<'_>, node: &str, addr: Ipv4Addr) -> Result<(), KernelPathError> {
    let waited = Duration::from_secs(5);
    let deadline = Instant::now() + waited;
    while Instant::now() < deadline {
        let mut probe = path.command(node, "bash")?;
        probe.args([
            "-c",
            &format!("exec 3<>/dev/tcp/{addr}/80 && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && head -c 15 <&3"),
        ]);
        let ok = probe
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(KernelPathError::BackendDown {
        node: node.to_string(),
        addr,
        waited,
    })
}
