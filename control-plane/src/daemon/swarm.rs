//! This node's membership: `swarm init`, `swarm join`, `swarm leave`, and `info`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;

use super::config::{self, check_data_path_port, detect_advertise_ip, resolve_advertise};
use super::node::{Active, SwarmNode};
use super::node_file::{NodeFile, remove_raft_dir};
use crate::api::{ApiError, convert, pb};
use crate::manager::controlapi::cluster::{
    DEFAULT_SUBNET_SIZE, LABEL_ADDR_POOL, LABEL_DATA_PATH_PORT, LABEL_SUBNET_SIZE, apply_settings,
    network_settings,
};
use crate::manager::membership::call_leader;
use crate::manager::{Manager, Route, request_with_timeout, timers};
use crate::pki::{
    self, CertDir, CertExpiry, JoinToken, JoinTokens, NodeCredentials, NodeIdentity, NodeKey, Role,
    RootCa, RootCert,
};
use crate::store::ReadView;
use crate::store::objects::{
    Annotations, Cluster, ClusterSpec, DEFAULT_CLUSTER_NAME, ManagerStatus, Node, NodeRole,
    NodeSpec, NodeState, NodeStatus, Reachability,
};
use crate::transport::{join_channel, mtls_channel};

/// How long `swarm init` waits for the new single-member Raft group to elect this node.
const INIT_ELECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound of the certificate request of `swarm join`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

fn internal(what: &'static str) -> impl FnOnce(String) -> ApiError {
    move |reason| ApiError::Internal { what, reason }
}

/// The address to advertise: the request's, else the daemon's, else the host's only one.
fn advertise_addr(node: &SwarmNode, requested: &str) -> Result<SocketAddr, ApiError> {
    let port = node.listen_addr.port();
    let chosen = if !requested.is_empty() {
        resolve_advertise(requested, port)
    } else if let Some(configured) = &node.config.advertise_addr {
        resolve_advertise(configured, port)
    } else {
        detect_advertise_ip().map(|ip| SocketAddr::new(ip, port))
    };
    chosen.map_err(|e| ApiError::Refused(e.to_string()))
}

/// `--listen-addr` of init/join must be where the daemon already listens.
fn check_listen_addr(node: &SwarmNode, requested: &str) -> Result<(), ApiError> {
    if requested.is_empty() {
        return Ok(());
    }
    let wanted =
        config::parse_listen_addr(requested).map_err(|e| ApiError::Refused(e.to_string()))?;
    if wanted == node.listen_addr || wanted == node.config.listen_addr {
        return Ok(());
    }
    Err(ApiError::Refused(format!(
        "this hive daemon listens on {} for other nodes; restart it with `hive daemon --listen-addr {requested}` to listen elsewhere",
        node.listen_addr
    )))
}

fn check_pools(pools: &[String], subnet_size: u32) -> Result<(), ApiError> {
    for pool in pools {
        let valid = pool.split_once('/').is_some_and(|(ip, len)| {
            ip.parse::<std::net::Ipv4Addr>().is_ok()
                && len.parse::<u32>().is_ok_and(|len| len <= subnet_size)
        });
        if !valid {
            return Err(ApiError::Invalid(format!(
                "invalid default address pool \"{pool}\": use an IPv4 CIDR (e.g. 10.0.0.0/8) no smaller than the /{subnet_size} subnets carved from it"
            )));
        }
    }
    if !(1..=29).contains(&subnet_size) {
        return Err(ApiError::Invalid(format!(
            "invalid subnet size {subnet_size}: use a mask length from 1 to 29"
        )));
    }
    Ok(())
}

