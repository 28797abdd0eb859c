//! Real-kernel tests of `Dataplane`: load and pin, apply, diff, restart,
//! destroy, task attachment. Each test works in network namespaces of its
//! own (`hive-test-<pid>-<tag>`) and a pin directory of its own, and removes
//! them when it ends, also when it fails.
//!
//! They need root. Without it they are skipped with a message, unless `CI`
//! is set, where they fail.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use futures::TryStreamExt as _;
use hive_common::maps::{Backend, Endpoint, Frontend, NodeConfig, Peer, Ring};
use hive_dataplane::{
    Dataplane, XdpAttachMode,
    attach::task::{self, TaskNetwork},
    maglev::MaglevTable,
    mesh::{
        LocalEndpoint, MeshState, Network, NodeIdentity, OverlayPeer, Protocol, Service,
        ServiceBackend, ServicePort, ServiceVip, TaskEndpoint, addr_be,
    },
    netns,
};
use rtnetlink::{
    Handle, LinkUnspec, LinkVeth, RouteMessageBuilder,
    packet_route::{
        link::{LinkAttribute, LinkXdp},
        neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState},
        route::{RouteAddress, RouteAttribute},
    },
};

const PIN_ROOT: &str = "/sys/fs/bpf/hive";
const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 3);
const INGRESS: u32 = 4096;
const APP: u32 = 4097;

fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: the data-plane tests load eBPF and create namespaces, which needs root; CI must run them as root"
        );
    }
    eprintln!(
        "{test}: skipped, it needs root (run `sudo -E cargo test -p hive-dataplane --test dataplane`)"
    );
    false
}

