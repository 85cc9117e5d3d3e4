//! The supervision tree, watched through `/status`: every kind of actor fails and comes back,
//! a credential that storms is parked without taking the service down, and a core actor that
//! storms stops the service with an error.
use crate::support;

use std::time::Duration;

use relay365_actors::store::credentials;
use serde_json::Value;
use support::{eventually, seed_credential, spawn_app, test_config, TestDb};

/// The Prometheus text of `/metrics`.
async fn metrics_text(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn status(base: &str) -> Value {
    reqwest::get(format!("{base}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn find<'a>(node: &'a Value, name: &str) -> Option<&'a Value> {
    if node["name"] == name {
        return Some(node);
    }
    node["children"]
        .as_array()?
        .iter()
        .find_map(|c| find(c, name))
}

async fn actor(base: &str, name: &str) -> Value {
    let s = status(base).await;
    find(&s["root"], name).cloned().unwrap_or(Value::Null)
}

async fn fail(base: &str, name: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/api/debug/actors/{name}/fail"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn running_with_restarts(base: &str, name: &str, restarts: u64) -> bool {
    let name = name.to_string();
    eventually(10, || {
        let name = name.clone();
        async move {
            let a = actor(base, &name).await;
            a["state"] == "running" && a["restarts"] == restarts
        }
    })
    .await
}

#[tokio::test]
async fn the_tree_is_whole_at_start() {
    let db = TestDb::sqlite().await;
    let store = db.store().await;
    let cred = seed_credential(&store).await;
    store.close().await;
    let app = spawn_app(test_config(&db.url, &[])).await;
    let base = app.url();
    let cred_name = format!("credential:{cred}");
    assert!(
        eventually(5, || async {
            actor(&base, &cred_name).await["state"] == "running"
        })
        .await
    );

    let s = status(&base).await;
    assert_eq!(s["status"], "ok");
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert!(s["uptime_seconds"].is_i64());
    assert_eq!(s["root"]["name"], "root");
    assert_eq!(s["root"]["kind"], "supervisor");
    let names: Vec<&str> = s["root"]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "cluster",
            "receiver",
            "processors",
            "delivery",
            "renewal",
            "sweeper",
            "credentials"
        ]
    );
    let processors = find(&s["root"], "processors").unwrap();
    assert_eq!(processors["kind"], "pool");
    assert_eq!(processors["info"]["workers"], 2);
    for key in ["queue_depth", "in_flight", "processed", "failed"] {
        assert!(processors["info"][key].is_u64(), "processors.info.{key}");
    }
    assert_eq!(processors["children"].as_array().unwrap().len(), 2);
    let renewal = find(&s["root"], "renewal").unwrap();
    assert_eq!(renewal["info"]["scheduled"], 0);
    let c = find(&s["root"], &cred_name).unwrap();
    assert_eq!(c["kind"], "credential");
    for key in ["token_expires_at", "in_flight", "throttled_until"] {
        assert!(c["info"].get(key).is_some(), "credential.info.{key}");
    }
    // The API's start of a credential the start-up load got to first (a row stored while the
    // service was starting) is not an error, and leaves the running actor alone.
    let store = db.store().await;
    let row = credentials::get(&store, &cred).await.unwrap().unwrap();
    store.close().await;
    relay365_actors::tree::start_credential(&app.deps, row)
        .await
        .unwrap();
    let c = actor(&base, &cred_name).await;
    assert_eq!(
        (c["state"].as_str(), c["restarts"].as_u64()),
        (Some("running"), Some(0))
    );
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn every_kind_of_actor_fails_and_is_restarted() {
    on_every_store!(|db| {
        let store = db.store().await;
        let cred = seed_credential(&store).await;
        store.close().await;
        let app = spawn_app(test_config(&db.url, &[])).await;
        let base = app.url();
        let cred_name = format!("credential:{cred}");
        assert!(
            eventually(5, || async {
                actor(&base, &cred_name).await["state"] == "running"
            })
            .await
        );

        for name in [
            "receiver",
            "renewal",
            "processor:1",
            "delivery:0",
            "processors",
            "delivery",
            cred_name.as_str(),
            "credentials",
        ] {
            assert_eq!(fail(&base, name).await, 202, "{}: fail {name}", db.label);
            assert!(
                running_with_restarts(&base, name, 1).await,
                "{}: {name} back to running with one restart",
                db.label
            );
            let a = actor(&base, name).await;
            assert!(
                a["last_failure"]["reason"]
                    .as_str()
                    .unwrap()
                    .contains("debug endpoint"),
                "{name}: last_failure says why: {a}"
            );
        }
        // A restarted credentials supervisor rebuilt its children from the store.
        assert!(
            eventually(5, || async {
                actor(&base, &cred_name).await["state"] == "running"
            })
            .await
        );
        let s = status(&base).await;
        assert_eq!(s["status"], "ok", "{s}");
        let metrics = metrics_text(&base).await;
        assert!(
            metrics.contains("relay365_actor_restarts_total{actor=\"receiver\"}"),
            "{metrics}"
        );
        // Labelled by route template, method and status; a made-up method is "other".
        assert!(
            metrics.contains(
                "relay365_http_requests_total{method=\"GET\",route=\"/status\",status=\"200\"}"
            ),
            "{metrics}"
        );
        let odd = reqwest::Client::new()
            .request(
                reqwest::Method::from_bytes(b"BREW").unwrap(),
                format!("{base}/status"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(odd.status(), 405);
        let metrics = metrics_text(&base).await;
        assert!(
            metrics.contains(
                "relay365_http_requests_total{method=\"other\",route=\"/status\",status=\"405\"}"
            ),
            "{metrics}"
        );
        assert!(!metrics.contains("BREW"));
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn a_credential_restart_storm_parks_it_without_taking_the_service_down() {
    let db = TestDb::sqlite().await;
    let store = db.store().await;
    let cred = seed_credential(&store).await;
    let app = spawn_app(test_config(
        &db.url,
        &[("RELAY365_FAILED_RETRY_SECONDS", "2")],
    ))
    .await;
    let base = app.url();
    let name = format!("credential:{cred}");
    assert!(
        eventually(5, || async {
            actor(&base, &name).await["state"] == "running"
        })
        .await
    );
    for i in 1..=5 {
        assert_eq!(fail(&base, &name).await, 202);
        assert!(running_with_restarts(&base, &name, i).await, "restart {i}");
    }
    assert_eq!(fail(&base, &name).await, 202);
    assert!(
        eventually(5, || async {
            actor(&base, &name).await["state"] == "failed"
        })
        .await
    );
    let s = status(&base).await;
    assert_eq!(s["status"], "degraded");
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status(),
        200,
        "credentials are not core"
    );
    assert!(
        eventually(5, || async {
            credentials::get(&store, &cred)
                .await
                .unwrap()
                .unwrap()
                .status
                == "degraded"
        })
        .await,
        "the credential is marked degraded"
    );
    // Tried again after the cool-down.
    assert!(
        eventually(10, || async {
            actor(&base, &name).await["state"] == "running"
        })
        .await
    );
    store.close().await;
    app.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn a_core_actor_restart_storm_stops_the_service_with_an_error() {
    let db = TestDb::sqlite().await;
    let app = spawn_app(test_config(&db.url, &[])).await;
    let base = app.url();
    let run = tokio::spawn(app.run_until(std::future::pending()));
    for i in 1..=5 {
        assert_eq!(fail(&base, "renewal").await, 202);
        assert!(
            running_with_restarts(&base, "renewal", i).await,
            "restart {i}"
        );
    }
    assert_eq!(fail(&base, "renewal").await, 202);
    let outcome = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the service stops")
        .unwrap();
    let err = outcome.expect_err("stops with an error");
    assert!(err.to_string().contains("renewal"), "{err}");
    db.cleanup().await;
}

#[tokio::test]
async fn debug_routes_and_guards() {
    let db = TestDb::sqlite().await;
    let app = spawn_app(test_config(&db.url, &[])).await;
    let base = app.url();
    assert_eq!(fail(&base, "root").await, 400);
    assert_eq!(fail(&base, "nobody").await, 404);
    let body: Value = reqwest::Client::new()
        .post(format!("{base}/api/debug/actors/nobody/fail"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    app.stop().await.unwrap();

    // Off by default: the route does not exist.
    let app = spawn_app(test_config(
        &db.url,
        &[("RELAY365_DEBUG_ENDPOINTS", "false")],
    ))
    .await;
    assert_eq!(fail(&app.url(), "receiver").await, 404);
    app.stop().await.unwrap();

    // With an API key: /status, /metrics and debug need it; /healthz and /readyz do not.
    let app = spawn_app(test_config(&db.url, &[("RELAY365_API_KEY", "k-123")])).await;
    let base = app.url();
    let http = reqwest::Client::new();
    for path in ["/status", "/metrics"] {
        assert_eq!(
            http.get(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .status(),
            401,
            "{path}"
        );
        assert_eq!(
            http.get(format!("{base}{path}"))
                .bearer_auth("wrong")
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
        assert_eq!(
            http.get(format!("{base}{path}"))
                .bearer_auth("k-123")
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(
        http.post(format!("{base}/api/debug/actors/receiver/fail"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let unauthorized: Value = http
        .get(format!("{base}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unauthorized["error"]["code"], "unauthorized");
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            http.get(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{path}"
        );
    }
    app.stop().await.unwrap();
    db.cleanup().await;
}
