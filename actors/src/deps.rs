//! What every actor of the tree is given: the store, the health registry, the settings and a
//! shared HTTP client. Passed through each actor's arguments, never through globals.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::health::Health;
use crate::store::Store;
use crate::supervision::RestartPolicy;

/// Settings the actors need (a slice of the service's configuration).
#[derive(Clone)]
pub struct Settings {
    /// Event-processor actors in the pool.
    pub workers: usize,
    /// Delivery actors in the pool.
    pub delivery_workers: usize,
    /// Processing attempts before an event is `failed`.
    pub max_retries: u32,
    /// First retry delay of processing and delivery.
    pub retry_base: Duration,
    /// Delivery attempts before a delivery is `failed`.
    pub delivery_max_attempts: u32,
    /// Renew when this much lifetime is left.
    pub renew_before: Duration,
    /// Periodic delta resync; zero disables.
    pub resync_interval: Duration,
    /// notificationUrl sent to Graph.
    pub notification_url: String,
    /// lifecycleNotificationUrl sent to Graph.
    pub lifecycle_url: String,
    /// Graph base URL.
    pub graph_url: String,
    /// Timeout of one Graph request.
    pub graph_timeout: Duration,
    /// Identity platform base URL.
    pub login_url: String,
    /// Token-vending service base URL.
    pub auth_service_url: Option<String>,
    /// Shared secret for the token-vending service. Secret: never log.
    pub service_secret: Option<String>,
    /// How long the receiver may take to make a batch durable before answering 503.
    pub commit_timeout: Duration,
    /// How long a claim on an event or a delivery holds.
    pub lease: Duration,
    /// How often the store is swept for due work.
    pub sweep_interval: Duration,
    /// How often this instance heartbeats into the store.
    pub heartbeat: Duration,
    /// How long an instance may be silent before the others take over its work.
    pub instance_timeout: Duration,
    /// The address this instance listens on (shown to the others in `/status`).
    pub address: String,
    /// How long completed and skipped events are kept.
    pub retention: Duration,
    /// Restart policy of every supervisor.
    pub restart: RestartPolicy,
    /// How long a credential actor that exhausted its budget stays `failed`.
    pub park_for: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("workers", &self.workers)
            .field("graph_url", &self.graph_url)
            .field(
                "service_secret",
                &self.service_secret.as_ref().map(|_| "***"),
            )
            .finish_non_exhaustive()
    }
}

/// Counters of a worker pool, shown as the pool's `info` in `/status`.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub workers: AtomicU64,
    pub queue_depth: AtomicU64,
    pub in_flight: AtomicU64,
    pub processed: AtomicU64,
    pub failed: AtomicU64,
}

impl PoolStats {
    /// Moves a worker's share of `queue_depth` and `in_flight` from `shown` to `now`.
    pub fn shift(&self, shown: &mut (u64, u64), now: (u64, u64)) {
        fn adjust(counter: &AtomicU64, was: u64, now: u64) {
            if now > was {
                counter.fetch_add(now - was, Ordering::Relaxed);
            } else {
                counter.fetch_sub(was - now, Ordering::Relaxed);
            }
        }
        adjust(&self.queue_depth, shown.0, now.0);
        adjust(&self.in_flight, shown.1, now.1);
        *shown = now;
    }

    /// The `info` object of `/status`.
    pub fn info(&self) -> Value {
        json!({
            "workers": self.workers.load(Ordering::Relaxed),
            "queue_depth": self.queue_depth.load(Ordering::Relaxed),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "processed": self.processed.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
        })
    }
}

/// Dependencies of the tree's actors. Cheap to clone.
#[derive(Clone)]
pub struct Deps {
    pub store: Store,
    /// The same database for the claims and outcomes of processing and delivery, with commits
    /// that do not wait for the disk ([`Store::relaxed`]).
    pub work: Store,
    pub health: Arc<Health>,
    pub settings: Arc<Settings>,
    /// Shared HTTP client (connection pools are per client; credential actors may build their
    /// own).
    pub http: reqwest::Client,
    /// This process's id, used as lease owner in the store.
    pub instance: Arc<str>,
    /// The Graph client every credential shares (it holds no token: sessions add theirs).
    pub graph: Arc<crate::graph::GraphClient>,
    pub processor_stats: Arc<PoolStats>,
    pub delivery_stats: Arc<PoolStats>,
    /// The delivery targets, as processing matches events against them.
    pub targets: Arc<crate::processor::targets::TargetCache>,
    /// Faults armed through the debug endpoints (`RELAY365_DEBUG_ENDPOINTS` only).
    pub faults: Arc<Faults>,
    /// The mailboxes this instance holds (all of them when it runs alone).
    pub mailboxes: Arc<crate::cluster::Mailboxes>,
    /// The pools' writes to the work store, each shared by all workers (group commit).
    pub writes: Arc<Writes>,
}

impl Deps {
    /// A lease of this instance on work it claims now, for `settings.lease`.
    pub fn lease(&self) -> crate::store::events::Lease<'_> {
        crate::store::events::Lease {
            owner: &self.instance,
            now: crate::store::now_ms(),
            ms: i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX / 2),
        }
    }
}

/// The writes of processing and delivery that every worker of a pool shares, so that what the
/// workers write at the same time goes in one statement ([`crate::group_commit`]).
pub struct Writes {
    pub event_claims: crate::processor::writes::ClaimsWriter,
    pub completions: crate::processor::writes::CompletionsWriter,
    pub delivery_records: crate::delivery::send::RecordsWriter,
}

impl Writes {
    /// Writes on `work` under leases of `owner` that hold for `lease`.
    pub fn new(work: &Store, owner: &Arc<str>, lease: Duration) -> Self {
        let ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        Self {
            event_claims: crate::processor::writes::claims_writer(work.clone(), owner.clone(), ms),
            completions: crate::processor::writes::completions_writer(
                work.clone(),
                owner.clone(),
                ms,
            ),
            delivery_records: crate::delivery::send::records_writer(work.clone(), owner.clone()),
        }
    }
}

/// Faults the debug endpoints can arm, so that tests can watch the service handle what should
/// never happen. Each is off unless armed, and costs an atomic load where it is checked.
#[derive(Debug, Default)]
pub struct Faults {
    /// The receiver's next commit task panics before it writes (its requests answer 503).
    pub panic_next_commit: std::sync::atomic::AtomicBool,
}
