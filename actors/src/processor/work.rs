//! One event's way through a processor: claimed (with the others its worker starts at the same
//! turn, [`super::writes::claim`]), its message fetched through its credential, normalized and
//! enriched ([`run`]), then completed with its deliveries in one transaction (with the others
//! that finished meanwhile, [`complete`]), or put back with the reason.
//!
//! Which failures wait and which end an event is decided in one place ([`classify`]): Graph
//! throttling, 5xx, timeouts and network errors are retried with backoff and count as
//! attempts; a token source that is merely down (or a credential actor restarting) makes the
//! event wait without spending an attempt; a 404 skips it; a 403, a 401 after a fresh token,
//! or a token source that says the credential is not connected fails it at once, with what a
//! person should do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::normalize::{email_input, event_type, normalize_message, Payload, PayloadMessage};
use crate::credential::{self, CredentialError, GraphSession};
use crate::delivery;
use crate::deps::Deps;
use crate::graph::{Attachment, GraphError, HeldBack, Message};
use crate::primitives::{enrich_input, AttachmentBytes, AttachmentText};
use crate::store::credentials::CREDENTIAL_DELETED;
use crate::store::events::{self, Completion, EventRow, NewDelivery};
use crate::store::status::EventStatus;
use crate::store::targets::TargetRow;
use crate::store::{new_id, now_ms, to_time, StoreError};
use crate::token::TokenError;
use crate::util::backoff;

/// The largest file attachment whose text is extracted (Graph's own limit for attaching a
/// file in one request is 3 MiB, for an upload session 150 MiB; 25 MiB covers what mail
/// carries without letting one message hold hundreds of megabytes in memory).
pub const MAX_ATTACHMENT_BYTES: i64 = 25 * 1024 * 1024;

/// How an attempt ended.
#[derive(Debug)]
enum Outcome {
    /// Succeeded: to be completed with this payload and these deliveries.
    Ready(Completion, Arc<Vec<TargetRow>>),
    /// Done: completed with its payload, or skipped/failed with a reason.
    Final(EventStatus),
    /// Try again later.
    Retry {
        error: String,
        /// The attempt does not count (the failure was not the event's).
        refund: bool,
        /// At least this long (a `Retry-After`), else the backoff.
        wait: Option<Duration>,
    },
    /// Another processor holds the event, or it needs nothing.
    Nothing,
    /// Another instance holds the event's mailbox: back to the store, due now, attempt not
    /// counted, for that instance to take.
    Elsewhere,
}

/// What an attempt came to.
pub enum Step {
    /// It succeeded: to be completed, with its payload and its deliveries ([`complete`]).
    Complete(Box<Ready>),
    /// It ended otherwise, and that is recorded: when the event is due again, if it is.
    Settled(Option<Duration>),
}

/// A successful attempt, waiting for its completing write.
pub struct Ready {
    row: EventRow,
    completion: Completion,
    /// The targets its deliveries were matched against.
    targets: Arc<Vec<TargetRow>>,
}

/// A throttle of the mailbox with at most this much left is waited out within the attempt (the
/// limiter does it); a longer one sends the event back to the store until it ends.
const WAIT_OUT_THROTTLE: Duration = Duration::from_secs(2);

/// How long Graph still throttles the credential's mailbox, if it does.
async fn throttled_for(deps: &Deps, credential_id: Option<&str>) -> Option<Duration> {
    let session = credential::session(deps, credential_id?).await.ok()?;
    session.limiter.throttled_for()
}

/// How long one attempt may take: within the lease, so that no other processor can take the
/// event while this one still works on it.
fn budget(deps: &Deps) -> Duration {
    deps.settings.lease / 2
}

/// Whether the claim on `row` still holds long enough for an attempt started now.
pub fn holds_for(deps: &Deps, row: &EventRow) -> bool {
    let need = i64::try_from(budget(deps).as_millis()).unwrap_or(i64::MAX / 4);
    row.lease_until
        .is_some_and(|until| until > now_ms().saturating_add(need))
}

