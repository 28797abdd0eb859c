//! The node-to-node listener: TCP accepted here, TLS handshaken with the node's current
//! server configuration, and the peer's certificate chain handed to every request as
//! [`PeerInfo`] so handlers can authorize the caller (`pki::authorize`).
//!
//! The TLS configuration lives in a [`TlsSlot`] that the daemon fills when the node joins a
//! swarm and empties when it leaves: the port can stay bound for the daemon's whole life, and
//! a renewed certificate is swapped in without restarting the server. While the slot is empty,
//! connections are closed at once.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

/// A slow or silent client may hold a handshake this long, never the accept loop.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the gRPC server to pick them up.
const ACCEPT_BACKLOG: usize = 64;

/// The TLS server configuration the node currently serves with; `None` while the node is not
/// in a swarm (it has no certificate then).
#[derive(Debug, Default)]
pub struct TlsSlot(RwLock<Option<Arc<ServerConfig>>>);

impl TlsSlot {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn set(&self, config: Option<Arc<ServerConfig>>) {
        // A poisoned lock only means a panic elsewhere while swapping an Arc; the value is whole.
        let mut slot = self.0.write().unwrap_or_else(|e| e.into_inner());
        *slot = config;
    }

    pub fn get(&self) -> Option<Arc<ServerConfig>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Who is on the other end of a request, as the TLS handshake established it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote: SocketAddr,
    /// The client's certificate chain, leaf first; `None` for a joining node without one.
    pub certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl PeerInfo {
    /// The peer info tonic put into a request's extensions.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&PeerInfo> {
        request.extensions().get::<PeerInfo>()
    }

    pub fn certs(&self) -> Option<&[CertificateDer<'static>]> {
        self.certs.as_deref().map(Vec::as_slice)
    }
}

/// A handshaken connection with its peer info, as tonic's server consumes it.
#[derive(Debug)]
pub struct PeerStream {
    inner: TlsStream<TcpStream>,
    info: PeerInfo,
}

impl Connected for PeerStream {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts on `listener` until `shutdown` turns true, handshakes each connection on a task of
/// its own (bounded by [`HANDSHAKE_TIMEOUT`]) and yields the ones that completed.
pub fn tls_incoming(
    listener: TcpListener,
    slot: Arc<TlsSlot>,
    mut shutdown: watch::Receiver<bool>,
) -> ReceiverStream<Result<PeerStream, std::io::Error>> {
    let (sender, receiver) = mpsc::channel(ACCEPT_BACKLOG);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => return,
                () = sender.closed() => return,
            };
            let (tcp, remote) = match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%err, "accepting a node connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(config) = slot.get() else {
                tracing::debug!(%remote, "closing a node connection: this node is not in a swarm");
                continue;
            };
            let sender = sender.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let handshake = TlsAcceptor::from(config).accept(tcp);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(tls)) => {
                        let certs = tls.get_ref().1.peer_certificates().map(|chain| {
                            Arc::new(chain.iter().map(|c| c.clone().into_owned()).collect())
                        });
                        let info = PeerInfo { remote, certs };
                        let _ = sender.send(Ok(PeerStream { inner: tls, info })).await;
                    }
                    Ok(Err(err)) => tracing::debug!(%remote, %err, "TLS handshake refused"),
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}
