//! `view` / `update` / `watch` semantics on a one-manager store.

use tokio::time::timeout;

use super::{PATIENCE, service, single_manager};
use crate::command::{Change, Rejection, Request, Response};
use crate::objects::{
    Network, Node, NodeDescription, ObjectKind, Service, ServiceMode, StoreObject, Task, TaskState,
    Timestamp,
};
use crate::{Action, Event, Filter, LookupError, ReadView, StoreError, Watch};

async fn next_event(watch: &mut Watch) -> Event {
    timeout(PATIENCE, watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn update_returns_after_apply_and_view_sees_versioned_objects() {
    let dir = tempfile::tempdir().unwrap();
    let store = single_manager(dir.path()).await;

    let id = store
        .update(|tx| tx.create(service("web", 3)))
        .await
        .unwrap();

    let web = store.view(|tx| tx.get::<Service>(&id)).unwrap().unwrap();
    assert_eq!(web.spec.annotations.name, "web");
    assert!(web.meta.version > 0);
    assert_eq!(web.meta.created_at, web.meta.updated_at);
    assert_eq!(web.spec_version, web.meta.version);
    assert_eq!(
        store
            .view(|tx| Ok::<_, StoreError>(tx.applied_index()))
            .unwrap(),
        web.meta.version
    );

    // A status-only change keeps spec_version; a spec change moves it.
    let updated = store
        .update(|tx| tx.modify::<Service>(&id, |s| s.previous_spec = Some(s.spec.clone())))
        .await
        .unwrap();
    let after_status = store.view(|tx| tx.get::<Service>(&id)).unwrap().unwrap();
    assert_eq!(after_status.spec_version, web.spec_version);
    assert!(after_status.meta.version > web.meta.version);
    assert_eq!(after_status.meta.created_at, web.meta.created_at);
    assert_eq!(after_status.previous_spec, updated.previous_spec);

    store
        .update(|tx| {
            tx.modify::<Service>(&id, |s| {
                s.spec.mode = ServiceMode::Replicated { replicas: 5 }
            })
        })
        .await
        .unwrap();
    let scaled = store.view(|tx| tx.get::<Service>(&id)).unwrap().unwrap();
    assert_eq!(scaled.spec_version, scaled.meta.version);
}

#[tokio::test]
async fn stale_update_is_a_typed_version_conflict_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = single_manager(dir.path()).await;
    let id = store
        .update(|tx| tx.create(service("web", 1)))
        .await
        .unwrap();
    let stale = store.view(|tx| tx.get::<Service>(&id)).unwrap().unwrap();

    let mut fresh = stale.clone();
    fresh.spec.mode = ServiceMode::Replicated { replicas: 2 };
    store.update(|tx| tx.update(fresh)).await.unwrap();
    let current = store.view(|tx| tx.get::<Service>(&id)).unwrap().unwrap();

    // Caught by the transaction's own check against its snapshot.
    let mut late = stale.clone();
    late.spec.mode = ServiceMode::Replicated { replicas: 9 };
    let err = store
        .update(|tx| tx.update(late.clone()))
        .await
        .unwrap_err();
    assert!(err.is_version_conflict(), "{err}");
    assert_eq!(
        err.rejection(),
        Some(&Rejection::VersionConflict {
            kind: ObjectKind::Service,
            id: id.clone(),
            expected: stale.meta.version,
            current: current.meta.version,
        })
    );
    assert!(
        err.to_string()
            .contains("re-read the service and apply the change again"),
        "{err}"
    );

    // Caught by the state machine, as when two managers' proposals race: the whole batch,
    // including its valid create, is refused.
    let task = Task {
        id: crate::new_id(),
        service_id: id.clone(),
        ..Task::default()
    };
    let request = Request {
        proposed_at: Timestamp::now(),
        changes: vec![
            Change::Create(task.clone().into_object()),
            Change::Update(late.into_object()),
        ],
    };
    let response = store.raft().client_write(request).await.unwrap();
    assert!(matches!(
        response.data,
        Response::Rejected(Rejection::VersionConflict { .. })
    ));
    assert_eq!(store.view(|tx| tx.get::<Task>(&task.id)).unwrap(), None);
    assert_eq!(
        store.view(|tx| tx.get::<Service>(&id)).unwrap(),
        Some(current)
    );
}

#[tokio::test]
async fn unique_names_are_enforced_per_kind() {
    let dir = tempfile::tempdir().unwrap();
    let store = single_manager(dir.path()).await;
    let web = store
        .update(|tx| tx.create(service("web", 1)))
        .await
        .unwrap();
    let api = store
        .update(|tx| tx.create(service("api", 1)))
        .await
        .unwrap();

    let err = store
        .update(|tx| tx.create(service("web", 2)))
        .await
        .unwrap_err();
    assert_eq!(
        err.rejection(),
        Some(&Rejection::NameConflict {
            kind: ObjectKind::Service,
            name: "web".into(),
            existing_id: web.clone()
        })
    );
    // Another kind may use the name.
    let mut network = Network::default();
    network.spec.annotations.name = "web".into();
    store.update(|tx| tx.create(network)).await.unwrap();
    // A rename onto a taken name fails; after the holder is gone it succeeds.
    let rename = |tx: &mut crate::WriteTx| {
        tx.modify::<Service>(&api, |s| s.spec.annotations.name = "web".into())
    };
    assert!(
        store
            .update(rename)
            .await
            .unwrap_err()
            .rejection()
            .is_some()
    );
    store.update(|tx| tx.delete::<Service>(&web)).await.unwrap();
    store.update(rename).await.unwrap();
    let renamed = store.view(|tx| tx.lookup::<Service>("web")).unwrap();
    assert_eq!(renamed.id, api);
    assert_eq!(
        store.view(|tx| tx.find_by_name::<Service>("api")).unwrap(),
        vec![]
    );
}

#[tokio::test]
async fn lookups_by_id_name_and_prefix_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = single_manager(dir.path()).await;
    let node = |id: &str, hostname: &str| Node {
        id: id.to_owned(),
        description: Some(NodeDescription {
            hostname: hostname.to_owned(),
            ..Default::default()
        }),
        ..Node::default()
    };
    store
        .update(|tx| {
            tx.create(node("abc1111111111111111111111", "swarm-1"))?;
            tx.create(node("abc2222222222222222222222", "swarm-2"))?;
            tx.create(node("xyz3333333333333333333333", "swarm-2"))?;
            tx.create(node("abc", "exact-id-beats-prefix"))
        })
        .await
        .unwrap();

    let found = |query: &str| store.view(|tx| tx.lookup::<Node>(query));
    assert_eq!(
        found("abc2222222222222222222222").unwrap().id,
        "abc2222222222222222222222"
    );
    assert_eq!(
        found("abc").unwrap().description.unwrap().hostname,
        "exact-id-beats-prefix"
    );
    assert_eq!(found("x").unwrap().id, "xyz3333333333333333333333");
    assert_eq!(found("swarm-1").unwrap().id, "abc1111111111111111111111");

    assert_eq!(found("abc1").unwrap().id, "abc1111111111111111111111");
    let err = found("ab").unwrap_err();
    assert_eq!(
        err.to_string(),
        "node \"ab\" is ambiguous: matches 3 nodes; use the full ID"
    );
    let err = found("swarm-2").unwrap_err();
    assert!(matches!(
        &err,
        StoreError::Lookup(LookupError::Ambiguous {
            kind: ObjectKind::Node,
            matches: 2,
            ..
        })
    ));
    assert_eq!(
        err.to_string(),
        "node \"swarm-2\" is ambiguous: matches 2 nodes; use the full ID"
    );
    let err = found("nope").unwrap_err();
    assert!(matches!(
        &err,
        StoreError::Lookup(LookupError::NotFound { .. })
    ));
    assert!(
        err.to_string().starts_with("no such node: \"nope\""),
        "{err}"
    );
}

