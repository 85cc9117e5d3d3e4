//! Subscriptions API (SPEC §3.3, the seed's paths): create, list, renew by hand, delete.
//! Handlers stay thin; the work (Graph calls through the credential actor, the store, telling
//! the receiver) is in `relay365_actors::subscription`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use relay365_actors::credential::CredentialError;
use relay365_actors::graph::GraphError;
use relay365_actors::store::status::SubscriptionStatus;
use relay365_actors::store::subscriptions::{self, SubscriptionRow};
use relay365_actors::store::to_time;
use relay365_actors::subscription::{self, CreateRequest, SubscriptionError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::json::ApiJson;
use super::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};

/// The subscription routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_all, create))
        // GET takes a credential id, DELETE a subscription id (the seed's paths).
        .routes(routes!(list_for_credential, remove))
        .routes(routes!(renew))
}

/// A subscription as the API shows it (never its clientState). Fields in alphabetical order,
/// the order they have always had on the wire.
#[derive(Serialize, ToSchema)]
pub struct Subscription {
    /// `created`, `updated`, `deleted`.
    pub change_types: Vec<String>,
    pub created_at: DateTime<Utc>,
    #[schema(format = Uuid)]
    pub credential_id: String,
    /// What Graph granted; null until Graph has it.
    pub expires_at: Option<DateTime<Utc>>,
    /// Graph's id (changes when the subscription is recreated at Graph; `id` does not).
    pub external_subscription_id: Option<String>,
    #[schema(format = Uuid)]
    pub id: String,
    pub last_error: Option<String>,
    pub last_notification_at: Option<DateTime<Utc>>,
    pub last_renewed_at: Option<DateTime<Utc>>,
    pub next_renewal_at: Option<DateTime<Utc>>,
    pub notification_url: String,
    pub resource_path: String,
    pub status: SubscriptionStatus,
}

/// `{"subscriptions": [...]}`.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<Subscription>,
}

/// A subscription as the API shows it.
pub fn view(row: &SubscriptionRow) -> Subscription {
    Subscription {
        change_types: row
            .change_types
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        created_at: to_time(row.created_at),
        credential_id: row.credential_id.clone(),
        expires_at: row.expires_at.map(to_time),
        external_subscription_id: row.external_id.clone(),
        id: row.id.clone(),
        last_error: row.last_error.clone(),
        last_notification_at: row.last_notification_at.map(to_time),
        last_renewed_at: row.last_renewed_at.map(to_time),
        next_renewal_at: row.next_renewal_at.map(to_time),
        notification_url: row.notification_url.clone(),
        resource_path: row.resource.clone(),
        status: row.status,
    }
}

/// `POST /api/ms365/subscriptions`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    #[schema(format = Uuid)]
    credential_id: String,
    /// Default `me/mailFolders('inbox')/messages`, or `users/{mailbox}/…` for a credential
    /// with a mailbox.
    resource: Option<String>,
    /// Default `["created"]`.
    change_types: Option<Vec<String>>,
    /// Clamped to the resource's maximum (10,080 for Outlook messages); give this or
    /// `expiration_hours`, not both.
    expiration_minutes: Option<i64>,
    expiration_hours: Option<i64>,
    /// Default `{RELAY365_PUBLIC_URL}/api/ms365/webhook`.
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

/// Creates a subscription at Graph (Graph's validation call comes while this request waits).
#[utoipa::path(post, path = "/api/ms365/subscriptions", tag = "subscriptions",
    request_body = CreateSubscription,
    responses(
        (status = 201, description = "Created at Graph (or adopted after a 409)", body = Subscription),
        (status = 400, description = "A field is missing or invalid", body = ErrorBody),
        (status = 404, description = "No such credential", body = ErrorBody),
        (status = 413, description = "Over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Graph refused it (`graph_rejected`, e.g. a failed validation)", body = ErrorBody),
        (status = 502, description = "The token source or Graph failed", body = ErrorBody),
        (status = 503, description = "The credential's actor is not running", body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateSubscription>,
) -> ApiResult<(StatusCode, Json<Subscription>)> {
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

/// Every subscription.
#[utoipa::path(get, path = "/api/ms365/subscriptions", tag = "subscriptions",
    responses((status = 200, description = "Every subscription", body = SubscriptionList)))]
async fn list_all(State(state): State<AppState>) -> ApiResult<Json<SubscriptionList>> {
    list(&state, None).await
}

/// The subscriptions of one credential.
#[utoipa::path(get, path = "/api/ms365/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "A credential's id")),
    responses((status = 200, description = "The credential's subscriptions (none for an unknown id)", body = SubscriptionList)))]
async fn list_for_credential(
    State(state): State<AppState>,
    Path(credential_id): Path<String>,
) -> ApiResult<Json<SubscriptionList>> {
    list(&state, Some(&credential_id)).await
}

async fn list(state: &AppState, credential_id: Option<&str>) -> ApiResult<Json<SubscriptionList>> {
    let rows = subscriptions::list(&state.deps.store, credential_id)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(SubscriptionList {
        subscriptions: rows.iter().map(view).collect(),
    }))
}

/// `PATCH /api/ms365/subscriptions/{id}/renew` (the body is optional).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewSubscription {
    expiration_minutes: Option<i64>,
    expiration_hours: Option<i64>,
}

/// Renews a subscription now (a subscription Graph lost is created again).
#[utoipa::path(patch, path = "/api/ms365/subscriptions/{id}/renew", tag = "subscriptions",
    params(("id" = String, Path, description = "The subscription's id")),
    request_body(content = Option<RenewSubscription>, description = "Empty: the longest lifetime Graph allows"),
    responses(
        (status = 200, description = "Renewed", body = Subscription),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 404, description = "No such subscription", body = ErrorBody),
        (status = 422, description = "Graph refused it", body = ErrorBody),
        (status = 502, description = "The token source or Graph failed", body = ErrorBody),
        (status = 503, description = "The credential's actor is not running", body = ErrorBody),
    ))]
async fn renew(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Subscription>> {
    // The body is optional: an empty one renews for the maximum lifetime.
    let body: RenewSubscription = if body.iter().all(u8::is_ascii_whitespace) {
        RenewSubscription::default()
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

/// Deletes a subscription, at Graph too (a 404 at Graph is fine).
#[utoipa::path(delete, path = "/api/ms365/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "The subscription's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such subscription", body = ErrorBody),
        (status = 502, description = "The token source or Graph failed", body = ErrorBody),
        (status = 503, description = "The credential's actor is not running", body = ErrorBody),
    ))]
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
        SubscriptionError::Credential(e @ CredentialError::Deleted(_)) => {
            ApiError::NotFound(e.to_string())
        }
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
