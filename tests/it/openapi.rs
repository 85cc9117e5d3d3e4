//! `GET /openapi.json` against SPEC §3 and against the router that serves it: every route of
//! the SPEC is described, nothing else is, every described operation reaches a handler, and
//! a described path takes no method the description does not list.
use crate::support;

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;
use support::api::call;
use support::{spawn_app, test_config, TestDb};

/// SPEC §3, route by route (the debug routes only with `RELAY365_DEBUG_ENDPOINTS=true`).
const SPEC_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/ms365/webhook"),
    ("GET", "/api/ms365/webhook"),
    ("POST", "/api/ms365/lifecycle"),
    ("GET", "/api/ms365/lifecycle"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/status"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("POST", "/api/credentials"),
    ("GET", "/api/credentials"),
    ("GET", "/api/credentials/{id}"),
    ("DELETE", "/api/credentials/{id}"),
    ("POST", "/api/ms365/subscriptions"),
    ("GET", "/api/ms365/subscriptions"),
    // `{credential_id}` in SPEC: one path, whose DELETE takes a subscription id.
    ("GET", "/api/ms365/subscriptions/{id}"),
    ("PATCH", "/api/ms365/subscriptions/{id}/renew"),
    ("DELETE", "/api/ms365/subscriptions/{id}"),
    ("GET", "/api/events"),
    ("GET", "/api/events/{id}"),
    ("POST", "/api/events/{id}/replay"),
    ("POST", "/api/targets"),
    ("GET", "/api/targets"),
    ("DELETE", "/api/targets/{id}"),
    ("GET", "/api/deliveries"),
    ("POST", "/api/deliveries/{id}/retry"),
    ("POST", "/api/primitives/email/parse"),
    ("POST", "/api/primitives/email/classify"),
    ("POST", "/api/primitives/document/extract"),
];

const DEBUG_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/debug/actors/{name}/fail"),
    // Not in SPEC: the receiver's own crash test (tests/receiver.rs).
    ("POST", "/api/debug/receiver/panic-next-commit"),
];

/// The routes that need no key.
const OPEN: &[&str] = &[
    "/api/ms365/webhook",
    "/api/ms365/lifecycle",
    "/healthz",
    "/readyz",
    "/openapi.json",
];

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The (method, path) of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if METHODS.contains(&method.to_uppercase().as_str()) {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

fn set(routes: &[&[(&str, &str)]]) -> BTreeSet<(String, String)> {
    routes
        .iter()
        .flat_map(|r| r.iter())
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

/// The path with every `{param}` filled in.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        out.push_str("0190a0b2-0000-7000-8000-000000000000");
        rest = &rest[rest[at..].find('}').unwrap() + at + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether the router answered as if it had no such route (the fallback, or a 405).
fn unrouted(status: u16, body: &Value) -> bool {
    status == 405 || (status == 404 && body["error"]["message"] == "no such route")
}

#[tokio::test]
async fn the_description_is_the_spec_and_the_router() {
    let db = TestDb::sqlite().await;
    let app = spawn_app(test_config(&db.url, &[])).await;
    let base = app.url();
    let (status, doc) = call(Method::GET, format!("{base}/openapi.json"), None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    // No route of the SPEC missing, none extra.
    let described = operations(&doc);
    let expected = set(&[SPEC_ROUTES, DEBUG_ROUTES]);
    let missing: Vec<_> = expected.difference(&described).collect();
    let extra: Vec<_> = described.difference(&expected).collect();
    assert!(missing.is_empty(), "not described: {missing:?}");
    assert!(extra.is_empty(), "described but not in SPEC: {extra:?}");

    let mut ids = BTreeSet::new();
    for (method, path) in &described {
        let op = &doc["paths"][path][method.to_lowercase()];
        let id = op["operationId"].as_str().unwrap();
        assert!(ids.insert(id.to_string()), "operationId {id} twice");
        // Every operation reaches a handler.
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, body) = call(m, format!("{base}{}", concrete(path)), None).await;
        assert!(!unrouted(status, &body), "{method} {path}: {status} {body}");
        // Its answers are described, errors in the one error shape.
        let responses = op["responses"].as_object().unwrap();
        assert!(!responses.is_empty(), "{method} {path}");
        for (code, answer) in responses {
            // A 503 of /readyz is not an error of the request: it is the readiness report.
            let report = path == "/readyz" && code == "503";
            if (code.starts_with('4') || code.starts_with('5')) && !report {
                assert_eq!(
                    answer["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {code}"
                );
            }
        }
        // The key is asked for exactly where the router asks for it.
        let keyed = op["security"][0].get("api_key").is_some();
        assert_eq!(keyed, !OPEN.contains(&path.as_str()), "{method} {path}");
        assert_eq!(keyed, responses.contains_key("401"), "{method} {path}");
    }

    // A described path takes no method the description does not list.
    let paths: BTreeSet<&String> = described.iter().map(|(_, p)| p).collect();
    for path in paths {
        for method in METHODS {
            if described.contains(&(method.to_string(), path.clone())) {
                continue;
            }
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let (status, _) = call(m, format!("{base}{}", concrete(path)), None).await;
            assert_eq!(status, 405, "{method} {path} is not described");
        }
    }

    // The error shape is a component.
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], serde_json::json!(["error"]));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn without_debug_endpoints_they_are_neither_described_nor_routed() {
    let db = TestDb::sqlite().await;
    let app = spawn_app(test_config(
        &db.url,
        &[("RELAY365_DEBUG_ENDPOINTS", "false")],
    ))
    .await;
    let base = app.url();
    let (_, doc) = call(Method::GET, format!("{base}/openapi.json"), None).await;
    assert_eq!(operations(&doc), set(&[SPEC_ROUTES]));
    for (method, path) in DEBUG_ROUTES {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, body) = call(m, format!("{base}{}", concrete(path)), None).await;
        assert!(unrouted(status, &body), "{path}: {status}");
    }
    app.stop().await.unwrap();
}
