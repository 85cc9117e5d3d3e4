//! Credentials API (SPEC §3.3): one credential per mailbox connection. Secrets go in once and
//! never come out.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use relay365_actors::credential::{self, ManageError, NewCredential};
use relay365_actors::store::credentials::{self, CredentialRow};
use relay365_actors::store::{to_time, StoreError};
use relay365_actors::token::TokenSource;
use serde::Deserialize;
use serde_json::{json, Value};

use super::json::ApiJson;
use super::AppState;
use crate::error::{ApiError, ApiResult};

/// The credential routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/credentials", get(list).post(create))
        .route("/api/credentials/{id}", get(show).delete(remove))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    id: Option<String>,
    name: String,
    mailbox: Option<String>,
    token_source: Value,
}

/// A credential as the API shows it: no secrets, only what identifies the token source.
pub fn view(row: &CredentialRow) -> Value {
    let source: Value = serde_json::from_str(&row.token_source).unwrap_or(Value::Null);
    let mut shown = serde_json::Map::new();
    shown.insert("kind".into(), json!(row.token_kind));
    for public in ["tenant_id", "client_id"] {
        if let Some(v) = source.get(public) {
            shown.insert(public.into(), v.clone());
        }
    }
    json!({
        "id": row.id,
        "name": row.name,
        "mailbox": row.mailbox,
        "token_source": shown,
        "status": row.status,
        "last_error": row.last_error,
        "created_at": to_time(row.created_at),
        "updated_at": to_time(row.updated_at),
    })
}

async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
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

async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let rows = credentials::list(&state.deps.store)
        .await
        .map_err(internal)?;
    Ok(Json(
        json!({"credentials": rows.iter().map(view).collect::<Vec<_>>()}),
    ))
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let row = credentials::get(&state.deps.store, &id)
        .await
        .map_err(internal)?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(view(&row)))
}

/// Deletes the credential: its subscriptions at Graph (best effort), its rows, its actor.
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
