//! The delivery pool: actors that POST completed events to their targets, signed (Standard
//! Webhooks), with retries.
//!
//! Supervised by `delivery` (a pool supervisor under `root`). Deliveries reach a worker by
//! target, pushed when the event completes (no polling delay) and swept from the store like
//! events ([`crate::sweeper`]). A worker sends up to [`PER_TARGET`] deliveries of one target
//! at once and [`MAX_IN_FLIGHT_PER_WORKER`] in all, each in a task of its own ([`send`]), so a
//! slow or dead target holds only its own slots and never the deliveries to the others.
//!
//! A delivery pushed by the processor that created it comes claimed, with the payload in
//! memory: it is sent without a read of the store. The others (swept, retried by hand) are
//! claimed in one statement for all that a worker starts at one turn, and the answers are
//! recorded in one statement for all that came while the previous write was in flight.

pub mod send;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::deps::Deps;
use crate::keyed::KeyedQueue;
use crate::processor::to_workers;
use crate::supervision::Crash;
use crate::util::{spawn_guarded, spawn_reply};

pub use send::Claimed;

/// Name of the pool in the tree.
pub const POOL: &str = "delivery";

/// Deliveries to one target in flight at once, per worker (a target's deliveries all go to
/// one worker).
pub const PER_TARGET: usize = 16;

/// Deliveries one worker sends at once.
pub const MAX_IN_FLIGHT_PER_WORKER: usize = 64;

/// A retry due within this is re-queued by the worker itself; a later one is left to the
/// sweep.
const SELF_RETRY_WITHIN: Duration = Duration::from_secs(60);

/// Name of worker `i`.
pub fn worker_name(i: usize) -> String {
    format!("delivery:{i}")
}

/// A delivery worker's messages.
pub enum DeliveryMsg {
    /// Deliveries to claim and send: (delivery id, target id).
    Send(Vec<(String, String)>),
    /// Deliveries claimed already, to send.
    SendClaimed(Vec<Claimed>),
    /// Self-sent: the claim of these (target, delivery id) pairs answered.
    Taken(Vec<(String, String)>, Result<Vec<Claimed>, String>),
    /// Self-sent: an attempt got its answer, to be recorded.
    Posted(Box<send::Ended>),
    /// Self-sent: these attempts ended; for each, when it is due again.
    Ended(Vec<(String, String, Option<Duration>)>),
    /// Fail as if crashed (debug endpoint, or a panic in one of its tasks).
    Crash(String),
}

impl From<Crash> for DeliveryMsg {
    fn from(c: Crash) -> Self {
        DeliveryMsg::Crash(c.0)
    }
}

/// One delivery actor.
#[derive(Clone)]
pub struct Delivery {
    pub deps: Deps,
    pub index: usize,
}

/// A worker's state: its queue, the claimed deliveries waiting for their turn, the claims
/// and records waiting for their write, and its share of the pool's counters.
pub struct DeliveryState {
    queue: KeyedQueue,
    claimed: HashMap<String, Claimed>,
    /// Deliveries started (being claimed or sent) and not yet ended.
    started: HashSet<String>,
    /// Deliveries handed over claimed anew while an earlier attempt of them was still out (the
    /// event was replayed meanwhile), with their target: queued again, to be claimed anew, as
    /// soon as that attempt ends.
    again: HashMap<String, String>,
    /// Deliveries whose last answer is not written yet: how many such answers, and the target
    /// of a hand-over that came meanwhile (queued once they are written).
    unrecorded: HashMap<String, (u32, Option<String>)>,
    /// Deliveries handed over claimed and never sent whose claim is being taken again: still
    /// not counted when that claim fails and is tried once more.
    reclaiming: HashSet<String>,
    /// (target, delivery, handed claimed and never sent)
    to_claim: Vec<(String, String, bool)>,
    claiming: bool,
    to_record: Vec<send::Ended>,
    recording: bool,
    shown: (u64, u64),
}

