//! Graph's errors, typed.
//!
//! Graph answers errors as `{"error":{"code","message","innerError"}}`. Callers decide what to
//! do from the HTTP status and `error.code`, never from the message text, which Microsoft may
//! reword at any time; the message is kept only so it can be shown to a person.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::Deserialize;

/// What went wrong with one Graph request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GraphError {
    /// 404: the subscription, message or mailbox does not exist (any more).
    #[error("graph: not found ({code}): {message}")]
    NotFound { code: String, message: String },
    /// 409: a subscription for the same resource and change types already exists. The
    /// message names the existing id when Graph fills it in (see
    /// [`GraphError::conflicting_subscription_id`]).
    #[error("graph: conflict: {message}")]
    Conflict { message: String },
    /// 429, or 503 with `Retry-After`: wait `retry_after` (or back off when absent), then retry.
    #[error("graph: throttled ({code}), retry after {retry_after:?}")]
    Throttled {
        code: String,
        retry_after: Option<Duration>,
    },
    /// 401: the access token is missing, expired or revoked; refresh it once and retry once.
    #[error("graph: unauthorized ({code}): {message}")]
    Unauthorized { code: String, message: String },
    /// 5xx without `Retry-After`, a timeout, or a connection error: retry with backoff.
    #[error("graph: transient error: {message}")]
    Transient {
        status: Option<u16>,
        message: String,
    },
    /// Any other error answer (400, 403, 410, …).
    #[error("graph: HTTP {status} ({code}): {message}")]
    Other {
        status: u16,
        code: String,
        message: String,
    },
    /// A success answer that could not be read, or a link that does not point at Graph.
    #[error("graph: invalid response: {0}")]
    InvalidResponse(String),
    /// Not sent: another instance sharing the database holds this mailbox now (see
    /// [`crate::graph::Gate`]). The work belongs to that instance; nothing failed.
    #[error("not sent: another instance holds this mailbox now")]
    NotHeld,
}

impl GraphError {
    /// True when waiting and sending the same request again may succeed (429, 503, 5xx,
    /// timeouts, connection errors). A 401 is not retryable here: it needs a new token first.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Transient { .. })
    }

    /// The HTTP status, when Graph answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::NotFound { .. } => Some(404),
            Self::Conflict { .. } => Some(409),
            Self::Throttled { .. } => None,
            Self::Unauthorized { .. } => Some(401),
            Self::Transient { status, .. } => *status,
            Self::Other { status, .. } => Some(*status),
            Self::InvalidResponse(_) | Self::NotHeld => None,
        }
    }

    /// Graph's `error.code`, when there is one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::NotFound { code, .. }
            | Self::Throttled { code, .. }
            | Self::Unauthorized { code, .. }
            | Self::Other { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True when a delta link can no longer be used and the folder needs a full resync:
    /// 410 Gone, or the codes `syncStateNotFound` / `resyncRequired` (graph-contract §8).
    pub fn needs_full_resync(&self) -> bool {
        match self {
            Self::Other { status: 410, .. } => true,
            Self::Other { code, .. } | Self::NotFound { code, .. } => {
                code.eq_ignore_ascii_case("syncStateNotFound")
                    || code.eq_ignore_ascii_case("resyncRequired")
            }
            _ => false,
        }
    }

    /// Best effort: the id in a 409's `Subscription Id <id> already exists …` message. Graph
    /// sometimes leaves it empty (`Subscription Id <> …`), so callers must be ready to find the
    /// existing subscription by listing instead.
    pub fn conflicting_subscription_id(&self) -> Option<&str> {
        let Self::Conflict { message } = self else {
            return None;
        };
        let rest = message.split_once("Subscription Id")?.1.trim_start();
        let rest = rest.strip_prefix('<').unwrap_or(rest);
        let id: &str = rest
            .split(|c: char| c.is_whitespace() || c == '>')
            .next()
            .unwrap_or_default();
        let looks_like_id = !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        looks_like_id.then_some(id)
    }

    /// Builds the error for a non-success answer from its status, headers and body.
    pub fn from_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Self {
        let (code, message) = match serde_json::from_slice::<ErrorEnvelope>(body) {
            Ok(env) => (env.error.code, env.error.message),
            Err(_) => (
                String::new(),
                String::from_utf8_lossy(body).chars().take(300).collect(),
            ),
        };
        let retry_after = parse_retry_after(headers);
        match status.as_u16() {
            401 => Self::Unauthorized { code, message },
            404 => Self::NotFound { code, message },
            409 => Self::Conflict { message },
            429 => Self::Throttled { code, retry_after },
            503 if retry_after.is_some() => Self::Throttled { code, retry_after },
            s @ 500..=599 => Self::Transient {
                status: Some(s),
                message: if code.is_empty() {
                    message
                } else {
                    format!("{code}: {message}")
                },
            },
            s => Self::Other {
                status: s,
                code,
                message,
            },
        }
    }

    /// Maps a transport error (timeout, refused connection, broken body) to a typed error.
    pub(crate) fn from_reqwest(err: reqwest::Error) -> Self {
        if err.is_decode() {
            return Self::InvalidResponse(err.to_string());
        }
        // Timeouts, connect errors and bodies cut short are all worth another try.
        Self::Transient {
            status: None,
            message: err.without_url().to_string(),
        }
    }
}

