//! `relay365 demo` (SPEC §1): the whole pipeline on this machine, with no account and no
//! network, in one command.
//!
//! Why it exists: a person who finds relay365 should see it work within minutes, and see the
//! real thing, not a mock-up. So the demo runs the real service ([`App::start`], on SQLite in
//! a temporary folder) against the built-in Graph simulator and a local sink standing in for
//! n8n, all in this process, and goes through the public HTTP API like a user would: it creates
//! a credential (client credentials against the simulator's login endpoint), a subscription
//! (Graph's validation handshake runs over loopback while the request is in flight) and a
//! signed target. Then it sends a handful of realistic mails ([`mails`]) with one Graph 429 on
//! a fetch, and follows each event from the outside — the API's event list, the simulator's
//! request log, what the sink receives — printing each step as it happens. The sink checks
//! every signature with the `standardwebhooks` crate (the specification's own verifier, not
//! our signer). It ends with the status tree and a summary table, and exits 0 only if every
//! mail was delivered with a valid signature. Nothing secret is printed.

pub mod mails;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use rand::RngCore;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::sim::{FaultKind, FaultSpec, SimConfig, SimHandle, Simulator};
use crate::{App, Config};

mod report;

/// Options of `relay365 demo`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct DemoArgs {
    /// Leave the service, the simulator and the sink running afterwards (until Ctrl-C), so
    /// you can click around the API or point n8n at it.
    #[arg(long)]
    pub keep: bool,
}

/// How long the demo waits for every mail to be delivered before it gives up.
const DEADLINE: Duration = Duration::from_secs(60);

/// One delivery the sink received.
pub(crate) struct Received {
    pub body: Value,
    pub signature_valid: bool,
    pub at: Instant,
}

/// The temporary folder of the demo's database, removed when the demo ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the demo. `Ok` means every mail was delivered with a valid signature.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = TempDir(
        std::env::temp_dir().join(format!("relay365-demo-{}", uuid::Uuid::new_v4().simple())),
    );
    std::fs::create_dir_all(&dir.0).with_context(|| format!("creating {}", dir.0.display()))?;

    let sim = Simulator::start(SimConfig::default(), bind().await?)
        .await
        .context("starting the Graph simulator")?;
    let secret = format!("whsec_{}", {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        base64::engine::general_purpose::STANDARD.encode(key)
    });
    let (sink_tx, mut sink_rx) = mpsc::unbounded_channel();
    let (sink_addr, sink_task) = start_sink(&secret, sink_tx).await?;
    let sink_url = format!("http://{sink_addr}/n8n");

    let listener = bind().await?;
    let base = format!("http://{}", listener.local_addr()?);
    let cfg = config(&dir.0, &base, &sim)?;
    let app = App::start(cfg, listener)
        .await
        .context("starting relay365")?;
    let api = Api {
        http: reqwest::Client::new(),
        base: base.clone(),
    };
    println!("relay365 demo: the real service, the Graph simulator and a stand-in for n8n, all on this machine\n");
    println!("  service    {base}  (SQLite in {})", dir.0.display());
    println!(
        "  simulator  {}  (plays Microsoft Graph and the login endpoint)",
        sim.base_url()
    );
    println!("  sink       {sink_url}  (plays n8n; checks every signature)\n");

    let outcome = drive(&api, &sim, &sink_url, &secret, &mut sink_rx).await;
    match &outcome {
        Ok(()) if args.keep => keep(&base, &sim, &sink_url, &mut sink_rx).await,
        Ok(()) => {}
        Err(e) => eprintln!("demo failed: {e:#}"),
    }
    let stopped = app.stop().await;
    sim.shutdown().await;
    sink_task.abort();
    outcome?;
    stopped.context("stopping relay365")
}

async fn bind() -> anyhow::Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a loopback port")
}

