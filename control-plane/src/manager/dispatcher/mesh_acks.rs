//! Which store version of the mesh each node has applied (docs/lifecycle.md).
//!
//! Every node's assignment stream sends the mesh changes that concern it, each message with
//! the store version it was cut at; the agent reports the version its data plane applied
//! (`ReportMeshApplied`). A message is sent only when something changed for the node, so a
//! node that acknowledged every message it was sent has also applied every later version the
//! stream looked at and found nothing in for it: its *applied* version is then the stream's
//! `seen` version. Before stopping a task the manager took out of the mesh, the task's agent
//! asks ([`MeshAcks::wait`]) until every node with an open stream applied that version, so
//! no node still sends it new flows when it gets its stop signal.
//!
//! A node without an open stream is not waited for: when it opens one it gets a complete
//! view, cut from the store as it is then. A node that has a stream but does not answer is
//! waited for at most [`WAIT_BOUND`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

/// The longest a stop waits for nodes to apply the mesh that drains the task. A node that
/// has not applied it by then is slow or gone (its heartbeat deadline, 3 periods, is longer);
/// the stop goes ahead, and the bound is what a client of such a node may see.
pub const WAIT_BOUND: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, Default)]
struct NodeAck {
    /// Which stream of the node this is (a newer one replaces it).
    stream: u64,
    /// Version of the last message sent.
    sent: u64,
    /// Version the agent said its data plane applied.
    acked: u64,
    /// Last version the stream looked at.
    seen: u64,
}

impl NodeAck {
    fn applied(&self) -> u64 {
        if self.acked >= self.sent {
            self.seen.max(self.acked)
        } else {
            self.acked
        }
    }
}

/// The leader's record of the mesh versions applied by nodes with an open stream.
#[derive(Debug)]
pub struct MeshAcks {
    nodes: Mutex<HashMap<String, NodeAck>>,
    next_stream: Mutex<u64>,
    changed: watch::Sender<u64>,
}

impl Default for MeshAcks {
    fn default() -> Self {
        Self {
            nodes: Mutex::new(HashMap::new()),
            next_stream: Mutex::new(0),
            changed: watch::Sender::new(0),
        }
    }
}

impl MeshAcks {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, NodeAck>) -> R) -> R {
        let result = f(&mut self.nodes.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        result
    }

    /// A stream of `node_id` opens with a complete view at `version`; returns its ID.
    pub fn open(&self, node_id: &str, version: u64) -> u64 {
        let stream = {
            let mut next = self.next_stream.lock().unwrap_or_else(|e| e.into_inner());
            *next += 1;
            *next
        };
        self.with(|nodes| {
            nodes.insert(
                node_id.to_owned(),
                NodeAck {
                    stream,
                    sent: version,
                    acked: 0,
                    seen: version,
                },
            );
        });
        stream
    }

    fn stream_mut(&self, node_id: &str, stream: u64, f: impl FnOnce(&mut NodeAck)) {
        self.with(|nodes| {
            if let Some(ack) = nodes.get_mut(node_id).filter(|a| a.stream == stream) {
                f(ack);
            }
        });
    }

    /// The stream sent a message at `version`.
    pub fn sent(&self, node_id: &str, stream: u64, version: u64) {
        self.stream_mut(node_id, stream, |a| {
            a.sent = a.sent.max(version);
            a.seen = a.seen.max(version);
        });
    }

    /// The stream looked at the store up to `version` and found nothing to send.
    pub fn seen(&self, node_id: &str, stream: u64, version: u64) {
        self.stream_mut(node_id, stream, |a| a.seen = a.seen.max(version));
    }

    /// The stream ended.
    pub fn close(&self, node_id: &str, stream: u64) {
        self.with(|nodes| {
            if nodes.get(node_id).is_some_and(|a| a.stream == stream) {
                nodes.remove(node_id);
            }
        });
    }

    /// The node's agent applied the mesh of `version`.
    pub fn acked(&self, node_id: &str, version: u64) {
        self.with(|nodes| {
            if let Some(ack) = nodes.get_mut(node_id) {
                ack.acked = ack.acked.max(version);
            }
        });
    }

    /// The nodes with an open stream that have not applied `version`.
    pub fn laggards(&self, version: u64) -> Vec<String> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let mut behind: Vec<String> = nodes
            .iter()
            .filter(|(_, a)| a.applied() < version)
            .map(|(id, _)| id.clone())
            .collect();
        behind.sort();
        behind
    }

    /// Waits until every node with an open stream applied `version`, at most `bound`;
    /// returns the nodes that had not.
    pub async fn wait(&self, version: u64, bound: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + bound;
        let mut changes = self.changed.subscribe();
        loop {
            changes.mark_unchanged();
            let behind = self.laggards(version);
            if behind.is_empty() {
                return behind;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return self.laggards(version),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_that_acked_all_it_was_sent_has_applied_what_its_stream_saw() {
        let acks = MeshAcks::default();
        let a = acks.open("a", 10);
        let b = acks.open("b", 10);
        acks.acked("a", 10);
        acks.acked("b", 10);
        acks.sent("a", a, 12);
        acks.seen("b", b, 12);
        assert_eq!(acks.laggards(12), vec!["a".to_owned()]);
        acks.acked("a", 12);
        assert!(acks.laggards(12).is_empty());
    }

    #[test]
    fn a_closed_or_replaced_stream_is_not_waited_for() {
        let acks = MeshAcks::default();
        let old = acks.open("a", 5);
        let new = acks.open("a", 7);
        acks.close("a", old);
        assert_eq!(acks.laggards(7), vec!["a".to_owned()]);
        acks.close("a", new);
        assert!(acks.laggards(7).is_empty());
    }

    #[tokio::test]
    async fn waiting_ends_on_the_ack_or_at_the_bound() {
        let acks = std::sync::Arc::new(MeshAcks::default());
        acks.open("a", 3);
        let waiter = {
            let acks = acks.clone();
            tokio::spawn(async move { acks.wait(3, Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        acks.acked("a", 3);
        assert!(waiter.await.expect("joins").is_empty());
        acks.open("b", 4);
        let behind = acks.wait(4, Duration::from_millis(10)).await;
        assert_eq!(behind, vec!["a".to_owned(), "b".to_owned()]);
    }
}
