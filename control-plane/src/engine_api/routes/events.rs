//! `GET /events` (docs/engine-api.md, "Events").

use axum::body::Body;
use axum::extract::State as Extract;
use axum::http::header;
use axum::response::{IntoResponse as _, Response};

use super::{Params, Reply, State};
use crate::engine_api::error::EngineError;
use crate::engine_api::events::filter::EventFilter;
use crate::engine_api::events::log::Window;
use crate::engine_api::events::stream;

pub async fn events(Extract(backend): Extract<State>, params: Params) -> Reply<Response> {
    let since = timestamp("since", params.get("since"))?;
    let until = timestamp("until", params.get("until"))?;
    if let (Some(since_nanos), Some(until_nanos)) = (since, until)
        && until_nanos < since_nanos
    {
        return Err(EngineError::bad_request(format!(
            "`since` time ({}) cannot be after `until` time ({})",
            params.get("since").unwrap_or(""),
            params.get("until").unwrap_or("")
        )));
    }
    let filter = EventFilter::parse(params.get("filters"))?;
    let body = stream(backend.events(), Window { since, until }, filter);
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// dockerd's `since`/`until`: `SECONDS` or `SECONDS.FRACTION` since the epoch (the CLI turns
/// `10m` and RFC 3339 times into this), in nanoseconds; absent or empty is no bound.
fn timestamp(name: &str, raw: Option<&str>) -> Reply<Option<i64>> {
    let raw = match raw.map(str::trim) {
        None | Some("") => return Ok(None),
        Some(raw) => raw,
    };
    let invalid = || EngineError::bad_request(format!("invalid {name} timestamp: {raw}"));
    let (seconds, fraction) = raw.split_once('.').unwrap_or((raw, ""));
    let seconds: i64 = seconds.parse().map_err(|_| invalid())?;
    let nanos: i64 = if fraction.is_empty() {
        0
    } else if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    } else {
        // `5` is half a second: pad the fraction to nine digits.
        format!("{fraction:0<9}").parse().map_err(|_| invalid())?
    };
    seconds
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(nanos))
        .map(Some)
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_seconds_with_an_optional_fraction() {
        assert_eq!(timestamp("since", None).expect("none"), None);
        assert_eq!(timestamp("since", Some("")).expect("empty"), None);
        assert_eq!(
            timestamp("since", Some("1700000000")).expect("seconds"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            timestamp("since", Some("1700000000.5")).expect("fraction"),
            Some(1_700_000_000_500_000_000)
        );
        assert_eq!(
            timestamp("until", Some("1700000000.000000001")).expect("nanos"),
            Some(1_700_000_000_000_000_001)
        );
        let bad = timestamp("since", Some("10m")).unwrap_err();
        assert_eq!(bad.status, 400);
        assert_eq!(bad.message, "invalid since timestamp: 10m");
        assert!(timestamp("until", Some("1.x")).is_err());
    }
}
