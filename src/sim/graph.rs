//! The Graph routes under `/v1.0`: subscriptions, messages, attachments and per-folder
//! delta, behind bearer-token checks, the 4-requests-per-mailbox limit and injected faults.
//!
//! Paths are parsed by hand rather than by the router, because Graph matches path keywords
//! case-insensitively and accepts both `mailFolders/inbox` and `mailFolders('inbox')`, both
//! `messages/delta` and the OData function form `messages/delta()`, and percent-encoded
//! segments (a UPN as `adele%40contoso.com`), as Microsoft's SDKs send them.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::state::{mailbox_key, FaultKind, Principal, RequestRecord, SimMessage, SimSubscription};
use super::{graph_error, with_retry_after, Sim};

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
        (Route::Subscriptions, Method::POST) => create_subscription(sim, &principal, body).await,
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

// ---------------------------------------------------------------- subscriptions

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    change_type: Option<String>,
    notification_url: Option<String>,
    lifecycle_notification_url: Option<String>,
    resource: Option<String>,
    expiration_date_time: Option<String>,
    client_state: Option<String>,
    latest_supported_tls_version: Option<String>,
    include_resource_data: Option<bool>,
}

fn invalid_fail(msg: String) -> Fail {
    Fail::new(StatusCode::BAD_REQUEST, "InvalidRequest", msg)
}

fn invalid(msg: &str) -> Reply {
    fail(StatusCode::BAD_REQUEST, "InvalidRequest", msg)
}

fn subscription_json(sim: &Sim, s: &SimSubscription, with_client_state: bool) -> Value {
    json!({
        "@odata.context": format!("{}/$metadata#subscriptions/$entity", sim.base_url()),
        "id": s.id,
        "resource": s.resource,
        "applicationId": sim.config().client_id,
        "changeType": s.change_type,
        "clientState": if with_client_state { json!(s.client_state) } else { Value::Null },
        "notificationUrl": s.notification_url,
        "notificationQueryOptions": null,
        "notificationContentType": null,
        "lifecycleNotificationUrl": s.lifecycle_notification_url,
        "expirationDateTime": graph_time(s.expiration_date_time),
        "creatorId": s.creator_id,
        "includeResourceData": null,
        "latestSupportedTlsVersion": s.latest_supported_tls_version,
        "encryptionCertificate": null,
        "encryptionCertificateId": null,
        "notificationUrlAppId": null,
    })
}

/// The expiry Graph grants for a requested one: raised to the 45-minute floor, refused
/// above the maximum, or replaced by the configured test lifetime.
fn granted_expiry(sim: &Sim, requested: &str) -> Result<DateTime<Utc>, Fail> {
    let Ok(asked) = DateTime::parse_from_rfc3339(requested.trim()) else {
        return Err(invalid_fail(format!(
            "expirationDateTime '{requested}' is not a valid date and time."
        )));
    };
    let asked = asked.with_timezone(&Utc);
    let now = Utc::now();
    let cfg = sim.config();
    let to_chrono =
        |d: std::time::Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
    let max = to_chrono(cfg.max_subscription_lifetime);
    if asked > now + max {
        return Err(invalid_fail(format!(
            "Subscription expiration can only be {} minutes in the future.",
            max.num_minutes()
        )));
    }
    if let Some(fixed) = cfg.granted_lifetime {
        return Ok(now + to_chrono(fixed));
    }
    Ok(asked.max(now + to_chrono(cfg.min_subscription_lifetime)))
}

/// Parses `me|users/{id}[/mailFolders('{f}')|/mailFolders/{f}]/messages`.
fn parse_resource(
    sim: &Sim,
    resource: &str,
    principal: &Principal,
) -> Result<(String, Option<String>), Fail> {
    let path = resource.trim().trim_start_matches('/');
    let path = path.split('?').next().unwrap_or_default();
    // Graph takes a percent-encoded UPN (`users/adele%40contoso.com/…`) as Microsoft's SDKs
    // send it, so segments are decoded as the Graph routes' are.
    let decoded: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let unsupported = || {
        invalid_fail(format!(
            "Resource '{resource}' is not supported by the simulator: use me|users/{{id}}[/mailFolders('{{folder}}')]/messages."
        ))
    };
    let (who, rest) = match segs.first() {
        Some(s) if s.eq_ignore_ascii_case("me") => (Who::Me, &segs[1..]),
        Some(s) if s.eq_ignore_ascii_case("users") && segs.len() > 1 => {
            (Who::User(segs[1].to_string()), &segs[2..])
        }
        _ => return Err(unsupported()),
    };
    let key = resolve_mailbox(sim, &who, principal)?;
    let is = |i: usize, k: &str| rest.get(i).is_some_and(|s| s.eq_ignore_ascii_case(k));
    let folder = match rest.len() {
        1 if is(0, "messages") => None,
        2 if is(1, "messages") => Some(quoted_folder(rest[0]).ok_or_else(unsupported)?),
        3 if is(0, "mailfolders") && is(2, "messages") => Some(rest[1].to_lowercase()),
        _ => return Err(unsupported()),
    };
    Ok((key, folder))
}

