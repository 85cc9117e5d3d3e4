//! One delivery attempt: claim it, sign the event's body with the target's secret (Standard
//! Webhooks, through the `standardwebhooks` crate, the specification's own implementation),
//! POST it with the target's headers, and record the answer.
//!
//! Only a 2xx answer within the timeout is a success; anything else, 3xx included (redirects
//! are never followed: the body and the target's headers must not go to another host), is
//! retried with backoff until `RELAY365_DELIVERY_MAX_ATTEMPTS`. The same `webhook-id` (the
//! event id) goes with every attempt, so the receiver can drop repeats. At most
//! [`MAX_ANSWER_BYTES`] of the answer is kept; the secret is never stored with it or logged.

use std::time::{Duration, Instant};

use standardwebhooks::{
    Webhook, HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP,
};

use crate::deps::Deps;
use crate::store::deliveries::{self, Attempt, DeliveryRow, Outgoing};
use crate::store::events::Lease;
use crate::store::now_ms;
use crate::util::backoff;

/// How long a target has to answer (SPEC §4).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a target's answer that is stored with the delivery.
pub const MAX_ANSWER_BYTES: usize = 1024;

/// Attempts delivery `id` once. Returns when it is due again, if it is to be retried.
pub async fn attempt(deps: &Deps, id: &str) -> Option<Duration> {
    let lease = Lease {
        owner: deps.instance.as_ref(),
        now: now_ms(),
        ms: i64::try_from(deps.settings.lease.as_millis()).unwrap_or(i64::MAX / 2),
    };
    let (row, out) = match deliveries::claim(&deps.work, id, lease).await {
        Ok(Some(found)) => found,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(delivery = id, error = %e, "claiming a delivery failed");
            return Some(deps.settings.retry_base);
        }
    };
    let timeout = TIMEOUT.min(deps.settings.lease / 2);
    let result = post(deps, &row, &out, timeout).await;
    let attempts = u32::try_from(row.attempts).unwrap_or(u32::MAX);
    let now = now_ms();
    let (record, retry_in) = match &result {
        Ok(code) if (200..300).contains(code) => {
            metrics::histogram!("relay365_delivered_after_seconds")
                .record((now - out.received_at).max(0) as f64 / 1000.0);
            (Attempt::Delivered { status_code: *code }, None)
        }
        _ if attempts >= deps.settings.delivery_max_attempts.max(1) => (
            Attempt::Failed {
                status_code: status_of(&result),
                error: error_of(&result),
            },
            None,
        ),
        _ => {
            let delay = backoff(deps.settings.retry_base, attempts);
            (
                Attempt::Retry {
                    status_code: status_of(&result),
                    error: error_of(&result),
                    next_attempt_at: now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4),
                },
                Some(delay),
            )
        }
    };
    let outcome = match &record {
        Attempt::Delivered { .. } => "delivered",
        Attempt::Retry { .. } => "retried",
        Attempt::Failed { .. } => "failed",
    };
    let class = match status_of(&result) {
        Some(c) => format!("{}xx", c / 100),
        None => "none".to_string(),
    };
    metrics::counter!("relay365_deliveries_total", "outcome" => outcome, "status" => class)
        .increment(1);
    let stats = &deps.delivery_stats;
    match outcome {
        "delivered" => {
            stats
                .processed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        "failed" => {
            stats
                .failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(delivery = %row.id, target = %row.target_id, error = error_of(&result), "delivery failed; retry it by hand");
        }
        _ => {}
    }
    match deliveries::record(&deps.work, &row.id, lease.owner, record, now).await {
        Ok(_) => retry_in,
        Err(e) => {
            // The lease runs out and the delivery is sent again: at least once holds.
            tracing::warn!(delivery = %row.id, error = %e, "recording a delivery attempt failed");
            None
        }
    }
}

/// What an attempt got: the status code and the start of the answer, or why there was none.
type Answer = Result<u16, (Option<u16>, String)>;

fn status_of(r: &Result<u16, (Option<u16>, String)>) -> Option<u16> {
    match r {
        Ok(c) => Some(*c),
        Err((c, _)) => *c,
    }
}

fn error_of(r: &Result<u16, (Option<u16>, String)>) -> &str {
    match r {
        Ok(_) => "",
        Err((_, e)) => e,
    }
}

/// The headers of one attempt, signed now.
pub fn signed_headers(
    secret: &str,
    webhook_id: &str,
    timestamp: i64,
    body: &str,
) -> Result<[(&'static str, String); 3], String> {
    let wh = Webhook::new(secret).map_err(|e| format!("the target's secret is unusable: {e}"))?;
    let signature = wh
        .sign(webhook_id, timestamp, body.as_bytes())
        .map_err(|e| format!("signing failed: {e}"))?;
    Ok([
        (HEADER_WEBHOOK_ID, webhook_id.to_string()),
        (HEADER_WEBHOOK_TIMESTAMP, timestamp.to_string()),
        (HEADER_WEBHOOK_SIGNATURE, signature),
    ])
}

async fn post(deps: &Deps, row: &DeliveryRow, out: &Outgoing, timeout: Duration) -> Answer {
    let Some(body) = out.payload.as_deref() else {
        return Err((
            None,
            "the event has no payload (it was replayed meanwhile)".into(),
        ));
    };
    let headers = signed_headers(
        &out.secret,
        &row.event_id,
        chrono::Utc::now().timestamp(),
        body,
    )
    .map_err(|e| (None, e))?;
    let extra: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&out.headers).unwrap_or_default();
    let mut req = deps
        .http
        .post(&out.url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            reqwest::header::USER_AGENT,
            concat!("relay365/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in &extra {
        req = req.header(name.as_str(), value.as_str());
    }
    for (name, value) in headers {
        req = req.header(name, value);
    }
    let started = Instant::now();
    let res = req.body(body.to_string()).send().await;
    metrics::histogram!("relay365_delivery_request_seconds")
        .record(started.elapsed().as_secs_f64());
    let mut res = match res {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Err((None, format!("no answer within {timeout:?}"))),
        Err(e) => {
            return Err((
                None,
                format!("could not reach the target: {}", without_url(&e)),
            ))
        }
    };
    let code = res.status().as_u16();
    if res.status().is_success() {
        return Ok(code);
    }
    let mut answer = Vec::new();
    while answer.len() < MAX_ANSWER_BYTES {
        match tokio::time::timeout(Duration::from_secs(1), res.chunk()).await {
            Ok(Ok(Some(chunk))) => answer.extend_from_slice(&chunk),
            _ => break,
        }
    }
    answer.truncate(MAX_ANSWER_BYTES);
    let text = String::from_utf8_lossy(&answer);
    let what = if res.status().is_redirection() {
        "redirects are not followed"
    } else {
        "not a 2xx answer"
    };
    Err((Some(code), format!("HTTP {code} ({what}): {text}")))
}

/// A reqwest error's text without its URL (a target URL may carry a token in its query).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "the target");
    }
    text
}
