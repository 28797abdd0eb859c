//! `hive info`: the swarm section of `docker info`, line for line
//! (docker/cli `cli/command/system/info.go`, `printSwarmInfo`).

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use super::output::{CliFailure, human_duration, run_client};
use crate::api::pb;
use crate::client::DaemonClient;
use crate::manager::timers;
use crate::store::StoreConfig;

pub fn run(host: Option<&str>) -> anyhow::Result<ExitCode> {
    run_client(async move {
        let mut client = DaemonClient::connect(host).await?;
        let info = client.swarm.info(pb::InfoRequest {}).await?.into_inner();
        print!("{}", render(&info));
        // As docker's, warnings go to stderr, after the report.
        for warning in warnings(&info) {
            eprintln!("{warning}");
        }
        Ok::<(), CliFailure>(())
    })
}

/// `Election Tick` as hive's Raft really runs: the fewest heartbeat ticks a follower goes
/// without a heartbeat before it stands for election, read from the configuration the managers
/// use (`manager::timers` on top of the store's defaults). openraft 0.9 makes a follower wait
/// for the leader lease (`election_timeout_max`) plus its own timeout drawn from
/// `[election_timeout_min, election_timeout_max)`; with a 100 ms heartbeat, 600 ms and
/// 300–600 ms that is 9 to 12 ticks, so 9. Swarm's 10 counts its 1 s ticks, of which
/// it waits 10 to 20; hive prints its own figure rather than Swarm's.
pub fn election_tick() -> u64 {
    let mut config = StoreConfig::new("", 0);
    timers::apply(&mut config);
    let raft = &config.raft;
    (raft.election_timeout_max + raft.election_timeout_min) / raft.heartbeat_interval
}

/// The text of `hive info`.
pub fn render(info: &pb::InfoResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Server:");
    let _ = writeln!(out, " Server Version: {}", env!("CARGO_PKG_VERSION"));
    let state = match info.state() {
        pb::LocalNodeState::Inactive => "inactive",
        pb::LocalNodeState::Pending => "pending",
        pb::LocalNodeState::Active => "active",
        pb::LocalNodeState::Error => "error",
        pb::LocalNodeState::Locked => "locked",
    };
    let _ = writeln!(out, " Swarm: {state}");
    if info.state() == pb::LocalNodeState::Error && !info.error.is_empty() {
        let _ = writeln!(out, "  Error: {}", info.error);
    }
    if info.state() != pb::LocalNodeState::Active {
        return out;
    }
    let _ = writeln!(out, "  NodeID: {}", info.node_id);
    let _ = writeln!(out, "  Is Manager: {}", info.is_manager);
    if info.is_manager {
        let settings = info.settings.clone().unwrap_or_default();
        let _ = writeln!(out, "  ClusterID: {}", info.cluster_id);
        let _ = writeln!(out, "  Managers: {}", info.managers);
        let _ = writeln!(out, "  Nodes: {}", info.nodes);
        if !info.default_addr_pool.is_empty() {
            let _ = writeln!(
                out,
                "  Default Address Pool: {}",
                info.default_addr_pool.join(" ")
            );
            let _ = writeln!(out, "  SubnetSize: {}", info.subnet_size);
        }
        if info.data_path_port > 0 {
            let _ = writeln!(out, "  Data Path Port: {}", info.data_path_port);
        }
        let _ = writeln!(
            out,
            "  Mesh Mode: {}",
            settings.mesh_mode.as_deref().unwrap_or("snat")
        );
        let _ = writeln!(out, "  Orchestration:");
        let _ = writeln!(
            out,
            "   Task History Retention Limit: {}",
            settings.task_history_limit.unwrap_or(5)
        );
        let _ = writeln!(out, "  Raft:");
        let _ = writeln!(
            out,
            "   Snapshot Interval: {}",
            settings.snapshot_interval.unwrap_or(10_000)
        );
        let _ = writeln!(out, "   Number of Old Snapshots to Retain: 0");
        let _ = writeln!(out, "   Heartbeat Tick: 1");
        let _ = writeln!(out, "   Election Tick: {}", election_tick());
        let _ = writeln!(out, "  Dispatcher:");
        let _ = writeln!(
            out,
            "   Heartbeat Period: {}",
            human_duration(Duration::from_millis(
                settings.dispatcher_heartbeat_ms.unwrap_or(5_000)
            ))
        );
        let _ = writeln!(out, "  CA Configuration:");
        let _ = writeln!(
            out,
            "   Expiry Duration: {}",
            human_duration(Duration::from_secs(
                settings.cert_expiry_secs.unwrap_or(2160 * 3600)
            ))
        );
        let _ = writeln!(out, "   Force Rotate: 0");
        let _ = writeln!(out, "  Autolock Managers: false");
        let _ = writeln!(out, "  Root Rotation In Progress: false");
    }
    let _ = writeln!(out, "  Node Address: {}", info.node_addr);
    if !info.manager_addrs.is_empty() {
        let _ = writeln!(out, "  Manager Addresses:");
        for addr in &info.manager_addrs {
            let _ = writeln!(out, "   {addr}");
        }
    }
    out
}

/// What `hive info` warns about (docker prints its `Warnings` the same way, one per line).
pub fn warnings(info: &pb::InfoResponse) -> Vec<String> {
    let mut out = Vec::new();
    if !info.dataplane_error.is_empty() {
        out.push(format!(
            "WARNING: the data plane of this node failed to load: {}; tasks that need networks or published ports are refused",
            info.dataplane_error
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_data_plane_is_a_warning() {
        let mut info = pb::InfoResponse {
            state: pb::LocalNodeState::Active.into(),
            ..Default::default()
        };
        assert!(warnings(&info).is_empty());
        info.dataplane_error = "netlink: permission denied".into();
        assert_eq!(
            warnings(&info),
            [
                "WARNING: the data plane of this node failed to load: netlink: permission denied; \
              tasks that need networks or published ports are refused"
            ]
        );
    }

    #[test]
    fn the_election_tick_is_the_configured_wait_in_heartbeats() {
        // 600 ms lease + at least 300 ms of its own timeout, at one heartbeat per 100 ms.
        assert_eq!(election_tick(), 9);
        let info = pb::InfoResponse {
            state: pb::LocalNodeState::Active.into(),
            is_manager: true,
            ..Default::default()
        };
        let text = render(&info);
        assert!(
            text.contains("   Heartbeat Tick: 1\n   Election Tick: 9\n"),
            "{text}"
        );
    }
}
