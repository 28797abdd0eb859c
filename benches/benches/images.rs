//! `cargo bench -p hive-bench --bench images` (issue 16): real OCI images run by runc, in a
//! 3-node lab (n1 manager, n2 and n3 workers) with a real `docker-registry` on n1's address:
//!
//! - **cold pull and start**: the image removed from every node first (`image rm`, nothing
//!   left in `image ls`), then `service create --replicas 1 -p PORT:80 <registry>/…` through
//!   the API (the manager pins the digest, as `hive service create`), to the task running and
//!   to every node's published port answering;
//! - **warm start**: the same with the image already on every node, 1 and 10 replicas;
//! - **the built-in executor**: the same with `hive/whoami`, 1 and 10 replicas, in the same
//!   rounds (interleaved, so both see the same machine): runc + overlay's per-task overhead is
//!   the difference.
//!
//! "Answering" means every node's mesh balances the port over exactly the service's running
//! tasks and a request to every node's port is answered (from the lab's client). The image is
//! busybox-static's httpd with a CGI answering like whoami, built with umoci and pushed with
//! skopeo. Medians and min–max of `HIVE_BENCH_IMAGES_ROUNDS` rounds (default 5), beside
//! Docker's anchors: a container starts in ~0.3–0.5 s; Swarm's create → running for 10
//! replicas takes seconds. Figures, not a test; JSON in `target/hive-bench/images.json`.
//!
//! Needs root and the tools `cargo xtask setup` installs (runc, umoci, skopeo, busybox-static,
//! docker-registry); without them it says so and succeeds. The benchmark binary is also the
//! lab's `hive`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hive::client::{DaemonClient, TaskFilter};
use hive::lab_swarm::{self, LabDaemonOptions, SwarmLab};
use hive::store::objects::{ServiceSpec, TaskState};
use hive_bench::lab_bench;
use hive_dataplane::node_pins::{NodeChoice, PinsQuery};
use hive_lab::{Lab, LabSpec};
use serde::Serialize;

// The tests' image and registry helpers, shared as source: `registry` finds `PATIENCE` and
// `busybox` in its parent module, this file.
#[allow(dead_code)]
#[path = "../../tests/support/busybox.rs"]
mod busybox;
#[allow(dead_code)]
#[path = "../../tests/support/registry.rs"]
mod registry;

/// How long the registry may take to listen.
const PATIENCE: Duration = Duration::from_secs(60);
const LAB: &str = "images-b";
const NODES: [&str; 3] = ["n1", "n2", "n3"];
const REGISTRY_PORT: u16 = 5000;
const IMAGE_NAME: &str = "hive-bench/httpd:1";
/// Bound of one measurement; far above anything measured, it only stops a broken run.
const GIVE_UP: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(50);
const TOOLS: [&str; 5] = ["runc", "umoci", "skopeo", "busybox", "docker-registry"];

/// A CGI index that answers as whoami (`hive::demo::parse_answer` reads it).
const INDEX_CGI: &str = "#!/bin/sh
echo 'Content-Type: text/plain'
echo ''
echo \"Hostname: $(hostname)\"
peer=${REMOTE_ADDR#[}
peer=${peer%]}
echo \"RemoteAddr: ${peer#::ffff:}:${REMOTE_PORT:-1}\"
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// runc + overlay, the image already on every node.
    Warm,
    BuiltIn,
}

#[derive(Debug, Default, Serialize)]
struct Spread {
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
    samples_ms: Vec<f64>,
}

impl Spread {
    fn of(samples: Vec<f64>) -> Self {
        let (median_ms, min_ms, max_ms) = lab_bench::median_min_max(&samples);
        Self {
            median_ms,
            min_ms,
            max_ms,
            samples_ms: samples,
        }
    }

    fn cell(&self) -> String {
        format!(
            "{:.0} [{:.0}–{:.0}]",
            self.median_ms, self.min_ms, self.max_ms
        )
    }
}

#[derive(Debug, Serialize)]
struct Row {
    what: String,
    executor: &'static str,
    replicas: usize,
    /// create → N tasks RUNNING in the store.
    running: Spread,
    /// create → every node's mesh holds the N running tasks and answers on the port.
    answering: Spread,
}