#[tokio::test]
async fn watch_delivers_committed_changes_in_order_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let store = single_manager(dir.path()).await;
    let mut tasks = store.watch(Filter::all().kind(ObjectKind::Task));
    let mut deletes = store.watch(Filter::all().action(Action::Delete));

    let (service_id, first, second) = store
        .update(|tx| {
            let service_id = tx.create(service("web", 2))?;
            let task = |slot| Task {
                service_id: service_id.clone(),
                slot,
                ..Task::default()
            };
            Ok::<_, StoreError>((service_id.clone(), tx.create(task(1))?, tx.create(task(2))?))
        })
        .await
        .unwrap();
    store
        .update(|tx| tx.modify::<Task>(&first, |t| t.status.state = TaskState::Running))
        .await
        .unwrap();
    store.update(|tx| tx.delete::<Task>(&second)).await.unwrap();

    let created = [next_event(&mut tasks).await, next_event(&mut tasks).await];
    let ids: Vec<&str> = created.iter().map(|e| e.object().id()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
    assert!(
        created
            .iter()
            .all(|e| e.action() == Action::Create && e.index() == created[0].index())
    );
    match next_event(&mut tasks).await {
        Event::Updated { old, object, index } => {
            assert_eq!(Task::from_object(old).unwrap().status.state, TaskState::New);
            let new = Task::from_object(object).unwrap();
            assert_eq!(new.status.state, TaskState::Running);
            assert_eq!(new.meta.version, index);
            assert!(index > created[0].index());
        }
        other => panic!("expected the task update, got {other:?}"),
    }
    let deleted = next_event(&mut tasks).await;
    assert_eq!(
        (deleted.action(), deleted.object().id()),
        (Action::Delete, second.as_str())
    );
    // The other watcher saw only the delete; the service never reached the task watcher.
    assert_eq!(next_event(&mut deletes).await, deleted);
    store
        .update(|tx| tx.delete::<Service>(&service_id))
        .await
        .unwrap();
    assert_eq!(next_event(&mut deletes).await.kind(), ObjectKind::Service);
}

