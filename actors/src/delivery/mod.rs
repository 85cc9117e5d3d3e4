//! The delivery pool: actors that POST completed events to their targets, signed (Standard
//! Webhooks), with retries.
//!
//! Supervised by `delivery` (a pool supervisor under `root`). Deliveries reach a worker by
//! target, pushed when the event completes (no polling delay) and swept from the store like
//! events ([`crate::sweeper`]). A worker sends up to [`PER_TARGET`] deliveries of one target
//! at once and [`MAX_IN_FLIGHT_PER_WORKER`] in all, each in a task of its own ([`send`]), so a
//! slow or dead target holds only its own slots and never the deliveries to the others.

pub mod send;

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::deps::Deps;
use crate::keyed::KeyedQueue;
use crate::processor::worker_for;
use crate::supervision::Crash;
use crate::util::{spawn_guarded, spawn_reply};

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
    /// Deliveries to send: (delivery id, target id).
    Send(Vec<(String, String)>),
    /// Self-sent: an attempt ended; `retry_in` when it is due again.
    Done {
        target: String,
        id: String,
        retry_in: Option<Duration>,
    },
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

/// A worker's state: its queue and its share of the pool's counters.
pub struct DeliveryState {
    queue: KeyedQueue,
    shown: (u64, u64),
}

impl Delivery {
    fn pump(&self, myself: &ActorRef<DeliveryMsg>, st: &mut DeliveryState) {
        while let Some((target, id)) = st.queue.start_next() {
            let deps = self.deps.clone();
            spawn_reply(
                myself,
                async move {
                    let retry_in = send::attempt(&deps, &id).await;
                    (target, id, retry_in)
                },
                |(target, id, retry_in)| DeliveryMsg::Done {
                    target,
                    id,
                    retry_in,
                },
            );
        }
        let now = (st.queue.queued() as u64, st.queue.in_flight() as u64);
        self.deps.delivery_stats.shift(&mut st.shown, now);
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
                    st.queue.push(&target, id);
                }
            }
            DeliveryMsg::Done {
                target,
                id,
                retry_in,
            } => {
                st.queue.done(&target, &id);
                if let Some(wait) = retry_in.filter(|w| *w <= SELF_RETRY_WITHIN) {
                    let me = myself.clone();
                    spawn_guarded(&myself, async move {
                        tokio::time::sleep(wait).await;
                        let _ = me.send_message(DeliveryMsg::Send(vec![(id, target)]));
                    });
                }
            }
            DeliveryMsg::Crash(why) => return Err(why.into()),
        }
        self.pump(&myself, st);
        Ok(())
    }
}

/// Hands (delivery id, target id) pairs to their workers.
pub fn route(deps: &Deps, deliveries: impl IntoIterator<Item = (String, String)>) {
    let workers = deps.settings.delivery_workers.max(1);
    let mut per_worker: Vec<Vec<(String, String)>> = vec![Vec::new(); workers];
    for (id, target) in deliveries {
        per_worker[worker_for(&target, workers)].push((id, target));
    }
    for (i, batch) in per_worker
        .into_iter()
        .enumerate()
        .filter(|(_, b)| !b.is_empty())
    {
        if let Some(w) = deps.health.actor::<DeliveryMsg>(&worker_name(i)) {
            let _ = w.send_message(DeliveryMsg::Send(batch));
        }
    }
}
