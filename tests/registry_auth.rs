//! `--with-registry-auth` through a lab swarm (issue 16 item 3, issue 19 item 1): a private
//! image in a real htpasswd-protected `docker-registry` running on n1's address. Without the
//! flag its tasks fail with the registry's `unauthorized`; with it, the credentials the client's
//! docker config holds (a `DOCKER_CONFIG` directory made by the test) reach every node that
//! runs a task, which pulls and runs it; they are never shown by `service inspect`, neither
//! hive's nor the stock docker CLI's through the Engine API, and an update that sends none
//! rolls. Driven by hive's CLI, then by the docker CLI 28.2.2 (`service create` and
//! `stack deploy`). Then docker's `--resolve-image always|changed|never` on `stack deploy` and
//! `--no-resolve-image` on `service create` (issue 19 item 1), against the same registry.
//!
//! Needs root and the tools `cargo xtask setup` installs (runc, umoci, skopeo,
//! docker-registry, busybox-static); without them it is skipped with a printed reason, or fails
//! when `CI` is set. The registry is killed and the lab downed also when the test fails.

// Test set-up helpers: a failure there is the test's failure, with the panic's location.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hive::lab_swarm::LabDaemonOptions;
use support::tasks::{tasks, wait_running, wait_tasks};
use support::{PATIENCE, Swarm, privileged, text, wait_output};

const USER: &str = "hive-puller";
const PASSWORD: &str = "s3cret-regauth-9";
const REGISTRY_PORT: u16 = 5000;
const DOCKER: &str = "/usr/local/bin/docker";

fn ready_or_skip(test: &str) -> bool {
    if !privileged(test) {
        return false;
    }
    let missing: Vec<&str> = ["runc", "umoci", "skopeo", "docker-registry", "busybox"]
        .into_iter()
        .filter(|tool| which(tool).is_none())
        .collect();
    if missing.is_empty() && Path::new(DOCKER).exists() {
        return true;
    }
    let why = format!("missing tools {missing:?} or {DOCKER} (run `cargo xtask setup`)");
    assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
    eprintln!("skipped {test}: {why}");
    false
}