#[tokio::test]
async fn view_and_watch_continue_without_gap_or_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let store = single_manager(dir.path()).await;
    for name in ["a", "b", "c"] {
        store
            .update(|tx| tx.create(service(name, 1)))
            .await
            .unwrap();
    }
    let (seen, mut watch) = store
        .view_and_watch(Filter::all().kind(ObjectKind::Service), |tx| {
            tx.list::<Service>()
        })
        .unwrap();
    assert_eq!(seen.len(), 3);

    let d = store.update(|tx| tx.create(service("d", 1))).await.unwrap();
    let event = next_event(&mut watch).await;
    assert_eq!(
        (event.action(), event.object().id()),
        (Action::Create, d.as_str())
    );
}

#[tokio::test]
async fn changes_within_one_update_fold_per_object() {
    let dir = tempfile::tempdir().unwrap();
    let store = single_manager(dir.path()).await;
    let mut watch = store.watch(Filter::all());
    let before = store
        .view(|tx| Ok::<_, StoreError>(tx.applied_index()))
        .unwrap();

    // Created and deleted in one transaction: nothing to propose.
    store
        .update(|tx| {
            let id = tx.create(service("temp", 1))?;
            assert!(tx.lookup::<Service>("temp").is_ok());
            tx.delete::<Service>(&id)
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .view(|tx| Ok::<_, StoreError>(tx.applied_index()))
            .unwrap(),
        before
    );

    // Created then changed: one create carrying the final spec.
    let id = store
        .update(|tx| {
            let id = tx.create(service("web", 1))?;
            tx.modify::<Service>(&id, |s| s.spec.mode = ServiceMode::Global)?;
            assert_eq!(tx.list::<Service>()?.len(), 1);
            Ok::<_, StoreError>(id)
        })
        .await
        .unwrap();
    let event = next_event(&mut watch).await;
    assert_eq!(event.action(), Action::Create);
    assert_eq!(
        Service::from_object(event.object().clone())
            .unwrap()
            .spec
            .mode,
        ServiceMode::Global
    );
    assert_eq!(
        store
            .view(|tx| tx.get::<Service>(&id))
            .unwrap()
            .unwrap()
            .spec
            .mode,
        ServiceMode::Global
    );

    // A failing closure proposes nothing.
    let err = store
        .update(|tx| {
            tx.create(service("never", 1))?;
            tx.delete::<Service>("no-such-service")
        })
        .await
        .unwrap_err();
    assert!(matches!(err.rejection(), Some(Rejection::NotFound { .. })));
    assert_eq!(
        store
            .view(|tx| tx.find_by_name::<Service>("never"))
            .unwrap(),
        vec![]
    );
}

/// Manager loops run as spawned tasks: the store's futures and watches must be `Send`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_watch_streams_work_from_spawned_tasks() {
    use futures::StreamExt;

    let dir = tempfile::tempdir().unwrap();
    let store = single_manager(dir.path()).await;
    let events = store
        .watch(Filter::all().kind(ObjectKind::Service))
        .into_stream();
    let watcher = tokio::spawn(async move {
        let created: Vec<Event> = events.take(3).map(Result::unwrap).collect().await;
        created
    });
    let writer = tokio::spawn({
        let store = store.clone();
        async move {
            for name in ["a", "b", "c"] {
                store
                    .update(|tx| tx.create(service(name, 1)))
                    .await
                    .unwrap();
            }
        }
    });
    writer.await.unwrap();
    let created = timeout(PATIENCE, watcher).await.unwrap().unwrap();
    let names: Vec<String> = created
        .into_iter()
        .map(|e| {
            Service::from_object(e.object().clone())
                .unwrap()
                .spec
                .annotations
                .name
        })
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[tokio::test]
async fn a_services_tasks_are_found_through_the_index_also_before_they_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = single_manager(dir.path()).await;
    let task = |id: &str, service: &str| Task {
        id: id.to_owned(),
        service_id: service.to_owned(),
        ..Task::default()
    };
    let ids = |tasks: Vec<Task>| tasks.into_iter().map(|t| t.id).collect::<Vec<_>>();
    store
        .update(|tx| {
            for (id, service) in [("t1", "web"), ("t2", "web"), ("t3", "api")] {
                tx.create(task(id, service))?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let of = |service: &str| store.view(|tx| tx.tasks_of_service(service)).unwrap();
    assert_eq!(ids(of("web")), ["t1", "t2"]);
    assert_eq!(ids(of("api")), ["t3"]);

    // Pending changes show through a write transaction: a task moved, one deleted, one made.
    let seen = store
        .update(|tx| {
            tx.modify::<Task>("t2", |t| t.service_id = "api".to_owned())?;
            tx.delete::<Task>("t1")?;
            tx.create(task("t4", "web"))?;
            Ok::<_, StoreError>((
                ids(tx.tasks_of_service("web")?),
                ids(tx.tasks_of_service("api")?),
            ))
        })
        .await
        .unwrap();
    assert_eq!(
        seen,
        (
            vec!["t4".to_owned()],
            vec!["t2".to_owned(), "t3".to_owned()]
        )
    );
    // And once committed.
    assert_eq!(ids(of("web")), ["t4"]);
    assert_eq!(ids(of("api")), ["t2", "t3"]);
    assert!(of("gone").is_empty());
}

#[tokio::test]
async fn an_id_prefix_lookup_decodes_only_the_objects_it_matches() {
    let dir = tempfile::tempdir().unwrap();
    let store = single_manager(dir.path()).await;
    let ids: Vec<String> = store
        .update(|tx| {
            (0..200)
                .map(|i| tx.create(service(&format!("svc{i}"), 1)))
                .collect()
        })
        .await
        .unwrap();
    let wanted = &ids[117];
    let prefix = &wanted[..wanted.len() - 1];
    let decoded_by = |query: &str| {
        store
            .view(|tx| {
                let before = crate::objects_decoded();
                let found = tx.lookup::<Service>(query)?;
                Ok::<_, StoreError>((found.id, crate::objects_decoded() - before))
            })
            .unwrap()
    };
    // An ID prefix finds its service, decoding that one service, not the 200.
    assert_eq!(decoded_by(prefix), (wanted.clone(), 1));

    // In a write, the prefix sees the transaction's own objects too.
    let (pending_id, found) = store
        .update(|tx| {
            let id = tx.create(service("pending", 1))?;
            let found = tx.lookup::<Service>(&id[..id.len() - 1])?.id;
            Ok::<_, StoreError>((id, found))
        })
        .await
        .unwrap();
    assert_eq!(found, pending_id);
}

#[tokio::test]
async fn the_port_index_follows_the_ports_services_hold() {
    use crate::objects::{Endpoint, PortConfig, Protocol, PublishMode};
    let dir = tempfile::tempdir().unwrap();
    let store = single_manager(dir.path()).await;
    let port = |published_port: u16, protocol: Protocol| PortConfig {
        protocol,
        target_port: 80,
        published_port,
        publish_mode: PublishMode::Ingress,
        ..PortConfig::default()
    };
    let holders = |protocol: Protocol, port: u16| {
        store
            .view(|tx| tx.services_holding_port(protocol, port))
            .unwrap()
    };
    let mut web = service("web", 1);
    web.spec.endpoint_spec.ports = vec![port(8080, Protocol::Tcp), port(0, Protocol::Tcp)];
    let web_id = store.update(|tx| tx.create(web)).await.unwrap();
    for i in 0..50 {
        store
            .update(|tx| tx.create(service(&format!("other{i}"), 1)))
            .await
            .unwrap();
    }
    assert_eq!(holders(Protocol::Tcp, 8080), vec![web_id.clone()]);
    assert!(holders(Protocol::Udp, 8080).is_empty());
    assert!(holders(Protocol::Tcp, 0).is_empty());

    // The port the allocator assigns counts; an update that drops a port frees it.
    let mut web = store
        .view(|tx| tx.get::<Service>(&web_id))
        .unwrap()
        .unwrap();
    web.endpoint = Some(Endpoint {
        ports: vec![port(8080, Protocol::Tcp), port(30001, Protocol::Tcp)],
        ..Endpoint::default()
    });
    web.spec.endpoint_spec.ports = vec![port(9090, Protocol::Udp)];
    store.update(|tx| tx.update(web)).await.unwrap();
    assert_eq!(holders(Protocol::Tcp, 30001), vec![web_id.clone()]);
    assert_eq!(holders(Protocol::Udp, 9090), vec![web_id.clone()]);
    assert_eq!(holders(Protocol::Tcp, 8080), vec![web_id.clone()]);

    // Within a write, the transaction's own services count, and a deleted one does not.
    let (during, pending_id) = store
        .update(|tx| {
            tx.delete::<Service>(&web_id)?;
            let mut api = service("api", 1);
            api.spec.endpoint_spec.ports = vec![port(30001, Protocol::Tcp)];
            let id = tx.create(api)?;
            Ok::<_, StoreError>((tx.services_holding_port(Protocol::Tcp, 30001)?, id))
        })
        .await
        .unwrap();
    assert_eq!(during, vec![pending_id.clone()]);
    assert_eq!(holders(Protocol::Tcp, 30001), vec![pending_id]);
    assert!(holders(Protocol::Udp, 9090).is_empty());
}
