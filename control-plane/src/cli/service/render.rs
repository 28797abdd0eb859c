//! docker's text for services and tasks: `service ls`, the task table of `service ps` and
//! `node ps`, `service inspect --pretty`, and `service logs` lines (docker/cli
//! `cli/command/service/formatter.go`, `cli/command/task/{print,formatter}.go`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::cli::format::{Cells, Format, Listing};
use crate::cli::output::{human_duration, pretty};
use crate::client::ServiceWithStatus;
use crate::store::objects::{
    EndpointMode, Health, PortConfig, Protocol, PublishMode, Service, ServiceMode, Task, TaskState,
    Timestamp,
};

/// docker's `stringid.TruncateID`.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The image as tables show it: without a digest pin.
pub fn display_image(image: &str) -> &str {
    image.split_once('@').map_or(image, |(name, _)| name)
}

fn port_text(port: &PortConfig) -> String {
    format!(
        "*:{}->{}/{}",
        port.published_port,
        port.target_port,
        port.protocol.as_str()
    )
}

/// The ingress ports `service ls` shows: the allocated ones once the allocator ran, else those
/// the spec names explicitly.
fn service_ports(service: &Service) -> String {
    let ports = match &service.endpoint {
        Some(endpoint) if !endpoint.ports.is_empty() => &endpoint.ports,
        _ => &service.spec.endpoint_spec.ports,
    };
    let ingress: Vec<&PortConfig> = ports
        .iter()
        .filter(|p| p.publish_mode == PublishMode::Ingress && p.published_port != 0)
        .collect();
    collapse_ports(&ingress).join(", ")
}

/// A run of ports `*:80-81->80-81/tcp`.
struct PortRange {
    published: (u16, u16),
    target: (u16, u16),
    protocol: Protocol,
}

impl PortRange {
    fn text(&self) -> String {
        let span = |(start, end): (u16, u16)| {
            if end > start {
                format!("{start}-{end}")
            } else {
                start.to_string()
            }
        };
        format!(
            "*:{}->{}/{}",
            span(self.published),
            span(self.target),
            self.protocol.as_str()
        )
    }
}

/// docker's `serviceContext.Ports`: sorted by protocol then published port, consecutive
/// published and target ports collapsed into ranges.
fn collapse_ports(ports: &[&PortConfig]) -> Vec<String> {
    let mut sorted = ports.to_vec();
    sorted.sort_by_key(|p| (p.protocol.as_str(), p.published_port));
    let mut out = Vec::new();
    let mut current: Option<PortRange> = None;
    // Go's unsigned `a - b > 1`: anything but a step of 0 or 1 upwards breaks the run.
    let continues = |a: u16, b: u16| matches!(i32::from(a) - i32::from(b), 0 | 1);
    for p in sorted {
        if let Some(range) = &mut current {
            let single = range.target.1 == range.target.0;
            let beyond = p.target_port > range.target.1;
            if p.protocol == range.protocol
                && continues(p.published_port, range.published.1)
                && continues(p.target_port, range.target.1)
                && (single || beyond)
            {
                range.published.1 = p.published_port;
                range.target.1 = p.target_port;
                continue;
            }
            out.push(range.text());
        }
        current = Some(PortRange {
            published: (p.published_port, p.published_port),
            target: (p.target_port, p.target_port),
            protocol: p.protocol,
        });
    }
    if let Some(range) = current {
        out.push(range.text());
    }
    out
}

pub fn mode_name(mode: &ServiceMode) -> &'static str {
    match mode {
        ServiceMode::Replicated { .. } => "replicated",
        ServiceMode::Global => "global",
    }
}

/// The columns of `service ls` and `stack services` (docker's `defaultServiceTableFormat`).
pub const SERVICE_LISTING: Listing = Listing {
    headers: &[
        ("ID", "ID"),
        ("Name", "NAME"),
        ("Mode", "MODE"),
        ("Replicas", "REPLICAS"),
        ("Image", "IMAGE"),
        ("Ports", "PORTS"),
    ],
    default_table: "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}",
};

