//! `/swarm`: inspect (with the join tokens and `TLSInfo`), update (settings, root CA
//! rotation, token rotations), unlock and the unlock key; init, join and leave through the
//! daemon's own `Swarm` service, the path `hive swarm init|join|leave` takes.

use axum::extract::State as Extract;
use axum::http::StatusCode;
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

/// dockerd's `errSwarmExists`, which init and join answer inside a swarm (503).
pub const ALREADY_IN_SWARM: &str = "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one.";
/// dockerd's `errNoSwarm`, which leave answers outside a swarm (503).
pub const NOT_IN_SWARM: &str = "This node is not part of a swarm";
/// The docker CLI's `--listen-addr` default: "where this daemon listens" for hive.
const CLI_LISTEN_ADDR: &str = "0.0.0.0:2377";

/// `POST /swarm/init`'s body (the API's `SwarmInitRequest`, with the `AutoLockManagers` and
/// `Availability` the generated model lacks).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InitBody {
    #[serde(default)]
    pub listen_addr: String,
    #[serde(default)]
    pub advertise_addr: String,
    #[serde(default)]
    pub data_path_addr: String,
    #[serde(default)]
    pub data_path_port: u32,
    #[serde(default)]
    pub default_addr_pool: Option<Vec<String>>,
    #[serde(default)]
    pub subnet_size: u32,
    #[serde(default)]
    pub force_new_cluster: bool,
    #[serde(default)]
    pub spec: Option<m::SwarmSpec>,
    #[serde(default)]
    pub auto_lock_managers: bool,
    #[serde(default)]
    pub availability: Option<m::NodeSpecAvailabilityEnum>,
}

/// `POST /swarm/join`'s body (`SwarmJoinRequest`, with `Availability`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinBody {
    #[serde(default)]
    pub listen_addr: String,
    #[serde(default)]
    pub advertise_addr: String,
    #[serde(default)]
    pub data_path_addr: String,
    #[serde(default)]
    pub remote_addrs: Option<Vec<String>>,
    #[serde(default)]
    pub join_token: String,
    #[serde(default)]
    pub availability: Option<m::NodeSpecAvailabilityEnum>,
}

/// The listen address to ask for: the CLI's default (or none) means wherever this daemon
/// already listens (`hive daemon --listen-addr`); anything else must be that address.
fn listen_addr_in(requested: &str) -> String {
    let requested = requested.trim();
    if requested == CLI_LISTEN_ADDR {
        String::new()
    } else {
        requested.to_owned()
    }
}

fn no_data_path_addr(requested: &str) -> Reply<()> {
    if requested.trim().is_empty() {
        Ok(())
    } else {
        Err(EngineError::not_implemented(
            "a separate data path address (DataPathAddr, --data-path-addr: hive carries task traffic on the advertised address)",
        ))
    }
}

fn availability_in(availability: Option<m::NodeSpecAvailabilityEnum>) -> i32 {
    match availability {
        Some(m::NodeSpecAvailabilityEnum::PAUSE) => pb::Availability::Pause,
        Some(m::NodeSpecAvailabilityEnum::DRAIN) => pb::Availability::Drain,
        _ => pb::Availability::Active,
    }
    .into()
}

