//! Network and UTS namespaces: create persistent ones the way `ip netns add`
//! does, remove them, and run code or commands inside them.
//!
//! A namespace lives as long as something refers to it. hive keeps the ones it
//! makes alive by bind-mounting `/proc/thread-self/ns/<kind>` onto a file
//! (`/run/netns/<name>` for network namespaces, exactly like iproute2, so that
//! `ip netns list` and `ip netns exec` see them). Removing the mount and the
//! file lets the kernel tear the namespace down, and with it every link inside.
//!
//! Entering a namespace only ever happens on a dedicated thread (`setns`
//! changes the calling thread only) or in a forked child before `exec`, so the
//! caller's threads, and any tokio runtime, stay where they were. A netlink
//! socket stays bound to the namespace it was created in, so
//! [`rtnetlink_in`] opens the socket on such a thread and hands it back.
//!
//! Every `unsafe` block of the lab lives in this module.

use std::{
    fmt,
    fs::{File, OpenOptions},
    io,
    os::unix::{fs::OpenOptionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
};

use netlink_packet_route::RouteNetlinkMessage;
use nix::{
    errno::Errno,
    mount::{MntFlags, MsFlags},
    sched::CloneFlags,
};

/// Where iproute2 (and hive) keep named network namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// How many stacked mounts [`remove`] peels off one file before giving up;
/// shared mount propagation can leave more than one mount on the same path.
const MAX_UNMOUNTS: usize = 8;

/// The kinds of namespace hive creates and enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NsKind {
    /// Network namespace: links, addresses, routes, sockets, sysctls.
    Net,
    /// UTS namespace: the hostname.
    Uts,
}

impl NsKind {
    fn clone_flag(self) -> CloneFlags {
        match self {
            Self::Net => CloneFlags::CLONE_NEWNET,
            Self::Uts => CloneFlags::CLONE_NEWUTS,
        }
    }

    /// The name of the namespace under `/proc/<pid>/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            Self::Net => "net",
            Self::Uts => "uts",
        }
    }
}

impl fmt::Display for NsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Net => "network",
            Self::Uts => "UTS",
        })
    }
}

/// Errors from creating, entering or removing namespaces.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot create directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error(
        "cannot make {path} a shared mount point (hive does this like `ip netns add`, so that removing a namespace also removes it from other mount namespaces): {source}; hive needs root (CAP_SYS_ADMIN)"
    )]
    SharedMount { path: PathBuf, source: Errno },
    #[error("namespace file {path} already exists; remove what owns it first (`hive lab down`)")]
    AlreadyExists { path: PathBuf },
    #[error("cannot create namespace file {path}: {source}")]
    CreateFile { path: PathBuf, source: io::Error },
    #[error(
        "cannot create a new {kind} namespace (unshare): {source}; hive needs root (CAP_SYS_ADMIN)"
    )]
    Unshare { kind: NsKind, source: Errno },
    #[error("cannot set the hostname to {hostname:?} in a new UTS namespace: {source}")]
    SetHostname { hostname: String, source: Errno },
    #[error("cannot bind-mount the new {kind} namespace onto {path}: {source}")]
    BindMount {
        kind: NsKind,
        path: PathBuf,
        source: Errno,
    },
    #[error(
        "cannot open namespace file {path}: {source}; does the namespace exist (`ip netns list`, `hive lab ls`)?"
    )]
    Open { path: PathBuf, source: io::Error },
    #[error(
        "cannot enter the {kind} namespace {path} (setns): {source}; is it a {kind} namespace file, and are we root?"
    )]
    Enter {
        kind: NsKind,
        path: PathBuf,
        source: Errno,
    },
    #[error("cannot unmount namespace file {path}: {source}")]
    Unmount { path: PathBuf, source: Errno },
    #[error("cannot remove namespace file {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("cannot start a thread to work inside namespace {path}: {source}")]
    Spawn { path: PathBuf, source: io::Error },
    #[error("cannot open a netlink socket inside namespace {path}: {source}")]
    Netlink { path: PathBuf, source: io::Error },
    #[error(
        "netns::rtnetlink_in must be called from inside a tokio runtime (it registers the socket with that runtime)"
    )]
    NoRuntime,
}

