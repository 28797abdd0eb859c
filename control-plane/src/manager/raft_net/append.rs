//! AppendEntries bounded in bytes.
//!
//! openraft 0.9 gives every AppendEntries call the heartbeat interval (100 ms here) to
//! complete, whatever it carries (`replication/mod.rs`: `C::timeout(heartbeat_interval, ..)`
//! around the network call), and bounds a batch in entries only (`max_payload_entries`, 300).
//! A follower that was away while large updates were committed got batches of 300 large
//! entries that took longer than that to send and store: every call timed out, and the
//! follower never caught up. So the leader's side of the transport cuts a batch to
//! [`MAX_APPEND_BYTES`] of entries (one entry always goes) and answers openraft
//! `PartialSuccess` up to the last entry sent; openraft sends the rest in the next call. A
//! follower commits only up to what it accepted, so a cut batch is safe whatever the
//! leader's commit index says.

use crate::store::types::{AppendEntriesRequest, Entry, LogId};

/// The most entry bytes (as encoded) one AppendEntries call carries, unless a single entry is
/// larger. A quarter MiB is sent, decoded and stored by a busy 2-core follower well within the
/// 100 ms openraft allows a call, while small entries still go 300 at a time.
pub const MAX_APPEND_BYTES: usize = 256 * 1024;

/// Cuts `request`'s entries to at most `max_bytes` (at least one entry). Returns the log ID of
/// the last entry kept if some were cut.
pub fn cut_to_size(request: &mut AppendEntriesRequest, max_bytes: usize) -> Option<LogId> {
    let mut total = 0usize;
    let mut keep = request.entries.len();
    for (i, entry) in request.entries.iter().enumerate() {
        total = total.saturating_add(encoded_len(entry));
        if total > max_bytes && i > 0 {
            keep = i;
            break;
        }
    }
    if keep == request.entries.len() {
        return None;
    }
    request.entries.truncate(keep);
    request.entries.last().map(|e| e.log_id)
}

fn encoded_len(entry: &Entry) -> usize {
    // Counting bytes through a writer that keeps none: no allocation of the encoding itself.
    let mut counter = ByteCounter(0);
    // An entry that cannot be encoded fails the call itself later; it counts as nothing here.
    let _ = serde_json::to_writer(&mut counter, entry);
    counter.0
}

struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::command::{Change, Request};
    use crate::store::objects::{ObjectKind, Timestamp};
    use crate::store::types::{EntryPayload, Vote};

    fn entry(index: u64, bytes: usize) -> Entry {
        Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Request {
                proposed_at: Timestamp::default(),
                changes: vec![Change::Delete {
                    kind: ObjectKind::Node,
                    id: "x".repeat(bytes),
                }],
            }),
        }
    }

    fn request(sizes: &[usize]) -> AppendEntriesRequest {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            leader_commit: None,
            entries: sizes
                .iter()
                .enumerate()
                .map(|(i, n)| entry(i as u64 + 1, *n))
                .collect(),
        }
    }

    #[test]
    fn a_batch_within_the_bound_goes_whole() {
        let mut small = request(&[100; 300]);
        assert_eq!(cut_to_size(&mut small, MAX_APPEND_BYTES), None);
        assert_eq!(small.entries.len(), 300);
        let mut heartbeat = request(&[]);
        assert_eq!(cut_to_size(&mut heartbeat, MAX_APPEND_BYTES), None);
    }

    #[test]
    fn a_large_batch_is_cut_after_the_last_entry_that_fits() {
        let mut large = request(&[40_000; 300]);
        let last = cut_to_size(&mut large, MAX_APPEND_BYTES).expect("cut");
        assert_eq!(large.entries.len(), 6, "6 × 40 kB fit in 256 KiB, 7 do not");
        assert_eq!(last.index, 6);
        let encoded: usize = large.entries.iter().map(encoded_len).sum();
        assert!(encoded <= MAX_APPEND_BYTES);
    }

    #[test]
    fn one_entry_larger_than_the_bound_still_goes_alone() {
        let mut huge = request(&[MAX_APPEND_BYTES * 2, 10]);
        let last = cut_to_size(&mut huge, MAX_APPEND_BYTES).expect("cut");
        assert_eq!((huge.entries.len(), last.index), (1, 1));
    }
}
