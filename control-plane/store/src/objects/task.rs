//! A task: one replica of a service placed on one node (Swarm's `Task`), and Swarm's task state
//! machine.

use std::fmt;
use std::str::FromStr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use super::common::{Meta, Timestamp};
use super::service::{Endpoint, PortConfig, TaskSpec};

/// A task. The orchestrator creates it and owns `desired_state`; the allocator fills
/// `networks`; the scheduler sets `node_id`; the agent reports `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Task {
    pub id: String,
    pub meta: Meta,
    pub service_id: String,
    /// Replica number (1-based) of a replicated service; 0 for global tasks, which are keyed by
    /// node instead.
    pub slot: u64,
    /// `None` until the scheduler assigns the task (always set for global tasks).
    pub node_id: Option<String>,
    /// The service's task template when the task was made.
    pub spec: TaskSpec,
    /// The service's `spec_version` `spec` was copied from.
    pub spec_version: u64,
    /// The state the manager wants the task in (`RUNNING`, `READY`, `SHUTDOWN`, `REMOVE`,
    /// `COMPLETE`).
    pub desired_state: TaskState,
    pub status: TaskStatus,
    /// Addresses on each attached network, set by the allocator.
    pub networks: Vec<NetworkAttachment>,
    /// The service's endpoint when the task was allocated.
    pub endpoint: Option<Endpoint>,
    /// When the task was first reported `RUNNING` (Docker's `State.StartedAt`), set by the
    /// dispatcher: a rolling update counts the task's failure within `--update-monitor` of it
    /// (docs/lifecycle.md).
    pub started_at: Option<Timestamp>,
}

/// What the agent last reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskStatus {
    pub timestamp: Timestamp,
    pub state: TaskState,
    /// Human-readable progress (`preparing`, `started`).
    pub message: String,
    /// Why the task failed or was rejected; shown in the `ERROR` column.
    pub err: String,
    /// Set once the executor made the task's process.
    pub runtime: Option<RuntimeStatus>,
    /// Host-mode ports actually bound.
    pub port_status: Vec<PortConfig>,
    /// What the task's health check says; `None` without a check (docs/health.md).
    pub health: Option<super::health::Health>,
}

/// The executor's handle on a task (a container in Docker).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeStatus {
    pub runtime_id: String,
    pub pid: u32,
    pub exit_code: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkAttachment {
    pub network_id: String,
    /// The task's address with its network's prefix, e.g. `10.0.1.7/24` (stored as that
    /// string).
    pub addresses: Vec<Ipv4Network>,
    pub aliases: Vec<String>,
}

/// Swarm's task states (SwarmKit `api/types.proto`). A task only ever moves to a later state;
/// the derived ordering is that order, and [`TaskState::value`] gives Swarm's numbers.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Created by the orchestrator.
    #[default]
    New,
    /// Resources allocated; waiting for the scheduler.
    Pending,
    /// Node chosen; the dispatcher sends it to the agent.
    Assigned,
    /// Accepted by the agent.
    Accepted,
    /// Image being fetched, task being made.
    Preparing,
    /// Ready to start (a restart delay or rolling update may hold it here).
    Ready,
    Starting,
    Running,
    /// Exited with status 0.
    Complete,
    /// Stopped because the manager asked.
    Shutdown,
    /// Exited non-zero or turned unhealthy.
    Failed,
    /// Could not run on its node (image missing, port in use, constraints no longer met).
    Rejected,
    /// Desired state only: the service was removed or scaled down; the reaper deletes it.
    Remove,
    /// Its node has been down for over 24 hours.
    Orphaned,
}

impl Task {
    /// The task as a client may see it: without its spec's registry credentials.
    pub fn without_credentials(&self) -> Self {
        let mut task = self.clone();
        task.spec.container.registry_auth = None;
        task
    }
}

impl TaskState {
    pub const ALL: [TaskState; 14] = [
        Self::New,
        Self::Pending,
        Self::Assigned,
        Self::Accepted,
        Self::Preparing,
        Self::Ready,
        Self::Starting,
        Self::Running,
        Self::Complete,
        Self::Shutdown,
        Self::Failed,
        Self::Rejected,
        Self::Remove,
        Self::Orphaned,
    ];

    /// Swarm's numeric value (`NEW` = 0 … `ORPHANED` = 832).
    pub fn value(self) -> u16 {
        match self {
            Self::New => 0,
            Self::Pending => 64,
            Self::Assigned => 192,
            Self::Accepted => 256,
            Self::Preparing => 320,
            Self::Ready => 384,
            Self::Starting => 448,
            Self::Running => 512,
            Self::Complete => 576,
            Self::Shutdown => 640,
            Self::Failed => 704,
            Self::Rejected => 768,
            Self::Remove => 800,
            Self::Orphaned => 832,
        }
    }

    /// Lowercase name as the CLI prints it (`running`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Pending => "pending",
            Self::Assigned => "assigned",
            Self::Accepted => "accepted",
            Self::Preparing => "preparing",
            Self::Ready => "ready",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Complete => "complete",
            Self::Shutdown => "shutdown",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Remove => "remove",
            Self::Orphaned => "orphaned",
        }
    }

    /// Whether the task has stopped for good: any state after `RUNNING`.
    pub fn is_terminal(self) -> bool {
        self > Self::Running
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task state name that is not one of Swarm's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown task state \"{given}\"; expected one of new, pending, assigned, accepted, \
     preparing, ready, starting, running, complete, shutdown, failed, rejected, remove, orphaned"
)]
pub struct UnknownTaskState {
    pub given: String,
}

impl FromStr for TaskState {
    type Err = UnknownTaskState;

    /// Case-insensitive, as `docker service ps --filter desired-state=Running` accepts.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == lower)
            .ok_or_else(|| UnknownTaskState {
                given: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_follows_swarm_values() {
        for pair in TaskState::ALL.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].value() < pair[1].value());
        }
        assert_eq!(TaskState::Orphaned.value(), 832);
        assert!(!TaskState::Running.is_terminal());
        assert!(TaskState::Complete.is_terminal());
    }

    #[test]
    fn names_round_trip() {
        for state in TaskState::ALL {
            assert_eq!(state.to_string().parse::<TaskState>(), Ok(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
        }
        assert_eq!("Running".parse::<TaskState>(), Ok(TaskState::Running));
        assert_eq!("runing".parse::<TaskState>().unwrap_err().given, "runing",);
    }
}
