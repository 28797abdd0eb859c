//! Leader-side service operations: create, update, remove, inspect, list. A spec off the wire
//! is converted to the store's type first (`api::convert`, which refuses what hive cannot
//! hold, such as SCTP ports), then checked here once (docs/control-plane.md, "The wire").
//!
//! Each operation is a function over a store transaction (`*_in`), which the tests run against
//! a real one-manager store, and an async wrapper that runs it through [`Manager::update`].

use std::collections::HashMap;

use crate::api::convert::WireError;
use crate::api::{ApiError, pb};
use crate::manager::Manager;
use crate::manager::controlapi::networks::resolve_attachments;
use crate::manager::controlapi::reserved_ports::check_reserved_ports;
use crate::manager::controlapi::service_spec::{check_port_conflicts, validate};
use crate::store::command::Rejection;
use crate::store::objects::{
    ObjectKind, Service, ServiceMode, ServiceSpec, Task, TaskState, UpdateState,
};
use crate::store::{ReadView, StoreError, WriteTx};

/// SwarmKit's answer to a second service of the same name.
fn name_taken(name: &str) -> ApiError {
    ApiError::AlreadyExists(format!(
        "name conflicts with an existing object: service {name} already exists"
    ))
}

/// A store refusal of a name, as SwarmKit words it.
fn map_name_conflict(error: StoreError) -> ApiError {
    match error.rejection() {
        Some(Rejection::NameConflict { name, .. }) => name_taken(name),
        _ => error.into(),
    }
}

/// A name refusal the state machine made when applying (a write that raced past the
/// transaction's own check), in SwarmKit's words too.
fn map_apply_rejection(error: ApiError) -> ApiError {
    match error {
        ApiError::Store(store) => map_name_conflict(store),
        other => other,
    }
}

/// The spec of a request, in the store's terms.
fn spec_of(spec: Option<pb::ServiceSpec>) -> Result<ServiceSpec, ApiError> {
    let spec = spec.ok_or(WireError::Missing("service spec"))?;
    Ok(ServiceSpec::try_from(spec)?)
}

/// Validates `spec` and stores a new service; returns its ID.
pub fn create_in(tx: &mut WriteTx, spec: &ServiceSpec) -> Result<String, ApiError> {
    validate(spec)?;
    let mut spec = spec.clone();
    resolve_attachments(&*tx, &mut spec)?;
    crate::manager::controlapi::secrets::resolve_references(&*tx, &mut spec)?;
    let spec = &spec;
    if tx
        .id_by_name(ObjectKind::Service, &spec.annotations.name)?
        .is_some()
    {
        return Err(name_taken(&spec.annotations.name));
    }
    check_port_conflicts(&*tx, "", spec)?;
    check_reserved_ports(&*tx, spec)?;
    let service = Service {
        spec: spec.clone(),
        ..Service::default()
    };
    tx.create(service).map_err(map_name_conflict)
}

/// Where an update without registry credentials takes them from (dockerd's
/// `registryAuthFrom`): a service keeps its credentials across updates that send none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RegistryAuthFrom {
    /// The current spec's (`spec`, docker's default).
    #[default]
    Spec,
    /// The previous spec's (`previous-spec`, what a rollback asks for).
    PreviousSpec,
}

impl From<pb::RegistryAuthFrom> for RegistryAuthFrom {
    fn from(wire: pb::RegistryAuthFrom) -> Self {
        match wire {
            pb::RegistryAuthFrom::Spec => Self::Spec,
            pb::RegistryAuthFrom::PreviousSpec => Self::PreviousSpec,
        }
    }
}

/// Gives `spec` the credentials of `service`'s spec or previous spec when it carries none, as
/// dockerd's `UpdateService` does.
fn keep_credentials(
    service: &Service,
    spec: &mut ServiceSpec,
    from: RegistryAuthFrom,
) -> Result<(), ApiError> {
    if spec.task_template.container.registry_auth.is_some() {
        return Ok(());
    }
    let source = match from {
        RegistryAuthFrom::Spec => &service.spec,
        RegistryAuthFrom::PreviousSpec => service.previous_spec.as_ref().ok_or_else(|| {
            ApiError::Invalid(format!(
                "service {} does not have a previous spec",
                service.id
            ))
        })?,
    };
    spec.task_template
        .container
        .registry_auth
        .clone_from(&source.task_template.container.registry_auth);
    Ok(())
}

