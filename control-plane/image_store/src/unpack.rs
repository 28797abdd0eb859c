//! Unpacking one layer (a plain, gzip or zstd tar) into its own directory, in the form
//! overlayfs reads as a lower directory:
//!
//! - an OCI whiteout `.wh.NAME` becomes overlayfs's whiteout, a character device 0/0 `NAME`;
//! - an opaque marker `DIR/.wh..wh..opq` becomes the `trusted.overlay.opaque=y` xattr on `DIR`.
//!
//! Both need root (CAP_MKNOD, CAP_SYS_ADMIN for `trusted.*`), as running containers does.
//!
//! Nothing is ever written outside the layer directory: an entry or hard-link target with a
//! `..` component, or whose parent path passes through a symbolic link, refuses the whole
//! layer. Symbolic links themselves are stored as they are (`/bin/sh -> /bin/busybox` is
//! ordinary); they are only resolved inside the container's root later, never here. The
//! layer is unpacked into a temporary directory, its uncompressed bytes hashed against the
//! image's `diff_id`, and renamed into place only when everything succeeded.

use std::ffi::CString;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::digest::Digest;

/// Whiteout prefix (OCI image spec, "Whiteouts").
const WHITEOUT_PREFIX: &str = ".wh.";
/// Opaque directory marker.
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Prefix of whiteout metadata other than the opaque marker (AUFS `.wh..wh.plnk` etc.).
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
/// The xattr overlayfs reads for an opaque directory.
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Mode of directories the tar implies but does not list.
const IMPLIED_DIR_MODE: u32 = 0o755;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("the entry {path:?} leaves the layer through \"..\"; the layer is refused")]
    DotDot { path: PathBuf },
    #[error(
        "the entry {path:?} would be written through the symbolic link {link:?}; the layer is refused"
    )]
    ThroughSymlink { path: PathBuf, link: PathBuf },
    #[error("the hard link {path:?} points to {target:?}, which is not in this layer")]
    HardLinkTarget { path: PathBuf, target: PathBuf },
    #[error(
        "its content does not match the image configuration (diff_id {expected}, content {actual}); the layer is corrupt"
    )]
    DiffId { expected: Digest, actual: Digest },
    #[error("the layer is not a valid tar archive: {0}")]
    Tar(#[source] io::Error),
    #[error("cannot {action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn fail(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LayerError {
    let path = path.to_owned();
    move |source| LayerError::Io {
        action,
        path,
        source,
    }
}

/// What unpacking a layer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// Its length in bytes (what `docker image ls` adds up as SIZE).
    pub size: u64,
}

/// Unpacks `blob` (plain, gzip or zstd tar, told apart by their magic bytes) into `target`,
/// which must not exist yet. Verifies the uncompressed content against `expected_diff_id`
/// when given. On any error `target` is left absent.
pub fn unpack_layer(
    blob: impl Read,
    target: &Path,
    expected_diff_id: Option<&Digest>,
) -> Result<Unpacked, LayerError> {
    let staging = staging_dir(target);
    let _ = std::fs::remove_dir_all(&staging);
    let result = unpack_into(blob, &staging, expected_diff_id);
    match result {
        Ok(unpacked) => {
            match std::fs::rename(&staging, target) {
                Ok(()) => {}
                // Another unpack of the same layer won the race: keep its copy.
                Err(_) if target.is_dir() => {
                    let _ = std::fs::remove_dir_all(&staging);
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&staging);
                    return Err(fail("rename into place", target)(e));
                }
            }
            Ok(unpacked)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// `<target>.unpacking`, beside the target on the same file system.
pub fn staging_dir(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".unpacking");
    PathBuf::from(name)
}

fn unpack_into(
    blob: impl Read,
    root: &Path,
    expected: Option<&Digest>,
) -> Result<Unpacked, LayerError> {
    std::fs::create_dir(root).map_err(fail("create", root))?;
    set_mode(root, IMPLIED_DIR_MODE)?;
    let mut hashing =
        HashingReader::new(decompress(BufReader::new(blob)).map_err(LayerError::Tar)?);
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_unpack_xattrs(true);
        archive.set_preserve_mtime(true);
        for entry in archive.entries().map_err(LayerError::Tar)? {
            let mut entry = entry.map_err(LayerError::Tar)?;
            apply_entry(&mut entry, root)?;
        }
    }
    // The tar reader stops at the end-of-archive blocks; the diff_id covers every byte.
    io::copy(&mut hashing, &mut io::sink()).map_err(LayerError::Tar)?;
    let (diff_id, size) = hashing.finish();
    if let Some(expected) = expected
        && expected != &diff_id
    {
        return Err(LayerError::DiffId {
            expected: expected.clone(),
            actual: diff_id,
        });
    }
    Ok(Unpacked { diff_id, size })
}

