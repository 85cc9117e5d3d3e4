//! Load tool for the notification receiver: how many notifications per second the release
//! binary makes durable, at what latency, in how much memory. A benchmark for a person to
//! run, never a test.
//!
//! ```sh
//! cargo build --release && cargo build --release --example receiver_load
//! target/release/examples/receiver_load --database-url postgres://postgres@127.0.0.1:5432/test \
//!     --connections 64 --duration 10              # closed loop: maximum throughput
//! target/release/examples/receiver_load --database-url … --rate 10000   # open loop: latency
//! ```
//!
//! It stores a credential and a subscription, starts `relay365` (beside this example in the
//! target folder, or `--server`) on that database, POSTs Graph-shaped change notifications
//! (one per request, each about a new message) over `--connections` keep-alive connections,
//! and prints throughput, latency percentiles, answer counts and the server's peak memory.
//! In open-loop mode each connection sends at fixed times and latency counts from the time a
//! request was due, so a stalled server is not hidden (no coordinated omission).
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use relay365_actors::store::new_id;
use serde_json::json;
use support::{
    actor_info, cpu_seconds, post, postgres_cpu_seconds, rss_kb, seed_subscription, server_bin,
    Conn, Server,
};

#[derive(Parser)]
#[command(about = "Load the relay365 notification receiver")]
struct Args {
    /// Database of the server under test (default: a SQLite file in a temporary folder).
    #[arg(long)]
    database_url: Option<String>,
    /// Keep-alive connections (one request in flight on each).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds to measure (after a one-second warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Offered notifications per second (open loop); without it, as fast as answered.
    #[arg(long)]
    rate: Option<u64>,
    /// The relay365 binary (default: target/release/relay365 beside this example).
    #[arg(long)]
    server: Option<PathBuf>,
}

fn body(graph_sub: &str, client_state: &str, message_id: &str) -> String {
    json!({"value": [{
        "id": "lsgTZMr9KwAAA",
        "subscriptionId": graph_sub,
        "subscriptionExpirationDateTime": "2026-03-19T22:11:09.952Z",
        "clientState": client_state,
        "changeType": "created",
        "resource": format!("users/u@t/messages/{message_id}"),
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Message",
            "@odata.id": format!("Users/u@t/Messages/{message_id}"),
            "@odata.etag": "W/\"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf\"",
            "id": message_id
        }
    }]})
    .to_string()
}

#[derive(Default)]
struct Counts {
    accepted: AtomicU64,
    unavailable: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
    /// Open loop: requests due before the end that could not be sent in time.
    unsent: AtomicU64,
}

