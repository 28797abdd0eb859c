//! The generated protobuf types and tonic services of `proto/hive.proto` (package `hive.v1`).
#![allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]

tonic::include_proto!("hive.v1");
