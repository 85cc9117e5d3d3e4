//! The control API under `/_sim/…`: JSON routes that drive the simulator (deliver mail,
//! send lifecycle events, inject faults) and read its state. Each route is a thin wrapper
//! over a [`Sim`] method, so tests can do the same in-process. Documented with curl examples
//! in `docs/simulator.md`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::notify::SimError;
use super::state::{
    mailbox_key, ActiveFault, FaultKind, FaultSpec, Mailbox, MessageUpdate, NewMail, RequestRecord,
    SeedSubscription, SubscriptionCounts,
};
use super::Sim;

impl Sim {
    /// Every request logged so far (Graph and token routes).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().requests.clone()
    }

    /// Empties the request log and the concurrency high-water marks.
    pub fn clear_requests(&self) {
        let mut st = self.state();
        st.requests.clear();
        st.max_in_flight.clear();
    }

    /// The most requests one mailbox had in flight at once (counting any refused by the
    /// 4-request limit).
    pub fn max_concurrency(&self, mailbox: &str) -> usize {
        self.state()
            .max_in_flight
            .get(&mailbox_key(mailbox))
            .copied()
            .unwrap_or(0)
    }

    /// The most subscription writes (create, renew, delete) for one mailbox's subscriptions
    /// in any 20 s: what Graph's throttling counts per app and tenant (the simulator has one
    /// tenant; a benchmark that gives each mailbox a tenant of its own reads it per mailbox).
    pub fn max_subscription_writes(&self, mailbox: &str) -> usize {
        self.state()
            .max_writes
            .get(&mailbox_key(mailbox))
            .copied()
            .unwrap_or(0)
    }

    /// Live, renewed and expired subscriptions, counted without copying them.
    pub fn subscription_counts(&self) -> SubscriptionCounts {
        let mut st = self.state();
        st.sweep(Utc::now());
        let live = st.subscriptions.len();
        let (renewed, renewals) = st
            .subscriptions
            .values()
            .filter(|s| s.renew_count > 0)
            .fold((0, 0), |(n, r), s| (n + 1, r + u64::from(s.renew_count)));
        SubscriptionCounts {
            live,
            renewed,
            renewals,
            expired: st.expired,
        }
    }

    /// Adds a fault; returns its id.
    pub fn add_fault(&self, spec: FaultSpec) -> Result<u64, SimError> {
        match spec.kind {
            FaultKind::Latency if spec.latency_ms.is_none() => {
                return Err(SimError::BadRequest(
                    "a latency fault needs latency_ms".into(),
                ))
            }
            _ if spec
                .retry_after_secs
                .is_some_and(|s| !(s.is_finite() && s >= 0.0)) =>
            {
                return Err(SimError::BadRequest(
                    "retry_after_secs must be a number ≥ 0".into(),
                ))
            }
            _ => {}
        }
        let until = match spec.duration_secs {
            Some(s) if s.is_finite() && s >= 0.0 => {
                Some(Instant::now() + std::time::Duration::from_secs_f64(s))
            }
            Some(_) => {
                return Err(SimError::BadRequest(
                    "duration_secs must be a number ≥ 0".into(),
                ))
            }
            None => None,
        };
        let mut st = self.state();
        st.fault_seq += 1;
        let id = st.fault_seq;
        st.faults.push(ActiveFault {
            id,
            remaining: spec.count,
            until,
            spec,
        });
        Ok(id)
    }

    /// Faults still in force.
    pub fn faults(&self) -> Vec<(u64, FaultSpec)> {
        let now = Instant::now();
        self.state()
            .faults
            .iter()
            .filter(|f| f.live(now))
            .map(|f| (f.id, f.spec.clone()))
            .collect()
    }

    /// Removes every fault and notification drop/duplicate setting.
    pub fn clear_faults(&self) {
        let mut st = self.state();
        st.faults.clear();
        st.drop_next = 0;
        st.duplicate_next = 0;
    }

    /// Back to the start: configured mailboxes (empty), no subscriptions, tokens, faults or logs.
    pub fn reset(&self) {
        let mut st = self.state();
        *st = super::state::State::default();
        for m in &self.config().mailboxes {
            st.mailboxes.insert(mailbox_key(m), Mailbox::new(m));
        }
    }
}

impl IntoResponse for SimError {
    fn into_response(self) -> Response {
        let status = match self {
            SimError::BadRequest(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::NOT_FOUND,
        };
        (
            status,
            Json(json!({"error": {"code": "sim_error", "message": self.to_string()}})),
        )
            .into_response()
    }
}

fn bad_request(message: impl Into<String>) -> Response {
    SimError::BadRequest(message.into()).into_response()
}

/// Parses a JSON body ourselves so that bad input gets a clear 400 in our error shape.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, SimError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| SimError::BadRequest(format!("invalid JSON body: {e}")))
}

