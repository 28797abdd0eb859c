//! Root CA rotation (`swarm ca --rotate`), as SwarmKit does it (`ca/reconciler.go`,
//! `manager/controlapi/ca_rotation.go`); the design is in docs/security.md, "CA rotation".
//!
//! 1. [`start`]: a new root (or the operator's), cross-signed by the current one, goes into the
//!    cluster object as [`RootRotation`]; the join tokens are remade for the new root, so old
//!    tokens stop working at once.
//! 2. Every session answer carries both roots to trust and the new root's digest: each node
//!    trusts both, renews its certificate at once (issued by the new root, presented with the
//!    cross-signed intermediate) and reports its TLS state in its next heartbeat ([`record`]).
//! 3. When every node that is not down holds a certificate of the new root, [`record`]
//!    finishes the rotation in the same write: the new root becomes the cluster root (nodes
//!    then trust it alone), and the gossip key is rotated with it.

use rustls::pki_types::CertificateDer;

use crate::api::{ApiError, pb};
use crate::pki::{CaDigest, JoinTokens, RootCa, RootCaPem, RootCert};
use crate::store::objects::{Cluster, Node, NodeState, NodeTlsInfo, RootRotation};
use crate::store::{ReadView, Store};

/// The CA that signs node certificates now: the incoming root during a rotation.
pub fn signing_ca(cluster: &Cluster) -> Result<RootCa, ApiError> {
    let pem = match &cluster.root_ca.rotation {
        Some(rotation) => RootCaPem {
            cert_pem: rotation.ca_cert.clone(),
            key_pem: rotation.ca_key.clone(),
        },
        None => RootCaPem {
            cert_pem: cluster.root_ca.ca_cert.clone(),
            key_pem: cluster.root_ca.ca_key.clone().ok_or_else(|| {
                ApiError::internal("signing a node certificate", "the store has no CA key")
            })?,
        },
    };
    RootCa::from_pem(&pem).map_err(|e| ApiError::internal("loading the root CA", e))
}

/// What a new certificate is presented with: the cross-signed intermediate during a rotation.
pub fn intermediates(cluster: &Cluster) -> Result<Vec<CertificateDer<'static>>, ApiError> {
    use rustls::pki_types::pem::PemObject;
    cluster
        .root_ca
        .rotation
        .iter()
        .map(|rotation| {
            CertificateDer::from_pem_slice(rotation.cross_signed_cert.as_bytes())
                .map_err(|e| ApiError::internal("reading the cross-signed intermediate", e))
        })
        .collect()
}

/// The roots nodes must trust: the cluster root, and the incoming one during a rotation.
pub fn trusted_roots(cluster: &Cluster) -> Result<Vec<RootCert>, ApiError> {
    let read = |pem: &str| {
        RootCert::from_pem(pem).map_err(|e| ApiError::internal("reading a root CA certificate", e))
    };
    let mut roots = vec![read(&cluster.root_ca.ca_cert)?];
    if let Some(rotation) = &cluster.root_ca.rotation {
        roots.push(read(&rotation.ca_cert)?);
    }
    Ok(roots)
}

/// The digest of the root new certificates are issued by.
pub fn desired_digest(cluster: &Cluster) -> Result<CaDigest, ApiError> {
    let pem = cluster
        .root_ca
        .rotation
        .as_ref()
        .map_or(&cluster.root_ca.ca_cert, |r| &r.ca_cert);
    RootCert::from_pem(pem)
        .map(|root| root.digest())
        .map_err(|e| ApiError::internal("reading the root CA certificate", e))
}

/// Docker's `TLSInfo` of a root certificate in PEM (empty where it does not parse).
fn docker_issuer(pem: &str) -> (Vec<u8>, Vec<u8>) {
    RootCert::from_pem(pem).map_or_else(|_| (Vec::new(), Vec::new()), |r| r.issuer_identity())
}