pub async fn init(
    node: &Arc<SwarmNode>,
    request: pb::InitRequest,
) -> Result<pb::InitResponse, ApiError> {
    let _guard = node.lock().await;
    if request.force_new_cluster {
        return super::recover::force_new_cluster(node, &request).await;
    }
    if node.active().is_some() || node.locked_file().is_some() {
        return Err(ApiError::AlreadyInSwarm);
    }
    check_listen_addr(node, &request.listen_addr)?;
    let advertise = advertise_addr(node, &request.advertise_addr)?;
    let addr = advertise.to_string();
    let requested_port = if request.data_path_port != 0 {
        request.data_path_port
    } else {
        node.config.data_path_port.map_or(0, u32::from)
    };
    let data_path_port =
        check_data_path_port(requested_port).map_err(|e| ApiError::Invalid(e.to_string()))?;
    let subnet_size = if request.subnet_size == 0 {
        DEFAULT_SUBNET_SIZE
    } else {
        request.subnet_size
    };
    check_pools(&request.default_addr_pool, subnet_size)?;

    let mut cluster = Cluster::default();
    let settings = request.settings.clone().unwrap_or_default();
    apply_settings(&mut cluster, &settings)?;
    let expiry = CertExpiry::new(cluster.spec.ca_config.node_cert_expiry)
        .map_err(|e| ApiError::Invalid(e.to_string()))?;

    let now = SystemTime::now();
    let root = RootCa::generate(now).map_err(|e| ApiError::internal("creating the root CA", e))?;
    let cluster_id =
        pki::random_id().map_err(|e| ApiError::internal("making the cluster ID", e))?;
    let node_id = pki::random_id().map_err(|e| ApiError::internal("making the node ID", e))?;
    let key = NodeKey::generate().map_err(|e| ApiError::internal("making the node key", e))?;
    let csr = key
        .csr()
        .map_err(|e| ApiError::internal("making the node CSR", e))?;
    let identity = NodeIdentity {
        node_id: node_id.clone(),
        role: Role::Manager,
        cluster_id: cluster_id.clone(),
    };
    let cert = root
        .issue_node_cert(&csr, &identity, expiry, now)
        .map_err(|e| ApiError::internal("issuing this node's certificate", e))?;
    let creds = NodeCredentials::new(root.cert().clone(), cert, key, now)
        .map_err(|e| ApiError::internal("checking this node's certificate", e))?;
    let tokens = JoinTokens::generate(root.cert().digest())
        .map_err(|e| ApiError::internal("making the join tokens", e))?;

    let data_dir = &node.config.data_dir;
    remove_raft_dir(data_dir).map_err(|e| internal("clearing an old store")(e.to_string()))?;
    node.identity
        .save_in_the_clear(&creds)
        .map_err(|e| internal("saving this node's certificates")(e.to_string()))?;
    let raft_id = rand::random::<u64>().max(1);
    let file = NodeFile::new(
        node_id.clone(),
        cluster_id.clone(),
        Role::Manager,
        Some(raft_id),
        addr.clone(),
        vec![addr.clone()],
    );
    file.save(data_dir)
        .map_err(|e| internal("saving the swarm state")(e.to_string()))?;

    let mut labels = std::collections::BTreeMap::new();
    if !request.default_addr_pool.is_empty() {
        labels.insert(
            LABEL_ADDR_POOL.to_owned(),
            request.default_addr_pool.join(","),
        );
    }
    labels.insert(LABEL_SUBNET_SIZE.to_owned(), subnet_size.to_string());
    labels.insert(LABEL_DATA_PATH_PORT.to_owned(), data_path_port.to_string());
    cluster.id = cluster_id.clone();
    cluster.spec = ClusterSpec {
        annotations: Annotations {
            name: DEFAULT_CLUSTER_NAME.to_owned(),
            labels,
        },
        ..cluster.spec
    };
    let root_pem = root.to_pem();
    cluster.root_ca = crate::store::objects::RootCa {
        ca_cert: root_pem.cert_pem,
        ca_key: Some(root_pem.key_pem),
        ca_cert_hash: root.cert().digest().to_string(),
        join_tokens: crate::store::objects::JoinTokens {
            worker: tokens.worker.to_string(),
            manager: tokens.manager.to_string(),
        },
        rotation: None,
    };
    crate::manager::ca::trust::rotate_gossip_key(&mut cluster)?;
    let self_node = Node {
        id: node_id.clone(),
        spec: NodeSpec {
            desired_role: NodeRole::Manager,
            availability: convert::node_availability(request.availability()),
            ..NodeSpec::default()
        },
        role: NodeRole::Manager,
        description: Some(convert::description_of(&convert::local_description())?),
        status: NodeStatus {
            state: NodeState::Unknown,
            ..NodeStatus::default()
        },
        manager_status: Some(ManagerStatus {
            raft_id,
            addr: advertise,
            leader: false,
            reachability: Reachability::Reachable,
        }),
        ..Node::default()
    };

    let bootstrap = async {
        let active = node
            .activate(file, creds)
            .await
            .map_err(|e| internal("starting the manager")(e.to_string()))?;
        let manager = active
            .manager
            .clone()
            .ok_or_else(|| ApiError::internal("starting the manager", "no manager"))?;
        manager.store.bootstrap(addr.clone()).await?;
        manager
            .store
            .raft()
            .wait(Some(INIT_ELECTION_TIMEOUT))
            .current_leader(raft_id, "this manager leads the new swarm")
            .await
            .map_err(|e| ApiError::internal("electing the first manager", e))?;
        manager
            .store
            .update(|tx| {
                tx.create(cluster)?;
                tx.create(self_node)
            })
            .await?;
        Ok::<_, ApiError>(())
    };
    if let Err(err) = bootstrap.await {
        forget_swarm(node).await;
        return Err(err);
    }
    tracing::info!(node = %node_id, cluster = %cluster_id, %addr, "swarm initialized");
    Ok(pb::InitResponse {
        node_id,
        worker_token: tokens.worker.to_string(),
        manager_addr: addr,
    })
}

