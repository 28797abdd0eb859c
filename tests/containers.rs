//! Real application images through the whole swarm (issue 16): OCI images built offline
//! from busybox-static (an HTTP server whose CGI answers like whoami), run by runc as services
//! of three replicas. Every node's published port is answered by all three containers, each
//! seeing the client's own address.
//!
//! - An image saved as a `docker-archive` with skopeo and loaded on every node with
//!   `hive image load` (the air-gapped path).
//! - Images pushed with skopeo to a real `docker-registry` on n1's address: pulled by every
//!   node, then `service update --image …:2` rolls every task to the new digest, and `service
//!   ps` shows `Preparing` while a node pulls (a gate in front of the registry holds the blob
//!   downloads until the test has seen it).
//!
//! Needs root and the tools `cargo xtask setup` installs (runc, umoci, skopeo,
//! busybox-static, docker-registry); without them it is skipped with a printed reason, or
//! fails when `CI` is set. The lab, its daemons, their containers, the registry and the gate
//! go away with the test, also on failure.

use crate::support;

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hive::lab_swarm::LabDaemonOptions;
use hive::store::objects::TaskState;
use support::busybox::{self, tools_or_skip};
use support::registry::{self, BlobGate, Registry};
use support::tasks::{hostnames, live, wait_mesh, wait_running, wait_tasks};
use support::{PATIENCE, Swarm, privileged};

const IMAGE: &str = "hive-test/httpd:1";
const PORT: u16 = 8080;

/// whoami's two lines, from the container: its hostname and the peer it saw (busybox's httpd
/// listens on IPv6 and shows an IPv4 peer mapped, `[::ffff:192.0.2.1]`); then the image's
/// version.
fn index_cgi(version: &str) -> String {
    format!(
        "#!/bin/sh
echo 'Content-Type: text/plain'
echo ''
echo \"Hostname: $(hostname)\"
peer=${{REMOTE_ADDR#[}}
peer=${{peer%]}}
echo \"RemoteAddr: ${{peer#::ffff:}}:${{REMOTE_PORT:-1}}\"
echo 'Version: {version}'
"
    )
}

/// The root filesystem's CGI index of image `version`.
fn populate(version: &str) -> impl FnOnce(&Path) + '_ {
    move |rootfs: &Path| {
        let cgi = rootfs.join("srv/cgi-bin");
        std::fs::create_dir_all(&cgi).expect("cgi-bin");
        std::fs::write(cgi.join("index.cgi"), index_cgi(version)).expect("index.cgi");
        for path in [cgi.join("index.cgi"), cgi] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }
}

const APPLETS: [&str; 4] = ["sh", "hostname", "httpd", "echo"];

/// busybox's httpd serving a CGI index from /srv, started by the image's Entrypoint and Cmd.
const CONFIG: [&str; 14] = [
    "--config.entrypoint",
    "/bin/httpd",
    "--config.cmd",
    "-f",
    "--config.cmd",
    "-p",
    "--config.cmd",
    "80",
    "--config.cmd",
    "-h",
    "--config.cmd",
    "/srv",
    "--config.exposedports",
    "80/tcp",
];

/// The image as a `docker save` archive tagged [`IMAGE`].
fn build_archive(dir: &Path) -> PathBuf {
    busybox::docker_archive(dir, IMAGE, &APPLETS, populate("1"), &CONFIG)
}

#[test]
fn a_loaded_image_runs_as_a_service_answered_through_every_node() {
    if !privileged("a_loaded_image_runs_as_a_service_answered_through_every_node")
        || !tools_or_skip("a_loaded_image_runs_as_a_service_answered_through_every_node")
    {
        return;
    }
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("temporary directory");
    let archive = build_archive(dir.path());
    let archive = archive.to_str().expect("UTF-8 path");

    let swarm = Swarm::up("ctr-img", 3, 1);
    for node in ["n1", "n2", "n3"] {
        let loaded = swarm.hive_ok(node, &["image", "load", "-i", archive]);
        assert!(
            loaded.contains(&format!("Loaded image: {IMAGE}")),
            "image load on {node}: {loaded}"
        );
    }
    swarm.hive_line(
        "n1",
        &format!("service create -d --name web --replicas 3 -p {PORT}:80 {IMAGE}"),
    );
    let tasks = wait_running(&swarm, "web", 3);
    let hosts = hostnames(&live(&tasks));
    // Each container answers with its own hostname (its short container ID, as Docker's)
    // and sees the client's address, through the published port of every node.
    wait_mesh(&swarm, &["n1", "n2", "n3"], PORT, &hosts, 12);

    let ps = swarm.hive_line("n1", "service ps web");
    assert!(ps.contains(IMAGE), "{ps}");
    // The manager pinned the digest of the loaded image at create (issue 16 item 1); `ps`
    // shows the name without it, as docker's.
    let inspected = swarm.hive_ok("n1", &["service", "inspect", "web"]);
    assert!(
        inspected.contains(&format!("{IMAGE}@sha256:")),
        "the image is pinned: {inspected}"
    );
    assert!(!ps.contains("@sha256:"), "{ps}");
    let images = swarm.hive_ok("n2", &["image", "ls"]);
    assert!(images.contains("hive-test/httpd"), "{images}");

    volumes_are_per_node_and_kept_while_mounted(&swarm);
}

