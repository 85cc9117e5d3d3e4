//! The event processors: a pool of actors that turn stored events into completed ones and
//! hand their deliveries to the delivery pool.
//!
//! Supervised by `processors` (a pool supervisor under `root`). Events reach a worker by
//! subscription (sticky routing), from the receiver's hand-off and from the sweep of the store
//! ([`crate::sweeper`]); nothing in a worker's memory is the only copy of anything, so a
//! restart loses no work (events it was handed claimed are swept when their lease runs out). A
//! worker runs one event per subscription at a time, in the order it was handed them, and many
//! subscriptions at once: each event's attempt runs in a task of its own ([`work::run`]), so a
//! mailbox that Graph throttles or answers slowly only waits for itself. An event whose attempt
//! failed goes back to the store with its next attempt time and does not hold up the events
//! after it (one bad message must not stop a mailbox for an hour).
//!
//! The receiver stores the changes of mailboxes held here claimed already, under this
//! instance's lease, and hands over the rows: such an event starts without a claim of its own
//! unless it waited in the queue until too little of its lease was left. The store sees the
//! other events in batches: the events a worker starts while its claim is in flight are
//! claimed together by its next one, and the events that succeed while a completing write is
//! in flight are completed together by the next (group commit, as the receiver does for
//! inserts). The workers' claims and completions then meet in one statement per kind for the
//! whole pool ([`crate::group_commit`]). Under load a statement serves tens of events; at a
//! trickle each waits for no one.

mod normalize;
pub mod targets;
pub mod work;
pub mod writes;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::cluster;
use crate::deps::Deps;
use crate::keyed::KeyedQueue;
use crate::renewal;
use crate::store::events::{EventRow, Inserted};
use crate::supervision::Crash;
use crate::util::{spawn_guarded, spawn_reply};

pub use normalize::{event_type, normalize_message};
use work::Step;
use writes::ToClaim;

/// Name of the pool in the tree.
pub const POOL: &str = "processors";

/// Events one worker processes at once (over all its subscriptions).
pub const MAX_IN_FLIGHT_PER_WORKER: usize = 64;

/// A retry due within this is re-queued by the worker itself; a later one is left to the
/// sweep.
const SELF_RETRY_WITHIN: Duration = Duration::from_secs(60);

/// Name of worker `i`.
pub fn worker_name(i: usize) -> String {
    format!("processor:{i}")
}

/// Which worker takes events of this subscription (stable for a pool size).
pub fn worker_for(subscription_id: &str, workers: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    subscription_id.hash(&mut h);
    (h.finish() % workers.max(1) as u64) as usize
}

/// A processor's messages.
pub enum ProcessorMsg {
    /// Stored events to process: (event id, subscription id). The store stays the truth: a
    /// lost message only delays an event until the next sweep.
    Process(Vec<(String, Option<String>)>),
    /// Events stored claimed under this instance's lease (by the receiver), as stored.
    Run(Vec<EventRow>),
    /// Self-sent: the claim of these (key, event id) pairs answered (the rows claimed).
    Claimed(Vec<(String, String)>, Result<Vec<EventRow>, String>),
    /// Self-sent: an event's attempt ran.
    Attempted { key: String, id: String, step: Step },
    /// Self-sent: these events' attempts ended; for each, when it is due again.
    Ended(Vec<(String, String, Option<Duration>)>),
    /// Fail as if crashed (debug endpoint, or a panic in one of its tasks).
    Crash(String),
}

impl From<Crash> for ProcessorMsg {
    fn from(c: Crash) -> Self {
        ProcessorMsg::Crash(c.0)
    }
}

/// One event-processor actor.
#[derive(Clone)]
pub struct Processor {
    pub deps: Deps,
    pub index: usize,
}

/// A worker's state: its queue, the events of it claimed already, the claims and completions
/// waiting for their write, and what it last added to the pool's counters (so that a restart
/// takes its share back out).
pub struct ProcessorState {
    queue: KeyedQueue,
    claimed: HashMap<String, EventRow>,
    to_claim: Vec<(String, ToClaim)>,
    claiming: bool,
    to_complete: Vec<(String, Box<work::Ready>)>,
    completing: bool,
    /// Events whose completion waits for its write or is being written, with the subscription
    /// of a hand-over that came meanwhile (queued once the write is done).
    unwritten: HashMap<String, Option<String>>,
    /// Events handed over claimed and never started whose claim is being taken again: still
    /// not counted when that claim fails and is tried once more.
    reclaiming: HashSet<String>,
    shown: (u64, u64),
}

