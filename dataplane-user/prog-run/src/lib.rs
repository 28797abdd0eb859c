//! The `BPF_PROG_RUN` harness: the real embedded programs run in the kernel
//! on packets built here, with maps filled as user space would
//! ([`world`]: the fixtures' two-node world). The kernel fixtures
//! (`tests/prog_run*.rs`, through `hive-test-support`) and the program costs
//! of `hive mesh bench` use it, so it is not test-only.

pub mod netns;
pub mod packet;
pub mod prog_run;
pub mod world;
