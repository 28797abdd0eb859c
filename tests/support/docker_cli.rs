//! The stock docker CLI (and docker-py) driven against a lab node's Engine API: what the
//! Engine API tests share. `hive lab exec`'s environment points `DOCKER_HOST` at the node's
//! own socket, so `docker` inside node `nX` talks to that node's daemon.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hive_lab::Lab;

use super::{PATIENCE, Swarm, text, wait_output};

pub const DOCKER: &str = "/usr/local/bin/docker";
/// The virtualenv `cargo xtask setup` installs docker-py into.
pub const DOCKER_PY: &str = "/opt/hive-docker-py/bin/python";

/// `docker ARGS` inside `node` of `lab`, in `dir` when given, not yet started.
pub fn docker_command(lab: &Lab, node: &str, dir: Option<&Path>, args: &[&str]) -> Command {
    let mut command = lab.command(node, DOCKER).expect("lab command");
    command
        .args(args)
        .env("DOCKER_CLI_HINTS", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    command
}

/// `docker ARGS` inside `node` of `lab` (in `dir` when given), bounded like every lab command.
pub fn lab_docker(lab: &Lab, node: &str, dir: Option<&Path>, args: &[&str]) -> Output {
    let child = docker_command(lab, node, dir, args)
        .spawn()
        .expect("spawn docker");
    wait_output(child, &format!("docker {}", args.join(" ")))
}

/// `docker ARGS` inside the swarm's `node` (in `dir` when given).
pub fn docker_in(swarm: &Swarm, node: &str, dir: Option<&Path>, args: &[&str]) -> Output {
    lab_docker(swarm.lab(), node, dir, args)
}

/// `docker ARGS` on n1.
pub fn docker(swarm: &Swarm, args: &[&str]) -> Output {
    docker_in(swarm, "n1", None, args)
}

/// What a command printed, stdout then stderr.
pub fn all(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// `docker ARGS` inside `node`, which must succeed; its stdout.
pub fn docker_ok_on(swarm: &Swarm, node: &str, args: &[&str]) -> String {
    let out = docker_in(swarm, node, None, args);
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        all(&out)
    );
    text(&out.stdout)
}

/// `docker ARGS` on n1, which must succeed; its stdout.
pub fn docker_ok(swarm: &Swarm, args: &[&str]) -> String {
    docker_ok_on(swarm, "n1", args)
}

/// Polls `check` on `docker ARGS`'s output (on n1) until it holds.
pub fn wait_docker(swarm: &Swarm, args: &[&str], check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let out = docker(swarm, args);
        let shown = all(&out);
        if out.status.success() && check(&shown) {
            return shown;
        }
        assert!(
            Instant::now() < deadline,
            "docker {}: {shown}",
            args.join(" ")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The CLI's last progress line: `verify: Service ID converged`.
pub fn converged(shown: &str) -> bool {
    shown
        .lines()
        .any(|l| l.starts_with("verify: Service ") && l.ends_with(" converged"))
}

/// `docker service inspect NAME` on n1, its one object.
pub fn service_json(swarm: &Swarm, name: &str) -> serde_json::Value {
    let out = docker_ok(swarm, &["service", "inspect", name]);
    let parsed: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    parsed[0].clone()
}

/// One raw HTTP/1.1 request on an Engine API socket; the status code and the body.
pub fn http(socket: &Path, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = UnixStream::connect(socket).expect("connect to the Engine API");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("send head");
    // A body the server refuses early may close the connection before all of it is sent.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = text(&answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}
