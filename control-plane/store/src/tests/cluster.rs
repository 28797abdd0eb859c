//! Three managers in one process over the in-process network: election, replication to
//! followers (including a snapshot for late joiners), forwarding errors, and fail-over when the
//! leader goes away.

use std::collections::BTreeSet;

use tokio::time::timeout;

use super::{
    PATIENCE, api_addr, service, snapshot_and_purge, start, wait_caught_up, wait_until_leader,
};
use crate::local_network::LocalRouter;
use crate::objects::{Cluster, ObjectKind, Service, Task};
use crate::types::{NodeId, RaftNode};
use crate::{Action, Filter, ReadView, Store, StoreError};

fn services(store: &Store) -> Vec<Service> {
    store.view(|tx| tx.list::<Service>()).unwrap()
}

/// Waits until `store` knows a leader other than `gone`, and returns it.
async fn new_leader(store: &Store, gone: NodeId) -> NodeId {
    let metrics = store
        .raft()
        .wait(Some(PATIENCE))
        .metrics(
            |m| m.current_leader.is_some_and(|leader| leader != gone),
            "a new leader",
        )
        .await
        .unwrap();
    metrics.current_leader.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_managers_replicate_and_survive_losing_the_leader() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let router = LocalRouter::new();
    let m1 = start(&router, dirs[0].path(), 1).await;
    let m2 = start(&router, dirs[1].path(), 2).await;
    let m3 = start(&router, dirs[2].path(), 3).await;

    // swarm init on manager 1, some state, then a snapshot and a purged log, so that the
    // managers joining afterwards must be sent the snapshot.
    m1.bootstrap(api_addr(1)).await.unwrap();
    wait_until_leader(&m1).await;
    m1.update(|tx| tx.create(Cluster::default())).await.unwrap();
    let mut web = service("web", 3);
    web.spec.endpoint_spec.ports = vec![crate::objects::PortConfig {
        target_port: 80,
        published_port: 8080,
        ..Default::default()
    }];
    let web = m1.update(|tx| tx.create(web)).await.unwrap();
    let task = Task {
        service_id: web.clone(),
        ..Task::default()
    };
    let task = m1.update(|tx| tx.create(task)).await.unwrap();
    snapshot_and_purge(&m1).await;

    m1.add_manager(2, RaftNode::new(api_addr(2))).await.unwrap();
    m1.add_manager(3, RaftNode::new(api_addr(3))).await.unwrap();
    m1.raft()
        .wait(Some(PATIENCE))
        .voter_ids([1, 2, 3], "three voters")
        .await
        .unwrap();

    // A write on the leader is readable on every follower once applied there.
    for follower in [&m2, &m3] {
        wait_caught_up(follower, &m1).await;
        // The snapshot's tasks are indexed by service on the follower too.
        let tasks = follower.view(|tx| tx.tasks_of_service(&web)).unwrap();
        let ids: Vec<String> = tasks.into_iter().map(|t| t.id).collect();
        assert_eq!(ids, std::slice::from_ref(&task));
        // So are the services' published ports.
        let holders = follower
            .view(|tx| tx.services_holding_port(crate::objects::Protocol::Tcp, 8080))
            .unwrap();
        assert_eq!(holders, std::slice::from_ref(&web));
    }
    let mut follower_watch = m3.watch(Filter::all().kind(ObjectKind::Service));
    m1.update(|tx| tx.create(service("api", 2))).await.unwrap();
    for follower in [&m2, &m3] {
        wait_caught_up(follower, &m1).await;
        assert_eq!(services(follower), services(&m1));
    }
    assert_eq!(services(&m2).len(), 2);
    let seen = timeout(PATIENCE, follower_watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (seen.action(), seen.object().kind()),
        (Action::Create, ObjectKind::Service)
    );

    // Followers refuse writes and name the leader.
    let err = m2
        .update(|tx| tx.create(service("db", 1)))
        .await
        .unwrap_err();
    match &err {
        StoreError::NotLeader {
            leader_id,
            leader_addr,
        } => {
            assert_eq!(
                (*leader_id, leader_addr.as_str()),
                (1, api_addr(1).as_str())
            );
        }
        other => panic!("expected NotLeader, got {other}"),
    }

    // The leader goes away; the two others elect one of themselves, which accepts writes.
    router.remove(1);
    m1.shutdown().await.unwrap();
    let leader_id = new_leader(&m2, 1).await;
    assert_eq!(new_leader(&m3, 1).await, leader_id);
    let (leader, follower) = if leader_id == 2 {
        (&m2, &m3)
    } else {
        (&m3, &m2)
    };
    wait_until_leader(leader).await;
    leader
        .update(|tx| tx.create(service("db", 1)))
        .await
        .unwrap();
    wait_caught_up(follower, leader).await;
    let names: BTreeSet<String> = services(follower)
        .into_iter()
        .map(|s| s.spec.annotations.name)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["web".into(), "api".into(), "db".into()])
    );

    m2.shutdown().await.unwrap();
    m3.shutdown().await.unwrap();
}
