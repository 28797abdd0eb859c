//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI '16, §3.4).
//!
//! Every node builds a service's lookup table from the same inputs — the
//! backends' stable identities (Swarm task IDs) and the cluster-wide seed —
//! and therefore gets the same table, so the same flow reaches the same
//! backend whichever node it enters. The table size M is prime, so every
//! backend's `skip` is coprime with M and its preference list is a full
//! permutation of the slots.
//!
//! Properties the tests pin down: each backend owns ⌊M/N⌋ or ⌈M/N⌉ slots
//! (round-robin fill), and removing one backend of N moves few slots beyond
//! the removed backend's own (minimal disruption, paper §3.4 and Fig. 13).

/// Slots per backend: the paper's `M ≥ 100 × N` rule, which keeps the
/// imbalance between backends around 1 % (paper §5.3).
pub const SLOTS_PER_BACKEND: u64 = 100;

/// The largest table hive builds: all of `HIVE_MAGLEV`.
pub const MAX_TABLE_SIZE: u32 = hive_common::maps::MAGLEV_SLOTS;

/// The most backends one service can have: 100 × 2^15 slots is the last rung
/// of the size ladder that fits in [`MAX_TABLE_SIZE`].
pub const MAX_BACKENDS_PER_SERVICE: usize = 32_768;

/// Table size M for `backends` backends; 0 for no backends.
///
/// M is the smallest prime ≥ 100 × 2^k with 2^k ≥ backends: a ladder of
/// sizes (101, 211, 401, 809, 1601, ...) rather than the smallest prime
/// ≥ 100 × backends. Maglev's minimal disruption holds only while M stays
/// the same — a new M gives every backend a new permutation and reshuffles
/// nearly every slot — so M changes only when the backend count crosses a
/// power of two, and stays a pure function of the count, which every node
/// computes alike. The price is at most twice the memory (M < 200 × N + a
/// prime gap).
///
/// Returns `None` beyond [`MAX_BACKENDS_PER_SERVICE`].
pub fn table_size(backends: usize) -> Option<u32> {
    if backends == 0 {
        return Some(0);
    }
    if backends > MAX_BACKENDS_PER_SERVICE {
        return None;
    }
    let rung = (backends as u64).next_power_of_two();
    let mut candidate = rung * SLOTS_PER_BACKEND;
    while !is_prime(candidate) {
        candidate += 1;
    }
    u32::try_from(candidate)
        .ok()
        .filter(|&m| m <= MAX_TABLE_SIZE)
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// A Maglev lookup table: slot → index of a backend in the slice given to
/// [`MaglevTable::build`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaglevTable {
    slots: Vec<u32>,
}

impl MaglevTable {
    /// Build the table for backends identified by `identities` (e.g. task
    /// IDs; must be distinct) with the cluster-wide `seed`.
    ///
    /// The result does not depend on the order of `identities`: backends are
    /// processed in the order of their identities, and each slot names the
    /// backend by its position in `identities` as given.
    ///
    /// Returns `None` if there are too many backends for [`MAX_TABLE_SIZE`].
    pub fn build<S: AsRef<[u8]>>(identities: &[S], seed: u32) -> Option<Self> {
        let size = table_size(identities.len())?;
        if size == 0 {
            return Some(Self { slots: Vec::new() });
        }
        let m = u64::from(size);

        // Fill in a canonical order so every node, whatever order its control
        // plane hands the backends in, breaks ties the same way.
        let mut order: Vec<usize> = (0..identities.len()).collect();
        order.sort_by(|&a, &b| identities[a].as_ref().cmp(identities[b].as_ref()));

        // Per backend: current position in its permutation and its skip.
        let mut position: Vec<u64> = Vec::with_capacity(order.len());
        let mut skip: Vec<u64> = Vec::with_capacity(order.len());
        for &i in &order {
            let id = identities[i].as_ref();
            position.push(hash64(seed, OFFSET_SALT, id) % m);
            skip.push(hash64(seed, SKIP_SALT, id) % (m - 1) + 1);
        }

        const EMPTY: u32 = u32::MAX;
        let mut slots = vec![EMPTY; size as usize];
        let mut filled = 0u64;
        'fill: loop {
            for (rank, &backend) in order.iter().enumerate() {
                // Walk this backend's preference list to its next free slot.
                let mut slot = position[rank];
                while slots[slot as usize] != EMPTY {
                    slot = (slot + skip[rank]) % m;
                }
                slots[slot as usize] = backend as u32;
                position[rank] = (slot + skip[rank]) % m;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
        Some(Self { slots })
    }

    /// The table size M (0 for a service without backends).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Slot → backend index (position in the slice given to `build`).
    pub fn slots(&self) -> &[u32] {
        &self.slots
    }

    /// The backend index a flow with hash `flow_hash` is given, as the
    /// programs compute it (`slot = hash % M`).
    pub fn lookup(&self, flow_hash: u32) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        self.slots
            .get(flow_hash as usize % self.slots.len())
            .copied()
    }
}

const OFFSET_SALT: u64 = 0x6f66_6673_6574; // "offset"
const SKIP_SALT: u64 = 0x0000_736b_6970; // "skip"

