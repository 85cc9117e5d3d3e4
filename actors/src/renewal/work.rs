//! One job for one subscription, run in a task of the renewal actor's: take the
//! subscription's lease, renew or recreate it at Graph, resync, mark the lifecycle events it
//! answered, give the lease back, and report what is due next.
//!
//! The store decides, not the actor's memory: a renewal that is not due by the row (another
//! instance renewed it meanwhile) is not sent, and a lifecycle event another instance already
//! acted on is dropped. Failures are recorded on the row (`renewal_attempts`, `last_error`,
//! the status, the next attempt as `next_renewal_at`), so a restart resumes them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::resync;
use crate::credential::CredentialError;
use crate::deps::Deps;
use crate::graph::GraphError;
use crate::store::status::SubscriptionStatus;
use crate::store::subscriptions::{self, SubscriptionRow};
use crate::store::{lifecycle, now_ms, StoreError};
use crate::subscription::{self as sub, SubscriptionError};
use crate::util::backoff;

/// The longest wait between two renewal attempts of a failing subscription: it is recreated
/// within this of its credential working again.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(300);

/// What a job is asked to do. Requests for one subscription merge into one job.
#[derive(Debug, Default, Clone)]
pub struct Wants {
    /// Its renewal time came (renew if the store agrees it is due).
    pub renew_due: bool,
    /// Renew now whatever the time (`reauthorizationRequired`).
    pub renew_now: bool,
    /// Create it again at Graph (`subscriptionRemoved`).
    pub recreate: bool,
    /// Resync with delta (`missed`, after a recreate, the periodic backstop).
    pub resync: bool,
    /// Take the delta baseline (just created).
    pub baseline: bool,
    /// Lifecycle events (ids) this job answers; marked done when it succeeded.
    pub lifecycle: Vec<String>,
    /// Failed attempts of the resync so far (for its backoff).
    pub resync_attempts: u32,
    /// The subscription's credential, when the request knows it (a job taken off the
    /// schedule, which may have forgotten the subscription by the time the job starts).
    pub credential: Option<Arc<str>>,
}

impl Wants {
    /// Adds `other`'s requests to these.
    pub fn merge(&mut self, other: Wants) {
        self.renew_due |= other.renew_due;
        self.renew_now |= other.renew_now;
        self.recreate |= other.recreate;
        self.resync |= other.resync;
        self.baseline |= other.baseline;
        self.resync_attempts = self.resync_attempts.max(other.resync_attempts);
        if self.credential.is_none() {
            self.credential = other.credential;
        }
        for id in other.lifecycle {
            if !self.lifecycle.contains(&id) {
                self.lifecycle.push(id);
            }
        }
    }

    /// True when it asks for nothing.
    pub fn is_empty(&self) -> bool {
        !(self.renew_due
            || self.renew_now
            || self.recreate
            || self.resync
            || self.baseline
            || !self.lifecycle.is_empty())
    }

    /// True when it may write the subscription at Graph (counts against the tenant's limit).
    pub fn writes(&self) -> bool {
        self.renew_due || self.renew_now || self.recreate
    }

    /// What a lifecycle event asks for (only to be marked done, for an event relay365 does
    /// not act on).
    pub fn for_lifecycle(event: &str, id: String) -> Wants {
        let mut w = Wants {
            lifecycle: vec![id],
            ..Default::default()
        };
        match event {
            // A PATCH reauthorizes and renews at once; relay365 never sends a reauthorize, so
            // the two never fall within 10 minutes of each other.
            "reauthorizationRequired" => w.renew_now = true,
            "subscriptionRemoved" => {
                w.recreate = true;
                w.resync = true;
            }
            "missed" => w.resync = true,
            _ => {}
        }
        w
    }
}

/// How a job ended.
#[derive(Debug, Default)]
pub struct Finished {
    pub id: Arc<str>,
    /// The subscription is deleted (or removed): forget it.
    pub gone: bool,
    pub credential_id: Option<String>,
    /// When it is next due for renewal (the row's `next_renewal_at`).
    pub renew_at: Option<i64>,
    /// A resync (or baseline) completed.
    pub resynced: bool,
    /// What is left to do, and when to try it again.
    pub retry: Option<(i64, Wants)>,
    pub renewed: bool,
    pub recreated: bool,
    pub failed: bool,
    /// Lifecycle events marked done.
    pub lifecycle_done: usize,
    /// The renewal failed: the status it left the subscription in, and why.
    pub problem: Option<(SubscriptionStatus, String)>,
    /// Lifecycle events this job is through with (done here, or by another instance).
    pub answered: Vec<String>,
    /// When each subscription write this job sent to Graph was answered (Unix ms, rounded
    /// up: never before Graph counted it). One per PATCH and one per create; the rare
    /// extra requests inside one (a 409's DELETE, the limiter's retries) are not seen here
    /// and come out of the window's headroom below Graph's limit.
    pub writes: Vec<i64>,
}

