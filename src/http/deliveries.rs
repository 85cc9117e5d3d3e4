//! The deliveries API (SPEC §3.3): `GET /api/deliveries?status=&target_id=&event_id=&limit=`
//! lists deliveries newest first; `POST /api/deliveries/{id}/retry` sends a failed one again,
//! with its attempts counted from zero.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use relay365_actors::delivery;
use relay365_actors::store::deliveries::{self, DeliveryFilter, DeliveryRow};
use relay365_actors::store::now_ms;
use relay365_actors::store::status::DeliveryStatus;
use serde_json::{json, Value};

use super::events::{time, DEFAULT_LIMIT, MAX_LIMIT};
use super::AppState;
use crate::error::{ApiError, ApiResult};

/// The deliveries routes (behind the API key).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/deliveries", get(list))
        .route("/api/deliveries/{id}/retry", post(retry))
}

/// A delivery as the API shows it.
pub fn delivery_json(d: &DeliveryRow) -> Value {
    json!({
        "id": d.id,
        "event_id": d.event_id,
        "target_id": d.target_id,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": (d.status == DeliveryStatus::Pending).then(|| time(d.next_attempt_at)),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": time(d.created_at),
        "delivered_at": d.delivered_at.map(time),
    })
}

fn uuid_param(name: &str, v: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(v)
        .map(|_| v.to_string())
        .map_err(|_| ApiError::bad_request(format!("{name} must be a UUID")))
}

async fn list(State(state): State<AppState>, RawQuery(query): RawQuery) -> ApiResult<Json<Value>> {
    let mut filter = DeliveryFilter {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (k, v) in url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        if v.is_empty() {
            continue;
        }
        match k.as_ref() {
            "status" => {
                filter.status = Some(v.parse::<DeliveryStatus>().map_err(|_| {
                    ApiError::bad_request("status must be one of pending, delivered, failed")
                })?)
            }
            "target_id" => filter.target_id = Some(uuid_param("target_id", &v)?),
            "event_id" => filter.event_id = Some(uuid_param("event_id", &v)?),
            "limit" => {
                filter.limit = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "limit must be a number from 1 to {MAX_LIMIT}"
                        ))
                    })?
            }
            _ => {}
        }
    }
    let rows = deliveries::list(&state.deps.store, &filter)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(
        json!({"deliveries": rows.iter().map(delivery_json).collect::<Vec<_>>()}),
    ))
}

async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let store = &state.deps.store;
    let target = deliveries::retry(store, &id, now_ms())
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let Some(target) = target else {
        return match deliveries::get(store, &id)
            .await
            .map_err(|e| ApiError::Internal(e.into()))?
        {
            None => Err(ApiError::NotFound(format!("no delivery {id}"))),
            Some(d) => Err(ApiError::Conflict(format!(
                "delivery {id} is {}; only a failed delivery can be retried",
                d.status
            ))),
        };
    };
    delivery::route(&state.deps, [(id.clone(), target)]);
    let row = deliveries::get(store, &id)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .ok_or_else(|| ApiError::NotFound(format!("no delivery {id}")))?;
    Ok((StatusCode::ACCEPTED, Json(delivery_json(&row))))
}
