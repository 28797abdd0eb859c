//! Node certificates renewed before they expire, without restarting anything.
//!
//! Every node runs [`run`] while it is in a swarm: it sleeps until a random point between half
//! and four fifths of its certificate's lifetime (SwarmKit's window, [`RenewalPolicy`]), asks
//! the leader's CA for a new certificate with a fresh key, saves it, and puts it in the node's
//! [`CertSlot`], from which both the node-port server and every client connection take their
//! certificate at the next handshake. A renewal that fails is retried with backoff; the window
//! leaves a fifth of the lifetime for that.
//!
//! A renewal that comes back with another role is a promotion or demotion: that is the role
//! reconciler's job ([`super::roles`]), which restarts the node in the new role; this loop then
//! leaves the certificate alone.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use tokio::sync::watch;

use super::node::{Active, SwarmNode};
use crate::api::{ApiError, pb};
use crate::manager::membership::call_leader;
use crate::manager::{request_with_timeout, timers};
use crate::pki::{self, CertValidity, NodeCredentials, NodeKey, RenewalPolicy, RootCert};
use crate::transport::mtls_channel;

/// First and last pause after a failed renewal (doubling in between).
const RETRY_MIN: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(10 * 60);

/// A certificate the leader's CA issued for this node.
#[derive(Debug)]
pub struct Renewed {
    pub creds: NodeCredentials,
    pub raft_id: u64,
}

/// Asks the leader's CA for a new certificate for this node, with a fresh key. The role in it
/// is the one the swarm wants the node to have.
pub async fn request_certificate(active: &Active) -> Result<Renewed, ApiError> {
    let key = NodeKey::generate().map_err(|e| ApiError::internal("making a node key", e))?;
    let csr = key
        .csr()
        .map_err(|e| ApiError::internal("making a CSR", e))?;
    let tls = active.client_tls.clone();
    let advertise_addr = active.file.advertise_addr.clone();
    let renewed = call_leader(
        &active.file.managers,
        |target| mtls_channel(target, tls.clone(), pki::manager_server_name()),
        |channel| {
            let request = pb::RenewNodeCertificateRequest {
                csr: csr.as_ref().to_vec(),
                advertise_addr: advertise_addr.clone(),
            };
            async move {
                pb::ca_client::CaClient::new(channel)
                    .renew_node_certificate(request_with_timeout(
                        request,
                        timers::PEER_CALL_TIMEOUT,
                    ))
                    .await
                    .map(tonic::Response::into_inner)
            }
        },
        timers::PEER_CALL_TIMEOUT,
    )
    .await?;
    // The issuing root: the incoming one during a root rotation (docs/security.md).
    let root = if renewed.root_ca.is_empty() {
        active.creds.root().clone()
    } else {
        RootCert::from_der(CertificateDer::from(renewed.root_ca))
            .map_err(|e| ApiError::internal("reading the issuing root CA", e))?
    };
    let creds = NodeCredentials::new(
        root,
        CertificateDer::from(renewed.certificate),
        key,
        SystemTime::now(),
    )
    .map_err(|e| ApiError::internal("checking the renewed certificate", e))?
    .with_intermediates(
        renewed
            .intermediates
            .into_iter()
            .map(CertificateDer::from)
            .collect(),
    );
    Ok(Renewed {
        creds,
        raft_id: renewed.raft_id,
    })
}

/// When to renew a certificate valid for `validity`, drawn in SwarmKit's window with `jitter`
/// in `[0, 1]`; how long that is from `now` (zero if already due).
pub fn wait_for(validity: &CertValidity, jitter: f64, now: SystemTime) -> Duration {
    RenewalPolicy::default()
        .renew_at(validity, jitter)
        .duration_since(now)
        .unwrap_or(Duration::ZERO)
}

/// Renews this node's certificate before it expires, until `stop` or until the node leaves
/// the swarm.
pub async fn run(node: Weak<SwarmNode>, mut stop: watch::Receiver<bool>) {
    let mut retry = RETRY_MIN;
    loop {
        let Some(active) = node.upgrade().and_then(|n| n.active()) else {
            return;
        };
        let wait = match CertValidity::from_cert_der(&active.cert_slot.cert()) {
            Ok(validity) => wait_for(&validity, rand::random::<f64>(), SystemTime::now()),
            Err(err) => {
                tracing::warn!(%err, "cannot read this node's certificate; renewing it now");
                Duration::ZERO
            }
        };
        let renew_now = active.renew_now.clone();
        drop(active);
        if !wait.is_zero() {
            tracing::debug!(in_secs = wait.as_secs(), "next certificate renewal");
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = renew_now.notified() => {
                tracing::info!("the swarm issues certificates from a new root CA; renewing now");
            }
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(node) = node.upgrade() else { return };
        match renew_once(&node).await {
            Ok(()) => retry = RETRY_MIN,
            Err(err) => {
                tracing::warn!(%err, retry_in_secs = retry.as_secs(), "renewing this node's certificate failed");
                tokio::select! {
                    () = tokio::time::sleep(retry) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// One renewal: a new certificate from the leader, saved, and presented from the next
/// handshake on.
async fn renew_once(node: &Arc<SwarmNode>) -> Result<(), ApiError> {
    let _guard = node.lock().await;
    let Some(active) = node.active() else {
        return Ok(());
    };
    let renewed = request_certificate(&active).await?;
    if renewed.creds.identity().role != active.role() {
        tracing::info!("the renewed certificate carries a new role; the role change takes over");
        return Ok(());
    }
    // Sealed as the node keeps its key now (with the KEK while autolock is on).
    node.identity
        .save(&renewed.creds)
        .map_err(|e| ApiError::internal("saving the renewed certificate", e))?;
    active
        .cert_slot
        .set(&renewed.creds)
        .map_err(|e| ApiError::internal("presenting the renewed certificate", e))?;
    tracing::info!("renewed this node's certificate");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validity(not_before: SystemTime, lifetime: Duration) -> CertValidity {
        CertValidity {
            not_before,
            not_after: not_before + lifetime,
        }
    }

    #[test]
    fn renewal_falls_between_half_and_four_fifths_of_the_lifetime() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ninety_days = Duration::from_secs(90 * 24 * 3600);
        let v = validity(issued, ninety_days);
        assert_eq!(wait_for(&v, 0.0, issued), ninety_days / 2);
        assert_eq!(wait_for(&v, 1.0, issued), ninety_days.mul_f64(0.8));
        let some = wait_for(&v, 0.37, issued);
        assert!(some > ninety_days / 2 && some < ninety_days.mul_f64(0.8));
        // Later on, the wait is what is left until that point.
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(wait_for(&v, 0.0, issued + day), ninety_days / 2 - day);
    }

    #[test]
    fn a_certificate_past_its_window_or_expired_is_renewed_at_once() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        let v = validity(issued, hour);
        assert_eq!(
            wait_for(&v, 1.0, issued + hour.mul_f64(0.9)),
            Duration::ZERO
        );
        assert_eq!(wait_for(&v, 0.5, issued + 2 * hour), Duration::ZERO);
    }
}
