//! The sweeper: the store is the truth, and this is what makes it so. At start and every
//! `sweep_interval` it reads what is due in the store (pending events and deliveries whose
//! time has come, and leases that ran out because their owner died) and hands it to the
//! pools; once an hour it deletes what the retention period no longer keeps (and fails the
//! events left waiting by a deleted credential).
//!
//! The receiver's hand-off and the pools' own retries are only fast paths: a lost message, a
//! restarted worker or a killed process delays work by one sweep, never loses it. The sweep
//! claims nothing itself: each worker claims the ids it is handed, under a lease, so two
//! instances sweeping the same database hand out the same ids and one claim wins.

use std::collections::HashSet;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;

use crate::deps::Deps;
use crate::store::lane::{timed_out, STATEMENT_TIMEOUT};
use crate::store::{deliveries, events, now_ms, StoreError};
use crate::supervision::Crash;
use crate::util::{spawn_guarded, spawn_reply};
use crate::{delivery, processor};

/// Name of the sweeper in the tree.
pub const NAME: &str = "sweeper";

/// Rows read per sweep and kind. A larger backlog drains over the next sweeps, and the
/// workers' queues stay bounded.
pub const SWEEP_LIMIT: i64 = 1000;

/// When a sweep reads [`SWEEP_LIMIT`] rows of a kind (a backlog), it also reads the oldest due
/// rows with at most this many of one subscription (events) or one target (deliveries), so
/// that one long backlog, queued in a worker past its lease and so due again, never keeps the
/// others' work out of the sweeps ([`events::due_per_subscription`]). More than a worker
/// starts of one at once.
pub const SWEEP_PER_KEY: i64 = 100;

/// How long PostgreSQL may spend on that second read (it sorts every due row).
const PER_KEY_BUDGET_MS: i64 = 5_000;

/// Events deleted per retention batch: small transactions that never hold the table long.
pub const PURGE_BATCH: i64 = 500;

/// How often retention runs.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// The sweeper's messages.
pub enum SweeperMsg {
    /// Sweep now (the timer, or a test).
    Sweep,
    /// Sweep now and take everything due, fresh work included (this instance just took over
    /// mailboxes whose events it had left to another).
    SweepAll,
    /// Self-sent: a sweep ended (how many events and deliveries it handed out).
    Swept(Result<(usize, usize), StoreError>),
    /// Run retention now.
    Purge,
    /// Self-sent: retention ended (events deleted).
    Purged(Result<u64, StoreError>),
    /// Fail as if crashed.
    Crash(String),
}

impl From<Crash> for SweeperMsg {
    fn from(c: Crash) -> Self {
        SweeperMsg::Crash(c.0)
    }
}

/// The sweeper actor.
#[derive(Clone)]
pub struct Sweeper {
    pub deps: Deps,
}

/// What `/status` shows of it.
#[derive(Default)]
pub struct SweeperState {
    sweeping: bool,
    /// The next sweep takes everything due (the first one, and after a take-over).
    take_all: bool,
    sweeps: u64,
    last_events: usize,
    last_deliveries: usize,
    purged: u64,
}

impl Sweeper {
    fn show(&self, st: &SweeperState) {
        self.deps.health.set_info(
            NAME,
            json!({
                "sweeps": st.sweeps,
                "last_events": st.last_events,
                "last_deliveries": st.last_deliveries,
                "purged": st.purged,
            }),
        );
    }
}

/// How long work that is due may wait for the fast path (the hand-over, or a worker's own
/// retry timer) before the sweep hands it out again: five sweeps, between 1 and 10 seconds.
/// Under load most pending rows are already queued in a worker; reading them every sweep
/// would only cost the store.
fn grace(deps: &Deps) -> i64 {
    let five = deps.settings.sweep_interval.saturating_mul(5);
    let grace = five.clamp(Duration::from_secs(1), Duration::from_secs(10));
    i64::try_from(grace.as_millis()).unwrap_or(10_000)
}

/// Reads what is due and hands it to the pools. The first sweep after start takes everything
/// due: nothing in this process holds any of it yet.
async fn sweep(deps: &Deps, first: bool) -> Result<(usize, usize), StoreError> {
    let now = now_ms();
    let due_before = if first { now } else { now - grace(deps) };
    let holder = (!deps.mailboxes.is_solo()).then_some(deps.instance.as_ref());
    let mut due_events = events::due(&deps.work, now, due_before, SWEEP_LIMIT, holder).await?;
    let mut due_deliveries = deliveries::due(&deps.work, now, due_before, SWEEP_LIMIT).await?;
    let (at, limits) = ((now, due_before), (SWEEP_LIMIT, SWEEP_PER_KEY));
    if due_events.len() as i64 >= SWEEP_LIMIT {
        let store = &deps.work;
        match events::due_per_subscription(store, at, limits, holder, PER_KEY_BUDGET_MS).await {
            Ok(more) => {
                let seen: HashSet<String> = due_events.iter().map(|e| e.id.clone()).collect();
                due_events.extend(more.into_iter().filter(|e| !seen.contains(&e.id)));
            }
            Err(e) => tracing::warn!(error = %e, "sweep: reading due events per subscription"),
        }
    }
    if due_deliveries.len() as i64 >= SWEEP_LIMIT {
        match deliveries::due_per_target(&deps.work, at, limits, PER_KEY_BUDGET_MS).await {
            Ok(more) => {
                let seen: HashSet<String> = due_deliveries.iter().map(|d| d.0.clone()).collect();
                due_deliveries.extend(more.into_iter().filter(|d| !seen.contains(&d.0)));
            }
            Err(e) => tracing::warn!(error = %e, "sweep: reading due deliveries per target"),
        }
    }
    let counts = (due_events.len(), due_deliveries.len());
    // Events of mailboxes another instance holds are that instance's to sweep.
    processor::route(
        deps,
        due_events
            .into_iter()
            .filter(|e| {
                deps.mailboxes
                    .holds(e.credential_id.as_deref().unwrap_or(""))
            })
            .map(|e| (e.id, e.subscription_id)),
    );
    delivery::route(deps, due_deliveries);
    Ok(counts)
}

