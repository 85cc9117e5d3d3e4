//! The Graph simulator: a stand-in for the parts of Microsoft Graph and the identity
//! platform that relay365 uses (SPEC §9), so everything can be developed, demonstrated and
//! tested offline, including the unpleasant parts (throttling, validation handshakes,
//! dropped and duplicated notifications, expiring subscriptions).
//!
//! It runs as an axum app on a listener the caller binds ([`Simulator::start`]), so tests can
//! use port 0 and read its state in-process through [`SimHandle::sim`]. The control API under
//! `/_sim/…` (see `docs/simulator.md`) drives the same [`Sim`] methods over HTTP.
//!
//! It stands outside the service it tests: its Graph shapes come from the fixtures in
//! `reference/graph-fixtures/`, never from `relay365_actors::graph`. That wall is Cargo's to
//! keep: this is a crate of its own, and `relay365-actors` is not among its dependencies.

mod auth;
mod control;
mod graph;
mod notify;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::Router;
use base64::Engine as _;
use chrono::Utc;
use rand::RngCore;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use notify::{DeliveryReport, SimError, LIFECYCLE_EVENTS};
pub use state::{
    AddressInput, AttachmentInput, FaultKind, FaultSpec, MessageUpdate, NewMail, NotificationKind,
    NotificationRecord, RequestRecord, SeedSubscription, SimAddress, SimSubscription,
    SubscriptionCounts, TokenCounts,
};

/// What the simulator pretends to be, and how strict and slow it is.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Tenant name accepted in `/{tenant}/oauth2/v2.0/token` (its GUID is accepted too).
    pub tenant: String,
    /// The one registered app.
    pub client_id: String,
    pub client_secret: String,
    /// Mailboxes that exist at start (more can be added through the control API).
    pub mailboxes: Vec<String>,
    /// Expected `X-Service-Token` on the token-vending route.
    pub service_secret: String,
    /// Lifetime of issued access tokens.
    pub token_lifetime: Duration,
    /// Longest lifetime a subscription may ask for; more is a 400 (graph-contract §2).
    pub max_subscription_lifetime: Duration,
    /// Shorter requests are silently raised to this (45 min, graph-contract §1).
    pub min_subscription_lifetime: Duration,
    /// When set, every create and renew is granted exactly this lifetime, whatever was
    /// asked (so tests can watch renewal and expiry in seconds).
    pub granted_lifetime: Option<Duration>,
    /// Added to every Graph request.
    pub latency: Duration,
    /// How long a receiver has to answer a validation request (Graph: 10 s).
    pub validation_timeout: Duration,
    /// How long a receiver has to answer a notification POST (Graph: 3 s).
    pub notification_timeout: Duration,
    /// Further attempts after a failed notification POST.
    pub notification_retries: u32,
    /// Delay before the first retry; doubles each time.
    pub notification_retry_delay: Duration,
    /// Concurrent requests per mailbox before 429 `ApplicationThrottled` (Outlook: 4).
    pub mailbox_concurrency: usize,
    /// `Retry-After` sent with that 429.
    pub concurrency_retry_after: Duration,
    /// Subscriptions per page of `GET /subscriptions`.
    pub list_page_size: usize,
    /// Delta page size when no `Prefer: odata.maxpagesize` is sent.
    pub delta_page_size: usize,
    /// How often expired subscriptions are removed.
    pub sweep_interval: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            tenant: "sim-tenant".into(),
            client_id: "relay365-sim-app".into(),
            client_secret: "sim-client-secret".into(),
            mailboxes: vec!["alice@sim.test".into(), "bob@sim.test".into()],
            service_secret: "sim-service-secret".into(),
            token_lifetime: Duration::from_secs(3599),
            max_subscription_lifetime: Duration::from_secs(10_080 * 60),
            min_subscription_lifetime: Duration::from_secs(45 * 60),
            granted_lifetime: None,
            latency: Duration::ZERO,
            validation_timeout: Duration::from_secs(10),
            notification_timeout: Duration::from_secs(3),
            notification_retries: 3,
            notification_retry_delay: Duration::from_secs(1),
            mailbox_concurrency: 4,
            concurrency_retry_after: Duration::from_secs(1),
            list_page_size: 100,
            delta_page_size: 10,
            sweep_interval: Duration::from_millis(250),
        }
    }
}

/// The simulator's shared core: configuration, state and the HTTP client it notifies with.
/// Cheap to clone. The control API and tests call its methods.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

struct Inner {
    config: SimConfig,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    origin: String,
    tenant_id: String,
    state: Mutex<state::State>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

impl Sim {
    fn new(config: SimConfig, origin: String) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().build()?;
        let mut st = state::State::default();
        for m in &config.mailboxes {
            st.mailboxes
                .insert(state::mailbox_key(m), state::Mailbox::new(m));
        }
        let tenant_id = uuid::Uuid::new_v4().to_string();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                origin,
                tenant_id,
                state: Mutex::new(st),
                http,
            }),
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    /// Graph base URL: `http://127.0.0.1:PORT/v1.0`.
    pub fn base_url(&self) -> String {
        format!("{}/v1.0", self.inner.origin)
    }

    /// The tenant's GUID (sent as `tenantId` in notifications; accepted as `{tenant}`).
    pub fn tenant_id(&self) -> &str {
        &self.inner.tenant_id
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, state::State> {
        // A panic while holding the lock leaves consistent-enough data for a simulator.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    pub(crate) fn origin(&self) -> &str {
        &self.inner.origin
    }
}

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Serves a simulator on `listener` until [`SimHandle::shutdown`] (or the handle is
    /// dropped). Bind `127.0.0.1:0` for a free port.
    pub async fn start(config: SimConfig, listener: TcpListener) -> anyhow::Result<SimHandle> {
        let addr = listener.local_addr()?;
        let sim = Sim::new(config, format!("http://{addr}"))?;
        let (stop_tx, stop_rx) = watch::channel(false);

        let sweeper = {
            let sim = sim.clone();
            let mut stop = stop_rx.clone();
            let every = sim.config().sweep_interval.max(Duration::from_millis(10));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        _ = tick.tick() => { sim.state().sweep(Utc::now()); }
                        _ = stop.changed() => break,
                    }
                }
            })
        };

        let app = router(sim.clone());
        let mut stop = stop_rx;
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %err, "simulator server failed");
            }
        });
        Ok(SimHandle {
            sim,
            addr,
            stop: stop_tx,
            tasks: vec![server, sweeper],
        })
    }
}

