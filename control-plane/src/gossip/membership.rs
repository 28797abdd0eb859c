//! From what chitchat knows (one entry per node incarnation, live or dead) to
//! what hive consumers want: one member per node ID, and the changes between
//! two such views as `NodeUp` / `NodeUpdated` / `NodeDown` events.
//!
//! Pure functions, so the mapping is unit-tested without sockets.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;

use super::keys::{LEAVING_KEY, is_reserved};

/// What chitchat says about one incarnation (node ID + generation) of a node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Incarnation {
    pub node_id: String,
    pub generation: u64,
    pub gossip_addr: SocketAddr,
    /// Live per the failure detector (and of our cluster); otherwise dead.
    pub live: bool,
    /// All keys, reserved ones included.
    pub state: BTreeMap<String, String>,
}

/// Whether a node is up, as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    /// Heartbeats arrive.
    Up,
    /// Heartbeats stopped: crashed, killed, partitioned away or paused.
    Down,
    /// Announced it was leaving (`Gossip::leave`); it may still be running for a moment.
    Left,
}

/// One node of the cluster, its newest incarnation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub node_id: String,
    /// Incarnation: a restarted node comes back with a higher one.
    pub generation: u64,
    /// Where it gossips.
    pub gossip_addr: SocketAddr,
    pub status: MemberStatus,
    /// Its published keys (`node.addr`, `endpoints.<task>`, ...), reserved ones left out.
    pub state: BTreeMap<String, String>,
    /// This is the node itself.
    pub local: bool,
}

impl Member {
    pub fn is_up(&self) -> bool {
        self.status == MemberStatus::Up
    }
}

/// Why a node is reported down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DownReason {
    /// The failure detector lost its heartbeats (crash, SIGKILL, partition).
    Failed,
    /// It said it was leaving.
    Left,
    /// A newer incarnation replaced it before it was detected dead: what the
    /// old incarnation published (its tasks' endpoints) is gone. A `NodeUp`
    /// with the new generation follows.
    Restarted,
}

/// A change in membership, as seen by this node. Every event carries the whole
/// member, so applying one twice is harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MembershipEvent {
    /// A node is up: new, back after being down, or a new incarnation.
    NodeUp { member: Member },
    /// An up node changed its published state.
    NodeUpdated { member: Member },
    /// A node that was up is not any more.
    NodeDown { member: Member, reason: DownReason },
}

impl MembershipEvent {
    pub fn member(&self) -> &Member {
        match self {
            Self::NodeUp { member }
            | Self::NodeUpdated { member }
            | Self::NodeDown { member, .. } => member,
        }
    }
}

/// All members by node ID, this node included.
pub(crate) type Membership = BTreeMap<String, Member>;