fn unique(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "hive-test-{}-{}-{tag}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A network namespace that is removed on drop (also on panic).
struct TestNs {
    path: PathBuf,
}

impl TestNs {
    fn new(tag: &str) -> Self {
        netns::ensure_shared_dir(Path::new(netns::NETNS_RUN_DIR)).expect("/run/netns");
        let path = netns::netns_path(&unique(tag));
        netns::create_netns(&path).expect("create netns");
        Self { path }
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if let Err(e) = netns::remove(&self.path) {
            eprintln!("cannot remove {}: {e}", self.path.display());
        }
    }
}

/// A node's pin directory, removed on drop (also on panic).
struct TestPins {
    node: String,
}

impl TestPins {
    fn new(tag: &str) -> Self {
        Self { node: unique(tag) }
    }

    fn dir(&self) -> PathBuf {
        Path::new(PIN_ROOT).join(&self.node)
    }
}

impl Drop for TestPins {
    fn drop(&mut self) {
        if let Err(e) = Dataplane::destroy_pins(PIN_ROOT, &self.node) {
            eprintln!("cannot remove pins of {}: {e}", self.node);
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A netlink handle in the calling thread's namespace.
fn netlink() -> Handle {
    let (connection, handle, _) = rtnetlink::new_connection().expect("netlink");
    tokio::spawn(connection);
    handle
}

/// The underlay of a test node: `ul0` (the NIC) paired with `ul1`, up, with
/// the node's address on `ul0`.
async fn make_underlay(handle: &Handle) {
    handle
        .link()
        .add(LinkVeth::new("ul0", "ul1").build())
        .execute()
        .await
        .expect("veth");
    for name in ["ul0", "ul1", "lo"] {
        let index = ifindex(handle, name).await;
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .expect("up");
    }
    let ul0 = ifindex(handle, "ul0").await;
    handle
        .address()
        .add(ul0, IpAddr::V4(NODE), 24)
        .execute()
        .await
        .expect("address");
}

async fn link(handle: &Handle, name: &str) -> Option<rtnetlink::packet_route::link::LinkMessage> {
    handle
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
        .ok()
        .flatten()
}

async fn ifindex(handle: &Handle, name: &str) -> u32 {
    link(handle, name)
        .await
        .unwrap_or_else(|| panic!("no interface {name}"))
        .header
        .index
}

/// The id of the XDP program attached to `name`, if any.
async fn xdp_prog(handle: &Handle, name: &str) -> Option<u32> {
    let link = link(handle, name).await?;
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Xdp(xdp) => xdp.iter().find_map(|x| match x {
            LinkXdp::ProgId(id) if *id != 0 => Some(*id),
            _ => None,
        }),
        _ => None,
    })
}

fn mtu(link: &rtnetlink::packet_route::link::LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

fn be(task: &str, addr: &str, node: Ipv4Addr, vni: u32) -> ServiceBackend {
    ServiceBackend {
        task_id: task.into(),
        addr: ip(addr),
        node,
        vni,
    }
}

/// web (published 8080/tcp, 3 backends) on ingress; api (53/udp) on app.
fn state_v1() -> MeshState {
    let mut state = MeshState {
        node: NodeIdentity {
            underlay_addr: NODE,
            underlay_iface: "ul0".into(),
            vxlan_port: 4789,
            hash_seed: 0x5eed,
            underlay_mtu: 1500,
            control_ports: Vec::new(),
            mesh_mode: Default::default(),
        },
        networks: vec![
            Network {
                name: "ingress".into(),
                vni: INGRESS,
                subnet: "10.255.0.0/16".parse().expect("net"),
                gateway: ip("10.255.0.1"),
                ingress: true,
            },
            Network {
                name: "app".into(),
                vni: APP,
                subnet: "10.0.1.0/24".parse().expect("net"),
                gateway: ip("10.0.1.1"),
                ingress: false,
            },
        ],
        peers: vec![OverlayPeer {
            node_id: "peer".into(),
            underlay_addr: PEER,
            mac: "02:00:00:00:77:03".parse().expect("mac"),
        }],
        services: vec![
            Service {
                id: "svcweb".into(),
                name: "web".into(),
                vips: vec![ServiceVip {
                    network: "ingress".into(),
                    addr: ip("10.255.0.5"),
                }],
                ports: vec![ServicePort {
                    protocol: Protocol::Tcp,
                    target_port: 80,
                    published_port: Some(8080),
                }],
                backends: vec![
                    be("web1", "10.255.0.10", NODE, INGRESS),
                    be("web2", "10.255.0.11", PEER, INGRESS),
                    be("web3", "10.255.0.12", PEER, INGRESS),
                ],
            },
            Service {
                id: "svcapi".into(),
                name: "api".into(),
                vips: vec![ServiceVip {
                    network: "app".into(),
                    addr: ip("10.0.1.3"),
                }],
                ports: vec![ServicePort {
                    protocol: Protocol::Udp,
                    target_port: 53,
                    published_port: None,
                }],
                backends: vec![
                    be("api1", "10.0.1.20", PEER, APP),
                    be("api2", "10.0.1.21", NODE, APP),
                ],
            },
        ],
        endpoints: Vec::new(),
        local_endpoints: Vec::new(),
    };
    fill_endpoints(&mut state);
    state
}

/// Endpoints for every backend; local ones get a (fake) host ifindex.
fn fill_endpoints(state: &mut MeshState) {
    state.endpoints.clear();
    state.local_endpoints.clear();
    for service in &state.services {
        for b in &service.backends {
            state.endpoints.push(TaskEndpoint {
                task_id: b.task_id.clone(),
                addr: b.addr,
                node: b.node,
                vni: b.vni,
            });
            if b.node == NODE {
                state.local_endpoints.push(LocalEndpoint {
                    task_id: b.task_id.clone(),
                    vni: b.vni,
                    host_ifname: format!("hv{}", b.task_id),
                    host_ifindex: 1000 + state.local_endpoints.len() as u32,
                });
            }
        }
    }
}

/// v1 with web3 draining (no backend any more, still an endpoint while it runs, as the agent
/// keeps a task being shut down), plus a service "cache" (6379/tcp on app).
fn state_v2() -> MeshState {
    let mut state = state_v1();
    let web3 = state.services[0]
        .backends
        .iter()
        .find(|b| b.task_id == "web3")
        .map(|b| TaskEndpoint {
            task_id: b.task_id.clone(),
            addr: b.addr,
            node: b.node,
            vni: b.vni,
        })
        .expect("web3 in v1");
    state.services[0].backends.retain(|b| b.task_id != "web3");
    state.services.push(Service {
        id: "svccache".into(),
        name: "cache".into(),
        vips: vec![ServiceVip {
            network: "app".into(),
            addr: ip("10.0.1.4"),
        }],
        ports: vec![ServicePort {
            protocol: Protocol::Tcp,
            target_port: 6379,
            published_port: None,
        }],
        backends: vec![be("cache1", "10.0.1.40", PEER, APP)],
    });
    fill_endpoints(&mut state);
    state.endpoints.push(web3);
    state
}

type FrontendKey = (u32, u16, u8);

/// Everything the reconciler owns, read back from the kernel.
#[derive(Debug, PartialEq)]
struct Snapshot {
    node: NodeConfig,
    frontends: BTreeMap<FrontendKey, Frontend>,
    rings: BTreeMap<u32, Ring>,
    segments: BTreeMap<u32, Vec<u32>>,
    backends: BTreeMap<u32, Backend>,
    endpoints: BTreeMap<u32, Endpoint>,
    peers: BTreeMap<u32, Peer>,
}

fn snapshot(dp: &Dataplane) -> Snapshot {
    let maps = dp.maps();
    let mut rings = BTreeMap::new();
    let mut segments = BTreeMap::new();
    for (id, _) in maps.balancer_records().expect("records") {
        let ring = maps.ring(id).expect("ring");
        segments.insert(
            id,
            maps.maglev_slots(ring.offset, ring.size).expect("maglev"),
        );
        rings.insert(id, ring);
    }
    Snapshot {
        node: maps.node_config().expect("node"),
        frontends: maps
            .frontends()
            .expect("frontends")
            .into_iter()
            .map(|(k, v)| ((k.addr_be, k.port_be, k.proto), v))
            .collect(),
        rings,
        segments,
        backends: maps
            .backend_records()
            .expect("records")
            .into_iter()
            .map(|(id, _)| (id, maps.backend(id).expect("backend")))
            .collect(),
        endpoints: maps.endpoints().expect("endpoints").into_iter().collect(),
        peers: maps.peers().expect("peers").into_iter().collect(),
    }
}

/// The maps say what `state` says.
fn assert_maps_hold(dp: &Dataplane, state: &MeshState) {
    let maps = dp.maps();
    let node = maps.node_config().expect("node");
    assert_eq!(node.underlay_addr_be, addr_be(NODE));
    assert_eq!(node.hash_seed, state.node.hash_seed);
    assert_eq!(node.overlay_mtu, 1450);
    assert_eq!(u16::from_be(node.vxlan_port_be), 4789);
    assert_ne!(node.flags & NodeConfig::FLAG_CONFIGURED, 0);
    let frontends = maps.frontends().expect("frontends");
    for service in &state.services {
        let vni = service.backends.first().map_or(APP, |b| b.vni);
        let id = dp.service_slot(&service.id, vni).expect("service applied");
        let mut tasks: Vec<&str> = service
            .backends
            .iter()
            .map(|b| b.task_id.as_str())
            .collect();
        tasks.sort_unstable();
        let table = MaglevTable::build(&tasks, state.node.hash_seed).expect("table");
        let ring = maps.ring(id).expect("ring");
        assert_eq!(
            ring.size as usize,
            table.len(),
            "{}: ring size",
            service.name
        );
        let slots = maps.maglev_slots(ring.offset, ring.size).expect("slots");
        for (slot, &index) in slots.iter().zip(table.slots()) {
            let task = tasks[index as usize];
            assert_eq!(
                Some(*slot),
                dp.backend_slot(&service.id, vni, task),
                "{}: slot",
                service.name
            );
        }
        for b in &service.backends {
            let slot = dp
                .backend_slot(&service.id, vni, &b.task_id)
                .expect("backend applied");
            let value = maps.backend(slot).expect("backend");
            assert_eq!(value.addr_be, addr_be(b.addr));
            assert_eq!(value.node_be, addr_be(b.node));
            assert_eq!(value.flags & Backend::FLAG_LOCAL != 0, b.node == NODE);
        }
        for port in &service.ports {
            for vip in &service.vips {
                let key = (
                    addr_be(vip.addr),
                    port.target_port.to_be(),
                    port.protocol.ip_proto(),
                );
                let fe = frontends
                    .iter()
                    .find(|(k, _)| (k.addr_be, k.port_be, k.proto) == key)
                    .map(|(_, v)| *v)
                    .unwrap_or_else(|| panic!("{}: VIP front end", service.name));
                assert_eq!(fe.service, id);
                assert_eq!(u16::from_be(fe.target_port_be), port.target_port);
            }
            if let Some(published) = port.published_port {
                let fe = frontends
                    .iter()
                    .find(|(k, _)| k.addr_be == 0 && u16::from_be(k.port_be) == published)
                    .map(|(_, v)| *v)
                    .expect("published front end");
                assert_eq!(fe.service, id);
                assert_ne!(fe.flags & Frontend::FLAG_PUBLISHED, 0);
            }
        }
    }
    let endpoints = maps.endpoints().expect("endpoints");
    assert_eq!(endpoints.len(), state.endpoints.len());
    assert_eq!(maps.peers().expect("peers").len(), state.peers.len());
}

#[test]
fn load_apply_change_restart_destroy() {
    if !require_root("load_apply_change_restart_destroy") {
        return;
    }
    let ns = TestNs::new("dp");
    let pins = TestPins::new("dp");
    netns::run_in(&ns.path, || {
        let rt = runtime();
        let handle = rt.block_on(async {
            let handle = netlink();
            make_underlay(&handle).await;
            handle
        });

        let started = Instant::now();
        let mut dp = Dataplane::open(PIN_ROOT, &pins.node, "ul0").expect("open");
        eprintln!(
            "load + pin + attach: {:?}, XDP mode {:?}",
            started.elapsed(),
            dp.xdp_mode()
        );
        assert_eq!(
            dp.xdp_mode(),
            XdpAttachMode::Driver,
            "native XDP works on veth (6.18)"
        );
        let prog = rt
            .block_on(xdp_prog(&handle, "ul0"))
            .expect("XDP attached to ul0");
        assert!(pins.dir().join("HIVE_MAGLEV").exists());
        assert!(pins.dir().join("link_xdp_from_underlay").exists());

        let v1 = state_v1();
        let started = Instant::now();
        let stats = dp.apply(&v1).expect("apply v1");
        eprintln!("first apply: {:?} {stats:?}", started.elapsed());
        assert_maps_hold(&dp, &v1);
        let before = snapshot(&dp);

        // An established flow to web3, which v2 removes: conntrack keeps it.
        let web3 = dp.backend_slot("svcweb", INGRESS, "web3").expect("web3");
        let flow = hive_common::maps::FlowKey {
            saddr_be: addr_be(ip("203.0.113.9")),
            daddr_be: addr_be(NODE),
            sport_be: 40000u16.to_be(),
            dport_be: 8080u16.to_be(),
            proto: 6,
            kind: hive_common::maps::FlowKind::Forward as u8,
            _pad: [0; 2],
        };
        let entry = hive_common::maps::FlowEntry {
            addr_be: addr_be(ip("10.255.0.12")),
            node_be: addr_be(PEER),
            backend: web3,
            ..Default::default()
        };
        dp.maps_mut()
            .put_conntrack(&flow, &entry)
            .expect("seed conntrack");

        let v2 = state_v2();
        let started = Instant::now();
        let stats = dp.apply(&v2).expect("apply v2");
        eprintln!("second apply: {:?} {stats:?}", started.elapsed());
        assert_maps_hold(&dp, &v2);
        assert_eq!(stats.services_added, 1);
        assert_eq!(stats.backends_removed, 1);
        assert_eq!(stats.rings_rebuilt, 2, "web (lost web3) and cache (new)");
        let after = snapshot(&dp);

        // Only the changed entries moved.
        let api = dp.service_slot("svcapi", APP).expect("api");
        let web = dp.service_slot("svcweb", INGRESS).expect("web");
        let cache = dp.service_slot("svccache", APP).expect("cache");
        assert_eq!(
            after.rings[&api], before.rings[&api],
            "api's ring untouched"
        );
        assert_eq!(after.segments[&api], before.segments[&api]);
        assert_ne!(after.rings[&web], before.rings[&web], "web's ring flipped");
        assert!(
            !after.segments[&web].contains(&web3),
            "web3 gets no new flows"
        );
        for (key, fe) in &before.frontends {
            assert_eq!(
                after.frontends.get(key),
                Some(fe),
                "front end {key:?} untouched"
            );
        }
        let added: Vec<_> = after
            .frontends
            .keys()
            .filter(|k| !before.frontends.contains_key(k))
            .collect();
        assert_eq!(added.len(), 2, "cache's VIP marker and 6379/tcp");
        assert!(after.frontends.values().all(|fe| fe.service != web3));
        assert!(after.rings.contains_key(&cache));
        for (id, value) in &before.backends {
            if *id != web3 {
                assert_eq!(
                    after.backends.get(id),
                    Some(value),
                    "backend {id} untouched"
                );
            }
        }
        assert_eq!(before.node, after.node);
        assert_eq!(before.peers, after.peers);
        let ct = dp.maps().conntrack().expect("conntrack");
        assert!(
            ct.iter().any(|(k, e)| *k == flow && *e == entry),
            "the drained flow is still tracked"
        );

        // A restarted agent: finds the pins, touches nothing.
        drop(dp);
        let mut dp = Dataplane::open(PIN_ROOT, &pins.node, "ul0").expect("reopen");
        assert_eq!(dp.xdp_mode(), XdpAttachMode::Inherited);
        assert_eq!(
            rt.block_on(xdp_prog(&handle, "ul0")),
            Some(prog),
            "same program, never detached"
        );
        assert_eq!(snapshot(&dp), after);
        let stats = dp.apply(&v2).expect("apply v2 after restart");
        assert!(stats.is_noop(), "{stats:?}");
        assert_eq!(snapshot(&dp), after);
        assert_eq!(dp.service_slot("svcweb", INGRESS), Some(web));
        // ... and keeps diffing from there.
        let stats = dp.apply(&v1).expect("back to v1");
        assert_eq!((stats.services_removed, stats.backends_written), (1, 1));
        assert_maps_hold(&dp, &v1);

        dp.destroy().expect("destroy");
        assert!(!pins.dir().exists(), "no pins left");
        assert_eq!(rt.block_on(xdp_prog(&handle, "ul0")), None, "XDP detached");
    })
    .expect("run in the test namespace");
}

#[test]
fn attach_a_task_to_an_overlay_network() {
    if !require_root("attach_a_task_to_an_overlay_network") {
        return;
    }
    let node_ns = TestNs::new("node");
    let task_ns = TestNs::new("task");
    let pins = TestPins::new("task");
    let task_addr = ip("10.0.1.30");
    netns::run_in(&node_ns.path, || {
        let rt = runtime();
        rt.block_on(async {
            let node = netlink();
            make_underlay(&node).await;
            let mut dp = Dataplane::open(PIN_ROOT, &pins.node, "ul0").expect("open");
            let spec = TaskNetwork {
                netns: task_ns.path.clone(),
                host_ifname: task::host_ifname("task1", APP),
                task_ifname: "eth0".into(),
                addr: "10.0.1.30/24".parse().expect("cidr"),
                gateway: ip("10.0.1.1"),
                mtu: 1450,
            };
            let link = task::attach(&mut dp, &node, &spec).await.expect("attach");
            assert_eq!(
                link.task_mac.0,
                [0x02, 0x42, 10, 0, 1, 30],
                "the task's MAC is 02:42 and its address, as Docker's"
            );

            // Node side: MTU, up, /32 route, permanent neighbour, tc attached.
            let host = self::link(&node, &spec.host_ifname)
                .await
                .expect("host side");
            assert_eq!(mtu(&host), Some(1450));
            assert!(
                has_route(&node, task_addr, 32, None, link.host_ifindex).await,
                "/32 via host side"
            );
            assert_eq!(
                permanent_neighbour(&node, link.host_ifindex, task_addr).await,
                Some(link.task_mac.0.to_vec())
            );
            assert!(
                pins.dir()
                    .join(format!("link_tc_from_task_{}", link.host_ifindex))
                    .exists()
            );
            dp.attach_task_iface(link.host_ifindex)
                .expect("attaching again is a no-op");

            // Task side, seen from inside.
            let (conn, inside) = netns::rtnetlink_in(&task_ns.path).expect("netlink in task");
            tokio::spawn(conn);
            let eth0 = self::link(&inside, "eth0").await.expect("eth0 in the task");
            assert_eq!(mtu(&eth0), Some(1450));
            let gw = ip("10.0.1.1");
            assert!(
                has_route(
                    &inside,
                    Ipv4Addr::UNSPECIFIED,
                    0,
                    Some(gw),
                    link.task_ifindex
                )
                .await,
                "default via gw"
            );
            assert!(
                has_route(&inside, ip("10.0.1.0"), 24, Some(gw), link.task_ifindex).await,
                "subnet via gw"
            );
            assert!(
                !has_route(&inside, ip("10.0.1.0"), 24, None, link.task_ifindex).await,
                "no connected route: the subnet goes through the host side"
            );
            assert_eq!(
                permanent_neighbour(&inside, link.task_ifindex, gw).await,
                Some(link.host_mac.0.to_vec())
            );

            // Real traffic: the node reaches the task and the task answers
            // through its gateway (the host side), past tc_from_task.
            let listener = netns::run_in(&task_ns.path, || {
                std::net::TcpListener::bind((task_addr, 7000))
            })
            .expect("enter task")
            .expect("listen in the task");
            let server = std::thread::spawn(move || {
                let (mut conn, peer) = listener.accept().expect("accept");
                std::io::Write::write_all(&mut conn, b"hello").expect("write");
                peer
            });
            let mut client = std::net::TcpStream::connect_timeout(
                &(task_addr, 7000).into(),
                Duration::from_secs(5),
            )
            .expect("connect to the task");
            let mut buf = [0u8; 5];
            std::io::Read::read_exact(&mut client, &mut buf).expect("read");
            assert_eq!(&buf, b"hello");
            let peer = server.join().expect("server thread");
            assert_eq!(
                peer.ip(),
                IpAddr::V4(NODE),
                "the task saw the node's address"
            );

            task::detach(&mut dp, &node, &spec.host_ifname)
                .await
                .expect("detach");
            assert!(
                self::link(&node, &spec.host_ifname).await.is_none(),
                "veth gone"
            );
            assert!(
                !pins
                    .dir()
                    .join(format!("link_tc_from_task_{}", link.host_ifindex))
                    .exists()
            );
            dp.destroy().expect("destroy");
        });
    })
    .expect("run in the node namespace");
}

async fn has_route(
    handle: &Handle,
    dest: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
    oif: u32,
) -> bool {
    let routes: Vec<_> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .expect("routes");
    routes.iter().any(|r| {
        let attr_dest = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
            _ => None,
        });
        let attr_gw = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(*g),
            _ => None,
        });
        let attr_oif = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        r.header.destination_prefix_length == prefix
            && attr_dest.unwrap_or(Ipv4Addr::UNSPECIFIED) == dest
            && attr_gw == gateway
            && attr_oif == Some(oif)
    })
}

