//! The gRPC API: generated types and services (`pb`), conversions from store objects
//! (`convert`), the mesh view the dispatcher sends and the agent programs (`mesh_view`), and the error every handler returns (`ApiError`), which decides the gRPC code
//! and how the CLI shows it (docs/control-plane.md).

pub mod assignments;
pub mod convert;
pub mod error;
pub mod mesh_view;
pub mod pb;

pub use error::{
    ApiError, LEADER_KEY, LOST_QUORUM, PLAIN_KEY, is_plain, is_retryable, leader_hint,
};

/// The response stream of a server-streaming RPC.
pub type ReplyStream<T> =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, tonic::Status>> + Send + 'static>>;

/// The answer of an RPC whose handler is not built yet.
pub fn not_yet(rpc: &str) -> tonic::Status {
    tonic::Status::unimplemented(format!("{rpc} is not implemented by this hive build yet"))
}
