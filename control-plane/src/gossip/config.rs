//! What a node needs to join the gossip: who it is, where it listens, whom it
//! asks first, and how quickly a silent peer is declared dead.
//!
//! The timer defaults are the ones docs/gossip.md derives ("Timers"): gossip
//! every 100 ms, a peer is Down after about 12 mean heartbeat intervals of
//! silence (≈ 0.5–0.8 s on a 3–5 node cluster), dead state kept for an hour.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::keys::{self, KeyError};

/// The UDP port Swarm's NetworkDB gossips on (memberlist `BindPort`); hive uses
/// the same one so firewall rules written for Swarm keep working.
pub const DEFAULT_GOSSIP_PORT: u16 = 7946;

/// How often each node gossips with up to three random peers.
///
/// Swarm's memberlist gossips every 200 ms and probes every 1 s. hive needs a
/// dead node's backends out of every mesh within a second, and the failure
/// detector needs several heartbeats per detection window, so it gossips
/// twice as often: at 5 nodes that is 150 datagrams of a few hundred bytes per
/// second for the whole cluster.
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_millis(100);

/// Tuning of chitchat's phi-accrual failure detector.
///
/// chitchat's phi is `time since the last new heartbeat / mean interval
/// between new heartbeats` (an exponential model), and a peer is dead once phi
/// exceeds `phi_threshold`. A node sees a peer's heartbeat advance in every
/// digest that carries it (its own exchanges with the peer and, indirectly,
/// every other exchange), about 4–6 times per gossip interval with fan-out 3,
/// so the mean interval is ≈ 20–25 ms at 100 ms and detection takes
/// `phi_threshold × mean + up to one gossip interval` (liveness is re-evaluated
/// at the end of each round).
#[derive(Debug, Clone, PartialEq)]
pub struct FailureDetection {
    /// Silence, in mean heartbeat intervals, after which a peer is Down.
    pub phi_threshold: f64,
    /// Heartbeat intervals kept per peer for the mean.
    pub sampling_window: usize,
    /// Intervals longer than this (a pause, a partition) are not sampled, so
    /// that one long gap does not make the detector slow for minutes.
    pub max_interval: Duration,
    /// Prior mean interval (weight of 5 samples) before real samples exist:
    /// keeps a peer that just joined from being judged on two heartbeats.
    pub initial_interval: Duration,
    /// How long a dead peer's state is kept (and gossiped as dead) before it is
    /// forgotten. Its keys are needed until every node has seen it Down.
    pub dead_node_grace: Duration,
}

impl Default for FailureDetection {
    fn default() -> Self {
        Self {
            phi_threshold: 12.0,
            sampling_window: 1000,
            max_interval: Duration::from_secs(2),
            initial_interval: DEFAULT_GOSSIP_INTERVAL,
            dead_node_grace: Duration::from_secs(60 * 60),
        }
    }
}

/// Everything `Gossip::start` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct GossipConfig {
    /// This node's ID, unique in the cluster (hive's 25-character node ID).
    pub node_id: String,
    /// Distinguishes this run of the node from earlier ones: must grow on every
    /// restart so that peers see a new incarnation, not a ghost of the old one.
    pub generation: u64,
    /// UDP address to bind (in the node's network namespace).
    pub listen_addr: SocketAddr,
    /// UDP address peers reach this node at.
    pub advertise_addr: SocketAddr,
    /// Nodes to contact first (managers, as Swarm does); self is ignored.
    pub seeds: Vec<SocketAddr>,
    /// The swarm's cluster ID: gossip from another cluster is refused.
    pub cluster_id: String,
    pub gossip_interval: Duration,
    pub failure_detection: FailureDetection,
    /// Keys published from the first gossip round on (e.g. `node.role`), so
    /// that a peer's first `NodeUp` already carries them.
    pub initial_state: BTreeMap<String, String>,
    /// How long `Gossip::leave` keeps gossiping after marking this node as
    /// leaving, so the mark reaches every peer before the socket closes.
    pub leave_grace: Duration,
    /// The keyring every datagram is sealed and opened with (the daemon always sets it; see
    /// `auth.rs`). `None` gossips in the clear, for the gossip benchmark and tests only.
    pub auth: Option<super::auth::GossipAuth>,
}