// One thread: the load generator should leave the other core to the server and the database.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = server_bin(args.server.as_deref())?;
    let tmp = tempfile::tempdir()?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", tmp.path().join("load.db").display()));

    let (graph_sub, client_state) = seed_subscription(&bin, &url).await?;
    let server = Server::start(&bin, tmp.path(), &url, &[]).await?;
    let (pid, port, base) = (server.pid, server.port, server.base.clone());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    // The receiver loads its map right after start; give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let counts = Arc::new(Counts::default());
    let measuring = Arc::new(AtomicBool::new(false));
    let warmup = Duration::from_secs(1);
    let total = warmup + Duration::from_secs(args.duration);
    let start = Instant::now() + Duration::from_millis(50);
    let run_id = &new_id()[..8];
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kb(pid, "VmRSS:"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let workers: Vec<_> = (0..args.connections)
        .map(|w| {
            let (counts, measuring) = (counts.clone(), measuring.clone());
            let (graph_sub, client_state) = (graph_sub.clone(), client_state.clone());
            let run_id = run_id.to_string();
            let (connections, rate) = (args.connections as u64, args.rate);
            tokio::spawn(async move {
                let mut latencies: Vec<u32> = Vec::with_capacity(1 << 16);
                let mut conn: Option<Conn> = None;
                for n in 0u64.. {
                    // Open loop: request k of this connection is due at its slot of the rate.
                    let due = match rate {
                        Some(r) => {
                            let slot = n * connections + w as u64;
                            start + Duration::from_secs_f64(slot as f64 / r as f64)
                        }
                        None => Instant::now().max(start),
                    };
                    if due.duration_since(start) >= total {
                        break;
                    }
                    if rate.is_some() && Instant::now() >= start + total {
                        // Behind schedule at the end: the rest was offered but never sent.
                        if measuring.load(Ordering::Relaxed) {
                            counts.unsent.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    let payload = body(&graph_sub, &client_state, &format!("{run_id}-{w}-{n}"));
                    let res = post(&mut conn, port, payload).await;
                    let took = due.elapsed();
                    if !measuring.load(Ordering::Relaxed) {
                        continue;
                    }
                    match res {
                        Ok(202) => {
                            counts.accepted.fetch_add(1, Ordering::Relaxed);
                            latencies.push(took.as_micros().min(u32::MAX as u128) as u32);
                        }
                        Ok(503) => {
                            counts.unavailable.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {
                            counts.other.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            counts.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies
            })
        })
        .collect();

    tokio::time::sleep_until((start + warmup).into()).await;
    measuring.store(true, Ordering::Relaxed);
    let measured_from = Instant::now();
    let (server_cpu0, own_cpu0) = (cpu_seconds(&pid.to_string()), cpu_seconds("self"));
    let db_cpu0 = postgres_cpu_seconds();
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await?);
    }
    let elapsed = measured_from.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(&pid.to_string()) - server_cpu0;
    let own_cpu = cpu_seconds("self") - own_cpu0;
    // Processes that ended meanwhile are missed; the backends of the server's pool live on.
    let db_cpu = (postgres_cpu_seconds() - db_cpu0).max(0.0);
    sampler.abort();
    let hwm = rss_kb(pid, "VmHWM:");
    let receiver = actor_info(&http, &base, "receiver").await?;
    // The server's own view of its commits (a summary over its last minute or so).
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let commit_ms = |q: &str| -> String {
        let prefix = format!("relay365_receiver_commit_seconds{{quantile=\"{q}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or("?".into(), |s| format!("{:.2}", s * 1000.0))
    };
    server.stop();

    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1000.0
    };
    let accepted = counts.accepted.load(Ordering::Relaxed);
    let backend = url.split(':').next().unwrap_or("?");
    println!(
        "mode: {}  backend: {backend}  connections: {}  measured: {elapsed:.1}s",
        match args.rate {
            Some(r) => format!("open loop at {r}/s"),
            None => "closed loop".into(),
        },
        args.connections
    );
    println!(
        "202: {accepted}  503: {}  other: {}  errors: {}  unsent (open loop, behind schedule): {}",
        counts.unavailable.load(Ordering::Relaxed),
        counts.other.load(Ordering::Relaxed),
        counts.errors.load(Ordering::Relaxed),
        counts.unsent.load(Ordering::Relaxed)
    );
    println!(
        "throughput: {:.0} notifications/s durable",
        accepted as f64 / elapsed
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
    println!(
        "cpu: server {:.2} cores, {:.1} µs per notification; this load tool {:.2} cores",
        server_cpu / elapsed,
        server_cpu * 1e6 / accepted.max(1) as f64,
        own_cpu / elapsed
    );
    if backend == "postgres" {
        println!(
            "cpu: PostgreSQL (all its processes on this machine) {:.2} cores, {:.1} µs per notification",
            db_cpu / elapsed,
            db_cpu * 1e6 / accepted.max(1) as f64
        );
    }
    let batches = receiver["batches"].as_u64().unwrap_or(0);
    println!(
        "server: peak RSS {:.1} MB (VmHWM {:.1} MB); commits {batches}, {:.0} items per commit",
        peak_rss.load(Ordering::Relaxed) as f64 / 1024.0,
        hwm as f64 / 1024.0,
        receiver["accepted"].as_u64().unwrap_or(0) as f64 / batches.max(1) as f64
    );
    println!(
        "commit ms (the server's summary, warm-up included): p50 {}  p99 {}  max {}",
        commit_ms("0.5"),
        commit_ms("0.99"),
        commit_ms("1")
    );
    Ok(())
}
