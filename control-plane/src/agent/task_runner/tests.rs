use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use nix::sys::signal::Signal;
use tokio::sync::watch;

use super::*;
use crate::executor::{ExecutorError, LogOptions, LogReader, StartedTask};
use crate::store::objects::TaskSpec;

/// An executor whose tasks are `watch` channels: `exit` ends one, `shutdown` ends it with
/// SIGTERM. Image `missing` cannot be prepared.
#[derive(Debug, Default)]
struct FakeExecutor {
    exits: Mutex<HashMap<String, watch::Sender<Option<ExitStatus>>>>,
    removed: Mutex<Vec<String>>,
}

impl FakeExecutor {
    fn exit(&self, task: &str, status: ExitStatus) {
        self.exits.lock().unwrap()[task].send_replace(Some(status));
    }
}

fn prepared(spec: &ExecSpec) -> PreparedTask {
    PreparedTask {
        task_id: spec.task_id.clone(),
        container_id: "c".repeat(64),
        hostname: "h".into(),
        netns: PathBuf::new(),
        cgroups: Vec::new(),
        state_dir: PathBuf::new(),
        log_path: PathBuf::new(),
        argv: Vec::new(),
        init: false,
        addresses: Vec::new(),
        networks: Default::default(),
        stop_grace_period: Duration::from_secs(1),
        container: None,
    }
}

impl Executor for FakeExecutor {
    fn prepare<'a>(
        &'a self,
        spec: &'a ExecSpec,
    ) -> BoxFuture<'a, Result<PreparedTask, ExecutorError>> {
        Box::pin(async move {
            if spec.image == "missing" {
                return Err(ExecutorError::Config {
                    reason: "no such image: missing".into(),
                });
            }
            self.exits
                .lock()
                .unwrap()
                .insert(spec.task_id.clone(), watch::channel(None).0);
            Ok(prepared(spec))
        })
    }

    fn start<'a>(
        &'a self,
        _task: &'a PreparedTask,
    ) -> BoxFuture<'a, Result<StartedTask, ExecutorError>> {
        Box::pin(async { Ok(StartedTask { pid: 4242 }) })
    }

    fn wait<'a>(
        &'a self,
        task: &'a PreparedTask,
    ) -> BoxFuture<'a, Result<ExitStatus, ExecutorError>> {
        Box::pin(async move {
            let mut exit = self.exits.lock().unwrap()[&task.task_id].subscribe();
            let status = exit.wait_for(Option::is_some).await.unwrap();
            Ok(status.unwrap())
        })
    }

    fn shutdown<'a>(&'a self, task: &'a PreparedTask) -> BoxFuture<'a, Result<(), ExecutorError>> {
        Box::pin(async move {
            self.exits.lock().unwrap()[&task.task_id].send_if_modified(|s| {
                s.is_none() && s.replace(ExitStatus::Signaled(Signal::SIGTERM)).is_none()
            });
            Ok(())
        })
    }

    fn remove<'a>(&'a self, task: &'a PreparedTask) -> BoxFuture<'a, Result<(), ExecutorError>> {
        Box::pin(async move {
            self.removed.lock().unwrap().push(task.task_id.clone());
            Ok(())
        })
    }

    fn logs<'a>(
        &'a self,
        task: &'a PreparedTask,
        _options: LogOptions,
    ) -> BoxFuture<'a, Result<LogReader, ExecutorError>> {
        Box::pin(async move {
            Err(ExecutorError::NotStarted {
                task_id: task.task_id.clone(),
            })
        })
    }
}

struct Harness {
    executor: Arc<FakeExecutor>,
    statuses: StatusQueue,
    desired: watch::Sender<Desired>,
    runner: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
    store: PreparedStore,
}

fn start(image: &str, desired: TaskState) -> Harness {
    start_with_refusals(image, desired, None)
}

