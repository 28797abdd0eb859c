//! OCI images end to end (issue 16, items 1-4 and 7): a test image built offline from
//! busybox-static with umoci, pushed with skopeo to real `docker-registry`s on 127.0.0.1 (one
//! open, one behind htpasswd), then pulled, loaded, listed, inspected, removed and pruned
//! through the `hive image` CLI of a real `hive daemon`. Corrupt and escaping archives are
//! refused with nothing left in the store.
//!
//! Needs root (the layers' owners, whiteouts) and the tools `cargo xtask setup` installs
//! (umoci, skopeo, docker-registry, busybox-static); without them it is skipped with a printed
//! reason, or fails when `CI` is set. Every registry and daemon it starts is killed, and every
//! directory removed, also when it fails.

// The helpers below are test set-up: any failure there is the test's failure, with the
// panic's location as the message (clippy allows unwrap in #[test] functions only).
#![allow(clippy::unwrap_used)]

use crate::support;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hive::image_store::{Digest, ImageError, ImageStore, RegistryOptions};

const HIVE: &str = env!("CARGO_BIN_EXE_hive");
const PATIENCE: Duration = Duration::from_secs(60);
const USER: &str = "hive-img";
const PASSWORD: &str = "s3cret-img";

fn ready_or_skip(test: &str) -> bool {
    let missing: Vec<&str> = ["umoci", "skopeo", "docker-registry", "busybox"]
        .into_iter()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    let root = nix::unistd::geteuid().is_root();
    if root && missing.is_empty() {
        return true;
    }
    let why = if root {
        format!("missing tools {missing:?} (run `cargo xtask setup`)")
    } else {
        "it needs root".to_owned()
    };
    assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
    eprintln!("skipped {test}: {why}");
    false
}

/// A child process killed and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `docker-registry serve` on 127.0.0.1; with `htpasswd`, behind basic auth.
fn start_registry(dir: &Path, name: &str, htpasswd: Option<&Path>) -> (Killed, String) {
    let port = free_port();
    let storage = dir.join(format!("{name}-data"));
    std::fs::create_dir_all(&storage).unwrap();
    let mut config = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
        storage.display()
    );
    if let Some(file) = htpasswd {
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: hive-img\n    path: {}\n",
            file.display()
        ));
    }
    let config_path = dir.join(format!("{name}.yml"));
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("docker-registry");
    let registry = Killed(child);
    let addr = format!("127.0.0.1:{port}");
    wait_for(&format!("registry {name}"), || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    (registry, addr)
}

/// An OCI layout `layout:1` with busybox-static and a few links, and a configuration that
/// sets Entrypoint, Cmd, Env and WorkingDir.
fn build_image(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    let image = format!("{}:base", layout.display());
    run("umoci", &["init", "--layout", layout.to_str().unwrap()]);
    run("umoci", &["new", "--image", &image]);
    run(
        "umoci",
        &["unpack", "--image", &image, bundle.to_str().unwrap()],
    );
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("srv")).unwrap();
    std::fs::copy(which("busybox"), rootfs.join("bin/busybox")).unwrap();
    for tool in ["sh", "echo", "cat", "httpd"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
    }
    std::fs::write(rootfs.join("srv/index.html"), "hello from hive-img\n").unwrap();
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
            "/bin/sh",
            "--config.cmd",
            "-c",
            "--config.cmd",
            "echo $GREETING",
            "--config.env",
            "GREETING=hello",
            "--config.workingdir",
            "/srv",
            "--config.exposedports",
            "80/tcp",
        ],
    );
    layout
}

