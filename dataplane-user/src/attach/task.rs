//! Attaching a task to an overlay network: a veth pair between the node and
//! the task's network namespace, wired as `docs/dataplane.md` ("Addressing
//! of a task") describes, with `tc_from_task` on the host side. All of it
//! over rtnetlink; nothing is shelled out.
//!
//! Inside the task: `eth0` with `A/prefix` (without the kernel's prefix
//! route), MTU = underlay MTU − 50, a permanent neighbour entry for the
//! gateway pointing at the host side's MAC, and routes `<subnet> via <gw>
//! onlink` and `default via <gw> onlink`. So every packet the task sends,
//! to any address, goes to the host side, where `tc_from_task` sees it; no
//! ARP, no bridge. On the node: the host side (no address, same MTU), a
//! `/32` route to the task through it and a permanent neighbour entry for
//! the task's MAC.
//!
//! The node side is driven through a netlink handle opened in the node's
//! namespace (the caller's); the task side through one opened inside the
//! task's namespace ([`crate::netns::rtnetlink_in`]). The node must forward
//! IPv4 (`net.ipv4.ip_forward = 1`), which is node set-up, not ours.

use std::{
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd as _,
    path::PathBuf,
};

use futures::TryStreamExt as _;
use hive_common::maps::task_mac;
use ipnetwork::Ipv4Network;
use rtnetlink::{
    Handle, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder,
    packet_route::{
        address::{AddressAttribute, AddressFlags},
        link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage},
        neighbour::NeighbourState,
        route::RouteScope,
    },
};

use crate::{
    Dataplane, DataplaneError,
    mesh::MacAddr,
    netns::{self, NetnsError},
};

/// Linux's limit on interface names (IFNAMSIZ − 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// How a task joins one overlay network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskNetwork {
    /// The task's network namespace (`/run/netns/<name>`,
    /// `/proc/<pid>/ns/net`).
    pub netns: PathBuf,
    /// Name of the host side, unique on the node (e.g. `hv` + short task
    /// ID), at most [`MAX_IFNAME_LEN`] bytes.
    pub host_ifname: String,
    /// Name inside the task (`eth0` for the first network).
    pub task_ifname: String,
    /// The task's address and its network's prefix length.
    pub addr: Ipv4Network,
    /// The network's gateway (never configured anywhere).
    pub gateway: Ipv4Addr,
    /// Overlay MTU: underlay MTU − 50 ([`crate::mesh::NodeIdentity::overlay_mtu`]).
    pub mtu: u16,
}

/// What [`attach`] built; what [`crate::mesh::LocalEndpoint`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskLink {
    pub host_ifname: String,
    pub host_ifindex: u32,
    pub host_mac: MacAddr,
    pub task_ifindex: u32,
    pub task_mac: MacAddr,
}

/// Errors from attaching or detaching a task.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("interface name {name:?} is longer than {MAX_IFNAME_LEN} bytes; choose a shorter one")]
    NameTooLong { name: String },
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("{step}: {source}")]
    Netlink {
        step: String,
        source: Box<rtnetlink::Error>,
    },
    #[error("interface {name:?} was not found after creating it (in {where_})")]
    Missing { name: String, where_: &'static str },
    #[error("interface {name:?} has no Ethernet address")]
    NoMac { name: String },
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
}

const _: () = assert!(size_of::<AttachError>() <= 64);

