//! The receiver: takes the notification items that the HTTP handlers parsed, checks them
//! against the subscriptions it knows, makes them durable, and hands the new events on.
//!
//! Supervised by `root` (core). On (re)start it rebuilds its subscription map from the store.
//!
//! Group commit: the items of many concurrent requests are gathered into one transaction, and
//! each request is answered only after the commit that holds its items. `handle` does no I/O:
//! a commit runs on a task of its own, which answers the requests in it as soon as the store
//! has them (not after a turn through the mailbox) and gives the writer back with
//! [`ReceiverMsg::Committed`]; the mailbox keeps gathering the next batch meanwhile. One commit runs at a time on both
//! stores, on a connection of the receiver's own ([`Writer`]: one round trip per commit):
//! SQLite has a single writer, and on PostgreSQL each commit pays its own `fdatasync`, so one
//! commit of everything that waits measured faster than several smaller ones (README,
//! Benchmarks). A request whose caller gave up (the HTTP handler answered 503 after
//! `commit_timeout`) before its commit started is dropped unwritten.
//!
//! An item for a subscription id the map does not hold is looked up in the store before it
//! is dropped: the subscription may have been stored a moment ago, or by another instance
//! sharing the database, and a dropped notification is lost for good. Look-ups are bounded
//! (slots, a cap per request, a negative cache of ids found absent: [`absent`]); a request
//! that cannot have its look-ups now is answered 503, so a 202 always means stored.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use crate::deps::Deps;
use crate::store::events::{event_id, Inserted, NewEvent, Writer};
use crate::store::subscriptions::{self, SubscriptionRow};
use crate::store::{now_ms, StoreError};
use crate::supervision::Crash;
use crate::util::{spawn_guarded, spawn_reply};

mod absent;
mod notification;

pub use notification::{idempotency_key, parse_collection, Item, ItemKind, ParseError};

/// Name of the receiver in the tree.
pub const NAME: &str = "receiver";

/// Most items in one commit: bounds the latency of a batch.
pub const MAX_BATCH_ITEMS: usize = 2_000;

/// Most look-ups of unknown subscription ids running at once; beyond, a request that needs
/// another is answered 503 (Graph retries), never 202 with its items dropped. Bounds the store
/// work forged ids can cause.
pub const MAX_LOOKUPS: usize = 64;

/// Most distinct unknown subscription ids one request may make the receiver look up; a
/// request naming more is answered 503. Graph batches notifications of a few subscriptions.
pub const MAX_LOOKUPS_PER_REQUEST: usize = 8;

/// Most items waiting for a commit; beyond this new requests are refused at once (503)
/// rather than queued into a backlog that could not be answered in time anyway.
pub const MAX_PENDING_ITEMS: usize = 50_000;

/// What the receiver knows of one subscription Graph may notify about.
#[derive(Clone)]
pub struct KnownSubscription {
    /// Our id (stable across recreation at Graph).
    pub id: String,
    pub credential_id: String,
    /// Secret: compared in constant time, never logged.
    pub client_state: String,
}

// ---------------------------------------------------------------------------------------------
// The actor.
// ---------------------------------------------------------------------------------------------

/// How one request's items fared. Not told to Graph (the answer is 202 either way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Items that passed the checks and are durable (new or seen before).
    pub accepted: usize,
    /// Items dropped: unknown subscription or wrong clientState.
    pub dropped: usize,
}

/// Why a request's items could not be made durable. Every case is answered 503, so that Graph
/// retries; nothing of the request is half-written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("the receiver is not running")]
    NotRunning,
    #[error("the receiver is overloaded")]
    Busy,
    #[error("the store did not take the notifications in time")]
    Timeout,
    #[error("the store failed")]
    Store,
}

/// The answer a waiting HTTP handler gets.
pub type IngestReply = oneshot::Sender<Result<IngestOutcome, IngestError>>;

