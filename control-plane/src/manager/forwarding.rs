//! What a call forwarded to the leader may do after it failed: be sent again (to the same
//! leader or a new one), or end with an honest answer. A read may always be sent again. A
//! write that may have reached the leader may not: if the leader applied it and then could
//! not answer, sending it again would apply it twice (a second service, a second update), so
//! its caller is told that its fate is unknown, as etcd's and SwarmKit's clients are.

use std::error::Error as _;

use tonic::{Code, Status};

use crate::api::ApiError;
use crate::api::error::leader_hint;

/// Whether a forwarded call changes the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Read,
    Write,
}

/// The answer to a write that reached a leader that then failed to answer.
pub fn unknown_fate() -> ApiError {
    ApiError::UnknownFate
}

/// What to do with a forwarded call that failed with `error`: `Ok(())` to send it again
/// (the failure says nothing happened, or it is a read), or the error to answer.
pub fn after_failure(kind: CallKind, error: ApiError) -> Result<(), ApiError> {
    if let (CallKind::Write, ApiError::Remote(status)) = (kind, &error)
        && may_have_arrived(status)
    {
        tracing::debug!(%status, "a forwarded write failed on its way");
        return Err(unknown_fate());
    }
    if error.is_retryable() {
        Ok(())
    } else {
        Err(error)
    }
}

/// Whether the leader may have received the request the failure `status` answers: a
/// transport failure other than not connecting at all. The leader's own refusals (it is no
/// leader any more, with the new leader's address) applied nothing.
fn may_have_arrived(status: &Status) -> bool {
    if leader_hint(status).is_some() {
        return false;
    }
    match status.code() {
        Code::Unavailable => !never_connected(status),
        Code::DeadlineExceeded | Code::Cancelled => true,
        _ => false,
    }
}

/// The connection to the leader could not be made, so the request never left.
fn never_connected(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
                    | std::io::ErrorKind::AddrNotAvailable
            )
        {
            return true;
        }
        // hyper-util names a failed connect so; its inner error may be a timeout.
        if error.to_string().contains("tcp connect error") {
            return true;
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport failure as tonic reports it: `Unavailable`, the cause as its source.
    fn transport(kind: std::io::ErrorKind) -> ApiError {
        let mut status = Status::unavailable("transport error");
        status.set_source(std::sync::Arc::new(std::io::Error::new(kind, "broken")));
        ApiError::Remote(status)
    }

    #[test]
    fn reads_are_sent_again_after_any_retryable_failure() {
        assert!(
            after_failure(
                CallKind::Read,
                transport(std::io::ErrorKind::ConnectionReset)
            )
            .is_ok()
        );
        assert!(after_failure(CallKind::Read, ApiError::NoLeader).is_ok());
    }

    #[test]
    fn a_write_that_may_have_arrived_has_an_unknown_fate() {
        let reset = transport(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(
            after_failure(CallKind::Write, reset),
            Err(ApiError::UnknownFate)
        ));
        let late = ApiError::Remote(Status::deadline_exceeded("timeout expired"));
        assert!(matches!(
            after_failure(CallKind::Write, late),
            Err(ApiError::UnknownFate)
        ));
    }

    #[test]
    fn a_write_that_never_left_or_was_refused_is_sent_again() {
        let refused = transport(std::io::ErrorKind::ConnectionRefused);
        assert!(after_failure(CallKind::Write, refused).is_ok());
        let not_leader: Status = ApiError::NotLeader {
            addr: "192.168.77.2:2377".to_owned(),
        }
        .into();
        assert!(after_failure(CallKind::Write, ApiError::Remote(not_leader)).is_ok());
        assert!(after_failure(CallKind::Write, ApiError::NoLeader).is_ok());
    }

    #[test]
    fn other_errors_are_answered() {
        let invalid = ApiError::Invalid("bad".to_owned());
        assert!(matches!(
            after_failure(CallKind::Write, invalid),
            Err(ApiError::Invalid(_))
        ));
    }
}
