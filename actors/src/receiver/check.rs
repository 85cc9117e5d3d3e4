//! Checking a request's items before they are queued for a commit: the subscription map and
//! the constant-time clientState comparison, and the store look-ups of subscription ids the
//! map does not hold (bounded; a request that cannot have its look-ups now is answered 503).
//!
//! Apart from the actor in `mod.rs` because it is the receiver's security check and its
//! largest piece of logic; `handle` calls [`Receiver::queue`] and [`Receiver::looked_up`].

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use ractor::ActorRef;
use subtle::ConstantTimeEq;

use super::{
    idempotency_key, Held, IngestError, IngestOutcome, IngestReply, Item, ItemKind,
    KnownSubscription, Receiver, ReceiverMsg, ReceiverState, Waiter, MAX_LOOKUPS,
    MAX_PENDING_ITEMS,
};
use crate::store::events::{event_id, NewEvent};
use crate::store::subscriptions::{self, SubscriptionRow};
use crate::store::{now_ms, StoreError};
use crate::util::spawn_reply;

impl Receiver {
    /// Checks the items of one request: the authentic ones become new events; the others are
    /// counted as dropped.
    ///
    /// With `defer`, items naming a subscription id the map does not hold are returned
    /// instead of dropped, to be looked up in the store first.
    fn check(
        &self,
        st: &ReceiverState,
        items: Vec<Item>,
        received_at: i64,
        defer: bool,
    ) -> (Vec<NewEvent>, usize, Vec<Item>) {
        let mut events = Vec::with_capacity(items.len());
        let mut deferred = Vec::new();
        let (mut unknown, mut forged) = (0usize, 0usize);
        for item in items {
            let Some(sub) = item
                .subscription_id
                .as_deref()
                .and_then(|id| st.subscriptions.get(id))
            else {
                if defer && item.subscription_id.is_some() {
                    deferred.push(item);
                } else {
                    unknown += 1;
                }
                continue;
            };
            let given = item.client_state.as_deref().unwrap_or("");
            // ct_eq is constant-time for equal lengths; a length mismatch is a mismatch anyway.
            if item.client_state.is_none()
                || !bool::from(given.as_bytes().ct_eq(sub.client_state.as_bytes()))
            {
                forged += 1;
                continue;
            }
            let graph_id = item.subscription_id.as_deref().unwrap_or("");
            let key = idempotency_key(&sub.id, graph_id, &item.kind);
            let (kind, change_type, resource_id) = match item.kind {
                ItemKind::Change {
                    change_type,
                    resource_id,
                    ..
                } => ("change", change_type, resource_id),
                ItemKind::Lifecycle { event, .. } => ("lifecycle", event, None),
            };
            events.push(NewEvent {
                // Time-ordered (v7): the primary-key index grows at its end instead of
                // splitting random pages on every commit; ids also sort as received.
                id: event_id(received_at),
                idempotency_key: key,
                kind,
                subscription_id: Some(sub.id.clone()),
                credential_id: Some(sub.credential_id.clone()),
                change_type,
                resource_id,
                raw: item.raw,
                received_at,
                // A change of a mailbox held here goes straight to a processor: stored
                // claimed, it needs no claim of its own.
                claim: kind == "change" && self.deps.mailboxes.holds(&sub.credential_id),
            });
        }
        if unknown > 0 {
            metrics::counter!("relay365_notifications_dropped_total", "reason" => "unknown_subscription")
                .increment(unknown as u64);
        }
        if forged > 0 {
            metrics::counter!("relay365_notifications_dropped_total", "reason" => "client_state")
                .increment(forged as u64);
        }
        let dropped = unknown + forged;
        if dropped > 0 {
            self.stats
                .dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::debug!(unknown, forged, "notification items dropped");
        }
        (events, dropped, deferred)
    }

