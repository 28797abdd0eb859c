//! Bounds on a service spec, checked where it enters the cluster (issue 14, item 2).
//!
//! Two kinds of rule live here:
//!
//! - **Size bounds** that keep one command from hurting the swarm: a spec is copied into every
//!   task and every Raft entry that touches them, and the orchestrator walks every replica slot
//!   in one pass, so `--replicas 18446744073709551615` or a megabyte of environment must be
//!   refused before it is stored. SwarmKit has no such bounds; the values are hive's and are
//!   documented in `docs/control-plane.md` ("Spec limits").
//! - **What every node would refuse anyway** (a relative `--workdir`, a memory limit under
//!   Docker's 6 MiB, a hostname the kernel cannot set): refusing them at create, with Docker's
//!   words, is better than a task rejected on its node again and again. The thresholds are the
//!   executor's own, so the manager refuses exactly what a node would.

use std::path::Path;

use crate::executor::spec::{self as task_spec, MIN_MEMORY_LIMIT, MIN_NANO_CPUS};
use crate::store::objects::{ServiceMode, ServiceSpec};

/// Most replicas of one service. The orchestrator creates a task per slot in one Raft write;
/// 10,000 tasks of about a kilobyte each is the largest write hive makes on purpose.
pub const MAX_REPLICAS: u64 = 10_000;
/// Most labels on a service (`--label`).
pub const MAX_LABELS: usize = 256;
/// Longest label key: a DNS name, as Docker's reverse-DNS key convention uses.
pub const MAX_LABEL_KEY_LEN: usize = 253;
/// Longest label value.
pub const MAX_LABEL_VALUE_LEN: usize = 4096;
/// Longest single environment entry, command or argument: the kernel's limit on one string
/// passed to `execve` (`MAX_ARG_STRLEN`, 32 pages).
pub const MAX_ARG_LEN: usize = 128 * 1024;
/// Most bytes of environment, command and arguments together, with one NUL per string: well
/// under the kernel's limit on all of them (a quarter of the stack limit, 2 MiB by default).
pub const MAX_EXEC_BYTES: usize = 1024 * 1024;
/// Most published ports of one service.
pub const MAX_PORTS: usize = 256;
/// Most `--constraint` expressions.
pub const MAX_CONSTRAINTS: usize = 64;
/// Most networks one service attaches to.
pub const MAX_NETWORKS: usize = 64;
/// Longest image reference (Docker's distribution reference allows 255 for the name, plus tag
/// and digest).
pub const MAX_IMAGE_LEN: usize = 512;

/// A spec outside hive's bounds, or one every node would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("invalid replicas value {replicas}: a service runs at most {MAX_REPLICAS} replicas")]
    Replicas { replicas: u64 },
    #[error("too many labels ({count}): a service has at most {MAX_LABELS}")]
    Labels { count: usize },
    #[error(
        "invalid label \"{key}\": keys are 1 to {MAX_LABEL_KEY_LEN} characters, values at most {MAX_LABEL_VALUE_LEN}"
    )]
    Label { key: String },
    #[error(
        "invalid {what} entry starting \"{start}\": {len} bytes, more than the {MAX_ARG_LEN} a process can receive"
    )]
    ArgTooLong {
        what: &'static str,
        start: String,
        len: usize,
    },
    #[error(
        "environment, command and arguments take {bytes} bytes together; at most {MAX_EXEC_BYTES} are allowed"
    )]
    ExecTooLarge { bytes: usize },
    #[error("too many ports ({count}): a service publishes at most {MAX_PORTS}")]
    Ports { count: usize },
    #[error("too many placement constraints ({count}): at most {MAX_CONSTRAINTS} are allowed")]
    Constraints { count: usize },
    #[error("too many networks ({count}): a service attaches to at most {MAX_NETWORKS}")]
    Networks { count: usize },
    #[error("invalid image reference: {len} characters, at most {MAX_IMAGE_LEN} are allowed")]
    ImageTooLong { len: usize },
    /// moby's text (`daemon/container_operations_unix.go`, `translateWorkingDir`).
    #[error("the working directory '{dir}' is invalid, it needs to be an absolute path")]
    RelativeWorkdir { dir: String },
    /// moby's text (`daemon/daemon_unix.go`, `verifyPlatformContainerResources`).
    #[error("Minimum memory limit allowed is 6MB")]
    MemoryTooSmall { bytes: i64 },
    #[error("invalid --limit-cpu: the smallest CPU limit is 0.01 CPU")]
    CpuTooSmall { nano_cpus: i64 },
    /// The executor's own hostname rule (what `sethostname(2)` accepts), in its words.
    #[error("{message}")]
    Hostname { message: String },
}

/// Checks every bound of this module on `spec`.
pub fn check(spec: &ServiceSpec) -> Result<(), LimitError> {
    if let ServiceMode::Replicated { replicas } = spec.mode
        && replicas > MAX_REPLICAS
    {
        return Err(LimitError::Replicas { replicas });
    }
    check_labels(spec)?;
    let template = &spec.task_template;
    let container = &template.container;
    if container.image.len() > MAX_IMAGE_LEN {
        return Err(LimitError::ImageTooLong {
            len: container.image.len(),
        });
    }
    check_exec(container)?;
    let ports = spec.endpoint_spec.ports.len();
    if ports > MAX_PORTS {
        return Err(LimitError::Ports { count: ports });
    }
    let constraints = template.placement.constraints.len();
    if constraints > MAX_CONSTRAINTS {
        return Err(LimitError::Constraints { count: constraints });
    }
    if template.networks.len() > MAX_NETWORKS {
        return Err(LimitError::Networks {
            count: template.networks.len(),
        });
    }
    check_node_rules(spec)
}

