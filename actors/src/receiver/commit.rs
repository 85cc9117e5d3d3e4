//! The commit path: a batch of queued requests written in one transaction on the receiver's
//! [`Writer`], on a task of its own, which answers each request as soon as the store has its
//! items and then gives the writer back ([`ReceiverMsg::Committed`]); afterwards the
//! subscriptions notified get their `last_notification_at` (at most once a second each, in one
//! statement a second for all of them).
//!
//! Apart from the actor in `mod.rs` because this is the part that does I/O (on tasks, never in
//! `handle`) and the part the benchmarks measure.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ractor::ActorRef;

use super::{
    IngestError, IngestOutcome, IngestReply, Receiver, ReceiverMsg, ReceiverState, ReceiverStats,
    MAX_BATCH_ITEMS,
};
use crate::deps::Deps;
use crate::store::events::{Inserted, NewEvent, Writer};
use crate::store::subscriptions;
use crate::store::{now_ms, StoreError};
use crate::util::{spawn_guarded, spawn_reply};

/// A finished commit, as reported by its task.
pub struct Commit {
    /// Whether the items are stored (their requests have been answered either way).
    ok: bool,
    /// The writer it used, given back.
    writer: Writer,
    /// Our ids of the subscriptions notified in this batch.
    subscriptions: HashSet<String>,
}

/// Counts a finished commit and answers each request in it, from the commit's own task: the
/// answers do not wait for the actor's turn. Then hands the new events to the processors.
/// Returns whether the items are stored.
fn answer(
    stats: &ReceiverStats,
    deps: &Deps,
    result: Result<Vec<Inserted>, StoreError>,
    items: usize,
    waiters: Vec<(IngestReply, IngestOutcome)>,
) -> bool {
    match result {
        Ok(inserted) => {
            let new = inserted.len();
            let dups = items.saturating_sub(new);
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats.accepted.fetch_add(new as u64, Ordering::Relaxed);
            stats.duplicates.fetch_add(dups as u64, Ordering::Relaxed);
            metrics::counter!("relay365_notifications_accepted_total").increment(new as u64);
            metrics::counter!("relay365_notifications_duplicates_total").increment(dups as u64);
            metrics::counter!("relay365_receiver_commits_total", "result" => "ok").increment(1);
            metrics::histogram!("relay365_receiver_batch_items").record(items as f64);
            for (reply, outcome) in waiters {
                let _ = reply.send(Ok(outcome));
            }
            if !inserted.is_empty() {
                crate::processor::dispatch(deps, inserted);
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, items, "commit of notifications failed");
            stats.failed_batches.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("relay365_receiver_commits_total", "result" => "error").increment(1);
            for (reply, _) in waiters {
                let _ = reply.send(Err(IngestError::Store));
            }
            false
        }
    }
}

/// `last_notification_at` is noted at most this often per subscription, and what was noted is
/// written this long after the first of it.
const TOUCH_EVERY_MS: i64 = 1_000;

/// What waits for the next write of `last_notification_at`.
#[derive(Default)]
pub struct Touches {
    ids: HashSet<String>,
    at: i64,
    due: bool,
}

