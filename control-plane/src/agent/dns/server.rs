//! [`NodeDns`]: the node's embedded resolver. One UDP socket and one TCP listener per task, on
//! 127.0.0.11 inside the task's own network namespace, all served by the agent's runtime from
//! the same [`Names`].
//!
//! The names are cut from the mesh view when a query first needs them after a change, not
//! at the change: a view comes with every assignment, and cutting one of 10,000 services
//! takes about 10 ms (`cargo bench --bench dns`), which the agent's assignment path should
//! not pay for queries that may never come.
//!
//! The port: with the data plane's redirect attached to the tasks' cgroup
//! ([`NodeDns::redirect`]), a free port the kernel picks, which the redirect maps 53 to for
//! that namespace only, so port 53 stays free for the task's own programs (as in Docker).
//! Without it, port 53 itself.
//!
//! A socket keeps the namespace it was made in, so the agent makes each one in the task's
//! namespace (`netns::run_in`) and serves it from its own. Forwarded queries leave from the
//! agent's namespace, where the node's resolvers are reachable.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hive_dataplane::netns;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::answer::{self, Reply, Transport};
use super::names::Names;
use crate::agent::assignment::SharedView;
use crate::executor::resolv_conf::EMBEDDED_RESOLVER;

/// Docker's: each external server gets 4 s.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(4);

/// Docker's: at most 1,024 forwarded queries in flight per node; past that a query gets
/// SERVFAIL at once rather than a queue.
const MAX_FORWARDS: usize = 1024;

/// A TCP client gets this long for each query before the connection is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The largest DNS message (UDP datagram or TCP frame).
const MAX_MESSAGE: usize = 65_535;

/// Tries at a free port that is free for TCP as well as UDP.
const BIND_TRIES: usize = 8;

/// `SO_NETNS_COOKIE` (Linux 5.14+; asm-generic value, x86 and arm alike).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// Why a task's resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("task {task}: entering its network namespace for the resolver: {source}")]
    Netns {
        task: String,
        #[source]
        source: netns::NetnsError,
    },
    #[error("task {task}: binding the resolver on {EMBEDDED_RESOLVER} in its namespace: {source}")]
    Bind {
        task: String,
        #[source]
        source: std::io::Error,
    },
}

/// What one task's resolver needs: the names, the task's networks, the node's resolvers.
#[derive(Debug)]
struct Scope {
    dns: Arc<Shared>,
    networks: Vec<String>,
}

#[derive(Debug)]
struct Shared {
    names: Mutex<NameSource>,
    upstreams: Vec<SocketAddr>,
    forwards: Semaphore,
}

/// What the names are cut from, and the names once cut.
#[derive(Debug, Default)]
struct NameSource {
    view: Option<SharedView>,
    dead: BTreeSet<String>,
    cut: Option<Arc<Names>>,
}

impl NameSource {
    fn names(&mut self) -> Arc<Names> {
        if let Some(names) = &self.cut {
            return names.clone();
        }
        let names = Arc::new(match &self.view {
            Some(view) => Names::from_view(&view.read(), &self.dead),
            None => Names::default(),
        });
        self.cut = Some(names.clone());
        names
    }
}

/// The serving tasks of one task's resolver; dropping it stops them.
#[derive(Debug)]
struct Served {
    handles: Vec<JoinHandle<()>>,
    redirected: Option<Redirected>,
}

impl Drop for Served {
    fn drop(&mut self) {
        for handle in &self.handles {
            handle.abort();
        }
    }
}

/// Where 127.0.0.11:53 must lead in one task namespace: the namespace's cookie and the port
/// its resolver listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirected {
    pub netns_cookie: u64,
    pub port: u16,
}

/// The node's embedded resolver (see the module docs).
#[derive(Debug)]
pub struct NodeDns {
    shared: Arc<Shared>,
    tasks: Mutex<HashMap<String, Served>>,
    redirect: AtomicBool,
}