impl GossipConfig {
    /// A config with hive's defaults, listening on `advertise_addr` and with the
    /// current time in milliseconds as generation.
    pub fn new(
        node_id: impl Into<String>,
        cluster_id: impl Into<String>,
        advertise_addr: SocketAddr,
    ) -> Self {
        Self {
            node_id: node_id.into(),
            generation: generation_now(),
            listen_addr: advertise_addr,
            advertise_addr,
            seeds: Vec::new(),
            cluster_id: cluster_id.into(),
            gossip_interval: DEFAULT_GOSSIP_INTERVAL,
            failure_detection: FailureDetection::default(),
            initial_state: BTreeMap::new(),
            leave_grace: DEFAULT_GOSSIP_INTERVAL * 3,
            auth: None,
        }
    }

    /// Checks everything that can be checked before binding anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_id("node ID", &self.node_id)?;
        check_id("cluster ID", &self.cluster_id)?;
        if self.advertise_addr.ip().is_unspecified() || self.advertise_addr.port() == 0 {
            return Err(ConfigError::AdvertiseAddr {
                addr: self.advertise_addr,
            });
        }
        if self.listen_addr.port() == 0 {
            return Err(ConfigError::ListenPort {
                addr: self.listen_addr,
            });
        }
        if !(MIN_GOSSIP_INTERVAL..=MAX_GOSSIP_INTERVAL).contains(&self.gossip_interval) {
            return Err(ConfigError::GossipInterval {
                interval: self.gossip_interval,
            });
        }
        self.check_failure_detection()?;
        for key in self.initial_state.keys() {
            keys::check_user_key(key).map_err(|source| ConfigError::InitialState { source })?;
        }
        if self.leave_grace > MAX_LEAVE_GRACE {
            return Err(ConfigError::LeaveGrace {
                grace: self.leave_grace,
            });
        }
        Ok(())
    }

    fn check_failure_detection(&self) -> Result<(), ConfigError> {
        let fd = &self.failure_detection;
        if !fd.phi_threshold.is_finite() || fd.phi_threshold < 1.0 {
            return Err(ConfigError::PhiThreshold {
                phi: fd.phi_threshold,
            });
        }
        if fd.sampling_window < 2 {
            return Err(ConfigError::SamplingWindow {
                window: fd.sampling_window,
            });
        }
        if fd.initial_interval.is_zero() || fd.max_interval <= self.gossip_interval {
            return Err(ConfigError::Intervals {
                initial: fd.initial_interval,
                max: fd.max_interval,
                gossip: self.gossip_interval,
            });
        }
        // chitchat stops gossiping a dead node's digest after half the grace; a
        // grace shorter than a few seconds would forget nodes before slow
        // peers saw them die.
        if fd.dead_node_grace < MIN_DEAD_NODE_GRACE {
            return Err(ConfigError::DeadNodeGrace {
                grace: fd.dead_node_grace,
            });
        }
        Ok(())
    }
}

const MIN_GOSSIP_INTERVAL: Duration = Duration::from_millis(10);
const MAX_GOSSIP_INTERVAL: Duration = Duration::from_secs(10);
const MIN_DEAD_NODE_GRACE: Duration = Duration::from_secs(10);
const MAX_LEAVE_GRACE: Duration = Duration::from_secs(30);
const MAX_ID_LEN: usize = 128;

/// Milliseconds since the Unix epoch: grows across restarts as long as the
/// clock does not go back by more than the restart takes.
pub fn generation_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn check_id(what: &'static str, id: &str) -> Result<(), ConfigError> {
    let bad = id.is_empty()
        || id.len() > MAX_ID_LEN
        || id.chars().any(|c| c.is_whitespace() || c.is_control());
    if bad {
        return Err(ConfigError::Id {
            what,
            id: id.to_string(),
        });
    }
    Ok(())
}

