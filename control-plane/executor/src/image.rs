//! Images: what a task's image string means and which program it runs.
//!
//! hive does not pull images yet (OCI images through crun/runc come later,
//! behind the same executor trait). It runs:
//!
//! - built-in images, programs inside the `hive` binary:
//!   `hive/whoami` → `hive builtin whoami --listen 0.0.0.0:80`,
//!   `hive/echo` → `hive builtin echo --listen 0.0.0.0:7`
//!   (an optional `:latest` tag is accepted);
//! - host programs: image `host` whose command is the program and its
//!   arguments (`hive service create host nginx -g 'daemon off;'`), or
//!   `host:<program>` with the program in the image (`host:/usr/sbin/nginx`,
//!   arguments after it).
//!
//! Like a Docker image, each has an entry point and default arguments:
//! `--entrypoint` replaces the entry point (and drops the default
//! arguments, as `docker run` does), arguments after the image replace the
//! default arguments.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

/// The `PATH` a task gets when its spec sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An image hive knows how to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image<'a> {
    /// `hive/whoami`: HTTP on port 80 answering with hostname and addresses.
    Whoami,
    /// `hive/echo`: TCP and UDP echo on port 7.
    Echo,
    /// `host` (program from the command) or `host:<program>`.
    Host { program: Option<&'a str> },
}

/// Errors about a task's image or program: the task cannot run on this node.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "image {image:?} is not available: hive runs the built-in images hive/whoami and hive/echo, and host programs as \"host <program>\""
    )]
    Unknown { image: String },
    #[error(
        "image \"host\" needs a program: give it after the image (`hive service create host nginx -g 'daemon off;'`) or in the image (`host:/usr/sbin/nginx`)"
    )]
    NoProgram,
    #[error(
        "program {program:?} was not found on this node (searched PATH={path}); install it or give its absolute path"
    )]
    ProgramNotFound { program: String, path: String },
    #[error("program {program:?} is not an executable file on this node; check its path and mode")]
    NotExecutable { program: PathBuf },
    #[error("the hive binary path {path:?} is not valid UTF-8; install hive under a plain path")]
    HiveBinaryPath { path: PathBuf },
}

impl<'a> Image<'a> {
    /// Parse an image string; unknown images are a typed error, shown in
    /// `service ps` as the reason the task was rejected.
    pub fn parse(image: &'a str) -> Result<Self, ImageError> {
        let builtin = image.strip_suffix(":latest").unwrap_or(image);
        match builtin {
            "hive/whoami" => return Ok(Self::Whoami),
            "hive/echo" => return Ok(Self::Echo),
            "host" => return Ok(Self::Host { program: None }),
            _ => {}
        }
        match image.strip_prefix("host:") {
            Some(program) if !program.is_empty() => Ok(Self::Host {
                program: Some(program),
            }),
            _ => Err(ImageError::Unknown {
                image: image.to_owned(),
            }),
        }
    }

    /// Whether hive's init runs as PID 1 when the spec does not say. The
    /// built-in servers install no SIGTERM handler, and the kernel drops
    /// signals without a handler sent to a PID namespace's init: as PID 1
    /// they would only stop at SIGKILL. Host programs run as PID 1 by
    /// default, as in Docker (`--init` is off there too).
    pub fn default_init(self) -> bool {
        !matches!(self, Self::Host { .. })
    }

    /// Whether the task's program tells the executor when it serves (so that it is reported
    /// `RUNNING` only then): a built-in image run by its own entry point (`command` empty;
    /// `--entrypoint` makes it some other program).
    pub fn says_when_serving(self, command: &[String]) -> bool {
        !matches!(self, Self::Host { .. }) && command.is_empty()
    }

    fn entrypoint(self, hive: &str) -> Vec<String> {
        let builtin = |name: &str| vec![hive.to_owned(), "builtin".to_owned(), name.to_owned()];
        match self {
            Self::Whoami => builtin("whoami"),
            Self::Echo => builtin("echo"),
            Self::Host { program } => program.map(str::to_owned).into_iter().collect(),
        }
    }

    fn default_args(self) -> Vec<String> {
        let listen = |addr: &str| vec!["--listen".to_owned(), addr.to_owned()];
        match self {
            Self::Whoami => listen("0.0.0.0:80"),
            Self::Echo => listen("0.0.0.0:7"),
            Self::Host { .. } => Vec::new(),
        }
    }

