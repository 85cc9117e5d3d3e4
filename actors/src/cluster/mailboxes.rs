//! Which mailboxes this instance holds, as every part of it sees them.
//!
//! Several instances sharing a PostgreSQL database split the mailboxes (credentials) between
//! them, so that Outlook's limit of 4 requests in flight per app and mailbox holds across
//! processes without a per-request round trip to the database: only the instance holding a
//! credential sends requests on its mailbox, and only it processes that credential's events
//! and renews its subscriptions. The split is rendezvous hashing over the live instances
//! ([`preferred`]), so that when one joins or leaves only its share moves; the claim itself
//! is a row with a lease in the store (`credential_owners`), taken and extended by the
//! [`super::Cluster`] actor.
//!
//! Each credential has a [`Gate`] that its limiter passes every mailbox request through. This
//! type only opens and closes gates; deciding which is the cluster actor's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::graph::Gate;
use crate::store::instances::InstanceRow;

/// The mailboxes this instance holds. Shared through `Deps`. A gate, once made, stays for the
/// life of the process (a limiter holds it; a deleted credential's gate stays closed).
#[derive(Debug)]
pub struct Mailboxes {
    /// One instance only (SQLite): it holds every mailbox, with no rows in the store.
    solo: bool,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    /// The `LISTEN/NOTIFY` channel of this database and schema, once known.
    channel: OnceLock<String>,
    /// The instances the last heartbeat saw, for `/status`.
    seen: Mutex<Vec<InstanceRow>>,
    /// When the claims in the store were last extended (Unix ms): they hold until then plus
    /// the instance timeout.
    confirmed_at: AtomicI64,
}

impl Mailboxes {
    /// Every mailbox is this instance's (a SQLite store, which one process owns).
    pub fn solo() -> Self {
        Self::new(true)
    }

    /// Mailboxes are held only as the cluster actor claims them in the store.
    pub fn shared() -> Self {
        Self::new(false)
    }

    fn new(solo: bool) -> Self {
        Self {
            solo,
            gates: Mutex::default(),
            channel: OnceLock::new(),
            seen: Mutex::default(),
            confirmed_at: AtomicI64::new(0),
        }
    }

    /// Records that the claims were extended at `at`.
    pub(super) fn confirm(&self, at: i64) {
        self.confirmed_at.fetch_max(at, Ordering::SeqCst);
    }

    /// When the claims were last extended (Unix ms; 0 before the first heartbeat).
    pub fn confirmed_at(&self) -> i64 {
        self.confirmed_at.load(Ordering::SeqCst)
    }

    /// Whether this instance runs alone.
    pub fn is_solo(&self) -> bool {
        self.solo
    }

    /// The gate of a credential's mailbox (created closed, unless solo).
    pub fn gate(&self, credential_id: &str) -> Arc<Gate> {
        lock(&self.gates)
            .entry(credential_id.to_string())
            .or_insert_with(|| Arc::new(Gate::new(self.solo)))
            .clone()
    }

    /// Whether this instance holds the credential's mailbox now.
    pub fn holds(&self, credential_id: &str) -> bool {
        self.solo
            || lock(&self.gates)
                .get(credential_id)
                .is_some_and(|g| g.is_open())
    }

    /// The credentials whose mailboxes this instance holds now.
    pub fn held(&self) -> Vec<String> {
        lock(&self.gates)
            .iter()
            .filter(|(_, g)| g.is_open())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Opens or closes the gates: `open` ones let requests pass; every other closes.
    /// Answers the credentials whose gate opened now.
    pub(super) fn set_held(&self, open: &[String]) -> Vec<String> {
        let mut gates = lock(&self.gates);
        let mut opened = Vec::new();
        for id in open {
            let gate = gates
                .entry(id.clone())
                .or_insert_with(|| Arc::new(Gate::new(false)));
            if !gate.is_open() {
                gate.open();
                opened.push(id.clone());
            }
        }
        for (id, gate) in gates.iter() {
            if !open.contains(id) {
                gate.close();
            }
        }
        opened
    }

    /// Closes every gate (the store cannot confirm the claims any more).
    pub(super) fn close_all(&self) {
        for gate in lock(&self.gates).values() {
            gate.close();
        }
    }

    /// Requests in flight on a credential's mailbox from this instance.
    pub(super) fn in_flight(&self, credential_id: &str) -> usize {
        lock(&self.gates)
            .get(credential_id)
            .map_or(0, |g| g.in_flight())
    }

    /// The notification channel, once the cluster actor has set it.
    pub fn channel(&self) -> Option<&str> {
        self.channel.get().map(String::as_str)
    }

    pub(super) fn set_channel(&self, channel: String) {
        let _ = self.channel.set(channel);
    }

    /// The instances the last heartbeat saw.
    pub fn seen(&self) -> Vec<InstanceRow> {
        lock(&self.seen).clone()
    }

    pub(super) fn set_seen(&self, seen: Vec<InstanceRow>) {
        *lock(&self.seen) = seen;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The live instance that should hold `credential_id`: the one with the highest score for
/// the pair (rendezvous hashing). Every instance computes the same answer from the same set.
pub fn preferred<'a>(credential_id: &str, live: &'a [String]) -> Option<&'a str> {
    live.iter()
        .max_by_key(|i| (score(credential_id, i), i.as_str()))
        .map(String::as_str)
}

/// A hash of the pair that is the same in every build (FNV-1a, then a 64-bit finaliser so
/// that similar ids spread).
fn score(credential_id: &str, instance: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in credential_id
        .bytes()
        .chain(std::iter::once(0))
        .chain(instance.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ids(n: usize, prefix: &str) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
    }

    #[test]
    fn the_split_is_fair_and_moves_only_the_leavers_share() {
        let three = ids(3, "instance");
        let creds = ids(3000, "credential");
        let mut counts = HashMap::new();
        for c in &creds {
            *counts.entry(preferred(c, &three).unwrap()).or_insert(0) += 1;
        }
        for i in &three {
            let n = counts[i.as_str()];
            assert!((800..=1200).contains(&n), "{i} got {n} of 3000");
        }
        // One leaves: only its credentials move, and they spread over the two left.
        let two = three[..2].to_vec();
        for c in &creds {
            let before = preferred(c, &three).unwrap();
            let after = preferred(c, &two).unwrap();
            if before != three[2] {
                assert_eq!(before, after, "{c} moved although its holder stayed");
            }
        }
    }

    #[test]
    fn gates_follow_what_is_held() {
        let m = Mailboxes::shared();
        let a = m.gate("a");
        assert!(!a.is_open() && !m.holds("a"));
        assert_eq!(m.set_held(&["a".into(), "b".into()]), vec!["a", "b"]);
        assert!(a.is_open() && m.holds("b"));
        assert_eq!(m.set_held(&["b".into()]), Vec::<String>::new());
        assert!(!a.is_open() && m.holds("b"));
        m.close_all();
        assert!(m.held().is_empty());
        assert!(Mailboxes::solo().holds("anything"));
    }
}
