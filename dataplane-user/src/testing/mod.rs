//! Test support shared by unit tests, lab tests and benchmarks.

pub mod packet;
pub mod prog_run;
pub mod world;
