//! Test support shared by unit tests, lab tests and the workspace tests. A
//! dev-dependency only: product code never links it (`cargo tree -e normal`).
//! The `BPF_PROG_RUN` harness lives in `hive-prog-run` (the mesh benchmark
//! uses it too) and is re-exported here for the fixtures.

pub use hive_prog_run::{packet, prog_run, world};

/// Whether a privileged test may run: true as root. Without root it panics when `CI` is set
/// (a CI run must not pass by skipping) and otherwise prints why it skips. `needs` says what
/// root is for ("it creates network namespaces").
pub fn root_or_skip(test: &str, needs: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test} needs root ({needs}); CI must run the tests as root");
    }
    eprintln!("skipping {test}: needs root ({needs}); run the tests as root");
    false
}
