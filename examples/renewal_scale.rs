//! Benchmark: many subscriptions in one renewal actor (issue 11's scale point).
//!
//! Stores N active subscriptions (default 100,000) straight into a SQLite file, each with a
//! completed delta round (as running subscriptions have, so no baseline is due at start),
//! starts the release `relay365` binary on that database, waits until renewal's `/status`
//! shows every subscription scheduled, and reports the time that took, the service's resident
//! memory and its CPU while idle over `--idle-seconds`.
//!
//! Two modes:
//! - default: one credential, renewals due over the next six days (nothing falls due while
//!   it runs): memory and idle CPU with the whole schedule loaded.
//! - `--time-compressed`: the Graph simulator runs in this process, and every subscription
//!   falls due within `--window-seconds` and expires at the simulator `--slack-seconds` after
//!   that (a day of Graph's lead compressed into a minute). The subscriptions belong to
//!   `--tenants` credentials, each with a mailbox of its own and, as relay365 counts tenants
//!   (a credential with no tenant id is a tenant of its own), its own write window. The
//!   simulator keeps what it saw: which subscriptions were renewed and when, which expired
//!   first, and the most subscription writes per mailbox (= per tenant here) in any 20 s.
//!   With `--bursts`, each tenant's renewals fall due at one instant (the tenants staggered
//!   over the window), so that the actor must spread every tenant's renewals over its write
//!   window (450 per 20 s; Graph allows 500).
//!
//! ```sh
//! cargo build --release --bin relay365 --example renewal_scale
//! target/release/examples/renewal_scale [--subscriptions 100000]
//! target/release/examples/renewal_scale --time-compressed [--tenants 100] [--window-seconds 150] [--bursts]
//! ```
//! Results are in docs/benchmarks.md.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use relay365::sim::{SeedSubscription, SimConfig, SimHandle, Simulator};
use relay365_actors::store::{credentials, new_id, now_ms, Store, StoreOptions};
use serde_json::{json, Value};
use support::{actor_info, cpu_seconds, migrate_with, rss_kb, server_bin, Server};

/// Graph's limit, and the actor's share of it (graph-contract §3).
const GRAPH_WRITES_PER_20S: usize = 500;
const ACTOR_WRITES_PER_20S: usize = 450;

#[derive(Parser)]
#[command(about = "Many subscriptions in one renewal actor: memory, idle CPU, renewals on time")]
struct Args {
    /// Subscriptions to store.
    #[arg(long, default_value_t = 100_000)]
    subscriptions: usize,
    /// Seconds over which idle CPU is measured.
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
    /// The relay365 binary (default: target/release/relay365 beside this example).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Let every subscription fall due within the window, against the simulator.
    #[arg(long)]
    time_compressed: bool,
    /// Tenants (credentials with a mailbox each) the subscriptions are shared among.
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// Seconds over which the renewals fall due.
    #[arg(long, default_value_t = 150)]
    window_seconds: u64,
    /// Seconds from a renewal's due time to the subscription's expiry at the simulator.
    #[arg(long, default_value_t = 60)]
    slack_seconds: u64,
    /// Seconds from the end of seeding to the first due renewal (the service starts between).
    #[arg(long, default_value_t = 10)]
    lead_seconds: u64,
    /// Each tenant's renewals fall due at one instant (tenants staggered over the window).
    #[arg(long)]
    bursts: bool,
    /// Lifetime the simulator grants a renewal (long enough that none falls due again).
    #[arg(long, default_value_t = 3600)]
    granted_seconds: u64,
    /// The service's periodic resync (RELAY365_RESYNC_INTERVAL_SECONDS) in the compressed run.
    #[arg(long, default_value_t = 86_400)]
    resync_interval_seconds: u64,
}

/// A credential to store.
struct Credential {
    id: String,
    mailbox: String,
    kind: &'static str,
    token_source: Value,
}

/// A subscription to store: its credential (index), Graph id, and when it falls due and
/// expires (ms from the start of the window).
struct Seeded {
    credential: usize,
    external_id: String,
    due: i64,
    expires: i64,
}

fn resource(i: usize) -> String {
    format!("me/mailFolders('f{i}')/messages")
}

fn sqlite(store: &Store) -> anyhow::Result<sqlx::SqlitePool> {
    match store {
        Store::Sqlite(p) => Ok(p.clone()),
        Store::Postgres(_) => anyhow::bail!("seeding is written for SQLite"),
    }
}

