//! The renewal actor's timetable, and the per-tenant window that spreads its writes.
//!
//! Pure data, no I/O and no clock of its own (every call takes `now`), so that it can be
//! tested as it is used. Each subscription has at most one time per kind of job (renew, the
//! periodic resync); the earliest of all is what the actor's single timer is armed for.
//! Scheduling, unscheduling and taking the next due job are O(log n): at 100,000
//! subscriptions a change never walks the others.
//!
//! A reload from the store is read into the schedule in use, a page at a time, not into a
//! second schedule swapped in at the end: what changes meanwhile (a create, a renewal that
//! ended) lands in the one schedule and is not lost, and there are never two copies of
//! 100,000 entries. Each entry carries the mark of the last load that saw it
//! ([`Schedule::begin_mark`]); what the finished load did not see is gone from the store
//! ([`Schedule::sweep`]).
//!
//! The write window counts a write from when its job starts until a window after Graph
//! answered it: Graph counts a write when it arrives, which is after the job started (its
//! lease, its token, its credential's limiter come first) and before the answer. Counted
//! when the job was merely taken off the schedule, a job that waited to start left its slot
//! too early and the next window's first writes overlapped its own at Graph.

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
    /// The mark it was last scheduled under.
    mark: u32,
}

/// When each subscription's jobs are due, earliest first (one ordered set per kind of job).
#[derive(Default)]
pub struct Schedule {
    order: [BTreeSet<(i64, Arc<str>)>; 2],
    entries: HashMap<Arc<str>, Entry>,
    mark: u32,
}

impl Schedule {
    /// Sets when `job` of subscription `id` is due (replacing any earlier time of that job).
    pub fn schedule(&mut self, id: &str, credential: &Arc<str>, job: Job, at: i64) {
        let key = match self.entries.get_key_value(id) {
            Some((k, _)) => k.clone(),
            None => Arc::from(id),
        };
        let mark = self.mark;
        let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry {
            credential: credential.clone(),
            at: [None, None],
            mark,
        });
        entry.credential = credential.clone();
        entry.mark = mark;
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

    /// Takes the earliest job due at `now` (it is no longer scheduled), with its subscription's
    /// credential: once a subscription has no job left the schedule forgets it, and the job
    /// must still know whose mailbox it works on.
    pub fn pop_due(&mut self, now: i64) -> Option<(Arc<str>, Arc<str>, Job)> {
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
        let credential = self.credential(&id)?.clone();
        self.unschedule_job(&id, job);
        Some((id, credential, job))
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

    /// Starts a new mark (a load from the store begins): subscriptions scheduled from now on
    /// are kept by the next [`Schedule::sweep`], the others are removed by it.
    pub fn begin_mark(&mut self) {
        self.mark = self.mark.wrapping_add(1);
    }

    /// Removes every subscription not scheduled since [`Schedule::begin_mark`]; answers
    /// which. O(n): once per load.
    pub fn sweep(&mut self) -> Vec<Arc<str>> {
        let stale: Vec<Arc<str>> = self
            .entries
            .iter()
            .filter(|(_, e)| e.mark != self.mark)
            .map(|(k, _)| k.clone())
            .collect();
        for id in &stale {
            self.unschedule(id);
        }
        stale
    }
}

/// Graph's limit on subscription writes: 500 per app and tenant in 20 s (graph-contract §3).
/// The actor keeps below it, leaving room for writes it does not see (the API's).
pub const WRITES_PER_WINDOW: usize = 450;
/// The length of Graph's throttling window.
pub const WINDOW_MS: i64 = 20_000;

/// Subscription writes per tenant: those of jobs running now, and those sent in the last
/// window.
pub struct Windows {
    limit: usize,
    window_ms: i64,
    tenants: HashMap<Arc<str>, Tenant>,
}

#[derive(Default)]
struct Tenant {
    /// Jobs running that may write (one write each), not yet settled.
    running: usize,
    /// When the writes of settled jobs were answered, oldest first.
    sent: VecDeque<i64>,
}

/// How long a tenant whose whole window is held by running jobs waits before asking again.
const ALL_RUNNING_WAIT_MS: i64 = 1_000;

impl Windows {
    /// At most `limit` writes per tenant in any `window_ms`.
    pub fn new(limit: usize, window_ms: i64) -> Self {
        Self {
            limit: limit.max(1),
            window_ms,
            tenants: HashMap::new(),
        }
    }

    /// Reserves one write for `tenant` for a job that starts at `now`, if the window allows
    /// it; else answers when it may (nothing is reserved then). The reservation holds until
    /// the job is settled ([`Windows::settle`]), however long it runs.
    pub fn reserve(&mut self, tenant: &Arc<str>, now: i64) -> Result<(), i64> {
        let window_ms = self.window_ms;
        let t = self.tenants.entry(tenant.clone()).or_default();
        while t.sent.front().is_some_and(|at| *at <= now - window_ms) {
            t.sent.pop_front();
        }
        if t.sent.len() + t.running < self.limit {
            t.running += 1;
            return Ok(());
        }
        Err(t
            .sent
            .front()
            .map_or(now + ALL_RUNNING_WAIT_MS, |at| at + window_ms))
    }

