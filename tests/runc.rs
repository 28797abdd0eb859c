//! OCI images run by runc through the executor: a busybox image built in the
//! test with umoci (its Entrypoint, Cmd, Env, WorkingDir, User and
//! StopSignal set with `umoci config`), unpacked, and handed to the executor
//! through an [`ImageSource`] that reads the OCI layout. Each check is what a
//! user sees: log lines, exit codes, files kept or not across tasks, and that
//! nothing (process, mount, cgroup, runc state, directory) is left.
//!
//! Needs root, `runc`, `umoci` and `busybox` (static); skipped with a printed
//! reason without them, a failure when `CI` is set. Every test has its own
//! directories, cgroup parent and runc root, removed also when it fails.

use std::{
    collections::HashMap,
    future::Future,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use hive::executor::{
    ContainerImage, Executor, ExecutorConfig, ExitStatus, ImageSource, ImageSourceError, LogEntry,
    LogOptions, Mount, MountKind, NamespaceExecutor, NoNetworks, OciRuntime, PreparedTask,
    TaskSpec, oci::Runc,
};
use nix::sys::signal::Signal;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

const HIVE: &str = env!("CARGO_BIN_EXE_hive");
const IMAGE: &str = "hive-test/busybox:1";
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

fn privileged(test: &str) -> bool {
    if !hive_test_support::root_or_skip(test, "it runs containers with runc") {
        return false;
    }
    for tool in ["runc", "umoci", "busybox"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: {tool} is missing (cargo xtask setup installs it)"
            );
            eprintln!("skipping {test}: {tool} is missing (cargo xtask setup installs it)");
            return false;
        }
    }
    true
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Build the test image in `dir` with umoci and unpack it: a busybox root
/// with a user `app` (uid 1000), Entrypoint `/bin/echo entry`, Cmd `cmd`,
/// Env `GREETING=hello`, WorkingDir `/srv`, User `app`, StopSignal SIGUSR1.
fn build_image(dir: &Path) -> ContainerImage {
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    let unpacked = dir.join("unpacked");
    let (l, b, u) = (
        layout.to_str().expect("utf-8"),
        bundle.to_str().expect("utf-8"),
        unpacked.to_str().expect("utf-8"),
    );
    let image = format!("{l}:1");
    run("umoci", &["init", "--layout", l]);
    run("umoci", &["new", "--image", &image]);
    run("umoci", &["unpack", "--image", &image, b]);
    let rootfs = bundle.join("rootfs");
    for sub in ["bin", "etc", "srv", "tmp"] {
        std::fs::create_dir_all(rootfs.join(sub)).expect("mkdir");
    }
    std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod /tmp");
    let busybox = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v busybox"])
            .output()
            .expect("busybox")
            .stdout,
    )
    .expect("utf-8");
    std::fs::copy(busybox.trim(), rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in [
        "sh", "echo", "cat", "ls", "id", "pwd", "sleep", "touch", "hostname", "true", "wc",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("symlink");
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\napp:x:1000:\n").expect("group");
    run("umoci", &["repack", "--image", &image, b]);
    run(
        "umoci",
        &[
            "config",
            "--image",
            &image,
            "--config.entrypoint",
            "/bin/echo",
            "--config.entrypoint",
            "entry",
            "--config.cmd",
            "cmd",
            "--config.env",
            "GREETING=hello",
            "--config.workingdir",
            "/srv",
            "--config.user",
            "app",
            "--config.stopsignal",
            "SIGUSR1",
        ],
    );
    run("umoci", &["unpack", "--image", &image, u]);
    ContainerImage {
        layers: vec![unpacked.join("rootfs")],
        config: image_config(&layout, "1"),
        health_check: None,
    }
}

/// The image configuration of tag `tag` in an OCI layout.
fn image_config(layout: &Path, tag: &str) -> ImageConfiguration {
    let blob = |digest: &str| {
        let (algorithm, hex) = digest.split_once(':').expect("digest");
        layout.join("blobs").join(algorithm).join(hex)
    };
    let index = ImageIndex::from_file(layout.join("index.json")).expect("index.json");
    let descriptor = index
        .manifests()
        .iter()
        .find(|m| {
            m.annotations()
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                .is_some_and(|name| name == tag)
        })
        .expect("tagged manifest");
    let manifest = ImageManifest::from_file(blob(descriptor.digest().as_ref())).expect("manifest");
    ImageConfiguration::from_file(blob(manifest.config().digest().as_ref())).expect("config")
}

/// Images by reference, as the node's image store will hand them out.
#[derive(Debug)]
struct Images(HashMap<String, ContainerImage>);

impl ImageSource for Images {
    fn image<'a>(
        &'a self,
        reference: &'a str,
        _auth: Option<&'a hive::image_store::RegistryAuth>,
    ) -> BoxFuture<'a, Result<ContainerImage, ImageSourceError>> {
        Box::pin(async move {
            self.0
                .get(reference)
                .cloned()
                .ok_or_else(|| ImageSourceError::NotFound {
                    reference: reference.to_owned(),
                })
        })
    }
}

