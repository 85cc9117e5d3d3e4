//! From mail to n8n, end to end: the simulator as Graph, a local sink as n8n, the real service
//! on SQLite and on PostgreSQL. Mail is delivered once, shaped per SPEC §4 and signed; repeats
//! are dropped; failing targets are retried with the same `webhook-id` and end `failed` after
//! exactly the configured attempts; throttling is honoured without holding up other
//! mailboxes; gone, deleted and attachment-carrying mail; filters; replay; and a SIGKILL under
//! load loses nothing that got a 202.
use crate::support;

#[path = "../../actors/tests/fixtures/primitives/documents.rs"]
mod documents;

use std::collections::{HashMap, HashSet};
use std::process::Child;
use std::time::{Duration, Instant};

use relay365::sim::{AttachmentInput, NewMail, SimHandle};
use relay365::App;
use serde_json::{json, Value};
use support::api::{call, post, sim};
use support::balancer::Balancer;
use support::sink::Sink;
use support::{eventually, find_actor, spawn_public_app, TestDb};

const ALICE: &str = "alice@sim.test";
const BOB: &str = "bob@sim.test";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn sim_env(sim: &SimHandle) -> Vec<(&'static str, String)> {
    vec![
        ("RELAY365_GRAPH_URL", sim.base_url()),
        ("RELAY365_LOGIN_URL", sim.login_url()),
        ("RELAY365_RETRY_BASE_MS", "50".into()),
        ("RELAY365_SWEEP_INTERVAL_MS", "200".into()),
    ]
}

async fn app(sim: &SimHandle, db: &TestDb, extra: &[(&str, &str)]) -> App {
    let env = sim_env(sim);
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    spawn_public_app(&db.url, &all).await
}

async fn get(base: &str, path: &str) -> Value {
    let (code, v) = call(reqwest::Method::GET, format!("{base}{path}"), None).await;
    assert_eq!(code, 200, "GET {path}: {v}");
    v
}

/// A credential for `mailbox` and a subscription to its inbox; answers (credential, subscription).
async fn mailbox(
    base: &str,
    sim: &SimHandle,
    mailbox: &str,
    change_types: &[&str],
) -> (String, String) {
    support::api::mailbox(base, base, sim, mailbox, change_types).await
}

async fn target(base: &str, body: Value) -> Value {
    let (s, t) = post(base, "/api/targets", body).await;
    assert_eq!(s, 201, "{t}");
    t
}

/// An app with Alice's inbox subscribed (created mail) and one target at `path` of `sink`.
async fn alice_to(
    sim: &SimHandle,
    db: &TestDb,
    sink: &Sink,
    path: &str,
    extra: &[(&str, &str)],
) -> App {
    let app = app(sim, db, extra).await;
    let base = app.url();
    mailbox(&base, sim, ALICE, &["created"]).await;
    target(&base, json!({"url": sink.url(path)})).await;
    app
}

/// Adds a Graph fault to the simulator (a `FaultSpec` as JSON).
fn fault(sim: &SimHandle, spec: Value) {
    sim.sim()
        .add_fault(serde_json::from_value(spec).unwrap())
        .unwrap();
}

fn mail(subject: &str) -> NewMail {
    NewMail {
        subject: subject.into(),
        body: format!(
            "<p>Hello,</p><p>{subject}: please confirm by Friday.</p><p>Thanks,<br>Kim</p>"
        ),
        body_type: Some("html".into()),
        from: Some(serde_json::from_value(json!("Kim Lee <kim@example.com>")).unwrap()),
        to: vec![serde_json::from_value(json!(ALICE)).unwrap()],
        ..Default::default()
    }
}

async fn deliver(sim: &SimHandle, mailbox: &str, mails: Vec<NewMail>) -> Vec<String> {
    let report = sim.sim().deliver(mailbox, mails).await.unwrap();
    for n in &report.notifications {
        assert_eq!(n.status, Some(202), "notification answered: {n:?}");
    }
    report.message_ids
}

/// Waits until `sink` has `n` successful requests at `path`.
async fn delivered(sink: &Sink, path: &str, n: usize, secs: u64) -> Vec<support::sink::Received> {
    let ok = eventually(secs, || async { sink.delivered(path).len() >= n }).await;
    let got = sink.delivered(path);
    assert!(
        ok,
        "{} of {n} delivered to /{path}: {:?}",
        got.len(),
        sink.received()
    );
    got
}

fn events_of(v: &Value) -> &Vec<Value> {
    v["events"].as_array().unwrap()
}

