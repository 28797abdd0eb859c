//! The `Ca` service: certificates for joining nodes (the join token decides the role) and
//! renewals (the store decides the role, so promote/demote take effect). Issuing writes the
//! new node into the store, so it is done by the leader; other managers forward it. The root
//! rotation (`rotation`) and the removed-node list and gossip key (`trust`) live beside it.

pub mod rotation;
pub mod trust;

use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::CertificateSigningRequestDer;

use crate::api::{ApiError, convert, pb};
use crate::manager::membership::allocate_raft_id;
use crate::manager::{CallKind, Manager, ManagerSlot, request_with_timeout, timers};
use crate::pki::{self, CertExpiry, JoinToken, JoinTokens, NodeIdentity, Role, RootCa};
use crate::store::ReadView;
use crate::store::objects::{
    Cluster, ManagerStatus, Node, NodeRole, NodeSpec, NodeState, NodeStatus, Reachability,
};

#[derive(Debug, Clone)]
pub struct CaService {
    managers: Arc<ManagerSlot>,
}

impl CaService {
    pub fn new(managers: Arc<ManagerSlot>) -> Self {
        Self { managers }
    }
}

#[tonic::async_trait]
impl pb::ca_server::Ca for CaService {
    /// Open to callers without a certificate: the join token is the credential.
    async fn issue_node_certificate(
        &self,
        request: tonic::Request<pb::IssueNodeCertificateRequest>,
    ) -> Result<tonic::Response<pb::IssueNodeCertificateResponse>, tonic::Status> {
        let manager = self.managers.manager()?;
        let request = request.into_inner();
        let response = manager
            .with_leader(CallKind::Write, |channel| {
                let (manager, request) = (manager.clone(), request.clone());
                async move {
                    match channel {
                        None => issue(&manager, request).await,
                        Some(channel) => pb::ca_client::CaClient::new(channel)
                            .issue_node_certificate(request_with_timeout(
                                request,
                                timers::PEER_CALL_TIMEOUT,
                            ))
                            .await
                            .map(tonic::Response::into_inner)
                            .map_err(ApiError::Remote),
                    }
                }
            })
            .await?;
        Ok(tonic::Response::new(response))
    }

    async fn renew_node_certificate(
        &self,
        request: tonic::Request<pb::RenewNodeCertificateRequest>,
    ) -> Result<tonic::Response<pb::RenewNodeCertificateResponse>, tonic::Status> {
        let (manager, caller) = self.managers.authorize(&request, Role::Worker)?;
        manager.require_leader()?;
        let response = renew(&manager, &caller, request.into_inner()).await?;
        Ok(tonic::Response::new(response))
    }
}

/// The cluster's join tokens, as `pki` checks them.
pub fn join_tokens(cluster: &Cluster) -> Result<JoinTokens, ApiError> {
    let parse = |text: &str| {
        text.parse::<JoinToken>()
            .map_err(|e| ApiError::internal("reading the stored join tokens", e))
    };
    Ok(JoinTokens {
        worker: parse(&cluster.root_ca.join_tokens.worker)?,
        manager: parse(&cluster.root_ca.join_tokens.manager)?,
    })
}

/// The CA that signs now (the incoming root during a rotation) and what its certificates are
/// presented with.
fn root_ca(cluster: &Cluster) -> Result<(RootCa, Vec<Vec<u8>>), ApiError> {
    let intermediates = crate::manager::ca::rotation::intermediates(cluster)?
        .into_iter()
        .map(|c| c.to_vec())
        .collect();
    Ok((
        crate::manager::ca::rotation::signing_ca(cluster)?,
        intermediates,
    ))
}

fn expiry(cluster: &Cluster) -> Result<CertExpiry, ApiError> {
    CertExpiry::new(cluster.spec.ca_config.node_cert_expiry)
        .map_err(|e| ApiError::Precondition(e.to_string()))
}

fn csr(bytes: Vec<u8>) -> CertificateSigningRequestDer<'static> {
    CertificateSigningRequestDer::from(bytes)
}

