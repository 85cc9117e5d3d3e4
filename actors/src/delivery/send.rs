//! One delivery attempt: claimed (with the others its worker starts at the same turn,
//! [`claim`]; a delivery the processor just created comes claimed already, with the payload in
//! memory), the event's body signed with the target's secret (Standard Webhooks, through the
//! `standardwebhooks` crate, the specification's own implementation), POSTed with the target's
//! headers ([`post`]), and the answer recorded with the others that came meanwhile
//! ([`record`]).
//!
//! Only a 2xx answer within the timeout is a success; anything else, 3xx included (redirects
//! are never followed: the body and the target's headers must not go to another host), is
//! retried with backoff until `RELAY365_DELIVERY_MAX_ATTEMPTS`. The same `webhook-id` (the
//! event id) goes with every attempt, so the receiver can drop repeats. At most
//! [`MAX_ANSWER_BYTES`] of the answer is kept; the secret is never stored with it or logged.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use standardwebhooks::{
    Webhook, HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP,
};

use crate::deps::Deps;
use crate::group_commit::GroupCommit;
use crate::store::deliveries::{self, Answered, Attempt, DeliveryRow, Outgoing};
use crate::store::lane::{on_lane, timed_out, Lane, STATEMENT_TIMEOUT};
use crate::store::status::DeliveryStatus;
use crate::store::{now_ms, Store};
use crate::util::backoff;

/// How long a target has to answer (SPEC §4).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a target's answer that is stored with the delivery.
pub const MAX_ANSWER_BYTES: usize = 1024;

/// A delivery claimed for an attempt, with all the attempt needs.
#[derive(Clone)]
pub struct Claimed {
    pub id: String,
    pub event_id: String,
    pub target_id: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
    /// When the claim runs out.
    pub lease_until: i64,
    /// The SPEC §4 body; `None` when the event has none (replayed meanwhile).
    pub payload: Option<Arc<str>>,
    pub url: String,
    /// Secret: never log.
    pub secret: String,
    pub headers: String,
    /// When the notification was received (for the end-to-end latency).
    pub received_at: i64,
}

impl Claimed {
    fn of(row: DeliveryRow, out: Outgoing) -> Claimed {
        Claimed {
            id: row.id,
            event_id: row.event_id,
            target_id: row.target_id,
            attempts: row.attempts,
            lease_until: row.lease_until.unwrap_or(0),
            payload: out.payload.map(Arc::from),
            url: out.url,
            secret: out.secret,
            headers: out.headers,
            received_at: out.received_at,
        }
    }

    /// Whether the claim still holds long enough for an attempt started now.
    pub fn holds_for(&self, deps: &Deps) -> bool {
        let need = i64::try_from(timeout(deps).as_millis()).unwrap_or(i64::MAX / 4);
        self.lease_until > now_ms().saturating_add(need)
    }
}

/// How an attempt ended, to be recorded.
pub struct Ended {
    pub id: String,
    pub target_id: String,
    /// The claim it was sent under.
    lease_until: i64,
    status: DeliveryStatus,
    status_code: Option<u16>,
    error: String,
    next_attempt_at: Option<i64>,
    at: i64,
    /// When it is due again, if it is.
    pub retry_in: Option<Duration>,
}

impl Ended {
    fn answered(&self) -> Answered<'_> {
        Answered {
            id: &self.id,
            lease_until: self.lease_until,
            attempt: self.attempt(),
            at: self.at,
        }
    }

    fn attempt(&self) -> Attempt<'_> {
        match self.status {
            DeliveryStatus::Delivered => Attempt::Delivered {
                status_code: self.status_code.unwrap_or(200),
            },
            DeliveryStatus::Pending => Attempt::Retry {
                status_code: self.status_code,
                error: &self.error,
                next_attempt_at: self.next_attempt_at.unwrap_or(self.at),
            },
            DeliveryStatus::Failed => Attempt::Failed {
                status_code: self.status_code,
                error: &self.error,
            },
        }
    }
}

fn timeout(deps: &Deps) -> Duration {
    TIMEOUT.min(deps.settings.lease / 2)
}

/// Claims those of `ids` that are claimable, in one statement, bounded like every write of the
/// pools (a connection gone silent must not stop the worker's claims for TCP's quarter of an
/// hour).
///
/// `held`: those of `ids` handed to the worker claimed and never sent (see
/// [`deliveries::claim_many`]).
pub async fn claim(deps: &Deps, ids: &[&str], held: &[&str]) -> Result<Vec<Claimed>, String> {
    let claim = deliveries::claim_many(&deps.work, ids, held, deps.lease());
    match tokio::time::timeout(STATEMENT_TIMEOUT, claim).await {
        Ok(Ok(found)) => Ok(found.into_iter().map(|(r, o)| Claimed::of(r, o)).collect()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(timed_out("claiming deliveries", STATEMENT_TIMEOUT).to_string()),
    }
}

/// Sends one claimed delivery and decides what comes of its answer (not yet recorded).
pub async fn post(deps: &Deps, d: &Claimed) -> Ended {
    let result = send(deps, d, timeout(deps)).await;
    let attempts = u32::try_from(d.attempts).unwrap_or(u32::MAX);
    let now = now_ms();
    let (status, next_attempt_at, retry_in) = match &result {
        Ok(code) if (200..300).contains(code) => {
            metrics::histogram!("relay365_delivered_after_seconds")
                .record((now - d.received_at).max(0) as f64 / 1000.0);
            (DeliveryStatus::Delivered, None, None)
        }
        _ if attempts >= deps.settings.delivery_max_attempts.max(1) => {
            (DeliveryStatus::Failed, None, None)
        }
        _ => {
            let delay = backoff(deps.settings.retry_base, attempts);
            let at = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4);
            (DeliveryStatus::Pending, Some(at), Some(delay))
        }
    };
    let outcome = match status {
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Pending => "retried",
        DeliveryStatus::Failed => "failed",
    };
    let class = match status_of(&result) {
        Some(c) => format!("{}xx", c / 100),
        None => "none".to_string(),
    };
    metrics::counter!("relay365_deliveries_total", "outcome" => outcome, "status" => class)
        .increment(1);
    let stats = &deps.delivery_stats;
    match status {
        DeliveryStatus::Delivered => {
            stats.processed.fetch_add(1, Ordering::Relaxed);
        }
        DeliveryStatus::Failed => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(delivery = %d.id, target = %d.target_id, error = error_of(&result), "delivery failed; retry it by hand");
        }
        DeliveryStatus::Pending => {}
    }
    Ended {
        id: d.id.clone(),
        target_id: d.target_id.clone(),
        lease_until: d.lease_until,
        status,
        status_code: status_of(&result),
        error: error_of(&result).to_string(),
        next_attempt_at,
        at: now,
        retry_in,
    }
}