/// The swarm's `TLSInfo` as dockerd shows it: the cluster root (the outgoing one during a
/// rotation) as `TrustRoot`, and the root new certificates are issued by as the issuer.
/// `docker swarm ca --rotate` is done when every node matches both.
pub fn cluster_tls_info(cluster: &Cluster) -> pb::DockerTlsInfo {
    let issuer = cluster
        .root_ca
        .rotation
        .as_ref()
        .map_or(&cluster.root_ca.ca_cert, |r| &r.ca_cert);
    let (subject, key) = docker_issuer(issuer);
    pb::DockerTlsInfo {
        trust_root: cluster.root_ca.ca_cert.clone(),
        cert_issuer_subject: subject,
        cert_issuer_public_key: key,
    }
}

/// A node's `TLSInfo` as dockerd shows it, from the digests the node reports: the PEM of
/// the roots it trusts and the identity of the root that issued its certificate. A digest of
/// a root the swarm no longer has (before the last rotation) shows as nothing.
pub fn node_tls_info(cluster: &Cluster, info: &NodeTlsInfo) -> pb::DockerTlsInfo {
    let roots: Vec<(String, &String)> = std::iter::once(&cluster.root_ca.ca_cert)
        .chain(cluster.root_ca.rotation.iter().map(|r| &r.ca_cert))
        .filter_map(|pem| {
            RootCert::from_pem(pem)
                .ok()
                .map(|root| (root.digest().to_string(), pem))
        })
        .collect();
    let pem_of = |digest: &str| {
        roots
            .iter()
            .find(|(d, _)| d == digest)
            .map(|(_, pem)| pem.as_str())
    };
    let (subject, key) =
        pem_of(&info.cert_issuer).map_or_else(|| (Vec::new(), Vec::new()), docker_issuer);
    pb::DockerTlsInfo {
        trust_root: info
            .trusted_roots
            .iter()
            .filter_map(|d| pem_of(d))
            .collect(),
        cert_issuer_subject: subject,
        cert_issuer_public_key: key,
    }
}

/// Starts a rotation to `request`'s root, or to a new one. A rotation already under way is
/// replaced (the new root is cross-signed by the cluster root, which every node still trusts).
pub fn start(cluster: &mut Cluster, request: &pb::RootRotationRequest) -> Result<(), ApiError> {
    if !request.rotate {
        if !request.ca_cert_pem.is_empty() || !request.ca_key_pem.is_empty() {
            return Err(ApiError::Invalid(
                "`--ca-cert` flag requires the `--rotate` flag to update the CA".to_owned(),
            ));
        }
        return Ok(());
    }
    let next = match (
        request.ca_cert_pem.is_empty(),
        request.ca_key_pem.is_empty(),
    ) {
        (true, true) => RootCa::generate(std::time::SystemTime::now())
            .map_err(|e| ApiError::internal("making the new root CA", e))?,
        (false, false) => RootCa::from_pem(&RootCaPem {
            cert_pem: request.ca_cert_pem.clone(),
            key_pem: request.ca_key_pem.clone(),
        })
        .map_err(|e| ApiError::Invalid(format!("cannot use the given root CA: {e}")))?,
        (true, false) => {
            return Err(ApiError::Invalid(
                "the CA certificate is required if the CA key is provided".to_owned(),
            ));
        }
        (false, true) => {
            return Err(ApiError::Invalid(
                "the CA key is required if the CA certificate is provided (hive has no external CA)"
                    .to_owned(),
            ));
        }
    };
    let current =
        RootCa::from_pem(&RootCaPem {
            cert_pem: cluster.root_ca.ca_cert.clone(),
            key_pem: cluster.root_ca.ca_key.clone().ok_or_else(|| {
                ApiError::internal("rotating the root CA", "the store has no CA key")
            })?,
        })
        .map_err(|e| ApiError::internal("loading the root CA", e))?;
    if next.cert().digest() == current.cert().digest() {
        return Err(ApiError::Invalid(
            "the given root CA is the swarm's current one; give another certificate and key, or none to make a new root".to_owned(),
        ));
    }
    let cross_signed = current
        .cross_sign(&next)
        .map_err(|e| ApiError::internal("cross-signing the new root CA", e))?;
    let tokens = JoinTokens::generate(next.cert().digest())
        .map_err(|e| ApiError::internal("making join tokens for the new root CA", e))?;
    let pem = next.to_pem();
    cluster.root_ca.rotation = Some(RootRotation {
        ca_cert: pem.cert_pem,
        ca_key: pem.key_pem,
        cross_signed_cert: crate::pki::pem_certificate(&cross_signed),
    });
    cluster.root_ca.join_tokens.worker = tokens.worker.to_string();
    cluster.root_ca.join_tokens.manager = tokens.manager.to_string();
    tracing::info!(root = %next.cert().digest(), "root CA rotation started");
    Ok(())
}

