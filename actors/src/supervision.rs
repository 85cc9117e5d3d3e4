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
#[allow(clippy::unwrap_used)]
mod tests {
    //! The policy of SPEC §7 on a test child, with tokio's paused clock: `advance` moves time
    //! exactly, and an idle runtime jumps to its next timer, so backoffs and cool-downs cost
    //! nothing. Tests assert what the supervisor did (starts, restarts counted, the state in
    //! the health registry, hooks called, escalation), never how long it took.

    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;

    /// A child that counts its starts, refuses to start while `refuse` is set, and fails on
    /// [`Crash`].
    #[derive(Clone, Default)]
    struct Probe {
        starts: Arc<AtomicUsize>,
        refuse: Arc<AtomicBool>,
    }

    impl Probe {
        fn starts(&self) -> usize {
            self.starts.load(Ordering::SeqCst)
        }

        fn spec(&self, name: &str, give_up: GiveUp) -> ChildSpec {
            ChildSpec::new(name, "probe", self.clone(), || ()).give_up(give_up)
        }
    }

    impl Actor for Probe {
        type Msg = Crash;
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _myself: ActorRef<Crash>,
            _args: (),
        ) -> Result<(), ActorProcessingErr> {
            self.starts.fetch_add(1, Ordering::SeqCst);
            if self.refuse.load(Ordering::SeqCst) {
                return Err("refuses to start".into());
            }
            Ok(())
        }