impl Processor {
    /// Starts what the queue allows, writes what waits if no write of its kind is in flight,
    /// and shows the queue in the pool's counters.
    fn pump(&self, myself: &ActorRef<ProcessorMsg>, st: &mut ProcessorState) {
        while let Some((key, id)) = st.queue.start_next() {
            // Handed claimed but kept in the queue until its claim ran short, it is claimed
            // again, its attempt not counted twice.
            match st.claimed.remove(&id) {
                Some(row) if work::holds_for(&self.deps, &row) => {
                    st.reclaiming.remove(&id);
                    self.start(myself, key, row)
                }
                held => {
                    let held = held.is_some() || st.reclaiming.contains(&id);
                    if held {
                        st.reclaiming.insert(id.clone());
                    }
                    st.to_claim.push((key, ToClaim { id, held }));
                }
            }
        }
        if !st.claiming && !st.to_claim.is_empty() {
            st.claiming = true;
            let asked = std::mem::take(&mut st.to_claim);
            let deps = self.deps.clone();
            spawn_reply(
                myself,
                async move {
                    let (asked, claims): (Vec<_>, Vec<_>) = asked
                        .into_iter()
                        .map(|(key, c)| ((key, c.id.clone()), c))
                        .unzip();
                    let rows = writes::claim(&deps, claims).await;
                    (asked, rows)
                },
                |(asked, rows)| ProcessorMsg::Claimed(asked, rows),
            );
        }
        if !st.completing && !st.to_complete.is_empty() {
            st.completing = true;
            let ready = std::mem::take(&mut st.to_complete);
            let deps = self.deps.clone();
            spawn_reply(
                myself,
                async move { work::complete(&deps, ready).await },
                ProcessorMsg::Ended,
            );
        }
        let now = (st.queue.queued() as u64, st.queue.in_flight() as u64);
        self.deps.processor_stats.shift(&mut st.shown, now);
    }

    /// Runs an attempt of a claimed event in a task of its own.
    fn start(&self, myself: &ActorRef<ProcessorMsg>, key: String, row: EventRow) {
        let deps = self.deps.clone();
        spawn_reply(
            myself,
            async move {
                let id = row.id.clone();
                let step = work::run(&deps, row).await;
                (key, id, step)
            },
            |(key, id, step)| ProcessorMsg::Attempted { key, id, step },
        );
    }

    /// An event's attempt ended: its key may start its next event.
    fn ended(
        myself: &ActorRef<ProcessorMsg>,
        st: &mut ProcessorState,
        key: String,
        id: String,
        retry_in: Option<Duration>,
    ) {
        st.queue.done(&key, &id);
        Self::retry_soon(myself, key, id, retry_in);
    }

    /// A retry due within [`SELF_RETRY_WITHIN`] is handed back to this worker when it is due;
    /// a later one is left to the sweep.
    fn retry_soon(
        myself: &ActorRef<ProcessorMsg>,
        key: String,
        id: String,
        retry_in: Option<Duration>,
    ) {
        if let Some(wait) = retry_in.filter(|w| *w <= SELF_RETRY_WITHIN) {
            let me = myself.clone();
            spawn_guarded(myself, async move {
                tokio::time::sleep(wait).await;
                let _ = me.send_message(ProcessorMsg::Process(vec![(id, Some(key))]));
            });
        }
    }
}

impl Actor for Processor {
    type Msg = ProcessorMsg;
    type State = ProcessorState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<ProcessorMsg>,
        _: (),
    ) -> Result<ProcessorState, ActorProcessingErr> {
        Ok(ProcessorState {
            queue: KeyedQueue::new(1, MAX_IN_FLIGHT_PER_WORKER),
            claimed: HashMap::new(),
            to_claim: Vec::new(),
            claiming: false,
            to_complete: Vec::new(),
            completing: false,
            unwritten: HashMap::new(),
            reclaiming: HashSet::new(),
            shown: (0, 0),
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<ProcessorMsg>,
        st: &mut ProcessorState,
    ) -> Result<(), ActorProcessingErr> {
        self.deps.processor_stats.shift(&mut st.shown, (0, 0));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ProcessorMsg>,
        msg: ProcessorMsg,
        st: &mut ProcessorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ProcessorMsg::Process(events) => {
                for (id, sub) in events {
                    let key = sub.unwrap_or_default();
                    // Handed over while its completion waits for its write (by a sweep that
                    // read it before): still held under this worker's claim, it would be
                    // claimed again and fetched once more. It is queued once the write is done,
                    // when a claim finds out whether anything is left to do.
                    if let Some(later) = st.unwritten.get_mut(&id) {
                        *later = Some(key);
                        continue;
                    }
                    st.queue.push(&key, id);
                }
            }
            ProcessorMsg::Run(rows) => {
                for row in rows {
                    // Should it be known already, it is run once, as known.
                    let key = row.subscription_id.clone().unwrap_or_default();
                    if st.queue.push(&key, row.id.clone()) {
                        st.claimed.insert(row.id.clone(), row);
                    }
                }
            }
            ProcessorMsg::Claimed(asked, rows) => {
                st.claiming = false;
                match rows {
                    Ok(rows) => {
                        let mut rows: HashMap<String, EventRow> =
                            rows.into_iter().map(|r| (r.id.clone(), r)).collect();
                        for (key, id) in asked {
                            st.reclaiming.remove(&id);
                            match rows.remove(&id) {
                                Some(row) => self.start(&myself, key, row),
                                // Done, not due, or another processor's.
                                None => st.queue.done(&key, &id),
                            }
                        }
                    }
                    Err(e) => {
                        // Not claimed, so nothing to undo: tried again soon (those handed over
                        // claimed still as such), or swept.
                        tracing::warn!(error = %e, events = asked.len(), "claiming events failed");
                        for (key, id) in asked {
                            Self::ended(&myself, st, key, id, Some(self.deps.settings.retry_base));
                        }
                    }
                }
            }
            ProcessorMsg::Attempted { key, id, step } => match step {
                // The subscription's next event may start: completions are written in the
                // order they come (one write at a time), so its events still complete, and
                // their deliveries leave, in order.
                Step::Complete(ready) => {
                    st.queue.done(&key, &id);
                    st.unwritten.insert(id, None);
                    st.to_complete.push((key, ready));
                }
                Step::Settled(retry_in) => Self::ended(&myself, st, key, id, retry_in),
            },
            ProcessorMsg::Ended(list) => {
                st.completing = false;
                for (key, id, retry_in) in list {
                    if let Some(Some(later)) = st.unwritten.remove(&id) {
                        st.queue.push(&later, id.clone());
                    }
                    Self::retry_soon(&myself, key, id, retry_in);
                }
            }
            ProcessorMsg::Crash(why) => return Err(why.into()),
        }
        self.pump(&myself, st);
        Ok(())
    }
}

