//! `/secrets` and `/configs` (docs/secrets.md): list with filters, create, inspect, update
//! (labels only, as dockerd), delete; and the services' `SecretReferences`/`ConfigReferences`.
//! A secret's data is never in a reply; a config's is (`Spec.Data`, base64).

use axum::extract::{Path, State as Extract};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bollard_stubs::models as m;

use super::{Json, Params, Reply, State};
use crate::engine_api::convert::{config_out, secret_out};
use crate::engine_api::error::EngineError;
use crate::engine_api::filters::Filters;
use crate::store::objects::{Annotations, ConfigSpec, FileReference, FileTarget, SecretSpec};

const FILTERS: &[&str] = &["id", "label", "name", "names"];

fn data_in(data: Option<String>) -> Result<Vec<u8>, EngineError> {
    STANDARD
        .decode(data.unwrap_or_default().as_bytes())
        .map_err(|err| EngineError::bad_request(format!("invalid base64 in Data: {err}")))
}

fn annotations_in(
    name: Option<String>,
    labels: Option<std::collections::HashMap<String, String>>,
) -> Annotations {
    Annotations {
        name: name.unwrap_or_default(),
        labels: labels.unwrap_or_default().into_iter().collect(),
    }
}

fn keep(filters: &Filters, id: &str, annotations: &Annotations) -> bool {
    filters.any("id", |f| id.starts_with(f))
        && filters.any("name", |f| annotations.name.starts_with(f))
        && filters.any("names", |f| annotations.name == f)
        && filters.labels_match(&annotations.labels)
}

pub async fn list_secrets(
    Extract(backend): Extract<State>,
    params: Params,
) -> Reply<axum::Json<Vec<m::Secret>>> {
    let filters = Filters::parse(params.get("filters"), FILTERS)?;
    let secrets = backend.control_client().await?.list_secrets().await?;
    Ok(axum::Json(
        secrets
            .iter()
            .filter(|s| keep(&filters, &s.id, &s.spec.annotations))
            .map(secret_out)
            .collect(),
    ))
}

pub async fn create_secret(
    Extract(backend): Extract<State>,
    Json(spec): Json<m::SecretSpec>,
) -> Reply<(StatusCode, axum::Json<m::IdResponse>)> {
    if spec.templating.is_some() {
        return Err(EngineError::bad_request(
            "hive does not template secrets; leave Templating unset",
        ));
    }
    let driver = spec.driver.map(|d| d.name).unwrap_or_default();
    let store = SecretSpec {
        annotations: annotations_in(spec.name, spec.labels),
        data: data_in(spec.data)?,
    };
    let secret = backend
        .control_client()
        .await?
        .create_secret(&store, &driver)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(m::IdResponse { id: secret.id }),
    ))
}

pub async fn inspect_secret(
    Extract(backend): Extract<State>,
    Path(id): Path<String>,
) -> Reply<axum::Json<m::Secret>> {
    let secret = backend.control_client().await?.inspect_secret(&id).await?;
    Ok(axum::Json(secret_out(&secret)))
}

pub async fn update_secret(
    Extract(backend): Extract<State>,
    Path(id): Path<String>,
    params: Params,
    Json(spec): Json<m::SecretSpec>,
) -> Reply<StatusCode> {
    let version = params.version()?;
    let store = SecretSpec {
        annotations: annotations_in(spec.name, spec.labels),
        data: data_in(spec.data)?,
    };
    backend
        .control_client()
        .await?
        .update_secret(&id, version, &store)
        .await?;
    Ok(StatusCode::OK)
}

pub async fn remove_secret(
    Extract(backend): Extract<State>,
    Path(id): Path<String>,
) -> Reply<StatusCode> {
    backend.control_client().await?.remove_secret(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_configs(
    Extract(backend): Extract<State>,
    params: Params,
) -> Reply<axum::Json<Vec<m::Config>>> {
    let filters = Filters::parse(params.get("filters"), FILTERS)?;
    let configs = backend.control_client().await?.list_configs().await?;
    Ok(axum::Json(
        configs
            .iter()
            .filter(|c| keep(&filters, &c.id, &c.spec.annotations))
            .map(config_out)
            .collect(),
    ))
}

pub async fn create_config(
    Extract(backend): Extract<State>,
    Json(spec): Json<m::ConfigSpec>,
) -> Reply<(StatusCode, axum::Json<m::IdResponse>)> {
    let templating = spec.templating.map(|d| d.name).unwrap_or_default();
    let store = ConfigSpec {
        annotations: annotations_in(spec.name, spec.labels),
        data: data_in(spec.data)?,
    };
    let config = backend
        .control_client()
        .await?
        .create_config(&store, &templating)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(m::IdResponse { id: config.id }),
    ))
}

pub async fn inspect_config(
    Extract(backend): Extract<State>,
    Path(id): Path<String>,
) -> Reply<axum::Json<m::Config>> {
    let config = backend.control_client().await?.inspect_config(&id).await?;
    Ok(axum::Json(config_out(&config)))
}

