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
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;

/// The leading fields of `union bpf_attr` for `BPF_MAP_CREATE`; the kernel
/// requires every byte past the fields it knows to be zero, which the
/// zeroed tail guarantees.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    _tail: [u32; 16],
}

/// `union bpf_attr` for `BPF_MAP_UPDATE_ELEM`.
#[repr(C)]
#[derive(Default)]
struct MapUpdateAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

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
        let key: u32 = 0;
        let value = u32::try_from(self.inner.as_raw_fd()).map_err(io::Error::other)?;
        let attr = MapUpdateAttr {
            map_fd: u32::try_from(self.outer.as_raw_fd()).map_err(io::Error::other)?,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            ..MapUpdateAttr::default()
        };
        // SAFETY: `attr` is a valid `bpf_attr` prefix for this command, and
        // the key and value pointers it carries point at live `u32`s on our
        // stack for the duration of the call; the kernel only reads them.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_UPDATE_ELEM,
                &attr as *const MapUpdateAttr,
                size_of::<MapUpdateAttr>(),
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn create_map(attr: MapCreateAttr) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a valid, zero-tailed `bpf_attr` for BPF_MAP_CREATE
    // that outlives the call; the kernel only reads it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &attr as *const MapCreateAttr,
            size_of::<MapCreateAttr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: BPF_MAP_CREATE returned a new file descriptor that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