impl Delivery {
    fn pump(&self, myself: &ActorRef<DeliveryMsg>, st: &mut DeliveryState) {
        while let Some((target, id)) = st.queue.start_next() {
            st.started.insert(id.clone());
            // Handed claimed but kept in the queue until its claim ran short, it is claimed
            // again, its attempt not counted twice.
            match st.claimed.remove(&id) {
                Some(d) if d.holds_for(&self.deps) => {
                    st.reclaiming.remove(&id);
                    self.post(myself, d)
                }
                held => {
                    let held = held.is_some() || st.reclaiming.contains(&id);
                    if held {
                        st.reclaiming.insert(id.clone());
                    }
                    st.to_claim.push((target, id, held));
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
                    let ids: Vec<&str> = asked.iter().map(|(_, id, _)| id.as_str()).collect();
                    let held: Vec<&str> = asked
                        .iter()
                        .filter(|(_, _, held)| *held)
                        .map(|(_, id, _)| id.as_str())
                        .collect();
                    let found = send::claim(&deps, &ids, &held).await;
                    let asked: Vec<(String, String)> = asked
                        .into_iter()
                        .map(|(target, id, _)| (target, id))
                        .collect();
                    (asked, found)
                },
                |(asked, found)| DeliveryMsg::Taken(asked, found),
            );
        }
        if !st.recording && !st.to_record.is_empty() {
            st.recording = true;
            let ended = std::mem::take(&mut st.to_record);
            let deps = self.deps.clone();
            spawn_reply(
                myself,
                async move { send::record(&deps, ended).await },
                DeliveryMsg::Ended,
            );
        }
        let now = (st.queue.queued() as u64, st.queue.in_flight() as u64);
        self.deps.delivery_stats.shift(&mut st.shown, now);
    }

    fn post(&self, myself: &ActorRef<DeliveryMsg>, d: Claimed) {
        let deps = self.deps.clone();
        spawn_reply(
            myself,
            async move { Box::new(send::post(&deps, &d).await) },
            DeliveryMsg::Posted,
        );
    }

    fn ended(
        myself: &ActorRef<DeliveryMsg>,
        st: &mut DeliveryState,
        target: String,
        id: String,
        retry_in: Option<Duration>,
    ) {
        Self::done(st, &target, &id);
        Self::retry_soon(myself, target, id, retry_in);
    }

    /// A started delivery's attempt is over (its target's slot is free); one handed over
    /// anew meanwhile is queued now, to be claimed again when it starts: its claim may have
    /// been taken and answered meanwhile (a claim of the old attempt that ran after the
    /// replay), and then it is not sent twice. The replay's claim counted its attempt, which
    /// is not sent yet: the claim again does not count another.
    fn done(st: &mut DeliveryState, target: &str, id: &str) {
        st.queue.done(target, id);
        st.started.remove(id);
        if let Some(target) = st.again.remove(id) {
            st.reclaiming.insert(id.to_string());
            st.queue.push(&target, id.to_string());
        }
    }

    /// A retry due within [`SELF_RETRY_WITHIN`] is handed back to this worker when it is due;
    /// a later one is left to the sweep.
    fn retry_soon(
        myself: &ActorRef<DeliveryMsg>,
        target: String,
        id: String,
        retry_in: Option<Duration>,
    ) {
        if let Some(wait) = retry_in.filter(|w| *w <= SELF_RETRY_WITHIN) {
            let me = myself.clone();
            spawn_guarded(myself, async move {
                tokio::time::sleep(wait).await;
                let _ = me.send_message(DeliveryMsg::Send(vec![(id, target)]));
            });
        }
    }
}

