//! Compiles `proto/hive.proto` into OUT_DIR with protox (a protobuf compiler in Rust, so no
//! system `protoc` is needed) feeding tonic-prost-build. The generated code is never committed;
//! `api::pb` includes it.

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let proto = "proto/hive.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors =
        protox::compile([proto], ["proto"]).with_context(|| format!("compiling {proto}"))?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // A hand-written `Debug` (api::pb) hides the password.
        .skip_debug([".hive.v1.RegistryCredentials"])
        .compile_fds(descriptors)
        .context("generating Rust code for the gRPC API")?;
    Ok(())
}
