//! The Graph routes under `/v1.0`: subscriptions, messages, attachments and per-folder
//! delta, behind bearer-token checks, the 4-requests-per-mailbox limit and injected faults.
//!
//! Paths are parsed by hand rather than by the router, because Graph matches path keywords
//! case-insensitively and accepts both `mailFolders/inbox` and `mailFolders('inbox')`, both
//! `messages/delta` and the OData function form `messages/delta()`, and percent-encoded
//! segments (a UPN as `adele%40contoso.com`), as Microsoft's SDKs send them.
//!
//! This file holds what every route shares: the path parser, the entry point (token check,
//! mailbox resolution, the concurrency limit, injected faults, the request log) and the error
//! helpers. Each resource's handlers are in their own file: [`subscriptions`], [`messages`]
//! (messages and attachments) and [`delta`].

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use percent_encoding::percent_decode_str;
use tokio::time::Instant;

use super::state::{mailbox_key, FaultKind, Principal, RequestRecord};
use super::{graph_error, with_retry_after, Sim};

mod delta;
mod messages;
pub(crate) use messages::event_message_type;
mod subscriptions;

use delta::delta;
use messages::{get_message, list_attachments};
use subscriptions::{
    create_subscription, delete_subscription, get_subscription, list_subscriptions,
    reauthorize_subscription, renew_subscription,
};

/// A response and the Graph error code it carries, for the request log.
type Reply = (Response, Option<String>);

fn fail(status: StatusCode, code: &str, message: &str) -> Reply {
    (graph_error(status, code, message), Some(code.to_string()))
}

/// A Graph error not yet turned into a response (small, so it can travel in a `Result`).
struct Fail {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Fail {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn reply(self) -> Reply {
        fail(self.status, self.code, &self.message)
    }
}

fn ok(resp: impl IntoResponse) -> Reply {
    (resp.into_response(), None)
}

fn invalid_fail(msg: String) -> Fail {
    Fail::new(StatusCode::BAD_REQUEST, "InvalidRequest", msg)
}

fn invalid(msg: &str) -> Reply {
    fail(StatusCode::BAD_REQUEST, "InvalidRequest", msg)
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    let q = uri.query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.into_owned())
}

