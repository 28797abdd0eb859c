//! Bulk throughput (issue 21, item 2; `hive mesh bench --bulk`): iperf3 from the lab's
//! `client` to one backend task on n2, both directions, one TCP stream, through every
//! path of the run: no mesh (`direct`: `client` routed straight to the kernel path's task
//! on n2), the kernel path (`iptables`: DNAT on n1's published port, MASQUERADE, kernel
//! VXLAN), the floor of any path through n1 (`floor`, `floor-tc`, `floor-min`, `floor-min-tc`: hops
//! that only rewrite the frames' Ethernet addresses; `floor-vxlan`: `floor-min` through hive's
//! tunnel, `crate::floor`) and hive's
//! mesh in each mode (`hive` = `snat`, `hive-dsr`, `hive-hybrid`, docs/dsr.md), n1's
//! published port to a hive task on n2. `floor-vxlan` and `hive-dsr` are measured a second
//! time with n1's frames to n2 past the lab's bridge (`floor-vxlan/switched`,
//! `hive-dsr/switched`; `hive_lab::wire`, `docs/dsr.md`, "The lab's wire"): what the
//! tunnel costs on this lab that it would not cost between machines. Gbit/s as the
//! receiver counts them and the sender's retransmits. Figures, never assertions.

use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use hive_dataplane::mesh::{Protocol, ServicePort, mode::MeshMode};
use hive_lab::{
    Lab,
    static_mesh::{ServiceDef, StaticMesh, StaticMeshError},
};
use serde::Serialize;

use crate::{
    floor::Floor,
    kernel_path::{KernelPath, KernelPathError},
};

/// Errors of a bulk run.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error(transparent)]
    Mesh(#[from] StaticMeshError),
    #[error(transparent)]
    KernelPath(#[from] KernelPathError),
    #[error("the floor forwarder: {0}")]
    Floor(#[from] hive_lab::floor_forward::FloorForwardError),
    #[error("lab: {0}")]
    Lab(#[from] hive_lab::LabError),
    #[error("the lab's wire: {0}")]
    Wire(#[from] hive_lab::wire::WireError),
    #[error("could not run iperf3: {0}; install it with `cargo xtask setup`")]
    Spawn(#[from] std::io::Error),
    #[error("iperf3 through {path} failed: {detail}")]
    Iperf { path: String, detail: String },
}

/// One iperf3 run.
#[derive(Debug, Clone, Serialize)]
pub struct BulkFigures {
    /// `direct` (no mesh), `iptables`, `hive` (snat), `hive-dsr`, `hive-hybrid`.
    pub path: String,
    pub direction: Direction,
    pub gbit_per_s: f64,
    /// Segments the sender retransmitted during the run.
    pub retransmits: u64,
}

/// Which way the bulk data flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// client → task.
    Upload,
    /// task → client (`iperf3 -R`): the direction direct return changes.
    Download,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        })
    }
}

/// One path and direction over the rounds: the median and the range.
#[derive(Debug, Clone, Serialize)]
pub struct BulkRow {
    pub path: String,
    pub direction: Direction,
    pub gbit_per_s: f64,
    pub min_gbit_per_s: f64,
    pub max_gbit_per_s: f64,
    /// The median of the runs' retransmits.
    pub retransmits: u64,
    pub runs: usize,
}

const SERVICE: &str = "benchbulk0000000000000001";
/// iperf3's port: the published port on n1 and the backends' port.
const PORT: u16 = 5201;
/// The path's names, in the first round's order.
const DIRECT: &str = "direct";
const IPTABLES: &str = "iptables";

/// One path's turn in a round.
#[derive(Debug, Clone, Copy)]
enum Turn {
    Direct,
    Floor(Floor, Wire),
    Iptables,
    Hive(MeshMode, Wire),
}

/// How n1's frames to n2 cross the lab's underlay (`hive_lab::wire`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// Through the lab's bridge, as every other frame.
    Bridged,
    /// Past the bridge as XDP frames, as a switch hands them on: the row's name ends in
    /// [`SWITCHED`]. Only for paths on which n2 runs XDP.
    Switched,
}