fn which(tool: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn check(what: &str, output: Output) -> Output {
    assert!(
        output.status.success(),
        "{what}: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    check(&format!("{program} {}", args.join(" ")), output)
}

/// A child process killed and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An OCI layout `layout:1`: busybox's httpd serving `/srv` on port 80, whose index is
/// `name` (so that each name is an image of its own digest, pulled on its own).
fn build_image(dir: &Path, name: &str) -> PathBuf {
    let layout = dir.join(format!("layout-{name}"));
    let bundle = dir.join(format!("bundle-{name}"));
    let base = format!("{}:base", layout.display());
    run("umoci", &["init", "--layout", layout.to_str().unwrap()]);
    run("umoci", &["new", "--image", &base]);
    run(
        "umoci",
        &["unpack", "--image", &base, bundle.to_str().unwrap()],
    );
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("srv")).unwrap();
    std::fs::copy(which("busybox").unwrap(), rootfs.join("bin/busybox")).unwrap();
    for tool in ["sh", "httpd"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
    }
    std::fs::write(rootfs.join("srv/index.html"), format!("{name}\n")).unwrap();
    let tagged = format!("{}:1", layout.display());
    run(
        "umoci",
        &["repack", "--image", &tagged, bundle.to_str().unwrap()],
    );
    run(
        "umoci",
        &[
            "config",
            "--image",
            &tagged,
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
        ],
    );
    layout
}

fn htpasswd(dir: &Path) -> PathBuf {
    let hash = run(
        "/usr/bin/python3",
        &[
            "-W",
            "ignore",
            "-c",
            &format!(
                "import crypt; print(crypt.crypt('{PASSWORD}', crypt.mksalt(crypt.METHOD_BLOWFISH)))"
            ),
        ],
    );
    let path = dir.join("htpasswd");
    std::fs::write(
        &path,
        format!("{USER}:{}", String::from_utf8_lossy(&hash.stdout).trim()),
    )
    .unwrap();
    path
}

/// A `docker-registry serve` behind htpasswd, in n1's namespace on n1's address.
fn start_registry(swarm: &Swarm, dir: &Path, registry: &str) -> Killed {
    let storage = dir.join("registry-data");
    std::fs::create_dir_all(&storage).unwrap();
    let config = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {registry}\nauth:\n  htpasswd:\n    realm: hive-regauth\n    path: {}\n",
        storage.display(),
        htpasswd(dir).display()
    );
    let config_path = dir.join("registry.yml");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(dir.join("registry.log")).unwrap();
    let child = swarm
        .lab()
        .command("n1", "docker-registry")
        .unwrap()
        .arg("serve")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("docker-registry");
    let killed = Killed(child);
    let netns = swarm.lab().netns_path("n1").unwrap();
    let addr: std::net::SocketAddr = registry.parse().unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !hive_dataplane::netns::run_in(netns, || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    })
    .unwrap()
    {
        assert!(Instant::now() < deadline, "the registry never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    killed
}

/// `program ARGS` inside `node`, with the client's docker config in `docker_config`.
fn in_node(
    swarm: &Swarm,
    node: &str,
    program: &str,
    args: &[&str],
    docker_config: &Path,
) -> Output {
    let mut command = swarm.lab().command(node, program).unwrap();
    command
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .env("DOCKER_CLI_HINTS", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().unwrap();
    wait_output(child, &format!("{program} {}", args.join(" ")))
}

fn ok(swarm: &Swarm, program: &str, args: &[&str], docker_config: &Path) -> String {
    let out = check(
        &format!("{program} {}", args.join(" ")),
        in_node(swarm, "n1", program, args, docker_config),
    );
    text(&out.stdout)
}

/// Waits until a task of `service` failed with the registry's refusal.
fn wait_unauthorized(swarm: &Swarm, service: &str) {
    wait_tasks(swarm, service, "a task refused with unauthorized", |t| {
        t.iter().any(|t| t.status.err.contains("unauthorized"))
    });
}

fn base64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn a_private_image_runs_with_registry_auth_only() {
    if !ready_or_skip("a_private_image_runs_with_registry_auth_only") {
        return;
    }
    let _serial = support::serial();
    let dir = tempfile::tempdir().unwrap();
    let hive = env!("CARGO_BIN_EXE_hive");

    let mut registry = String::new();
    let swarm = Swarm::up_with_options("regauth", 3, 1, |lab| {
        registry = format!("{}:{REGISTRY_PORT}", lab.node_addr("n1").unwrap());
        LabDaemonOptions {
            insecure_registries: vec![registry.clone()],
        }
    });
    let _registry = start_registry(&swarm, dir.path(), &registry);
    let empty = dir.path().join("no-docker-config");
    std::fs::create_dir_all(&empty).unwrap();
    // One private image per client path, so that each is pulled by the credentials under test
    // (a node that already has an image runs it without asking the registry).
    let push = |name: &str| {
        let layout = build_image(dir.path(), name);
        let image = format!("{registry}/hive-test/{name}:1");
        ok(
            &swarm,
            "skopeo",
            &[
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                &format!("{USER}:{PASSWORD}"),
                &format!("oci:{}:1", layout.display()),
                &format!("docker://{image}"),
            ],
            &empty,
        );
        image
    };
    let image = push("by-hive");
    let docker_image = push("by-docker");
    let stack_image = push("by-stack");
    let hive_stack_image = push("by-hive-stack");
    // The client's docker config, as `docker login` writes it.
    let docker_config = dir.path().join("docker-config");
    std::fs::create_dir_all(&docker_config).unwrap();
    std::fs::write(
        docker_config.join("config.json"),
        format!(
            r#"{{"auths": {{"{registry}": {{"auth": "{}"}}}}}}"#,
            base64(&format!("{USER}:{PASSWORD}"))
        ),
    )
    .unwrap();

    // hive's CLI: without the flag the registry refuses the nodes, as Docker's.
    ok(
        &swarm,
        hive,
        &["service", "create", "-d", "--name", "denied", &image],
        &docker_config,
    );
    wait_unauthorized(&swarm, "denied");
    ok(&swarm, hive, &["service", "rm", "denied"], &empty);
    // So does the stock docker CLI's (before any node has the image).
    ok(
        &swarm,
        DOCKER,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "ddenied",
            &docker_image,
        ],
        &empty,
    );
    wait_unauthorized(&swarm, "ddenied");
    ok(&swarm, hive, &["service", "rm", "ddenied"], &empty);

    // With it, every node that runs a task pulls with the service's credentials.
    ok(
        &swarm,
        hive,
        &[
            "service",
            "create",
            "-d",
            "--with-registry-auth",
            "--name",
            "web",
            "--replicas",
            "3",
            &image,
        ],
        &docker_config,
    );
    let running = wait_running(&swarm, "web", 3);
    // The scheduler spreads the replicas: each of the three nodes pulled the image itself.
    let nodes: std::collections::BTreeSet<_> = support::tasks::live(&running)
        .iter()
        .map(|t| t.node_id.clone())
        .collect();
    assert_eq!(nodes.len(), 3, "{running:?}");
    let inspected = ok(&swarm, hive, &["service", "inspect", "web"], &empty);
    assert!(
        inspected.contains(&format!("{image}@sha256:")),
        "pinned with the credentials: {inspected}"
    );
    assert!(!inspected.contains(PASSWORD), "{inspected}");
    // An update that sends none rolls the tasks (and keeps the credentials, which
    // `manager::services`' unit test checks: the new tasks find the image on their nodes).
    ok(
        &swarm,
        hive,
        &["service", "update", "-d", "--env-add", "ROUND=2", "web"],
        &empty,
    );
    wait_tasks(&swarm, "web", "3 updated tasks running", |t| {
        t.iter()
            .filter(|t| {
                support::tasks::is_running(t)
                    && t.spec.container.env.contains(&"ROUND=2".to_owned())
            })
            .count()
            == 3
    });
    for task in tasks(&swarm, "web") {
        assert!(task.spec.container.registry_auth.is_none(), "{task:?}");
    }

    // The stock docker CLI through the Engine API: X-Registry-Auth on create, never returned.
    let docker_ok = |args: &[&str]| ok(&swarm, DOCKER, args, &docker_config);
    docker_ok(&[
        "service",
        "create",
        "-d",
        "--with-registry-auth",
        "--name",
        "dweb",
        "--replicas",
        "3",
        &docker_image,
    ]);
    wait_running(&swarm, "dweb", 3);
    let shown = docker_ok(&["service", "inspect", "dweb"]);
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(!shown.contains("RegistryAuth"), "{shown}");

    let compose = dir.path().join("stack.yml");
    std::fs::write(
        &compose,
        format!("version: \"3.8\"\nservices:\n  app:\n    image: {stack_image}\n"),
    )
    .unwrap();
    docker_ok(&[
        "stack",
        "deploy",
        "--with-registry-auth",
        "-c",
        compose.to_str().unwrap(),
        "st",
    ]);
    wait_running(&swarm, "st_app", 1);

    // hive's own `stack deploy --with-registry-auth`.
    let compose = dir.path().join("hive-stack.yml");
    std::fs::write(
        &compose,
        format!("version: \"3.8\"\nservices:\n  app:\n    image: {hive_stack_image}\n"),
    )
    .unwrap();
    ok(
        &swarm,
        hive,
        &[
            "stack",
            "deploy",
            "--with-registry-auth",
            "-c",
            compose.to_str().unwrap(),
            "hs",
        ],
        &docker_config,
    );
    wait_running(&swarm, "hs_app", 1);

    // `--resolve-image` as docker's: `changed` with the same image keeps the deployed
    // (pinned) reference, so nothing is updated; `never` stores the image as written, and a
    // later `always` pins it.
    let deploy = |resolve: &str, stack: &str| {
        ok(
            &swarm,
            hive,
            &[
                "stack",
                "deploy",
                "--with-registry-auth",
                "--resolve-image",
                resolve,
                "-c",
                compose.to_str().unwrap(),
                stack,
            ],
            &docker_config,
        )
    };
    let image_of = |service: &str| -> String {
        let shown = ok(&swarm, hive, &["service", "inspect", service], &empty);
        let parsed: serde_json::Value = serde_json::from_str(&shown).unwrap();
        parsed[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
            .as_str()
            .unwrap_or_else(|| panic!("no image in {shown}"))
            .to_owned()
    };
    let pinned = image_of("hs_app");
    assert!(
        pinned.starts_with(&format!("{hive_stack_image}@sha256:")),
        "{pinned}"
    );
    deploy("changed", "hs");
    assert_eq!(image_of("hs_app"), pinned);
    assert_eq!(tasks(&swarm, "hs_app").len(), 1, "nothing was updated");
    deploy("never", "raw");
    wait_running(&swarm, "raw_app", 1);
    assert_eq!(image_of("raw_app"), hive_stack_image);
    deploy("changed", "raw");
    assert_eq!(image_of("raw_app"), hive_stack_image);
    deploy("always", "raw");
    assert!(
        image_of("raw_app").starts_with(&format!("{hive_stack_image}@sha256:")),
        "pinned by always"
    );
    // `--no-resolve-image`: hive's CLI and docker's.
    ok(
        &swarm,
        hive,
        &[
            "service",
            "create",
            "-d",
            "--no-resolve-image",
            "--name",
            "unpinned",
            &image,
        ],
        &empty,
    );
    assert_eq!(image_of("unpinned"), image);
    docker_ok(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--name",
        "dunpinned",
        &docker_image,
    ]);
    assert_eq!(image_of("dunpinned"), docker_image);
}
