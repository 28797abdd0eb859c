//! [`EngineError`]: how the Engine API fails, as dockerd does: an HTTP status and
//! `{"message": "..."}`.
//!
//! Errors of the cluster API arrive as gRPC statuses and get dockerd's status codes
//! (`api/server/httpstatus`: NotFound 404, InvalidArgument 400, AlreadyExists 409,
//! FailedPrecondition 400, Unavailable 503, …). hive's own refusals for nodes outside a swarm
//! or workers are replaced by dockerd's words, which name `docker swarm init`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bollard_stubs::models::ErrorResponse;

use crate::api::ApiError;

/// dockerd's `errNoSwarm`.
/// Docker's answer on a locked manager (moby `daemon/cluster/errors.go`, `errSwarmLocked`).
pub const LOCKED: &str = "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"docker swarm unlock\" to unlock it.";
pub const NO_SWARM: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
/// dockerd's `errNoManager`.
pub const NO_MANAGER: &str = "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";
/// SwarmKit's answer to an update sent with a version that is no longer current.
pub const OUT_OF_SEQUENCE: &str = "update out of sequence";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EngineError {
    pub status: StatusCode,
    pub message: String,
}

impl EngineError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn not_implemented(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("{what} is not implemented by hive's Engine API yet"),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// A stale `?version=`: refused, never applied.
    pub fn out_of_sequence() -> Self {
        Self::conflict(OUT_OF_SEQUENCE)
    }
}

impl From<crate::client::ClientError> for EngineError {
    fn from(err: crate::client::ClientError) -> Self {
        Self::from(err.into_status())
    }
}

impl From<tonic::Status> for EngineError {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let message = status.message();
        if message == ApiError::NoSwarmForCluster.to_string()
            || message == ApiError::NotInSwarm.to_string()
        {
            return Self::new(StatusCode::SERVICE_UNAVAILABLE, NO_SWARM);
        }
        if message == ApiError::Locked.to_string() {
            return Self::new(StatusCode::SERVICE_UNAVAILABLE, LOCKED);
        }
        if message == ApiError::NotManager.to_string() {
            return Self::new(StatusCode::SERVICE_UNAVAILABLE, NO_MANAGER);
        }
        let code = match status.code() {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                StatusCode::BAD_REQUEST
            }
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists => StatusCode::CONFLICT,
            // The store's version conflict: the caller's read is stale.
            Code::Aborted => return Self::out_of_sequence(),
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if crate::api::is_plain(&status) {
            Self::new(code, message)
        } else {
            Self::new(
                code,
                format!("rpc error: code = {:?} desc = {message}", status.code()),
            )
        }
    }
}

impl IntoResponse for EngineError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            message: self.message,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_errors_get_dockerds_status_codes() {
        let status: tonic::Status = ApiError::NotManager.into();
        let error = EngineError::from(status);
        assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.message, NO_MANAGER);
        let status: tonic::Status = ApiError::NoSwarmForCluster.into();
        assert_eq!(EngineError::from(status).message, NO_SWARM);
        let status: tonic::Status = ApiError::NotFound {
            kind: "service",
            query: "web".into(),
        }
        .into();
        let error = EngineError::from(status);
        assert_eq!(error.status, StatusCode::NOT_FOUND);
        assert_eq!(error.message, "service web not found");
        let error = EngineError::from(tonic::Status::aborted("version conflict"));
        assert_eq!(error.status, StatusCode::CONFLICT);
        assert_eq!(error.message, OUT_OF_SEQUENCE);
    }
}
