//! The receiver's counters, shown as its `info` in `/status`: atomics shared by the actor and
//! its commit tasks, kept apart so they outlive restarts (the tree holds them, not the actor).

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

/// Counters of the receiver, shown as its `info` in `/status`. They outlive restarts.
#[derive(Debug, Default)]
pub struct ReceiverStats {
    pub subscriptions: AtomicU64,
    /// New events stored.
    pub accepted: AtomicU64,
    /// Authentic items already stored before.
    pub duplicates: AtomicU64,
    /// Items dropped: unknown subscription or wrong clientState.
    pub dropped: AtomicU64,
    /// Commits done.
    pub batches: AtomicU64,
    /// Commits that failed (their requests were answered 503).
    pub failed_batches: AtomicU64,
    /// Items waiting for a commit.
    pub pending: AtomicU64,
}

impl ReceiverStats {
    /// The `info` object of `/status`.
    pub fn info(&self) -> Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "subscriptions": n(&self.subscriptions),
            "accepted": n(&self.accepted),
            "duplicates": n(&self.duplicates),
            "dropped": n(&self.dropped),
            "batches": n(&self.batches),
            "failed_batches": n(&self.failed_batches),
            "pending": n(&self.pending),
        })
    }
}
