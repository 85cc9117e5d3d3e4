//! The receiver: takes the notification items that the HTTP handlers parsed, checks them
//! against the subscriptions it knows, makes them durable, and hands the new events on.
//!
//! Supervised by `root` (core). On (re)start it rebuilds its subscription map from the store:
//! a task reads the subscriptions in pages ([`LOAD_PAGE`] at a time) straight into the new
//! map and hands over the whole map; the map in use is replaced only then, so a request is
//! never checked against half of it. At 100,000 subscriptions the rows of one query at once
//! beside the map would cost tens of megabytes the allocator keeps (issue 11).
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
//!
//! This file holds the actor (messages, state, `handle`) and the calls other parts make;
//! the pieces it drives are in their own files: `notification.rs` (the pure parser of Graph's
//! payload, on the JSON scanner of `scan.rs`; `reference.rs`, the serde_json parser it is
//! tested against), `check.rs` (items against the map, look-ups of unknown ids), `commit.rs`
//! (the commit task and the answers), `absent.rs` (the negative cache) and `stats.rs` (the
//! counters).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;

use crate::deps::Deps;
use crate::store::events::{NewEvent, Writer};
use crate::store::subscriptions::{self, SubscriptionRow};
use crate::store::{now_ms, Store, StoreError};
use crate::supervision::Crash;
use crate::util::spawn_reply;

mod absent;
mod check;
mod commit;
mod notification;
#[cfg(test)]
mod reference;
mod scan;
mod stats;

pub use commit::Commit;
pub use notification::{idempotency_key, parse_collection, Item, ItemKind, ParseError};
pub use stats::ReceiverStats;

/// Name of the receiver in the tree.
pub const NAME: &str = "receiver";

/// Most items in one commit: bounds the latency of a batch.
pub const MAX_BATCH_ITEMS: usize = 2_000;

/// Most look-ups of unknown subscription ids running at once, each one statement for all the
/// ids one request names that nobody is looking up yet; beyond, a request that needs another
/// is answered 503 (Graph retries), never 202 with its items dropped. Bounds the store work
/// forged ids can cause.
pub const MAX_LOOKUPS: usize = 64;

/// Most items waiting for a commit; beyond this new requests are refused at once (503)
/// rather than queued into a backlog that could not be answered in time anyway.
pub const MAX_PENDING_ITEMS: usize = 50_000;

/// Subscriptions read from the store per query when the map is (re)loaded.
pub const LOAD_PAGE: i64 = 5_000;

/// The subscription map: Graph subscription id → what the receiver knows of it.
pub type KnownMap = HashMap<String, KnownSubscription>;

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
    /// Self-sent: the subscription map, loaded from the store.
    Loaded(Result<KnownMap, StoreError>),
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
    /// Self-sent: write the `last_notification_at` gathered since the last time.
    Touch,
    /// Fail as if crashed (debug endpoint).
    Crash(String),
}

impl From<Crash> for ReceiverMsg {
    fn from(c: Crash) -> Self {
        ReceiverMsg::Crash(c.0)
    }
}

/// A look-up of Graph subscription ids (one statement) and the subscriptions found.
pub type LookedUp = (Vec<String>, Result<Vec<SubscriptionRow>, StoreError>);

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
    subscriptions: KnownMap,
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
    /// Look-up statements running (each for one or more ids).
    lookup_statements: usize,
    /// Ids recently looked up and not found.
    absent: absent::Absent,
    /// Requests waiting for a commit, oldest first.
    pending: VecDeque<Waiter>,
    pending_items: usize,
    /// When we last noted `last_notification_at` of a subscription (our id → Unix ms).
    touched: HashMap<String, i64>,
    /// The subscriptions noted since the last write, the time to write, and whether a
    /// [`ReceiverMsg::Touch`] is on its way.
    to_touch: commit::Touches,
    reload_waiters: Vec<oneshot::Sender<()>>,
    /// The connection commits are written on; taken by the running commit (one at a time) and
    /// given back when it ends.
    writer: Option<Writer>,
}

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
        spawn_reply(myself, load_map(store), ReceiverMsg::Loaded);
    }
}

/// Reads the subscription map from the store, a page at a time.
async fn load_map(store: Store) -> Result<KnownMap, StoreError> {
    let mut map = KnownMap::new();
    let mut after = String::new();
    loop {
        let page = subscriptions::receivable_page(&store, &after, LOAD_PAGE).await?;
        let full = page.len() as i64 >= LOAD_PAGE;
        if let Some(last) = page.last() {
            after.clone_from(&last.id);
        }
        for r in page {
            let known = KnownSubscription {
                id: r.id,
                credential_id: r.credential_id,
                client_state: r.client_state,
            };
            map.insert(r.external_id, known);
        }
        if !full {
            return Ok(map);
        }
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
            lookup_statements: 0,
            absent: absent::Absent::default(),
            pending: VecDeque::new(),
            pending_items: 0,
            writer: Some(Writer::new(&self.deps.store)),
            touched: HashMap::new(),
            to_touch: commit::Touches::default(),
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
            ReceiverMsg::Touch => self.write_touches(&myself, st),
            ReceiverMsg::LookedUp(found) => {
                let (ids, rows) = *found;
                self.looked_up(st, ids, rows);
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
            ReceiverMsg::Loaded(Ok(map)) => {
                st.absent.clear();
                st.subscriptions = map;
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
