//! The pieces the end-to-end tests share: the Graph simulator on a free port, and a JSON
//! client for the service's API.

use relay365::sim::{SimConfig, SimHandle, Simulator};
use serde_json::Value;

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
