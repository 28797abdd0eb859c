//! The convergence display of `service create/update/scale` without `-d` (docker/cli
//! `cli/command/service/progress/progress.go`): an overall line, one bar per slot (or node,
//! for global services), then `verify: Service converged`. Polls `ListTasks` and `ListNodes`.

use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};

use super::render::short_id;
use crate::api::pb;
use crate::cli::output::CliFailure;
use crate::client::{DaemonClient, TaskFilter};
use crate::store::objects::{Service, ServiceMode, Task, TaskState, UpdateState};

/// docker's `maxProgressBars`: above this many slots, only the overall line is shown.
pub const MAX_PROGRESS_BARS: u64 = 20;
/// Width of the bar between the brackets, as docker's jsonmessage draws it.
const BAR_WIDTH: usize = 50;
/// docker's `maxProgress`: `running` is step 9.
const MAX_PROGRESS: usize = 9;
/// Longest state name shown (`preparing`, `allocated`), for the padding.
const LONGEST_STATE: usize = 9;
const POLL: Duration = Duration::from_millis(500);
/// A converged state must hold this long before `verify: Service converged`.
const STABLE_FOR: Duration = Duration::from_secs(1);

/// docker's numbered states (its `allocated`, step 2, has no equivalent in hive).
fn step(state: TaskState) -> Option<usize> {
    Some(match state {
        TaskState::New => 1,
        TaskState::Pending => 3,
        TaskState::Assigned => 4,
        TaskState::Accepted => 5,
        TaskState::Preparing => 6,
        TaskState::Ready => 7,
        TaskState::Starting => 8,
        TaskState::Running => 9,
        _ => return None,
    })
}

/// docker's `truncError`: one line, at most 75 characters.
pub fn trunc_error(err: &str) -> String {
    let line = err.replace('\n', " ");
    if line.chars().count() > 75 {
        line.chars().take(74).chain(['…']).collect()
    } else {
        line
    }
}

/// `running   [==================================================>]`.
pub fn bar_line(label: &str, task: Option<&Task>) -> String {
    let Some(task) = task else {
        return format!("{label}: ");
    };
    if !task.status.err.is_empty() {
        return format!("{label}: {}", trunc_error(&task.status.err));
    }
    let state = task.status.state;
    match step(state) {
        Some(n) => {
            let filled = BAR_WIDTH * n / MAX_PROGRESS;
            format!(
                "{label}: {:<LONGEST_STATE$} [{}>{}]",
                state.as_str(),
                "=".repeat(filled),
                " ".repeat(BAR_WIDTH - filled)
            )
        }
        None => format!("{label}: {}", state.as_str()),
    }
}

/// What the display shows for one poll, and whether the service has converged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub lines: Vec<String>,
    pub converged: bool,
}

/// docker's `writeOverallProgress`.
fn overall(running: u64, desired: u64, rollback: bool) -> String {
    if rollback {
        format!("overall progress: rolling back update: {running} out of {desired} tasks")
    } else {
        format!("overall progress: {running} out of {desired} tasks")
    }
}

/// The task a slot's bar follows, as docker's `tasksBySlot` picks it: the lowest desired state
/// (the live task before those being replaced), then the lowest observed state, then the
/// newest. States the display does not number (`remove`, `orphaned`) are skipped.
fn representative<'a>(tasks: impl Iterator<Item = &'a Task>) -> Option<&'a Task> {
    tasks
        .filter(|t| t.desired_state < TaskState::Remove && t.status.state < TaskState::Remove)
        .min_by_key(|t| {
            (
                t.desired_state,
                t.status.state,
                std::cmp::Reverse(t.meta.created_at),
            )
        })
}

/// The bar of one slot: its representative task's state, or, while that task has not run yet,
/// the error of the slot's latest failed attempt at the same spec (a task rejected again and
/// again shows why, as docker's bar does, instead of flickering through `new`/`pending`).
fn slot_line(label: &str, slot: &[&Task]) -> String {
    let Some(task) = representative(slot.iter().copied()) else {
        return bar_line(label, None);
    };
    if task.status.err.is_empty() && task.status.state < TaskState::Running {
        let failed = slot
            .iter()
            .filter(|t| t.spec_version == task.spec_version && !t.status.err.is_empty())
            .max_by_key(|t| t.meta.created_at);
        if let Some(failed) = failed {
            return format!("{label}: {}", trunc_error(&failed.status.err));
        }
    }
    bar_line(label, Some(task))
}