/// The service's configuration: the built-in defaults plus the demo's own settings (the
/// environment and config files are not read, so nothing on this machine changes the demo).
fn config(dir: &std::path::Path, base: &str, sim: &SimHandle) -> anyhow::Result<Config> {
    let db = format!("sqlite://{}", dir.join("relay365.db").display());
    let settings: Vec<(&str, String)> = vec![
        ("DATABASE_URL", db),
        ("RELAY365_LISTEN", "127.0.0.1:0".into()),
        ("RELAY365_PUBLIC_URL", base.into()),
        ("RELAY365_GRAPH_URL", sim.base_url()),
        ("RELAY365_LOGIN_URL", sim.login_url()),
        ("RELAY365_RETRY_BASE_MS", "250".into()),
        ("RELAY365_SWEEP_INTERVAL_MS", "200".into()),
        ("RELAY365_WORKERS", "4".into()),
        ("RELAY365_DELIVERY_WORKERS", "2".into()),
        ("RELAY365_DB_MAX_CONNECTIONS", "4".into()),
    ];
    Config::from_sources(None, |name| {
        settings
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .map_err(|e| anyhow::anyhow!("the demo's configuration: {e}"))
}

/// Starts the sink: every POST is checked with `standardwebhooks` and answered 204.
async fn start_sink(
    secret: &str,
    tx: mpsc::UnboundedSender<Received>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    struct Sink {
        verifier: standardwebhooks::Webhook,
        tx: mpsc::UnboundedSender<Received>,
    }
    async fn receive(State(s): State<Arc<Sink>>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let signature_valid = s.verifier.verify(&body, &headers).is_ok();
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let _ = s.tx.send(Received {
            body,
            signature_valid,
            at: Instant::now(),
        });
        StatusCode::NO_CONTENT
    }
    let verifier = standardwebhooks::Webhook::new(secret)
        .map_err(|e| anyhow::anyhow!("the demo's signing secret: {e}"))?;
    let router = axum::Router::new()
        .route("/n8n", axum::routing::post(receive))
        .with_state(Arc::new(Sink { verifier, tx }));
    let listener = bind().await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((addr, task))
}

/// The management API, as a user calls it.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let code = res.status();
        let v: Value = res.json().await.unwrap_or(Value::Null);
        if !code.is_success() {
            bail!("{method} {path} answered {code}: {}", v["error"]["message"]);
        }
        Ok(v)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("?").to_string()
}

/// Set-up, mail, and the watch until every mail is delivered; then the status and summary.
async fn drive(
    api: &Api,
    sim: &SimHandle,
    sink_url: &str,
    secret: &str,
    sink_rx: &mut mpsc::UnboundedReceiver<Received>,
) -> anyhow::Result<()> {
    let c = sim.sim().config();
    let cred = api
        .post(
            "/api/credentials",
            json!({"name": "Alice (demo)", "mailbox": mails::MAILBOX, "token_source": {
                "kind": "client_credentials", "tenant_id": c.tenant,
                "client_id": c.client_id, "client_secret": c.client_secret}}),
        )
        .await?;
    let cred_id = text(&cred["id"]);
    println!(
        "✓ credential {cred_id}  {}: client credentials against the simulator",
        mails::MAILBOX
    );
    let sub = api
        .post(
            "/api/ms365/subscriptions",
            json!({"credential_id": cred_id}),
        )
        .await?;
    println!(
        "✓ subscription {}  {}: Graph validated {} over loopback; expires {}",
        text(&sub["id"]),
        text(&sub["resource_path"]),
        text(&sub["notification_url"]),
        text(&sub["expires_at"])
    );
    let target = api
        .post(
            "/api/targets",
            json!({"url": sink_url, "secret": secret, "headers": {"X-Relay365-Demo": "1"}}),
        )
        .await?;
    println!(
        "✓ target {}  → {sink_url}, signed (Standard Webhooks; the secret is not shown)\n",
        text(&target["id"])
    );

    // The new subscription's first delta sync runs in the background; the fault must land on
    // a fetch of the first mail, not on it.
    settle(sim).await;
    sim.sim()
        .add_fault(FaultSpec {
            kind: FaultKind::Throttle,
            mailbox: Some(mails::MAILBOX.into()),
            retry_after_secs: Some(1.0),
            latency_ms: None,
            count: Some(1),
            duration_secs: None,
        })
        .map_err(|e| anyhow::anyhow!("adding the fault: {e}"))?;
    println!(
        "! fault: Graph answers the next request for {} with 429, Retry-After 1 s\n",
        mails::MAILBOX
    );

    let mut watch = report::Watch::default();
    let all = mails::all();
    let total = all.len();
    for (i, mail) in all.into_iter().enumerate() {
        let subject = mail.subject.clone();
        let notified_at = Instant::now();
        let rep = sim
            .sim()
            .deliver(mails::MAILBOX, vec![mail])
            .await
            .map_err(|e| anyhow::anyhow!("delivering mail: {e}"))?;
        let message_id = rep.message_ids.first().cloned().unwrap_or_default();
        let answer = rep
            .notifications
            .first()
            .and_then(|n| n.status)
            .map_or("no answer".to_string(), |s| s.to_string());
        println!(
            "[mail {}/{total}] \"{subject}\": Graph notified relay365, answer {answer}",
            i + 1
        );
        watch.track(i + 1, subject, message_id, notified_at);
        watch
            .follow(api, sim, sink_rx, Duration::from_millis(300))
            .await?;
    }
    let deadline = Instant::now() + DEADLINE;
    while !watch.all_delivered() {
        if Instant::now() > deadline {
            bail!(
                "only {} of {total} mails were delivered within {}s",
                watch.delivered(),
                DEADLINE.as_secs()
            );
        }
        watch
            .follow(api, sim, sink_rx, Duration::from_millis(200))
            .await?;
    }
    // Let the last delivery's bookkeeping land before the tables are read.
    watch
        .follow(api, sim, sink_rx, Duration::from_millis(300))
        .await?;
    println!();
    print!(
        "{}",
        crate::status::fetch_and_render(&api.base, None).await?
    );
    println!();
    let deliveries = api.get("/api/deliveries").await?;
    let graph_429 = sim
        .sim()
        .requests()
        .iter()
        .filter(|r| r.status == 429)
        .count();
    watch.summary(&deliveries, graph_429)
}

/// Waits until Graph (the simulator) has seen no request for 300 ms, at most 5 s.
async fn settle(sim: &SimHandle) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = sim.sim().requests().len();
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline && quiet_since.elapsed() < Duration::from_millis(300) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = sim.sim().requests().len();
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
    }
}