fn which(tool: &str) -> PathBuf {
    let out = run("sh", &["-c", &format!("command -v {tool}")]);
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn skopeo_push(layout: &Path, dest: &str, extra: &[&str]) {
    let src = format!("oci:{}:1", layout.display());
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    args.extend_from_slice(extra);
    args.push(&src);
    args.push(dest);
    run("skopeo", &args);
}

/// A standalone `hive daemon` (no swarm, no data plane) on its own socket and data dir.
struct Daemon {
    _child: Killed,
    socket: PathBuf,
    data_dir: PathBuf,
    docker_config: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, insecure: &[&str]) -> Self {
        let data_dir = dir.join("data");
        let socket = dir.join("hive.sock");
        let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
        let mut command = Command::new(HIVE);
        command
            .arg("daemon")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--socket")
            .arg(&socket)
            .arg("--docker-api")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .args(["--listen-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--advertise-addr", "127.0.0.1"])
            .arg("--no-dataplane")
            .arg("--task-run-dir")
            .arg(dir.join("run"))
            .args(["--cgroup-parent", "hive/img-test"]);
        for registry in insecure {
            command.args(["--insecure-registry", registry]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("hive daemon");
        let daemon = Self {
            _child: Killed(child),
            socket,
            data_dir,
            docker_config: dir.join("docker-config"),
        };
        std::fs::create_dir_all(&daemon.docker_config).unwrap();
        wait_for("the daemon's socket", || {
            daemon.hive(&["image", "ls"]).status.success()
        });
        daemon
    }

    fn hive(&self, args: &[&str]) -> Output {
        self.hive_with_stdin(args, None)
    }

    fn hive_with_stdin(&self, args: &[&str], stdin: Option<&Path>) -> Output {
        let host = format!("unix://{}", self.socket.display());
        let mut command = Command::new(HIVE);
        command
            .args(["-H", &host])
            .args(args)
            .env("DOCKER_CONFIG", &self.docker_config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match stdin {
            Some(file) => command.stdin(std::fs::File::open(file).unwrap()),
            None => command.stdin(Stdio::null()),
        };
        command.output().expect("hive")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.hive(args);
        assert!(
            out.status.success(),
            "hive {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn err(&self, args: &[&str]) -> String {
        let out = self.hive(args);
        assert!(
            !out.status.success(),
            "hive {} should fail: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Names in a store directory (blobs, layers, tmp).
    fn entries(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.data_dir.join("images").join(sub))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

fn inspect(daemon: &Daemon, image: &str) -> serde_json::Value {
    let text = daemon.ok(&["image", "inspect", image]);
    let list: serde_json::Value = serde_json::from_str(&text).expect("inspect prints JSON");
    list[0].clone()
}

#[test]
fn images_are_pulled_loaded_listed_and_removed_through_the_cli() {
    if !ready_or_skip("images_are_pulled_loaded_listed_and_removed_through_the_cli") {
        return;
    }
    let _group = support::file_group();
    let dir = tempfile::tempdir().unwrap();
    let layout = build_image(dir.path());

    let htpasswd = dir.path().join("htpasswd");
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
    std::fs::write(
        &htpasswd,
        format!("{USER}:{}", String::from_utf8_lossy(&hash.stdout).trim()),
    )
    .unwrap();
    let (_open_registry, open) = start_registry(dir.path(), "open", None);
    let (_private_registry, private) = start_registry(dir.path(), "private", Some(&htpasswd));
    let (_https_only, https_only) = start_registry(dir.path(), "https-only", None);

    skopeo_push(&layout, &format!("docker://{open}/hive-test/app:1"), &[]);
    skopeo_push(
        &layout,
        &format!("docker://{open}/hive-test/app:v2s2"),
        &["--format", "v2s2"],
    );
    skopeo_push(
        &layout,
        &format!("docker://{private}/hive-test/secret:1"),
        &["--dest-creds", &format!("{USER}:{PASSWORD}")],
    );
    skopeo_push(
        &layout,
        &format!("docker://{https_only}/hive-test/app:1"),
        &[],
    );

    let daemon = Daemon::start(dir.path(), &[&open, &private]);

    // An OCI manifest and a Docker v2 schema 2 one of the same image.
    let oci_ref = format!("{open}/hive-test/app:1");
    let pulled = daemon.ok(&["image", "pull", &oci_ref]);
    assert!(pulled.contains("Digest: sha256:"), "{pulled}");
    assert!(pulled.trim_end().ends_with(&oci_ref), "{pulled}");
    let v2s2_ref = format!("{open}/hive-test/app:v2s2");
    daemon.ok(&["image", "pull", &v2s2_ref]);
    let details = inspect(&daemon, &oci_ref);
    assert_eq!(
        details["Config"]["Entrypoint"],
        serde_json::json!(["/bin/sh"])
    );
    assert_eq!(
        details["Config"]["Cmd"],
        serde_json::json!(["-c", "echo $GREETING"])
    );
    assert!(
        details["Config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("GREETING=hello"))
    );
    assert_eq!(details["Config"]["WorkingDir"], "/srv");
    assert_eq!(
        details["Config"]["ExposedPorts"],
        serde_json::json!({"80/tcp": {}})
    );
    assert_eq!(details["Os"], "linux");
    let v2s2 = inspect(&daemon, &v2s2_ref);
    assert_eq!(v2s2["Id"], details["Id"], "one configuration, one image ID");
    // The unpacked layer holds an executable busybox, shared by both manifests.
    let layers = daemon.entries("layers");
    assert_eq!(layers.len(), 1, "{layers:?}");
    let busybox = daemon
        .data_dir
        .join("images/layers")
        .join(&layers[0])
        .join("bin/busybox");
    let mode = std::fs::metadata(&busybox).unwrap();
    assert!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o111 != 0,
        "busybox stays executable in the store"
    );

    let ls = daemon.ok(&["image", "ls"]);
    let header = ls.lines().next().unwrap();
    for column in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(column), "{ls}");
    }
    let id = details["Id"].as_str().unwrap();
    let short = &id["sha256:".len().."sha256:".len() + 12];
    assert!(ls.contains(&format!("{open}/hive-test/app")), "{ls}");
    assert!(ls.contains(short), "{ls}");
    let formatted = daemon.ok(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut names: Vec<&str> = formatted.lines().collect();
    names.sort();
    assert_eq!(names, [oci_ref.as_str(), v2s2_ref.as_str()]);

    // Plain HTTP only where the daemon was told so.
    let refused = daemon.err(&["image", "pull", &format!("{https_only}/hive-test/app:1")]);
    assert!(refused.contains("Error response from daemon"), "{refused}");

    // A private registry: unauthorized without credentials, pulled with docker's config.
    let secret = format!("{private}/hive-test/secret:1");
    let denied = daemon.err(&["image", "pull", &secret]);
    assert!(denied.contains("unauthorized"), "{denied}");
    let auth = base64_encode(&format!("{USER}:{PASSWORD}"));
    std::fs::write(
        daemon.docker_config.join("config.json"),
        format!(r#"{{"auths": {{"{private}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
    daemon.ok(&["image", "pull", &secret]);

    // `/distribution/{name}/json`: the digest a service pins, asked of the registry (with
    // `X-Registry-Auth` for the private one), as the docker CLI asks dockerd.
    let engine = dir.path().join("docker.sock");
    let digest = pulled
        .lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap()
        .trim()
        .to_owned();
    let (status, body) = engine_get(
        &engine,
        &format!("/v1.50/distribution/{oci_ref}/json"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["Descriptor"]["digest"], digest.as_str(), "{body}");
    let path = format!("/v1.50/distribution/{secret}/json");
    let (status, body) = engine_get(&engine, &path, None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("unauthorized"), "{body}");
    let header = base64_url(&format!(
        r#"{{"username":"{USER}","password":"{PASSWORD}","serveraddress":"{private}"}}"#
    ));
    let (status, body) = engine_get(&engine, &path, Some(&header));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"digest\":\"sha256:"), "{body}");
    let (status, body) = engine_get(&engine, "/v1.50/distribution/hive/whoami/json", None);
    assert_eq!(status, 404, "{body}");

    // Missing tags and malformed references.
    let unknown = daemon.err(&["image", "pull", &format!("{open}/hive-test/app:nope")]);
    assert!(unknown.contains("not found"), "{unknown}");
    let malformed = daemon.err(&["image", "pull", "Bad/Name"]);
    assert!(
        malformed.contains("invalid reference format"),
        "{malformed}"
    );
    let builtin = daemon.err(&["image", "pull", "hive/whoami"]);
    assert!(builtin.contains("built-in"), "{builtin}");

    // `image load` of a docker-archive (file) and an OCI layout tar (stdin).
    let archive = dir.path().join("docker-archive.tar");
    run(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:1", layout.display()),
            &format!("docker-archive:{}:hive-test/loaded:1", archive.display()),
        ],
    );
    let loaded = daemon.ok(&["image", "load", "-i", archive.to_str().unwrap()]);
    assert_eq!(loaded, "Loaded image: hive-test/loaded:1\n");
    let loaded_details = inspect(&daemon, "hive-test/loaded:1");
    assert_eq!(
        loaded_details["Id"], details["Id"],
        "the same configuration"
    );
    assert_eq!(loaded_details["Config"]["WorkingDir"], "/srv");

    let oci_dir = dir.path().join("oci-copy");
    run(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:1", layout.display()),
            &format!("oci:{}:hive-test/from-oci:1", oci_dir.display()),
        ],
    );
    let oci_tar = dir.path().join("oci.tar");
    run(
        "tar",
        &[
            "-C",
            oci_dir.to_str().unwrap(),
            "-cf",
            oci_tar.to_str().unwrap(),
            ".",
        ],
    );
    let out = daemon.hive_with_stdin(&["image", "load", "-i", "-"], Some(&oci_tar));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Loaded image: hive-test/from-oci:1\n"
    );

    // A corrupt blob and a layer escaping through `../` are refused, nothing left behind.
    let blobs_before = daemon.entries("blobs/sha256");
    let layers_before = daemon.entries("layers");
    let corrupt = corrupt_copy(dir.path(), &oci_dir);
    let refused = daemon.err(&["image", "load", "-i", corrupt.to_str().unwrap()]);
    assert!(refused.contains("corrupt"), "{refused}");
    let escaping = dir.path().join("escape.tar");
    std::fs::write(&escaping, escaping_layout()).unwrap();
    let refused = daemon.err(&["image", "load", "-i", escaping.to_str().unwrap()]);
    assert!(refused.contains("\"..\""), "{refused}");
    assert!(refused.contains("refused"), "{refused}");
    assert_eq!(daemon.entries("blobs/sha256"), blobs_before);
    assert_eq!(daemon.entries("layers"), layers_before);
    assert_eq!(daemon.entries("tmp"), Vec::<String>::new());
    assert!(!dir.path().join("data/images/escape").exists());
    let still = daemon.ok(&["image", "ls", "-q"]);
    assert!(
        still.contains(short),
        "the other images are still there: {still}"
    );

    // rm untags, then deletes; prune -a removes the rest and frees their blobs.
    let removed = daemon.ok(&["image", "rm", "hive-test/loaded:1"]);
    assert!(
        removed.contains("Untagged: hive-test/loaded:1"),
        "{removed}"
    );
    let missing = daemon.err(&["image", "inspect", "hive-test/loaded:1"]);
    assert!(
        missing.contains("No such image: hive-test/loaded:1"),
        "{missing}"
    );
    let pruned = daemon.ok(&["image", "prune", "-a", "-f"]);
    assert!(pruned.contains("Deleted Images:"), "{pruned}");
    assert!(pruned.contains("Total reclaimed space:"), "{pruned}");
    assert_eq!(daemon.ok(&["image", "ls", "-q"]), "");
    assert_eq!(daemon.entries("blobs/sha256"), Vec::<String>::new());
    assert_eq!(daemon.entries("layers"), Vec::<String>::new());
}

/// The OCI layout at `layout` with one byte of its largest blob changed, as a tar.
fn corrupt_copy(dir: &Path, layout: &Path) -> PathBuf {
    let copy = dir.join("corrupt-layout");
    run(
        "cp",
        &["-a", layout.to_str().unwrap(), copy.to_str().unwrap()],
    );
    let blobs = copy.join("blobs/sha256");
    let largest = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&largest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&largest, bytes).unwrap();
    let tar = dir.join("corrupt.tar");
    run(
        "tar",
        &[
            "-C",
            copy.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ],
    );
    tar
}

/// An OCI layout tar, digests all correct, whose one layer holds `../escape`.
fn escaping_layout() -> Vec<u8> {
    one_layer_layout(b"../escape", b"x", "hive-test/escape:1")
}

/// An OCI layout tar tagged `tag` of one layer holding the file `path` (written raw, so
/// `..` is possible) with `content`.
fn one_layer_layout(path: &[u8], content: &[u8], tag: &str) -> Vec<u8> {
    let mut layer = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..path.len()].copy_from_slice(path);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(content.len() as u64);
    header.set_cksum();
    layer.append(&header, content).unwrap();
    let layer = layer.into_inner().unwrap();
    let layer_digest = Digest::of(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest.to_string()]},
    }))
    .unwrap();
    let config_digest = Digest::of(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.to_string(), "size": layer.len()}],
    }))
    .unwrap();
    let manifest_digest = Digest::of(&manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest.to_string(),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    }))
    .unwrap();
    let mut out = tar::Builder::new(Vec::new());
    let mut add = |path: String, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_path(&path).unwrap();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        out.append(&header, bytes).unwrap();
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion": "1.0.0"}"#);
    add("index.json".into(), &index);
    for (digest, bytes) in [
        (&manifest_digest, &manifest),
        (&config_digest, &config),
        (&layer_digest, &layer),
    ] {
        add(format!("blobs/sha256/{}", digest.hex()), bytes);
    }
    out.into_inner().unwrap()
}

