//! Health routes: `/healthz`, `/readyz`, `/status`, `/metrics` (SPEC §3.2, §7).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use relay365_actors::health::StatusReport;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

/// Routes open to anyone (process managers, load balancers).
pub fn open_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// Routes behind the API key.
pub fn protected_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(metrics))
}

/// `/healthz`: the process runs.
#[derive(Serialize, ToSchema)]
pub struct Alive {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// `/readyz`: whether the service can take work, and if not, why.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// What is not ready (absent when ready).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// `ready` or `not_ready`.
    #[schema(example = "ready")]
    pub status: &'static str,
}

/// 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process runs", body = Alive)))]
async fn healthz() -> Json<Alive> {
    Json(Alive { status: "ok" })
}

/// 200 when the store answers and every core actor runs; 503 with the reasons otherwise.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "The store answers and every core actor runs", body = Readiness),
    (status = 503, description = "Not ready, with the reasons", body = Readiness),
))]
async fn readyz(State(state): State<AppState>) -> Response {
    let mut reasons = Vec::new();
    let ping =
        tokio::time::timeout(std::time::Duration::from_secs(2), state.deps.store.ping()).await;
    match ping {
        Ok(Ok(())) => {}
        // The store's own text may name hosts, users or files: it goes to the log only.
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the store failed");
            reasons.push("store: not answering (see the log)".to_string());
        }
        Err(_) => reasons.push("store: no answer within 2s".to_string()),
    }
    for name in state.deps.health.core_down() {
        reasons.push(format!("{name} is not running"));
    }
    if reasons.is_empty() {
        Json(Readiness {
            reasons,
            status: "ready",
        })
        .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                reasons,
                status: "not_ready",
            }),
        )
            .into_response()
    }
}

/// The actor tree, rendered from the health registry, and the instances sharing the store,
/// as the last heartbeat saw them (never waits on an actor or the store).
#[utoipa::path(get, path = "/status", tag = "health",
    responses((status = 200, description = "The actor tree and the instances (SPEC §7)", body = StatusReport)))]
async fn status(State(state): State<AppState>) -> Json<StatusReport> {
    Json(relay365_actors::cluster::status(&state.deps))
}

/// Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Prometheus text format 0.0.4", body = String,
     content_type = "text/plain; version=0.0.4; charset=utf-8"),
))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
