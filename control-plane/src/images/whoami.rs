//! `hive/whoami`: an HTTP server that answers every request with the task's
//! hostname and addresses, the peer address it saw, and the request line and
//! headers. Its `RemoteAddr` line is how a user checks that the mesh kept
//! the client's real IP.

use std::{convert::Infallible, fmt::Write as _, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

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

/// Serve until the process is stopped. HTTP/1.1 with keep-alive, so load
/// generators measure the mesh, not connection set-up, unless they ask.
pub async fn serve(listen: SocketAddr) -> Result<(), ImageError> {
    let identity = Arc::new(Identity::of_this_host()?);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ImageError::Bind {
            addr: listen,
            source,
        })?;
    // containous/whoami's first line; `hive service logs` shows it.
    println!("Starting up on port {}", listen.port());
    serve_on(listener, identity).await;
    Ok(())
}

/// Serve on an already bound listener (tests bind port 0).
pub async fn serve_on(listener: TcpListener, identity: Arc<Identity>) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // EMFILE and friends: keep serving the connections we have.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let identity = Arc::clone(&identity);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let body = render(&identity, remote, &request);
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "text/plain; charset=utf-8")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap_or_default(),
                    )
                }
            });
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%err, %remote, "connection ended with an error");
            }
        });
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

    #[test]
    fn identity_of_this_host_has_a_hostname_and_loopback() {
        let id = Identity::of_this_host().unwrap();
        assert!(!id.hostname.is_empty());
        assert!(id.addrs.iter().any(|a| a.is_loopback()), "{:?}", id.addrs);
    }
}
