//! How a service's tasks are replaced by an update and by a rollback (Swarm's `UpdateConfig`,
//! used for both `UpdateConfig` and `RollbackConfig`), and where the last one stands
//! (`UpdateStatus`). Defaults are SwarmKit's (`api/defaults/service.go`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::common::Timestamp;

/// `--update-*` / `--rollback-*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdateConfig {
    /// Tasks replaced at once; 0 = all at once.
    pub parallelism: u64,
    /// Pause between batches.
    pub delay: Duration,
    pub failure_action: FailureAction,
    /// How long a new task must keep running before it counts as updated.
    pub monitor: Duration,
    /// Share of updated tasks that may fail before the failure action applies.
    pub max_failure_ratio: FailureRatio,
    pub order: UpdateOrder,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            parallelism: 1,
            delay: Duration::ZERO,
            failure_action: FailureAction::Pause,
            monitor: Duration::from_secs(5),
            max_failure_ratio: FailureRatio::default(),
            order: UpdateOrder::StopFirst,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureAction {
    #[default]
    Pause,
    Continue,
    Rollback,
}

impl FailureAction {
    /// `pause`, `continue` or `rollback` (Docker's spelling).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pause" => Self::Pause,
            "continue" => Self::Continue,
            "rollback" => Self::Rollback,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Continue => "continue",
            Self::Rollback => "rollback",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

impl UpdateOrder {
    /// `stop-first` or `start-first`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "stop-first" => Self::StopFirst,
            "start-first" => Self::StartFirst,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::StopFirst => "stop-first",
            Self::StartFirst => "start-first",
        }
    }
}

/// A ratio in `[0, 1]` (validated at the door), compared bit for bit so specs stay `Eq`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FailureRatio(pub f32);

impl Eq for FailureRatio {}

/// Where the last update or rollback of a service stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    #[default]
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
}

impl UpdateState {
    /// Docker's spelling (`UpdateStatus.State`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updating => "updating",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::RollbackStarted => "rollback_started",
            Self::RollbackPaused => "rollback_paused",
            Self::RollbackCompleted => "rollback_completed",
        }
    }

    /// A rollback's states.
    pub fn is_rollback(self) -> bool {
        matches!(
            self,
            Self::RollbackStarted | Self::RollbackPaused | Self::RollbackCompleted
        )
    }

    /// Whether the update (or rollback) still replaces tasks.
    pub fn in_progress(self) -> bool {
        matches!(self, Self::Updating | Self::RollbackStarted)
    }
}

/// `Service.UpdateStatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdateStatus {
    pub state: UpdateState,
    pub started_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    /// Docker's messages: `update in progress`, `update completed`, `update paused due to
    /// failure or early termination of task <id>`, `rollback completed` ...
    pub message: String,
}
