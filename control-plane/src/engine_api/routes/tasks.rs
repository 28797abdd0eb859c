//! `/tasks`: list with the filters `docker service ps`, `docker stack ps` and the CLI's
//! progress display send, and inspect.

use std::collections::HashMap;

use axum::extract::{Path, State as Extract};
use bollard_stubs::models as m;

use super::{Params, Reply, State};
use crate::engine_api::convert;
use crate::engine_api::error::EngineError;
use crate::engine_api::filters::Filters;
use crate::store::objects::{Service, Task, TaskState};

const FILTERS: &[&str] = &[
    "_up-to-date",
    "desired-state",
    "id",
    "label",
    "name",
    "node",
    "service",
];

/// SwarmKit's task name: `service.slot.id`, `service.node.id` for a global task.
fn task_name(service: &str, task: &Task) -> String {
    if task.slot == 0 {
        format!(
            "{service}.{}.{}",
            task.node_id.as_deref().unwrap_or(""),
            task.id
        )
    } else {
        format!("{service}.{}.{}", task.slot, task.id)
    }
}

pub async fn list(
    Extract(backend): Extract<State>,
    params: Params,
) -> Reply<axum::Json<Vec<m::Task>>> {
    let filters = Filters::parse(params.get("filters"), FILTERS)?;
    // Service filters name services that must exist (ID, name or unique ID prefix, as
    // dockerd resolves them). Each is looked up alone, and its tasks come from the store's
    // per-service index: the CLI's progress display polls this every 200 ms, and listing
    // every service (with its task counts) would cost as much as listing every task.
    let services: Vec<Service> = if filters.contains("service") {
        let mut found = Vec::new();
        for query in filters.values("service") {
            let service = backend.inspect_service(query).await.map_err(|e| {
                if e.status == 404 {
                    EngineError::not_found(format!("service {query} not found"))
                } else {
                    e
                }
            })?;
            found.push(service);
        }
        found
    } else {
        backend
            .list_services()
            .await?
            .into_iter()
            .map(|s| s.service)
            .collect()
    };
    let service_ids: Vec<String> = if filters.contains("service") {
        services.iter().map(|s| s.id.clone()).collect()
    } else {
        Vec::new()
    };
    let node_ids = if filters.contains("node") {
        let nodes = backend.list_nodes().await?;
        let mut ids = Vec::new();
        for query in filters.values("node") {
            let query = if query == "self" {
                nodes.self_node_id.as_str()
            } else {
                query
            };
            let node = nodes.nodes.iter().find(|n| {
                n.id == query
                    || n.description.as_ref().is_some_and(|d| d.hostname == query)
                    || n.spec
                        .as_ref()
                        .is_some_and(|s| !s.name.is_empty() && s.name == query)
            });
            let node = node
                .or_else(|| {
                    let mut prefixed = nodes.nodes.iter().filter(|n| n.id.starts_with(query));
                    match (prefixed.next(), prefixed.next()) {
                        (Some(only), None) => Some(only),
                        _ => None,
                    }
                })
                .ok_or_else(|| EngineError::not_found(format!("node {query} not found")))?;
            ids.push(node.id.clone());
        }
        Some(ids)
    } else {
        None
    };
    // One service: the daemon filters; else every task.
    let tasks = match service_ids.as_slice() {
        [only] => backend.list_tasks(only, "").await?,
        _ => backend.list_tasks("", "").await?,
    };
    let by_id: HashMap<&str, &Service> = services.iter().map(|s| (s.id.as_str(), s)).collect();
    let desired: Vec<TaskState> = filters
        .values("desired-state")
        .map(|s| {
            s.parse::<TaskState>()
                .map_err(|e| EngineError::bad_request(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let up_to_date = filters.is_true("_up-to-date");
    Ok(axum::Json(
        tasks
            .iter()
            .filter(|t| {
                let service = by_id.get(t.service_id.as_str());
                let service_name = service.map_or("", |s| s.spec.annotations.name.as_str());
                (service_ids.is_empty() || service_ids.contains(&t.service_id))
                    && node_ids
                        .as_ref()
                        .is_none_or(|ids| t.node_id.as_ref().is_some_and(|n| ids.contains(n)))
                    && filters.any("id", |id| t.id.starts_with(id))
                    && filters.any("name", |name| task_name(service_name, t).starts_with(name))
                    && (desired.is_empty() || desired.contains(&t.desired_state))
                    // SwarmKit's `IsTaskDirty`: the task runs the service's current template
                    // (a scale changes the spec, not the tasks).
                    && (!up_to_date || service.is_some_and(|s| s.spec.task_template == t.spec))
                    // SwarmKit matches a task's labels against its service's.
                    && filters.labels_match(
                        service.map_or(&Default::default(), |s| &s.spec.annotations.labels),
                    )
            })
            .map(convert::task_out)
            .collect(),
    ))
}

pub async fn inspect(
    Extract(backend): Extract<State>,
    Path(id): Path<String>,
) -> Reply<axum::Json<m::Task>> {
    let tasks = backend.list_tasks("", "").await?;
    let exact = tasks.iter().find(|t| t.id == id);
    let task = exact.or_else(|| {
        let mut prefixed = tasks.iter().filter(|t| t.id.starts_with(&id));
        match (prefixed.next(), prefixed.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    });
    task.map(|t| axum::Json(convert::task_out(t)))
        .ok_or_else(|| EngineError::not_found(format!("task {id} not found")))
}