#[derive(Debug, Serialize)]
struct Overhead {
    replicas: usize,
    /// Median runc + overlay (image present) minus median built-in executor, create → running.
    running_ms: f64,
    /// The same, create → answering.
    answering_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    what: &'static str,
    nodes: usize,
    rounds: usize,
    image: String,
    image_blob_bytes: u64,
    rows: Vec<Row>,
    runc_overhead: Vec<Overhead>,
    docker_container_start_s: (f64, f64),
    docker_source: &'static str,
}

fn main() -> ExitCode {
    if let Some(code) = hive::cli::run_as_hive_if_asked() {
        return code;
    }
    lab_bench::main(
        "images",
        "network namespaces, daemons and containers in them",
        run,
    )
}

fn rounds() -> usize {
    std::env::var("HIVE_BENCH_IMAGES_ROUNDS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(5)
}

fn run() -> Result<(), String> {
    let missing: Vec<&str> = TOOLS
        .into_iter()
        .filter(|tool| busybox::which(tool).is_none())
        .collect();
    if !missing.is_empty() {
        eprintln!("images bench skipped: missing tools {missing:?} (run `cargo xtask setup`)");
        return Ok(());
    }
    let rounds = rounds();
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    let layout = build_image(dir.path())?;
    let image_blob_bytes = blob_bytes(&dir.path().join("layout/blobs/sha256"));

    let rt = lab_bench::runtime()?;
    let exe = lab_bench::hive_exe()?;
    let mut registry_addr = None;
    let swarm = rt
        .block_on(SwarmLab::up_with_options(
            &LabSpec::new(LAB, 3),
            1,
            &exe,
            |lab| {
                let addr = lab
                    .node_addr("n1")
                    .map(|a| SocketAddr::from((a, REGISTRY_PORT)))
                    .ok();
                registry_addr = addr;
                LabDaemonOptions {
                    insecure_registries: addr.iter().map(ToString::to_string).collect(),
                }
            },
        ))
        .map_err(|e| format!("forming the lab swarm {LAB}: {e}"))?;
    let registry_addr = registry_addr.ok_or("n1 has no address")?;
    let registry = registry::Registry::start(swarm.lab(), "n1", dir.path(), registry_addr);
    registry.push(swarm.lab(), "n1", &format!("oci:{layout}"), IMAGE_NAME);
    let image = format!("{registry_addr}/{IMAGE_NAME}");

    let outcome = rt.block_on(measure(swarm.lab(), &image, rounds));
    drop(registry);
    drop(swarm);
    let rows = outcome?;

    let overhead = |replicas: usize| {
        let find = |case: &str| {
            rows.iter()
                .find(|r| r.replicas == replicas && r.what.starts_with(case))
        };
        match (find("warm"), find("built-in")) {
            (Some(runc), Some(builtin)) => Some(Overhead {
                replicas,
                running_ms: runc.running.median_ms - builtin.running.median_ms,
                answering_ms: runc.answering.median_ms - builtin.answering.median_ms,
            }),
            _ => None,
        }
    };
    let report = Report {
        what: "service create -> tasks running -> answering through every node's published port: a cold pull, an image already pulled (runc + overlay), and hive/whoami (the built-in executor)",
        nodes: NODES.len(),
        rounds,
        image,
        image_blob_bytes,
        runc_overhead: [1, 10].into_iter().filter_map(overhead).collect(),
        rows,
        docker_container_start_s: (0.3, 0.5),
        docker_source: "issue 16's anchors: Docker starts a container in roughly 0.3-0.5 s; Swarm's create -> running for 10 replicas takes seconds",
    };
    print_report(&report);
    lab_bench::write_json("images", &report)?;
    Ok(())
}

/// The image's OCI layout in `dir`; returns skopeo's `<layout>:1`.
fn build_image(dir: &Path) -> Result<String, String> {
    let populate = |rootfs: &Path| {
        use std::os::unix::fs::PermissionsExt as _;
        let cgi = rootfs.join("srv/cgi-bin");
        let made = std::fs::create_dir_all(&cgi)
            .and_then(|()| std::fs::write(cgi.join("index.cgi"), INDEX_CGI))
            .and_then(|()| {
                for path in [cgi.join("index.cgi"), cgi.clone()] {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
                }
                Ok(())
            });
        if let Err(e) = made {
            panic!("the image's CGI: {e}");
        }
    };
    let config = [
        "--config.entrypoint",
        "/bin/httpd",
        "--config.cmd",
        "-f",
        "--config.cmd",
        "-p",
        "--config.cmd",
        "80",
        "--config.cmd",
        "-h",
        "--config.cmd",
        "/srv",
        "--config.exposedports",
        "80/tcp",
    ];
    Ok(busybox::oci_layout(
        dir,
        &["sh", "hostname", "httpd", "echo"],
        populate,
        &config,
    ))
}

fn blob_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

async fn measure(lab: &Lab, image: &str, rounds: usize) -> Result<Vec<Row>, String> {
    let mut api = lab_swarm::connect(lab, "n1", GIVE_UP)
        .await
        .map_err(|e| e.to_string())?;
    let mut port = 9000u16;
    let mut next = |what: &str, round: usize| {
        port += 1;
        (format!("{what}{round}"), port)
    };
    // Cold: the image on no node before each round.
    let mut cold = (Vec::new(), Vec::new());
    for round in 0..rounds {
        remove_everywhere(lab, image).await?;
        let (name, port) = next("cold", round);
        let sample = converge(lab, &mut api, &spec(&name, image, 1, port), 1, port).await?;
        eprintln!(
            "round {round}: cold pull, 1 replica: running {:.0} ms, answering {:.0} ms",
            sample.0, sample.1
        );
        cold.0.push(sample.0);
        cold.1.push(sample.1);
        remove(&mut api, &name).await?;
    }
    // Warm: pulled on every node once; then runc and the built-in executor by turns.
    for node in NODES {
        lab_bench::hive_cli(lab, node, &["image", "pull", "-q", image])?;
    }
    let cases = [
        (Case::Warm, 1),
        (Case::BuiltIn, 1),
        (Case::Warm, 10),
        (Case::BuiltIn, 10),
    ];
    let mut samples: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); cases.len()];
    for round in 0..rounds {
        for (i, &(case, n)) in cases.iter().enumerate() {
            let (name, port) = next(if case == Case::Warm { "runc" } else { "whoami" }, round);
            let image = if case == Case::Warm {
                image
            } else {
                "hive/whoami"
            };
            let sample = converge(lab, &mut api, &spec(&name, image, n, port), n, port).await?;
            eprintln!(
                "round {round}: {image}, {n} replicas: running {:.0} ms, answering {:.0} ms",
                sample.0, sample.1
            );
            samples[i].0.push(sample.0);
            samples[i].1.push(sample.1);
            remove(&mut api, &name).await?;
        }
    }
    let mut rows = vec![Row {
        what: "cold pull and start (image on no node)".to_owned(),
        executor: "runc",
        replicas: 1,
        running: Spread::of(cold.0),
        answering: Spread::of(cold.1),
    }];
    for (&(case, n), (running, answering)) in cases.iter().zip(samples) {
        let (what, executor) = match case {
            Case::Warm => ("warm start (image on every node)", "runc"),
            Case::BuiltIn => ("built-in hive/whoami", "built-in"),
        };
        rows.push(Row {
            what: what.to_owned(),
            executor,
            replicas: n,
            running: Spread::of(running),
            answering: Spread::of(answering),
        });
    }
    Ok(rows)
}

