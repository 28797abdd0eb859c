//! `hive/echo`: echoes every TCP stream and every UDP datagram back to its
//! sender, on the same port number.

use std::net::SocketAddr;

use tokio::net::{TcpListener, UdpSocket};

use super::ImageError;

/// Largest UDP datagram echoed; larger ones are truncated by the kernel.
const MAX_DATAGRAM: usize = 65_535;

/// Serve TCP and UDP on `listen` until the process is stopped.
pub async fn serve(listen: SocketAddr) -> Result<(), ImageError> {
    let tcp = TcpListener::bind(listen)
        .await
        .map_err(|source| ImageError::Bind {
            addr: listen,
            source,
        })?;
    let udp = UdpSocket::bind(listen)
        .await
        .map_err(|source| ImageError::Bind {
            addr: listen,
            source,
        })?;
    let stop = super::stop_signal().map_err(ImageError::Signal)?;
    println!("Echoing TCP and UDP on port {}", listen.port());
    super::serving();
    // On SIGTERM the echo ends: it has no request to finish, and its open streams are
    // closed with a FIN as the process exits.
    tokio::select! {
        () = stop => {}
        _ = serve_udp(udp) => {}
        () = serve_tcp(tcp) => {}
    }
    Ok(())
}

pub async fn serve_tcp(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(async move {
            let (mut rx, mut tx) = stream.split();
            let _ = tokio::io::copy(&mut rx, &mut tx).await;
        });
    }
}

pub async fn serve_udp(socket: UdpSocket) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((len, peer)) => {
                if let Err(err) = socket.send_to(&buf[..len], peer).await {
                    tracing::debug!(%err, %peer, "udp echo send failed");
                }
            }
            Err(err) => tracing::debug!(%err, "udp echo receive failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn echoes_tcp_and_udp() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let udp = UdpSocket::bind(addr).await.unwrap();
        let server = tokio::spawn(async move { tokio::join!(serve_tcp(tcp), serve_udp(udp)) });

        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"hello tcp").await.unwrap();
        let mut buf = [0u8; 9];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello tcp");

        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(b"hello udp", addr).await.unwrap();
        let mut buf = [0u8; 64];
        let (len, from) = client.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"hello udp");
        assert_eq!(from, addr);
        server.abort();
    }
}
