//! Load tool for the whole pipeline: notification → stored → claimed → fetched from Graph →
//! normalized and enriched → signed → delivered. A benchmark for a person to run, never a
//! test.
//!
//! ```sh
//! cargo build --release && cargo build --release --example pipeline_load
//! target/release/examples/pipeline_load --rate 1500 --duration 60 --graph-latency-ms 20 \
//!     --database-url postgres://postgres@127.0.0.1:5432/bench    # sustained throughput
//! target/release/examples/pipeline_load --rate 200 --graph-latency-ms 5     # latency
//! target/release/examples/pipeline_load --rate 500                          # cost at a trickle
//! target/release/examples/pipeline_load --rate 1500 --duration 30 --instances 1,2,3 \
//!     --database-url postgres://postgres@127.0.0.1:5432/bench    # several instances
//! ```
//!
//! In this one process: the Graph simulator (with `--graph-latency-ms` on every request) and a
//! sink standing in for n8n. It stores realistic 5 KB HTML mails in `--mailboxes` simulated
//! mailboxes (in bulk, before any subscription exists, so the simulator sends nothing), starts
//! `relay365` (beside this example in the target folder, or `--server`), creates a
//! credential and a subscription per mailbox and one target, then POSTs one change
//! notification per request straight to the webhook at `--rate` per second (open loop: each is
//! sent when due), and waits until every one is delivered. It prints the throughput, the
//! notification → delivered latency, whether a backlog grew, and the CPU used per delivered
//! event by relay365, by PostgreSQL and by this process (simulator and sink included), since
//! all of them share the machine's cores.
//!
//! `--instances 1,2,3` runs the same load once per count, one after the other, each on a
//! fresh schema of the PostgreSQL database: that many `relay365 serve` processes share it,
//! the credentials and subscriptions are created through the first, and the notifications
//! are spread over all of them (as a load balancer would). A table of the runs ends the
//! output.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post as post_route;
use clap::Parser;
use relay365::sim::{NewMail, SimConfig, Simulator};
use serde_json::{json, Value};
use support::{
    actor_info, cpu_seconds, html_mail, post, postgres_cpu_seconds_of, rss_kb, server_bin, Conn,
    Server,
};

#[derive(Parser)]
#[command(about = "Load the whole relay365 pipeline, notification to delivery")]
struct Args {
    /// Database of the server under test (default: a SQLite file in a temporary folder).
    #[arg(long)]
    database_url: Option<String>,
    /// Notifications offered per second.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Seconds of offered load.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Simulated mailboxes (one credential and one subscription each).
    #[arg(long, default_value_t = 100)]
    mailboxes: usize,
    /// Latency the simulator adds to every Graph request.
    #[arg(long, default_value_t = 20)]
    graph_latency_ms: u64,
    /// Keep-alive connections notifications are sent on.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// The relay365 binary (default: target/release/relay365 beside this example).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Instance counts to run, one run each, e.g. `1,2,3` (more than one needs PostgreSQL).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    instances: Vec<usize>,
}

/// What one run measured.
struct Run {
    instances: usize,
    delivered: usize,
    throughput: f64,
    p50: f64,
    p99: f64,
    relay_us: f64,
    pg_us: f64,
}

fn notification(graph_sub: &str, client_state: &str, mailbox: &str, message_id: &str) -> String {
    json!({"value": [{
        "subscriptionId": graph_sub,
        "subscriptionExpirationDateTime": "2026-12-19T22:11:09.952Z",
        "clientState": client_state,
        "changeType": "created",
        "resource": format!("Users/{mailbox}/Messages/{message_id}"),
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Message",
            "@odata.id": format!("Users/{mailbox}/Messages/{message_id}"),
            "@odata.etag": "W/\"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf\"",
            "id": message_id
        }
    }]})
    .to_string()
}

#[derive(serde::Deserialize)]
struct Delivered {
    message: DeliveredMessage,
}

#[derive(serde::Deserialize)]
struct DeliveredMessage {
    id: String,
}

