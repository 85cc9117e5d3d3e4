//! What the benchmark tools share: finding and starting the release binary on a database
//! seeded with one subscription, and reading a process's memory and CPU from /proc.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use relay365_actors::store::subscriptions::{self, NewSubscription};
use relay365_actors::store::{credentials, new_id, Store, StoreOptions};
use serde_json::json;

/// The relay365 binary: `explicit`, or target/release/relay365 beside the running example.
pub fn server_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .context("cannot find the target folder")?;
    let bin = dir.join("relay365");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --release` first, or pass --server",
        bin.display()
    );
    Ok(bin)
}

/// A `/proc/<pid>/status` field in kB (`VmRSS:`, `VmHWM:`).
pub fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) a process used so far, from /proc/<pid>/stat.
pub fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds used so far by the PostgreSQL processes that work for `database`: its
/// backends, and the server's shared processes (WAL writer, checkpointer, background writer),
/// but not the backends of other databases (a test run beside the benchmark).
pub fn postgres_cpu_seconds_of(database: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .filter(|pid| {
            // A backend's title is "postgres: 15/main: USER DATABASE HOST(PORT) STATE".
            let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let title = String::from_utf8_lossy(&title).replace('\0', " ");
            let words: Vec<&str> = title.split_whitespace().collect();
            let is_backend = words.len() >= 5 && words[4].contains('(');
            !is_backend || words[3] == database
        })
        .map(|pid| cpu_seconds(&pid))
        .sum()
}

/// CPU seconds used so far by every PostgreSQL process on this machine (the server's
/// backends, WAL writer, checkpointer…): the database's share of the two cores.
pub fn postgres_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|pid| cpu_seconds(&pid))
        .sum()
}

/// Applies `bin`'s own migrations to the database at `url` (`relay365 migrate`), so that an
/// older build can be measured on a database this tool seeds.
pub fn migrate_with(bin: &Path, url: &str) -> anyhow::Result<()> {
    let status = Command::new(bin)
        .arg("migrate")
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {} migrate", bin.display()))?;
    anyhow::ensure!(status.success(), "{} migrate failed", bin.display());
    Ok(())
}

/// Stores a credential and one active subscription in the database at `url`, migrated by
/// `bin`; answers the subscription's Graph id and clientState.
pub async fn seed_subscription(bin: &Path, url: &str) -> anyhow::Result<(String, String)> {
    migrate_with(bin, url)?;
    let store = Store::connect(url, &StoreOptions::default()).await?;
    let credential = new_id();
    credentials::insert(
        &store,
        &credential,
        "load",
        None,
        "static",
        &json!({"kind": "static", "access_token": "x"}),
    )
    .await?;
    let (sub, graph_sub, client_state) = (new_id(), new_id(), format!("cs-{}", new_id()));
    subscriptions::insert(
        &store,
        &NewSubscription {
            id: &sub,
            credential_id: &credential,
            external_id: Some(&graph_sub),
            resource: "me/mailFolders('inbox')/messages",
            change_types: "created",
            notification_url: "http://127.0.0.1/api/ms365/webhook",
            lifecycle_url: None,
            client_state: &client_state,
            status: relay365_actors::store::status::SubscriptionStatus::Active,
            expires_at: None,
            granted_lifetime_ms: None,
            next_renewal_at: None,
        },
    )
    .await?;
    store.close().await;
    Ok((graph_sub, client_state))
}

/// The server under test, a child process on a free loopback port.
pub struct Server {
    pub child: Child,
    pub pid: u32,
    pub port: u16,
    pub base: String,
}

impl Server {
    /// Starts `bin` in `dir` on the database at `url` (with `env` added) and waits until it
    /// is ready.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        url: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Self::start_on(bin, dir, url, port, env).await
    }

    /// [`Server::start`] on a given port (when the URL must be known before it starts).
    pub async fn start_on(
        bin: &Path,
        dir: &Path,
        url: &str,
        port: u16,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        let base = format!("http://127.0.0.1:{port}");
        let mut cmd = Command::new(bin);
        cmd.current_dir(dir)
            .env("DATABASE_URL", url)
            .env("RELAY365_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .env_remove("RELAY365_API_KEY")
            .stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let mut ready = false;
        for _ in 0..500 {
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
                if r.status() == 200 {
                    ready = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::ensure!(ready, "the server did not become ready");
        Ok(Server {
            child,
            pid,
            port,
            base,
        })
    }

    /// SIGTERM, then waits for it to exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// One keep-alive HTTP/1.1 connection, driven by hyper's connection API: no pool, no URL
/// parsing per request, so the load tool spends little of the CPU it shares with the server.
pub type Conn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

pub async fn connect(port: u16) -> anyhow::Result<Conn> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(send)
}

/// POSTs one notification collection; answers the status. A broken connection is dropped and
/// the next request opens a new one.
pub async fn post(conn: &mut Option<Conn>, port: u16, payload: String) -> anyhow::Result<u16> {
    let send = match conn {
        Some(c) if !c.is_closed() => c,
        _ => conn.insert(connect(port).await?),
    };
    send.ready().await?;
    let req = hyper::Request::post("/api/ms365/webhook")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(payload)))?;
    let res = tokio::time::timeout(Duration::from_secs(10), send.send_request(req)).await;
    match res {
        Ok(Ok(res)) => {
            let status = res.status().as_u16();
            // Read the (small) answer so the connection is free for the next request.
            res.into_body().collect().await?;
            Ok(status)
        }
        Ok(Err(e)) => {
            *conn = None;
            Err(e.into())
        }
        Err(_) => {
            *conn = None;
            anyhow::bail!("no answer within 10 s")
        }
    }
}

/// The `info` of the actor `name` among root's children in the server's `/status`.
pub async fn actor_info(
    http: &reqwest::Client,
    base: &str,
    name: &str,
) -> anyhow::Result<serde_json::Value> {
    let status: serde_json::Value = http
        .get(format!("{base}/status"))
        .send()
        .await?
        .json()
        .await?;
    Ok(status["root"]["children"]
        .as_array()
        .and_then(|c| c.iter().find(|n| n["name"] == name))
        .map(|n| n["info"].clone())
        .unwrap_or_default())
}

/// A realistic HTML mail of about 5 KB: a reply with a quote and a signature.
pub fn html_mail(i: usize) -> String {
    let mut body = format!(
        "<html><body><div>Hi team,</div><p>Order #{i} is confirmed for delivery on 2026-12-14. \
         Please find the invoice total of EUR 1,234.50 below and call +49 30 1234567 if anything \
         is missing.</p>"
    );
    while body.len() < 3500 {
        body.push_str(
            "<p>We reviewed the schedule with the warehouse and the carrier; the pallets ship in \
             two loads, the second one on the following Monday, and the paperwork follows by \
             mail.</p>",
        );
    }
    body.push_str(
        "<p>Best regards,<br>Kim Lee<br>Logistics, Fabrikam GmbH</p><hr><div>From: Ann \
         &lt;ann@example.com&gt;<br>Sent: Monday<br>Subject: Order</div><blockquote>Can you \
         confirm the delivery date for the order? Thanks, Ann</blockquote></body></html>",
    );
    body
}