/// The path of the named network namespace `name` (`/run/netns/<name>`).
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

/// Make `dir` exist and be a shared mount point, as `ip netns add` does for
/// `/run/netns`.
///
/// Namespace files are bind mounts. If `dir` were private, a mount namespace
/// created later (a task's) would copy those mounts and keep our namespaces
/// alive after we unmount them; with shared propagation the unmount reaches
/// every copy.
pub fn ensure_shared_dir(dir: &Path) -> Result<(), NetnsError> {
    std::fs::create_dir_all(dir).map_err(|source| NetnsError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let make_shared = || {
        nix::mount::mount::<str, Path, str, str>(
            None,
            dir,
            None,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None,
        )
    };
    match make_shared() {
        Ok(()) => Ok(()),
        // EINVAL: `dir` is not a mount point yet; bind it onto itself first.
        Err(Errno::EINVAL) => nix::mount::mount::<Path, Path, str, str>(
            Some(dir),
            dir,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .and_then(|()| make_shared())
        .map_err(|source| NetnsError::SharedMount {
            path: dir.to_path_buf(),
            source,
        }),
        Err(source) => Err(NetnsError::SharedMount {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Create a new network namespace and keep it alive at `path`
/// (use [`netns_path`] for a namespace `ip netns` can see).
pub fn create_netns(path: &Path) -> Result<(), NetnsError> {
    create_persistent(NsKind::Net, path, || Ok(()))
}

/// Create a new UTS namespace whose hostname is `hostname` and keep it alive
/// at `path`.
pub fn create_uts(path: &Path, hostname: &str) -> Result<(), NetnsError> {
    create_persistent(NsKind::Uts, path, || {
        nix::unistd::sethostname(hostname).map_err(|source| NetnsError::SetHostname {
            hostname: hostname.to_owned(),
            source,
        })
    })
}

/// Create the file, then on a fresh thread unshare a namespace of `kind`, run
/// `init` inside it, and bind-mount it onto the file. The thread exits
/// afterwards, so no thread of ours is left inside the namespace.
fn create_persistent(
    kind: NsKind,
    path: &Path,
    init: impl FnOnce() -> Result<(), NetnsError> + Send,
) -> Result<(), NetnsError> {
    // O_EXCL: two creators of the same name must not share one namespace.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => NetnsError::AlreadyExists {
                path: path.to_path_buf(),
            },
            _ => NetnsError::CreateFile {
                path: path.to_path_buf(),
                source,
            },
        })?;
    let result = std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name(format!("hive-unshare-{}", kind.proc_name()))
            .spawn_scoped(scope, || {
                nix::sched::unshare(kind.clone_flag())
                    .map_err(|source| NetnsError::Unshare { kind, source })?;
                init()?;
                let own = format!("/proc/thread-self/ns/{}", kind.proc_name());
                nix::mount::mount::<str, Path, str, str>(
                    Some(own.as_str()),
                    path,
                    None,
                    MsFlags::MS_BIND,
                    None,
                )
                .map_err(|source| NetnsError::BindMount {
                    kind,
                    path: path.to_path_buf(),
                    source,
                })
            })
            .map_err(|source| NetnsError::Spawn {
                path: path.to_path_buf(),
                source,
            })?;
        join_or_resume(worker)
    });
    if result.is_err() {
        // Best effort: leave no empty placeholder behind; `remove` tolerates
        // a file that was never mounted.
        let _ = remove(path);
    }
    result
}

/// Remove a namespace file made by [`create_netns`] or [`create_uts`] (or by
/// `ip netns add`): lazily unmount it, then unlink it. Returns whether
/// anything was there. Missing files and files that are not mounted are fine,
/// so this can sweep after a crash.
pub fn remove(path: &Path) -> Result<bool, NetnsError> {
    let mut found = false;
    for _ in 0..MAX_UNMOUNTS {
        match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => found = true,
            // EINVAL: not a mount point (any more); ENOENT: no such file.
            Err(Errno::EINVAL | Errno::ENOENT) => break,
            Err(source) => {
                return Err(NetnsError::Unmount {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(found),
        Err(source) => Err(NetnsError::Remove {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Open a namespace file (`/run/netns/<name>`, `/proc/<pid>/ns/net`, ...),
/// e.g. to move a link into it by fd (`IFLA_NET_NS_FD`) or to enter it later.
pub fn open(path: &Path) -> Result<File, NetnsError> {
    File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// Run `f` on a new thread that has entered the network namespace at
/// `ns_path`, and return its result. The calling thread never changes
/// namespace. A panic in `f` is propagated to the caller.
///
/// Sockets `f` creates (TCP listeners, netlink sockets, ...) belong to that
/// namespace for their whole life, wherever they are used afterwards; files
/// under `/proc/sys/net` that `f` opens are that namespace's sysctls.
pub fn run_in<F, T>(ns_path: &Path, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let ns = open(ns_path)?;
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("hive-netns".to_owned())
            .spawn_scoped(scope, move || {
                nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|source| {
                    NetnsError::Enter {
                        kind: NsKind::Net,
                        path: ns_path.to_path_buf(),
                        source,
                    }
                })?;
                Ok(f())
            })
            .map_err(|source| NetnsError::Spawn {
                path: ns_path.to_path_buf(),
                source,
            })?;
        join_or_resume(worker)
    })
}

/// Open an rtnetlink connection inside the network namespace at `ns_path`.
///
/// Must be called from inside a tokio runtime: the socket is registered with
/// it. Spawn the returned connection on that runtime (`tokio::spawn(conn)`),
/// then use the handle from anywhere; every request acts on that namespace.
pub fn rtnetlink_in(
    ns_path: &Path,
) -> Result<
    (
        rtnetlink::proto::Connection<RouteNetlinkMessage>,
        rtnetlink::Handle,
    ),
    NetnsError,
> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetnsError::NoRuntime)?;
    run_in(ns_path, move || {
        let _entered = runtime.enter();
        rtnetlink::new_connection()
    })?
    .map(|(connection, handle, _unsolicited)| (connection, handle))
    .map_err(|source| NetnsError::Netlink {
        path: ns_path.to_path_buf(),
        source,
    })
}

/// Make `command` enter the given namespaces in the child, after `fork` and
/// before `exec`. The files are opened by the caller beforehand, so a missing
/// namespace is reported as an error here rather than as a failed spawn.
/// The parent never changes namespace.
pub fn enter_on_spawn(command: &mut Command, namespaces: Vec<(NsKind, File)>) {
    let hook = move || -> io::Result<()> {
        for (kind, file) in &namespaces {
            nix::sched::setns(file, kind.clone_flag()).map_err(io::Error::from)?;
        }
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before exec, where only
    // async-signal-safe work is allowed. It iterates an already-built Vec
    // (no allocation), calls setns(2) (a plain system call) and turns an
    // errno into an io::Error with `from_raw_os_error` (no allocation). It
    // touches no lock, no allocator state and no other thread's data.
    unsafe {
        command.pre_exec(hook);
    }
}

/// Join a scoped worker; re-raise its panic on the caller's thread so a
/// failing test closure reads like an ordinary panic.
fn join_or_resume<T>(worker: std::thread::ScopedJoinHandle<'_, T>) -> T {
    match worker.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_files_live_where_iproute2_looks() {
        assert_eq!(
            netns_path("hive-default-n1"),
            PathBuf::from("/run/netns/hive-default-n1")
        );
    }

    #[test]
    fn kinds_map_to_proc_names() {
        assert_eq!(NsKind::Net.proc_name(), "net");
        assert_eq!(NsKind::Uts.proc_name(), "uts");
    }

    #[test]
    fn removing_a_missing_file_reports_nothing_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent");
        assert!(!remove(&path).expect("remove of a missing file is fine"));
    }

    #[test]
    fn removing_a_plain_file_unlinks_it() {
        // What a creator killed between `open(O_EXCL)` and `mount` leaves.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("placeholder");
        std::fs::write(&path, b"").expect("write");
        assert!(remove(&path).expect("remove"));
        assert!(!path.exists());
    }

    #[test]
    fn run_in_reports_a_missing_namespace() {
        let err =
            run_in(Path::new("/run/netns/hive-no-such-namespace"), || ()).expect_err("must fail");
        assert!(matches!(err, NetnsError::Open { .. }), "{err}");
    }
}