fn start_with_refusals(
    image: &str,
    desired: TaskState,
    refusals: Option<watch::Receiver<MeshRefusals>>,
) -> Harness {
    let executor = Arc::new(FakeExecutor::default());
    let statuses = StatusQueue::default();
    let dir = tempfile::tempdir().unwrap();
    let store = PreparedStore {
        dir: dir.path().join("prepared"),
    };
    let mut task = Task {
        id: "t1".into(),
        desired_state: desired,
        spec: TaskSpec::default(),
        ..Task::default()
    };
    task.spec.container.image = image.into();
    task.status.state = TaskState::Assigned;
    let (sender, receiver) = watch::channel(Desired::new(desired));
    task.service_id = "web".into();
    let mut runner = TaskRunner::new(task, executor.clone(), statuses.clone(), store.clone());
    runner.mesh_refusals = refusals;
    Harness {
        executor,
        statuses,
        desired: sender,
        runner: tokio::spawn(runner.run(receiver)),
        _dir: dir,
        store,
    }
}

impl Harness {
    /// Waits until the latest reported status is `state`, and returns it.
    async fn until(&self, state: TaskState) -> TaskStatus {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some((_, status)) = self.statuses.pending().pop()
                    && status.state == state
                {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {state} status; pending: {:?}", self.statuses.pending()))
    }

    async fn gone(self) -> Arc<FakeExecutor> {
        self.desired.send_modify(|d| d.gone = true);
        tokio::time::timeout(Duration::from_secs(5), self.runner)
            .await
            .expect("the runner ends")
            .unwrap();
        self.executor
    }
}

#[tokio::test]
async fn a_task_runs_to_completion_and_is_removed_when_it_leaves_the_set() {
    let h = start("hive/whoami", TaskState::Running);
    let running = h.until(TaskState::Running).await;
    assert_eq!(running.message, "started");
    assert_eq!(running.runtime.as_ref().unwrap().pid, 4242);
    assert_eq!(h.store.list().len(), 1, "the prepared task is on disk");
    h.executor.exit("t1", ExitStatus::Exited(0));
    let done = h.until(TaskState::Complete).await;
    assert_eq!(done.runtime.unwrap().exit_code, 0);
    let store = h.store.clone();
    let executor = h.gone().await;
    assert_eq!(*executor.removed.lock().unwrap(), vec!["t1".to_owned()]);
    assert!(store.list().is_empty());
}

#[tokio::test]
async fn a_running_task_says_when_its_node_cannot_program_its_service() {
    let refusals = watch::Sender::new(MeshRefusals::default());
    let h = start_with_refusals(
        "hive/whoami",
        TaskState::Running,
        Some(refusals.subscribe()),
    );
    let running = h.until(TaskState::Running).await;
    assert_eq!(running.err, "");
    // Another service refused: nothing to say.
    refusals.send_replace(Arc::new([("api".to_owned(), "no".to_owned())].into()));
    refusals.send_replace(Arc::new([("web".to_owned(), "cannot".to_owned())].into()));
    let latest = |err: &'static str| {
        let statuses = h.statuses.clone();
        tokio::time::timeout(Duration::from_secs(5), async move {
            loop {
                if let Some((_, status)) = statuses.pending().pop()
                    && status.err == err
                {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let refused = latest("cannot").await.expect("the refusal is reported");
    assert_eq!(
        (refused.state, refused.message.as_str()),
        (TaskState::Running, "started")
    );
    assert_eq!(
        refused.runtime.unwrap().pid,
        4242,
        "the rest of the status stays"
    );
    refusals.send_replace(MeshRefusals::default());
    let cleared = latest("")
        .await
        .expect("the error is cleared once the service is programmed");
    assert_eq!(cleared.state, TaskState::Running);
    h.gone().await;
}

#[tokio::test]
async fn a_non_zero_exit_fails_the_task_with_its_code() {
    let h = start("hive/whoami", TaskState::Running);
    h.until(TaskState::Running).await;
    h.executor.exit("t1", ExitStatus::Exited(3));
    let failed = h.until(TaskState::Failed).await;
    assert_eq!(failed.err, "task: non-zero exit (3)");
    assert_eq!(failed.runtime.unwrap().exit_code, 3);
    h.gone().await;
}

#[tokio::test]
async fn desired_shutdown_stops_a_running_task() {
    let h = start("hive/whoami", TaskState::Running);
    h.until(TaskState::Running).await;
    h.desired.send_modify(|d| d.state = TaskState::Shutdown);
    let stopped = h.until(TaskState::Shutdown).await;
    assert_eq!(stopped.runtime.unwrap().exit_code, 128 + 15);
    h.gone().await;
}

#[tokio::test]
async fn an_unknown_image_is_rejected_with_the_executors_message() {
    let h = start("missing", TaskState::Running);
    let rejected = h.until(TaskState::Rejected).await;
    assert!(rejected.err.contains("no such image"), "{}", rejected.err);
    let executor = h.gone().await;
    assert!(executor.removed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn desired_ready_only_prepares_then_running_starts() {
    let h = start("hive/whoami", TaskState::Ready);
    h.until(TaskState::Ready).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.statuses.pending()[0].1.state, TaskState::Ready);
    h.desired.send_modify(|d| d.state = TaskState::Running);
    h.until(TaskState::Running).await;
    h.gone().await;
}

#[test]
fn store_tasks_become_executor_specs() {
    let mut task = Task {
        id: "t1".into(),
        ..Task::default()
    };
    let c = &mut task.spec.container;
    c.image = "hive/echo".into();
    c.command = vec!["/bin/sh".into()];
    c.args = vec!["-c".into(), "true".into()];
    c.env = vec!["A=1".into()];
    c.hostname = "web-1".into();
    c.stop_grace_period = Duration::from_secs(3);
    task.spec.resources.limits.memory_bytes = 64 << 20;
    task.networks = vec![crate::store::objects::NetworkAttachment {
        network_id: "ing".into(),
        addresses: vec!["10.0.0.3/24".parse().unwrap()],
        aliases: Vec::new(),
    }];
    let spec = executor_spec(&task);
    assert_eq!(spec.image, "hive/echo");
    assert_eq!(spec.command, vec!["/bin/sh"]);
    assert_eq!(spec.args, vec!["-c", "true"]);
    assert_eq!(spec.hostname.as_deref(), Some("web-1"));
    assert_eq!(spec.workdir, None);
    assert_eq!(spec.limits.memory_bytes, 64 << 20);
    assert_eq!(spec.stop_grace_period, Duration::from_secs(3));
    assert_eq!(spec.networks[0].addresses, vec!["10.0.0.3/24"]);
    spec.validate().expect("a valid spec");
}

#[test]
fn the_image_s_healthcheck_runs_unless_the_service_sets_or_disables_one() {
    use crate::executor::oci::{OciContainer, runc::Runc};
    use crate::store::objects::{HealthConfig, HealthTest};
    let image_check = HealthConfig {
        test: HealthTest::Cmd(vec!["/bin/check".into()]),
        interval: Duration::from_secs(7),
        ..HealthConfig::default()
    };
    let mut from_image = prepared(&ExecSpec::new("t1", "img"));
    from_image.container = Some(OciContainer {
        runc: Runc {
            binary: PathBuf::from("runc"),
            root: PathBuf::new(),
        },
        bundle: PathBuf::new(),
        rootfs: PathBuf::new(),
        stop_signal: "SIGTERM".into(),
        health_check: Some(image_check),
    });
    let mut task = Task::default();
    // No check in the service: the image's, with docker's defaults for what it leaves unset.
    let check = health_check(&task, &from_image).expect("the image's check");
    assert_eq!(check.argv, vec!["/bin/check".to_owned()]);
    assert_eq!(check.interval, Duration::from_secs(7));
    assert_eq!(check.retries, 3);
    // `--health-retries 1` alone: over the image's.
    task.spec.container.health_check = Some(HealthConfig {
        retries: 1,
        ..HealthConfig::default()
    });
    let check = health_check(&task, &from_image).expect("a check");
    assert_eq!((check.argv.len(), check.retries), (1, 1));
    // `--no-healthcheck`: none, even with the image's.
    task.spec.container.health_check = Some(HealthConfig {
        test: HealthTest::None,
        ..HealthConfig::default()
    });
    assert!(health_check(&task, &from_image).is_none());
    // Neither: none.
    task.spec.container.health_check = None;
    let plain = prepared(&ExecSpec::new("t2", "img"));
    assert!(health_check(&task, &plain).is_none());
}
