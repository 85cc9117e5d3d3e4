//! The supervision tree and the handful of operations the HTTP layer performs on it.
//!
//! ```text
//! root                    supervisor
//! ├── cluster             core: heartbeats, which mailboxes this instance holds
//! ├── receiver            core
//! ├── processors          pool supervisor (core) → processor:0..N
//! ├── delivery            pool supervisor → delivery:0..M
//! ├── renewal             core
//! ├── sweeper             hands what is due in the store to the pools; retention
//! └── credentials         supervisor → credential:<id>, parked when they storm
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorRef, SpawnErr};
use tokio::task::JoinHandle;

use crate::cluster::{self, Cluster};
use crate::credential;
use crate::delivery::{self, Delivery};
use crate::deps::Deps;
use crate::health::ActorState;
use crate::processor::{self, Processor};
use crate::receiver::{self, Receiver, ReceiverMsg};
use crate::renewal::{self, Renewal, RenewalMsg};
use crate::store::credentials::CredentialRow;
use crate::supervision::{
    spawn_root, AddError, ChildSpec, FatalHook, Supervisor, SupervisorArgs, SupervisorMsg,
};
use crate::sweeper::{self, Sweeper};

/// Name of the root supervisor.
pub const ROOT: &str = "root";

/// A running tree.
pub struct Tree {
    pub root: ActorRef<SupervisorMsg>,
    /// Ends when the root stops (gracefully or because it gave up).
    pub handle: JoinHandle<()>,
}

/// Errors of tree operations requested by the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("no actor named {0}")]
    NoSuchActor(String),
    #[error("{0} is not running")]
    NotRunning(String),
    #[error("the root cannot be failed on purpose")]
    Root,
    #[error("actor call failed: {0}")]
    Call(String),
}

fn pool_spec<A, F>(
    deps: &Deps,
    name: &'static str,
    count: usize,
    worker_name: fn(usize) -> String,
    make: F,
) -> ChildSpec
where
    A: ractor::Actor<Arguments = ()> + Clone,
    A::Msg: From<crate::supervision::Crash>,
    F: Fn(usize) -> A + Send + Sync + 'static,
{
    let children: Vec<ChildSpec> = (0..count)
        .map(|i| ChildSpec::new(worker_name(i), "worker", make(i), || ()))
        .collect();
    let args = SupervisorArgs {
        name: name.to_string(),
        health: deps.health.clone(),
        policy: deps.settings.restart,
        children,
        on_start: None,
        on_park: None,
        on_fatal: None,
    };
    ChildSpec::new(name, "pool", Supervisor, move || args.clone())
}

/// Starts the whole tree. `on_fatal` is told why, if the root gives up (a core actor failed
/// more often than its budget allows); the caller should then stop the process non-zero.
pub async fn spawn_tree(deps: Deps, on_fatal: FatalHook) -> Result<Tree, SpawnErr> {
    let s = &deps.settings;
    deps.processor_stats
        .workers
        .store(s.workers as u64, Ordering::Relaxed);
    deps.delivery_stats
        .workers
        .store(s.delivery_workers as u64, Ordering::Relaxed);

    let processors = {
        let d = deps.clone();
        pool_spec(
            &deps,
            processor::POOL,
            s.workers,
            processor::worker_name,
            move |i| Processor {
                deps: d.clone(),
                index: i,
            },
        )
    };
    let deliveries = {
        let d = deps.clone();
        pool_spec(
            &deps,
            delivery::POOL,
            s.delivery_workers,
            delivery::worker_name,
            move |i| Delivery {
                deps: d.clone(),
                index: i,
            },
        )
    };
    let credentials = {
        let args = SupervisorArgs {
            name: credential::SUPERVISOR.to_string(),
            health: deps.health.clone(),
            policy: s.restart,
            children: Vec::new(),
            on_start: Some(credential::start_hook(&deps)),
            on_park: Some(credential::park_hook(&deps)),
            on_fatal: None,
        };
        ChildSpec::new(
            credential::SUPERVISOR,
            "supervisor",
            Supervisor,
            move || args.clone(),
        )
    };
    let receiver = Receiver::new(deps.clone());
    let receiver_stats = receiver.stats.clone();
    let children = vec![
        // First: its first heartbeat takes the mailboxes the others' work may touch.
        ChildSpec::new(
            cluster::NAME,
            "cluster",
            Cluster { deps: deps.clone() },
            || (),
        )
        .core(),
        ChildSpec::new(receiver::NAME, "receiver", receiver, || ()).core(),
        processors.core(),
        deliveries,
        ChildSpec::new(
            renewal::NAME,
            "renewal",
            Renewal { deps: deps.clone() },
            || (),
        )
        .core(),
        ChildSpec::new(
            sweeper::NAME,
            "sweeper",
            Sweeper { deps: deps.clone() },
            || (),
        ),
        credentials,
    ];
    let names: Vec<String> = children.iter().map(|c| c.name.clone()).collect();
    // Registered up front, in this order, so /status lists them so and the pools' live info
    // is attached before they start.
    for spec in &children {
        deps.health
            .register(&spec.name, spec.kind, Some(ROOT), spec.core);
    }
    deps.health
        .set_info_fn(receiver::NAME, Arc::new(move || receiver_stats.info()));
    deps.health.set_info_fn(processor::POOL, {
        let stats = deps.processor_stats.clone();
        Arc::new(move || stats.info())
    });
    deps.health.set_info_fn(delivery::POOL, {
        let stats = deps.delivery_stats.clone();
        Arc::new(move || stats.info())
    });
    let (root, handle) = spawn_root(SupervisorArgs {
        name: ROOT.to_string(),
        health: deps.health.clone(),
        policy: s.restart,
        children,
        on_start: None,
        on_park: None,
        on_fatal: Some(on_fatal),
    })
    .await?;
    // The root starts its children after it has started itself: wait for them, so that the
    // tree runs (and the HTTP layer finds every actor) when this returns. A child that cannot
    // start is retried by the root with backoff; after 30 s the caller goes on and `/status`
    // says which one is down.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline
        && !names
            .iter()
            .all(|n| deps.health.state(n) == Some(ActorState::Running))
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(Tree { root, handle })
}

