//! A local stand-in for n8n: an HTTP server that records every delivery it receives and
//! answers as told, per path: `/ok` answers 200; `/flaky/{n}` answers 500 to the first `n`
//! attempts of each `webhook-id`, then 200; `/down` answers 500 until [`Sink::recover`] is
//! called, then 200; `/hold` records the first request of each `webhook-id` at once but
//! answers it (200) only when [`Sink::release`] is called, and answers later ones at once;
//! `/slow/{ms}` answers 200 after that many milliseconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

use super::LocalServer;

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
    pub status: u16,
    pub at: std::time::Instant,
}

impl Received {
    pub fn webhook_id(&self) -> &str {
        self.headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the body is JSON")
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

struct SinkState {
    received: Vec<Received>,
    recovered: bool,
    released: tokio::sync::watch::Receiver<bool>,
}

/// The running sink.
pub struct Sink {
    server: LocalServer,
    state: Arc<Mutex<SinkState>>,
    release: tokio::sync::watch::Sender<bool>,
}

async fn receive(
    State(state): State<Arc<Mutex<SinkState>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    // `slow/{ms}`: a target that takes that long to answer.
    let slow = match path.split_once('/') {
        Some(("slow", ms)) => ms.parse().ok().map(Duration::from_millis),
        _ => None,
    };
    let (status, held, mut released) = record(&state, path, headers, body);
    if held {
        let _ = released.wait_for(|r| *r).await;
    }
    if let Some(wait) = slow {
        tokio::time::sleep(wait).await;
    }
    status
}

/// Records a request and decides its answer: (status, whether to hold it, the release).
fn record(
    state: &Mutex<SinkState>,
    path: String,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, bool, tokio::sync::watch::Receiver<bool>) {
    let mut st = state.lock().unwrap();
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let seen = st
        .received
        .iter()
        .filter(|r| r.path == path && r.webhook_id() == id)
        .count();
    let held = path == "hold" && seen == 0;
    let status = match path.split('/').collect::<Vec<_>>().as_slice() {
        ["ok" | "hold"] | ["slow", _] => StatusCode::OK,
        ["flaky", n] if seen < n.parse().unwrap_or(0) => StatusCode::INTERNAL_SERVER_ERROR,
        ["flaky", _] => StatusCode::OK,
        ["down"] if !st.recovered => StatusCode::INTERNAL_SERVER_ERROR,
        ["down"] => StatusCode::NO_CONTENT,
        _ => StatusCode::NOT_FOUND,
    };
    st.received.push(Received {
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        status: status.as_u16(),
        at: std::time::Instant::now(),
    });
    (status, held, st.released.clone())
}

impl Sink {
    pub async fn start() -> Sink {
        let (release, released) = tokio::sync::watch::channel(false);
        let state = Arc::new(Mutex::new(SinkState {
            received: Vec::new(),
            recovered: false,
            released,
        }));
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(state.clone());
        Sink {
            server: LocalServer::start(app).await,
            state,
            release,
        }
    }

    /// The URL of a path of this sink (`ok`, `flaky/3`, `down`, `hold`, `slow/700`).
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.server.url)
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// The requests to `path` that were answered 2xx.
    pub fn delivered(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path && r.ok())
            .collect()
    }

    /// Attempts per webhook-id at `path`.
    pub fn attempts(&self, path: &str) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for r in self.received().iter().filter(|r| r.path == path) {
            *m.entry(r.webhook_id().to_string()).or_default() += 1;
        }
        m
    }

    /// The requests `/hold` holds are answered now, and later ones at once.
    pub fn release(&self) {
        let _ = self.release.send(true);
    }

    /// `/down` answers 2xx from now on.
    pub fn recover(&self) {
        self.state.lock().unwrap().recovered = true;
    }
}
