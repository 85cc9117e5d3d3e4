//! The public notification routes Graph calls (SPEC §3.1): `/api/ms365/webhook` and
//! `/api/ms365/lifecycle`, POST and GET.
//!
//! Graph allows 3 s per answer and throttles (then drops notifications for) a slow URL, so
//! these handlers stay thin: answer a validation at once, check the content type and size,
//! parse, hand the items to the receiver actor and wait for its group commit (at most
//! `commit_timeout`, else 503). Both routes take change and lifecycle items alike: an item's
//! `lifecycleEvent` says what it is, not the URL it came to.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use relay365_actors::receiver::{self, IngestError};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};

/// Largest notification body taken (SPEC §3.1); larger bodies answer 413.
pub const MAX_BODY: usize = 1024 * 1024;

/// Bodies up to this size are parsed on the async worker that read them (a real collection is
/// a few KB: tens of microseconds); larger ones on the blocking pool, so that a run of large
/// bodies cannot hold the workers that answer everyone else.
const PARSE_INLINE: usize = 64 * 1024;

/// What the body buffer reserves before the first bytes come: memory follows what a client
/// sends, never what its `Content-Length` announces.
const FIRST_RESERVE: usize = 16 * 1024;

/// The two public routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(webhook))
        .routes(routes!(lifecycle))
}

/// A notification collection as Graph POSTs it. (A description of the body: the receiver
/// reads it in one pass of its own, `relay365_actors::receiver::parse_collection`.)
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct NotificationCollection {
    /// Change items (`subscriptionId`, `clientState`, `changeType`, `resource`,
    /// `resourceData`, …) or lifecycle items (`lifecycleEvent`); at most 1,000.
    #[schema(value_type = Vec<Object>)]
    value: Vec<Value>,
}

/// Change notifications; also Graph's validation call.
#[utoipa::path(method(post, get), path = "/api/ms365/webhook", tag = "graph",
    params(("validationToken" = Option<String>, Query,
        description = "Graph's validation call: answered with the token, before anything else")),
    request_body(content = Option<NotificationCollection>,
        description = "Required, but for a validation call (which may have any body)"),
    responses(
        (status = 200, description = "Validation: the decoded token", body = String,
         content_type = "text/plain; charset=utf-8",
         headers(("X-Content-Type-Options" = String, description = "nosniff"))),
        (status = 202, description = "Every authentic item is stored (items that fail the clientState check are dropped, silently)"),
        (status = 400, description = "Not a notification collection (or a GET without validationToken)", body = ErrorBody),
        (status = 408, description = "The request took too long", body = ErrorBody),
        (status = 413, description = "Over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 503, description = "Not stored within 2 s, or too much at once: retry (nothing was written)", body = ErrorBody),
    ))]
async fn webhook(state: State<AppState>, req: Request) -> Response {
    notify(state, req).await
}

/// Lifecycle notifications; also Graph's validation call. Takes change items too: an item's
/// `lifecycleEvent` says what it is, not the URL it came to.
#[utoipa::path(method(post, get), path = "/api/ms365/lifecycle", tag = "graph",
    params(("validationToken" = Option<String>, Query,
        description = "Graph's validation call: answered with the token, before anything else")),
    request_body(content = Option<NotificationCollection>,
        description = "Required, but for a validation call (which may have any body)"),
    responses(
        (status = 200, description = "Validation: the decoded token", body = String,
         content_type = "text/plain; charset=utf-8",
         headers(("X-Content-Type-Options" = String, description = "nosniff"))),
        (status = 202, description = "Every authentic item is stored"),
        (status = 400, description = "Not a notification collection (or a GET without validationToken)", body = ErrorBody),
        (status = 408, description = "The request took too long", body = ErrorBody),
        (status = 413, description = "Over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 503, description = "Not stored within 2 s, or too much at once: retry (nothing was written)", body = ErrorBody),
    ))]
async fn lifecycle(state: State<AppState>, req: Request) -> Response {
    notify(state, req).await
}

/// The `validationToken` query parameter, decoded as Graph encodes it (form encoding:
/// percent-escapes, `+` for a space).
pub fn validation_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "validationToken")
        .map(|(_, v)| v.into_owned())
}

