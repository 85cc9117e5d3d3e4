//! The receiver: takes the notification items that the HTTP handlers parsed, checks them
//! against the subscriptions it knows, makes them durable, and hands the new events on.
//!
//! Supervised by `root` (core). On (re)start it rebuilds its subscription map from the store.

use std::collections::HashMap;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::deps::Deps;
use crate::store::subscriptions::{self, SubscriptionRow};
use crate::store::StoreError;
use crate::supervision::Crash;
use crate::util::spawn_reply;

/// Name of the receiver in the tree.
pub const NAME: &str = "receiver";

/// What the receiver knows of one subscription Graph may notify about.
#[derive(Clone)]
pub struct KnownSubscription {
    /// Our id (stable across recreation at Graph).
    pub id: String,
    pub credential_id: String,
    /// Secret: compared in constant time, never logged.
    pub client_state: String,
}

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
    /// Self-sent: the subscriptions loaded from the store.
    Loaded(Result<Vec<SubscriptionRow>, StoreError>),
    /// Fail as if crashed (debug endpoint).
    Crash(String),
}

impl From<Crash> for ReceiverMsg {
    fn from(c: Crash) -> Self {
        ReceiverMsg::Crash(c.0)
    }
}

/// The receiver actor.
#[derive(Clone)]
pub struct Receiver {
    pub deps: Deps,
}

/// The receiver's state.
pub struct ReceiverState {
    /// Graph subscription id → what we know of it.
    subscriptions: HashMap<String, KnownSubscription>,
}

impl Receiver {
    fn load(&self, myself: &ActorRef<ReceiverMsg>) {
        let store = self.deps.store.clone();
        spawn_reply(
            myself,
            async move { subscriptions::list_receivable(&store).await },
            ReceiverMsg::Loaded,
        );
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
            ReceiverMsg::Reload => self.load(&myself),
            ReceiverMsg::Learn {
                external_id,
                known,
                done,
            } => {
                st.subscriptions.insert(external_id, known);
                self.deps.health.set_info(
                    NAME,
                    serde_json::json!({"subscriptions": st.subscriptions.len()}),
                );
                let _ = done.send(());
            }
            ReceiverMsg::Forget(external_id) => {
                st.subscriptions.remove(&external_id);
                self.deps.health.set_info(
                    NAME,
                    serde_json::json!({"subscriptions": st.subscriptions.len()}),
                );
            }
            ReceiverMsg::Loaded(Ok(rows)) => {
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
                self.deps.health.set_info(
                    NAME,
                    serde_json::json!({"subscriptions": st.subscriptions.len()}),
                );
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