/// Message id → when the sink received it.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = server_bin(args.server.as_deref())?;
    let mut runs = Vec::new();
    for &n in &args.instances {
        let n = n.max(1);
        let tmp = tempfile::tempdir()?;
        let (url, schema) = match &args.database_url {
            Some(base) => {
                let (url, schema) = fresh_schema(base).await?;
                (url, Some((base.clone(), schema)))
            }
            None => {
                anyhow::ensure!(n == 1, "several instances need --database-url postgres://…");
                let url = format!("sqlite://{}", tmp.path().join("load.db").display());
                (url, None)
            }
        };
        runs.push(run(&args, &bin, tmp.path(), &url, n).await?);
        if let Some((base, schema)) = schema {
            drop_schema(&base, &schema).await?;
        }
    }
    if runs.len() > 1 {
        println!();
        println!("| instances | delivered/s | p50 ms | p99 ms | relay365 CPU µs/event (all instances) | PostgreSQL CPU µs/event |");
        println!("|---|---|---|---|---|---|");
        for r in &runs {
            println!(
                "| {} | {:.0} | {:.1} | {:.1} | {:.0} | {:.0} |",
                r.instances, r.throughput, r.p50, r.p99, r.relay_us, r.pg_us
            );
        }
        let _ = runs.iter().map(|r| r.delivered).sum::<usize>();
    }
    Ok(())
}

