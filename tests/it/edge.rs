//! The public edge probed as an attacker would (issue: harden the edge): bodies built to cost
//! the parser, connections that never finish, uploads that stall, floods of made-up
//! subscription ids beside genuine notifications, token services that redirect or lie about
//! lifetimes, a panic inside an actor's task, and the answers and texts that must not leak.
use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, post};
use axum::Router;
use relay365::App;
use relay365_actors::credential;
use relay365_actors::store::events::{self, EventFilter};
use relay365_actors::store::subscriptions::{self, NewSubscription};
use relay365_actors::store::{new_id, Store};
use serde_json::{json, Value};
use support::{
    eventually, find_actor, seed_credential, spawn_app, test_config, LocalServer, TestDb,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A subscription stored straight into the store, as another instance would: the receiver
/// has never been told of it.
async fn stored_subscription(store: &Store, credential_id: &str) -> (String, String, String) {
    let (id, graph_id, client_state) = (new_id(), new_id(), format!("cs-{}", new_id()));
    subscriptions::insert(
        store,
        &NewSubscription {
            id: &id,
            credential_id,
            external_id: Some(&graph_id),
            resource: "me/mailFolders('inbox')/messages",
            change_types: "created",
            notification_url: "https://example.test/api/ms365/webhook",
            lifecycle_url: None,
            client_state: &client_state,
            status: relay365_actors::store::status::SubscriptionStatus::Active,
            expires_at: None,
            granted_lifetime_ms: None,
            next_renewal_at: None,
        },
    )
    .await
    .unwrap();
    (id, graph_id, client_state)
}

fn notification(graph_id: &str, client_state: &str, message: &str) -> Value {
    json!({"value": [{
        "subscriptionId": graph_id, "clientState": client_state, "changeType": "created",
        "resource": format!("Users/u/Messages/{message}"),
        "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "id": message}
    }]})
}

async fn post_raw(url: &str, body: Vec<u8>) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let code = res.status().as_u16();
    (code, res.json().await.unwrap_or(Value::Null))
}

