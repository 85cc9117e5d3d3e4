//! The HTTP API: thin handlers that parse, call an actor or the store, and map errors.
//!
//! Three groups of routes, each with its own guard:
//! - public (Graph calls these; no auth in front): `/api/ms365/webhook`, `/api/ms365/lifecycle`;
//! - health: `/healthz`, `/readyz` open; `/status`, `/metrics` behind the API key;
//! - management (`/api/…`) behind the API key; `/api/debug/…` only when enabled.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use relay365_actors::Deps;
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::error::ApiError;

pub mod credentials;
pub mod debug;
pub mod events;
pub mod health;
pub mod json;
pub mod primitives;
pub mod subscriptions;
pub mod webhook;

/// What every handler can reach. One `Arc`: axum clones the state for every request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The contents of [`AppState`].
pub struct Shared {
    pub cfg: Config,
    pub deps: Deps,
    pub metrics: PrometheusHandle,
}

impl AppState {
    pub fn new(cfg: Config, deps: Deps, metrics: PrometheusHandle) -> AppState {
        AppState(Arc::new(Shared { cfg, deps, metrics }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The whole router.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .merge(health::protected_router())
        .merge(credentials::router())
        .merge(subscriptions::router())
        .merge(primitives::router())
        .merge(events::router())
        .merge(debug::router(state.cfg.debug_endpoints))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    Router::new()
        .merge(health::open_router())
        .merge(webhook::router())
        .merge(protected)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(middleware::from_fn(track_requests))
        .with_state(state)
}

/// Bearer `RELAY365_API_KEY`, compared in constant time. Without a configured key the API is
/// open (the service only allows that on a loopback address).
async fn require_api_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(key) = state.cfg.api_key.as_deref() else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(key.as_bytes())) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// Counts requests and their latency by route and status.
async fn track_requests(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().to_string();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("relay365_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("relay365_http_request_duration_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    res
}
