//! The allocator on a real store: the ingress network, published ports, VIPs and task
//! addresses as `hive service inspect` / `hive network inspect` would show them.

use std::collections::BTreeSet;

use super::networks::INGRESS_NAME;
use crate::manager::leader_loop::testing::*;
use crate::store::objects::{
    EndpointMode, IpamConfig, Network, NetworkAttachmentConfig, NetworkSpec, ObjectKind,
    PortConfig, PublishMode, Service, Task, TaskState,
};
use crate::store::{ReadView, StoreError};

fn publish(mut service: Service, target: u16, published: u16) -> Service {
    service.spec.endpoint_spec.ports.push(PortConfig {
        target_port: target,
        published_port: published,
        ..PortConfig::default()
    });
    service
}

fn network(swarm: &Swarm, name: &str) -> Network {
    swarm
        .store
        .view(|tx| {
            let id = tx
                .id_by_name(ObjectKind::Network, name)?
                .expect("network exists");
            Ok::<_, StoreError>(tx.get::<Network>(&id)?.expect("network exists"))
        })
        .unwrap()
}

async fn create_network(swarm: &Swarm, name: &str, subnet: Option<&str>) -> String {
    let mut spec = NetworkSpec::default();
    spec.annotations.name = name.to_owned();
    if let Some(subnet) = subnet {
        spec.ipam
            .configs
            .push(IpamConfig::parse(subnet, "", "").unwrap());
    }
    let network = Network {
        spec,
        ..Network::default()
    };
    swarm.store.update(|tx| tx.create(network)).await.unwrap()
}

fn published(swarm: &Swarm, id: &str) -> Vec<u16> {
    swarm
        .get::<Service>(id)
        .endpoint
        .expect("allocated")
        .ports
        .iter()
        .map(|p| p.published_port)
        .collect()
}

fn addresses(tasks: &[Task], network_id: &str) -> Vec<String> {
    tasks
        .iter()
        .flat_map(|t| &t.networks)
        .filter(|a| a.network_id == network_id)
        .flat_map(|a| a.addresses.iter().map(ToString::to_string))
        .collect()
}

#[tokio::test]
async fn the_leader_makes_the_ingress_network_with_swarms_defaults() {
    let mut swarm = Swarm::new().await;
    swarm.converge().await;
    let ingress = network(&swarm, INGRESS_NAME);
    assert!(ingress.spec.ingress);
    assert_eq!(ingress.vni, Some(4096));
    assert_eq!(ingress.ipam.len(), 1);
    assert_eq!(ingress.ipam[0].subnet.to_string(), "10.0.0.0/24");
    assert_eq!(ingress.ipam[0].gateway, Some("10.0.0.1".parse().unwrap()));
    // Only once.
    swarm.converge().await;
    let networks = swarm.store.view(|tx| tx.list::<Network>()).unwrap();
    assert_eq!(networks.len(), 1);
}

#[tokio::test]
async fn published_ports_without_a_number_come_from_30000_up() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    let web = swarm
        .create_service(publish(replicated("web", 1), 80, 0))
        .await;
    let api = swarm
        .create_service(publish(publish(replicated("api", 1), 80, 0), 81, 0))
        .await;
    swarm.converge().await;

    assert_eq!(published(&swarm, &web), [30000]);
    assert_eq!(published(&swarm, &api), [30001, 30002]);
    // Tasks carry the service's endpoint and are on their way.
    let task = &swarm.live_tasks(&api)[0];
    assert_eq!(task.status.state, TaskState::Assigned);
    assert_eq!(
        task.endpoint.as_ref().expect("endpoint").ports[1].published_port,
        30002
    );
    // A re-allocation (spec change) keeps the ports it had.
    swarm
        .update_service(&api, |s| s.spec.endpoint_spec.ports[1].name = String::new())
        .await;
    swarm
        .update_service(&web, |s| {
            s.spec.endpoint_spec.ports.push(PortConfig {
                target_port: 443,
                ..PortConfig::default()
            })
        })
        .await;
    swarm.converge().await;
    assert_eq!(published(&swarm, &web), [30000, 30003]);
}

