//! Credential actors: one per credential, owning its token cache and Graph session.
//!
//! Supervised by `credentials`, which starts one `credential:<id>` for every credential in the
//! store at boot and when one is created. A credential actor that exhausts its restart budget
//! is parked as `failed` (its credential marked `degraded`) and tried again later; it never
//! takes the service down.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;

use crate::deps::Deps;
use crate::store::credentials::{self, CredentialRow};
use crate::store::StoreError;
use crate::supervision::{ChildSpec, Crash, GiveUp, ParkHook, StartHook, SupervisorMsg};
use crate::util::spawn_reply;

/// Name of the credentials supervisor in the tree.
pub const SUPERVISOR: &str = "credentials";

/// Name of a credential's actor.
pub fn actor_name(id: &str) -> String {
    format!("credential:{id}")
}

/// A credential actor's messages.
pub enum CredentialMsg {
    /// Self-sent: the credential's row, loaded from the store.
    Loaded(Result<Option<CredentialRow>, StoreError>),
    /// Fail as if crashed (debug endpoint).
    Crash(String),
}

impl From<Crash> for CredentialMsg {
    fn from(c: Crash) -> Self {
        CredentialMsg::Crash(c.0)
    }
}

/// The actor of one credential.
#[derive(Clone)]
pub struct Credential {
    pub deps: Deps,
    pub id: String,
}

/// A credential actor's state, rebuilt from the store at every start.
pub struct CredentialState {
    row: Option<CredentialRow>,
}

impl Actor for Credential {
    type Msg = CredentialMsg;
    type State = CredentialState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<CredentialMsg>,
        _: (),
    ) -> Result<CredentialState, ActorProcessingErr> {
        Ok(CredentialState { row: None })
    }

    async fn post_start(
        &self,
        myself: ActorRef<CredentialMsg>,
        _: &mut CredentialState,
    ) -> Result<(), ActorProcessingErr> {
        let (store, id) = (self.deps.store.clone(), self.id.clone());
        spawn_reply(
            &myself,
            async move { credentials::get(&store, &id).await },
            CredentialMsg::Loaded,
        );
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<CredentialMsg>,
        msg: CredentialMsg,
        st: &mut CredentialState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CredentialMsg::Loaded(Ok(Some(row))) => {
                self.deps.health.set_info(
                    &actor_name(&self.id),
                    json!({"token_expires_at": null, "in_flight": 0, "throttled_until": null, "mailbox": row.mailbox}),
                );
                st.row = Some(row);
            }
            CredentialMsg::Loaded(Ok(None)) => {
                return Err(format!("credential {} is not in the store", self.id).into())
            }
            CredentialMsg::Loaded(Err(e)) => return Err(format!("loading credential: {e}").into()),
            CredentialMsg::Crash(why) => return Err(why.into()),
        }
        Ok(())
    }
}

/// The child spec of a credential's actor.
pub fn child_spec(deps: &Deps, id: &str) -> ChildSpec {
    let actor = Credential {
        deps: deps.clone(),
        id: id.to_string(),
    };
    ChildSpec::new(actor_name(id), "credential", actor, || ())
        .give_up(GiveUp::Park(deps.settings.park_for))
}

/// At start, the credentials supervisor loads every stored credential and starts its actor.
pub fn start_hook(deps: &Deps) -> StartHook {
    let deps = deps.clone();
    Arc::new(move |sup: ActorRef<SupervisorMsg>| {
        let deps = deps.clone();
        tokio::spawn(async move {
            let rows = match credentials::list(&deps.store).await {
                Ok(rows) => rows,
                Err(e) => {
                    // Crash the supervisor: its parent restarts it, and the load is retried.
                    let _ =
                        sup.send_message(SupervisorMsg::Crash(format!("loading credentials: {e}")));
                    return;
                }
            };
            for row in rows {
                let spec = child_spec(&deps, &row.id);
                let _ = sup
                    .call(
                        |r| SupervisorMsg::Add(spec, r),
                        Some(Duration::from_secs(10)),
                    )
                    .await;
            }
        });
    })
}

/// When a credential actor is parked, its credential is marked `degraded` in the store.
pub fn park_hook(deps: &Deps) -> ParkHook {
    let store = deps.store.clone();
    Arc::new(move |name: &str, reason: &str| {
        let Some(id) = name.strip_prefix("credential:").map(str::to_string) else {
            return;
        };
        let (store, reason) = (store.clone(), reason.to_string());
        tokio::spawn(async move {
            if let Err(e) = credentials::set_status(&store, &id, "degraded", Some(&reason)).await {
                tracing::warn!(credential = %id, error = %e, "could not mark credential degraded");
            }
        });
    })
}