const CALL: Duration = Duration::from_secs(5);

fn supervisor(deps: &Deps, name: &str) -> Result<ActorRef<SupervisorMsg>, TreeError> {
    deps.health
        .actor(name)
        .ok_or_else(|| TreeError::NotRunning(name.to_string()))
}

/// Starts the actor of a credential that was just stored. Already running is fine: the
/// supervisor's start-up load of the credentials may have read the row first.
pub async fn start_credential(deps: &Deps, row: CredentialRow) -> Result<(), TreeError> {
    let sup = supervisor(deps, credential::SUPERVISOR)?;
    let spec = credential::child_spec(deps, &row.id.clone(), Some(row));
    match sup.call(|r| SupervisorMsg::Add(spec, r), Some(CALL)).await {
        Ok(ractor::rpc::CallResult::Success(Ok(()) | Err(AddError::Exists(_)))) => Ok(()),
        Ok(ractor::rpc::CallResult::Success(Err(e))) => Err(TreeError::Call(e.to_string())),
        Ok(other) => Err(TreeError::Call(format!("{other:?}"))),
        Err(e) => Err(TreeError::Call(e.to_string())),
    }
}

/// Starts an actor for every stored credential that has none here (notices from other
/// instances may have been missed). Runs in the background.
pub fn sync_credentials(deps: &Deps) {
    let deps = deps.clone();
    tokio::spawn(async move {
        match crate::store::credentials::list(&deps.store).await {
            Ok(rows) => {
                for row in rows {
                    let id = row.id.clone();
                    if let Err(e) = start_credential(&deps, row).await {
                        tracing::warn!(credential = %id, error = %e, "starting a credential's actor");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the credentials"),
        }
    });
}

/// Stops the actor of a credential that was deleted.
pub async fn stop_credential(deps: &Deps, id: &str) -> Result<(), TreeError> {
    let sup = supervisor(deps, credential::SUPERVISOR)?;
    let name = credential::actor_name(id);
    match sup
        .call(|r| SupervisorMsg::Remove(name, r), Some(CALL))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(_)) => Ok(()),
        Ok(other) => Err(TreeError::Call(format!("{other:?}"))),
        Err(e) => Err(TreeError::Call(e.to_string())),
    }
}

/// Makes the named actor fail as if it had crashed (debug endpoint).
pub async fn fail_actor(deps: &Deps, name: &str) -> Result<(), TreeError> {
    if name == ROOT {
        return Err(TreeError::Root);
    }
    let parent = deps
        .health
        .parent(name)
        .ok_or_else(|| TreeError::NoSuchActor(name.to_string()))?;
    let sup = supervisor(deps, &parent)?;
    match sup
        .call(
            |r| SupervisorMsg::FailChild(name.to_string(), r),
            Some(CALL),
        )
        .await
    {
        Ok(ractor::rpc::CallResult::Success(true)) => Ok(()),
        Ok(ractor::rpc::CallResult::Success(false)) => Err(TreeError::NotRunning(name.to_string())),
        Ok(other) => Err(TreeError::Call(format!("{other:?}"))),
        Err(e) => Err(TreeError::Call(e.to_string())),
    }
}

/// Tells the receiver and renewal that subscriptions changed in the store.
pub fn subscriptions_changed(deps: &Deps) {
    if let Some(r) = deps.health.actor::<ReceiverMsg>(receiver::NAME) {
        let _ = r.send_message(ReceiverMsg::Reload);
    }
    if let Some(r) = deps.health.actor::<RenewalMsg>(renewal::NAME) {
        let _ = r.send_message(RenewalMsg::Reload);
    }
}