/// Stops being a member and removes the swarm state from disk.
async fn forget_swarm(node: &SwarmNode) {
    node.deactivate().await;
    node.stop_agent(true).await;
    let data_dir = &node.config.data_dir;
    if let Err(err) = CertDir::in_data_dir(data_dir).remove() {
        tracing::warn!(%err, "removing this node's certificates");
    }
    node.identity.forget();
    if let Err(err) = remove_raft_dir(data_dir) {
        tracing::warn!(%err, "removing this node's store");
    }
    if let Err(err) = NodeFile::remove(data_dir) {
        tracing::warn!(%err, "removing this node's swarm state");
    }
    if let Err(err) = crate::encryption::KeyFile::remove(data_dir) {
        tracing::warn!(%err, "removing this node's store keys");
    }
    crate::store::set_data_key(None);
    node.clear_locked();
}

fn with_default_port(addr: &str) -> String {
    if addr.parse::<SocketAddr>().is_ok()
        || addr
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.contains(':') && p.parse::<u16>().is_ok())
    {
        addr.to_owned()
    } else {
        format!("{addr}:{}", crate::transport::SWARM_PORT)
    }
}

pub async fn join(
    node: &Arc<SwarmNode>,
    request: pb::JoinRequest,
) -> Result<pb::JoinResponse, ApiError> {
    let _guard = node.lock().await;
    if node.active().is_some() || node.locked_file().is_some() {
        return Err(ApiError::AlreadyInSwarm);
    }
    check_listen_addr(node, &request.listen_addr)?;
    let token: JoinToken = request.token.trim().parse()?;
    let remote = with_default_port(request.remote_addr.trim());
    let addr = advertise_addr(node, &request.advertise_addr)?.to_string();
    let key = NodeKey::generate().map_err(|e| ApiError::internal("making the node key", e))?;
    let csr = key
        .csr()
        .map_err(|e| ApiError::internal("making the node CSR", e))?;

    let channel = join_channel(&remote, &token).map_err(|e| ApiError::Invalid(e.to_string()))?;
    let issued = pb::ca_client::CaClient::new(channel)
        .issue_node_certificate(request_with_timeout(
            pb::IssueNodeCertificateRequest {
                token: request.token.trim().to_owned(),
                csr: csr.as_ref().to_vec(),
                description: Some(convert::local_description()),
                advertise_addr: addr.clone(),
                availability: request.availability,
            },
            JOIN_TIMEOUT,
        ))
        .await
        .map_err(|status| join_failure(&remote, status))?
        .into_inner();

    let root = RootCert::from_der(CertificateDer::from(issued.root_ca))
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    token.verify_ca(root.der())?;
    let creds = NodeCredentials::new(
        root,
        CertificateDer::from(issued.certificate),
        key,
        SystemTime::now(),
    )
    .map_err(|e| {
        ApiError::Invalid(format!(
            "the manager's certificate for this node is unusable: {e}"
        ))
    })?
    .with_intermediates(
        issued
            .intermediates
            .into_iter()
            .map(CertificateDer::from)
            .collect(),
    );
    let role = creds.identity().role;
    let mut managers = issued.managers.clone();
    if !managers.contains(&remote) {
        managers.push(remote.clone());
    }
    let data_dir = &node.config.data_dir;
    remove_raft_dir(data_dir).map_err(|e| internal("clearing an old store")(e.to_string()))?;
    node.identity
        .save_in_the_clear(&creds)
        .map_err(|e| internal("saving this node's certificates")(e.to_string()))?;
    let raft_id = (role == Role::Manager).then_some(issued.raft_id);
    let file = NodeFile::new(
        issued.node_id.clone(),
        issued.cluster_id,
        role,
        raft_id,
        addr.clone(),
        managers.clone(),
    );
    file.save(data_dir)
        .map_err(|e| internal("saving the swarm state")(e.to_string()))?;
    let active = match node.activate(file, creds).await {
        Ok(active) => active,
        Err(err) => {
            forget_swarm(node).await;
            return Err(ApiError::internal("starting as a swarm member", err));
        }
    };
    if let Some(raft_id) = raft_id
        && let Err(err) = join_raft(&active, &managers, raft_id).await
    {
        forget_swarm(node).await;
        return Err(err);
    }
    tracing::info!(node = %issued.node_id, %role, "joined the swarm");
    Ok(pb::JoinResponse {
        role: convert::role_of_pki(role).into(),
        node_id: issued.node_id,
    })
}

