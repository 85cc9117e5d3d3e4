//! The event processors: a pool of actors that turn stored events into delivered ones.
//!
//! Supervised by `processors` (a pool supervisor under `root`). Events reach a worker by
//! subscription (sticky), so one subscription's events are handled in order.

use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::deps::Deps;
use crate::supervision::Crash;

/// Name of the pool in the tree.
pub const POOL: &str = "processors";

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
    /// New stored events to process (ids). The store stays the truth: a lost message only
    /// delays an event until the next sweep.
    Process(Vec<String>),
    /// Fail as if crashed (debug endpoint).
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

impl Actor for Processor {
    type Msg = ProcessorMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<ProcessorMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<ProcessorMsg>,
        msg: ProcessorMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ProcessorMsg::Process(ids) => {
                // Processing (fetch, normalize, enrich, deliver) lands with its own issue; until
                // then the pool only acknowledges what it was handed.
                let stats = &self.deps.processor_stats;
                stats
                    .queue_depth
                    .fetch_sub(ids.len() as u64, Ordering::Relaxed);
                tracing::debug!(
                    worker = self.index,
                    count = ids.len(),
                    "events handed to processor"
                );
            }
            ProcessorMsg::Crash(why) => return Err(why.into()),
        }
        Ok(())
    }
}
