//! Tasks, store ↔ wire.

use super::wire::{WireError, enumeration, meta_of, timestamp, timestamp_of};
use crate::api::pb;
use crate::store::objects::{
    Endpoint, NetworkAttachment, RuntimeStatus, Task, TaskSpec, TaskState, TaskStatus,
};

pub fn task_state(s: TaskState) -> pb::TaskState {
    use pb::TaskState as P;
    match s {
        TaskState::New => P::New,
        TaskState::Pending => P::Pending,
        TaskState::Assigned => P::Assigned,
        TaskState::Accepted => P::Accepted,
        TaskState::Preparing => P::Preparing,
        TaskState::Ready => P::Ready,
        TaskState::Starting => P::Starting,
        TaskState::Running => P::Running,
        TaskState::Complete => P::Complete,
        TaskState::Shutdown => P::Shutdown,
        TaskState::Failed => P::Failed,
        TaskState::Rejected => P::Rejected,
        TaskState::Remove => P::Remove,
        TaskState::Orphaned => P::Orphaned,
    }
}

pub fn task_state_of(field: &'static str, value: i32) -> Result<TaskState, WireError> {
    use pb::TaskState as P;
    Ok(match enumeration(field, value)? {
        P::New => TaskState::New,
        P::Pending => TaskState::Pending,
        P::Assigned => TaskState::Assigned,
        P::Accepted => TaskState::Accepted,
        P::Preparing => TaskState::Preparing,
        P::Ready => TaskState::Ready,
        P::Starting => TaskState::Starting,
        P::Running => TaskState::Running,
        P::Complete => TaskState::Complete,
        P::Shutdown => TaskState::Shutdown,
        P::Failed => TaskState::Failed,
        P::Rejected => TaskState::Rejected,
        P::Remove => TaskState::Remove,
        P::Orphaned => TaskState::Orphaned,
    })
}

impl From<&TaskStatus> for pb::TaskStatus {
    fn from(s: &TaskStatus) -> Self {
        Self {
            timestamp: Some(timestamp(s.timestamp)),
            state: task_state(s.state).into(),
            message: s.message.clone(),
            err: s.err.clone(),
            runtime: s.runtime.as_ref().map(|r| pb::RuntimeStatus {
                runtime_id: r.runtime_id.clone(),
                pid: r.pid,
                exit_code: r.exit_code,
            }),
            port_status: s.port_status.iter().map(pb::PortConfig::from).collect(),
            health: s.health.map(|h| i32::from(super::health::task_health(h))),
        }
    }
}

impl TryFrom<pb::TaskStatus> for TaskStatus {
    type Error = WireError;

    fn try_from(s: pb::TaskStatus) -> Result<Self, WireError> {
        Ok(Self {
            timestamp: timestamp_of(s.timestamp.as_ref()),
            state: task_state_of("TaskStatus.state", s.state)?,
            message: s.message,
            err: s.err,
            runtime: s.runtime.map(|r| RuntimeStatus {
                runtime_id: r.runtime_id,
                pid: r.pid,
                exit_code: r.exit_code,
            }),
            port_status: super::service::ports_of(s.port_status)?,
            health: super::health::task_health_of(s.health)?,
        })
    }
}

impl From<&NetworkAttachment> for pb::NetworkAttachment {
    fn from(n: &NetworkAttachment) -> Self {
        Self {
            network_id: n.network_id.clone(),
            addresses: n.addresses.iter().map(ToString::to_string).collect(),
            aliases: n.aliases.clone(),
        }
    }
}

impl TryFrom<pb::NetworkAttachment> for NetworkAttachment {
    type Error = WireError;

    fn try_from(n: pb::NetworkAttachment) -> Result<Self, WireError> {
        Ok(Self {
            network_id: n.network_id,
            addresses: n
                .addresses
                .iter()
                .map(|a| super::wire::ipv4_network("NetworkAttachment.addresses", a))
                .collect::<Result<_, _>>()?,
            aliases: n.aliases,
        })
    }
}

impl From<&Task> for pb::Task {
    fn from(t: &Task) -> Self {
        Self {
            id: t.id.clone(),
            version: t.meta.version,
            created_at: Some(timestamp(t.meta.created_at)),
            updated_at: Some(timestamp(t.meta.updated_at)),
            service_id: t.service_id.clone(),
            slot: t.slot,
            node_id: t.node_id.clone(),
            spec: Some((&t.spec).into()),
            spec_version: t.spec_version,
            desired_state: task_state(t.desired_state).into(),
            status: Some((&t.status).into()),
            networks: t.networks.iter().map(pb::NetworkAttachment::from).collect(),
            endpoint: t.endpoint.as_ref().map(pb::Endpoint::from),
            started_at: t.started_at.map(timestamp),
        }
    }
}

impl TryFrom<pb::Task> for Task {
    type Error = WireError;

    fn try_from(t: pb::Task) -> Result<Self, WireError> {
        Ok(Self {
            meta: meta_of(t.version, t.created_at.as_ref(), t.updated_at.as_ref()),
            id: t.id,
            service_id: t.service_id,
            slot: t.slot,
            node_id: t.node_id,
            spec: t
                .spec
                .map(TaskSpec::try_from)
                .transpose()?
                .unwrap_or_default(),
            spec_version: t.spec_version,
            desired_state: task_state_of("Task.desired_state", t.desired_state)?,
            status: t
                .status
                .map(TaskStatus::try_from)
                .transpose()?
                .unwrap_or_default(),
            networks: t
                .networks
                .into_iter()
                .map(NetworkAttachment::try_from)
                .collect::<Result<_, _>>()?,
            endpoint: t.endpoint.map(Endpoint::try_from).transpose()?,
            started_at: t.started_at.as_ref().map(|t| timestamp_of(Some(t))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::objects::{PortConfig, Timestamp};

    #[test]
    fn a_task_survives_the_wire() {
        let task = Task {
            id: "t1".into(),
            service_id: "s1".into(),
            slot: 2,
            node_id: Some("n1".into()),
            spec_version: 4,
            desired_state: TaskState::Shutdown,
            status: TaskStatus {
                timestamp: Timestamp {
                    seconds: 9,
                    nanos: 1,
                },
                state: TaskState::Failed,
                message: "started".into(),
                err: "exit 1".into(),
                runtime: Some(RuntimeStatus {
                    runtime_id: "r".into(),
                    pid: 42,
                    exit_code: 1,
                }),
                port_status: vec![PortConfig {
                    target_port: 80,
                    published_port: 8080,
                    ..PortConfig::default()
                }],
                health: Some(crate::store::objects::Health::Unhealthy),
            },
            networks: vec![NetworkAttachment {
                network_id: "net".into(),
                addresses: vec!["10.0.0.3/24".parse().unwrap()],
                aliases: vec!["web".into()],
            }],
            endpoint: Some(Endpoint::default()),
            ..Task::default()
        };
        assert_eq!(Task::try_from(pb::Task::from(&task)).unwrap(), task);
        for state in TaskState::ALL {
            let wire = i32::from(task_state(state));
            assert_eq!(wire, i32::from(state.value()));
            assert_eq!(task_state_of("state", wire), Ok(state));
        }
        let plain = Task::default();
        assert_eq!(Task::try_from(pb::Task::from(&plain)).unwrap(), plain);
    }
}
