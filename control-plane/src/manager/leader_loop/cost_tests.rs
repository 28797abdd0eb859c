//! What one change costs the loops as the cluster grows: the store objects their passes
//! decode (decoding dominates a pass's CPU), after a service create, a scale change and a
//! task's state change, in a cluster of few and of many services. A pass that scanned the
//! whole state would decode about as many more objects as the cluster has more services.
//!
//! `HIVE_LOOP_COST_SERVICES=100,1000,10000 cargo test -p hive --lib cost_tests -- --ignored
//! --nocapture` prints the same per loop, with times, for the sizes given (docs/control-plane.md).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::manager::leader_loop::testing::*;
use crate::store::objects::{Service, ServiceMode, TaskState};
use crate::store::{StoreError, objects_decoded};

/// The three changes.
const CHANGES: [&str; 3] = ["create", "scale", "task state"];

/// Per change, per loop: what the passes that followed it cost.
type Profile = BTreeMap<&'static str, BTreeMap<&'static str, Cost>>;

/// A swarm of 3 nodes and `services` running 1-replica services, then one change of each kind;
/// with what the dispatcher's complete views for the 3 nodes cost after one change (not a loop: it
/// is measured, not part of the profile's totals).
async fn profile(services: usize) -> (Profile, Cost) {
    let mut swarm = Swarm::new().await;
    let mut nodes = Vec::new();
    for host in ["n1", "n2", "n3"] {
        nodes.push(swarm.add_node(host).await);
    }
    // In chunks that settle one after the other, so that no write carries thousands of tasks.
    for chunk in (0..services).collect::<Vec<_>>().chunks(250) {
        swarm
            .store
            .update(|tx| {
                for i in chunk {
                    tx.create(replicated(&format!("fill{i}"), 1))?;
                }
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        swarm.settle().await;
    }
    let mut out = Profile::new();

    swarm.costs.clear();
    let web = swarm.create_service(replicated("web", 1)).await;
    swarm.settle().await;
    out.insert(CHANGES[0], std::mem::take(&mut swarm.costs));
    let (decoded, start) = (objects_decoded(), thread_cpu());
    for node in &nodes {
        swarm
            .store
            .view(|tx| crate::manager::dispatcher::assignments::complete(tx, node))
            .unwrap();
    }
    let dispatcher = Cost {
        passes: nodes.len() as u64,
        decoded: objects_decoded() - decoded,
        cpu: thread_cpu().saturating_sub(start),
    };

    swarm
        .update_service(&web, |s: &mut Service| {
            s.spec.mode = ServiceMode::Replicated { replicas: 2 }
        })
        .await;
    swarm.settle().await;
    out.insert(CHANGES[1], std::mem::take(&mut swarm.costs));

    let task = swarm.live_tasks(&web)[0].id.clone();
    swarm.report(&task, TaskState::Failed).await;
    swarm.converge().await;
    out.insert(CHANGES[2], std::mem::take(&mut swarm.costs));
    (out, dispatcher)
}

fn decoded(profile: &Profile, change: &str) -> u64 {
    profile[change].values().map(|c| c.decoded).sum()
}

#[tokio::test]
async fn one_change_decodes_as_much_in_a_large_cluster_as_in_a_small_one() {
    let (small, _) = profile(10).await;
    let (large, _) = profile(200).await;
    for change in CHANGES {
        let (small, large) = (decoded(&small, change), decoded(&large, change));
        assert!(small > 0, "{change}: the loops read nothing");
        assert_eq!(
            large, small,
            "{change}: the loops decoded {large} objects with 200 services, {small} with 10"
        );
    }
}

#[tokio::test]
#[ignore = "a profile for docs/control-plane.md; sizes from HIVE_LOOP_COST_SERVICES"]
async fn profile_of_one_change_by_cluster_size() {
    let sizes: Vec<usize> = std::env::var("HIVE_LOOP_COST_SERVICES")
        .unwrap_or_else(|_| "100,1000".to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let mut first: Option<Profile> = None;
    for services in sizes {
        let before = objects_decoded();
        let (profile, dispatcher) = profile(services).await;
        println!(
            "{services} services (setup decoded {}):",
            objects_decoded() - before
        );
        println!(
            "  dispatcher: {} snapshots after a change {:>6} objects decoded {:>8.2} ms CPU",
            dispatcher.passes,
            dispatcher.decoded,
            dispatcher.cpu.as_secs_f64() * 1e3
        );
        for change in CHANGES {
            for (name, cost) in &profile[change] {
                println!(
                    "  {change:<10} {name:<12} {:>3} passes {:>6} objects decoded {:>8.2} ms CPU",
                    cost.passes,
                    cost.decoded,
                    cost.cpu.as_secs_f64() * 1e3
                );
            }
            let total: Duration = profile[change].values().map(|c| c.cpu).sum();
            println!(
                "  {change:<10} all loops {:>28.2} ms CPU",
                total.as_secs_f64() * 1e3
            );
        }
        if let Some(first) = &first {
            for change in CHANGES {
                assert_eq!(
                    decoded(&profile, change),
                    decoded(first, change),
                    "{change}"
                );
            }
        } else {
            first = Some(profile);
        }
    }
}
