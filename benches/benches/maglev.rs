//! Micro-benchmarks of the user-space halves of the per-flow decision:
//! building a service's Maglev table (paid on every backend change) and
//! the flow hash (paid by the kernel per new flow; same code).
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hive_dataplane::maglev::MaglevTable;

fn build_table(c: &mut Criterion) {
    let mut group = c.benchmark_group("maglev_build");
    for backends in [2usize, 10, 100, 1_000] {
        let ids: Vec<String> = (0..backends).map(|i| format!("task-{i:025}")).collect();
        group.bench_with_input(BenchmarkId::from_parameter(backends), &ids, |b, ids| {
            b.iter(|| MaglevTable::build(black_box(ids), black_box(7)));
        });
    }
    group.finish();
}

fn flow_hash(c: &mut Criterion) {
    c.bench_function("flow_hash", |b| {
        let mut port = 0u16;
        b.iter(|| {
            port = port.wrapping_add(1);
            hive_common::flow_hash(7, black_box(0xc0a8_4d64), black_box(port), 8080, 6)
        });
    });
}

criterion_group!(benches, build_table, flow_hash);
criterion_main!(benches);
