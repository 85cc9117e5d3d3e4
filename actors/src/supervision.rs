//! Supervision: one small supervisor actor used for every inner node of the tree.
//!
//! ractor restarts nothing by itself, and by default a parent stops when a child stops. This
//! supervisor overrides that with the policy of SPEC §7: one-for-one, exponential backoff,
//! and a budget of `max_restarts` restarts per `window` for each child. A child that blows its
//! budget is given up on according to its [`GiveUp`]: a core child escalates (the supervisor
//! fails, and at the root the service stops with a non-zero exit), a credential is parked as
//! `failed` and tried again after a cool-down.
//!
//! The supervisor does no I/O: it spawns, counts, schedules and writes the health registry.
//! Its clock is tokio's ([`tokio::time::Instant`]), so that the unit tests below can drive the
//! restart window and the backoff with a paused clock instead of waiting for them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::health::{ActorState, Health};

/// The message that makes an actor fail as if it had crashed (the debug endpoint's tool).
/// Every supervised actor's message type converts from it and returns `Err` on it.
#[derive(Debug, Clone)]
pub struct Crash(pub String);

/// What happens when a child exceeds its restart budget.
#[derive(Debug, Clone, Copy)]
pub enum GiveUp {
    /// Fail this supervisor too (its parent then decides; the root stops the service).
    Escalate,
    /// Mark the child `failed` and try it again after this long.
    Park(Duration),
}

/// The restart policy of a supervisor.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    /// More restarts than this within `window` gives up on the child.
    pub max_restarts: usize,
    pub window: Duration,
    /// First restart delay; doubles with every recent restart, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            window: Duration::from_secs(60),
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl RestartPolicy {
    /// The delay before restart number `recent` (1-based) within the window.
    pub fn backoff(&self, recent: usize) -> Duration {
        let exp = recent.saturating_sub(1).min(20) as u32;
        self.backoff_base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.backoff_max)
    }
}

type StartFn =
    Arc<dyn Fn(ActorCell) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> + Send + Sync>;
type CrashFn = fn(&ActorCell, String);

/// How to (re)start one child.
#[derive(Clone)]
pub struct ChildSpec {
    /// The child's name in `/status`; stable across restarts.
    pub name: String,
    /// The child's kind in `/status`.
    pub kind: &'static str,
    /// Core actors make the service `failing` while down.
    pub core: bool,
    pub give_up: GiveUp,
    start: StartFn,
    crash: CrashFn,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish()
    }
}

impl ChildSpec {
    /// A child running `actor`, started with fresh arguments from `args` at every (re)start.
    pub fn new<A, F>(name: impl Into<String>, kind: &'static str, actor: A, args: F) -> Self
    where
        A: Actor + Clone,
        A::Msg: From<Crash>,
        F: Fn() -> A::Arguments + Send + Sync + 'static,
    {
        let start: StartFn = Arc::new(move |parent: ActorCell| {
            let actor = actor.clone();
            let args = args();
            Box::pin(async move {
                let (r, _) = Actor::spawn_linked(None, actor, args, parent).await?;
                Ok(r.get_cell())
            })
        });
        let crash: CrashFn = crash_actor::<A>;
        Self {
            name: name.into(),
            kind,
            core: false,
            give_up: GiveUp::Escalate,
            start,
            crash,
        }
    }

    /// Marks the child core (its absence makes the service `failing`).
    pub fn core(mut self) -> Self {
        self.core = true;
        self
    }

    /// Sets what happens when the child exhausts its restart budget.
    pub fn give_up(mut self, g: GiveUp) -> Self {
        self.give_up = g;
        self
    }
}

/// Sends `Crash` to an actor of type `A` (a plain function: no allocation per child).
fn crash_actor<A>(cell: &ActorCell, why: String)
where
    A: Actor,
    A::Msg: From<Crash>,
{
    let r: ActorRef<A::Msg> = cell.clone().into();
    let _ = r.send_message(A::Msg::from(Crash(why)));
}

/// Called (without blocking) when a child is parked: `(child name, reason)`.
pub type ParkHook = Arc<dyn Fn(&str, &str) + Send + Sync>;
/// Called once the supervisor runs (e.g. to load dynamic children from the store in a task).
pub type StartHook = Arc<dyn Fn(ActorRef<SupervisorMsg>) + Send + Sync>;
/// Told why the tree gave up, when a root escalates.
pub type FatalHook = Arc<dyn Fn(String) + Send + Sync>;

/// Why [`SupervisorMsg::Add`] did not start a child.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    /// A child of that name is supervised already (it was left as it is).
    #[error("{0} exists")]
    Exists(String),
    /// It was added but its first start failed (it is restarted with backoff).
    #[error("{0}")]
    Start(String),
}

