//! Leader-side cluster operations: inspect and update the swarm's settings, join tokens.

use std::time::Duration;

use hive_dataplane::mesh::mode::MeshMode;

use crate::api::{ApiError, convert, pb};
use crate::manager::Manager;
use crate::manager::ca::join_tokens;
use crate::pki::{self, CertExpiry};
use crate::store::ReadView;
use crate::store::objects::{Cluster, LABEL_MESH_MODE, Node, NodeRole};

/// Settings the store's cluster object has no field for yet, kept as reserved labels of the
/// cluster (docs/control-plane.md): they are set once at `swarm init` and only read after.
pub const LABEL_ADDR_POOL: &str = "hive.default-addr-pool";
pub const LABEL_SUBNET_SIZE: &str = "hive.default-addr-pool-mask-length";
pub const LABEL_DATA_PATH_PORT: &str = "hive.data-path-port";
/// `--mesh-mode` (docs/dsr.md); absent means snat. Unlike the others, `swarm update` may
/// change it.
/// Swarm's defaults for those settings.
pub const DEFAULT_ADDR_POOL: &str = "10.0.0.0/8";
pub const DEFAULT_SUBNET_SIZE: u32 = 24;
pub const DEFAULT_DATA_PATH_PORT: u32 = 4789;
/// `--dispatcher-heartbeat` below this would flood the leader.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

