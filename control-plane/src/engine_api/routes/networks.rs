//! `/networks`: list with filters, inspect, create (overlay), delete.

use std::time::Duration;

use tokio::time::Instant;

use axum::extract::{Path, State as Extract};
use axum::http::StatusCode;
use bollard_stubs::models as m;

use super::{Json, Params, Reply, State};
use crate::engine_api::convert;
use crate::engine_api::filters::Filters;

const FILTERS: &[&str] = &["dangling", "driver", "id", "label", "name", "scope", "type"];

pub async fn list(
    Extract(backend): Extract<State>,
    params: Params,
) -> Reply<axum::Json<Vec<m::Network>>> {
    let filters = Filters::parse(params.get("filters"), FILTERS)?;
    let networks = backend.list_networks().await?;
    Ok(axum::Json(
        networks
            .iter()
            .filter(|n| {
                let kind = if n.spec.ingress { "builtin" } else { "custom" };
                filters.any("id", |id| n.id.starts_with(id))
                    && filters.any("name", |name| n.spec.annotations.name.contains(name))
                    && filters.any("driver", |d| d == n.spec.driver)
                    && filters.any("scope", |s| s == "swarm")
                    && filters.any("type", |t| t == kind)
                    && filters.labels_match(&n.spec.annotations.labels)
            })
            .map(convert::network_out)
            .collect(),
    ))
}

pub async fn inspect(
    Extract(backend): Extract<State>,
    Path(id): Path<String>,
) -> Reply<axum::Json<m::Network>> {
    Ok(axum::Json(convert::network_out(
        &backend.inspect_network(&id).await?,
    )))
}

pub async fn create(
    Extract(backend): Extract<State>,
    Json(request): Json<m::NetworkCreateRequest>,
) -> Reply<(StatusCode, axum::Json<m::NetworkCreateResponse>)> {
    let spec = convert::network_spec_in(request)?;
    let network = backend.create_network(&spec).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(m::NetworkCreateResponse {
            id: network.id,
            warning: String::new(),
        }),
    ))
}

/// How long a removal waits for the tasks of removed services to end.
const TASKS_ENDING_PATIENCE: Duration = Duration::from_secs(30);

/// SwarmKit removes a network as soon as no service uses it and its remaining tasks are only
/// shutting down; hive's manager keeps it until those tasks have ended (their sandboxes are
/// still attached). So that `docker stack rm` (services, then at once their networks) works
/// as with dockerd, a removal refused only for ending tasks waits for them, bounded.
pub async fn remove(Extract(backend): Extract<State>, Path(id): Path<String>) -> Reply<StatusCode> {
    let deadline = Instant::now() + TASKS_ENDING_PATIENCE;
    loop {
        match backend.remove_network(&id).await {
            Ok(()) => return Ok(StatusCode::NO_CONTENT),
            Err(e) if e.message.contains("is in use by task") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