/// The end of the name of a row measured on the [`Wire::Switched`] wire.
const SWITCHED: &str = "/switched";

impl Wire {
    fn row(self, path: &str) -> String {
        match self {
            Wire::Bridged => path.to_owned(),
            Wire::Switched => format!("{path}{SWITCHED}"),
        }
    }

    /// n1's hop to n2 switched for as long as the returned guard lives.
    fn apply(self, lab: &Lab) -> Result<Option<hive_lab::wire::Switched>, BulkError> {
        Ok(match self {
            Wire::Bridged => None,
            Wire::Switched => Some(hive_lab::wire::switch(lab, "n1", BACKEND_NODE)?),
        })
    }
}

/// The node of the backend every path reaches.
const BACKEND_NODE: &str = "n2";

const TURNS: [Turn; 12] = [
    Turn::Direct,
    Turn::Floor(Floor::ALL[0], Wire::Bridged),
    Turn::Floor(Floor::ALL[1], Wire::Bridged),
    Turn::Floor(Floor::ALL[2], Wire::Bridged),
    Turn::Floor(Floor::ALL[3], Wire::Bridged),
    Turn::Floor(Floor::ALL[4], Wire::Bridged),
    Turn::Floor(Floor::Vxlan, Wire::Switched),
    Turn::Iptables,
    Turn::Hive(MeshMode::Snat, Wire::Bridged),
    Turn::Hive(MeshMode::Dsr, Wire::Bridged),
    Turn::Hive(MeshMode::Dsr, Wire::Switched),
    Turn::Hive(MeshMode::Hybrid, Wire::Bridged),
];

/// Every path in both directions, `rounds` times, each run `seconds` long, on a lab where
/// `kernel` is up (its VXLAN devices and task namespaces). The order of the paths turns
/// by one each round, as in the connection runs (`crate::mesh`).
pub fn measure(
    lab: &Lab,
    kernel: &KernelPath<'_>,
    seconds: u32,
    rounds: u32,
) -> Result<Vec<BulkFigures>, BulkError> {
    let server = kernel.spawn_in_bulk_backend("iperf3", &["-s", "-p", &PORT.to_string()])?;
    let _server = Reaper(server);
    let n1 = lab.node_addr("n1")?;
    let mut out = Vec::new();
    for round in 1..=rounds.max(1) {
        let mut turns = TURNS;
        turns.rotate_left((round as usize - 1) % TURNS.len());
        for turn in turns {
            match turn {
                Turn::Direct => {
                    kernel.route_client_to_backends()?;
                    let measured = both_ways(lab, DIRECT, kernel.bulk_backend(), seconds);
                    let unrouted = kernel.unroute_client();
                    out.extend(measured?);
                    unrouted?;
                }
                Turn::Floor(floor, wire) => out.extend(crate::floor::through(
                    lab,
                    kernel,
                    floor,
                    PORT,
                    true,
                    || {
                        let _wire = wire.apply(lab)?;
                        both_ways(lab, &wire.row(floor.name()), n1, seconds)
                    },
                )?),
                Turn::Iptables => {
                    kernel.install_bulk(PORT)?;
                    let measured = both_ways(lab, IPTABLES, n1, seconds);
                    let cleared = kernel.clear();
                    out.extend(measured?);
                    cleared?;
                }
                Turn::Hive(mode, wire) => out.extend(through_hive(lab, mode, wire, n1, seconds)?),
            }
        }
    }
    Ok(out)
}