/// Stores the credentials and subscriptions (transactions of 1,000 rows), each subscription
/// with a completed delta round, then moves every time by `t0` (ms since the epoch), so that
/// the window starts when seeding has ended rather than when it began.
async fn seed(
    url: &str,
    creds: &[Credential],
    subs: &[Seeded],
    t0: impl FnOnce() -> i64,
) -> anyhow::Result<i64> {
    let store = Store::connect(url, &StoreOptions::default()).await?;
    for c in creds {
        credentials::insert(
            &store,
            &c.id,
            &c.mailbox,
            Some(&c.mailbox),
            c.kind,
            &c.token_source,
        )
        .await?;
    }
    let pool = sqlite(&store)?;
    let now = now_ms();
    for (n, chunk) in subs.chunks(1000).enumerate() {
        let mut tx = pool.begin().await?;
        for (k, s) in chunk.iter().enumerate() {
            let i = n * 1000 + k;
            let id = new_id();
            sqlx::query(
                "insert into subscriptions (id, credential_id, external_id, resource, change_types, \
                 notification_url, client_state, status, expires_at, granted_lifetime_ms, \
                 next_renewal_at, created_at, updated_at) \
                 values ($1, $2, $3, $4, 'created', 'http://127.0.0.1/api/ms365/webhook', $5, \
                 'active', $6, $7, $8, $9, $9)",
            )
            .bind(&id)
            .bind(&creds[s.credential].id)
            .bind(&s.external_id)
            .bind(resource(i))
            .bind(format!("cs-{i}"))
            .bind(s.expires)
            .bind(2 * (s.expires - s.due))
            .bind(s.due)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "insert into delta_state (subscription_id, folder, delta_link, last_sync_at) \
                 values ($1, $2, null, $3)",
            )
            .bind(&id)
            .bind(format!("f{i}"))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }
    let t0 = t0();
    sqlx::query(
        "update subscriptions set next_renewal_at = next_renewal_at + $1, \
         expires_at = expires_at + $2",
    )
    .bind(t0)
    .bind(t0)
    .execute(&pool)
    .await?;
    store.close().await;
    Ok(t0)
}

