//! `examples/n8n/` (issue 14, point 5): each workflow is JSON n8n 1.x imports (nodes with id,
//! name, type, typeVersion, position, parameters; connections by node name), with the node
//! types and connections docs/n8n.md says it has. The signature check of the Code node is run
//! with Node.js (when `node` is on PATH) against deliveries signed by the `standardwebhooks`
//! crate: a valid one passes, a tampered or stale one does not.
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::{json, Value};

fn load(name: &str) -> Value {
    let path = format!("{}/examples/n8n/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// A connection: from node, its output, to node.
type Edge = (String, usize, String);

/// Checks the shape n8n imports and answers the nodes by name and the edges (from, output,
/// to).
fn check(w: &Value) -> (BTreeMap<String, Value>, BTreeSet<Edge>) {
    assert!(w["name"].as_str().is_some_and(|n| !n.is_empty()));
    let mut nodes = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for n in w["nodes"].as_array().expect("nodes") {
        let name = n["name"].as_str().expect("name").to_string();
        assert!(
            n["type"].as_str().unwrap().starts_with("n8n-nodes-base."),
            "{name}"
        );
        assert!(n["typeVersion"].is_number(), "{name}");
        assert!(n["parameters"].is_object(), "{name}");
        let pos = n["position"].as_array().expect("position");
        assert!(pos.len() == 2 && pos.iter().all(Value::is_number), "{name}");
        assert!(
            ids.insert(n["id"].as_str().expect("id").to_string()),
            "{name}: id twice"
        );
        assert!(
            nodes.insert(name.clone(), n.clone()).is_none(),
            "{name} twice"
        );
    }
    let mut edges = BTreeSet::new();
    for (from, outputs) in w["connections"].as_object().expect("connections") {
        assert!(
            nodes.contains_key(from),
            "connection from unknown node {from}"
        );
        for (out, targets) in outputs["main"].as_array().expect("main").iter().enumerate() {
            for t in targets.as_array().unwrap() {
                let to = t["node"].as_str().unwrap();
                assert!(nodes.contains_key(to), "{from} → unknown node {to}");
                assert_eq!(t["type"], "main");
                assert_eq!(t["index"], 0);
                edges.insert((from.clone(), out, to.to_string()));
            }
        }
    }
    // Every node but the trigger is reached.
    let reached: BTreeSet<&str> = edges.iter().map(|(_, _, to)| to.as_str()).collect();
    let triggers: Vec<&String> = nodes
        .keys()
        .filter(|n| !reached.contains(n.as_str()))
        .collect();
    assert_eq!(
        triggers.len(),
        1,
        "one trigger, everything else connected: {triggers:?}"
    );
    (nodes, edges)
}

fn types(nodes: &BTreeMap<String, Value>) -> BTreeSet<String> {
    nodes
        .values()
        .map(|n| n["type"].as_str().unwrap().to_string())
        .collect()
}

fn edge(from: &str, out: usize, to: &str) -> Edge {
    (from.into(), out, to.into())
}

fn is_header_auth_webhook(n: &Value) {
    assert_eq!(n["type"], "n8n-nodes-base.webhook");
    assert_eq!(n["parameters"]["httpMethod"], "POST");
    assert_eq!(n["parameters"]["authentication"], "headerAuth");
    assert!(n["credentials"]["httpHeaderAuth"]["name"].is_string());
    assert!(n["webhookId"].is_string());
}

#[test]
fn route_by_intent_branches_on_the_classified_intent() {
    let w = load("route-by-intent.json");
    let (nodes, edges) = check(&w);
    is_header_auth_webhook(&nodes["relay365 event"]);
    let switch = &nodes["Route by intent"];
    assert_eq!(switch["type"], "n8n-nodes-base.switch");
    let rules = switch["parameters"]["rules"]["values"].as_array().unwrap();
    // Only intents relay365 produces (SPEC §3, primitives/email/classify).
    let known = [
        "request",
        "question",
        "meeting",
        "invoice",
        "order",
        "complaint",
        "notification",
        "newsletter",
        "auto_reply",
        "other",
    ];
    for r in rules {
        let c = &r["conditions"]["conditions"][0];
        assert_eq!(
            c["leftValue"],
            "={{ $json.body.primitives.classify.intent }}"
        );
        assert_eq!(
            c["operator"],
            json!({"type": "string", "operation": "equals"})
        );
        assert!(known.contains(&c["rightValue"].as_str().unwrap()), "{c}");
        assert_eq!(r["outputKey"], c["rightValue"]);
    }
    assert_eq!(switch["parameters"]["options"]["fallbackOutput"], "extra");
    assert!(edges.contains(&edge("relay365 event", 0, "Route by intent")));
    // One output per rule and the fallback, each to its own node.
    let outs: BTreeSet<usize> = edges
        .iter()
        .filter(|(from, _, _)| from == "Route by intent")
        .map(|(_, out, _)| *out)
        .collect();
    assert_eq!(outs, (0..=rules.len()).collect());
    assert!(edges.contains(&edge("Route by intent", 0, "Invoice: to accounting")));
    assert!(edges.contains(&edge("Route by intent", rules.len(), "Everything else")));
}

#[test]
fn verify_signature_checks_before_acting() {
    let w = load("verify-signature.json");
    let (nodes, edges) = check(&w);
    let hook = &nodes["relay365 signed event"];
    is_header_auth_webhook(hook);
    assert_eq!(
        hook["parameters"]["options"]["rawBody"], true,
        "the exact bytes"
    );
    assert_eq!(hook["parameters"]["responseMode"], "responseNode");
    assert_eq!(nodes["Verify signature"]["type"], "n8n-nodes-base.code");
    assert_eq!(nodes["Signature valid?"]["type"], "n8n-nodes-base.if");
    for (name, code) in [("Accept (204)", 204), ("Reject (401)", 401)] {
        assert_eq!(nodes[name]["type"], "n8n-nodes-base.respondToWebhook");
        assert_eq!(nodes[name]["parameters"]["options"]["responseCode"], code);
    }
    for e in [
        edge("relay365 signed event", 0, "Verify signature"),
        edge("Verify signature", 0, "Signature valid?"),
        edge("Signature valid?", 0, "Accept (204)"),
        edge("Signature valid?", 1, "Reject (401)"),
        edge("Accept (204)", 0, "Act on the event"),
    ] {
        assert!(edges.contains(&e), "{e:?}");
    }
    // Nothing acts on an unverified event: the only way to "Act on the event" is through the
    // true branch.
    let into_act: Vec<_> = edges
        .iter()
        .filter(|(_, _, to)| to == "Act on the event")
        .collect();
    assert_eq!(into_act.len(), 1);
}

#[test]
fn primitives_calls_parse_and_classify_with_the_api_key() {
    let w = load("primitives.json");
    let (nodes, edges) = check(&w);
    assert_eq!(
        types(&nodes),
        [
            "n8n-nodes-base.code",
            "n8n-nodes-base.httpRequest",
            "n8n-nodes-base.manualTrigger"
        ]
        .map(String::from)
        .into()
    );
    for (name, path) in [
        ("Parse", "/api/primitives/email/parse"),
        ("Classify", "/api/primitives/email/classify"),
    ] {
        let p = &nodes[name]["parameters"];
        assert_eq!(p["method"], "POST");
        assert!(p["url"].as_str().unwrap().ends_with(path), "{name}");
        assert_eq!(p["genericAuthType"], "httpHeaderAuth");
        assert_eq!(p["specifyBody"], "json");
        assert!(nodes[name]["credentials"]["httpHeaderAuth"].is_object());
    }
    for e in [
        edge("Run it", 0, "Sample mail"),
        edge("Sample mail", 0, "Parse"),
        edge("Parse", 0, "Classify"),
        edge("Classify", 0, "Combine"),
    ] {
        assert!(edges.contains(&e), "{e:?}");
    }
}

/// Runs the "Verify signature" Code node as n8n would: `$input`, `$env`, `require` and
/// `this.helpers.getBinaryDataBuffer` (the raw body).
fn run_code_node(js: &str, secret: &str, body: &[u8], headers: Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code.js");
    let raw = dir.path().join("body.json");
    std::fs::write(&code, js).unwrap();
    std::fs::write(&raw, body).unwrap();
    let harness = r#"
const fs = require('fs');
const [code, bodyFile, headers] = process.argv.slice(1);
const body = fs.readFileSync(bodyFile);
const $input = { all: () => [{ json: { headers: JSON.parse(headers), body: JSON.parse(body) } }] };
const $env = { RELAY365_WEBHOOK_SECRET: process.env.SECRET };
const ctx = { helpers: { getBinaryDataBuffer: async () => body } };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('$input', '$env', 'require', fs.readFileSync(code, 'utf8'))
  .call(ctx, $input, $env, require)
  .then((out) => console.log(JSON.stringify(out)), (e) => { console.error(e); process.exit(1); });
"#;
    let out = Command::new("node")
        .arg("-e")
        .arg(harness)
        .arg(&code)
        .arg(&raw)
        .arg(headers.to_string())
        .env("SECRET", secret)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_code_node_accepts_exactly_the_valid_signatures() {
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("node is not on PATH: skipping the run of the Code node");
        return;
    }
    let w = load("verify-signature.json");
    let (nodes, _) = check(&w);
    let js = nodes["Verify signature"]["parameters"]["jsCode"]
        .as_str()
        .unwrap();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let hook = standardwebhooks::Webhook::new(secret).unwrap();
    // relay365 serialises numbers as 1250.0, which JSON.stringify would not reproduce.
    let body = br#"{"id":"01a23732-e1df-75e9-ac09-a7b6da727daf","type":"message.created","primitives":{"parse":{"amounts":[{"value":1250.0,"currency":"EUR"}]}}}"#;
    let id = "01a23732-e1df-75e9-ac09-a7b6da727daf";
    let now = chrono::Utc::now().timestamp();
    let headers = |ts: i64, sig: &str| json!({"webhook-id": id, "webhook-timestamp": ts.to_string(), "webhook-signature": sig, "content-type": "application/json"});

    let sig = hook.sign(id, now, body).unwrap();
    let ok = run_code_node(js, secret, body, headers(now, &sig));
    assert_eq!(ok[0]["json"]["valid"], true, "{ok}");
    assert_eq!(ok[0]["json"]["event"]["type"], "message.created");
    // Several signatures (a rotation): one valid is enough.
    let rotated = format!("v1,AAAA {sig}");
    let ok = run_code_node(js, secret, body, headers(now, &rotated));
    assert_eq!(ok[0]["json"]["valid"], true, "{ok}");

    let tampered = String::from_utf8_lossy(body).replace("1250.0", "9250.0");
    let tampered = tampered.as_bytes();
    let bad = run_code_node(js, secret, tampered, headers(now, &sig));
    assert_eq!(bad[0]["json"]["valid"], false, "{bad}");
    assert_eq!(bad[0]["json"]["event"], Value::Null);

    let other = standardwebhooks::Webhook::new("whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXkh")
        .unwrap()
        .sign(id, now, body)
        .unwrap();
    let bad = run_code_node(js, secret, body, headers(now, &other));
    assert_eq!(bad[0]["json"]["valid"], false, "{bad}");

    let stale = now - 3600;
    let sig = hook.sign(id, stale, body).unwrap();
    let bad = run_code_node(js, secret, body, headers(stale, &sig));
    assert_eq!(bad[0]["json"]["valid"], false, "{bad}");
    assert!(bad[0]["json"]["reason"]
        .as_str()
        .unwrap()
        .contains("timestamp"));
}
