//! Allocators for the dense ids (service and backend slots) and for the
//! Maglev segments in `HIVE_MAGLEV`.
//!
//! Both keep what was given back in a *retired* set first: a packet that
//! started before the update may still hold the old id or read the old
//! segment, so nothing is reused until [`crate::maps::RcuBarrier`] has
//! waited for every program run that could have seen it (see
//! `docs/dataplane.md`, "Grace period"). Callers retire, and release the
//! retired set after a barrier when they run short.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Dense slots `1..capacity`. Slot 0 is never handed out: a zeroed map entry
/// (an unwritten Maglev slot, a cleared frontend) then never names a real
/// service or backend.
#[derive(Debug, Clone)]
pub struct IdAllocator {
    capacity: u32,
    /// Lowest slot never handed out.
    next_unused: u32,
    /// Given back and past their grace period; reused oldest first, so a
    /// recently freed id (whose statistics someone may still be reading)
    /// stays unused for as long as possible.
    free: VecDeque<u32>,
    retired: Vec<u32>,
}

impl IdAllocator {
    pub fn new(capacity: u32) -> Self {
        Self {
            capacity,
            next_unused: 1,
            free: VecDeque::new(),
            retired: Vec::new(),
        }
    }

    /// An allocator where exactly `used` are taken (restart recovery). Ids
    /// not in `used` are retired, not free: the previous agent may have
    /// given them back moments ago.
    pub fn with_used(capacity: u32, used: impl IntoIterator<Item = u32>) -> Self {
        let used: BTreeSet<u32> = used.into_iter().filter(|&id| id != 0).collect();
        let next_unused = used.last().map_or(1, |&max| max + 1);
        let retired = (1..next_unused).filter(|id| !used.contains(id)).collect();
        Self {
            capacity,
            next_unused,
            free: VecDeque::new(),
            retired,
        }
    }

    /// A free slot, or `None` if every slot is taken or retired.
    pub fn allocate(&mut self) -> Option<u32> {
        if let Some(id) = self.free.pop_front() {
            return Some(id);
        }
        if self.next_unused < self.capacity {
            self.next_unused += 1;
            return Some(self.next_unused - 1);
        }
        None
    }

    /// Give `id` back; it becomes free after the next grace period.
    pub fn retire(&mut self, id: u32) {
        self.retired.push(id);
    }

    pub fn has_retired(&self) -> bool {
        !self.retired.is_empty()
    }

    /// Make every retired id free. Call only after a grace period.
    pub fn release_retired(&mut self) {
        self.free.extend(self.retired.drain(..));
    }

    /// Slots in use (neither free nor retired).
    pub fn in_use(&self) -> usize {
        (self.next_unused as usize - 1) - self.free.len() - self.retired.len()
    }
}

/// Contiguous segments of `HIVE_MAGLEV`: best fit over a coalescing free
/// list, O(log segments) per operation.
#[derive(Debug, Clone)]
pub struct SegmentAllocator {
    capacity: u32,
    /// Free extents by offset → length.
    by_offset: BTreeMap<u32, u32>,
    /// The same extents by (length, offset), for best fit.
    by_size: BTreeSet<(u32, u32)>,
    retired: Vec<(u32, u32)>,
}

impl SegmentAllocator {
    pub fn new(capacity: u32) -> Self {
        let mut alloc = Self {
            capacity,
            by_offset: BTreeMap::new(),
            by_size: BTreeSet::new(),
            retired: Vec::new(),
        };
        if capacity > 0 {
            alloc.insert_free(0, capacity);
        }
        alloc
    }

    /// An allocator where exactly the `used` extents `(offset, len)` are
    /// taken (restart recovery); everything else is retired, because the
    /// previous agent may have retired it moments ago. Overlapping or
    /// out-of-range extents are reported as `Err(offset)`.
    pub fn with_used(
        capacity: u32,
        used: impl IntoIterator<Item = (u32, u32)>,
    ) -> Result<Self, u32> {
        let mut used: Vec<(u32, u32)> = used.into_iter().filter(|&(_, len)| len > 0).collect();
        used.sort_unstable();
        let mut alloc = Self {
            capacity,
            by_offset: BTreeMap::new(),
            by_size: BTreeSet::new(),
            retired: Vec::new(),
        };
        let mut cursor = 0u32;
        for (offset, len) in used {
            let end = offset
                .checked_add(len)
                .filter(|&e| e <= capacity)
                .ok_or(offset)?;
            if offset < cursor {
                return Err(offset);
            }
            if offset > cursor {
                alloc.retired.push((cursor, offset - cursor));
            }
            cursor = end;
        }
        if cursor < capacity {
            alloc.retired.push((cursor, capacity - cursor));
        }
        Ok(alloc)
    }

