//! The agent's half of draining before a stop (docs/lifecycle.md): it tells the leader which
//! mesh version this node's data plane applied, and before a task the manager is stopping
//! gets its stop signal, asks the leader to wait until every node applied the mesh that took
//! the task out ([`MeshLink::drained`]).

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::Channel;

use crate::api::pb;
use crate::api::pb::dispatcher_client::DispatcherClient;

/// How long a stop waits for the leader's answer: its own bound and a margin.
const CALL_BOUND: Duration = Duration::from_secs(7);
/// Without a leader to ask (between sessions), how long a stop waits instead: a mesh change
/// takes milliseconds to reach and be applied by every node in a healthy swarm.
const FALLBACK_WAIT: Duration = Duration::from_secs(1);

/// The session a link asks through.
#[derive(Debug, Clone)]
struct Current {
    client: DispatcherClient<Channel>,
    session_id: String,
}

#[derive(Debug)]
pub struct MeshLink {
    /// Mesh version this node's data plane applied.
    applied: watch::Sender<u64>,
    /// Latest assignment version received from the leader.
    received: watch::Sender<u64>,
    current: Mutex<Option<Current>>,
}

impl Default for MeshLink {
    fn default() -> Self {
        Self {
            applied: watch::Sender::new(0),
            received: watch::Sender::new(0),
            current: Mutex::new(None),
        }
    }
}

impl MeshLink {
    /// This node's data plane applied the mesh of `version`.
    pub fn set_applied(&self, version: u64) {
        self.applied.send_if_modified(|v| {
            let newer = version > *v;
            *v = (*v).max(version);
            newer
        });
    }

    /// Follows what this node applied (for the session to report it).
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// An assignment of `version` arrived (store versions only grow, across leaders too).
    pub fn set_received(&self, version: u64) {
        self.received.send_modify(|v| *v = (*v).max(version));
    }

    /// The session with the leader opened (`Some`) or ended (`None`).
    pub fn set_session(&self, session: Option<(DispatcherClient<Channel>, String)>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
            session.map(|(client, session_id)| Current { client, session_id });
    }

    /// Returns once every node applied the mesh this node last received (in which the task
    /// about to stop is no backend any more), or the leader's bound ran out; without a
    /// leader, after [`FALLBACK_WAIT`].
    pub async fn drained(&self) {
        let version = *self.received.borrow();
        self.drained_at(version).await;
    }

    /// Returns once every node applied the mesh of `version` (a store version in which the
    /// task about to stop is no backend any more), or the leader's bound ran out; without a
    /// leader, after [`FALLBACK_WAIT`].
    pub async fn drained_at(&self, version: u64) {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(Current {
            mut client,
            session_id,
        }) = current
        else {
            tokio::time::sleep(FALLBACK_WAIT).await;
            return;
        };
        let mut request = tonic::Request::new(pb::WaitMeshAppliedRequest {
            session_id,
            version,
        });
        request.set_timeout(CALL_BOUND);
        let started = tokio::time::Instant::now();
        match client.wait_mesh_applied(request).await {
            Ok(reply) => {
                let laggards = reply.into_inner().laggards;
                tracing::debug!(version, waited = ?started.elapsed(), ?laggards, "agent: mesh drained");
            }
            Err(status) => {
                tracing::info!(version, %status, "agent: could not ask the leader to wait for the mesh; waiting a moment instead");
                tokio::time::sleep(FALLBACK_WAIT).await;
            }
        }
    }
}