/// The supervisor's message API.
pub enum SupervisorMsg {
    /// Adds a child and starts it; answers once it was spawned.
    Add(ChildSpec, RpcReplyPort<Result<(), AddError>>),
    /// Stops a child and forgets it; answers whether it existed.
    Remove(String, RpcReplyPort<bool>),
    /// Makes a child crash (debug); answers whether it was running.
    FailChild(String, RpcReplyPort<bool>),
    /// Names of the children.
    Children(RpcReplyPort<Vec<String>>),
    /// Self-sent: restart a child after its backoff.
    Restart { name: String, generation: u64 },
    /// Makes this supervisor itself crash.
    Crash(String),
}

impl From<Crash> for SupervisorMsg {
    fn from(c: Crash) -> Self {
        SupervisorMsg::Crash(c.0)
    }
}

/// Arguments of a supervisor; cloned at every (re)start by its own parent.
#[derive(Clone)]
pub struct SupervisorArgs {
    pub name: String,
    pub health: Arc<Health>,
    pub policy: RestartPolicy,
    /// Children started in this order at every start.
    pub children: Vec<ChildSpec>,
    pub on_start: Option<StartHook>,
    pub on_park: Option<ParkHook>,
    pub on_fatal: Option<FatalHook>,
}

struct Slot {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    recent: VecDeque<Instant>,
    /// Bumped whenever a restart is scheduled, so stale timers do nothing.
    generation: u64,
    timer: Option<JoinHandle<()>>,
}

/// The supervisor's state.
pub struct SupervisorState {
    args: SupervisorArgs,
    children: BTreeMap<String, Slot>,
    by_id: HashMap<ActorId, String>,
}

/// The supervisor actor (stateless handler; everything lives in [`SupervisorState`]).
#[derive(Clone, Copy, Default)]
pub struct Supervisor;

impl SupervisorState {
    async fn start_child(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        name: &str,
    ) -> Result<(), String> {
        let Some(slot) = self.children.get_mut(name) else {
            return Ok(());
        };
        match (slot.spec.start)(myself.get_cell()).await {
            Ok(cell) => {
                self.by_id.insert(cell.get_id(), name.to_string());
                self.args.health.started(name, cell.clone());
                slot.cell = Some(cell);
                Ok(())
            }
            Err(e) => Err(format!("start failed: {e}")),
        }
    }

    /// Registers a new child and starts it. A failed start counts as a failure of the child
    /// (restarted with backoff); the outer `Err` is the supervisor's own escalation.
    async fn add_child(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        spec: ChildSpec,
    ) -> Result<Result<(), String>, ActorProcessingErr> {
        let name = spec.name.clone();
        self.args
            .health
            .register(&name, spec.kind, Some(&self.args.name), spec.core);
        self.children.insert(
            name.clone(),
            Slot {
                spec,
                cell: None,
                recent: VecDeque::new(),
                generation: 0,
                timer: None,
            },
        );
        let res = self.start_child(myself, &name).await;
        if let Err(e) = &res {
            self.child_down(myself, &name, e.clone())?;
        }
        Ok(res)
    }

    /// A child went down unasked. Decides: restart after backoff, park, or escalate.
    fn child_down(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        name: &str,
        reason: String,
    ) -> Result<(), ActorProcessingErr> {
        let policy = self.args.policy;
        let health = self.args.health.clone();
        let Some(slot) = self.children.get_mut(name) else {
            return Ok(());
        };
        slot.cell = None;
        let now = Instant::now();
        while slot
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > policy.window)
        {
            slot.recent.pop_front();
        }
        slot.recent.push_back(now);
        slot.generation += 1;
        if let Some(t) = slot.timer.take() {
            t.abort();
        }
        if slot.recent.len() > policy.max_restarts {
            match slot.spec.give_up {
                GiveUp::Escalate => {
                    metrics::counter!("relay365_actor_give_ups_total", "actor" => metric_label(&slot.spec)).increment(1);
                    health.down(name, &reason, ActorState::Failed);
                    let why = format!(
                        "{name} failed more than {} times in {}s, last: {reason}",
                        policy.max_restarts,
                        policy.window.as_secs()
                    );
                    tracing::error!(supervisor = %self.args.name, child = %name, %why, "giving up");
                    if let Some(f) = &self.args.on_fatal {
                        f(why.clone());
                    }
                    return Err(why.into());
                }
                GiveUp::Park(after) => {
                    metrics::counter!("relay365_actor_give_ups_total", "actor" => metric_label(&slot.spec)).increment(1);
                    health.down(name, &reason, ActorState::Failed);
                    tracing::warn!(
                        supervisor = %self.args.name, child = %name, %reason,
                        retry_in_s = after.as_secs(), "restart budget exhausted, parked"
                    );
                    if let Some(f) = &self.args.on_park {
                        f(name, &reason);
                    }
                    slot.recent.clear();
                    slot.timer = Some(schedule(myself, name, slot.generation, after));
                    return Ok(());
                }
            }
        }
        let delay = policy.backoff(slot.recent.len());
        tracing::warn!(
            supervisor = %self.args.name, child = %name, %reason,
            delay_ms = delay.as_millis() as u64, "child failed, restarting"
        );
        health.down(name, &reason, ActorState::Restarting);
        slot.timer = Some(schedule(myself, name, slot.generation, delay));
        Ok(())
    }
}

