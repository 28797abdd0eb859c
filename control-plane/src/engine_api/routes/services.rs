//! `/services`: create, list (with `status=true`), inspect, update (`?version=N`,
//! `rollback=previous`), delete, and logs in Docker's multiplexed stream format.
//!
//! Create and update take the service's registry credentials in `X-Registry-Auth`
//! (`--with-registry-auth`); an update without them keeps the current spec's, or with
//! `registryAuthFrom=previous-spec` the previous spec's, as dockerd. They are never returned.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bollard_stubs::models as m;
use bytes::{BufMut as _, Bytes, BytesMut};
use futures::StreamExt as _;

use super::{Json, Params, Reply, State};
use crate::api::pb;
use crate::client::LogsRequest;
use crate::engine_api::error::EngineError;
use crate::engine_api::filters::Filters;
use crate::engine_api::{convert, registry_auth};
use crate::store::objects::ServiceMode;

const FILTERS: &[&str] = &["id", "label", "mode", "name"];

pub async fn create(
    Extract(backend): Extract<State>,
    headers: HeaderMap,
    Json(spec): Json<m::ServiceSpec>,
) -> Reply<(StatusCode, axum::Json<m::ServiceCreateResponse>)> {
    let (mut spec, warnings) = convert::service_spec_in(spec)?;
    spec.task_template.container.registry_auth = registry_auth::from_headers(&headers);
    let service = backend.create_service(&spec).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(m::ServiceCreateResponse {
            id: Some(service.id),
            warnings: Some(warnings),
        }),
    ))
}

pub async fn list(
    Extract(backend): Extract<State>,
    params: Params,
) -> Reply<axum::Json<Vec<convert::ServiceObject>>> {
    let filters = Filters::parse(params.get("filters"), FILTERS)?;
    let status = params.flag("status");
    let services = backend.list_services().await?;
    Ok(axum::Json(
        services
            .iter()
            .filter(|s| {
                let service = &s.service;
                let mode = match service.spec.mode {
                    ServiceMode::Replicated { .. } => "replicated",
                    ServiceMode::Global => "global",
                };
                filters.any("id", |id| service.id.starts_with(id))
                    && filters.any("name", |name| {
                        service.spec.annotations.name.starts_with(name)
                    })
                    && filters.any("mode", |m| m == mode)
                    && filters.labels_match(&service.spec.annotations.labels)
            })
            .map(|s| convert::service_out(&s.service, status.then_some((s.running, s.desired))))
            .collect(),
    ))
}

/// `insertDefaults` changes nothing: hive's specs always hold their defaults.
pub async fn inspect(
    Extract(backend): Extract<State>,
    Path(id): Path<String>,
) -> Reply<axum::Json<convert::ServiceObject>> {
    let service = backend.inspect_service(&id).await?;
    Ok(axum::Json(convert::service_out(&service, None)))
}

pub async fn update(
    Extract(backend): Extract<State>,
    Path(id): Path<String>,
    params: Params,
    headers: HeaderMap,
    Json(spec): Json<m::ServiceSpec>,
) -> Reply<axum::Json<m::ServiceUpdateResponse>> {
    let version = params.version()?;
    let auth_from = match params.get("registryAuthFrom") {
        None | Some("" | "spec") => pb::RegistryAuthFrom::Spec,
        Some("previous-spec") => pb::RegistryAuthFrom::PreviousSpec,
        Some(other) => {
            return Err(EngineError::bad_request(format!(
                "unsupported registryAuthFrom value {other}"
            )));
        }
    };
    let (mut spec, warnings) = match params.get("rollback") {
        Some("previous") => {
            let service = backend.inspect_service(&id).await?;
            let previous = service.previous_spec.ok_or_else(|| {
                EngineError::bad_request(format!("service {id} does not have a previous spec"))
            })?;
            (previous, Vec::new())
        }
        None | Some("") => convert::service_spec_in(spec)?,
        Some(other) => {
            return Err(EngineError::bad_request(format!(
                "unrecognized rollback option {other}"
            )));
        }
    };
    spec.task_template.container.registry_auth = registry_auth::from_headers(&headers);
    backend
        .update_service(&id, &spec, version, auth_from)
        .await?;
    Ok(axum::Json(m::ServiceUpdateResponse {
        warnings: Some(warnings),
    }))
}