/// `service ls`: ID NAME MODE REPLICAS IMAGE PORTS by name, or as `format` says.
pub fn render_ls(
    rows: &[ServiceWithStatus],
    quiet: bool,
    format: Option<&Format>,
) -> Result<String, String> {
    let mut rows: Vec<&ServiceWithStatus> = rows.iter().collect();
    rows.sort_by(|a, b| {
        a.service
            .spec
            .annotations
            .name
            .cmp(&b.service.spec.annotations.name)
    });
    if quiet {
        // docker truncates here too (its service formatter's `ID()`).
        return Ok(rows
            .iter()
            .map(|r| format!("{}\n", short_id(&r.service.id)))
            .collect());
    }
    let cells: Vec<Cells> = rows
        .iter()
        .map(|row| {
            let s = &row.service;
            Cells::from([
                ("ID", short_id(&s.id).to_owned()),
                ("Name", s.spec.annotations.name.clone()),
                ("Mode", mode_name(&s.spec.mode).to_owned()),
                ("Replicas", format!("{}/{}", row.running, row.desired)),
                (
                    "Image",
                    display_image(&s.spec.task_template.container.image).to_owned(),
                ),
                ("Ports", service_ports(s)),
            ])
        })
        .collect();
    SERVICE_LISTING.render(format, &cells)
}

/// Options of the task table.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskTableOptions {
    pub no_trunc: bool,
    pub quiet: bool,
}

/// docker's `maxErrLength`.
const MAX_ERR_LEN: usize = 30;

fn error_text(err: &str, no_trunc: bool) -> String {
    if err.is_empty() {
        return String::new();
    }
    let chars: Vec<char> = err.chars().collect();
    let shown: String = if !no_trunc && chars.len() > MAX_ERR_LEN {
        chars[..MAX_ERR_LEN - 1].iter().collect::<String>() + "…"
    } else {
        err.to_owned()
    };
    go_quote(&shown)
}

/// Go's `%q` for the characters task errors contain: quotes, backslashes, control characters.
fn go_quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn since(now: SystemTime, then: Timestamp) -> Duration {
    now.duration_since(then.to_system_time())
        .unwrap_or_default()
}

/// `Running 5 seconds ago`.
pub fn current_state(task: &Task, now: SystemTime) -> String {
    let at = if task.status.timestamp == Timestamp::default() {
        task.meta.created_at
    } else {
        task.status.timestamp
    };
    let state = format!(
        "{} {} ago",
        pretty(task.status.state.as_str()),
        human_duration(since(now, at)).to_lowercase()
    );
    // As `docker ps` shows a container's health after its status, while it runs.
    match task.status.health {
        Some(health) if task.status.state <= TaskState::Running => match health {
            Health::Starting => format!("{state} (health: starting)"),
            health => format!("{state} ({health})"),
        },
        _ => state,
    }
}

/// `web.1`, or `agent.<node ID>` for a global service's task.
pub fn task_name(task: &Task, service_names: &HashMap<String, String>) -> String {
    let service = service_names
        .get(&task.service_id)
        .cloned()
        .unwrap_or_else(|| task.service_id.clone());
    if task.slot != 0 {
        format!("{service}.{}", task.slot)
    } else {
        format!("{service}.{}", task.node_id.as_deref().unwrap_or(""))
    }
}

