//! Empty library target. `dataplane-user` lists this crate as a
//! build-dependency so that cargo re-runs its build script (which builds
//! the programs for bpfel) whenever this crate or `hive-common` changes;
//! cargo only honours a build-dependency that has a library target.
#![no_std]
