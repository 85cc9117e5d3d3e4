//! The guards at the edge of the HTTP API, as middleware (docs/security.md).
//!
//! - [`limit_public`]: the public notification routes take at most `public_max_requests` at
//!   once (503 beyond, at once: Graph retries) and each at most `request_timeout_seconds`,
//!   body upload included (408). Their bodies together may hold at most
//!   `public_max_buffered_mib` ([`PublicLimit::buffer`]): a request whose next bytes do not fit
//!   is answered 503 at once. Memory follows what arrived, never what clients announce, and
//!   a real notification (a few KB) costs a few KB of the budget, so the request limit can be
//!   generous without the memory bound growing with it.
//! - [`refuse_nul`]: a `%00` in the path or the query is a 400, before any handler: decoded, it
//!   is a NUL character, which PostgreSQL's text cannot hold (it would fail there as a 500).
//! - [`json_errors`]: every error answer is SPEC's JSON error, also the ones axum makes itself
//!   (a method a route does not take, a path segment that does not parse).
//! - [`check_api_key`]: the bearer key, compared in constant time and length; without a key
//!   (loopback only), the `Host` must be a loopback name, so a web page that rebinds its DNS
//!   to 127.0.0.1 cannot reach the API from a browser.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::AppState;
use crate::error::{ApiError, ErrorBody};

/// The public routes' limits, shared by their requests.
pub struct PublicLimit {
    slots: Arc<Semaphore>,
    /// The bodies' memory budget, one permit per KiB.
    bytes: Arc<Semaphore>,
    timeout: Duration,
}

impl PublicLimit {
    pub fn new(max_requests: usize, max_buffered_mib: usize, timeout: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_requests)),
            bytes: Arc::new(Semaphore::new(max_buffered_mib.saturating_mul(1024))),
            timeout,
        }
    }

    /// A share of the body budget that grows with the body it guards.
    pub fn buffer(&self) -> BufferShare {
        BufferShare {
            budget: self.bytes.clone(),
            held: None,
            kib: 0,
        }
    }
}

/// What one request body holds of [`PublicLimit`]'s budget; given back when dropped.
pub struct BufferShare {
    budget: Arc<Semaphore>,
    held: Option<tokio::sync::OwnedSemaphorePermit>,
    kib: u32,
}

impl BufferShare {
    /// Makes room for a body of `len` bytes so far. False when the budget has no room: the
    /// request should be refused (503), not wait.
    pub fn grow_to(&mut self, len: usize) -> bool {
        let want = u32::try_from(len.div_ceil(1024)).unwrap_or(u32::MAX);
        if want <= self.kib {
            return true;
        }
        match self.budget.clone().try_acquire_many_owned(want - self.kib) {
            Ok(more) => {
                match &mut self.held {
                    Some(held) => held.merge(more),
                    None => self.held = Some(more),
                }
                self.kib = want;
                true
            }
            Err(_) => false,
        }
    }
}

/// At most `public_max_requests` at once, each within `request_timeout_seconds`.
///
/// Graph's validation call takes no slot (it is still bounded in time): it is answered from the
/// query alone (SPEC §3.1), at once, and shed under load it would fail a subscription's create
/// or renewal.
pub async fn limit_public(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = &state.public_limit;
    let _slot = if super::webhook::validation_token(req.uri().query()).is_some() {
        None
    } else {
        let Ok(slot) = limit.slots.clone().try_acquire_owned() else {
            metrics::counter!("relay365_http_shed_total").increment(1);
            return ApiError::Unavailable("too many requests at once; retry later".into())
                .into_response();
        };
        Some(slot)
    };
    match tokio::time::timeout(limit.timeout, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            metrics::counter!("relay365_http_timeouts_total").increment(1);
            ApiError::Timeout.into_response()
        }
    }
}

/// A 400 for a NUL (`%00`) anywhere in the path or the query.
pub async fn refuse_nul(req: Request, next: Next) -> Response {
    let uri = req.uri();
    let raw = uri.path_and_query().map_or("", |pq| pq.as_str());
    let nul = raw
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0');
    if nul {
        return ApiError::bad_request("the URL must not contain a NUL character (%00)")
            .into_response();
    }
    next.run(req).await
}

/// Turns an error answer that is not JSON (axum's own rejections) into SPEC's JSON error,
/// keeping its status and headers (`Allow` on a 405).
pub async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let reason = status.canonical_reason().unwrap_or("error");
    // axum's rejection texts say what was wrong ("Invalid URL: …"); a server error's text is
    // not shown.
    let message = match axum::body::to_bytes(body, 1024).await {
        Ok(text) if status.is_client_error() && !text.is_empty() => {
            String::from_utf8_lossy(&text).trim().to_string()
        }
        _ if status == StatusCode::METHOD_NOT_ALLOWED => {
            "the route does not take this method (see Allow)".to_string()
        }
        _ => reason.to_string(),
    };
    let code = reason.to_ascii_lowercase().replace([' ', '-'], "_");
    let body = serde_json::to_string(&ErrorBody::new(code, message)).unwrap_or_default();
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(body))
}

/// Bearer `RELAY365_API_KEY`. Both sides are hashed before the comparison, so that neither
/// the time nor an early return tells anything of the key's length or contents. Without a key
/// (allowed only on a loopback address), only requests naming a loopback host pass.
pub async fn check_api_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(key) = state.api_key_digest.as_ref() else {
        if host_is_loopback(&req) {
            return next.run(req).await;
        }
        return ApiError::Forbidden(
            "without RELAY365_API_KEY only requests to a loopback host (localhost, 127.0.0.1, [::1]) are served"
                .into(),
        )
        .into_response();
    };
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(key_digest(given).ct_eq(key)) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// The SHA-256 of a key: what [`check_api_key`] compares.
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Whether the request names a loopback host: `Host` (or, in HTTP/2, the URI's authority)
/// is `localhost`, `127.x.x.x` or `[::1]`, with any port. A request naming none is refused.
fn host_is_loopback(req: &Request) -> bool {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    host.is_some_and(is_loopback_host)
}

/// `localhost`, `127.0.0.1:8000`, `[::1]:8000`, … (a port is allowed; nothing else).
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(ip, _)| ip),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn only_loopback_names_are_loopback() {
        for h in [
            "localhost",
            "LocalHost:8000",
            "127.0.0.1",
            "127.0.0.1:8000",
            "127.9.9.9:1",
            "[::1]:8000",
            "[::1]",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:8000",
            "localhost.evil.example",
            "10.0.0.1:8000",
            "[::2]:80",
            "127.0.0.1.nip.io",
            "",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