/// Replaces the spec of the service `query` names, if it is still at `version`; keeps the old
/// spec as `previous_spec`. Returns the service's ID.
pub fn update_in(
    tx: &mut WriteTx,
    query: &str,
    spec: &ServiceSpec,
    version: u64,
    auth_from: RegistryAuthFrom,
) -> Result<String, ApiError> {
    let mut service = tx.lookup::<Service>(query)?;
    validate(spec)?;
    let mut spec = spec.clone();
    keep_credentials(&service, &mut spec, auth_from)?;
    resolve_attachments(&*tx, &mut spec)?;
    crate::manager::controlapi::secrets::resolve_references(&*tx, &mut spec)?;
    let spec = &spec;
    if spec.annotations.name != service.spec.annotations.name {
        return Err(ApiError::Invalid(
            "renaming services is not supported".to_owned(),
        ));
    }
    let global = |m: &ServiceMode| matches!(m, ServiceMode::Global);
    if global(&spec.mode) != global(&service.spec.mode) {
        return Err(ApiError::Invalid(
            "service mode change is not allowed".to_owned(),
        ));
    }
    check_port_conflicts(&*tx, &service.id, spec)?;
    check_reserved_ports(&*tx, spec)?;
    // The caller's read version: a service changed since is the store's version conflict,
    // which the CLI answers by reading again.
    service.meta.version = version;
    if service.spec != *spec {
        let rollback = service.previous_spec.as_ref() == Some(spec);
        let replaces = spec.task_template != service.spec.task_template
            || spec.endpoint_spec != service.spec.endpoint_spec;
        // As SwarmKit's controlapi, a change that replaces no task (a scale) leaves no ended
        // update status behind: the previous update's `completed` would end the progress
        // display of `docker service scale` before the new replicas run. An update under way
        // or paused stays so.
        if replaces {
            service.update_status = Some(crate::manager::orchestrator::update::started(rollback));
        } else if service.update_status.as_ref().is_some_and(|s| {
            matches!(
                s.state,
                UpdateState::Completed | UpdateState::RollbackCompleted
            )
        }) {
            service.update_status = None;
        }
        service.previous_spec = Some(std::mem::replace(&mut service.spec, spec.clone()));
    }
    let id = service.id.clone();
    tx.update(service).map_err(map_name_conflict)?;
    Ok(id)
}

/// Deletes the service `query` names; the orchestrator then removes its tasks.
pub fn remove_in(tx: &mut WriteTx, query: &str) -> Result<String, ApiError> {
    let service = tx.lookup::<Service>(query)?;
    tx.delete::<Service>(&service.id)?;
    Ok(service.id)
}

/// A service with its task counts, as `service ls` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCounts {
    pub service: Service,
    /// Tasks running that should be running.
    pub running: u64,
    /// Replicas, or for a global service the tasks meant to run (one per eligible node).
    pub desired: u64,
}

/// Per service ID, its tasks meant to run: (running, not yet ended).
fn task_counts(tasks: &[Task]) -> HashMap<&str, (u64, u64)> {
    let mut counts: HashMap<&str, (u64, u64)> = HashMap::new();
    for task in tasks
        .iter()
        .filter(|t| t.desired_state == TaskState::Running)
    {
        let (running, live) = counts.entry(task.service_id.as_str()).or_default();
        *running += u64::from(task.status.state == TaskState::Running);
        *live += u64::from(!task.status.state.is_terminal());
    }
    counts
}