/// The receiver's messages.
pub enum ReceiverMsg {
    /// Reload the subscription map from the store (a subscription was created or removed).
    Reload,
    /// A subscription was created (or recreated) at Graph: accept its notifications now.
    Learn {
        external_id: String,
        known: KnownSubscription,
        done: RpcReplyPort<()>,
    },
    /// A subscription is gone: drop its notifications from now on.
    Forget(String),
    /// Like `Reload`, and tell `done` once the new map is in place.
    ReloadThen(oneshot::Sender<()>),
    /// Self-sent: the subscriptions loaded from the store.
    Loaded(Result<Vec<SubscriptionRow>, StoreError>),
    /// Items of one request; `reply` is answered after they are durable.
    Ingest {
        items: Vec<Item>,
        received_at: i64,
        reply: IngestReply,
    },
    /// Self-sent: a commit ended.
    Committed(Box<Commit>),
    /// Self-sent: the store's answer for a subscription id the map did not hold.
    LookedUp(Box<LookedUp>),
    /// Fail as if crashed (debug endpoint).
    Crash(String),
}

impl From<Crash> for ReceiverMsg {
    fn from(c: Crash) -> Self {
        ReceiverMsg::Crash(c.0)
    }
}

/// A look-up of one Graph subscription id.
pub type LookedUp = (String, Result<Option<SubscriptionRow>, StoreError>);

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

/// Counters of the receiver, shown as its `info` in `/status`. They outlive restarts.
#[derive(Debug, Default)]
pub struct ReceiverStats {
    pub subscriptions: AtomicU64,
    /// New events stored.
    pub accepted: AtomicU64,
    /// Authentic items already stored before.
    pub duplicates: AtomicU64,
    /// Items dropped: unknown subscription or wrong clientState.
    pub dropped: AtomicU64,
    /// Commits done.
    pub batches: AtomicU64,
    /// Commits that failed (their requests were answered 503).
    pub failed_batches: AtomicU64,
    /// Items waiting for a commit.
    pub pending: AtomicU64,
}

impl ReceiverStats {
    /// The `info` object of `/status`.
    pub fn info(&self) -> Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "subscriptions": n(&self.subscriptions),
            "accepted": n(&self.accepted),
            "duplicates": n(&self.duplicates),
            "dropped": n(&self.dropped),
            "batches": n(&self.batches),
            "failed_batches": n(&self.failed_batches),
            "pending": n(&self.pending),
        })
    }
}

/// The receiver actor.
#[derive(Clone)]
pub struct Receiver {
    pub deps: Deps,
    pub stats: Arc<ReceiverStats>,
}

struct Waiter {
    reply: IngestReply,
    events: Vec<NewEvent>,
    dropped: usize,
}

/// A request waiting for look-ups of unknown subscription ids.
struct Held {
    /// Its items that passed already.
    events: Vec<NewEvent>,
    /// Its items whose subscription is being looked up.
    deferred: Vec<Item>,
    dropped: usize,
    received_at: i64,
    reply: IngestReply,
    /// Look-ups still running.
    waiting: usize,
    /// A look-up failed: the request is answered 503.
    failed: bool,
}

/// The receiver's state.
pub struct ReceiverState {
    /// Graph subscription id → what we know of it.
    subscriptions: HashMap<String, KnownSubscription>,
    /// False until the map is first loaded: requests are held meanwhile (checked against an
    /// empty map, Graph's retries after a restart would all be dropped as unknown).
    loaded: bool,
    /// Requests that came before the map.
    early: Vec<(Vec<Item>, i64, IngestReply)>,
    /// Requests waiting for look-ups of subscription ids the map did not hold.
    held: HashMap<u64, Held>,
    next_held: u64,
    /// Look-ups running: Graph subscription id → the held requests waiting for it.
    lookups: HashMap<String, Vec<u64>>,
    /// Ids recently looked up and not found.
    absent: absent::Absent,
    /// Requests waiting for a commit, oldest first.
    pending: VecDeque<Waiter>,
    pending_items: usize,
    /// When we last wrote `last_notification_at` of a subscription (our id → Unix ms).
    touched: HashMap<String, i64>,
    reload_waiters: Vec<oneshot::Sender<()>>,
    /// The connection commits are written on; taken by the running commit (one at a time) and
    /// given back when it ends.
    writer: Option<Writer>,
}