/// An executor with runc and the test image; removes every task it made,
/// the executor's directories and cgroups when dropped.
struct Harness {
    test: String,
    runtime: tokio::runtime::Runtime,
    executor: Arc<NamespaceExecutor>,
    config: ExecutorConfig,
    oci: OciRuntime,
    tasks: Mutex<Vec<PreparedTask>>,
    dir: tempfile::TempDir,
}

impl Harness {
    fn new(test: &str) -> Option<Self> {
        if !privileged(test) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("runc-test-")
            .tempdir()
            .expect("tempdir");
        let image = build_image(&dir.path().join("image"));
        let config = ExecutorConfig {
            run_dir: dir.path().join("run"),
            state_dir: dir.path().join("tasks"),
            cgroup_parent: PathBuf::from(format!("hive-test/runc-{test}-{}", std::process::id())),
            hive_binary: PathBuf::from(HIVE),
        };
        let oci = OciRuntime {
            runc: Runc {
                binary: PathBuf::from("runc"),
                root: dir.path().join("run/runc"),
            },
            images: Arc::new(Images(HashMap::from([(IMAGE.to_owned(), image)]))),
            volumes_dir: dir.path().join("volumes"),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let harness = Self {
            test: test.to_owned(),
            executor: Arc::new(Self::executor(&runtime, &config, &oci)),
            runtime,
            config,
            oci,
            tasks: Mutex::new(Vec::new()),
            dir,
        };
        Some(harness)
    }

    fn executor(
        runtime: &tokio::runtime::Runtime,
        config: &ExecutorConfig,
        oci: &OciRuntime,
    ) -> NamespaceExecutor {
        let _guard = runtime.enter();
        NamespaceExecutor::new(config.clone(), Arc::new(NoNetworks))
            .expect("executor")
            .with_oci(oci.clone())
            .expect("runc")
    }

    fn spec(&self, name: &str) -> TaskSpec {
        TaskSpec::new(
            format!("runc-{}-{name}-{}", self.test, std::process::id()),
            IMAGE,
        )
    }

    fn script(&self, name: &str, script: &str) -> TaskSpec {
        let mut spec = self.spec(name);
        spec.command = vec!["/bin/sh".into(), "-c".into()];
        spec.args = vec![script.into()];
        spec
    }

    fn run<T>(&self, body: impl Future<Output = T>) -> T {
        self.runtime
            .block_on(async { tokio::time::timeout(TEST_TIMEOUT, body).await })
            .unwrap_or_else(|_| panic!("{} did not finish within {TEST_TIMEOUT:?}", self.test))
    }

    fn prepare(&self, spec: &TaskSpec) -> PreparedTask {
        let task = self
            .run(self.executor.prepare(spec))
            .unwrap_or_else(|err| panic!("prepare {}: {err}", spec.task_id));
        self.tasks.lock().expect("tasks").push(task.clone());
        task
    }

    /// Prepare, start, wait: the exit status and the log lines.
    fn run_to_end(&self, spec: &TaskSpec) -> (ExitStatus, Vec<String>) {
        let task = self.prepare(spec);
        self.run(async {
            self.executor.start(&task).await.expect("start");
            let status = self.executor.wait(&task).await.expect("wait");
            let lines = log_lines(&self.executor, &task).await;
            self.executor.remove(&task).await.expect("remove");
            (status, lines)
        })
    }

    fn cgroup_dirs(&self, task: &PreparedTask) -> Vec<PathBuf> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        mountinfo
            .lines()
            .filter(|l| l.contains(" - cgroup"))
            .filter_map(|l| l.split(' ').nth(4))
            .map(|root| {
                Path::new(root)
                    .join(&self.config.cgroup_parent)
                    .join(&task.task_id)
            })
            .collect()
    }

