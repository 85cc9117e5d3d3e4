//! Credentials through the API, their actors against the Graph simulator: every token
//! source, token reuse, refresh on 401, rotated refresh tokens stored, Retry-After honoured,
//! never more than 4 requests in flight per mailbox, and a credential that cannot get a
//! token showing it in /status without crash-looping.
use crate::support;

use std::time::Duration;

use relay365::sim::{FaultKind, FaultSpec, NewMail, SimConfig, SimHandle, Simulator};
use relay365::App;
use relay365_actors::credential::{self, CredentialError};
use relay365_actors::store::credentials;
use relay365_actors::token::TokenError;
use serde_json::{json, Value};
use support::{eventually, spawn_app, test_config, TestDb};

const ALICE: &str = "alice@sim.test";

async fn sim() -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = SimConfig {
        concurrency_retry_after: Duration::from_millis(200),
        notification_retries: 0,
        ..SimConfig::default()
    };
    Simulator::start(cfg, listener).await.unwrap()
}

async fn app_with(sim: &SimHandle, db: &TestDb) -> App {
    let cfg = test_config(
        &db.url,
        &[
            ("RELAY365_GRAPH_URL", &sim.base_url()),
            ("RELAY365_LOGIN_URL", &sim.login_url()),
            ("AUTH_SERVICE_URL", &sim.auth_service_url()),
            ("SERVICE_SECRET", &sim.sim().config().service_secret.clone()),
        ],
    );
    spawn_app(cfg).await
}

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let res = reqwest::get(format!("{base}{path}")).await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A client-credentials credential for Alice's mailbox; answers its id.
async fn alice_credential(base: &str, sim: &SimHandle) -> String {
    let (s, created) = post(
        base,
        "/api/credentials",
        json!({"name": "ops", "mailbox": ALICE, "token_source": client_credentials(sim)}),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    created["id"].as_str().unwrap().to_string()
}

/// A request to the simulator's token endpoint, as a token source makes it.
async fn token_request(sim: &SimHandle, form: &[(&str, &str)]) -> Value {
    reqwest::Client::new()
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            sim.login_url(),
            sim.sim().config().tenant
        ))
        .form(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn client_credentials(sim: &SimHandle) -> Value {
    let c = sim.sim().config();
    json!({"kind": "client_credentials", "tenant_id": c.tenant, "client_id": c.client_id, "client_secret": c.client_secret})
}

async fn a_message(sim: &SimHandle) -> String {
    let mail = NewMail {
        subject: "hello".into(),
        body: "hi".into(),
        ..Default::default()
    };
    sim.sim()
        .deliver(ALICE, vec![mail])
        .await
        .unwrap()
        .message_ids[0]
        .clone()
}

async fn get_message(app: &App, cred: &str, id: &str) -> Result<String, CredentialError> {
    let session = credential::session(&app.deps, cred).await?;
    let mailbox = session.mailbox.clone();
    let id = id.to_string();
    session
        .call(|c, t| {
            let (mailbox, id) = (mailbox.clone(), id.clone());
            async move { c.get_message(&t, mailbox.as_deref(), &id).await }
        })
        .await
        .map(|m| m.subject.unwrap_or_default())
}

#[tokio::test]
async fn create_list_get_delete_without_ever_returning_a_secret() {
    let sim = sim().await;
    on_every_store!(|db| {
        let app = app_with(&sim, &db).await;
        let base = app.url();
        let secret = sim.sim().config().client_secret.clone();
        let (status, created) = post(
            &base,
            "/api/credentials",
            json!({"name": "ops", "mailbox": ALICE, "token_source": client_credentials(&sim)}),
        )
        .await;
        assert_eq!(status, 201, "{}: {created}", db.label);
        let id = created["id"].as_str().unwrap().to_string();
        assert_eq!(created["token_source"]["kind"], "client_credentials");
        assert_eq!(created["mailbox"], ALICE);
        assert_eq!(created["status"], "active");
        let (_, listed) = get(&base, "/api/credentials").await;
        let (_, one) = get(&base, &format!("/api/credentials/{id}")).await;
        for body in [&created, &listed, &one] {
            assert!(
                !body.to_string().contains(&secret),
                "a secret was returned: {body}"
            );
        }
        assert_eq!(listed["credentials"].as_array().unwrap().len(), 1);
        assert_eq!(one["id"], id.as_str());

        // Its actor runs as soon as it is created.
        let name = format!("credential:{id}");
        let (_, status_doc) = get(&base, "/status").await;
        assert!(status_doc.to_string().contains(&name), "{status_doc}");

        // The same id again is a conflict; bad input changes nothing.
        let (s, _) = post(&base, "/api/credentials", json!({"id": id, "name": "again", "token_source": {"kind": "static", "access_token": "x"}})).await;
        assert_eq!(s, 409);
        for bad in [
            json!({"name": "", "token_source": {"kind": "static", "access_token": "x"}}),
            json!({"name": "n", "token_source": {"kind": "password", "password": "x"}}),
            json!({"name": "n", "token_source": {"kind": "client_credentials", "tenant_id": "t", "client_id": "c", "client_secret": " "}}),
            json!({"name": "n", "id": "not-a-uuid", "token_source": {"kind": "static", "access_token": "x"}}),
            json!({"name": "n"}),
        ] {
            let (s, body) = post(&base, "/api/credentials", bad.clone()).await;
            assert_eq!(s, 400, "{bad} → {body}");
            assert!(body["error"]["code"].is_string());
        }
        let res = reqwest::Client::new()
            .post(format!("{base}/api/credentials"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 415);
        let (_, listed) = get(&base, "/api/credentials").await;
        assert_eq!(
            listed["credentials"].as_array().unwrap().len(),
            1,
            "nothing was added by bad input"
        );

        let res = reqwest::Client::new()
            .delete(format!("{base}/api/credentials/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
        assert_eq!(get(&base, &format!("/api/credentials/{id}")).await.0, 404);
        assert!(
            eventually(5, || async {
                !get(&base, "/status").await.1.to_string().contains(&name)
            })
            .await,
            "its actor stopped"
        );
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}

/// A token source whose tokens have less than the cache's 5-minute margin left (a vending
/// service handing out its own cached token near its end): each is used while it lasts.
#[tokio::test]
async fn a_token_with_less_than_five_minutes_left_is_still_used() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = SimConfig {
        token_lifetime: Duration::from_secs(120),
        ..SimConfig::default()
    };
    let sim = Simulator::start(cfg, listener).await.unwrap();
    let db = TestDb::sqlite().await;
    let app = app_with(&sim, &db).await;
    let base = app.url();
    let msg = a_message(&sim).await;
    let cred = alice_credential(&base, &sim).await;
    for _ in 0..2 {
        assert_eq!(get_message(&app, &cred, &msg).await.unwrap(), "hello");
    }
    app.stop().await.unwrap();
    db.cleanup().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn every_token_source_reaches_graph_and_tokens_are_reused() {
    let sim = sim().await;
    let db = TestDb::sqlite().await;
    let app = app_with(&sim, &db).await;
    let base = app.url();
    let msg = a_message(&sim).await;
    let c = sim.sim().config().clone();

    let vended_id = uuid::Uuid::new_v4().to_string();
    assert!(sim.sim().connect_credential(&vended_id, ALICE));
    let refresh = sim.sim().issue_refresh_token(ALICE).unwrap();
    let static_token = {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.as_str()),
            ("scope", "https://graph.microsoft.com/.default"),
        ];
        token_request(&sim, &form).await["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let sources = [
        (
            "client_credentials",
            Some(ALICE),
            None,
            client_credentials(&sim),
        ),
        (
            "refresh_token",
            None,
            None,
            json!({"kind": "refresh_token", "tenant_id": c.tenant, "client_id": c.client_id, "client_secret": c.client_secret, "refresh_token": refresh}),
        ),
        (
            "auth_service",
            Some(ALICE),
            Some(vended_id.clone()),
            json!({"kind": "auth_service"}),
        ),
        (
            "static",
            Some(ALICE),
            None,
            json!({"kind": "static", "access_token": static_token}),
        ),
    ];
    for (kind, mailbox, id, source) in sources {
        let mut body = json!({"name": kind, "token_source": source});
        if let Some(m) = mailbox {
            body["mailbox"] = json!(m);
        }
        if let Some(id) = &id {
            body["id"] = json!(id);
        }
        let (s, created) = post(&base, "/api/credentials", body).await;
        assert_eq!(s, 201, "{kind}: {created}");
        let cred = created["id"].as_str().unwrap().to_string();
        let before = sim.sim().token_counts();
        // Many Graph calls, at once and one after another: one token.
        let calls: Vec<_> = (0..12).map(|_| get_message(&app, &cred, &msg)).collect();
        for r in futures::future::join_all(calls).await {
            assert_eq!(r.unwrap(), "hello", "{kind}");
        }
        for _ in 0..5 {
            assert_eq!(get_message(&app, &cred, &msg).await.unwrap(), "hello");
        }
        let after = sim.sim().token_counts();
        let fetched = (after.client_credentials + after.refresh_token + after.vended)
            - (before.client_credentials + before.refresh_token + before.vended);
        let expected = if kind == "static" { 0 } else { 1 };
        assert_eq!(
            fetched, expected,
            "{kind}: 17 Graph calls, {fetched} token requests"
        );
        let (_, status) = get(&base, "/status").await;
        assert!(status.to_string().contains("token_expires_at"));
    }
    app.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once_and_a_rotated_refresh_token_is_stored() {
    let sim = sim().await;
    let db = TestDb::sqlite().await;
    let app = app_with(&sim, &db).await;
    let base = app.url();
    let msg = a_message(&sim).await;
    let c = sim.sim().config().clone();
    let refresh = sim.sim().issue_refresh_token(ALICE).unwrap();
    let (_, created) = post(&base, "/api/credentials", json!({"name": "delegated", "token_source": {"kind": "refresh_token", "tenant_id": c.tenant, "client_id": c.client_id, "refresh_token": refresh}})).await;
    let cred = created["id"].as_str().unwrap().to_string();
    assert_eq!(get_message(&app, &cred, &msg).await.unwrap(), "hello");
    let stored = credentials::get(&app.deps.store, &cred)
        .await
        .unwrap()
        .unwrap()
        .token_source_json()
        .unwrap();
    let rotated = stored["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(
        rotated, refresh,
        "the new refresh token replaced the old one in the store"
    );

    // Graph stops accepting the token: one 401, one refresh, one retry, success.
    sim.sim().revoke_tokens(Some(ALICE));
    let before = sim.sim().token_counts().refresh_token;
    sim.sim().clear_requests();
    assert_eq!(get_message(&app, &cred, &msg).await.unwrap(), "hello");
    assert_eq!(sim.sim().token_counts().refresh_token, before + 1);
    let graph: Vec<u16> = sim
        .sim()
        .requests()
        .iter()
        .filter(|r| r.path.contains("/messages/"))
        .map(|r| r.status)
        .collect();
    assert_eq!(graph, vec![401, 200]);
    // And the second rotation was stored too (the first rotated token is dead now).
    let stored = credentials::get(&app.deps.store, &cred)
        .await
        .unwrap()
        .unwrap()
        .token_source_json()
        .unwrap();
    assert_ne!(stored["refresh_token"].as_str().unwrap(), rotated);
    app.stop().await.unwrap();
    db.cleanup().await;
}

/// Another instance rotated the refresh token and stored the new one (it held the mailbox
/// before, or served a subscription call): the next refresh here uses the stored token, not
/// the one this actor read at its start, which that rotation killed.
#[tokio::test]
async fn a_refresh_uses_the_refresh_token_another_instance_stored() {
    let sim = sim().await;
    let db = TestDb::sqlite().await;
    let app = app_with(&sim, &db).await;
    let base = app.url();
    let msg = a_message(&sim).await;
    let c = sim.sim().config().clone();
    let refresh = sim.sim().issue_refresh_token(ALICE).unwrap();
    let source = |rt: &str| json!({"kind": "refresh_token", "tenant_id": c.tenant, "client_id": c.client_id, "refresh_token": rt});
    let (_, created) = post(
        &base,
        "/api/credentials",
        json!({"name": "delegated", "token_source": source(&refresh)}),
    )
    .await;
    let cred = created["id"].as_str().unwrap().to_string();
    assert_eq!(get_message(&app, &cred, &msg).await.unwrap(), "hello");
    let stored = credentials::get(&app.deps.store, &cred)
        .await
        .unwrap()
        .unwrap()
        .token_source_json()
        .unwrap();
    let rotated = stored["refresh_token"].as_str().unwrap().to_string();

    // The other instance's refresh, and what it stored.
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", c.client_id.as_str()),
        ("refresh_token", rotated.as_str()),
    ];
    let theirs = token_request(&sim, &form).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    credentials::set_token_source(&app.deps.store, &cred, &source(&theirs))
        .await
        .unwrap();

    // This actor's token stops working: its refresh takes the stored refresh token.
    sim.sim().revoke_tokens(Some(ALICE));
    assert_eq!(get_message(&app, &cred, &msg).await.unwrap(), "hello");
    app.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_burst_stays_within_four_requests() {
    let sim = sim().await;
    let db = TestDb::sqlite().await;
    let app = app_with(&sim, &db).await;
    let base = app.url();
    let msg = a_message(&sim).await;
    let cred = alice_credential(&base, &sim).await;
    assert_eq!(get_message(&app, &cred, &msg).await.unwrap(), "hello");

    sim.sim().clear_requests();
    sim.sim()
        .add_fault(FaultSpec {
            kind: FaultKind::Throttle,
            mailbox: Some(ALICE.into()),
            retry_after_secs: Some(0.4),
            latency_ms: None,
            count: Some(1),
            duration_secs: None,
        })
        .unwrap();
    assert_eq!(get_message(&app, &cred, &msg).await.unwrap(), "hello");
    let reqs = sim.sim().requests();
    let graph: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.contains("/messages/"))
        .collect();
    assert_eq!(
        graph.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 200]
    );
    let waited = graph[1].started.duration_since(graph[0].ended);
    assert!(
        waited >= Duration::from_millis(400),
        "retried after {waited:?}, Retry-After was 0.4 s"
    );

    // A burst of 40 calls: never more than 4 in flight at the mailbox, so no 429 from the
    // concurrency rule.
    sim.sim().clear_requests();
    sim.sim()
        .add_fault(FaultSpec {
            kind: FaultKind::Latency,
            mailbox: Some(ALICE.into()),
            retry_after_secs: None,
            latency_ms: Some(20),
            count: None,
            duration_secs: Some(30.0),
        })
        .unwrap();
    let calls: Vec<_> = (0..40).map(|_| get_message(&app, &cred, &msg)).collect();
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
    assert!(
        sim.sim().max_concurrency(ALICE) <= 4,
        "max concurrency {}",
        sim.sim().max_concurrency(ALICE)
    );
    assert!(sim.sim().requests().iter().all(|r| r.status != 429));
    sim.sim().clear_faults();
    app.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn a_credential_without_a_token_shows_its_failure_and_does_not_crash_loop() {
    let sim = sim().await;
    let db = TestDb::sqlite().await;
    let app = app_with(&sim, &db).await;
    let base = app.url();
    let c = sim.sim().config().clone();
    let (code, created) = post(&base, "/api/credentials", json!({"name": "wrong", "mailbox": ALICE, "token_source": {"kind": "client_credentials", "tenant_id": c.tenant, "client_id": c.client_id, "client_secret": "not-the-secret"}})).await;
    assert_eq!(code, 201, "{created}");
    let cred = created["id"].as_str().unwrap().to_string();
    let unconnected = uuid::Uuid::new_v4().to_string();
    let (code, body) = post(&base, "/api/credentials", json!({"id": unconnected, "name": "not connected", "token_source": {"kind": "auth_service"}})).await;
    assert_eq!(code, 201, "{body}");

    for _ in 0..3 {
        let err = get_message(&app, &cred, "x").await.unwrap_err();
        assert!(
            matches!(err, CredentialError::Token(TokenError::Rejected { .. })),
            "{err:?}"
        );
    }
    let err = get_message(&app, &unconnected, "x").await.unwrap_err();
    assert!(
        matches!(err, CredentialError::Token(TokenError::NotConnected { .. })),
        "{err:?}"
    );

    let (_, status) = get(&base, "/status").await;
    let text = status.to_string();
    assert!(!text.contains("not-the-secret"));
    let creds = status["root"]["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "credentials")
        .unwrap()
        .clone();
    let node = creds["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == format!("credential:{cred}"))
        .unwrap()
        .clone();
    assert_eq!(node["state"], "running");
    assert_eq!(node["restarts"], 0);
    assert!(
        node["last_failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("token"),
        "{node}"
    );
    assert!(
        eventually(5, || async {
            get(&base, &format!("/api/credentials/{cred}")).await.1["status"] == "degraded"
        })
        .await,
        "the credential is marked degraded"
    );
    app.stop().await.unwrap();
    db.cleanup().await;
}
