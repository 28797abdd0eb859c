//! Leader-side task listing (`service ps`, `node ps`): the tasks of a service and/or a node,
//! history included, with the names the NAME and NODE columns need.

use std::collections::HashMap;

use crate::api::{ApiError, pb};
use crate::manager::Manager;
use crate::store::objects::{Node, Service, Task};
use crate::store::{ReadView, StoreError};

/// The answer to a task listing, before it is encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskListing {
    pub tasks: Vec<Task>,
    pub node_names: HashMap<String, String>,
    pub service_names: HashMap<String, String>,
}

/// Tasks of the service `service` and/or on the node `node` (ID, ID prefix or name; empty for
/// any). `self` must have been resolved by the caller.
pub fn list_in(view: &impl ReadView, service: &str, node: &str) -> Result<TaskListing, StoreError> {
    let service_id = if service.is_empty() {
        None
    } else {
        Some(view.lookup::<Service>(service)?.id)
    };
    let node_id = if node.is_empty() {
        None
    } else {
        Some(view.lookup::<Node>(node)?.id)
    };
    // A service's tasks come from the store's per-service index, not a scan of every task.
    let mut tasks = match &service_id {
        Some(id) => view.tasks_of_service(id)?,
        None => view.list::<Task>()?,
    };
    if let Some(id) = &node_id {
        tasks.retain(|t| t.node_id.as_deref() == Some(id.as_str()));
    }
    let node_names = view
        .list::<Node>()?
        .into_iter()
        .map(|n| (n.id.clone(), n.display_name().to_owned()))
        .collect();
    // Names of the services the tasks belong to (removed services have none).
    let mut service_names = HashMap::new();
    for task in &tasks {
        if !service_names.contains_key(&task.service_id)
            && let Some(service) = view.get::<Service>(&task.service_id)?
        {
            service_names.insert(service.id, service.spec.annotations.name);
        }
    }
    Ok(TaskListing {
        tasks,
        node_names,
        service_names,
    })
}

pub async fn list(
    manager: &Manager,
    request: pb::ListTasksRequest,
) -> Result<pb::ListTasksResponse, ApiError> {
    let listing = manager
        .store
        .view(|tx| list_in(tx, &request.service, &request.node))?;
    Ok(pb::ListTasksResponse {
        tasks: listing
            .tasks
            .iter()
            .map(|t| pb::Task::from(&t.without_credentials()))
            .collect(),
        node_names: listing.node_names,
        service_names: listing.service_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::controlapi::service_spec::tests::spec;
    use crate::manager::controlapi::services::create_in;
    use crate::store::new_id;
    use crate::store::objects::NodeDescription;
    use crate::store::test_support::single_manager;

    #[tokio::test]
    async fn tasks_filter_by_service_and_node_with_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = single_manager(dir.path()).await;
        let web = store
            .update(|tx| create_in(tx, &spec("web", "x")))
            .await
            .unwrap();
        let api = store
            .update(|tx| create_in(tx, &spec("api", "x")))
            .await
            .unwrap();
        let node = |host: &str| Node {
            id: new_id(),
            description: Some(NodeDescription {
                hostname: host.into(),
                ..Default::default()
            }),
            ..Node::default()
        };
        let (n1, n2) = (node("node-1"), node("node-2"));
        let task = |service: &str, node: &Node| Task {
            id: new_id(),
            service_id: service.to_owned(),
            node_id: Some(node.id.clone()),
            ..Task::default()
        };
        let tasks = [task(&web, &n1), task(&web, &n2), task(&api, &n1)];
        store
            .update(|tx| {
                tx.create(n1.clone())?;
                tx.create(n2.clone())?;
                for t in &tasks {
                    tx.create(t.clone())?;
                }
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();

        let all = store.view(|tx| list_in(tx, "", "")).unwrap();
        assert_eq!(all.tasks.len(), 3);
        assert_eq!(all.node_names[&n1.id], "node-1");
        assert_eq!(all.service_names[&web], "web");

        let of_web = store.view(|tx| list_in(tx, "web", "")).unwrap();
        assert_eq!(of_web.tasks.len(), 2);
        let on_n1 = store.view(|tx| list_in(tx, "", "node-1")).unwrap();
        assert_eq!(on_n1.tasks.len(), 2);
        let both = store.view(|tx| list_in(tx, &web[..5], &n1.id)).unwrap();
        assert_eq!(both.tasks.len(), 1);
        assert_eq!(both.tasks[0].id, tasks[0].id);

        let err = store.view(|tx| list_in(tx, "nope", "")).unwrap_err();
        assert_eq!(ApiError::from(err).to_string(), "service nope not found");
    }
}
