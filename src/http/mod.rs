//! The HTTP API: thin handlers that parse, call an actor or the store, and map errors.
//!
//! Three groups of routes, each with its own guard:
//! - public (Graph calls these; no auth in front): `/api/ms365/webhook`, `/api/ms365/lifecycle`;
//! - health: `/healthz`, `/readyz` open; `/status`, `/metrics` behind the API key;
//! - management (`/api/…`) behind the API key; `/api/debug/…` only when enabled.
//!
//! Every route is added through utoipa-axum's `routes!`, which puts the handler in the router
//! and its description in `/openapi.json` in one step ([`openapi`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::{Extension, Router};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::PrometheusHandle;
use relay365_actors::Deps;
use utoipa_axum::router::OpenApiRouter;

use crate::config::Config;
use crate::error::ApiError;

pub mod credentials;
pub mod debug;
pub mod deliveries;
pub mod edge;
pub mod events;
pub mod health;
pub mod json;
pub mod openapi;
pub mod primitives;
pub mod serve;
pub mod subscriptions;
pub mod targets;
pub mod webhook;

/// What every handler can reach. One `Arc`: axum clones the state for every request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The contents of [`AppState`].
pub struct Shared {
    pub cfg: Config,
    pub deps: Deps,
    pub metrics: PrometheusHandle,
    pub requests: RequestMetrics,
    /// The public routes' concurrency and time limits.
    pub public_limit: edge::PublicLimit,
    /// SHA-256 of `RELAY365_API_KEY`, when set.
    pub api_key_digest: Option<[u8; 32]>,
}

impl AppState {
    pub fn new(cfg: Config, deps: Deps, metrics: PrometheusHandle) -> AppState {
        let public_limit = edge::PublicLimit::new(
            cfg.public_max_requests,
            cfg.public_max_buffered_mib,
            std::time::Duration::from_secs(cfg.request_timeout_seconds),
        );
        let api_key_digest = cfg.api_key.as_deref().map(edge::key_digest);
        AppState(Arc::new(Shared {
            cfg,
            deps,
            metrics,
            requests: RequestMetrics::default(),
            public_limit,
            api_key_digest,
        }))
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
    let (router, api) = routes(&state).split_for_parts();
    router
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(Extension(openapi::Served::new(&api)))
        .layer(middleware::from_fn(edge::refuse_nul))
        .layer(middleware::from_fn(edge::json_errors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            track_requests,
        ))
        .with_state(state)
}

/// Every route with its description, in the three groups and their guards.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    let mut protected = OpenApiRouter::new()
        .merge(health::protected_router())
        .merge(credentials::router())
        .merge(subscriptions::router())
        .merge(primitives::router())
        .merge(events::router())
        .merge(targets::router())
        .merge(deliveries::router())
        .merge(debug::router(state.cfg.debug_endpoints));
    openapi::behind_api_key(protected.get_openapi_mut());
    let protected = protected.route_layer(middleware::from_fn_with_state(
        state.clone(),
        edge::check_api_key,
    ));
    let public = webhook::router().route_layer(middleware::from_fn_with_state(
        state.clone(),
        edge::limit_public,
    ));
    OpenApiRouter::with_openapi(openapi::base())
        .merge(health::open_router())
        .merge(openapi::router())
        .merge(public)
        .merge(protected)
}

/// Counts requests and their latency by route, method and status.
async fn track_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    // Any other method is one label value, so that made-up methods cannot grow the series.
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let res = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let (count, duration) = state.requests.handles(route, method, res.status().as_u16());
    count.increment(1);
    duration.record(start.elapsed().as_secs_f64());
    res
}

/// The metric handles of [`track_requests`], registered once per route, method and status:
/// a request then costs a map look-up and two atomic updates, not two registry look-ups with
/// labels allocated for it.
#[derive(Default)]
pub struct RequestMetrics {
    by_route: RwLock<HashMap<Box<str>, ByMethodAndStatus>>,
}

/// One route's handles: (method, status) → (request counter, latency histogram).
type ByMethodAndStatus = HashMap<(&'static str, u16), (Counter, Histogram)>;

impl RequestMetrics {
    fn handles(&self, route: &str, method: &'static str, status: u16) -> (Counter, Histogram) {
        if let Ok(map) = self.by_route.read() {
            if let Some(h) = map.get(route).and_then(|m| m.get(&(method, status))) {
                return h.clone();
            }
        }
        let handles = (
            metrics::counter!("relay365_http_requests_total", "method" => method, "route" => route.to_string(), "status" => status.to_string()),
            metrics::histogram!("relay365_http_request_duration_seconds", "route" => route.to_string()),
        );
        if let Ok(mut map) = self.by_route.write() {
            map.entry(route.into())
                .or_default()
                .insert((method, status), handles.clone());
        }
        handles
    }
}