fn check_labels(spec: &ServiceSpec) -> Result<(), LimitError> {
    let labels = &spec.annotations.labels;
    if labels.len() > MAX_LABELS {
        return Err(LimitError::Labels {
            count: labels.len(),
        });
    }
    match labels.iter().find(|(key, value)| {
        key.is_empty() || key.len() > MAX_LABEL_KEY_LEN || value.len() > MAX_LABEL_VALUE_LEN
    }) {
        Some((key, _)) => Err(LimitError::Label {
            key: key.chars().take(64).collect(),
        }),
        None => Ok(()),
    }
}

/// What `execve` would refuse: one string too long, or all of them too large together.
fn check_exec(container: &crate::store::objects::ContainerSpec) -> Result<(), LimitError> {
    let strings = [
        ("environment", &container.env),
        ("command", &container.command),
        ("argument", &container.args),
    ];
    let mut bytes = 0usize;
    for (what, list) in strings {
        for entry in list {
            if entry.len() > MAX_ARG_LEN {
                return Err(LimitError::ArgTooLong {
                    what,
                    start: entry.chars().take(32).collect(),
                    len: entry.len(),
                });
            }
            bytes = bytes.saturating_add(entry.len() + 1);
        }
    }
    if bytes > MAX_EXEC_BYTES {
        return Err(LimitError::ExecTooLarge { bytes });
    }
    Ok(())
}

/// What every node's executor refuses (`executor::spec`), refused once here instead.
fn check_node_rules(spec: &ServiceSpec) -> Result<(), LimitError> {
    let container = &spec.task_template.container;
    if !container.workdir.is_empty() && !Path::new(&container.workdir).is_absolute() {
        return Err(LimitError::RelativeWorkdir {
            dir: container.workdir.clone(),
        });
    }
    if !container.hostname.is_empty() {
        task_spec::validate_hostname(&container.hostname).map_err(|e| LimitError::Hostname {
            message: e.to_string(),
        })?;
    }
    let limits = &spec.task_template.resources.limits;
    if limits.memory_bytes > 0 && limits.memory_bytes < MIN_MEMORY_LIMIT {
        return Err(LimitError::MemoryTooSmall {
            bytes: limits.memory_bytes,
        });
    }
    if limits.nano_cpus > 0 && limits.nano_cpus < MIN_NANO_CPUS {
        return Err(LimitError::CpuTooSmall {
            nano_cpus: limits.nano_cpus,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::controlapi::service_spec::tests::spec;

    #[test]
    fn a_huge_replica_count_is_refused() {
        let mut s = spec("web", "x");
        s.mode = ServiceMode::Replicated { replicas: u64::MAX };
        assert_eq!(
            check(&s).unwrap_err().to_string(),
            "invalid replicas value 18446744073709551615: a service runs at most 10000 replicas"
        );
        s.mode = ServiceMode::Replicated {
            replicas: MAX_REPLICAS,
        };
        assert_eq!(check(&s), Ok(()));
    }

    #[test]
    fn sizes_are_bounded() {
        let mut s = spec("web", "x");
        s.task_template.container.env = vec![format!("A={}", "x".repeat(MAX_ARG_LEN))];
        assert!(matches!(check(&s), Err(LimitError::ArgTooLong { .. })));
        s.task_template.container.env = (0..16)
            .map(|i| format!("K{i}={}", "x".repeat(MAX_ARG_LEN - 8)))
            .collect();
        assert!(matches!(check(&s), Err(LimitError::ExecTooLarge { .. })));
        s.task_template.container.env.clear();

        s.annotations.labels = (0..=MAX_LABELS)
            .map(|i| (i.to_string(), String::new()))
            .collect();
        assert!(matches!(check(&s), Err(LimitError::Labels { .. })));
        s.annotations.labels = [("k".repeat(300), String::new())].into();
        assert!(matches!(check(&s), Err(LimitError::Label { .. })));
        s.annotations.labels.clear();

        s.endpoint_spec.ports = vec![Default::default(); MAX_PORTS + 1];
        assert_eq!(
            check(&s),
            Err(LimitError::Ports {
                count: MAX_PORTS + 1
            })
        );
        s.endpoint_spec.ports.clear();
        s.task_template.placement.constraints = vec!["node.role==manager".into(); 65];
        assert!(matches!(check(&s), Err(LimitError::Constraints { .. })));
    }

    #[test]
    fn what_a_node_would_reject_is_refused_with_dockers_words() {
        let mut s = spec("web", "x");
        s.task_template.container.workdir = "relative/dir".into();
        assert_eq!(
            check(&s).unwrap_err().to_string(),
            "the working directory 'relative/dir' is invalid, it needs to be an absolute path"
        );
        s.task_template.container.workdir = "/srv".into();
        s.task_template.resources.limits.memory_bytes = 1;
        assert_eq!(
            check(&s).unwrap_err().to_string(),
            "Minimum memory limit allowed is 6MB"
        );
        s.task_template.resources.limits.memory_bytes = MIN_MEMORY_LIMIT;
        s.task_template.container.hostname = "h".repeat(300);
        assert!(matches!(check(&s), Err(LimitError::Hostname { .. })));
        s.task_template.container.hostname = "web-1.example".into();
        s.task_template.resources.limits.nano_cpus = 1;
        assert!(matches!(check(&s), Err(LimitError::CpuTooSmall { .. })));
        s.task_template.resources.limits.nano_cpus = MIN_NANO_CPUS;
        assert_eq!(check(&s), Ok(()));
    }
}
