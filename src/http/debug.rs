//! Debug routes (`RELAY365_DEBUG_ENDPOINTS=true` only): fault injection, so that supervision
//! can be watched and tested.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use relay365_actors::tree::{self, TreeError};

use super::AppState;
use crate::error::{ApiError, ApiResult};

/// The debug routes, or none when they are disabled (then they answer 404 like any unknown
/// route).
pub fn router(enabled: bool) -> Router<AppState> {
    if !enabled {
        return Router::new();
    }
    Router::new()
        .route("/api/debug/actors/{name}/fail", post(fail_actor))
        .route(
            "/api/debug/receiver/panic-next-commit",
            post(panic_next_commit),
        )
}

/// Arms a panic in the receiver's next commit task: the receiver must fail and be restarted
/// (a panic in a task is its actor's failure), and the commit's requests answer 503.
async fn panic_next_commit(State(state): State<AppState>) -> StatusCode {
    state
        .deps
        .faults
        .panic_next_commit
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!("a panic in the next commit task armed through the debug endpoint");
    StatusCode::ACCEPTED
}

/// Makes the named actor fail as if it had crashed; its supervisor takes it from there.
async fn fail_actor(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    match tree::fail_actor(&state.deps, &name).await {
        Ok(()) => {
            tracing::warn!(actor = %name, "failure injected through the debug endpoint");
            Ok(StatusCode::ACCEPTED)
        }
        Err(TreeError::NoSuchActor(_)) => Err(ApiError::NotFound(format!("no actor named {name}"))),
        Err(TreeError::NotRunning(_)) => Err(ApiError::Conflict(format!("{name} is not running"))),
        Err(TreeError::Root) => Err(ApiError::bad_request(
            "the root cannot be failed on purpose",
        )),
        Err(e) => Err(ApiError::Internal(e.into())),
    }
}
