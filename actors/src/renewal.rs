//! Renewal: one actor that keeps every subscription alive (renew, recreate, resync).
//!
//! Supervised by `root` (core). On (re)start it rebuilds its schedule from the store: the
//! schedule is derived data, the store holds each subscription's `next_renewal_at`.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;

use crate::deps::Deps;
use crate::store::status::SubscriptionStatus;
use crate::store::subscriptions::{self, SubscriptionRow};
use crate::store::{to_time, StoreError};
use crate::supervision::Crash;
use crate::util::spawn_reply;

/// Name of the renewal actor in the tree.
pub const NAME: &str = "renewal";

/// The renewal actor's messages.
pub enum RenewalMsg {
    /// Rebuild the schedule from the store (a subscription was created, renewed or removed).
    Reload,
    /// Lifecycle events the receiver stored (event ids). They stay pending in the store until
    /// the subscription lifecycle acts on them; the receiver hands them here, never to the
    /// processors.
    Lifecycle(Vec<String>),
    /// Self-sent: subscriptions loaded from the store.
    Loaded(Result<Vec<SubscriptionRow>, StoreError>),
    /// Fail as if crashed (debug endpoint).
    Crash(String),
}

impl From<Crash> for RenewalMsg {
    fn from(c: Crash) -> Self {
        RenewalMsg::Crash(c.0)
    }
}

/// The renewal actor.
#[derive(Clone)]
pub struct Renewal {
    pub deps: Deps,
}

/// The renewal actor's state: when each active subscription is due, earliest first.
pub struct RenewalState {
    schedule: std::collections::BTreeSet<(i64, String)>,
    /// Lifecycle events handed over since start.
    lifecycle_received: u64,
}

impl Renewal {
    fn show(&self, st: &RenewalState) {
        let next = st.schedule.first().map(|(at, _)| to_time(*at));
        self.deps.health.set_info(
            NAME,
            json!({
                "scheduled": st.schedule.len(),
                "next_renewal_at": next,
                "lifecycle_received": st.lifecycle_received,
            }),
        );
    }

    fn load(&self, myself: &ActorRef<RenewalMsg>) {
        let store = self.deps.store.clone();
        spawn_reply(
            myself,
            async move { subscriptions::list(&store, None).await },
            RenewalMsg::Loaded,
        );
    }
}

impl Actor for Renewal {
    type Msg = RenewalMsg;
    type State = RenewalState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<RenewalMsg>,
        _: (),
    ) -> Result<RenewalState, ActorProcessingErr> {
        Ok(RenewalState {
            schedule: Default::default(),
            lifecycle_received: 0,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<RenewalMsg>,
        _: &mut RenewalState,
    ) -> Result<(), ActorProcessingErr> {
        self.load(&myself);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RenewalMsg>,
        msg: RenewalMsg,
        st: &mut RenewalState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RenewalMsg::Reload => self.load(&myself),
            RenewalMsg::Lifecycle(ids) => {
                st.lifecycle_received += ids.len() as u64;
                tracing::info!(
                    count = ids.len(),
                    "lifecycle events stored; acting on them is not built yet"
                );
                self.show(st);
            }
            RenewalMsg::Loaded(Ok(rows)) => {
                st.schedule = rows
                    .into_iter()
                    .filter(|r| r.status == SubscriptionStatus::Active)
                    .filter_map(|r| Some((r.next_renewal_at?, r.id)))
                    .collect();
                self.show(st);
            }
            RenewalMsg::Loaded(Err(e)) => return Err(format!("loading subscriptions: {e}").into()),
            RenewalMsg::Crash(why) => return Err(why.into()),
        }
        Ok(())
    }
}