/// The nodes a rotation waits for: all but those that are down or left the swarm (a down
/// node that comes back after the rotation has to join again).
fn counted(node: &Node) -> bool {
    !matches!(node.status.state, NodeState::Down | NodeState::Disconnected)
}

/// Progress of the rotation as `swarm ca --rotate` shows it.
pub fn status(cluster: &Cluster, nodes: &[Node]) -> Result<pb::RootRotationStatus, ApiError> {
    let desired = desired_digest(cluster)?.to_string();
    let nodes: Vec<&Node> = nodes.iter().filter(|n| counted(n)).collect();
    let count = |keep: &dyn Fn(&NodeTlsInfo) -> bool| {
        u32::try_from(nodes.iter().filter(|n| keep(&n.tls_info)).count()).unwrap_or(u32::MAX)
    };
    Ok(pb::RootRotationStatus {
        in_progress: cluster.root_ca.rotation.is_some()
            || count(&|t| t.trusted_roots != [desired.clone()]) > 0,
        nodes: u32::try_from(nodes.len()).unwrap_or(u32::MAX),
        tls_rotated: count(&|t| t.cert_issuer == desired),
        ca_rotated: count(&|t| t.trusted_roots == [desired.clone()]),
        desired_root_digest: desired,
    })
}

/// Records what `node_id` reported of its TLS state (a write only when it changed), and
/// finishes the rotation once every counted node holds a certificate of the new root.
pub async fn record(
    store: &Store,
    node_id: &str,
    info: Option<&pb::NodeTlsInfo>,
) -> Result<(), ApiError> {
    let Some(info) = info else {
        return Ok(());
    };
    let info = NodeTlsInfo {
        trusted_roots: info.trusted_roots.clone(),
        cert_issuer: info.cert_issuer.clone(),
    };
    // During a rotation every report looks again, changed or not: a node that went down
    // (and so no longer counts) never reports the change that would finish it.
    let (unchanged, rotating) = store.view(|tx| {
        let unchanged = tx
            .get::<Node>(node_id)?
            .is_none_or(|node| node.tls_info == info);
        let rotating = tx
            .list::<Cluster>()?
            .first()
            .is_some_and(|cluster| cluster.root_ca.rotation.is_some());
        Ok::<_, ApiError>((unchanged, rotating))
    })?;
    if unchanged && !rotating {
        return Ok(());
    }
    store
        .update_retrying(|tx| {
            if !unchanged {
                tx.modify::<Node>(node_id, |node| node.tls_info = info.clone())?;
            }
            let Some(mut cluster) = tx.list::<Cluster>()?.into_iter().next() else {
                return Ok(());
            };
            let Some(rotation) = cluster.root_ca.rotation.clone() else {
                return Ok(());
            };
            let desired = desired_digest(&cluster)?.to_string();
            let nodes = tx.list::<Node>()?;
            let done = nodes
                .iter()
                .filter(|n| counted(n))
                .all(|n| n.tls_info.cert_issuer == desired);
            if done {
                finish(&mut cluster, rotation, desired)?;
            }
            // Written with every change, even when not done: two nodes reporting at once
            // would otherwise each see the other's old certificate and neither finish the
            // rotation (write skew). Both writing the cluster makes the second a version
            // conflict, re-run on a snapshot that holds the first. An unchanged report that
            // does not finish writes nothing.
            if done || !unchanged {
                tx.update(cluster)?;
            }
            Ok::<_, ApiError>(())
        })
        .await
}

