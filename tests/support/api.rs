//! The pieces the end-to-end tests share: the Graph simulator on a free port, and a JSON
//! client for the service's API.

use relay365::sim::{SimConfig, SimHandle, Simulator};
use serde_json::{json, Value};

/// The simulator with `cfg`, on a free loopback port, sending each notification once (no
/// retries, so a test sees exactly what it caused).
pub async fn sim_with(cfg: SimConfig) -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(
        SimConfig {
            notification_retries: 0,
            ..cfg
        },
        listener,
    )
    .await
    .unwrap()
}

/// The simulator with its defaults (see [`sim_with`]).
pub async fn sim() -> SimHandle {
    sim_with(SimConfig::default()).await
}

/// One API call: the status and the JSON answer (`null` when there is none).
pub async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// `POST {base}{path}` with a JSON body.
pub async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    call(reqwest::Method::POST, format!("{base}{path}"), Some(body)).await
}

/// `GET {base}{path}`'s JSON, whatever the status.
pub async fn get_any(base: &str, path: &str) -> Value {
    call(reqwest::Method::GET, format!("{base}{path}"), None)
        .await
        .1
}

/// A credential for `mailbox` with the simulator's app registration, created through
/// `cred_via`, and a subscription to its inbox created through `sub_via` (another instance,
/// or the same base URL); answers (credential id, subscription id).
pub async fn mailbox(
    cred_via: &str,
    sub_via: &str,
    sim: &SimHandle,
    mailbox: &str,
    change_types: &[&str],
) -> (String, String) {
    let c = sim.sim().config();
    let (s, cred) = post(
        cred_via,
        "/api/credentials",
        json!({"name": mailbox, "mailbox": mailbox, "token_source": {"kind": "client_credentials", "tenant_id": c.tenant, "client_id": c.client_id, "client_secret": c.client_secret}}),
    )
    .await;
    assert_eq!(s, 201, "{cred}");
    let cred = cred["id"].as_str().unwrap().to_string();
    let (s, sub) = post(
        sub_via,
        "/api/ms365/subscriptions",
        json!({"credential_id": cred, "change_types": change_types}),
    )
    .await;
    assert_eq!(s, 201, "{sub}");
    (cred, sub["id"].as_str().unwrap().to_string())
}
