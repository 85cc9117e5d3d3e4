//! The events API (SPEC §3.3) over what the receiver stored: list, filters, pages, one event.

use super::*;

#[tokio::test]
async fn the_events_api_lists_filters_pages_and_shows() {
    on_every_store!(|db| {
        let (app, store, sub) = start(&db, &[]).await;
        let base = app.url();
        for i in 0..5 {
            let r = post(
                &base,
                "/api/ms365/webhook",
                &change(&sub, &format!("m-{i}")),
            )
            .await;
            assert_eq!(r.status(), 202);
        }
        let unauth = reqwest::get(format!("{base}/api/events")).await.unwrap();
        assert_eq!(unauth.status(), 401);

        let (code, all) = get_json(&base, "/api/events").await;
        assert_eq!(code, 200);
        let all = all["events"].as_array().unwrap().clone();
        assert_eq!(all.len(), 5);
        let times: Vec<&str> = all
            .iter()
            .map(|e| e["received_at"].as_str().unwrap())
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] >= w[1]),
            "newest first: {times:?}"
        );
        assert!(times.iter().all(|t| t.ends_with('Z')));

        // Paging with the last id as cursor walks every event once.
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) => format!("/api/events?limit=2&before={c}"),
                None => "/api/events?limit=2".to_string(),
            };
            let (code, page) = get_json(&base, &q).await;
            assert_eq!(code, 200);
            let page = page["events"].as_array().unwrap().clone();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 2);
            cursor = Some(page.last().unwrap()["id"].as_str().unwrap().to_string());
            seen.extend(page.into_iter().map(|e| e["id"].clone()));
        }
        assert_eq!(
            seen,
            all.iter().map(|e| e["id"].clone()).collect::<Vec<_>>()
        );

        // The processors work on these events meanwhile (Graph is unreachable here, so none
        // completes): the filter gives exactly the events in each state, whatever they are.
        let ids_of = |v: Value| -> HashSet<String> {
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string())
                .collect()
        };
        let count = |v: Value| v["events"].as_array().unwrap().len();
        let mut by_status = HashSet::new();
        for status in ["pending", "processing", "completed", "skipped", "failed"] {
            let listed = get_json(&base, &format!("/api/events?status={status}"))
                .await
                .1;
            for e in listed["events"].as_array().unwrap() {
                assert_eq!(e["status"], status);
            }
            by_status.extend(ids_of(listed));
        }
        assert!(by_status.len() <= 5);
        assert!(ids_of(get_json(&base, "/api/events?status=completed").await.1).is_empty());
        let mine = format!("/api/events?credential_id={}", sub.credential_id);
        assert_eq!(count(get_json(&base, &mine).await.1), 5);
        // A UUID in another form names the same credential.
        let upper = format!(
            "/api/events?credential_id={}",
            sub.credential_id.to_uppercase()
        );
        assert_eq!(count(get_json(&base, &upper).await.1), 5);
        // A cursor is a position in time: one naming an event retention deleted (or any id
        // newer than all) still pages.
        let gone = format!("/api/events?before={}", new_id());
        assert_eq!(count(get_json(&base, &gone).await.1), 5);
        let first = format!("/api/events?before={}", all[4]["id"].as_str().unwrap());
        assert_eq!(count(get_json(&base, &first).await.1), 0);
        let other = format!("/api/events?credential_id={}", new_id());
        assert_eq!(count(get_json(&base, &other).await.1), 0);
        assert_eq!(
            count(
                get_json(&base, "/api/events?before=2000-01-01T00:00:00Z")
                    .await
                    .1
            ),
            0
        );
        assert_eq!(
            count(
                get_json(&base, "/api/events?before=2999-01-01T00:00:00%2B02:00")
                    .await
                    .1
            ),
            5
        );

        for bad in [
            "limit=0",
            "limit=501",
            "limit=ten",
            "status=done",
            "before=yesterday",
            "credential_id=ops",
        ] {
            let (code, err) = get_json(&base, &format!("/api/events?{bad}")).await;
            assert_eq!(code, 400, "{bad}");
            assert_eq!(err["error"]["code"], "bad_request", "{bad}");
        }

        let id = all[0]["id"].as_str().unwrap();
        let (code, one) = get_json(&base, &format!("/api/events/{id}")).await;
        assert_eq!(code, 200);
        assert_eq!(one["id"], id);
        assert!(["pending", "processing"].contains(&one["status"].as_str().unwrap()));
        assert!(one["deliveries"].as_array().unwrap().is_empty());
        assert_eq!(one["raw_notification"]["clientState"], "***");
        let (code, err) = get_json(&base, &format!("/api/events/{}", new_id())).await;
        assert_eq!(code, 404);
        assert_eq!(err["error"]["code"], "not_found");
        app.stop().await.unwrap();
        store.close().await;
        db.cleanup().await;
    });
}
