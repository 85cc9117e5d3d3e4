//! The renewal actor's timetable, and the per-tenant window that spreads its writes.
//!
//! Pure data, no I/O and no clock of its own (every call takes `now`), so that it can be
//! tested as it is used. Each subscription has at most one time per kind of job (renew, the
//! periodic resync); the earliest of all is what the actor's single timer is armed for.
//! Scheduling, unscheduling and taking the next due job are O(log n): at 100,000
//! subscriptions a change never walks the others.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// What is due for a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Job {
    /// Renew (PATCH), or retry a renewal that failed.
    Renew,
    /// The periodic delta resync (the backstop for notifications Graph dropped silently).
    Resync,
}

impl Job {
    fn slot(self) -> usize {
        match self {
            Job::Renew => 0,
            Job::Resync => 1,
        }
    }
}

struct Entry {
    /// The subscription's credential (interned: many subscriptions share one).
    credential: Arc<str>,
    at: [Option<i64>; 2],
}

/// When each subscription's jobs are due, earliest first (one ordered set per kind of job).
#[derive(Default)]
pub struct Schedule {
    order: [BTreeSet<(i64, Arc<str>)>; 2],
    entries: HashMap<Arc<str>, Entry>,
}

impl Schedule {
    /// Sets when `job` of subscription `id` is due (replacing any earlier time of that job).
    pub fn schedule(&mut self, id: &str, credential: &Arc<str>, job: Job, at: i64) {
        let key = match self.entries.get_key_value(id) {
            Some((k, _)) => k.clone(),
            None => Arc::from(id),
        };
        let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry {
            credential: credential.clone(),
            at: [None, None],
        });
        entry.credential = credential.clone();
        let set = &mut self.order[job.slot()];
        if let Some(old) = entry.at[job.slot()].replace(at) {
            set.remove(&(old, key.clone()));
        }
        set.insert((at, key));
    }

    /// Removes one job of a subscription.
    pub fn unschedule_job(&mut self, id: &str, job: Job) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        let Some(old) = entry.at[job.slot()].take() else {
            return;
        };
        let empty = entry.at.iter().all(Option::is_none);
        if let Some((key, _)) = self.entries.get_key_value(id) {
            self.order[job.slot()].remove(&(old, key.clone()));
        }
        if empty {
            self.entries.remove(id);
        }
    }

    /// Removes every job of a subscription.
    pub fn unschedule(&mut self, id: &str) {
        if let Some((key, entry)) = self.entries.remove_entry(id) {
            for job in [Job::Renew, Job::Resync] {
                if let Some(at) = entry.at[job.slot()] {
                    self.order[job.slot()].remove(&(at, key.clone()));
                }
            }
        }
    }

    /// When the earliest job of this kind is due.
    pub fn next_of(&self, job: Job) -> Option<i64> {
        self.order[job.slot()].first().map(|(at, _)| *at)
    }

    /// When the earliest job is due.
    pub fn next_at(&self) -> Option<i64> {
        match (self.next_of(Job::Renew), self.next_of(Job::Resync)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes the earliest job due at `now` (it is no longer scheduled).
    pub fn pop_due(&mut self, now: i64) -> Option<(Arc<str>, Job)> {
        let job = match (self.next_of(Job::Renew), self.next_of(Job::Resync)) {
            (Some(a), Some(b)) if b < a => Job::Resync,
            (Some(_), _) => Job::Renew,
            (None, Some(_)) => Job::Resync,
            (None, None) => return None,
        };
        let (at, id) = self.order[job.slot()].first().cloned()?;
        if at > now {
            return None;
        }
        self.unschedule_job(&id, job);
        Some((id, job))
    }

    /// When `job` of `id` is due, if scheduled.
    pub fn when(&self, id: &str, job: Job) -> Option<i64> {
        self.entries.get(id).and_then(|e| e.at[job.slot()])
    }

    /// The credential of a scheduled subscription.
    pub fn credential(&self, id: &str) -> Option<&Arc<str>> {
        self.entries.get(id).map(|e| &e.credential)
    }

    /// How many jobs of this kind are scheduled.
    pub fn count(&self, job: Job) -> usize {
        self.order[job.slot()].len()
    }

    /// Subscriptions with any job scheduled.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Graph's limit on subscription writes: 500 per app and tenant in 20 s (graph-contract §3).
/// The actor keeps below it, leaving room for writes it does not see (the API's).
pub const WRITES_PER_WINDOW: usize = 450;
/// The length of Graph's throttling window.
pub const WINDOW_MS: i64 = 20_000;

/// Subscription writes started per tenant in the last window.
pub struct Windows {
    limit: usize,
    window_ms: i64,
    started: HashMap<Arc<str>, VecDeque<i64>>,
}

impl Windows {
    /// At most `limit` writes per tenant in any `window_ms`.
    pub fn new(limit: usize, window_ms: i64) -> Self {
        Self {
            limit: limit.max(1),
            window_ms,
            started: HashMap::new(),
        }
    }

    /// Counts a write for `tenant` at `now` if the window allows it; else answers when it
    /// will (nothing is counted then).
    pub fn take(&mut self, tenant: &Arc<str>, now: i64) -> Result<(), i64> {
        let q = self.started.entry(tenant.clone()).or_default();
        while q.front().is_some_and(|t| *t <= now - self.window_ms) {
            q.pop_front();
        }
        if q.len() < self.limit {
            q.push_back(now);
            return Ok(());
        }
        Err(q.front().map_or(now, |t| t + self.window_ms))
    }

    /// Forgets tenants with no write in the window (keeps the map small).
    pub fn prune(&mut self, now: i64) {
        let edge = now - self.window_ms;
        self.started
            .retain(|_, q| q.back().is_some_and(|t| *t > edge));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_come_due_earliest_first_and_moving_one_replaces_it() {
        let cred: Arc<str> = Arc::from("c");
        let mut s = Schedule::default();
        s.schedule("a", &cred, Job::Renew, 30);
        s.schedule("b", &cred, Job::Renew, 10);
        s.schedule("a", &cred, Job::Resync, 20);
        assert_eq!(s.next_at(), Some(10));
        assert_eq!(s.len(), 2);

        s.schedule("b", &cred, Job::Renew, 40);
        assert_eq!(s.when("b", Job::Renew), Some(40));
        assert_eq!(s.pop_due(15), None);
        assert_eq!(s.pop_due(25), Some((Arc::from("a"), Job::Resync)));
        assert_eq!(s.when("a", Job::Resync), None);
        assert_eq!(s.when("a", Job::Renew), Some(30));

        s.unschedule("a");
        assert_eq!(s.pop_due(100), Some((Arc::from("b"), Job::Renew)));
        assert!(s.is_empty());
        assert_eq!(s.next_at(), None);
    }

    #[test]
    fn a_tenant_gets_at_most_its_writes_per_window() {
        let (t, u): (Arc<str>, Arc<str>) = (Arc::from("t"), Arc::from("u"));
        let mut w = Windows::new(3, 1_000);
        for now in [0, 1, 2] {
            assert_eq!(w.take(&t, now), Ok(()));
        }
        assert_eq!(w.take(&t, 500), Err(1_000));
        assert_eq!(w.take(&u, 500), Ok(()), "another tenant has its own window");
        assert_eq!(w.take(&t, 1_000), Ok(()));
        w.prune(10_000);
        assert_eq!(w.take(&t, 10_000), Ok(()));
    }
}
