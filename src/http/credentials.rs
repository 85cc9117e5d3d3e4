//! Credentials API (SPEC §3.3): one credential per mailbox connection. Secrets go in once and
//! never come out.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use relay365_actors::credential::{self, ManageError, NewCredential};
use relay365_actors::store::credentials::{self, CredentialRow};
use relay365_actors::store::{to_time, StoreError};
use relay365_actors::token::TokenSource;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::json::ApiJson;
use super::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};

/// The credential routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, remove))
}

/// `POST /api/credentials`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCredential {
    /// The credential's id (generated if absent); with `auth_service`, the id the token-vending
    /// service knows it by.
    #[schema(format = Uuid)]
    id: Option<String>,
    /// 1 to 200 characters.
    name: String,
    /// The user id or UPN used in `/users/{mailbox}/…`; without it Graph paths use `/me`.
    mailbox: Option<String>,
    #[schema(value_type = TokenSource)]
    token_source: Value,
}

/// A credential as the API shows it: no secrets, only what identifies the token source.
/// (Fields in alphabetical order, the order they have always had on the wire.)
#[derive(Serialize, ToSchema)]
pub struct Credential {
    pub created_at: DateTime<Utc>,
    #[schema(format = Uuid)]
    pub id: String,
    pub last_error: Option<String>,
    pub mailbox: Option<String>,
    pub name: String,
    /// `active`, or `degraded` while its tokens fail.
    #[schema(example = "active")]
    pub status: String,
    pub token_source: ShownTokenSource,
    pub updated_at: DateTime<Utc>,
}

/// The public part of a token source.
#[derive(Serialize, ToSchema)]
pub struct ShownTokenSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `auth_service`, `client_credentials`, `refresh_token` or `static`.
    #[schema(example = "client_credentials")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
}

/// `{"credentials": [...]}`.
#[derive(Serialize, ToSchema)]
pub struct CredentialList {
    pub credentials: Vec<Credential>,
}

/// A credential as the API shows it.
pub fn view(row: &CredentialRow) -> Credential {
    let source: Value = serde_json::from_str(&row.token_source).unwrap_or(Value::Null);
    let public = |field: &str| {
        source
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Credential {
        created_at: to_time(row.created_at),
        id: row.id.clone(),
        last_error: row.last_error.clone(),
        mailbox: row.mailbox.clone(),
        name: row.name.clone(),
        status: row.status.clone(),
        token_source: ShownTokenSource {
            client_id: public("client_id"),
            kind: row.token_kind.clone(),
            tenant_id: public("tenant_id"),
        },
        updated_at: to_time(row.updated_at),
    }
}

/// Creates a credential and starts its actor.
#[utoipa::path(post, path = "/api/credentials", tag = "credentials",
    request_body = CreateCredential,
    responses(
        (status = 201, description = "Created (no secrets in the answer)", body = Credential),
        (status = 400, description = "A field is missing or invalid", body = ErrorBody),
        (status = 409, description = "A credential with this id exists", body = ErrorBody),
        (status = 413, description = "Over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateCredential>,
) -> ApiResult<(StatusCode, Json<Credential>)> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::bad_request("name must be 1 to 200 characters"));
    }
    let id = match body.id {
        Some(id) => uuid::Uuid::parse_str(&id)
            .map_err(|_| ApiError::bad_request("id must be a UUID"))?
            .to_string(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let mailbox = match body.mailbox.map(|m| m.trim().to_string()) {
        Some(m) if m.is_empty() => {
            return Err(ApiError::bad_request(
                "mailbox must not be empty when given",
            ))
        }
        other => other,
    };
    // serde's message names the field; it never echoes a value, so no secret leaks into it.
    let source: TokenSource = serde_json::from_value(body.token_source)
        .map_err(|e| ApiError::bad_request(format!("token_source: {e}")))?;
    source.validate().map_err(ApiError::bad_request)?;
    let new = NewCredential {
        id,
        name: name.to_string(),
        mailbox,
        source,
    };
    let row = credential::create(&state.deps, new)
        .await
        .map_err(map_err)?;
    Ok((StatusCode::CREATED, Json(view(&row))))
}

/// Every credential.
#[utoipa::path(get, path = "/api/credentials", tag = "credentials",
    responses((status = 200, description = "Every credential", body = CredentialList)))]
async fn list(State(state): State<AppState>) -> ApiResult<Json<CredentialList>> {
    let rows = credentials::list(&state.deps.store)
        .await
        .map_err(internal)?;
    Ok(Json(CredentialList {
        credentials: rows.iter().map(view).collect(),
    }))
}

/// One credential.
#[utoipa::path(get, path = "/api/credentials/{id}", tag = "credentials",
    params(("id" = String, Path, description = "The credential's id")),
    responses(
        (status = 200, description = "The credential", body = Credential),
        (status = 404, description = "No such credential", body = ErrorBody),
    ))]
async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Credential>> {
    let row = credentials::get(&state.deps.store, &id)
        .await
        .map_err(internal)?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(view(&row)))
}

/// Deletes the credential: its subscriptions at Graph (best effort), its rows, its actor.
#[utoipa::path(delete, path = "/api/credentials/{id}", tag = "credentials",
    params(("id" = String, Path, description = "The credential's id")),
    responses(
        (status = 204, description = "Deleted, its actor stopped"),
        (status = 404, description = "No such credential", body = ErrorBody),
    ))]
async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    credential::delete(&state.deps, &id)
        .await
        .map_err(map_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Maps a failure of the workflow: the caller's mistakes are 4xx, the rest is ours.
fn map_err(e: ManageError) -> ApiError {
    match e {
        ManageError::BadRequest(m) => ApiError::bad_request(m),
        ManageError::NotFound(m) => ApiError::NotFound(m),
        ManageError::Store(StoreError::Conflict(m)) => ApiError::Conflict(m),
        ManageError::Store(e) => internal(e),
        ManageError::Tree(e) => ApiError::Internal(e.into()),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no credential {id}"))
}

fn internal(e: StoreError) -> ApiError {
    ApiError::Internal(e.into())
}