/// Metric label of a child: its name, except for the many dynamic children (credentials,
/// pool workers), which are labelled by kind to keep the label set small.
fn metric_label(spec: &ChildSpec) -> String {
    match spec.kind {
        "credential" | "worker" => spec.kind.to_string(),
        _ => spec.name.clone(),
    }
}

fn schedule(
    myself: &ActorRef<SupervisorMsg>,
    name: &str,
    generation: u64,
    after: Duration,
) -> JoinHandle<()> {
    let name = name.to_string();
    let me = myself.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let _ = me.send_message(SupervisorMsg::Restart { name, generation });
    })
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            args,
            children: BTreeMap::new(),
            by_id: HashMap::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let specs = st.args.children.clone();
        for spec in specs {
            // A child that fails to start is restarted with backoff like any failed child.
            let _started = st.add_child(&myself, spec).await?;
        }
        if let Some(hook) = &st.args.on_start {
            hook(myself.clone());
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: SupervisorMsg,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Add(spec, reply) => {
                let name = spec.name.clone();
                if st.children.contains_key(&name) {
                    let _ = reply.send(Err(AddError::Exists(name)));
                    return Ok(());
                }
                let res = st.add_child(&myself, spec).await?;
                let _ = reply.send(res.map_err(AddError::Start));
            }
            SupervisorMsg::Remove(name, reply) => {
                let existed = match st.children.remove(&name) {
                    Some(mut slot) => {
                        if let Some(t) = slot.timer.take() {
                            t.abort();
                        }
                        if let Some(cell) = slot.cell.take() {
                            st.by_id.remove(&cell.get_id());
                            cell.stop(Some("removed".into()));
                        }
                        true
                    }
                    None => false,
                };
                st.args.health.remove(&name);
                let _ = reply.send(existed);
            }
            SupervisorMsg::FailChild(name, reply) => {
                let running = match st
                    .children
                    .get(&name)
                    .and_then(|s| s.cell.as_ref().map(|c| (s, c)))
                {
                    Some((slot, cell)) => {
                        (slot.spec.crash)(
                            cell,
                            "failure injected through the debug endpoint".into(),
                        );
                        true
                    }
                    None => false,
                };
                let _ = reply.send(running);
            }
            SupervisorMsg::Children(reply) => {
                let _ = reply.send(st.children.keys().cloned().collect());
            }
            SupervisorMsg::Restart { name, generation } => {
                let due = st
                    .children
                    .get_mut(&name)
                    .filter(|s| s.generation == generation && s.cell.is_none());
                if let Some(slot) = due {
                    slot.timer = None;
                    st.args.health.count_restart(&name);
                    metrics::counter!("relay365_actor_restarts_total", "actor" => metric_label(&slot.spec)).increment(1);
                    if let Err(e) = st.start_child(&myself, &name).await {
                        st.child_down(&myself, &name, e)?;
                    }
                }
            }
            SupervisorMsg::Crash(why) => return Err(why.into()),
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                format!("stopped: {}", reason.unwrap_or_else(|| "no reason".into())),
            ),
            _ => return Ok(()),
        };
        // Events of children already replaced or removed are stale.
        let Some(name) = st.by_id.remove(&cell.get_id()) else {
            return Ok(());
        };
        st.child_down(&myself, &name, reason)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        for slot in st.children.values_mut() {
            if let Some(t) = slot.timer.take() {
                t.abort();
            }
        }
        // Children get a graceful stop (ractor would otherwise kill them without post_stop).
        myself
            .stop_children_and_wait(Some("shutdown".into()), Some(Duration::from_secs(10)))
            .await;
        for name in st.children.keys() {
            st.args.health.set_state(name, ActorState::Stopped);
        }
        Ok(())
    }
}

/// Spawns a supervisor as the root of a tree (unlinked), registering it in the health registry.
pub async fn spawn_root(
    args: SupervisorArgs,
) -> Result<(ActorRef<SupervisorMsg>, JoinHandle<()>), SpawnErr> {
    let health = args.health.clone();
    let name = args.name.clone();
    health.register(&name, "supervisor", None, true);
    let (r, h) = Actor::spawn(None, Supervisor, args).await?;
    health.started(&name, r.get_cell());
    Ok((r, h))
}

#[cfg(test)]
#[path = "supervision_tests.rs"]
mod tests;