/// The settings of an init's `Spec`. As dockerd's `MergeSwarmSpecToGRPC`, a zero or empty
/// field keeps the default; a non-zero one hive has no setting for is refused (501), never
/// dropped.
pub fn init_settings(spec: Option<m::SwarmSpec>) -> Reply<pb::ClusterSettings> {
    let mut settings = pb::ClusterSettings::default();
    let Some(spec) = spec else {
        return Ok(settings);
    };
    let unsupported = |what: &str| Err(EngineError::not_implemented(what));
    if spec
        .name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != "default")
    {
        return unsupported("naming the swarm (Spec.Name other than \"default\")");
    }
    if spec.labels.as_ref().is_some_and(|l| !l.is_empty()) {
        return unsupported("labels on the swarm (Spec.Labels)");
    }
    if let Some(limit) = spec
        .orchestration
        .and_then(|o| o.task_history_retention_limit)
        .filter(|&n| n != 0)
    {
        settings.task_history_limit = Some(limit);
    }
    if let Some(raft) = spec.raft {
        if let Some(interval) = raft.snapshot_interval.filter(|&n| n != 0) {
            settings.snapshot_interval = Some(interval);
        }
        let nonzero = |v: Option<i64>| v.is_some_and(|n| n != 0);
        if raft.keep_old_snapshots.is_some_and(|n| n != 0)
            || raft.log_entries_for_slow_followers.is_some_and(|n| n != 0)
            || nonzero(raft.election_tick)
            || nonzero(raft.heartbeat_tick)
        {
            return unsupported(
                "Raft.KeepOldSnapshots, Raft.LogEntriesForSlowFollowers, Raft.ElectionTick and Raft.HeartbeatTick (--max-snapshots)",
            );
        }
    }
    if let Some(period) = spec
        .dispatcher
        .and_then(|d| d.heartbeat_period)
        .filter(|&n| n != 0)
    {
        let period = convert::duration(
            "Dispatcher.HeartbeatPeriod",
            Some(period),
            std::time::Duration::ZERO,
        )?;
        settings.dispatcher_heartbeat_ms =
            Some(u64::try_from(period.as_millis()).unwrap_or(u64::MAX));
    }
    if let Some(ca) = spec.ca_config {
        if let Some(expiry) = ca.node_cert_expiry.filter(|&n| n != 0) {
            let expiry = convert::duration(
                "CAConfig.NodeCertExpiry",
                Some(expiry),
                std::time::Duration::ZERO,
            )?;
            settings.cert_expiry_secs = Some(expiry.as_secs());
        }
        if ca.external_cas.is_some_and(|cas| !cas.is_empty()) {
            return unsupported("signing node certificates with an external CA (--external-ca)");
        }
        if ca.signing_ca_cert.is_some_and(|c| !c.is_empty())
            || ca.signing_ca_key.is_some_and(|k| !k.is_empty())
        {
            return unsupported(
                "a given root CA at init (CAConfig.SigningCACert/SigningCAKey); init, then `docker swarm ca --rotate --ca-cert --ca-key`",
            );
        }
    }
    if spec
        .encryption_config
        .and_then(|e| e.auto_lock_managers)
        .unwrap_or(false)
    {
        settings.autolock = Some(true);
    }
    if spec
        .task_defaults
        .and_then(|t| t.log_driver)
        .is_some_and(|d| d.name.is_some_and(|n| !n.is_empty()))
    {
        return unsupported("a default log driver for tasks (TaskDefaults.LogDriver)");
    }
    Ok(settings)
}

/// The daemon's init request for `body`; refuses what hive cannot do.
pub fn init_request(body: InitBody) -> Reply<pb::InitRequest> {
    no_data_path_addr(&body.data_path_addr)?;
    let mut settings = init_settings(body.spec)?;
    if body.auto_lock_managers {
        settings.autolock = Some(true);
    }
    Ok(pb::InitRequest {
        advertise_addr: body.advertise_addr.trim().to_owned(),
        listen_addr: listen_addr_in(&body.listen_addr),
        data_path_port: body.data_path_port,
        default_addr_pool: body.default_addr_pool.unwrap_or_default(),
        subnet_size: body.subnet_size,
        force_new_cluster: body.force_new_cluster,
        availability: availability_in(body.availability),
        settings: (settings != pb::ClusterSettings::default()).then_some(settings),
    })
}

/// The daemon's join request for `body`: the first of `RemoteAddrs`, as dockerd joins.
pub fn join_request(body: JoinBody) -> Reply<pb::JoinRequest> {
    no_data_path_addr(&body.data_path_addr)?;
    let remote = body
        .remote_addrs
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.trim().to_owned())
        .find(|a| !a.is_empty())
        .ok_or_else(|| EngineError::bad_request("at least 1 RemoteAddr is required to join"))?;
    if body.join_token.trim().is_empty() {
        return Err(EngineError::bad_request(
            "a join token is required (JoinToken)",
        ));
    }
    Ok(pb::JoinRequest {
        token: body.join_token.trim().to_owned(),
        remote_addr: remote,
        advertise_addr: body.advertise_addr.trim().to_owned(),
        listen_addr: listen_addr_in(&body.listen_addr),
        availability: availability_in(body.availability),
    })
}