/// Runs one job for subscription `id`.
pub async fn run(deps: &Deps, id: Arc<str>, wants: Wants) -> Finished {
    let now = now_ms();
    let lease_ms = i64::try_from(deps.settings.lease.as_millis()).unwrap_or(60_000);
    let owner = deps.instance.as_ref();
    let mut done = Finished {
        id: id.clone(),
        ..Default::default()
    };
    let row = match subscriptions::claim_lease(&deps.store, &id, owner, now, now + lease_ms).await {
        Ok(Some(row)) => row,
        Ok(None) => {
            // Gone, or another instance holds it: look again when its lease ends.
            match subscriptions::get(&deps.store, &id).await {
                Ok(None) => {
                    answer_gone(deps, &id, &wants, &mut done).await;
                    done.gone = true;
                }
                Ok(Some(row)) => {
                    done.credential_id = Some(row.credential_id.clone());
                    done.renew_at = row.next_renewal_at;
                    // Held by another instance: when its lease ends. Else the row was only
                    // locked for a moment (PostgreSQL skips locked rows): soon.
                    let at = match (row.lease_owner.as_deref(), row.lease_until) {
                        (Some(o), Some(until)) if o != owner && until >= now => until + 1,
                        _ => now + ms(deps.settings.retry_base * 4),
                    };
                    done.retry = Some((at, wants));
                }
                Err(e) => done.retry = Some(store_retry(deps, now, &e, wants)),
            }
            return done;
        }
        Err(e) => {
            done.retry = Some(store_retry(deps, now, &e, wants));
            return done;
        }
    };
    done.credential_id = Some(row.credential_id.clone());
    act(deps, &row, wants, &mut done).await;
    if let Err(e) = subscriptions::release_lease(&deps.store, &id, owner).await {
        // It runs out by itself.
        tracing::warn!(subscription = %id, error = %e, "could not give the renewal lease back");
    }
    done
}

fn store_retry(deps: &Deps, now: i64, e: &StoreError, wants: Wants) -> (i64, Wants) {
    tracing::warn!(error = %e, "renewal: store trouble");
    (now + ms(deps.settings.retry_base * 8), wants)
}