/// The network bootstrap settings stored at init: (pools, subnet size, data path port).
pub fn network_settings(cluster: &Cluster) -> (Vec<String>, u32, u32) {
    let labels = &cluster.spec.annotations.labels;
    let pools = labels.get(LABEL_ADDR_POOL).map_or_else(
        || vec![DEFAULT_ADDR_POOL.to_owned()],
        |p| p.split(',').map(str::to_owned).collect(),
    );
    let number = |key: &str, default: u32| {
        labels
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    (
        pools,
        number(LABEL_SUBNET_SIZE, DEFAULT_SUBNET_SIZE),
        number(LABEL_DATA_PATH_PORT, DEFAULT_DATA_PATH_PORT),
    )
}

pub async fn inspect(manager: &Manager) -> Result<pb::InspectSwarmResponse, ApiError> {
    let cluster = manager.cluster()?;
    let nodes = manager.store.view(|tx| tx.list::<Node>())?;
    let (pools, subnet_size, data_path_port) = network_settings(&cluster);
    Ok(pb::InspectSwarmResponse {
        cluster_id: cluster.id.clone(),
        version: cluster.meta.version,
        created_at: Some(convert::timestamp(cluster.meta.created_at)),
        updated_at: Some(convert::timestamp(cluster.meta.updated_at)),
        settings: Some(convert::settings(&cluster)),
        worker_token: cluster.root_ca.join_tokens.worker.clone(),
        manager_token: cluster.root_ca.join_tokens.manager.clone(),
        default_addr_pool: pools,
        subnet_size,
        data_path_port,
        leader_addr: manager.addr.clone(),
        managers: count(&nodes, |n| n.role == NodeRole::Manager),
        nodes: count(&nodes, |_| true),
        // During a rotation, the root the swarm is rotating to (what `docker swarm ca` shows).
        root_ca_cert: cluster
            .root_ca
            .rotation
            .as_ref()
            .map_or(&cluster.root_ca.ca_cert, |r| &r.ca_cert)
            .clone(),
        root_rotation: Some(crate::manager::ca::rotation::status(&cluster, &nodes)?),
        tls_info: Some(crate::manager::ca::rotation::cluster_tls_info(&cluster)),
    })
}

fn count(nodes: &[Node], keep: impl Fn(&Node) -> bool) -> u32 {
    u32::try_from(nodes.iter().filter(|n| keep(n)).count()).unwrap_or(u32::MAX)
}

/// Checks `settings` and applies those that are set to `cluster`.
pub fn apply_settings(
    cluster: &mut Cluster,
    settings: &pb::ClusterSettings,
) -> Result<(), ApiError> {
    if let Some(limit) = settings.task_history_limit {
        cluster.spec.orchestration.task_history_retention_limit = limit;
    }
    if let Some(ms) = settings.dispatcher_heartbeat_ms {
        let period = Duration::from_millis(ms);
        if period < MIN_HEARTBEAT {
            return Err(ApiError::Invalid(format!(
                "--dispatcher-heartbeat {period:?} is too short; use at least {MIN_HEARTBEAT:?}"
            )));
        }
        cluster.spec.dispatcher.heartbeat_period = period;
    }
    if let Some(secs) = settings.cert_expiry_secs {
        let expiry = CertExpiry::new(Duration::from_secs(secs))
            .map_err(|e| ApiError::Invalid(e.to_string()))?;
        cluster.spec.ca_config.node_cert_expiry = expiry.duration();
    }
    if let Some(autolock) = settings.autolock {
        set_autolock(cluster, autolock)?;
    }
    if let Some(interval) = settings.snapshot_interval {
        if interval == 0 {
            return Err(ApiError::Invalid(
                "--snapshot-interval must be at least 1".to_owned(),
            ));
        }
        cluster.spec.raft.snapshot_interval = interval;
    }
    if let Some(mode) = &settings.mesh_mode {
        let mode: MeshMode =
            mode.parse()
                .map_err(|e: hive_dataplane::mesh::mode::UnknownMeshMode| {
                    ApiError::Invalid(e.to_string())
                })?;
        cluster
            .spec
            .annotations
            .labels
            .insert(LABEL_MESH_MODE.to_owned(), mode.as_str().to_owned());
    }
    Ok(())
}

pub async fn update(
    manager: &Manager,
    request: pb::UpdateSwarmRequest,
) -> Result<pb::InspectSwarmResponse, ApiError> {
    let settings = request.settings.unwrap_or_default();
    let rotation = request.root_rotation.unwrap_or_default();
    let id = manager.cluster()?.id;
    if let Some(mode) = &settings.mesh_mode {
        let mode: MeshMode =
            mode.parse()
                .map_err(|e: hive_dataplane::mesh::mode::UnknownMeshMode| {
                    ApiError::Invalid(e.to_string())
                })?;
        // Direct return sends with another node's source address: refused where the
        // underlay drops such packets (docs/dsr.md).
        if mode != MeshMode::Snat {
            crate::manager::controlapi::underlay_check::check(manager).await?;
        }
    }
    manager
        .update(|tx| {
            let mut cluster = tx
                .get::<Cluster>(&id)?
                .ok_or_else(|| ApiError::internal("updating the swarm", "no cluster object"))?;
            apply_settings(&mut cluster, &settings)?;
            crate::manager::ca::rotation::start(&mut cluster, &rotation)?;
            tx.update(cluster)?;
            Ok::<_, ApiError>(())
        })
        .await?;
    inspect(manager).await
}

/// `--autolock`: a new unlock key when autolock turns on, none when it turns off; unchanged
/// when the setting does not change.
fn set_autolock(cluster: &mut Cluster, autolock: bool) -> Result<(), ApiError> {
    if autolock == cluster.spec.encryption_config.auto_lock_managers {
        return Ok(());
    }
    cluster.spec.encryption_config.auto_lock_managers = autolock;
    cluster.unlock_key = if autolock {
        new_unlock_key()?
    } else {
        String::new()
    };
    Ok(())
}

fn new_unlock_key() -> Result<String, ApiError> {
    crate::encryption::UnlockKey::generate()
        .map(|key| key.to_string())
        .map_err(|e| ApiError::internal("making the unlock key", e))
}

/// `swarm unlock-key [--rotate]`: the unlock key, after replacing it with a new one.
pub async fn unlock_key(
    manager: &Manager,
    request: pb::UnlockKeyRequest,
) -> Result<pb::UnlockKeyResponse, ApiError> {
    let mut cluster = manager.cluster()?;
    if request.rotate {
        if !cluster.spec.encryption_config.auto_lock_managers {
            return Err(ApiError::Precondition(
                "cannot rotate because autolock is not turned on".to_owned(),
            ));
        }
        let id = cluster.id.clone();
        let key = new_unlock_key()?;
        cluster = manager
            .update(|tx| {
                Ok::<_, ApiError>(tx.modify::<Cluster>(&id, |c| c.unlock_key = key.clone())?)
            })
            .await?;
        tracing::info!("rotated the managers' unlock key");
    }
    Ok(pb::UnlockKeyResponse {
        key: cluster.unlock_key,
    })
}

pub async fn join_token(
    manager: &Manager,
    request: pb::JoinTokenRequest,
) -> Result<pb::JoinTokenResponse, ApiError> {
    let role = convert::pki_role(request.role());
    let mut cluster = manager.cluster()?;
    if request.rotate {
        let id = cluster.id.clone();
        cluster = manager
            .update(|tx| {
                // Rotate from the tokens in this snapshot, so a retry after a conflict does
                // not undo a rotation that committed meanwhile.
                let current = tx.get::<Cluster>(&id)?.ok_or_else(|| {
                    ApiError::internal("rotating the join token", "no cluster object")
                })?;
                let mut tokens = join_tokens(&current)?;
                tokens
                    .rotate(role)
                    .map_err(|e| ApiError::internal("rotating the join token", e))?;
                Ok(tx.modify::<Cluster>(&id, |c| {
                    c.root_ca.join_tokens.worker = tokens.worker.to_string();
                    c.root_ca.join_tokens.manager = tokens.manager.to_string();
                })?)
            })
            .await?;
        tracing::info!(%role, "rotated the join token");
    }
    let token = match role {
        pki::Role::Worker => cluster.root_ca.join_tokens.worker,
        pki::Role::Manager => cluster.root_ca.join_tokens.manager,
    };
    Ok(pb::JoinTokenResponse {
        token,
        manager_addr: manager.addr.clone(),
    })
}
