//! Builds the eBPF programs (`dataplane-ebpf/programs`) with aya-build and the
//! nightly toolchain, into `OUT_DIR/hive-ebpf`, which `src/programs.rs` embeds.
//!
//! `HIVE_EBPF_NOTRACE=1` also builds the programs without their trace-event
//! code, into `OUT_DIR/hive-ebpf-notrace` (the benchmark's baseline; empty
//! otherwise). `HIVE_EBPF_LOG=1` builds them with aya-log debug logging
//! (docs/observability.md). A copy with logging is always built as well, into
//! `OUT_DIR/hive-ebpf-log`, for the tests of the log path.
//!
//! `AYA_BUILD_SKIP=1` skips the eBPF build for host-only `cargo check` and
//! `cargo clippy`; an empty object is embedded and loading it fails with an
//! error that says so.
use anyhow::{Context as _, anyhow};

const EBPF_PACKAGE: &str = "hive-ebpf";
const NOTRACE_OBJECT: &str = "hive-ebpf-notrace";
const LOG_OBJECT: &str = "hive-ebpf-log";

fn env_flag(name: &str) -> bool {
    println!("cargo:rerun-if-env-changed={name}");
    std::env::var(name).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn main() -> anyhow::Result<()> {
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR")?);
    let skip =
        std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        std::fs::write(out_dir.join(EBPF_PACKAGE), [])
            .context("writing the empty eBPF placeholder")?;
        std::fs::write(out_dir.join(NOTRACE_OBJECT), [])
            .context("writing the empty eBPF placeholder")?;
        std::fs::write(out_dir.join(LOG_OBJECT), [])
            .context("writing the empty eBPF placeholder")?;
        return Ok(());
    }
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let package = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == EBPF_PACKAGE)
        .ok_or_else(|| anyhow!("{EBPF_PACKAGE} is not a member of the workspace"))?;
    let root_dir = package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", package.manifest_path))?;
    let notrace = out_dir.join(NOTRACE_OBJECT);
    if env_flag("HIVE_EBPF_NOTRACE") {
        // Same output name as the real build: build it first and move it.
        aya_build::build_ebpf(
            [aya_build::Package {
                name: EBPF_PACKAGE,
                root_dir: root_dir.as_str(),
                no_default_features: true,
                ..Default::default()
            }],
            aya_build::Toolchain::default(),
        )
        .context("building the eBPF programs without tracing")?;
        std::fs::rename(out_dir.join(EBPF_PACKAGE), &notrace)
            .context("moving the no-trace eBPF object")?;
    } else {
        std::fs::write(&notrace, []).context("writing the empty no-trace placeholder")?;
    }
    // Same output name again: the copy with logging first, then the real one.
    aya_build::build_ebpf(
        [aya_build::Package {
            name: EBPF_PACKAGE,
            root_dir: root_dir.as_str(),
            features: &["log"],
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context("building the eBPF programs with aya-log")?;
    std::fs::rename(out_dir.join(EBPF_PACKAGE), out_dir.join(LOG_OBJECT))
        .context("moving the eBPF object with aya-log")?;
    let features: &[&str] = if env_flag("HIVE_EBPF_LOG") {
        &["log"]
    } else {
        &[]
    };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: EBPF_PACKAGE,
            root_dir: root_dir.as_str(),
            features,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context("building the eBPF programs; is the toolchain set up? run `cargo xtask setup`")
}