async fn permanent_neighbour(handle: &Handle, ifindex: u32, addr: Ipv4Addr) -> Option<Vec<u8>> {
    let neighbours: Vec<_> = handle
        .neighbours()
        .get()
        .execute()
        .try_collect()
        .await
        .expect("neighbours");
    neighbours.into_iter().find_map(|n| {
        let dest = n.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) => Some(*d),
            _ => None,
        })?;
        if n.header.ifindex != ifindex
            || dest != addr
            || n.header.state != NeighbourState::Permanent
        {
            return None;
        }
        n.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::LinkLayerAddress(mac) => Some(mac.clone()),
            _ => None,
        })
    })
}

/// Figures, not a check: the cost of applying a state with one service
/// more, one backend less, or nothing changed, next to 1, 1,000 and 10,000
/// services (2 backends each, 2 endpoints per service), and of the first
/// apply. Each change is applied and undone `ROUNDS` times; the best and
/// the median are printed (a loaded box inflates single figures).
/// `cargo test --release --test dataplane -- --ignored --nocapture`.
#[test]
#[ignore = "measurement; run explicitly"]
fn apply_cost_at_scale() {
    if !require_root("apply_cost_at_scale") {
        return;
    }
    const ROUNDS: usize = 15;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average: {}", load.trim());
    for existing in [1usize, 1_000, 10_000] {
        let ns = TestNs::new("scale");
        let pins = TestPins::new("scale");
        netns::run_in(&ns.path, || {
            let rt = runtime();
            rt.block_on(async { make_underlay(&netlink()).await });
            let mut dp = Dataplane::open(PIN_ROOT, &pins.node, "ul0").expect("open");
            let mut state = state_v1();
            state.services.clear();
            state.networks[1].subnet = "10.0.0.0/8".parse().expect("net");
            state.networks[1].gateway = ip("10.0.0.1");
            state.networks[0].subnet = "172.16.0.0/12".parse().expect("net");
            state.networks[0].gateway = ip("172.16.0.1");
            let service = |i: usize| Service {
                id: format!("svc{i}"),
                name: format!("s{i}"),
                vips: vec![ServiceVip {
                    network: "app".into(),
                    addr: Ipv4Addr::from(0x0a00_0000u32 + 2 + 3 * i as u32),
                }],
                ports: vec![ServicePort {
                    protocol: Protocol::Tcp,
                    target_port: 80,
                    published_port: None,
                }],
                backends: (1..=2)
                    .map(|b| ServiceBackend {
                        task_id: format!("svc{i}.{b}"),
                        addr: Ipv4Addr::from(0x0a00_0000u32 + 2 + 3 * i as u32 + b),
                        node: PEER,
                        vni: APP,
                    })
                    .collect(),
            };
            state.services = (0..existing).map(service).collect();
            fill_endpoints(&mut state);
            let started = Instant::now();
            let cpu_started = thread_cpu_time();
            dp.apply(&state).expect("apply");
            let initial = started.elapsed();
            let initial_cpu = thread_cpu_time() - cpu_started;

            // Wall and CPU time of each apply.
            type Samples = Vec<(Duration, Duration)>;
            let mut timed = |state: &MeshState, into: &mut Samples| {
                let started = Instant::now();
                let cpu_started = thread_cpu_time();
                let stats = dp.apply(state).expect("apply");
                into.push((started.elapsed(), thread_cpu_time() - cpu_started));
                stats
            };
            let (mut add, mut noop, mut remove_backend, mut undo) =
                (vec![], vec![], vec![], vec![]);
            let mut writes = 0;
            for _ in 0..ROUNDS {
                state.services.push(service(existing));
                fill_endpoints(&mut state);
                let stats = timed(&state, &mut add);
                writes = stats.frontends_written
                    + stats.backends_written * 3
                    + stats.endpoints_written
                    + stats.maglev_slots_written as usize
                    + 4;
                assert!(timed(&state, &mut noop).is_noop());
                state.services[existing / 2].backends.pop();
                fill_endpoints(&mut state);
                timed(&state, &mut remove_backend);
                state.services.pop();
                state.services[existing / 2] = service(existing / 2);
                fill_endpoints(&mut state);
                timed(&state, &mut undo);
            }
            let figures = |samples: &Samples| {
                let mut wall: Vec<Duration> = samples.iter().map(|s| s.0).collect();
                let mut cpu: Vec<Duration> = samples.iter().map(|s| s.1).collect();
                wall.sort();
                cpu.sort();
                let median = samples.len() / 2;
                format!(
                    "{:?} (median {:?}; CPU {:?}, median {:?})",
                    wall[0], wall[median], cpu[0], cpu[median]
                )
            };
            println!(
                "{existing:>6} services: first apply {initial:?} ({initial_cpu:?} CPU)\n  \
                 +1 service ({writes} map writes): {}\n  no-op: {}\n  -1 backend: {}",
                figures(&add),
                figures(&noop),
                figures(&remove_backend),
            );
            dp.destroy().expect("destroy");
        })
        .expect("run in namespace");
    }
}

/// CPU time of this thread, user and kernel: unlike wall time, barely
/// moved by other load on the box.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