fn step(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> AttachError {
    let step = what.into();
    move |source| AttachError::Netlink {
        step,
        source: Box::new(source),
    }
}

/// What [`attach`] and [`detach`] need of the data plane: `tc_from_task` on and off a
/// task's host-side veth. [`Dataplane`] does it in the kernel; a test double may record it.
pub trait TaskIfaces {
    fn attach_task_iface(&mut self, ifindex: u32) -> Result<(), DataplaneError>;
    fn detach_task_iface(&mut self, ifindex: u32) -> Result<(), DataplaneError>;
}

impl TaskIfaces for Dataplane {
    fn attach_task_iface(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        Dataplane::attach_task_iface(self, ifindex)
    }

    fn detach_task_iface(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        Dataplane::detach_task_iface(self, ifindex)
    }
}

/// Create and wire the task's veth, then attach `tc_from_task` to its host
/// side. `node` is a netlink handle of the node's namespace; the calling
/// thread must be in it too (the tc attachment resolves the interface by
/// name). On failure, what was created is removed again.
pub async fn attach(
    dataplane: &mut (impl TaskIfaces + ?Sized),
    node: &Handle,
    spec: &TaskNetwork,
) -> Result<TaskLink, AttachError> {
    for name in [&spec.host_ifname, &spec.task_ifname] {
        if name.len() > MAX_IFNAME_LEN {
            return Err(AttachError::NameTooLong { name: name.clone() });
        }
    }
    let task_ns = netns::open(&spec.netns)?;
    let (connection, task) = netns::rtnetlink_in(&spec.netns)?;
    let connection = tokio::spawn(connection);

    // The peer is born inside the task's namespace under its final name,
    // with the MAC derived from its address (`hive_common::maps::task_mac`,
    // as Docker does): the programs rewrite frames they move into the task
    // to it without a lookup.
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(spec.task_ifname.clone())
        .mtu(u32::from(spec.mtu))
        .address(task_mac(u32::from_ne_bytes(spec.addr.ip().octets())).to_vec())
        .setns_by_fd(task_ns.as_raw_fd())
        .build();
    let veth = LinkMessageBuilder::<rtnetlink::LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(spec.host_ifname.clone())
        .mtu(u32::from(spec.mtu))
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    node.link().add(veth).execute().await.map_err(step(format!(
        "creating veth {} <-> {} in {}",
        spec.host_ifname,
        spec.task_ifname,
        spec.netns.display()
    )))?;

    let result = wire(dataplane, node, &task, spec).await;
    connection.abort();
    if result.is_err() {
        // Best effort: deleting one end deletes the pair and everything on it.
        if let Ok(host) = link_by_name(node, &spec.host_ifname, "the node").await {
            let _ = node.link().del(host.header.index).execute().await;
        }
    }
    result
}

async fn wire(
    dataplane: &mut (impl TaskIfaces + ?Sized),
    node: &Handle,
    task: &Handle,
    spec: &TaskNetwork,
) -> Result<TaskLink, AttachError> {
    let host = link_by_name(node, &spec.host_ifname, "the node").await?;
    let host_ifindex = host.header.index;
    let host_mac = mac_of(&host, &spec.host_ifname)?;
    let inner = link_by_name(task, &spec.task_ifname, "the task").await?;
    let task_ifindex = inner.header.index;
    let task_mac = mac_of(&inner, &spec.task_ifname)?;
    let addr = spec.addr.ip();
    let subnet = Ipv4Network::new(spec.addr.network(), spec.addr.prefix()).unwrap_or(spec.addr);

    // Inside the task.
    let mut add_addr = task
        .address()
        .add(task_ifindex, IpAddr::V4(addr), spec.addr.prefix());
    // No kernel route for the prefix: the subnet goes via the gateway too.
    add_addr
        .message_mut()
        .attributes
        .push(AddressAttribute::Flags(AddressFlags::Noprefixroute));
    add_addr.execute().await.map_err(step(format!(
        "adding {} to {} in the task",
        spec.addr, spec.task_ifname
    )))?;
    set_up(task, task_ifindex, "the task's interface").await?;
    if let Ok(lo) = link_by_name(task, "lo", "the task").await {
        set_up(task, lo.header.index, "the task's loopback").await?;
    }
    task.neighbours()
        .add(task_ifindex, IpAddr::V4(spec.gateway))
        .link_layer_address(&host_mac.0)
        .state(NeighbourState::Permanent)
        .replace()
        .execute()
        .await
        .map_err(step(format!(
            "adding the neighbour entry {} -> {host_mac} in the task",
            spec.gateway
        )))?;
    for (dest, prefix) in [
        (subnet.network(), subnet.prefix()),
        (Ipv4Addr::UNSPECIFIED, 0),
    ] {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dest, prefix)
            .gateway(spec.gateway)
            .output_interface(task_ifindex)
            .onlink()
            .build();
        task.route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(step(format!(
                "adding the route {dest}/{prefix} via {} onlink in the task",
                spec.gateway
            )))?;
    }

    // On the node.
    node.neighbours()
        .add(host_ifindex, IpAddr::V4(addr))
        .link_layer_address(&task_mac.0)
        .state(NeighbourState::Permanent)
        .replace()
        .execute()
        .await
        .map_err(step(format!(
            "adding the neighbour entry {addr} -> {task_mac} on the node"
        )))?;
    set_up(node, host_ifindex, "the host side").await?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(addr, 32)
        .output_interface(host_ifindex)
        .scope(RouteScope::Link)
        .build();
    node.route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(step(format!(
            "adding the route {addr}/32 dev {} on the node",
            spec.host_ifname
        )))?;

    dataplane.attach_task_iface(host_ifindex)?;
    Ok(TaskLink {
        host_ifname: spec.host_ifname.clone(),
        host_ifindex,
        host_mac,
        task_ifindex,
        task_mac,
    })
}

/// Detach `tc_from_task` and delete the task's veth (the pair goes, and
/// with it the routes and neighbour entries on both sides). A veth that is
/// already gone is fine.
pub async fn detach(
    dataplane: &mut (impl TaskIfaces + ?Sized),
    node: &Handle,
    host_ifname: &str,
) -> Result<(), AttachError> {
    let Ok(host) = link_by_name(node, host_ifname, "the node").await else {
        return Ok(());
    };
    dataplane.detach_task_iface(host.header.index)?;
    node.link()
        .del(host.header.index)
        .execute()
        .await
        .map_err(step(format!("deleting veth {host_ifname}")))
}

async fn link_by_name(
    handle: &Handle,
    name: &str,
    where_: &'static str,
) -> Result<LinkMessage, AttachError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(link),
        _ => Err(AttachError::Missing {
            name: name.to_owned(),
            where_,
        }),
    }
}

fn mac_of(link: &LinkMessage, name: &str) -> Result<MacAddr, AttachError> {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            _ => None,
        })
        .map(MacAddr)
        .ok_or_else(|| AttachError::NoMac {
            name: name.to_owned(),
        })
}

async fn set_up(handle: &Handle, ifindex: u32, what: &str) -> Result<(), AttachError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(ifindex).up().build())
        .execute()
        .await
        .map_err(step(format!("setting {what} up")))
}

/// A host-side name for a task's veth on one network: `hv` + the first 8
/// characters of the task ID + `-` + 4 hex digits of the VNI, within
/// [`MAX_IFNAME_LEN`]. Two tasks sharing an 8-character prefix are
/// vanishingly rare with Swarm's random IDs; the kernel refuses the second
/// name rather than confusing them.
pub fn host_ifname(task_id: &str, vni: u32) -> String {
    let prefix: String = task_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    format!("hv{prefix}-{:04x}", vni & 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_fit_and_differ_per_network() {
        let a = host_ifname("x7k2p9q1m3n5b8v4c6z0a2s4d", 4096);
        let b = host_ifname("x7k2p9q1m3n5b8v4c6z0a2s4d", 4097);
        assert!(a.len() <= MAX_IFNAME_LEN, "{a}");
        assert_ne!(a, b);
        assert_eq!(a, "hvx7k2p9q1-1000");
    }
}
