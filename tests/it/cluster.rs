//! Several instances on one PostgreSQL database (SPEC §8), and SQLite refusing a second one.
//!
//! The instances sit behind a round-robin load balancer (`support::balancer`), as in a real
//! deployment, so that Graph's notifications for one subscription reach all of them. Checked:
//! any instance accepts any notification; the mailboxes are split between the live instances
//! and each mailbox's Graph requests come from one instance at a time; `/status` lists the
//! instances; a stopped or killed instance's mailboxes and leases are taken over and nothing
//! that was answered 202 is lost.
use crate::support;

use std::collections::{HashMap, HashSet};
use std::process::Child;
use std::time::{Duration, Instant};

use relay365::sim::{NewMail, SimConfig, SimHandle};
use relay365::App;
use relay365_actors::store::Store;
use serde_json::{json, Value};
use support::api::{get_any, post, sim_with};
use support::balancer::Balancer;
use support::child::{wait_ready, Logs};
use support::sink::Sink;
use support::{eventually, find_actor, test_config, TestDb};

/// Settings that make a take-over quick enough for a test.
const FAST: &[(&str, &str)] = &[
    ("RELAY365_RETRY_BASE_MS", "50"),
    ("RELAY365_SWEEP_INTERVAL_MS", "200"),
    ("RELAY365_HEARTBEAT_INTERVAL_MS", "200"),
    ("RELAY365_INSTANCE_TIMEOUT_MS", "3000"),
    // Long enough that no lease of a live instance runs out on a loaded test machine: only
    // the killed instance's work may be done twice.
    ("RELAY365_LEASE_SECONDS", "30"),
];

fn mailboxes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m{i:02}@sim.test")).collect()
}

