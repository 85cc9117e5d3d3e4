//! What one instance tells the others through PostgreSQL's `LISTEN/NOTIFY`, and what each
//! does when told.
//!
//! Every instance keeps maps for speed (the receiver's subscriptions, the renewal schedule,
//! the credential actors); a change made through one instance's API reaches the others'
//! maps here, at once, instead of when they next reload. The store stays the truth: a
//! notification carries only ids, the listener reads the rows, and a notification that is
//! lost (the listening connection broke) is made up for by a full reload. Events stored by
//! one instance for a mailbox another holds are handed over the same way, so that they are
//! processed at once rather than at the holder's next sweep.

use serde::{Deserialize, Serialize};

use crate::deps::Deps;
use crate::receiver::{self, KnownSubscription};
use crate::renewal;
use crate::store::status::SubscriptionStatus;
use crate::store::subscriptions;
use crate::store::{credentials, delta};
use crate::{processor, tree};

/// Most events named in one notification (PostgreSQL takes payloads under 8,000 bytes).
const EVENTS_PER_NOTICE: usize = 40;

/// An event handed to the holder of its mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handed {
    pub id: String,
    pub subscription_id: Option<String>,
    pub credential_id: String,
    /// A lifecycle event (renewal's), else a change event (the processors').
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lifecycle: bool,
}

/// One notice between instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Events stored by `from` for mailboxes it does not hold.
    Events { from: String, events: Vec<Handed> },
    /// A subscription was created, renewed, recreated or deleted; `forget` holds the Graph
    /// ids it no longer has.
    Subscription {
        from: String,
        id: String,
        forget: Vec<String>,
    },
    /// A credential was created or deleted.
    Credential { from: String, id: String },
}

impl Change {
    fn from(&self) -> &str {
        match self {
            Change::Events { from, .. }
            | Change::Subscription { from, .. }
            | Change::Credential { from, .. } => from,
        }
    }
}

/// Tells the other instances (nothing when this one runs alone). Off the caller's path: the
/// notice is sent from a task, and a notice that fails is made up for by the holder's sweep
/// and the others' reloads.
pub fn publish(deps: &Deps, changes: Vec<Change>) {
    if deps.mailboxes.is_solo() || changes.is_empty() {
        return;
    }
    let (Some(channel), crate::store::Store::Postgres(pool)) =
        (deps.mailboxes.channel(), &deps.work)
    else {
        return;
    };
    let (channel, pool) = (channel.to_string(), pool.clone());
    tokio::spawn(async move {
        for change in changes {
            let payload = match serde_json::to_string(&change) {
                Ok(p) => p,
                Err(_) => continue,
            };
            if let Err(e) = sqlx::query("select pg_notify($1, $2)")
                .bind(&channel)
                .bind(&payload)
                .execute(&pool)
                .await
            {
                tracing::warn!(error = %e, "could not notify the other instances");
            }
        }
    });
}

/// Tells the holders of these events' mailboxes that they are stored.
pub fn hand_over(deps: &Deps, events: Vec<Handed>) {
    let from = deps.instance.to_string();
    let changes = events
        .chunks(EVENTS_PER_NOTICE)
        .map(|c| Change::Events {
            from: from.clone(),
            events: c.to_vec(),
        })
        .collect();
    publish(deps, changes);
}

/// Tells the others that a subscription changed.
pub fn subscription_changed(deps: &Deps, id: &str, forget: Vec<String>) {
    let from = deps.instance.to_string();
    let id = id.to_string();
    publish(deps, vec![Change::Subscription { from, id, forget }]);
}

/// Tells the others that a credential was created or deleted.
pub fn credential_changed(deps: &Deps, id: &str) {
    let from = deps.instance.to_string();
    let id = id.to_string();
    publish(deps, vec![Change::Credential { from, id }]);
}