pub(crate) fn router() -> Router<Sim> {
    Router::new()
        .route("/state", get(state))
        .route("/reset", post(reset))
        .route("/mailboxes", get(list_mailboxes).post(add_mailbox))
        .route(
            "/mailboxes/{mailbox}/messages",
            get(list_messages).post(deliver),
        )
        .route(
            "/mailboxes/{mailbox}/messages/{id}",
            patch(update_message).delete(delete_message),
        )
        .route("/mailboxes/{mailbox}/delta/reset", post(reset_delta))
        .route("/subscriptions", get(subscriptions).post(adopt))
        .route("/subscriptions/{id}/lifecycle", post(lifecycle))
        .route("/subscriptions/{id}/expire", post(expire))
        .route("/notifications", get(notifications))
        .route("/notifications/drop", post(drop_next))
        .route("/notifications/duplicate", post(duplicate_next))
        .route("/faults", get(faults).post(add_fault).delete(clear_faults))
        .route("/requests", get(requests).delete(clear_requests))
        .route("/tokens", get(tokens))
        .route("/tokens/revoke", post(revoke_tokens))
        .route("/tokens/expire", post(expire_tokens))
        .route("/refresh-tokens", post(refresh_token))
        .route("/credentials/{id}", post(connect).delete(disconnect))
}

async fn state(State(sim): State<Sim>) -> Json<Value> {
    let (max, writes): (Value, Value) = {
        let st = sim.state();
        (json!(st.max_in_flight), json!(st.max_writes))
    };
    Json(json!({
        "base_url": sim.base_url(),
        "tenant": sim.config().tenant,
        "tenant_id": sim.tenant_id(),
        "client_id": sim.config().client_id,
        "mailboxes": sim.mailboxes(),
        "subscriptions": sim.subscriptions(),
        "token_counts": sim.token_counts(),
        "max_concurrency": max,
        "max_subscription_writes": writes,
        "subscription_counts": sim.subscription_counts(),
        "faults": sim.faults().into_iter().map(|(id, f)| json!({"id": id, "fault": f})).collect::<Vec<_>>(),
        "requests": sim.state().requests.len(),
        "notifications": sim.state().notifications.len(),
    }))
}

