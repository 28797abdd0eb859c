//! Object IDs in Swarm's shape: 25 characters of lowercase base 36 (`[0-9a-z]`).
//!
//! SwarmKit (`identity.NewID`) draws 128+ random bits and prints them in base 36; users see
//! these IDs in `hive node ls` and type prefixes of them, so hive keeps the same alphabet and
//! length. Every object ID in the store comes from [`new_id`]; nothing else invents IDs.

use rand::Rng;

/// Length of every generated object ID.
pub const ID_LEN: usize = 25;

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A fresh random object ID: 25 independent base-36 digits, i.e. 25·log2(36) ≈ 129 bits of
/// entropy, as much as SwarmKit's IDs. `gen_range` samples without modulo bias.
pub fn new_id() -> String {
    let mut rng = rand::thread_rng();
    (0..ID_LEN)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// Whether `s` could be an ID made by [`new_id`]. IDs given by users (e.g. a node ID taken
/// from its certificate) are checked with this before they are used as keys.
pub fn is_valid_id(s: &str) -> bool {
    s.len() == ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn ids_are_25_lowercase_alphanumerics_and_distinct() {
        let ids: BTreeSet<String> = (0..1000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert!(is_valid_id(id), "{id}");
        }
    }

    #[test]
    fn rejects_foreign_shapes() {
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("ABCDEFGHIJKLMNOPQRSTUVWXY"));
        assert!(!is_valid_id("yg550ettvsjn6g6t840iaiwg"));
        assert!(is_valid_id("yg550ettvsjn6g6t840iaiwgb"));
    }
}