        async fn handle(
            &self,
            _myself: ActorRef<Crash>,
            msg: Crash,
            _st: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            Err(msg.0.into())
        }
    }

    fn policy(max_restarts: usize) -> RestartPolicy {
        RestartPolicy {
            max_restarts,
            window: Duration::from_secs(60),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
        }
    }

    fn args(
        health: &Arc<Health>,
        policy: RestartPolicy,
        children: Vec<ChildSpec>,
    ) -> SupervisorArgs {
        SupervisorArgs {
            name: "sup".into(),
            health: health.clone(),
            policy,
            children,
            on_start: None,
            on_park: None,
            on_fatal: None,
        }
    }

    /// Lets the actors run (without moving the clock) until `cond` holds.
    async fn until(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..10_000 {
            if cond() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("never: {what}");
    }

    /// Lets the actors run without moving the clock, for checks that something did not happen.
    async fn run_pending() {
        for _ in 0..1_000 {
            tokio::task::yield_now().await;
        }
    }

    fn restarts(health: &Health, name: &str) -> u64 {
        let report = health.report();
        let root = report.root.unwrap();
        fn find<'a>(
            n: &'a crate::health::StatusNode,
            name: &str,
        ) -> Option<&'a crate::health::StatusNode> {
            if n.name == name {
                return Some(n);
            }
            n.children.iter().find_map(|c| find(c, name))
        }
        find(&root, name).map(|n| n.restarts).unwrap()
    }

    async fn crash(sup: &ActorRef<SupervisorMsg>, name: &str) {
        let running = sup
            .call(|r| SupervisorMsg::FailChild(name.into(), r), None)
            .await
            .unwrap()
            .unwrap();
        assert!(running, "{name} was not running");
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let p = policy(5);
        let secs: Vec<u64> = (1..=6).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 8, 8]);
        assert_eq!(p.backoff(0), p.backoff_base);
        assert_eq!(p.backoff(usize::MAX), p.backoff_max);
    }

    #[tokio::test(start_paused = true)]
    async fn a_crashed_child_comes_back_after_its_backoff_which_doubles() {
        let health = Arc::new(Health::new());
        let probe = Probe::default();
        let spec = probe.spec("c", GiveUp::Escalate);
        let (sup, _h) = spawn_root(args(&health, policy(5), vec![spec]))
            .await
            .unwrap();
        until("c runs", || health.state("c") == Some(ActorState::Running)).await;

        for (n, backoff) in [(1, 1000), (2, 2000), (3, 4000)] {
            crash(&sup, "c").await;
            until("c restarting", || {
                health.state("c") == Some(ActorState::Restarting)
            })
            .await;
            tokio::time::advance(Duration::from_millis(backoff - 10)).await;
            run_pending().await;
            assert_eq!(
                health.state("c"),
                Some(ActorState::Restarting),
                "restart {n} early"
            );
            assert_eq!(probe.starts(), n);
            tokio::time::advance(Duration::from_millis(20)).await;
            until("c runs again", || {
                health.state("c") == Some(ActorState::Running)
            })
            .await;
            assert_eq!(probe.starts(), n + 1);
            assert_eq!(restarts(&health, "c"), n as u64);
        }
        sup.stop(None);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_older_than_the_window_leave_the_budget() {
        let health = Arc::new(Health::new());
        let parked = Arc::new(AtomicUsize::new(0));
        let probe = Probe::default();
        let mut a = args(
            &health,
            policy(2),
            vec![probe.spec("c", GiveUp::Park(Duration::from_secs(600)))],
        );
        let p = parked.clone();
        a.on_park = Some(Arc::new(move |_, _| {
            p.fetch_add(1, Ordering::SeqCst);
        }));
        let (sup, _h) = spawn_root(a).await.unwrap();
        until("c runs", || health.state("c") == Some(ActorState::Running)).await;

        // Two failures a window apart, twice over: never more than the budget of two within
        // one window, so the child is restarted every time and never parked.
        for n in 1..=4 {
            crash(&sup, "c").await;
            until("c restarting", || {
                health.state("c") == Some(ActorState::Restarting)
            })
            .await;
            tokio::time::advance(Duration::from_secs(61)).await;
            until("c runs again", || {
                health.state("c") == Some(ActorState::Running)
            })
            .await;
            assert_eq!(restarts(&health, "c"), n);
        }
        assert_eq!(parked.load(Ordering::SeqCst), 0);
        sup.stop(None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_storming_child_is_parked_and_tried_again_after_the_cool_down() {
        let health = Arc::new(Health::new());
        let parked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let probe = Probe::default();
        probe.refuse.store(true, Ordering::SeqCst);
        let mut a = args(&health, policy(3), vec![]);
        let p = parked.clone();
        a.on_park = Some(Arc::new(move |name, why| {
            p.lock().unwrap().push((name.into(), why.into()));
        }));
        let (sup, _h) = spawn_root(a).await.unwrap();

        let added = sup
            .call(
                |r| SupervisorMsg::Add(probe.spec("c", GiveUp::Park(Duration::from_secs(600))), r),
                None,
            )
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(added, Err(AddError::Start(_))), "{added:?}");
        // The idle runtime runs the backoffs: the first start and three restarts all fail.
        while parked.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(probe.starts(), 4);
        assert_eq!(restarts(&health, "c"), 3);
        assert_eq!(health.state("c"), Some(ActorState::Failed));
        let (name, why) = parked.lock().unwrap()[0].clone();
        assert_eq!(name, "c");
        assert!(why.contains("refuses to start"), "{why}");
        // Parking is not a failure of the supervisor.
        assert_eq!(health.state("sup"), Some(ActorState::Running));

        // After the cool-down it is tried once more, with a fresh budget; now it starts.
        probe.refuse.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(590)).await;
        run_pending().await;
        assert_eq!(probe.starts(), 4, "tried again before the cool-down");
        tokio::time::advance(Duration::from_secs(20)).await;
        until("c runs after the cool-down", || {
            health.state("c") == Some(ActorState::Running)
        })
        .await;
        assert_eq!(probe.starts(), 5);
        assert_eq!(restarts(&health, "c"), 4);
        assert_eq!(parked.lock().unwrap().len(), 1);
        sup.stop(None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_storming_core_child_escalates_and_the_root_gives_up() {
        let health = Arc::new(Health::new());
        let fatal: Arc<Mutex<Option<String>>> = Arc::default();
        let probe = Probe::default();
        probe.refuse.store(true, Ordering::SeqCst);
        let mut a = args(
            &health,
            policy(2),
            vec![probe.spec("core", GiveUp::Escalate).core()],
        );
        let f = fatal.clone();
        a.on_fatal = Some(Arc::new(move |why| {
            *f.lock().unwrap() = Some(why);
        }));
        let (_sup, handle) = spawn_root(a).await.unwrap();

        // The root ends on its own once the budget is spent (the idle runtime runs the backoffs).
        handle.await.unwrap();
        assert_eq!(probe.starts(), 3);
        assert_eq!(restarts(&health, "core"), 2);
        assert_eq!(health.state("core"), Some(ActorState::Failed));
        assert_eq!(health.core_down(), ["core"]);
        let why = fatal.lock().unwrap().clone().unwrap();
        assert!(why.starts_with("core failed more than 2 times"), "{why}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_inner_supervisor_that_gives_up_is_restarted_by_its_parent() {
        let health = Arc::new(Health::new());
        let probe = Probe::default();
        probe.refuse.store(true, Ordering::SeqCst);
        let inner = {
            let mut a = args(
                &health,
                policy(1),
                vec![probe.spec("leaf", GiveUp::Escalate)],
            );
            a.name = "inner".into();
            ChildSpec::new("inner", "supervisor", Supervisor, move || a.clone())
        };
        let (root, _h) = spawn_root(args(&health, policy(5), vec![inner]))
            .await
            .unwrap();

        // The leaf spends the inner supervisor's budget of one restart; the inner fails, and
        // the root restarts it (with a fresh leaf) instead of failing itself.
        until("inner is known", || health.state("inner").is_some()).await;
        while restarts(&health, "inner") == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        probe.refuse.store(false, Ordering::SeqCst);
        until("inner runs", || {
            health.state("inner") == Some(ActorState::Running)
        })
        .await;
        while health.state("leaf") != Some(ActorState::Running) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(health.state("sup"), Some(ActorState::Running));
        assert!(probe.starts() >= 3, "{}", probe.starts());
        root.stop(None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_child_is_not_restarted() {
        let health = Arc::new(Health::new());
        let probe = Probe::default();
        let (sup, _h) = spawn_root(args(
            &health,
            policy(5),
            vec![probe.spec("c", GiveUp::Escalate)],
        ))
        .await
        .unwrap();
        until("c runs", || health.state("c") == Some(ActorState::Running)).await;
        crash(&sup, "c").await;
        until("c restarting", || {
            health.state("c") == Some(ActorState::Restarting)
        })
        .await;

        let existed = sup
            .call(|r| SupervisorMsg::Remove("c".into(), r), None)
            .await
            .unwrap()
            .unwrap();
        assert!(existed);
        tokio::time::advance(Duration::from_secs(10)).await;
        run_pending().await;
        assert_eq!(probe.starts(), 1, "restarted after removal");
        assert_eq!(health.state("c"), None);
        let children = sup
            .call(SupervisorMsg::Children, None)
            .await
            .unwrap()
            .unwrap();
        assert!(children.is_empty(), "{children:?}");
        sup.stop(None);
    }
}