async fn create_subscription(sim: &Sim, principal: &Principal, body: &Bytes) -> Reply {
    let b: CreateBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return invalid(&format!("Invalid request body: {e}")),
    };
    let (Some(change_type), Some(notification_url), Some(resource), Some(expiry)) = (
        b.change_type,
        b.notification_url,
        b.resource,
        b.expiration_date_time,
    ) else {
        return invalid(
            "changeType, notificationUrl, resource and expirationDateTime are required.",
        );
    };
    let types: Vec<&str> = change_type.split(',').map(str::trim).collect();
    if types.is_empty()
        || types
            .iter()
            .any(|t| !matches!(*t, "created" | "updated" | "deleted"))
    {
        return invalid(&format!(
            "Invalid changeType '{change_type}': use created, updated and/or deleted."
        ));
    }
    if b.client_state
        .as_ref()
        .is_some_and(|c| c.chars().count() > 128)
    {
        return invalid("clientState must be at most 128 characters.");
    }
    if b.include_resource_data == Some(true) {
        return invalid("includeResourceData is not supported by the simulator (relay365 uses basic notifications).");
    }
    for url in std::iter::once(&notification_url).chain(b.lifecycle_notification_url.as_ref()) {
        match url::Url::parse(url) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
            _ => return invalid(&format!("Invalid notification URL '{url}'.")),
        }
    }
    let (mailbox, folder) = match parse_resource(sim, &resource, principal) {
        Ok(r) => r,
        Err(f) => return f.reply(),
    };
    let expires = match granted_expiry(sim, &expiry) {
        Ok(e) => e,
        Err(f) => return f.reply(),
    };
    let mut wanted: Vec<&str> = types.clone();
    wanted.sort_unstable();
    let duplicate_of = |st: &super::state::State| {
        st.subscriptions.values().find_map(|s| {
            let mut have: Vec<&str> = s.change_type.split(',').map(str::trim).collect();
            have.sort_unstable();
            (s.mailbox == mailbox && s.folder == folder && have == wanted).then(|| s.id.clone())
        })
    };
    let conflict = |id: &str| {
        fail(
            StatusCode::CONFLICT,
            "Conflict",
            &format!("Subscription Id {id} already exists for the requested combination"),
        )
    };
    {
        let mut st = sim.state();
        st.sweep(Utc::now());
        if let Some(id) = duplicate_of(&st) {
            return conflict(&id);
        }
    }

    // The handshake, to both URLs, before anything is stored.
    let urls: Vec<&String> = std::iter::once(&notification_url)
        .chain(b.lifecycle_notification_url.as_ref())
        .collect();
    let checks = futures::future::join_all(urls.iter().map(|u| sim.validate_url(u))).await;
    if let Some(Err(reason)) = checks.into_iter().find(Result::is_err) {
        return invalid(&format!("Subscription validation request failed. {reason}"));
    }

    let sub = SimSubscription {
        id: uuid::Uuid::new_v4().to_string(),
        resource,
        change_type: types.join(","),
        notification_url,
        lifecycle_notification_url: b.lifecycle_notification_url,
        expiration_date_time: expires,
        client_state: b.client_state,
        latest_supported_tls_version: b
            .latest_supported_tls_version
            .unwrap_or_else(|| "v1_2".into()),
        mailbox: mailbox.clone(),
        folder: folder.clone(),
        creator_id: uuid::Uuid::new_v4().to_string(),
        created_at: Utc::now(),
        renew_count: 0,
        last_renewed_at: None,
        reauthorize_count: 0,
        last_reauthorized_at: None,
    };
    let mut st = sim.state();
    if let Some(id) = duplicate_of(&st) {
        return conflict(&id);
    }
    st.subscriptions.insert(sub.id.clone(), sub.clone());
    ok((
        StatusCode::CREATED,
        Json(subscription_json(sim, &sub, true)),
    ))
}