async fn simulator(mailboxes: &[String], granted: Option<Duration>) -> SimHandle {
    sim_with(SimConfig {
        mailboxes: mailboxes.to_vec(),
        granted_lifetime: granted,
        latency: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await
}

fn graph_env(sim: &SimHandle) -> Vec<(&'static str, String)> {
    vec![
        ("RELAY365_GRAPH_URL", sim.base_url()),
        ("RELAY365_LOGIN_URL", sim.login_url()),
    ]
}

/// A credential for `mailbox` created through `via`, and a subscription to its inbox created
/// through `sub_via`; answers the credential id.
async fn connect(via: &str, sub_via: &str, sim: &SimHandle, mailbox: &str) -> String {
    support::api::mailbox(via, sub_via, sim, mailbox, &["created"])
        .await
        .0
}

fn mail(subject: String, to: &str) -> NewMail {
    NewMail {
        subject,
        body: "<p>Please confirm the order by Friday.</p>".into(),
        body_type: Some("html".into()),
        from: Some(serde_json::from_value(json!("Kim Lee <kim@example.com>")).unwrap()),
        to: vec![serde_json::from_value(json!(to)).unwrap()],
        ..Default::default()
    }
}

/// The instances each `/status` lists: (this instance's id, alive ids).
async fn instances(base: &str) -> (String, Vec<String>) {
    let s = get_any(base, "/status").await;
    let me = s["instance"].as_str().unwrap_or_default().to_string();
    let alive = s["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|i| i["alive"] == true)
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    (me, alive)
}

/// Mailboxes each instance holds, from its `/status`.
async fn held(bases: &[String]) -> Vec<u64> {
    let mut out = Vec::new();
    for b in bases {
        let s = get_any(b, "/status").await;
        let info = &find_actor(&s["root"], "cluster").unwrap()["info"];
        out.push(info["mailboxes_held"].as_u64().unwrap_or(0));
    }
    out
}

async fn owners(store: &Store) -> Vec<(String, String)> {
    let Store::Postgres(pool) = store else {
        unreachable!()
    };
    sqlx::query_as("select credential_id, instance from credential_owners")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// For every mailbox, whether two instances' requests to it ever overlapped in time (they
/// must not: only the holder sends). Instances are told apart by their `User-Agent`.
fn overlaps(sim: &SimHandle) -> Vec<String> {
    let mut by_mailbox: HashMap<String, Vec<_>> = HashMap::new();
    for r in sim.sim().requests() {
        if let (Some(m), Some(ua)) = (r.mailbox.clone(), r.user_agent.clone()) {
            by_mailbox
                .entry(m)
                .or_default()
                .push((r.started, r.ended, ua));
        }
    }
    let mut bad = Vec::new();
    for (m, mut reqs) in by_mailbox {
        reqs.sort_by_key(|r| r.0);
        for (i, a) in reqs.iter().enumerate() {
            for b in &reqs[i + 1..] {
                if b.0 >= a.1 {
                    break;
                }
                if a.2 != b.2 {
                    bad.push(format!("{m}: {} and {} at once", a.2, b.2));
                }
            }
        }
    }
    bad
}

async fn app(db: &TestDb, sim: &SimHandle, public: &str) -> App {
    let env = graph_env(sim);
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.push(("RELAY365_PUBLIC_URL", public));
    all.extend_from_slice(FAST);
    support::spawn_app(test_config(&db.url, &all)).await
}

// The simulator, the sink and the balancer share the test's runtime with its checks: two
// threads, so that a check never starves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_the_mailboxes_and_accept_each_others_notifications() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let boxes = mailboxes(12);
    let sim = simulator(&boxes, None).await;
    let lb = Balancer::start().await;
    let sink = Sink::start().await;
    let mut apps = Vec::new();
    for _ in 0..3 {
        let a = app(&db, &sim, &lb.url).await;
        lb.add(&a.url());
        apps.push(a);
    }
    let bases: Vec<String> = apps.iter().map(App::url).collect();

    // Every /status lists the three, each itself once.
    assert!(
        eventually(10, || async {
            let mut ok = true;
            for b in &bases {
                let (me, alive) = instances(b).await;
                ok &= alive.len() == 3 && alive.contains(&me);
            }
            ok
        })
        .await,
        "each instance sees the three alive"
    );
    let (s, _) = post(&bases[2], "/api/targets", json!({"url": sink.url("ok")})).await;
    assert_eq!(s, 201);
    // Credentials through one instance, their subscriptions through the next.
    let mut creds = Vec::new();
    for (i, m) in boxes.iter().enumerate() {
        creds.push(connect(&bases[i % 3], &bases[(i + 1) % 3], &sim, m).await);
    }
    let store = db.store().await;
    assert!(
        eventually(10, || async {
            held(&bases).await.iter().sum::<u64>() == 12 && owners(&store).await.len() == 12
        })
        .await,
        "every mailbox has one holder: {:?}",
        held(&bases).await
    );
    let mut alive = HashSet::new();
    for b in &bases {
        alive.insert(instances(b).await.0);
    }
    for (cred, holder) in owners(&store).await {
        assert!(creds.contains(&cred) && alive.contains(&holder));
    }
    println!("mailboxes held per instance: {:?}", held(&bases).await);

    // Mail for every mailbox, notified through the balancer: whichever instance gets a
    // notification accepts it (202) and the holder delivers it.
    let mut sent = 0;
    for round in 0..3 {
        for m in &boxes {
            let r = sim
                .sim()
                .deliver(m, vec![mail(format!("order {round} for {m}"), m)])
                .await
                .unwrap();
            assert!(r.notifications.iter().all(|n| n.status == Some(202)));
            sent += 1;
        }
    }
    assert!(
        eventually(30, || async { sink.delivered("ok").len() >= sent }).await,
        "{} of {sent} delivered",
        sink.delivered("ok").len()
    );

    // One instance stops cleanly: the others take its mailboxes at once, and mail for them
    // is still delivered.
    let gone = instances(&bases[2]).await.0;
    apps.pop().unwrap().stop().await.unwrap();
    assert!(
        eventually(10, || async {
            let o = owners(&store).await;
            o.len() == 12 && o.iter().all(|(_, h)| *h != gone)
        })
        .await,
        "the stopped instance's mailboxes moved"
    );
    // Each instance's list is the one its last heartbeat read: the stop shows at its next one.
    assert!(
        eventually(10, || async { instances(&bases[0]).await.1.len() == 2 }).await,
        "the stopped instance is not alive: {:?}",
        instances(&bases[0]).await
    );
    for m in &boxes {
        sim.sim()
            .deliver(m, vec![mail(format!("after the stop for {m}"), m)])
            .await
            .unwrap();
    }
    let want = sent + boxes.len();
    assert!(
        eventually(30, || async { sink.delivered("ok").len() >= want }).await,
        "{} of {want} delivered after the stop",
        sink.delivered("ok").len()
    );
    assert_eq!(overlaps(&sim), Vec::<String>::new());
    for a in apps {
        a.stop().await.unwrap();
    }
    db.cleanup().await;
}

/// One `relay365 serve` process on `db_url` behind `public`.
fn spawn_serve(db_url: &str, public: &str, sim: &SimHandle, dir: &std::path::Path) -> Child {
    let mut c = support::child::serve(dir, db_url);
    c.env("RELAY365_PUBLIC_URL", public)
        .env("RELAY365_WORKERS", "4")
        .env("RELAY365_DB_MAX_CONNECTIONS", "6")
        .env("RUST_LOG", "info,relay365_actors=warn");
    for (k, v) in FAST {
        c.env(k, v);
    }
    for (k, v) in graph_env(sim) {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

struct Proc {
    child: Child,
    url: String,
    id: String,
    logs: Logs,
}

/// Kills every instance and prints the end of its log (for a failure's report).
fn dump(procs: Vec<Proc>) {
    for mut p in procs {
        let _ = p.child.kill();
        let _ = p.child.wait();
        let all = p.logs.all();
        let tail: Vec<&str> = all.lines().rev().take(30).collect();
        eprintln!("--- instance {} ---", p.id);
        for l in tail.into_iter().rev() {
            eprintln!("{l}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_one_killed_deliver_every_accepted_notification() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    const MAILS: usize = 2000;
    let boxes = mailboxes(30);
    // Subscriptions live 12 s, so each is renewed every 6 s while the test runs.
    let sim = simulator(&boxes, Some(Duration::from_secs(12))).await;
    let lb = Balancer::start().await;
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    db.store().await.close().await; // migrated once, before three race to it
    let mut procs = Vec::new();
    for _ in 0..3 {
        let mut child = spawn_serve(&db.url, &lb.url, &sim, dir.path());
        let logs = wait_ready(&mut child);
        let url = logs.url.clone();
        lb.add(&url);
        let id = instances(&url).await.0;
        procs.push(Proc {
            child,
            url,
            id,
            logs,
        });
    }
    let bases: Vec<String> = procs.iter().map(|p| p.url.clone()).collect();
    let (s, _) = post(&bases[0], "/api/targets", json!({"url": sink.url("ok")})).await;
    assert_eq!(s, 201);
    for (i, m) in boxes.iter().enumerate() {
        connect(&bases[i % 3], &bases[(i + 2) % 3], &sim, m).await;
    }
    let store = db.store().await;
    assert!(
        eventually(15, || async {
            held(&bases).await.iter().sum::<u64>() == 30
        })
        .await,
        "every mailbox has a holder: {:?}",
        held(&bases).await
    );
    println!("mailboxes held per instance: {:?}", held(&bases).await);

    // 2,000 mails over the 30 mailboxes, 16 notifications in flight; the third instance is
    // killed a third of the way through.
    let started = Instant::now();
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(HashSet::<String>::new()));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..16 {
        let (sim, boxes) = (sim.sim().clone(), boxes.clone());
        let (accepted, refused, next) = (accepted.clone(), refused.clone(), next.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= MAILS {
                    return;
                }
                let m = &boxes[i % boxes.len()];
                let r = sim
                    .deliver(m, vec![mail(format!("order {i}"), m)])
                    .await
                    .unwrap();
                if r.notifications.iter().all(|n| n.status == Some(202)) {
                    accepted.lock().unwrap().extend(r.message_ids);
                } else {
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    assert!(
        eventually(60, || async {
            next.load(std::sync::atomic::Ordering::Relaxed) >= MAILS / 3
        })
        .await
    );
    let mut victim = procs.pop().unwrap();
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    // What it held when it died: the only work that may be done twice.
    let Store::Postgres(pool) = &store else {
        unreachable!()
    };
    let (leased_events,): (i64,) = sqlx::query_as(
        "select count(*) from events where status = 'processing' and lease_owner = $1",
    )
    .bind(&victim.id)
    .fetch_one(pool)
    .await
    .unwrap();
    let (leased_deliveries,): (i64,) =
        sqlx::query_as("select count(*) from deliveries where lease_owner = $1")
            .bind(&victim.id)
            .fetch_one(pool)
            .await
            .unwrap();
    for s in senders {
        s.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    let refused = refused.load(std::sync::atomic::Ordering::Relaxed);

    let delivered_all = eventually(90, || async {
        let got = sink.delivered("ok");
        if got.len() < accepted.len() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return false;
        }
        let got: HashSet<String> = got
            .iter()
            .filter_map(|r| r.json()["message"]["id"].as_str().map(str::to_string))
            .collect();
        accepted.is_subset(&got)
    })
    .await;
    let received = sink.delivered("ok");
    let mut per_event: HashMap<String, usize> = HashMap::new();
    let mut per_message: HashMap<String, usize> = HashMap::new();
    for r in &received {
        *per_event.entry(r.webhook_id().to_string()).or_default() += 1;
        if let Some(m) = r.json()["message"]["id"].as_str() {
            *per_message.entry(m.to_string()).or_default() += 1;
        }
    }
    let twice_events = per_event.values().filter(|n| **n > 1).count();
    // Deliveries sent again because an attempt failed or timed out (the sink may have had
    // the first): at least once, by design, and not the kill's doing.
    let (resent,): (i64,) = sqlx::query_as("select count(*) from deliveries where attempts > 1")
        .fetch_one(pool)
        .await
        .unwrap();
    let twice_messages = per_message.values().filter(|n| **n > 1).count();
    println!(
        "{MAILS} mails in {:?}: {} accepted (202), {refused} refused while an instance died; \
         {} delivered; delivered twice: {twice_events} events, {twice_messages} messages; \
         the killed instance held {leased_events} event and {leased_deliveries} delivery leases; \
         {resent} deliveries were sent again after a failed attempt",
        started.elapsed(),
        accepted.len(),
        received.len(),
    );
    if !delivered_all {
        dump(procs);
        panic!(
            "every accepted notification is delivered ({} delivered)",
            received.len()
        );
    }
    assert!(
        twice_events as i64 <= leased_events + leased_deliveries + resent,
        "only the killed instance's leased work (and retried deliveries) may be done twice"
    );

    // Renewals: each subscription renewed by one instance per window (two renewals of one
    // subscription never closer than a fraction of its 6 s renewal period), shared out.
    let mut patches: HashMap<String, Vec<tokio::time::Instant>> = HashMap::new();
    let mut by_instance: HashMap<String, usize> = HashMap::new();
    for r in sim.sim().requests() {
        if r.method == "PATCH" && r.path.contains("/subscriptions/") && r.status == 200 {
            patches.entry(r.path.clone()).or_default().push(r.started);
            *by_instance
                .entry(r.user_agent.unwrap_or_default())
                .or_default() += 1;
        }
    }
    println!(
        "renewals per instance: {:?}",
        by_instance.values().collect::<Vec<_>>()
    );
    assert!(
        !patches.is_empty(),
        "subscriptions were renewed during the test"
    );
    for (path, mut at) in patches {
        at.sort();
        for w in at.windows(2) {
            assert!(
                w[1] - w[0] >= Duration::from_secs(2),
                "{path} renewed twice within {:?}",
                w[1] - w[0]
            );
        }
    }
    assert!(
        by_instance.len() >= 2,
        "renewals are shared: {by_instance:?}"
    );
    // Outlook's limit held: never more than 4 requests in flight for one mailbox, and never
    // two instances' requests at once.
    for m in &boxes {
        let max = sim.sim().max_concurrency(m);
        assert!(max <= 4, "{m}: {max} requests in flight at once");
    }
    assert_eq!(overlaps(&sim), Vec::<String>::new());
    let _: Value = get_any(&bases[0], "/status").await;
    for mut p in procs {
        p.child.kill().unwrap();
        p.child.wait().unwrap();
    }
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_second_serve_on_one_sqlite_file_refuses_to_start() {
    let db = TestDb::sqlite().await;
    let first = support::spawn_app(test_config(&db.url, &[])).await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = support::child::serve(dir.path(), &db.url).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the second serve kept running on the same SQLite file");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("already serving") && err.contains("PostgreSQL"),
        "{err}"
    );
    // The first is untouched, and once it stops the file is free again.
    assert_eq!(
        reqwest::get(format!("{}/healthz", first.url()))
            .await
            .unwrap()
            .status(),
        200
    );
    first.stop().await.unwrap();
    let again = support::spawn_app(test_config(&db.url, &[])).await;
    again.stop().await.unwrap();
}