/// Records how attempts ended, in one statement. Answers, for each (target, delivery), when it
/// is due again, if it is. A write that fails leaves the leases to run out: the deliveries are
/// sent again (at least once holds). An answer not recorded because its claim was no longer
/// held (the delivery was made pending again meanwhile) asks for no retry: whoever holds it now
/// sends it.
pub async fn record(deps: &Deps, ended: Vec<Ended>) -> Vec<(String, String, Option<Duration>)> {
    let keys: Vec<(String, String, Option<Duration>)> = ended
        .iter()
        .map(|e| (e.target_id.clone(), e.id.clone(), e.retry_in))
        .collect();
    let written = deps
        .writes
        .delivery_records
        .submit(ended)
        .await
        .unwrap_or_else(|| Err("the recording write failed".into()));
    let held = match written {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(deliveries = keys.len(), error = %e, "recording delivery attempts failed");
            Vec::new()
        }
    };
    keys.into_iter()
        .enumerate()
        .map(|(i, (target, id, retry_in))| {
            let held = held.get(i).copied().unwrap_or(false);
            (target, id, retry_in.filter(|_| held))
        })
        .collect()
}

/// How long a write of delivery answers that starts when none is in flight waits for the
/// answers of the same moment. The answer is recorded after the target has the event, so no
/// one waits for this write but the delivery's own lease: it can wait longer than a
/// completion does, and at a trickle several answers then share one statement.
pub const RECORDS_LINGER: Duration = Duration::from_millis(10);

/// The pool-wide group commit of delivery answers: each request is a worker's ended attempts,
/// each answer whether each was still held (see [`deliveries::record_many`]).
pub fn records_writer(work: Store, owner: Arc<str>) -> RecordsWriter {
    let lane = Arc::new(tokio::sync::Mutex::new(Lane::new(&work)));
    GroupCommit::new(move |requests: Vec<Vec<Ended>>| {
        let (lane, owner) = (lane.clone(), owner.clone());
        async move {
            let attempts: Vec<Answered<'_>> =
                requests.iter().flatten().map(Ended::answered).collect();
            let mut lane = lane.lock().await;
            match on_lane!(lane, |on| deliveries::record_many(on, &owner, &attempts)) {
                Ok(held) => {
                    let mut held = held.into_iter();
                    requests
                        .iter()
                        .map(|r| Ok(held.by_ref().take(r.len()).collect()))
                        .collect()
                }
                Err(e) => {
                    let e = e.to_string();
                    requests.iter().map(|_| Err(e.clone())).collect()
                }
            }
        }
    })
    .lingering(RECORDS_LINGER)
}

/// See [`records_writer`].
pub type RecordsWriter = GroupCommit<Vec<Ended>, Result<Vec<bool>, String>>;

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

async fn send(deps: &Deps, out: &Claimed, timeout: Duration) -> Answer {
    let Some(body) = out.payload.as_deref() else {
        return Err((
            None,
            "the event has no payload (it was replayed meanwhile)".into(),
        ));
    };
    let headers = signed_headers(
        &out.secret,
        &out.event_id,
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
    let text = answer_text(&answer);
    let what = if res.status().is_redirection() {
        "redirects are not followed"
    } else {
        "not a 2xx answer"
    };
    Err((Some(code), format!("HTTP {code} ({what}): {text}")))
}

/// At most [`MAX_ANSWER_BYTES`] of an answer as text. Cut after the conversion: each byte that
/// is not UTF-8 becomes a three-byte replacement character.
fn answer_text(answer: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(&answer[..answer.len().min(MAX_ANSWER_BYTES)]);
    if text.len() > MAX_ANSWER_BYTES {
        let mut end = MAX_ANSWER_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.to_mut().truncate(end);
    }
    text.into_owned()
}

/// A reqwest error's text without its URL (a target URL may carry a token in its query).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "the target");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_a_kilobyte_of_the_answer_is_kept_whatever_its_bytes() {
        assert_eq!(answer_text(b"not found"), "not found");
        assert_eq!(answer_text(&[b'a'; 3000]).len(), MAX_ANSWER_BYTES);
        // Not UTF-8: every byte would become a three-byte replacement character.
        let binary = answer_text(&[0xFF; 1024]);
        assert!(binary.len() <= MAX_ANSWER_BYTES, "{}", binary.len());
        assert!(binary.starts_with('\u{FFFD}'));
        // A cut never splits a character.
        let text = answer_text("é".repeat(1000).as_bytes());
        assert!(text.len() <= MAX_ANSWER_BYTES && text.chars().all(|c| c == 'é'));
    }
}