/// `last_notification_at` is written at most this often per subscription.
const TOUCH_EVERY_MS: i64 = 1_000;

impl Receiver {
    /// A receiver with fresh counters.
    pub fn new(deps: Deps) -> Self {
        Self {
            deps,
            stats: Arc::new(ReceiverStats::default()),
        }
    }

    fn load(&self, myself: &ActorRef<ReceiverMsg>) {
        let store = self.deps.store.clone();
        spawn_reply(
            myself,
            async move { subscriptions::list_receivable(&store).await },
            ReceiverMsg::Loaded,
        );
    }

    /// Checks the items of one request: the authentic ones become new events; the others are
    /// counted as dropped.
    ///
    /// With `defer`, items naming a subscription id the map does not hold are returned
    /// instead of dropped, to be looked up in the store first.
    fn check(
        &self,
        st: &ReceiverState,
        items: Vec<Item>,
        received_at: i64,
        defer: bool,
    ) -> (Vec<NewEvent>, usize, Vec<Item>) {
        let mut events = Vec::with_capacity(items.len());
        let mut deferred = Vec::new();
        let (mut unknown, mut forged) = (0usize, 0usize);
        for item in items {
            let Some(sub) = item
                .subscription_id
                .as_deref()
                .and_then(|id| st.subscriptions.get(id))
            else {
                if defer && item.subscription_id.is_some() {
                    deferred.push(item);
                } else {
                    unknown += 1;
                }
                continue;
            };
            let given = item.client_state.as_deref().unwrap_or("");
            // ct_eq is constant-time for equal lengths; a length mismatch is a mismatch anyway.
            if item.client_state.is_none()
                || !bool::from(given.as_bytes().ct_eq(sub.client_state.as_bytes()))
            {
                forged += 1;
                continue;
            }
            let graph_id = item.subscription_id.as_deref().unwrap_or("");
            let key = idempotency_key(&sub.id, graph_id, &item.kind);
            let (kind, change_type, resource_id) = match item.kind {
                ItemKind::Change {
                    change_type,
                    resource_id,
                    ..
                } => ("change", change_type, resource_id),
                ItemKind::Lifecycle { event, .. } => ("lifecycle", event, None),
            };
            events.push(NewEvent {
                // Time-ordered (v7): the primary-key index grows at its end instead of
                // splitting random pages on every commit; ids also sort as received.
                id: event_id(received_at),
                idempotency_key: key,
                kind,
                subscription_id: Some(sub.id.clone()),
                credential_id: Some(sub.credential_id.clone()),
                change_type,
                resource_id,
                raw: item.raw,
                received_at,
            });
        }
        if unknown > 0 {
            metrics::counter!("relay365_notifications_dropped_total", "reason" => "unknown_subscription")
                .increment(unknown as u64);
        }
        if forged > 0 {
            metrics::counter!("relay365_notifications_dropped_total", "reason" => "client_state")
                .increment(forged as u64);
        }
        let dropped = unknown + forged;
        if dropped > 0 {
            self.stats
                .dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::debug!(unknown, forged, "notification items dropped");
        }
        (events, dropped, deferred)
    }

