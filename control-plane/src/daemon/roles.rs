//! Promotion and demotion as the node carries them out: `hive node promote/demote` changes the
//! node's desired role in the store; the node's agent sees it in the next heartbeat answer,
//! and this module renews the certificate (the new role is in its OU) and starts or stops the
//! manager. A promoted node then asks the leader to add it to the Raft group.

use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::CertificateDer;

use super::node::SwarmNode;
use super::node_file::remove_raft_dir;
use super::swarm::join_raft;
use crate::api::{ApiError, convert, pb};
use crate::manager::membership::call_leader;
use crate::manager::{request_with_timeout, timers};
use crate::pki::{self, CertDir, NodeCredentials, NodeKey};
use crate::transport::mtls_channel;

/// Brings this node to `desired` if it is not there yet.
pub async fn reconcile(node: &Arc<SwarmNode>, desired: pki::Role) -> Result<(), ApiError> {
    let _guard = node.lock().await;
    let Some(active) = node.active() else {
        return Ok(());
    };
    if active.role() == desired {
        return Ok(());
    }
    tracing::info!(from = %active.role(), to = %desired, "changing this node's role");
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
    let creds = NodeCredentials::new(
        active.creds.root().clone(),
        CertificateDer::from(renewed.certificate),
        key,
        SystemTime::now(),
    )
    .map_err(|e| ApiError::internal("checking the renewed certificate", e))?;
    let role = creds.identity().role;
    let data_dir = node.config.data_dir.clone();
    let mut file = active.file.clone();
    file.role = role;
    file.raft_id = (role == pki::Role::Manager).then_some(renewed.raft_id);

    node.deactivate().await;
    // A manager that stops being one, or becomes one again, starts from an empty store: its
    // old log is not part of the group's history any more.
    remove_raft_dir(&data_dir).map_err(|e| ApiError::internal("removing the old store", e))?;
    CertDir::in_data_dir(&data_dir)
        .save(&creds)
        .map_err(|e| ApiError::internal("saving the renewed certificate", e))?;
    file.save(&data_dir)
        .map_err(|e| ApiError::internal("saving the swarm state", e))?;
    let managers = file.managers.clone();
    let active = node
        .activate(file, creds)
        .await
        .map_err(|e| ApiError::internal("restarting in the new role", e))?;
    if let Some(raft_id) = active.file.raft_id {
        join_raft(&active, &managers, raft_id).await?;
    }
    tracing::info!(role = %convert::role_of_pki(role).as_str_name(), "role changed");
    Ok(())
}