fn not_found_subscription(id: &str) -> Reply {
    fail(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        &format!("The object was not found: subscription '{id}'."),
    )
}

fn get_subscription(sim: &Sim, id: &str) -> Reply {
    let mut st = sim.state();
    st.sweep(Utc::now());
    match st.subscriptions.get(id) {
        Some(s) => ok(Json(subscription_json(sim, s, false))),
        None => not_found_subscription(id),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RenewBody {
    expiration_date_time: Option<String>,
    notification_url: Option<String>,
}

fn renew_subscription(sim: &Sim, id: &str, body: &Bytes) -> Reply {
    let b: RenewBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return invalid(&format!("Invalid request body: {e}")),
    };
    if b.expiration_date_time.is_none() && b.notification_url.is_none() {
        return invalid("expirationDateTime or notificationUrl is required.");
    }
    let expiry = match b
        .expiration_date_time
        .as_deref()
        .map(|e| granted_expiry(sim, e))
        .transpose()
    {
        Ok(e) => e,
        Err(f) => return f.reply(),
    };
    let mut st = sim.state();
    st.sweep(Utc::now());
    let Some(s) = st.subscriptions.get_mut(id) else {
        return not_found_subscription(id);
    };
    if let Some(e) = expiry {
        s.expiration_date_time = e;
    }
    if let Some(u) = b.notification_url {
        s.notification_url = u;
    }
    s.renew_count += 1;
    s.last_renewed_at = Some(Utc::now());
    let s = s.clone();
    ok(Json(subscription_json(sim, &s, true)))
}

fn reauthorize_subscription(sim: &Sim, id: &str) -> Reply {
    let mut st = sim.state();
    st.sweep(Utc::now());
    let Some(s) = st.subscriptions.get_mut(id) else {
        return not_found_subscription(id);
    };
    s.reauthorize_count += 1;
    s.last_reauthorized_at = Some(Utc::now());
    ok(StatusCode::NO_CONTENT)
}

fn delete_subscription(sim: &Sim, id: &str) -> Reply {
    let mut st = sim.state();
    st.sweep(Utc::now());
    match st.subscriptions.remove(id) {
        Some(_) => ok(StatusCode::NO_CONTENT),
        None => not_found_subscription(id),
    }
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    let q = uri.query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.into_owned())
}

