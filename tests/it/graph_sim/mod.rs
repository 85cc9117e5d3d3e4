//! The Graph client, token sources and per-mailbox limiter against the simulator, over real
//! HTTP on loopback. Timing checks are ordering facts only ("the retry came after
//! Retry-After"), never performance. Here: the token sources, subscriptions, mail and
//! delta; the limiter and the simulator's own behaviour (lifetimes, control API, the URL forms
//! Microsoft's SDKs send) have modules of their own.

mod limiter;
mod simulator;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use relay365::sim::{
    FaultKind, FaultSpec, NewMail, NotificationKind, SimConfig, SimHandle, Simulator,
};
use relay365_actors::graph::{
    DeltaItem, GraphClient, GraphError, LimiterConfig, MailboxLimiter, NewSubscription,
};
use relay365_actors::token::{fetch_token, TokenEndpoints, TokenError, TokenSource};
use serde_json::{json, Value};
use uuid::Uuid;

const ALICE: &str = "alice@sim.test";

async fn start(config: SimConfig) -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(config, listener).await.unwrap()
}

fn quick_config() -> SimConfig {
    SimConfig {
        notification_retries: 0,
        concurrency_retry_after: Duration::from_millis(200),
        ..SimConfig::default()
    }
}

fn endpoints(sim: &SimHandle) -> TokenEndpoints {
    TokenEndpoints {
        login_url: sim.login_url(),
        auth_service_url: Some(sim.auth_service_url()),
        service_secret: Some(sim.sim().config().service_secret.clone()),
    }
}

fn app_source(sim: &SimHandle) -> TokenSource {
    let c = sim.sim().config();
    TokenSource::ClientCredentials {
        tenant_id: c.tenant.clone(),
        client_id: c.client_id.clone(),
        client_secret: c.client_secret.clone(),
    }
}

async fn app_token(sim: &SimHandle) -> String {
    fetch_token(
        &reqwest::Client::new(),
        &endpoints(sim),
        Uuid::new_v4(),
        &app_source(sim),
    )
    .await
    .unwrap()
    .token
}

fn client(sim: &SimHandle) -> GraphClient {
    GraphClient::new(sim.base_url(), reqwest::Client::new()).with_timeout(Duration::from_secs(5))
}