    /// What a finished task must not leave behind.
    fn assert_gone(&self, task: &PreparedTask, pid: u32) {
        // The killed init may stay a zombie for a moment, until the executor
        // that started it (this process, its subreaper) has reaped it.
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        for _ in 0..500 {
            if !proc_dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!proc_dir.exists(), "process {pid} is still there");
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(
            !mountinfo.contains(task.state_dir.to_str().expect("utf-8")),
            "a mount under {} is left",
            task.state_dir.display()
        );
        for dir in self.cgroup_dirs(task) {
            assert!(!dir.exists(), "cgroup {} is left", dir.display());
        }
        assert!(
            !task.state_dir.exists(),
            "{} is left",
            task.state_dir.display()
        );
        let state = Command::new("runc")
            .arg("--root")
            .arg(&self.oci.runc.root)
            .args(["state", &task.container_id])
            .output()
            .expect("runc state");
        assert!(!state.status.success(), "runc still knows the container");
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            if let Err(err) = self.runtime.block_on(self.executor.remove(&task)) {
                eprintln!("{}: cleaning up task {}: {err}", self.test, task.task_id);
            }
        }
        self.runtime.block_on(self.executor.release());
        // Last resort: no cgroup of this test may stay.
        hive::executor::oci::release_cgroup_parents(&self.config.cgroup_parent);
        let _ = &self.dir;
    }
}

async fn log_lines(executor: &NamespaceExecutor, task: &PreparedTask) -> Vec<String> {
    let entries: Vec<LogEntry> = executor
        .logs(task, LogOptions::default())
        .await
        .expect("open logs")
        .collect()
        .await
        .expect("read logs");
    entries.into_iter().map(|e| e.line).collect()
}