    /// Checks one request's items and queues the authentic ones for the next commit. Items
    /// for a subscription id the map does not hold (created moments ago, or by another
    /// instance sharing the database) are looked up in the store first, so that they are not
    /// dropped by mistake; the request waits for those look-ups.
    fn queue(
        &self,
        myself: &ActorRef<ReceiverMsg>,
        st: &mut ReceiverState,
        items: Vec<Item>,
        received_at: i64,
        reply: IngestReply,
    ) {
        if reply.is_closed() {
            return;
        }
        let (events, mut dropped, deferred) = self.check(st, items, received_at, true);
        if deferred.is_empty() {
            self.enqueue(st, events, dropped, reply);
            return;
        }
        // Ids found absent a moment ago are dropped as unknown without asking again.
        let now = now_ms();
        let (known_absent, deferred): (Vec<Item>, Vec<Item>) =
            deferred.into_iter().partition(|i| {
                i.subscription_id
                    .as_deref()
                    .is_some_and(|id| st.absent.contains(id, now))
            });
        if !known_absent.is_empty() {
            let (_, more, _) = self.check(st, known_absent, received_at, false);
            dropped += more;
        }
        if deferred.is_empty() {
            self.enqueue(st, events, dropped, reply);
            return;
        }
        let ids: HashSet<String> = deferred
            .iter()
            .filter_map(|i| i.subscription_id.clone())
            .collect();
        let new = ids
            .iter()
            .filter(|id| !st.lookups.contains_key(*id))
            .count();
        if ids.len() > MAX_LOOKUPS_PER_REQUEST || st.lookups.len() + new > MAX_LOOKUPS {
            // Not now: Graph retries a 503, while a 202 with the items dropped would lose them.
            metrics::counter!("relay365_receiver_lookups_refused_total").increment(1);
            let _ = reply.send(Err(IngestError::Busy));
            return;
        }
        let key = st.next_held;
        st.next_held += 1;
        for id in &ids {
            if !st.lookups.contains_key(id) {
                let store = self.deps.store.clone();
                let id = id.clone();
                spawn_reply(
                    myself,
                    async move {
                        let row = subscriptions::get_by_external(&store, &id).await;
                        Box::new((id, row))
                    },
                    ReceiverMsg::LookedUp,
                );
            }
            st.lookups.entry(id.clone()).or_default().push(key);
        }
        st.held.insert(
            key,
            Held {
                events,
                deferred,
                dropped,
                received_at,
                reply,
                waiting: ids.len(),
                failed: false,
            },
        );
    }

    /// Queues checked events for the next commit (or answers at once when none is left, or
    /// when too much is queued already).
    fn enqueue(
        &self,
        st: &mut ReceiverState,
        events: Vec<NewEvent>,
        dropped: usize,
        reply: IngestReply,
    ) {
        if events.is_empty() {
            let _ = reply.send(Ok(IngestOutcome {
                accepted: 0,
                dropped,
            }));
        } else if st.pending_items >= MAX_PENDING_ITEMS {
            let _ = reply.send(Err(IngestError::Busy));
        } else {
            st.pending_items += events.len();
            st.pending.push_back(Waiter {
                reply,
                events,
                dropped,
            });
        }
    }