fn spec(name: &str, image: &str, replicas: usize, port: u16) -> ServiceSpec {
    let mut spec = hive::demo::whoami_spec(name, replicas as u64, port);
    image.clone_into(&mut spec.task_template.container.image);
    spec
}

/// Removes the image from every node: once its last task is gone, `image rm` succeeds (or
/// the node never had it); then no node lists any image.
async fn remove_everywhere(lab: &Lab, image: &str) -> Result<(), String> {
    let start = Instant::now();
    for node in NODES {
        loop {
            match lab_bench::hive_cli(lab, node, &["image", "rm", image]) {
                Ok(_) => break,
                Err(e) if e.contains("No such image") => break,
                Err(e) if start.elapsed() > GIVE_UP => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        let left = lab_bench::hive_cli(lab, node, &["image", "ls", "-q"])?;
        if !left.trim().is_empty() {
            return Err(format!("{node} still has images: {left}"));
        }
    }
    Ok(())
}

async fn remove(api: &mut DaemonClient, name: &str) -> Result<(), String> {
    api.control
        .remove_service(name)
        .await
        .map_err(|e| format!("service rm {name}: {}", e.into_status().message()))?;
    // Wait until its tasks are down, so that the next measurement has the nodes to itself.
    let start = Instant::now();
    loop {
        let tasks = api
            .control
            .list_tasks(TaskFilter {
                service: None,
                node: None,
            })
            .await
            .map_err(|e| format!("service ps: {}", e.into_status().message()))?
            .tasks;
        if tasks.iter().all(|t| t.status.state > TaskState::Running) {
            return Ok(());
        }
        if start.elapsed() > GIVE_UP {
            return Err(format!(
                "the tasks of {name} did not stop within {GIVE_UP:?}"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Backend task IDs of `service_id` in `node`'s pinned mesh.
fn mesh_backends(lab: &str, node: &str, service_id: &str) -> BTreeSet<String> {
    let Ok(pins) = (PinsQuery {
        lab: Some(lab.to_owned()),
        pin_dir: None,
        nodes: NodeChoice::One(node.to_owned()),
    })
    .resolve() else {
        return BTreeSet::new();
    };
    pins.iter()
        .filter_map(|p| hive_dataplane::stats::read_node(p, Some(service_id)).ok())
        .flat_map(|s| s.services)
        .flat_map(|s| s.backends)
        .map(|b| b.task)
        .collect()
}

/// One `GET /` from the client to `node`'s `port`, answered as whoami answers.
fn answers(lab: &Lab, node: &str, port: u16) -> bool {
    let (Ok(client), Ok(addr)) = (lab.netns_path("client"), lab.node_addr(node)) else {
        return false;
    };
    hive::demo::http_get(client, SocketAddr::from((addr, port))).is_ok()
}

/// Creates `spec` and times create → `n` tasks running → answering through every node.
async fn converge(
    lab: &Lab,
    api: &mut DaemonClient,
    spec: &ServiceSpec,
    n: usize,
    port: u16,
) -> Result<(f64, f64), String> {
    let name = spec.annotations.name.clone();
    let start = Instant::now();
    let id = api
        .control
        .create_service(spec)
        .await
        .map_err(|e| format!("service create {name}: {}", e.into_status().message()))?
        .id;
    let mut running_ms = None;
    loop {
        let tasks = api
            .control
            .list_tasks(TaskFilter {
                service: Some(&name),
                node: None,
            })
            .await
            .map_err(|e| format!("service ps: {}", e.into_status().message()))?
            .tasks;
        let live: BTreeSet<&str> = tasks
            .iter()
            .filter(|t| {
                t.desired_state == TaskState::Running && t.status.state == TaskState::Running
            })
            .map(|t| t.id.as_str())
            .collect();
        if running_ms.is_none() && live.len() == n {
            running_ms = Some(ms(start));
        }
        if let Some(running_ms) = running_ms {
            let meshed = NODES.iter().all(|node| {
                let have = mesh_backends(lab.name(), node, &id);
                have.len() == n && have.iter().all(|t| live.contains(t.as_str()))
            });
            if meshed && NODES.iter().all(|node| answers(lab, node, port)) {
                return Ok((running_ms, ms(start)));
            }
        }
        if start.elapsed() > GIVE_UP {
            let errors: BTreeSet<&str> = tasks.iter().map(|t| t.status.err.as_str()).collect();
            return Err(format!(
                "{name}: {} of {n} tasks running after {GIVE_UP:?} (errors: {errors:?})",
                live.len()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn print_report(report: &Report) {
    println!(
        "\nIMAGES (3-node lab: 1 manager, 2 workers; {} rounds; median [min–max] ms)",
        report.rounds
    );
    println!(
        "image {} ({} bytes of blobs)",
        report.image, report.image_blob_bytes
    );
    println!(
        "{:<44} {:>8} {:>9} {:>22} {:>22}",
        "service create", "executor", "replicas", "running", "answering"
    );
    for row in &report.rows {
        println!(
            "{:<44} {:>8} {:>9} {:>22} {:>22}",
            row.what,
            row.executor,
            row.replicas,
            row.running.cell(),
            row.answering.cell()
        );
    }
    for o in &report.runc_overhead {
        println!(
            "runc + overlay over the built-in executor, {:>2} replicas: {:+.0} ms to running, {:+.0} ms to answering",
            o.replicas, o.running_ms, o.answering_ms
        );
    }
    println!(
        "Docker: a container starts in ~{}-{} s; Swarm's create -> running for 10 replicas takes seconds",
        report.docker_container_start_s.0, report.docker_container_start_s.1
    );
}