/// `GET path` on the daemon's Engine API socket, with an `X-Registry-Auth` header if given.
fn engine_get(socket: &Path, path: &str, auth: Option<&str>) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let auth = auth.map_or(String::new(), |a| format!("X-Registry-Auth: {a}\r\n"));
    let head = format!("GET {path} HTTP/1.1\r\nHost: docker\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// base64url, as the docker CLI encodes `X-Registry-Auth`.
fn base64_url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE.encode(text)
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// An image a task uses cannot be removed or pruned; released, it can (the executor marks
/// its tasks' images through this API).
#[test]
fn an_image_in_use_is_kept() {
    if !ready_or_skip("an_image_in_use_is_kept") {
        return;
    }
    let _group = support::file_group();
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("data"), RegistryOptions::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let archive = one_layer_layout(b"hello", b"hi", "hive-test/kept:1");
    let loaded = rt
        .block_on(store.load(std::io::Cursor::new(archive)))
        .unwrap();
    let manifest = loaded[0].record.manifest.clone();
    let reference = "hive-test/kept:1".parse().unwrap();
    let image = store.get(&reference).unwrap();
    assert_eq!(image.manifest_digest, manifest);
    assert_eq!(image.layers.len(), 1);
    assert!(image.layers[0].join("hello").is_file());
    store.mark_in_use(&manifest, "task-1");
    let err = rt.block_on(store.remove("hive-test/kept:1")).unwrap_err();
    assert!(matches!(err, ImageError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("task-1"), "{err}");
    let (pruned, _) = rt.block_on(store.prune(true)).unwrap();
    assert!(pruned.is_empty(), "{pruned:?}");
    store.release("task-1");
    let (pruned, freed) = rt.block_on(store.prune(true)).unwrap();
    assert!(!pruned.is_empty());
    assert!(freed > 0);
    assert!(matches!(
        store.get(&reference),
        Err(ImageError::NotFound { .. })
    ));
}
