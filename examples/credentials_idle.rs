//! Benchmark: many idle credential actors.
//!
//! Stores N credentials (default 10,000), starts the release `relay365` binary on that
//! database, and reports how long it took until `/readyz` answered 200 and until every
//! `credential:<id>` actor ran, and the service's resident memory once it settled.
//!
//! ```sh
//! cargo build --release && cargo run --release --example credentials_idle -- [N] [DATABASE_URL]
//! ```
//! Without a DATABASE_URL it uses a SQLite file in a temporary folder.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use relay365_actors::store::{credentials, Store, StoreOptions};
use serde_json::{json, Value};

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn count_running_credentials(status: &Value) -> usize {
    status["root"]["children"]
        .as_array()
        .and_then(|c| c.iter().find(|n| n["name"] == "credentials"))
        .and_then(|n| n["children"].as_array())
        .map(|c| c.iter().filter(|n| n["state"] == "running").count())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let url = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("idle.db").display()));

    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let have = credentials::list(&store).await.unwrap().len();
    let source = json!({"kind": "static", "access_token": "idle"});
    for i in have..n {
        let id = uuid::Uuid::new_v4().to_string();
        credentials::insert(
            &store,
            &id,
            &format!("idle {i}"),
            Some(&format!("user{i}@example.com")),
            "static",
            &source,
        )
        .await
        .unwrap();
    }
    store.close().await;
    println!("{n} credentials stored in {url}");

    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("relay365");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let mut child = Command::new(&bin)
        .env("DATABASE_URL", &url)
        .env("RELAY365_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} (run `cargo build --release` first): {e}",
                bin.display()
            )
        });
    let http = reqwest::Client::new();
    let mut ready = None;
    let mut all_running = None;
    while started.elapsed() < Duration::from_secs(120) {
        if ready.is_none() {
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
                if r.status() == 200 {
                    ready = Some(started.elapsed());
                }
            }
        } else if let Ok(r) = http.get(format!("{base}/status")).send().await {
            let status: Value = r.json().await.unwrap_or(Value::Null);
            if count_running_credentials(&status) >= n {
                all_running = Some(started.elapsed());
                break;
            }
        }
        // /status renders every actor: asking it too often would measure the poller.
        tokio::time::sleep(Duration::from_millis(if ready.is_none() { 2 } else { 50 })).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss, hwm) = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "start-up to /readyz 200:            {:?}",
        ready.unwrap_or_default()
    );
    println!(
        "start-up to {n} credential actors running: {:?}",
        all_running.unwrap_or_default()
    );
    println!(
        "resident memory, idle:              {:.1} MB (peak {:.1} MB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
}
