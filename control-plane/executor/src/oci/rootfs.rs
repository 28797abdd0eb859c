//! A container's root file system and its `/etc` files. The root is an
//! overlay mounted by hive at `<state>/rootfs`: the image's layers as
//! read-only lower directories, `<state>/upper` and `<state>/work` as the
//! task's own writable layer, all removed with the task.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use nix::mount::{MntFlags, MsFlags};
use oci_spec::runtime::Mount as OciMount;

use super::mounts::oci_mount;

/// Errors making or removing a container's root.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("the image has no layers")]
    NoLayers,
    #[error(
        "layer directory {} cannot be an overlay lower directory (',' and ':' are separators there; relative paths are ambiguous)",
        path.display()
    )]
    LayerPath { path: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot mount the overlay root at {}: {source} (lower directories: {lower})", path.display())]
    Mount {
        path: PathBuf,
        lower: String,
        source: nix::Error,
    },
    #[error("cannot unmount the overlay root at {}: {source}", path.display())]
    Unmount { path: PathBuf, source: nix::Error },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError + use<> {
    let path = path.to_path_buf();
    move |source| RootfsError::Io {
        action,
        path,
        source,
    }
}

/// Layers must be absolute and free of overlayfs' option separators.
pub fn check_layers(layers: &[PathBuf]) -> Result<(), RootfsError> {
    if layers.is_empty() {
        return Err(RootfsError::NoLayers);
    }
    for layer in layers {
        let text = layer.to_string_lossy();
        if !layer.is_absolute() || text.contains([',', ':']) {
            return Err(RootfsError::LayerPath {
                path: layer.clone(),
            });
        }
    }
    Ok(())
}

/// Mount `<state_dir>/rootfs` (blocking). Returns its path.
pub fn mount_overlay(layers: &[PathBuf], state_dir: &Path) -> Result<PathBuf, RootfsError> {
    let (root, upper, work) = (
        state_dir.join("rootfs"),
        state_dir.join("upper"),
        state_dir.join("work"),
    );
    for dir in [&root, &upper, &work] {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    // overlayfs lists lower directories top first.
    let lower = layers
        .iter()
        .rev()
        .map(|l| l.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let options = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        &root,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|source| RootfsError::Mount {
        path: root.clone(),
        lower,
        source,
    })?;
    Ok(root)
}

/// Unmount the root (blocking); one that is not mounted (any more) is fine.
pub fn unmount(root: &Path) -> Result<(), RootfsError> {
    match nix::mount::umount2(root, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL | nix::Error::ENOENT) => Ok(()),
        Err(source) => Err(RootfsError::Unmount {
            path: root.to_path_buf(),
            source,
        }),
    }
}

/// The container's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`,
/// written into the state directory and bound into the container, as
/// Docker does.
#[derive(Debug, Clone)]
pub struct EtcFiles {
    pub hostname: String,
    /// The task's addresses on its networks; each names the hostname.
    pub addresses: Vec<IpAddr>,
    /// Whether the executor already wrote the resolver's `resolv.conf`
    /// (task on a network); otherwise the host's is copied.
    pub resolv_conf_written: bool,
}

impl EtcFiles {
    /// Write the files (blocking) and return their bind mounts.
    pub fn write(&self, state_dir: &Path) -> Result<Vec<OciMount>, RootfsError> {
        let write = |name: &str, text: &str| -> Result<PathBuf, RootfsError> {
            let path = state_dir.join(name);
            std::fs::write(&path, text).map_err(io("write", &path))?;
            Ok(path)
        };
        let hostname = write("hostname", &format!("{}\n", self.hostname))?;
        let mut hosts = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        );
        for address in &self.addresses {
            hosts.push_str(&format!("{address}\t{}\n", self.hostname));
        }
        let hosts = write("hosts", &hosts)?;
        let resolv_conf = state_dir.join("resolv.conf");
        if !self.resolv_conf_written {
            // No network of hive's: the host's resolvers, as Docker's default bridge.
            let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            write("resolv.conf", &host)?;
        }
        let bind = |target: &str, source: PathBuf| {
            oci_mount(
                Path::new(target),
                "bind",
                &source,
                ["rbind", "rprivate", "rw"].map(str::to_owned).to_vec(),
            )
        };
        Ok(vec![
            bind("/etc/resolv.conf", resolv_conf),
            bind("/etc/hostname", hostname),
            bind("/etc/hosts", hosts),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_must_be_usable_as_lower_directories() {
        assert!(check_layers(&[]).is_err());
        assert!(check_layers(&["relative".into()]).is_err());
        assert!(check_layers(&["/a:b".into()]).is_err());
        assert!(check_layers(&["/a,b".into()]).is_err());
        check_layers(&["/store/layers/abc".into()]).expect("plain path");
    }

    #[test]
    fn etc_files_name_the_host_and_its_addresses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = EtcFiles {
            hostname: "web1".into(),
            addresses: vec!["10.0.1.5".parse().expect("ip")],
            resolv_conf_written: false,
        };
        let mounts = files.write(dir.path()).expect("write");
        assert_eq!(mounts.len(), 3);
        let hosts = std::fs::read_to_string(dir.path().join("hosts")).expect("hosts");
        assert!(hosts.contains("10.0.1.5\tweb1\n") && hosts.starts_with("127.0.0.1\tlocalhost"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("hostname")).expect("hostname"),
            "web1\n"
        );
    }
}
