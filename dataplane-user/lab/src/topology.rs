//! Building a lab's network from its planned state, with rtnetlink only:
//! namespaces, the underlay bridge, one veth per member, addresses, sysctls.
//!
//! ```text
//!  hive-<lab>-n1        hive-<lab>-n2   ...   hive-<lab>-client
//!  eth0 192.168.77.1    eth0 .2               eth0 .100
//!    |                    |                     |
//!  u-n1 ---------------- u-n2 --------------- u-client
//!  '----------------- br0 in hive-<lab>-underlay -----'
//! ```
//!
//! Every netlink socket is opened inside the namespace it configures, so
//! nothing here is ever created in, or even briefly visible from, the host's
//! own network namespace: each veth is created with both ends placed
//! straight into their namespaces (`IFLA_NET_NS_FD` on the link and on its
//! peer), like `ip link add eth0 netns A type veth peer u-x netns B`.

use std::{
    future::Future,
    io,
    net::IpAddr,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    time::Duration,
};

use futures::TryStreamExt as _;
use netlink_packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth};

use super::state::{LabState, MemberState, Role};
use hive_dataplane::netns::{self, NetnsError};

/// Upper bound for one netlink request; they take microseconds when healthy.
const NETLINK_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors while building the lab network.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("netlink: cannot {what} in namespace {netns}: {source}")]
    Netlink {
        what: String,
        netns: String,
        source: rtnetlink::Error,
    },
    #[error("netlink: no answer within {timeout:?} to {what} in namespace {netns}")]
    Timeout {
        what: String,
        netns: String,
        timeout: Duration,
    },
    #[error("link {link} is missing in namespace {netns} right after it was created")]
    LinkMissing { link: String, netns: String },
    #[error("cannot set sysctl {key}={value} in namespace {netns}: {source}")]
    Sysctl {
        key: String,
        value: String,
        netns: String,
        source: io::Error,
    },
    #[error("cannot create directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot start the runtime that drives netlink: {source}")]
    Runtime { source: io::Error },
    #[error(transparent)]
    VethPeer(#[from] crate::veth_peer::VethPeerError),
    #[error(transparent)]
    Ethtool(#[from] crate::ethtool::EthtoolError),
}

/// Create every namespace, link, address and directory `state` plans.
///
/// Blocking. Runs on its own thread with a private current-thread runtime,
/// so it works from plain code and from inside another tokio runtime alike.
pub fn build(state: &LabState) -> Result<(), TopologyError> {
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| TopologyError::Runtime { source })?;
            runtime.block_on(build_async(state))
        });
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

async fn build_async(state: &LabState) -> Result<(), TopologyError> {
    let underlay = &state.underlay;
    netns::create_netns(&underlay.netns_path)?;
    set_sysctls(&underlay.netns_path, &underlay.netns, &quiet_sysctls())?;
    set_present_sysctls(
        &underlay.netns_path,
        &underlay.netns,
        &BRIDGE_WITHOUT_NETFILTER,
    )?;
    let bridge_ns = NsNetlink::open(&underlay.netns, &underlay.netns_path)?;
    bridge_ns.set_up("lo").await?;
    bridge_ns
        .run(
            format!("create bridge {}", underlay.bridge),
            bridge_ns
                .handle
                .link()
                .add(LinkBridge::new(&underlay.bridge).up().build())
                .execute(),
        )
        .await?;
    let bridge_index = bridge_ns.index_of(&underlay.bridge).await?;
    let underlay_fd = netns::open(&underlay.netns_path)?;

    for member in &state.members {
        add_member(member, &bridge_ns, bridge_index, &underlay_fd).await?;
    }
    attach_bridge_side_pass(state)
}

/// `XDP_PASS` on the bridge side of every member's veth, so frames the
/// members' XDP programs send with `XDP_TX` reach the bridge (see
/// [`crate::veth_peer`]). A binary built without eBPF gets a lab that works
/// for everything but that, with a warning.
fn attach_bridge_side_pass(state: &LabState) -> Result<(), TopologyError> {
    let result = netns::run_in(&state.underlay.netns_path, || {
        state.members.iter().try_for_each(|member| {
            crate::veth_peer::attach_pass(
                &member.peer_link,
                &underlay_pin(state, &member.peer_link),
            )
        })
    })?;
    match result {
        Err(crate::veth_peer::VethPeerError::NotEmbedded) => {
            tracing::warn!(
                "lab {}: no eBPF programs in this binary; XDP_TX from the nodes will not reach the bridge",
                state.name
            );
            Ok(())
        }
        other => Ok(other?),
    }
}

/// Pins of the bridge-side pass programs, under the lab's BPF directory.
const UNDERLAY_PIN_DIR: &str = "underlay";

