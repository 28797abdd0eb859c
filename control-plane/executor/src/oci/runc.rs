//! The `runc` command line: create, start, state, delete. Each call names
//! the runtime's state directory (`--root`), so daemons on one host never
//! see each other's containers.

use std::{
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    process::Stdio,
};

use serde::{Deserialize, Serialize};
use tokio::process::Command;

/// A runc binary and the state directory it keeps its containers in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runc {
    pub binary: PathBuf,
    pub root: PathBuf,
}

/// What `runc state` reports (the fields hive uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContainerState {
    pub pid: u32,
    /// `created`, `running`, `paused` or `stopped`.
    pub status: String,
}

/// A runc call that failed.
#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error("cannot run {}: {source}; install runc (`cargo xtask setup` does)", binary.display())]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("runc {action} failed: {message}")]
    Failed {
        action: &'static str,
        message: String,
    },
}

impl Runc {
    fn command(&self, log: Option<&Path>) -> Command {
        let mut command = Command::new(&self.binary);
        command.arg("--root").arg(&self.root);
        if let Some(log) = log {
            command
                .arg("--log")
                .arg(log)
                .arg("--log-format")
                .arg("json");
        }
        command.stdin(Stdio::null()).kill_on_drop(true);
        command
    }

    async fn run(&self, action: &'static str, mut command: Command) -> Result<String, RuncError> {
        let output = command.output().await.map_err(|source| RuncError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(RuncError::Failed {
                action,
                message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }

    /// `runc create`: the container's init waits for `start`. A detached,
    /// terminal-less runc hands its own stdio to the container, so `stdout`
    /// and `stderr` are the container's; runc's own errors go to `log`
    /// (JSON lines) as well, where they are read back from. Returns the
    /// init's PID.
    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        stdout: OwnedFd,
        stderr: OwnedFd,
        log: &Path,
    ) -> Result<u32, RuncError> {
        let pid_file = bundle.join("init.pid");
        let mut command = self.command(Some(log));
        command
            .arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        let status = command.status().await.map_err(|source| RuncError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        if !status.success() {
            return Err(RuncError::Failed {
                action: "create",
                message: last_error(log).unwrap_or_else(|| format!("{status}")),
            });
        }
        let text = tokio::fs::read_to_string(&pid_file)
            .await
            .unwrap_or_default();
        text.trim().parse().map_err(|_| RuncError::Failed {
            action: "create",
            message: format!("no PID in {}: {text:?}", pid_file.display()),
        })
    }

    /// `runc start`: the container's process runs its program.
    pub async fn start(&self, id: &str) -> Result<(), RuncError> {
        let mut command = self.command(None);
        command.arg("start").arg(id);
        self.run("start", command).await.map(drop)
    }

    /// `runc state`; `None` when runc knows no such container.
    pub async fn state(&self, id: &str) -> Result<Option<ContainerState>, RuncError> {
        let mut command = self.command(None);
        command.arg("state").arg(id);
        match self.run("state", command).await {
            Ok(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|err| RuncError::Failed {
                    action: "state",
                    message: format!("unreadable answer {json:?}: {err}"),
                }),
            Err(RuncError::Failed { message, .. }) if missing(&message) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// `runc delete --force`: kills what runs and removes the container's
    /// state and cgroups. A container runc does not know is fine.
    pub async fn delete(&self, id: &str) -> Result<(), RuncError> {
        if !self.root.exists() {
            return Ok(());
        }
        let mut command = self.command(None);
        command.arg("delete").arg("--force").arg(id);
        match self.run("delete", command).await {
            Err(RuncError::Failed { message, .. }) if missing(&message) => Ok(()),
            other => other.map(drop),
        }
    }
}

fn missing(message: &str) -> bool {
    message.contains("does not exist") || message.contains("not exist")
}

/// The last error message in runc's JSON log.
fn last_error(log: &Path) -> Option<String> {
    #[derive(Deserialize)]
    struct Line {
        level: String,
        msg: String,
    }
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Line>(line).ok())
        .find(|line| line.level == "error" || line.level == "fatal")
        .map(|line| line.msg)
}
