//! `/_ping`, `/version`, `/info` and `/distribution`.

use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bollard_stubs::models as m;

use super::{Reply, State};
use crate::api::pb;
use crate::engine_api::error::EngineError;
use crate::engine_api::version::{MAX_VERSION, MIN_VERSION};
use crate::engine_api::{convert, registry_auth};
use crate::image_store::ImageReference;

/// The `Swarm` header of `/_ping`, as dockerd: the local node state, `/manager` or `/worker`
/// when active.
fn swarm_header(info: &pb::InfoResponse) -> String {
    let state = match info.state() {
        pb::LocalNodeState::Inactive => "inactive",
        pb::LocalNodeState::Pending => "pending",
        pb::LocalNodeState::Active => "active",
        pb::LocalNodeState::Error => "error",
        pb::LocalNodeState::Locked => "locked",
    };
    match (info.state(), info.is_manager) {
        (pb::LocalNodeState::Active, true) => format!("{state}/manager"),
        (pb::LocalNodeState::Active, false) => format!("{state}/worker"),
        _ => state.to_owned(),
    }
}

pub async fn ping(Extract(backend): Extract<State>) -> Response {
    let swarm = match backend.info().await {
        Ok(info) => swarm_header(&info),
        Err(e) => {
            tracing::debug!(%e, "ping: the local swarm state is unknown");
            "inactive".to_owned()
        }
    };
    let mut response = (StatusCode::OK, "OK").into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&swarm) {
        headers.insert("Swarm", value);
    }
    response
}

/// Go's names for architectures, as `docker version` prints them.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn operating_system() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "Linux".to_owned())
}

pub async fn version() -> axum::Json<m::SystemVersion> {
    let version = env!("CARGO_PKG_VERSION").to_owned();
    axum::Json(m::SystemVersion {
        platform: Some(m::SystemVersionPlatform {
            name: "hive".to_owned(),
        }),
        components: Some(vec![m::SystemVersionComponents {
            name: "Engine".to_owned(),
            version: version.clone(),
            details: Some(
                [
                    ("ApiVersion".to_owned(), MAX_VERSION.to_string()),
                    ("MinAPIVersion".to_owned(), MIN_VERSION.to_string()),
                    ("Os".to_owned(), "linux".to_owned()),
                    ("Arch".to_owned(), go_arch().to_owned()),
                    ("KernelVersion".to_owned(), kernel_version()),
                ]
                .into_iter()
                .collect(),
            ),
        }]),
        version: Some(version),
        api_version: Some(MAX_VERSION.to_string()),
        min_api_version: Some(MIN_VERSION.to_string()),
        git_commit: Some(String::new()),
        go_version: Some(String::new()),
        os: Some("linux".to_owned()),
        arch: Some(go_arch().to_owned()),
        kernel_version: Some(kernel_version()),
        experimental: Some(false),
        build_time: None,
    })
}

pub async fn info(Extract(backend): Extract<State>) -> Reply<axum::Json<m::SystemInfo>> {
    let local = backend.info().await?;
    let active = local.state() == pb::LocalNodeState::Active;
    let mut swarm = m::SwarmInfo {
        node_id: Some(local.node_id.clone()),
        node_addr: Some(local.node_addr.clone()),
        local_node_state: Some(convert::local_node_state_out(local.state())),
        control_available: Some(active && local.is_manager),
        error: Some(local.error.clone()),
        remote_managers: Some(
            local
                .manager_addrs
                .iter()
                .map(|addr| m::PeerNode {
                    node_id: Some(String::new()),
                    addr: Some(addr.clone()),
                })
                .collect(),
        ),
        nodes: active.then_some(i64::from(local.nodes)),
        managers: active.then_some(i64::from(local.managers)),
        cluster: None,
    };
    if active && local.is_manager {
        // What only a manager knows: the cluster and its managers by ID. A swarm without a
        // leader still answers `docker info`, without these.
        match backend.inspect_swarm().await {
            Ok(cluster) => swarm.cluster = Some(convert::cluster_info_out(&cluster)),
            Err(e) => tracing::debug!(%e, "info: the cluster is not readable"),
        }
        if let Ok(nodes) = backend.list_nodes().await {
            swarm.remote_managers = Some(
                nodes
                    .nodes
                    .iter()
                    .filter_map(|n| {
                        n.manager_status.as_ref().map(|ms| m::PeerNode {
                            node_id: Some(n.id.clone()),
                            addr: Some(ms.addr.clone()),
                        })
                    })
                    .collect(),
            );
        }
    }
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let description = crate::api::convert::local_description();
    Ok(axum::Json(m::SystemInfo {
        id: Some(local.node_id.clone()),
        containers: Some(0),
        containers_running: Some(0),
        containers_paused: Some(0),
        containers_stopped: Some(0),
        images: Some(0),
        driver: Some(String::new()),
        docker_root_dir: Some(String::new()),
        kernel_version: Some(kernel_version()),
        operating_system: Some(operating_system()),
        os_type: Some("linux".to_owned()),
        architecture: Some(std::env::consts::ARCH.to_owned()),
        ncpu: Some(description.nano_cpus / 1_000_000_000),
        mem_total: Some(description.memory_bytes),
        name: Some(hostname),
        labels: Some(Vec::new()),
        experimental_build: Some(false),
        server_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        swarm: Some(swarm),
        security_options: Some(Vec::new()),
        warnings: Some(Vec::new()),
        ..Default::default()
    }))
}

/// The digest an image reference names now, from its registry (with the `X-Registry-Auth`
/// credentials) or, for an image loaded from a file, from this node's store: the CLI pins a
/// service's image to it (`name:tag@sha256:...`). hive's built-in images are not registry
/// images: 404, which the CLI takes as "send the image unpinned".
pub async fn distribution(
    Extract(backend): Extract<State>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Reply<axum::Json<m::DistributionInspect>> {
    // The route captures `NAME/json`: names have slashes.
    let name = name
        .strip_suffix("/json")
        .ok_or_else(|| EngineError::not_found("page not found"))?
        .to_owned();
    if crate::image_store::reference::is_builtin(&name) {
        return Err(EngineError::not_found(format!(
            "{name} is one of hive's built-in images, not a registry image"
        )));
    }
    let reference: ImageReference = name
        .parse()
        .map_err(|e| EngineError::bad_request(format!("{e}")))?;
    let auth = registry_auth::from_headers(&headers);
    let resolved = backend.resolve_image(&reference, auth.as_ref()).await?;
    Ok(axum::Json(m::DistributionInspect {
        descriptor: m::OciDescriptor {
            media_type: (!resolved.media_type.is_empty()).then_some(resolved.media_type),
            digest: Some(resolved.digest.to_string()),
            size: Some(i64::try_from(resolved.size).unwrap_or(i64::MAX)),
            ..Default::default()
        },
        platforms: vec![m::OciPlatform {
            architecture: Some("amd64".to_owned()),
            os: Some("linux".to_owned()),
            ..Default::default()
        }],
    }))
}
