//! `cargo bench -p hive-bench --bench store_encryption`: what encryption at rest costs a Raft
//! write (issue 18). One process, two single-manager stores on the same disk, written in
//! alternating rounds: one with no data key (values in the clear, as before issue 18), one
//! sealed with a data key. Each write is what `service update` commits: a service read,
//! changed and written back through Raft (log append with fsync, then apply with fsync).
//! Figures, not a test: p50/p99/mean per mode, JSON in `target/hive-bench/store_encryption.json`.
//!
//! Environment: `HIVE_BENCH_WRITES` (default 400): writes per mode.

use std::time::{Duration, Instant};

use hive::store::local_network::LocalRouter;
use hive::store::objects::{Annotations, Service, ServiceMode, ServiceSpec};
use hive::store::{Store, StoreConfig, StoreError, set_data_key};
use serde::Serialize;

const ROUNDS: usize = 8;

#[derive(Serialize)]
struct Mode {
    mode: &'static str,
    writes: usize,
    p50_us: u128,
    p99_us: u128,
    mean_us: u128,
}

#[derive(Serialize)]
struct Report {
    what: &'static str,
    modes: Vec<Mode>,
    p50_overhead_percent: f64,
}

async fn store(dir: &std::path::Path) -> (Store, String) {
    let router = LocalRouter::new();
    let store = Store::open(StoreConfig::new(dir, 1), router.clone())
        .await
        .expect("open the store");
    router.register(1, store.raft().clone());
    store.bootstrap("10.0.0.1:2377").await.expect("bootstrap");
    store
        .raft()
        .wait(Some(Duration::from_secs(30)))
        .current_leader(1, "this manager leads")
        .await
        .expect("leader");
    let mut service = Service {
        spec: ServiceSpec {
            annotations: Annotations::named("web"),
            mode: ServiceMode::Replicated { replicas: 3 },
            ..ServiceSpec::default()
        },
        ..Service::default()
    };
    service.spec.task_template.container.image = "hive/whoami".to_owned();
    service
        .spec
        .task_template
        .container
        .env
        .push("SECRET=bench".to_owned());
    let id = store
        .update(|tx| tx.create(service))
        .await
        .map_err(|e: StoreError| e)
        .expect("create the service");
    (store, id)
}

async fn write(store: &Store, id: &str, n: usize) -> Duration {
    let start = Instant::now();
    store
        .update(|tx| {
            tx.modify::<Service>(id, |s| {
                s.spec
                    .annotations
                    .labels
                    .insert("rev".to_owned(), n.to_string());
            })
            .map(drop)
        })
        .await
        .map_err(|e: StoreError| e)
        .expect("update the service");
    start.elapsed()
}

fn summary(mode: &'static str, mut samples: Vec<Duration>) -> Mode {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_micros();
    let mean = samples.iter().sum::<Duration>() / samples.len().max(1) as u32;
    Mode {
        mode,
        writes: samples.len(),
        p50_us: at(0.5),
        p99_us: at(0.99),
        mean_us: mean.as_micros(),
    }
}

fn main() {
    let writes: usize = std::env::var("HIVE_BENCH_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_owned());
    let base = std::path::Path::new(&target).join("hive-bench");
    std::fs::create_dir_all(&base).expect("target/hive-bench");
    let (plain_dir, sealed_dir) = (
        tempfile::tempdir_in(&base).expect("tempdir"),
        tempfile::tempdir_in(&base).expect("tempdir"),
    );
    let key = hive::encryption::Key::generate().expect("key");
    let (plain, sealed) = rt.block_on(async {
        set_data_key(None);
        let plain = store(plain_dir.path()).await;
        set_data_key(Some(key.clone()));
        let sealed = store(sealed_dir.path()).await;
        (plain, sealed)
    });
    let (mut plain_samples, mut sealed_samples) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for round in 0..ROUNDS {
            // The data key is process-wide: each store is written only while its own is set.
            set_data_key(None);
            for n in 0..writes / ROUNDS {
                plain_samples.push(write(&plain.0, &plain.1, round * writes + n).await);
            }
            set_data_key(Some(key.clone()));
            for n in 0..writes / ROUNDS {
                sealed_samples.push(write(&sealed.0, &sealed.1, round * writes + n).await);
            }
        }
    });
    let modes = vec![
        summary("plaintext", plain_samples),
        summary("encrypted", sealed_samples),
    ];
    let overhead = (modes[1].p50_us as f64 / modes[0].p50_us.max(1) as f64 - 1.0) * 100.0;
    let report = Report {
        what: "one service update committed through a single-manager Raft store (log fsync + apply fsync)",
        modes,
        p50_overhead_percent: (overhead * 10.0).round() / 10.0,
    };
    let json = serde_json::to_string_pretty(&report).expect("json");
    println!("{json}");
    std::fs::write(base.join("store_encryption.json"), json).expect("write the report");
    // Stop the Raft tasks before the directories go.
    rt.block_on(async {
        let _ = plain.0.shutdown().await;
        let _ = sealed.0.shutdown().await;
    });
}