pub async fn remove(Extract(backend): Extract<State>, Path(id): Path<String>) -> Reply<()> {
    backend.remove_service(&id).await
}

/// One frame of Docker's multiplexed stream: stream (1 stdout, 2 stderr), three zero bytes,
/// the payload's length (big endian), the payload.
pub fn frame(stderr: bool, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(8 + payload.len());
    out.put_u8(if stderr { 2 } else { 1 });
    out.put_slice(&[0, 0, 0]);
    out.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    out.put_slice(payload);
    out.freeze()
}

/// The IDs a log line names, so the CLI can show `name.slot.id@node`.
#[derive(Debug, Clone)]
struct TaskIds {
    service_id: String,
    node_id: String,
}

pub async fn logs(
    Extract(backend): Extract<State>,
    Path(id): Path<String>,
    params: Params,
) -> Reply<Response> {
    let (stdout, stderr) = (params.flag("stdout"), params.flag("stderr"));
    if !stdout && !stderr {
        return Err(EngineError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    if params
        .get("since")
        .is_some_and(|s| !s.is_empty() && s != "0")
    {
        return Err(EngineError::not_implemented("service logs --since"));
    }
    let tail = match params.get("tail") {
        None | Some("") | Some("all") => 0,
        Some(n) => n.parse::<u64>().map_err(|_| {
            EngineError::bad_request(format!("invalid tail value \"{n}\": use a number or all"))
        })?,
    };
    let (timestamps, details) = (params.flag("timestamps"), params.flag("details"));
    // The service must exist (404 otherwise); its tasks give the IDs the lines name.
    let service = backend.inspect_service(&id).await?;
    let ids: HashMap<String, TaskIds> = backend
        .list_tasks(&service.id, "")
        .await?
        .into_iter()
        .map(|t| {
            (
                t.id.clone(),
                TaskIds {
                    service_id: t.service_id,
                    node_id: t.node_id.unwrap_or_default(),
                },
            )
        })
        .collect();
    let lines = backend
        .service_logs(LogsRequest {
            target: service.id.clone(),
            follow: params.flag("follow"),
            tail,
            timestamps,
        })
        .await?;
    let service_id = service.id;
    let body = lines.filter_map(move |line| {
        let ids = &ids;
        let service_id = &service_id;
        let out = match line {
            Ok(line) if (line.stderr && stderr) || (!line.stderr && stdout) => {
                let mut payload = Vec::with_capacity(line.line.len() + 128);
                if timestamps
                    && let Some(at) = line.timestamp.and_then(|t| {
                        convert::date(crate::store::objects::Timestamp {
                            seconds: t.seconds,
                            nanos: t.nanos,
                        })
                    })
                {
                    payload.extend_from_slice(at.as_bytes());
                    payload.push(b' ');
                }
                if details {
                    // The IDs the CLI resolves to build its `name.slot.id@node |` prefix;
                    // names where a task started after the stream began.
                    let (service, node) = ids.get(&line.task_id).map_or(
                        (service_id.as_str(), line.node_name.as_str()),
                        |i| (i.service_id.as_str(), i.node_id.as_str()),
                    );
                    payload.extend_from_slice(
                        format!(
                            "com.docker.swarm.node.id={node},com.docker.swarm.service.id={service},com.docker.swarm.task.id={} ",
                            line.task_id
                        )
                        .as_bytes(),
                    );
                }
                payload.extend_from_slice(&line.line);
                if !payload.ends_with(b"\n") {
                    payload.push(b'\n');
                }
                Some(Ok::<_, std::io::Error>(frame(line.stderr, &payload)))
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(%e, "service logs ended with an error");
                None
            }
        };
        std::future::ready(out)
    });
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/vnd.docker.multiplexed-stream"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_dockers() {
        let f = frame(true, b"hi\n");
        assert_eq!(&f[..], &[2, 0, 0, 0, 0, 0, 0, 3, b'h', b'i', b'\n']);
        assert_eq!(frame(false, b"")[0], 1);
    }
}
