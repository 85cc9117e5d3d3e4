//! The health registry: what `/status` shows.
//!
//! Supervisors write their children's state, restarts and last failure here as they happen;
//! actors write their own `info`. `/status` renders a snapshot of this registry, so it never
//! waits on a busy actor. The registry also knows each live actor's cell, which is how the
//! tree's parts find each other by name (ractor's global registry is not used: several trees
//! may live in one process, as they do in tests).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use ractor::{ActorCell, ActorRef};
use serde::Serialize;
use serde_json::{json, Value};

/// The life-cycle state of an actor, as `/status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActorState {
    Starting,
    Running,
    Restarting,
    Failed,
    Stopped,
}

/// Why and when an actor last failed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Failure {
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// Live `info` of an actor, computed when `/status` is read (must be cheap: atomics).
pub type InfoFn = Arc<dyn Fn() -> Value + Send + Sync>;

struct Node {
    kind: &'static str,
    parent: Option<String>,
    core: bool,
    state: ActorState,
    restarts: u64,
    started_at: Option<DateTime<Utc>>,
    last_failure: Option<Failure>,
    info: Value,
    info_fn: Option<InfoFn>,
    cell: Option<ActorCell>,
    order: u64,
}

/// One actor in the rendered tree.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatusNode {
    pub name: String,
    pub kind: &'static str,
    pub state: ActorState,
    pub restarts: u64,
    pub started_at: Option<DateTime<Utc>>,
    pub last_failure: Option<Failure>,
    /// What the actor itself reports (queue depth, counters, next renewal, …).
    #[schema(value_type = Object)]
    pub info: Value,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub children: Vec<StatusNode>,
}

/// The whole of `/status`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatusReport {
    pub status: &'static str,
    pub version: &'static str,
    pub started_at: DateTime<Utc>,
    pub uptime_seconds: i64,
    /// This instance's id (see [`crate::cluster`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The instances sharing the store, as the last heartbeat saw them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<crate::cluster::InstanceView>,
    pub root: Option<StatusNode>,
}