/// Why a join's certificate request failed, in the words the user needs: a refused token or
/// CA pin from the TLS handshake, an unreachable manager, or the manager's refusal.
fn join_failure(remote: &str, status: tonic::Status) -> ApiError {
    if let Some(refusal) = pki::join_refusal(&status) {
        return ApiError::Invalid(refusal.to_string());
    }
    if status.code() == tonic::Code::Unavailable && crate::api::leader_hint(&status).is_none() {
        return ApiError::Unavailable(format!(
            "cannot reach a manager at {remote} ({}); check the address and that the manager's hive daemon is running",
            status.message()
        ));
    }
    ApiError::Remote(status)
}

/// Asks the leader to add this manager to the Raft group.
pub async fn join_raft(active: &Active, managers: &[String], raft_id: u64) -> Result<(), ApiError> {
    let tls = active.client_tls.clone();
    let addr = active.file.advertise_addr.clone();
    call_leader(
        managers,
        |target| mtls_channel(target, tls.clone(), pki::manager_server_name()),
        |channel| {
            let addr = addr.clone();
            async move {
                pb::raft_client::RaftClient::new(channel)
                    .join_raft(request_with_timeout(
                        pb::JoinRaftRequest { raft_id, addr },
                        timers::JOIN_RAFT_TIMEOUT,
                    ))
                    .await
                    .map(drop)
            }
        },
        timers::JOIN_RAFT_TIMEOUT,
    )
    .await
}

/// Docker's refusal text for a manager leaving without `--force` (moby
/// `daemon/cluster/swarm.go`).
fn leave_warning(manager: &Manager) -> String {
    let mut message =
        "You are attempting to leave the swarm on a node that is participating as a manager. "
            .to_owned();
    if manager.route() == Route::NoLeader {
        message.push_str("Doing so may lose the consensus of your cluster. ");
    } else {
        let voters = manager.voters();
        let reachable = voters
            .iter()
            .filter(|&&id| {
                id == manager.raft_id || manager.peers.reachability(id) == Reachability::Reachable
            })
            .count();
        let unreachable = voters.len() - reachable;
        // removingManagerCausesLossOfQuorum / isLastManager
        if reachable <= unreachable + 2 {
            if reachable == 1 && unreachable == 0 {
                return "You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.".to_owned();
            }
            message.push_str(&format!(
                "Removing this node leaves {} managers out of {}. Without a Raft quorum your swarm will be inaccessible. ",
                reachable - 1,
                reachable + unreachable
            ));
        }
    }
    message.push_str("The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message.");
    message
}

