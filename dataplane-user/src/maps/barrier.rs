//! A grace period on demand: return only once every eBPF program run that
//! was in progress when we were called has finished.
//!
//! Why it is needed: a packet reads `HIVE_RINGS[service]` and then
//! `HIVE_MAGLEV[offset + hash % size]`. If user space flips the ring and
//! immediately reuses the old segment for another service, a packet that
//! read the old ring just before the flip could pick up a slot that now
//! names another service's backend. So a retired segment (or id) may be
//! reused only after every program run that could have seen it is over.
//!
//! How: XDP and tc programs run inside RCU read-side critical sections
//! (softirq / `rcu_read_lock`), so `synchronize_rcu()` is exactly the wait
//! we need. User space cannot call it directly, but the kernel calls it for
//! us on every successful update of a map-in-map from user space
//! (`maybe_wait_bpf_programs()` in `kernel/bpf/syscall.c`, 5.0+; the kernel
//! selftests use the same trick in `kern_sync_rcu()`). So the barrier is a
//! one-slot `ARRAY_OF_MAPS` we update with a tiny inner array. The maps are
//! private to this process; nothing is pinned.

use std::{
    io,
    os::fd::{AsRawFd as _, OwnedFd},
};

use super::sys::{
    BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_ARRAY_OF_MAPS, MapCreateAttr, create_map, update_elem,
};

/// See the module documentation.
#[derive(Debug)]
pub struct RcuBarrier {
    outer: OwnedFd,
    inner: OwnedFd,
}

impl RcuBarrier {
    pub fn new() -> io::Result<Self> {
        let inner = create_map(MapCreateAttr {
            map_type: BPF_MAP_TYPE_ARRAY,
            key_size: 4,
            value_size: 4,
            max_entries: 1,
            map_name: *b"hive_rcu_inner\0\0",
            ..MapCreateAttr::default()
        })?;
        let inner_fd = u32::try_from(inner.as_raw_fd()).map_err(io::Error::other)?;
        let outer = create_map(MapCreateAttr {
            map_type: BPF_MAP_TYPE_ARRAY_OF_MAPS,
            key_size: 4,
            value_size: 4,
            max_entries: 1,
            inner_map_fd: inner_fd,
            map_name: *b"hive_rcu_sync\0\0\0",
            ..MapCreateAttr::default()
        })?;
        Ok(Self { outer, inner })
    }

    /// Wait for a grace period (`synchronize_rcu()` in the kernel).
    pub fn wait(&self) -> io::Result<()> {
        let value = u32::try_from(self.inner.as_raw_fd()).map_err(io::Error::other)?;
        update_elem(&self.outer, 0, value)
    }
}
