//! Fixtures for the loop tests: a real single-manager store on disk, fake nodes, and a fake
//! agent that reports task states by writing them into the store, as a node's agent would
//! through the dispatcher. Timeouts only bound how long a broken test hangs.

use std::collections::BTreeMap;
use std::time::Duration;

use tempfile::TempDir;

use crate::manager::allocator::Allocator;
use crate::manager::leader_loop::{Reconciler, Scope, filter};
use crate::manager::orchestrator::Orchestrator;
use crate::manager::scheduler::Scheduler;
use crate::store::local_network::LocalRouter;
use crate::store::objects::{
    Annotations, Node, NodeDescription, NodeState, Resources, Service, ServiceMode, ServiceSpec,
    Task, TaskState, Timestamp,
};
use crate::store::{ReadView, Store, StoreConfig, StoreError, Watch, objects_decoded};

/// Bounds every wait in loop tests.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A one-manager swarm with the three loops, driven pass by pass as `leader_loop::run` drives
/// them: a full pass first, then passes over the changes committed since the last one (a tick
/// when there were none).
pub struct Swarm {
    pub store: Store,
    pub orchestrator: Orchestrator,
    pub allocator: Allocator,
    pub scheduler: Scheduler,
    /// Each loop's watch, from its first pass on.
    watches: [Option<Watch>; 3],
    /// What the loops' passes cost, per loop (reset it to measure from a point on).
    pub costs: BTreeMap<&'static str, Cost>,
    _dir: TempDir,
}

/// What a loop's passes cost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub passes: u64,
    /// Store objects the passes decoded.
    pub decoded: u64,
    /// CPU time of the calling thread over the passes: the pass, and the Raft work this
    /// current-thread runtime did meanwhile (commit waits do not count).
    pub cpu: Duration,
}

/// CPU time the calling thread has used.
pub fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to write; the clock ID is a constant
    // every Linux has.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// One pass of `reconciler` over what its watch delivered since the last, counted in `costs`.
async fn drive<R: Reconciler>(
    reconciler: &mut R,
    store: &Store,
    watch: &mut Option<Watch>,
    costs: &mut BTreeMap<&'static str, Cost>,
) -> bool {
    let scope = match watch {
        None => {
            *watch = Some(store.watch(filter(reconciler.kinds())));
            Scope::Full
        }
        Some(watch) => {
            let mut events = Vec::new();
            let mut lost = false;
            while let Some(Some(next)) = futures::FutureExt::now_or_never(watch.next()) {
                match next {
                    Ok(event) => events.push(event),
                    Err(_) => lost = true,
                }
            }
            if lost {
                Scope::Full
            } else if events.is_empty() {
                Scope::Tick
            } else {
                Scope::Changed(events)
            }
        }
    };
    let (decoded, start) = (objects_decoded(), thread_cpu());
    let wrote = reconciler.pass(store, scope).await.unwrap();
    let cost = costs.entry(R::NAME).or_default();
    cost.passes += 1;
    cost.decoded += objects_decoded() - decoded;
    cost.cpu += thread_cpu().saturating_sub(start);
    wrote
}

