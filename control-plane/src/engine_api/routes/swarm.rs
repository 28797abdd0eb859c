//! `/swarm`: inspect (with the join tokens and `TLSInfo`), update (settings, root CA
//! rotation, token rotations), unlock and the unlock key.

use axum::extract::State as Extract;
use bollard_stubs::models as m;

use super::{Json, Params, Reply, State};
use crate::api::pb;
use crate::engine_api::convert;
use crate::engine_api::error::EngineError;
use crate::store::objects::NodeRole;

pub async fn inspect(Extract(backend): Extract<State>) -> Reply<axum::Json<m::Swarm>> {
    let swarm = backend.inspect_swarm().await?;
    Ok(axum::Json(convert::swarm_out(&swarm)))
}

/// `docker swarm update`, `docker swarm ca --rotate` and `docker swarm join-token --rotate`:
/// the whole spec at `?version=N` (a stale version is refused, never applied), with
/// `?rotateWorkerToken` / `?rotateManagerToken` / `?rotateManagerUnlockKey`. What changed is
/// applied as `hive swarm update` and `hive swarm ca --rotate` apply it, in one write.
pub async fn update(
    Extract(backend): Extract<State>,
    params: Params,
    Json(spec): Json<m::SwarmSpec>,
) -> Reply<()> {
    let version = params.version()?;
    let current = backend.inspect_swarm().await?;
    if current.version != version {
        return Err(EngineError::out_of_sequence());
    }
    let update = convert::swarm_update_in(spec, current.settings.as_ref())?;
    match update.rotation {
        Some(rotation) => backend.rotate_root_ca(update.settings, rotation).await?,
        None if update.settings != pb::ClusterSettings::default() => {
            backend.update_swarm(update.settings).await?;
        }
        None => {}
    }
    if params.flag("rotateManagerUnlockKey") {
        backend.unlock_key(true).await?;
    }
    if params.flag("rotateWorkerToken") {
        backend.rotate_join_token(NodeRole::Worker).await?;
    }
    if params.flag("rotateManagerToken") {
        backend.rotate_join_token(NodeRole::Manager).await?;
    }
    Ok(())
}

/// `POST /swarm/unlock` with `{"UnlockKey": "SWMKEY-1-…"}`.
pub async fn unlock(
    Extract(backend): Extract<State>,
    Json(request): Json<m::SwarmUnlockRequest>,
) -> Reply<()> {
    backend.unlock(request.unlock_key.unwrap_or_default()).await
}

/// `GET /swarm/unlockkey`: `{"UnlockKey": "SWMKEY-1-…"}`, empty without autolock.
pub async fn unlock_key(
    Extract(backend): Extract<State>,
) -> Reply<axum::Json<m::UnlockKeyResponse>> {
    let key = backend.unlock_key(false).await?;
    Ok(axum::Json(m::UnlockKeyResponse {
        unlock_key: Some(key),
    }))
}