/// Acts on a notice from another instance. Returns whether the mailboxes should be looked at
/// again now (a credential came or went).
pub async fn apply(deps: &Deps, payload: &str) -> bool {
    let change: Change = match serde_json::from_str(payload) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable notice from another instance");
            return false;
        }
    };
    if change.from() == deps.instance.as_ref() {
        return false;
    }
    match change {
        Change::Events { events, .. } => {
            let (lifecycle, changes): (Vec<Handed>, Vec<Handed>) = events
                .into_iter()
                .filter(|e| deps.mailboxes.holds(&e.credential_id))
                .partition(|e| e.lifecycle);
            if !lifecycle.is_empty() {
                renewal::lifecycle(deps, lifecycle.into_iter().map(|e| e.id).collect());
            }
            processor::route(deps, changes.into_iter().map(|e| (e.id, e.subscription_id)));
            false
        }
        Change::Subscription { id, forget, .. } => {
            for ext in &forget {
                receiver::forget(deps, ext);
            }
            match subscriptions::get(&deps.store, &id).await {
                Ok(Some(row)) if row.status != SubscriptionStatus::Removed => {
                    if let Some(ext) = &row.external_id {
                        let known = KnownSubscription {
                            id: row.id.clone(),
                            credential_id: row.credential_id.clone(),
                            client_state: row.client_state.clone(),
                        };
                        receiver::learn(deps, ext, known).await;
                    }
                    renewal::schedule(deps, &row);
                    // Created through another instance, whose baseline request this
                    // instance, the mailbox's holder, must make.
                    if deps.mailboxes.holds(&row.credential_id) {
                        let folder = renewal::folder_of(&row.resource);
                        if let Ok(None) = delta::get(&deps.store, &row.id, &folder).await {
                            renewal::created(deps, &row.id);
                        }
                    }
                }
                Ok(_) => renewal::unschedule(deps, &id),
                Err(e) => {
                    tracing::warn!(error = %e, "reading a subscription another instance changed");
                    reload_all(deps);
                }
            }
            false
        }
        Change::Credential { id, .. } => {
            match credentials::get(&deps.store, &id).await {
                Ok(Some(row)) => {
                    if let Err(e) = tree::start_credential(deps, row).await {
                        tracing::warn!(credential = %id, error = %e, "starting a credential another instance created");
                    }
                }
                Ok(None) => {
                    let _ = tree::stop_credential(deps, &id).await;
                    tree::subscriptions_changed(deps);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading a credential another instance changed")
                }
            }
            true
        }
    }
}

/// Listens for the other instances' notices on `channel` until the actor stops. A broken
/// connection is opened again; whatever was said meanwhile is made up for by reloading
/// every map from the store.
pub async fn listen(
    deps: Deps,
    pool: sqlx::PgPool,
    channel: String,
    cluster: ractor::ActorRef<super::ClusterMsg>,
) {
    let mut first = true;
    loop {
        match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(&channel).await {
                Ok(()) => {
                    if !std::mem::take(&mut first) {
                        reload_all(&deps);
                    }
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(n)) => {
                                if apply(&deps, n.payload()).await
                                    && cluster.send_message(super::ClusterMsg::Beat).is_err()
                                {
                                    return;
                                }
                            }
                            // The connection broke; the next call opens it again.
                            Ok(None) => reload_all(&deps),
                            Err(e) => {
                                tracing::warn!(error = %e, "listening for other instances");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not listen for other instances"),
            },
            Err(e) => tracing::warn!(error = %e, "could not connect to listen for other instances"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Reloads every map from the store (notices may have been missed).
pub fn reload_all(deps: &Deps) {
    tree::subscriptions_changed(deps);
    tree::sync_credentials(deps);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn notices_fit_in_a_postgresql_payload() {
        let id = "0190f5b2-6c4f-7d63-a1b2-c3d4e5f60718".to_string();
        let change = Change::Events {
            from: id.clone(),
            events: vec![
                Handed {
                    id: id.clone(),
                    subscription_id: Some(id.clone()),
                    credential_id: id.clone(),
                    lifecycle: true,
                };
                EVENTS_PER_NOTICE
            ],
        };
        let json = serde_json::to_string(&change).unwrap();
        assert!(json.len() < 8000, "{} bytes", json.len());
        assert_eq!(serde_json::from_str::<Change>(&json).unwrap(), change);
    }
}