/// The display for `service` given all its tasks and the nodes that are not down
/// (`active_nodes`, docker's `getActiveNodes`): tasks on a node that is down or gone are
/// ignored, as docker's progress ignores them, so a dead node does not hold the display
/// after its tasks run elsewhere. `rollback` words it as docker's `service rollback` does.
pub fn snapshot(
    service: &Service,
    tasks: &[Task],
    active_nodes: &HashSet<String>,
    rollback: bool,
) -> Snapshot {
    let mine: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.service_id == service.id)
        .filter(|t| t.node_id.as_ref().is_none_or(|n| active_nodes.contains(n)))
        .collect();
    let live = |t: &Task| t.desired_state <= TaskState::Running;
    let running_task = |t: &Task| live(t) && t.status.state == TaskState::Running;
    // Old tasks still running (a stop-first update or a scale-down in progress). A task told
    // to stop before it reached a node (a restart's replacement held at `ready` that a
    // rollback or an update replaced before the scheduler placed it) never runs and never
    // reports: nothing will move it past `pending`, so it must not hold the display.
    let leftovers = mine.iter().any(|t| {
        t.desired_state > TaskState::Running
            && (TaskState::Assigned..=TaskState::Running).contains(&t.status.state)
    });
    let mut lines = Vec::new();
    let converged = match service.spec.mode {
        ServiceMode::Replicated { replicas } => {
            let mut by_slot: BTreeMap<u64, Vec<&Task>> = BTreeMap::new();
            for task in &mine {
                by_slot.entry(task.slot).or_default().push(task);
            }
            // Right after a scale-down the orchestrator may not have marked the extra slots
            // yet: only slots the spec asks for count, and extra live ones keep it waiting.
            let running = (1..=replicas)
                .filter(|slot| {
                    by_slot
                        .get(slot)
                        .and_then(|tasks| representative(tasks.iter().copied()))
                        .is_some_and(&running_task)
                })
                .count() as u64;
            let extra = mine.iter().any(|t| t.slot > replicas && live(t));
            lines.push(overall(running, replicas, rollback));
            if replicas <= MAX_PROGRESS_BARS {
                for slot in 1..=replicas {
                    let tasks = by_slot.get(&slot).map_or(&[][..], Vec::as_slice);
                    lines.push(slot_line(&format!("{slot}/{replicas}"), tasks));
                }
            }
            running == replicas && !extra && !leftovers
        }
        ServiceMode::Global => {
            // One bar per node the service wants a task on (a live task there); the node's
            // stopped tasks stay with it for their errors.
            let mut by_node: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
            for task in &mine {
                by_node
                    .entry(task.node_id.as_deref().unwrap_or(""))
                    .or_default()
                    .push(task);
            }
            by_node.retain(|_, tasks| tasks.iter().any(|t| live(t)));
            let desired = by_node.len() as u64;
            let running = by_node
                .values()
                .filter(|tasks| representative(tasks.iter().copied()).is_some_and(&running_task))
                .count() as u64;
            if desired == 0 {
                lines.push("overall progress: waiting for new tasks".to_owned());
            } else {
                lines.push(overall(running, desired, rollback));
                if desired <= MAX_PROGRESS_BARS {
                    for (node, tasks) in &by_node {
                        lines.push(slot_line(short_id(node), tasks));
                    }
                }
            }
            desired > 0 && running == desired && !leftovers
        }
    };
    Snapshot { lines, converged }
}

/// What the service's `UpdateStatus` means for the display (docker's `ServiceProgress`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateProgress {
    /// Nothing to show; go on (`rollback`: word the overall line as a rollback).
    Continue { rollback: bool },
    /// A rollback began (or ended) with this message: `rollback: <message>` once, then on.
    RolledBack { message: String },
    /// The update (or the rollback) is paused: the display ends with this error.
    Paused(String),
}