/// Every node holds a certificate of the new root: it becomes the only root, and the gossip
/// key is rotated with it.
fn finish(cluster: &mut Cluster, rotation: RootRotation, digest: String) -> Result<(), ApiError> {
    cluster.root_ca.ca_cert = rotation.ca_cert;
    cluster.root_ca.ca_key = Some(rotation.ca_key);
    cluster.root_ca.ca_cert_hash = digest;
    cluster.root_ca.rotation = None;
    crate::manager::ca::trust::rotate_gossip_key(cluster)?;
    tracing::info!(root = %cluster.root_ca.ca_cert_hash, "every node holds a certificate of the new root CA; the old root is no longer trusted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::store::objects::NodeStatus;

    async fn cluster_in_rotation(store: &Store) -> String {
        let root = RootCa::generate(SystemTime::now()).unwrap().to_pem();
        let mut cluster = Cluster {
            id: "c".to_owned(),
            ..Cluster::default()
        };
        cluster.root_ca.ca_cert = root.cert_pem;
        cluster.root_ca.ca_key = Some(root.key_pem);
        start(
            &mut cluster,
            &pb::RootRotationRequest {
                rotate: true,
                ..pb::RootRotationRequest::default()
            },
        )
        .unwrap();
        let desired = desired_digest(&cluster).unwrap().to_string();
        store
            .update(|tx| {
                tx.create(cluster.clone())?;
                for id in ["n1", "n2", "n3"] {
                    tx.create(Node {
                        id: id.to_owned(),
                        status: NodeStatus {
                            state: NodeState::Ready,
                            ..NodeStatus::default()
                        },
                        ..Node::default()
                    })?;
                }
                Ok::<_, ApiError>(())
            })
            .await
            .unwrap();
        desired
    }

    fn renewed(issuer: &str) -> pb::NodeTlsInfo {
        pb::NodeTlsInfo {
            cert_issuer: issuer.to_owned(),
            ..pb::NodeTlsInfo::default()
        }
    }

    #[tokio::test]
    async fn nodes_that_report_their_new_certificates_at_once_finish_the_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::test_support::single_manager(dir.path()).await;
        let desired = cluster_in_rotation(&store).await;
        let info = renewed(&desired);
        // All three at once, as after a rotation with a short heartbeat: each report's write
        // must see the others'.
        let (a, b, c) = tokio::join!(
            record(&store, "n1", Some(&info)),
            record(&store, "n2", Some(&info)),
            record(&store, "n3", Some(&info)),
        );
        a.unwrap();
        b.unwrap();
        c.unwrap();
        let cluster: Cluster = store.view(|tx| tx.get("c")).unwrap().unwrap();
        assert!(
            cluster.root_ca.rotation.is_none(),
            "every node holds a certificate of the new root, so the rotation is over"
        );
        assert_eq!(cluster.root_ca.ca_cert_hash, desired);
    }

    #[tokio::test]
    async fn a_node_that_goes_down_before_renewing_does_not_hold_the_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::test_support::single_manager(dir.path()).await;
        let desired = cluster_in_rotation(&store).await;
        let info = renewed(&desired);
        record(&store, "n1", Some(&info)).await.unwrap();
        record(&store, "n2", Some(&info)).await.unwrap();
        store
            .update(|tx| {
                tx.modify::<Node>("n3", |node| node.status.state = NodeState::Down)
                    .map(drop)
            })
            .await
            .unwrap();
        // n1's next heartbeat reports nothing new, and must still finish the rotation.
        record(&store, "n1", Some(&info)).await.unwrap();
        let cluster: Cluster = store.view(|tx| tx.get("c")).unwrap().unwrap();
        assert!(
            cluster.root_ca.rotation.is_none(),
            "n3 is down and no longer counts"
        );
    }
}
