//! Edge probe: what the public notification route costs when a client is hostile. A
//! benchmark for a person to run (docs/security.md), never a test.
//!
//! ```sh
//! cargo build --release --bin relay365 --example edge_probe
//! target/release/examples/edge_probe [--server OTHER_BUILD] [--repeat 50] [--stalled 200]
//! ```
//!
//! It starts `relay365` (beside this example, or `--server`) on a temporary SQLite database
//! and measures, one after another:
//! 1. the answer time of the worst bodies of up to 1 MiB the parser may see: the most
//!    members, the deepest nesting, the longest escaped strings, escaped member names (also
//!    in a body with one byte of invalid UTF-8 elsewhere), the 40,000-member item, and a
//!    genuine notification for comparison;
//! 2. `/healthz` answer times while two connections keep sending the costliest body;
//! 3. the server's resident memory while `--stalled` uploads each announce 1 MB, send 960 KiB
//!    and stop, and how many of them were refused at once (503).
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use support::{rss_kb, seed_subscription, server_bin, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
#[command(about = "Probe relay365's public edge with hostile requests")]
struct Args {
    /// The relay365 binary (default: target/release/relay365 beside this example).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Requests per body kind.
    #[arg(long, default_value_t = 50)]
    repeat: usize,
    /// Stalled uploads held open at once.
    #[arg(long, default_value_t = 200)]
    stalled: usize,
}

const MIB: usize = 1024 * 1024;

/// `{"value":[items…]}` with as many copies of `item` as fit in 1 MiB (at most 1,000).
fn collection_of(item: &str) -> Vec<u8> {
    let n = ((MIB - 16) / (item.len() + 1)).min(1000);
    format!(r#"{{"value":[{}]}}"#, vec![item; n].join(",")).into_bytes()
}

/// [`collection_of`] led by a member whose string is not valid UTF-8: accepted (a skipped value
/// is not decoded, as serde_json did not), it keeps the parser from taking the body as text.
fn collection_with_invalid_byte(item: &str) -> Vec<u8> {
    let n = ((MIB - 32) / (item.len() + 1)).min(1000);
    let mut body = b"{\"x\":\"\xff\",\"value\":[".to_vec();
    body.extend_from_slice(vec![item; n].join(",").as_bytes());
    body.extend_from_slice(b"]}");
    body
}

/// An item of 64 members (the most the parser takes) whose values are `value`.
fn wide_item(name_len: usize, value: &str) -> String {
    let members: Vec<String> = (0..63)
        .map(|i| format!(r#""m{i:02}{}":{value}"#, "x".repeat(name_len)))
        .collect();
    format!(r#"{{"changeType":"created",{}}}"#, members.join(","))
}

fn bodies(graph_sub: &str, client_state: &str) -> Vec<(&'static str, Vec<u8>)> {
    // Nesting as deep as the JSON reader allows below an item (its limit is 128 levels).
    let deep = format!("{}0{}", "[".repeat(120), "]".repeat(120));
    let escaped_name: String = (0..63)
        .map(|i| format!(r#","\u00e9\u00e8{i:02}\n\t\"":1"#))
        .collect();
    let long = "\\u00e9".repeat((MIB - 200) / 6);
    let huge_item: String = (0..40_000).map(|i| format!(r#","m{i}":0"#)).collect();
    let genuine = json!({"value": [{
        "subscriptionId": graph_sub, "clientState": client_state, "changeType": "created",
        "resource": "users/u/messages/m1", "subscriptionExpirationDateTime": "2026-03-19T22:11:09.952Z",
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "@odata.id": "Users/u/Messages/m1",
                         "@odata.etag": "W/\"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf\"", "id": "m1"}
    }]});
    vec![
        ("genuine notification", genuine.to_string().into_bytes()),
        (
            "most members (1,000 × 64)",
            collection_of(&wide_item(8, "0")),
        ),
        ("deepest nesting", collection_of(&wide_item(0, &deep))),
        (
            "escaped member names",
            collection_of(&format!(r#"{{"changeType":"created"{escaped_name}}}"#)),
        ),
        (
            "escaped member names, one invalid byte",
            collection_with_invalid_byte(&format!(r#"{{"changeType":"created"{escaped_name}}}"#)),
        ),
        (
            "longest string (escaped)",
            format!(r#"{{"value":[{{"changeType":"created","resource":"{long}"}}]}}"#).into_bytes(),
        ),
        (
            "40,000 members in one item",
            format!(r#"{{"value":[{{"changeType":"created"{huge_item}}}]}}"#).into_bytes(),
        ),
    ]
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn post(http: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, f64) {
    let t = Instant::now();
    let code = match http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => {
            let code = r.status().as_u16();
            let _ = r.bytes().await;
            code
        }
        Err(_) => 0,
    };
    (code, t.elapsed().as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = server_bin(args.server.as_deref())?;
    let tmp = tempfile::tempdir()?;
    let url = format!("sqlite://{}", tmp.path().join("probe.db").display());
    let (graph_sub, client_state) = seed_subscription(&bin, &url).await?;
    let server = Server::start(&bin, tmp.path(), &url, &[]).await?;
    let hook = format!("{}/api/ms365/webhook", server.base);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    println!("server: {}", bin.display());

    println!(
        "\n1. answer time per body ({} requests each, one at a time)",
        args.repeat
    );
    println!("| body | size | answer | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---|---:|---:|---:|");
    let mut costliest = (0.0, Vec::new());
    for (name, body) in bodies(&graph_sub, &client_state) {
        let mut times = Vec::with_capacity(args.repeat);
        let mut codes = std::collections::BTreeSet::new();
        for _ in 0..args.repeat {
            let (code, ms) = post(&http, &hook, body.clone()).await;
            codes.insert(code);
            times.push(ms);
        }
        times.sort_by(f64::total_cmp);
        if pct(&times, 0.5) > costliest.0 {
            costliest = (pct(&times, 0.5), body.clone());
        }
        println!(
            "| {name} | {} KiB | {codes:?} | {:.2} | {:.2} | {:.2} |",
            body.len() / 1024,
            pct(&times, 0.5),
            pct(&times, 0.99),
            times.last().copied().unwrap_or(0.0)
        );
    }

    println!("\n2. /healthz while two connections send the costliest body for 5 s");
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..2)
        .map(|_| {
            let (http, hook, body, stop) = (
                http.clone(),
                hook.clone(),
                costliest.1.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    post(&http, &hook, body.clone()).await;
                }
            })
        })
        .collect();
    let mut health = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let t = Instant::now();
        let _ = http.get(format!("{}/healthz", server.base)).send().await;
        health.push(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.await;
    }
    health.sort_by(f64::total_cmp);
    println!(
        "healthz: {} probes, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        health.len(),
        pct(&health, 0.5),
        pct(&health, 0.99),
        health.last().copied().unwrap_or(0.0)
    );

    println!(
        "\n3. {} stalled uploads (1 MB announced, 960 KiB sent)",
        args.stalled
    );
    let before = rss_kb(server.pid, "VmRSS:");
    let head = "POST /api/ms365/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n";
    let chunk = vec![b' '; 960 * 1024];
    let mut conns = Vec::new();
    for _ in 0..args.stalled {
        let Ok(mut c) = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await else {
            continue;
        };
        if c.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        // A refused upload may be closed before all of it is sent.
        let _ = tokio::time::timeout(Duration::from_millis(200), c.write_all(&chunk)).await;
        conns.push(c);
    }
    // Let the server take what it was sent, then read its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = rss_kb(server.pid, "VmRSS:");
    let mut refused = 0;
    for c in &mut conns {
        let mut buf = [0u8; 64];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(5), c.read(&mut buf)).await {
            if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503") {
                refused += 1;
            }
        }
    }
    let hwm = rss_kb(server.pid, "VmHWM:");
    println!(
        "resident: {} MB before, {} MB while held (peak {} MB); {refused} of {} refused with 503 at once",
        before / 1024,
        held / 1024,
        hwm / 1024,
        conns.len()
    );
    drop(conns);
    server.stop();
    Ok(())
}