/// docker's reading of `UpdateStatus` on each poll: `updating` words the display as an
/// update, `rollback_started`/`rollback_completed` show `rollback: <message>` and word it as
/// a rollback, `paused`/`rollback_paused` end it with `service update paused: <message>` /
/// `service rollback paused: <message>`.
pub fn update_progress(service: &Service, rollback: bool) -> UpdateProgress {
    let Some(status) = &service.update_status else {
        return UpdateProgress::Continue { rollback };
    };
    match status.state {
        UpdateState::Updating => UpdateProgress::Continue { rollback: false },
        UpdateState::Completed => UpdateProgress::Continue { rollback },
        UpdateState::Paused => {
            UpdateProgress::Paused(format!("service update paused: {}", status.message))
        }
        UpdateState::RollbackPaused => {
            UpdateProgress::Paused(format!("service rollback paused: {}", status.message))
        }
        UpdateState::RollbackStarted | UpdateState::RollbackCompleted
            if !rollback && !status.message.is_empty() =>
        {
            UpdateProgress::RolledBack {
                message: status.message.clone(),
            }
        }
        UpdateState::RollbackStarted | UpdateState::RollbackCompleted => {
            UpdateProgress::Continue { rollback: true }
        }
    }
}

/// Draws snapshots: redrawn in place on a terminal, new lines only otherwise.
struct Screen {
    tty: bool,
    drawn: Vec<String>,
}

impl Screen {
    fn show(&mut self, lines: &[String]) {
        let mut out = std::io::stdout().lock();
        if self.tty {
            if !self.drawn.is_empty() {
                let _ = write!(out, "\x1b[{}A", self.drawn.len());
            }
            for line in lines {
                let _ = writeln!(out, "\x1b[2K{line}");
            }
            self.drawn = lines.to_vec();
        } else {
            for line in lines {
                if !self.drawn.contains(line) {
                    let _ = writeln!(out, "{line}");
                    self.drawn.push(line.clone());
                }
            }
        }
        let _ = out.flush();
    }
}

/// docker's words when the display stops before the service converged: the change goes on.
fn background_notice(service: &str) {
    println!(
        "Operation continuing in background.\nUse `hive service ps {service}` to check progress."
    );
}

/// The nodes whose tasks the display counts: every node that is not down (docker's
/// `getActiveNodes`); a removed node is not listed, so its tasks do not count either.
async fn active_nodes(client: &mut DaemonClient) -> Result<HashSet<String>, CliFailure> {
    let list = client.control.list_nodes().await?;
    Ok(list
        .nodes
        .into_iter()
        .filter(|n| {
            n.status
                .as_ref()
                .is_none_or(|s| s.state() != pb::NodeState::Down)
        })
        .map(|n| n.id)
        .collect())
}

