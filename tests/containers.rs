//! A real application image through the whole swarm (issue 16): an OCI image built offline
//! from busybox-static (an HTTP server whose CGI answers like whoami), saved as a
//! `docker-archive` with skopeo, loaded on every node with `hive image load` (the air-gapped
//! path), and run as a service of three replicas by runc. Every node's published port is
//! answered by all three containers, each seeing the client's own address.
//!
//! Needs root and the tools `cargo xtask setup` installs (runc, umoci, skopeo,
//! busybox-static); without them it is skipped with a printed reason, or fails when `CI` is
//! set. The lab, its daemons and their containers go away with the swarm, also on failure.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use support::busybox::{self, tools_or_skip};

use support::tasks::{hostnames, live, wait_mesh, wait_running};
use support::{SERIAL, Swarm, privileged};

const IMAGE: &str = "hive-test/httpd:1";
const PORT: u16 = 8080;

/// whoami's two lines, from the container: its hostname and the peer it saw (busybox's httpd
/// listens on IPv6 and shows an IPv4 peer mapped, `[::ffff:192.0.2.1]`).
const INDEX_CGI: &str = "#!/bin/sh
echo 'Content-Type: text/plain'
echo ''
echo \"Hostname: $(hostname)\"
peer=${REMOTE_ADDR#[}
peer=${peer%]}
echo \"RemoteAddr: ${peer#::ffff:}:${REMOTE_PORT:-1}\"
";

/// The image as a `docker save` archive tagged [`IMAGE`]: busybox's httpd serving a CGI
/// index from /srv, started by the image's Entrypoint and Cmd.
fn build_archive(dir: &Path) -> PathBuf {
    let populate = |rootfs: &Path| {
        let cgi = rootfs.join("srv/cgi-bin");
        std::fs::create_dir_all(&cgi).expect("cgi-bin");
        std::fs::write(cgi.join("index.cgi"), INDEX_CGI).expect("index.cgi");
        for path in [cgi.join("index.cgi"), cgi] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    };
    let config = [
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
    busybox::docker_archive(
        dir,
        IMAGE,
        &["sh", "hostname", "httpd", "echo"],
        populate,
        &config,
    )
}

#[test]
fn a_loaded_image_runs_as_a_service_answered_through_every_node() {
    if !privileged("a_loaded_image_runs_as_a_service_answered_through_every_node")
        || !tools_or_skip("a_loaded_image_runs_as_a_service_answered_through_every_node")
    {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
}
