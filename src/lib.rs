//! relay365: Microsoft 365 mailboxes as reliable, instant, signed events for n8n.
//!
//! Layout: [`config`] (layered configuration), [`http`] (the API: thin handlers),
//! [`telemetry`] (logs and metrics), and [`App`], which wires the store, the supervision tree
//! of `relay365-actors` and the HTTP server together. `main.rs` is the CLI around it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use relay365_actors::cluster::Mailboxes;
use relay365_actors::deps::Writes;
use relay365_actors::store::StoreOptions;
use relay365_actors::{tree, Deps, Health, PoolStats, Store};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub mod config;
pub mod demo;
pub mod error;
pub mod http;
pub mod startup;
pub mod status;
pub mod telemetry;

pub use config::Config;
/// The Graph simulator, a crate of its own (`sim/`) so that it cannot import the actors.
pub use relay365_sim as sim;
pub use startup::StartError;

/// Opens the configured store and applies its migrations; a failure says what to check.
pub async fn open_store(cfg: &Config) -> Result<Store, StartError> {
    let opts = StoreOptions {
        sqlite_synchronous: cfg.sqlite_synchronous,
        max_connections: cfg.db_max_connections,
    };
    let failed = |e| StartError::store(&cfg.database_url, &e);
    let store = Store::connect(&cfg.database_url, &opts)
        .await
        .map_err(failed)?;
    store.migrate().await.map_err(failed)?;
    Ok(store)
}