/// `application/json`, with or without parameters. A missing content type is taken as JSON
/// too (Graph always sends `application/json`; being strict there would only turn away
/// hand-made test calls, and the body must still parse as a notification collection).
fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(ct) = ct.to_str() else {
        return false;
    };
    ct.split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads at most [`MAX_BODY`] bytes; more is a 413, without reading the rest. The buffer is
/// counted against the public routes' memory budget as it grows with what arrives (`share`); a
/// body that does not fit is a 503 at once.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    share: &mut super::edge::BufferShare,
) -> ApiResult<Bytes> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut buf = Vec::with_capacity(
        declared
            .map_or(FIRST_RESERVE, |n| n as usize)
            .min(FIRST_RESERVE),
    );
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::bad_request("the request body could not be read"))?;
        if buf.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::PayloadTooLarge);
        }
        // The buffer is grown here rather than by `extend`, so that what the budget counts is
        // what is allocated: the capacity, the next power of two (as a `Vec` doubles), never
        // past the largest body.
        let needed = buf.len() + chunk.len();
        let cap = if needed > buf.capacity() {
            needed.next_power_of_two().min(MAX_BODY)
        } else {
            buf.capacity()
        };
        if !share.grow_to(cap) {
            metrics::counter!("relay365_http_shed_total").increment(1);
            return Err(ApiError::Unavailable(
                "too many notification bodies in progress; retry later".into(),
            ));
        }
        buf.reserve_exact(cap - buf.len());
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Validation (a `validationToken` query parameter: 200 with the token, before the body is
/// read) or a notification collection (202 once every authentic item is durable).
async fn notify(State(state): State<AppState>, req: Request) -> Response {
    if let Some(token) = validation_token(req.uri().query()) {
        return (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            token,
        )
            .into_response();
    }
    match notifications(&state, req).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn notifications(state: &AppState, req: Request) -> ApiResult<()> {
    if req.method() != axum::http::Method::POST {
        return Err(ApiError::bad_request(
            "expected a validationToken query parameter or a POSTed notification collection",
        ));
    }
    let (parts, body) = req.into_parts();
    if !is_json(&parts.headers) {
        return Err(ApiError::UnsupportedMediaType(
            "notifications must be application/json".into(),
        ));
    }
    let mut share = state.public_limit.buffer();
    let bytes = read_body(&parts.headers, body, &mut share).await?;
    // Graph never sends one; stored or looked up, it would fail in PostgreSQL.
    if super::json::has_nul(&bytes) {
        return Err(ApiError::BadRequest {
            code: "bad_notification",
            message: super::json::NUL_REFUSED.into(),
        });
    }
    let parsed = if bytes.len() <= PARSE_INLINE {
        receiver::parse_collection(&bytes)
    } else {
        tokio::task::spawn_blocking(move || receiver::parse_collection(&bytes))
            .await
            .map_err(|_| ApiError::Unavailable("the notification could not be parsed".into()))?
    };
    // The body is parsed and gone: its share of the budget is free for others.
    drop(share);
    let items = parsed.map_err(|e| ApiError::BadRequest {
        code: "bad_notification",
        message: e.0,
    })?;
    match receiver::ingest(&state.deps, items).await {
        Ok(_) => Ok(()),
        Err(e @ (IngestError::Timeout | IngestError::Busy)) => {
            tracing::warn!(reason = %e, "notifications refused with 503");
            Err(ApiError::Unavailable(e.to_string()))
        }
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn decodes_tokens_as_graph_encodes_them() {
        let t = |q: &str| validation_token(Some(q));
        assert_eq!(t("validationToken=a%2Bb").as_deref(), Some("a+b"));
        assert_eq!(t("validationToken=a+b").as_deref(), Some("a b"));
        assert_eq!(
            t("x=1&validationToken=%25%3C%26%C3%A9").as_deref(),
            Some("%<&é")
        );
        assert_eq!(t("validationToken=").as_deref(), Some(""));
        assert_eq!(t("other=1"), None);
        assert_eq!(validation_token(None), None);
    }
}
