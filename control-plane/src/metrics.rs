//! The Prometheus endpoint the daemon mounts on `--metrics-addr`:
//! `GET /metrics` renders a [`Registry`] (the data plane's counters, plus
//! whatever collectors the daemon registers: Raft, scheduler, tasks) in the
//! text exposition format 0.0.4. Everything else is 404.

use std::{convert::Infallible, future::Future, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

mod render;

pub use render::{
    Collector, DataplaneCollector, MetricType, MetricsWriter, Registry, render_stats,
};

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn respond(registry: Arc<Registry>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", CONTENT_TYPE)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if request.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "only /metrics is served here\n".into(),
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
    }
    // Collectors read BPF maps (syscalls): off the async threads.
    match tokio::task::spawn_blocking(move || registry.render()).await {
        Ok(text) => reply(StatusCode::OK, text),
        Err(err) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering the metrics failed: {err}\n"),
        ),
    }
}

/// Serve `registry` on `listener` until `shutdown` completes. Binding is
/// the caller's (tests bind port 0).
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(err) => {
                // EMFILE and friends: keep serving.
                tracing::warn!(%err, "metrics: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let registry = Arc::clone(&registry);
                async move { Ok::<_, Infallible>(respond(registry, request).await) }
            });
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%err, %remote, "metrics: connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    struct Gauge;
    impl Collector for Gauge {
        fn collect(&self, out: &mut MetricsWriter) {
            out.family(
                "hive_raft_is_leader",
                MetricType::Gauge,
                "1 on the Raft leader",
            );
            out.sample("hive_raft_is_leader", &[("node", "n1")], 1.0);
        }
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut response = String::new();
        client.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn a_real_get_on_loopback_returns_the_registry_as_prometheus_text() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut registry = Registry::new();
        registry.register(Arc::new(Gauge));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Arc::new(registry), async {
            let _ = stopped.await;
        }));

        let response = get(addr, "/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(
            response.contains("content-type: text/plain; version=0.0.4"),
            "{response}"
        );
        assert!(
            response
                .contains("# TYPE hive_raft_is_leader gauge\nhive_raft_is_leader{node=\"n1\"} 1\n"),
            "{response}"
        );
        let missing = get(addr, "/").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

        stop.send(()).unwrap();
        server.await.unwrap();
    }
}
