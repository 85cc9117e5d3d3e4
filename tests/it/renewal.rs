//! Subscriptions that never silently die, against the simulator: short granted lifetimes are
//! renewed again and again; a subscription Graph lost is recreated and mail flows through the
//! new one; lifecycle events do what SPEC §6 says and forged ones do nothing; dropped
//! notifications come back through delta, once each; an expired delta token recovers without
//! re-delivering old mail; a lifecycle event the service could not act on survives a restart
//! and is acted on once after it; the renewal actor survives a crash; a broken credential
//! shows its subscriptions in `error` and they recover with it. Every wait is on observable
//! state.
use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use relay365::sim::{NewMail, SimConfig, SimHandle, SimSubscription};
use relay365::App;
use serde_json::{json, Value};
use support::api::{get_any as get, post, sim_with};
use support::sink::Sink;
use support::{eventually, find_actor, spawn_public_app, TestDb};

const ALICE: &str = "alice@sim.test";

/// A simulator that grants every subscription a few seconds.
async fn short_lived() -> SimHandle {
    sim_with(SimConfig {
        granted_lifetime: Some(Duration::from_secs(3)),
        ..SimConfig::default()
    })
    .await
}

async fn app(sim: &SimHandle, db: &TestDb, extra: &[(&str, &str)]) -> App {
    let (graph, login, auth) = (sim.base_url(), sim.login_url(), sim.auth_service_url());
    let secret = sim.sim().config().service_secret.clone();
    let mut all: Vec<(&str, &str)> = vec![
        ("RELAY365_GRAPH_URL", &graph),
        ("RELAY365_LOGIN_URL", &login),
        ("AUTH_SERVICE_URL", &auth),
        ("SERVICE_SECRET", &secret),
        ("RELAY365_RETRY_BASE_MS", "50"),
        ("RELAY365_SWEEP_INTERVAL_MS", "200"),
    ];
    all.extend_from_slice(extra);
    spawn_public_app(&db.url, &all).await
}

/// A client-credentials credential for Alice's mailbox.
async fn credential(base: &str, sim: &SimHandle) -> String {
    let c = sim.sim().config();
    let (s, cred) = post(
        base,
        "/api/credentials",
        json!({"name": "alice", "mailbox": ALICE, "token_source": {"kind": "client_credentials", "tenant_id": c.tenant, "client_id": c.client_id, "client_secret": c.client_secret}}),
    )
    .await;
    assert_eq!(s, 201, "{cred}");
    cred["id"].as_str().unwrap().to_string()
}

/// A credential whose tokens the simulator's auth service vends for Alice's mailbox (so that
/// a test can break its token source: `disconnect_credential`).
async fn vended_credential(base: &str, sim: &SimHandle) -> String {
    let cred = uuid::Uuid::new_v4().to_string();
    assert!(sim.sim().connect_credential(&cred, ALICE));
    let (s, c) = post(
        base,
        "/api/credentials",
        json!({"id": cred, "name": "vended", "mailbox": ALICE, "token_source": {"kind": "auth_service"}}),
    )
    .await;
    assert_eq!(s, 201, "{c}");
    cred
}

/// A subscription to Alice's inbox; answers it as the API shows it. Waits until its delta
/// baseline is taken, so that mail delivered next is not part of it.
async fn subscribe(base: &str, cred: &str, change_types: &[&str]) -> Value {
    let before = renewal_info(base).await["resynced"].as_u64().unwrap_or(0);
    let (s, sub) = post(
        base,
        "/api/ms365/subscriptions",
        json!({"credential_id": cred, "change_types": change_types}),
    )
    .await;
    assert_eq!(s, 201, "{sub}");
    assert!(
        eventually(10, || async {
            renewal_info(base).await["resynced"].as_u64().unwrap_or(0) > before
        })
        .await,
        "baseline taken: {}",
        renewal_info(base).await
    );
    sub
}

