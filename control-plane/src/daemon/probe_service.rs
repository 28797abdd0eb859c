//! The `UnderlayProbe` gRPC service every node serves on its node port, for managers only:
//! send one probe when a manager asks (`crate::underlay_probe`).

use std::net::Ipv4Addr;
use std::sync::{Arc, Weak};

use super::SwarmNode;
use crate::api::{ApiError, pb};
use crate::transport::PeerInfo;
use crate::underlay_probe;

#[derive(Debug, Clone)]
pub struct UnderlayProbeService {
    node: Weak<SwarmNode>,
}

impl UnderlayProbeService {
    pub fn new(node: &Arc<SwarmNode>) -> Self {
        Self {
            node: Arc::downgrade(node),
        }
    }
}

/// A request, checked at the door.
fn validate(
    request: &pb::SpoofedProbeRequest,
) -> Result<(Ipv4Addr, u16, underlay_probe::Nonce), ApiError> {
    let target: Ipv4Addr = request.target.parse().map_err(|_| {
        ApiError::Invalid(format!(
            "probe target {:?} is not an IPv4 address",
            request.target
        ))
    })?;
    let port = u16::try_from(request.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ApiError::Invalid(format!("probe port {} is out of range", request.port)))?;
    let nonce = request.nonce.as_slice().try_into().map_err(|_| {
        ApiError::Invalid(format!(
            "a probe nonce has 16 bytes, not {}",
            request.nonce.len()
        ))
    })?;
    Ok((target, port, nonce))
}

#[tonic::async_trait]
impl pb::underlay_probe_server::UnderlayProbe for UnderlayProbeService {
    async fn send_spoofed_probe(
        &self,
        request: tonic::Request<pb::SpoofedProbeRequest>,
    ) -> Result<tonic::Response<pb::SpoofedProbeResponse>, tonic::Status> {
        let node = self.node.upgrade().ok_or(ApiError::NotInSwarm)?;
        let active = node.active().ok_or(ApiError::NotInSwarm)?;
        let certs = PeerInfo::of(&request).and_then(PeerInfo::certs);
        let caller =
            crate::pki::authorize(certs, &active.file.cluster_id, crate::pki::Role::Manager)
                .map_err(ApiError::from)?;
        let agent = node.agent().await.ok_or(ApiError::NotInSwarm)?;
        crate::pki::refuse_removed(&caller, |id| agent.gossip_auth.is_removed(id))
            .map_err(ApiError::from)?;
        let (target, port, nonce) = validate(request.get_ref())?;
        let datagram = underlay_probe::datagram(target, port, &nonce);
        let sent = tokio::task::spawn_blocking(move || underlay_probe::send(&datagram, target))
            .await
            .map_err(|e| ApiError::internal("sending the underlay probe", e))?;
        let response = match sent {
            Ok(()) => pb::SpoofedProbeResponse {
                sent: true,
                reason: String::new(),
            },
            // This host's own firewall drops spoofed sources: an answer, not a failure.
            Err(err) if err.raw_os_error() == Some(libc::EPERM) => pb::SpoofedProbeResponse {
                sent: false,
                reason: format!("its own host refused to send it ({err})"),
            },
            Err(err) => return Err(ApiError::internal("sending the underlay probe", err).into()),
        };
        tracing::debug!(%target, port, sent = response.sent, "underlay probe with the target's own address as source");
        Ok(tonic::Response::new(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_at_the_door() {
        let ok = pb::SpoofedProbeRequest {
            target: "192.168.77.1".into(),
            port: 7946,
            nonce: vec![3; 16],
        };
        assert_eq!(
            validate(&ok).unwrap(),
            (Ipv4Addr::new(192, 168, 77, 1), 7946, [3; 16])
        );
        let bad = |edit: fn(&mut pb::SpoofedProbeRequest)| {
            let mut r = ok.clone();
            edit(&mut r);
            validate(&r).unwrap_err().to_string()
        };
        assert!(bad(|r| r.target = "n1".into()).contains("not an IPv4 address"));
        assert!(bad(|r| r.port = 70_000).contains("out of range"));
        assert!(bad(|r| r.port = 0).contains("out of range"));
        assert!(bad(|r| r.nonce = vec![1; 4]).contains("16 bytes, not 4"));
    }
}
