//! The cluster actor: this instance among the others that share its database.
//!
//! Supervised by `root` (core), and started first, so that the first heartbeat (and the
//! mailboxes it takes) precede any work. Every `heartbeat_interval` it runs a [`beat`] in a
//! task: alive in `instances`, silent instances' work released, mailboxes taken and given up
//! ([`mailboxes`]). On PostgreSQL it also listens for the other instances' notices
//! ([`changes`]) on a channel of the database's schema.
//!
//! With SQLite the store has one process ([`crate::store::Store::lock_single`] sees to it),
//! so this instance holds every mailbox and the actor only heartbeats, for `/status`.
//!
//! Fencing: the claims in the store hold until `instance_timeout` after the last heartbeat
//! that wrote them. When heartbeats fail for longer than that less two intervals, this
//! instance closes every gate itself (it stops sending mailbox requests and processing), so
//! that an instance cut off from the store never overlaps with the one that takes over.

mod beat;
pub mod changes;
mod mailboxes;

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;

use crate::deps::Deps;
use crate::store::instances::{self, InstanceRow};
use crate::store::{now_ms, Store, StoreError};
use crate::supervision::Crash;
use crate::util::{spawn_guarded, spawn_reply};
use crate::{renewal, sweeper};

pub use beat::Beat;
pub use changes::{hand_over, Change, Handed};
pub use mailboxes::{preferred, Mailboxes};

/// Name of the cluster actor in the tree.
pub const NAME: &str = "cluster";

/// The cluster actor's messages.
pub enum ClusterMsg {
    /// Heartbeat now (the timer, or a credential that came or went).
    Beat,
    /// Self-sent: a heartbeat ended.
    Beaten(Box<Result<Beat, StoreError>>),
    /// Fail as if crashed.
    Crash(String),
}

impl From<Crash> for ClusterMsg {
    fn from(c: Crash) -> Self {
        ClusterMsg::Crash(c.0)
    }
}

/// The cluster actor.
#[derive(Clone)]
pub struct Cluster {
    pub deps: Deps,
}

/// Its state.
pub struct ClusterState {
    me: InstanceRow,
    beating: bool,
    /// When the last heartbeat that reached the store was written.
    last_ok: i64,
    last: Beat,
    beats: u64,
    fenced: bool,
    /// The listener of the other instances' notices (it does not end by itself).
    listener: Option<AbortOnDrop>,
}

/// Aborts its task when dropped: the state is dropped even when the actor fails (and
/// `post_stop` is skipped), so a restart never leaves a second listener behind.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Asks for a heartbeat now (a credential was created or deleted: its mailbox wants a
/// holder).
pub fn rebalance(deps: &Deps) {
    if let Some(c) = deps.health.actor::<ClusterMsg>(NAME) {
        let _ = c.send_message(ClusterMsg::Beat);
    }
}

/// One instance, as `/status` lists it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct InstanceView {
    pub id: String,
    pub address: Option<String>,
    pub version: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub last_heartbeat_at: chrono::DateTime<chrono::Utc>,
    /// Heartbeating now (an instance that stopped, or went silent for longer than the
    /// instance timeout, is not).
    pub alive: bool,
    /// This instance.
    #[serde(rename = "self")]
    pub this: bool,
}

/// The `/status` report with this instance and the instances sharing its store.
pub fn status(deps: &Deps) -> crate::health::StatusReport {
    let mut report = deps.health.report();
    let timeout = i64::try_from(deps.settings.instance_timeout.as_millis()).unwrap_or(10_000);
    let now = now_ms();
    report.instance = Some(deps.instance.to_string());
    report.instances = deps
        .mailboxes
        .seen()
        .into_iter()
        .map(|i| InstanceView {
            alive: i.stopped_at.is_none() && i.heartbeat_at >= now - timeout,
            this: i.id == deps.instance.as_ref(),
            started_at: crate::store::to_time(i.started_at),
            last_heartbeat_at: crate::store::to_time(i.heartbeat_at),
            id: i.id,
            address: i.address,
            version: i.version,
        })
        .collect();
    report
}

impl Cluster {
    fn ms(d: Duration) -> i64 {
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
    }

    fn show(&self, st: &ClusterState) {
        self.deps.health.set_info(
            NAME,
            json!({
                "instance": st.me.id,
                "live_instances": st.last.live,
                "mailboxes_held": if self.deps.mailboxes.is_solo() { None } else { Some(st.last.held) },
                "solo": self.deps.mailboxes.is_solo(),
                "beats": st.beats,
                "last_heartbeat_at": crate::store::to_time(st.last_ok),
                "fenced": st.fenced,
            }),
        );
    }