pub async fn leave(
    node: &Arc<SwarmNode>,
    request: pb::LeaveRequest,
) -> Result<pb::LeaveResponse, ApiError> {
    let _guard = node.lock().await;
    let Some(active) = node.active() else {
        if node.locked_file().is_some() {
            if !request.force {
                return Err(ApiError::Locked);
            }
            forget_swarm(node).await;
            tracing::info!("left the swarm while locked");
            return Ok(pb::LeaveResponse {});
        }
        return Err(ApiError::NotInSwarm);
    };
    if let Some(manager) = &active.manager {
        if !request.force {
            return Err(ApiError::Refused(leave_warning(manager)));
        }
        // Leave the Raft group while a majority can still commit that, so the others do not
        // keep counting this manager; best effort, bounded.
        let others = manager.voters().into_iter().any(|id| id != manager.raft_id);
        if others && manager.route() != Route::NoLeader {
            let demote = manager.update_node(pb::UpdateNodeRequest {
                node: active.file.node_id.clone(),
                role: Some(pb::Role::Worker.into()),
                ..Default::default()
            });
            match tokio::time::timeout(timers::LEADER_WAIT, demote).await {
                Ok(Ok(_)) => tracing::info!("left the Raft group"),
                Ok(Err(err)) => tracing::warn!(%err, "could not leave the Raft group cleanly"),
                Err(_) => tracing::warn!("leaving the Raft group timed out"),
            }
        }
    }
    forget_swarm(node).await;
    tracing::info!("left the swarm");
    Ok(pb::LeaveResponse {})
}

pub async fn info(node: &Arc<SwarmNode>) -> Result<pb::InfoResponse, ApiError> {
    let Some(active) = node.active() else {
        if let Some(file) = node.locked_file() {
            return Ok(pb::InfoResponse {
                state: pb::LocalNodeState::Locked.into(),
                node_id: file.node_id,
                is_manager: true,
                ..Default::default()
            });
        }
        return Ok(pb::InfoResponse {
            state: match node.startup_error() {
                Some(_) => pb::LocalNodeState::Error,
                None => pb::LocalNodeState::Inactive,
            }
            .into(),
            error: node.startup_error().unwrap_or_default(),
            ..Default::default()
        });
    };
    let node_addr = active
        .file
        .advertise_addr
        .parse::<SocketAddr>()
        .map_or_else(
            |_| active.file.advertise_addr.clone(),
            |a| a.ip().to_string(),
        );
    let mut info = pb::InfoResponse {
        state: pb::LocalNodeState::Active.into(),
        node_id: active.file.node_id.clone(),
        is_manager: active.manager.is_some(),
        node_addr,
        manager_addrs: active.file.managers.clone(),
        dataplane_error: active.agent.dataplane_error().unwrap_or_default(),
        ..Default::default()
    };
    if let Some(manager) = &active.manager {
        // Local reads: `info` works without a quorum, as docker's does.
        let clusters = manager.store.view(|tx| tx.list::<Cluster>())?;
        let nodes = manager.store.view(|tx| tx.list::<Node>())?;
        if let Some(cluster) = clusters.first() {
            let (pools, subnet_size, data_path_port) = network_settings(cluster);
            info.cluster_id = cluster.id.clone();
            info.settings = Some(convert::settings(cluster));
            info.default_addr_pool = pools;
            info.subnet_size = subnet_size;
            info.data_path_port = data_path_port;
        }
        info.managers = u32::try_from(nodes.iter().filter(|n| n.role == NodeRole::Manager).count())
            .unwrap_or(u32::MAX);
        info.nodes = u32::try_from(nodes.len()).unwrap_or(u32::MAX);
        let mut addrs: Vec<String> = nodes
            .iter()
            .filter(|n| n.role == NodeRole::Manager)
            .filter_map(|n| n.manager_status.as_ref().map(|m| m.addr.to_string()))
            .collect();
        addrs.sort();
        info.manager_addrs = addrs;
    }
    Ok(info)
}
