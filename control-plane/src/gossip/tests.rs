//! `Gossip` end to end on loopback, in one process (no root needed): the lab
//! tests in tests/gossip.rs do the same across namespaces with real processes.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tokio::time::{Instant, sleep, timeout};

use super::*;

/// A free loopback UDP port (the OS picks one; it is released before use).
fn free_addr() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
    socket.local_addr().expect("local address")
}

fn config(node: &str, cluster: &str, addr: SocketAddr, seeds: &[SocketAddr]) -> GossipConfig {
    let mut c = GossipConfig::new(node, cluster, addr);
    c.seeds = seeds.to_vec();
    // Faster than the default so the test is quick; same ratios.
    c.gossip_interval = Duration::from_millis(50);
    c.failure_detection.initial_interval = c.gossip_interval;
    c.leave_grace = Duration::from_millis(150);
    c
}

/// Waits (bounded) until `check` holds for `gossip`'s member list.
async fn wait_members(gossip: &Gossip, what: &str, check: impl Fn(&[Member]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let members = gossip.members();
        if check(&members) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never saw {what}; members: {members:#?}",
            gossip.node_id()
        );
        sleep(Duration::from_millis(20)).await;
    }
}

fn up(members: &[Member], node: &str) -> bool {
    members.iter().any(|m| m.node_id == node && m.is_up())
}

async fn next_event(watch: &mut MembershipWatch) -> MembershipEvent {
    timeout(Duration::from_secs(10), watch.recv())
        .await
        .expect("a membership event within 10 s")
        .expect("watch open")
}

#[tokio::test]
async fn two_nodes_meet_share_state_and_part() {
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let mut a_config = config("a", "c1", a_addr, &[b_addr]);
    a_config
        .initial_state
        .insert("node.role".into(), "manager".into());
    let a = Gossip::start(a_config).await.unwrap();
    let mut a_watch = a.watch();
    let b = Gossip::start(config("b", "c1", b_addr, &[a_addr]))
        .await
        .unwrap();

    // The first event about b is NodeUp, with the cluster key hidden.
    let event = next_event(&mut a_watch).await;
    let MembershipEvent::NodeUp { member } = &event else {
        panic!("expected NodeUp, got {event:?}");
    };
    assert_eq!(member.node_id, "b");
    assert!(member.state.is_empty(), "{member:?}");
    wait_members(&b, "a up with its role", |m| {
        m.iter()
            .any(|m| m.node_id == "a" && m.is_up() && m.state["node.role"] == "manager")
    })
    .await;
    assert!(a.members().iter().any(|m| m.local && m.node_id == "a"));

    // State changes travel as NodeUpdated.
    b.set_local("endpoints.t1", "healthy").await.unwrap();
    let event = next_event(&mut a_watch).await;
    assert!(
        matches!(&event, MembershipEvent::NodeUpdated { member } if member.state["endpoints.t1"] == "healthy"),
        "{event:?}"
    );
    assert!(b.delete_local("endpoints.t1").await.unwrap());
    assert!(!b.delete_local("endpoints.t1").await.unwrap());
    let event = next_event(&mut a_watch).await;
    assert!(
        matches!(&event, MembershipEvent::NodeUpdated { member } if member.state.is_empty()),
        "{event:?}"
    );
    assert!(b.set_local("gossip.leaving", "1").await.is_err());
    assert!(!a.failure_timeouts().await.is_empty());

    // A graceful leave is reported as such, long before failure detection.
    let left_at = Instant::now();
    b.leave().await.unwrap();
    let event = next_event(&mut a_watch).await;
    assert!(
        matches!(
            &event,
            MembershipEvent::NodeDown {
                reason: DownReason::Left,
                ..
            }
        ),
        "{event:?}"
    );
    assert!(left_at.elapsed() < Duration::from_secs(2));
    assert_eq!(a.member("b").unwrap().status, MemberStatus::Left);
    a.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_silent_node_fails_and_its_new_incarnation_is_up() {
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let a = Gossip::start(config("a", "c1", a_addr, &[b_addr]))
        .await
        .unwrap();
    let mut b_config = config("b", "c1", b_addr, &[a_addr]);
    b_config.generation = 1;
    let b = Gossip::start(b_config.clone()).await.unwrap();
    wait_members(&a, "b up", |m| up(m, "b")).await;
    let mut watch = a.watch();

    // Dropping stops the server without a word, like a crash.
    drop(b);
    let event = next_event(&mut watch).await;
    assert!(
        matches!(&event, MembershipEvent::NodeDown { member, reason: DownReason::Failed } if member.generation == 1),
        "{event:?}"
    );

    b_config.generation = 2;
    let _b = Gossip::start(b_config).await.unwrap();
    let event = next_event(&mut watch).await;
    assert!(
        matches!(&event, MembershipEvent::NodeUp { member } if member.generation == 2),
        "{event:?}"
    );
}

#[tokio::test]
async fn another_cluster_is_never_admitted() {
    let (a_addr, x_addr) = (free_addr(), free_addr());
    let a = Gossip::start(config("a", "c1", a_addr, &[x_addr]))
        .await
        .unwrap();
    let x = Gossip::start(config("x", "c2", x_addr, &[a_addr]))
        .await
        .unwrap();
    // Many rounds both ways.
    sleep(Duration::from_millis(800)).await;
    assert_eq!(a.members().len(), 1, "{:?}", a.members());
    assert_eq!(x.members().len(), 1, "{:?}", x.members());
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let err = Gossip::start(config("a", "c1", addr, &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, GossipError::Bind { .. }), "{err}");
    assert!(
        err.to_string().contains("choose another listen address"),
        "{err}"
    );
}

#[tokio::test]
async fn authenticated_nodes_meet_and_a_node_without_the_key_is_ignored() {
    let key = GossipKey {
        id: 1,
        secret: vec![3; KEY_LEN],
    };
    let (a_addr, b_addr, c_addr) = (free_addr(), free_addr(), free_addr());
    let keyed = |node: &str, addr, seeds: &[SocketAddr]| {
        let auth = GossipAuth::new(node);
        auth.update(std::slice::from_ref(&key), []);
        let mut c = config(node, "c1", addr, seeds);
        c.auth = Some(auth.clone());
        (c, auth)
    };
    let (a_config, a_auth) = keyed("a", a_addr, &[b_addr]);
    let a = Gossip::start(a_config).await.unwrap();
    let (b_config, _) = keyed("b", b_addr, &[a_addr]);
    let b = Gossip::start(b_config).await.unwrap();
    wait_members(&a, "b up", |m| up(m, "b")).await;
    wait_members(&b, "a up", |m| up(m, "a")).await;

    // Right cluster ID and format, no key: never a member, and its datagrams are dropped.
    let c = Gossip::start(config("c", "c1", c_addr, &[a_addr, b_addr]))
        .await
        .unwrap();
    sleep(Duration::from_millis(500)).await;
    assert!(!a.members().iter().any(|m| m.node_id == "c"));
    assert!(!b.members().iter().any(|m| m.node_id == "c"));
    assert!(
        a_auth.dropped() > 0,
        "c's datagrams reached a and were dropped"
    );

    // Once a lists b as removed, b's gossip is ignored and b goes down at a.
    a_auth.update(std::slice::from_ref(&key), ["b".to_owned()]);
    wait_members(&a, "b down", |m| !up(m, "b")).await;
    drop((a, b, c));
}