/// Poll the log until a line equals `line` (bounded by the test timeout).
async fn wait_for_line(executor: &NamespaceExecutor, task: &PreparedTask, line: &str) {
    while !log_lines(executor, task).await.iter().any(|l| l == line) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn the_images_entrypoint_cmd_env_workdir_and_user_apply_as_in_docker() {
    let Some(h) = Harness::new("config") else {
        return;
    };
    // The image as it is: Entrypoint + Cmd.
    let (status, lines) = h.run_to_end(&h.spec("default"));
    assert_eq!(status, ExitStatus::Exited(0));
    assert_eq!(lines, ["entry cmd"]);

    // Arguments replace the Cmd only.
    let mut args = h.spec("args");
    args.args = vec!["other".into(), "words".into()];
    assert_eq!(h.run_to_end(&args).1, ["entry other words"]);

    // --entrypoint replaces both; Env, WorkingDir and User are the image's.
    let show = r#"echo "$GREETING $(pwd) $(id -u):$(id -g) $HOSTNAME $(hostname) $HOME"; exit 3"#;
    let spec = h.script("show", show);
    let task = h.prepare(&spec);
    let (status, lines) = h.run(async {
        h.executor.start(&task).await.expect("start");
        let status = h.executor.wait(&task).await.expect("wait");
        (status, log_lines(&h.executor, &task).await)
    });
    assert_eq!(status, ExitStatus::Exited(3));
    let short = task.short_id();
    assert_eq!(
        lines,
        [format!("hello /srv 1000:1000 {short} {short} /home/app")]
    );

    // The task's --env, --workdir, --user, --hostname win.
    let mut spec = h.script("override", show);
    spec.env = vec!["GREETING=bye".into()];
    spec.workdir = Some("/tmp".into());
    spec.user = Some("0:0".into());
    spec.hostname = Some("web-1".into());
    assert_eq!(h.run_to_end(&spec).1, ["bye /tmp 0:0 web-1 web-1 /root"]);

    // An image the node lacks is Docker's error.
    let mut missing = h.spec("missing");
    missing.image = "nowhere/nothing:1".into();
    let err = h
        .run(h.executor.prepare(&missing))
        .expect_err("missing image");
    assert_eq!(err.to_string(), "No such image: nowhere/nothing:1");
}

#[test]
fn init_runs_dockers_init_as_pid_1_and_passes_the_exit_code_on() {
    let Some(h) = Harness::new("init") else {
        return;
    };
    if !Path::new(hive::executor::oci::DOCKER_INIT_SOURCE).is_file() {
        eprintln!("skipping: no tini-static (cargo xtask setup installs tini)");
        return;
    }
    let show = "echo \"$$ $(cat /proc/1/comm)\"; exit 4";
    // Without --init the command is PID 1, as in Docker.
    let (status, lines) = h.run_to_end(&h.script("plain", show));
    assert_eq!(status, ExitStatus::Exited(4));
    assert_eq!(lines, ["1 sh"]);
    // With it, docker's init is PID 1 and the command its child; the exit code passes through.
    let mut spec = h.script("with-init", show);
    spec.init = Some(true);
    let (status, lines) = h.run_to_end(&spec);
    assert_eq!(status, ExitStatus::Exited(4), "{lines:?}");
    let [line] = lines.as_slice() else {
        panic!("one line: {lines:?}");
    };
    let (pid, comm) = line.split_once(' ').expect("pid and comm");
    assert_ne!(pid, "1", "{line}");
    assert_eq!(comm, "docker-init", "{line}");
}

#[test]
fn shutdown_sends_the_images_stop_signal_then_kills_after_the_grace_period() {
    let Some(h) = Harness::new("stop") else {
        return;
    };
    // The image's StopSignal is SIGUSR1; as PID 1 the shell gets it because
    // it has a handler.
    let trap = "trap 'echo stopping; exit 0' USR1; echo ready; while true; do sleep 0.1; done";
    let graceful = h.prepare(&h.script("graceful", trap));
    let status = h.run(async {
        h.executor.start(&graceful).await.expect("start");
        wait_for_line(&h.executor, &graceful, "ready").await;
        h.executor.shutdown(&graceful).await.expect("shutdown");
        h.executor.wait(&graceful).await.expect("wait")
    });
    assert_eq!(status, ExitStatus::Exited(0));
    let lines = h.run(log_lines(&h.executor, &graceful));
    assert_eq!(lines, ["ready", "stopping"]);

    // A program that ignores its stop signal is killed after the grace period.
    let mut stubborn = h.script(
        "stubborn",
        "trap '' USR1 TERM; echo ready; while true; do sleep 0.1; done",
    );
    stubborn.stop_grace_period = Duration::from_millis(500);
    let task = h.prepare(&stubborn);
    let (pid, status) = h.run(async {
        let started = h.executor.start(&task).await.expect("start");
        wait_for_line(&h.executor, &task, "ready").await;
        h.executor.shutdown(&task).await.expect("shutdown");
        (started.pid, h.executor.wait(&task).await.expect("wait"))
    });
    assert_eq!(status, ExitStatus::Signaled(Signal::SIGKILL));
    assert_eq!(status.code(), 137);
    h.run(h.executor.remove(&task)).expect("remove");
    h.assert_gone(&task, pid);
}

#[test]
fn volumes_persist_tmpfs_starts_empty_and_read_only_mounts_refuse_writes() {
    let Some(h) = Harness::new("mounts") else {
        return;
    };
    let shared = h.dir.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::write(shared.join("note"), "from the host\n").expect("write");
    let mounts = vec![
        Mount {
            target: "/data".into(),
            readonly: false,
            kind: MountKind::Volume {
                name: "runc-test-data".into(),
                options: Default::default(),
            },
        },
        Mount {
            target: "/scratch".into(),
            readonly: false,
            kind: MountKind::Tmpfs {
                size_bytes: Some(1 << 20),
            },
        },
        Mount {
            target: "/shared".into(),
            readonly: true,
            kind: MountKind::Bind {
                source: shared.clone(),
            },
        },
    ];
    let script = "cat /data/kept 2>/dev/null || echo no file; ls /scratch | wc -l; \
                  echo kept > /data/kept; touch /scratch/x; cat /shared/note; \
                  touch /shared/x 2>/dev/null && echo shared writable || echo shared read-only; \
                  touch /rootfile 2>/dev/null && echo root writable || echo root read-only";
    let mut first = h.script("first", script);
    first.user = Some("0".into());
    first.mounts = mounts.clone();
    let (status, lines) = h.run_to_end(&first);
    assert_eq!(status, ExitStatus::Exited(0), "{lines:?}");
    assert_eq!(
        lines,
        [
            "no file",
            "0",
            "from the host",
            "shared read-only",
            "root writable"
        ]
    );

    let mut second = h.script("second", script);
    second.user = Some("0".into());
    second.mounts = mounts;
    second.read_only = true;
    let (_, lines) = h.run_to_end(&second);
    assert_eq!(
        lines,
        [
            "kept",
            "0",
            "from the host",
            "shared read-only",
            "root read-only"
        ]
    );
    assert!(!shared.join("x").exists());
    assert_eq!(
        std::fs::read_to_string(h.oci.volumes_dir.join("runc-test-data/_data/kept"))
            .expect("the volume is on the node"),
        "kept\n"
    );

    // A bind source that does not exist is the task's error, as Docker says it.
    let mut bad = h.spec("bad-bind");
    bad.mounts = vec![Mount {
        target: "/x".into(),
        readonly: false,
        kind: MountKind::Bind {
            source: "/no/such/hive/dir".into(),
        },
    }];
    let err = h.run(h.executor.prepare(&bad)).expect_err("missing source");
    assert!(
        err.to_string().ends_with(
            "invalid mount config for type \"bind\": bind source path does not exist: /no/such/hive/dir"
        ),
        "{err}"
    );
    assert!(!h.config.state_dir.join(&bad.task_id).exists());
}

#[test]
fn a_new_executor_adopts_running_containers_and_removes_those_of_a_dead_one() {
    let Some(h) = Harness::new("adopt") else {
        return;
    };
    let forever = "echo up; while true; do sleep 0.1; done";
    let mut kept = h.script("kept", forever);
    kept.stop_grace_period = Duration::from_millis(500);
    let kept = h.prepare(&kept);
    let orphan = h.prepare(&h.script("orphan", forever));
    let (kept_pid, orphan_pid) = h.run(async {
        let kept_pid = h.executor.start(&kept).await.expect("start").pid;
        let orphan_pid = h.executor.start(&orphan).await.expect("start").pid;
        wait_for_line(&h.executor, &kept, "up").await;
        (kept_pid, orphan_pid)
    });

    // The daemon "restarts": a new executor over the same directories.
    let next = Harness::executor(&h.runtime, &h.config, &h.oci);
    let adopted = h
        .run(next.adopt(&kept, kept_pid))
        .expect("adopt the running container");
    assert_eq!(adopted.pid, kept_pid, "the container was not restarted");
    assert!(Path::new(&format!("/proc/{kept_pid}")).exists());
    // A PID that is not the container's init is refused.
    assert!(h.run(next.adopt(&orphan, kept_pid)).is_err());

    // A task the new executor never adopted is still removed completely.
    h.run(next.remove(&orphan)).expect("remove the orphan");
    h.assert_gone(&orphan, orphan_pid);

    h.run(async {
        next.shutdown(&kept).await.expect("shutdown");
        next.remove(&kept).await.expect("remove");
    });
    h.assert_gone(&kept, kept_pid);
    h.run(next.release());
}

/// The mount points under `dir` in this mount namespace.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_str().expect("utf-8");
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|point| point.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Unmounts whatever a failed test left under the volumes directory.
struct UnmountGuard(PathBuf);

impl Drop for UnmountGuard {
    fn drop(&mut self) {
        for point in mounts_under(&self.0).iter().rev() {
            let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[test]
fn a_volume_with_local_driver_options_mounts_its_device_until_removed() {
    let Some(h) = Harness::new("volopt") else {
        return;
    };
    let _guard = UnmountGuard(h.oci.volumes_dir.clone());
    let options = [("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let mut spec = h.script(
        "tmpfs",
        "grep ' /data ' /proc/mounts | cut -d' ' -f3; \
         dd if=/dev/zero of=/data/big bs=1024 count=2048 2>/dev/null && echo wrote 2 MiB || echo full",
    );
    spec.user = Some("0".into());
    spec.mounts = vec![Mount {
        target: "/data".into(),
        readonly: false,
        kind: MountKind::Volume {
            name: "runc-test-opts".into(),
            options: options.clone().into(),
        },
    }];
    let (status, lines) = h.run_to_end(&spec);
    assert_eq!(status, ExitStatus::Exited(0), "{lines:?}");
    assert_eq!(lines, ["tmpfs", "full"]);

    let store =
        hive::volume_store::VolumeStore::new(h.oci.volumes_dir.clone(), h.config.state_dir.clone());
    let volume = store.inspect("runc-test-opts").expect("inspect");
    assert_eq!(volume.options, options.into());
    assert_eq!(
        mounts_under(&h.oci.volumes_dir),
        [volume.mountpoint.to_str().expect("utf-8")],
        "the device stays mounted between tasks"
    );
    store.remove("runc-test-opts").expect("volume rm");
    assert_eq!(mounts_under(&h.oci.volumes_dir), Vec::<String>::new());
    assert!(!volume.mountpoint.exists());
}
