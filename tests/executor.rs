//! The embedded task executor with real processes, namespaces and cgroups:
//! tasks run the real `hive` binary (built-in images, `hive init-task`) and
//! host programs, and every check looks at the kernel's view (namespace
//! inodes, `/proc/<pid>/cgroup`, the limit files) or at what a user would
//! see (an HTTP answer, an echo, log lines, exit codes).
//!
//! Each test has its own cgroup parent, directories and task IDs, and a
//! guard that removes every task it prepared and the executor's
//! directories when the test ends, also when it fails. The tests need root;
//! without it they are skipped with a printed reason, or fail when `CI` is
//! set.

use crate::support::{self, file_group::FileGroup};
use std::{
    future::Future,
    io::{Read as _, Write as _},
    net::TcpStream,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use hive::executor::{
    AssignedAddr, AttachError, Executor, ExecutorConfig, ExecutorError, ExitStatus, ImageError,
    LogEntry, LogOptions, NamespaceExecutor, NetworkAttacher, NoNetworks, PreparedTask,
    ResourceLimits, SpecError, Stream, TaskNetworks, TaskSpec,
    cgroup::{self, CgroupMounts},
    spec::NetworkAttachment,
};
use hive_dataplane::netns;
use nix::sys::signal::Signal;

const HIVE: &str = env!("CARGO_BIN_EXE_hive");

/// Upper bound for any one test's body: a hang fails instead of blocking CI.
const TEST_TIMEOUT: Duration = Duration::from_secs(90);

/// Whether the test may run: root, or a skip (panic under CI).
fn privileged(test: &str) -> bool {
    hive_test_support::root_or_skip(test, "it creates namespaces, mounts and cgroups")
}

/// One executor with its own directories and cgroup parent; removes every
/// task it prepared, then the executor's directories, when dropped.
struct Harness {
    test: String,
    runtime: tokio::runtime::Runtime,
    executor: Arc<NamespaceExecutor>,
    config: ExecutorConfig,
    tasks: Mutex<Vec<PreparedTask>>,
    _dir: tempfile::TempDir,
    /// Last, so the file's group is left after the harness cleaned up.
    _group: FileGroup<'static>,
}

impl Harness {
    fn new(test: &str) -> Option<Self> {
        Self::with_attacher(test, Arc::new(NoNetworks))
    }

    fn with_attacher(test: &str, attacher: Arc<dyn NetworkAttacher>) -> Option<Self> {
        if !privileged(test) {
            return None;
        }
        let group = support::file_group();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ExecutorConfig {
            run_dir: dir.path().join("run"),
            state_dir: dir.path().join("tasks"),
            cgroup_parent: PathBuf::from(format!("hive-test/{test}-{}", std::process::id())),
            hive_binary: PathBuf::from(HIVE),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let executor =
            Arc::new(NamespaceExecutor::new(config.clone(), attacher).expect("executor"));
        Some(Self {
            test: test.to_owned(),
            runtime,
            executor,
            config,
            tasks: Mutex::new(Vec::new()),
            _dir: dir,
            _group: group,
        })
    }

    /// A spec with a task ID unique to this test and process.
    fn spec(&self, name: &str, image: &str) -> TaskSpec {
        TaskSpec::new(
            format!("{}-{name}-{}", self.test, std::process::id()),
            image,
        )
    }

    fn host(&self, name: &str, script: &str) -> TaskSpec {
        let mut spec = self.spec(name, "host");
        spec.args = vec!["sh".into(), "-c".into(), script.into()];
        spec
    }

    /// Run `body` on the runtime, bounded by [`TEST_TIMEOUT`].
    fn run<T>(&self, body: impl Future<Output = T>) -> T {
        self.runtime
            .block_on(async { tokio::time::timeout(TEST_TIMEOUT, body).await })
            .unwrap_or_else(|_| panic!("{} did not finish within {TEST_TIMEOUT:?}", self.test))
    }

    /// Prepare `spec`, remembering the task for the guard.
    fn prepare(&self, spec: &TaskSpec) -> PreparedTask {
        let task = self
            .run(self.executor.prepare(spec))
            .unwrap_or_else(|err| panic!("prepare {}: {err}", spec.task_id));
        self.tasks.lock().expect("tasks").push(task.clone());
        task
    }

    fn cgroup_parents(&self) -> Vec<PathBuf> {
        let mounts = CgroupMounts::discover().expect("mountinfo");
        [mounts.unified, mounts.memory_v1, mounts.cpu_v1]
            .into_iter()
            .flatten()
            .map(|root| root.join(&self.config.cgroup_parent))
            .collect()
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
        // Last resort, so that a failed test cannot leave cgroups behind.
        for parent in self.cgroup_parents() {
            let _ = std::fs::remove_dir(&parent);
            if let Some(hive_test) = parent.parent() {
                let _ = std::fs::remove_dir(hive_test);
            }
        }
    }
}

/// The inode of a namespace of `pid` (`/proc/<pid>/ns/<kind>`).
fn ns_inode(pid: &str, kind: &str) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/{kind}"))
        .unwrap_or_else(|err| panic!("/proc/{pid}/ns/{kind}: {err}"))
        .ino()
}

/// The PIDs of `pid` in each nested PID namespace (`NSpid:` in status).
fn nspids(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .expect("NSpid line")
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect()
}

/// Connect to 127.0.0.1:`port` inside the namespace at `netns`, retrying
/// while the server starts (bounded).
async fn connect_in(netns: &Path, port: u16) -> TcpStream {
    for _ in 0..200 {
        let path = netns.to_path_buf();
        let attempt = tokio::task::spawn_blocking(move || {
            netns::run_in(&path, || TcpStream::connect(("127.0.0.1", port)))
        })
        .await
        .expect("join")
        .expect("enter the task's network namespace");
        if let Ok(stream) = attempt {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            return stream;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "nothing listens on 127.0.0.1:{port} inside {}",
        netns.display()
    );
}

async fn logs(executor: &NamespaceExecutor, task: &PreparedTask) -> Vec<LogEntry> {
    executor
        .logs(task, LogOptions::default())
        .await
        .expect("open logs")
        .collect()
        .await
        .expect("read logs")
}

fn lines(entries: &[LogEntry], stream: Stream) -> Vec<&str> {
    entries
        .iter()
        .filter(|e| e.stream == stream)
        .map(|e| e.line.as_str())
        .collect()
}

/// Follow the task's log until a line equal to `wanted` shows up.
async fn await_line(executor: &NamespaceExecutor, task: &PreparedTask, wanted: &str) {
    let options = LogOptions {
        follow: true,
        tail: None,
    };
    let mut reader = executor.logs(task, options).await.expect("follow");
    while let Some(entry) = reader.next_entry().await.expect("read") {
        if entry.line == wanted {
            return;
        }
    }
    panic!("task {} ended without printing {wanted:?}", task.task_id);
}

#[test]
fn whoami_answers_inside_its_own_namespaces_with_its_container_id_as_hostname() {
    let Some(h) = Harness::new("whoami") else {
        return;
    };
    let task = h.prepare(&h.spec("w", "hive/whoami"));
    assert_eq!(task.hostname, task.short_id());
    assert_eq!(task.container_id.len(), 64);
    h.run(async {
        let started = h.executor.start(&task).await.expect("start");
        let pid = started.pid.to_string();

        let mut stream = connect_in(&task.netns, 80).await;
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: task\r\n\r\n")
            .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("receive");
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
        assert!(
            response.contains(&format!("Hostname: {}\n", task.short_id())),
            "{response}"
        );
        assert!(response.contains("RemoteAddr: 127.0.0.1:"), "{response}");

        // Its own namespaces, and the network one is the prepared file's.
        for kind in ["net", "mnt", "pid", "uts", "ipc"] {
            assert_ne!(ns_inode(&pid, kind), ns_inode("self", kind), "{kind}");
        }
        let netns_file = std::fs::metadata(&task.netns).expect("netns file").ino();
        assert_eq!(ns_inode(&pid, "net"), netns_file);
        // PID 1 inside (hive's init, in front of the built-in image).
        assert_eq!(nspids(started.pid).last(), Some(&1));
        // And in its own cgroup, in every hierarchy the executor uses
        // (unified, plus v1 ones on hybrid hosts).
        assert!(!task.cgroups.is_empty());
        for dir in &task.cgroups {
            let procs = read_trimmed(&dir.join("cgroup.procs"));
            assert!(
                procs.lines().any(|p| p == pid),
                "{}: {procs}",
                dir.display()
            );
        }
        if CgroupMounts::discover()
            .expect("mountinfo")
            .unified
            .is_some()
        {
            assert!(task.cgroups.iter().any(|d| cgroup::is_unified(d)));
        }
    });
}

#[test]
fn a_host_program_is_pid_1_with_its_env_workdir_and_hostname_and_its_output_is_logged() {
    let Some(h) = Harness::new("hostprog") else {
        return;
    };
    let mut spec = h.host(
        "h",
        "echo pid=$$; echo host=$(cat /proc/sys/kernel/hostname); echo cwd=$(pwd); \
         echo foo=$FOO; echo procs=$(ls -d /proc/[0-9]* | wc -l); echo oops >&2",
    );
    spec.env = vec!["FOO=bar".into()];
    spec.workdir = Some(PathBuf::from("/tmp"));
    let task = h.prepare(&spec);
    assert!(!task.init, "host programs run as PID 1 themselves");
    h.run(async {
        h.executor.start(&task).await.expect("start");
        let status = h.executor.wait(&task).await.expect("wait");
        assert_eq!(status, ExitStatus::Exited(0));
        let entries = logs(&h.executor, &task).await;
        let stdout = lines(&entries, Stream::Stdout);
        assert_eq!(stdout[0], "pid=1", "{entries:?}");
        assert_eq!(stdout[1], format!("host={}", task.short_id()));
        assert_eq!(stdout[2], "cwd=/tmp");
        assert_eq!(stdout[3], "foo=bar");
        // Its own /proc: `sh`, the `$(...)` subshell, `ls` and `wc`, not
        // the host's hundreds of processes.
        let procs: usize = stdout[4]
            .trim_start_matches("procs=")
            .parse()
            .expect("count");
        assert!(procs <= 4, "{}", stdout[4]);
        assert_eq!(lines(&entries, Stream::Stderr), ["oops"]);
    });
}

#[test]
fn exit_codes_are_reported_for_programs_and_for_hive_init() {
    let Some(h) = Harness::new("exitcodes") else {
        return;
    };
    let three = h.prepare(&h.host("three", "exit 3"));
    // Built-in images run behind hive's init; a bad argument makes the
    // program exit 2, and the init must pass that on.
    let mut spec = h.spec("bad", "hive/echo");
    spec.args = vec!["--listen".into(), "not-an-address".into()];
    let bad = h.prepare(&spec);
    assert!(bad.init);
    h.run(async {
        h.executor.start(&three).await.expect("start");
        let status = h.executor.wait(&three).await.expect("wait");
        assert_eq!(status, ExitStatus::Exited(3));
        assert!(!status.success());

        h.executor.start(&bad).await.expect("start");
        assert_eq!(
            h.executor.wait(&bad).await.expect("wait"),
            ExitStatus::Exited(2)
        );
        let entries = logs(&h.executor, &bad).await;
        assert!(
            lines(&entries, Stream::Stderr)
                .iter()
                .any(|l| l.contains("invalid value")),
            "{entries:?}"
        );

        let again = h
            .executor
            .start(&three)
            .await
            .expect_err("a task runs once");
        assert!(
            matches!(again, ExecutorError::AlreadyStarted { .. }),
            "{again}"
        );
    });
}

#[test]
fn shutdown_kills_a_task_that_ignores_sigterm_once_the_grace_period_is_over() {
    let Some(h) = Harness::new("stubborn") else {
        return;
    };
    let mut spec = h.host("s", "trap '' TERM; echo ready; sleep 300");
    spec.stop_grace_period = Duration::from_millis(300);
    let task = h.prepare(&spec);
    h.run(async {
        h.executor.start(&task).await.expect("start");
        // SIGTERM only after the trap is in place.
        await_line(&h.executor, &task, "ready").await;
        h.executor.shutdown(&task).await.expect("shutdown");
        assert_eq!(
            h.executor.wait(&task).await.expect("wait"),
            ExitStatus::Signaled(Signal::SIGKILL)
        );
    });
}

#[test]
fn shutdown_stops_a_builtin_image_with_sigterm_through_hive_init() {
    let Some(h) = Harness::new("graceful") else {
        return;
    };
    let mut spec = h.spec("e", "hive/echo");
    // Long enough that a SIGKILL would mean SIGTERM was lost.
    spec.stop_grace_period = Duration::from_secs(60);
    let task = h.prepare(&spec);
    h.run(async {
        h.executor.start(&task).await.expect("start");
        let mut stream = connect_in(&task.netns, 7).await;
        stream.write_all(b"hello hive\n").expect("send");
        let mut echoed = [0u8; 11];
        stream.read_exact(&mut echoed).expect("echo");
        assert_eq!(&echoed, b"hello hive\n");

        h.executor.shutdown(&task).await.expect("shutdown");
        // hive's init forwarded SIGTERM, and echo, a well-made server (issue 20), closed its
        // connections and exited by itself: cleanly, long before a SIGKILL.
        let status = h.executor.wait(&task).await.expect("wait");
        assert_eq!(status, ExitStatus::Exited(0), "{status}");
    });
}

#[test]
fn memory_and_cpu_limits_land_in_the_task_cgroup() {
    let Some(h) = Harness::new("limits") else {
        return;
    };
    let mut spec = h.host("l", "echo ready; sleep 300");
    spec.limits = ResourceLimits {
        memory_bytes: 64 << 20,
        nano_cpus: 500_000_000,
    };
    let task = h.prepare(&spec);
    h.run(async {
        let started = h.executor.start(&task).await.expect("start");
        let memberships =
            std::fs::read_to_string(format!("/proc/{}/cgroup", started.pid)).expect("cgroup");
        let mounts = CgroupMounts::discover().expect("mountinfo");
        let memory = limit_file(
            &memberships,
            &mounts,
            "memory",
            "memory.max",
            "memory.limit_in_bytes",
        );
        assert_eq!(read_trimmed(&memory), (64u64 << 20).to_string());
        let cpu = limit_file(&memberships, &mounts, "cpu", "cpu.max", "cpu.cfs_quota_us");
        let quota = read_trimmed(&cpu);
        assert!(
            quota == "50000 100000" || quota == "50000",
            "{}: {quota}",
            cpu.display()
        );
    });
}

/// The file holding `controller`'s limit for a process whose
/// `/proc/<pid>/cgroup` is `memberships`: `v2_file` in its unified cgroup
/// when that hierarchy has the controller, else `v1_file` in the v1
/// hierarchy that has it.
fn limit_file(
    memberships: &str,
    mounts: &CgroupMounts,
    controller: &str,
    v2_file: &str,
    v1_file: &str,
) -> PathBuf {
    for line in memberships.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let relative = path.trim_start_matches('/');
        if controllers.is_empty()
            && let Some(root) = &mounts.unified
            && root.join(relative).join(v2_file).exists()
        {
            return root.join(relative).join(v2_file);
        }
        if controllers.split(',').any(|c| c == controller) {
            let root = match controller {
                "memory" => &mounts.memory_v1,
                _ => &mounts.cpu_v1,
            };
            if let Some(root) = root {
                return root.join(relative).join(v1_file);
            }
        }
    }
    panic!("no {controller} cgroup in:\n{memberships}");
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .trim()
        .to_owned()
}

#[test]
fn what_cannot_run_here_is_rejected_at_prepare_with_a_clear_reason_and_leaves_nothing() {
    let Some(h) = Harness::new("reject") else {
        return;
    };
    h.run(async {
        let spec = h.spec("u", "foo");
        let err = h.executor.prepare(&spec).await.expect_err("unknown image");
        assert!(matches!(err, ExecutorError::Image(ImageError::Unknown { .. })), "{err:?}");
        assert_eq!(
            err.to_string(),
            "image \"foo\" is not available: hive runs the built-in images hive/whoami and hive/echo, and host programs as \"host <program>\""
        );

        let mut spec = h.host("p", "true");
        spec.args = vec!["no-such-hive-program".into()];
        let err = h.executor.prepare(&spec).await.expect_err("missing program");
        assert!(
            matches!(err, ExecutorError::Image(ImageError::ProgramNotFound { .. })),
            "{err:?}"
        );

        let mut spec = h.host("d", "true");
        spec.workdir = Some(PathBuf::from("/no/such/hive/dir"));
        let err = h.executor.prepare(&spec).await.expect_err("missing workdir");
        assert!(
            matches!(err, ExecutorError::Spec { source: SpecError::MissingWorkdir { .. }, .. }),
            "{err:?}"
        );
    });
    for task_id in ["u", "p", "d"].map(|n| h.spec(n, "host").task_id) {
        assert!(!h.config.run_dir.join("netns").join(&task_id).exists());
        assert!(!h.config.state_dir.join(&task_id).exists());
        for parent in h.cgroup_parents() {
            assert!(!parent.join(&task_id).exists(), "{}", parent.display());
        }
    }
}

#[test]
fn remove_leaves_no_namespace_file_cgroup_or_process() {
    let Some(h) = Harness::new("remove") else {
        return;
    };
    let running = h.prepare(&h.host("r", "sleep 300 & echo ready; sleep 300"));
    let never_started = h.prepare(&h.host("n", "true"));
    h.run(async {
        let started = h.executor.start(&running).await.expect("start");
        await_line(&h.executor, &running, "ready").await;
        let netns_inode = std::fs::metadata(&running.netns).expect("netns").ino();
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", started.pid))
            .expect("children");
        let mut pids: Vec<u32> = children
            .split_whitespace()
            .map(|p| p.parse().expect("pid"))
            .collect();
        pids.push(started.pid);
        assert!(pids.len() >= 2, "sh and its background sleep: {pids:?}");
        let start_times: Vec<Option<String>> = pids.iter().map(|&p| start_time(p)).collect();

        for task in [&running, &never_started] {
            h.executor.remove(task).await.expect("remove");
            assert!(!task.netns.exists(), "{}", task.netns.display());
            assert!(!task.state_dir.exists(), "{}", task.state_dir.display());
            for dir in &task.cgroups {
                assert!(!dir.exists(), "{}", dir.display());
            }
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
            assert!(!mountinfo.contains(&task.task_id), "{mountinfo}");
        }
        for (pid, before) in pids.iter().zip(start_times) {
            // Gone, or the PID now belongs to a newer process.
            assert!(start_time(*pid) != before, "process {pid} still runs");
        }
        // Nothing in the system is in the task's network namespace any more.
        for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
            if let Ok(meta) = std::fs::metadata(entry.path().join("ns/net")) {
                assert_ne!(meta.ino(), netns_inode, "{}", entry.path().display());
            }
        }
        // Idempotent.
        h.executor.remove(&running).await.expect("second remove");
    });
}

