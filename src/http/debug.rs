//! Debug routes (`RELAY365_DEBUG_ENDPOINTS=true` only): fault injection, so that supervision
//! can be watched and tested.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use relay365_actors::tree::{self, TreeError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};

/// The debug routes, or none when they are disabled (then they answer 404 like any unknown
/// route, and `/openapi.json` does not list them).
pub fn router(enabled: bool) -> OpenApiRouter<AppState> {
    if !enabled {
        return OpenApiRouter::new();
    }
    OpenApiRouter::new()
        .routes(routes!(fail_actor))
        .routes(routes!(panic_next_commit))
}

/// Arms a panic in the receiver's next commit task: the receiver must fail and be restarted
/// (a panic in a task is its actor's failure), and the commit's requests answer 503.
#[utoipa::path(post, path = "/api/debug/receiver/panic-next-commit", tag = "debug",
    responses((status = 202, description = "Armed")))]
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
#[utoipa::path(post, path = "/api/debug/actors/{name}/fail", tag = "debug",
    params(("name" = String, Path, description = "The actor's name as in /status")),
    responses(
        (status = 202, description = "Failed; its supervisor restarts it"),
        (status = 400, description = "The root cannot be failed on purpose", body = ErrorBody),
        (status = 404, description = "No actor of that name", body = ErrorBody),
        (status = 409, description = "It is not running", body = ErrorBody),
    ))]
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