/// Hands events the store just accepted to the actors that act on them: change events to
/// their subscription's processor, lifecycle events to renewal.
///
/// Events whose mailbox another instance holds go to that instance instead (through the
/// store's notifications, [`cluster::hand_over`]): only the holder sends requests on a mailbox.
pub fn dispatch(deps: &Deps, inserted: Vec<Inserted>) {
    // One stored claimed stays here even if the mailbox moved meanwhile: its attempt finds
    // that out and gives it back to the store, due now, for the holder.
    let (here, elsewhere): (Vec<Inserted>, Vec<Inserted>) = inserted.into_iter().partition(|e| {
        e.claimed.is_some()
            || deps
                .mailboxes
                .holds(e.credential_id.as_deref().unwrap_or(""))
    });
    if !elsewhere.is_empty() {
        cluster::hand_over(
            deps,
            elsewhere
                .into_iter()
                .map(|e| cluster::Handed {
                    lifecycle: e.kind == "lifecycle",
                    id: e.id,
                    subscription_id: e.subscription_id,
                    credential_id: e.credential_id.unwrap_or_default(),
                })
                .collect(),
        );
    }
    let (lifecycle, changes): (Vec<Inserted>, Vec<Inserted>) =
        here.into_iter().partition(|e| e.kind == "lifecycle");
    if !lifecycle.is_empty() {
        renewal::lifecycle(deps, lifecycle.into_iter().map(|e| e.id).collect());
    }
    let mut claimed = Vec::new();
    let mut unclaimed = Vec::new();
    for e in changes {
        match e.claimed {
            Some(row) => claimed.push(*row),
            None => unclaimed.push((e.id, e.subscription_id)),
        }
    }
    run(deps, claimed);
    route(deps, unclaimed);
}

/// Hands events claimed already under this instance's lease to their workers.
pub fn run(deps: &Deps, rows: Vec<EventRow>) {
    to_workers(
        deps,
        (deps.settings.workers, worker_name),
        rows,
        |r| r.subscription_id.as_deref().unwrap_or(""),
        ProcessorMsg::Run,
    );
}

/// Hands (event id, subscription id) pairs to their workers.
pub fn route(deps: &Deps, events: impl IntoIterator<Item = (String, Option<String>)>) {
    to_workers(
        deps,
        (deps.settings.workers, worker_name),
        events,
        |(_, sub)| sub.as_deref().unwrap_or(""),
        ProcessorMsg::Process,
    );
}

/// Sends each of a pool's `workers` (how many, and the name of worker `i`) the items it takes,
/// by [`worker_for`] of each item's `key`, in one message each. A worker that is not running
/// (restarting) misses its share; the store still has it, for the sweep.
pub fn to_workers<T, M: ractor::Message>(
    deps: &Deps,
    (workers, name): (usize, fn(usize) -> String),
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> &str,
    msg: impl Fn(Vec<T>) -> M,
) {
    let workers = workers.max(1);
    let mut per_worker: Vec<Vec<T>> = (0..workers).map(|_| Vec::new()).collect();
    for item in items {
        per_worker[worker_for(key(&item), workers)].push(item);
    }
    for (i, batch) in per_worker
        .into_iter()
        .enumerate()
        .filter(|(_, b)| !b.is_empty())
    {
        if let Some(w) = deps.health.actor::<M>(&name(i)) {
            let _ = w.send_message(msg(batch));
        }
    }
}
