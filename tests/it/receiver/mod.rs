//! The notification receiver (SPEC §3.1) and the events API (SPEC §3.3), on both stores, with
//! Graph's own payloads (`tests/fixtures/graph/`): validation, authenticity, idempotency,
//! durable-before-202, bad input, 503 when the store stalls. The events API, the parser's fuzz
//! test and the SIGKILL of the real binary have modules of their own.
use crate::support;

mod events_api;
mod fuzz;
mod sigkill;

use std::collections::HashSet;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use relay365_actors::receiver::parse_collection;
use relay365_actors::store::events::{self, EventFilter, EventRow};
use relay365_actors::store::subscriptions::{self, NewSubscription};
use relay365_actors::store::{new_id, Store};
use serde_json::{json, Value};
use support::{eventually, seed_credential, spawn_app, test_config, TestDb};

const KEY: &str = "test-api-key";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/graph/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A subscription as Graph knows it, stored before the service starts.
#[derive(Clone)]
struct Sub {
    id: String,
    graph_id: String,
    client_state: String,
    credential_id: String,
}

async fn seed(store: &Store) -> Sub {
    let credential_id = seed_credential(store).await;
    let sub = Sub {
        id: new_id(),
        graph_id: new_id(),
        client_state: format!("cs-{}", new_id()),
        credential_id,
    };
    subscriptions::insert(
        store,
        &NewSubscription {
            id: &sub.id,
            credential_id: &sub.credential_id,
            external_id: Some(&sub.graph_id),
            resource: "me/mailFolders('inbox')/messages",
            change_types: "created",
            notification_url: "https://example.test/api/ms365/webhook",
            lifecycle_url: Some("https://example.test/api/ms365/lifecycle"),
            client_state: &sub.client_state,
            status: relay365_actors::store::status::SubscriptionStatus::Active,
            expires_at: None,
            granted_lifetime_ms: None,
            next_renewal_at: None,
        },
    )
    .await
    .unwrap();
    sub
}

/// A fixture with every item addressed to `sub`.
fn for_sub(mut body: Value, sub: &Sub) -> Value {
    for item in body["value"].as_array_mut().unwrap() {
        item["subscriptionId"] = json!(sub.graph_id);
        item["clientState"] = json!(sub.client_state);
    }
    body
}

/// The basic change fixture for `sub`, about message `message_id`.
fn change(sub: &Sub, message_id: &str) -> Value {
    let mut body = for_sub(fixture("change-notification-message-created.json"), sub);
    body["value"][0]["resourceData"]["id"] = json!(message_id);
    body
}