/// The task table of `service ps` and `node ps`: tasks of one slot together, newest first,
/// older ones as ` \_ name` history rows.
pub fn render_tasks(
    tasks: &[Task],
    node_names: &HashMap<String, String>,
    service_names: &HashMap<String, String>,
    options: TaskTableOptions,
    format: Option<&Format>,
    now: SystemTime,
) -> Result<String, String> {
    let mut sorted: Vec<(String, &Task)> = tasks
        .iter()
        .map(|t| (task_name(t, service_names), t))
        .collect();
    // docker's order (`tasksSortable`): by task name, then newest first. The name is the
    // service and the slot, or the node for a global task: the tasks of a replica slot stay
    // together whichever nodes they ran on, so after a drain the running task leads.
    sorted.sort_by(|(_, a), (_, b)| {
        let service = |t: &Task| {
            service_names
                .get(&t.service_id)
                .cloned()
                .unwrap_or_default()
        };
        let node = |t: &Task| {
            if t.slot == 0 { t.node_id.clone() } else { None }
        };
        service(a)
            .cmp(&service(b))
            .then(a.slot.cmp(&b.slot))
            .then(node(a).cmp(&node(b)))
            .then(b.meta.created_at.cmp(&a.meta.created_at))
    });
    let id = |t: &Task| {
        if options.no_trunc {
            t.id.clone()
        } else {
            short_id(&t.id).to_owned()
        }
    };
    if options.quiet {
        return Ok(sorted.iter().map(|(_, t)| format!("{}\n", id(t))).collect());
    }
    let mut rows = Vec::with_capacity(sorted.len());
    let mut previous: Option<&str> = None;
    for (name, task) in &sorted {
        let history = previous == Some(name.as_str());
        previous = Some(name.as_str());
        let image = &task.spec.container.image;
        rows.push(Cells::from([
            ("ID", id(task)),
            (
                "Name",
                if history {
                    format!(" \\_ {name}")
                } else {
                    name.clone()
                },
            ),
            (
                "Image",
                if options.no_trunc {
                    image.clone()
                } else {
                    display_image(image).to_owned()
                },
            ),
            (
                "Node",
                task.node_id
                    .as_ref()
                    .map(|n| node_names.get(n).cloned().unwrap_or_else(|| n.clone()))
                    .unwrap_or_default(),
            ),
            ("DesiredState", pretty(task.desired_state.as_str())),
            ("CurrentState", current_state(task, now)),
            ("Error", error_text(&task.status.err, options.no_trunc)),
            (
                "Ports",
                task.status
                    .port_status
                    .iter()
                    .filter(|p| p.publish_mode == PublishMode::Host)
                    .map(port_text)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ]));
    }
    TASK_LISTING.render(format, &rows)
}

/// The columns of `service ps`, `node ps` and `stack ps` (docker's `defaultTaskTableFormat`).
pub const TASK_LISTING: Listing = Listing {
    headers: &[
        ("ID", "ID"),
        ("Name", "NAME"),
        ("Image", "IMAGE"),
        ("Node", "NODE"),
        ("DesiredState", "DESIRED STATE"),
        ("CurrentState", "CURRENT STATE"),
        ("Error", "ERROR"),
        ("Ports", "PORTS"),
    ],
    default_table: "table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}\t{{.Ports}}",
};

/// `--filter` of `service ps` / `node ps`: values of one key are ORed, keys are ANDed, as
/// docker's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub desired: Vec<TaskState>,
    /// Task ID prefixes.
    pub ids: Vec<String>,
    /// Task name prefixes (`web.1`).
    pub names: Vec<String>,
    /// Node names or node ID prefixes.
    pub nodes: Vec<String>,
}

impl TaskFilter {
    pub fn parse(filters: &[String]) -> Result<Self, String> {
        let mut filter = Self::default();
        for text in filters {
            let Some((key, value)) = text.split_once('=') else {
                return Err(format!(
                    "bad format of filter (expected name=value): {text}"
                ));
            };
            match key {
                "desired-state" => match value.to_ascii_lowercase().as_str() {
                    "running" => filter.desired.push(TaskState::Running),
                    "shutdown" => filter.desired.push(TaskState::Shutdown),
                    // docker's `accepted`: tasks the orchestrator wants to run.
                    "accepted" => filter
                        .desired
                        .extend([TaskState::Running, TaskState::Ready]),
                    _ => {
                        return Err(format!(
                            "Invalid desired-state filter value: '{value}': use running, shutdown or accepted"
                        ));
                    }
                },
                "id" => filter.ids.push(value.to_owned()),
                "name" => filter.names.push(value.to_owned()),
                "node" => filter.nodes.push(value.to_owned()),
                _ => {
                    return Err(format!(
                        "invalid filter '{key}': use desired-state, id, name or node"
                    ));
                }
            }
        }
        Ok(filter)
    }