fn list_subscriptions(sim: &Sim, uri: &Uri) -> Reply {
    let skip: usize = query_param(uri, "$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let page = sim.config().list_page_size.max(1);
    let mut st = sim.state();
    st.sweep(Utc::now());
    let mut all: Vec<&SimSubscription> = st.subscriptions.values().collect();
    all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let value: Vec<Value> = all
        .iter()
        .skip(skip)
        .take(page)
        .map(|s| subscription_json(sim, s, false))
        .collect();
    let mut body = json!({
        "@odata.context": format!("{}/$metadata#subscriptions", sim.base_url()),
        "value": value,
    });
    if skip + page < all.len() {
        body["@odata.nextLink"] = json!(format!(
            "{}/subscriptions?$skiptoken={}",
            sim.base_url(),
            skip + page
        ));
    }
    ok(Json(body))
}

// ---------------------------------------------------------------- messages

fn recipient(a: &super::state::SimAddress) -> Value {
    json!({"emailAddress": {"name": a.name, "address": a.address}})
}

fn strip_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A message in the shape of fixture `message-get-response.json`. `uniqueBody` and
/// `internetMessageHeaders` are only returned when selected, as in Graph.
fn message_json(m: &SimMessage, select: Option<&[String]>) -> Value {
    let preview: String = if m.body_type == "html" {
        strip_html(&m.body)
    } else {
        m.body.clone()
    };
    let preview: String = preview.chars().take(255).collect();
    let web_link = format!(
        "https://outlook.office365.com/owa/?ItemID={}&exvsurl=1&viewmodel=ReadMessageItem",
        percent_encoding::utf8_percent_encode(&m.id, percent_encoding::NON_ALPHANUMERIC)
    );
    let mut v = json!({
        "@odata.etag": format!("W/\"{}\"", m.change_key),
        "id": m.id,
        "createdDateTime": graph_time(m.created_at),
        "lastModifiedDateTime": graph_time(m.modified_at),
        "changeKey": m.change_key,
        "categories": m.categories,
        "receivedDateTime": m.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "sentDateTime": m.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "hasAttachments": !m.attachments.is_empty(),
        "internetMessageId": m.internet_message_id,
        "subject": m.subject,
        "bodyPreview": preview,
        "importance": m.importance,
        "parentFolderId": m.folder,
        "conversationId": m.conversation_id,
        "isDeliveryReceiptRequested": false,
        "isReadReceiptRequested": false,
        "isRead": m.is_read,
        "isDraft": false,
        "webLink": web_link,
        "inferenceClassification": "focused",
        "body": {"contentType": m.body_type, "content": m.body},
        "sender": recipient(&m.from),
        "from": recipient(&m.from),
        "toRecipients": m.to.iter().map(recipient).collect::<Vec<_>>(),
        "ccRecipients": m.cc.iter().map(recipient).collect::<Vec<_>>(),
        "bccRecipients": [],
        "replyTo": [],
        "flag": {"flagStatus": "notFlagged"},
    });
    let Some(select) = select else { return v };
    let extra = json!({
        "uniqueBody": {"contentType": m.body_type, "content": m.body},
        "internetMessageHeaders": [
            {"name": "Message-ID", "value": m.internet_message_id},
            {"name": "Subject", "value": m.subject},
            {"name": "From", "value": format!("{} <{}>", m.from.name, m.from.address)},
        ],
    });
    let mut all: Map<String, Value> = v.as_object_mut().map(std::mem::take).unwrap_or_default();
    if let Some(e) = extra.as_object() {
        all.extend(e.clone());
    }
    let mut out = Map::new();
    for (k, val) in all {
        let keep =
            k == "id" || k == "@odata.etag" || select.iter().any(|s| s.eq_ignore_ascii_case(&k));
        if keep {
            out.insert(k, val);
        }
    }
    Value::Object(out)
}

fn parse_select(raw: Option<String>) -> Option<Vec<String>> {
    raw.map(|s| {
        s.split(',')
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect()
    })
}

fn item_not_found() -> Reply {
    fail(
        StatusCode::NOT_FOUND,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

fn get_message(sim: &Sim, mailbox: &str, folder: Option<&str>, id: &str, uri: &Uri) -> Reply {
    let select = parse_select(query_param(uri, "$select"));
    let st = sim.state();
    let Some(mb) = st.mailboxes.get(mailbox) else {
        return item_not_found();
    };
    let found = mb.find(id).filter(|m| folder.is_none_or(|f| f == m.folder));
    let Some(m) = found else {
        return item_not_found();
    };
    let mut v = message_json(m, select.as_deref());
    v["@odata.context"] = json!(format!(
        "{}/$metadata#users('{}')/messages/$entity",
        sim.base_url(),
        mb.name
    ));
    ok(Json(v))
}

fn list_attachments(sim: &Sim, mailbox: &str, id: &str) -> Reply {
    let st = sim.state();
    let Some(mb) = st.mailboxes.get(mailbox) else {
        return item_not_found();
    };
    let Some(m) = mb.find(id) else {
        return item_not_found();
    };
    let value: Vec<Value> = m
        .attachments
        .iter()
        .map(|a| {
            json!({
                "@odata.type": "#microsoft.graph.fileAttachment",
                "@odata.mediaContentType": a.content_type,
                "id": a.id,
                "lastModifiedDateTime": graph_time(m.modified_at),
                "name": a.name,
                "contentType": a.content_type,
                "size": a.bytes.len(),
                "isInline": a.is_inline,
                "contentId": null,
                "contentLocation": null,
                "contentBytes": base64::engine::general_purpose::STANDARD.encode(&a.bytes),
            })
        })
        .collect();
    ok(Json(json!({
        "@odata.context": format!("{}/$metadata#users('{}')/messages('{}')/attachments", sim.base_url(), mb.name, m.id),
        "value": value,
    })))
}

// ---------------------------------------------------------------- delta

/// What a delta token remembers; query options of the first request travel inside it.
#[derive(Serialize, Deserialize)]
struct DeltaToken {
    /// Mailbox key and folder it belongs to.
    m: String,
    f: String,
    /// Epoch of the mailbox's delta state; a reset invalidates older tokens.
    e: u64,
    /// Changes after this sequence number…
    s: u64,
    /// …up to this one (skip tokens only; a delta token reads up to "now").
    u: Option<u64>,
    /// Cursor inside a round (skip tokens only).
    c: Option<u64>,
    sel: Option<Vec<String>>,
}

fn encode_token(t: &DeltaToken) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(t).unwrap_or_default())
}

fn decode_token(s: &str) -> Option<DeltaToken> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim())
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn page_size(sim: &Sim, headers: &HeaderMap) -> usize {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.trim().strip_prefix("odata.maxpagesize="))
        .find_map(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(sim.config().delta_page_size)
        .clamp(1, 1000)
}