/// A tiny webhook receiver: answers validation like relay365 must, records everything else.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Receiver {
    async fn start() -> (String, Receiver) {
        async fn hook(
            State(r): State<Receiver>,
            uri: axum::http::Uri,
            Query(q): Query<HashMap<String, String>>,
            body: axum::body::Bytes,
        ) -> Response {
            if let Some(token) = q.get("validationToken") {
                return ([(CONTENT_TYPE, "text/plain; charset=utf-8")], token.clone())
                    .into_response();
            }
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            r.got.lock().unwrap().push((uri.path().to_string(), v));
            axum::http::StatusCode::ACCEPTED.into_response()
        }
        /// Answers validation with the token still URL-encoded: must fail the handshake.
        async fn encoded(uri: axum::http::Uri) -> Response {
            let raw = uri
                .query()
                .unwrap_or_default()
                .trim_start_matches("validationToken=")
                .to_string();
            ([(CONTENT_TYPE, "text/plain")], raw).into_response()
        }
        let r = Receiver::default();
        let app = Router::new()
            .route("/hook", post(hook))
            .route("/life", post(hook))
            .route("/encoded", post(encoded))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, r)
    }

    fn items(&self, path: &str) -> Vec<Value> {
        let got = self.got.lock().unwrap();
        got.iter()
            .filter(|(p, _)| p == path)
            .flat_map(|(_, v)| v["value"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

fn new_sub(base: &str, resource: &str, minutes: i64) -> NewSubscription {
    NewSubscription {
        change_type: "created".into(),
        notification_url: format!("{base}/hook"),
        lifecycle_notification_url: Some(format!("{base}/life")),
        resource: resource.into(),
        expiration_date_time: Utc::now() + chrono::Duration::minutes(minutes),
        client_state: "cs-secret-123".into(),
        latest_supported_tls_version: Some("v1_2".into()),
    }
}

fn mail(subject: &str) -> NewMail {
    serde_json::from_value(json!({"subject": subject, "body": "<p>Hello</p>", "body_type": "html", "from": "Bob <bob@sim.test>"})).unwrap()
}

#[tokio::test]
async fn every_token_source_against_the_simulator() {
    let sim = start(quick_config()).await;
    let http = reqwest::Client::new();
    let ep = endpoints(&sim);
    let graph = client(&sim);

    // Client credentials: an app token that works on users/{mailbox} paths.
    let tok = fetch_token(&http, &ep, Uuid::new_v4(), &app_source(&sim))
        .await
        .unwrap();
    assert!(tok.expires_at > Utc::now() + chrono::Duration::minutes(50));
    assert!(tok.new_refresh_token.is_none());
    let err = graph
        .get_message(&tok.token, Some(ALICE), "nope")
        .await
        .unwrap_err();
    assert!(
        matches!(err, GraphError::NotFound { ref code, .. } if code == "ErrorItemNotFound"),
        "{err:?}"
    );

    // Wrong secret and unknown tenant: the identity platform's error body, typed.
    let wrong = TokenSource::ClientCredentials {
        tenant_id: "sim-tenant".into(),
        client_id: "relay365-sim-app".into(),
        client_secret: "bad".into(),
    };
    let err = fetch_token(&http, &ep, Uuid::new_v4(), &wrong)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TokenError::Rejected { status: 401, ref error, .. } if error == "invalid_client"),
        "{err:?}"
    );
    assert!(!err.to_string().contains("bad"));
    let no_tenant = TokenSource::ClientCredentials {
        tenant_id: "other".into(),
        client_id: "relay365-sim-app".into(),
        client_secret: "x".into(),
    };
    let err = fetch_token(&http, &ep, Uuid::new_v4(), &no_tenant)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TokenError::Rejected { status: 400, .. }),
        "{err:?}"
    );

    // Refresh token: each use rotates it; the old one stops working.
    let rt = sim.sim().issue_refresh_token(ALICE).unwrap();
    let src = TokenSource::RefreshToken {
        tenant_id: "sim-tenant".into(),
        client_id: "relay365-sim-app".into(),
        client_secret: None,
        refresh_token: rt,
    };
    let tok = fetch_token(&http, &ep, Uuid::new_v4(), &src).await.unwrap();
    let new_rt = tok.new_refresh_token.clone().unwrap();
    let err = fetch_token(&http, &ep, Uuid::new_v4(), &src)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TokenError::Rejected { ref error, .. } if error == "invalid_grant"),
        "{err:?}"
    );
    let rotated = src.with_refresh_token(&new_rt);
    fetch_token(&http, &ep, Uuid::new_v4(), &rotated)
        .await
        .unwrap();
    // A delegated token reads its own mailbox through /me.
    let err = graph
        .get_message(&tok.token, None, "nope")
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::NotFound { .. }), "{err:?}");

    // Token vending: 200 when connected, 404 when not, 401 with a wrong secret.
    let cred = Uuid::new_v4();
    let err = fetch_token(&http, &ep, cred, &TokenSource::AuthService)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TokenError::NotConnected { credential_id } if credential_id == cred),
        "{err:?}"
    );
    assert!(sim.sim().connect_credential(&cred.to_string(), ALICE));
    let tok = fetch_token(&http, &ep, cred, &TokenSource::AuthService)
        .await
        .unwrap();
    assert!(tok.expires_at > Utc::now());
    assert!(matches!(
        graph.get_message(&tok.token, None, "x").await.unwrap_err(),
        GraphError::NotFound { .. }
    ));
    let bad_ep = TokenEndpoints {
        service_secret: Some("wrong".into()),
        ..ep.clone()
    };
    let err = fetch_token(&http, &bad_ep, cred, &TokenSource::AuthService)
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::BadServiceSecret), "{err:?}");
    let unset = TokenEndpoints {
        auth_service_url: None,
        ..ep.clone()
    };
    let err = fetch_token(&http, &unset, cred, &TokenSource::AuthService)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TokenError::NotConfigured("AUTH_SERVICE_URL")),
        "{err:?}"
    );

    // Static: handed back as is; Graph refuses an unknown token with 401.
    let tok = fetch_token(
        &http,
        &ep,
        cred,
        &TokenSource::Static {
            access_token: "made-up".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(tok.token, "made-up");
    let err = graph
        .get_message(&tok.token, Some(ALICE), "x")
        .await
        .unwrap_err();
    assert!(
        matches!(err, GraphError::Unauthorized { ref code, .. } if code == "InvalidAuthenticationToken"),
        "{err:?}"
    );

    let counts = sim.sim().token_counts();
    assert_eq!(
        (
            counts.client_credentials,
            counts.refresh_token,
            counts.vended
        ),
        (1, 2, 1)
    );
    assert!(counts.rejected >= 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn subscription_create_conflict_renew_reauthorize_list_delete() {
    let sim = start(SimConfig {
        list_page_size: 2,
        ..quick_config()
    })
    .await;
    let (base, receiver) = Receiver::start().await;
    let graph = client(&sim);
    let token = app_token(&sim).await;
    let resource = format!("users/{ALICE}/mailFolders('inbox')/messages");

    let created = graph
        .create_subscription(&token, &new_sub(&base, &resource, 10))
        .await
        .unwrap();
    assert_eq!(created.client_state.as_deref(), Some("cs-secret-123"));
    // Under 45 minutes is raised to 45.
    assert!(created.expiration_date_time > Utc::now() + chrono::Duration::minutes(44));
    // Both URLs were validated, and the receiver decoded the awkward token correctly.
    let validations: Vec<_> = sim
        .sim()
        .notifications()
        .into_iter()
        .filter(|n| n.kind == NotificationKind::Validation)
        .collect();
    assert_eq!(validations.len(), 2);
    assert!(validations
        .iter()
        .all(|v| v.delivered() && v.error.is_none()));
    assert!(validations.iter().any(|v| v.url.ends_with("/life")));

    // Same resource and change type: 409, naming the existing id.
    let err = graph
        .create_subscription(&token, &new_sub(&base, &resource, 60))
        .await
        .unwrap_err();
    assert_eq!(
        err.conflicting_subscription_id(),
        Some(created.id.as_str()),
        "{err:?}"
    );

    // A receiver that answers the token still encoded fails the handshake: 400.
    let mut bad = new_sub(
        &base,
        &format!("users/{ALICE}/mailFolders('archive')/messages"),
        60,
    );
    bad.notification_url = format!("{base}/encoded");
    let err = graph.create_subscription(&token, &bad).await.unwrap_err();
    assert!(
        matches!(err, GraphError::Other { status: 400, ref code, .. } if code == "InvalidRequest"),
        "{err:?}"
    );

    // Beyond the maximum lifetime: 400 (the simulator refuses rather than clamps).
    let too_long = new_sub(&base, &format!("users/{ALICE}/messages"), 10_081);
    let err = graph
        .create_subscription(&token, &too_long)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));

    let until = Utc::now() + chrono::Duration::minutes(600);
    let renewed = graph
        .renew_subscription(&token, &created.id, until)
        .await
        .unwrap();
    assert!((renewed.expiration_date_time - until).num_seconds().abs() <= 1);
    graph
        .reauthorize_subscription(&token, &created.id)
        .await
        .unwrap();
    let stored = sim.sim().subscriptions();
    assert_eq!((stored[0].renew_count, stored[0].reauthorize_count), (1, 1));

    // Five subscriptions listed over pages of two, clientState never returned.
    for folder in ["a", "b", "c", "d"] {
        graph
            .create_subscription(
                &token,
                &new_sub(
                    &base,
                    &format!("users/{ALICE}/mailFolders('{folder}')/messages"),
                    60,
                ),
            )
            .await
            .unwrap();
    }
    let listed = graph.list_subscriptions(&token).await.unwrap();
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|s| s.client_state.is_none()));
    assert!(sim
        .sim()
        .requests()
        .iter()
        .any(|r| r.query.as_deref().is_some_and(|q| q.contains("skiptoken"))));

    graph
        .delete_subscription(&token, &created.id)
        .await
        .unwrap();
    let err = graph
        .delete_subscription(&token, &created.id)
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::NotFound { .. }));
    let err = graph
        .renew_subscription(&token, &created.id, until)
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::NotFound { .. }));
    assert!(receiver.items("/hook").is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn mail_notifications_message_get_and_attachments() {
    let sim = start(quick_config()).await;
    let (base, receiver) = Receiver::start().await;
    let graph = client(&sim);
    let token = app_token(&sim).await;
    let sub = graph
        .create_subscription(
            &token,
            &new_sub(
                &base,
                &format!("users/{ALICE}/mailFolders('Inbox')/messages"),
                60,
            ),
        )
        .await
        .unwrap();

    let mut m = mail("Invoice 42");
    m.attachments = serde_json::from_value(
        json!([{"name": "a.txt", "content_type": "text/plain", "content": "hello attachment"}]),
    )
    .unwrap();
    let report = sim
        .sim()
        .deliver(ALICE, vec![m, mail("second")])
        .await
        .unwrap();
    assert_eq!(report.message_ids.len(), 2);
    assert!(report.notifications.iter().all(|n| n.delivered()));

    // One POST carried both items, in the fixture's shape.
    let items = receiver.items("/hook");
    assert_eq!(items.len(), 2);
    let first = &items[0];
    assert_eq!(first["subscriptionId"], json!(sub.id));
    assert_eq!(first["clientState"], json!("cs-secret-123"));
    assert_eq!(first["changeType"], json!("created"));
    assert_eq!(
        first["resourceData"]["@odata.type"],
        json!("#Microsoft.Graph.Message")
    );
    assert!(first["resourceData"]["@odata.etag"]
        .as_str()
        .unwrap()
        .starts_with("W/\""));
    assert!(first["tenantId"].is_string() && first["subscriptionExpirationDateTime"].is_string());
    let id = first["resourceData"]["id"].as_str().unwrap();
    assert_eq!(id, report.message_ids[0]);

    let msg = graph.get_message(&token, Some(ALICE), id).await.unwrap();
    assert_eq!(
        msg.odata_type, None,
        "a plain message carries no type annotation"
    );
    assert_eq!(msg.subject.as_deref(), Some("Invoice 42"));
    assert_eq!(
        msg.from.unwrap().email_address.address.as_deref(),
        Some("bob@sim.test")
    );
    assert_eq!(msg.body.unwrap().content_type, "html");
    assert_eq!(msg.body_preview.as_deref(), Some("Hello"));
    assert_eq!(msg.has_attachments, Some(true));
    assert!(
        !msg.internet_message_headers.is_empty(),
        "selected headers come back"
    );
    let get = sim
        .sim()
        .requests()
        .into_iter()
        .rfind(|r| r.path.contains("/messages/"))
        .unwrap();
    assert!(get.query.unwrap().contains("%24select") || get.path.contains("select"));

    let atts = graph
        .list_attachments(&token, Some(ALICE), id)
        .await
        .unwrap();
    assert_eq!(atts.len(), 1);
    assert!(atts[0].is_file());
    assert_eq!(
        atts[0].decode_content().unwrap().unwrap(),
        b"hello attachment"
    );

    // Updated and deleted changes go only to subscriptions asking for them.
    sim.sim()
        .update_message(
            ALICE,
            id,
            serde_json::from_value(json!({"is_read": true})).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(receiver.items("/hook").len(), 2);

    // Dropped and duplicated notifications.
    sim.sim().drop_next_notifications(1);
    sim.sim()
        .deliver(ALICE, vec![mail("dropped")])
        .await
        .unwrap();
    assert_eq!(receiver.items("/hook").len(), 2);
    sim.sim().duplicate_next_notifications(1);
    sim.sim().deliver(ALICE, vec![mail("twice")]).await.unwrap();
    let items = receiver.items("/hook");
    assert_eq!(items.len(), 4);
    assert_eq!(items[2], items[3]);

    // A meeting request is an eventMessage: its derived type is annotated under `$select`.
    let mut invite = mail("Project sync");
    invite.meeting_message_type = Some("meetingRequest".into());
    let invite = sim.sim().deliver(ALICE, vec![invite]).await.unwrap();
    let msg = graph
        .get_message(&token, Some(ALICE), &invite.message_ids[0])
        .await
        .unwrap();
    assert_eq!(
        msg.odata_type.as_deref(),
        Some("#microsoft.graph.eventMessageRequest")
    );
    let mut bad = mail("odd");
    bad.meeting_message_type = Some("meetingMaybe".into());
    assert!(sim.sim().deliver(ALICE, vec![bad]).await.is_err());

    // Lifecycle events in the fixtures' shape; subscriptionRemoved also removes it.
    sim.sim()
        .send_lifecycle(&sub.id, "reauthorizationRequired")
        .await
        .unwrap();
    sim.sim()
        .send_lifecycle(&sub.id, "subscriptionRemoved")
        .await
        .unwrap();
    let life = receiver.items("/life");
    assert_eq!(life.len(), 2);
    assert_eq!(life[0]["lifecycleEvent"], json!("reauthorizationRequired"));
    assert_eq!(life[0]["clientState"], json!("cs-secret-123"));
    assert!(life[0].get("changeType").is_none());
    assert!(sim.sim().subscriptions().is_empty());
    assert!(sim.sim().send_lifecycle(&sub.id, "missed").await.is_err());
    sim.shutdown().await;
}

#[tokio::test]
async fn delta_pages_links_and_removed_items() {
    let sim = start(quick_config()).await;
    let graph = client(&sim);
    let token = app_token(&sim).await;
    let ids = sim
        .sim()
        .deliver(ALICE, vec![mail("one"), mail("two"), mail("three")])
        .await
        .unwrap()
        .message_ids;

    let p1 = graph
        .delta_start(&token, Some(ALICE), "inbox", Some(2))
        .await
        .unwrap();
    assert_eq!(p1.items.len(), 2);
    assert!(p1.delta_link.is_none());
    let next = p1.next_link.unwrap();
    assert!(
        next.starts_with(&sim.base_url()) && next.contains("$skiptoken="),
        "{next}"
    );
    let p2 = graph.delta_follow(&token, &next, Some(2)).await.unwrap();
    assert_eq!(p2.items.len(), 1);
    let delta_link = p2.delta_link.unwrap();
    assert!(delta_link.contains("$deltatoken="), "{delta_link}");

    // Nothing changed: an empty round.
    let same = graph.delta_follow(&token, &delta_link, None).await.unwrap();
    assert!(same.items.is_empty() && same.delta_link.is_some());

    // Only changes since the token come next: a removal and a new message.
    sim.sim().delete_message(ALICE, &ids[0]).await.unwrap();
    let new_id = sim
        .sim()
        .deliver(ALICE, vec![mail("four")])
        .await
        .unwrap()
        .message_ids
        .remove(0);
    let round = graph.delta_follow(&token, &delta_link, None).await.unwrap();
    assert_eq!(round.items.len(), 2);
    assert!(
        matches!(&round.items[0], DeltaItem::Removed { id, reason } if id == &ids[0] && reason == "deleted")
    );
    assert!(
        matches!(&round.items[1], DeltaItem::Upserted(m) if m.id == new_id && m.subject.as_deref() == Some("four"))
    );
    assert!(graph
        .get_message(&token, Some(ALICE), &ids[0])
        .await
        .is_err());

    // A reset invalidates old links: the caller must resync from scratch.
    sim.sim().reset_delta(ALICE).unwrap();
    let err = graph
        .delta_follow(&token, &delta_link, None)
        .await
        .unwrap_err();
    assert!(err.needs_full_resync(), "{err:?}");
    // A link elsewhere is never followed with our token.
    assert!(matches!(
        graph
            .delta_follow(&token, "https://elsewhere.test/v1.0/x", None)
            .await,
        Err(GraphError::InvalidResponse(_))
    ));
    sim.shutdown().await;
}
