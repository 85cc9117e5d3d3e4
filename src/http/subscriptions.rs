//! Subscriptions API (SPEC §3.3, the seed's paths): create, list, renew by hand, delete.
//! Handlers stay thin; the work (Graph calls through the credential actor, the store, telling
//! the receiver) is in `relay365_actors::subscription`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, patch};
use axum::{Json, Router};
use relay365_actors::credential::CredentialError;
use relay365_actors::graph::GraphError;
use relay365_actors::store::subscriptions::{self, SubscriptionRow};
use relay365_actors::store::to_time;
use relay365_actors::subscription::{self, CreateRequest, SubscriptionError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::json::ApiJson;
use super::AppState;
use crate::error::{ApiError, ApiResult};

/// The subscription routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/ms365/subscriptions", get(list_all).post(create))
        // GET takes a credential id, DELETE a subscription id (the seed's paths).
        .route(
            "/api/ms365/subscriptions/{id}",
            get(list_for_credential).delete(remove),
        )
        .route("/api/ms365/subscriptions/{id}/renew", patch(renew))
}

/// A subscription as the API shows it (never its clientState).
pub fn view(row: &SubscriptionRow) -> Value {
    json!({
        "id": row.id,
        "credential_id": row.credential_id,
        "external_subscription_id": row.external_id,
        "resource_path": row.resource,
        "notification_url": row.notification_url,
        "change_types": row.change_types.split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>(),
        "status": row.status,
        "last_error": row.last_error,
        "expires_at": row.expires_at.map(to_time),
        "next_renewal_at": row.next_renewal_at.map(to_time),
        "created_at": to_time(row.created_at),
        "last_notification_at": row.last_notification_at.map(to_time),
        "last_renewed_at": row.last_renewed_at.map(to_time),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    credential_id: String,
    resource: Option<String>,
    change_types: Option<Vec<String>>,
    expiration_minutes: Option<i64>,
    expiration_hours: Option<i64>,
    notification_url: Option<String>,
}

fn minutes(m: Option<i64>, h: Option<i64>) -> ApiResult<Option<i64>> {
    match (m, h) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give expiration_minutes or expiration_hours, not both",
        )),
        (Some(m), None) => Ok(Some(m)),
        (None, Some(h)) => Ok(Some(h.saturating_mul(60))),
        (None, None) => Ok(None),
    }
}

async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let req = CreateRequest {
        credential_id: body.credential_id,
        resource: body.resource,
        change_types: body.change_types,
        expiration_minutes: minutes(body.expiration_minutes, body.expiration_hours)?,
        notification_url: body.notification_url,
    };
    let row = subscription::create(&state.deps, req)
        .await
        .map_err(map_err)?;
    Ok((StatusCode::CREATED, Json(view(&row))))
}

async fn list_all(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    list(&state, None).await
}

async fn list_for_credential(
    State(state): State<AppState>,
    Path(credential_id): Path<String>,
) -> ApiResult<Json<Value>> {
    list(&state, Some(&credential_id)).await
}

async fn list(state: &AppState, credential_id: Option<&str>) -> ApiResult<Json<Value>> {
    let rows = subscriptions::list(&state.deps.store, credential_id)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(
        json!({"subscriptions": rows.iter().map(view).collect::<Vec<_>>()}),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RenewBody {
    expiration_minutes: Option<i64>,
    expiration_hours: Option<i64>,
}

async fn renew(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    // The body is optional: an empty one renews for the maximum lifetime.
    let body: RenewBody = if body.iter().all(u8::is_ascii_whitespace) {
        RenewBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    let row = subscription::renew(
        &state.deps,
        &id,
        minutes(body.expiration_minutes, body.expiration_hours)?,
    )
    .await
    .map_err(map_err)?;
    Ok(Json(view(&row)))
}

async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    subscription::delete(&state.deps, &id)
        .await
        .map_err(map_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Maps a subscription failure to an answer: the caller's mistakes are 4xx, Graph's and the
/// token source's refusals 502/422, their outages 503.
pub fn map_err(e: SubscriptionError) -> ApiError {
    match e {
        SubscriptionError::NotFound(m) => ApiError::NotFound(m),
        SubscriptionError::BadRequest(m) => ApiError::bad_request(m),
        SubscriptionError::Store(e) => ApiError::Internal(e.into()),
        SubscriptionError::Credential(CredentialError::Unavailable(m)) => ApiError::Unavailable(m),
        SubscriptionError::Credential(CredentialError::Token(t)) => ApiError::Upstream {
            code: "token_error",
            message: t.to_string(),
        },
        SubscriptionError::Credential(CredentialError::Graph(g)) => match &g {
            GraphError::Throttled { .. } | GraphError::Transient { .. } => ApiError::Upstream {
                code: "graph_unavailable",
                message: g.to_string(),
            },
            GraphError::Other { status, .. } if (400..500).contains(status) => {
                ApiError::unprocessable("graph_rejected", g.to_string())
            }
            _ => ApiError::Upstream {
                code: "graph_error",
                message: g.to_string(),
            },
        },
    }
}
