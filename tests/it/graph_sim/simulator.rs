//! The simulator's own behaviour: granted lifetimes run out, the control API over HTTP, and
//! the URL forms Microsoft's SDKs send (`delta()`, a percent-encoded UPN) on every route.

use super::*;
#[tokio::test]
async fn short_granted_lifetimes_expire_subscriptions() {
    let sim = start(SimConfig {
        granted_lifetime: Some(Duration::from_millis(400)),
        sweep_interval: Duration::from_millis(50),
        ..quick_config()
    })
    .await;
    let (base, _receiver) = Receiver::start().await;
    let graph = client(&sim);
    let token = app_token(&sim).await;
    let sub = graph
        .create_subscription(
            &token,
            &new_sub(&base, &format!("users/{ALICE}/messages"), 4000),
        )
        .await
        .unwrap();
    assert!(sub.expiration_date_time < Utc::now() + chrono::Duration::seconds(1));
    // The simulator's sweep removes it once its lifetime is over (waited for, not slept).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !sim.sim().subscriptions().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the subscription never expired"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = graph
        .renew_subscription(&token, &sub.id, Utc::now() + chrono::Duration::hours(1))
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::NotFound { .. }));
    sim.shutdown().await;
}

#[tokio::test]
async fn adopted_subscriptions_renew_and_lapse_and_their_writes_are_counted_per_window() {
    let sim = start(SimConfig {
        sweep_interval: Duration::from_millis(50),
        ..quick_config()
    })
    .await;
    let http = reqwest::Client::new();
    let ctl = sim.control_url();
    let seed = |id: &str, ms: i64| {
        json!({"id": id, "mailbox": ALICE, "resource": format!("me/mailFolders('f-{id}')/messages"),
            "notification_url": "http://127.0.0.1:9/hook", "client_state": "cs",
            "expiration_date_time": Utc::now() + chrono::Duration::milliseconds(ms)})
    };
    let r = http
        .post(format!("{ctl}/subscriptions"))
        .json(&json!([
            seed("long-1", 3_600_000),
            seed("long-2", 3_600_000),
            seed("short", 300)
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let ids: Value = r.json().await.unwrap();
    assert_eq!(ids["subscriptions"], json!(["long-1", "long-2", "short"]));
    // Refused: an unknown mailbox, an expiry that has passed, an id in use; nothing stored.
    let mut unknown = seed("x", 60_000);
    unknown["mailbox"] = json!("nobody@sim.test");
    for (body, status) in [
        (json!([seed("y", 60_000), unknown]), 404),
        (seed("past", -1), 400),
        (seed("long-1", 60_000), 400),
    ] {
        let r = http
            .post(format!("{ctl}/subscriptions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{body}");
    }
    let long = sim.sim().subscriptions();
    assert_eq!(long.len(), 3);
    assert_eq!(long[0].folder.as_deref(), Some("f-long-1"));

    // Renewed twice with an app token: two writes for Alice's mailbox in one window.
    let (graph, token) = (client(&sim), app_token(&sim).await);
    for _ in 0..2 {
        graph
            .renew_subscription(&token, "long-1", Utc::now() + chrono::Duration::hours(2))
            .await
            .unwrap();
    }
    assert_eq!(sim.sim().max_subscription_writes(ALICE), 2);
    assert_eq!(sim.sim().max_subscription_writes("bob@sim.test"), 0);
    // The short one lapses, and is counted as expired.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sim.sim().subscription_counts().expired == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let counts = sim.sim().subscription_counts();
    assert_eq!(
        (counts.live, counts.renewed, counts.renewals, counts.expired),
        (2, 1, 2, 1)
    );
    let state: Value = http
        .get(format!("{ctl}/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["subscription_counts"]["expired"], 1);
    assert_eq!(state["max_subscription_writes"][ALICE], 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn control_api_over_http() {
    let sim = start(quick_config()).await;
    let http = reqwest::Client::new();
    let ctl = sim.control_url();
    let r = http
        .post(format!("{ctl}/mailboxes/{ALICE}/messages"))
        .json(&json!({"subject": "via curl"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message_ids"].as_array().unwrap().len(), 1);
    let r = http
        .post(format!("{ctl}/mailboxes/nobody@x/messages"))
        .json(&json!({"subject": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .post(format!("{ctl}/faults"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{ctl}/faults"))
        .json(&json!({"kind": "latency"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{ctl}/refresh-tokens"))
        .json(&json!({"mailbox": ALICE}))
        .send()
        .await
        .unwrap();
    let rt: Value = r.json().await.unwrap();
    assert!(rt["refresh_token"].as_str().unwrap().starts_with("sim-rt."));
    let state: Value = http
        .get(format!("{ctl}/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["mailboxes"].as_array().unwrap().len(), 2);
    assert_eq!(
        http.post(format!("{ctl}/reset"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let msgs: Value = http
        .get(format!("{ctl}/mailboxes/{ALICE}/messages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(msgs["messages"].as_array().unwrap().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn the_sdk_forms_delta_function_and_percent_encoded_upn_work_on_every_route() {
    let sim = start(quick_config()).await;
    let (url, _hooks) = Receiver::start().await;
    let token = app_token(&sim).await;
    let http = reqwest::Client::new();
    let id = sim
        .sim()
        .deliver(ALICE, vec![mail("sdk")])
        .await
        .unwrap()
        .message_ids[0]
        .clone();
    let encoded = ALICE.replace('@', "%40");
    let base = sim.base_url();
    let get = |path: String| {
        let req = http.get(format!("{base}/{path}")).bearer_auth(&token);
        async move {
            let res = req.send().await.unwrap();
            (
                res.status().as_u16(),
                res.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    for user in [ALICE.to_string(), encoded.clone()] {
        for delta in ["delta", "delta()"] {
            let (s, page) = get(format!(
                "users/{user}/mailFolders('inbox')/messages/{delta}"
            ))
            .await;
            assert_eq!(s, 200, "{user} {delta}: {page}");
            assert_eq!(page["value"][0]["id"], id.as_str());
            // The links it gives are followed as they are.
            let link = page["@odata.deltaLink"].as_str().unwrap().to_string();
            let (s, _) = get(link.trim_start_matches(&format!("{base}/")).to_string()).await;
            assert_eq!(s, 200, "{link}");
            let (s, _) = get(format!("users/{user}/mailFolders/inbox/messages/{delta}")).await;
            assert_eq!(s, 200);
        }
        let (s, m) = get(format!("users/{user}/messages/{}", id.replace('=', "%3D"))).await;
        assert_eq!((s, m["id"].as_str()), (200, Some(id.as_str())), "{user}");
        let (s, _) = get(format!("users/{user}/messages/{id}/attachments")).await;
        assert_eq!(s, 200, "{user}");
    }
    // A subscription whose resource names the mailbox percent-encoded.
    let sub = client(&sim)
        .create_subscription(
            &token,
            &new_sub(
                &url,
                &format!("users/{encoded}/mailFolders('inbox')/messages"),
                60,
            ),
        )
        .await
        .unwrap();
    assert!(sim
        .sim()
        .subscriptions()
        .iter()
        .any(|s| s.id == sub.id && s.mailbox == ALICE));
}