/// hive in `mode` on a mesh of its own (torn down afterwards, so the kernel path has n1's
/// port to itself again).
fn through_hive(
    lab: &Lab,
    mode: MeshMode,
    wire: Wire,
    n1: Ipv4Addr,
    seconds: u32,
) -> Result<Vec<BulkFigures>, BulkError> {
    let mut mesh = StaticMesh::new(lab, 0x00b0_1c00)?;
    mesh.set_mesh_mode(mode);
    let measured = (|| -> Result<Vec<BulkFigures>, BulkError> {
        mesh.add_task(
            "ipf2",
            BACKEND_NODE,
            "iperf3",
            &["-s", "-p", &PORT.to_string()],
        )?;
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
        // Today's path keeps its name, as in the connection rows.
        let path = match mode {
            MeshMode::Snat => "hive".to_owned(),
            other => format!("hive-{other}"),
        };
        let _wire = wire.apply(lab)?;
        both_ways(lab, &wire.row(&path), n1, seconds)
    })();
    let down = mesh.teardown();
    let figures = measured?;
    down?;
    Ok(figures)
}

fn both_ways(
    lab: &Lab,
    path: &str,
    to: Ipv4Addr,
    seconds: u32,
) -> Result<Vec<BulkFigures>, BulkError> {
    [Direction::Upload, Direction::Download]
        .into_iter()
        .map(|direction| run(lab, path, to, seconds, direction))
        .collect()
}

/// How long a server that has just been started may take to accept.
const SERVER_START: Duration = Duration::from_secs(5);

fn run(
    lab: &Lab,
    path: &str,
    to: Ipv4Addr,
    seconds: u32,
    direction: Direction,
) -> Result<BulkFigures, BulkError> {
    let deadline = Instant::now() + SERVER_START;
    let json = loop {
        let mut cmd: Command = lab.command("client", "iperf3")?;
        cmd.args([
            "-c",
            &to.to_string(),
            "-p",
            &PORT.to_string(),
            "-t",
            &seconds.to_string(),
            "-J",
        ]);
        if direction == Direction::Download {
            cmd.arg("-R");
        }
        let Output { status, stdout, .. } = cmd.stderr(Stdio::null()).output()?;
        let json: serde_json::Value =
            serde_json::from_slice(&stdout).map_err(|e| BulkError::Iperf {
                path: path.to_owned(),
                detail: format!("its report is not JSON: {e}"),
            })?;
        if status.success() {
            break json;
        }
        let detail = json["error"]
            .as_str()
            .unwrap_or("no error given")
            .to_owned();
        // A server started a moment ago may not listen yet.
        if detail.contains("unable to connect") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        return Err(BulkError::Iperf {
            path: path.to_owned(),
            detail,
        });
    };
    let end = &json["end"];
    let figures = BulkFigures {
        path: path.to_owned(),
        direction,
        gbit_per_s: end["sum_received"]["bits_per_second"]
            .as_f64()
            .ok_or_else(|| BulkError::Iperf {
                path: path.to_owned(),
                detail: "its report has no end.sum_received.bits_per_second".into(),
            })?
            / 1e9,
        retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
    };
    eprintln!(
        "  {:<20} {:<8} {:>6.2} Gbit/s {:>6} retransmits",
        figures.path, figures.direction, figures.gbit_per_s, figures.retransmits
    );
    Ok(figures)
}

/// One row per path and direction, in the order first measured.
pub fn medians(runs: &[BulkFigures]) -> Vec<BulkRow> {
    let mut rows: Vec<BulkRow> = Vec::new();
    for run in runs {
        if rows
            .iter()
            .any(|r| r.path == run.path && r.direction == run.direction)
        {
            continue;
        }
        let same = || {
            runs.iter()
                .filter(|r| r.path == run.path && r.direction == run.direction)
        };
        let mut rates: Vec<f64> = same().map(|r| r.gbit_per_s).collect();
        rates.sort_unstable_by(f64::total_cmp);
        let mut retransmits: Vec<u64> = same().map(|r| r.retransmits).collect();
        retransmits.sort_unstable();
        rows.push(BulkRow {
            path: run.path.clone(),
            direction: run.direction,
            gbit_per_s: rates[rates.len() / 2],
            min_gbit_per_s: rates[0],
            max_gbit_per_s: rates[rates.len() - 1],
            retransmits: retransmits[retransmits.len() / 2],
            runs: rates.len(),
        });
    }
    rows
}