/// Shows progress until `service` converges or Ctrl-C. As docker's, the display waits as long
/// as it takes (tasks that keep failing keep it waiting, their error in the bar); Ctrl-C ends
/// only the display: the service stays as it is and the change goes on in the background.
pub async fn wait_converged(
    client: &mut DaemonClient,
    service: &str,
    mut rollback: bool,
) -> Result<(), CliFailure> {
    // Registered before the first poll, so an early Ctrl-C is not the default kill.
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| CliFailure::Usage(format!("cannot watch for Ctrl-C: {e}")))?;
    let mut screen = Screen {
        tty: std::io::stdout().is_terminal(),
        drawn: Vec::new(),
    };
    let mut converged_since: Option<Instant> = None;
    let mut settled: Option<Option<crate::store::objects::UpdateStatus>> = None;
    loop {
        let current = client.control.inspect_service(service).await?;
        // An update that ended before this display began (a change of `replicas` alone
        // starts none) says nothing about this change.
        let earlier = &*settled.get_or_insert_with(|| {
            current
                .update_status
                .clone()
                .filter(|s| !s.state.in_progress())
        });
        let progress = if earlier.is_some() && *earlier == current.update_status {
            UpdateProgress::Continue { rollback }
        } else {
            update_progress(&current, rollback)
        };
        match progress {
            UpdateProgress::Continue { rollback: now } => rollback = now,
            UpdateProgress::RolledBack { message } => {
                rollback = true;
                // Above the bars, which are drawn again below it.
                if screen.tty {
                    screen.drawn.clear();
                }
                println!("rollback: {message}");
            }
            UpdateProgress::Paused(message) => return Err(CliFailure::Usage(message)),
        }
        let tasks = client
            .control
            .list_tasks(TaskFilter {
                service: Some(&current.id),
                node: None,
            })
            .await?
            .tasks;
        let active = active_nodes(client).await?;
        let snap = snapshot(&current, &tasks, &active, rollback);
        screen.show(&snap.lines);
        if snap.converged {
            let since = *converged_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= STABLE_FOR {
                println!("verify: Service converged");
                return Ok(());
            }
        } else {
            converged_since = None;
        }
        tokio::select! {
            _ = interrupt.recv() => {
                if screen.tty {
                    println!();
                }
                background_notice(service);
                return Ok(());
            }
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::objects::Timestamp;

    /// Every node the tests place tasks on, none down.
    fn up() -> HashSet<String> {
        ["n1", "n2", "n3", "node1abcdefghijk", "node2abcdefghijk"]
            .map(str::to_owned)
            .into()
    }

    fn service(mode: ServiceMode) -> Service {
        let mut s = Service {
            id: "svc".into(),
            ..Service::default()
        };
        s.spec.mode = mode;
        s
    }

    fn task(slot: u64, node: &str, state: TaskState, created: i64) -> Task {
        let mut t = Task {
            id: format!("t{slot}{node}{created}"),
            service_id: "svc".into(),
            slot,
            node_id: Some(node.into()),
            desired_state: TaskState::Running,
            ..Task::default()
        };
        t.status.state = state;
        t.meta.created_at = Timestamp {
            seconds: created,
            nanos: 0,
        };
        t
    }

    #[test]
    fn update_status_is_shown_as_docker_shows_it() {
        use crate::store::objects::UpdateStatus;
        let mut s = service(ServiceMode::Replicated { replicas: 1 });
        let with = |s: &mut Service, state, message: &str| {
            s.update_status = Some(UpdateStatus {
                state,
                message: message.to_owned(),
                ..UpdateStatus::default()
            });
        };
        assert_eq!(
            update_progress(&s, false),
            UpdateProgress::Continue { rollback: false }
        );
        with(&mut s, UpdateState::Updating, "update in progress");
        assert_eq!(
            update_progress(&s, true),
            UpdateProgress::Continue { rollback: false }
        );
        let why = "update rolled back due to failure or early termination of task abc";
        with(&mut s, UpdateState::RollbackStarted, why);
        assert_eq!(
            update_progress(&s, false),
            UpdateProgress::RolledBack {
                message: why.to_owned()
            }
        );
        // Shown once: the display then words itself as a rollback.
        assert_eq!(
            update_progress(&s, true),
            UpdateProgress::Continue { rollback: true }
        );
        let paused = "update paused due to failure or early termination of task abc";
        with(&mut s, UpdateState::Paused, paused);
        assert_eq!(
            update_progress(&s, false),
            UpdateProgress::Paused(format!("service update paused: {paused}"))
        );
        with(&mut s, UpdateState::RollbackPaused, "x");
        assert_eq!(
            update_progress(&s, true),
            UpdateProgress::Paused("service rollback paused: x".to_owned())
        );
    }

    #[test]
    fn right_after_a_scale_down_only_the_slots_asked_for_count() {
        let tasks: Vec<Task> = (1..=5)
            .map(|slot| task(slot, "n1", TaskState::Running, 1))
            .collect();
        let snap = snapshot(
            &service(ServiceMode::Replicated { replicas: 2 }),
            &tasks,
            &up(),
            false,
        );
        assert_eq!(snap.lines[0], "overall progress: 2 out of 2 tasks");
        assert!(!snap.converged, "slots 3-5 still run");
        let snap = snapshot(
            &service(ServiceMode::Replicated { replicas: 2 }),
            &tasks[..2],
            &up(),
            false,
        );
        assert!(snap.converged);
    }

    #[test]
    fn bars_match_dockers_progress_display() {
        let running = task(1, "n1", TaskState::Running, 1);
        assert_eq!(
            bar_line("1/3", Some(&running)),
            "1/3: running   [==================================================>]"
        );
        let preparing = task(1, "n1", TaskState::Preparing, 1);
        assert_eq!(
            bar_line("2/3", Some(&preparing)),
            "2/3: preparing [=================================>                 ]"
        );
        let mut pending = task(1, "", TaskState::Pending, 1);
        pending.status.err =
            "no suitable node (scheduling constraints not satisfied on 5 nodes)".into();
        assert_eq!(
            bar_line("1/1", Some(&pending)),
            "1/1: no suitable node (scheduling constraints not satisfied on 5 nodes)"
        );
        assert_eq!(bar_line("3/3", None), "3/3: ");
        let mut failed = task(1, "n1", TaskState::Failed, 1);
        failed.status.err = format!("line one\n{}", "x".repeat(80));
        let line = bar_line("1/1", Some(&failed));
        assert!(line.starts_with("1/1: line one xxx"), "{line}");
        assert_eq!(line.chars().count(), "1/1: ".len() + 75);
        assert!(line.ends_with('…'));
    }

    #[test]
    fn replicated_converges_when_every_slot_runs() {
        let s = service(ServiceMode::Replicated { replicas: 3 });
        let mut tasks = vec![
            task(1, "n1", TaskState::Running, 1),
            task(2, "n2", TaskState::Running, 1),
            task(3, "n1", TaskState::Starting, 1),
        ];
        let snap = snapshot(&s, &tasks, &up(), false);
        assert_eq!(snap.lines[0], "overall progress: 2 out of 3 tasks");
        assert_eq!(snap.lines.len(), 4);
        assert!(snap.lines[3].starts_with("3/3: starting  ["));
        assert!(!snap.converged);

        tasks[2].status.state = TaskState::Running;
        // An old task of slot 1 still running after an update: not converged yet.
        let mut old = task(1, "n2", TaskState::Running, 0);
        old.desired_state = TaskState::Shutdown;
        tasks.push(old);
        assert!(!snapshot(&s, &tasks, &up(), false).converged);
        tasks[3].status.state = TaskState::Shutdown;
        let snap = snapshot(&s, &tasks, &up(), false);
        assert!(snap.converged);
        assert_eq!(
            snap.lines,
            [
                "overall progress: 3 out of 3 tasks",
                "1/3: running   [==================================================>]",
                "2/3: running   [==================================================>]",
                "3/3: running   [==================================================>]",
            ]
        );
    }

    #[test]
    fn many_replicas_show_only_the_overall_line_and_global_waits_for_tasks() {
        let s = service(ServiceMode::Replicated { replicas: 50 });
        assert_eq!(
            snapshot(&s, &[], &up(), false).lines,
            ["overall progress: 0 out of 50 tasks"]
        );
        let g = service(ServiceMode::Global);
        let snap = snapshot(&g, &[], &up(), false);
        assert_eq!(snap.lines, ["overall progress: waiting for new tasks"]);
        assert!(!snap.converged);
        let tasks = [
            task(0, "node1abcdefghijk", TaskState::Running, 1),
            task(0, "node2abcdefghijk", TaskState::Running, 1),
        ];
        let snap = snapshot(&g, &tasks, &up(), false);
        assert!(snap.converged);
        assert_eq!(
            snapshot(&g, &tasks, &up(), true).lines[0],
            "overall progress: rolling back update: 2 out of 2 tasks"
        );
        assert_eq!(snap.lines[0], "overall progress: 2 out of 2 tasks");
        assert!(snap.lines[1].starts_with("node1abcdefg: running   ["));
    }

    /// The slot of an update that rolled back by itself: its new task failed, the restart
    /// supervisor made a replacement held at `ready`, and the rollback told that one to shut
    /// down before the scheduler placed it (a race the allocator loses now and then). That
    /// task never reaches a node, so nothing ever reports it stopped: the display must end
    /// once the rolled-back tasks run (it once waited for it forever).
    #[test]
    fn a_task_stopped_before_it_reached_a_node_does_not_hold_the_display() {
        let s = service(ServiceMode::Replicated { replicas: 2 });
        let mut old = task(1, "n1", TaskState::Shutdown, 1);
        old.desired_state = TaskState::Shutdown;
        let mut failed = task(1, "n2", TaskState::Failed, 2);
        failed.desired_state = TaskState::Shutdown;
        failed.status.err = "task: non-zero exit (143): unhealthy container".into();
        for never_placed in [TaskState::New, TaskState::Pending] {
            let mut replacement = task(1, "", TaskState::New, 3);
            replacement.node_id = None;
            replacement.status.state = never_placed;
            replacement.desired_state = TaskState::Shutdown;
            let tasks = vec![
                old.clone(),
                failed.clone(),
                replacement,
                task(1, "n3", TaskState::Running, 4),
                task(2, "n1", TaskState::Running, 1),
            ];
            let snap = snapshot(&s, &tasks, &up(), true);
            assert!(snap.converged, "{never_placed:?}: {:?}", snap.lines);
            assert_eq!(
                snap.lines[0],
                "overall progress: rolling back update: 2 out of 2 tasks"
            );
        }
        // One that reached its node is waited for until it reports that it stopped.
        let mut stopping = task(1, "n2", TaskState::Assigned, 3);
        stopping.desired_state = TaskState::Shutdown;
        let tasks = vec![
            stopping,
            task(1, "n3", TaskState::Running, 4),
            task(2, "n1", TaskState::Running, 1),
        ];
        assert!(!snapshot(&s, &tasks, &up(), true).converged);
    }

    #[test]
    fn tasks_on_a_node_that_is_down_or_gone_do_not_hold_the_display() {
        let s = service(ServiceMode::Replicated { replicas: 2 });
        // n3 died: its task was moved (desired shutdown) but can never report that it stopped.
        let mut stale = task(2, "n3", TaskState::Running, 1);
        stale.desired_state = TaskState::Shutdown;
        let tasks = vec![
            task(1, "n1", TaskState::Running, 1),
            stale,
            task(2, "n2", TaskState::Running, 2),
        ];
        let mut without_n3 = up();
        without_n3.remove("n3");
        assert!(
            !snapshot(&s, &tasks, &up(), false).converged,
            "n3 up: its task must stop first"
        );
        let snap = snapshot(&s, &tasks, &without_n3, false);
        assert!(snap.converged, "{:?}", snap.lines);
        assert_eq!(snap.lines[0], "overall progress: 2 out of 2 tasks");

        // A live task on a dead node is not counted as running either.
        let tasks = vec![
            task(1, "n1", TaskState::Running, 1),
            task(2, "n3", TaskState::Running, 1),
        ];
        let snap = snapshot(&s, &tasks, &without_n3, false);
        assert!(!snap.converged);
        assert_eq!(snap.lines[0], "overall progress: 1 out of 2 tasks");
        assert_eq!(snap.lines[2], "2/2: ");

        let g = service(ServiceMode::Global);
        let tasks = [
            task(0, "n1", TaskState::Running, 1),
            task(0, "n3", TaskState::Running, 1),
        ];
        let snap = snapshot(&g, &tasks, &without_n3, false);
        assert!(snap.converged);
        assert_eq!(snap.lines[0], "overall progress: 1 out of 1 tasks");
    }

    #[test]
    fn a_slot_whose_tasks_keep_being_rejected_shows_the_error() {
        let s = service(ServiceMode::Replicated { replicas: 3 });
        let err = "image \"tomcat:8.5.49\" is not available: hive runs the built-in images";
        let rejected = |slot, created, desired| {
            let mut t = task(slot, "n1", TaskState::Rejected, created);
            t.desired_state = desired;
            t.status.err = err.to_owned();
            t
        };
        let mut waiting = task(1, "n2", TaskState::Pending, 3);
        waiting.desired_state = TaskState::Ready;
        let tasks = vec![
            // Slot 1: rejected twice, its replacement (held at ready) not placed yet.
            rejected(1, 1, TaskState::Shutdown),
            rejected(1, 2, TaskState::Shutdown),
            waiting,
            // Slot 2: the replacement itself was just rejected.
            rejected(2, 1, TaskState::Shutdown),
            rejected(2, 2, TaskState::Ready),
            // Slot 3: a first attempt on its way.
            task(3, "n1", TaskState::Preparing, 1),
        ];
        let snap = snapshot(&s, &tasks, &up(), false);
        assert!(!snap.converged);
        let shown = trunc_error(err);
        assert_eq!(snap.lines[1], format!("1/3: {shown}"));
        assert_eq!(snap.lines[2], format!("2/3: {shown}"));
        assert!(
            snap.lines[3].starts_with("3/3: preparing ["),
            "{}",
            snap.lines[3]
        );
        // Once the slot's task runs, the old errors are history.
        let mut tasks = tasks;
        tasks[2].status.state = TaskState::Running;
        tasks[2].desired_state = TaskState::Running;
        assert!(snapshot(&s, &tasks, &up(), false).lines[1].starts_with("1/3: running   ["));
    }
}
