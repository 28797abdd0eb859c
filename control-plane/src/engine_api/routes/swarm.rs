//! `/swarm`: inspect (with the join tokens) and the token rotations of `/swarm/update`.

use axum::extract::State as Extract;
use bollard_stubs::models as m;

use super::{Json, Params, Reply, State};
use crate::engine_api::convert;
use crate::engine_api::error::EngineError;
use crate::store::objects::NodeRole;

pub async fn inspect(Extract(backend): Extract<State>) -> Reply<axum::Json<m::Swarm>> {
    let swarm = backend.inspect_swarm().await?;
    Ok(axum::Json(convert::swarm_out(&swarm)))
}

/// `docker swarm join-token --rotate`: `?rotateWorkerToken` / `?rotateManagerToken` with the
/// current spec. Changing the spec through this API is not supported yet (`hive swarm
/// update` does it); a spec that differs from the current one is refused.
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
    if spec != convert::swarm_spec_out(current.settings.as_ref()) {
        return Err(EngineError::not_implemented(
            "changing the swarm's settings through the Engine API (use `hive swarm update`)",
        ));
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