/// The human table: per path, both directions with their range, and the ratios to no mesh
/// and to iptables.
pub fn table(rows: &[BulkRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<8} {:>7} {:>13} {:>7} {:>8} {:>8}",
        "BULK PATH", "DIR", "Gbit/s", "range", "retr.", "÷direct", "÷ipt"
    );
    let of = |path: &str, direction| {
        rows.iter()
            .find(|r| r.path == path && r.direction == direction)
            .map(|r| r.gbit_per_s)
    };
    let ratio = |a: f64, b: Option<f64>| match b {
        Some(b) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".to_owned(),
    };
    for r in rows {
        let _ = writeln!(
            out,
            "{:<20} {:<8} {:>7.2} {:>13} {:>7} {:>8} {:>8}",
            r.path,
            r.direction.to_string(),
            r.gbit_per_s,
            format!("{:.2}–{:.2}", r.min_gbit_per_s, r.max_gbit_per_s),
            r.retransmits,
            ratio(r.gbit_per_s, of(DIRECT, r.direction)),
            ratio(r.gbit_per_s, of(IPTABLES, r.direction)),
        );
    }
    out.push_str(
        "(iperf3, one TCP stream, client → n1's published port → a task on n2; direct: client \
         routed straight to the task, no mesh; each figure the median over the rounds, range \
         min–max, retransmits the sender's median; floor*: n1 forwarding by MACs alone, \
         the least any path through n1 costs here; floor-vxlan: floor-min through hive's \
         VXLAN tunnel with no other work; /switched: n1's frames to n2 past the lab's bridge \
         as XDP frames, which n2's veth then does not copy, as between machines; \
         docs/dsr.md)\n",
    );
    out
}

/// Kills and reaps a server when the run ends, also on failure.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &str, direction: Direction, gbit: f64, retr: u64) -> BulkFigures {
        BulkFigures {
            path: path.into(),
            direction,
            gbit_per_s: gbit,
            retransmits: retr,
        }
    }

    #[test]
    fn rounds_become_one_row_per_path_and_direction() {
        let runs = vec![
            run("direct", Direction::Upload, 4.0, 10),
            run("direct", Direction::Download, 5.0, 0),
            run("hive-dsr", Direction::Download, 4.5, 3),
            run("direct", Direction::Upload, 3.0, 30),
            run("direct", Direction::Upload, 5.0, 20),
        ];
        let rows = medians(&runs);
        assert_eq!(rows.len(), 3);
        let up = &rows[0];
        assert_eq!(
            (up.path.as_str(), up.direction),
            ("direct", Direction::Upload)
        );
        assert_eq!(
            (up.gbit_per_s, up.min_gbit_per_s, up.max_gbit_per_s),
            (4.0, 3.0, 5.0)
        );
        assert_eq!((up.retransmits, up.runs), (20, 3));
    }

    #[test]
    fn the_table_divides_by_no_mesh_and_iptables_in_the_same_direction() {
        let rows = medians(&[
            run("direct", Direction::Download, 4.0, 0),
            run("iptables", Direction::Download, 2.0, 0),
            run("hive-dsr", Direction::Download, 3.0, 0),
            run("hive-dsr", Direction::Upload, 9.0, 0),
        ]);
        let table = table(&rows);
        let dsr = table
            .lines()
            .find(|l| l.starts_with("hive-dsr") && l.contains("download"))
            .unwrap();
        let cells: Vec<&str> = dsr.split_whitespace().collect();
        assert_eq!(&cells[cells.len() - 2..], ["0.75", "1.50"], "{dsr}");
        let upload = table.lines().find(|l| l.contains("upload")).unwrap();
        assert!(upload.trim_end().ends_with("-        -"), "{upload}");
    }
}
