//! The few `bpf(2)` commands aya 0.14 does not expose: creating a
//! map-in-map (for [`super::RcuBarrier`]), updating it, batched updates
//! (Maglev segments), opening a pinned object and detaching a link. Every
//! `unsafe` of the data-plane agent's map code is here.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsFd, AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_LINK_DETACH: libc::c_long = 34;
/// The kernel's internal "operation not supported" (`include/linux/errno.h`),
/// which `bpf(2)` returns for a batch on a map type without batch support.
const ENOTSUPP: i32 = 524;
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
pub const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;

/// The leading fields of `union bpf_attr` for `BPF_MAP_CREATE`; the kernel
/// requires every byte past the fields it knows to be zero, which the
/// zeroed tail guarantees.
#[repr(C)]
#[derive(Default)]
pub struct MapCreateAttr {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub inner_map_fd: u32,
    pub numa_node: u32,
    pub map_name: [u8; 16],
    pub _tail: [u32; 16],
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

/// `union bpf_attr` for the `BPF_MAP_*_BATCH` commands.
#[repr(C)]
#[derive(Default)]
struct MapBatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    /// In: elements to process; out: elements processed.
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// `union bpf_attr` for `BPF_OBJ_GET`.
#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

/// `union bpf_attr` for `BPF_LINK_DETACH`.
#[repr(C)]
#[derive(Default)]
struct LinkDetachAttr {
    link_fd: u32,
    _pad: [u32; 3],
}

/// `bpf(cmd, attr)`: the syscall's return value or the errno.
///
/// # Safety
///
/// `attr` must be a valid `bpf_attr` for `cmd`, and every pointer it
/// carries must point at memory that is valid (and, for outputs, writable)
/// for the duration of the call.
unsafe fn bpf<A>(cmd: libc::c_long, attr: &A) -> io::Result<libc::c_long> {
    // SAFETY: forwarded from the caller.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const A, size_of::<A>()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// [`bpf`] for commands that write results back into `attr`.
///
/// # Safety
///
/// As for [`bpf`].
unsafe fn bpf_mut<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: forwarded from the caller; `attr` is writable.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, size_of::<A>()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned this new descriptor; nothing else
    // owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn create_map(attr: MapCreateAttr) -> io::Result<OwnedFd> {
    // SAFETY: a zero-tailed BPF_MAP_CREATE attr without pointers.
    owned(unsafe { bpf(BPF_MAP_CREATE, &attr) }?)
}

/// `map[key] = value` for a map with 4-byte keys and values.
pub fn update_elem(map: &impl AsFd, key: u32, value: u32) -> io::Result<()> {
    let attr = MapUpdateAttr {
        map_fd: u32::try_from(map.as_fd().as_raw_fd()).map_err(io::Error::other)?,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        ..MapUpdateAttr::default()
    };
    // SAFETY: key and value point at live u32s on this stack frame for the
    // whole call; the kernel only reads them.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &attr) }.map(drop)
}

/// Why a batched update did not happen.
#[derive(Debug)]
pub enum BatchError {
    /// This kernel (before 5.6) or map type has no batched updates: write
    /// element by element instead.
    Unsupported,
    Failed(io::Error),
}

/// `map[keys[i]] = values[i]` for every `i`, in one syscall, for a map with
/// 4-byte keys and values. On failure a prefix of the elements may have
/// been written.
pub fn update_batch(map: &impl AsFd, keys: &[u32], values: &[u32]) -> Result<(), BatchError> {
    fn fail(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BatchError {
        BatchError::Failed(io::Error::other(e))
    }
    if keys.len() != values.len() {
        return Err(fail("a batch needs as many keys as values"));
    }
    let mut attr = MapBatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: u32::try_from(keys.len()).map_err(fail)?,
        map_fd: u32::try_from(map.as_fd().as_raw_fd()).map_err(fail)?,
        ..MapBatchAttr::default()
    };
    // SAFETY: `keys` and `values` hold `count` u32s each and outlive the
    // call; the kernel only reads them. It writes `count` back into
    // `attr`, which is a live, exclusively borrowed local.
    match unsafe { bpf_mut(BPF_MAP_UPDATE_BATCH, &mut attr) } {
        Ok(_) => Ok(()),
        Err(e) => match e.raw_os_error() {
            // EINVAL: a kernel that does not know the command.
            Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP) => Err(BatchError::Unsupported),
            _ => Err(BatchError::Failed(e)),
        },
    }
}

/// Open a pinned BPF object.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let attr = ObjGetAttr {
        pathname: path.as_ptr() as u64,
        ..ObjGetAttr::default()
    };
    // SAFETY: `pathname` points at a NUL-terminated string that outlives
    // the call.
    owned(unsafe { bpf(BPF_OBJ_GET, &attr) }?)
}

/// Detach a link now (5.9+), rather than when its last reference goes —
/// which, for a pinned link, the kernel defers to a workqueue after the
/// unlink.
pub fn link_detach(link: &impl AsFd) -> io::Result<()> {
    let attr = LinkDetachAttr {
        link_fd: u32::try_from(link.as_fd().as_raw_fd()).map_err(io::Error::other)?,
        ..LinkDetachAttr::default()
    };
    // SAFETY: a BPF_LINK_DETACH attr without pointers.
    unsafe { bpf(BPF_LINK_DETACH, &attr) }.map(drop)
}

/// Detach the link pinned at `path`, if any; then the pin can be removed.
pub fn detach_pinned_link(path: &Path) -> io::Result<()> {
    match obj_get(path) {
        Ok(fd) => link_detach(&fd),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
