//! The seam between the executor and the data plane: the executor makes a
//! task's network namespace, the data plane wires it to the task's
//! networks ([`NetworkAttacher`]) before the task's process starts, so the
//! program sees its addresses from its first instruction (`hive/whoami`
//! reads them once at start).
//!
//! The executor itself only brings the namespace's loopback up: every
//! sandbox has a working `127.0.0.1`, with or without networks, as in
//! Docker (`--network none` still has `lo`).

use std::{
    fmt,
    net::IpAddr,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use futures::future::BoxFuture;
use hive_dataplane::netns::{self, NetnsError};
use nix::sys::socket::{AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use super::spec::NetworkAttachment;

/// Errors of a [`NetworkAttacher`]: its own types, boxed at this boundary so
/// the executor does not depend on the data plane's error enums.
pub type AttachError = Box<dyn std::error::Error + Send + Sync>;

/// The networks of one task, as the attacher needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskNetworks {
    pub task_id: String,
    /// 64 hex characters; attachers name interfaces after a prefix of it.
    pub container_id: String,
    pub networks: Vec<NetworkAttachment>,
}

/// One address configured inside a task's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedAddr {
    pub network_id: String,
    /// Interface inside the task (`eth0`, ...).
    pub interface: String,
    pub address: IpAddr,
    pub prefix_len: u8,
}

/// Connects a task's network namespace to its networks. The executor calls
/// `attach` in `prepare`, after the namespace exists and before the process
/// starts, and `detach` in `remove`, before the namespace goes away.
/// `detach` must be idempotent: `remove` may run after a failed `prepare`
/// or twice after a daemon restart.
pub trait NetworkAttacher: Send + Sync + fmt::Debug {
    /// Wire `task` into the namespace at `netns`; return what was configured.
    fn attach<'a>(
        &'a self,
        task: &'a TaskNetworks,
        netns: &'a Path,
    ) -> BoxFuture<'a, Result<Vec<AssignedAddr>, AttachError>>;

    /// Undo `attach` (host-side links, routes, map entries).
    fn detach<'a>(&'a self, task: &'a TaskNetworks) -> BoxFuture<'a, Result<(), AttachError>>;
}

/// An attacher that attaches nothing: tasks have only their loopback.
/// For nodes without a data plane and for tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNetworks;

impl NetworkAttacher for NoNetworks {
    fn attach<'a>(
        &'a self,
        _task: &'a TaskNetworks,
        _netns: &'a Path,
    ) -> BoxFuture<'a, Result<Vec<AssignedAddr>, AttachError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn detach<'a>(&'a self, _task: &'a TaskNetworks) -> BoxFuture<'a, Result<(), AttachError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The attacher of a node whose data plane should have loaded and did not: a task with no
/// network runs (loopback only), a task that needs one is refused with the cause, rather
/// than started cut off from its networks.
#[derive(Debug, Clone)]
pub struct NoDataplane {
    /// Why the data plane failed to load.
    pub cause: String,
}

/// What [`NoDataplane`] answers a task that needs a network.
#[derive(Debug, thiserror::Error)]
#[error("the data plane of this node failed to load: {cause}")]
pub struct DataplaneMissing {
    pub cause: String,
}

impl NetworkAttacher for NoDataplane {
    fn attach<'a>(
        &'a self,
        task: &'a TaskNetworks,
        _netns: &'a Path,
    ) -> BoxFuture<'a, Result<Vec<AssignedAddr>, AttachError>> {
        Box::pin(async move {
            if task.networks.is_empty() {
                return Ok(Vec::new());
            }
            Err(DataplaneMissing {
                cause: self.cause.clone(),
            }
            .into())
        })
    }

    fn detach<'a>(&'a self, _task: &'a TaskNetworks) -> BoxFuture<'a, Result<(), AttachError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Errors from setting up the loopback of a task's namespace.
#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("cannot bring up the loopback interface in {netns}: {source}")]
    Up {
        netns: PathBuf,
        source: std::io::Error,
    },
}

/// Bring `lo` up inside the namespace at `netns`. A fresh network namespace
/// has its loopback down; nothing on `127.0.0.1` works until it is up.
///
/// Two `ioctl`s (`SIOCGIFFLAGS`/`SIOCSIFFLAGS`) on a socket made inside the
/// namespace: the control plane stays off netlink (design §2), and this is
/// the one link setting that belongs to the sandbox rather than to a network.
pub fn loopback_up(netns: &Path) -> Result<(), LoopbackError> {
    netns::run_in(netns, set_loopback_up)?.map_err(|source| LoopbackError::Up {
        netns: netns.to_path_buf(),
        source,
    })
}

fn set_loopback_up() -> std::io::Result<()> {
    let socket = nix::sys::socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: `ifreq` is a C struct of integers, arrays and a union of such;
    // all-zero bytes are a valid value of it.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads `ifr_name` (NUL-terminated: the rest is
    // zero) and writes `ifr_ifru.ifru_flags` of the struct we own and lend
    // for the duration of the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel initialised `ifru_flags` in the call above, so
    // reading that union member is reading initialised memory of its type.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    request.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS only reads the struct we own.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod no_dataplane_tests {
    use super::*;

    fn task(networks: Vec<NetworkAttachment>) -> TaskNetworks {
        TaskNetworks {
            task_id: "t1".into(),
            container_id: "c".repeat(64),
            networks,
        }
    }

    #[tokio::test]
    async fn a_node_whose_data_plane_failed_refuses_tasks_with_networks() {
        let attacher = NoDataplane {
            cause: "netlink: permission denied".into(),
        };
        let overlay = NetworkAttachment {
            network_id: "n1".into(),
            addresses: vec!["10.0.1.7/24".into()],
            aliases: Vec::new(),
        };
        let err = attacher
            .attach(&task(vec![overlay]), Path::new("/nonexistent"))
            .await
            .expect_err("a task with a network must be refused");
        assert_eq!(
            err.to_string(),
            "the data plane of this node failed to load: netlink: permission denied"
        );
    }

    #[tokio::test]
    async fn a_task_without_networks_still_runs() {
        let attacher = NoDataplane {
            cause: "netlink: permission denied".into(),
        };
        let addrs = attacher
            .attach(&task(Vec::new()), Path::new("/nonexistent"))
            .await
            .expect("no network, nothing to refuse");
        assert!(addrs.is_empty());
    }
}