async fn status_tree(base: &str) -> Value {
    reqwest::get(format!("{base}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn bodies_built_to_cost_the_parser_are_refused_with_bounded_work() {
    let db = TestDb::sqlite().await;
    let app = spawn_app(test_config(&db.url, &[])).await;
    let url = format!("{}/api/ms365/webhook", app.url());

    // 40,000 distinct members in one item (600 KB): the parser stops at the 65th.
    let members: String = (0..40_000).map(|i| format!(",\"m{i}\":0")).collect();
    let body = format!(r#"{{"value":[{{"changeType":"created"{members}}}]}}"#);
    let (code, err) = post_raw(&url, body.into_bytes()).await;
    assert_eq!(code, 400, "{err}");
    assert_eq!(
        err["error"]["message"],
        "value[0]: an object has more than 64 members"
    );

    // 1 MiB of tiny items: refused after the 1,000th.
    let item = r#"{"changeType":"created"},"#;
    let mut many = item.repeat((1024 * 1024 - 20) / item.len());
    many.pop();
    let (code, err) = post_raw(&url, format!(r#"{{"value":[{many}]}}"#).into_bytes()).await;
    assert_eq!(code, 400, "{err}");
    assert_eq!(
        err["error"]["message"],
        "a collection has more than 1000 items"
    );

    // The largest collection within the limits (1,000 items of 64 members, nested and long
    // strings) is parsed whole, off the async workers, and answered; the service stays up.
    let filler: String = (0..62).map(|i| format!(",\"f{i}\":[[\"x\"]]")).collect();
    let one = format!(
        r#"{{"changeType":"created","resource":"{}"{filler}}}"#,
        "r".repeat(16)
    );
    let all = vec![one; 1000].join(",");
    let body = format!(r#"{{"value":[{all}]}}"#);
    assert!(body.len() < 1024 * 1024, "{}", body.len());
    let (code, _) = post_raw(&url, body.into_bytes()).await;
    assert_eq!(code, 202);
    let health = reqwest::get(format!("{}/healthz", app.url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_half_sent_request_is_closed_by_the_server() {
    let db = TestDb::sqlite().await;
    let app = spawn_app(test_config(
        &db.url,
        &[("RELAY365_HEADER_TIMEOUT_SECONDS", "1")],
    ))
    .await;
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    conn.write_all(b"POST /api/ms365/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        .await
        .unwrap();
    // The server must end the connection by itself (the outer limit only stops a failing
    // test from hanging).
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server kept a half-sent request open");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn headers_larger_than_the_read_buffer_are_refused() {
    let db = TestDb::sqlite().await;
    let app = spawn_app(test_config(&db.url, &[])).await;
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    // The server may answer and close before it has read all of it.
    let _ = conn.write_all(head.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut buf)).await;
    let answer = String::from_utf8_lossy(&buf);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // A request of ordinary size on a new connection is served as usual.
    let ok = reqwest::get(format!("{}/healthz", app.url()))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    app.stop().await.unwrap();
}

/// Opens a connection that announces a 1 MB notification and sends only its first KB.
async fn stalled_upload(addr: std::net::SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = "POST /api/ms365/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n";
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&[b' '; 1024]).await.unwrap();
    conn
}

#[tokio::test]
async fn stalled_uploads_beyond_the_limit_are_refused_and_timed_out() {
    let db = TestDb::sqlite().await;
    let app = spawn_app(test_config(
        &db.url,
        &[
            ("RELAY365_PUBLIC_MAX_REQUESTS", "4"),
            ("RELAY365_REQUEST_TIMEOUT_SECONDS", "3"),
        ],
    ))
    .await;
    let url = format!("{}/api/ms365/webhook", app.url());
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(stalled_upload(app.addr).await);
    }
    // With four uploads holding the routes, another request is refused at once, with a 503
    // Graph will retry.
    let refused = eventually(10, || async {
        post_raw(&url, br#"{"value":[]}"#.to_vec()).await.0 == 503
    })
    .await;
    assert!(refused, "a fifth request was not refused");
    // Graph's validation call is answered all the same, from the query alone: refused, it
    // would fail a subscription's create.
    let res = reqwest::Client::new()
        .post(format!("{url}?validationToken=Validation%3A+Testing"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "Validation: Testing");
    // Each stalled upload is answered 408 once the request time is up.
    for conn in &mut stalled {
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf))
            .await
            .expect("no answer to a stalled upload")
            .unwrap();
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    }
    // Then the routes are free again.
    assert!(
        eventually(10, || async {
            post_raw(&url, br#"{"value":[]}"#.to_vec()).await.0 == 202
        })
        .await
    );
    app.stop().await.unwrap();
}

/// Opens a connection that announces a 1 MB notification and sends `kib` KiB of it.
async fn partial_upload(addr: std::net::SocketAddr, kib: usize) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = "POST /api/ms365/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n";
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&vec![b' '; kib * 1024]).await.unwrap();
    conn
}

#[tokio::test]
async fn bodies_in_progress_are_held_to_the_memory_budget_not_to_what_they_announce() {
    let db = TestDb::sqlite().await;
    let app = spawn_app(test_config(
        &db.url,
        &[("RELAY365_PUBLIC_MAX_BUFFERED_MIB", "1")],
    ))
    .await;
    let url = format!("{}/api/ms365/webhook", app.url());
    // Three uploads of 300 KiB each. The budget counts what their buffers hold, 512 KiB each
    // (buffers grow to powers of two): two fit in the 1 MiB budget, one does not and is
    // refused at once with a 503 (which one depends on the order the server reads them).
    let mut uploads = Vec::new();
    for _ in 0..3 {
        uploads.push(partial_upload(app.addr, 300).await);
    }
    let mut refused = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while refused.is_empty() && tokio::time::Instant::now() < deadline {
        for (i, conn) in uploads.iter_mut().enumerate() {
            let mut buf = vec![0u8; 512];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(50), conn.read(&mut buf)).await
            {
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(head.starts_with("HTTP/1.1 503"), "{head}");
                refused.push(i);
            }
        }
    }
    assert_eq!(
        refused.len(),
        1,
        "exactly the body beyond the budget is refused"
    );
    // The budget is full: a genuine notification, a few bytes, waits for room. Once one of the
    // held uploads is gone, its share is free again and the notification is taken.
    let held = (0..uploads.len()).find(|i| !refused.contains(i)).unwrap();
    drop(uploads.remove(held));
    assert!(
        eventually(10, || async {
            post_raw(&url, br#"{"value":[]}"#.to_vec()).await.0 == 202
        })
        .await
    );
    drop(uploads);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_flood_never_turns_a_genuine_notification_into_a_lost_202() {
    on_every_store!(|db| {
        let store = db.store().await;
        let credential_id = seed_credential(&store).await;
        let app = spawn_app(test_config(&db.url, &[])).await;
        let url = format!("{}/api/ms365/webhook", app.url());
        // Subscriptions the receiver has not been told of: each must be looked up.
        let mut genuine = Vec::new();
        for _ in 0..25 {
            genuine.push(stored_subscription(&store, &credential_id).await);
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flooders: Vec<_> = (0..16)
            .map(|_| {
                let (url, stop) = (url.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut sent = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 400 {
                        let items: Vec<Value> = (0..8)
                            .map(|_| notification(&new_id(), "guess", "m")["value"][0].clone())
                            .collect();
                        post_raw(&url, json!({"value": items}).to_string().into_bytes()).await;
                        sent += 1;
                    }
                })
            })
            .collect();
        let mut answers = Vec::new();
        for (i, (id, graph_id, cs)) in genuine.iter().enumerate() {
            let body = notification(graph_id, cs, &format!("msg-{i}"));
            let (code, _) = post_raw(&url, body.to_string().into_bytes()).await;
            answers.push((id.clone(), code));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for f in flooders {
            f.await.unwrap();
        }
        let stored = events::list(
            &store,
            &EventFilter {
                limit: 10_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        for (id, code) in &answers {
            let kept = stored
                .iter()
                .any(|e| e.subscription_id.as_deref() == Some(id));
            match code {
                202 => assert!(
                    kept,
                    "{}: a 202 for subscription {id} was not stored",
                    db.label
                ),
                503 => {}
                other => panic!("{}: genuine notification answered {other}", db.label),
            }
        }
        let accepted = answers.iter().filter(|(_, c)| *c == 202).count();
        eprintln!(
            "{}: {accepted} of 25 genuine notifications stored, the rest 503",
            db.label
        );
        app.stop().await.unwrap();
        store.close().await;
        db.cleanup().await;
    });
}

/// A token endpoint of our own: `answer` decides what every token request gets.
async fn token_endpoint(answer: fn() -> axum::response::Response) -> LocalServer {
    LocalServer::start(
        Router::new()
            .route(
                "/{tenant}/oauth2/v2.0/token",
                post(move || async move { answer() }),
            )
            .route(
                "/auth/oauth/internal/credential-token",
                post(move || async move { answer() }),
            ),
    )
    .await
}

async fn create_credential(app: &App, source: Value) -> String {
    let res = reqwest::Client::new()
        .post(format!("{}/api/credentials", app.url()))
        .json(&json!({"name": "probe", "mailbox": "a@b.test", "token_source": source}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_absurd_token_lifetime_neither_panics_nor_wedges_the_credential() {
    let login = token_endpoint(|| {
        axum::Json(json!({"access_token": "tok", "token_type": "Bearer", "expires_in": 99_999_999_999_999i64}))
            .into_response()
    })
    .await;
    let db = TestDb::sqlite().await;
    let app = spawn_app(test_config(&db.url, &[("RELAY365_LOGIN_URL", &login.url)])).await;
    let id = create_credential(
        &app,
        json!({"kind": "client_credentials", "tenant_id": "t", "client_id": "c", "client_secret": "s"}),
    )
    .await;
    let session =
        tokio::time::timeout(Duration::from_secs(10), credential::session(&app.deps, &id))
            .await
            .expect("the credential did not answer");
    assert!(session.is_ok(), "{:?}", session.err());
    // The lifetime believed is at most a day, and the actor never failed.
    let tree = status_tree(&app.url()).await;
    let node = find_actor(&tree["root"], &format!("credential:{id}")).unwrap();
    let expires: chrono::DateTime<chrono::Utc> = node["info"]["token_expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(expires <= chrono::Utc::now() + chrono::TimeDelta::days(1));
    assert_eq!(node["restarts"], 0, "{node}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_panic_in_the_commit_task_restarts_the_receiver_and_shows_in_status() {
    let db = TestDb::sqlite().await;
    let store = db.store().await;
    let credential_id = seed_credential(&store).await;
    let (_, graph_id, cs) = stored_subscription(&store, &credential_id).await;
    let app = spawn_app(test_config(&db.url, &[])).await;
    let url = format!("{}/api/ms365/webhook", app.url());
    let armed = reqwest::Client::new()
        .post(format!(
            "{}/api/debug/receiver/panic-next-commit",
            app.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(armed.status(), 202);
    let body = notification(&graph_id, &cs, "m-1").to_string().into_bytes();
    let (code, _) = post_raw(&url, body.clone()).await;
    assert_eq!(
        code, 503,
        "a request whose commit panicked must not be answered 202"
    );
    let restarted = eventually(10, || async {
        let tree = status_tree(&app.url()).await;
        let r = find_actor(&tree["root"], "receiver")
            .cloned()
            .unwrap_or_default();
        r["state"] == "running"
            && r["restarts"].as_u64() >= Some(1)
            && r["last_failure"]["reason"]
                .as_str()
                .is_some_and(|why| why.contains("panicked"))
    })
    .await;
    assert!(restarted, "{}", status_tree(&app.url()).await);
    // Graph's retry is stored by the restarted receiver.
    assert!(eventually(10, || async { post_raw(&url, body.clone()).await.0 == 202 }).await);
    let stored = events::list(
        &store,
        &EventFilter {
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(stored.len(), 1);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_redirecting_token_service_never_receives_the_secrets() {
    // Where the redirects point: it records whatever reaches it.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let catcher = LocalServer::start(Router::new().fallback(any(move |req: Request| {
        let log = log.clone();
        async move {
            let headers = format!("{:?}", req.headers());
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            log.lock()
                .unwrap()
                .push(format!("{headers} {}", String::from_utf8_lossy(&body)));
            StatusCode::OK
        }
    })))
    .await;
    let target = format!("{}/steal", catcher.url);
    static TARGET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TARGET.set(target).unwrap();
    let redirecting = token_endpoint(|| {
        (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", TARGET.get().unwrap().as_str())],
        )
            .into_response()
    })
    .await;
    let db = TestDb::sqlite().await;
    let app = spawn_app(test_config(
        &db.url,
        &[
            ("RELAY365_LOGIN_URL", &redirecting.url),
            ("AUTH_SERVICE_URL", &redirecting.url),
            ("SERVICE_SECRET", "the-service-secret"),
        ],
    ))
    .await;
    let sources = [
        json!({"kind": "refresh_token", "tenant_id": "t", "client_id": "c", "client_secret": "the-client-secret", "refresh_token": "the-refresh-token"}),
        json!({"kind": "client_credentials", "tenant_id": "t", "client_id": "c", "client_secret": "the-client-secret"}),
        json!({"kind": "auth_service"}),
    ];
    for source in sources {
        let id = create_credential(&app, source.clone()).await;
        let got =
            tokio::time::timeout(Duration::from_secs(10), credential::session(&app.deps, &id))
                .await
                .expect("the credential did not answer");
        assert!(got.is_err(), "{source}: a redirect is not a token");
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn readiness_reasons_name_no_internals() {
    let db = TestDb::sqlite().await;
    // The actors that need the store fail once it is closed: the tree keeps restarting them
    // rather than giving up, so that the server stays up to answer.
    let app = spawn_app(test_config(
        &db.url,
        &[
            ("RELAY365_MAX_RESTARTS", "1000000"),
            ("RELAY365_RESTART_BACKOFF_MS", "200"),
        ],
    ))
    .await;
    app.deps.store.close().await;
    let res = reqwest::get(format!("{}/readyz", app.url())).await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    // The store's own error text ("pool closed", file names, hosts) goes to the log only.
    let reasons: Vec<&str> = body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(reasons[0], "store: not answering (see the log)", "{body}");
    assert!(
        reasons
            .iter()
            .all(|r| !r.contains("pool") && !r.contains(".db")),
        "{body}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_key_only_loopback_hosts_reach_the_api() {
    let db = TestDb::sqlite().await;
    let app = spawn_app(test_config(&db.url, &[])).await;
    let client = reqwest::Client::new();
    for (host, want) in [
        ("evil.example", 403),
        ("evil.example:8000", 403),
        ("127.0.0.1.evil.example", 403),
        ("localhost:8000", 200),
        ("127.0.0.1", 200),
        ("[::1]:8000", 200),
    ] {
        let res = client
            .get(format!("{}/api/credentials", app.url()))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), want, "{host}");
        let body: Value = res.json().await.unwrap();
        if want == 403 {
            assert_eq!(body["error"]["code"], "forbidden");
        }
    }
    // The public routes stay open to any Host: Graph calls them by the public name.
    let res = client
        .post(format!("{}/api/ms365/webhook?validationToken=t", app.url()))
        .header("host", "relay.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_key_is_checked_whole() {
    let db = TestDb::sqlite().await;
    let key = "k3y-that-is-long-enough";
    let app = spawn_app(test_config(&db.url, &[("RELAY365_API_KEY", key)])).await;
    let client = reqwest::Client::new();
    for (given, want) in [
        (key, 200),
        ("k3y", 401),
        ("", 401),
        ("k3y-that-is-long-enough!", 401),
    ] {
        let res = client
            .get(format!("{}/api/credentials", app.url()))
            .bearer_auth(given)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), want, "{given:?}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn every_error_answer_is_the_json_error() {
    let db = TestDb::sqlite().await;
    let app = spawn_app(test_config(&db.url, &[])).await;
    let client = reqwest::Client::new();
    let base = app.url();
    let cases = [
        (client.get(format!("{base}/api/credentials/%FF")), 400, None),
        (
            client.put(format!("{base}/api/ms365/webhook")),
            405,
            Some("GET,HEAD,POST"),
        ),
        (
            client.delete(format!("{base}/healthz")),
            405,
            Some("GET,HEAD"),
        ),
        (client.get(format!("{base}/no/such/route")), 404, None),
        (
            client
                .post(format!("{base}/api/credentials"))
                .header("content-type", "application/json")
                .body("{"),
            400,
            None,
        ),
    ];
    for (req, want, allow) in cases {
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), want);
        if let Some(allow) = allow {
            let got = res.headers()["allow"].to_str().unwrap().replace(' ', "");
            let mut got: Vec<&str> = got.split(',').collect();
            got.sort_unstable();
            assert_eq!(got.join(","), allow);
        }
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "application/json"
        );
        let body: Value = res.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    app.stop().await.unwrap();
}

/// PostgreSQL's text holds no NUL character: one in a URL or a JSON string (found by fuzzing
/// the API on PostgreSQL) is bad input, answered 400 on both stores, never a 500 or a 503.
#[tokio::test]
async fn a_nul_character_is_bad_input_on_both_stores() {
    on_every_store!(|db| {
        let app = spawn_app(test_config(&db.url, &[])).await;
        let base = app.url();
        let http = reqwest::Client::new();
        for path in [
            "/api/credentials/%00",
            "/api/ms365/subscriptions/%00",
            "/api/events/%00",
            "/api/events?before=x%00",
        ] {
            let res = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(res.status(), 400, "{} GET {path}", db.label);
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "bad_request", "{path}");
        }
        for (path, body) in [
            (
                "/api/credentials",
                r#"{"name": "a\u0000b", "token_source": {"kind": "static", "access_token": "x"}}"#,
            ),
            ("/api/targets", r#"{"url": "http://a.example/\u0000"}"#),
            ("/api/ms365/subscriptions", r#"{"credential_id": "\u0000"}"#),
            (
                "/api/ms365/webhook",
                r#"{"value": [{"subscriptionId": "\u0000", "clientState": "x", "changeType": "created", "resource": "r"}]}"#,
            ),
        ] {
            let res = http
                .post(format!("{base}{path}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 400, "{} POST {path}", db.label);
            let answer: Value = res.json().await.unwrap();
            assert!(
                answer["error"]["message"].as_str().unwrap().contains("NUL"),
                "{path}: {answer}"
            );
        }
        // Nothing of it was stored.
        let (_, list) = support::api::call(
            reqwest::Method::GET,
            format!("{base}/api/credentials"),
            None,
        )
        .await;
        assert_eq!(list["credentials"], json!([]));
        app.stop().await.unwrap();
        db.cleanup().await;
    });
}