/// A gzip, zstd or plain tar stream, by its first bytes.
fn decompress<'a>(mut reader: BufReader<impl Read + 'a>) -> io::Result<Box<dyn Read + 'a>> {
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(reader)?))
    } else {
        Ok(Box::new(reader))
    }
}

/// The entry's path inside the layer: `./` and a leading `/` dropped, `..` refused.
fn clean(path: &Path) -> Result<PathBuf, LayerError> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(LayerError::DotDot {
                    path: path.to_owned(),
                });
            }
        }
    }
    Ok(clean)
}

/// Makes every directory on the way to `relative`'s parent (0755 when implied), refusing to
/// pass through a symbolic link.
fn safe_parent(root: &Path, relative: &Path) -> Result<PathBuf, LayerError> {
    let mut current = root.to_owned();
    let Some(parent) = relative.parent() else {
        return Ok(current);
    };
    for part in parent.components() {
        current.push(part);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(LayerError::ThroughSymlink {
                    path: relative.to_owned(),
                    link: current.strip_prefix(root).unwrap_or(&current).to_owned(),
                });
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                std::fs::remove_file(&current).map_err(fail("replace", &current))?;
                make_dir(&current)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => make_dir(&current)?,
            Err(e) => return Err(fail("inspect", &current)(e)),
        }
    }
    Ok(current)
}

fn make_dir(path: &Path) -> Result<(), LayerError> {
    std::fs::create_dir(path).map_err(fail("create", path))?;
    set_mode(path, IMPLIED_DIR_MODE)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LayerError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(fail("set the mode of", path))
}

/// Removes what is at `path` unless it is a directory and `keep_dir` (so a later entry
/// replaces an earlier one, and nothing is ever opened through a link).
fn clear(path: &Path, keep_dir: bool) -> Result<(), LayerError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            if !keep_dir {
                std::fs::remove_dir_all(path).map_err(fail("replace", path))?;
            }
            Ok(())
        }
        Ok(_) => std::fs::remove_file(path).map_err(fail("replace", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(fail("inspect", path)(e)),
    }
}