    pub fn keep(
        &self,
        task: &Task,
        node_names: &HashMap<String, String>,
        service_names: &HashMap<String, String>,
    ) -> bool {
        let any = |values: &[String], matches: &dyn Fn(&str) -> bool| {
            values.is_empty() || values.iter().any(|v| matches(v))
        };
        let node_id = task.node_id.as_deref().unwrap_or("");
        let node_name = node_names.get(node_id).map_or("", String::as_str);
        let name = task_name(task, service_names);
        (self.desired.is_empty() || self.desired.contains(&task.desired_state))
            && any(&self.ids, &|v| task.id.starts_with(v))
            && any(&self.names, &|v| name.starts_with(v))
            && any(&self.nodes, &|v| {
                !node_id.is_empty() && (node_name == v || node_id.starts_with(v))
            })
    }
}

/// The context column of `service logs`: `web.1.abcdef123456@node-1`, padded so that slots
/// of fewer digits than `slot_digits` (the replica count's) line up, as docker's task
/// formatter does. Global tasks are slot 0 there too.
pub fn log_context(
    service_name: &str,
    slot: u64,
    task_id: &str,
    node_name: &str,
    no_trunc: bool,
    slot_digits: usize,
) -> String {
    let id = if no_trunc { task_id } else { short_id(task_id) };
    let padding = " ".repeat(slot_digits.saturating_sub(slot.to_string().len()));
    format!("{service_name}.{slot}.{id}@{node_name}{padding}")
}

