//! The delivery pool: actors that POST completed events to their targets, signed, with retries.
//!
//! Supervised by `delivery` (a pool supervisor under `root`).

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::deps::Deps;
use crate::supervision::Crash;

/// Name of the pool in the tree.
pub const POOL: &str = "delivery";

/// Name of worker `i`.
pub fn worker_name(i: usize) -> String {
    format!("delivery:{i}")
}

/// A delivery worker's messages.
pub enum DeliveryMsg {
    /// Look for due deliveries now.
    Wake,
    /// Fail as if crashed (debug endpoint).
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

impl Actor for Delivery {
    type Msg = DeliveryMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<DeliveryMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<DeliveryMsg>,
        msg: DeliveryMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            // Delivery lands with the processing-and-delivery issue.
            DeliveryMsg::Wake => tracing::trace!(worker = self.index, "delivery woken"),
            DeliveryMsg::Crash(why) => return Err(why.into()),
        }
        Ok(())
    }
}