fn apply_entry<R: Read>(entry: &mut tar::Entry<'_, R>, root: &Path) -> Result<(), LayerError> {
    let raw = entry.path().map_err(LayerError::Tar)?.into_owned();
    let relative = clean(&raw)?;
    let Some(name) = relative
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
    else {
        // The layer's root itself (`./`): its mode applies to the layer directory.
        if entry.header().entry_type().is_dir() {
            let mode = entry.header().mode().map_err(LayerError::Tar)?;
            set_mode(root, mode & 0o7777)?;
        }
        return Ok(());
    };
    let parent = safe_parent(root, &relative)?;
    if name == OPAQUE_MARKER {
        return mark_opaque(&parent);
    }
    if name.starts_with(WHITEOUT_META_PREFIX) {
        return Ok(());
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        let target = parent.join(hidden);
        clear(&target, false)?;
        return whiteout(&target);
    }
    let dst = parent.join(&name);
    let kind = entry.header().entry_type();
    clear(&dst, kind.is_dir())?;
    if kind.is_hard_link() {
        let link = entry
            .link_name()
            .map_err(LayerError::Tar)?
            .ok_or_else(|| LayerError::Tar(io::Error::other("a hard link without a target")))?
            .into_owned();
        let target_rel = clean(&link)?;
        let target_parent = safe_parent(root, &target_rel)?;
        let target = match target_rel.file_name() {
            Some(file) => target_parent.join(file),
            None => target_parent,
        };
        if std::fs::symlink_metadata(&target).is_err() {
            return Err(LayerError::HardLinkTarget {
                path: relative,
                target: link,
            });
        }
        return std::fs::hard_link(&target, &dst).map_err(fail("hard-link", &dst));
    }
    if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
        return special_file(entry, &dst);
    }
    entry.unpack(&dst).map(drop).map_err(|e| LayerError::Io {
        action: "unpack",
        path: relative,
        source: e,
    })
}

/// overlayfs's whiteout: a character device with device number 0/0.
fn whiteout(path: &Path) -> Result<(), LayerError> {
    use nix::sys::stat::{Mode, SFlag, mknod};
    mknod(path, SFlag::S_IFCHR, Mode::empty(), 0).map_err(|e| LayerError::Io {
        action: "create the whiteout",
        path: path.to_owned(),
        source: e.into(),
    })
}

fn special_file<R: Read>(entry: &tar::Entry<'_, R>, dst: &Path) -> Result<(), LayerError> {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    let header = entry.header();
    let kind = header.entry_type();
    let flag = if kind.is_character_special() {
        SFlag::S_IFCHR
    } else if kind.is_block_special() {
        SFlag::S_IFBLK
    } else {
        SFlag::S_IFIFO
    };
    let major = header.device_major().ok().flatten().unwrap_or(0);
    let minor = header.device_minor().ok().flatten().unwrap_or(0);
    let mode = header.mode().map_err(LayerError::Tar)?;
    mknod(
        dst,
        flag,
        Mode::from_bits_truncate(mode & 0o7777),
        makedev(u64::from(major), u64::from(minor)),
    )
    .map_err(|e| LayerError::Io {
        action: "create the device node",
        path: dst.to_owned(),
        source: e.into(),
    })?;
    let (uid, gid) = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
    std::os::unix::fs::lchown(dst, Some(uid as u32), Some(gid as u32)).map_err(fail("chown", dst))
}

