//! The targets API (SPEC §3.3): where completed events are delivered. A target's signing
//! secret is shown once, in the answer that created it; its header values (n8n's Header Auth)
//! are shown masked afterwards. Every field is checked before anything is stored.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use relay365_actors::store::targets::{self, TargetRow};
use relay365_actors::store::{credentials, new_id, now_ms, to_time};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::json::ApiJson;
use super::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};

/// The event types a target may filter on.
pub const EVENT_TYPES: [&str; 3] = ["message.created", "message.updated", "message.deleted"];

/// Headers a target may not set: the signature's own, and what the HTTP client owns.
const RESERVED_HEADERS: [&str; 13] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
    "user-agent",
    // Hop-by-hop: the HTTP client manages the connection itself.
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "expect",
];

/// The target routes (behind the API key).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(remove))
}

/// `POST /api/targets`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTarget {
    /// An absolute http(s) URL.
    url: String,
    /// `whsec_` + base64 of 24 to 64 bytes; generated if absent.
    secret: Option<String>,
    /// Sent on every delivery (e.g. for n8n's Header Auth); not `webhook-*`, `content-type`,
    /// `content-length` or `host`.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Only this credential's events.
    #[schema(format = Uuid)]
    credential_id: Option<String>,
    /// Only these: `message.created`, `message.updated`, `message.deleted`.
    event_types: Option<Vec<String>>,
}

/// A target as the API shows it. Fields in alphabetical order, the order they have always had
/// on the wire.
#[derive(Serialize, ToSchema)]
pub struct Target {
    pub created_at: DateTime<Utc>,
    pub credential_id: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// Header values are shown as `"***"`, except in the answer that created the target.
    pub headers: BTreeMap<String, String>,
    #[schema(format = Uuid)]
    pub id: String,
    /// The signing secret: only in the answer that created the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub url: String,
}

/// `{"targets": [...]}`.
#[derive(Serialize, ToSchema)]
pub struct TargetList {
    pub targets: Vec<Target>,
}

/// A target as the API shows it after it was created: no secret, header values masked.
pub fn view(t: &TargetRow) -> Target {
    Target {
        created_at: to_time(t.created_at),
        credential_id: t.credential_id.clone(),
        event_types: t.event_type_list().ok().flatten(),
        headers: t
            .header_map()
            .unwrap_or_default()
            .into_keys()
            .map(|k| (k, "***".to_string()))
            .collect(),
        id: t.id.clone(),
        secret: None,
        url: t.url.clone(),
    }
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::bad_request(m)
}

/// Checks a target URL: absolute, `http` or `https`, with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => Ok(()),
        Ok(u) => Err(format!(
            "url must be an http or https URL with a host, got scheme {:?}",
            u.scheme()
        )),
        Err(e) => Err(format!("url is not a valid URL: {e}")),
    }
}

fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if headers.len() > 32 {
        return Err(bad("headers: at most 32"));
    }
    let mut seen = std::collections::HashSet::new();
    for (name, value) in headers {
        let header = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad(format!("headers: {name:?} is not a valid header name")))?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(bad(format!("headers: {name} is set by relay365 itself")));
        }
        // Header names ignore case: both would be sent, and the receiver see one joined value.
        if !seen.insert(header.clone()) {
            return Err(bad(format!(
                "headers: {name} is given twice (header names ignore case)"
            )));
        }
        reqwest::header::HeaderValue::from_str(value).map_err(|_| {
            bad(format!(
                "headers: the value of {name} is not a valid header value"
            ))
        })?;
    }
    Ok(())
}

/// Creates a delivery target; the answer holds its signing secret, once.
#[utoipa::path(post, path = "/api/targets", tag = "targets",
    request_body = CreateTarget,
    responses(
        (status = 201, description = "Created, with its signing secret (only here)", body = Target),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 413, description = "Over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateTarget>,
) -> ApiResult<(StatusCode, Json<Target>)> {
    check_url(&body.url).map_err(bad)?;
    let secret = match body.secret {
        Some(s) => {
            targets::check_secret(&s).map_err(|why| bad(format!("secret {why}")))?;
            s
        }
        None => targets::generate_secret(),
    };
    check_headers(&body.headers)?;
    if let Some(types) = &body.event_types {
        if let Some(t) = types.iter().find(|t| !EVENT_TYPES.contains(&t.as_str())) {
            return Err(bad(format!(
                "event_types: {t:?} is not one of {}",
                EVENT_TYPES.join(", ")
            )));
        }
    }
    // Stored ids are lower-case and hyphenated; a UUID in any other form is the same one.
    let credential_id = body
        .credential_id
        .as_deref()
        .map(|c| uuid::Uuid::parse_str(c).map(|u| u.to_string()))
        .transpose()
        .map_err(|_| bad("credential_id must be a UUID"))?;
    if let Some(c) = &credential_id {
        if credentials::get(&state.deps.store, c)
            .await
            .map_err(|e| ApiError::Internal(e.into()))?
            .is_none()
        {
            return Err(bad(format!("credential_id names no credential ({c})")));
        }
    }
    let row = TargetRow {
        id: new_id(),
        url: body.url,
        secret,
        headers: serde_json::to_string(&body.headers).map_err(|e| ApiError::Internal(e.into()))?,
        credential_id,
        event_types: body
            .event_types
            .map(|t| serde_json::to_string(&t))
            .transpose()
            .map_err(|e| ApiError::Internal(e.into()))?,
        created_at: now_ms(),
    };
    targets::insert(&state.deps.store, &row)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    state.deps.targets.invalidate();
    let mut shown = view(&row);
    // Only here: the secret and the header values as given.
    shown.headers = row.header_map().unwrap_or_default();
    shown.secret = Some(row.secret);
    Ok((StatusCode::CREATED, Json(shown)))
}

/// Every target (no secrets, header values masked).
#[utoipa::path(get, path = "/api/targets", tag = "targets",
    responses((status = 200, description = "Every target", body = TargetList)))]
async fn list(State(state): State<AppState>) -> ApiResult<Json<TargetList>> {
    let rows = targets::list(&state.deps.store)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(TargetList {
        targets: rows.iter().map(view).collect(),
    }))
}

/// Deletes a target.
#[utoipa::path(delete, path = "/api/targets/{id}", tag = "targets",
    params(("id" = String, Path, description = "The target's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such target", body = ErrorBody),
    ))]
async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    if targets::delete(&state.deps.store, &id)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
    {
        state.deps.targets.invalidate();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no target {id}")))
    }
}
