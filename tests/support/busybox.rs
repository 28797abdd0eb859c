//! Test images built offline from busybox-static: an OCI layout made with `umoci`, saved as a
//! `docker save` archive with `skopeo` (the tools `cargo xtask setup` installs).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The tools these images need, and runc to run them.
const TOOLS: [&str; 4] = ["runc", "umoci", "skopeo", "busybox"];

/// Whether the tools are here; without them the test is skipped with a printed reason, or
/// fails when `CI` is set.
pub fn tools_or_skip(test: &str) -> bool {
    tools_or_skip_with(test, &[])
}

/// [`tools_or_skip`] for [`TOOLS`] and `more`.
pub fn tools_or_skip_with(test: &str, more: &[&str]) -> bool {
    let missing: Vec<&str> = TOOLS
        .iter()
        .chain(more)
        .copied()
        .filter(|tool| which(tool).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("missing tools {missing:?} (run `cargo xtask setup`)");
    assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
    eprintln!("skipped {test}: {why}");
    false
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Runs `program args`, failing the test with its stderr if it fails.
pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_owned()
}

/// A busybox image as an OCI layout in `dir`; returns the layout's image `<dir>/layout:1`
/// (skopeo's `oci:` source): `/bin/busybox` with `applets` linked to it, whatever `populate`
/// adds to the root filesystem, and the image config that `config` sets (`umoci config`
/// flags, e.g. `--config.cmd`, `/bin/sh`).
pub fn oci_layout(
    dir: &Path,
    applets: &[&str],
    populate: impl FnOnce(&Path),
    config: &[&str],
) -> String {
    let layout = path_str(&dir.join("layout"));
    let bundle = dir.join("bundle");
    let base = format!("{layout}:base");
    let tagged = format!("{layout}:1");
    run("umoci", &["init", "--layout", &layout]);
    run("umoci", &["new", "--image", &base]);
    run("umoci", &["unpack", "--image", &base, &path_str(&bundle)]);
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("bin");
    std::fs::copy(
        which("busybox").expect("busybox"),
        rootfs.join("bin/busybox"),
    )
    .expect("copy busybox");
    for applet in applets {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("link");
    }
    populate(&rootfs);
    run("umoci", &["repack", "--image", &tagged, &path_str(&bundle)]);
    let mut args = vec!["config", "--image", &tagged];
    args.extend_from_slice(config);
    run("umoci", &args);
    tagged
}

/// [`oci_layout`] saved as a `docker save` archive in `dir`, tagged `reference`.
pub fn docker_archive(
    dir: &Path,
    reference: &str,
    applets: &[&str],
    populate: impl FnOnce(&Path),
    config: &[&str],
) -> PathBuf {
    let tagged = oci_layout(dir, applets, populate, config);
    let archive = dir.join("image.tar");
    run(
        "skopeo",
        &[
            "copy",
            &format!("oci:{tagged}"),
            &format!("docker-archive:{}:{reference}", path_str(&archive)),
        ],
    );
    archive
}