/// A `GossipConfig` that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "invalid gossip {what} {id:?}: use 1 to {MAX_ID_LEN} characters without spaces or \
         control characters"
    )]
    Id { what: &'static str, id: String },
    #[error(
        "gossip advertise address {addr} is not reachable by peers: give this node's own IP \
         and a non-zero port (default {DEFAULT_GOSSIP_PORT})"
    )]
    AdvertiseAddr { addr: SocketAddr },
    #[error(
        "gossip listen address {addr} has port 0: peers could not find the port; use \
         {DEFAULT_GOSSIP_PORT} or another fixed port"
    )]
    ListenPort { addr: SocketAddr },
    #[error(
        "gossip interval {interval:?} is out of range: use {MIN_GOSSIP_INTERVAL:?} to \
         {MAX_GOSSIP_INTERVAL:?} (default {DEFAULT_GOSSIP_INTERVAL:?})"
    )]
    GossipInterval { interval: Duration },
    #[error(
        "phi threshold {phi} is invalid: use a number of at least 1 (default 12; lower \
         detects faster but declares loaded nodes dead)"
    )]
    PhiThreshold { phi: f64 },
    #[error("failure-detector sampling window {window} is too small: keep at least 2 intervals")]
    SamplingWindow { window: usize },
    #[error(
        "failure-detector intervals are inconsistent (initial {initial:?}, max {max:?}, gossip \
         {gossip:?}): the initial interval must be non-zero and the max interval longer than \
         the gossip interval"
    )]
    Intervals {
        initial: Duration,
        max: Duration,
        gossip: Duration,
    },
    #[error(
        "dead-node grace {grace:?} is too short: keep dead nodes at least {MIN_DEAD_NODE_GRACE:?} \
         so every peer sees them go down before they are forgotten"
    )]
    DeadNodeGrace { grace: Duration },
    #[error("leave grace {grace:?} is too long: use at most {MAX_LEAVE_GRACE:?}")]
    LeaveGrace { grace: Duration },
    #[error("initial gossip state: {source}")]
    InitialState {
        #[source]
        source: KeyError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GossipConfig {
        GossipConfig::new("n1", "cluster-a", "192.168.77.1:7946".parse().unwrap())
    }

    #[test]
    fn defaults_are_valid_and_listen_where_they_advertise() {
        let c = config();
        c.validate().unwrap();
        assert_eq!(c.listen_addr, c.advertise_addr);
        assert_eq!(c.gossip_interval, Duration::from_millis(100));
        assert!(
            c.generation > 1_600_000_000_000,
            "generation is wall-clock ms"
        );
    }

    #[test]
    fn ids_must_be_non_empty_without_spaces() {
        for bad in ["", "a b", "tab\there", &"x".repeat(129)] {
            let mut c = config();
            c.node_id = bad.to_string();
            let err = c.validate().unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::Id {
                        what: "node ID",
                        ..
                    }
                ),
                "{bad:?}: {err}"
            );
            let mut c = config();
            c.cluster_id = bad.to_string();
            assert!(matches!(
                c.validate(),
                Err(ConfigError::Id {
                    what: "cluster ID",
                    ..
                })
            ));
        }
    }

    #[test]
    fn advertise_address_must_be_reachable() {
        let mut c = config();
        c.advertise_addr = "0.0.0.0:7946".parse().unwrap();
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("give this node's own IP"), "{err}");
        let mut c = config();
        c.advertise_addr = "192.168.77.1:0".parse().unwrap();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::AdvertiseAddr { .. })
        ));
        let mut c = config();
        c.listen_addr = "0.0.0.0:0".parse().unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::ListenPort { .. })));
        // Listening on every address is fine as long as the advertised one is real.
        let mut c = config();
        c.listen_addr = "0.0.0.0:7946".parse().unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn timers_are_range_checked() {
        let mut c = config();
        c.gossip_interval = Duration::from_millis(1);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::GossipInterval { .. })
        ));
        let mut c = config();
        c.failure_detection.phi_threshold = f64::NAN;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::PhiThreshold { .. })
        ));
        let mut c = config();
        c.failure_detection.phi_threshold = 0.5;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::PhiThreshold { .. })
        ));
        let mut c = config();
        c.failure_detection.sampling_window = 1;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::SamplingWindow { .. })
        ));
        let mut c = config();
        c.failure_detection.max_interval = Duration::from_millis(50);
        assert!(matches!(c.validate(), Err(ConfigError::Intervals { .. })));
        let mut c = config();
        c.failure_detection.initial_interval = Duration::ZERO;
        assert!(matches!(c.validate(), Err(ConfigError::Intervals { .. })));
        let mut c = config();
        c.failure_detection.dead_node_grace = Duration::from_secs(1);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::DeadNodeGrace { .. })
        ));
        let mut c = config();
        c.leave_grace = Duration::from_secs(60);
        assert!(matches!(c.validate(), Err(ConfigError::LeaveGrace { .. })));
    }

    #[test]
    fn initial_state_may_not_use_reserved_keys() {
        let mut c = config();
        c.initial_state.insert("node.role".into(), "manager".into());
        c.validate().unwrap();
        c.initial_state
            .insert("gossip.cluster".into(), "other".into());
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("gossip.cluster"), "{err}");
    }
}
