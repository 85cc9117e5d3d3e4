//! `relay365 status`: the status tree of a running instance, for a person.

use std::fmt::Write;

use anyhow::Context;
use serde_json::Value;

/// Fetches `{base}/status` and renders it as an indented tree.
pub async fn fetch_and_render(base: &str, api_key: Option<&str>) -> anyhow::Result<String> {
    let url = format!("{}/status", base.trim_end_matches('/'));
    let mut req = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .get(&url)
        .timeout(std::time::Duration::from_secs(10));
    if let Some(key) = api_key {
        req = req.bearer_auth(key);
    }
    let res = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let code = res.status();
    if !code.is_success() {
        anyhow::bail!("{url} answered {code}");
    }
    let body: Value = res.json().await.context("the status is not JSON")?;
    Ok(render(&body))
}

/// Renders a `/status` document as text.
pub fn render(status: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "relay365 {}  status: {}  up {}s",
        status["version"].as_str().unwrap_or("?"),
        status["status"].as_str().unwrap_or("?"),
        status["uptime_seconds"].as_i64().unwrap_or(0)
    );
    if let Some(instances) = status["instances"].as_array().filter(|a| a.len() > 1) {
        let _ = writeln!(out, "instances sharing the store:");
        for i in instances {
            let _ = writeln!(
                out,
                "  {}{}  {}  {}  last heartbeat {}",
                i["id"].as_str().unwrap_or("?"),
                if i["self"] == true { " (this one)" } else { "" },
                i["address"].as_str().unwrap_or("?"),
                if i["alive"] == true { "alive" } else { "gone" },
                i["last_heartbeat_at"].as_str().unwrap_or("?"),
            );
        }
    }
    if let Some(root) = status.get("root").filter(|r| !r.is_null()) {
        node(&mut out, root, "", true, true);
    }
    out
}

fn node(out: &mut String, n: &Value, prefix: &str, last: bool, top: bool) {
    let branch = if top {
        ""
    } else if last {
        "└── "
    } else {
        "├── "
    };
    let mut line = format!(
        "{prefix}{branch}{}  [{}] {}",
        n["name"].as_str().unwrap_or("?"),
        n["kind"].as_str().unwrap_or("?"),
        n["state"].as_str().unwrap_or("?")
    );
    let restarts = n["restarts"].as_u64().unwrap_or(0);
    if restarts > 0 {
        let _ = write!(line, "  restarts={restarts}");
    }
    if let Some(info) = n["info"].as_object().filter(|i| !i.is_empty()) {
        let parts: Vec<String> = info.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = write!(line, "  {}", parts.join(" "));
    }
    if let Some(reason) = n["last_failure"]["reason"].as_str() {
        let _ = write!(line, "  last failure: {reason}");
    }
    let _ = writeln!(out, "{line}");
    let child_prefix = if top {
        String::new()
    } else {
        format!("{prefix}{}", if last { "    " } else { "│   " })
    };
    if let Some(children) = n["children"].as_array() {
        for (i, c) in children.iter().enumerate() {
            node(out, c, &child_prefix, i + 1 == children.len(), false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::render;
    use serde_json::json;

    #[test]
    fn instances_sharing_the_store_are_listed_with_their_heartbeat() {
        let s = json!({
            "version": "0.1.0", "status": "ok", "uptime_seconds": 3,
            "instances": [
                {"id": "a", "self": true, "address": "10.0.0.1:8000", "alive": true, "last_heartbeat_at": "2026-12-02T10:00:00Z"},
                {"id": "b", "self": false, "address": "10.0.0.2:8000", "alive": false, "last_heartbeat_at": "2026-12-02T09:58:00Z"}
            ],
            "root": {"name": "root", "kind": "supervisor", "state": "running", "children": []}
        });
        let text = render(&s);
        assert!(
            text.contains("a (this one)  10.0.0.1:8000  alive"),
            "{text}"
        );
        assert!(
            text.contains("b  10.0.0.2:8000  gone  last heartbeat 2026-12-02T09:58:00Z"),
            "{text}"
        );
        // One instance alone: no list.
        let alone = json!({"instances": [{"id": "a", "self": true, "alive": true}]});
        assert!(!render(&alone).contains("instances sharing"));
    }
}
