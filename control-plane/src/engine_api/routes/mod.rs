//! The Engine API's routes, one module per kind of object, and the extractors they share:
//! [`Json`] (a bounded body parsed once, 400/413 as dockerd) and [`Params`] (the query).

mod events;
mod networks;
mod nodes;
pub(crate) mod secrets;
mod services;
mod swarm;
mod system;
mod tasks;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::routing::{get, post};
use bytes::Bytes;

use super::backend::Backend;
use super::error::EngineError;

/// Largest request body: far above any spec, far below what could hurt the daemon.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

pub type State = Arc<Backend>;
pub type Reply<T> = Result<T, EngineError>;

/// Every route, on paths without the `/vX.Y` prefix (the server strips it).
pub fn router(backend: State) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(events::events))
        .route("/distribution/{*reference}", get(system::distribution))
        .route("/swarm", get(swarm::inspect))
        .route("/swarm/init", post(swarm::init))
        .route("/swarm/join", post(swarm::join))
        .route("/swarm/leave", post(swarm::leave))
        .route("/swarm/update", post(swarm::update))
        .route("/swarm/unlock", post(swarm::unlock))
        .route("/swarm/unlockkey", get(swarm::unlock_key))
        .route("/nodes", get(nodes::list))
        .route("/nodes/{id}", get(nodes::inspect).delete(nodes::remove))
        .route("/nodes/{id}/update", post(nodes::update))
        .route("/services", get(services::list))
        .route("/services/create", post(services::create))
        .route(
            "/services/{id}",
            get(services::inspect).delete(services::remove),
        )
        .route("/services/{id}/update", post(services::update))
        .route("/services/{id}/logs", get(services::logs))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::inspect))
        .route("/secrets", get(secrets::list_secrets))
        .route("/secrets/create", post(secrets::create_secret))
        .route(
            "/secrets/{id}",
            get(secrets::inspect_secret).delete(secrets::remove_secret),
        )
        .route("/secrets/{id}/update", post(secrets::update_secret))
        .route("/configs", get(secrets::list_configs))
        .route("/configs/create", post(secrets::create_config))
        .route(
            "/configs/{id}",
            get(secrets::inspect_config).delete(secrets::remove_config),
        )
        .route("/configs/{id}/update", post(secrets::update_config))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(backend)
}

/// dockerd's answer to a path it has no route for.
async fn not_found() -> EngineError {
    EngineError::not_found("page not found")
}

/// A JSON body: at most [`BODY_LIMIT`] bytes (413 beyond), parsed into `T` (400 if it is not
/// JSON or not of `T`'s shape, with serde's reason).
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = EngineError;

    async fn from_request(request: Request, state: &S) -> Result<Self, EngineError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|r| EngineError::new(r.status(), r.body_text()))?;
        if bytes.is_empty() {
            return Err(EngineError::bad_request(
                "request body is empty: a JSON object is expected",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| EngineError::bad_request(format!("invalid JSON: {e}")))
    }
}

/// The query parameters.
#[derive(Debug)]
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = EngineError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, EngineError> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Params(q))
            .map_err(|r| EngineError::bad_request(r.body_text()))
    }
}

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// dockerd's `BoolValue`: absent, empty, `0`, `no`, `false` and `none` are false.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| {
            !matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "" | "0" | "no" | "false" | "none"
            )
        })
    }

    /// `?version=N` of an update: required, as dockerd.
    pub fn version(&self) -> Reply<u64> {
        let raw = self.get("version").unwrap_or("");
        raw.parse().map_err(|_| {
            EngineError::bad_request(format!(
                "invalid version \"{raw}\": updates need ?version= with the object's Version.Index"
            ))
        })
    }
}