    /// A job of `tenant` ended: its reservation (if it had one) is given back, and each
    /// write it sent counts until a window after `at`, when Graph's answer came (so never
    /// before Graph counted it).
    pub fn settle(&mut self, tenant: &Arc<str>, reserved: bool, writes: &[i64]) {
        let t = self.tenants.entry(tenant.clone()).or_default();
        if reserved {
            t.running = t.running.saturating_sub(1);
        }
        for &at in writes {
            // Jobs end out of order; the queue stays sorted (an insert near its back).
            let pos = t.sent.partition_point(|x| *x <= at);
            t.sent.insert(pos, at);
        }
    }

    /// Writes counted against `tenant` at `now` (running and sent in the window).
    pub fn used(&self, tenant: &str, now: i64) -> usize {
        self.tenants.get(tenant).map_or(0, |t| {
            t.running
                + t.sent
                    .iter()
                    .filter(|at| **at > now - self.window_ms)
                    .count()
        })
    }

    /// Forgets tenants with no running job and no write in the window (keeps the map small).
    pub fn prune(&mut self, now: i64) {
        let edge = now - self.window_ms;
        self.tenants
            .retain(|_, t| t.running > 0 || t.sent.back().is_some_and(|at| *at > edge));
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
        assert_eq!(
            s.pop_due(25),
            Some((Arc::from("a"), cred.clone(), Job::Resync))
        );
        assert_eq!(s.when("a", Job::Resync), None);
        assert_eq!(s.when("a", Job::Renew), Some(30));

        s.unschedule("a");
        // Its last job: the schedule forgets it, and the job still knows its credential.
        assert_eq!(
            s.pop_due(100),
            Some((Arc::from("b"), cred.clone(), Job::Renew))
        );
        assert!(s.is_empty());
        assert_eq!(s.credential("b"), None);
        assert_eq!(s.next_at(), None);
    }

    #[test]
    fn a_tenant_gets_at_most_its_writes_per_window() {
        let (t, u): (Arc<str>, Arc<str>) = (Arc::from("t"), Arc::from("u"));
        let mut w = Windows::new(3, 1_000);
        for now in [0, 1, 2] {
            assert_eq!(w.reserve(&t, now), Ok(()));
            w.settle(&t, true, &[now]);
        }
        assert_eq!(w.reserve(&t, 500), Err(1_000));
        assert_eq!(
            w.reserve(&u, 500),
            Ok(()),
            "another tenant has its own window"
        );
        assert_eq!(w.reserve(&t, 1_000), Ok(()));
        w.settle(&t, true, &[1_000]);
        w.prune(10_000);
        assert_eq!(w.used("t", 10_000), 0);
        assert_eq!(w.used("u", 10_000), 1, "a running job is never pruned");
        assert_eq!(w.reserve(&t, 10_000), Ok(()));
    }

    #[test]
    fn a_write_counts_from_its_jobs_start_until_a_window_after_its_answer() {
        let t: Arc<str> = Arc::from("t");
        let mut w = Windows::new(2, 1_000);
        assert_eq!(w.reserve(&t, 0), Ok(()));
        assert_eq!(w.reserve(&t, 0), Ok(()));
        // Both still running a window later: their slots are held all the while.
        assert_eq!(w.reserve(&t, 5_000), Err(5_000 + ALL_RUNNING_WAIT_MS));
        // One wrote at 5,200 and one did not write at all (not due by its row).
        w.settle(&t, true, &[5_200]);
        w.settle(&t, true, &[]);
        assert_eq!(w.used("t", 5_300), 1);
        assert_eq!(w.reserve(&t, 5_300), Ok(()));
        assert_eq!(
            w.reserve(&t, 5_300),
            Err(6_200),
            "free a window after the answer"
        );
        assert_eq!(w.reserve(&t, 6_200), Ok(()));
        // Out-of-order settles keep the oldest write first.
        w.settle(&t, true, &[6_900]);
        w.settle(&t, true, &[6_500]);
        assert_eq!(w.reserve(&t, 7_000), Err(7_500));
    }

    #[test]
    fn a_sweep_removes_what_the_last_load_did_not_see() {
        let cred: Arc<str> = Arc::from("c");
        let mut s = Schedule::default();
        s.schedule("old", &cred, Job::Renew, 10);
        s.schedule("kept", &cred, Job::Renew, 20);
        s.schedule("kept", &cred, Job::Resync, 30);
        s.begin_mark();
        s.schedule("kept", &cred, Job::Renew, 25);
        s.schedule("new", &cred, Job::Resync, 40);
        assert_eq!(s.sweep(), vec![Arc::<str>::from("old")]);
        assert_eq!(s.when("old", Job::Renew), None);
        assert_eq!(s.when("kept", Job::Resync), Some(30), "its other job stays");
        assert_eq!(s.next_at(), Some(25));
        assert_eq!(s.len(), 2);
        assert_eq!(s.count(Job::Renew), 1);
    }
}