impl NodeDns {
    /// A resolver forwarding other names to `upstreams`, in order.
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        Self {
            shared: Arc::new(Shared {
                names: Mutex::new(NameSource::default()),
                upstreams,
                forwards: Semaphore::new(MAX_FORWARDS),
            }),
            tasks: Mutex::new(HashMap::new()),
            redirect: AtomicBool::new(false),
        }
    }

    /// From now on, listen on a free port of 127.0.0.11: the data plane redirects the
    /// tasks' 127.0.0.11:53 there.
    pub fn redirect(&self) {
        self.redirect.store(true, Ordering::Release);
    }

    /// From now on, answer from `view`, leaving out tasks on the nodes in `dead`.
    pub fn set_view(&self, view: SharedView, dead: BTreeSet<String>) {
        *self.shared.source() = NameSource {
            view: Some(view),
            dead,
            cut: None,
        };
    }

    /// Serves `task`'s resolver in the namespace at `netns`, for its `networks` (IDs); under
    /// the redirect, says where 53 must lead. Replaces an earlier one of the same task (an
    /// adopted task's).
    pub fn serve(
        &self,
        task: &str,
        netns: &Path,
        networks: Vec<String>,
    ) -> Result<Option<Redirected>, DnsError> {
        let any_port = self.redirect.load(Ordering::Acquire);
        let (udp, tcp, redirected) = netns::run_in(netns, || bind(any_port))
            .map_err(|source| DnsError::Netns {
                task: task.to_owned(),
                source,
            })?
            .and_then(|(udp, tcp, redirected)| {
                Ok((
                    UdpSocket::from_std(udp)?,
                    TcpListener::from_std(tcp)?,
                    redirected,
                ))
            })
            .map_err(|source| DnsError::Bind {
                task: task.to_owned(),
                source,
            })?;
        let scope = Arc::new(Scope {
            dns: self.shared.clone(),
            networks,
        });
        let served = Served {
            handles: vec![
                tokio::spawn(serve_udp(Arc::new(udp), scope.clone())),
                tokio::spawn(serve_tcp(tcp, scope)),
            ],
            redirected,
        };
        self.tasks().insert(task.to_owned(), served);
        Ok(redirected)
    }

    /// Stops `task`'s resolver (its sockets close with the namespace or here); the redirect
    /// it had, if any.
    pub fn forget(&self, task: &str) -> Option<Redirected> {
        self.tasks().remove(task)?.redirected
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Served>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Binds the resolver's UDP socket and TCP listener on one port of 127.0.0.11, in the calling
/// thread's namespace: 53, or with `any_port` one the kernel picks (free for both protocols).
fn bind(
    any_port: bool,
) -> std::io::Result<(
    std::net::UdpSocket,
    std::net::TcpListener,
    Option<Redirected>,
)> {
    let mut tries = 0;
    let (udp, tcp) = loop {
        let port = if any_port { 0 } else { 53 };
        let udp = std::net::UdpSocket::bind((EMBEDDED_RESOLVER, port))?;
        let port = udp.local_addr()?.port();
        match std::net::TcpListener::bind((EMBEDDED_RESOLVER, port)) {
            Ok(tcp) => break (udp, tcp),
            Err(err) if any_port && err.kind() == std::io::ErrorKind::AddrInUse => {
                tries += 1;
                if tries == BIND_TRIES {
                    return Err(err);
                }
            }
            Err(err) => return Err(err),
        }
    };
    udp.set_nonblocking(true)?;
    tcp.set_nonblocking(true)?;
    let redirected = if any_port {
        Some(Redirected {
            netns_cookie: netns_cookie(&udp)?,
            port: udp.local_addr()?.port(),
        })
    } else {
        None
    };
    Ok((udp, tcp, redirected))
}

/// The cookie of the network namespace a socket belongs to.
fn netns_cookie(socket: &std::net::UdpSocket) -> std::io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`, which is that large, and
    // the descriptor is a live socket we own.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cookie)
}

impl Shared {
    fn source(&self) -> MutexGuard<'_, NameSource> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Scope {
    fn answer(&self, request: &[u8], transport: Transport) -> Reply {
        let names = self.dns.source().names();
        answer::answer(
            request,
            &names,
            self.networks.iter().map(String::as_str),
            transport,
        )
    }

    /// Asks the node's resolvers, in order, each for up to [`FORWARD_TIMEOUT`]; SERVFAIL if
    /// none answers or too many queries are already out.
    async fn forward(&self, request: &[u8]) -> Option<Vec<u8>> {
        let failed = || match answer::server_failure(request) {
            Reply::Answer(bytes) => Some(bytes),
            Reply::Forward | Reply::Ignore => None,
        };
        let Ok(_permit) = self.dns.forwards.try_acquire() else {
            return failed();
        };
        for upstream in &self.dns.upstreams {
            match tokio::time::timeout(FORWARD_TIMEOUT, ask(*upstream, request)).await {
                Ok(Ok(reply)) => return Some(reply),
                Ok(Err(err)) => tracing::debug!(%upstream, %err, "dns: forwarding failed"),
                Err(_) => tracing::debug!(%upstream, "dns: no answer in time"),
            }
        }
        failed()
    }
}

/// One query to one upstream over UDP, from a socket of its own (so replies never mix).
async fn ask(upstream: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(request).await?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let len = socket.recv(&mut buf).await?;
        // Only the reply to this query (same ID) ends the wait.
        if len >= 2 && request.len() >= 2 && buf[..2] == request[..2] {
            buf.truncate(len);
            return Ok(buf);
        }
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, scope: Arc<Scope>) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(err) => {
                tracing::debug!(%err, "dns: receiving a query");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let request = &buf[..len];
        match scope.answer(request, Transport::Udp) {
            Reply::Answer(bytes) => send_udp(&socket, &bytes, from).await,
            Reply::Ignore => {}
            Reply::Forward => {
                let (socket, scope, request) = (socket.clone(), scope.clone(), request.to_vec());
                tokio::spawn(async move {
                    if let Some(bytes) = scope.forward(&request).await {
                        send_udp(&socket, &bytes, from).await;
                    }
                });
            }
        }
    }
}

async fn send_udp(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(err) = socket.send_to(bytes, to).await {
        tracing::debug!(%to, %err, "dns: sending an answer");
    }
}

async fn serve_tcp(listener: TcpListener, scope: Arc<Scope>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_tcp_client(stream, scope.clone()));
            }
            Err(err) => {
                tracing::debug!(%err, "dns: accepting a TCP client");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Length-prefixed queries (RFC 1035 §4.2.2) until the client closes or idles.
async fn serve_tcp_client(mut stream: TcpStream, scope: Arc<Scope>) {
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(TCP_IDLE, stream.read_u16()).await else {
            return;
        };
        let mut request = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut request).await.is_err() {
            return;
        }
        let reply = match scope.answer(&request, Transport::Tcp) {
            Reply::Answer(bytes) => Some(bytes),
            Reply::Forward => scope.forward(&request).await,
            Reply::Ignore => None,
        };
        let Some(bytes) = reply else { continue };
        let Ok(len) = u16::try_from(bytes.len()) else {
            return;
        };
        if stream.write_u16(len).await.is_err() || stream.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};

    use super::*;

    fn scope(upstreams: Vec<SocketAddr>) -> Scope {
        Scope {
            dns: Arc::new(Shared {
                names: Mutex::new(NameSource::default()),
                upstreams,
                forwards: Semaphore::new(MAX_FORWARDS),
            }),
            networks: vec!["back".to_owned()],
        }
    }

    fn query(id: u16) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = id;
        message.add_query(Query::query(
            Name::from_ascii("example.com.").expect("name"),
            RecordType::A,
        ));
        message.to_vec().expect("encodes")
    }

    /// A port on loopback where nothing listens: a query there is refused at once.
    async fn closed_port() -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        socket.local_addr().expect("address")
    }

    /// A name server on loopback that answers one query with `answer` (a stray reply with
    /// another ID first, which must be skipped).
    async fn upstream(answer: Vec<u8>) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("address");
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (_, from) = socket.recv_from(&mut buf).await.expect("a query");
            let stray = {
                let mut stray = answer.clone();
                stray[0] ^= 0xff;
                stray
            };
            socket.send_to(&stray, from).await.expect("send");
            socket.send_to(&answer, from).await.expect("send");
        });
        addr
    }

    #[tokio::test]
    async fn other_names_are_relayed_from_the_first_name_server_that_answers() {
        let request = query(0x4242);
        let mut reply = Message::from_vec(&request).expect("parses");
        reply.metadata.message_type = hickory_proto::op::MessageType::Response;
        reply.metadata.response_code = ResponseCode::NXDomain;
        let reply = reply.to_vec().expect("encodes");
        let scope = scope(vec![closed_port().await, upstream(reply.clone()).await]);
        assert_eq!(scope.answer(&request, Transport::Udp), Reply::Forward);
        assert_eq!(
            scope.forward(&request).await,
            Some(reply),
            "relayed as it came"
        );
    }

    #[tokio::test]
    async fn with_no_name_server_answering_the_task_gets_servfail() {
        for upstreams in [Vec::new(), vec![closed_port().await]] {
            let bytes = scope(upstreams)
                .forward(&query(7))
                .await
                .expect("an answer");
            let message = Message::from_vec(&bytes).expect("parses");
            assert_eq!(message.metadata.id, 7);
            assert_eq!(message.metadata.response_code, ResponseCode::ServFail);
        }
    }
}