/// Sets overlayfs's opaque xattr on `dir` (its lower layers' content is hidden).
fn mark_opaque(dir: &Path) -> Result<(), LayerError> {
    let path = CString::new(dir.as_os_str().as_bytes()).map_err(|_| LayerError::Io {
        action: "name",
        path: dir.to_owned(),
        source: io::Error::other("a NUL byte in the path"),
    })?;
    let name = CString::new(OVERLAY_OPAQUE_XATTR).map_err(|_| LayerError::Io {
        action: "name",
        path: dir.to_owned(),
        source: io::Error::other("a NUL byte in the xattr name"),
    })?;
    let value = b"y";
    // SAFETY: `path` and `name` are NUL-terminated C strings that outlive the call; `value`
    // points to `value.len()` readable bytes.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(fail("mark opaque", dir)(io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether overlayfs sees `dir` as opaque.
pub fn is_opaque(dir: &Path) -> bool {
    let (Ok(path), Ok(name)) = (
        CString::new(dir.as_os_str().as_bytes()),
        CString::new(OVERLAY_OPAQUE_XATTR),
    ) else {
        return false;
    };
    let mut value = [0u8; 4];
    // SAFETY: `path` and `name` are NUL-terminated; `value` has `value.len()` writable bytes.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

/// Whether `path` is an overlayfs whiteout (a character device 0/0).
pub fn is_whiteout(path: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

/// Counts and hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn finish(self) -> (Digest, u64) {
        (Digest::from_hasher(self.hasher), self.size)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// A tar builder for hand-made layers, including the malicious kinds `tar::Builder`
    /// refuses to write (`..` paths).
    struct Layer(tar::Builder<Vec<u8>>);

    impl Layer {
        fn new() -> Self {
            Self(tar::Builder::new(Vec::new()))
        }

        fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
            let mut header = tar::Header::new_gnu();
            // Written raw: `set_path` refuses `..`, which is what these tests need.
            let name = path.as_bytes();
            header.as_old_mut().name[..name.len()].copy_from_slice(name);
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_size(size);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_cksum();
            header
        }

        fn file(mut self, path: &str, content: &str) -> Self {
            let header = Self::header(path, tar::EntryType::Regular, 0o644, content.len() as u64);
            self.0.append(&header, content.as_bytes()).unwrap();
            self
        }

        fn dir(mut self, path: &str) -> Self {
            let header = Self::header(path, tar::EntryType::Directory, 0o755, 0);
            self.0.append(&header, io::empty()).unwrap();
            self
        }

        fn link(mut self, path: &str, kind: tar::EntryType, target: &str) -> Self {
            let mut header = Self::header(path, kind, 0o777, 0);
            header.set_link_name(target).unwrap();
            header.set_cksum();
            self.0.append(&header, io::empty()).unwrap();
            self
        }

        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn need_root() -> bool {
        if root() {
            return true;
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "whiteouts need root (mknod, trusted xattrs); CI must run as root"
        );
        eprintln!("skipped: needs root");
        false
    }

    #[test]
    fn plain_gzip_and_zstd_layers_unpack_and_hash_to_their_diff_id() {
        if !need_root() {
            return;
        }
        let tar = Layer::new()
            .dir("bin/")
            .file("bin/hello", "hi\n")
            .link("bin/sh", tar::EntryType::Symlink, "/bin/hello")
            .link("bin/hard", tar::EntryType::Link, "bin/hello")
            .bytes();
        let diff_id = Digest::of(&tar);
        let zstd = zstd::encode_all(&tar[..], 1).unwrap();
        for (name, blob) in [("plain", tar.clone()), ("gzip", gzip(&tar)), ("zstd", zstd)] {
            let dir = tempfile::tempdir().unwrap();
            let target = dir.path().join("layer");
            let unpacked = unpack_layer(&blob[..], &target, Some(&diff_id))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(unpacked.diff_id, diff_id, "{name}");
            assert_eq!(unpacked.size, tar.len() as u64);
            assert_eq!(
                std::fs::read_to_string(target.join("bin/hello")).unwrap(),
                "hi\n"
            );
            assert_eq!(
                std::fs::read_link(target.join("bin/sh")).unwrap(),
                Path::new("/bin/hello"),
                "absolute symlinks are kept as they are"
            );
            assert_eq!(
                std::fs::read_to_string(target.join("bin/hard")).unwrap(),
                "hi\n"
            );
            let mode = std::fs::metadata(target.join("bin/hello"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o644, "{name}: modes come from the layer");
        }
    }

    #[test]
    fn whiteouts_and_opaque_dirs_become_overlay_markers() {
        if !need_root() {
            return;
        }
        let tar = Layer::new()
            .file("etc/.wh.passwd", "")
            .file("var/cache/.wh..wh..opq", "")
            .file("var/cache/new", "x")
            .file(".wh..wh..plnk", "")
            .bytes();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("layer");
        unpack_layer(&tar[..], &target, None).unwrap();
        assert!(is_whiteout(&target.join("etc/passwd")));
        assert!(!target.join("etc/.wh.passwd").exists());
        assert!(is_opaque(&target.join("var/cache")));
        assert!(!is_opaque(&target.join("var")));
        assert!(target.join("var/cache/new").is_file());
        assert!(!target.join("var/cache/.wh..wh..opq").exists());
        assert!(!target.join(".wh..wh..plnk").exists());
    }

    #[test]
    fn whiteouts_hide_lower_files_in_a_real_overlay() {
        if !need_root() {
            return;
        }
        let lower = Layer::new()
            .file("etc/passwd", "root")
            .file("etc/keep", "k")
            .file("cache/old", "o")
            .bytes();
        let upper = Layer::new()
            .file("etc/.wh.passwd", "")
            .file("cache/.wh..wh..opq", "")
            .file("cache/new", "n")
            .bytes();
        let dir = tempfile::tempdir().unwrap();
        let (l1, l2) = (dir.path().join("l1"), dir.path().join("l2"));
        unpack_layer(&lower[..], &l1, None).unwrap();
        unpack_layer(&upper[..], &l2, None).unwrap();
        let merged = dir.path().join("merged");
        std::fs::create_dir(&merged).unwrap();
        let options = format!("lowerdir={}:{}", l2.display(), l1.display());
        nix::mount::mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(options.as_str()),
        )
        .unwrap();
        let seen = (
            merged.join("etc/passwd").exists(),
            merged.join("etc/keep").exists(),
            merged.join("cache/old").exists(),
            merged.join("cache/new").exists(),
        );
        nix::mount::umount(&merged).unwrap();
        assert_eq!(seen, (false, true, false, true));
    }

    #[test]
    fn layers_escaping_their_directory_are_refused_and_leave_nothing() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("dotdot", Layer::new().file("../escape", "x").bytes()),
            (
                "nested dotdot",
                Layer::new().file("a/../../escape", "x").bytes(),
            ),
            (
                "through an absolute symlink",
                Layer::new()
                    .link("etc", tar::EntryType::Symlink, "/etc")
                    .file("etc/hive-escape", "x")
                    .bytes(),
            ),
            (
                "through a relative symlink",
                Layer::new()
                    .link("up", tar::EntryType::Symlink, "../../..")
                    .file("up/hive-escape", "x")
                    .bytes(),
            ),
            (
                "hard link out",
                Layer::new()
                    .link("passwd", tar::EntryType::Link, "../../etc/passwd")
                    .bytes(),
            ),
        ];
        for (name, tar) in cases {
            let dir = tempfile::tempdir().unwrap();
            let target = dir.path().join("layers").join("l");
            std::fs::create_dir(dir.path().join("layers")).unwrap();
            let err = unpack_layer(&tar[..], &target, None).unwrap_err();
            assert!(
                matches!(
                    err,
                    LayerError::DotDot { .. } | LayerError::ThroughSymlink { .. }
                ),
                "{name}: {err}"
            );
            assert!(!target.exists(), "{name}");
            assert_eq!(
                std::fs::read_dir(dir.path().join("layers"))
                    .unwrap()
                    .count(),
                0,
                "{name}: nothing is left behind"
            );
            assert!(!dir.path().join("escape").exists());
            assert!(!Path::new("/etc/hive-escape").exists());
        }
    }

    #[test]
    fn a_layer_that_does_not_match_its_diff_id_is_refused() {
        let tar = Layer::new().file("a", "1").bytes();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("l");
        let err = unpack_layer(&tar[..], &target, Some(&Digest::of(b"other"))).unwrap_err();
        assert!(matches!(err, LayerError::DiffId { .. }), "{err}");
        assert!(!target.exists());
        assert!(!staging_dir(&target).exists());
        // A truncated gzip stream is an error too, not a shorter layer.
        let gz = gzip(&tar);
        let err = unpack_layer(&gz[..gz.len() / 2], &target, None).unwrap_err();
        assert!(
            matches!(err, LayerError::Tar(_) | LayerError::Io { .. }),
            "{err}"
        );
        assert!(!target.exists());
    }
}