/// Runs one attempt of a claimed event, up to the payload and its deliveries.
pub async fn run(deps: &Deps, row: EventRow) -> Step {
    if !deps
        .mailboxes
        .holds(row.credential_id.as_deref().unwrap_or(""))
    {
        return Step::Settled(settle(deps, &row, Outcome::Elsewhere).await);
    }
    // A claim counts the attempt, and only an attempt that ends checks the count: one that
    // never ended (the process died in it, say on a message that kills it) would otherwise
    // be taken up again, and die again, for ever.
    let max = deps.settings.max_retries.max(1);
    if u32::try_from(row.attempts).unwrap_or(u32::MAX) > max {
        let why = format!(
            "gave up after {max} attempts: the last never ended (the process stopped during it)"
        );
        let outcome = fail(deps, &row, &why).await;
        return Step::Settled(settle(deps, &row, outcome).await);
    }
    let started = Instant::now();
    let budget = budget(deps);
    let held_back = HeldBack::default();
    let work = held_back.watch(attempt(deps, &row));
    let outcome = match tokio::time::timeout(budget, work).await {
        Ok(o) => o,
        // Most likely waiting out Graph's throttling of the mailbox (the limiter honours a
        // `Retry-After` of up to 5 minutes): the next attempt comes once it ends, not after
        // a backoff of seconds that would only wait on the same throttle. Time spent waiting
        // on a throttle spends no attempt, as when the event waits for it in the store; an
        // attempt that ran out of time on anything else spends one.
        Err(_) => {
            let wait = throttled_for(deps, row.credential_id.as_deref()).await;
            let refund = wait.is_some() && held_back.now();
            Outcome::Retry {
                error: match wait {
                    Some(left) if refund => format!(
                        "processing took longer than {budget:?}: Graph throttles this mailbox for {left:?} more; waiting"
                    ),
                    Some(left) => format!(
                        "processing took longer than {budget:?} (Graph throttles this mailbox for {left:?} more)"
                    ),
                    None => format!("processing took longer than {budget:?}"),
                },
                refund,
                wait,
            }
        }
    };
    metrics::histogram!("relay365_event_processing_seconds")
        .record(started.elapsed().as_secs_f64());
    match outcome {
        Outcome::Ready(completion, targets) => Step::Complete(Box::new(Ready {
            row,
            completion,
            targets,
        })),
        other => Step::Settled(settle(deps, &row, other).await),
    }
}

/// Completes events whose attempts succeeded, in one transaction, and hands their deliveries
/// to the delivery pool, claimed already and with the payload in memory. Answers, for each
/// (key, event), when it is due again, if it is.
pub async fn complete(
    deps: &Deps,
    ready: Vec<(String, Box<Ready>)>,
) -> Vec<(String, String, Option<Duration>)> {
    let completions: Vec<Completion> = ready.iter().map(|(_, r)| r.completion.clone()).collect();
    let written = deps
        .writes
        .completions
        .submit(completions)
        .await
        .unwrap_or_else(|| Err("the completing write failed".into()));
    let mut out = Vec::with_capacity(ready.len());
    match written {
        Ok((send, results)) => {
            let mut handed = Vec::new();
            for ((key, r), created) in ready.into_iter().zip(results) {
                let Ready {
                    row,
                    completion,
                    targets,
                } = *r;
                match created {
                    Some(created) => {
                        let payload = completion.payload;
                        for (id, target_id) in created {
                            let Some(t) = targets.iter().find(|t| t.id == target_id) else {
                                continue;
                            };
                            handed.push(delivery::Claimed {
                                id,
                                event_id: row.id.clone(),
                                attempts: 1,
                                lease_until: send.now + send.ms,
                                payload: Some(payload.clone()),
                                target_id,
                                url: t.url.clone(),
                                secret: t.secret.clone(),
                                headers: t.headers.clone(),
                                received_at: row.received_at,
                            });
                        }
                        settle(deps, &row, Outcome::Final(EventStatus::Completed)).await;
                    }
                    None => {
                        tracing::info!(event = %row.id, "lease lost before completing; another processor has it");
                    }
                }
                out.push((key, row.id, None));
            }
            delivery::hand(deps, handed);
        }
        Err(e) => {
            for (key, r) in ready {
                let retry_in = settle(deps, &r.row, store_trouble(e.to_string())).await;
                out.push((key, r.row.id, retry_in));
            }
        }
    }
    out
}