/// `--keep`: prints where everything is and shows later deliveries until Ctrl-C.
async fn keep(
    base: &str,
    sim: &SimHandle,
    sink_url: &str,
    sink_rx: &mut mpsc::UnboundedReceiver<Received>,
) {
    // The handler is installed before the URL is printed: a Ctrl-C right after it still
    // stops the demo gracefully.
    let interrupted = interrupt();
    tokio::pin!(interrupted);
    println!("\nStill running (Ctrl-C stops it):");
    println!("  API, /status, /metrics  {base}   e.g. relay365 status --url {base}");
    println!("  Graph simulator         {}   send more mail: POST {}/mailboxes/{}/messages (docs/simulator.md)", sim.base_url(), sim.control_url(), mails::MAILBOX);
    println!(
        "  sink (n8n stand-in)     {sink_url}   or add your own target: POST {base}/api/targets"
    );
    loop {
        tokio::select! {
            _ = &mut interrupted => break,
            got = sink_rx.recv() => match got {
                Some(r) => println!(
                    "delivered {} \"{}\" signature {}",
                    text(&r.body["id"]),
                    text(&r.body["message"]["subject"]),
                    if r.signature_valid { "valid" } else { "INVALID" }
                ),
                None => break,
            },
        }
    }
    println!("stopping");
}

/// Completes on Ctrl-C. The SIGINT handler is installed when this is called, not when the
/// future is first polled.
fn interrupt() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut s) = signal {
            s.recv().await;
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The enrichment of a delivered payload, for a person: (line, intent, language).
pub(crate) fn primitives_line(body: &Value) -> (String, String, String) {
    let classify = &body["primitives"]["classify"];
    let intent = text(&classify["intent"]);
    let language = text(&classify["language"]);
    let mut parts = vec![format!("intent={intent}"), format!("language={language}")];
    let amounts: Vec<String> = body["primitives"]["parse"]["amounts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| match x["value"].as_f64() {
                    Some(v) => format!("{} {v:.2}", text(&x["currency"])),
                    None => format!("{} {}", text(&x["currency"]), x["value"]),
                })
                .collect()
        })
        .unwrap_or_default();
    if !amounts.is_empty() {
        parts.push(format!("amounts={}", amounts.join(", ")));
    }
    for flag in ["is_auto_reply", "is_newsletter"] {
        if classify[flag] == Value::Bool(true) {
            parts.push(flag.to_string());
        }
    }
    if let Some(quoted) = body["primitives"]["parse"]["quoted"]
        .as_str()
        .filter(|q| !q.is_empty())
    {
        parts.push(format!(
            "quoted part split off ({} chars)",
            quoted.chars().count()
        ));
    }
    if let Some(atts) = body["attachments"].as_array() {
        for a in atts {
            let chars = a["text"].as_str().map_or(0, |t| t.chars().count());
            parts.push(format!(
                "attachment {} ({} chars of text)",
                text(&a["name"]),
                chars
            ));
        }
    }
    (parts.join("  "), intent, language)
}
