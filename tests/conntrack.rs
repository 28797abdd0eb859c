//! Conntrack that never blackholes a client port (issue 14, item 7), end to end: real `hive
//! daemon`s in a lab, services made with the `hive` CLI, and TCP from the lab's outside
//! `client` with source ports the test picks, as a client that reuses its ports (or a NAT or
//! load balancer in front of the swarm) does.
//!
//! What a user checks:
//! - one client address and port, used for one connection after another alternately through
//!   two nodes' published ports (an external load balancer fronting every node), opens every
//!   time;
//! - after `hive service update --force` under a load of new connections from fixed source
//!   ports, and with keep-alive connections cut by the update, every client port gets through
//!   again: none keeps failing because its conntrack entry still names a replaced task.
//!
//! One swarm for both (different services and ports; they do not disturb each other). Needs
//! root; without it the test is skipped with a printed reason, or fails when `CI` is set.
//! Waits are bounded; no assertion on durations.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hive::store::objects::TaskState;
use hive_dataplane::netns;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn, sockopt};
use nix::sys::time::TimeVal;
use support::tasks::{CLIENT, tasks};
use support::{PATIENCE, Swarm, privileged};

/// Bound of one connection attempt and of each read.
const ATTEMPT: Duration = Duration::from_secs(2);

/// A connection from `CLIENT:port` to `to`, made in the client namespace (the socket stays
/// there wherever it is used): bound to the fixed source port with `SO_REUSEADDR`, as a
/// client that reuses its ports does, and closed with a reset (`SO_LINGER` 0) so that no
/// TIME_WAIT on either side keeps the port from the next connection.
fn connect_from(ns: &Path, port: u16, to: SocketAddr) -> std::io::Result<TcpStream> {
    let SocketAddr::V4(to) = to else {
        return Err(std::io::Error::other("IPv4 only"));
    };
    netns::run_in(ns, || -> std::io::Result<TcpStream> {
        let fd = socket::socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        socket::setsockopt(
            &fd,
            sockopt::Linger,
            &nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            },
        )?;
        // Bounds a blocking connect on Linux (`inet_wait_for_connect` uses the send timeout).
        let timeout = TimeVal::new(ATTEMPT.as_secs() as _, 0);
        socket::setsockopt(&fd, sockopt::SendTimeout, &timeout)?;
        socket::bind(
            fd.as_raw_fd(),
            &SockaddrIn::from(SocketAddrV4::new(CLIENT, port)),
        )?;
        socket::connect(fd.as_raw_fd(), &SockaddrIn::from(to)).map_err(|errno| {
            // A connect cut short by the timeout reports EINPROGRESS.
            if errno == nix::errno::Errno::EINPROGRESS {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            } else {
                std::io::Error::from(errno)
            }
        })?;
        let stream = TcpStream::from(fd);
        stream.set_read_timeout(Some(ATTEMPT))?;
        stream.set_write_timeout(Some(ATTEMPT))?;
        Ok(stream)
    })
    .map_err(std::io::Error::other)?
}

/// One request on `stream`; the hostname of the task that answered. `keep_alive` leaves the
/// connection open after the answer.
fn request(stream: &mut TcpStream, keep_alive: bool) -> std::io::Result<String> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: hive-test\r\nConnection: {connection}\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // whoami's answer is small and ends with its `RemoteAddr` line.
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if text.contains("RemoteAddr:") && text.ends_with('\n') {
            break;
        }
    }
    hive::demo::parse_answer(&String::from_utf8_lossy(&answer))
        .map(|a| a.hostname)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no whoami answer"))
}

/// A whole connection from `CLIENT:port`: connect, one request, reset.
fn get_from(ns: &Path, port: u16, to: SocketAddr) -> std::io::Result<String> {
    let mut stream = connect_from(ns, port, to)?;
    request(&mut stream, false)
}

