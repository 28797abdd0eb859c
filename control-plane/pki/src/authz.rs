//! Per-call authorization from the peer certificate of a connection.
//!
//! By the time a gRPC handler runs, rustls has verified the peer's chain against the cluster
//! root (see [`super::server_config`]). What is left is SwarmKit's `AuthorizeOrgAndRole`: read
//! the identity from the certificate, check it belongs to this cluster (O) and has a role
//! (OU) allowed to call the API. In tonic:
//!
//! ```ignore
//! let certs = request.peer_certs();
//! let caller = hive::pki::authorize(certs.as_deref().map(Vec::as_slice), &cluster_id, Role::Manager)
//!     .map_err(|e| if e.is_unauthenticated() { Status::unauthenticated(e.to_string()) }
//!                  else { Status::permission_denied(e.to_string()) })?;
//! ```

use rustls::pki_types::CertificateDer;

use super::identity::{IdentityError, NodeIdentity, Role};

/// The identity of the caller, from the certificate chain it presented (leaf first).
pub fn peer_identity(
    peer_certs: Option<&[CertificateDer<'_>]>,
) -> Result<NodeIdentity, AuthzError> {
    let leaf = peer_certs
        .and_then(|chain| chain.first())
        .ok_or(AuthzError::NoClientCertificate)?;
    NodeIdentity::from_cert_der(leaf).map_err(|source| AuthzError::BadCertificate { source })
}

/// Refuses `identity` unless its role satisfies `required` (a manager also satisfies worker).
pub fn require_role(identity: &NodeIdentity, required: Role) -> Result<(), AuthzError> {
    if identity.role.satisfies(required) {
        Ok(())
    } else {
        Err(AuthzError::RoleDenied {
            node_id: identity.node_id.clone(),
            role: identity.role,
            required,
        })
    }
}

/// Both checks in one: the caller has a certificate of cluster `cluster_id` whose role
/// satisfies `required`. Returns who the caller is.
pub fn authorize(
    peer_certs: Option<&[CertificateDer<'_>]>,
    cluster_id: &str,
    required: Role,
) -> Result<NodeIdentity, AuthzError> {
    let identity = peer_identity(peer_certs)?;
    // The CA is per cluster, so this only fails if two clusters ever shared a root
    // (a restored backup, a CA imported with `swarm ca --ca-cert`). Cheap, so kept.
    if identity.cluster_id != cluster_id {
        return Err(AuthzError::WrongCluster {
            node_id: identity.node_id,
            found: identity.cluster_id,
            expected: cluster_id.to_owned(),
        });
    }
    require_role(&identity, required)?;
    Ok(identity)
}

/// Refuses `identity` if the swarm removed its node: a removed node's certificate stays
/// cryptographically valid until it expires, so every API checks the swarm's list of removed
/// nodes (SwarmKit's blacklisted certificates) after [`authorize`].
pub fn refuse_removed(
    identity: &NodeIdentity,
    is_removed: impl FnOnce(&str) -> bool,
) -> Result<(), AuthzError> {
    if is_removed(&identity.node_id) {
        return Err(AuthzError::Removed {
            node_id: identity.node_id.clone(),
        });
    }
    Ok(())
}

/// A caller that may not use an API.
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    /// No client certificate: a node that has not joined (allowed on the port only for the
    /// join API).
    #[error(
        "this API is for nodes of the swarm and the caller presented no node certificate; join the swarm first (`hive swarm join --token ...`)"
    )]
    NoClientCertificate,
    /// The certificate verified but has no node identity.
    #[error("the caller's certificate is not a node certificate: {source}")]
    BadCertificate {
        /// Why.
        source: IdentityError,
    },
    /// The certificate is for another cluster.
    #[error(
        "node {node_id} belongs to cluster {found}, not to this cluster ({expected}); it must leave that swarm and join this one"
    )]
    WrongCluster {
        /// The caller.
        node_id: String,
        /// The caller's cluster.
        found: String,
        /// Ours.
        expected: String,
    },
    /// The caller's role is not enough.
    #[error(
        "node {node_id} is a {role} and this API needs a {required}; run it on a manager, or promote the node with `hive node promote {node_id}`"
    )]
    RoleDenied {
        /// The caller.
        node_id: String,
        /// The caller's role.
        role: Role,
        /// The role the API needs.
        required: Role,
    },
    /// The caller's node was removed from the swarm (`hive node rm`).
    #[error(
        "node {node_id} was removed from the swarm and its certificate is no longer accepted; to come back, run `hive swarm leave --force` on it and join again with a current token"
    )]
    Removed {
        /// The caller.
        node_id: String,
    },
}

impl AuthzError {
    /// True when the caller is not identified at all (gRPC `UNAUTHENTICATED`); false when it
    /// is identified but not allowed (gRPC `PERMISSION_DENIED`).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            AuthzError::NoClientCertificate | AuthzError::BadCertificate { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker() -> NodeIdentity {
        NodeIdentity {
            node_id: "w1".to_owned(),
            role: Role::Worker,
            cluster_id: "c1".to_owned(),
        }
    }

    #[test]
    fn a_worker_cannot_call_manager_apis() {
        let err = require_role(&worker(), Role::Manager).unwrap_err();
        assert!(matches!(
            err,
            AuthzError::RoleDenied {
                role: Role::Worker,
                required: Role::Manager,
                ..
            }
        ));
        assert!(!err.is_unauthenticated());
        assert_eq!(
            err.to_string(),
            "node w1 is a worker and this API needs a manager; run it on a manager, or promote the node with `hive node promote w1`"
        );
        require_role(&worker(), Role::Worker).unwrap();
    }

    #[test]
    fn a_removed_node_is_refused_whatever_its_role() {
        let manager = NodeIdentity {
            role: Role::Manager,
            ..worker()
        };
        let err = refuse_removed(&manager, |id| id == "w1").unwrap_err();
        assert!(matches!(err, AuthzError::Removed { .. }));
        assert!(!err.is_unauthenticated());
        refuse_removed(&manager, |_| false).unwrap();
    }

    #[test]
    fn no_certificate_is_unauthenticated() {
        let err = authorize(None, "c1", Role::Worker).unwrap_err();
        assert!(matches!(err, AuthzError::NoClientCertificate));
        assert!(err.is_unauthenticated());
        let err = authorize(Some(&[]), "c1", Role::Worker).unwrap_err();
        assert!(matches!(err, AuthzError::NoClientCertificate));
    }
}