async fn all_events(store: &Store) -> Vec<EventRow> {
    events::list(
        store,
        &EventFilter {
            limit: 1_000_000,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

async fn post(base: &str, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn get_json(base: &str, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn receiver_info(base: &str) -> Value {
    let (_, s) = get_json(base, "/status").await;
    s["root"]["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "receiver")
        .unwrap()["info"]
        .clone()
}

/// Starts the service on `db` with one stored subscription.
async fn start(db: &TestDb, extra: &[(&str, &str)]) -> (relay365::App, Store, Sub) {
    let store = db.store().await;
    let sub = seed(&store).await;
    let mut env = vec![("RELAY365_API_KEY", KEY)];
    env.extend_from_slice(extra);
    let app = spawn_app(test_config(&db.url, &env)).await;
    (app, store, sub)
}

#[tokio::test]
async fn validation_echoes_the_decoded_token_on_both_routes() {
    let db = TestDb::sqlite().await;
    let (app, store, _) = start(&db, &[]).await;
    let base = app.url();
    let http = reqwest::Client::new();
    let cases = [
        ("a%2Bb", "a+b"),
        ("a+b", "a b"),
        ("a%20b", "a b"),
        ("%25%3Cscript%3E%26x%3D1", "%<script>&x=1"),
        (
            "Validation%3A+Testing+client+application+reachability",
            "Validation: Testing client application reachability",
        ),
        ("%C3%A9t%C3%A9+%E2%9C%93", "été ✓"),
    ];
    for route in ["/api/ms365/webhook", "/api/ms365/lifecycle"] {
        for (encoded, decoded) in cases {
            let url = format!("{base}{route}?validationToken={encoded}");
            for req in [
                // Any body, even one that is not JSON nor small, is not looked at.
                http.post(&url)
                    .header("content-type", "text/plain")
                    .body("not json"),
                http.get(&url),
            ] {
                let r = req.send().await.unwrap();
                assert_eq!(r.status(), 200, "{route} {encoded}");
                assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
                assert_eq!(r.headers()["x-content-type-options"], "nosniff");
                assert_eq!(r.text().await.unwrap(), decoded);
            }
        }
    }
    assert!(all_events(&store).await.is_empty());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn notifications_are_stored_once_with_the_client_state_masked() {
    on_every_store!(|db| {
        let (app, store, sub) = start(&db, &[]).await;
        let base = app.url();
        let basic = for_sub(fixture("change-notification-message-created.json"), &sub);
        let rich = for_sub(fixture("rich-notification-message-encrypted.json"), &sub);
        for body in [&basic, &rich, &basic] {
            let r = post(&base, "/api/ms365/webhook", body).await;
            assert_eq!(r.status(), 202, "{}", db.label);
            assert!(r.text().await.unwrap().is_empty());
        }
        // Durable before 202: the rows are there the moment the answer is.
        let stored = all_events(&store).await;
        assert_eq!(stored.len(), 2, "{}: the repeat is a duplicate", db.label);
        let e = stored
            .iter()
            .find(|e| e.resource_id.as_deref() == Some("{long_id_string}"))
            .unwrap();
        // What the unique index holds is the digest of the SPEC §3.1 key.
        assert_eq!(
            e.idempotency_digest,
            events::idempotency_digest(&format!(
                "{}:created:{{long_id_string}}:W/\"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf\"",
                sub.id
            ))
        );
        assert_eq!(e.kind, "change");
        // Handed to the processors at once: it may already be claimed.
        use relay365_actors::store::status::EventStatus;
        assert!(matches!(
            e.status,
            EventStatus::Pending | EventStatus::Processing
        ));
        assert_eq!(e.subscription_id.as_deref(), Some(sub.id.as_str()));
        assert_eq!(e.credential_id.as_deref(), Some(sub.credential_id.as_str()));
        for e in &stored {
            assert!(!e.raw.contains(&sub.client_state), "{}", db.label);
        }
        let (code, shown) = get_json(&base, &format!("/api/events/{}", e.id)).await;
        assert_eq!(code, 200);
        assert_eq!(shown["raw_notification"]["clientState"], "***");
        assert_eq!(
            shown["raw_notification"]["tenantId"],
            basic["value"][0]["tenantId"]
        );
        assert_eq!(shown["change_type"], "created");
        assert_eq!(shown["payload"], Value::Null);
        let rich_event = stored
            .iter()
            .find(|e| e.resource_id.as_deref() == Some("AAMkAGUwNjQ4ZjIxLTQ3Y2Y8AAA="))
            .unwrap();
        let raw: Value = serde_json::from_str(&rich_event.raw).unwrap();
        assert_eq!(
            raw["encryptedContent"],
            rich["value"][0]["encryptedContent"]
        );

        let info = receiver_info(&base).await;
        assert_eq!(info["subscriptions"], 1, "{info}");
        assert_eq!(info["accepted"], 2, "{info}");
        assert_eq!(info["duplicates"], 1, "{info}");
        assert_eq!(info["dropped"], 0, "{info}");
        // last_notification_at is noted off the hot path.
        let sub_id = sub.id.clone();
        let s = &store;
        assert!(
            eventually(5, || {
                let sub_id = sub_id.clone();
                async move {
                    subscriptions::get(s, &sub_id)
                        .await
                        .unwrap()
                        .unwrap()
                        .last_notification_at
                        .is_some()
                }
            })
            .await
        );
        app.stop().await.unwrap();
        store.close().await;
        db.cleanup().await;
    });
}

#[tokio::test]
async fn a_batch_keeps_only_the_authentic_items_and_says_nothing_about_the_rest() {
    on_every_store!(|db| {
        let (app, store, sub) = start(&db, &[]).await;
        let base = app.url();
        let good = change(&sub, "m-1")["value"][0].clone();
        let mut good2 = good.clone();
        good2["resourceData"]["id"] = json!("m-2");
        let mut unknown = good.clone();
        unknown["subscriptionId"] = json!(new_id());
        unknown["resourceData"]["id"] = json!("m-3");
        let mut forged = good.clone();
        forged["clientState"] = json!("guessed");
        forged["resourceData"]["id"] = json!("m-4");
        let mut no_state = good.clone();
        no_state.as_object_mut().unwrap().remove("clientState");
        no_state["resourceData"]["id"] = json!("m-5");
        let body = json!({"value": [good, unknown, forged, good2, no_state]});
        let r = post(&base, "/api/ms365/webhook", &body).await;
        assert_eq!(r.status(), 202);
        assert!(r.text().await.unwrap().is_empty());
        let mut ids: Vec<String> = all_events(&store)
            .await
            .into_iter()
            .filter_map(|e| e.resource_id)
            .collect();
        ids.sort();
        assert_eq!(ids, ["m-1", "m-2"], "{}", db.label);
        let info = receiver_info(&base).await;
        assert_eq!(info["dropped"], 3, "{info}");
        let metrics = reqwest::Client::new()
            .get(format!("{base}/metrics"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for reason in ["unknown_subscription", "client_state"] {
            assert!(
                metrics.contains(&format!(
                    "relay365_notifications_dropped_total{{reason=\"{reason}\"}}"
                )),
                "{metrics}"
            );
        }
        // Each commit's duration, for seeing the store's stalls.
        assert!(
            metrics.contains("relay365_receiver_commit_seconds_count"),
            "{metrics}"
        );
        app.stop().await.unwrap();
        store.close().await;
        db.cleanup().await;
    });
}

#[tokio::test]
async fn a_request_naming_many_unknown_subscriptions_keeps_its_authentic_items() {
    // Graph still sends for subscriptions of a deleted credential (their deletion at Graph
    // failed): many unknown ids in one request, beside authentic items.
    on_every_store!(|db| {
        let (app, store, sub) = start(&db, &[]).await;
        let base = app.url();
        let good = change(&sub, "m-good")["value"][0].clone();
        let mut items = vec![good.clone()];
        for i in 0..12 {
            let mut orphan = good.clone();
            orphan["subscriptionId"] = json!(new_id());
            orphan["resourceData"]["id"] = json!(format!("m-orphan-{i}"));
            items.push(orphan);
        }
        let body = json!({ "value": items });
        let r = post(&base, "/api/ms365/webhook", &body).await;
        assert_eq!(r.status(), 202, "{}", db.label);
        let ids: Vec<String> = all_events(&store)
            .await
            .into_iter()
            .filter_map(|e| e.resource_id)
            .collect();
        assert_eq!(ids, ["m-good"], "{}", db.label);
        assert_eq!(receiver_info(&base).await["dropped"], 12);
        app.stop().await.unwrap();
        store.close().await;
        db.cleanup().await;
    });
}

#[tokio::test]
async fn a_subscription_stored_after_start_is_found_not_dropped() {
    // As when another instance sharing the database created it, or the subscriptions API
    // stored it a moment before Graph's first notification.
    on_every_store!(|db| {
        let (app, store, _) = start(&db, &[]).await;
        let base = app.url();
        let later = seed(&store).await;
        let r = post(&base, "/api/ms365/webhook", &change(&later, "m-late")).await;
        assert_eq!(r.status(), 202);
        let stored = all_events(&store).await;
        assert_eq!(stored.len(), 1, "{}", db.label);
        assert_eq!(
            stored[0].subscription_id.as_deref(),
            Some(later.id.as_str())
        );
        let info = receiver_info(&base).await;
        assert_eq!(info["subscriptions"], 2, "{info}");
        assert_eq!(info["dropped"], 0, "{info}");
        // Its clientState is checked like any other's.
        let mut forged = change(&later, "m-forged");
        forged["value"][0]["clientState"] = json!("guessed");
        assert_eq!(
            post(&base, "/api/ms365/webhook", &forged).await.status(),
            202
        );
        assert_eq!(all_events(&store).await.len(), 1);
        app.stop().await.unwrap();
        store.close().await;
        db.cleanup().await;
    });
}

#[tokio::test]
async fn lifecycle_items_are_stored_as_events() {
    on_every_store!(|db| {
        let (app, store, sub) = start(&db, &[]).await;
        let base = app.url();
        let names = ["missed", "reauthorizationRequired", "subscriptionRemoved"];
        for _ in 0..2 {
            for name in names {
                let body = for_sub(fixture(&format!("lifecycle-{name}.json")), &sub);
                let r = post(&base, "/api/ms365/lifecycle", &body).await;
                assert_eq!(r.status(), 202);
            }
        }
        let stored = all_events(&store).await;
        assert_eq!(stored.len(), 3, "{}: repeats are duplicates", db.label);
        let keys: HashSet<String> = names
            .iter()
            .map(|name| {
                let body = for_sub(fixture(&format!("lifecycle-{name}.json")), &sub);
                let expires = body["value"][0]["subscriptionExpirationDateTime"]
                    .as_str()
                    .unwrap_or("");
                events::idempotency_digest(&format!("{}:{name}:{expires}", sub.graph_id))
            })
            .collect();
        for e in &stored {
            assert_eq!(e.kind, "lifecycle");
            assert!(names.contains(&e.change_type.as_str()));
            assert!(keys.contains(&e.idempotency_digest), "{}", e.change_type);
            assert!(!e.raw.contains(&sub.client_state));
        }
        app.stop().await.unwrap();
        store.close().await;
        db.cleanup().await;
    });
}

#[tokio::test]
async fn bad_input_is_refused_with_a_json_error_and_changes_nothing() {
    on_every_store!(|db| {
        let (app, store, sub) = start(&db, &[]).await;
        let base = app.url();
        let url = format!("{base}/api/ms365/webhook");
        let http = reqwest::Client::new();
        let valid = change(&sub, "m-bad").to_string();
        let mut huge = change(&sub, "m-huge");
        huge["value"][0]["padding"] = json!("x".repeat(1024 * 1024));
        let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
            (
                http.post(&url)
                    .header("content-type", "application/json")
                    .body(huge.to_string()),
                413,
            ),
            (
                http.post(&url)
                    .header("content-type", "application/json")
                    .body("{not json"),
                400,
            ),
            (
                http.post(&url)
                    .header("content-type", "application/json")
                    .body("[]"),
                400,
            ),
            (
                http.post(&url)
                    .header("content-type", "application/json")
                    .body("{}"),
                400,
            ),
            (
                http.post(&url)
                    .header("content-type", "application/json")
                    .body(r#"{"value":{}}"#),
                400,
            ),
            (
                http.post(&url)
                    .header("content-type", "application/json")
                    .body(r#"{"value":["x"]}"#),
                400,
            ),
            (
                http.post(&url)
                    .header("content-type", "application/json")
                    .body(valid.replace("\"changeType\":\"created\"", "\"changeType\":7")),
                400,
            ),
            (
                http.post(&url)
                    .header("content-type", "text/plain")
                    .body(valid.clone()),
                415,
            ),
            (
                http.post(&url)
                    .header("content-type", "application/xml")
                    .body(valid.clone()),
                415,
            ),
            (http.get(&url), 400),
        ];
        for (req, want) in cases {
            let r = req.send().await.unwrap();
            assert_eq!(r.status().as_u16(), want, "{}", db.label);
            let err: Value = r.json().await.unwrap();
            assert!(
                err["error"]["code"].is_string() && err["error"]["message"].is_string(),
                "{err}"
            );
        }
        assert!(all_events(&store).await.is_empty(), "{}", db.label);
        // Accepted: JSON with a charset, and no content type at all (documented).
        for (ct, id) in [
            (Some("application/json; charset=utf-8"), "m-a"),
            (None, "m-b"),
        ] {
            let mut req = http.post(&url).body(change(&sub, id).to_string());
            if let Some(ct) = ct {
                req = req.header("content-type", ct);
            }
            assert_eq!(req.send().await.unwrap().status(), 202);
        }
        assert_eq!(all_events(&store).await.len(), 2);
        app.stop().await.unwrap();
        store.close().await;
        db.cleanup().await;
    });
}

/// The events table's write lock, held from another connection until released.
enum Lock {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Lock {
    async fn release(self) {
        match self {
            Lock::Sqlite(tx) => tx.rollback().await.unwrap(),
            Lock::Postgres(tx) => tx.rollback().await.unwrap(),
        }
    }
}

async fn lock_events(store: &Store) -> Lock {
    match store {
        Store::Sqlite(p) => {
            let mut tx = p.begin().await.unwrap();
            sqlx::query("update credentials set name = name")
                .execute(&mut *tx)
                .await
                .unwrap();
            Lock::Sqlite(tx)
        }
        Store::Postgres(p) => {
            let mut tx = p.begin().await.unwrap();
            sqlx::query("lock table events in exclusive mode")
                .execute(&mut *tx)
                .await
                .unwrap();
            Lock::Postgres(tx)
        }
    }
}

#[tokio::test]
async fn a_stalled_store_answers_503_and_recovers() {
    on_every_store!(|db| {
        let (app, store, sub) = start(&db, &[("RELAY365_COMMIT_TIMEOUT_MS", "300")]).await;
        let base = app.url();
        let lock = lock_events(&store).await;
        // A's commit starts and blocks on the lock; B waits behind it (SQLite runs one commit
        // at a time; on PostgreSQL B's commit also blocks). Both callers give up at 300 ms.
        let a = post(&base, "/api/ms365/webhook", &change(&sub, "m-a")).await;
        assert_eq!(a.status(), 503, "{}", db.label);
        let err: Value = a.json().await.unwrap();
        assert_eq!(err["error"]["code"], "unavailable");
        lock.release().await;
        let after = post(&base, "/api/ms365/webhook", &change(&sub, "m-c")).await;
        assert_eq!(after.status(), 202, "{}: the store is back", db.label);
        let ids: HashSet<String> = all_events(&store)
            .await
            .into_iter()
            .filter_map(|e| e.resource_id)
            .collect();
        assert!(ids.contains("m-c"));
        app.stop().await.unwrap();
        store.close().await;
        db.cleanup().await;
    });
}

#[tokio::test]
async fn a_request_whose_caller_gave_up_before_its_commit_is_not_written() {
    // SQLite runs one commit at a time, so a second request queues behind a stalled first.
    let db = TestDb::sqlite().await;
    let (app, store, sub) = start(&db, &[("RELAY365_COMMIT_TIMEOUT_MS", "300")]).await;
    let base = app.url();
    let lock = lock_events(&store).await;
    // A's items reached the receiver before its caller gave up, so B, sent only after A's
    // answer, comes after A in the receiver's mailbox: A's commit holds the writer (stalled on
    // the lock) and B waits behind it.
    let a = post(&base, "/api/ms365/webhook", &change(&sub, "m-a")).await;
    assert_eq!(a.status(), 503);
    let b = post(&base, "/api/ms365/webhook", &change(&sub, "m-b")).await;
    assert_eq!(b.status(), 503);
    lock.release().await;
    // A's commit had started: it lands (harmless: Graph's retry is a duplicate). B's had not:
    // it is dropped, so a 503 meant "nothing written".
    let s = &store;
    assert!(
        eventually(10, || async move {
            all_events(s)
                .await
                .iter()
                .any(|e| e.resource_id.as_deref() == Some("m-a"))
        })
        .await
    );
    assert!(eventually(5, || async { receiver_info(&base).await["pending"] == 0 }).await);
    let after = post(&base, "/api/ms365/webhook", &change(&sub, "m-c")).await;
    assert_eq!(after.status(), 202);
    let ids: HashSet<String> = all_events(&store)
        .await
        .into_iter()
        .filter_map(|e| e.resource_id)
        .collect();
    assert!(!ids.contains("m-b"), "{ids:?}");
    assert!(ids.contains("m-c"));
    app.stop().await.unwrap();
}