#[tokio::test]
async fn a_published_port_is_never_given_to_two_services() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    let api = swarm
        .create_service(publish(replicated("api", 1), 80, 8080))
        .await;
    swarm.converge().await;
    let web = swarm
        .create_service(publish(replicated("web", 2), 80, 8080))
        .await;
    swarm.converge().await;

    assert_eq!(
        swarm
            .get::<Service>(&api)
            .endpoint
            .expect("allocated")
            .ports[0]
            .published_port,
        8080
    );
    assert!(swarm.get::<Service>(&web).endpoint.is_none());
    let held = swarm.live_tasks(&web);
    assert_eq!(held.len(), 2);
    for task in &held {
        assert_eq!(task.status.state, TaskState::New);
        assert_eq!(
            task.status.err,
            format!("port '8080' is already in use by service 'api' ({api}) as an ingress port")
        );
    }

    // Removing the owner frees the port.
    swarm.delete_service(&api).await;
    swarm.settle().await;
    assert_eq!(
        swarm
            .get::<Service>(&web)
            .endpoint
            .expect("allocated")
            .ports[0]
            .published_port,
        8080
    );
    assert!(
        swarm
            .live_tasks(&web)
            .iter()
            .all(|t| t.status.state == TaskState::Running && t.status.err.is_empty())
    );
}

#[tokio::test]
async fn the_ingress_vip_and_task_addresses_are_unique() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    swarm.add_node("n2").await;
    let mut web = publish(replicated("web", 5), 80, 0);
    web.spec.task_template.restart_policy.delay = Default::default();
    let web = swarm.create_service(web).await;
    let api = swarm
        .create_service(publish(replicated("api", 3), 80, 0))
        .await;
    swarm.settle().await;
    let ingress = network(&swarm, INGRESS_NAME);

    let mut seen = BTreeSet::from(["10.0.0.1/24".to_owned()]);
    for service in [&web, &api] {
        let endpoint = swarm.get::<Service>(service).endpoint.expect("allocated");
        assert_eq!(endpoint.virtual_ips.len(), 1);
        assert_eq!(endpoint.virtual_ips[0].network_id, ingress.id);
        assert!(seen.insert(endpoint.virtual_ips[0].addr.to_string()));
        let tasks = swarm.live_tasks(service);
        for addr in addresses(&tasks, &ingress.id) {
            assert!(
                addr.starts_with("10.0.0.") && addr.ends_with("/24"),
                "{addr}"
            );
            assert!(seen.insert(addr.clone()), "{addr} given twice");
        }
    }
    assert_eq!(seen.len(), 1 + 2 + 8);

    // A replacement after a failure gets a free address again, not a duplicate.
    let first = swarm.live_tasks(&web)[0].clone();
    swarm.report(&first.id, TaskState::Failed).await;
    swarm.settle().await;
    assert!(!swarm.live_tasks(&web).iter().any(|t| t.id == first.id));
    let live: Vec<Task> = swarm
        .live_tasks(&web)
        .into_iter()
        .chain(swarm.live_tasks(&api))
        .collect();
    let addrs = addresses(&live, &ingress.id);
    assert_eq!(addrs.len(), 8);
    assert_eq!(addrs.iter().collect::<BTreeSet<_>>().len(), 8);
}

#[tokio::test]
async fn overlay_networks_get_a_pool_subnet_a_vni_and_vips() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    let backend = create_network(&swarm, "backend", None).await;
    let explicit = create_network(&swarm, "explicit", Some("192.168.5.0/24")).await;
    let mut service = replicated("db", 2);
    service.spec.task_template.networks = vec![
        NetworkAttachmentConfig {
            target: backend.clone(),
            aliases: vec!["database".into()],
        },
        NetworkAttachmentConfig {
            target: explicit.clone(),
            aliases: Vec::new(),
        },
    ];
    let db = swarm.create_service(service).await;
    swarm.settle().await;

    let allocated = network(&swarm, "backend");
    assert_eq!(
        allocated.ipam[0].subnet.to_string(),
        "10.0.1.0/24",
        "10.0.0.0/24 is ingress's"
    );
    assert_eq!(allocated.ipam[0].gateway, Some("10.0.1.1".parse().unwrap()));
    let other = network(&swarm, "explicit");
    assert_eq!(other.ipam[0].gateway, Some("192.168.5.1".parse().unwrap()));
    let vnis = BTreeSet::from([allocated.vni.expect("vni"), other.vni.expect("vni")]);
    assert_eq!(vnis, [4097, 4098].into());

    let endpoint = swarm.get::<Service>(&db).endpoint.expect("allocated");
    let vip_networks: Vec<&str> = endpoint
        .virtual_ips
        .iter()
        .map(|v| v.network_id.as_str())
        .collect();
    assert_eq!(vip_networks, [backend.as_str(), explicit.as_str()]);
    let tasks = swarm.live_tasks(&db);
    assert_eq!(addresses(&tasks, &backend).len(), 2);
    assert!(
        addresses(&tasks, &explicit)
            .iter()
            .all(|a| a.starts_with("192.168.5."))
    );
    assert_eq!(tasks[0].networks[0].aliases, ["database"]);
    // No published port: not on ingress.
    assert!(tasks.iter().all(|t| t.networks.len() == 2));

    // DNS round robin: addresses for tasks, no VIPs.
    let mut rr = replicated("rr", 1);
    rr.spec.endpoint_spec.mode = EndpointMode::Dnsrr;
    rr.spec.task_template.networks = vec![NetworkAttachmentConfig {
        target: backend.clone(),
        aliases: Vec::new(),
    }];
    let rr = swarm.create_service(rr).await;
    swarm.settle().await;
    assert!(
        swarm
            .get::<Service>(&rr)
            .endpoint
            .expect("allocated")
            .virtual_ips
            .is_empty()
    );
    assert_eq!(addresses(&swarm.live_tasks(&rr), &backend).len(), 1);
}

