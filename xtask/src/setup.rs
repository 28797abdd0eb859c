//! Idempotent set-up of everything hive's build, tests and benchmarks need on
//! a fresh Debian machine of this kind (see ../shared/TOOLCHAIN.md):
//!
//! 1. the nightly toolchain's `rust-src` (the eBPF crate builds `core` itself);
//! 2. `bpf-linker`, built against the LLVM that ships inside that nightly
//!    (no prebuilt binary can be fetched here, and its LLVM major must equal
//!    the nightly's);
//! 3. Debian packages used by tests and benchmarks.
//!
//! Each step checks first and does nothing when already done, so a second
//! run costs seconds.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// Debian packages: iproute2/iputils-ping (lab checks), wrk (HTTP load),
/// iptables/nftables (the kernel path the mesh benchmark compares against),
/// tshark/tcpdump (pcap checks and debugging), bpftool (inspecting maps),
/// nginx-light (the backends of `hive mesh bench`), ethtool (debugging offloads),
/// runc (OCI containers), docker-registry/skopeo/umoci/busybox-static (a real registry
/// and test images built offline), iperf3 (bulk throughput), python3-venv (docker-py),
/// stress-ng (the CPU-bound neighbour of `hive mesh bench --neighbour`), tini (the init
/// of containers started with `--init`, as docker's `docker-init`).
const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "wrk",
    "iptables",
    "nftables",
    "tshark",
    "tcpdump",
    "bpftool",
    "nginx-light",
    "ethtool",
    "runc",
    "docker-registry",
    "skopeo",
    "umoci",
    "busybox-static",
    "iperf3",
    "python3-venv",
    "stress-ng",
    "tini",
];

pub fn run() -> Result<()> {
    rust_src()?;
    bpf_linker()?;
    debian_packages()?;
    docker_py()?;
    eprintln!("xtask: set-up complete");
    Ok(())
}

fn rust_src() -> Result<()> {
    let installed = cmd::program(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .output()
    .unwrap_or_default();
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    cmd::program(
        "rustup",
        &["component", "add", "rust-src", "--toolchain", "nightly"],
    )
    .run("installing the nightly's rust-src")
}

/// The nightly's bundled LLVM shared library, e.g.
/// `.../lib/libLLVM.so.22.1-rust-1.97.0-nightly`.
fn nightly_llvm() -> Result<PathBuf> {
    let sysroot = cmd::program("rustc", &["+nightly", "--print", "sysroot"])
        .output()
        .context("`rustc +nightly` is not available: install the nightly toolchain with rustup")?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let entries = std::fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("libLLVM.so.") && name.contains("-rust-") {
            return Ok(entry.path());
        }
    }
    bail!(
        "no libLLVM.so.*-rust-* in {}: is the nightly toolchain complete?",
        lib.display()
    )
}

/// LLVM major of a `libLLVM.so.22.1-rust-...` file name.
fn llvm_major(lib: &Path) -> Option<&str> {
    lib.file_name()?
        .to_str()?
        .strip_prefix("libLLVM.so.")?
        .split('.')
        .next()
}

fn bpf_linker() -> Result<()> {
    let llvm = nightly_llvm()?;
    let llvm_name = llvm
        .file_name()
        .and_then(|n| n.to_str())
        .context("LLVM file name")?;
    // Done when the installed bpf-linker loads exactly the nightly's LLVM.
    if let Some(path) = cmd::program("sh", &["-c", "command -v bpf-linker"]).output() {
        let ldd = cmd::program("ldd", &[path.trim()])
            .output()
            .unwrap_or_default();
        if ldd.contains(llvm_name) && !ldd.contains("not found") {
            return Ok(());
        }
    }
    let major = llvm_major(&llvm).context("cannot tell the nightly's LLVM major version")?;
    // bpf-linker links against `$LLVM_PREFIX/lib/libLLVM.so` and keeps that
    // directory as its rpath, so the prefix must outlive the build.
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let prefix = Path::new(&home).join(".local/hive-llvm");
    let lib_dir = prefix.join("lib");
    std::fs::create_dir_all(&lib_dir).with_context(|| format!("creating {}", lib_dir.display()))?;
    for link in [lib_dir.join("libLLVM.so"), lib_dir.join(llvm_name)] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm, &link)
            .with_context(|| format!("linking {} to {}", link.display(), llvm.display()))?;
    }
    let feature = format!("llvm-{major}");
    cmd::program(
        "cargo",
        &[
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
            &feature,
        ],
    )
    .env("LLVM_PREFIX", &prefix)
    .run("building bpf-linker against the nightly's LLVM (about a minute)")
}

fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let status = cmd::program("dpkg-query", &["-W", "-f=${Status}", p]).output();
            !status.is_some_and(|s| s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !cmd::is_root() {
        bail!(
            "missing Debian packages: {}; run `sudo apt-get install -y {}` or run this as root",
            missing.join(" "),
            missing.join(" ")
        );
    }
    cmd::program("apt-get", &["update", "-qq"]).run("apt-get update")?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    cmd::program("apt-get", &args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run("installing Debian packages")
}

/// Where docker-py (the `docker` package from PyPI) lives: a virtual environment of its
/// own, so the machine's Python is left as it was. Tests run `DOCKER_PY_PYTHON`.
pub const DOCKER_PY_VENV: &str = "/opt/hive-docker-py";

/// docker-py, a second real Engine API client for the tests.
fn docker_py() -> Result<()> {
    let python = Path::new(DOCKER_PY_VENV).join("bin/python");
    if cmd::program(&python, &["-c", "import docker"])
        .output()
        .is_some()
    {
        return Ok(());
    }
    if !cmd::is_root() {
        bail!("docker-py is missing from {DOCKER_PY_VENV}; run `cargo xtask setup` as root");
    }
    cmd::program("python3", &["-m", "venv", DOCKER_PY_VENV]).run("creating docker-py's venv")?;
    cmd::program(&python, &["-m", "pip", "install", "-q", "docker==7.1.0"])
        .run("installing docker-py from PyPI")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_reads_the_rust_file_name() {
        let p = Path::new("/x/lib/libLLVM.so.22.1-rust-1.97.0-nightly");
        assert_eq!(llvm_major(p), Some("22"));
        assert_eq!(llvm_major(Path::new("/x/libfoo.so")), None);
    }
}