/// Graph's error envelope. `innerError` is spelled two ways in the docs, so both are taken
/// (and neither is needed for a decision).
#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default, rename = "innerError", alias = "innererror")]
    #[allow(dead_code)]
    inner_error: Option<serde_json::Value>,
}

/// Reads `Retry-After`: seconds, possibly fractional (`2.128`), or an HTTP date. Anything
/// unreadable or negative counts as absent, so the caller falls back to its own backoff.
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = raw.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    const ERROR_429: &str = r#"{"error":{"code":"TooManyRequests","innerError":{"code":"429","date":"2020-08-18T12:51:51","message":"Please retry after","request-id":"94fb3b52-452a-4535-a601-69e0a90e3aa2","status":"429"},"message":"Please retry again later."}}"#;
    const ERROR_GENERIC: &str = r#"{"error":{"code":"invalidRange","message":"Uploaded fragment overlaps with existing data.","innerError":{"request-id":"request-id","date":"date-time"}}}"#;

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn fixture_429_with_fractional_retry_after_is_throttled() {
        let err = GraphError::from_response(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(Some("2.128")),
            ERROR_429.as_bytes(),
        );
        match err {
            GraphError::Throttled { code, retry_after } => {
                assert_eq!(code, "TooManyRequests");
                assert_eq!(retry_after, Some(Duration::from_millis(2128)));
            }
            other => panic!("expected Throttled, got {other:?}"),
        }
    }

    #[test]
    fn fixture_generic_error_keeps_code_and_message() {
        let err = GraphError::from_response(
            StatusCode::BAD_REQUEST,
            &headers(None),
            ERROR_GENERIC.as_bytes(),
        );
        assert_eq!(err.code(), Some("invalidRange"));
        assert_eq!(err.status(), Some(400));
        assert!(err.to_string().contains("Uploaded fragment overlaps"));
        assert!(!err.is_retryable());
    }

    #[test]
    fn lower_case_innererror_is_accepted() {
        let body =
            r#"{"error":{"code":"itemNotFound","message":"gone","innererror":{"date":"x"}}}"#;
        let err = GraphError::from_response(StatusCode::NOT_FOUND, &headers(None), body.as_bytes());
        assert!(matches!(err, GraphError::NotFound { ref code, .. } if code == "itemNotFound"));
    }

    #[test]
    fn status_mapping() {
        let h = headers(None);
        assert!(matches!(
            GraphError::from_response(StatusCode::SERVICE_UNAVAILABLE, &h, b""),
            GraphError::Transient {
                status: Some(503),
                ..
            }
        ));
        assert!(matches!(
            GraphError::from_response(StatusCode::SERVICE_UNAVAILABLE, &headers(Some("3")), b""),
            GraphError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            GraphError::from_response(StatusCode::TOO_MANY_REQUESTS, &h, b"{}"),
            GraphError::Throttled {
                retry_after: None,
                ..
            }
        ));
        assert!(matches!(
            GraphError::from_response(StatusCode::GATEWAY_TIMEOUT, &h, b"x"),
            GraphError::Transient { .. }
        ));
        assert!(matches!(
            GraphError::from_response(StatusCode::UNAUTHORIZED, &h, b"{}"),
            GraphError::Unauthorized { .. }
        ));
        let gone = GraphError::from_response(StatusCode::GONE, &h, b"{}");
        assert!(gone.needs_full_resync());
        assert!(!headers(Some("-1")).is_empty());
        assert_eq!(parse_retry_after(&headers(Some("-1"))), None);
        assert_eq!(parse_retry_after(&headers(Some("soon"))), None);
    }

    #[test]
    fn conflict_id_is_found_when_present() {
        let with = GraphError::Conflict {
            message: "Subscription Id 7f105c7d-2dc5-4530-97cd-4e7ae6534c07 already exists for the requested combination".into(),
        };
        assert_eq!(
            with.conflicting_subscription_id(),
            Some("7f105c7d-2dc5-4530-97cd-4e7ae6534c07")
        );
        let empty = GraphError::Conflict {
            message: "Subscription Id <> already exists for the requested combination".into(),
        };
        assert_eq!(empty.conflicting_subscription_id(), None);
    }
}