/// A new schema in the database at `base`, and the URL that uses it.
async fn fresh_schema(base: &str) -> anyhow::Result<(String, String)> {
    let schema = format!("load_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(base).await?;
    sqlx::query(&format!("create schema {schema}"))
        .execute(&pool)
        .await?;
    pool.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    Ok((
        format!("{base}{sep}options=-c%20search_path%3D{schema}"),
        schema,
    ))
}

async fn drop_schema(base: &str, schema: &str) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(base).await?;
    sqlx::query(&format!("drop schema {schema} cascade"))
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

/// One run with `n` instances on the database at `url`.
async fn run(
    args: &Args,
    bin: &std::path::Path,
    dir: &std::path::Path,
    url: &str,
    n: usize,
) -> anyhow::Result<Run> {
    let total = (args.rate * args.duration) as usize;
    let mailboxes: Vec<String> = (0..args.mailboxes)
        .map(|i| format!("m{i}@load.test"))
        .collect();

    // Graph, with its latency, and every mail stored before any subscription exists.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(
        SimConfig {
            mailboxes: mailboxes.clone(),
            latency: Duration::from_millis(args.graph_latency_ms),
            notification_retries: 0,
            ..SimConfig::default()
        },
        listener,
    )
    .await?;
    let per_mailbox = total.div_ceil(args.mailboxes);
    let mut messages: Vec<Vec<String>> = Vec::new();
    for (m, mailbox) in mailboxes.iter().enumerate() {
        let mails = (0..per_mailbox)
            .map(|i| NewMail {
                subject: format!("Order {m}-{i} confirmed"),
                body: html_mail(i),
                body_type: Some("html".into()),
                from: Some(
                    serde_json::from_value(json!("Kim Lee <kim@fabrikam.example>")).unwrap(),
                ),
                to: vec![serde_json::from_value(json!(mailbox)).unwrap()],
                ..Default::default()
            })
            .collect();
        messages.push(sim.sim().deliver(mailbox, mails).await?.message_ids);
    }

    // The sink: records when each message arrived.
    let arrivals: Arrivals = Arc::default();
    let sink = {
        let arrivals = arrivals.clone();
        let app = axum::Router::new().route(
            "/n8n",
            post_route(move |body: Bytes| {
                let arrivals = arrivals.clone();
                async move {
                    if let Ok(d) = serde_json::from_slice::<Delivered>(&body) {
                        arrivals
                            .lock()
                            .unwrap()
                            .insert(d.message.id, Instant::now());
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}/n8n")
    };

    // relay365 on its database (n instances), a credential and a subscription per mailbox
    // and one target, all through the first instance.
    let mut servers = Vec::new();
    for _ in 0..n {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let public = format!("http://127.0.0.1:{port}");
        servers.push(
            Server::start_on(
                bin,
                dir,
                url,
                port,
                &[
                    ("RELAY365_GRAPH_URL", &sim.base_url()),
                    ("RELAY365_LOGIN_URL", &sim.login_url()),
                    ("RELAY365_PUBLIC_URL", &public),
                ],
            )
            .await?,
        );
    }
    let pids: Vec<String> = servers.iter().map(|s| s.pid.to_string()).collect();
    let relay_cpu = || pids.iter().map(|p| cpu_seconds(p)).sum::<f64>();
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let base = bases[0].clone();
    let http = reqwest::Client::new();
    let c = sim.sim().config().clone();
    let mut subs: HashMap<String, (String, String)> = HashMap::new();
    for mailbox in &mailboxes {
        let cred: Value = http
            .post(format!("{base}/api/credentials"))
            .json(&json!({"name": mailbox, "mailbox": mailbox, "token_source": {"kind": "client_credentials", "tenant_id": c.tenant, "client_id": c.client_id, "client_secret": c.client_secret}}))
            .send()
            .await?
            .json()
            .await?;
        let sub: Value = http
            .post(format!("{base}/api/ms365/subscriptions"))
            .json(&json!({"credential_id": cred["id"]}))
            .send()
            .await?
            .json()
            .await?;
        let graph_id = sub["external_subscription_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        subs.insert(mailbox.clone(), (graph_id, String::new()));
    }
    for s in sim.sim().subscriptions() {
        if let Some((_, cs)) = subs.values_mut().find(|(g, _)| *g == s.id) {
            *cs = s.client_state.clone().unwrap_or_default();
        }
    }
    let t: Value = http
        .post(format!("{base}/api/targets"))
        .json(&json!({"url": sink}))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(t["id"].is_string(), "target not created: {t}");

    // Offered load: notification k goes out at start + k/rate, round robin over mailboxes.
    let plan: Vec<(String, String)> = (0..total)
        .map(|k| {
            let m = k % args.mailboxes;
            let mailbox = &mailboxes[m];
            let (g, cs) = &subs[mailbox];
            let id = &messages[m][k / args.mailboxes];
            (id.clone(), notification(g, cs, mailbox, id))
        })
        .collect();
    let plan = Arc::new(plan);
    // PostgreSQL's CPU: the backends of this database and the server's shared processes.
    let database = url
        .rsplit('/')
        .next()
        .unwrap_or("")
        .split('?')
        .next()
        .unwrap_or("")
        .to_string();
    let on_postgres = url.starts_with("postgres");
    let pg_cpu = || {
        if on_postgres {
            postgres_cpu_seconds_of(&database)
        } else {
            0.0
        }
    };
    // Each new subscription takes its delta baseline (reading the whole folder once, so that
    // mail already there never becomes events); let those finish before measuring.
    // With several instances, the mailboxes are split between them first.
    let baseline = Instant::now();
    loop {
        let (mut resynced, mut running, mut held) = (0, 0, 0);
        for b in &bases {
            let renewal = actor_info(&http, b, "renewal").await?;
            resynced += renewal["resynced"].as_u64().unwrap_or(0);
            running += renewal["running"].as_u64().unwrap_or(1);
            held += actor_info(&http, b, "cluster").await?["mailboxes_held"]
                .as_u64()
                .unwrap_or(args.mailboxes as u64);
        }
        let done =
            resynced >= args.mailboxes as u64 && running == 0 && held == args.mailboxes as u64;
        if done || baseline.elapsed() > Duration::from_secs(300) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "delta baselines of {} mailboxes taken in {:.1} s",
        args.mailboxes,
        baseline.elapsed().as_secs_f64()
    );
    // What relay365 costs with nothing to do (its actors, timers and sweeps), for scale.
    let idle0 = relay_cpu();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = (relay_cpu() - idle0) / 2.0;
    let cpu0 = (relay_cpu(), pg_cpu(), cpu_seconds("self"));
    let start = Instant::now() + Duration::from_millis(200);
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let per_conn = args.connections.max(1);
    let tasks: Vec<_> = (0..per_conn)
        .map(|c| {
            let (plan, sent, port) = (plan.clone(), sent.clone(), servers[c % n].port);
            let rate = args.rate as f64;
            tokio::spawn(async move {
                let mut conn: Option<Conn> = None;
                let mut failed = 0u64;
                for k in (c..plan.len()).step_by(per_conn) {
                    let due = start + Duration::from_secs_f64(k as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                    let (id, body) = &plan[k];
                    sent.lock().unwrap().insert(id.clone(), due);
                    match post(&mut conn, port, body.clone()).await {
                        Ok(202) => {}
                        _ => failed += 1,
                    }
                }
                failed
            })
        })
        .collect();
    // Backlog: deliveries behind what was offered, halfway and at the end of the offered load.
    let mut behind = Vec::new();
    for frac in [0.5, 1.0] {
        tokio::time::sleep_until(
            (start + Duration::from_secs_f64(args.duration as f64 * frac)).into(),
        )
        .await;
        let offered = (start.elapsed().as_secs_f64() * args.rate as f64) as usize;
        behind.push(offered.saturating_sub(arrivals.lock().unwrap().len()));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await?;
    }
    let offered_end = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrivals.lock().unwrap().len() < total - refused as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = Instant::now();
    let cpu1 = (relay_cpu(), pg_cpu(), cpu_seconds("self"));
    let delivered = arrivals.lock().unwrap().len();

    let sent = sent.lock().unwrap().clone();
    let arrivals = arrivals.lock().unwrap().clone();
    let mut lat: Vec<f64> = arrivals
        .iter()
        .filter_map(|(id, at)| Some(at.duration_since(*sent.get(id)?).as_secs_f64() * 1000.0))
        .collect();
    lat.sort_by(f64::total_cmp);
    let last = arrivals.values().max().copied().unwrap_or(start);
    let per_event = |s: f64| s / delivered.max(1) as f64 * 1e6;
    let throughput = delivered as f64 / last.duration_since(start).as_secs_f64().max(0.001);
    println!(
        "offered {total} notifications at {}/s for {} s to {} mailboxes (Graph +{} ms), {}, {n} instance{}",
        args.rate,
        args.duration,
        args.mailboxes,
        args.graph_latency_ms,
        if url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        if n == 1 { "" } else { "s" }
    );
    println!(
        "delivered {delivered} ({refused} not accepted); {throughput:.0}/s over the run; drained {:.2} s after the last offer",
        drained.duration_since(offered_end).as_secs_f64().min(
            last.duration_since(offered_end).as_secs_f64().max(0.0)
        )
    );
    println!(
        "behind at half time {}, at the end of the offer {}",
        behind[0], behind[1]
    );
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    println!(
        "notification → delivered: p50 {p50:.1} ms, p90 {:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        percentile(&lat, 0.9),
        lat.last().copied().unwrap_or(0.0)
    );
    let (relay_us, pg_us) = (per_event(cpu1.0 - cpu0.0), per_event(cpu1.1 - cpu0.1));
    println!(
        "CPU per delivered event: relay365 {relay_us:.0} µs, PostgreSQL {pg_us:.0} µs, this tool (simulator, sink, sender) {:.0} µs",
        per_event(cpu1.2 - cpu0.2)
    );
    let peak: u64 = servers
        .iter()
        .map(|s| rss_kb(s.pid, "VmHWM:"))
        .max()
        .unwrap_or(0);
    println!(
        "relay365 idle before the load: {:.1} % of a core; peak resident {:.1} MB (largest instance)",
        idle * 100.0,
        peak as f64 / 1024.0
    );
    for s in servers {
        s.stop();
    }
    sim.shutdown().await;
    Ok(Run {
        instances: n,
        delivered,
        throughput,
        p50,
        p99,
        relay_us,
        pg_us,
    })
}