/// Hostnames (short container IDs, as Docker's) of the running tasks of `service`, once
/// `check` holds for them.
fn wait_hostnames(
    swarm: &Swarm,
    service: &str,
    what: &str,
    check: impl Fn(&BTreeSet<String>) -> bool,
) -> BTreeSet<String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let hosts: BTreeSet<String> = tasks(swarm, service)
            .iter()
            .filter(|t| {
                t.desired_state == TaskState::Running && t.status.state == TaskState::Running
            })
            .filter_map(|t| t.status.runtime.as_ref())
            .map(|r| r.runtime_id.chars().take(12).collect())
            .collect();
        if check(&hosts) {
            return hosts;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {PATIENCE:?}; running: {hosts:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until new connections to `to` (from fresh ports) are answered by exactly `hosts`.
fn wait_answered_by(ns: &Path, to: SocketAddr, hosts: &BTreeSet<String>) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen: BTreeSet<String> = (0..30)
            .filter_map(|_| hive::demo::http_get(ns, to).ok().map(|a| a.hostname))
            .collect();
        if &seen == hosts {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{to} answered by {seen:?}; expected {hosts:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn no_client_port_is_left_blackholed_by_another_node_or_a_replaced_task() {
    if !privileged("no_client_port_is_left_blackholed_by_another_node_or_a_replaced_task") {
        return;
    }
    let _serial = support::serial();
    let swarm = Swarm::up("tk-ct", 3, 1);
    let lab = swarm.lab();
    let client: PathBuf = lab.netns_path("client").expect("client namespace").into();
    let published = |node: &str, port: u16| {
        SocketAddr::from((lab.node_addr(node).expect("node address"), port))
    };

    let nodes: Vec<SocketAddr> = ["n1", "n2", "n3"]
        .into_iter()
        .map(|n| published(n, 8082))
        .collect();
    every_port_gets_through_after_a_forced_update(&swarm, &client, &nodes);

    one_port_through_two_nodes(
        &swarm,
        &client,
        published("n1", 8081),
        published("n2", 8081),
    );
}

/// The task runs on n1. The client's port reaches it through n1 (n1 balances it to its own
/// task and answers), then through n2 (n2 tunnels it to n1, and the answer must go back
/// through n2), and so on. Each connection is fully closed before the next one.
fn one_port_through_two_nodes(
    swarm: &Swarm,
    client: &Path,
    via_n1: SocketAddr,
    via_n2: SocketAddr,
) {
    swarm.hive_line(
        "n1",
        "service create --name pinned --replicas 1 --constraint node.hostname==n1 -p 8081:80 hive/whoami",
    );
    let host = wait_hostnames(swarm, "pinned", "pinned running on n1", |h| h.len() == 1);
    wait_answered_by(client, via_n1, &host);
    wait_answered_by(client, via_n2, &host);

    const PORT: u16 = 41_000;
    let mut failures = Vec::new();
    for round in 0..10 {
        for (node, to) in [("n1", via_n1), ("n2", via_n2)] {
            if let Err(e) = get_from(client, PORT, to) {
                failures.push(format!("round {round} through {node} ({to}): {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "client port {PORT}, alternately through n1 and n2, failed to open:\n{}",
        failures.join("\n")
    );
}

/// Client ports that failed, with what they last tried and why.
type Failed = Arc<Mutex<BTreeMap<u16, (SocketAddr, String)>>>;

/// `service update --force` replaces every task while (1) a load of new connections from a
/// fixed set of source ports runs through every node and (2) keep-alive connections from
/// other fixed ports are open on the old tasks; the update cuts those, and the client writes
/// once more on each when its task goes away, as an HTTP client reusing an idle connection
/// does. Afterwards every port that failed, and every port whose connection was cut, must get
/// through again.
fn every_port_gets_through_after_a_forced_update(
    swarm: &Swarm,
    client: &Path,
    nodes: &[SocketAddr],
) {
    swarm.hive_line(
        "n1",
        "service create --name web --replicas 2 -p 8082:80 hive/whoami",
    );
    let before = wait_hostnames(swarm, "web", "2 tasks of web", |h| h.len() == 2);
    for &to in nodes {
        wait_answered_by(client, to, &before);
    }

    // (2) Keep-alive connections, on both tasks.
    const HELD: std::ops::Range<u16> = 42_000..42_016;
    let mut held = Vec::new();
    for port in HELD {
        let to = nodes[usize::from(port) % nodes.len()];
        let mut stream = connect_from(client, port, to)
            .unwrap_or_else(|e| panic!("keep-alive connection from port {port} to {to}: {e}"));
        let host = request(&mut stream, true)
            .unwrap_or_else(|e| panic!("request from port {port} to {to}: {e}"));
        held.push((port, to, host, stream));
    }
    let cut: Failed = Arc::default();
    let watchers: Vec<_> = held
        .into_iter()
        .map(|(port, to, host, mut stream)| {
            let cut = cut.clone();
            std::thread::spawn(move || {
                // Blocks until the update takes the task away (its end of the connection
                // closes), bounded.
                stream
                    .set_read_timeout(Some(PATIENCE))
                    .expect("read timeout");
                let mut buf = [0u8; 64];
                let closed = matches!(stream.read(&mut buf), Ok(0) | Err(_));
                if closed {
                    // The client does not know yet and reuses the connection.
                    let again = request(&mut stream, true);
                    cut.lock()
                        .expect("lock")
                        .insert(port, (to, format!("cut with {host}; then {again:?}")));
                }
            })
        })
        .collect();

    // (1) The load: new connections, round robin over the nodes, from a fixed set of ports.
    const LOAD: std::ops::Range<u16> = 43_000..43_048;
    let stop = Arc::new(AtomicBool::new(false));
    let failed: Failed = Arc::default();
    let load: Vec<_> = (0..4u16)
        .map(|worker| {
            let (stop, failed, client) = (stop.clone(), failed.clone(), client.to_path_buf());
            let nodes = nodes.to_vec();
            std::thread::spawn(move || {
                let ports: Vec<u16> = LOAD.filter(|p| p % 4 == worker).collect();
                // Until told to stop; bounded in case the test fails before it says so.
                let deadline = Instant::now() + 3 * PATIENCE;
                for round in 0usize.. {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    let port = ports[round % ports.len()];
                    let to = nodes[(round / ports.len()) % nodes.len()];
                    if let Err(e) = get_from(&client, port, to) {
                        failed
                            .lock()
                            .expect("lock")
                            .insert(port, (to, e.to_string()));
                    }
                }
            })
        })
        .collect();

    swarm.hive_line("n1", "service update --force web");
    let after = wait_hostnames(swarm, "web", "both tasks of web replaced", |h| {
        h.len() == 2 && h.is_disjoint(&before)
    });
    for &to in nodes {
        wait_answered_by(client, to, &after);
    }
    stop.store(true, Ordering::Relaxed);
    for worker in load {
        worker.join().expect("load thread");
    }
    for watcher in watchers {
        watcher.join().expect("keep-alive thread");
    }

    // Every port that failed, or lost its connection, through the node it last used.
    let mut retry: BTreeMap<u16, (SocketAddr, String)> = failed.lock().expect("lock").clone();
    retry.extend(cut.lock().expect("lock").clone());
    eprintln!(
        "update under load: {} load ports failed at least once, {} keep-alive connections cut",
        failed.lock().expect("lock").len(),
        cut.lock().expect("lock").len()
    );
    let mut still_failing = Vec::new();
    for (port, (to, why)) in &retry {
        let outcome = (0..3).find_map(|_| get_from(client, *port, *to).ok());
        match outcome {
            Some(host) => assert!(after.contains(&host), "port {port} reached {host}"),
            None => still_failing.push(format!("port {port} to {to} (before: {why})")),
        }
    }
    assert!(
        still_failing.is_empty(),
        "{} of {} client ports that failed or were cut during the update still fail:\n{}",
        still_failing.len(),
        retry.len(),
        still_failing.join("\n")
    );
}
