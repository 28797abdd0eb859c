//! Bulk throughput (issue 21, item 2): iperf3 from the lab's `client` through n1's
//! published port to one backend on n2, both directions, through hive's mesh in each mode
//! (docs/dsr.md), beside iperf3 straight to n2 with no mesh at all. Gbit/s and the
//! sender's retransmits. Figures, never assertions.
//!
//! Not yet here: the iptables path (`kernel_path`) in the same run.

use std::{
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use hive_dataplane::{
    lab::Lab,
    mesh::{Protocol, ServicePort, mode::MeshMode},
    static_mesh::{ServiceDef, StaticMesh, StaticMeshError},
};
use serde::Serialize;

/// Errors of a bulk run.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error(transparent)]
    Mesh(#[from] StaticMeshError),
    #[error("lab: {0}")]
    Lab(#[from] hive_dataplane::lab::LabError),
    #[error("running iperf3: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("iperf3 failed: {0}")]
    Iperf(String),
}

/// One iperf3 run.
#[derive(Debug, Clone, Serialize)]
pub struct BulkFigures {
    /// `direct` (no mesh, straight to n2), or `hive-snat`, `hive-dsr`, `hive-hybrid`.
    pub path: String,
    /// `upload` (client → task) or `download` (task → client, `iperf3 -R`).
    pub direction: String,
    pub gbit_per_s: f64,
    pub retransmits: u64,
}

const SERVICE: &str = "benchbulk0000000000000001";
const PORT: u16 = 5201;
const DIRECT_PORT: u16 = 5202;

/// Every path in both directions, `rounds` times, each run `seconds` long.
pub fn measure(lab: &Lab, seconds: u32, rounds: u32) -> Result<Vec<BulkFigures>, BulkError> {
    let mut out = Vec::new();
    let n2 = lab.node_addr("n2")?;
    let n1 = lab.node_addr("n1")?;
    let server = lab
        .command("n2", "iperf3")?
        .args(["-s", "-p", &DIRECT_PORT.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let _server = Reaper(server);
    let mut mesh = StaticMesh::new(lab, 0x00b0_1c00)?;
    let measured = (|| -> Result<(), BulkError> {
        mesh.add_task("ipf2", "n2", "iperf3", &["-s", "-p", &PORT.to_string()])?;
        mesh.set_service(ServiceDef {
            id: SERVICE.to_owned(),
            name: "bulk".to_owned(),
            vip: None,
            ports: vec![ServicePort {
                protocol: Protocol::Tcp,
                target_port: PORT,
                published_port: Some(PORT),
            }],
            backends: vec!["ipf2".to_owned()],
        });
        mesh.apply()?;
        std::thread::sleep(Duration::from_millis(500));
        for _ in 0..rounds.max(1) {
            for reverse in [false, true] {
                out.push(run(lab, "direct", n2, DIRECT_PORT, seconds, reverse)?);
            }
            for mode in [MeshMode::Snat, MeshMode::Dsr, MeshMode::Hybrid] {
                mesh.set_mesh_mode(mode);
                mesh.apply()?;
                for reverse in [false, true] {
                    out.push(run(
                        lab,
                        &format!("hive-{mode}"),
                        n1,
                        PORT,
                        seconds,
                        reverse,
                    )?);
                }
            }
        }
        Ok(())
    })();
    let down = mesh.teardown();
    measured?;
    down?;
    Ok(out)
}

fn run(
    lab: &Lab,
    path: &str,
    to: std::net::Ipv4Addr,
    port: u16,
    seconds: u32,
    reverse: bool,
) -> Result<BulkFigures, BulkError> {
    let mut cmd: Command = lab.command("client", "iperf3")?;
    cmd.args([
        "-c",
        &to.to_string(),
        "-p",
        &port.to_string(),
        "-t",
        &seconds.to_string(),
        "-J",
    ]);
    if reverse {
        cmd.arg("-R");
    }
    let Output { status, stdout, .. } = cmd.stderr(Stdio::null()).output()?;
    let json: serde_json::Value = serde_json::from_slice(&stdout)
        .map_err(|e| BulkError::Iperf(format!("{path}: not JSON: {e}")))?;
    if !status.success() {
        return Err(BulkError::Iperf(format!("{path}: {}", json["error"])));
    }
    let end = &json["end"];
    let figures = BulkFigures {
        path: path.to_owned(),
        direction: if reverse { "download" } else { "upload" }.to_owned(),
        gbit_per_s: end["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e9,
        retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
    };
    eprintln!(
        "  {:<12} {:<8} {:>6.2} Gbit/s {:>6} retransmits",
        figures.path, figures.direction, figures.gbit_per_s, figures.retransmits
    );
    Ok(figures)
}

/// Kills and reaps the direct path's server when the run ends, also on failure.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