/// dockerd's words and status for the daemon's refusals of init, join and leave.
fn membership_error(status: tonic::Status) -> EngineError {
    use crate::api::ApiError;
    let message = status.message();
    if message == ApiError::AlreadyInSwarm.to_string() {
        return EngineError::new(StatusCode::SERVICE_UNAVAILABLE, ALREADY_IN_SWARM);
    }
    if message == ApiError::NotInSwarm.to_string() {
        return EngineError::new(StatusCode::SERVICE_UNAVAILABLE, NOT_IN_SWARM);
    }
    // A manager leaving without --force: dockerd's notAvailableError.
    if message.starts_with("You are attempting to leave the swarm") {
        return EngineError::new(StatusCode::SERVICE_UNAVAILABLE, message);
    }
    EngineError::from(status)
}

/// `POST /swarm/init`: the node ID, as a JSON string.
pub async fn init(
    Extract(backend): Extract<State>,
    Json(body): Json<InitBody>,
) -> Reply<axum::Json<String>> {
    let request = init_request(body)?;
    let response = backend
        .swarm_client()
        .await?
        .init(request)
        .await
        .map_err(membership_error)?;
    backend.joined();
    Ok(axum::Json(response.into_inner().node_id))
}

/// `POST /swarm/join`.
pub async fn join(Extract(backend): Extract<State>, Json(body): Json<JoinBody>) -> Reply<()> {
    let request = join_request(body)?;
    backend
        .swarm_client()
        .await?
        .join(request)
        .await
        .map_err(membership_error)?;
    backend.joined();
    Ok(())
}