impl Swarm {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let router = LocalRouter::new();
        let mut config = StoreConfig::new(dir.path(), 1);
        config.raft.heartbeat_interval = 50;
        config.raft.election_timeout_min = 300;
        config.raft.election_timeout_max = 600;
        config.request_timeout = PATIENCE;
        let store = Store::open(config, router.clone()).await.unwrap();
        router.register(1, store.raft().clone());
        store.bootstrap("10.0.0.1:2377").await.unwrap();
        store
            .raft()
            .wait(Some(PATIENCE))
            .current_leader(1, "this manager leads")
            .await
            .unwrap();
        Self {
            store,
            orchestrator: Orchestrator::default(),
            allocator: Allocator::default(),
            scheduler: Scheduler::default(),
            watches: [None, None, None],
            costs: BTreeMap::new(),
            _dir: dir,
        }
    }

    /// A Ready, active worker with 4 CPUs and 8 GiB.
    pub async fn add_node(&self, hostname: &str) -> String {
        self.add_node_with(hostname, |_| {}).await
    }

    pub async fn add_node_with(&self, hostname: &str, change: impl FnOnce(&mut Node)) -> String {
        let mut node = Node {
            description: Some(NodeDescription {
                hostname: hostname.to_owned(),
                resources: Resources {
                    nano_cpus: 4_000_000_000,
                    memory_bytes: 8 << 30,
                },
                ..NodeDescription::default()
            }),
            ..Node::default()
        };
        node.status.state = NodeState::Ready;
        change(&mut node);
        self.store.update(|tx| tx.create(node)).await.unwrap()
    }

    pub async fn update_node(&self, id: &str, change: impl FnOnce(&mut Node)) {
        self.store
            .update(|tx| tx.modify::<Node>(id, change).map(drop))
            .await
            .unwrap();
    }

    pub async fn create_service(&self, service: Service) -> String {
        self.store.update(|tx| tx.create(service)).await.unwrap()
    }

    pub async fn update_service(&self, id: &str, change: impl FnOnce(&mut Service)) {
        self.store
            .update(|tx| tx.modify::<Service>(id, change).map(drop))
            .await
            .unwrap();
    }

    pub async fn delete_service(&self, id: &str) {
        self.store
            .update(|tx| tx.delete::<Service>(id))
            .await
            .unwrap();
    }

    /// Runs orchestrator, allocator and scheduler passes until none has anything to do.
    pub async fn converge(&mut self) {
        for _ in 0..100 {
            let [orchestrator, allocator, scheduler] = &mut self.watches;
            let costs = &mut self.costs;
            let mut wrote = drive(&mut self.orchestrator, &self.store, orchestrator, costs).await;
            wrote |= drive(&mut self.allocator, &self.store, allocator, costs).await;
            wrote |= drive(&mut self.scheduler, &self.store, scheduler, costs).await;
            if !wrote {
                return;
            }
        }
        panic!("the loops did not settle in 100 rounds");
    }

    /// One orchestrator pass alone: in a manager each loop runs on its own, so the
    /// orchestrator's next pass may come before the allocator and the scheduler saw a change.
    pub async fn orchestrate(&mut self) -> bool {
        let [orchestrator, _, _] = &mut self.watches;
        drive(
            &mut self.orchestrator,
            &self.store,
            orchestrator,
            &mut self.costs,
        )
        .await
    }

    /// Converges, lets the fake agents act, and repeats until nothing changes.
    pub async fn settle(&mut self) {
        for _ in 0..100 {
            self.converge().await;
            if !self.agents_act().await {
                return;
            }
        }
        panic!("the swarm did not settle in 100 rounds");
    }

    /// What agents do: start assigned tasks the manager wants running (on Ready nodes), stop
    /// tasks it wants stopped. Returns whether anything changed.
    pub async fn agents_act(&self) -> bool {
        self.store
            .update(|tx| {
                let ready: Vec<String> = tx
                    .find::<Node>(|n| n.status.state == NodeState::Ready)?
                    .into_iter()
                    .map(|n| n.id)
                    .collect();
                let mut changed = false;
                for mut task in tx.list::<Task>()? {
                    let on_ready = task.node_id.as_ref().is_some_and(|n| ready.contains(n));
                    let state = task.status.state;
                    let next = if state.is_terminal() || state < TaskState::Assigned || !on_ready {
                        None
                    } else if task.desired_state > TaskState::Running {
                        Some(TaskState::Shutdown)
                    } else if task.desired_state == TaskState::Running && state < TaskState::Running
                    {
                        Some(TaskState::Running)
                    } else {
                        None
                    };
                    if let Some(next) = next {
                        task.status.state = next;
                        task.status.timestamp = Timestamp::now();
                        tx.update(task)?;
                        changed = true;
                    }
                }
                Ok::<_, StoreError>(changed)
            })
            .await
            .unwrap()
    }

    /// The agent reports `state` for a task.
    pub async fn report(&self, task_id: &str, state: TaskState) {
        self.store
            .update(|tx| {
                tx.modify::<Task>(task_id, |t| {
                    t.status.state = state;
                    t.status.timestamp = Timestamp::now();
                })
                .map(drop)
            })
            .await
            .unwrap();
    }

    pub fn tasks(&self, service_id: &str) -> Vec<Task> {
        self.store
            .view(|tx| tx.find::<Task>(|t| t.service_id == service_id))
            .unwrap()
    }

    /// The tasks the manager wants running, by slot (replicated) — slot 0 holds global ones.
    pub fn live_tasks(&self, service_id: &str) -> Vec<Task> {
        let mut tasks: Vec<Task> = self
            .tasks(service_id)
            .into_iter()
            .filter(|t| t.desired_state <= TaskState::Running)
            .collect();
        tasks.sort_by_key(|t| (t.slot, t.node_id.clone()));
        tasks
    }

    pub fn get<T: crate::store::objects::StoreObject>(&self, id: &str) -> T {
        self.store.view(|tx| tx.get::<T>(id)).unwrap().unwrap()
    }
}

/// Live tasks per node ID.
pub fn per_node(tasks: &[Task]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for task in tasks {
        *counts
            .entry(task.node_id.clone().unwrap_or_default())
            .or_default() += 1;
    }
    counts
}

/// A replicated service running `image` with `replicas` tasks.
pub fn replicated(name: &str, replicas: u64) -> Service {
    let mut service = Service {
        spec: ServiceSpec {
            annotations: Annotations::named(name),
            mode: ServiceMode::Replicated { replicas },
            ..ServiceSpec::default()
        },
        ..Service::default()
    };
    service.spec.task_template.container.image = "hive/whoami".to_owned();
    service
}

pub fn global(name: &str) -> Service {
    let mut service = replicated(name, 0);
    service.spec.mode = ServiceMode::Global;
    service
}