    /// The task's full command line, program first (not yet searched in
    /// `PATH`): entry point and arguments with the spec's overrides.
    pub fn command_line(
        self,
        hive_binary: &Path,
        command: &[String],
        args: &[String],
    ) -> Result<Vec<String>, ImageError> {
        let hive = hive_binary
            .to_str()
            .ok_or_else(|| ImageError::HiveBinaryPath {
                path: hive_binary.to_path_buf(),
            })?;
        let mut argv = if command.is_empty() {
            self.entrypoint(hive)
        } else {
            command.to_vec()
        };
        if !args.is_empty() {
            argv.extend_from_slice(args);
        } else if command.is_empty() {
            argv.extend(self.default_args());
        }
        if argv.is_empty() {
            return Err(ImageError::NoProgram);
        }
        Ok(argv)
    }
}

/// Find `program` the way `execvp` would, with the task's `PATH`; a name
/// with a `/` is taken as a path (relative to the task's working directory).
/// Done at `prepare`, so a missing program rejects the task with a clear
/// reason instead of failing it at start, again and again.
pub fn resolve_program(program: &str, path: &str, workdir: &Path) -> Result<PathBuf, ImageError> {
    if program.contains('/') {
        let candidate = workdir.join(program);
        return if is_executable(&candidate) {
            Ok(candidate)
        } else {
            Err(ImageError::NotExecutable { program: candidate })
        };
    }
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| ImageError::ProgramNotFound {
            program: program.to_owned(),
            path: path.to_owned(),
        })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HIVE: &str = "/usr/bin/hive";

    fn argv(image: &str, command: &[&str], args: &[&str]) -> Result<Vec<String>, ImageError> {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Image::parse(image)?.command_line(Path::new(HIVE), &owned(command), &owned(args))
    }

    #[test]
    fn builtin_images_run_the_hive_binary() {
        assert_eq!(
            argv("hive/whoami", &[], &[]).expect("whoami"),
            [HIVE, "builtin", "whoami", "--listen", "0.0.0.0:80"]
        );
        assert_eq!(
            argv("hive/echo:latest", &[], &[]).expect("echo"),
            [HIVE, "builtin", "echo", "--listen", "0.0.0.0:7"]
        );
        // Arguments replace the default ones, as a Docker image's CMD.
        assert_eq!(
            argv("hive/whoami", &[], &["--listen", "0.0.0.0:8080"]).expect("args"),
            [HIVE, "builtin", "whoami", "--listen", "0.0.0.0:8080"]
        );
    }

    #[test]
    fn host_images_take_the_program_from_the_command_or_the_image() {
        assert_eq!(
            argv("host", &[], &["nginx", "-g", "daemon off;"]).expect("host"),
            ["nginx", "-g", "daemon off;"]
        );
        assert_eq!(
            argv("host:/usr/sbin/nginx", &[], &["-g", "daemon off;"]).expect("host:"),
            ["/usr/sbin/nginx", "-g", "daemon off;"]
        );
        assert!(matches!(argv("host", &[], &[]), Err(ImageError::NoProgram)));
    }

    #[test]
    fn an_entrypoint_replaces_the_image_entrypoint_and_its_default_args() {
        assert_eq!(
            argv("hive/whoami", &["sh", "-c"], &["echo hi"]).expect("entrypoint"),
            ["sh", "-c", "echo hi"]
        );
        assert_eq!(argv("hive/echo", &["true"], &[]).expect("bare"), ["true"]);
    }

    #[test]
    fn unknown_images_name_what_hive_can_run() {
        for image in ["foo", "nginx:latest", "host:", "hive/whoami:v2"] {
            let err = argv(image, &[], &[]).expect_err(image);
            let text = err.to_string();
            assert!(text.contains(&format!("{image:?}")), "{text}");
            assert!(text.contains("hive/whoami and hive/echo"), "{text}");
        }
    }

    #[test]
    fn init_defaults_differ_between_builtin_and_host_images() {
        assert!(Image::Whoami.default_init());
        assert!(Image::Echo.default_init());
        assert!(!Image::Host { program: None }.default_init());
        // A built-in image run by its own program says when it serves; another entry point
        // or a host program does not.
        assert!(Image::Whoami.says_when_serving(&[]));
        assert!(!Image::Whoami.says_when_serving(&["/bin/sh".to_owned()]));
        assert!(!Image::Host { program: None }.says_when_serving(&[]));
    }

    #[test]
    fn programs_are_found_in_path_or_by_path() {
        let sh = resolve_program("sh", DEFAULT_PATH, Path::new("/")).expect("sh is installed");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        assert!(resolve_program("/bin/sh", "", Path::new("/")).is_ok());
        let err = resolve_program("no-such-hive-program", DEFAULT_PATH, Path::new("/"))
            .expect_err("missing");
        assert!(err.to_string().contains("install it"), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("data"), b"not a program").expect("write");
        assert!(matches!(
            resolve_program("./data", DEFAULT_PATH, dir.path()),
            Err(ImageError::NotExecutable { .. })
        ));
    }
}
