//! Renewal: one actor that keeps every subscription alive (renew, recreate, resync) and acts
//! on lifecycle events.
//!
//! Supervised by `root` (core). One actor and one armed timer for the earliest due job, never
//! a task per subscription: at 100,000 subscriptions the schedule is an ordered set
//! ([`schedule::Schedule`]) that changes by one entry at a time (O(log n)) as subscriptions
//! are created, renewed or deleted ([`schedule`], [`unschedule`]). The schedule is derived
//! data: on (re)start it is rebuilt from the store's `next_renewal_at`, a page at a time
//! ([`load`]), and whatever is overdue is renewed at once; lifecycle events still `pending`
//! in the store are acted on again.
//!
//! `handle` does no I/O. A due job runs in a task ([`work::run`]) under the subscription's
//! renewal lease in the store, so that several instances sharing a database renew each
//! subscription once; at most one job per subscription runs at a time here (so never two
//! resyncs at once), requests for a busy subscription merge into its next job, and at most
//! [`MAX_RUNNING`] jobs run at once. Renewals are spread so that no tenant gets more than
//! [`schedule::WRITES_PER_WINDOW`] subscription writes in 20 s (Graph allows 500): a job that
//! may write starts only if its tenant's window has room, and its writes count until a window
//! after Graph answered them ([`schedule::Windows`]).

mod load;
mod resync;
pub mod schedule;
pub mod work;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr};
use rand::Rng;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::deps::Deps;
use crate::store::credentials::{self, CredentialRow};
use crate::store::lifecycle::{self, PendingLifecycle};
use crate::store::status::SubscriptionStatus;
use crate::store::subscriptions::SubscriptionRow;
use crate::store::{now_ms, to_time, StoreError};
use crate::supervision::Crash;
use crate::util::spawn_reply;

pub use load::LOAD_PAGE;
pub use resync::{folder_of, Round};
use schedule::{Job, Schedule, Windows, WINDOW_MS, WRITES_PER_WINDOW};
use work::Finished;
pub use work::Wants;

/// Name of the renewal actor in the tree.
pub const NAME: &str = "renewal";

/// Jobs running at once (each is a few Graph calls through its credential's limiter).
pub const MAX_RUNNING: usize = 32;

/// Due jobs taken per timer tick; the rest follow at once, after other messages had a turn.
const POP_PER_TICK: usize = 2_000;

/// Failing subscriptions listed in `/status` (all are counted).
const SHOW_FAILING: usize = 20;

/// Lifecycle events loaded from the store at once.
const LIFECYCLE_BATCH: i64 = 1_000;

/// The renewal actor's messages.
pub enum RenewalMsg {
    /// Rebuild the schedule from the store (many subscriptions changed: a credential was
    /// deleted). Single changes use `Schedule` and `Unschedule`.
    Reload,
    /// A subscription's renewal time (after a create or a renew).
    Schedule {
        id: String,
        credential_id: String,
        at: Option<i64>,
    },
    /// A subscription was deleted.
    Unschedule(String),
    /// Work for one subscription now (a baseline after a create, a resync after a recreate).
    Want(String, Wants),
    /// Lifecycle events the receiver stored (event ids). They stay pending in the store until
    /// acted on; the receiver hands them here, never to the processors.
    Lifecycle(Vec<String>),
    /// Self-sent: the timer fired.
    Tick,
    /// Self-sent: one page of the schedule loaded from the store (the first with the
    /// credentials' tenants).
    Loaded(load::Loaded),
    /// Self-sent: the credentials' tenants, reloaded.
    Tenants(Result<Vec<CredentialRow>, StoreError>),
    /// Self-sent: lifecycle events pending in the store.
    LifecycleLoaded(Result<Vec<PendingLifecycle>, StoreError>),
    /// Self-sent: a job ended.
    Done(Box<Finished>),
    /// Fail as if crashed (debug endpoint).
    Crash(String),
}