    /// A look-up of an unknown subscription id ended: learn the subscription if it exists,
    /// and release the requests that waited only for this.
    fn looked_up(
        &self,
        st: &mut ReceiverState,
        id: String,
        row: Result<Option<SubscriptionRow>, StoreError>,
    ) {
        let failed = match row {
            Ok(Some(r))
                if r.status != crate::store::status::SubscriptionStatus::Removed
                    && r.external_id.as_deref() == Some(&id) =>
            {
                st.subscriptions.insert(
                    id.clone(),
                    KnownSubscription {
                        id: r.id,
                        credential_id: r.credential_id,
                        client_state: r.client_state,
                    },
                );
                self.stats
                    .subscriptions
                    .store(st.subscriptions.len() as u64, Ordering::Relaxed);
                false
            }
            Ok(_) => {
                st.absent.insert(id.clone(), now_ms());
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "looking up a subscription failed");
                true
            }
        };
        for key in st.lookups.remove(&id).unwrap_or_default() {
            let Some(h) = st.held.get_mut(&key) else {
                continue;
            };
            h.failed |= failed;
            h.waiting -= 1;
            if h.waiting > 0 {
                continue;
            }
            let Some(h) = st.held.remove(&key) else {
                continue;
            };
            if h.failed {
                // Unknown whether they are authentic: 503, and Graph sends them again.
                let _ = h.reply.send(Err(IngestError::Store));
                continue;
            }
            let (more, dropped, _) = self.check(st, h.deferred, h.received_at, false);
            let mut events = h.events;
            events.extend(more);
            self.enqueue(st, events, h.dropped + dropped, h.reply);
        }
    }

    /// Starts a commit of everything that waits (up to [`MAX_BATCH_ITEMS`]) when none runs:
    /// one large commit costs the database less than several small ones.
    fn start_commits(&self, myself: &ActorRef<ReceiverMsg>, st: &mut ReceiverState) {
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
                    let result =
                        match tokio::time::timeout(limit, writer.insert_batch(&batch)).await {
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

    fn committed(&self, myself: &ActorRef<ReceiverMsg>, st: &mut ReceiverState, commit: Commit) {
        st.writer = Some(commit.writer);
        if commit.ok {
            self.touch(myself, st, commit.subscriptions);
        }
    }

    fn touch(&self, myself: &ActorRef<ReceiverMsg>, st: &mut ReceiverState, subs: HashSet<String>) {
        let now = now_ms();
        let due: Vec<String> = subs
            .into_iter()
            .filter(|s| {
                st.touched
                    .get(s)
                    .is_none_or(|at| now - at >= TOUCH_EVERY_MS)
            })
            .collect();
        if due.is_empty() {
            return;
        }
        for s in &due {
            st.touched.insert(s.clone(), now);
        }
        let store = self.deps.store.clone();
        spawn_guarded(myself, async move {
            if let Err(e) = subscriptions::touch_notified(&store, &due, now).await {
                tracing::debug!(error = %e, "could not note last_notification_at");
            }
        });
    }
}

impl Actor for Receiver {
    type Msg = ReceiverMsg;
    type State = ReceiverState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<ReceiverMsg>,
        _: (),
    ) -> Result<ReceiverState, ActorProcessingErr> {
        Ok(ReceiverState {
            subscriptions: HashMap::new(),
            loaded: false,
            early: Vec::new(),
            held: HashMap::new(),
            next_held: 0,
            lookups: HashMap::new(),
            absent: absent::Absent::default(),
            pending: VecDeque::new(),
            pending_items: 0,
            writer: Some(Writer::new(&self.deps.store)),
            touched: HashMap::new(),
            reload_waiters: Vec::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<ReceiverMsg>,
        _: &mut ReceiverState,
    ) -> Result<(), ActorProcessingErr> {
        self.load(&myself);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ReceiverMsg>,
        msg: ReceiverMsg,
        st: &mut ReceiverState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ReceiverMsg::Ingest {
                items,
                received_at,
                reply,
            } => {
                if st.loaded {
                    self.queue(&myself, st, items, received_at, reply);
                    self.start_commits(&myself, st);
                } else {
                    st.early.push((items, received_at, reply));
                }
            }
            ReceiverMsg::Committed(commit) => {
                self.committed(&myself, st, *commit);
                self.start_commits(&myself, st);
            }
            ReceiverMsg::LookedUp(found) => {
                let (id, row) = *found;
                self.looked_up(st, id, row);
                self.start_commits(&myself, st);
            }
            ReceiverMsg::Reload => self.load(&myself),
            ReceiverMsg::Learn {
                external_id,
                known,
                done,
            } => {
                st.absent.remove(&external_id);
                st.subscriptions.insert(external_id, known);
                self.stats
                    .subscriptions
                    .store(st.subscriptions.len() as u64, Ordering::Relaxed);
                let _ = done.send(());
            }
            ReceiverMsg::Forget(external_id) => {
                st.subscriptions.remove(&external_id);
                self.stats
                    .subscriptions
                    .store(st.subscriptions.len() as u64, Ordering::Relaxed);
            }
            ReceiverMsg::ReloadThen(done) => {
                st.reload_waiters.push(done);
                self.load(&myself);
            }
            ReceiverMsg::Loaded(Ok(rows)) => {
                st.absent.clear();
                st.subscriptions = rows
                    .into_iter()
                    .filter_map(|r| {
                        let ext = r.external_id?;
                        Some((
                            ext,
                            KnownSubscription {
                                id: r.id,
                                credential_id: r.credential_id,
                                client_state: r.client_state,
                            },
                        ))
                    })
                    .collect();
                self.stats
                    .subscriptions
                    .store(st.subscriptions.len() as u64, Ordering::Relaxed);
                for done in st.reload_waiters.drain(..) {
                    let _ = done.send(());
                }
                if !st.loaded {
                    st.loaded = true;
                    for (items, received_at, reply) in std::mem::take(&mut st.early) {
                        self.queue(&myself, st, items, received_at, reply);
                    }
                    self.start_commits(&myself, st);
                }
            }
            // Without its map the receiver cannot tell real notifications from forged ones.
            ReceiverMsg::Loaded(Err(e)) => return Err(format!("loading subscriptions: {e}").into()),
            ReceiverMsg::Crash(why) => return Err(why.into()),
        }
        Ok(())
    }
}

/// Tells the receiver about a subscription Graph just created, and waits until it knows it,
/// so that no notification for it is dropped as unknown.
pub async fn learn(deps: &Deps, external_id: &str, known: KnownSubscription) {
    if let Some(r) = deps.health.actor::<ReceiverMsg>(NAME) {
        let external_id = external_id.to_string();
        let _ = r
            .call(
                |done| ReceiverMsg::Learn {
                    external_id,
                    known,
                    done,
                },
                Some(std::time::Duration::from_secs(5)),
            )
            .await;
    }
}

/// Tells the receiver that a subscription is gone.
pub fn forget(deps: &Deps, external_id: &str) {
    if let Some(r) = deps.health.actor::<ReceiverMsg>(NAME) {
        let _ = r.send_message(ReceiverMsg::Forget(external_id.to_string()));
    }
}

// ---------------------------------------------------------------------------------------------
// What the HTTP layer and other parts call.
// ---------------------------------------------------------------------------------------------

fn receiver(deps: &Deps) -> Result<ActorRef<ReceiverMsg>, IngestError> {
    deps.health
        .actor::<ReceiverMsg>(NAME)
        .ok_or(IngestError::NotRunning)
}

/// Hands one request's items to the receiver and waits until they are durable, at most
/// `Settings::commit_timeout`. `Ok` means: every authentic item is stored (answer 202); `Err`
/// means answer 503.
pub async fn ingest(deps: &Deps, items: Vec<Item>) -> Result<IngestOutcome, IngestError> {
    if items.is_empty() {
        return Ok(IngestOutcome::default());
    }
    let actor = receiver(deps)?;
    let (reply, rx) = oneshot::channel();
    actor
        .send_message(ReceiverMsg::Ingest {
            items,
            received_at: now_ms(),
            reply,
        })
        .map_err(|_| IngestError::NotRunning)?;
    match tokio::time::timeout(deps.settings.commit_timeout, rx).await {
        Ok(Ok(outcome)) => outcome,
        // The receiver died with our request in hand (it is restarted; Graph retries).
        Ok(Err(_)) => Err(IngestError::NotRunning),
        Err(_) => Err(IngestError::Timeout),
    }
}

/// Reloads the receiver's subscription map from the store and waits (at most 5 s) until the
/// new map is in place. Call after storing a subscription's Graph id, before Graph may notify.
pub async fn reload(deps: &Deps) -> Result<(), IngestError> {
    let actor = receiver(deps)?;
    let (done, rx) = oneshot::channel();
    actor
        .send_message(ReceiverMsg::ReloadThen(done))
        .map_err(|_| IngestError::NotRunning)?;
    match tokio::time::timeout(Duration::from_secs(5), rx).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(IngestError::NotRunning),
        Err(_) => Err(IngestError::Timeout),
    }
}