async fn reset(State(sim): State<Sim>) -> StatusCode {
    sim.reset();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct MailboxBody {
    mailbox: String,
}

async fn list_mailboxes(State(sim): State<Sim>) -> Json<Value> {
    let st = sim.state();
    let list: Vec<Value> = st
        .mailboxes
        .iter()
        .map(|(k, m)| {
            json!({
                "mailbox": m.name,
                "messages": m.messages.iter().filter(|m| !m.deleted).count(),
                "max_concurrency": st.max_in_flight.get(k).copied().unwrap_or(0),
            })
        })
        .collect();
    Json(json!({ "mailboxes": list }))
}

async fn add_mailbox(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    let b: MailboxBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if b.mailbox.trim().is_empty() {
        return bad_request("mailbox must not be empty");
    }
    sim.add_mailbox(&b.mailbox);
    (
        StatusCode::CREATED,
        Json(json!({"mailbox": b.mailbox.trim()})),
    )
        .into_response()
}

async fn list_messages(State(sim): State<Sim>, Path(mailbox): Path<String>) -> Response {
    let st = sim.state();
    let Some(mb) = st.mailboxes.get(&mailbox_key(&mailbox)) else {
        return SimError::UnknownMailbox(mailbox).into_response();
    };
    let list: Vec<Value> = mb
        .messages
        .iter()
        .filter(|m| !m.deleted)
        .map(|m| json!({"id": m.id, "folder": m.folder, "subject": m.subject, "is_read": m.is_read, "attachments": m.attachments.len()}))
        .collect();
    Json(json!({ "messages": list })).into_response()
}

/// Body: one mail object or an array of them.
async fn deliver(
    State(sim): State<Sim>,
    Path(mailbox): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let v: Value = match parse(&body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let mails: Result<Vec<NewMail>, _> = match v {
        Value::Array(_) => serde_json::from_value(v),
        other => serde_json::from_value(other).map(|m| vec![m]),
    };
    let mails = match mails {
        Ok(m) if !m.is_empty() => m,
        Ok(_) => return bad_request("no mail given"),
        Err(e) => return bad_request(format!("invalid mail: {e}")),
    };
    match sim.deliver(&mailbox, mails).await {
        Ok(report) => (StatusCode::CREATED, Json(report)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn update_message(
    State(sim): State<Sim>,
    Path((mailbox, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let update: MessageUpdate = match parse(&body) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    match sim.update_message(&mailbox, &id, update).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn delete_message(
    State(sim): State<Sim>,
    Path((mailbox, id)): Path<(String, String)>,
) -> Response {
    match sim.delete_message(&mailbox, &id).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn reset_delta(State(sim): State<Sim>, Path(mailbox): Path<String>) -> Response {
    match sim.reset_delta(&mailbox) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn subscriptions(State(sim): State<Sim>) -> Json<Value> {
    Json(json!({ "subscriptions": sim.subscriptions() }))
}

/// Body: one subscription or an array of them ([`SeedSubscription`]).
async fn adopt(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    let v: Value = match parse(&body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let seeds: Result<Vec<SeedSubscription>, _> = match v {
        Value::Array(_) => serde_json::from_value(v),
        other => serde_json::from_value(other).map(|s| vec![s]),
    };
    let seeds = match seeds {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => return bad_request("no subscription given"),
        Err(e) => return bad_request(format!("invalid subscription: {e}")),
    };
    match sim.adopt_subscriptions(seeds) {
        Ok(ids) => (StatusCode::CREATED, Json(json!({ "subscriptions": ids }))).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct LifecycleBody {
    event: String,
}

async fn lifecycle(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let b: LifecycleBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    match sim.send_lifecycle(&id, &b.event).await {
        Ok(sent) => Json(json!({ "notifications": sent })).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn expire(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    if sim.expire_subscription(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        SimError::UnknownSubscription(id).into_response()
    }
}

async fn notifications(State(sim): State<Sim>) -> Json<Value> {
    Json(json!({ "notifications": sim.notifications() }))
}

#[derive(Deserialize)]
struct CountBody {
    count: u32,
}

async fn drop_next(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    match parse::<CountBody>(&body) {
        Ok(b) => {
            sim.drop_next_notifications(b.count);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn duplicate_next(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    match parse::<CountBody>(&body) {
        Ok(b) => {
            sim.duplicate_next_notifications(b.count);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn faults(State(sim): State<Sim>) -> Json<Value> {
    let list: Vec<Value> = sim
        .faults()
        .into_iter()
        .map(|(id, f)| json!({"id": id, "fault": f}))
        .collect();
    Json(json!({ "faults": list }))
}

async fn add_fault(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    let spec: FaultSpec = match parse(&body) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    match sim.add_fault(spec) {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn clear_faults(State(sim): State<Sim>) -> StatusCode {
    sim.clear_faults();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct RequestsQuery {
    mailbox: Option<String>,
}

async fn requests(State(sim): State<Sim>, Query(q): Query<RequestsQuery>) -> Json<Value> {
    let key = q.mailbox.as_deref().map(mailbox_key);
    let list: Vec<RequestRecord> = sim
        .requests()
        .into_iter()
        .filter(|r| key.is_none() || r.mailbox == key)
        .collect();
    Json(json!({ "requests": list }))
}

async fn clear_requests(State(sim): State<Sim>) -> StatusCode {
    sim.clear_requests();
    StatusCode::NO_CONTENT
}

async fn tokens(State(sim): State<Sim>) -> Json<Value> {
    Json(json!({ "token_counts": sim.token_counts(), "at": Utc::now() }))
}

#[derive(Deserialize, Default)]
struct OptionalMailbox {
    mailbox: Option<String>,
}

async fn revoke_tokens(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    match parse::<OptionalMailbox>(&body) {
        Ok(b) => Json(json!({"revoked": sim.revoke_tokens(b.mailbox.as_deref())})).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn expire_tokens(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    match parse::<OptionalMailbox>(&body) {
        Ok(b) => Json(json!({"expired": sim.expire_tokens(b.mailbox.as_deref())})).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn refresh_token(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    let b: MailboxBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    match sim.issue_refresh_token(&b.mailbox) {
        Some(rt) => (
            StatusCode::CREATED,
            Json(json!({"refresh_token": rt, "mailbox": b.mailbox})),
        )
            .into_response(),
        None => SimError::UnknownMailbox(b.mailbox).into_response(),
    }
}

async fn connect(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let b: MailboxBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if sim.connect_credential(&id, &b.mailbox) {
        (
            StatusCode::CREATED,
            Json(json!({"credential_id": id, "mailbox": b.mailbox})),
        )
            .into_response()
    } else {
        SimError::UnknownMailbox(b.mailbox).into_response()
    }
}

async fn disconnect(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    if sim.disconnect_credential(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::NOT_FOUND, Json(json!({"error": {"code": "sim_error", "message": format!("credential '{id}' is not connected")}}))).into_response()
    }
}