#[tokio::test]
async fn exhaustion_is_reported_on_the_task_not_a_crash() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    // A /29 has 6 hosts: the gateway, the VIP, then 4 tasks.
    let small = create_network(&swarm, "small", Some("10.9.0.0/29")).await;
    let mut service = replicated("web", 6);
    service.spec.task_template.networks = vec![NetworkAttachmentConfig {
        target: small.clone(),
        aliases: Vec::new(),
    }];
    let web = swarm.create_service(service).await;
    swarm.settle().await;
    let tasks = swarm.live_tasks(&web);
    let running = tasks
        .iter()
        .filter(|t| t.status.state == TaskState::Running)
        .count();
    assert_eq!(running, 4);
    let held: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.status.state == TaskState::New)
        .collect();
    assert_eq!(held.len(), 2);
    for task in held {
        assert_eq!(
            task.status.err,
            "could not find an available IP while allocating task address on network small"
        );
    }

    // A /30 has 2 hosts: the gateway and one VIP; a second service gets none.
    let tiny = create_network(&swarm, "tiny", Some("10.9.1.0/30")).await;
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let mut service = replicated(name, 1);
        service.spec.task_template.networks = vec![NetworkAttachmentConfig {
            target: tiny.clone(),
            aliases: Vec::new(),
        }];
        ids.push(swarm.create_service(service).await);
        swarm.settle().await;
    }
    let b = &swarm.live_tasks(&ids[1])[0];
    assert_eq!(b.status.state, TaskState::New);
    assert_eq!(
        b.status.err,
        "could not find an available IP while allocating VIP on network tiny"
    );
}

#[tokio::test]
async fn host_mode_ports_are_left_to_the_nodes() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    let mut service = replicated("web", 1);
    service.spec.endpoint_spec.ports.push(PortConfig {
        target_port: 80,
        published_port: 8080,
        publish_mode: PublishMode::Host,
        ..PortConfig::default()
    });
    let web = swarm.create_service(service.clone()).await;
    // Another service may publish the same host-mode port (on other nodes).
    service.spec.annotations.name = "web2".into();
    let web2 = swarm.create_service(service).await;
    swarm.converge().await;
    for id in [&web, &web2] {
        let endpoint = swarm.get::<Service>(id).endpoint.expect("allocated");
        assert_eq!(endpoint.ports[0].published_port, 8080);
        assert!(
            endpoint.virtual_ips.is_empty(),
            "no ingress port, no ingress VIP"
        );
    }
    // The tasks are on ingress all the same: host-mode ports reach them over that veth.
    let task = &swarm.live_tasks(&web)[0];
    assert_eq!(task.networks.len(), 1, "{:?}", task.networks);
}

#[tokio::test]
async fn an_update_to_a_taken_port_does_not_stop_running_tasks() {
    let mut swarm = Swarm::new().await;
    swarm.add_node("n1").await;
    let web = swarm
        .create_service(publish(replicated("web", 2), 80, 8080))
        .await;
    swarm
        .create_service(publish(replicated("api", 1), 80, 8081))
        .await;
    swarm.settle().await;
    let before: Vec<String> = swarm.live_tasks(&web).into_iter().map(|t| t.id).collect();

    swarm
        .update_service(&web, |s| {
            s.spec.endpoint_spec.ports[0].published_port = 8081
        })
        .await;
    swarm.settle().await;
    let live = swarm.live_tasks(&web);
    assert_eq!(
        live.iter().map(|t| &t.id).collect::<Vec<_>>(),
        before.iter().collect::<Vec<_>>()
    );
    assert!(live.iter().all(|t| t.status.state == TaskState::Running));
    assert_eq!(swarm.tasks(&web).len(), 2, "no replacement was made");
    assert_eq!(published(&swarm, &web), [8080], "the old allocation stays");
}