/// Field 22 of `/proc/<pid>/stat` (start time), to tell a PID's reuse.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = stat.rsplit_once(')')?.1;
    after_comm.split_whitespace().nth(19).map(str::to_owned)
}

#[test]
fn logs_can_be_followed_while_the_task_runs_and_tailed_afterwards() {
    let Some(h) = Harness::new("follow") else {
        return;
    };
    let task = h.prepare(&h.host(
        "f",
        "for i in 1 2 3; do echo line$i; sleep 0.2; done; echo done >&2",
    ));
    h.run(async {
        h.executor.start(&task).await.expect("start");
        let options = LogOptions {
            follow: true,
            tail: None,
        };
        let followed = h
            .executor
            .logs(&task, options)
            .await
            .expect("follow")
            .collect()
            .await
            .expect("read");
        // The follow ended by itself, when the task's output ended.
        let texts: Vec<(Stream, &str)> = followed
            .iter()
            .map(|e| (e.stream, e.line.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                (Stream::Stdout, "line1"),
                (Stream::Stdout, "line2"),
                (Stream::Stdout, "line3"),
                (Stream::Stderr, "done"),
            ]
        );
        assert!(followed.windows(2).all(|w| w[0].time <= w[1].time));
        assert_eq!(
            h.executor.wait(&task).await.expect("wait"),
            ExitStatus::Exited(0)
        );

        let tail = h
            .executor
            .logs(
                &task,
                LogOptions {
                    follow: false,
                    tail: Some(2),
                },
            )
            .await
            .expect("tail")
            .collect()
            .await
            .expect("read");
        assert_eq!(tail, followed[2..]);
    });
}