/// `hive volume ...` (issue 16 item 6): a volume a task mounts is made on its node on first
/// use, listed there, refused removal while mounted, and removable (`rm`, `prune -a`) with its
/// data once the service is gone.
fn volumes_are_per_node_and_kept_while_mounted(swarm: &Swarm) {
    const VOLUME: &str = "ctr-keep";
    swarm.hive_line(
        "n1",
        &format!(
            "service create -d --name keeper --mode global \
             --mount type=volume,source={VOLUME},target=/data {IMAGE}"
        ),
    );
    wait_running(swarm, "keeper", 3);
    let mut mountpoints = Vec::new();
    for node in ["n2", "n3"] {
        let ls = swarm.hive_ok(node, &["volume", "ls"]);
        assert!(
            ls.starts_with("DRIVER    VOLUME NAME\n")
                && ls.contains(&format!("local     {VOLUME}\n")),
            "volume ls on {node}: {ls}"
        );
        let inspected: serde_json::Value =
            serde_json::from_str(&swarm.hive_ok(node, &["volume", "inspect", VOLUME]))
                .expect("volume inspect is JSON");
        assert_eq!(inspected[0]["Driver"], "local", "{inspected}");
        assert_eq!(inspected[0]["Scope"], "local", "{inspected}");
        let mountpoint = PathBuf::from(inspected[0]["Mountpoint"].as_str().expect("Mountpoint"));
        std::fs::write(mountpoint.join("kept"), "data\n").expect("write into the volume");
        mountpoints.push(mountpoint);
        let refused = swarm.hive(node, &["volume", "rm", VOLUME]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success()
                && stderr.contains(&format!(
                    "Error response from daemon: remove {VOLUME}: volume is in use - ["
                )),
            "volume rm of a mounted volume on {node}: {stderr}"
        );
    }
    assert!(mountpoints.iter().all(|m| m.join("kept").exists()));

    swarm.hive_line("n1", "service rm keeper");
    // The tasks go down on their nodes a moment after `service rm` answers.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let removed = swarm.hive("n2", &["volume", "rm", VOLUME]);
        if removed.status.success() {
            assert_eq!(
                String::from_utf8_lossy(&removed.stdout),
                format!("{VOLUME}\n")
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "volume rm on n2 after service rm: {}",
            String::from_utf8_lossy(&removed.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!mountpoints[0].exists(), "the data went with the volume");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let pruned = swarm.hive_ok("n3", &["volume", "prune", "-a", "-f"]);
        if pruned.starts_with(&format!("Deleted Volumes:\n{VOLUME}\n")) {
            assert!(pruned.contains("Total reclaimed space: 5B"), "{pruned}");
            break;
        }
        assert!(Instant::now() < deadline, "volume prune on n3: {pruned}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!mountpoints[1].exists(), "the data went with the volume");
    let ls = swarm.hive_ok("n3", &["volume", "ls"]);
    assert!(!ls.contains(VOLUME), "{ls}");
}

/// Where the registry's gate listens in n1 (the address every node pulls from).
const REGISTRY_PORT: u16 = 5000;
/// The registry itself, reachable only inside n1, behind the gate.
const REGISTRY_BACKEND: &str = "127.0.0.1:5001";
const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// The image of service `web` as `service inspect` shows it.
fn inspected_image(swarm: &Swarm) -> String {
    let shown = swarm.hive_ok("n1", &["service", "inspect", "web"]);
    let parsed: serde_json::Value =
        serde_json::from_str(&shown).unwrap_or_else(|e| panic!("{e}: {shown}"));
    parsed[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        .as_str()
        .unwrap_or_else(|| panic!("no image in {shown}"))
        .to_owned()
}

/// Asserts that `probes` new connections to every node's published port are each answered
/// by a container of image `version`.
fn assert_version(swarm: &Swarm, version: &str, probes: usize) {
    let lab = swarm.lab();
    let client = lab.netns_path("client").expect("client namespace");
    for node in NODES {
        let to = SocketAddr::from((lab.node_addr(node).expect("node address"), PORT));
        for _ in 0..probes {
            let answer = hive_dataplane::netns::run_in(client, || -> std::io::Result<String> {
                let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
                stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                stream.write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")?;
                let mut text = String::new();
                stream.read_to_string(&mut text)?;
                Ok(text)
            })
            .expect("entering the client namespace")
            .unwrap_or_else(|e| panic!("GET http://{to}/: {e}"));
            assert!(
                answer
                    .lines()
                    .any(|l| l.trim() == format!("Version: {version}")),
                "{node}:{PORT} answered from another image than version {version}: {answer}"
            );
        }
    }
}

#[test]
fn a_pulled_image_runs_everywhere_and_rolls_to_a_new_digest() {
    const TEST: &str = "a_pulled_image_runs_everywhere_and_rolls_to_a_new_digest";
    if !privileged(TEST) || !registry::tools_or_skip(TEST) {
        return;
    }
    let _serial = support::serial();
    let dir = tempfile::tempdir().expect("temporary directory");
    let layouts: Vec<String> = ["1", "2", "3"]
        .into_iter()
        .map(|version| {
            let at = dir.path().join(format!("v{version}"));
            std::fs::create_dir_all(&at).expect("image directory");
            busybox::oci_layout(&at, &APPLETS, populate(version), &CONFIG)
        })
        .collect();

    let mut gate_addr = None;
    let swarm = Swarm::up_with_options("images-pull", 3, 1, |lab| {
        let addr = SocketAddr::from((lab.node_addr("n1").expect("n1's address"), REGISTRY_PORT));
        gate_addr = Some(addr);
        LabDaemonOptions {
            insecure_registries: vec![addr.to_string()],
        }
    });
    let gate_addr = gate_addr.expect("the registry's address");
    let backend: SocketAddr = REGISTRY_BACKEND.parse().expect("an address");
    let registry = Registry::start(swarm.lab(), "n1", dir.path(), backend);
    for (version, layout) in ["1", "2"].iter().zip(&layouts) {
        // (:3 is pushed later, once a task has failed to pull it.)
        registry.push(
            swarm.lab(),
            "n1",
            &format!("oci:{layout}"),
            &format!("hive-test/httpd:{version}"),
        );
    }
    let gate = BlobGate::start(swarm.lab(), "n1", gate_addr, backend);
    let image = |version: &str| format!("{gate_addr}/hive-test/httpd:{version}");

    // Three replicas, one per node: each node pulls the image and runs it; every node's
    // published port is answered by all three, each seeing the client's address.
    swarm.hive_line(
        "n1",
        &format!(
            "service create -d --name web --replicas 3 -p {PORT}:80 {}",
            image("1")
        ),
    );
    let tasks = wait_running(&swarm, "web", 3);
    let nodes: BTreeSet<_> = live(&tasks).iter().map(|t| t.node_id.clone()).collect();
    assert_eq!(nodes.len(), 3, "one replica per node: {tasks:?}");
    let first_hosts = hostnames(&live(&tasks));
    wait_mesh(&swarm, &NODES, PORT, &first_hosts, 12);
    assert_version(&swarm, "1", 3);
    let first = inspected_image(&swarm);
    assert!(
        first.starts_with(&format!("{}@sha256:", image("1"))),
        "pinned at create: {first}"
    );

    // The update pins :2 (the gate lets manifests through) and rolls; a node pulling :2 is
    // held at its first blob, so its task stays `Preparing` until the test has seen it.
    gate.close();
    swarm.hive_line(
        "n1",
        &format!("service update -d --image {} web", image("2")),
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        let ps = swarm.hive_line("n1", "service ps web");
        let preparing = ps
            .lines()
            .any(|l| l.contains(&image("2")) && l.contains("Preparing"));
        if preparing && gate.held() > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no task of :2 shown Preparing while a node pulls (blob requests held: {}):\n{ps}",
            gate.held()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    gate.open();

    let pinned = format!("{}@sha256:", image("2"));
    let tasks = wait_tasks(&swarm, "web", "3 tasks of :2 running", |t| {
        let live = live(t);
        live.len() == 3
            && hostnames(&live).len() == 3
            && live
                .iter()
                .all(|t| t.spec.container.image.starts_with(&pinned))
    });
    let second = inspected_image(&swarm);
    assert!(second.starts_with(&pinned), "pinned at update: {second}");
    let digest = |image: &str| image.rsplit_once('@').map(|(_, d)| d.to_owned());
    assert_ne!(digest(&first), digest(&second), "a new digest");
    let second_hosts = hostnames(&live(&tasks));
    assert!(
        first_hosts.is_disjoint(&second_hosts),
        "every task was replaced: {first_hosts:?} then {second_hosts:?}"
    );
    wait_mesh(&swarm, &NODES, PORT, &second_hosts, 12);
    assert_version(&swarm, "2", 3);

    // A tag the registry does not have yet: the manager cannot pin it (docker's warning, the
    // service keeps the tag), the node's pull fails and rejects the task with docker's
    // `No such image`, and the orchestrator tries again after the restart delay, as Docker's:
    // once the tag is pushed, the task runs.
    swarm.hive_line(
        "n1",
        &format!("service create -d --name late -p 8081:80 {}", image("3")),
    );
    let refused = format!("No such image: {}: manifest for", image("3"));
    wait_tasks(&swarm, "late", "a task rejected for want of :3", |t| {
        t.iter()
            .any(|t| t.status.state == TaskState::Rejected && t.status.err.starts_with(&refused))
    });
    let ps = swarm.hive_line("n1", "service ps --no-trunc late");
    assert!(ps.contains("Rejected") && ps.contains(&refused), "{ps}");
    registry.push(
        swarm.lab(),
        "n1",
        &format!("oci:{}", layouts[2]),
        "hive-test/httpd:3",
    );
    let tasks = wait_running(&swarm, "late", 1);
    wait_mesh(&swarm, &NODES, 8081, &hostnames(&live(&tasks)), 3);
}