/// A 64-bit hash that is the same on every platform and Rust release (unlike
/// `std`'s `DefaultHasher`): FNV-1a over the bytes, seeded, then the
/// splitmix64 finaliser so that neighbouring identities spread out.
fn hash64(seed: u32, salt: u64, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt ^ (u64::from(seed) << 17);
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix64(h)
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("task-{i:04}-x7k2p")).collect()
    }

    fn counts(table: &MaglevTable, n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for &s in table.slots() {
            counts[s as usize] += 1;
        }
        counts
    }

    #[test]
    fn table_sizes_are_primes_at_least_100_per_backend() {
        assert_eq!(table_size(0), Some(0));
        assert_eq!(table_size(1), Some(101));
        assert_eq!(table_size(2), Some(211));
        assert_eq!(table_size(3), Some(401));
        assert_eq!(table_size(4), Some(401));
        assert_eq!(table_size(5), Some(809));
        assert_eq!(table_size(10), Some(1601));
        assert_eq!(table_size(1000), Some(102_407));
        for n in [1, 2, 3, 7, 100, 1000, 5000, MAX_BACKENDS_PER_SERVICE] {
            let m = u64::from(table_size(n).expect("fits"));
            assert!(m >= 100 * n as u64 && is_prime(m), "n={n} m={m}");
        }
        assert_eq!(table_size(MAX_BACKENDS_PER_SERVICE + 1), None);
    }

    #[test]
    fn no_backends_gives_an_empty_table() {
        let table = MaglevTable::build::<&str>(&[], 1).expect("fits");
        assert!(table.is_empty());
        assert_eq!(table.lookup(42), None);
    }

    #[test]
    fn one_backend_owns_every_slot() {
        let table = MaglevTable::build(&["only"], 9).expect("fits");
        assert_eq!(table.len(), 101);
        assert!(table.slots().iter().all(|&s| s == 0));
    }

    #[test]
    fn every_backend_gets_its_fair_share() {
        for n in [2, 3, 7, 10, 64, 100] {
            let ids = names(n);
            let table = MaglevTable::build(&ids, 7).expect("fits");
            let m = table.len() as f64;
            for (i, c) in counts(&table, n).into_iter().enumerate() {
                let share = c as f64 / m;
                let fair = 1.0 / n as f64;
                // Round-robin fill: ⌊M/N⌋ or ⌈M/N⌉, within 1 % of 1/N.
                assert!(
                    (share - fair).abs() <= 0.01 * fair + 1.0 / m,
                    "n={n} backend {i}: {c} of {m} slots"
                );
            }
        }
    }

    #[test]
    fn input_order_does_not_change_the_table() {
        let ids = names(20);
        let table = MaglevTable::build(&ids, 3).expect("fits");
        let mut reversed = ids.clone();
        reversed.reverse();
        let other = MaglevTable::build(&reversed, 3).expect("fits");
        let by_name = |t: &MaglevTable, ids: &[String]| -> Vec<String> {
            t.slots().iter().map(|&s| ids[s as usize].clone()).collect()
        };
        assert_eq!(by_name(&table, &ids), by_name(&other, &reversed));
        // Same inputs, same table (what two nodes compute).
        assert_eq!(table, MaglevTable::build(&ids, 3).expect("fits"));
    }

    #[test]
    fn the_seed_changes_the_table() {
        let ids = names(5);
        assert_ne!(
            MaglevTable::build(&ids, 1).expect("fits"),
            MaglevTable::build(&ids, 2).expect("fits")
        );
    }

    /// Flows (sampled hashes) that change backend when `removed` leaves:
    /// (share that belonged to the removed backend, share of the others'
    /// flows that moved anyway).
    fn disruption(n: usize, removed: usize, seed: u32) -> (f64, f64) {
        let ids = names(n);
        let before = MaglevTable::build(&ids, seed).expect("fits");
        let rest: Vec<&String> = ids.iter().filter(|id| **id != ids[removed]).collect();
        let after = MaglevTable::build(&rest, seed).expect("fits");
        let samples = 100_000u32;
        let (mut owned_by_removed, mut moved_other) = (0u32, 0u32);
        for h in 0..samples {
            let h = h.wrapping_mul(2_654_435_761);
            let old = &ids[before.lookup(h).expect("non-empty") as usize];
            let new = rest[after.lookup(h).expect("non-empty") as usize];
            if *old == ids[removed] {
                owned_by_removed += 1;
            } else if old != new {
                moved_other += 1;
            }
        }
        let share = |c: u32| f64::from(c) / f64::from(samples);
        (share(owned_by_removed), share(moved_other))
    }

    #[test]
    fn removing_one_backend_moves_few_other_flows() {
        // N and N - 1 on the same rung of the size ladder: same M.
        for n in [4, 6, 10, 50, 100] {
            for removed in [0, n / 2, n - 1] {
                let (removed_share, other_share) = disruption(n, removed, 11);
                assert!((removed_share - 1.0 / n as f64).abs() < 0.01, "n={n}");
                assert!(
                    other_share < 0.05,
                    "n={n}: {other_share:.4} of the other backends' flows moved"
                );
            }
        }
    }

    #[test]
    fn crossing_a_rung_of_the_size_ladder_reshuffles() {
        // 5 -> 4 backends: M goes 809 -> 401 and the table is rebuilt from
        // new permutations. Documented cost of keeping M ≥ 100 × N.
        let (_, other_share) = disruption(5, 2, 11);
        assert!(other_share > 0.2, "{other_share}");
    }
}