impl From<Crash> for RenewalMsg {
    fn from(c: Crash) -> Self {
        RenewalMsg::Crash(c.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Client functions.
// ---------------------------------------------------------------------------------------------

fn send(deps: &Deps, msg: RenewalMsg) {
    if let Some(r) = deps.health.actor::<RenewalMsg>(NAME) {
        let _ = r.send_message(msg);
    }
}

/// Schedules a subscription's renewal at its `next_renewal_at` (after a create or renew).
pub fn schedule(deps: &Deps, row: &SubscriptionRow) {
    send(
        deps,
        RenewalMsg::Schedule {
            id: row.id.clone(),
            credential_id: row.credential_id.clone(),
            at: row.next_renewal_at,
        },
    );
}

/// Forgets a deleted subscription.
pub fn unschedule(deps: &Deps, id: &str) {
    send(deps, RenewalMsg::Unschedule(id.to_string()));
}

/// Rebuilds the schedule from the store (many subscriptions changed hands or were deleted).
pub fn reload(deps: &Deps) {
    send(deps, RenewalMsg::Reload);
}

/// Lifecycle events the store just accepted (acted on once their subscription's turn comes).
pub fn lifecycle(deps: &Deps, event_ids: Vec<String>) {
    send(deps, RenewalMsg::Lifecycle(event_ids));
}

/// A subscription was just created at Graph: take its delta baseline.
pub fn created(deps: &Deps, id: &str) {
    let wants = Wants {
        baseline: true,
        ..Default::default()
    };
    send(deps, RenewalMsg::Want(id.to_string(), wants));
}

/// Resyncs a subscription with delta (after it was created again at Graph).
pub fn resync(deps: &Deps, id: &str) {
    let wants = Wants {
        resync: true,
        ..Default::default()
    };
    send(deps, RenewalMsg::Want(id.to_string(), wants));
}

// ---------------------------------------------------------------------------------------------
// The actor.
// ---------------------------------------------------------------------------------------------

/// The renewal actor.
#[derive(Clone)]
pub struct Renewal {
    pub deps: Deps,
}

/// Counters shown in `/status` (since this actor started).
#[derive(Debug, Default)]
struct Counters {
    lifecycle_received: u64,
    lifecycle_done: u64,
    renewed: u64,
    recreated: u64,
    resynced: u64,
    failed: u64,
    /// Renewals moved later to keep a tenant within Graph's write limit.
    spread: u64,
}

/// A running job: the tenant its writes count against, and whether it holds a reservation
/// in that tenant's window.
struct Running {
    tenant: Arc<str>,
    reserved: bool,
    /// The subscription's credential as the job started ("" if unknown): a job that could not
    /// read its row (the store failed) still reschedules its retry under it.
    credential: Arc<str>,
}

/// The task of the armed timer.
type Timer = JoinHandle<Result<(), MessagingErr<RenewalMsg>>>;

/// The renewal actor's state.
pub struct RenewalState {
    schedule: Schedule,
    windows: Windows,
    /// Credential id (interned) → its tenant (the token source's tenant, else the credential).
    tenants: HashMap<Arc<str>, Arc<str>>,
    tenants_loading: bool,
    /// Work waiting to start, merged per subscription.
    queued: HashMap<Arc<str>, Wants>,
    ready: VecDeque<Arc<str>>,
    running: HashMap<Arc<str>, Running>,
    /// What failed jobs left to do, waiting for their next scheduled job.
    parked: HashMap<Arc<str>, Wants>,
    /// Lifecycle events queued, running or parked (not loaded twice).
    lifecycle_seen: HashSet<String>,
    /// Subscriptions whose last renewal failed: the status it left, and why.
    failing: HashMap<Arc<str>, (SubscriptionStatus, String)>,
    /// The load from the store in progress, if any (see [`load`]), and loads started.
    loading: Option<u64>,
    loads: u64,
    /// The armed timer: when it fires, and its task.
    timer: Option<(i64, Timer)>,
    counters: Counters,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Renewal {
    fn show(&self, st: &RenewalState) {
        let c = &st.counters;
        // A few of the failing subscriptions, with why (the API shows each one's last_error).
        let failing: Vec<_> = st
            .failing
            .iter()
            .take(SHOW_FAILING)
            .map(|(id, (status, why))| json!({"subscription": &**id, "status": status, "last_error": why}))
            .collect();
        self.deps.health.set_info(
            NAME,
            json!({
                "scheduled": st.schedule.count(Job::Renew),
                "next_renewal_at": st.schedule.next_of(Job::Renew).map(to_time),
                "next_resync_at": st.schedule.next_of(Job::Resync).map(to_time),
                "running": st.running.len(),
                "loading": st.loading.is_some(),
                "queued": st.queued.len(),
                "renewed": c.renewed,
                "recreated": c.recreated,
                "resynced": c.resynced,
                "failed": c.failed,
                "spread": c.spread,
                "lifecycle_received": c.lifecycle_received,
                "lifecycle_done": c.lifecycle_done,
                "failing_count": st.failing.len(),
                "failing": failing,
            }),
        );
    }

    /// Reads the pending lifecycle events from after the id `after` ("": from the first), a
    /// page at a time: a full page asks for the next, so a burst larger than a page is all
    /// acted on without waiting for another event to arrive.
    fn load_lifecycle(&self, myself: &ActorRef<RenewalMsg>, after: String) {
        let store = self.deps.store.clone();
        spawn_reply(
            myself,
            async move { lifecycle::pending(&store, &after, LIFECYCLE_BATCH).await },
            RenewalMsg::LifecycleLoaded,
        );
    }

    /// The interned id of a credential; an unknown one counts as its own tenant until the
    /// credentials are read again.
    fn credential(
        &self,
        myself: &ActorRef<RenewalMsg>,
        st: &mut RenewalState,
        id: &str,
    ) -> Arc<str> {
        if let Some((k, _)) = st.tenants.get_key_value(id) {
            return k.clone();
        }
        let k: Arc<str> = Arc::from(id);
        st.tenants.insert(k.clone(), k.clone());
        if !st.tenants_loading {
            st.tenants_loading = true;
            let store = self.deps.store.clone();
            spawn_reply(
                myself,
                async move { credentials::list(&store).await },
                RenewalMsg::Tenants,
            );
        }
        k
    }

    /// The next periodic resync of a subscription: about one interval away (jittered by a
    /// tenth either way), or anywhere within the first interval after a start, so that
    /// subscriptions loaded together do not resync together.
    fn backstop_at(&self, now: i64, first: bool) -> Option<i64> {
        let interval = ms(self.deps.settings.resync_interval);
        if interval <= 0 {
            return None;
        }
        let mut rng = rand::thread_rng();
        Some(if first {
            now + rng.gen_range(0..=interval)
        } else {
            now + interval - interval / 10 + rng.gen_range(0..=interval / 5)
        })
    }

    fn enqueue(st: &mut RenewalState, id: Arc<str>, wants: Wants) {
        match st.queued.get_mut(&id) {
            Some(w) => w.merge(wants),
            None => {
                st.queued.insert(id.clone(), wants);
                st.ready.push_back(id);
            }
        }
    }

    /// Takes the due jobs off the schedule into the queue.
    fn take_due(st: &mut RenewalState) {
        let now = now_ms();
        for _ in 0..POP_PER_TICK {
            let Some((id, credential, job)) = st.schedule.pop_due(now) else {
                break;
            };
            let mut wants = st.parked.remove(&id).unwrap_or_default();
            wants.credential = Some(credential);
            match job {
                Job::Renew => wants.renew_due = true,
                Job::Resync => wants.resync = true,
            }
            Self::enqueue(st, id, wants);
        }
        st.windows.prune(now);
    }

    /// Starts queued jobs while there is room: a job that may write only if its tenant's
    /// window has room for one more write; else it moves to when the window allows.
    fn pump(&self, myself: &ActorRef<RenewalMsg>, st: &mut RenewalState) {
        let now = now_ms();
        while st.running.len() < MAX_RUNNING {
            let Some(id) = st.ready.pop_front() else {
                break;
            };
            if st.running.contains_key(&id) {
                // Its next job starts when the running one ends (see `finished`).
                continue;
            }
            let Some(wants) = st.queued.remove(&id) else {
                continue;
            };
            let cred = wants
                .credential
                .clone()
                .or_else(|| st.schedule.credential(&id).cloned())
                .unwrap_or_else(|| Arc::from(""));
            if !self.deps.mailboxes.holds(&cred) {
                // Another instance holds the mailbox and does this work; should this one
                // take the mailbox over, it reloads the schedule and the pending lifecycle
                // events (so these must not count as seen).
                for e in &wants.lifecycle {
                    st.lifecycle_seen.remove(e);
                }
                st.schedule.unschedule(&id);
                st.parked.remove(&id);
                continue;
            }
            let tenant = st.tenants.get(&cred).cloned().unwrap_or(cred.clone());
            let reserved = wants.writes();
            if reserved {
                if let Err(free_at) = st.windows.reserve(&tenant, now) {
                    let at = free_at + rand::thread_rng().gen_range(0..1_000);
                    st.schedule.schedule(&id, &cred, Job::Renew, at);
                    match st.parked.get_mut(&id) {
                        Some(w) => w.merge(wants),
                        None => {
                            st.parked.insert(id, wants);
                        }
                    }
                    st.counters.spread += 1;
                    continue;
                }
            }
            st.running.insert(
                id.clone(),
                Running {
                    tenant,
                    reserved,
                    credential: cred.clone(),
                },
            );
            let deps = self.deps.clone();
            spawn_reply(
                myself,
                async move { Box::new(work::run(&deps, id, wants).await) },
                RenewalMsg::Done,
            );
        }
    }

    /// Arms the one timer for the earliest job (again, if that changed).
    fn arm(&self, myself: &ActorRef<RenewalMsg>, st: &mut RenewalState) {
        let next = st.schedule.next_at();
        if st.timer.as_ref().map(|(at, _)| *at) == next {
            return;
        }
        if let Some((_, handle)) = st.timer.take() {
            handle.abort();
        }
        if let Some(at) = next {
            let wait = u64::try_from((at - now_ms()).max(0)).unwrap_or(0);
            let handle = myself.send_after(Duration::from_millis(wait), || RenewalMsg::Tick);
            st.timer = Some((at, handle));
        }
    }

    fn finished(&self, myself: &ActorRef<RenewalMsg>, st: &mut RenewalState, f: Finished) {
        let ran_for = st.running.remove(&f.id).map(|run| {
            st.windows.settle(&run.tenant, run.reserved, &f.writes);
            run.credential
        });
        let c = &mut st.counters;
        c.renewed += u64::from(f.renewed);
        c.recreated += u64::from(f.recreated);
        c.resynced += u64::from(f.resynced);
        c.failed += u64::from(f.failed);
        c.lifecycle_done += f.lifecycle_done as u64;
        match f.problem {
            Some(p) => {
                st.failing.insert(f.id.clone(), p);
            }
            None if f.renewed || f.recreated || f.gone => {
                st.failing.remove(&f.id);
            }
            None => {}
        }
        for id in &f.answered {
            st.lifecycle_seen.remove(id);
        }
        if f.gone {
            st.schedule.unschedule(&f.id);
            st.parked.remove(&f.id);
        } else if let Some(cred_id) = f
            .credential_id
            .as_deref()
            .or(ran_for.as_deref().filter(|c| !c.is_empty()))
        {
            let cred = self.credential(myself, st, cred_id);
            match f.renew_at {
                Some(at) => st.schedule.schedule(&f.id, &cred, Job::Renew, at),
                None => st.schedule.unschedule_job(&f.id, Job::Renew),
            }
            if f.resynced {
                match self.backstop_at(now_ms(), false) {
                    Some(at) => st.schedule.schedule(&f.id, &cred, Job::Resync, at),
                    None => st.schedule.unschedule_job(&f.id, Job::Resync),
                }
            }
            if let Some((at, left)) = f.retry {
                if !left.writes() {
                    st.schedule.schedule(&f.id, &cred, Job::Resync, at);
                } else if st.schedule.when(&f.id, Job::Renew).is_none_or(|r| r > at) {
                    st.schedule.schedule(&f.id, &cred, Job::Renew, at);
                }
                match st.parked.get_mut(&f.id) {
                    Some(w) => w.merge(left),
                    None => {
                        st.parked.insert(f.id.clone(), left);
                    }
                }
            }
        }
        if st.queued.contains_key(&f.id) {
            st.ready.push_back(f.id);
        }
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
            schedule: Schedule::default(),
            windows: Windows::new(WRITES_PER_WINDOW, WINDOW_MS),
            tenants: HashMap::new(),
            tenants_loading: false,
            queued: HashMap::new(),
            ready: VecDeque::new(),
            running: HashMap::new(),
            parked: HashMap::new(),
            lifecycle_seen: HashSet::new(),
            failing: HashMap::new(),
            loading: None,
            loads: 0,
            timer: None,
            counters: Counters::default(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<RenewalMsg>,
        st: &mut RenewalState,
    ) -> Result<(), ActorProcessingErr> {
        self.load(&myself, st);
        self.show(st);
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<RenewalMsg>,
        st: &mut RenewalState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some((_, handle)) = st.timer.take() {
            handle.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RenewalMsg>,
        msg: RenewalMsg,
        st: &mut RenewalState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RenewalMsg::Reload => self.load(&myself, st),
            RenewalMsg::Schedule {
                id,
                credential_id,
                at,
            } => {
                let cred = self.credential(&myself, st, &credential_id);
                match at {
                    Some(at) => st.schedule.schedule(&id, &cred, Job::Renew, at),
                    None => st.schedule.unschedule_job(&id, Job::Renew),
                }
                if st.schedule.when(&id, Job::Resync).is_none() {
                    if let Some(at) = self.backstop_at(now_ms(), false) {
                        st.schedule.schedule(&id, &cred, Job::Resync, at);
                    }
                }
            }
            RenewalMsg::Unschedule(id) => {
                st.schedule.unschedule(&id);
                st.failing.remove(id.as_str());
                st.parked.remove(id.as_str());
                st.queued.remove(id.as_str());
            }
            RenewalMsg::Want(id, wants) => Self::enqueue(st, Arc::from(id), wants),
            RenewalMsg::Lifecycle(ids) => {
                st.counters.lifecycle_received += ids.len() as u64;
                self.load_lifecycle(&myself, String::new());
            }
            RenewalMsg::LifecycleLoaded(Ok(events)) => {
                if events.len() as i64 >= LIFECYCLE_BATCH {
                    if let Some(last) = events.last() {
                        self.load_lifecycle(&myself, last.id.clone());
                    }
                }
                for e in events {
                    if !st.lifecycle_seen.insert(e.id.clone()) {
                        continue;
                    }
                    let Some(sub) = e.subscription_id else {
                        continue;
                    };
                    tracing::info!(subscription = %sub, event = %e.change_type, "lifecycle event");
                    Self::enqueue(
                        st,
                        Arc::from(sub),
                        Wants::for_lifecycle(&e.change_type, e.id),
                    );
                }
            }
            RenewalMsg::LifecycleLoaded(Err(e)) => {
                return Err(format!("loading lifecycle events: {e}").into())
            }
            RenewalMsg::Tick => {
                st.timer = None;
                Self::take_due(st);
            }
            RenewalMsg::Loaded(Ok(page)) => self.loaded(&myself, st, *page),
            RenewalMsg::Loaded(Err(e)) => return Err(format!("loading subscriptions: {e}").into()),
            RenewalMsg::Tenants(res) => {
                st.tenants_loading = false;
                match res {
                    Ok(creds) => Self::set_tenants(st, &creds),
                    Err(e) => tracing::warn!(error = %e, "renewal: could not read credentials"),
                }
            }
            RenewalMsg::Done(f) => self.finished(&myself, st, *f),
            RenewalMsg::Crash(why) => return Err(why.into()),
        }
        self.pump(&myself, st);
        self.arm(&myself, st);
        self.show(st);
        Ok(())
    }
}