/// Holds the lock file beside a SQLite database for as long as it lives (the operating system
/// drops the lock when the process ends, however it ends). `None` for PostgreSQL.
pub fn lock_single_instance(database_url: &str) -> anyhow::Result<Option<std::fs::File>> {
    use std::str::FromStr;
    if !database_url.starts_with("sqlite:") {
        return Ok(None);
    }
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(database_url)
        .with_context(|| format!("reading DATABASE_URL {database_url}"))?;
    let db = opts.get_filename();
    if db.as_os_str().is_empty() || db.to_string_lossy().contains(":memory:") {
        return Ok(None);
    }
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let lock = db.with_file_name(format!(
        "{}.lock",
        db.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .with_context(|| format!("opening the lock file {}", lock.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        // SQLite is one instance's store; several instances share a PostgreSQL database.
        Err(std::fs::TryLockError::WouldBlock) => Err(startup::StartError::already_serving(
            &db.display().to_string(),
            &lock.display().to_string(),
        )
        .into()),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", lock.display()))
        }
    }
}

/// Creates the target of `RELAY365_N8N_WEBHOOK_URL`, or points it at the URL configured now.
/// It has a fixed id, so a restart does not add a second one.
async fn default_target(cfg: &Config, store: &Store) -> anyhow::Result<()> {
    use relay365_actors::store::targets;
    let Some(url) = &cfg.n8n_webhook_url else {
        return Ok(());
    };
    let (secret, given) = match &cfg.n8n_webhook_secret {
        Some(s) => (s.clone(), true),
        None => (targets::generate_secret(), false),
    };
    let created = targets::upsert_default(store, targets::DEFAULT_TARGET_ID, url, &secret, given)
        .await
        .context("creating the default delivery target (RELAY365_N8N_WEBHOOK_URL)")?;
    if created {
        tracing::info!(
            target_id = targets::DEFAULT_TARGET_ID,
            "default delivery target created"
        );
    }
    Ok(())
}

/// A running service: store, supervision tree and HTTP server.
pub struct App {
    /// The address the HTTP server listens on.
    pub addr: SocketAddr,
    /// The tree's dependencies (store, health registry, settings).
    pub deps: Deps,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl App {
    /// Starts everything on `listener`. Returns once the tree runs and the server accepts.
    pub async fn start(cfg: Config, listener: TcpListener) -> anyhow::Result<App> {
        let addr = listener.local_addr()?;
        let lock = lock_single_instance(&cfg.database_url)?;
        let store = open_store(&cfg).await?;
        default_target(&cfg, &store).await?;
        // The language models are built once, here, so the first mail is as fast as the rest
        // (under a millisecond; their pages are read in as languages are met).
        tokio::task::spawn_blocking(relay365_actors::primitives::warm_up)
            .await
            .context("loading the language models")?;
        // No redirects: a token service or Graph answering 3xx to another host must not receive
        // the secret, the refresh token or the bearer token that went with the request.
        let instance = uuid::Uuid::new_v4().to_string();
        let http = reqwest::Client::builder()
            // Microsoft asks callers to name themselves; the instance tells several apart.
            .user_agent(format!(
                "relay365/{} (instance {instance})",
                env!("CARGO_PKG_VERSION")
            ))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(cfg.graph_timeout_seconds))
            .build()
            .context("building the HTTP client")?;
        let mut settings = cfg.settings();
        settings.address = addr.to_string();
        let mailboxes = match store.backend() {
            relay365_actors::store::Backend::Sqlite => Mailboxes::solo(),
            relay365_actors::store::Backend::Postgres => Mailboxes::shared(),
        };
        let work = store.relaxed(cfg.db_max_connections);
        let instance: Arc<str> = instance.into();
        let writes = Writes::new(&work, &instance, settings.lease);
        let deps = Deps {
            work,
            store: store.clone(),
            health: Arc::new(Health::new()),
            settings: Arc::new(settings),
            http: http.clone(),
            instance,
            graph: Arc::new(
                relay365_actors::graph::GraphClient::new(cfg.graph_url.clone(), http.clone())
                    .with_timeout(Duration::from_secs(cfg.graph_timeout_seconds)),
            ),
            processor_stats: Arc::new(PoolStats::default()),
            delivery_stats: Arc::new(PoolStats::default()),
            targets: Arc::default(),
            faults: Arc::default(),
            mailboxes: Arc::new(mailboxes),
            writes: Arc::new(writes),
        };
        let (fatal_tx, mut fatal_rx) = mpsc::unbounded_channel::<String>();
        let tree = tree::spawn_tree(
            deps.clone(),
            Arc::new(move |why| {
                let _ = fatal_tx.send(why);
            }),
        )
        .await
        .context("starting the supervision tree")?;
        let limits = http::serve::ServerLimits::of(&cfg);
        let state = http::AppState::new(cfg, deps.clone(), telemetry::metrics());
        let (server_stop_tx, server_stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(http::serve::serve(
            listener,
            http::router(state),
            limits,
            async move {
                let _ = server_stop_rx.await;
            },
        ));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let health = deps.health.clone();
        let work = deps.work.clone();
        let task = tokio::spawn(async move {
            let outcome = tokio::select! {
                _ = stop_rx => Ok(()),
                why = fatal_rx.recv() => Err(anyhow::anyhow!(why.unwrap_or_else(|| "the supervision tree stopped".into()))),
            };
            let _ = server_stop_tx.send(());
            if tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .is_err()
            {
                tracing::warn!("HTTP server did not stop within 10s");
            }
            tree.root.stop(Some("shutdown".into()));
            let _ = tokio::time::timeout(Duration::from_secs(15), tree.handle).await;
            health.set_state(tree::ROOT, relay365_actors::health::ActorState::Stopped);
            store.close().await;
            work.close().await;
            drop(lock);
            outcome
        });
        Ok(App {
            addr,
            deps,
            stop: Some(stop_tx),
            task,
        })
    }

    /// The base URL of the HTTP server, e.g. `http://127.0.0.1:8000`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops gracefully: the server first, then the tree, then the store.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.context("shutdown task")?
    }

    /// Runs until `shutdown` completes (then stops gracefully) or the tree gives up (then
    /// returns the reason as an error).
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::select! {
            _ = shutdown => self.stop().await,
            res = &mut self.task => res.context("shutdown task")?,
        }
    }
}