/// Reports every network as attached without touching the kernel: the executor's side of
/// the seam, as a data plane that wired the task would answer.
#[derive(Debug)]
struct ReportsAttached;

impl NetworkAttacher for ReportsAttached {
    fn attach<'a>(
        &'a self,
        task: &'a TaskNetworks,
        _netns: &'a Path,
    ) -> BoxFuture<'a, Result<Vec<AssignedAddr>, AttachError>> {
        Box::pin(async move {
            Ok(task
                .networks
                .iter()
                .map(|n| AssignedAddr {
                    network_id: n.network_id.clone(),
                    interface: "eth0".into(),
                    address: [10, 0, 1, 7].into(),
                    prefix_len: 24,
                })
                .collect())
        })
    }

    fn detach<'a>(&'a self, _task: &'a TaskNetworks) -> BoxFuture<'a, Result<(), AttachError>> {
        Box::pin(async { Ok(()) })
    }
}

/// What `cat /etc/resolv.conf` prints inside a task on network `back`.
fn resolv_conf_in_a_task(h: &Harness) -> Vec<String> {
    let mut spec = h.host("r", "cat /etc/resolv.conf");
    spec.networks = vec![NetworkAttachment {
        network_id: "back".into(),
        addresses: vec!["10.0.1.7/24".into()],
        aliases: Vec::new(),
    }];
    let task = h.prepare(&spec);
    h.run(async {
        h.executor.start(&task).await.expect("start");
        assert_eq!(
            h.executor.wait(&task).await.expect("wait"),
            ExitStatus::Exited(0)
        );
        let entries = logs(&h.executor, &task).await;
        lines(&entries, Stream::Stdout)
            .into_iter()
            .map(str::to_owned)
            .collect()
    })
}

#[test]
fn a_task_whose_networks_are_attached_asks_the_embedded_resolver() {
    let Some(h) = Harness::with_attacher("resolv", Arc::new(ReportsAttached)) else {
        return;
    };
    let host_before = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let seen = resolv_conf_in_a_task(&h);
    let settings: Vec<&str> = seen
        .iter()
        .map(String::as_str)
        .filter(|l| !l.starts_with('#') && !l.starts_with("search "))
        .collect();
    assert_eq!(
        settings,
        ["nameserver 127.0.0.11", "options ndots:0"],
        "{seen:?}"
    );
    assert_eq!(
        std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        host_before,
        "the host's file is untouched"
    );
}

#[test]
fn a_task_without_attached_networks_keeps_the_hosts_resolv_conf() {
    // No data plane (`--no-dataplane`): nobody would answer at 127.0.0.11.
    let Some(h) = Harness::new("noresolv") else {
        return;
    };
    let host: Vec<String> = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(resolv_conf_in_a_task(&h), host);
}