/// Graph's date format: 7 fractional digits and `Z`.
pub(crate) fn graph_time(t: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

/// Who a mail path names.
enum Who {
    Me,
    User(String),
}

enum Route {
    Subscriptions,
    Subscription(String),
    Reauthorize(String),
    Message {
        who: Who,
        folder: Option<String>,
        id: String,
    },
    Attachments {
        who: Who,
        id: String,
    },
    Delta {
        who: Who,
        folder: String,
    },
}

/// `mailFolders('x')` → `x` (lower case), for path segments and subscription resources.
fn quoted_folder(seg: &str) -> Option<String> {
    let lower = seg.to_lowercase();
    let inner = lower.strip_prefix("mailfolders(")?.strip_suffix(')')?;
    Some(inner.trim_matches(|c| c == '\'' || c == '"').to_string())
}

fn parse_route(segs: &[String]) -> Option<Route> {
    let kw = |i: usize, k: &str| segs.get(i).is_some_and(|s| s.eq_ignore_ascii_case(k));
    if kw(0, "subscriptions") {
        return match segs.len() {
            1 => Some(Route::Subscriptions),
            2 => Some(Route::Subscription(segs[1].clone())),
            3 if kw(2, "reauthorize") => Some(Route::Reauthorize(segs[1].clone())),
            _ => None,
        };
    }
    let (who, rest) = if kw(0, "me") {
        (Who::Me, &segs[1..])
    } else if kw(0, "users") && segs.len() > 1 {
        (Who::User(segs[1].clone()), &segs[2..])
    } else {
        return None;
    };
    let rkw = |i: usize, k: &str| rest.get(i).is_some_and(|s| s.eq_ignore_ascii_case(k));
    // Folder prefix: `mailFolders/{f}` or `mailFolders('{f}')`.
    let (folder, rest) = if rkw(0, "mailfolders") && rest.len() > 1 {
        (Some(rest[1].to_lowercase()), &rest[2..])
    } else if let Some(f) = rest.first().and_then(|s| quoted_folder(s)) {
        (Some(f), &rest[1..])
    } else {
        (None, rest)
    };
    let rkw = |i: usize, k: &str| rest.get(i).is_some_and(|s| s.eq_ignore_ascii_case(k));
    match (rest.len(), folder) {
        (2, Some(folder)) if rkw(0, "messages") && (rkw(1, "delta") || rkw(1, "delta()")) => {
            Some(Route::Delta { who, folder })
        }
        (2, folder) if rkw(0, "messages") => Some(Route::Message {
            who,
            folder,
            id: rest[1].clone(),
        }),
        (3, None) if rkw(0, "messages") && rkw(2, "attachments") => Some(Route::Attachments {
            who,
            id: rest[1].clone(),
        }),
        _ => None,
    }
}

/// Decrements a mailbox's in-flight count when the request ends.
struct InFlight {
    sim: Sim,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = self.sim.state().in_flight.get_mut(&self.key) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Every request under `/v1.0/…`.
pub(crate) async fn entry(
    State(sim): State<Sim>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = (Instant::now(), Utc::now());
    let (reply, mailbox) = handle(&sim, &method, &uri, &headers, &body).await;
    let (resp, code) = reply;
    sim.record(RequestRecord {
        seq: 0,
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        mailbox,
        status: resp.status().as_u16(),
        error_code: code,
        user_agent: headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        started: started.0,
        ended: Instant::now(),
        started_at: started.1,
        ended_at: Utc::now(),
    });
    resp
}

async fn handle(
    sim: &Sim,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> (Reply, Option<String>) {
    let segs: Vec<String> = uri
        .path()
        .trim_start_matches("/v1.0")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();

    let principal = match sim.authenticate(headers) {
        Ok(p) => p,
        Err(f) => {
            let msg = match f {
                super::auth::AuthFailure::Missing => "Access token is empty.",
                super::auth::AuthFailure::Unknown => "Access token validation failure. The token is not recognized or has been revoked.",
                super::auth::AuthFailure::Expired => "Lifetime validation failed, the token is expired.",
            };
            return (
                fail(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", msg),
                None,
            );
        }
    };
    let Some(route) = parse_route(&segs) else {
        let last = segs.last().cloned().unwrap_or_default();
        let msg = format!("Resource not found for the segment '{last}'.");
        return (fail(StatusCode::BAD_REQUEST, "BadRequest", &msg), None);
    };

    // The mailbox a mail route addresses, checked against the token.
    let who = match &route {
        Route::Message { who, .. } | Route::Attachments { who, .. } | Route::Delta { who, .. } => {
            Some(who)
        }
        _ => None,
    };
    let mailbox = match who {
        None => None,
        Some(who) => match resolve_mailbox(sim, who, &principal) {
            Ok(key) => Some(key),
            Err(f) => return (f.reply(), None),
        },
    };

    // Outlook's limit: at most N concurrent requests per app and mailbox.
    let _guard = match &mailbox {
        Some(key) => {
            let limit = sim.config().mailbox_concurrency;
            let now = {
                let mut st = sim.state();
                let n = st.in_flight.entry(key.clone()).or_default();
                *n += 1;
                let now = *n;
                let max = st.max_in_flight.entry(key.clone()).or_default();
                *max = (*max).max(now);
                now
            };
            let guard = InFlight {
                sim: sim.clone(),
                key: key.clone(),
            };
            if now > limit {
                let (resp, code) = fail(
                    StatusCode::TOO_MANY_REQUESTS,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                );
                let secs = sim.config().concurrency_retry_after.as_secs_f64();
                return ((with_retry_after(resp, secs), code), mailbox);
            }
            Some(guard)
        }
        None => None,
    };

    if let Some(reply) = apply_faults(sim, mailbox.as_deref()).await {
        return (reply, mailbox);
    }

    let reply = match (route, method.clone()) {
        (Route::Subscriptions, Method::POST) => {
            create_subscription(sim, &principal, headers, body).await
        }
        (Route::Subscriptions, Method::GET) => list_subscriptions(sim, uri),
        (Route::Subscription(id), Method::GET) => get_subscription(sim, &id),
        (Route::Subscription(id), Method::PATCH) => renew_subscription(sim, &id, body),
        (Route::Subscription(id), Method::DELETE) => delete_subscription(sim, &id),
        (Route::Reauthorize(id), Method::POST) => reauthorize_subscription(sim, &id),
        (Route::Message { folder, id, .. }, Method::GET) => get_message(
            sim,
            mailbox.as_deref().unwrap_or_default(),
            folder.as_deref(),
            &id,
            uri,
        ),
        (Route::Attachments { id, .. }, Method::GET) => {
            list_attachments(sim, mailbox.as_deref().unwrap_or_default(), &id)
        }
        (Route::Delta { folder, .. }, Method::GET) => delta(
            sim,
            mailbox.as_deref().unwrap_or_default(),
            &segs,
            &folder,
            uri,
            headers,
        ),
        _ => fail(
            StatusCode::METHOD_NOT_ALLOWED,
            "Request_BadRequest",
            &format!("The HTTP method '{method}' is not allowed for this resource."),
        ),
    };
    (reply, mailbox)
}

fn resolve_mailbox(sim: &Sim, who: &Who, principal: &Principal) -> Result<String, Fail> {
    match (who, principal) {
        (Who::Me, Principal::App) => Err(Fail::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "/me request is only valid with delegated authentication flow.",
        )),
        (Who::Me, Principal::User(key)) => Ok(key.clone()),
        (Who::User(name), _) => {
            let key = mailbox_key(name);
            if !sim.state().mailboxes.contains_key(&key) {
                return Err(Fail::new(
                    StatusCode::NOT_FOUND,
                    "ErrorInvalidUser",
                    format!("The requested user '{name}' is invalid."),
                ));
            }
            match principal {
                Principal::User(own) if own != &key => Err(Fail::new(
                    StatusCode::FORBIDDEN,
                    "ErrorAccessDenied",
                    "Access is denied. Check credentials and try again.",
                )),
                _ => Ok(key),
            }
        }
    }
}

/// Applies base latency, latency faults, then 429/503 faults.
async fn apply_faults(sim: &Sim, mailbox: Option<&str>) -> Option<Reply> {
    let mut delay = sim.config().latency;
    let mut failure = None;
    {
        let now = Instant::now();
        let mut st = sim.state();
        st.faults.retain(|f| f.live(now));
        for f in st.faults.iter_mut() {
            let applies = f
                .spec
                .mailbox
                .as_deref()
                .is_none_or(|m| Some(mailbox_key(m).as_str()) == mailbox);
            if !applies {
                continue;
            }
            let take = match f.spec.kind {
                FaultKind::Latency => {
                    delay += std::time::Duration::from_millis(f.spec.latency_ms.unwrap_or(0));
                    true
                }
                FaultKind::Throttle | FaultKind::Unavailable if failure.is_none() => {
                    failure = Some((f.spec.kind, f.spec.retry_after_secs));
                    true
                }
                _ => false,
            };
            if take {
                if let Some(n) = f.remaining.as_mut() {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (kind, retry_after) = failure?;
    let (resp, code) = match kind {
        FaultKind::Throttle => fail(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Please retry again later.",
        ),
        _ => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "serviceNotAvailable",
            "The service is temporarily unavailable. Please retry later.",
        ),
    };
    let resp = match (kind, retry_after) {
        (_, Some(secs)) => with_retry_after(resp, secs),
        (FaultKind::Throttle, None) => with_retry_after(resp, 1.0),
        _ => resp,
    };
    Some((resp, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<String> {
        p.split('/').map(str::to_string).collect()
    }

    #[test]
    fn routes_parse_in_every_spelling() {
        assert!(matches!(
            parse_route(&segs("subscriptions")),
            Some(Route::Subscriptions)
        ));
        assert!(matches!(
            parse_route(&segs("subscriptions/x/reauthorize")),
            Some(Route::Reauthorize(_))
        ));
        assert!(matches!(
            parse_route(&segs("me/messages/AAMk=")),
            Some(Route::Message { folder: None, .. })
        ));
        assert!(matches!(
            parse_route(&segs("users/a@b.test/Messages/X/attachments")),
            Some(Route::Attachments { .. })
        ));
        assert!(
            matches!(parse_route(&segs("me/mailFolders/Inbox/messages/delta")), Some(Route::Delta { ref folder, .. }) if folder == "inbox")
        );
        assert!(
            matches!(parse_route(&segs("users/u/mailfolders('Inbox')/messages/delta")), Some(Route::Delta { ref folder, .. }) if folder == "inbox")
        );
        // The OData function form Microsoft's SDKs send.
        assert!(
            matches!(parse_route(&segs("users/u/mailFolders('inbox')/messages/delta()")), Some(Route::Delta { ref folder, .. }) if folder == "inbox")
        );
        assert!(parse_route(&segs("me/calendar")).is_none());
    }

    #[test]
    fn graph_time_has_seven_digits() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456789Z")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        assert_eq!(
            t.map(graph_time).as_deref(),
            Some("2026-01-02T03:04:05.1234567Z")
        );
    }
}