pub async fn update_config(
    Extract(backend): Extract<State>,
    Path(id): Path<String>,
    params: Params,
    Json(spec): Json<m::ConfigSpec>,
) -> Reply<StatusCode> {
    let version = params.version()?;
    let store = ConfigSpec {
        annotations: annotations_in(spec.name, spec.labels),
        data: data_in(spec.data)?,
    };
    backend
        .control_client()
        .await?
        .update_config(&id, version, &store)
        .await?;
    Ok(StatusCode::OK)
}

pub async fn remove_config(
    Extract(backend): Extract<State>,
    Path(id): Path<String>,
) -> Reply<StatusCode> {
    backend.control_client().await?.remove_config(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn target_in(
    name: Option<String>,
    uid: Option<String>,
    gid: Option<String>,
    mode: Option<u32>,
) -> FileTarget {
    FileTarget {
        name: name.unwrap_or_default(),
        uid: uid.unwrap_or_default(),
        gid: gid.unwrap_or_default(),
        mode: mode.unwrap_or(0),
    }
}

/// A service spec's `Secrets` and `Configs` as hive stores them (the manager resolves them).
pub fn references_in(
    secrets: Vec<m::TaskSpecContainerSpecSecrets>,
    configs: Vec<m::TaskSpecContainerSpecConfigs>,
) -> (Vec<FileReference>, Vec<FileReference>) {
    let secrets = secrets
        .into_iter()
        .map(|s| {
            let file = s.file.unwrap_or_default();
            FileReference {
                id: s.secret_id.unwrap_or_default(),
                name: s.secret_name.unwrap_or_default(),
                target: target_in(file.name, file.uid, file.gid, file.mode),
            }
        })
        .collect();
    let configs = configs
        .into_iter()
        .map(|c| {
            let file = c.file.unwrap_or_default();
            FileReference {
                id: c.config_id.unwrap_or_default(),
                name: c.config_name.unwrap_or_default(),
                target: target_in(file.name, file.uid, file.gid, file.mode),
            }
        })
        .collect();
    (secrets, configs)
}

pub fn secret_references_out(
    references: &[FileReference],
) -> Option<Vec<m::TaskSpecContainerSpecSecrets>> {
    (!references.is_empty()).then(|| {
        references
            .iter()
            .map(|r| m::TaskSpecContainerSpecSecrets {
                file: Some(m::TaskSpecContainerSpecFile {
                    name: Some(r.target.name.clone()),
                    uid: Some(r.target.uid.clone()),
                    gid: Some(r.target.gid.clone()),
                    mode: Some(r.target.mode),
                }),
                secret_id: Some(r.id.clone()),
                secret_name: Some(r.name.clone()),
            })
            .collect()
    })
}

pub fn config_references_out(
    references: &[FileReference],
) -> Option<Vec<m::TaskSpecContainerSpecConfigs>> {
    (!references.is_empty()).then(|| {
        references
            .iter()
            .map(|r| m::TaskSpecContainerSpecConfigs {
                file: Some(m::TaskSpecContainerSpecFile1 {
                    name: Some(r.target.name.clone()),
                    uid: Some(r.target.uid.clone()),
                    gid: Some(r.target.gid.clone()),
                    mode: Some(r.target.mode),
                }),
                runtime: None,
                config_id: Some(r.id.clone()),
                config_name: Some(r.name.clone()),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_round_trip_and_secret_data_is_never_out() {
        let spec: m::TaskSpecContainerSpec = serde_json::from_str(
            r#"{"Secrets":[{"SecretName":"pw","SecretID":"abc","File":{"Name":"pw","UID":"0","GID":"0","Mode":292}}],
                "Configs":[{"ConfigName":"conf","File":{"Name":"/etc/conf","UID":"1","GID":"2","Mode":256}}]}"#,
        )
        .unwrap();
        let (secrets, configs) = references_in(
            spec.secrets.clone().unwrap_or_default(),
            spec.configs.clone().unwrap_or_default(),
        );
        assert_eq!(secrets[0].id, "abc");
        assert_eq!(secrets[0].target.mode, 0o444);
        assert_eq!(configs[0].target.name, "/etc/conf");
        assert_eq!(secret_references_out(&secrets), spec.secrets);
        assert_eq!(configs[0].target.uid, "1");

        let mut secret = crate::store::objects::Secret::default();
        secret.spec.data = b"hunter2".to_vec();
        let json = serde_json::to_string(&secret_out(&secret)).unwrap();
        assert!(!json.contains("Data"), "{json}");
        let mut config = crate::store::objects::Config::default();
        config.spec.data = b"x=1".to_vec();
        let json = serde_json::to_string(&config_out(&config)).unwrap();
        assert!(json.contains("\"Data\":\"eD0x\""), "{json}");
    }
}
