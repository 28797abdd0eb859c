//! `hive/whoami`: an HTTP server that answers every request with the task's
//! hostname and addresses, the peer address it saw, and the request line and
//! headers. Its `RemoteAddr` line is how a user checks that the mesh kept
//! the client's real IP.

use std::{
    convert::Infallible, fmt::Write as _, future::Future, net::SocketAddr, sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::ImageError;

/// What the task knows about itself, read once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub hostname: String,
    pub addrs: Vec<std::net::IpAddr>,
}

impl Identity {
    /// The hostname and every address of every interface of this network
    /// namespace.
    pub fn of_this_host() -> Result<Identity, ImageError> {
        let hostname = nix::unistd::gethostname()
            .map_err(|e| ImageError::Identity(e.into()))?
            .to_string_lossy()
            .into_owned();
        let addrs = nix::ifaddrs::getifaddrs()
            .map_err(|e| ImageError::Identity(e.into()))?
            .filter_map(|ifa| ifa.address)
            .filter_map(|a| {
                a.as_sockaddr_in()
                    .map(|v4| std::net::IpAddr::V4(v4.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())))
            })
            .collect();
        Ok(Identity { hostname, addrs })
    }
}

/// The response body for one request.
pub fn render<B>(identity: &Identity, remote: SocketAddr, request: &Request<B>) -> String {
    let mut body = String::with_capacity(256);
    // `write!` into a String cannot fail.
    let _ = writeln!(body, "Hostname: {}", identity.hostname);
    for addr in &identity.addrs {
        let _ = writeln!(body, "IP: {addr}");
    }
    let _ = writeln!(body, "RemoteAddr: {remote}");
    let _ = writeln!(
        body,
        "{} {} {:?}",
        request.method(),
        request.uri(),
        request.version()
    );
    for (name, value) in request.headers() {
        let _ = writeln!(
            body,
            "{}: {}",
            name,
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    body
}

/// Serve until SIGTERM (or SIGINT), then stop as a well-made server does (see
/// [`serve_until`]). HTTP/1.1 with keep-alive, so load generators measure the mesh, not
/// connection set-up, unless they ask.
pub async fn serve(listen: SocketAddr) -> Result<(), ImageError> {
    let identity = Arc::new(Identity::of_this_host()?);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ImageError::Bind {
            addr: listen,
            source,
        })?;
    let stop = super::stop_signal().map_err(ImageError::Signal)?;
    // containous/whoami's first line; `hive service logs` shows it.
    println!("Starting up on port {}", listen.port());
    super::serving();
    serve_until(listener, identity, stop).await;
    println!("Stopped serving on port {}", listen.port());
    Ok(())
}

/// Serve on an already bound listener (tests bind port 0), until the task is killed.
pub async fn serve_on(listener: TcpListener, identity: Arc<Identity>) {
    serve_until(listener, identity, std::future::pending()).await;
}

/// How long a connection may stay idle once the server stops before it is closed. A client
/// that sends a request meanwhile gets its answer with `Connection: close` (and reconnects,
/// to another task); closing at once could cross a request already on its way.
pub const IDLE_GRACE: Duration = Duration::from_millis(500);

/// Serve on `listener` until `stop`; then stop accepting, answer every request still coming
/// on an open connection with `Connection: close` (finishing those in flight), close each
/// connection idle for [`IDLE_GRACE`], and return once every connection has closed.
pub async fn serve_until(
    listener: TcpListener,
    identity: Arc<Identity>,
    stop: impl Future<Output = ()>,
) {
    let (stopping, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection(stream, remote, identity.clone(), stopped.clone()));
                }
                Err(err) => {
                    // EMFILE and friends: keep serving the connections we have.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    drop(listener);
    stopping.send_replace(true);
    while connections.join_next().await.is_some() {}
}

/// One connection, until the client closes it or the server stops.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    identity: Arc<Identity>,
    mut stopped: watch::Receiver<bool>,
) {
    let stopping = stopped.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        let body = render(&identity, remote, &request);
        let closing = *stopping.borrow();
        async move {
            let mut response =
                Response::builder().header("content-type", "text/plain; charset=utf-8");
            if closing {
                response = response.header("connection", "close");
            }
            Ok::<_, Infallible>(
                response
                    .body(Full::new(Bytes::from(body)))
                    .unwrap_or_default(),
            )
        }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => Some(ended),
        _ = stopped.wait_for(|s| *s) => None,
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            tokio::select! {
                ended = conn.as_mut() => ended,
                () = tokio::time::sleep(IDLE_GRACE) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }
    };
    if let Err(err) = ended {
        tracing::debug!(%err, %remote, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn answers_with_hostname_addresses_and_the_peer_it_saw() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let identity = Arc::new(Identity {
            hostname: "task-1".into(),
            addrs: vec!["10.0.0.5".parse().unwrap()],
        });
        let server = tokio::spawn(serve_on(listener, identity));

        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let local = client.local_addr().unwrap();
        client
            .write_all(b"GET /probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        client.read_to_string(&mut response).await.unwrap();
        server.abort();

        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains("Hostname: task-1\n"), "{response}");
        assert!(response.contains("IP: 10.0.0.5\n"), "{response}");
        assert!(
            response.contains(&format!("RemoteAddr: {local}\n")),
            "{response}"
        );
        assert!(response.contains("GET /probe HTTP/1.1\n"), "{response}");
    }

    #[tokio::test]
    async fn stopping_finishes_requests_and_closes_keep_alive_connections_cleanly() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let identity = Arc::new(Identity {
            hostname: "task-1".into(),
            addrs: vec![],
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_until(listener, identity, async {
            let _ = stopped.await;
        }));
        let mut busy = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        let ask = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut buf = vec![0u8; 4096];
        for stream in [&mut busy, &mut idle] {
            stream.write_all(ask).await.unwrap();
            let n = stream.read(&mut buf).await.unwrap();
            let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(!answer.contains("connection: close"), "{answer}");
        }
        stop.send(()).unwrap();
        // New connections are refused; a request on a kept-alive one is answered, with
        // `Connection: close`, and the connection ends cleanly (EOF, no reset).
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
        busy.write_all(ask).await.unwrap();
        let mut answer = Vec::new();
        busy.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        // The idle one is closed after the grace, with a FIN.
        assert_eq!(idle.read(&mut buf).await.unwrap(), 0);
        server.await.unwrap();
    }

    #[test]
    fn identity_of_this_host_has_a_hostname_and_loopback() {
        let id = Identity::of_this_host().unwrap();
        assert!(!id.hostname.is_empty());
        assert!(id.addrs.iter().any(|a| a.is_loopback()), "{:?}", id.addrs);
    }
}
