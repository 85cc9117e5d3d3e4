//! Health routes: `/healthz`, `/readyz`, `/status`, `/metrics` (SPEC §3.2, §7).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;

/// Routes open to anyone (process managers, load balancers).
pub fn open_router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// Routes behind the API key.
pub fn protected_router() -> Router<AppState> {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
}

/// 200 while the process runs.
async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// 200 when the store answers and every core actor runs; 503 with the reasons otherwise.
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
        Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reasons": reasons})),
        )
            .into_response()
    }
}

/// The actor tree, rendered from the health registry, and the instances sharing the store,
/// as the last heartbeat saw them (never waits on an actor or the store).
async fn status(State(state): State<AppState>) -> impl IntoResponse {
    Json(relay365_actors::cluster::status(&state.deps))
}

/// Prometheus text.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
