//! Test support shared by unit tests, lab tests and benchmarks.