    /// Closes every gate when the claims in the store may have run out (see the module
    /// docs), until a heartbeat gets through again.
    fn fence_if_silent(&self, st: &mut ClusterState, why: &str) {
        let s = &self.deps.settings;
        let limit = Self::ms(s.instance_timeout) - 2 * Self::ms(s.heartbeat);
        let confirmed = self.deps.mailboxes.confirmed_at();
        if now_ms() - confirmed > limit && !st.fenced && !self.deps.mailboxes.is_solo() {
            tracing::error!(
                "{why}: no heartbeat reached the store in time, so this instance stops sending to Graph until one does"
            );
            self.deps.mailboxes.close_all();
            st.fenced = true;
        }
    }

    fn beaten(&self, st: &mut ClusterState, beat: Beat) {
        st.last_ok = beat.at;
        st.beats += 1;
        st.fenced = false;
        if !beat.taken.is_empty() && st.beats > 1 {
            // Mailboxes that were another instance's: their schedule and their due work
            // are this one's now.
            tracing::info!(mailboxes = beat.taken.len(), "took over mailboxes");
            renewal::reload(&self.deps);
            sweeper::sweep_all(&self.deps);
        } else if !beat.took_over.is_empty() {
            sweeper::sweep_all(&self.deps);
        }
        st.last = beat;
    }
}

impl Actor for Cluster {
    type Msg = ClusterMsg;
    type State = ClusterState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<ClusterMsg>,
        _: (),
    ) -> Result<ClusterState, ActorProcessingErr> {
        let deps = &self.deps;
        if let Store::Postgres(pool) = &deps.store {
            let (schema,): (String,) = sqlx::query_as("select current_schema()")
                .fetch_one(pool)
                .await?;
            deps.mailboxes.set_channel(format!("relay365_{schema}"));
        }
        let now = now_ms();
        let me = InstanceRow {
            id: deps.instance.to_string(),
            address: Some(deps.settings.address.clone()),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: now,
            heartbeat_at: now,
            stopped_at: None,
        };
        // The first heartbeat, before any other actor starts: the mailboxes it takes are the
        // ones this instance's work may touch.
        let first = beat::beat(deps, &me).await?;
        let mut st = ClusterState {
            me,
            beating: false,
            last_ok: 0,
            last: Beat::default(),
            beats: 0,
            fenced: false,
            listener: None,
        };
        self.beaten(&mut st, first);
        Ok(st)
    }

    async fn post_start(
        &self,
        myself: ActorRef<ClusterMsg>,
        st: &mut ClusterState,
    ) -> Result<(), ActorProcessingErr> {
        self.show(st);
        let every = self.deps.settings.heartbeat.max(Duration::from_millis(10));
        let me = myself.clone();
        spawn_guarded(&myself, async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if me.send_message(ClusterMsg::Beat).is_err() {
                    return;
                }
            }
        });
        if let (Store::Postgres(pool), Some(channel), false) = (
            &self.deps.store,
            self.deps.mailboxes.channel(),
            self.deps.mailboxes.is_solo(),
        ) {
            let (deps, pool, channel) = (self.deps.clone(), pool.clone(), channel.to_string());
            let me = myself.clone();
            st.listener = Some(AbortOnDrop(spawn_guarded(
                &myself,
                changes::listen(deps, pool, channel, me),
            )));
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<ClusterMsg>,
        st: &mut ClusterState,
    ) -> Result<(), ActorProcessingErr> {
        st.listener = None;
        // A clean stop: the others need not wait for this instance to fall silent.
        self.deps.mailboxes.close_all();
        if let Err(e) = instances::take_over(&self.deps.store, &st.me.id, now_ms()).await {
            tracing::warn!(error = %e, "could not give this instance's work back on stopping");
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ClusterMsg>,
        msg: ClusterMsg,
        st: &mut ClusterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ClusterMsg::Beat if st.beating => self.fence_if_silent(st, "the heartbeat hangs"),
            ClusterMsg::Beat => {
                st.beating = true;
                let (deps, me) = (self.deps.clone(), st.me.clone());
                spawn_reply(
                    &myself,
                    async move { Box::new(beat::beat(&deps, &me).await) },
                    ClusterMsg::Beaten,
                );
            }
            ClusterMsg::Beaten(result) => {
                st.beating = false;
                match *result {
                    Ok(beat) => self.beaten(st, beat),
                    Err(e) => {
                        tracing::warn!(error = %e, "heartbeat failed");
                        self.fence_if_silent(st, "heartbeats fail");
                    }
                }
            }
            ClusterMsg::Crash(why) => return Err(why.into()),
        }
        self.show(st);
        Ok(())
    }
}
