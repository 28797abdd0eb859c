//! Pieces every object shares: store metadata, annotations, timestamps, resources.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in wall-clock time, as protobuf's `google.protobuf.Timestamp` (seconds and nanoseconds
/// since the Unix epoch) so that the gRPC API later maps it one to one.
///
/// The state machine never reads the clock: timestamps are taken when a change is proposed and
/// travel in the Raft log, so every manager applies the same values.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: u32,
}

impl Timestamp {
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    pub fn from_system_time(time: SystemTime) -> Self {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => Self {
                seconds: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
                nanos: after.subsec_nanos(),
            },
            // Before 1970: a clock set very wrong. Represent it faithfully (seconds negative,
            // nanos counting forward) rather than failing a write over a timestamp.
            Err(err) => {
                let before = err.duration();
                let mut seconds = -i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
                let mut nanos = 0;
                if before.subsec_nanos() > 0 {
                    seconds -= 1;
                    nanos = 1_000_000_000 - before.subsec_nanos();
                }
                Self { seconds, nanos }
            }
        }
    }

    pub fn to_system_time(self) -> SystemTime {
        let nanos = Duration::from_nanos(u64::from(self.nanos));
        if self.seconds >= 0 {
            UNIX_EPOCH + Duration::from_secs(self.seconds.unsigned_abs()) + nanos
        } else {
            UNIX_EPOCH - Duration::from_secs(self.seconds.unsigned_abs()) + nanos
        }
    }
}

/// Store-owned metadata. Callers never set it: the state machine stamps it when a change is
/// applied, from the change's Raft log entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    /// Index of the Raft log entry that last wrote this object (SwarmKit's `Meta.Version.Index`).
    /// An update must carry the version it read; if the object changed since, the update is
    /// rejected (optimistic concurrency). 0 on objects not yet committed.
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// User-facing name and labels of an object (Swarm's `Annotations`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Annotations {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl Annotations {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            labels: BTreeMap::new(),
        }
    }
}

/// CPU and memory, in Swarm's units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// CPU in units of 10⁻⁹ CPUs (`--limit-cpu 0.5` → 500 000 000).
    pub nano_cpus: i64,
    pub memory_bytes: i64,
}

/// Limits and reservations of a task (`--limit-*`, `--reserve-*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceRequirements {
    pub limits: Resources,
    pub reservations: Resources,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_round_trips_system_time() {
        let now = SystemTime::now();
        assert_eq!(Timestamp::from_system_time(now).to_system_time(), now);
        let before_epoch = UNIX_EPOCH - Duration::new(5, 250);
        let ts = Timestamp::from_system_time(before_epoch);
        assert_eq!(
            ts,
            Timestamp {
                seconds: -6,
                nanos: 999_999_750
            }
        );
        assert_eq!(ts.to_system_time(), before_epoch);
    }
}