/// Every service with its task counts: one pass over the tasks, not one per service.
pub fn list_in(view: &impl ReadView) -> Result<Vec<ServiceCounts>, StoreError> {
    let services = view.list::<Service>()?;
    let tasks = view.list::<Task>()?;
    let counts = task_counts(&tasks);
    Ok(services
        .into_iter()
        .map(|service| {
            let (running, live) = counts.get(service.id.as_str()).copied().unwrap_or_default();
            let desired = match service.spec.mode {
                ServiceMode::Replicated { replicas } => replicas,
                ServiceMode::Global => live,
            };
            ServiceCounts {
                service,
                running,
                desired,
            }
        })
        .collect())
}

fn reply(manager: &Manager, id: &str) -> Result<pb::ServiceReply, ApiError> {
    let service = manager
        .store
        .view(|tx| tx.get::<Service>(id))?
        .ok_or_else(|| ApiError::NotFound {
            kind: "service",
            query: id.to_owned(),
        })?;
    Ok(pb::ServiceReply {
        service: Some((&service.without_credentials()).into()),
    })
}

pub async fn create(
    manager: &Manager,
    request: pb::CreateServiceRequest,
) -> Result<pb::ServiceReply, ApiError> {
    let spec = spec_of(request.spec)?;
    let _serial = manager.service_writes.lock().await;
    let id = manager
        .update(|tx| create_in(tx, &spec))
        .await
        .map_err(map_apply_rejection)?;
    tracing::info!(service = %id, name = %spec.annotations.name, "service created");
    reply(manager, &id)
}

pub async fn update(
    manager: &Manager,
    request: pb::UpdateServiceRequest,
) -> Result<pb::ServiceReply, ApiError> {
    let auth_from = RegistryAuthFrom::from(request.registry_auth_from());
    let spec = spec_of(request.spec)?;
    let _serial = manager.service_writes.lock().await;
    // Not `Manager::update`: that retries version conflicts, and here a conflict means the
    // caller's read is stale, which only the caller can resolve.
    let id = tokio::select! {
        result = manager
            .store
            .update(|tx| update_in(tx, &request.service, &spec, request.version, auth_from)) => {
                result.map_err(map_apply_rejection)?
            }
        () = manager.quorum_lost() => return Err(ApiError::NoLeader),
    };
    reply(manager, &id)
}

pub async fn remove(
    manager: &Manager,
    request: pb::RemoveServiceRequest,
) -> Result<pb::RemoveServiceResponse, ApiError> {
    let _serial = manager.service_writes.lock().await;
    let id = manager.update(|tx| remove_in(tx, &request.service)).await?;
    tracing::info!(service = %id, "service removed");
    Ok(pb::RemoveServiceResponse { service_id: id })
}

pub async fn inspect(
    manager: &Manager,
    request: pb::InspectServiceRequest,
) -> Result<pb::ServiceReply, ApiError> {
    let service = manager
        .store
        .view(|tx| tx.lookup::<Service>(&request.service))?;
    Ok(pb::ServiceReply {
        service: Some((&service.without_credentials()).into()),
    })
}