    /// Checks one request's items and queues the authentic ones for the next commit. Items
    /// for a subscription id the map does not hold (created moments ago, or by another
    /// instance sharing the database) are looked up in the store first, so that they are not
    /// dropped by mistake; the request waits for those look-ups.
    pub(super) fn queue(
        &self,
        myself: &ActorRef<ReceiverMsg>,
        st: &mut ReceiverState,
        items: Vec<Item>,
        received_at: i64,
        reply: IngestReply,
    ) {
        if reply.is_closed() {
            return;
        }
        let (events, mut dropped, deferred) = self.check(st, items, received_at, true);
        if deferred.is_empty() {
            self.enqueue(st, events, dropped, reply);
            return;
        }
        // Ids found absent a moment ago are dropped as unknown without asking again.
        let now = now_ms();
        let (known_absent, deferred): (Vec<Item>, Vec<Item>) =
            deferred.into_iter().partition(|i| {
                i.subscription_id
                    .as_deref()
                    .is_some_and(|id| st.absent.contains(id, now))
            });
        if !known_absent.is_empty() {
            let (_, more, _) = self.check(st, known_absent, received_at, false);
            dropped += more;
        }
        if deferred.is_empty() {
            self.enqueue(st, events, dropped, reply);
            return;
        }
        let ids: HashSet<String> = deferred
            .iter()
            .filter_map(|i| i.subscription_id.clone())
            .collect();
        let new: Vec<String> = ids
            .iter()
            .filter(|id| !st.lookups.contains_key(*id))
            .cloned()
            .collect();
        if !new.is_empty() && st.lookup_statements >= MAX_LOOKUPS {
            // Not now: Graph retries a 503, while a 202 with the items dropped would lose them.
            metrics::counter!("relay365_receiver_lookups_refused_total").increment(1);
            let _ = reply.send(Err(IngestError::Busy));
            return;
        }
        let key = st.next_held;
        st.next_held += 1;
        for id in &ids {
            st.lookups.entry(id.clone()).or_default().push(key);
        }
        // One statement for every id of the request nobody is looking up yet: a request
        // naming many unknown ids (subscriptions Graph still has for a deleted credential)
        // is answered, its authentic items kept, however many there are.
        if !new.is_empty() {
            st.lookup_statements += 1;
            let store = self.deps.store.clone();
            spawn_reply(
                myself,
                async move {
                    let rows = subscriptions::get_many_by_external(&store, &new).await;
                    Box::new((new, rows))
                },
                ReceiverMsg::LookedUp,
            );
        }
        st.held.insert(
            key,
            Held {
                events,
                deferred,
                dropped,
                received_at,
                reply,
                waiting: ids.len(),
                failed: false,
            },
        );
    }

    /// Queues checked events for the next commit (or answers at once when none is left, or
    /// when too much is queued already).
    fn enqueue(
        &self,
        st: &mut ReceiverState,
        events: Vec<NewEvent>,
        dropped: usize,
        reply: IngestReply,
    ) {
        if events.is_empty() {
            let _ = reply.send(Ok(IngestOutcome {
                accepted: 0,
                dropped,
            }));
        } else if st.pending_items >= MAX_PENDING_ITEMS {
            let _ = reply.send(Err(IngestError::Busy));
        } else {
            st.pending_items += events.len();
            st.pending.push_back(Waiter {
                reply,
                events,
                dropped,
            });
        }
    }

    /// A look-up of unknown subscription ids ended: learn the subscriptions that exist, and
    /// release the requests that waited only for these.
    pub(super) fn looked_up(
        &self,
        st: &mut ReceiverState,
        ids: Vec<String>,
        rows: Result<Vec<SubscriptionRow>, StoreError>,
    ) {
        st.lookup_statements = st.lookup_statements.saturating_sub(1);
        let mut rows = match rows {
            Ok(rows) => Some(rows),
            Err(e) => {
                tracing::warn!(error = %e, "looking up subscriptions failed");
                None
            }
        };
        for id in ids {
            let row = rows.as_mut().map(|rows| {
                rows.iter()
                    .position(|r| r.external_id.as_deref() == Some(&id))
                    .map(|i| rows.swap_remove(i))
            });
            self.looked_up_one(st, id, row);
        }
    }

    /// `row`: `None` when the look-up failed, `Some(None)` when there is no such subscription.
    fn looked_up_one(
        &self,
        st: &mut ReceiverState,
        id: String,
        row: Option<Option<SubscriptionRow>>,
    ) {
        let failed = match row {
            Some(Some(r)) if r.status != crate::store::status::SubscriptionStatus::Removed => {
                st.subscriptions.insert(
                    id.clone(),
                    KnownSubscription {
                        id: r.id,
                        credential_id: r.credential_id,
                        client_state: r.client_state,
                    },
                );
                self.stats
                    .subscriptions
                    .store(st.subscriptions.len() as u64, Ordering::Relaxed);
                false
            }
            Some(_) => {
                st.absent.insert(id.clone(), now_ms());
                false
            }
            None => true,
        };
        for key in st.lookups.remove(&id).unwrap_or_default() {
            let Some(h) = st.held.get_mut(&key) else {
                continue;
            };
            h.failed |= failed;
            h.waiting -= 1;
            if h.waiting > 0 {
                continue;
            }
            let Some(h) = st.held.remove(&key) else {
                continue;
            };
            if h.failed {
                // Unknown whether they are authentic: 503, and Graph sends them again.
                let _ = h.reply.send(Err(IngestError::Store));
                continue;
            }
            let (more, dropped, _) = self.check(st, h.deferred, h.received_at, false);
            let mut events = h.events;
            events.extend(more);
            self.enqueue(st, events, h.dropped + dropped, h.reply);
        }
    }
}