/// A running simulator.
pub struct SimHandle {
    sim: Sim,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// In-process access to its state and control methods.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Graph base URL (`RELAY365_GRAPH_URL`): `http://127.0.0.1:PORT/v1.0`.
    pub fn base_url(&self) -> String {
        self.sim.base_url()
    }

    /// Identity platform base (`RELAY365_LOGIN_URL`): `http://127.0.0.1:PORT`.
    pub fn login_url(&self) -> String {
        self.sim.origin().to_string()
    }

    /// Token-vending base (`AUTH_SERVICE_URL`): `http://127.0.0.1:PORT`.
    pub fn auth_service_url(&self) -> String {
        self.sim.origin().to_string()
    }

    /// Control API base: `http://127.0.0.1:PORT/_sim`.
    pub fn control_url(&self) -> String {
        format!("{}/_sim", self.sim.origin())
    }

    /// Stops accepting requests, lets running ones finish, and waits for the server.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn router(sim: Sim) -> Router {
    Router::new()
        .route("/v1.0/{*rest}", any(graph::entry))
        .route("/{tenant}/oauth2/v2.0/token", post(auth::token_endpoint))
        .route(
            "/auth/oauth/internal/credential-token",
            post(auth::vend_token),
        )
        .nest("/_sim", control::router())
        .with_state(sim)
}

/// Graph's error answer: `{"error":{"code","message","innerError":{…}}}`.
pub(crate) fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                "request-id": uuid::Uuid::new_v4().to_string(),
                "client-request-id": uuid::Uuid::new_v4().to_string(),
            }
        }
    });
    (status, axum::Json(body)).into_response()
}

/// Adds `Retry-After` in seconds, fractional when needed (`0.25`, `2.128`).
pub(crate) fn with_retry_after(mut resp: Response, secs: f64) -> Response {
    let text = if secs.fract() == 0.0 {
        format!("{}", secs as u64)
    } else {
        format!("{secs}")
    };
    if let Ok(v) = HeaderValue::from_str(&text) {
        resp.headers_mut().insert("retry-after", v);
    }
    resp
}

/// A random URL-safe string of `bytes` random bytes.
pub(crate) fn random_string(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Runs the Graph simulator alone: token endpoints, Graph API and a control API
/// (`relay365 sim`).
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub listen: SocketAddr,
    /// Tenant name accepted by the token endpoint.
    #[arg(long, default_value = "sim-tenant")]
    pub tenant: String,
    /// The simulated app's client id.
    #[arg(long, default_value = "relay365-sim-app")]
    pub client_id: String,
    /// The simulated app's client secret.
    #[arg(long, default_value = "sim-client-secret")]
    pub client_secret: String,
    /// A mailbox that exists at start (repeatable); default alice@sim.test and bob@sim.test.
    #[arg(long = "mailbox")]
    pub mailboxes: Vec<String>,
    /// Expected X-Service-Token on the token-vending route.
    #[arg(long, default_value = "sim-service-secret")]
    pub service_secret: String,
}

/// Runs `relay365 sim`: serves until Ctrl-C and prints what it serves.
pub async fn run_cli(args: SimArgs) -> anyhow::Result<()> {
    let mut config = SimConfig {
        tenant: args.tenant,
        client_id: args.client_id,
        client_secret: args.client_secret,
        service_secret: args.service_secret,
        ..SimConfig::default()
    };
    if !args.mailboxes.is_empty() {
        config.mailboxes = args.mailboxes;
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let handle = Simulator::start(config.clone(), listener).await?;
    println!("relay365 Graph simulator");
    println!(
        "  Graph base URL      {}   (RELAY365_GRAPH_URL)",
        handle.base_url()
    );
    println!(
        "  login base URL      {}   (RELAY365_LOGIN_URL)",
        handle.login_url()
    );
    println!(
        "  token endpoint      {}/{}/oauth2/v2.0/token",
        handle.login_url(),
        config.tenant
    );
    println!(
        "  token vending       {}   (AUTH_SERVICE_URL)",
        handle.auth_service_url()
    );
    println!(
        "  service secret      {}   (SERVICE_SECRET)",
        config.service_secret
    );
    println!(
        "  tenant              {} (id {})",
        config.tenant,
        handle.sim().tenant_id()
    );
    println!(
        "  app                 client_id {} / client_secret {}",
        config.client_id, config.client_secret
    );
    println!("  mailboxes           {}", config.mailboxes.join(", "));
    println!(
        "  control API         {}   (see docs/simulator.md)",
        handle.control_url()
    );
    println!("Ctrl-C stops it.");
    tokio::signal::ctrl_c().await?;
    handle.shutdown().await;
    Ok(())
}
