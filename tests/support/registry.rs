//! A real registry for the lab tests: Debian's `docker-registry` serving plain HTTP in a lab
//! node's namespace, and a gate in front of it that can hold the registry's blob downloads,
//! so that a test sees a node pulling (its task `Preparing`) for as long as it wants, without
//! any timing guess.
//!
//! Both stop on drop (the registry is killed and reaped; the gate closes every connection and
//! joins its threads), also when the test fails.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hive_lab::Lab;

use super::PATIENCE;
use super::busybox;

/// The tools a registry test needs besides [`busybox::tools_or_skip`]'s.
pub fn tools_or_skip(test: &str) -> bool {
    busybox::tools_or_skip_with(test, &["docker-registry"])
}

/// A child process killed and reaped on drop.
#[derive(Debug)]
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `docker-registry serve` in `node`'s namespace on `addr`, its storage and log in `dir`.
#[derive(Debug)]
pub struct Registry {
    _process: Killed,
    pub addr: SocketAddr,
}

impl Registry {
    pub fn start(lab: &Lab, node: &str, dir: &Path, addr: SocketAddr) -> Self {
        let storage = dir.join("registry-data");
        std::fs::create_dir_all(&storage).expect("registry storage");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            storage.display()
        );
        let config_path = dir.join("registry.yml");
        std::fs::write(&config_path, config).expect("registry.yml");
        let log = std::fs::File::create(dir.join("registry.log")).expect("registry.log");
        let child = lab
            .command(node, "docker-registry")
            .expect("lab command")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry");
        let registry = Self {
            _process: Killed(child),
            addr,
        };
        let netns = lab.netns_path(node).expect("node namespace").to_path_buf();
        let deadline = Instant::now() + PATIENCE;
        while connect_in(&netns, addr).is_err() {
            assert!(Instant::now() < deadline, "the registry never listened");
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }

    /// Pushes skopeo's `source` (e.g. `oci:<layout>:1`) as `name` (`hive-test/app:1`),
    /// running skopeo in `node`'s namespace.
    pub fn push(&self, lab: &Lab, node: &str, source: &str, name: &str) {
        let dest = format!("docker://{}/{name}", self.addr);
        let out = lab
            .command(node, "skopeo")
            .expect("lab command")
            .args(["copy", "--dest-tls-verify=false", source, &dest])
            .stdin(Stdio::null())
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo copy {source} {dest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn connect_in(netns: &Path, addr: SocketAddr) -> std::io::Result<TcpStream> {
    hive_dataplane::netns::run_in(netns, || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(2))
    })
    .map_err(std::io::Error::other)?
}

/// A TCP proxy in a node's namespace in front of a registry that, while closed, holds every
/// blob request (`GET|HEAD /v2/<name>/blobs/<digest>`) before it reaches the registry;
/// manifests go through, so a manager can still resolve (pin) a tag. Pulls send requests
/// without bodies; a `Content-Length` body is passed on as it is.
#[derive(Debug)]
pub struct BlobGate {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Whether blob requests are held, and how many are held now.
    gate: Mutex<Gate>,
    changed: Condvar,
    stop: AtomicBool,
    /// Every socket of every connection, shut down on drop.
    sockets: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct Gate {
    closed: bool,
    held: usize,
}

impl BlobGate {
    /// Listens on `listen` in `node`'s namespace, forwarding to `backend` (reached from there).
    pub fn start(lab: &Lab, node: &str, listen: SocketAddr, backend: SocketAddr) -> Self {
        let netns: PathBuf = lab.netns_path(node).expect("node namespace").to_path_buf();
        let listener = hive_dataplane::netns::run_in(&netns, || TcpListener::bind(listen))
            .expect("entering the node's namespace")
            .unwrap_or_else(|e| panic!("the gate cannot listen on {listen}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let shared = Arc::new(Shared::default());
        let accepting = Arc::clone(&shared);
        let accept =
            std::thread::spawn(move || accept_loop(&listener, &netns, backend, &accepting));
        Self {
            shared,
            accept: Some(accept),
        }
    }

    /// Holds blob requests from now on.
    pub fn close(&self) {
        self.shared
            .gate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
    }

    /// Lets every held and later blob request through.
    pub fn open(&self) {
        self.shared
            .gate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = false;
        self.shared.changed.notify_all();
    }

    /// How many blob requests are held now.
    pub fn held(&self) -> usize {
        self.shared
            .gate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .held
    }
}

impl Drop for BlobGate {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.open();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for socket in self
            .shared
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = socket.shutdown(Shutdown::Both);
        }
        let threads: Vec<_> = self
            .shared
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, netns: &Path, backend: SocketAddr, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let Ok(server) = connect_in(netns, backend) else {
            continue;
        };
        let (Ok(()), Ok(client_out), Ok(server_in)) = (
            client.set_nonblocking(false),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        {
            let mut sockets = shared.sockets.lock().unwrap_or_else(|e| e.into_inner());
            for socket in [&client, &server] {
                if let Ok(copy) = socket.try_clone() {
                    sockets.push(copy);
                }
            }
        }
        let requests = Arc::clone(shared);
        let mut threads = shared.threads.lock().unwrap_or_else(|e| e.into_inner());
        threads.push(std::thread::spawn(move || {
            forward_requests(client, server, &requests);
        }));
        threads.push(std::thread::spawn(move || {
            let (mut from, mut to) = (server_in, client_out);
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        }));
    }
}

/// Copies requests from the client to the registry, one head at a time, holding each blob
/// request while the gate is closed.
fn forward_requests(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut pending: Vec<u8> = Vec::new();
    let mut body_left = 0usize;
    let mut buf = [0u8; 16 * 1024];
    'read: loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        loop {
            if body_left > 0 {
                let k = body_left.min(pending.len());
                if to.write_all(&pending[..k]).is_err() {
                    break 'read;
                }
                pending.drain(..k);
                body_left -= k;
                if body_left > 0 {
                    continue 'read;
                }
            }
            let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue 'read;
            };
            let head: Vec<u8> = pending.drain(..end + 4).collect();
            let text = String::from_utf8_lossy(&head);
            if text.lines().next().is_some_and(|l| l.contains("/blobs/")) {
                shared.wait_open();
            }
            if shared.stop.load(Ordering::SeqCst) || to.write_all(&head).is_err() {
                break 'read;
            }
            body_left = text
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse().ok())
                .unwrap_or(0);
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Shared {
    fn wait_open(&self) {
        let mut gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        if !gate.closed {
            return;
        }
        gate.held += 1;
        while gate.closed && !self.stop.load(Ordering::SeqCst) {
            gate = self.changed.wait(gate).unwrap_or_else(|e| e.into_inner());
        }
        gate.held -= 1;
    }
}
