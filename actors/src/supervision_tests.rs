//! The policy of SPEC §7 on a test child, with tokio's paused clock: `advance` moves time
//! exactly, and an idle runtime jumps to its next timer, so backoffs and cool-downs cost
//! nothing. Tests assert what the supervisor did (starts, restarts counted, the state in
//! the health registry, hooks called, escalation), never how long it took.
#![allow(clippy::unwrap_used)]

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

fn args(health: &Arc<Health>, policy: RestartPolicy, children: Vec<ChildSpec>) -> SupervisorArgs {
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
