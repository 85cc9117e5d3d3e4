//! One heartbeat: say this instance is alive, take over the work of instances that went
//! silent, and hold the mailboxes that rendezvous hashing gives this instance among the live
//! ones, giving up the others once nothing of theirs is in flight.
//!
//! Giving a mailbox up and another instance taking it can never overlap: the giver closes
//! its gate first and deletes its claim only when no request of its own is in flight; the
//! taker takes only a claim that is free or has run out. A claim runs out
//! `instance_timeout` after its holder's last heartbeat, and the holder closes its own gates
//! before that (see [`super::Cluster`]), so a holder cut off from the store stops sending
//! before anyone else may start.

use std::collections::HashSet;

use super::mailboxes::preferred;
use crate::deps::Deps;
use crate::store::instances::{self, InstanceRow};
use crate::store::{now_ms, StoreError};

/// Instances that stopped are still listed in `/status` this long.
pub const SHOW_STOPPED_MS: i64 = 3_600_000;

/// What one heartbeat did.
#[derive(Debug, Default, Clone)]
pub struct Beat {
    /// When it was written (Unix ms): the claims hold until this plus the instance timeout.
    pub at: i64,
    /// Live instances, this one included.
    pub live: usize,
    /// Mailboxes held after it.
    pub held: usize,
    /// Mailboxes this beat took (their work is now this instance's).
    pub taken: Vec<String>,
    /// Mailboxes given up to another instance.
    pub given: usize,
    /// Silent instances whose work this beat released.
    pub took_over: Vec<String>,
}

/// Runs one heartbeat for `me`.
pub async fn beat(deps: &Deps, me: &InstanceRow) -> Result<Beat, StoreError> {
    let store = &deps.store;
    let timeout = i64::try_from(deps.settings.instance_timeout.as_millis()).unwrap_or(10_000);
    let now = now_ms();
    instances::heartbeat(store, me, now).await?;
    let mut beat = Beat {
        at: now,
        ..Beat::default()
    };
    for silent in instances::silent(store, now - timeout).await? {
        if silent != me.id {
            tracing::warn!(instance = %silent, "instance went silent; taking over its work");
            instances::take_over(store, &silent, now).await?;
            beat.took_over.push(silent);
        }
    }
    // Every start is a new instance: those stopped an hour ago leave the (small) table.
    instances::prune(store, now - SHOW_STOPPED_MS).await?;
    let seen = instances::seen_since(store, now - SHOW_STOPPED_MS).await?;
    let mut live: Vec<String> = seen
        .iter()
        .filter(|i| i.stopped_at.is_none() && i.heartbeat_at >= now - timeout)
        .map(|i| i.id.clone())
        .collect();
    if !live.contains(&me.id) {
        live.push(me.id.clone());
    }
    beat.live = live.len();
    deps.mailboxes.set_seen(seen);
    if deps.mailboxes.is_solo() {
        return Ok(beat);
    }
    let held: HashSet<String> = instances::extend(store, &me.id, now + timeout)
        .await?
        .into_iter()
        .collect();
    // The claims hold until `now + timeout` from here on: fencing counts from this.
    deps.mailboxes.confirm(now);
    let owners = instances::owners(store).await?;
    let mut keep = Vec::new();
    let mut want = Vec::new();
    let mut give = Vec::new();
    for row in &owners {
        let mine = held.contains(&row.credential_id);
        if preferred(&row.credential_id, &live) == Some(me.id.as_str()) {
            if mine {
                keep.push(row.credential_id.clone());
            } else if row.until.is_none_or(|u| u < now) {
                want.push(row.credential_id.clone());
            }
        } else if mine {
            give.push(row.credential_id.clone());
        }
    }
    if !want.is_empty() {
        keep.extend(instances::acquire(store, &want, &me.id, now, now + timeout).await?);
    }
    beat.taken = deps.mailboxes.set_held(&keep);
    beat.held = keep.len();
    // Given up once nothing of theirs is in flight (their gates closed above); the rest wait
    // for the next beat.
    let idle: Vec<String> = give
        .into_iter()
        .filter(|id| deps.mailboxes.in_flight(id) == 0)
        .collect();
    if !idle.is_empty() {
        instances::release(store, &idle, &me.id).await?;
    }
    beat.given = idle.len();
    Ok(beat)
}