/// Where the XDP link of the bridge port `port` is pinned.
pub(crate) fn underlay_pin(state: &LabState, port: &str) -> PathBuf {
    super::naming::bpf_lab_dir(&state.name)
        .join(UNDERLAY_PIN_DIR)
        .join(port)
}

/// One member: its namespaces, its veth into the bridge, its address, and
/// the directories reserved for its daemon.
async fn add_member(
    member: &MemberState,
    bridge_ns: &NsNetlink,
    bridge_index: u32,
    underlay_fd: &std::fs::File,
) -> Result<(), TopologyError> {
    if let Some(dir) = member.uts_path.parent() {
        create_dir(dir)?;
    }
    netns::create_netns(&member.netns_path)?;
    netns::create_uts(&member.uts_path, &member.name)?;

    // Before any link exists, so `default` applies to eth0 as it is made.
    let mut sysctls = quiet_sysctls();
    sysctls.extend([
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
    ]);
    match member.role {
        Role::Node => sysctls.push(("net.ipv4.ip_forward", "1")),
        Role::Client => sysctls.extend(load_generator_sysctls()),
    }
    set_sysctls(&member.netns_path, &member.netns, &sysctls)?;

    let node_ns = NsNetlink::open(&member.netns, &member.netns_path)?;
    node_ns.set_up("lo").await?;

    let member_fd = netns::open(&member.netns_path)?;
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(member.peer_link.clone())
        .setns_by_fd(underlay_fd.as_raw_fd())
        .build();
    let mut veth = LinkVeth::new(&member.link, &member.peer_link)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .setns_by_fd(member_fd.as_raw_fd());
    if let Some(mac) = parse_mac(&member.mac) {
        veth = veth.address(mac.to_vec());
    }
    let veth = veth.build();
    bridge_ns
        .run(
            format!("create veth {} <-> {}", member.link, member.peer_link),
            bridge_ns.handle.link().add(veth).execute(),
        )
        .await?;

    let peer_index = bridge_ns.index_of(&member.peer_link).await?;
    bridge_ns
        .run(
            format!("attach {} to the bridge and bring it up", member.peer_link),
            bridge_ns
                .handle
                .link()
                .set(
                    LinkUnspec::new_with_index(peer_index)
                        .controller(bridge_index)
                        .up()
                        .build(),
                )
                .execute(),
        )
        .await?;

    // Complete checksums before they leave, as a physical NIC would (see
    // `crate::ethtool`): XDP_TX must never forward a partial checksum.
    let link = member.link.clone();
    netns::run_in(&member.netns_path, move || {
        crate::ethtool::set_tx_checksum(&link, false)
    })??;

    let link_index = node_ns.index_of(&member.link).await?;
    node_ns
        .run(
            format!(
                "add {}/{} to {}",
                member.underlay_addr, member.underlay_prefix_len, member.link
            ),
            node_ns
                .handle
                .address()
                .add(
                    link_index,
                    IpAddr::V4(member.underlay_addr),
                    member.underlay_prefix_len,
                )
                .execute(),
        )
        .await?;
    node_ns.set_up(&member.link).await?;
    let rp_filter = format!("net.ipv4.conf.{}.rp_filter", member.link);
    set_sysctls(
        &member.netns_path,
        &member.netns,
        &[(rp_filter.as_str(), "0")],
    )?;

    for dir in [&member.data_dir, &member.bpf_pin_dir]
        .into_iter()
        .flatten()
    {
        create_dir(dir)?;
    }
    Ok(())
}

/// Sysctls of the client as a load generator, as the kernel baseline sets
/// them (`../shared/reference/kernel-baseline/topo.sh`). A benchmark opens a
/// new connection per request, tens of thousands a second: with the default
/// 28,232 ephemeral ports and no reuse of ports in TIME_WAIT (60 s), the
/// client runs out of ports within seconds, and `connect` then stalls on the
/// port search, whatever path the connections take.
fn load_generator_sysctls() -> [(&'static str, &'static str); 2] {
    [
        ("net.ipv4.ip_local_port_range", "10240 65000"),
        ("net.ipv4.tcp_tw_reuse", "1"),
    ]
}

/// Sysctls that make a lab's bridge a wire: the underlay's, and the mesh
/// benchmark's overlay bridges on the kernel path. With `br_netfilter` loaded
/// (Docker loads it), a bridge hands every frame it forwards to the
/// namespace's iptables, ip6tables and arptables hooks, and with them to
/// conntrack: on this machine that was 13 % of all CPU time of a benchmark
/// run, on every path alike (`docs/lab.md`). A physical switch does none
/// of it. Without `br_netfilter` the keys do not exist, and there is nothing
/// to turn off.
pub const BRIDGE_WITHOUT_NETFILTER: [(&str, &str); 3] = [
    ("net.bridge.bridge-nf-call-iptables", "0"),
    ("net.bridge.bridge-nf-call-ip6tables", "0"),
    ("net.bridge.bridge-nf-call-arptables", "0"),
];

