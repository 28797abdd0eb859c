//! The keys of a node's gossiped state: the ones hive itself reserves and the
//! rules for the ones callers publish.
//!
//! Callers' keys are dotted names, by convention:
//! `node.addr`, `node.role`, `endpoints.<task id>` = `healthy` | `unhealthy`.

/// Prefix of the keys the gossip layer owns; callers cannot set them.
pub const RESERVED_PREFIX: &str = "gossip.";

/// The cluster ID, published by every node. A node is only counted as a member
/// once this key has arrived and matches ours: chitchat already refuses SYNs
/// from another cluster, and this also makes every `NodeUp` carry the node's
/// published state instead of an empty one.
pub(crate) const CLUSTER_KEY: &str = "gossip.cluster";

/// Set by `Gossip::leave`: the node is going away on purpose, so peers report
/// it down at once instead of waiting for the failure detector.
pub(crate) const LEAVING_KEY: &str = "gossip.leaving";

/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 256;

/// Longest value accepted. Every value travels in UDP datagrams (at most
/// 64 KiB, with all the node's other changes), so state stays small.
pub const MAX_VALUE_LEN: usize = 4096;

/// Checks a key a caller wants to publish.
pub fn check_user_key(key: &str) -> Result<(), KeyError> {
    if key.starts_with(RESERVED_PREFIX) {
        return Err(KeyError::Reserved {
            key: key.to_string(),
        });
    }
    let bad = key.is_empty()
        || key.len() > MAX_KEY_LEN
        || key.chars().any(|c| c.is_whitespace() || c.is_control());
    if bad {
        return Err(KeyError::Invalid {
            key: key.to_string(),
        });
    }
    Ok(())
}

/// Checks a value a caller wants to publish.
pub fn check_value(key: &str, value: &str) -> Result<(), KeyError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(KeyError::ValueTooLong {
            key: key.to_string(),
            len: value.len(),
        });
    }
    Ok(())
}

/// Whether a key is one the gossip layer owns (hidden from `Member::state`).
pub(crate) fn is_reserved(key: &str) -> bool {
    key.starts_with(RESERVED_PREFIX)
}

/// A key or value that cannot be published.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "gossip key {key:?} is reserved: keys starting with {RESERVED_PREFIX:?} belong to hive"
    )]
    Reserved { key: String },
    #[error(
        "invalid gossip key {key:?}: use 1 to {MAX_KEY_LEN} characters without spaces, e.g. \
         \"endpoints.<task id>\""
    )]
    Invalid { key: String },
    #[error(
        "value of gossip key {key:?} is {len} bytes: keep values under {MAX_VALUE_LEN} bytes \
         (gossip is for small per-node facts, not data)"
    )]
    ValueTooLong { key: String, len: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_keys() {
        check_user_key("endpoints.abc123").unwrap();
        check_user_key("node.role").unwrap();
        assert!(matches!(
            check_user_key(CLUSTER_KEY),
            Err(KeyError::Reserved { .. })
        ));
        assert!(matches!(
            check_user_key(LEAVING_KEY),
            Err(KeyError::Reserved { .. })
        ));
        assert!(matches!(check_user_key(""), Err(KeyError::Invalid { .. })));
        assert!(matches!(
            check_user_key("a b"),
            Err(KeyError::Invalid { .. })
        ));
        assert!(matches!(
            check_user_key(&"k".repeat(MAX_KEY_LEN + 1)),
            Err(KeyError::Invalid { .. })
        ));
        assert!(is_reserved(LEAVING_KEY));
        assert!(!is_reserved("gossipy"));
    }

    #[test]
    fn values_are_small() {
        check_value("k", "healthy").unwrap();
        let err = check_value("k", &"v".repeat(MAX_VALUE_LEN + 1)).unwrap_err();
        assert!(err.to_string().contains("4097 bytes"), "{err}");
    }
}
