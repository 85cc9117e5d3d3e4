//! The events API (SPEC §3.3): what the receiver stored and what became of it.
//!
//! `GET /api/events?status=&credential_id=&limit=&before=` lists events newest first; `before`
//! is an event id (the last one of the previous page: a stable cursor) or an RFC 3339 time.
//! `GET /api/events/{id}` shows one, with its attempts, last error and deliveries;
//! `POST /api/events/{id}/replay` makes it pending again, so it is processed and delivered
//! once more (the same `webhook-id`: the event id). The raw notification is stored with
//! `clientState` already masked, so it is shown as stored.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::SecondsFormat;
use relay365_actors::processor;
use relay365_actors::store::deliveries::{self, DeliveryFilter};
use relay365_actors::store::events::{self, EventFilter, EventRow};
use relay365_actors::store::status::EventStatus;
use relay365_actors::store::{now_ms, to_time};
use serde_json::{json, Value};

use super::AppState;
use crate::error::{ApiError, ApiResult};

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 500;

/// The events routes (behind the API key).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/events", get(list))
        .route("/api/events/{id}", get(show))
        .route("/api/events/{id}/replay", post(replay))
}

pub(super) fn time(ms: i64) -> String {
    to_time(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A stored JSON text as JSON (a string if it does not parse, which it always should).
fn json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// An event as the API shows it.
pub fn event_json(e: &EventRow) -> Value {
    json!({
        "id": e.id,
        "kind": e.kind,
        "subscription_id": e.subscription_id,
        "credential_id": e.credential_id,
        "change_type": e.change_type,
        "resource_id": e.resource_id,
        "status": e.status,
        "attempts": e.attempts,
        "next_attempt_at": time(e.next_attempt_at),
        "last_error": e.last_error,
        "received_at": time(e.received_at),
        "processed_at": e.processed_at.map(time),
        "raw_notification": json_text(&e.raw),
        "payload": e.payload.as_deref().map(json_text),
    })
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

async fn list(State(state): State<AppState>, RawQuery(query): RawQuery) -> ApiResult<Json<Value>> {
    let mut filter = EventFilter {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    let mut before = None;
    for (k, v) in url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "status" if v.is_empty() => {}
            "status" => {
                filter.status = Some(v.parse::<EventStatus>().map_err(|_| {
                    let all: Vec<&str> = EventStatus::ALL.iter().map(|s| s.as_str()).collect();
                    bad(format!("status must be one of {}", all.join(", ")))
                })?);
            }
            "credential_id" if v.is_empty() => {}
            "credential_id" => {
                uuid::Uuid::parse_str(&v).map_err(|_| bad("credential_id must be a UUID"))?;
                filter.credential_id = Some(v.into_owned());
            }
            "limit" if v.is_empty() => {}
            "limit" => {
                filter.limit = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad(format!("limit must be a number from 1 to {MAX_LIMIT}")))?;
            }
            "before" if v.is_empty() => {}
            "before" => before = Some(v.into_owned()),
            _ => {}
        }
    }
    if let Some(b) = before {
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&b) {
            filter.before_id = Some(events::first_event_id_at(t.timestamp_millis()));
        } else if uuid::Uuid::parse_str(&b).is_ok() {
            let cursor = events::get(&state.deps.store, &b)
                .await
                .map_err(|e| ApiError::Internal(e.into()))?
                .ok_or_else(|| bad("before names no stored event"))?;
            filter.before_id = Some(cursor.id);
        } else {
            return Err(bad("before must be an event id or an RFC 3339 time"));
        }
    }
    let rows = events::list(&state.deps.store, &filter)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(
        json!({"events": rows.iter().map(event_json).collect::<Vec<_>>()}),
    ))
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let event = events::get(&state.deps.store, &id)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .ok_or_else(|| ApiError::NotFound(format!("no event {id}")))?;
    let list = deliveries::list(
        &state.deps.store,
        &DeliveryFilter {
            event_id: Some(event.id.clone()),
            limit: MAX_LIMIT,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    let mut body = event_json(&event);
    body["deliveries"] = Value::Array(list.iter().map(super::deliveries::delivery_json).collect());
    Ok(Json(body))
}

async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let store = &state.deps.store;
    let event = events::get(store, &id)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .ok_or_else(|| ApiError::NotFound(format!("no event {id}")))?;
    if event.kind == "lifecycle" {
        return Err(bad(
            "lifecycle events are not delivered, so they cannot be replayed",
        ));
    }
    if !events::replay(store, &id, now_ms())
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
    {
        return Err(ApiError::Conflict(format!(
            "event {id} is being processed right now; replay it when it is done"
        )));
    }
    processor::route(
        &state.deps,
        [(event.id.clone(), event.subscription_id.clone())],
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": event.id, "status": EventStatus::Pending})),
    ))
}