    /// A segment of `len` slots, or `None` if no free extent is that long.
    pub fn allocate(&mut self, len: u32) -> Option<u32> {
        if len == 0 {
            return Some(0);
        }
        let &(extent_len, offset) = self.by_size.range((len, 0)..).next()?;
        self.remove_free(offset, extent_len);
        if extent_len > len {
            self.insert_free(offset + len, extent_len - len);
        }
        Some(offset)
    }

    /// Give a segment back; it becomes free after the next grace period.
    pub fn retire(&mut self, offset: u32, len: u32) {
        if len > 0 {
            self.retired.push((offset, len));
        }
    }

    pub fn has_retired(&self) -> bool {
        !self.retired.is_empty()
    }

    /// Make every retired segment free. Call only after a grace period.
    pub fn release_retired(&mut self) {
        for (offset, len) in std::mem::take(&mut self.retired) {
            self.free(offset, len);
        }
    }

    /// Free slots (not counting retired ones).
    pub fn free_slots(&self) -> u64 {
        self.by_offset.values().map(|&l| u64::from(l)).sum()
    }

    /// The longest free extent.
    pub fn largest_free(&self) -> u32 {
        self.by_size.last().map_or(0, |&(len, _)| len)
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    fn free(&mut self, mut offset: u32, mut len: u32) {
        // Merge with the extent just before and the one just after.
        if let Some((&prev, &prev_len)) = self.by_offset.range(..offset).next_back()
            && prev + prev_len == offset
        {
            self.remove_free(prev, prev_len);
            offset = prev;
            len += prev_len;
        }
        if let Some(&next_len) = self.by_offset.get(&(offset + len)) {
            self.remove_free(offset + len, next_len);
            len += next_len;
        }
        self.insert_free(offset, len);
    }

    fn insert_free(&mut self, offset: u32, len: u32) {
        self.by_offset.insert(offset, len);
        self.by_size.insert((len, offset));
    }

    fn remove_free(&mut self, offset: u32, len: u32) {
        self.by_offset.remove(&offset);
        self.by_size.remove(&(len, offset));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_start_at_one_and_come_back_only_after_release() {
        let mut ids = IdAllocator::new(4);
        assert_eq!(ids.allocate(), Some(1));
        assert_eq!(ids.allocate(), Some(2));
        assert_eq!(ids.allocate(), Some(3));
        assert_eq!(ids.allocate(), None);
        ids.retire(2);
        assert_eq!(ids.allocate(), None, "retired ids wait for a grace period");
        assert!(ids.has_retired());
        ids.release_retired();
        assert_eq!(ids.allocate(), Some(2));
        assert_eq!(ids.in_use(), 3);
    }

    #[test]
    fn recovered_ids_keep_the_used_ones_and_retire_the_gaps() {
        let mut ids = IdAllocator::with_used(10, [3, 1, 5]);
        assert_eq!(ids.in_use(), 3);
        assert_eq!(ids.allocate(), Some(6));
        ids.release_retired();
        let mut got = vec![ids.allocate(), ids.allocate()];
        got.sort();
        assert_eq!(got, vec![Some(2), Some(4)]);
    }

    #[test]
    fn segments_best_fit_split_and_coalesce() {
        let mut segs = SegmentAllocator::new(1000);
        let a = segs.allocate(100).expect("room");
        let b = segs.allocate(200).expect("room");
        let c = segs.allocate(300).expect("room");
        assert_eq!((a, b, c), (0, 100, 300));
        segs.retire(b, 200);
        assert_eq!(segs.allocate(500), None, "400 free at the end only");
        segs.release_retired();
        // Best fit: the 150 goes into the 200 hole, not the 400 tail.
        assert_eq!(segs.allocate(150), Some(100));
        segs.retire(a, 100);
        segs.retire(100, 150);
        segs.retire(c, 300);
        segs.release_retired();
        assert_eq!(segs.free_slots(), 1000);
        assert_eq!(segs.largest_free(), 1000, "everything merged back");
    }

    #[test]
    fn recovered_segments_reject_overlaps() {
        assert!(SegmentAllocator::with_used(100, [(0, 10), (5, 10)]).is_err());
        assert!(SegmentAllocator::with_used(100, [(95, 10)]).is_err());
        let mut segs = SegmentAllocator::with_used(100, [(10, 10), (50, 5)]).expect("fine");
        assert_eq!(segs.allocate(1), None, "gaps are retired first");
        segs.release_retired();
        assert_eq!(segs.free_slots(), 85);
        assert_eq!(segs.largest_free(), 45);
    }
}
