//! The embedded resolver's two costs: cutting the names from a mesh view (every node, at
//! every view change, before the view's tasks start) and answering one query.
use std::collections::BTreeSet;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hive::agent::dns::Names;
use hive::agent::dns::answer::{Transport, answer};
use hive::api::mesh_view::{MeshAttachment, MeshNetwork, MeshService, MeshTask, MeshView};
use hive::store::objects::{Endpoint, VirtualIp};

/// `services` services on one overlay network, two tasks each.
fn view(services: u32) -> MeshView {
    let addr = |i: u32| {
        let [_, b, c, d] = (0x0a00_0000 + i).to_be_bytes();
        format!("10.{b}.{c}.{d}/8")
    };
    MeshView {
        networks: vec![MeshNetwork {
            id: "back".into(),
            subnet: "10.0.0.0/8".parse().expect("a subnet"),
            vni: 4097,
            ..MeshNetwork::default()
        }],
        services: (0..services)
            .map(|s| MeshService {
                id: format!("svc{s:021}"),
                name: format!("service-{s}"),
                endpoint: Endpoint {
                    virtual_ips: vec![VirtualIp {
                        network_id: "back".into(),
                        addr: addr(s + 2).parse().expect("a VIP"),
                    }],
                    ..Endpoint::default()
                },
            })
            .collect(),
        tasks: (0..services * 2)
            .map(|t| MeshTask {
                id: format!("task{t:021}"),
                service_id: format!("svc{:021}", t / 2),
                node_id: format!("node{}", t % 3),
                networks: vec![MeshAttachment {
                    network_id: "back".into(),
                    addresses: vec![addr(services + 2 + t).parse().expect("a task address")],
                    aliases: Vec::new(),
                }],
                draining: false,
            })
            .collect(),
        ..MeshView::default()
    }
}

fn cut_names(c: &mut Criterion) {
    let mut group = c.benchmark_group("dns_names_from_view");
    group.sample_size(10);
    for services in [1u32, 1_000, 10_000] {
        let view = view(services);
        group.bench_with_input(BenchmarkId::from_parameter(services), &view, |b, view| {
            b.iter(|| Names::from_view(black_box(view), &BTreeSet::new()));
        });
    }
    group.finish();
}

fn answer_query(c: &mut Criterion) {
    let names = Names::from_view(&view(10_000), &BTreeSet::new());
    // A query for tasks.service-4242 (A), as a C library sends it.
    let query = {
        use hickory_proto::op::{Message, Query};
        use hickory_proto::rr::{Name, RecordType};
        let mut m = Message::query();
        m.add_query(Query::query(
            Name::from_ascii("tasks.service-4242.").expect("name"),
            RecordType::A,
        ));
        m.to_vec().expect("encodes")
    };
    c.bench_function("dns_answer_tasks_name_of_10000", |b| {
        b.iter(|| answer(black_box(&query), &names, ["back"], Transport::Udp));
    });
}

criterion_group!(benches, cut_names, answer_query);
criterion_main!(benches);