/// One member per node ID: its highest generation wins, whether live or not
/// (an old incarnation still live per the detector is a ghost of a restart).
pub(crate) fn membership(local_node_id: &str, incarnations: &[Incarnation]) -> Membership {
    let mut newest: BTreeMap<&str, &Incarnation> = BTreeMap::new();
    for inc in incarnations {
        let slot = newest.entry(inc.node_id.as_str()).or_insert(inc);
        if inc.generation > slot.generation {
            *slot = inc;
        }
    }
    newest
        .into_iter()
        .map(|(node_id, inc)| {
            let status = if inc.state.contains_key(LEAVING_KEY) {
                MemberStatus::Left
            } else if inc.live {
                MemberStatus::Up
            } else {
                MemberStatus::Down
            };
            let state = inc
                .state
                .iter()
                .filter(|(k, _)| !is_reserved(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let member = Member {
                node_id: node_id.to_string(),
                generation: inc.generation,
                gossip_addr: inc.gossip_addr,
                status,
                state,
                local: node_id == local_node_id,
            };
            (node_id.to_string(), member)
        })
        .collect()
}

/// The events that take a consumer from `before` to `after`. The local node
/// produces none: its owner knows what it publishes.
pub(crate) fn diff(before: &Membership, after: &Membership) -> Vec<MembershipEvent> {
    let mut events = Vec::new();
    for (node_id, now) in after {
        if now.local {
            continue;
        }
        let was = before.get(node_id);
        match (was, now.status) {
            (Some(was), MemberStatus::Up) if was.is_up() => {
                if was.generation != now.generation {
                    events.push(MembershipEvent::NodeDown {
                        member: was.clone(),
                        reason: DownReason::Restarted,
                    });
                    events.push(MembershipEvent::NodeUp {
                        member: now.clone(),
                    });
                } else if was != now {
                    events.push(MembershipEvent::NodeUpdated {
                        member: now.clone(),
                    });
                }
            }
            (_, MemberStatus::Up) => events.push(MembershipEvent::NodeUp {
                member: now.clone(),
            }),
            (Some(was), status) if was.is_up() => events.push(MembershipEvent::NodeDown {
                member: now.clone(),
                reason: if status == MemberStatus::Left {
                    DownReason::Left
                } else {
                    DownReason::Failed
                },
            }),
            // Down (or left) before and still not up, or first seen down: a
            // consumer never had it up, nothing to take back.
            _ => {}
        }
    }
    // Forgotten while up: only if state vanished without a death (it cannot
    // with chitchat, which keeps dead nodes for the grace period), but a
    // consumer must never keep a node up that the view no longer has.
    for (node_id, was) in before {
        if !was.local && was.is_up() && !after.contains_key(node_id) {
            let mut member = was.clone();
            member.status = MemberStatus::Down;
            events.push(MembershipEvent::NodeDown {
                member,
                reason: DownReason::Failed,
            });
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(node: &str, generation: u64, live: bool, kv: &[(&str, &str)]) -> Incarnation {
        let mut state: BTreeMap<String, String> = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        state.insert("gossip.cluster".into(), "c".into());
        Incarnation {
            node_id: node.into(),
            generation,
            gossip_addr: "192.168.77.9:7946".parse().unwrap(),
            live,
            state,
        }
    }

    fn view(incs: &[Incarnation]) -> Membership {
        membership("n1", incs)
    }

    fn kinds(events: &[MembershipEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                MembershipEvent::NodeUp { member } => {
                    format!("up {}@{}", member.node_id, member.generation)
                }
                MembershipEvent::NodeUpdated { member } => format!("updated {}", member.node_id),
                MembershipEvent::NodeDown { member, reason } => {
                    format!("down {}@{} {reason:?}", member.node_id, member.generation)
                }
            })
            .collect()
    }

    #[test]
    fn highest_generation_wins_and_reserved_keys_are_hidden() {
        let m = view(&[
            inc("n1", 1, true, &[]),
            inc("n2", 5, false, &[("node.role", "old")]),
            inc("n2", 7, true, &[("node.role", "new")]),
        ]);
        assert_eq!(m.len(), 2);
        let n2 = &m["n2"];
        assert_eq!(n2.generation, 7);
        assert_eq!(n2.status, MemberStatus::Up);
        assert_eq!(n2.state.get("node.role").map(String::as_str), Some("new"));
        assert!(!n2.state.contains_key("gossip.cluster"));
        assert!(m["n1"].local && !n2.local);
    }

    #[test]
    fn join_update_and_failure() {
        let empty = view(&[inc("n1", 1, true, &[])]);
        let up = view(&[inc("n1", 1, true, &[]), inc("n2", 1, true, &[("a", "1")])]);
        assert_eq!(kinds(&diff(&empty, &up)), ["up n2@1"]);
        assert!(diff(&up, &up).is_empty(), "no change, no event");

        let updated = view(&[inc("n1", 1, true, &[]), inc("n2", 1, true, &[("a", "2")])]);
        assert_eq!(kinds(&diff(&up, &updated)), ["updated n2"]);

        let dead = view(&[inc("n1", 1, false, &[]), inc("n2", 1, false, &[("a", "2")])]);
        let events = diff(&updated, &dead);
        assert_eq!(kinds(&events), ["down n2@1 Failed"]);
        assert_eq!(events[0].member().status, MemberStatus::Down);
        assert_eq!(
            events[0].member().state["a"],
            "2",
            "a down member keeps its last state"
        );
        assert!(diff(&dead, &dead).is_empty());
    }

    #[test]
    fn the_local_node_emits_nothing() {
        let a = view(&[inc("n1", 1, true, &[])]);
        let b = view(&[inc("n1", 1, true, &[("endpoints.t1", "healthy")])]);
        assert!(diff(&a, &b).is_empty());
        assert!(diff(&Membership::new(), &a).is_empty());
    }

    #[test]
    fn restart_after_detection_is_up_again() {
        let down = view(&[inc("n2", 1, false, &[])]);
        let back = view(&[inc("n2", 1, false, &[]), inc("n2", 2, true, &[])]);
        assert_eq!(kinds(&diff(&down, &back)), ["up n2@2"]);
    }

    #[test]
    fn restart_faster_than_detection_takes_the_old_incarnation_down_first() {
        let up = view(&[inc("n2", 1, true, &[("endpoints.t1", "healthy")])]);
        let replaced = view(&[
            inc("n2", 1, true, &[("endpoints.t1", "healthy")]),
            inc("n2", 2, true, &[]),
        ]);
        let events = diff(&up, &replaced);
        assert_eq!(kinds(&events), ["down n2@1 Restarted", "up n2@2"]);
        assert!(events[0].member().state.contains_key("endpoints.t1"));
        assert!(events[1].member().state.is_empty());
    }

    #[test]
    fn graceful_leave_is_down_at_once_and_stays_down() {
        let up = view(&[inc("n2", 1, true, &[])]);
        let leaving = view(&[inc("n2", 1, true, &[("gossip.leaving", "1")])]);
        assert_eq!(leaving["n2"].status, MemberStatus::Left);
        assert_eq!(kinds(&diff(&up, &leaving)), ["down n2@1 Left"]);
        let gone = view(&[inc("n2", 1, false, &[("gossip.leaving", "1")])]);
        assert!(
            diff(&leaving, &gone).is_empty(),
            "left then silent: already down"
        );
    }

    #[test]
    fn a_node_first_seen_dead_produces_no_event() {
        let first = view(&[inc("n1", 1, true, &[]), inc("n3", 1, false, &[])]);
        assert!(diff(&view(&[inc("n1", 1, true, &[])]), &first).is_empty());
        assert_eq!(first["n3"].status, MemberStatus::Down);
    }

    #[test]
    fn a_node_forgotten_while_up_is_reported_down() {
        let up = view(&[inc("n2", 1, true, &[])]);
        let events = diff(&up, &Membership::new());
        assert_eq!(kinds(&events), ["down n2@1 Failed"]);
        assert_eq!(events[0].member().status, MemberStatus::Down);
    }

    #[test]
    fn events_serialize_as_tagged_json() {
        let up = view(&[inc("n2", 3, true, &[("node.role", "worker")])]);
        let events = diff(&Membership::new(), &up);
        let json = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(json["event"], "node_up");
        assert_eq!(json["member"]["node_id"], "n2");
        assert_eq!(json["member"]["status"], "up");
        assert_eq!(json["member"]["state"]["node.role"], "worker");
    }
}