/// `service inspect --pretty`: docker/cli's `serviceInspectPrettyTemplate` for the fields hive
/// has (no update/rollback config, mounts or networks yet). Like docker, it shows neither
/// the restart policy nor the entrypoint; `service inspect` without `--pretty` has them.
pub fn render_pretty(service: &Service) -> String {
    let spec = &service.spec;
    let template = &spec.task_template;
    let container = &template.container;
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(out, "ID:\t\t{}", service.id);
    let _ = writeln!(out, "Name:\t\t{}", spec.annotations.name);
    if !spec.annotations.labels.is_empty() {
        let _ = writeln!(out, "Labels:");
        for (k, v) in &spec.annotations.labels {
            if v.is_empty() {
                let _ = writeln!(out, " {k}");
            } else {
                let _ = writeln!(out, " {k}={v}");
            }
        }
    }
    match spec.mode {
        ServiceMode::Global => {
            let _ = writeln!(out, "Service Mode:\tGlobal");
        }
        ServiceMode::Replicated { replicas } => {
            let _ = writeln!(out, "Service Mode:\tReplicated");
            let _ = writeln!(out, " Replicas:\t{replicas}");
        }
    }
    let _ = writeln!(out, "Placement:");
    if !template.placement.constraints.is_empty() {
        let _ = writeln!(
            out,
            " Constraints:\t[{}]",
            template.placement.constraints.join(" ")
        );
    }
    let _ = writeln!(out, "ContainerSpec:");
    let _ = writeln!(out, " Image:\t\t{}", container.image);
    if !container.args.is_empty() {
        let _ = writeln!(out, " Args:\t\t{} ", container.args.join(" "));
    }
    if !container.env.is_empty() {
        let _ = writeln!(out, " Env:\t\t{} ", container.env.join(" "));
    }
    if !container.workdir.is_empty() {
        let _ = writeln!(out, " Dir:\t\t{}", container.workdir);
    }
    let resources = &template.resources;
    let _ = writeln!(out, "Resources:");
    for (title, r) in [
        ("Reservations", resources.reservations),
        ("Limits", resources.limits),
    ] {
        if r.nano_cpus == 0 && r.memory_bytes == 0 {
            continue;
        }
        let _ = writeln!(out, " {title}:");
        if r.nano_cpus != 0 {
            let _ = writeln!(out, "  CPU:\t\t{}", r.nano_cpus as f64 / 1e9);
        }
        if r.memory_bytes != 0 {
            let _ = writeln!(
                out,
                "  Memory:\t{}",
                crate::cli::output::bytes_size(r.memory_bytes)
            );
        }
    }
    let _ = writeln!(
        out,
        "Endpoint Mode:\t{}",
        match spec.endpoint_spec.mode {
            EndpointMode::Vip => "vip",
            EndpointMode::Dnsrr => "dnsrr",
        }
    );
    let ports = match &service.endpoint {
        Some(e) if !e.ports.is_empty() => &e.ports,
        _ => &spec.endpoint_spec.ports,
    };
    if !ports.is_empty() {
        out.push_str("Ports:");
        for p in ports {
            let _ = write!(
                out,
                "\n PublishedPort = {}\n  Protocol = {}\n  TargetPort = {}\n  PublishMode = {}",
                p.published_port,
                p.protocol.as_str(),
                p.target_port,
                match p.publish_mode {
                    PublishMode::Ingress => "ingress",
                    PublishMode::Host => "host",
                }
            );
        }
        // The template's `{{- end }} {{ end -}}`: a space after the last port.
        out.push_str(" \n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::objects::{Endpoint, ServiceSpec};

    fn at(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    fn web() -> Service {
        let mut s = Service {
            id: "c8wgl7q4ndfdsz3yrzmsggtqq".into(),
            spec: ServiceSpec::default(),
            ..Service::default()
        };
        s.spec.annotations.name = "frontend".into();
        s.spec.mode = ServiceMode::Replicated { replicas: 5 };
        s.spec.task_template.container.image = "nginx:alpine@sha256:abc".into();
        s.endpoint = Some(Endpoint {
            ports: vec![PortConfig {
                published_port: 8080,
                target_port: 80,
                ..PortConfig::default()
            }],
            ..Endpoint::default()
        });
        s
    }

    #[test]
    fn ls_matches_dockers_table() {
        let mut mongo = Service {
            id: "iwe3278osahjfjwlk9dkjdkfj".into(),
            ..Service::default()
        };
        mongo.spec.annotations.name = "mongo".into();
        mongo.spec.mode = ServiceMode::Global;
        mongo.spec.task_template.container.image = "mongo:3.3".into();
        let rows = [
            ServiceWithStatus {
                service: mongo,
                running: 7,
                desired: 7,
            },
            ServiceWithStatus {
                service: web(),
                running: 5,
                desired: 5,
            },
        ];
        assert_eq!(
            render_ls(&rows, false, None).unwrap(),
            "ID             NAME       MODE         REPLICAS   IMAGE          PORTS\n\
             c8wgl7q4ndfd   frontend   replicated   5/5        nginx:alpine   *:8080->80/tcp\n\
             iwe3278osahj   mongo      global       7/7        mongo:3.3\n"
        );
        assert_eq!(
            render_ls(&rows, true, None).unwrap(),
            "c8wgl7q4ndfd\niwe3278osahj\n"
        );
    }

    fn task(id: &str, slot: u64, created: i64, state: TaskState, desired: TaskState) -> Task {
        let mut t = Task {
            id: id.into(),
            service_id: "svc".into(),
            slot,
            node_id: Some("n1".into()),
            desired_state: desired,
            ..Task::default()
        };
        t.meta.created_at = at(created);
        t.status.timestamp = at(created + 1);
        t.status.state = state;
        t.spec.container.image = "redis:7.4.1".into();
        t
    }

    #[test]
    fn ps_groups_history_under_the_newest_task_of_each_slot() {
        let mut failed = task(
            "nvjljf7rmor4xxxx",
            2,
            70,
            TaskState::Rejected,
            TaskState::Shutdown,
        );
        failed.status.err = "No such image: redis@sha256:6d1f0a9c".into();
        let tasks = vec![
            task(
                "ky2re9oz86r9xxxx",
                1,
                90,
                TaskState::Shutdown,
                TaskState::Shutdown,
            ),
            task(
                "50qe8lfnxaxkxxxx",
                1,
                100,
                TaskState::Running,
                TaskState::Running,
            ),
            failed,
            task(
                "3s46te2nzl4ixxxx",
                2,
                100,
                TaskState::Running,
                TaskState::Running,
            ),
        ];
        let nodes = HashMap::from([("n1".to_owned(), "manager1".to_owned())]);
        let services = HashMap::from([("svc".to_owned(), "redis".to_owned())]);
        let now = at(107).to_system_time();
        let text = render_tasks(
            &tasks,
            &nodes,
            &services,
            TaskTableOptions::default(),
            None,
            now,
        )
        .unwrap();
        assert_eq!(
            text,
            "ID             NAME          IMAGE         NODE       DESIRED STATE   CURRENT STATE             ERROR                              PORTS\n\
             50qe8lfnxaxk   redis.1       redis:7.4.1   manager1   Running         Running 6 seconds ago\n\
             ky2re9oz86r9    \\_ redis.1   redis:7.4.1   manager1   Shutdown        Shutdown 16 seconds ago\n\
             3s46te2nzl4i   redis.2       redis:7.4.1   manager1   Running         Running 6 seconds ago\n\
             nvjljf7rmor4    \\_ redis.2   redis:7.4.1   manager1   Shutdown        Rejected 36 seconds ago   \"No such image: redis@sha256:6…\"\n"
        );
        let quiet = TaskTableOptions {
            quiet: true,
            ..Default::default()
        };
        assert_eq!(
            render_tasks(&tasks, &nodes, &services, quiet, None, now)
                .unwrap()
                .lines()
                .count(),
            4
        );
    }

    #[test]
    fn after_a_drain_the_running_task_leads_its_slot_whatever_the_nodes() {
        // The drained node's ID sorts before the new node's: the slot still reads newest first.
        let mut old = task(
            "oldtask0000000",
            1,
            50,
            TaskState::Shutdown,
            TaskState::Shutdown,
        );
        old.node_id = Some("aa-drained".into());
        let mut new = task(
            "newtask0000000",
            1,
            60,
            TaskState::Running,
            TaskState::Running,
        );
        new.node_id = Some("zz-other".into());
        let nodes = HashMap::from([
            ("aa-drained".to_owned(), "n2".to_owned()),
            ("zz-other".to_owned(), "n3".to_owned()),
        ]);
        let services = HashMap::from([("svc".to_owned(), "web".to_owned())]);
        let now = at(70).to_system_time();
        for tasks in [
            vec![old.clone(), new.clone()],
            vec![new.clone(), old.clone()],
        ] {
            let text = render_tasks(
                &tasks,
                &nodes,
                &services,
                TaskTableOptions::default(),
                None,
                now,
            )
            .unwrap();
            let names: Vec<&str> = text
                .lines()
                .skip(1)
                .map(|l| l.split("   ").nth(1).unwrap_or_default().trim_end())
                .collect();
            assert_eq!(names, ["web.1", " \\_ web.1"], "{text}");
            assert!(
                text.lines()
                    .nth(1)
                    .is_some_and(|l| l.starts_with("newtask00000")),
                "{text}"
            );
        }
    }

    #[test]
    fn ingress_ports_collapse_into_ranges_like_dockers() {
        let port = |published, target, protocol| PortConfig {
            published_port: published,
            target_port: target,
            protocol,
            ..PortConfig::default()
        };
        let ports = [
            port(81, 81, Protocol::Tcp),
            port(80, 80, Protocol::Tcp),
            port(53, 53, Protocol::Udp),
            port(8080, 80, Protocol::Tcp),
            port(90, 80, Protocol::Tcp),
        ];
        let refs: Vec<&PortConfig> = ports.iter().collect();
        assert_eq!(
            collapse_ports(&refs),
            [
                "*:80-81->80-81/tcp",
                "*:90->80/tcp",
                "*:8080->80/tcp",
                "*:53->53/udp"
            ]
        );
    }

    #[test]
    fn errors_and_states_read_like_dockers() {
        assert_eq!(error_text("", false), "");
        assert_eq!(error_text("short", false), "\"short\"");
        let long = "No such container: webserver.1.abcdef";
        assert_eq!(
            error_text(long, false),
            "\"No such container: webserver.…\""
        );
        assert_eq!(error_text(long, true), format!("\"{long}\""));
        assert_eq!(
            error_text("bad \"x\"\nat C:\\", true),
            "\"bad \\\"x\\\"\\nat C:\\\\\""
        );
        let t = task("x", 1, 100, TaskState::Running, TaskState::Running);
        assert_eq!(
            current_state(&t, at(101).to_system_time()),
            "Running less than a second ago"
        );
        assert_eq!(
            current_state(&t, at(200).to_system_time()),
            "Running about a minute ago"
        );
        let mut global = t.clone();
        global.slot = 0;
        let names = HashMap::from([("svc".to_owned(), "agent".to_owned())]);
        assert_eq!(task_name(&global, &names), "agent.n1");
    }

    #[test]
    fn task_filters_or_values_and_keys() {
        let nodes = HashMap::from([("n1abc".to_owned(), "node-1".to_owned())]);
        let services = HashMap::from([("svc".to_owned(), "web".to_owned())]);
        let mut t = task("abc123", 1, 100, TaskState::Running, TaskState::Running);
        t.node_id = Some("n1abc".into());
        let keep = |filters: &[&str]| {
            let filters: Vec<String> = filters.iter().map(|f| (*f).to_owned()).collect();
            TaskFilter::parse(&filters)
                .unwrap()
                .keep(&t, &nodes, &services)
        };
        assert!(keep(&[]));
        assert!(keep(&["desired-state=running"]));
        assert!(keep(&["desired-state=shutdown", "desired-state=accepted"]));
        assert!(!keep(&["desired-state=shutdown"]));
        assert!(keep(&["id=abc"]));
        assert!(!keep(&["id=xyz"]));
        assert!(keep(&["name=web.1"]));
        assert!(!keep(&["name=web.2"]));
        assert!(keep(&["node=node-1"]));
        assert!(keep(&["node=n1a"]));
        assert!(!keep(&["node=node-2"]));
        assert!(!keep(&["node=node-1", "id=xyz"]));
        assert!(TaskFilter::parse(&["color=red".to_owned()]).is_err());
        assert!(TaskFilter::parse(&["desired-state=bogus".to_owned()]).is_err());
        assert!(TaskFilter::parse(&["nonsense".to_owned()]).is_err());
    }

    #[test]
    fn log_context_is_name_slot_id_at_node() {
        assert_eq!(
            log_context("web", 1, "abcdef1234567890", "node-1", false, 1),
            "web.1.abcdef123456@node-1"
        );
        assert_eq!(
            log_context("web", 1, "abcdef1234567890", "node-1", true, 0),
            "web.1.abcdef1234567890@node-1"
        );
        // Ten replicas: slot 1 is padded to line up with slot 10.
        assert_eq!(
            log_context("web", 1, "abcdef1234567890", "n1", false, 2),
            "web.1.abcdef123456@n1 "
        );
        assert_eq!(
            log_context("web", 10, "abcdef1234567890", "n1", false, 2),
            "web.10.abcdef123456@n1"
        );
    }

    #[test]
    fn pretty_inspect_layout() {
        let mut s = web();
        s.spec.task_template.container.env = vec!["A=1".into()];
        s.spec.task_template.placement.constraints = vec!["node.role==manager".into()];
        s.spec.task_template.resources.limits.memory_bytes = 512 << 20;
        let text = render_pretty(&s);
        assert_eq!(
            text,
            "\nID:\t\tc8wgl7q4ndfdsz3yrzmsggtqq\n\
             Name:\t\tfrontend\n\
             Service Mode:\tReplicated\n \
             Replicas:\t5\n\
             Placement:\n \
             Constraints:\t[node.role==manager]\n\
             ContainerSpec:\n \
             Image:\t\tnginx:alpine@sha256:abc\n \
             Env:\t\tA=1 \n\
             Resources:\n \
             Limits:\n  \
             Memory:\t512MiB\n\
             Endpoint Mode:\tvip\n\
             Ports:\n \
             PublishedPort = 8080\n  \
             Protocol = tcp\n  \
             TargetPort = 80\n  \
             PublishMode = ingress \n"
        );
    }
}