impl Actor for Delivery {
    type Msg = DeliveryMsg;
    type State = DeliveryState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<DeliveryMsg>,
        _: (),
    ) -> Result<DeliveryState, ActorProcessingErr> {
        Ok(DeliveryState {
            queue: KeyedQueue::new(PER_TARGET, MAX_IN_FLIGHT_PER_WORKER),
            claimed: HashMap::new(),
            started: HashSet::new(),
            again: HashMap::new(),
            unrecorded: HashMap::new(),
            reclaiming: HashSet::new(),
            to_claim: Vec::new(),
            claiming: false,
            to_record: Vec::new(),
            recording: false,
            shown: (0, 0),
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<DeliveryMsg>,
        st: &mut DeliveryState,
    ) -> Result<(), ActorProcessingErr> {
        self.deps.delivery_stats.shift(&mut st.shown, (0, 0));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<DeliveryMsg>,
        msg: DeliveryMsg,
        st: &mut DeliveryState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DeliveryMsg::Send(list) => {
                for (id, target) in list {
                    // Handed over before the answer of its last attempt was written (by a sweep
                    // that read it before): still held under that attempt's claim, which this
                    // sender could take again uncounted and send it once more. It is queued
                    // once the answer is written, when a claim finds out whether it is due.
                    if let Some((_, later)) = st.unrecorded.get_mut(&id) {
                        *later = Some(target);
                        continue;
                    }
                    st.queue.push(&target, id);
                }
            }
            DeliveryMsg::SendClaimed(list) => {
                for d in list {
                    // Known already: a replay made it pending again under a new claim. Still
                    // queued, it goes with the new claim; out, it goes again once the old
                    // attempt ends (whose answer is then not recorded: its claim is gone).
                    if st.queue.push(&d.target_id, d.id.clone()) || !st.started.contains(&d.id) {
                        st.reclaiming.remove(&d.id);
                        st.claimed.insert(d.id.clone(), d);
                    } else {
                        st.again.insert(d.id, d.target_id);
                    }
                }
            }
            DeliveryMsg::Taken(asked, found) => {
                st.claiming = false;
                match found {
                    Ok(found) => {
                        let mut found: HashMap<String, Claimed> =
                            found.into_iter().map(|d| (d.id.clone(), d)).collect();
                        for (target, id) in asked {
                            st.reclaiming.remove(&id);
                            match found.remove(&id) {
                                Some(d) => self.post(&myself, d),
                                // Not due, done, or another sender's.
                                None => Self::done(st, &target, &id),
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(deliveries = asked.len(), error = %e, "claiming deliveries failed");
                        let wait = Some(self.deps.settings.retry_base);
                        for (target, id) in asked {
                            Self::ended(&myself, st, target, id, wait);
                        }
                    }
                }
            }
            // The target's slot is free once it answered; the answer is recorded with the
            // others (the delivery stays under this sender's lease until then).
            DeliveryMsg::Posted(ended) => {
                st.unrecorded.entry(ended.id.clone()).or_insert((0, None)).0 += 1;
                Self::done(st, &ended.target_id, &ended.id);
                st.to_record.push(*ended);
            }
            DeliveryMsg::Ended(list) => {
                st.recording = false;
                for (target, id, retry_in) in list {
                    if let Some((n, _)) = st.unrecorded.get_mut(&id) {
                        *n -= 1;
                        if *n == 0 {
                            if let Some((_, Some(later))) = st.unrecorded.remove(&id) {
                                st.queue.push(&later, id.clone());
                            }
                        }
                    }
                    Self::retry_soon(&myself, target, id, retry_in);
                }
            }
            DeliveryMsg::Crash(why) => return Err(why.into()),
        }
        self.pump(&myself, st);
        Ok(())
    }
}

/// Hands deliveries claimed already (by the processor that created them) to their workers.
pub fn hand(deps: &Deps, claimed: Vec<Claimed>) {
    to_workers(
        deps,
        (deps.settings.delivery_workers, worker_name),
        claimed,
        |d| d.target_id.as_str(),
        DeliveryMsg::SendClaimed,
    );
}

/// Hands (delivery id, target id) pairs to their workers.
pub fn route(deps: &Deps, deliveries: impl IntoIterator<Item = (String, String)>) {
    to_workers(
        deps,
        (deps.settings.delivery_workers, worker_name),
        deliveries,
        |(_, target)| target.as_str(),
        DeliveryMsg::Send,
    );
}