/// Asks for a sweep that takes everything due now.
pub fn sweep_all(deps: &Deps) {
    if let Some(s) = deps.health.actor::<SweeperMsg>(NAME) {
        let _ = s.send_message(SweeperMsg::SweepAll);
    }
}

/// Deletes, in small batches, what retention no longer keeps.
async fn purge(deps: &Deps) -> Result<u64, StoreError> {
    let days = deps.settings.retention;
    let keep_ms = i64::try_from(days.as_millis()).unwrap_or(i64::MAX / 2);
    let orphans = events::fail_orphans(&deps.work, now_ms()).await?;
    if orphans > 0 {
        tracing::warn!(
            events = orphans,
            "failed events whose credential was deleted before they were processed"
        );
    }
    let before = now_ms().saturating_sub(keep_ms);
    let mut total = 0;
    loop {
        let n = events::purge(&deps.work, before, PURGE_BATCH).await?;
        total += n;
        if n < PURGE_BATCH as u64 {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

impl Actor for Sweeper {
    type Msg = SweeperMsg;
    type State = SweeperState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<SweeperMsg>,
        _: (),
    ) -> Result<SweeperState, ActorProcessingErr> {
        Ok(SweeperState {
            take_all: true,
            ..SweeperState::default()
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<SweeperMsg>,
        st: &mut SweeperState,
    ) -> Result<(), ActorProcessingErr> {
        self.show(st);
        // The timers live in tasks of this actor: they end when it stops (their sends fail).
        let me = myself.clone();
        let every = self
            .deps
            .settings
            .sweep_interval
            .max(Duration::from_millis(10));
        spawn_guarded(&myself, async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if me.send_message(SweeperMsg::Sweep).is_err() {
                    return;
                }
            }
        });
        let me = myself.clone();
        spawn_guarded(&myself, async move {
            let mut tick = tokio::time::interval(PURGE_EVERY);
            loop {
                tick.tick().await;
                if me.send_message(SweeperMsg::Purge).is_err() {
                    return;
                }
            }
        });
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SweeperMsg>,
        msg: SweeperMsg,
        st: &mut SweeperState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SweeperMsg::SweepAll if st.sweeping => st.take_all = true,
            SweeperMsg::Sweep if st.sweeping => {}
            SweeperMsg::Sweep | SweeperMsg::SweepAll => {
                st.sweeping = true;
                let deps = self.deps.clone();
                let first = std::mem::take(&mut st.take_all);
                // Bounded like every write of the pools: a connection gone silent (a failover
                // that sent no reset) must not stop the sweeps for TCP's quarter of an hour.
                spawn_reply(
                    &myself,
                    async move {
                        tokio::time::timeout(STATEMENT_TIMEOUT, sweep(&deps, first))
                            .await
                            .unwrap_or_else(|_| Err(timed_out("the sweep", STATEMENT_TIMEOUT)))
                    },
                    SweeperMsg::Swept,
                );
            }
            SweeperMsg::Swept(result) => {
                st.sweeping = false;
                match result {
                    Ok((e, d)) => {
                        st.sweeps += 1;
                        st.last_events = e;
                        st.last_deliveries = d;
                    }
                    // The store is down: the next tick tries again, whole; /readyz says why.
                    Err(e) => {
                        st.take_all = true;
                        tracing::warn!(error = %e, "sweep of due work failed");
                    }
                }
                self.show(st);
            }
            SweeperMsg::Purge => {
                let deps = self.deps.clone();
                spawn_reply(
                    &myself,
                    async move { purge(&deps).await },
                    SweeperMsg::Purged,
                );
            }
            SweeperMsg::Purged(Ok(n)) => {
                st.purged += n;
                if n > 0 {
                    tracing::info!(events = n, "retention deleted old events");
                }
                self.show(st);
            }
            SweeperMsg::Purged(Err(e)) => tracing::warn!(error = %e, "retention failed"),
            SweeperMsg::Crash(why) => return Err(why.into()),
        }
        Ok(())
    }
}

/// Asks the sweeper to run retention now (debug endpoint and tests).
pub fn purge_now(deps: &Deps) -> bool {
    deps.health
        .actor::<SweeperMsg>(NAME)
        .is_some_and(|s| s.send_message(SweeperMsg::Purge).is_ok())
}