/// Records an outcome that is not a completion. Returns the retry delay, if any.
async fn settle(deps: &Deps, row: &EventRow, outcome: Outcome) -> Option<Duration> {
    let owner = deps.instance.as_ref();
    let stats = &deps.processor_stats;
    let result: Result<Option<Duration>, StoreError> = async {
        match outcome {
            Outcome::Final(status) => {
                count(status.as_str());
                stats
                    .processed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if status == EventStatus::Failed {
                    stats
                        .failed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(None)
            }
            Outcome::Nothing | Outcome::Ready(..) => Ok(None),
            Outcome::Elsewhere => {
                let why = "another instance holds this mailbox now";
                events::retry_later(&deps.work, &row.id, owner, now_ms(), why, true).await?;
                Ok(None)
            }
            Outcome::Retry {
                error,
                refund,
                wait,
            } => {
                let attempts = u32::try_from(row.attempts).unwrap_or(u32::MAX);
                if !refund && attempts >= deps.settings.max_retries.max(1) {
                    let why = format!("gave up after {attempts} attempts: {error}");
                    events::finish(
                        &deps.work,
                        &row.id,
                        owner,
                        EventStatus::Failed,
                        &why,
                        now_ms(),
                    )
                    .await?;
                    tracing::warn!(event = %row.id, error = %why, "event failed");
                    count("failed");
                    stats
                        .failed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(None);
                }
                let delay = if refund {
                    (deps.settings.retry_base * 8).min(Duration::from_secs(30))
                } else {
                    backoff(deps.settings.retry_base, attempts)
                };
                let delay = wait.map_or(delay, |w| w.max(delay));
                let at = now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4);
                events::retry_later(&deps.work, &row.id, owner, at, &error, refund).await?;
                tracing::debug!(event = %row.id, ?delay, error = %error, "event will be retried");
                count("retried");
                Ok(Some(delay))
            }
        }
    }
    .await;
    result.unwrap_or_else(|e| {
        // The lease runs out and the event is claimed again: nothing is lost.
        tracing::warn!(event = %row.id, error = %e, "recording an event's outcome failed");
        None
    })
}

fn count(outcome: &'static str) {
    metrics::counter!("relay365_events_total", "outcome" => outcome).increment(1);
}