/// The registry. Cheap to share (`Arc`), locked only for short, non-async sections.
pub struct Health {
    nodes: RwLock<HashMap<String, Node>>,
    seq: AtomicU64,
    started_at: DateTime<Utc>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// An empty registry; `started_at` is now.
    pub fn new() -> Self {
        Self {
            nodes: RwLock::new(HashMap::new()),
            seq: AtomicU64::new(0),
            started_at: Utc::now(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Node>> {
        self.nodes
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Node>> {
        self.nodes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds an actor in state `starting` (or keeps its counters if it is known already).
    /// `core` actors make the service `failing` while they are down.
    pub fn register(&self, name: &str, kind: &'static str, parent: Option<&str>, core: bool) {
        let order = self.seq.fetch_add(1, Ordering::Relaxed);
        self.write()
            .entry(name.to_string())
            .or_insert_with(|| Node {
                kind,
                parent: parent.map(str::to_string),
                core,
                state: ActorState::Starting,
                restarts: 0,
                started_at: None,
                last_failure: None,
                info: json!({}),
                info_fn: None,
                cell: None,
                order,
            });
    }

    /// Forgets an actor (a credential that was deleted).
    pub fn remove(&self, name: &str) {
        self.write().remove(name);
    }

    /// The actor runs (again) as `cell`.
    pub fn started(&self, name: &str, cell: ActorCell) {
        if let Some(n) = self.write().get_mut(name) {
            n.state = ActorState::Running;
            n.started_at = Some(Utc::now());
            n.cell = Some(cell);
        }
    }

    /// The actor went down for `reason`; its supervisor decides what comes next.
    pub fn down(&self, name: &str, reason: &str, next: ActorState) {
        if let Some(n) = self.write().get_mut(name) {
            n.state = next;
            n.cell = None;
            n.last_failure = Some(Failure {
                at: Utc::now(),
                reason: reason.to_string(),
            });
        }
    }

    /// Counts one restart of the actor.
    pub fn count_restart(&self, name: &str) {
        if let Some(n) = self.write().get_mut(name) {
            n.restarts += 1;
        }
    }

    /// Sets the actor's state without touching anything else.
    pub fn set_state(&self, name: &str, state: ActorState) {
        if let Some(n) = self.write().get_mut(name) {
            n.state = state;
            if state == ActorState::Stopped {
                n.cell = None;
            }
        }
    }

    /// Records a failure that did not stop the actor (e.g. a credential's token request).
    pub fn note_failure(&self, name: &str, reason: &str) {
        if let Some(n) = self.write().get_mut(name) {
            n.last_failure = Some(Failure {
                at: Utc::now(),
                reason: reason.to_string(),
            });
        }
    }

    /// Merges `info` (an object) into the actor's info.
    pub fn set_info(&self, name: &str, info: Value) {
        if let Some(n) = self.write().get_mut(name) {
            match (&mut n.info, info) {
                (Value::Object(have), Value::Object(new)) => have.extend(new),
                (slot, new) => *slot = new,
            }
        }
    }

    /// Makes the actor's info live: computed at every read of `/status`.
    pub fn set_info_fn(&self, name: &str, f: InfoFn) {
        if let Some(n) = self.write().get_mut(name) {
            n.info_fn = Some(f);
        }
    }

    /// The live cell of a running actor.
    pub fn cell(&self, name: &str) -> Option<ActorCell> {
        self.read().get(name).and_then(|n| n.cell.clone())
    }

    /// The live actor of that name, typed. The caller names the message type the actor takes;
    /// a wrong type fails at send time, so keep these look-ups behind typed helpers.
    pub fn actor<M: ractor::Message>(&self, name: &str) -> Option<ActorRef<M>> {
        self.cell(name).map(ActorRef::from)
    }

    /// The parent (supervisor) of an actor.
    pub fn parent(&self, name: &str) -> Option<String> {
        self.read().get(name).and_then(|n| n.parent.clone())
    }

    /// The state of an actor.
    pub fn state(&self, name: &str) -> Option<ActorState> {
        self.read().get(name).map(|n| n.state)
    }

    /// Names of the core actors that are not running (empty when all run).
    pub fn core_down(&self) -> Vec<String> {
        let mut down: Vec<String> = self
            .read()
            .iter()
            .filter(|(_, n)| n.core && n.state != ActorState::Running)
            .map(|(k, _)| k.clone())
            .collect();
        down.sort();
        down
    }

    /// The tree as `/status` shows it.
    pub fn report(&self) -> StatusReport {
        let nodes = self.read();
        let mut children: HashMap<&str, Vec<(&str, &Node)>> = HashMap::new();
        let mut root = None;
        for (name, node) in nodes.iter() {
            match &node.parent {
                Some(p) => children
                    .entry(p.as_str())
                    .or_default()
                    .push((name.as_str(), node)),
                None => root = Some((name.as_str(), node)),
            }
        }
        for list in children.values_mut() {
            list.sort_by_key(|(_, n)| n.order);
        }
        fn render(
            name: &str,
            node: &Node,
            children: &HashMap<&str, Vec<(&str, &Node)>>,
        ) -> StatusNode {
            let info = match &node.info_fn {
                Some(f) => {
                    let mut live = f();
                    if let (Value::Object(live), Value::Object(fixed)) = (&mut live, &node.info) {
                        for (k, v) in fixed {
                            live.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                    live
                }
                None => node.info.clone(),
            };
            StatusNode {
                name: name.to_string(),
                kind: node.kind,
                state: node.state,
                restarts: node.restarts,
                started_at: node.started_at,
                last_failure: node.last_failure.clone(),
                info,
                children: children
                    .get(name)
                    .map(|list| list.iter().map(|(n, c)| render(n, c, children)).collect())
                    .unwrap_or_default(),
            }
        }
        let degraded = nodes
            .values()
            .any(|n| matches!(n.state, ActorState::Restarting | ActorState::Failed));
        let failing = nodes
            .values()
            .any(|n| n.core && n.state != ActorState::Running);
        let now = Utc::now();
        StatusReport {
            status: if failing {
                "failing"
            } else if degraded {
                "degraded"
            } else {
                "ok"
            },
            version: env!("CARGO_PKG_VERSION"),
            started_at: self.started_at,
            uptime_seconds: (now - self.started_at).num_seconds(),
            instance: None,
            instances: Vec::new(),
            root: root.map(|(n, node)| render(n, node, &children)),
        }
    }
}