/// `POST /swarm/leave?force=`.
pub async fn leave(Extract(backend): Extract<State>, params: Params) -> Reply<()> {
    backend
        .swarm_client()
        .await?
        .leave(pb::LeaveRequest {
            force: params.flag("force"),
        })
        .await
        .map_err(membership_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `docker swarm init --advertise-addr 10.0.0.1` (CLI 28.2.2) sends.
    const CLI_INIT: &str = r#"{"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"10.0.0.1","DataPathAddr":"","DataPathPort":0,"DefaultAddrPool":null,"ForceNewCluster":false,"Spec":{"Labels":null,"Orchestration":{},"Raft":{"ElectionTick":0,"HeartbeatTick":0},"Dispatcher":{},"CAConfig":{},"TaskDefaults":{},"EncryptionConfig":{"AutoLockManagers":false}},"AutoLockManagers":false,"Availability":"active","SubnetSize":0}"#;

    fn init(json: &str) -> Reply<pb::InitRequest> {
        init_request(serde_json::from_str(json).expect("body"))
    }

    #[test]
    fn a_cli_init_asks_for_defaults_on_the_daemons_listen_address() {
        let request = init(CLI_INIT).expect("request");
        assert_eq!(request.advertise_addr, "10.0.0.1");
        assert_eq!(
            request.listen_addr, "",
            "the CLI default means the daemon's"
        );
        assert_eq!(request.settings, None);
        assert_eq!(request.availability(), pb::Availability::Active);
        assert!(!request.force_new_cluster);
    }

    #[test]
    fn init_options_hive_has_are_passed_on() {
        let request = init(
            r#"{"ListenAddr":"10.0.0.1:2377","DataPathPort":4790,"DefaultAddrPool":["10.20.0.0/16"],"SubnetSize":26,"ForceNewCluster":true,"AutoLockManagers":true,"Availability":"drain","Spec":{"Orchestration":{"TaskHistoryRetentionLimit":3},"Dispatcher":{"HeartbeatPeriod":7000000000},"CAConfig":{"NodeCertExpiry":3600000000000},"Raft":{"SnapshotInterval":500}}}"#,
        )
        .expect("request");
        assert_eq!(request.listen_addr, "10.0.0.1:2377");
        assert_eq!(request.data_path_port, 4790);
        assert_eq!(request.default_addr_pool, ["10.20.0.0/16"]);
        assert_eq!(request.subnet_size, 26);
        assert!(request.force_new_cluster);
        assert_eq!(request.availability(), pb::Availability::Drain);
        let settings = request.settings.expect("settings");
        assert_eq!(settings.autolock, Some(true));
        assert_eq!(settings.task_history_limit, Some(3));
        assert_eq!(settings.dispatcher_heartbeat_ms, Some(7000));
        assert_eq!(settings.cert_expiry_secs, Some(3600));
        assert_eq!(settings.snapshot_interval, Some(500));
        // The spec's autolock counts as the top-level one.
        let spec_lock =
            init(r#"{"Spec":{"EncryptionConfig":{"AutoLockManagers":true}}}"#).expect("request");
        assert_eq!(spec_lock.settings.and_then(|s| s.autolock), Some(true));
    }

    #[test]
    fn init_options_hive_lacks_are_refused_not_dropped() {
        for body in [
            r#"{"DataPathAddr":"10.1.0.1"}"#,
            r#"{"Spec":{"Name":"other"}}"#,
            r#"{"Spec":{"Labels":{"a":"b"}}}"#,
            r#"{"Spec":{"Raft":{"KeepOldSnapshots":2}}}"#,
            r#"{"Spec":{"CAConfig":{"ExternalCAs":[{"Protocol":"cfssl","URL":"https://ca"}]}}}"#,
            r#"{"Spec":{"CAConfig":{"SigningCACert":"pem"}}}"#,
            r#"{"Spec":{"TaskDefaults":{"LogDriver":{"Name":"json-file"}}}}"#,
        ] {
            let error = init(body).expect_err(body);
            assert_eq!(error.status, StatusCode::NOT_IMPLEMENTED, "{body}");
        }
        let negative = init(r#"{"Spec":{"Dispatcher":{"HeartbeatPeriod":-1}}}"#).expect_err("neg");
        assert_eq!(negative.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn join_takes_the_first_remote_and_needs_a_token() {
        let join = |json: &str| join_request(serde_json::from_str(json).expect("body"));
        let request = join(
            r#"{"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"","DataPathAddr":"","RemoteAddrs":["10.0.0.1:2377","10.0.0.2:2377"],"JoinToken":"SWMTKN-1-x-y","Availability":"active"}"#,
        )
        .expect("request");
        assert_eq!(request.remote_addr, "10.0.0.1:2377");
        assert_eq!(request.token, "SWMTKN-1-x-y");
        assert_eq!(request.listen_addr, "");
        let error =
            join(r#"{"RemoteAddrs":[],"JoinToken":"SWMTKN-1-x-y"}"#).expect_err("no remote");
        assert_eq!(
            (error.status, error.message.as_str()),
            (
                StatusCode::BAD_REQUEST,
                "at least 1 RemoteAddr is required to join"
            )
        );
        let error = join(r#"{"RemoteAddrs":["10.0.0.1"]}"#).expect_err("no token");
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        let error = join(r#"{"RemoteAddrs":["10.0.0.1"],"JoinToken":"t","DataPathAddr":"eth1"}"#)
            .expect_err("data path addr");
        assert_eq!(error.status, StatusCode::NOT_IMPLEMENTED);
    }

    #[test]
    fn membership_refusals_use_dockerds_words() {
        use crate::api::ApiError;
        let error = membership_error(ApiError::AlreadyInSwarm.into());
        assert_eq!(
            (error.status, error.message.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, ALREADY_IN_SWARM)
        );
        let error = membership_error(ApiError::NotInSwarm.into());
        assert_eq!(
            (error.status, error.message.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, NOT_IN_SWARM)
        );
        let text = "You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.";
        let error = membership_error(ApiError::Refused(text.to_owned()).into());
        assert_eq!(
            (error.status, error.message.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, text)
        );
    }
}