/// The attempt itself, up to and including the completing transaction.
async fn attempt(deps: &Deps, row: &EventRow) -> Outcome {
    let event_type = event_type(&row.change_type);
    let Some(credential_id) = row.credential_id.as_deref() else {
        return fail(
            deps,
            row,
            "the event has no credential (its subscription was deleted)",
        )
        .await;
    };
    let (fetched, attachments, primitives) = if row.change_type == "deleted" {
        (None, None, Value::Null)
    } else {
        let Some(message_id) = row.resource_id.as_deref() else {
            return fail(
                deps,
                row,
                "the notification names no message (resourceData.id)",
            )
            .await;
        };
        let session = match credential::session(deps, credential_id).await {
            Ok(s) => s,
            Err(e) => return classify(deps, row, e).await,
        };
        // Throttled for a while yet (another event's request had a 429): the event waits in
        // the store for the throttle to end, without spending an attempt or holding a task.
        if let Some(left) = session
            .limiter
            .throttled_for()
            .filter(|left| *left > WAIT_OUT_THROTTLE)
        {
            return Outcome::Retry {
                error: format!("Graph throttles this mailbox for {left:?} more; waiting"),
                refund: true,
                wait: Some(left),
            };
        }
        let fetched = match fetch(&session, message_id).await {
            Ok(f) => f,
            Err(e) => return classify(deps, row, e).await,
        };
        let (message, files, skipped) = fetched;
        let enrichment = enrich_input(email_input(&message), &files).await;
        let attachments = message.has_attachments.unwrap_or(false).then(|| {
            let mut all = enrichment.attachments;
            all.extend(skipped);
            all
        });
        (Some(message), attachments, enrichment.primitives)
    };
    let processed_at = now_ms();
    let payload = Payload {
        attachments: attachments.map(|list| serde_json::to_value(list).unwrap_or(Value::Null)),
        credential_id: row.credential_id.as_deref(),
        id: &row.id,
        message: match &fetched {
            Some(m) => PayloadMessage::Fetched(normalize_message(m)),
            None => PayloadMessage::Deleted {
                id: row.resource_id.as_deref().unwrap_or_default(),
            },
        },
        primitives: &primitives,
        processed_at: to_time(processed_at),
        provider: "ms365",
        raw_notification: serde_json::from_str(&row.raw).ok(),
        received_at: to_time(row.received_at),
        subscription_id: row.subscription_id.as_deref(),
        kind: &event_type,
    };
    let payload = match serde_json::to_string(&payload) {
        Ok(p) => p,
        Err(e) => return fail(deps, row, &format!("the payload could not be written: {e}")).await,
    };
    let targets = match deps.targets.get(&deps.work).await {
        Ok(t) => t,
        Err(e) => return store_trouble(e),
    };
    let deliveries: Vec<NewDelivery> = targets
        .iter()
        .filter(|t| t.matches(row.credential_id.as_deref(), &event_type))
        .map(|t| NewDelivery {
            id: new_id(),
            target_id: t.id.clone(),
        })
        .collect();
    Outcome::Ready(
        Completion {
            id: row.id.clone(),
            payload: Arc::from(payload),
            processed_at,
            deliveries,
        },
        targets,
    )
}

fn store_trouble(e: impl std::fmt::Display) -> Outcome {
    Outcome::Retry {
        error: format!("store: {e}"),
        refund: true,
        wait: None,
    }
}

async fn fail(deps: &Deps, row: &EventRow, why: &str) -> Outcome {
    end(deps, row, EventStatus::Failed, why).await
}

async fn end(deps: &Deps, row: &EventRow, status: EventStatus, why: &str) -> Outcome {
    let owner = deps.instance.as_ref();
    match events::finish(&deps.work, &row.id, owner, status, why, now_ms()).await {
        Ok(true) => {
            if status == EventStatus::Failed {
                tracing::warn!(event = %row.id, error = why, "event failed");
            }
            Outcome::Final(status)
        }
        Ok(false) => Outcome::Nothing,
        Err(e) => store_trouble(e),
    }
}

