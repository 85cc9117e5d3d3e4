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
use axum::Json;
use chrono::SecondsFormat;
use relay365_actors::processor;
use relay365_actors::store::deliveries::{self, DeliveryFilter};
use relay365_actors::store::events::{self, EventFilter, EventRow};
use relay365_actors::store::status::EventStatus;
use relay365_actors::store::{now_ms, to_time};
use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::deliveries::Delivery;
use super::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 500;

/// The events routes (behind the API key).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(replay))
}

pub(super) fn time(ms: i64) -> String {
    to_time(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A stored JSON text as JSON (a string if it does not parse, which it always should).
fn json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// An event as the API shows it. Fields in alphabetical order, the order they have always had
/// on the wire.
#[derive(Serialize, ToSchema)]
pub struct Event {
    pub attempts: i64,
    /// The notification's change type, or the lifecycle event's name.
    pub change_type: String,
    pub credential_id: Option<String>,
    /// Its deliveries: only in `GET /api/events/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<Vec<Delivery>>,
    #[schema(format = Uuid)]
    pub id: String,
    /// `change` or `lifecycle`.
    pub kind: String,
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub next_attempt_at: String,
    /// What was (or will be) delivered (SPEC §4); null until processed.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    #[schema(format = DateTime)]
    pub processed_at: Option<String>,
    /// The item Graph sent, `clientState` shown as `"***"`.
    #[schema(value_type = Object)]
    pub raw_notification: Value,
    #[schema(format = DateTime)]
    pub received_at: String,
    pub resource_id: Option<String>,
    pub status: EventStatus,
    pub subscription_id: Option<String>,
}

/// `{"events": [...]}`, newest first.
#[derive(Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<Event>,
}

/// The answer to a replay.
#[derive(Serialize, ToSchema)]
pub struct Replayed {
    #[schema(format = Uuid)]
    pub id: String,
    /// `pending`: it is processed and delivered again.
    pub status: EventStatus,
}

/// The filters of `GET /api/events` (each may be empty: no filter).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by hand from the raw query, so that every bad value is a clear 400.
pub struct EventQuery {
    #[param(schema_with = event_status_filter)]
    status: Option<String>,
    /// A credential's id.
    credential_id: Option<String>,
    /// 1 to 500, default 50.
    #[param(schema_with = super::openapi::limit_filter)]
    limit: Option<String>,
    /// An event id (the last one of the previous page) or an RFC 3339 time.
    before: Option<String>,
}

fn event_status_filter() -> utoipa::openapi::schema::Object {
    super::openapi::word_filter(EventStatus::ALL.iter().map(|s| s.as_str()))
}

/// An event as the API shows it (without its deliveries).
pub fn event_view(e: &EventRow) -> Event {
    Event {
        attempts: e.attempts,
        change_type: e.change_type.clone(),
        credential_id: e.credential_id.clone(),
        deliveries: None,
        id: e.id.clone(),
        kind: e.kind.clone(),
        last_error: e.last_error.clone(),
        next_attempt_at: time(e.next_attempt_at),
        payload: e.payload.as_deref().map(json_text),
        processed_at: e.processed_at.map(time),
        raw_notification: json_text(&e.raw),
        received_at: time(e.received_at),
        resource_id: e.resource_id.clone(),
        status: e.status,
        subscription_id: e.subscription_id.clone(),
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// Events, newest first.
#[utoipa::path(get, path = "/api/events", tag = "events", params(EventQuery),
    responses(
        (status = 200, description = "Events, newest first", body = EventList),
        (status = 400, description = "A filter is invalid", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<EventList>> {
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
                let id =
                    uuid::Uuid::parse_str(&v).map_err(|_| bad("credential_id must be a UUID"))?;
                filter.credential_id = Some(id.to_string());
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
        } else if let Ok(id) = uuid::Uuid::parse_str(&b) {
            // Ids are in time order: the cursor is a position, which holds even once retention
            // has deleted the event it names.
            filter.before_id = Some(id.to_string());
        } else {
            return Err(bad("before must be an event id or an RFC 3339 time"));
        }
    }
    let rows = events::list(&state.deps.store, &filter)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(EventList {
        events: rows.iter().map(event_view).collect(),
    }))
}

/// One event, with its raw notification, payload, attempts, last error and deliveries.
#[utoipa::path(get, path = "/api/events/{id}", tag = "events",
    params(("id" = String, Path, description = "The event's id")),
    responses(
        (status = 200, description = "The event and its deliveries", body = Event),
        (status = 404, description = "No such event", body = ErrorBody),
    ))]
async fn show(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Event>> {
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
    let mut body = event_view(&event);
    body.deliveries = Some(list.iter().map(super::deliveries::view).collect());
    Ok(Json(body))
}

/// Processes and delivers the event again (the same `webhook-id`).
#[utoipa::path(post, path = "/api/events/{id}/replay", tag = "events",
    params(("id" = String, Path, description = "The event's id")),
    responses(
        (status = 202, description = "Pending again", body = Replayed),
        (status = 400, description = "A lifecycle event (never delivered)", body = ErrorBody),
        (status = 404, description = "No such event", body = ErrorBody),
        (status = 409, description = "Being processed right now", body = ErrorBody),
    ))]
async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Replayed>)> {
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
        Json(Replayed {
            id: event.id,
            status: EventStatus::Pending,
        }),
    ))
}
