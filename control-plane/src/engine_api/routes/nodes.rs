//! `/nodes`: list with filters, inspect by ID, name or prefix, update, delete.

use axum::extract::{Path, State as Extract};
use bollard_stubs::models as m;

use super::{Json, Params, Reply, State};
use crate::api::pb;
use crate::engine_api::convert;
use crate::engine_api::error::EngineError;
use crate::engine_api::filters::Filters;

const FILTERS: &[&str] = &["id", "label", "membership", "name", "node.label", "role"];

fn matches(filters: &Filters, node: &pb::Node) -> bool {
    let spec = node.spec.clone().unwrap_or_default();
    let hostname = node
        .description
        .as_ref()
        .map_or("", |d| d.hostname.as_str());
    let role = match node.role() {
        pb::Role::Manager => "manager",
        pb::Role::Worker => "worker",
    };
    filters.any("id", |id| node.id.starts_with(id))
        && filters.any("name", |name| hostname.starts_with(name) || spec.name.starts_with(name))
        && filters.any("role", |r| r == role)
        && filters.any("membership", |m| m == "accepted")
        && filters
            .values("node.label")
            .all(|f| match f.split_once('=') {
                Some((k, v)) => spec.labels.get(k).is_some_and(|x| x == v),
                None => spec.labels.contains_key(f),
            })
        // Engine labels: hive nodes have none.
        && filters.labels_match(&Default::default())
}

pub async fn list(
    Extract(backend): Extract<State>,
    params: Params,
) -> Reply<axum::Json<Vec<convert::NodeObject>>> {
    let filters = Filters::parse(params.get("filters"), FILTERS)?;
    let nodes = backend.list_nodes().await?;
    Ok(axum::Json(
        nodes
            .nodes
            .iter()
            .filter(|n| matches(&filters, n))
            .map(convert::node_out)
            .collect(),
    ))
}

pub async fn inspect(
    Extract(backend): Extract<State>,
    Path(id): Path<String>,
) -> Reply<axum::Json<convert::NodeObject>> {
    Ok(axum::Json(convert::node_out(
        &backend.inspect_node(&id).await?,
    )))
}

/// The whole new spec at `?version=N`, applied as hive's node update (availability, role,
/// labels added and removed). The version is checked against the node as read just before.
pub async fn update(
    Extract(backend): Extract<State>,
    Path(id): Path<String>,
    params: Params,
    Json(spec): Json<m::NodeSpec>,
) -> Reply<()> {
    let version = params.version()?;
    let node = backend.inspect_node(&id).await?;
    if node.version != version {
        return Err(EngineError::out_of_sequence());
    }
    let current = node.spec.clone().unwrap_or_default();
    if spec
        .name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != current.name)
    {
        return Err(EngineError::bad_request(
            "renaming nodes is not supported by hive",
        ));
    }
    let labels = spec.labels.unwrap_or_default();
    let request = pb::UpdateNodeRequest {
        node: node.id.clone(),
        availability: convert::availability_in(spec.availability).map(Into::into),
        label_add: labels.clone().into_iter().collect(),
        label_rm: current
            .labels
            .keys()
            .filter(|k| !labels.contains_key(*k))
            .cloned()
            .collect(),
        role: convert::role_in(spec.role).map(Into::into),
    };
    backend.update_node(request).await?;
    Ok(())
}

pub async fn remove(
    Extract(backend): Extract<State>,
    Path(id): Path<String>,
    params: Params,
) -> Reply<()> {
    backend.remove_node(&id, params.flag("force")).await
}