pub async fn list(
    manager: &Manager,
    _: pb::ListServicesRequest,
) -> Result<pb::ListServicesResponse, ApiError> {
    let counts = manager.store.view(list_in)?;
    let services = counts
        .iter()
        .map(|c| pb::ServiceSummary {
            service: Some((&c.service.without_credentials()).into()),
            running: c.running,
            desired: c.desired,
        })
        .collect();
    Ok(pb::ListServicesResponse { services })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::controlapi::service_spec::tests::spec;
    use crate::store::objects::{PortConfig, Protocol, PublishMode};
    use crate::store::test_support::single_manager;
    use crate::store::{Store, new_id};

    fn published(mut s: ServiceSpec, published: u16, target: u16) -> ServiceSpec {
        s.endpoint_spec.ports.push(PortConfig {
            published_port: published,
            target_port: target,
            ..PortConfig::default()
        });
        s
    }

    async fn create(store: &Store, s: &ServiceSpec) -> Result<String, ApiError> {
        store.update(|tx| create_in(tx, s)).await
    }

    fn get(store: &Store, query: &str) -> Service {
        store.view(|tx| tx.lookup::<Service>(query)).unwrap()
    }

    #[tokio::test]
    async fn create_validates_and_refuses_duplicate_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = single_manager(dir.path()).await;
        let id = create(&store, &spec("web", "hive/whoami")).await.unwrap();
        assert_eq!(get(&store, "web").id, id);

        let err = create(&store, &spec("web", "hive/echo")).await.unwrap_err();
        assert!(matches!(err, ApiError::AlreadyExists(_)));
        assert_eq!(
            err.to_string(),
            "name conflicts with an existing object: service web already exists"
        );
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::AlreadyExists);

        let err = create(&store, &spec("api", "")).await.unwrap_err();
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(store.view(|tx| tx.list::<Service>()).unwrap().len(), 1);
    }

    #[test]
    fn a_name_refused_at_apply_time_reads_like_swarmkit() {
        let raced = ApiError::Store(StoreError::Rejected(Rejection::NameConflict {
            kind: ObjectKind::Service,
            name: "web".into(),
            existing_id: "x".into(),
        }));
        let err = map_apply_rejection(raced);
        assert_eq!(tonic::Status::from(err).code(), tonic::Code::AlreadyExists);
    }

    #[tokio::test]
    async fn the_port_check_reads_only_the_services_holding_the_port() {
        let dir = tempfile::tempdir().unwrap();
        let store = single_manager(dir.path()).await;
        let web = create(&store, &published(spec("web", "x"), 8080, 80))
            .await
            .unwrap();
        for i in 0..100 {
            create(&store, &spec(&format!("other{i}"), "x"))
                .await
                .unwrap();
        }
        let (decoded, err) = store
            .view(|tx| {
                let before = crate::store::objects_decoded();
                let err = check_port_conflicts(tx, "", &published(spec("api", "x"), 8080, 81))
                    .unwrap_err();
                Ok::<_, StoreError>((crate::store::objects_decoded() - before, err))
            })
            .unwrap();
        assert_eq!(
            err.to_string(),
            format!("port '8080' is already in use by service 'web' ({web}) as an ingress port")
        );
        // The one holder of 8080, not the 101 services.
        assert_eq!(decoded, 1);
    }

    #[tokio::test]
    async fn published_ingress_ports_conflict_across_services() {
        let dir = tempfile::tempdir().unwrap();
        let store = single_manager(dir.path()).await;
        let web = create(&store, &published(spec("web", "x"), 8080, 80))
            .await
            .unwrap();

        let err = create(&store, &published(spec("api", "x"), 8080, 81))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("port '8080' is already in use by service 'web' ({web}) as an ingress port")
        );

        // An ingress port is published on every node: no node could also publish a
        // host-mode port of that number (SwarmKit refuses it as well).
        let host_mode = |name: &str, port: u16| {
            let mut host = published(spec(name, "x"), port, 80);
            host.endpoint_spec.ports[0].publish_mode = PublishMode::Host;
            host
        };
        let err = create(&store, &host_mode("host", 8080)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("port '8080' is already in use by service 'web' ({web}) as an ingress port")
        );
        // Host-mode ports of one number coexist (the scheduler keeps them apart), but not
        // with an ingress port of that number.
        let host = create(&store, &host_mode("host", 8090)).await.unwrap();
        let host2 = create(&store, &host_mode("host2", 8090)).await.unwrap();
        let err = create(&store, &published(spec("api", "x"), 8090, 81))
            .await
            .unwrap_err()
            .to_string();
        // Either holder may be named (services are listed in ID order).
        assert!(
            [("host", host), ("host2", host2)].iter().any(|(name, id)| err
                == format!(
                    "port '8090' is already in use by service '{name}' ({id}) as a host-published port"
                )),
            "{err}"
        );

        // Another protocol, or an automatic port, do not conflict.
        let mut udp = published(spec("dns", "x"), 8080, 53);
        udp.endpoint_spec.ports[0].protocol = Protocol::Udp;
        create(&store, &udp).await.unwrap();
        create(&store, &published(spec("auto", "x"), 0, 80))
            .await
            .unwrap();

        // An allocated port (endpoint) counts too, even if the spec no longer names it.
        let api = create(&store, &spec("api", "x")).await.unwrap();
        store
            .update(|tx| {
                tx.modify::<Service>(&api, |s| {
                    s.endpoint = Some(crate::store::objects::Endpoint {
                        ports: vec![PortConfig {
                            published_port: 30001,
                            target_port: 80,
                            ..PortConfig::default()
                        }],
                        ..Default::default()
                    })
                })
            })
            .await
            .unwrap();
        let err = create(&store, &published(spec("late", "x"), 30001, 80))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("service 'api'"), "{err}");

        // A service updating its own ports does not conflict with itself.
        let current = get(&store, "web");
        let mut moved = current.spec.clone();
        moved.endpoint_spec.ports[0].target_port = 8081;
        store
            .update(|tx| {
                update_in(
                    tx,
                    "web",
                    &moved,
                    current.meta.version,
                    RegistryAuthFrom::Spec,
                )
            })
            .await
            .unwrap();
        // ...but taking another's port does.
        let current = get(&store, "web");
        let stolen = published(current.spec.clone(), 30001, 80);
        let err = store
            .update(|tx| {
                update_in(
                    tx,
                    &web,
                    &stolen,
                    current.meta.version,
                    RegistryAuthFrom::Spec,
                )
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("'30001'"), "{err}");
    }

    #[tokio::test]
    async fn credentials_are_kept_across_updates_and_never_returned() {
        use crate::image_store::RegistryAuth;
        let dir = tempfile::tempdir().unwrap();
        let store = single_manager(dir.path()).await;
        let auth = |password: &str| {
            Some(RegistryAuth {
                username: "puller".into(),
                password: password.into(),
            })
        };
        let mut first = spec("web", "reg.example:5000/app:1");
        first.task_template.container.registry_auth = auth("one");
        create(&store, &first).await.unwrap();

        // An update without credentials keeps the current ones (docker's `spec`).
        let read = get(&store, "web");
        let mut scaled = read.spec.clone();
        scaled.task_template.container.registry_auth = None;
        scaled.mode = ServiceMode::Replicated { replicas: 2 };
        store
            .update(|tx| {
                update_in(
                    tx,
                    "web",
                    &scaled,
                    read.meta.version,
                    RegistryAuthFrom::Spec,
                )
            })
            .await
            .unwrap();
        let read = get(&store, "web");
        assert_eq!(read.spec.task_template.container.registry_auth, auth("one"));

        // New ones replace them; `previous-spec` brings the old ones back.
        let mut rotated = read.spec.clone();
        rotated.task_template.container.registry_auth = auth("rotated-7Qx");
        store
            .update(|tx| {
                update_in(
                    tx,
                    "web",
                    &rotated,
                    read.meta.version,
                    RegistryAuthFrom::Spec,
                )
            })
            .await
            .unwrap();
        let read = get(&store, "web");
        assert_eq!(
            read.spec.task_template.container.registry_auth,
            auth("rotated-7Qx")
        );
        let mut back = read.previous_spec.clone().unwrap();
        back.task_template.container.registry_auth = None;
        store
            .update(|tx| {
                update_in(
                    tx,
                    "web",
                    &back,
                    read.meta.version,
                    RegistryAuthFrom::PreviousSpec,
                )
            })
            .await
            .unwrap();
        let read = get(&store, "web");
        assert_eq!(read.spec.task_template.container.registry_auth, auth("one"));

        // What a client is answered holds none.
        let shown = read.without_credentials();
        assert_eq!(shown.spec.task_template.container.registry_auth, None);
        assert!(
            shown
                .previous_spec
                .is_some_and(|p| p.task_template.container.registry_auth.is_none())
        );
        assert!(
            !format!("{read:?}").contains("rotated-7Qx"),
            "Debug hides passwords"
        );
    }

    #[tokio::test]
    async fn update_is_optimistic_and_keeps_the_previous_spec() {
        let dir = tempfile::tempdir().unwrap();
        let store = single_manager(dir.path()).await;
        create(&store, &spec("web", "hive/whoami")).await.unwrap();
        let read = get(&store, "web");

        let mut next = read.spec.clone();
        next.mode = ServiceMode::Replicated { replicas: 3 };
        store
            .update(|tx| update_in(tx, "web", &next, read.meta.version, RegistryAuthFrom::Spec))
            .await
            .unwrap();
        let updated = get(&store, "web");
        assert_eq!(updated.spec.mode, ServiceMode::Replicated { replicas: 3 });
        assert_eq!(updated.previous_spec, Some(read.spec.clone()));

        // A second writer with the old read is refused with a conflict.
        let err = store
            .update(|tx| {
                update_in(
                    tx,
                    "web",
                    &read.spec,
                    read.meta.version,
                    RegistryAuthFrom::Spec,
                )
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ApiError::Store(e) if e.is_version_conflict()),
            "{err}"
        );
        assert_eq!(tonic::Status::from(err).code(), tonic::Code::Aborted);

        let mut renamed = updated.spec.clone();
        renamed.annotations.name = "web2".into();
        let err = store
            .update(|tx| {
                update_in(
                    tx,
                    "web",
                    &renamed,
                    updated.meta.version,
                    RegistryAuthFrom::Spec,
                )
            })
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "renaming services is not supported");

        let mut global = updated.spec.clone();
        global.mode = ServiceMode::Global;
        let err = store
            .update(|tx| {
                update_in(
                    tx,
                    "web",
                    &global,
                    updated.meta.version,
                    RegistryAuthFrom::Spec,
                )
            })
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "service mode change is not allowed");
    }

    #[tokio::test]
    async fn lookup_by_id_prefix_or_name_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = single_manager(dir.path()).await;
        let id = create(&store, &spec("web", "x")).await.unwrap();
        assert_eq!(get(&store, &id[..6]).id, id);
        assert_eq!(get(&store, &id).id, id);

        let err: ApiError = store
            .view(|tx| tx.lookup::<Service>("nope"))
            .unwrap_err()
            .into();
        assert_eq!(err.to_string(), "service nope not found");
        let err = store.update(|tx| remove_in(tx, "")).await.unwrap_err();
        assert!(matches!(err, ApiError::NotFound { .. }));

        assert_eq!(store.update(|tx| remove_in(tx, "web")).await.unwrap(), id);
        assert!(store.view(|tx| tx.list::<Service>()).unwrap().is_empty());
    }

    #[tokio::test]
    async fn list_counts_running_and_desired_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let store = single_manager(dir.path()).await;
        let mut replicated = spec("web", "x");
        replicated.mode = ServiceMode::Replicated { replicas: 3 };
        let web = create(&store, &replicated).await.unwrap();
        let mut global = spec("agent", "x");
        global.mode = ServiceMode::Global;
        let agent = create(&store, &global).await.unwrap();

        let task = |service: &str, desired: TaskState, state: TaskState| {
            let mut t = Task {
                id: new_id(),
                service_id: service.to_owned(),
                desired_state: desired,
                ..Task::default()
            };
            t.status.state = state;
            t
        };
        let tasks = vec![
            task(&web, TaskState::Running, TaskState::Running),
            task(&web, TaskState::Running, TaskState::Preparing),
            task(&web, TaskState::Shutdown, TaskState::Running),
            task(&agent, TaskState::Running, TaskState::Running),
            task(&agent, TaskState::Running, TaskState::Pending),
            task(&agent, TaskState::Running, TaskState::Failed),
            task(&agent, TaskState::Shutdown, TaskState::Shutdown),
        ];
        store
            .update(|tx| {
                for t in &tasks {
                    tx.create(t.clone())?;
                }
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();

        let counts = store.view(list_in).unwrap();
        let of = |id: &str| counts.iter().find(|c| c.service.id == id).unwrap();
        assert_eq!((of(&web).running, of(&web).desired), (1, 3));
        assert_eq!((of(&agent).running, of(&agent).desired), (1, 2));
    }
}