/// Waits until renewal's `/status` shows `n` renewals scheduled (two minutes at most);
/// answers how many it showed.
async fn scheduled(http: &reqwest::Client, server: &Server, n: usize) -> anyhow::Result<u64> {
    let started = Instant::now();
    let mut scheduled = 0;
    while started.elapsed() < Duration::from_secs(120) {
        scheduled = actor_info(http, &server.base, "renewal").await?["scheduled"]
            .as_u64()
            .unwrap_or(0);
        if scheduled >= n as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(scheduled)
}

/// Idle CPU of the server over `secs` (after 3 s to settle), as a share of one core.
async fn idle_cpu(server: &Server, secs: u64) -> f64 {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = server.pid.to_string();
    let cpu0 = cpu_seconds(&pid);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    (cpu_seconds(&pid) - cpu0) / secs as f64
}

fn memory(server: &Server) -> String {
    format!(
        "resident {:.1} MB (peak {:.1} MB)",
        rss_kb(server.pid, "VmRSS:") as f64 / 1024.0,
        rss_kb(server.pid, "VmHWM:") as f64 / 1024.0,
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = server_bin(args.server.as_deref())?;
    let tmp = tempfile::tempdir()?;
    let url = format!("sqlite://{}", tmp.path().join("scale.db").display());
    migrate_with(&bin, &url)?;
    if args.time_compressed {
        compressed(&args, &bin, tmp.path(), &url).await
    } else {
        schedule_only(&args, &bin, tmp.path(), &url).await
    }
}

/// One credential, renewals due between one and seven days from now: load and idle.
async fn schedule_only(
    args: &Args,
    bin: &std::path::Path,
    dir: &std::path::Path,
    url: &str,
) -> anyhow::Result<()> {
    let n = args.subscriptions;
    let creds = [Credential {
        id: new_id(),
        mailbox: "scale@example.com".into(),
        kind: "static",
        token_source: json!({"kind": "static", "access_token": "x"}),
    }];
    let (day, week) = (24 * 3600 * 1000_i64, 7 * 24 * 3600 * 1000_i64);
    let subs: Vec<Seeded> = (0..n)
        .map(|i| {
            let due = day + (i as i64 * (week - day)) / n as i64;
            Seeded {
                credential: 0,
                external_id: new_id(),
                due,
                expires: due + day,
            }
        })
        .collect();
    let seeded = Instant::now();
    seed(url, &creds, &subs, now_ms).await?;
    println!(
        "{n} subscriptions stored in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let server = Server::start(bin, dir, url, &[]).await?;
    let ready = started.elapsed();
    let http = reqwest::Client::new();
    let count = scheduled(&http, &server, n).await?;
    let all_scheduled = started.elapsed();
    let idle = idle_cpu(&server, args.idle_seconds).await;
    println!("ready (/readyz 200) after {:.2} s", ready.as_secs_f64());
    println!(
        "{count} scheduled in renewal after {:.2} s",
        all_scheduled.as_secs_f64()
    );
    println!(
        "{}; idle CPU {:.2} % of a core over {} s",
        memory(&server),
        idle * 100.0,
        args.idle_seconds
    );
    server.stop();
    Ok(())
}

/// The subscriptions and when each falls due (ms from the start of the window).
fn layout(args: &Args) -> Vec<Seeded> {
    let (n, t) = (args.subscriptions, args.tenants.max(1));
    let window = args.window_seconds as i64 * 1000;
    let slack = args.slack_seconds as i64 * 1000;
    (0..n)
        .map(|i| {
            let tenant = i % t;
            let due = if args.bursts {
                tenant as i64 * window / t as i64
            } else {
                i as i64 * window / n as i64
            };
            Seeded {
                credential: tenant,
                external_id: new_id(),
                due,
                expires: due + slack,
            }
        })
        .collect()
}

/// What the plan asks of each tenant's write window, printed before the run.
fn feasibility(args: &Args) {
    let t = args.tenants.max(1);
    let per_tenant = args.subscriptions.div_ceil(t);
    let rate = ACTOR_WRITES_PER_20S as f64 / 20.0;
    // The time one tenant's renewals need at the actor's write rate, and the time they have.
    let (need, have) = if args.bursts {
        let windows = per_tenant.div_ceil(ACTOR_WRITES_PER_20S).saturating_sub(1);
        (windows as f64 * 20.0, args.slack_seconds as f64)
    } else {
        let need = per_tenant as f64 / rate;
        (need, (args.window_seconds + args.slack_seconds) as f64)
    };
    println!(
        "plan: {} subscriptions over {t} tenants ({per_tenant} each), due {} over {} s, each \
         expiring {} s after it is due; at {ACTOR_WRITES_PER_20S} writes per 20 s a tenant's \
         renewals need {need:.0} s and have {have:.0} s: {}; all tenants together {:.0} renewals/s",
        args.subscriptions,
        if args.bursts {
            "a tenant at a time"
        } else {
            "evenly"
        },
        args.window_seconds,
        args.slack_seconds,
        if need < have {
            "feasible"
        } else {
            "NOT feasible"
        },
        args.subscriptions as f64 / args.window_seconds.max(1) as f64,
    );
}

async fn start_sim(args: &Args, tenants: &[Credential]) -> anyhow::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(
        SimConfig {
            mailboxes: tenants.iter().map(|c| c.mailbox.clone()).collect(),
            granted_lifetime: Some(Duration::from_secs(args.granted_seconds)),
            notification_retries: 0,
            ..SimConfig::default()
        },
        listener,
    )
    .await?;
    for c in tenants {
        anyhow::ensure!(sim.sim().connect_credential(&c.id, &c.mailbox));
    }
    Ok(sim)
}

/// Percentile of sorted values.
fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Every subscription falls due within the window: renewed before it expires?
async fn compressed(
    args: &Args,
    bin: &std::path::Path,
    dir: &std::path::Path,
    url: &str,
) -> anyhow::Result<()> {
    let n = args.subscriptions;
    feasibility(args);
    let creds: Vec<Credential> = (0..args.tenants.max(1))
        .map(|k| Credential {
            id: new_id(),
            mailbox: format!("tenant{k}@sim.test"),
            kind: "auth_service",
            token_source: json!({"kind": "auth_service"}),
        })
        .collect();
    let sim = start_sim(args, &creds).await?;
    let subs = layout(args);
    let seeded = Instant::now();
    let lead = args.lead_seconds as i64 * 1000;
    let t0 = seed(url, &creds, &subs, || now_ms() + lead).await?;
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    let seeds: Vec<SeedSubscription> = subs
        .iter()
        .enumerate()
        .map(|(i, s)| SeedSubscription {
            id: Some(s.external_id.clone()),
            mailbox: creds[s.credential].mailbox.clone(),
            resource: resource(i),
            change_type: None,
            notification_url: "http://127.0.0.1/api/ms365/webhook".into(),
            lifecycle_notification_url: None,
            client_state: Some(format!("cs-{i}")),
            expiration_date_time: at(t0 + s.expires),
        })
        .collect();
    sim.sim()
        .adopt_subscriptions(seeds)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "{n} subscriptions stored (relay365 and simulator) in {:.1} s; the first falls due in {:.1} s",
        seeded.elapsed().as_secs_f64(),
        (t0 - now_ms()) as f64 / 1000.0
    );

    let (graph, login) = (sim.base_url(), sim.login_url());
    let secret = sim.sim().config().service_secret.clone();
    let resync = args.resync_interval_seconds.to_string();
    let env = [
        ("RELAY365_GRAPH_URL", graph.as_str()),
        ("RELAY365_LOGIN_URL", login.as_str()),
        ("AUTH_SERVICE_URL", login.as_str()),
        ("SERVICE_SECRET", secret.as_str()),
        ("RELAY365_RESYNC_INTERVAL_SECONDS", resync.as_str()),
    ];
    let started = Instant::now();
    let server = Server::start(bin, dir, url, &env).await?;
    let http = reqwest::Client::new();
    let count = scheduled(&http, &server, n).await?;
    println!(
        "{count} scheduled in renewal {:.2} s after start; {}",
        started.elapsed().as_secs_f64(),
        memory(&server)
    );

    // Watch until every subscription was renewed or expired, or the plan's time is well over.
    let pid = server.pid.to_string();
    let (cpu0, tool0) = (cpu_seconds(&pid), cpu_seconds("self"));
    let watch = Instant::now();
    let end = t0 + (args.window_seconds + args.slack_seconds + 60) as i64 * 1000;
    let mut last_print = Instant::now();
    let counts = loop {
        let c = sim.sim().subscription_counts();
        if c.renewed + c.expired as usize >= n || now_ms() > end {
            break c;
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            let info = actor_info(&http, &server.base, "renewal").await?;
            println!(
                "  {:>4.0} s into the window: renewed {}, expired {}; actor: renewed {}, spread {}, failed {}, queued {}; {}",
                (now_ms() - t0) as f64 / 1000.0,
                c.renewed,
                c.expired,
                info["renewed"],
                info["spread"],
                info["failed"],
                info["queued"],
                memory(&server)
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let busy = watch.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&pid) - cpu0;
    let tool = cpu_seconds("self") - tool0;
    let info = actor_info(&http, &server.base, "renewal").await?;

    // When each was renewed, against when it fell due and when it would have expired.
    let due: HashMap<&str, i64> = subs
        .iter()
        .map(|s| (s.external_id.as_str(), t0 + s.due))
        .collect();
    let mut late: Vec<i64> = sim
        .sim()
        .subscriptions()
        .iter()
        .filter_map(|s| {
            let renewed = s.last_renewed_at?.timestamp_millis();
            Some(renewed - due.get(s.id.as_str())?)
        })
        .collect();
    late.sort_unstable();
    let max_writes = creds
        .iter()
        .map(|c| sim.sim().max_subscription_writes(&c.mailbox))
        .max()
        .unwrap_or(0);
    let peak = rss_kb(server.pid, "VmHWM:") as f64 / 1024.0;
    let idle = idle_cpu(&server, args.idle_seconds).await;

    println!(
        "renewed {} of {n} ({} renewals in all); expired at the simulator before renewal: {}",
        counts.renewed, counts.renewals, counts.expired
    );
    println!(
        "renewed after falling due: p50 {} ms, p99 {} ms, max {} ms (each had {} s before expiry); the actor spread {} renewals, {} failed",
        pct(&late, 0.5),
        pct(&late, 0.99),
        late.last().copied().unwrap_or(0),
        args.slack_seconds,
        info["spread"],
        info["failed"]
    );
    println!(
        "most renewals per tenant in any 20 s at the simulator: {max_writes} (actor's limit {ACTOR_WRITES_PER_20S}, Graph's {GRAPH_WRITES_PER_20S}): {}",
        if max_writes <= GRAPH_WRITES_PER_20S {
            "within"
        } else {
            "OVER"
        }
    );
    println!(
        "renewal phase {busy:.1} s: service CPU {:.1} s ({:.0} % of a core, {:.0} µs per renewal); this tool (simulator) {:.1} s",
        cpu,
        cpu / busy * 100.0,
        cpu / counts.renewals.max(1) as f64 * 1e6,
        tool
    );
    println!(
        "{} (peak over the run {peak:.1} MB); idle CPU after the round {:.2} % of a core over {} s",
        memory(&server),
        idle * 100.0,
        args.idle_seconds
    );
    server.stop();
    sim.shutdown().await;
    Ok(())
}