impl Receiver {
    /// Starts a commit of everything that waits (up to [`MAX_BATCH_ITEMS`]) when none runs:
    /// one large commit costs the database less than several small ones.
    pub(super) fn start_commits(&self, myself: &ActorRef<ReceiverMsg>, st: &mut ReceiverState) {
        while !st.pending.is_empty() && st.writer.is_some() {
            let mut batch: Vec<NewEvent> = Vec::new();
            let mut waiters = Vec::new();
            let mut subs = HashSet::new();
            while let Some(w) = st.pending.front() {
                if !batch.is_empty() && batch.len() + w.events.len() > MAX_BATCH_ITEMS {
                    break;
                }
                let Some(w) = st.pending.pop_front() else {
                    break;
                };
                st.pending_items -= w.events.len();
                if w.reply.is_closed() {
                    // Its caller answered 503 already: keep "503 ⇒ nothing written".
                    metrics::counter!("relay365_receiver_abandoned_total")
                        .increment(w.events.len() as u64);
                    continue;
                }
                let outcome = IngestOutcome {
                    accepted: w.events.len(),
                    dropped: w.dropped,
                };
                for e in &w.events {
                    if let Some(s) = &e.subscription_id {
                        if !subs.contains(s) {
                            subs.insert(s.clone());
                        }
                    }
                }
                batch.extend(w.events);
                waiters.push((w.reply, outcome));
            }
            self.stats
                .pending
                .store(st.pending_items as u64, Ordering::Relaxed);
            if waiters.is_empty() {
                continue;
            }
            let Some(mut writer) = st.writer.take() else {
                break;
            };
            // A hung database must not hold a commit slot for ever; a late commit is harmless
            // (its callers got 503 and Graph's retry is a duplicate).
            let limit = (self.deps.settings.commit_timeout * 5).max(Duration::from_secs(10));
            let (stats, deps) = (self.stats.clone(), self.deps.clone());
            spawn_reply(
                myself,
                async move {
                    if deps.faults.panic_next_commit.swap(false, Ordering::Relaxed) {
                        panic!("injected fault: the commit task panics");
                    }
                    let started = std::time::Instant::now();
                    // Changes of mailboxes held here are stored claimed for the processors,
                    // under the lease their own claims take.
                    let insert = writer.insert_batch(&batch, Some(deps.lease()));
                    let result = match tokio::time::timeout(limit, insert).await {
                        Ok(r) => r,
                        Err(_) => Err(StoreError::Db(sqlx::Error::PoolTimedOut)),
                    };
                    metrics::histogram!("relay365_receiver_commit_seconds")
                        .record(started.elapsed().as_secs_f64());
                    let ok = answer(&stats, &deps, result, batch.len(), waiters);
                    Box::new(Commit {
                        ok,
                        writer,
                        subscriptions: subs,
                    })
                },
                ReceiverMsg::Committed,
            );
        }
    }

    pub(super) fn committed(
        &self,
        myself: &ActorRef<ReceiverMsg>,
        st: &mut ReceiverState,
        commit: Commit,
    ) {
        st.writer = Some(commit.writer);
        if commit.ok {
            self.touch(myself, st, commit.subscriptions);
        }
    }

    /// Notes the subscriptions of a commit whose time was not noted within the last second;
    /// they are written together by the next [`ReceiverMsg::Touch`]. A statement per commit
    /// was, at a trickle (a notification a request), a fifth as many statements again as the
    /// notifications' own.
    fn touch(&self, myself: &ActorRef<ReceiverMsg>, st: &mut ReceiverState, subs: HashSet<String>) {
        let now = now_ms();
        for s in subs {
            if st
                .touched
                .get(&s)
                .is_none_or(|at| now - at >= TOUCH_EVERY_MS)
            {
                st.touched.insert(s.clone(), now);
                st.to_touch.ids.insert(s);
                st.to_touch.at = now;
            }
        }
        if !st.to_touch.ids.is_empty() && !st.to_touch.due {
            st.to_touch.due = true;
            let every = Duration::from_millis(TOUCH_EVERY_MS.unsigned_abs());
            myself.send_after(every, || ReceiverMsg::Touch);
        }
    }

    /// Writes what [`Self::touch`] noted, in one statement.
    pub(super) fn write_touches(&self, myself: &ActorRef<ReceiverMsg>, st: &mut ReceiverState) {
        st.to_touch.due = false;
        let due: Vec<String> = st.to_touch.ids.drain().collect();
        if due.is_empty() {
            return;
        }
        let at = st.to_touch.at;
        // On the work store: a lost touch (PostgreSQL crashing within its commit delay, or the
        // process stopping before the write) only leaves an older time, so it need not wait
        // for the disk.
        let store = self.deps.work.clone();
        spawn_guarded(myself, async move {
            if let Err(e) = subscriptions::touch_notified(&store, &due, at).await {
                tracing::debug!(error = %e, "could not note last_notification_at");
            }
        });
    }
}
