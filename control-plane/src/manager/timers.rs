//! The control plane's timers, in one place, with the reasons (docs/control-plane.md).
//!
//! Swarm elects a new leader 10–20 s after the old one died (1 s tick, election after 10–20
//! ticks). hive's managers talk over loopback or a LAN where a round trip is well under a
//! millisecond, so the same safety margins fit in far less time.
//!
//! openraft 0.9 decides when a follower stands for election like this
//! (`RaftCore::handle_tick_election`): it waits for the leader lease, which is
//! `election_timeout_max`, *plus* its own election timeout, drawn once from
//! `[election_timeout_min, election_timeout_max)`; and while the lease runs it refuses votes
//! for anyone else. So a dead leader is replaced after `max + [min, max)`, and that sum is what
//! to tune:
//! - the leader heartbeats every 100 ms;
//! - `min` = 300 ms, `max` = 600 ms: a follower stands only after 0.9–1.2 s without a
//!   heartbeat — nine missed heartbeats at the least, so a scheduling hiccup of a busy host
//!   does not depose a healthy leader — and the randomised part keeps two followers from
//!   splitting the vote;
//! - so a dead leader is replaced in about 0.9–1.2 s plus a vote round trip (Swarm: 10–20 s).

use std::time::Duration;

use crate::store::StoreConfig;

pub const RAFT_HEARTBEAT_MS: u64 = 100;
pub const ELECTION_TIMEOUT_MIN_MS: u64 = 300;
pub const ELECTION_TIMEOUT_MAX_MS: u64 = 600;

/// How long a write may wait to be committed before the caller is told.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a forwarded call waits for a leader to appear (an election in progress) before
/// failing with the lost-quorum error: a few election timeouts.
pub const LEADER_WAIT: Duration = Duration::from_secs(5);
/// Pause between attempts to reach the leader.
pub const LEADER_RETRY: Duration = Duration::from_millis(100);
/// Bound of one call to another manager.
pub const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound of a join's Raft membership change (the learner must catch up first).
pub const JOIN_RAFT_TIMEOUT: Duration = Duration::from_secs(60);

/// One snapshot chunk sent to a follower too far behind the leader's log. openraft 0.9's
/// default (3 MiB, JSON-encoded as a list of numbers: ~10 MB on the wire) could not be sent in
/// its 200 ms; a quarter MiB is the AppendEntries bound too (`raft_net::append`).
pub const SNAPSHOT_CHUNK_BYTES: u64 = 256 * 1024;
/// How long one snapshot chunk may take, the last one including the follower's install (it
/// rewrites the follower's whole state): openraft's 200 ms default made a large snapshot
/// time out at every attempt, and the follower never caught up.
pub const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 10_000;

/// hive's Raft timers on top of the store's defaults.
pub fn apply(config: &mut StoreConfig) {
    config.raft.heartbeat_interval = RAFT_HEARTBEAT_MS;
    config.raft.election_timeout_min = ELECTION_TIMEOUT_MIN_MS;
    config.raft.election_timeout_max = ELECTION_TIMEOUT_MAX_MS;
    config.request_timeout = WRITE_TIMEOUT;
    config.raft.snapshot_max_chunk_size = SNAPSHOT_CHUNK_BYTES;
    config.raft.install_snapshot_timeout = INSTALL_SNAPSHOT_TIMEOUT_MS;
}
