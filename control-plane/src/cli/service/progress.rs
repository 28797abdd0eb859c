//! The convergence display of `service create/update/scale` without `-d` (docker/cli
//! `cli/command/service/progress/progress.go`): an overall line, one bar per slot (or node,
//! for global services), then `verify: Service converged`. Polls `ListTasks`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::render::short_id;
use crate::api::pb;
use crate::cli::output::CliFailure;
use crate::client::DaemonClient;
use crate::store::objects::{Service, ServiceMode, Task, TaskState};

/// docker's `maxProgressBars`: above this many slots, only the overall line is shown.
pub const MAX_PROGRESS_BARS: u64 = 20;
/// Width of the bar between the brackets, as docker's jsonmessage draws it.
const BAR_WIDTH: usize = 50;
/// docker's `maxProgress`: `running` is step 9.
const MAX_PROGRESS: usize = 9;
/// Longest state name shown (`preparing`, `allocated`), for the padding.
const LONGEST_STATE: usize = 9;
const POLL: Duration = Duration::from_millis(500);
/// The display gives up after this long (the change goes on in the background).
pub const WAIT_LIMIT: Duration = Duration::from_secs(180);
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

/// The display for `service` given all its tasks.
/// docker's `writeOverallProgress`.
fn overall(running: u64, desired: u64, rollback: bool) -> String {
    if rollback {
        format!("overall progress: rolling back update: {running} out of {desired} tasks")
    } else {
        format!("overall progress: {running} out of {desired} tasks")
    }
}

/// The display for `service` given all its tasks; `rollback` words it as docker's
/// `service rollback` does.
pub fn snapshot(service: &Service, tasks: &[Task], rollback: bool) -> Snapshot {
    let mine: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.service_id == service.id)
        .collect();
    let wanted: Vec<&Task> = mine
        .iter()
        .copied()
        .filter(|t| t.desired_state == TaskState::Running)
        .collect();
    // Right after a scale-down the orchestrator may not have marked the extra slots yet:
    // only slots the spec asks for count, as in docker's progress.
    let in_spec = |t: &Task| match service.spec.mode {
        ServiceMode::Replicated { replicas } => t.slot <= replicas,
        ServiceMode::Global => true,
    };
    let running = wanted
        .iter()
        .filter(|t| in_spec(t) && t.status.state == TaskState::Running)
        .count() as u64;
    // Old tasks still running (a stop-first update or a scale-down in progress).
    let leftovers = mine
        .iter()
        .any(|t| t.desired_state > TaskState::Running && t.status.state <= TaskState::Running);
    let mut lines = Vec::new();
    let converged = match service.spec.mode {
        ServiceMode::Replicated { replicas } => {
            lines.push(overall(running, replicas, rollback));
            if replicas <= MAX_PROGRESS_BARS {
                for slot in 1..=replicas {
                    let newest = wanted
                        .iter()
                        .copied()
                        .filter(|t| t.slot == slot)
                        .max_by_key(|t| t.meta.created_at);
                    lines.push(bar_line(&format!("{slot}/{replicas}"), newest));
                }
            }
            running == replicas
                && wanted.len() as u64 == replicas
                && wanted.iter().all(|t| in_spec(t))
                && !leftovers
        }
        ServiceMode::Global => {
            let mut by_node: BTreeMap<&str, &Task> = BTreeMap::new();
            for task in &wanted {
                let node = task.node_id.as_deref().unwrap_or("");
                let newer = by_node
                    .get(node)
                    .is_none_or(|t| t.meta.created_at < task.meta.created_at);
                if newer {
                    by_node.insert(node, task);
                }
            }
            let desired = by_node.len() as u64;
            if desired == 0 {
                lines.push("overall progress: waiting for new tasks".to_owned());
            } else {
                lines.push(overall(running, desired, rollback));
                if desired <= MAX_PROGRESS_BARS {
                    for (node, task) in &by_node {
                        lines.push(bar_line(short_id(node), Some(task)));
                    }
                }
            }
            desired > 0 && running == desired && !leftovers
        }
    };
    Snapshot { lines, converged }
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

fn background_notice(service: &str) {
    eprintln!(
        "Operation continuing in background.\nUse `hive service ps {service}` to check progress."
    );
}

/// Shows progress until `service` converges, Ctrl-C, or [`WAIT_LIMIT`].
pub async fn wait_converged(
    client: &mut DaemonClient,
    service: &str,
    rollback: bool,
) -> Result<(), CliFailure> {
    let mut screen = Screen {
        tty: std::io::stdout().is_terminal(),
        drawn: Vec::new(),
    };
    let started = Instant::now();
    let mut converged_since: Option<Instant> = None;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let reply = client
            .control
            .inspect_service(pb::InspectServiceRequest {
                service: service.to_owned(),
            })
            .await?
            .into_inner();
        let current: Service = super::decode(&reply.service_json)?;
        let list = client
            .control
            .list_tasks(pb::ListTasksRequest {
                service: current.id.clone(),
                node: String::new(),
            })
            .await?
            .into_inner();
        let tasks: Vec<Task> = super::decode(&list.tasks_json)?;
        let snap = snapshot(&current, &tasks, rollback);
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
        if started.elapsed() >= WAIT_LIMIT {
            background_notice(service);
            return Ok(());
        }
        tokio::select! {
            _ = &mut ctrl_c => {
                println!();
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
    fn right_after_a_scale_down_only_the_slots_asked_for_count() {
        let tasks: Vec<Task> = (1..=5)
            .map(|slot| task(slot, "n1", TaskState::Running, 1))
            .collect();
        let snap = snapshot(
            &service(ServiceMode::Replicated { replicas: 2 }),
            &tasks,
            false,
        );
        assert_eq!(snap.lines[0], "overall progress: 2 out of 2 tasks");
        assert!(!snap.converged, "slots 3-5 still run");
        let snap = snapshot(
            &service(ServiceMode::Replicated { replicas: 2 }),
            &tasks[..2],
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
        let snap = snapshot(&s, &tasks, false);
        assert_eq!(snap.lines[0], "overall progress: 2 out of 3 tasks");
        assert_eq!(snap.lines.len(), 4);
        assert!(snap.lines[3].starts_with("3/3: starting  ["));
        assert!(!snap.converged);

        tasks[2].status.state = TaskState::Running;
        // An old task of slot 1 still running after an update: not converged yet.
        let mut old = task(1, "n2", TaskState::Running, 0);
        old.desired_state = TaskState::Shutdown;
        tasks.push(old);
        assert!(!snapshot(&s, &tasks, false).converged);
        tasks[3].status.state = TaskState::Shutdown;
        let snap = snapshot(&s, &tasks, false);
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
            snapshot(&s, &[], false).lines,
            ["overall progress: 0 out of 50 tasks"]
        );
        let g = service(ServiceMode::Global);
        let snap = snapshot(&g, &[], false);
        assert_eq!(snap.lines, ["overall progress: waiting for new tasks"]);
        assert!(!snap.converged);
        let tasks = [
            task(0, "node1abcdefghijk", TaskState::Running, 1),
            task(0, "node2abcdefghijk", TaskState::Running, 1),
        ];
        let snap = snapshot(&g, &tasks, false);
        assert!(snap.converged);
        assert_eq!(
            snapshot(&g, &tasks, true).lines[0],
            "overall progress: rolling back update: 2 out of 2 tasks"
        );
        assert_eq!(snap.lines[0], "overall progress: 2 out of 2 tasks");
        assert!(snap.lines[1].starts_with("node1abcdefg: running   ["));
    }
}