async fn subscription(base: &str, id: &str) -> Value {
    let all = get(base, "/api/ms365/subscriptions").await;
    all["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn renewal_info(base: &str) -> Value {
    let status = get(base, "/status").await;
    find_actor(&status["root"], "renewal").unwrap()["info"].clone()
}

fn at_graph(sim: &SimHandle, id: &str) -> Option<SimSubscription> {
    sim.sim().subscriptions().into_iter().find(|s| s.id == id)
}

/// Waits (30 s at most) until Graph has renewed the subscription `times` times; answers
/// whether it did, and whether any look found it gone at Graph meanwhile.
async fn renewed_without_lapsing(sim: &SimHandle, ext: &str, times: u32) -> (bool, bool) {
    let mut lapsed = false;
    let renewed = eventually(30, || {
        let g = at_graph(sim, ext);
        lapsed |= g.is_none();
        async move { g.is_some_and(|g| g.renew_count >= times) }
    })
    .await;
    (renewed, lapsed)
}

/// A subscription's id at Graph, as the API shows it.
fn graph_id(sub: &Value) -> String {
    sub["external_subscription_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn mail(subject: &str) -> NewMail {
    NewMail {
        subject: subject.into(),
        ..Default::default()
    }
}

/// Delivers mail; answers the message ids.
async fn deliver(sim: &SimHandle, n: usize, prefix: &str) -> Vec<String> {
    let mails = (0..n).map(|i| mail(&format!("{prefix} {i}"))).collect();
    sim.sim().deliver(ALICE, mails).await.unwrap().message_ids
}

/// Events of a kind (`change`, `resync`, `lifecycle`), newest first.
async fn events(base: &str, kind: &str) -> Vec<Value> {
    let all = get(base, "/api/events?limit=500").await;
    all["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

/// The message ids of every mail event (change or resync), with repeats.
async fn mail_events(base: &str) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for kind in ["change", "resync"] {
        for e in events(base, kind).await {
            ids.push(e["resource_id"].as_str().unwrap_or_default().to_string());
        }
    }
    ids
}

async fn lifecycle_done(base: &str, n: usize) -> bool {
    events(base, "lifecycle")
        .await
        .iter()
        .filter(|e| e["status"] == "completed")
        .count()
        >= n
}

#[tokio::test]
async fn a_lifetime_of_seconds_is_renewed_again_and_again_and_never_lapses_at_graph() {
    let sim = short_lived().await;
    on_every_store!(|db| {
        sim.sim().reset();
        let app = app(&sim, &db, &[]).await;
        let base = app.url();
        let cred = credential(&base, &sim).await;
        let sub = subscribe(&base, &cred, &["created"]).await;
        let (id, ext) = (sub["id"].as_str().unwrap().to_string(), graph_id(&sub));

        // Every look finds it alive at Graph, under the same id, until it was renewed 3 times.
        let (renewed, lapsed) = renewed_without_lapsing(&sim, &ext, 3).await;
        assert!(
            renewed && !lapsed,
            "{}: renewed {renewed}, lapsed {lapsed}",
            db.label
        );

        // The expiry Graph granted is what the API shows.
        let g = at_graph(&sim, &ext).unwrap();
        let shown = subscription(&base, &id).await;
        let shown_at: chrono::DateTime<chrono::Utc> =
            shown["expires_at"].as_str().unwrap().parse().unwrap();
        assert!(
            (shown_at - g.expiration_date_time).num_milliseconds().abs() <= 1_000
                || shown_at < g.expiration_date_time,
            "{shown} vs {:?}",
            g.expiration_date_time
        );
        assert_eq!(shown["status"], "active");
        assert!(
            eventually(20, || async {
                renewal_info(&base).await["renewed"].as_u64().unwrap_or(0) >= 3
            })
            .await,
            "{}",
            renewal_info(&base).await
        );
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

/// With the periodic resync off, a subscription's renewal is its only job: once taken off the
/// schedule, the job must still know whose mailbox it is (several instances share PostgreSQL
/// and only the holder renews).
#[tokio::test]
async fn renewals_go_on_with_the_periodic_resync_off() {
    let sim = short_lived().await;
    on_every_store!(|db| {
        sim.sim().reset();
        let app = app(&sim, &db, &[("RELAY365_RESYNC_INTERVAL_SECONDS", "0")]).await;
        let base = app.url();
        let cred = credential(&base, &sim).await;
        let sub = subscribe(&base, &cred, &["created"]).await;
        let ext = graph_id(&sub);
        let (renewed, lapsed) = renewed_without_lapsing(&sim, &ext, 2).await;
        assert!(
            renewed && !lapsed,
            "{}: renewed {renewed}, lapsed {lapsed}",
            db.label
        );
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn a_404_on_renewal_recreates_it_and_mail_flows_through_the_new_one() {
    let sim = short_lived().await;
    on_every_store!(|db| {
        sim.sim().reset();
        let app = app(&sim, &db, &[]).await;
        let base = app.url();
        let cred = credential(&base, &sim).await;
        let sub = subscribe(&base, &cred, &["created"]).await;
        let id = sub["id"].as_str().unwrap().to_string();
        let old = graph_id(&sub);
        let old_state = at_graph(&sim, &old).unwrap().client_state;

        // Graph forgets it without a word; the next renewal gets a 404.
        assert!(sim.sim().expire_subscription(&old));
        assert!(
            eventually(20, || async {
                let s = subscription(&base, &id).await;
                s["external_subscription_id"] != old.as_str() && s["status"] == "active"
            })
            .await,
            "{}: recreated: {}",
            db.label,
            subscription(&base, &id).await
        );
        let new = subscription(&base, &id).await["external_subscription_id"]
            .as_str()
            .unwrap()
            .to_string();
        let g = at_graph(&sim, &new).unwrap();
        assert_ne!(g.client_state, old_state, "a new clientState");

        let ids = deliver(&sim, 1, "after recreate").await;
        assert!(
            eventually(10, || async { mail_events(&base).await.contains(&ids[0]) }).await,
            "mail through the new subscription"
        );
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn lifecycle_events_renew_recreate_and_resync_and_forged_ones_do_nothing() {
    let sim = sim_with(SimConfig::default()).await;
    on_every_store!(|db| {
        sim.sim().reset();
        let app = app(&sim, &db, &[]).await;
        let base = app.url();
        let cred = credential(&base, &sim).await;
        let sub = subscribe(&base, &cred, &["created"]).await;
        let id = sub["id"].as_str().unwrap().to_string();
        let ext = graph_id(&sub);

        // A forged reauthorizationRequired (wrong clientState) is dropped by the receiver.
        let forged = json!({"value": [{"subscriptionId": ext, "clientState": "not-the-secret",
            "lifecycleEvent": "reauthorizationRequired", "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
            "tenantId": "t"}]});
        let (s, _) = post(&base, "/api/ms365/lifecycle", forged).await;
        assert_eq!(s, 202);

        // missed → resync: a mail whose notification was dropped arrives through delta.
        sim.sim().drop_next_notifications(1);
        let dropped = deliver(&sim, 1, "dropped").await;
        sim.sim().send_lifecycle(&ext, "missed").await.unwrap();
        assert!(
            eventually(10, || async { lifecycle_done(&base, 1).await }).await,
            "{}: missed acted on: {} {}",
            db.label,
            find_actor(&get(&base, "/status").await["root"], "renewal").unwrap(),
            get(&base, "/api/events").await
        );
        let resynced = events(&base, "resync").await;
        assert_eq!(resynced.len(), 1, "{resynced:?}");
        assert_eq!(resynced[0]["resource_id"], dropped[0].as_str());
        assert_eq!(resynced[0]["change_type"], "created");
        // The forged event did nothing: no renewal, and only the real event is stored.
        let g = at_graph(&sim, &ext).unwrap();
        assert_eq!((g.renew_count, g.reauthorize_count), (0, 0));
        assert_eq!(events(&base, "lifecycle").await.len(), 1);

        // reauthorizationRequired → one PATCH, never a reauthorize.
        sim.sim()
            .send_lifecycle(&ext, "reauthorizationRequired")
            .await
            .unwrap();
        assert!(eventually(10, || async { lifecycle_done(&base, 2).await }).await);
        let g = at_graph(&sim, &ext).unwrap();
        assert_eq!((g.renew_count, g.reauthorize_count), (1, 0));

        // subscriptionRemoved → created again (same id of ours), then resynced.
        sim.sim()
            .send_lifecycle(&ext, "subscriptionRemoved")
            .await
            .unwrap();
        assert!(eventually(10, || async { lifecycle_done(&base, 3).await }).await);
        let now = subscription(&base, &id).await;
        let new = now["external_subscription_id"].as_str().unwrap();
        assert_ne!(new, ext);
        assert!(at_graph(&sim, new).is_some());
        let ids = deliver(&sim, 1, "after removal").await;
        assert!(eventually(10, || async { mail_events(&base).await.contains(&ids[0]) }).await);

        // The same subscriptionRemoved a second time (acted on again after a restart), while
        // Graph has the new subscription: the recreate meets our own (409), which keeps its
        // clientState, so its mail is still accepted.
        let held = at_graph(&sim, new).unwrap();
        let again = json!({"value": [{"subscriptionId": new, "clientState": held.client_state,
            "lifecycleEvent": "subscriptionRemoved",
            "subscriptionExpirationDateTime": held.expiration_date_time, "tenantId": "t"}]});
        let (s, _) = post(&base, "/api/ms365/lifecycle", again).await;
        assert_eq!(s, 202);
        assert!(
            eventually(10, || async { lifecycle_done(&base, 4).await }).await,
            "{}: {}",
            db.label,
            find_actor(&get(&base, "/status").await["root"], "renewal").unwrap()
        );
        let kept = subscription(&base, &id).await;
        assert_eq!(kept["external_subscription_id"], new, "{}", db.label);
        let ids = deliver(&sim, 1, "after the second removal").await;
        assert!(
            eventually(10, || async { mail_events(&base).await.contains(&ids[0]) }).await,
            "{}: its mail is accepted",
            db.label
        );
        // Each mail once.
        let all = mail_events(&base).await;
        assert_eq!(
            all.len(),
            all.iter().collect::<HashSet<_>>().len(),
            "{all:?}"
        );
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn twelve_dropped_mails_arrive_through_missed_once_each_over_several_pages() {
    let sim = sim_with(SimConfig {
        delta_page_size: 5,
        ..SimConfig::default()
    })
    .await;
    on_every_store!(|db| {
        sim.sim().reset();
        let sink = Sink::start().await;
        let app = app(&sim, &db, &[]).await;
        let base = app.url();
        let (s, t) = post(&base, "/api/targets", json!({"url": sink.url("ok")})).await;
        assert_eq!(s, 201, "{t}");
        // Mail that was there before the subscription is never delivered.
        deliver(&sim, 3, "before").await;
        let cred = credential(&base, &sim).await;
        let sub = subscribe(&base, &cred, &["created"]).await;
        let ext = sub["external_subscription_id"].as_str().unwrap();

        let notified = deliver(&sim, 2, "notified").await;
        sim.sim().drop_next_notifications(12);
        let dropped = deliver(&sim, 12, "dropped").await;
        sim.sim().send_lifecycle(ext, "missed").await.unwrap();

        let want: HashSet<String> = notified.iter().chain(&dropped).cloned().collect();
        assert!(
            eventually(20, || async { sink.delivered("ok").len() >= want.len() }).await,
            "{}: {} of {} delivered; {:?}; events {}",
            db.label,
            sink.delivered("ok").len(),
            want.len(),
            sink.received(),
            get(&base, "/api/events?limit=500").await
        );
        assert!(eventually(10, || async { lifecycle_done(&base, 1).await }).await);
        let got: Vec<String> = sink
            .delivered("ok")
            .iter()
            .map(|r| r.json()["message"]["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got.iter().cloned().collect::<HashSet<_>>(), want);
        assert_eq!(got.len(), want.len(), "each once: {got:?}");
        assert!(sink
            .delivered("ok")
            .iter()
            .all(|r| r.json()["type"] == "message.created"));
        assert_eq!(events(&base, "resync").await.len(), 12);
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn an_expired_delta_token_recovers_a_dropped_mail_without_redelivering_old_ones() {
    let sim = sim_with(SimConfig::default()).await;
    on_every_store!(|db| {
        sim.sim().reset();
        let app = app(&sim, &db, &[]).await;
        let base = app.url();
        deliver(&sim, 4, "old").await;
        // Graph tells the time a mail was received to the second: the subscription (and its
        // baseline) comes in a later second than the old mail.
        let old_second = chrono::Utc::now().timestamp();
        assert!(eventually(2, || async { chrono::Utc::now().timestamp() > old_second }).await);
        let cred = credential(&base, &sim).await;
        let sub = subscribe(&base, &cred, &["created", "deleted"]).await;
        let ext = sub["external_subscription_id"].as_str().unwrap();
        let notified = deliver(&sim, 2, "notified").await;
        assert!(eventually(10, || async { mail_events(&base).await.len() == 2 }).await);

        // Graph forgets every delta token of the mailbox, and drops one notification.
        sim.sim().reset_delta(ALICE).unwrap();
        sim.sim().drop_next_notifications(1);
        let dropped = deliver(&sim, 1, "dropped").await;
        sim.sim().send_lifecycle(ext, "missed").await.unwrap();
        assert!(
            eventually(10, || async { lifecycle_done(&base, 1).await }).await,
            "{}",
            db.label
        );
        let mut got = mail_events(&base).await;
        got.sort();
        let mut want: Vec<String> = notified.iter().chain(&dropped).cloned().collect();
        want.sort();
        assert_eq!(got, want, "{}: old mail not delivered again", db.label);
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn a_lifecycle_event_not_yet_acted_on_survives_a_restart_and_is_acted_on_once() {
    let sim = sim_with(SimConfig::default()).await;
    // The periodic resync a day away: every resync seen here is the lifecycle event's.
    let settings = [("RELAY365_RESYNC_INTERVAL_SECONDS", "86400")];
    on_every_store!(|db| {
        sim.sim().reset();
        let first = app(&sim, &db, &settings).await;
        let base = first.url();
        let cred = vended_credential(&base, &sim).await;
        let sub = subscribe(&base, &cred, &["created"]).await;
        let ext = graph_id(&sub);

        // The credential breaks (no more tokens vended, the one it has refused), Graph drops
        // a mail's notification and says `missed`: the receiver stores the event, the
        // resync it asks for fails, and the event stays pending.
        assert!(sim.sim().disconnect_credential(&cred));
        sim.sim().expire_tokens(None);
        sim.sim().drop_next_notifications(1);
        let dropped = deliver(&sim, 1, "dropped").await;
        let sent = sim.sim().send_lifecycle(&ext, "missed").await.unwrap();
        assert!(sent.len() == 1 && sent[0].status == Some(202), "{sent:?}");
        assert!(
            eventually(20, || async {
                renewal_info(&base).await["failed"].as_u64().unwrap_or(0) >= 1
            })
            .await,
            "{}: the resync failed: {}",
            db.label,
            renewal_info(&base).await
        );
        let pending = events(&base, "lifecycle").await;
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0]["status"], "pending", "{pending:?}");
        assert!(events(&base, "resync").await.is_empty());
        first.stop().await.unwrap();

        // Started again on the same database, the credential working again.
        sim.sim().clear_requests();
        assert!(sim.sim().connect_credential(&cred, ALICE));
        let second = app(&sim, &db, &settings).await;
        let base = second.url();
        assert!(
            eventually(30, || async {
                renewal_info(&base).await["lifecycle_done"].as_u64() >= Some(1)
                    && lifecycle_done(&base, 1).await
            })
            .await,
            "{}: acted on after the restart: {} {}",
            db.label,
            get(&base, "/status").await,
            get(&base, "/api/events").await
        );
        // The same event, done; one resync for it, which brought the dropped mail once.
        let done = events(&base, "lifecycle").await;
        assert_eq!(done.len(), 1, "{done:?}");
        assert_eq!(done[0]["id"], pending[0]["id"]);
        assert_eq!(done[0]["payload"]["acted"], json!(["resynced"]), "{done:?}");
        let info = renewal_info(&base).await;
        assert_eq!(
            (info["lifecycle_done"].as_u64(), info["resynced"].as_u64()),
            (Some(1), Some(1)),
            "{info}"
        );
        let resynced = events(&base, "resync").await;
        assert_eq!(resynced.len(), 1, "{resynced:?}");
        assert_eq!(resynced[0]["resource_id"], dropped[0].as_str());
        let delta: Vec<_> = sim
            .sim()
            .requests()
            .into_iter()
            .filter(|r| r.path.contains("/delta"))
            .collect();
        assert!(
            !delta.is_empty() && delta.iter().all(|r| r.status == 200),
            "{delta:?}"
        );
        second.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn the_periodic_resync_catches_a_notification_graph_dropped_without_a_word() {
    let sim = sim_with(SimConfig::default()).await;
    let db = TestDb::sqlite().await;
    let app = app(&sim, &db, &[("RELAY365_RESYNC_INTERVAL_SECONDS", "1")]).await;
    let base = app.url();
    let cred = credential(&base, &sim).await;
    subscribe(&base, &cred, &["created"]).await;
    // A notified mail that is read before the round: its etag changed since.
    let read = deliver(&sim, 1, "read").await;
    sim.sim()
        .update_message(
            ALICE,
            &read[0],
            serde_json::from_value(json!({"is_read": true})).unwrap(),
        )
        .await
        .unwrap();
    sim.sim().drop_next_notifications(1);
    let dropped = deliver(&sim, 1, "dropped").await;
    assert!(
        eventually(15, || async {
            events(&base, "resync")
                .await
                .iter()
                .any(|e| e["resource_id"] == dropped[0].as_str())
        })
        .await
    );
    // The read one is not created a second time under its new etag.
    let all = mail_events(&base).await;
    assert_eq!(
        all.iter().filter(|id| **id == read[0]).count(),
        1,
        "{all:?}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_renewal_actor_made_to_fail_is_restarted_and_renewals_go_on() {
    let sim = short_lived().await;
    let db = TestDb::sqlite().await;
    let app = app(&sim, &db, &[]).await;
    let base = app.url();
    let cred = credential(&base, &sim).await;
    let sub = subscribe(&base, &cred, &["created"]).await;
    let ext = graph_id(&sub);
    assert!(
        eventually(10, || async {
            at_graph(&sim, &ext).is_some_and(|g| g.renew_count >= 1)
        })
        .await
    );

    let (s, _) = post(&base, "/api/debug/actors/renewal/fail", json!({})).await;
    assert_eq!(s, 202);
    assert!(
        eventually(10, || async {
            let status = get(&base, "/status").await;
            let r = find_actor(&status["root"], "renewal").unwrap().clone();
            r["restarts"].as_u64().unwrap_or(0) >= 1 && r["state"] == "running"
        })
        .await
    );
    let before = at_graph(&sim, &ext).unwrap().renew_count;
    assert!(
        eventually(20, || async {
            at_graph(&sim, &ext).is_some_and(|g| g.renew_count >= before + 2)
        })
        .await,
        "renewals go on after the restart"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_credential_whose_token_source_breaks_shows_error_and_recovers_with_it() {
    let sim = short_lived().await;
    on_every_store!(|db| {
        sim.sim().reset();
        let app = app(&sim, &db, &[]).await;
        let base = app.url();
        let cred = vended_credential(&base, &sim).await;
        let sub = subscribe(&base, &cred, &["created"]).await;
        let id = sub["id"].as_str().unwrap().to_string();

        // The auth service no longer vends tokens for it, and Graph refuses the one it has.
        assert!(sim.sim().disconnect_credential(&cred));
        sim.sim().expire_tokens(None);
        assert!(
            eventually(20, || async {
                subscription(&base, &id).await["status"] == "error"
            })
            .await,
            "{}: {}",
            db.label,
            subscription(&base, &id).await
        );
        let shown = subscription(&base, &id).await;
        assert!(
            shown["last_error"]
                .as_str()
                .unwrap()
                .contains("not connected"),
            "{shown}"
        );
        // The store says `error` before the actor has taken in how the job ended.
        assert!(
            eventually(20, || async {
                renewal_info(&base).await["failing_count"].as_u64() >= Some(1)
            })
            .await,
            "{}",
            renewal_info(&base).await
        );

        // Connected again: the subscription comes back (recreated: it lapsed meanwhile).
        assert!(sim.sim().connect_credential(&cred, ALICE));
        assert!(
            eventually(30, || async {
                let s = subscription(&base, &id).await;
                s["status"] == "active" && s["last_error"].is_null()
            })
            .await,
            "{}",
            subscription(&base, &id).await
        );
        let ids = deliver(&sim, 1, "recovered").await;
        assert!(eventually(10, || async { mail_events(&base).await.contains(&ids[0]) }).await);
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}
