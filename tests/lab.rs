//! End-to-end tests of `hive lab`, driving the real `hive` binary: real
//! namespaces, real veths and a real bridge, real ICMP and TCP traffic.
//!
//! Every test uses its own lab name and a guard that runs `hive lab down`
//! when the test ends, also when it fails. The tests need root; without it
//! they are skipped with a printed reason, or fail when `CI` is set.

use crate::support;
use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use hive_dataplane::netns;
use hive_lab::naming;

const HIVE: &str = env!("CARGO_BIN_EXE_hive");
/// Upper bound for any one `hive` command in these tests.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether the test may run: root, or a skip (panic under CI).
fn privileged(test: &str) -> bool {
    hive_test_support::root_or_skip(test, "it creates network namespaces and mounts")
}

/// Run `hive` with `args`, bounded by [`COMMAND_TIMEOUT`].
fn hive(args: &[&str]) -> Output {
    let child = Command::new(HIVE)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hive");
    wait_output(child, COMMAND_TIMEOUT, &format!("hive {}", args.join(" ")))
}

fn wait_output(mut child: Child, timeout: Duration, what: &str) -> Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collect output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Run `hive` and require success; returns stdout.
fn hive_ok(args: &[&str]) -> String {
    let out = hive(args);
    assert!(
        out.status.success(),
        "`hive {}` failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Run `hive` and require failure; returns stderr.
fn hive_err(args: &[&str]) -> String {
    let out = hive(args);
    assert!(
        !out.status.success(),
        "`hive {}` should have failed:\nstdout: {}\nstderr: {}",
        args.join(" "),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// A lab owned by a test: `hive lab down` when dropped, even on panic.
struct TestLab {
    name: &'static str,
}

impl TestLab {
    /// A guard for `name`, after removing any leftover of an earlier run.
    fn new(name: &'static str) -> Self {
        hive_ok(&["lab", "down", "--name", name]);
        Self { name }
    }

    fn up(name: &'static str, nodes: u32) -> Self {
        let lab = Self::new(name);
        // `--managers 0`: the network alone, without daemons, so process counts are the test's.
        let nodes = nodes.to_string();
        hive_ok(&[
            "lab",
            "up",
            "--name",
            name,
            "--nodes",
            &nodes,
            "--managers",
            "0",
        ]);
        lab
    }

    fn exec(&self, node: &str, command: &[&str]) -> Output {
        let mut args = vec!["lab", "exec", "--name", self.name, node, "--"];
        args.extend_from_slice(command);
        hive(&args)
    }

    fn netns(&self, member: &str) -> PathBuf {
        netns::netns_path(&format!("hive-{}-{member}", self.name))
    }

    fn ping(&self, from: &str, to: Ipv4Addr) {
        let out = self.exec(from, &["ping", "-c", "1", "-W", "2", &to.to_string()]);
        assert!(
            out.status.success(),
            "lab {}: {from} cannot ping {to}:\n{}{}",
            self.name,
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let out = hive(&["lab", "down", "--name", self.name]);
        if !out.status.success() {
            eprintln!("cleanup of lab {} failed: {}", self.name, text(&out.stderr));
        }
    }
}

fn addr(member: &str) -> Ipv4Addr {
    member
        .parse::<naming::Member>()
        .expect("member name")
        .underlay_addr()
}

/// PIDs of processes started in lab `lab` by `hive lab exec`.
fn lab_processes(lab: &str) -> Vec<u32> {
    let needle = format!("HIVE_LAB={lab}\0");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'));
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            !zombie && text(&environ).contains(&needle)
        })
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Nothing of lab `lab` is left: namespaces, mounts, links, pins, state,
/// processes.
fn assert_lab_gone(lab: &str) {
    let netns: Vec<String> = std::fs::read_dir(netns::NETNS_RUN_DIR)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| naming::lab_of_netns(n) == Some(lab))
        .collect();
    assert!(netns.is_empty(), "namespaces of lab {lab} left: {netns:?}");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let lab_dir = naming::lab_dir(lab);
    for line in mountinfo.lines() {
        let point = line.split(' ').nth(4).unwrap_or_default();
        assert!(
            !Path::new(point).starts_with(&lab_dir)
                && naming::lab_of_netns(point.trim_start_matches("/run/netns/")) != Some(lab),
            "mount of lab {lab} left: {line}"
        );
    }
    assert!(!lab_dir.exists(), "{} left", lab_dir.display());
    let pins = naming::bpf_lab_dir(lab);
    assert!(!pins.exists(), "{} left", pins.display());
    // Links lived only inside the lab's namespaces; none may show on the host.
    let host_links: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("u-n") || n == "u-client")
        .collect();
    assert!(
        host_links.is_empty(),
        "lab links on the host: {host_links:?}"
    );
    let procs = lab_processes(lab);
    assert!(procs.is_empty(), "processes of lab {lab} left: {procs:?}");
}

#[test]
fn three_nodes_reach_each_other_and_down_removes_everything() {
    if !privileged("three_nodes_reach_each_other_and_down_removes_everything") {
        return;
    }
    let _group = support::file_group();
    let lab = TestLab::up("t-full", 3);
    let nodes = ["n1", "n2", "n3"];

    // Hostnames come from each member's own UTS namespace.
    for member in nodes.iter().chain(&["client"]) {
        let out = lab.exec(member, &["hostname"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), *member);
    }
    // HIVE_LAB / HIVE_NODE are set for what runs inside.
    let out = lab.exec("n2", &["sh", "-c", "echo $HIVE_LAB/$HIVE_NODE"]);
    assert_eq!(text(&out.stdout).trim(), "t-full/n2");
    // Exit codes pass through.
    assert_eq!(
        lab.exec("n1", &["sh", "-c", "exit 7"]).status.code(),
        Some(7)
    );

    // The client is a load generator (as in the kernel baseline): a wide
    // ephemeral port range, and ports in TIME_WAIT reused for new connections.
    let out = lab.exec(
        "client",
        &[
            "cat",
            "/proc/sys/net/ipv4/ip_local_port_range",
            "/proc/sys/net/ipv4/tcp_tw_reuse",
        ],
    );
    let sysctls: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(sysctls, ["10240 65000", "1"], "{}", text(&out.stderr));
    // The underlay bridge forwards frames without running them through
    // netfilter, as a switch does (the keys exist only with br_netfilter).
    let bridge_nf = netns::run_in(&lab.netns("underlay"), || {
        std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables").ok()
    })
    .expect("enter the underlay");
    if let Some(value) = bridge_nf {
        assert_eq!(value.trim(), "0", "bridge-nf-call-iptables in the underlay");
    }

    // Every node reaches every other node, and the client reaches them all.
    for from in nodes {
        for to in nodes.iter().filter(|to| **to != from) {
            lab.ping(from, addr(to));
        }
    }
    for to in nodes {
        lab.ping("client", addr(to));
    }

    // Real TCP: a listener inside n3, a connection from the client; n3 sees
    // the client's own address (nothing NATs on the underlay).
    let listen = SocketAddrV4::new(addr("n3"), 0);
    let listener = netns::run_in(&lab.netns("n3"), || TcpListener::bind(listen))
        .expect("enter n3")
        .expect("bind in n3");
    let target = listener.local_addr().expect("local addr");
    let server = std::thread::spawn(move || {
        listener.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    stream.set_nonblocking(false).expect("blocking");
                    stream.write_all(b"hello from n3").expect("write");
                    return peer;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no connection reached n3");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    });
    let reply = netns::run_in(&lab.netns("client"), || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply)
    })
    .expect("enter client")
    .expect("TCP from client to n3");
    assert_eq!(reply, "hello from n3");
    let peer = server.join().expect("server thread");
    assert_eq!(peer.ip(), std::net::IpAddr::V4(addr("client")));

    // `ls --format json`: one object per member, docker style.
    let json = hive_ok(&["lab", "ls", "--name", "t-full", "--format", "json"]);
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    let members: Vec<&str> = rows
        .iter()
        .map(|r| r["Node"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(members, ["n1", "n2", "n3", "client"]);
    for row in &rows {
        let member = row["Node"].as_str().expect("Node");
        assert_eq!(row["Lab"], "t-full");
        assert_eq!(row["Namespace"], format!("hive-t-full-{member}"));
        assert_eq!(row["UnderlayAddr"], addr(member).to_string());
        assert_eq!(row["Status"], "ready");
        let mac = row["Mac"].as_str().expect("Mac");
        let host = mac.rsplit(':').next().expect("mac byte");
        assert_eq!(
            u8::from_str_radix(host, 16).ok(),
            Some(addr(member).octets()[3])
        );
    }
    assert_eq!(rows[1]["ApiSocket"], "/run/hive/lab/t-full/n2/hive.sock");
    assert_eq!(rows[1]["BpfPinDir"], "/sys/fs/bpf/hive/lab-t-full/n2");
    assert!(Path::new("/sys/fs/bpf/hive/lab-t-full/n2").is_dir());
    // The table lists the lab too, without --name.
    let table = hive_ok(&["lab", "ls"]);
    assert!(table.starts_with("LAB"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("hive-t-full-n3") && l.contains("192.168.77.3"))
    );

    // A process inside a node; `down` must stop it with everything else.
    let sleeper = Command::new(HIVE)
        .args([
            "lab", "exec", "--name", "t-full", "n1", "--", "sleep", "300",
        ])
        .spawn()
        .expect("spawn sleeper");
    wait_until("sleep in n1", Duration::from_secs(10), || {
        !lab_processes("t-full").is_empty()
    });

    let out = hive_ok(&["lab", "down", "--name", "t-full"]);
    assert!(out.contains("stopped 1 process"), "{out}");
    let status = wait_output(
        sleeper,
        Duration::from_secs(10),
        "the sleeper's hive lab exec",
    )
    .status;
    assert_eq!(status.code(), Some(143), "sleep died of SIGTERM (128+15)");
    assert_lab_gone("t-full");
    assert!(hive_ok(&["lab", "down", "--name", "t-full"]).contains("no lab named"));
}

#[test]
fn down_cleans_up_after_up_was_killed_half_way() {
    if !privileged("down_cleans_up_after_up_was_killed_half_way") {
        return;
    }
    let _group = support::file_group();
    let lab = TestLab::new("t-kill");
    let mut up = Command::new(HIVE)
        .args([
            "lab",
            "up",
            "--name",
            lab.name,
            "--nodes",
            "99",
            "--managers",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hive lab up");
    // Kill it once it has made a few namespaces, long before 99 nodes.
    let third = netns::netns_path("hive-t-kill-n3");
    wait_until("lab up to create n3", Duration::from_secs(30), || {
        third.exists()
    });
    up.kill().expect("SIGKILL hive lab up");
    up.wait().expect("reap");

    let state = std::fs::read_to_string(naming::state_file(lab.name)).expect("state written first");
    assert!(
        state.contains("\"status\": \"creating\""),
        "up was killed before it finished"
    );
    assert!(
        !netns::netns_path("hive-t-kill-client").exists(),
        "up got too far to test a half-way kill"
    );
    // `ls` shows the broken lab and says what to do; `up` refuses it.
    let out = hive(&["lab", "ls", "--name", lab.name]);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("hive lab down --name t-kill"),
        "{}",
        text(&out.stderr)
    );
    let err = hive_err(&["lab", "up", "--name", lab.name]);
    assert!(err.contains("hive lab down --name t-kill"), "{err}");

    let out = hive_ok(&["lab", "down", "--name", lab.name]);
    assert!(out.contains("Removed lab"), "{out}");
    assert_lab_gone(lab.name);
}

#[test]
fn down_stops_processes_after_their_launcher_was_killed_and_state_is_gone() {
    if !privileged("down_stops_processes_after_their_launcher_was_killed_and_state_is_gone") {
        return;
    }
    let _group = support::file_group();
    let lab = TestLab::up("t-orphan", 2);
    let mut launchers: Vec<Child> = ["n1", "client"]
        .iter()
        .map(|member| {
            Command::new(HIVE)
                .args([
                    "lab", "exec", "--name", lab.name, member, "--", "sleep", "300",
                ])
                .spawn()
                .expect("spawn hive lab exec")
        })
        .collect();
    wait_until("two sleepers", Duration::from_secs(10), || {
        lab_processes(lab.name).len() == 2
    });
    // The launchers die without a word; their sleepers live on, orphaned.
    for launcher in &mut launchers {
        launcher.kill().expect("SIGKILL hive lab exec");
        launcher.wait().expect("reap");
    }
    assert_eq!(lab_processes(lab.name).len(), 2);
    // And the record of the lab is lost too.
    std::fs::remove_file(naming::state_file(lab.name)).expect("remove state.json");

    let out = hive_ok(&["lab", "down", "--name", lab.name]);
    assert!(out.contains("stopped 2 process"), "{out}");
    assert_lab_gone(lab.name);
}

#[test]
fn two_labs_coexist_and_downing_one_leaves_the_other() {
    if !privileged("two_labs_coexist_and_downing_one_leaves_the_other") {
        return;
    }
    let _group = support::file_group();
    let first = TestLab::up("t-one", 2);
    let second = TestLab::up("t-two", 2);
    // Same addresses in both, isolated by their namespaces.
    first.ping("n1", addr("n2"));
    second.ping("n1", addr("n2"));
    second.ping("client", addr("n2"));

    hive_ok(&["lab", "down", "--name", first.name]);
    assert_lab_gone(first.name);

    second.ping("n2", addr("n1"));
    second.ping("client", addr("n1"));
    let out = second.exec("n2", &["hostname"]);
    assert_eq!(text(&out.stdout).trim(), "n2");
    let json = hive_ok(&["lab", "ls", "--format", "json"]);
    assert!(json.contains("\"Lab\":\"t-two\""), "{json}");
    assert!(!json.contains("\"Lab\":\"t-one\""), "{json}");
    let err = hive_err(&["lab", "exec", "--name", first.name, "n1", "--", "true"]);
    assert!(err.contains("no lab named \"t-one\""), "{err}");
}

#[test]
fn bad_input_is_refused_with_clear_errors() {
    // Validation happens before anything needs root.
    for name in ["Bad", "-x", "x-", "a_b", "twelve-chars", ""] {
        let err = hive_err(&["lab", "up", &format!("--name={name}")]);
        assert!(err.contains("invalid lab name"), "{name:?}: {err}");
    }
    let err = hive_err(&["lab", "up", "--name", "t-bad", "--nodes", "0"]);
    assert!(err.contains("at least one node"), "{err}");
    let err = hive_err(&["lab", "up", "--name", "t-bad", "--nodes", "100"]);
    assert!(err.contains("at most 99 nodes"), "{err}");
    let err = hive_err(&["lab", "down", "--name", "a/b"]);
    assert!(err.contains("invalid lab name"), "{err}");

    if !privileged("bad_input_is_refused_with_clear_errors (root part)") {
        return;
    }
    let _group = support::file_group();
    assert!(
        !netns::netns_path("hive-t-bad-n1").exists(),
        "refused labs make nothing"
    );
    let out = hive_ok(&["lab", "down", "--name", "t-nothing"]);
    assert!(out.contains("no lab named \"t-nothing\""), "{out}");

    let lab = TestLab::up("t-dup", 1);
    let err = hive_err(&["lab", "up", "--name", lab.name, "--nodes", "2"]);
    assert!(
        err.contains("already exists") && err.contains("hive lab down --name t-dup"),
        "{err}"
    );
    // The refused `up` did not harm the lab that exists.
    lab.ping("client", addr("n1"));
    let err = hive_err(&["lab", "exec", "--name", lab.name, "n2", "--", "true"]);
    assert!(err.contains("no member \"n2\""), "{err}");
    let out = lab.exec("n1", &["/no/such/program"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
}

#[test]
fn rust_api_runs_commands_and_netlink_inside_nodes_and_the_guard_cleans_up_on_panic() {
    use hive_lab::{LabGuard, LabSpec};
    if !privileged(
        "rust_api_runs_commands_and_netlink_inside_nodes_and_the_guard_cleans_up_on_panic",
    ) {
        return;
    }
    let _group = support::file_group();
    let result = std::panic::catch_unwind(|| {
        let lab = LabGuard::up(&LabSpec::new("t-api", 2)).expect("lab up");
        assert_eq!(
            lab.nodes().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["n1", "n2"]
        );
        assert_eq!(
            lab.node_addr("n2").expect("n2"),
            Ipv4Addr::new(192, 168, 77, 2)
        );
        assert_eq!(
            lab.node_addr("client").expect("client"),
            Ipv4Addr::new(192, 168, 77, 100)
        );

        let out = lab
            .command("n2", "hostname")
            .expect("command")
            .output()
            .expect("run");
        assert_eq!(text(&out.stdout).trim(), "n2");
        let status = lab
            .command("n1", "ping")
            .expect("command")
            .args(["-c1", "-W2", "192.168.77.2"])
            .stdout(Stdio::null())
            .status()
            .expect("ping");
        assert!(status.success());

        // rtnetlink bound to n1's namespace, driven by the caller's runtime.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let names = runtime.block_on(async {
            use futures::TryStreamExt as _;
            let (connection, handle) =
                netns::rtnetlink_in(lab.netns_path("n1").expect("n1")).expect("netlink in n1");
            tokio::spawn(connection);
            let mut names = Vec::new();
            let mut links = handle.link().get().execute();
            while let Some(link) = links.try_next().await.expect("dump links") {
                for attr in link.attributes {
                    if let rtnetlink::packet_route::link::LinkAttribute::IfName(name) = attr {
                        names.push(name);
                    }
                }
            }
            names
        });
        assert_eq!(names, ["lo", "eth0"]);

        panic!("test panics while the lab is up");
    });
    assert!(result.is_err());
    assert_lab_gone("t-api");
}