async fn issue(
    manager: &Manager,
    request: pb::IssueNodeCertificateRequest,
) -> Result<pb::IssueNodeCertificateResponse, ApiError> {
    let cluster = manager.cluster()?;
    let role = join_tokens(&cluster)?.role_for(&request.token)?;
    let advertise_addr = convert::optional_socket_addr("advertise_addr", &request.advertise_addr)?;
    let advertise_addr = match (role, advertise_addr) {
        (Role::Manager, None) => {
            return Err(ApiError::Invalid(
                "a manager needs an address the other managers can reach it at; give --advertise-addr"
                    .to_owned(),
            ));
        }
        (Role::Manager, Some(addr)) => Some(addr),
        (Role::Worker, _) => None,
    };
    let (root, intermediates) = root_ca(&cluster)?;
    let node_id = pki::random_id().map_err(|e| ApiError::internal("making a node ID", e))?;
    let identity = NodeIdentity {
        node_id: node_id.clone(),
        role,
        cluster_id: manager.cluster_id.clone(),
    };
    let cert = root
        .issue_node_cert(
            &csr(request.csr.clone()),
            &identity,
            expiry(&cluster)?,
            SystemTime::now(),
        )
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    let availability = convert::node_availability(request.availability());
    let description = request
        .description
        .as_ref()
        .map(convert::description_of)
        .transpose()?;
    let raft_id = manager
        .update(|tx| {
            let raft_id = if role == Role::Manager {
                allocate_raft_id(&*tx)?
            } else {
                0
            };
            let desired_role = match role {
                Role::Manager => NodeRole::Manager,
                Role::Worker => NodeRole::Worker,
            };
            tx.create(Node {
                id: node_id.clone(),
                spec: NodeSpec {
                    desired_role,
                    availability,
                    ..NodeSpec::default()
                },
                // A manager becomes one when it has joined the Raft group.
                role: NodeRole::Worker,
                description: description.clone(),
                status: NodeStatus {
                    state: NodeState::Unknown,
                    ..NodeStatus::default()
                },
                manager_status: advertise_addr.map(|addr| ManagerStatus {
                    raft_id,
                    addr,
                    leader: false,
                    reachability: Reachability::default(),
                }),
                ..Node::default()
            })?;
            Ok::<_, ApiError>(raft_id)
        })
        .await?;
    tracing::info!(node = %node_id, %role, "issued a certificate to a joining node");
    Ok(pb::IssueNodeCertificateResponse {
        node_id,
        cluster_id: manager.cluster_id.clone(),
        role: convert::role_of_pki(role).into(),
        certificate: cert.to_vec(),
        root_ca: root.cert().der().to_vec(),
        raft_id,
        managers: manager.manager_addrs()?,
        intermediates,
    })
}

async fn renew(
    manager: &Manager,
    caller: &NodeIdentity,
    request: pb::RenewNodeCertificateRequest,
) -> Result<pb::RenewNodeCertificateResponse, ApiError> {
    let cluster = manager.cluster()?;
    let (root, intermediates) = root_ca(&cluster)?;
    let advertise_addr = convert::optional_socket_addr("advertise_addr", &request.advertise_addr)?;
    let (role, raft_id) = manager
        .update(|tx| {
            let node = tx
                .get::<Node>(&caller.node_id)?
                .ok_or_else(|| ApiError::NotFound {
                    kind: "node",
                    query: caller.node_id.clone(),
                })?;
            match node.spec.desired_role {
                NodeRole::Worker => Ok((Role::Worker, 0)),
                NodeRole::Manager => {
                    if let Some(status) = &node.manager_status {
                        return Ok((Role::Manager, status.raft_id));
                    }
                    let Some(addr) = advertise_addr else {
                        return Err(ApiError::Invalid(
                            "a node becoming a manager must say where other managers reach it"
                                .to_owned(),
                        ));
                    };
                    let raft_id = allocate_raft_id(&*tx)?;
                    tx.modify::<Node>(&caller.node_id, |node| {
                        node.manager_status = Some(ManagerStatus {
                            raft_id,
                            addr,
                            leader: false,
                            reachability: Reachability::default(),
                        });
                    })?;
                    Ok((Role::Manager, raft_id))
                }
            }
        })
        .await?;
    let cert = root
        .renew_node_cert(
            &csr(request.csr.clone()),
            caller,
            role,
            expiry(&cluster)?,
            SystemTime::now(),
        )
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    tracing::info!(node = %caller.node_id, %role, "renewed a node certificate");
    Ok(pb::RenewNodeCertificateResponse {
        certificate: cert.to_vec(),
        role: convert::role_of_pki(role).into(),
        raft_id,
        root_ca: root.cert().der().to_vec(),
        intermediates,
    })
}
