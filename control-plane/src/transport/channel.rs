//! Client channels: to another node over mTLS (or, for a joining node, TLS pinned by the join
//! token), and to the local daemon over its unix socket. Node channels are lazy: they connect
//! on first use and reconnect after failures, so a cached channel survives a peer's restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use super::TransportError;
use crate::pki::{self, JoinToken};

/// How long connecting (TCP + TLS) to another node may take. Nodes are on one network; a
/// peer that does not answer within this is treated as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);

/// A lazy channel to the node at `addr` (`host:port`), authenticating it as `server_name` and
/// presenting the certificate in `config`.
pub fn mtls_channel(
    addr: &str,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
) -> Result<Channel, TransportError> {
    let endpoint = endpoint(addr)?;
    let target = addr.to_owned();
    let connector = tower::service_fn(move |_: Uri| {
        let (target, config, server_name) = (target.clone(), config.clone(), server_name.clone());
        async move {
            let connect = async {
                let tcp = TcpStream::connect(&target).await?;
                tcp.set_nodelay(true)?;
                TlsConnector::from(config).connect(server_name, tcp).await
            };
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// A channel for `swarm join`: no client certificate, and the manager must present the root CA
/// the token names (`pki::join_client_config`).
pub fn join_channel(addr: &str, token: &JoinToken) -> Result<Channel, TransportError> {
    let config = Arc::new(pki::join_client_config(token)?);
    mtls_channel(addr, config, pki::manager_server_name())
}

/// A channel to the local daemon's socket; connects at once so the caller learns early that
/// no daemon is listening.
pub async fn unix_channel(path: &Path) -> Result<Channel, TransportError> {
    let path = path.to_owned();
    // The URI is required by tonic but unused: the connector ignores it.
    let endpoint = Endpoint::from_static("http://hive.sock").connect_timeout(CONNECT_TIMEOUT);
    let target = path.display().to_string();
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|source| TransportError::Connect { target, source })
}

fn endpoint(addr: &str) -> Result<Endpoint, TransportError> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map(|e| {
            e.connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5))
        })
        .map_err(|e| TransportError::BadAddress {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })
}
