//! The deliveries API (SPEC §3.3): `GET /api/deliveries?status=&target_id=&event_id=&limit=`
//! lists deliveries newest first; `POST /api/deliveries/{id}/retry` sends a failed one again,
//! with its attempts counted from zero.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use relay365_actors::delivery;
use relay365_actors::store::deliveries::{self, DeliveryFilter, DeliveryRow};
use relay365_actors::store::now_ms;
use relay365_actors::store::status::DeliveryStatus;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::events::{time, DEFAULT_LIMIT, MAX_LIMIT};
use super::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};

/// The deliveries routes (behind the API key).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(retry))
}

/// A delivery as the API shows it. Fields in alphabetical order, the order they have always
/// had on the wire.
#[derive(Serialize, ToSchema)]
pub struct Delivery {
    pub attempts: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub delivered_at: Option<String>,
    #[schema(format = Uuid)]
    pub event_id: String,
    #[schema(format = Uuid)]
    pub id: String,
    /// The first 1 KB of the last failed answer, or why there was none.
    pub last_error: Option<String>,
    pub last_status_code: Option<i64>,
    /// When it is tried next (pending only).
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    pub status: DeliveryStatus,
    #[schema(format = Uuid)]
    pub target_id: String,
}

/// `{"deliveries": [...]}`, newest first.
#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

/// The filters of `GET /api/deliveries` (each may be empty: no filter).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by hand from the raw query, so that every bad value is a clear 400.
pub struct DeliveryQuery {
    #[param(schema_with = delivery_status_filter)]
    status: Option<String>,
    /// A target's id.
    target_id: Option<String>,
    /// An event's id.
    event_id: Option<String>,
    /// 1 to 500, default 50.
    #[param(schema_with = super::openapi::limit_filter)]
    limit: Option<String>,
}

fn delivery_status_filter() -> utoipa::openapi::schema::Object {
    super::openapi::word_filter(DeliveryStatus::ALL.iter().map(|s| s.as_str()))
}

/// A delivery as the API shows it.
pub fn view(d: &DeliveryRow) -> Delivery {
    Delivery {
        attempts: d.attempts,
        created_at: time(d.created_at),
        delivered_at: d.delivered_at.map(time),
        event_id: d.event_id.clone(),
        id: d.id.clone(),
        last_error: d.last_error.clone(),
        last_status_code: d.last_status_code,
        next_attempt_at: (d.status == DeliveryStatus::Pending).then(|| time(d.next_attempt_at)),
        status: d.status,
        target_id: d.target_id.clone(),
    }
}

/// A UUID filter, in the form ids are stored in (lower case, hyphenated).
fn uuid_param(name: &str, v: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(v)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::bad_request(format!("{name} must be a UUID")))
}

/// Deliveries, newest first.
#[utoipa::path(get, path = "/api/deliveries", tag = "deliveries", params(DeliveryQuery),
    responses(
        (status = 200, description = "Deliveries, newest first", body = DeliveryList),
        (status = 400, description = "A filter is invalid", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<DeliveryList>> {
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
    Ok(Json(DeliveryList {
        deliveries: rows.iter().map(view).collect(),
    }))
}

/// Sends a failed delivery again, its attempts counted from zero.
#[utoipa::path(post, path = "/api/deliveries/{id}/retry", tag = "deliveries",
    params(("id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 202, description = "Pending again", body = Delivery),
        (status = 404, description = "No such delivery", body = ErrorBody),
        (status = 409, description = "Not failed: only a failed delivery can be retried", body = ErrorBody),
    ))]
async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Delivery>)> {
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
    Ok((StatusCode::ACCEPTED, Json(view(&row))))
}