fn delta(
    sim: &Sim,
    mailbox: &str,
    segs: &[String],
    folder: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Reply {
    let st = sim.state();
    let Some(mb) = st.mailboxes.get(mailbox) else {
        return item_not_found();
    };
    let skip = query_param(uri, "$skiptoken");
    let dtok = query_param(uri, "$deltatoken");
    let gone = || {
        fail(
            StatusCode::GONE,
            "syncStateNotFound",
            "The sync state is not found, expired or invalid. Start a new full synchronization.",
        )
    };
    let (since, upto, cursor, select) = match (skip, dtok) {
        (Some(t), _) | (None, Some(t)) => {
            let Some(tok) = decode_token(&t) else {
                return gone();
            };
            if tok.m != mailbox || tok.f != folder || tok.e != mb.delta_epoch {
                return gone();
            }
            (
                tok.s,
                tok.u.unwrap_or(mb.seq),
                tok.c.unwrap_or(tok.s),
                tok.sel,
            )
        }
        (None, None) => (0, mb.seq, 0, parse_select(query_param(uri, "$select"))),
    };
    let mut changes: Vec<&SimMessage> = mb
        .messages
        .iter()
        .filter(|m| m.folder == folder && m.changed_seq > cursor && m.changed_seq <= upto)
        // A message that was created and deleted since the last round was never seen.
        .filter(|m| !(m.deleted && m.created_seq > since))
        .collect();
    changes.sort_by_key(|m| m.changed_seq);
    let n = page_size(sim, headers);
    let more = changes.len() > n;
    changes.truncate(n);
    let value: Vec<Value> = changes
        .iter()
        .map(|m| {
            if m.deleted {
                json!({"@odata.type": "#microsoft.graph.message", "id": m.id, "@removed": {"reason": "deleted"}})
            } else {
                let mut v = message_json(m, select.as_deref());
                if let Some(o) = v.as_object_mut() {
                    o.insert("@odata.type".into(), json!("#microsoft.graph.message"));
                }
                v
            }
        })
        .collect();
    // Links keep the caller's own path form (me or users/{id}).
    let prefix: String = segs
        .iter()
        .take_while(|s| !s.to_lowercase().starts_with("mailfolders"))
        .cloned()
        .collect::<Vec<_>>()
        .join("/");
    let link_base = format!(
        "{}/{}/mailFolders('{}')/messages/delta",
        sim.base_url(),
        prefix,
        folder
    );
    let mut body = json!({
        "@odata.context": format!("{}/$metadata#Collection(message)", sim.base_url()),
        "value": value,
    });
    if more {
        let last = changes.last().map(|m| m.changed_seq).unwrap_or(cursor);
        let tok = DeltaToken {
            m: mailbox.into(),
            f: folder.into(),
            e: mb.delta_epoch,
            s: since,
            u: Some(upto),
            c: Some(last),
            sel: select,
        };
        body["@odata.nextLink"] = json!(format!("{link_base}?$skiptoken={}", encode_token(&tok)));
    } else {
        let tok = DeltaToken {
            m: mailbox.into(),
            f: folder.into(),
            e: mb.delta_epoch,
            s: upto,
            u: None,
            c: None,
            sel: select,
        };
        body["@odata.deltaLink"] = json!(format!("{link_base}?$deltatoken={}", encode_token(&tok)));
    }
    ok(Json(body))
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
