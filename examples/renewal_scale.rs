//! Benchmark: many subscriptions in one renewal actor (issue 11's scale point).
//!
//! Stores one credential and N active subscriptions (default 100,000) whose renewals fall due
//! over the next six days, starts the release `relay365` binary on that database, waits until
//! renewal's `/status` shows every subscription scheduled, and reports the time that took, the
//! service's resident memory, and its CPU while idle over `--idle-seconds`.
//!
//! ```sh
//! cargo build --release --bin relay365 --example renewal_scale
//! target/release/examples/renewal_scale [--subscriptions 100000] [--database-url …]
//! ```
//! Without a database URL it uses a SQLite file in a temporary folder. It does not measure
//! renewals as they fall due (a time-compressed run); see docs/benchmarks.md.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use relay365_actors::store::{credentials, new_id, now_ms, Store, StoreOptions};
use serde_json::json;
use support::{actor_info, cpu_seconds, migrate_with, rss_kb, server_bin, Server};

#[derive(Parser)]
#[command(about = "Many subscriptions in one renewal actor: memory and idle CPU")]
struct Args {
    /// Subscriptions to store.
    #[arg(long, default_value_t = 100_000)]
    subscriptions: usize,
    /// Database of the server under test (default: a SQLite file in a temporary folder).
    #[arg(long)]
    database_url: Option<String>,
    /// Seconds over which idle CPU is measured.
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
    /// The relay365 binary (default: target/release/relay365 beside this example).
    #[arg(long)]
    server: Option<PathBuf>,
}

/// Stores `n` subscriptions of one credential, in transactions of 1,000 rows.
async fn seed(url: &str, n: usize) -> anyhow::Result<()> {
    let store = Store::connect(url, &StoreOptions::default()).await?;
    let credential = new_id();
    credentials::insert(
        &store,
        &credential,
        "scale",
        Some("scale@example.com"),
        "static",
        &json!({"kind": "static", "access_token": "x"}),
    )
    .await?;
    let now = now_ms();
    let week = 7 * 24 * 3600 * 1000_i64;
    let pool = match &store {
        Store::Sqlite(p) => p.clone(),
        Store::Postgres(_) => {
            anyhow::bail!("seeding is written for SQLite; pass no --database-url")
        }
    };
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut tx = pool.begin().await?;
        for &i in chunk {
            // Due between now + 1 day and now + 7 days, spread evenly.
            let due = now + 24 * 3600 * 1000 + (i as i64 * (week - 24 * 3600 * 1000)) / n as i64;
            sqlx::query(
                "insert into subscriptions (id, credential_id, external_id, resource, change_types, \
                 notification_url, client_state, status, expires_at, granted_lifetime_ms, \
                 next_renewal_at, created_at, updated_at) \
                 values ($1, $2, $3, 'me/mailFolders(''inbox'')/messages', 'created', \
                 'http://127.0.0.1/api/ms365/webhook', $4, 'active', $5, $6, $7, $8, $8)",
            )
            .bind(new_id())
            .bind(&credential)
            .bind(new_id())
            .bind(format!("cs-{i}"))
            .bind(due + 24 * 3600 * 1000)
            .bind(week)
            .bind(due)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }
    store.close().await;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = server_bin(args.server.as_deref())?;
    let tmp = tempfile::tempdir()?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", tmp.path().join("scale.db").display()));
    migrate_with(&bin, &url)?;
    let seeded = Instant::now();
    seed(&url, args.subscriptions).await?;
    println!(
        "{} subscriptions stored in {:.1} s",
        args.subscriptions,
        seeded.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let server = Server::start(&bin, tmp.path(), &url, &[]).await?;
    let ready = started.elapsed();
    let http = reqwest::Client::new();
    let mut scheduled = 0;
    while started.elapsed() < Duration::from_secs(120) {
        scheduled = actor_info(&http, &server.base, "renewal").await?["scheduled"]
            .as_u64()
            .unwrap_or(0);
        if scheduled >= args.subscriptions as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_scheduled = started.elapsed();
    // Settle, then measure idle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = server.pid.to_string();
    let cpu0 = cpu_seconds(&pid);
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let idle = (cpu_seconds(&pid) - cpu0) / args.idle_seconds as f64;
    println!("ready (/readyz 200) after {:.2} s", ready.as_secs_f64());
    println!(
        "{scheduled} scheduled in renewal after {:.2} s",
        all_scheduled.as_secs_f64()
    );
    println!(
        "resident {:.1} MB (peak {:.1} MB); idle CPU {:.2} % of a core over {} s",
        rss_kb(server.pid, "VmRSS:") as f64 / 1024.0,
        rss_kb(server.pid, "VmHWM:") as f64 / 1024.0,
        idle * 100.0,
        args.idle_seconds
    );
    server.stop();
    Ok(())
}