#[tokio::test]
async fn mail_is_delivered_once_signed_and_shaped_per_spec() {
    let sim = sim().await;
    on_every_store!(|db| {
        sim.sim().reset();
        let sink = Sink::start().await;
        let app = app(&sim, &db, &[]).await;
        let base = app.url();
        let (cred, sub) = mailbox(&base, &sim, ALICE, &["created"]).await;
        let t = target(
            &base,
            json!({"url": sink.url("ok"), "secret": SECRET, "headers": {"X-N8N-Auth": "n8n-key"}}),
        )
        .await;
        assert_eq!(
            t["secret"], SECRET,
            "the secret is shown once, when created"
        );
        assert_eq!(t["headers"]["X-N8N-Auth"], "n8n-key");

        let ids = deliver(&sim, ALICE, vec![mail("Invoice 42")]).await;
        let got = delivered(&sink, "ok", 1, 20).await;
        let r = &got[0];
        // Signed per Standard Webhooks, checked with the specification's own verifier.
        standardwebhooks::Webhook::new(SECRET)
            .unwrap()
            .verify(r.body.as_bytes(), &r.headers)
            .expect("the signature verifies");
        assert_eq!(r.headers["x-n8n-auth"], "n8n-key");
        assert_eq!(r.headers["content-type"], "application/json");
        let body = r.json();
        assert_eq!(body["id"].as_str().unwrap(), r.webhook_id());
        assert_eq!(body["type"], "message.created");
        assert_eq!(body["provider"], "ms365");
        assert_eq!(body["credential_id"], cred);
        assert_eq!(body["subscription_id"], sub);
        for field in ["received_at", "processed_at"] {
            assert!(
                chrono::DateTime::parse_from_rfc3339(body[field].as_str().unwrap()).is_ok(),
                "{field}"
            );
        }
        let m = &body["message"];
        assert_eq!(m["id"], ids[0]);
        assert_eq!(m["subject"], "Invoice 42");
        assert_eq!(
            m["from"],
            json!({"name": "Kim Lee", "email": "kim@example.com"})
        );
        assert_eq!(m["to"][0]["email"], ALICE);
        assert_eq!(m["cc"], json!([]));
        assert_eq!(m["body_type"], "html");
        assert!(m["body_content"]
            .as_str()
            .unwrap()
            .contains("please confirm"));
        // Each from the fetch's `$select`: a field left out of it would be null or empty here.
        for key in [
            "received_at",
            "body_preview",
            "importance",
            "conversation_id",
            "internet_message_id",
            "web_link",
        ] {
            assert!(
                m[key].as_str().is_some_and(|v| !v.is_empty()),
                "message.{key}: {}",
                m[key]
            );
        }
        assert_eq!(m["has_attachments"], false);
        assert_eq!(m["is_read"], false);
        assert!(m["categories"].is_array(), "message.categories");
        assert!(body["primitives"]["parse"]["reply"]
            .as_str()
            .unwrap()
            .contains("please confirm"));
        assert!(body["primitives"]["classify"]["intent"].is_string());
        assert!(
            body.get("attachments").is_none(),
            "no attachments, no field"
        );
        assert_eq!(body["raw_notification"]["clientState"], "***");
        assert_eq!(body["raw_notification"]["resourceData"]["id"], ids[0]);

        // The event and its delivery, as the API shows them; the target without its secrets.
        // The sink has answered; the delivery is recorded a moment later.
        let path = format!("/api/events/{}", r.webhook_id());
        assert!(
            eventually(10, || async {
                get(&base, &path).await["deliveries"][0]["status"] == "delivered"
            })
            .await
        );
        let event = get(&base, &path).await;
        assert_eq!(event["status"], "completed");
        assert_eq!(event["attempts"], 1);
        assert_eq!(event["deliveries"][0]["status"], "delivered");
        assert_eq!(event["deliveries"][0]["last_status_code"], 200);
        let targets = get(&base, "/api/targets").await;
        let shown = &targets["targets"][0];
        assert!(shown.get("secret").is_none());
        assert_eq!(shown["headers"]["X-N8N-Auth"], "***");
        assert!(!targets.to_string().contains("n8n-key"));

        // The same notification twice: stored once, delivered once.
        sim.sim().duplicate_next_notifications(1);
        deliver(&sim, ALICE, vec![mail("Second")]).await;
        delivered(&sink, "ok", 2, 20).await;
        let status = get(&base, "/status").await;
        let processors = find_actor(&status["root"], "processors").unwrap();
        assert!(
            eventually(5, || async {
                let s = get(&base, "/status").await;
                find_actor(&s["root"], "delivery").unwrap()["info"]["processed"] == 2
            })
            .await
        );
        assert!(processors["info"]["processed"].as_u64().unwrap() >= 1);
        // One delivery per event, each delivered: nothing is left to send again. The counter
        // moves when the sink answers; the store records the answer a moment later.
        assert!(
            eventually(10, || async {
                let all = get(&base, "/api/deliveries").await;
                let all = all["deliveries"].as_array().unwrap().clone();
                all.len() == 2 && all.iter().all(|d| d["status"] == "delivered")
            })
            .await,
            "{}: one delivery per event, each delivered",
            db.label
        );
        assert_eq!(sink.received().len(), 2, "{}", db.label);
        assert_eq!(events_of(&get(&base, "/api/events").await).len(), 2);
        let metrics = reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for name in [
            "relay365_events_total{outcome=\"completed\"}",
            "relay365_deliveries_total{outcome=\"delivered\",status=\"2xx\"}",
            "relay365_graph_request_seconds",
            "relay365_delivered_after_seconds",
        ] {
            assert!(metrics.contains(name), "{name} in /metrics");
        }
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn failing_targets_are_retried_with_the_same_id_then_failed_then_retried_by_hand() {
    let sim = sim().await;
    on_every_store!(|db| {
        sim.sim().reset();
        let sink = Sink::start().await;
        let app = app(&sim, &db, &[("RELAY365_DELIVERY_MAX_ATTEMPTS", "4")]).await;
        let base = app.url();
        mailbox(&base, &sim, ALICE, &["created"]).await;
        target(&base, json!({"url": sink.url("flaky/3")})).await;
        let down = target(&base, json!({"url": sink.url("down")})).await;

        deliver(&sim, ALICE, vec![mail("Flaky")]).await;
        let got = delivered(&sink, "flaky/3", 1, 30).await;
        let attempts = sink.attempts("flaky/3");
        assert_eq!(
            attempts[got[0].webhook_id()],
            4,
            "{}: on the 4th attempt",
            db.label
        );

        // The dead target: exactly 4 attempts, then failed.
        let down_id = down["id"].as_str().unwrap();
        let failed = eventually(30, || async {
            get(
                &base,
                &format!("/api/deliveries?status=failed&target_id={down_id}"),
            )
            .await["deliveries"]
                .as_array()
                .unwrap()
                .len()
                == 1
        })
        .await;
        assert!(failed, "{}: the delivery to /down failed", db.label);
        assert_eq!(
            sink.attempts("down").values().copied().collect::<Vec<_>>(),
            vec![4]
        );
        let list = get(
            &base,
            &format!("/api/deliveries?status=failed&target_id={down_id}"),
        )
        .await;
        let d = &list["deliveries"][0];
        assert_eq!(d["attempts"], 4);
        assert_eq!(d["last_status_code"], 500);
        assert!(d["last_error"].as_str().unwrap().starts_with("HTTP 500"));

        // By hand, once the target works again.
        sink.recover();
        let id = d["id"].as_str().unwrap();
        let (s, retried) = post(&base, &format!("/api/deliveries/{id}/retry"), json!({})).await;
        assert_eq!(s, 202, "{retried}");
        let got = delivered(&sink, "down", 1, 20).await;
        assert_eq!(got[0].webhook_id(), d["event_id"].as_str().unwrap());
        let (s, again) = post(&base, &format!("/api/deliveries/{id}/retry"), json!({})).await;
        assert_eq!(s, 409, "only a failed delivery is retried: {again}");
        let (s, _) = post(
            &base,
            &format!("/api/deliveries/{}/retry", uuid::Uuid::new_v4()),
            json!({}),
        )
        .await;
        assert_eq!(s, 404);
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn an_event_whose_attempts_never_ended_fails_once_they_are_spent() {
    use relay365_actors::store::events::{self, Lease, NewEvent};
    let sim = sim().await;
    on_every_store!(|db| {
        sim.sim().reset();
        let app = app(&sim, &db, &[("WEBHOOK_MAX_RETRIES", "2")]).await;
        let base = app.url();
        let (cred, sub) = mailbox(&base, &sim, ALICE, &["created"]).await;
        // An event whose two attempts were claimed by an instance that died during each (a
        // message that kills the process, say): its lease has run out.
        let store = db.store().await;
        let now = chrono::Utc::now().timestamp_millis();
        let event = NewEvent {
            id: events::event_id(now - 600_000),
            idempotency_key: "poison".into(),
            kind: "change",
            subscription_id: Some(sub),
            credential_id: Some(cred),
            change_type: "created".into(),
            resource_id: Some("AAMkPoison".into()),
            raw: r#"{"clientState":"***"}"#.into(),
            received_at: now - 600_000,
            claim: false,
        };
        events::insert_batch(&store, std::slice::from_ref(&event))
            .await
            .unwrap();
        for at in [now - 600_000, now - 500_000] {
            let lease = Lease {
                owner: "dead-instance",
                now: at,
                ms: 1000,
            };
            events::claim(&store, &event.id, lease)
                .await
                .unwrap()
                .unwrap();
        }
        // Taken up by the sweep, it is not tried a third time.
        let path = format!("/api/events/{}", event.id);
        assert!(
            eventually(20, || async {
                get(&base, &path).await["status"] == "failed"
            })
            .await,
            "{}: {}",
            db.label,
            get(&base, &path).await
        );
        let shown = get(&base, &path).await;
        assert!(
            shown["last_error"]
                .as_str()
                .unwrap()
                .contains("never ended"),
            "{shown}"
        );
        assert!(
            sim.sim()
                .requests()
                .iter()
                .all(|r| !r.path.contains("AAMkPoison")),
            "no fetch of it"
        );
        store.close().await;
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn mail_kept_waiting_past_its_lease_spends_no_attempt_waiting() {
    let sim = sim().await;
    on_every_store!(|db| {
        sim.sim().reset();
        let sink = Sink::start().await;
        // One attempt each, and a lease of 2 s: ten mails of one mailbox, fetched one after
        // the other at 400 ms each, keep the last ones queued past the lease they were
        // stored under.
        let env = [
            ("WEBHOOK_MAX_RETRIES", "1"),
            ("RELAY365_LEASE_SECONDS", "2"),
        ];
        let app = alice_to(&sim, &db, &sink, "ok", &env).await;
        let base = app.url();
        fault(
            &sim,
            json!({"kind": "latency", "mailbox": ALICE, "latency_ms": 400}),
        );
        let mails = (0..10).map(|i| mail(&format!("Burst {i}"))).collect();
        let ids = deliver(&sim, ALICE, mails).await;

        let got = delivered(&sink, "ok", 10, 60).await;
        let mut seen: Vec<String> = got
            .iter()
            .map(|r| r.json()["message"]["id"].as_str().unwrap().to_owned())
            .collect();
        seen.sort_unstable();
        let mut want = ids;
        want.sort_unstable();
        assert_eq!(seen, want, "{}: every mail delivered", db.label);
        let all = get(&base, "/api/events?limit=100").await;
        for e in events_of(&all) {
            assert_eq!(e["status"], "completed", "{}: {e}", db.label);
            assert_eq!(
                e["attempts"], 1,
                "{}: waiting spent an attempt: {e}",
                db.label
            );
        }
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn deliveries_kept_waiting_past_their_lease_spend_no_attempt_waiting() {
    let sim = sim().await;
    on_every_store!(|db| {
        sim.sim().reset();
        let sink = Sink::start().await;
        // A lease of 2 s, and a target that takes 600 ms to answer each of the 16 deliveries
        // it is sent at once: of 80 deliveries, the last wait in the queue past the lease they
        // were created under.
        let app = alice_to(
            &sim,
            &db,
            &sink,
            "slow/600",
            &[("RELAY365_LEASE_SECONDS", "2")],
        )
        .await;
        let base = app.url();
        let mails = (0..80).map(|i| mail(&format!("Many {i}"))).collect();
        deliver(&sim, ALICE, mails).await;

        delivered(&sink, "slow/600", 80, 60).await;
        let listed = || async {
            let list = get(&base, "/api/deliveries?limit=100").await;
            list["deliveries"].as_array().unwrap().clone()
        };
        let recorded = eventually(10, || async {
            let all = listed().await;
            all.len() == 80 && all.iter().all(|d| d["status"] == "delivered")
        })
        .await;
        let all = listed().await;
        assert!(recorded, "{}: {all:?}", db.label);
        for d in &all {
            assert_eq!(
                d["attempts"], 1,
                "{}: waiting spent an attempt: {d}",
                db.label
            );
        }
        assert_eq!(sink.received().len(), 80, "{}: each sent once", db.label);
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn a_throttle_longer_than_an_attempt_spends_no_attempt() {
    let sim = sim().await;
    on_every_store!(|db| {
        sim.sim().reset();
        let sink = Sink::start().await;
        // One attempt, of at most 2 s (half the lease); Graph answers the fetch with a 429 and
        // a Retry-After of 6 s, which the attempt cannot wait out.
        let env = [
            ("WEBHOOK_MAX_RETRIES", "1"),
            ("RELAY365_LEASE_SECONDS", "4"),
        ];
        let app = alice_to(&sim, &db, &sink, "ok", &env).await;
        let base = app.url();
        fault(
            &sim,
            json!({"kind": "throttle", "mailbox": ALICE, "retry_after_secs": 6.0, "count": 1}),
        );
        sim.sim().clear_requests();
        let ids = deliver(&sim, ALICE, vec![mail("Throttled long")]).await;

        let got = delivered(&sink, "ok", 1, 30).await;
        assert_eq!(got[0].json()["message"]["id"], ids[0], "{}", db.label);
        let reqs = sim.sim().requests();
        assert!(
            reqs.iter().any(|r| r.status == 429),
            "{}: throttled",
            db.label
        );
        let listed = get(&base, "/api/events").await;
        let event = &events_of(&listed)[0];
        assert_eq!(event["status"], "completed", "{}: {event}", db.label);
        assert_eq!(
            event["attempts"], 1,
            "{}: the throttle spent an attempt: {event}",
            db.label
        );
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn throttling_is_honoured_and_does_not_hold_up_another_mailbox() {
    let sim = sim().await;
    on_every_store!(|db| {
        sim.sim().reset();
        let sink = Sink::start().await;
        let app = app(&sim, &db, &[]).await;
        let base = app.url();
        let (alice_cred, _) = mailbox(&base, &sim, ALICE, &["created"]).await;
        mailbox(&base, &sim, BOB, &["created"]).await;
        target(&base, json!({"url": sink.url("ok")})).await;
        // Every Graph request for Alice is throttled for the next 3 s, with a fractional
        // Retry-After.
        sim.sim()
            .add_fault(serde_json::from_value(json!({"kind": "throttle", "mailbox": ALICE, "retry_after_secs": 1.5, "duration_secs": 3.0})).unwrap())
            .unwrap();
        sim.sim().clear_requests();
        let throttled_from = Instant::now();
        let alice = deliver(&sim, ALICE, vec![mail("For Alice")]).await;
        let bob = deliver(&sim, BOB, vec![mail("For Bob")]).await;

        let first = delivered(&sink, "ok", 1, 20).await;
        assert_eq!(
            first[0].json()["message"]["id"],
            bob[0],
            "{}: Bob's mail first",
            db.label
        );
        assert!(
            first[0].at.duration_since(throttled_from) < Duration::from_secs(1),
            "{}: Bob waited {:?} behind Alice's throttle",
            db.label,
            first[0].at.duration_since(throttled_from)
        );
        let both = delivered(&sink, "ok", 2, 30).await;
        assert_eq!(both[1].json()["message"]["id"], alice[0]);
        // Not early: every request for Alice after a 429 waited its Retry-After.
        let reqs: Vec<_> = sim
            .sim()
            .requests()
            .into_iter()
            .filter(|r| r.mailbox.as_deref() == Some(ALICE))
            .collect();
        assert!(reqs.iter().any(|r| r.status == 429));
        for pair in reqs.windows(2) {
            if pair[0].status == 429 {
                let gap = pair[1].started.duration_since(pair[0].ended);
                assert!(
                    gap >= Duration::from_millis(1490),
                    "{}: retried after {gap:?}",
                    db.label
                );
            }
        }
        assert_eq!(reqs.last().unwrap().status, 200);

        // A longer throttle (Retry-After 5 s): mail of the mailbox's other folder, arriving
        // while it lasts, waits in the store for its end, without spending an attempt or
        // holding a task, and is delivered after it.
        let (s, archive) = post(
            &base,
            "/api/ms365/subscriptions",
            json!({"credential_id": alice_cred, "resource": format!("users/{ALICE}/mailFolders('archive')/messages")}),
        )
        .await;
        assert_eq!(s, 201, "{archive}");
        sim.sim()
            .add_fault(serde_json::from_value(json!({"kind": "throttle", "mailbox": ALICE, "retry_after_secs": 5.0, "duration_secs": 1.0})).unwrap())
            .unwrap();
        sim.sim().clear_requests();
        deliver(&sim, ALICE, vec![mail("Throttled")]).await;
        let throttled = eventually(10, || async {
            sim.sim().requests().iter().any(|r| r.status == 429)
        })
        .await;
        assert!(throttled, "{}: Graph said 429", db.label);
        let mut archived = mail("While throttled");
        archived.folder = Some("archive".into());
        let later = deliver(&sim, ALICE, vec![archived]).await;
        let waiting = eventually(3, || async {
            events_of(&get(&base, "/api/events?status=pending").await)
                .iter()
                .any(|e| {
                    e["resource_id"] == later[0]
                        && e["attempts"] == 0
                        && e["last_error"]
                            .as_str()
                            .is_some_and(|s| s.contains("throttles this mailbox"))
                })
        })
        .await;
        assert!(
            waiting,
            "{}: {}",
            db.label,
            get(&base, "/api/events?status=pending").await
        );
        // Delivered once the throttle is over, in either order with the throttled one.
        let all = delivered(&sink, "ok", 4, 20).await;
        assert!(
            all[2..]
                .iter()
                .any(|r| r.json()["message"]["id"] == later[0]),
            "{}",
            db.label
        );
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn gone_deleted_attachment_and_meeting_mail() {
    let sim = sim().await;
    on_every_store!(|db| {
        sim.sim().reset();
        let sink = Sink::start().await;
        let app = app(&sim, &db, &[]).await;
        let base = app.url();
        mailbox(&base, &sim, ALICE, &["created", "deleted"]).await;
        target(&base, json!({"url": sink.url("ok")})).await;

        // A PDF attachment: its text rides along.
        use base64::Engine as _;
        let mut with_pdf = mail("Invoice attached");
        with_pdf.attachments = vec![AttachmentInput {
            name: "invoice.pdf".into(),
            content_type: Some("application/pdf".into()),
            content_base64: Some(
                base64::engine::general_purpose::STANDARD.encode(documents::invoice_pdf()),
            ),
            content: None,
            is_inline: false,
        }];
        let ids = deliver(&sim, ALICE, vec![with_pdf]).await;
        let got = delivered(&sink, "ok", 1, 20).await;
        let body = got[0].json();
        assert_eq!(body["message"]["has_attachments"], true);
        let a = &body["attachments"][0];
        assert_eq!(a["name"], "invoice.pdf");
        assert_eq!(a["content_type"], "application/pdf");
        assert!(a["size"].as_u64().unwrap() > 0);
        assert!(
            a["text"]
                .as_str()
                .unwrap()
                .contains("Total due: EUR 1,234.50"),
            "{a}"
        );
        assert_eq!(a["text_truncated"], false);

        // Deleted: delivered as message.deleted with only the id, without a fetch.
        sim.sim().clear_requests();
        sim.sim().delete_message(ALICE, &ids[0]).await.unwrap();
        let got = delivered(&sink, "ok", 2, 20).await;
        let deleted = got[1].json();
        assert_eq!(deleted["type"], "message.deleted");
        assert_eq!(deleted["message"], json!({"id": ids[0]}));
        assert!(
            sim.sim().requests().iter().all(|r| r.mailbox.is_none()),
            "no Graph fetch"
        );

        // Gone before it was fetched (Graph answers 404): skipped with the reason.
        let note = sim
            .sim()
            .notifications()
            .into_iter()
            .rev()
            .find(|n| n.body.is_some())
            .unwrap();
        let mut forged = note.body.unwrap();
        forged["value"][0]["resourceData"]["id"] = json!("AAMkGone");
        forged["value"][0]["changeType"] = json!("created");
        let res = reqwest::Client::new()
            .post(format!("{base}/api/ms365/webhook"))
            .json(&forged)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        let skipped = eventually(20, || async {
            events_of(&get(&base, "/api/events?status=skipped").await).len() == 1
        })
        .await;
        assert!(
            skipped,
            "{}: the event of a gone message is skipped",
            db.label
        );
        let list = get(&base, "/api/events?status=skipped").await;
        let e = &events_of(&list)[0];
        assert!(e["last_error"].as_str().unwrap().contains("404"));
        assert_eq!(sink.received().len(), 2, "nothing delivered for it");

        // A meeting request: Graph types it an eventMessage, and the classification says so.
        let meeting_signal = |body: &Value| {
            body["primitives"]["classify"]["signals"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["rule"] == "graph:event-message")
        };
        assert!(
            !meeting_signal(&got[0].json()),
            "a plain mail is no meeting"
        );
        let mut invite = mail("Project sync");
        invite.body = "<p>Let us walk through the plan.</p>".into();
        invite.meeting_message_type = Some("meetingRequest".into());
        deliver(&sim, ALICE, vec![invite]).await;
        let got = delivered(&sink, "ok", 3, 20).await;
        let body = got[2].json();
        assert!(meeting_signal(&body), "{}", body["primitives"]);
        assert_eq!(body["primitives"]["classify"]["intent"], "meeting");
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn filters_choose_targets_and_replay_delivers_again_with_the_same_id() {
    let sim = sim().await;
    on_every_store!(|db| {
        sim.sim().reset();
        let sink = Sink::start().await;
        let app = app(&sim, &db, &[]).await;
        let base = app.url();
        let (alice, _) = mailbox(&base, &sim, ALICE, &["created"]).await;
        mailbox(&base, &sim, BOB, &["created"]).await;
        target(
            &base,
            json!({"url": sink.url("ok"), "credential_id": alice}),
        )
        .await;
        target(
            &base,
            json!({"url": sink.url("flaky/0"), "event_types": ["message.deleted"]}),
        )
        .await;

        deliver(&sim, BOB, vec![mail("Bob's")]).await;
        deliver(&sim, ALICE, vec![mail("Alice's")]).await;
        let got = delivered(&sink, "ok", 1, 20).await;
        assert_eq!(got[0].json()["credential_id"], alice);
        assert!(
            eventually(10, || async {
                events_of(&get(&base, "/api/events?status=completed").await).len() == 2
            })
            .await
        );
        // Bob's event completed without a delivery: it matched no target.
        let completed = get(&base, "/api/events?status=completed").await;
        let bobs = events_of(&completed)
            .iter()
            .find(|e| e["credential_id"] != alice)
            .unwrap();
        let bobs = get(
            &base,
            &format!("/api/events/{}", bobs["id"].as_str().unwrap()),
        )
        .await;
        assert_eq!(
            bobs["deliveries"],
            json!([]),
            "{}: Bob's mail matches no target",
            db.label
        );
        assert_eq!(sink.received().len(), 1, "{}", db.label);

        let id = got[0].webhook_id().to_string();
        let (s, r) = post(&base, &format!("/api/events/{id}/replay"), json!({})).await;
        assert_eq!(s, 202, "{r}");
        let again = delivered(&sink, "ok", 2, 20).await;
        assert_eq!(again[1].webhook_id(), id, "the same webhook-id");
        let (s, _) = post(
            &base,
            &format!("/api/events/{}/replay", uuid::Uuid::new_v4()),
            json!({}),
        )
        .await;
        assert_eq!(s, 404);
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn a_replay_while_the_delivery_is_out_is_delivered_again_once_it_answers() {
    let sim = sim().await;
    on_every_store!(|db| {
        sim.sim().reset();
        let sink = Sink::start().await;
        let app = app(&sim, &db, &[]).await;
        let base = app.url();
        mailbox(&base, &sim, ALICE, &["created"]).await;
        target(&base, json!({"url": sink.url("hold")})).await;
        deliver(&sim, ALICE, vec![mail("Held")]).await;
        // The first attempt is out: the sink holds its answer.
        assert!(eventually(20, || async { sink.received().len() == 1 }).await);
        let id = sink.received()[0].webhook_id().to_string();
        let first = sink.received()[0].json()["processed_at"].clone();
        let (s, r) = post(&base, &format!("/api/events/{id}/replay"), json!({})).await;
        assert_eq!(s, 202, "{r}");
        assert!(
            eventually(20, || async {
                let e = get(&base, &format!("/api/events/{id}")).await;
                e["status"] == "completed" && e["payload"]["processed_at"] != first
            })
            .await,
            "{}: the replay completes while the first attempt is out",
            db.label
        );
        sink.release();
        // The replay's body is sent too, and the old attempt's answer does not end it.
        let got = delivered(&sink, "hold", 2, 20).await;
        assert_eq!(got[1].webhook_id(), id, "{}", db.label);
        assert_ne!(
            got[1].json()["processed_at"],
            first,
            "{}: the second POST carries the replayed body",
            db.label
        );
        assert!(
            eventually(20, || async {
                let e = get(&base, &format!("/api/events/{id}")).await;
                e["deliveries"][0]["status"] == "delivered"
            })
            .await,
            "{}",
            db.label
        );
        let e = get(&base, &format!("/api/events/{id}")).await;
        assert_eq!(e["deliveries"][0]["attempts"], 1, "{}: {e}", db.label);
        assert_eq!(
            sink.received().len(),
            2,
            "{}: sent twice, no more",
            db.label
        );
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn targets_are_checked_and_the_default_target_is_created_once() {
    let sim = sim().await;
    on_every_store!(|db| {
        let n8n = "http://127.0.0.1:5678/webhook/relay365";
        let app = app(&sim, &db, &[("RELAY365_N8N_WEBHOOK_URL", n8n)]).await;
        let base = app.url();
        for bad in [
            json!({"url": "ftp://example.com/x"}),
            json!({"url": "not a url"}),
            json!({"url": "http://example.com", "secret": "plain"}),
            json!({"url": "http://example.com", "secret": "whsec_c2hvcnQ="}),
            json!({"url": "http://example.com", "event_types": ["mail.sent"]}),
            json!({"url": "http://example.com", "headers": {"webhook-signature": "x"}}),
            json!({"url": "http://example.com", "headers": {"Transfer-Encoding": "chunked"}}),
            json!({"url": "http://example.com", "headers": {"X-Key": "a", "x-key": "b"}}),
            json!({"url": "http://example.com", "credential_id": uuid::Uuid::new_v4()}),
            json!({"url": "http://example.com", "extra": 1}),
        ] {
            let (s, e) = post(&base, "/api/targets", bad.clone()).await;
            assert_eq!(s, 400, "{bad}: {e}");
            assert_eq!(e["error"]["code"], "bad_request");
        }
        let listed = get(&base, "/api/targets").await;
        assert_eq!(
            listed["targets"].as_array().unwrap().len(),
            1,
            "only the default: {listed}"
        );
        assert_eq!(listed["targets"][0]["url"], n8n);
        let generated = target(&base, json!({"url": "https://example.com/hook"})).await;
        let secret = generated["secret"].as_str().unwrap();
        assert!(secret.starts_with("whsec_") && standardwebhooks::Webhook::new(secret).is_ok());
        app.stop().await.unwrap();

        // A restart does not add a second default target.
        let app = app_again(&sim, &db, n8n).await;
        let listed = get(&app.url(), "/api/targets").await;
        assert_eq!(listed["targets"].as_array().unwrap().len(), 2, "{listed}");
        let id = listed["targets"][1]["id"].as_str().unwrap();
        let r = reqwest::Client::new()
            .delete(format!("{}/api/targets/{id}", app.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

async fn app_again(sim: &SimHandle, db: &TestDb, n8n: &str) -> App {
    app(sim, db, &[("RELAY365_N8N_WEBHOOK_URL", n8n)]).await
}

// ---------------------------------------------------------------------------------------------
// SIGKILL of the real binary under load: every notification that got a 202 is delivered.
// ---------------------------------------------------------------------------------------------

/// The real binary on a port of its own choosing, behind `public` (a [`Balancer`] that stays
/// put across restarts, as a reverse proxy would, so that Graph's notification URL outlives
/// the process); answers it with its own base URL, read from its ready log line.
fn relay365(
    dir: &std::path::Path,
    db_url: &str,
    public: &Balancer,
    sim: &SimHandle,
) -> (Child, String) {
    let mut c = support::child::serve(dir, db_url);
    c.env("RELAY365_PUBLIC_URL", &public.url)
        .env("RELAY365_LEASE_SECONDS", "3");
    for (k, v) in sim_env(sim) {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let url = support::child::wait_ready(&mut child).url;
    public.set(&url);
    (child, url)
}

async fn wait_ready(base: &str) {
    assert!(
        eventually(20, || async {
            reqwest::get(format!("{base}/readyz"))
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await,
        "the service did not become ready"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_under_load_loses_no_accepted_notification() {
    let sim = sim().await;
    on_every_store!(|db| {
        sim.sim().reset();
        let sink = Sink::start().await;
        let dir = tempfile::tempdir().unwrap();
        let public = Balancer::start().await;
        let (mut child, base) = relay365(dir.path(), &db.url, &public, &sim);
        wait_ready(&base).await;
        mailbox(&base, &sim, ALICE, &["created"]).await;
        mailbox(&base, &sim, BOB, &["created"]).await;
        target(&base, json!({"url": sink.url("ok")})).await;

        // Mail keeps arriving in both mailboxes while the service is killed and restarted.
        let handle = sim.sim().clone();
        let sender = tokio::spawn(async move {
            let mut accepted = HashSet::new();
            for i in 0..400 {
                let mb = if i % 2 == 0 { ALICE } else { BOB };
                let Ok(report) = handle.deliver(mb, vec![mail(&format!("Load {i}"))]).await else {
                    continue;
                };
                if report.notifications.iter().all(|n| n.status == Some(202)) {
                    accepted.extend(report.message_ids);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            accepted
        });
        assert!(eventually(30, || async { sink.delivered("ok").len() >= 40 }).await);
        child.kill().unwrap(); // SIGKILL, with events and deliveries in flight
        child.wait().unwrap();
        let killed_at = Instant::now();
        let (mut again, base) = relay365(dir.path(), &db.url, &public, &sim);
        wait_ready(&base).await;
        let restarted_at = Instant::now();
        let accepted = sender.await.unwrap();
        assert!(
            accepted.len() > 100,
            "{}: {} accepted",
            db.label,
            accepted.len()
        );

        let all_in = eventually(60, || async {
            let got: HashSet<String> = sink
                .delivered("ok")
                .iter()
                .map(|r| r.json()["message"]["id"].as_str().unwrap().to_string())
                .collect();
            accepted.iter().all(|id| got.contains(id))
        })
        .await;
        let got: HashSet<String> = sink
            .delivered("ok")
            .iter()
            .map(|r| r.json()["message"]["id"].as_str().unwrap().to_string())
            .collect();
        let lost: Vec<&String> = accepted.iter().filter(|id| !got.contains(*id)).collect();
        assert!(
            all_in,
            "{}: {} of {} accepted never delivered: {lost:?}",
            db.label,
            lost.len(),
            accepted.len()
        );
        // Twice only where the kill interrupted it: the first copy before the kill, the second
        // after the restart.
        let mut copies: HashMap<String, Vec<Instant>> = HashMap::new();
        for r in sink.delivered("ok") {
            copies
                .entry(r.webhook_id().to_string())
                .or_default()
                .push(r.at);
        }
        for (id, at) in copies.iter().filter(|(_, at)| at.len() > 1) {
            assert_eq!(
                at.len(),
                2,
                "{}: {id} delivered {} times",
                db.label,
                at.len()
            );
            assert!(
                at[0] <= killed_at && at[1] >= restarted_at.min(killed_at),
                "{}: {id} twice without a kill between",
                db.label
            );
        }
        again.kill().unwrap();
        again.wait().unwrap();
        db.cleanup().await;
    });
}
