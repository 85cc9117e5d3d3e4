//! Subscriptions through the API against the Graph simulator: created with the validation
//! handshake to both URLs while the request is in flight, listed, renewed (and recreated
//! when Graph lost them), adopted on 409, deleted; the receiver knows each at once.
use crate::support;

use chrono::{DateTime, Utc};
use relay365::sim::{NewMail, NotificationKind, SimHandle};
use relay365::App;
use relay365_actors::graph::{GraphClient, NewSubscription};
use relay365_actors::token::{fetch_token, TokenEndpoints, TokenSource};
use serde_json::{json, Value};
use support::api::{call, sim};
use support::{eventually, spawn_public_app, TestDb};

const ALICE: &str = "alice@sim.test";

async fn app_with(sim: &SimHandle, db: &TestDb) -> App {
    spawn_public_app(
        &db.url,
        &[
            ("RELAY365_GRAPH_URL", &sim.base_url()),
            ("RELAY365_LOGIN_URL", &sim.login_url()),
        ],
    )
    .await
}

async fn credential(base: &str, sim: &SimHandle) -> String {
    let c = sim.sim().config();
    let (s, body) = call(
        reqwest::Method::POST,
        format!("{base}/api/credentials"),
        Some(json!({"name": "ops", "mailbox": ALICE, "token_source": {"kind": "client_credentials", "tenant_id": c.tenant, "client_id": c.client_id, "client_secret": c.client_secret}})),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

fn minutes_from_now(v: &Value) -> i64 {
    let at: DateTime<Utc> = v.as_str().unwrap().parse().unwrap();
    (at - Utc::now()).num_minutes()
}

#[tokio::test]
async fn created_listed_renewed_and_deleted_against_the_simulator() {
    let sim = sim().await;
    on_every_store!(|db| {
        sim.sim().reset();
        let app = app_with(&sim, &db).await;
        let base = app.url();
        let cred = credential(&base, &sim).await;

        let (s, sub) = call(
            reqwest::Method::POST,
            format!("{base}/api/ms365/subscriptions"),
            Some(json!({"credential_id": cred})),
        )
        .await;
        assert_eq!(s, 201, "{}: {sub}", db.label);
        assert_eq!(
            sub["resource_path"],
            "users/alice@sim.test/mailFolders('inbox')/messages"
        );
        assert_eq!(sub["change_types"], json!(["created"]));
        assert_eq!(sub["status"], "active");
        assert_eq!(sub["notification_url"], format!("{base}/api/ms365/webhook"));
        assert!(
            (9_990..=10_000).contains(&minutes_from_now(&sub["expires_at"])),
            "{sub}"
        );
        assert!(sub.get("client_state").is_none() && !sub.to_string().contains("clientState"));
        let id = sub["id"].as_str().unwrap().to_string();
        let external = sub["external_subscription_id"]
            .as_str()
            .unwrap()
            .to_string();

        // At Graph: a 64-character clientState, both URLs, each validated during the create.
        let at_graph = sim.sim().subscriptions();
        assert_eq!(at_graph.len(), 1);
        let g = &at_graph[0];
        assert_eq!(g.id, external);
        assert_eq!(
            g.lifecycle_notification_url.as_deref(),
            Some(format!("{base}/api/ms365/lifecycle").as_str())
        );
        assert_eq!(g.client_state.as_deref().unwrap().len(), 64);
        assert!(
            g.immutable_ids,
            "created with immutable ids, as its GETs and delta rounds use"
        );
        let validations: Vec<_> = sim
            .sim()
            .notifications()
            .into_iter()
            .filter(|n| n.kind == NotificationKind::Validation)
            .collect();
        assert_eq!(validations.len(), 2, "both URLs validated");
        assert!(validations.iter().all(|v| v.delivered()));

        // Listed, all and by credential; creating the same again gives the same one back.
        let (_, all) = call(
            reqwest::Method::GET,
            format!("{base}/api/ms365/subscriptions"),
            None,
        )
        .await;
        assert_eq!(all["subscriptions"].as_array().unwrap().len(), 1);
        let (_, mine) = call(
            reqwest::Method::GET,
            format!("{base}/api/ms365/subscriptions/{cred}"),
            None,
        )
        .await;
        assert_eq!(mine["subscriptions"][0]["id"], id.as_str());
        let (s, again) = call(
            reqwest::Method::POST,
            format!("{base}/api/ms365/subscriptions"),
            Some(json!({"credential_id": cred})),
        )
        .await;
        assert_eq!((s, again["id"].as_str()), (201, Some(id.as_str())));
        assert_eq!(sim.sim().subscriptions().len(), 1);

        // The receiver knew it at once: mail delivered now is accepted and stored.
        let report = sim
            .sim()
            .deliver(
                ALICE,
                vec![NewMail {
                    subject: "hi".into(),
                    ..Default::default()
                }],
            )
            .await
            .unwrap();
        assert_eq!(
            report
                .notifications
                .iter()
                .filter(|n| n.kind == NotificationKind::Change)
                .map(|n| n.status)
                .collect::<Vec<_>>(),
            vec![Some(202)]
        );
        let (_, events) = call(reqwest::Method::GET, format!("{base}/api/events"), None).await;
        assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");

        // Renew by hand.
        let (s, renewed) = call(
            reqwest::Method::PATCH,
            format!("{base}/api/ms365/subscriptions/{id}/renew"),
            Some(json!({"expiration_minutes": 120})),
        )
        .await;
        assert_eq!(s, 200, "{renewed}");
        assert!(
            (118..=120).contains(&minutes_from_now(&renewed["expires_at"])),
            "{renewed}"
        );
        assert!(renewed["last_renewed_at"].is_string());
        assert_eq!(renewed["external_subscription_id"], external.as_str());

        // Graph lost it: renewing creates it again under our id, and the receiver follows.
        assert!(sim.sim().expire_subscription(&external));
        assert!(eventually(5, || async { sim.sim().subscriptions().is_empty() }).await);
        let (s, recreated) = call(
            reqwest::Method::PATCH,
            format!("{base}/api/ms365/subscriptions/{id}/renew"),
            None,
        )
        .await;
        assert_eq!(s, 200, "{recreated}");
        assert_eq!(recreated["id"], id.as_str());
        let new_external = recreated["external_subscription_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_ne!(new_external, external);
        let report = sim
            .sim()
            .deliver(
                ALICE,
                vec![NewMail {
                    subject: "again".into(),
                    ..Default::default()
                }],
            )
            .await
            .unwrap();
        assert!(report
            .notifications
            .iter()
            .filter(|n| n.kind == NotificationKind::Change)
            .all(|n| n.status == Some(202)));
        let (_, events) = call(reqwest::Method::GET, format!("{base}/api/events"), None).await;
        assert_eq!(events["events"].as_array().unwrap().len(), 2);

        // Delete: gone at Graph and here.
        let (s, _) = call(
            reqwest::Method::DELETE,
            format!("{base}/api/ms365/subscriptions/{id}"),
            None,
        )
        .await;
        assert_eq!(s, 204);
        assert!(sim.sim().subscriptions().is_empty());
        let (_, all) = call(
            reqwest::Method::GET,
            format!("{base}/api/ms365/subscriptions"),
            None,
        )
        .await;
        assert!(all["subscriptions"].as_array().unwrap().is_empty());
        let (s, _) = call(
            reqwest::Method::DELETE,
            format!("{base}/api/ms365/subscriptions/{id}"),
            None,
        )
        .await;
        assert_eq!(s, 404);
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

#[tokio::test]
async fn lifetimes_are_clamped_bad_requests_change_nothing_and_409_is_adopted() {
    let sim = sim().await;
    let db = TestDb::sqlite().await;
    let app = app_with(&sim, &db).await;
    let base = app.url();
    let cred = credential(&base, &sim).await;
    let url = format!("{base}/api/ms365/subscriptions");

    for (body, code) in [
        (
            json!({"credential_id": uuid::Uuid::new_v4().to_string()}),
            404,
        ),
        (
            json!({"credential_id": cred, "change_types": ["moved"]}),
            400,
        ),
        (
            json!({"credential_id": cred, "expiration_minutes": 60, "expiration_hours": 1}),
            400,
        ),
        (json!({"credential_id": cred, "expiration_minutes": 0}), 400),
        (
            json!({"credential_id": cred, "notification_url": "ftp://x"}),
            400,
        ),
        (json!({"credential": cred}), 400),
    ] {
        let (s, b) = call(reqwest::Method::POST, url.clone(), Some(body.clone())).await;
        assert_eq!(s, code, "{body} → {b}");
        assert!(b["error"]["code"].is_string());
    }
    assert!(sim.sim().subscriptions().is_empty());

    // Someone else's subscription on the same resource: Graph answers 409; relay365 replaces
    // it with one whose clientState it knows.
    let c = sim.sim().config().clone();
    let endpoints = TokenEndpoints {
        login_url: sim.login_url(),
        auth_service_url: None,
        service_secret: None,
    };
    let source = TokenSource::ClientCredentials {
        tenant_id: c.tenant.clone(),
        client_id: c.client_id.clone(),
        client_secret: c.client_secret.clone(),
    };
    let token = fetch_token(
        &reqwest::Client::new(),
        &endpoints,
        uuid::Uuid::new_v4(),
        &source,
    )
    .await
    .unwrap()
    .token;
    let graph = GraphClient::new(sim.base_url(), reqwest::Client::new());
    let foreign = graph
        .create_subscription(
            &token,
            &NewSubscription {
                change_type: "created".into(),
                notification_url: format!("{base}/api/ms365/webhook"),
                lifecycle_notification_url: None,
                resource: "users/alice@sim.test/mailFolders('inbox')/messages".into(),
                expiration_date_time: Utc::now() + chrono::Duration::hours(2),
                client_state: "someone-elses".into(),
                latest_supported_tls_version: None,
            },
        )
        .await
        .unwrap();

    let (s, sub) = call(
        reqwest::Method::POST,
        url.clone(),
        Some(json!({"credential_id": cred, "expiration_hours": 1000})),
    )
    .await;
    assert_eq!(s, 201, "{sub}");
    assert!(
        (10_070..=10_080).contains(&minutes_from_now(&sub["expires_at"])),
        "clamped to 10,080 minutes: {sub}"
    );
    let at_graph = sim.sim().subscriptions();
    assert_eq!(at_graph.len(), 1);
    let g = &at_graph[0];
    assert_ne!(g.id, foreign.id);
    assert_ne!(g.client_state.as_deref(), Some("someone-elses"));
    assert_eq!(sub["external_subscription_id"], g.id.as_str());
    app.stop().await.unwrap();
    db.cleanup().await;
}
