//! The HTTP server: one hyper HTTP/1 connection per accepted client of the socket (the same
//! peer checks as hive's own socket), the version prefix stripped before routing, dockerd's
//! headers on every answer, and time bounds so a slow client cannot hold the daemon.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, Uri};
use axum::response::IntoResponse as _;
use futures::StreamExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use tower::ServiceExt as _;

use super::error::EngineError;
use super::version::{MAX_VERSION, strip_prefix};
use crate::transport::{LocalSocket, unix_incoming};

/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request may take until its answer starts (its body included); streamed answers
/// (logs) then run as long as the client reads.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Serves `router` on `socket` until `stopping` turns true.
pub async fn serve(socket: LocalSocket, router: Router, stopping: watch::Receiver<bool>) {
    let path = socket.path().to_owned();
    let mut incoming = unix_incoming(socket, stopping.clone());
    while let Some(accepted) = incoming.next().await {
        let Ok(stream) = accepted else { continue };
        let router = router.clone();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            };
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let router = router.clone();
                async move { Ok::<_, Infallible>(handle(router, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%e, "an Engine API connection ended with an error");
                    }
                }
                () = stop => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    tracing::debug!(socket = %path.display(), "Engine API stopped");
}

async fn handle(router: Router, request: Request<Incoming>) -> Response<Body> {
    let mut response = match route(router, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    let headers = response.headers_mut();
    headers.insert("Api-Version", HeaderValue::from_static(MAX_VERSION_TEXT));
    headers.insert("Ostype", HeaderValue::from_static("linux"));
    headers.insert("Docker-Experimental", HeaderValue::from_static("false"));
    headers.insert(
        "Server",
        HeaderValue::from_static(concat!("hive/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    response
}

const MAX_VERSION_TEXT: &str = "1.50";
const _: () = assert!(MAX_VERSION.major == 1 && MAX_VERSION.minor == 50);

async fn route(router: Router, request: Request<Incoming>) -> Result<Response<Body>, EngineError> {
    let (mut parts, body) = request.into_parts();
    let (version, path) = strip_prefix(parts.uri.path())?;
    if version.is_some() {
        let rewritten = match parts.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path.to_owned(),
        };
        parts.uri = rewritten
            .parse::<Uri>()
            .map_err(|e| EngineError::bad_request(format!("invalid request path: {e}")))?;
    }
    let request = Request::from_parts(parts, Body::new(body));
    match tokio::time::timeout(REQUEST_TIMEOUT, router.oneshot(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(never)) => match never {},
        Err(_) => Err(EngineError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            format!("the request took longer than {REQUEST_TIMEOUT:?}"),
        )),
    }
}