/// Decides what a failed fetch means for the event.
async fn classify(deps: &Deps, row: &EventRow, err: CredentialError) -> Outcome {
    let transient = |error: String, refund: bool, wait: Option<Duration>| Outcome::Retry {
        error,
        refund,
        wait,
    };
    match err {
        CredentialError::Graph(GraphError::NotFound { .. }) => {
            end(
                deps,
                row,
                EventStatus::Skipped,
                "the message is gone at Graph (404: deleted or moved before it was fetched)",
            )
            .await
        }
        CredentialError::Graph(GraphError::Throttled { retry_after, .. }) => transient(
            "graph: throttled (429/503) on every attempt".into(),
            false,
            retry_after,
        ),
        CredentialError::Graph(
            e @ (GraphError::Transient { .. } | GraphError::InvalidResponse(_)),
        ) => transient(e.to_string(), false, None),
        CredentialError::Graph(e @ GraphError::Unauthorized { .. }) => {
            let why = format!(
                "Graph refused the credential's token even after a refresh ({e}); reconnect the credential or check the app's consent"
            );
            fail(deps, row, &why).await
        }
        CredentialError::Graph(GraphError::Other {
            status: 403,
            code,
            message,
        }) => {
            let why = format!(
                "Graph denied access to the message (403 {code}: {message}); grant the app Mail.Read (or Mail.ReadBasic) for this mailbox"
            );
            fail(deps, row, &why).await
        }
        CredentialError::Graph(GraphError::NotHeld) => Outcome::Elsewhere,
        CredentialError::Graph(e) => fail(deps, row, &e.to_string()).await,
        CredentialError::Token(e @ (TokenError::Transient(_) | TokenError::InvalidResponse(_))) => {
            transient(
                format!("no token yet (the token source is unavailable): {e}"),
                true,
                None,
            )
        }
        CredentialError::Token(e) => fail(deps, row, &e.to_string()).await,
        CredentialError::Deleted(_) => fail(deps, row, CREDENTIAL_DELETED).await,
        CredentialError::Unavailable(_) => transient(
            "the credential's actor is restarting or parked; waiting for it".into(),
            true,
            None,
        ),
    }
}

type Fetched = (Message, Vec<AttachmentBytes>, Vec<AttachmentText>);

/// The message and, when it has attachments, the bytes of those whose text can be extracted
/// (and an entry without text for the others).
async fn fetch(session: &GraphSession, message_id: &str) -> Result<Fetched, CredentialError> {
    let message = timed(session, |c, t, m| async move {
        c.get_message(&t, m.as_deref(), message_id).await
    })
    .await?;
    if !message.has_attachments.unwrap_or(false) {
        return Ok((message, Vec::new(), Vec::new()));
    }
    let listed = timed(session, |c, t, m| async move {
        c.list_attachments(&t, m.as_deref(), message_id).await
    })
    .await?;
    let (files, skipped) = split_attachments(listed);
    Ok((message, files, skipped))
}

/// One Graph call through the session, with its latency recorded.
async fn timed<T, F, Fut>(session: &GraphSession, f: F) -> Result<T, CredentialError>
where
    F: Fn(crate::graph::GraphClient, String, Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<T, GraphError>>,
{
    let mailbox = session.mailbox.clone();
    session
        .call(|c, t| {
            let fut = f(c, t, mailbox.clone());
            async move {
                let started = Instant::now();
                let out = fut.await;
                metrics::histogram!("relay365_graph_request_seconds")
                    .record(started.elapsed().as_secs_f64());
                out
            }
        })
        .await
}

/// File attachments up to [`MAX_ATTACHMENT_BYTES`] with content go to extraction; the rest
/// are listed without text, saying why.
fn split_attachments(listed: Vec<Attachment>) -> (Vec<AttachmentBytes>, Vec<AttachmentText>) {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for a in listed {
        let name = a.name.clone().unwrap_or_default();
        let content_type = a
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into());
        let size = a.size.unwrap_or(0);
        let why = if !a.is_file() {
            Some("not_a_file")
        } else if size > MAX_ATTACHMENT_BYTES {
            Some("too_large")
        } else {
            None
        };
        let decoded = match why {
            None => match a.decode_content() {
                Some(Ok(bytes)) if bytes.len() as i64 <= MAX_ATTACHMENT_BYTES => Ok(bytes),
                Some(Ok(_)) => Err("too_large"),
                Some(Err(_)) => Err("broken_document"),
                None => Err("no_content"),
            },
            Some(w) => Err(w),
        };
        match decoded {
            Ok(bytes) => files.push(AttachmentBytes {
                id: a.id,
                name,
                content_type,
                bytes,
            }),
            Err(code) => skipped.push(AttachmentText {
                id: a.id,
                name,
                content_type,
                size: u64::try_from(size).unwrap_or(0),
                text: None,
                text_truncated: false,
                text_error: Some(code.to_string()),
            }),
        }
    }
    (files, skipped)
}