/// Sysctls that keep a lab namespace quiet: no IPv6 (no router
/// solicitations, no DAD, no link-local chatter in captures).
fn quiet_sysctls() -> Vec<(&'static str, &'static str)> {
    vec![
        ("net.ipv6.conf.all.disable_ipv6", "1"),
        ("net.ipv6.conf.default.disable_ipv6", "1"),
    ]
}

/// Write sysctls from a thread inside the namespace: `/proc/sys/net` shows
/// the network namespace of the thread that opens it.
fn set_sysctls(ns_path: &Path, netns: &str, sysctls: &[(&str, &str)]) -> Result<(), TopologyError> {
    netns::run_in(ns_path, || {
        sysctls.iter().try_for_each(|(key, value)| {
            let path = Path::new("/proc/sys").join(key.replace('.', "/"));
            std::fs::write(&path, value).map_err(|source| TopologyError::Sysctl {
                key: (*key).to_owned(),
                value: (*value).to_owned(),
                netns: netns.to_owned(),
                source,
            })
        })
    })?
}

/// [`set_sysctls`] for keys that a module not loaded leaves absent: those
/// are skipped.
fn set_present_sysctls(
    ns_path: &Path,
    netns: &str,
    sysctls: &[(&str, &str)],
) -> Result<(), TopologyError> {
    let present: Vec<(&str, &str)> = netns::run_in(ns_path, || {
        sysctls
            .iter()
            .filter(|(key, _)| Path::new("/proc/sys").join(key.replace('.', "/")).exists())
            .copied()
            .collect()
    })?;
    set_sysctls(ns_path, netns, &present)
}

fn create_dir(path: &Path) -> Result<(), TopologyError> {
    std::fs::create_dir_all(path).map_err(|source| TopologyError::CreateDir {
        path: path.to_path_buf(),
        source,
    })
}

/// `02:68:...` to bytes. The state was planned from bytes, so `None` means
/// a hand-edited file; the kernel then picks a random MAC.
pub(crate) fn parse_mac(mac: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    bytes.try_into().ok()
}

/// An rtnetlink connection bound to one namespace, driven by the current
/// runtime; the connection task stops when this is dropped.
struct NsNetlink {
    netns: String,
    handle: Handle,
    connection: tokio::task::JoinHandle<()>,
}

impl NsNetlink {
    fn open(netns: &str, ns_path: &Path) -> Result<Self, TopologyError> {
        let (connection, handle) = netns::rtnetlink_in(ns_path)?;
        Ok(Self {
            netns: netns.to_owned(),
            handle,
            connection: tokio::spawn(connection),
        })
    }

    /// Await one request, bounded by [`NETLINK_TIMEOUT`].
    async fn run<T>(
        &self,
        what: String,
        request: impl Future<Output = Result<T, rtnetlink::Error>>,
    ) -> Result<T, TopologyError> {
        match tokio::time::timeout(NETLINK_TIMEOUT, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(TopologyError::Netlink {
                what,
                netns: self.netns.clone(),
                source,
            }),
            Err(_) => Err(TopologyError::Timeout {
                what,
                netns: self.netns.clone(),
                timeout: NETLINK_TIMEOUT,
            }),
        }
    }

    async fn index_of(&self, link: &str) -> Result<u32, TopologyError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(link.to_owned())
            .execute();
        let found = self
            .run(format!("look up link {link}"), links.try_next())
            .await?;
        found
            .map(|message| message.header.index)
            .ok_or_else(|| TopologyError::LinkMissing {
                link: link.to_owned(),
                netns: self.netns.clone(),
            })
    }

    async fn set_up(&self, link: &str) -> Result<(), TopologyError> {
        let index = self.index_of(link).await?;
        self.run(
            format!("bring {link} up"),
            self.handle
                .link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute(),
        )
        .await
    }
}

impl Drop for NsNetlink {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_back_to_bytes() {
        assert_eq!(
            parse_mac("02:68:69:76:00:0a"),
            Some([2, 0x68, 0x69, 0x76, 0, 10])
        );
        assert_eq!(parse_mac("nonsense"), None);
        assert_eq!(parse_mac("02:68"), None);
    }

    #[test]
    fn sysctl_keys_map_to_proc_paths() {
        // The mapping `set_sysctls` relies on; eth0 has no dots.
        let key = "net.ipv4.conf.eth0.rp_filter";
        assert_eq!(
            Path::new("/proc/sys").join(key.replace('.', "/")),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0/rp_filter")
        );
    }
}
