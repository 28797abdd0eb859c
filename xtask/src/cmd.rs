//! Running child processes with readable failures.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// A command about to run, with the sentence to show if it fails.
#[derive(Debug)]
pub struct Step {
    command: Command,
}

impl Step {
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn target_dir(self, dir: &str) -> Self {
        self.env("CARGO_TARGET_DIR", dir)
    }

    /// Run with inherited stdio; fail with `what` if it does not succeed.
    pub fn run(mut self, what: &str) -> Result<()> {
        eprintln!("xtask: {what}");
        let status = self
            .command
            .status()
            .with_context(|| format!("{what}: could not start {:?}", self.command.get_program()))?;
        if !status.success() {
            bail!("{what} failed ({status})");
        }
        Ok(())
    }

    /// Run and capture stdout; `None` if it could not start or failed.
    pub fn output(mut self) -> Option<String> {
        let out = self.command.output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

pub fn program(program: impl AsRef<OsStr>, args: &[&str]) -> Step {
    let mut command = Command::new(program);
    command.args(args);
    Step { command }
}

/// `cargo` from the workspace root (so aliases and the lockfile apply).
/// A leading `+toolchain` argument goes through the rustup proxy, which the
/// `CARGO` variable (the stable toolchain's own cargo) is not.
pub fn cargo(args: &[&str]) -> Step {
    let proxy = args.first().is_some_and(|a| a.starts_with('+'));
    let cargo = match std::env::var_os("CARGO") {
        Some(cargo) if !proxy => cargo,
        _ => "cargo".into(),
    };
    let mut step = program(cargo, args);
    if proxy {
        // The nightly must not inherit the stable toolchain's choices.
        step.command
            .env_remove("RUSTC")
            .env_remove("RUSTUP_TOOLCHAIN");
    }
    if let Ok(root) = workspace_root() {
        step.command.current_dir(root);
    }
    step
}

pub fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest directory has no parent")
}

/// Whether this process runs with effective uid 0 (`/proc/self` is owned
/// by the effective uid).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Run `program args` as root: directly when we are root, else through sudo.
pub fn as_root(program_path: &Path, args: &[&str]) -> Step {
    if is_root() {
        program(program_path, args)
    } else {
        let mut argv = vec!["-E", program_path.to_str().unwrap_or_default()];
        argv.extend_from_slice(args);
        program("sudo", &argv)
    }
}

/// Say so, before a long build, when the disk under the workspace has less
/// room than the build writes: a full disk ends a link with a bus error or
/// "No space left on device" minutes later, which tells nobody what to do.
pub fn warn_if_disk_short(needed: u64) {
    let Ok(root) = workspace_root() else { return };
    let Some(free) = free_bytes(&root) else {
        return;
    };
    if free < needed {
        eprintln!(
            "xtask: only {:.1} GiB free under {}; a cold build needs about {:.1} GiB. \
             Free some space (an old `target/`, `cargo clean`) if the build fails \
             with \"No space left on device\".",
            gib(free),
            root.display(),
            gib(needed),
        );
    }
}

/// Free bytes on the filesystem holding `path`, as `df` reports them to an
/// unprivileged user; `None` if `df` could not say.
fn free_bytes(path: &Path) -> Option<u64> {
    let path = path.to_str()?;
    let out = program("df", &["--output=avail", "-B1", path]).output()?;
    out.lines().nth(1)?.trim().parse().ok()
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 30)
}

/// The privileged tests (lab, BPF_PROG_RUN) need root. Under CI they fail
/// loudly without it; elsewhere they print why they skip.
pub fn require_root_for_tests() {
    if !is_root() {
        eprintln!(
            "xtask: not running as root: the lab and BPF_PROG_RUN tests will {}",
            if std::env::var_os("CI").is_some() {
                "FAIL (CI is set)"
            } else {
                "be skipped with a printed reason; run `sudo -E cargo xtask test` to run them"
            }
        );
    }
}