/// Now, for a write Graph just answered: rounded up to the next millisecond, so that the
/// window never lets it go before Graph does.
fn answered_at() -> i64 {
    now_ms() + 1
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

async fn act(deps: &Deps, row: &SubscriptionRow, mut wants: Wants, done: &mut Finished) {
    let now = now_ms();
    if row.status == SubscriptionStatus::Removed {
        answer_gone(deps, &row.id, &wants, done).await;
        done.gone = true;
        return;
    }
    if !wants.lifecycle.is_empty() {
        if let Ok(pending) = lifecycle::still_pending(&deps.store, &wants.lifecycle).await {
            done.answered = wants
                .lifecycle
                .iter()
                .filter(|id| !pending.contains(id))
                .cloned()
                .collect();
            if pending.is_empty() && !wants.renew_due && !wants.baseline {
                // Another instance answered them all.
                done.renew_at = row.next_renewal_at;
                return;
            }
            wants.lifecycle = pending;
        }
    }
    let minutes = sub::DEFAULT_LIFETIME_MINUTES;
    // A row without a renewal time is being created by the API right now: not ours yet.
    let due = row.next_renewal_at.is_some_and(|at| at <= now);
    let mut current = row.clone();
    let mut resync = wants.resync;
    let mut acted = Vec::new();
    if wants.recreate || wants.renew_now || (wants.renew_due && due) {
        let recreate = wants.recreate || row.external_id.is_none();
        let result = match (&row.external_id, recreate) {
            (Some(ext), false) => {
                let patched = sub::patch(deps, row, ext, minutes).await;
                done.writes.push(answered_at());
                match patched {
                    Err(e) if sub::is_gone(&e) => {
                        tracing::info!(subscription = %row.id, "gone at Graph (404 on renewal); creating it again");
                        done.recreated = true;
                        let created = sub::recreate(deps, row, minutes).await;
                        done.writes.push(answered_at());
                        created
                    }
                    other => other,
                }
            }
            _ => {
                done.recreated = true;
                let created = sub::recreate(deps, row, minutes).await;
                done.writes.push(answered_at());
                created
            }
        };
        match result {
            Ok(r) => {
                current = r;
                done.renewed = !done.recreated;
                resync |= done.recreated;
                acted.push(if done.recreated {
                    "recreated"
                } else {
                    "renewed"
                });
            }
            Err(e) => {
                done.recreated = false;
                renewal_failed(deps, row, &e, wants, done).await;
                return;
            }
        }
    }
    done.renew_at = current.next_renewal_at;
    if wants.baseline || resync {
        let res = if wants.baseline && !resync {
            resync::baseline(deps, &current).await
        } else {
            resync::resync(deps, &current).await
        };
        match res {
            Ok(round) => {
                done.resynced = true;
                tracing::info!(subscription = %row.id, events = round.events, pages = round.pages, full = round.full, "resynced");
                acted.push("resynced");
            }
            Err(e) => {
                let attempts = wants.resync_attempts + 1;
                tracing::warn!(subscription = %row.id, error = %e, attempts, "resync failed; will retry");
                let wait = backoff(deps.settings.retry_base, attempts).min(MAX_RETRY_WAIT);
                let left = Wants {
                    resync: true,
                    baseline: wants.baseline && !resync,
                    lifecycle: wants.lifecycle,
                    resync_attempts: attempts,
                    ..Default::default()
                };
                done.failed = true;
                done.retry = Some((now_ms() + ms(wait), left));
                return;
            }
        }
    }
    if !wants.lifecycle.is_empty() {
        let note = json!({"acted": acted}).to_string();
        match lifecycle::done(&deps.store, &wants.lifecycle, &note, now_ms()).await {
            Ok(()) => {
                done.lifecycle_done = wants.lifecycle.len();
                done.answered.extend(wants.lifecycle);
            }
            Err(e) => {
                // Acting again is harmless (a renew, a resync that dedupes).
                tracing::warn!(subscription = %row.id, error = %e, "could not mark lifecycle events done");
                done.retry = Some((
                    now_ms() + ms(deps.settings.retry_base * 8),
                    Wants {
                        lifecycle: wants.lifecycle,
                        ..Default::default()
                    },
                ));
            }
        }
    }
}

/// Marks the lifecycle events of a subscription that is gone done: there is nothing left to
/// act on, and pending they would stay for ever. Should the mark fail, they are read again
/// with the next lifecycle event.
async fn answer_gone(deps: &Deps, id: &str, wants: &Wants, done: &mut Finished) {
    if wants.lifecycle.is_empty() {
        return;
    }
    let note = json!({"acted": "none: the subscription is deleted"}).to_string();
    match lifecycle::done(&deps.store, &wants.lifecycle, &note, now_ms()).await {
        Ok(()) => {
            done.lifecycle_done = wants.lifecycle.len();
            done.answered.extend(wants.lifecycle.iter().cloned());
        }
        Err(e) => {
            tracing::warn!(subscription = %id, error = %e, "could not mark lifecycle events done");
            done.answered.extend(wants.lifecycle.iter().cloned());
        }
    }
}

/// Records a failed renewal or recreation and when to try again: `error` while the
/// credential cannot get a token (a person must fix it), `expired` once Graph's expiry has
/// passed, else the status it had.
async fn renewal_failed(
    deps: &Deps,
    row: &SubscriptionRow,
    e: &SubscriptionError,
    wants: Wants,
    done: &mut Finished,
) {
    let now = now_ms();
    let attempts = u32::try_from(row.renewal_attempts + 1).unwrap_or(u32::MAX);
    let wait = backoff(deps.settings.retry_base, attempts).min(MAX_RETRY_WAIT);
    let at = now + ms(wait);
    let status = if credential_broken(e) {
        SubscriptionStatus::Error
    } else if row.expires_at.is_none_or(|x| x <= now) {
        SubscriptionStatus::Expired
    } else {
        row.status
    };
    let why = e.to_string();
    tracing::warn!(subscription = %row.id, error = %why, attempts, %status, "renewal failed; will retry");
    if let Err(se) = subscriptions::renewal_failed(&deps.store, &row.id, status, &why, at).await {
        tracing::warn!(subscription = %row.id, error = %se, "could not record a failed renewal");
    }
    done.failed = true;
    done.problem = Some((status, why));
    done.renew_at = Some(at);
    // A recreate that failed is retried as one; the timer's renewal is the retry itself.
    let mut left = wants;
    left.renew_due = true;
    done.retry = Some((at, left));
}

/// True when the credential itself cannot be used: no token, or Graph refused a fresh one.
fn credential_broken(e: &SubscriptionError) -> bool {
    matches!(
        e,
        SubscriptionError::Credential(
            CredentialError::Token(_) | CredentialError::Graph(GraphError::Unauthorized { .. })
        )
    )
}
