//! The store's behaviour, the same on SQLite and on PostgreSQL.

use relay365_actors::store::events::{self, EventFilter, NewEvent};
use relay365_actors::store::status::EventStatus;
use relay365_actors::store::subscriptions::{self, NewSubscription};
use relay365_actors::store::{credentials, new_id, Store, StoreError};
use serde_json::json;

mod batches;

async fn credential(store: &Store) -> String {
    let id = new_id();
    credentials::insert(
        store,
        &id,
        "ops",
        Some("ops@contoso.com"),
        "static",
        &json!({"kind": "static", "access_token": "t"}),
    )
    .await
    .unwrap();
    id
}

fn event(key: &str, sub: &str, at: i64) -> NewEvent {
    NewEvent {
        id: events::event_id(at),
        idempotency_key: key.to_string(),
        kind: "change",
        subscription_id: Some(sub.to_string()),
        credential_id: None,
        change_type: "created".into(),
        resource_id: Some("AAMk".into()),
        raw: r#"{"clientState":"***"}"#.into(),
        received_at: at,
        claim: false,
    }
}

/// A target (of every credential and event type), stored.
async fn stored_target(store: &Store) -> relay365_actors::store::targets::TargetRow {
    use relay365_actors::store::targets::{self, TargetRow};
    let target = TargetRow {
        id: new_id(),
        url: "http://127.0.0.1:9/hook".into(),
        secret: targets::generate_secret(),
        headers: "{}".into(),
        credential_id: None,
        event_types: None,
        created_at: 1,
    };
    targets::insert(store, &target).await.unwrap();
    target
}

#[tokio::test]
async fn migrations_apply_twice_without_harm() {
    on_every_store!(|db| {
        let store = db.store().await;
        store.migrate().await.unwrap();
        store.ping().await.unwrap();
        store.close().await;
        db.cleanup().await;
    });
}

#[tokio::test]
async fn credentials_round_trip() {
    on_every_store!(|db| {
        let store = db.store().await;
        let id = credential(&store).await;
        let got = credentials::get(&store, &id).await.unwrap().unwrap();
        assert_eq!(got.name, "ops", "{}", db.label);
        assert_eq!(got.mailbox.as_deref(), Some("ops@contoso.com"));
        assert_eq!(got.token_source_json().unwrap()["access_token"], "t");
        assert_eq!(got.status, "active");

        credentials::set_status(&store, &id, "degraded", Some("token refused"))
            .await
            .unwrap();
        credentials::set_token_source(&store, &id, &json!({"kind": "static", "access_token": "u"}))
            .await
            .unwrap();
        let got = credentials::get(&store, &id).await.unwrap().unwrap();
        assert_eq!(got.status, "degraded");
        assert_eq!(got.last_error.as_deref(), Some("token refused"));
        assert_eq!(got.token_source_json().unwrap()["access_token"], "u");

        let dup = credentials::insert(&store, &id, "again", None, "static", &json!({})).await;
        assert!(
            matches!(dup, Err(StoreError::Conflict(_))),
            "{}: a second credential with the same id must be refused",
            db.label
        );

        assert_eq!(credentials::list(&store).await.unwrap().len(), 1);
        // Its events: one waiting, one being processed, one completed; and another
        // credential's, waiting.
        let mut batch: Vec<NewEvent> = (0..4).map(|i| event(&format!("d{i}"), "s", 1000)).collect();
        for e in &mut batch[..3] {
            e.credential_id = Some(id.clone());
        }
        let other = credential(&store).await;
        batch[3].credential_id = Some(other.clone());
        events::insert_batch(&store, &batch).await.unwrap();
        let lease = |now| events::Lease {
            owner: "me",
            now,
            ms: 60_000,
        };
        for e in &batch[1..3] {
            events::claim(&store, &e.id, lease(2000))
                .await
                .unwrap()
                .unwrap();
        }
        events::complete(&store, &batch[2].id, "me", "{}", &[], 2100)
            .await
            .unwrap()
            .unwrap();
        assert!(credentials::delete(&store, &id).await.unwrap());
        let status = |i: usize| {
            let store = &store;
            let id = batch[i].id.clone();
            async move {
                let e = events::get(store, &id).await.unwrap().unwrap();
                (e.status, e.last_error, e.lease_owner)
            }
        };
        for i in 0..2 {
            assert_eq!(
                status(i).await,
                (
                    EventStatus::Failed,
                    Some(credentials::CREDENTIAL_DELETED.to_string()),
                    None
                ),
                "{}: a waiting event of a deleted credential ends failed",
                db.label
            );
        }
        assert_eq!(status(2).await.0, EventStatus::Completed);
        assert_eq!(
            status(3).await.0,
            EventStatus::Pending,
            "another credential's"
        );
        // Stored a moment after the delete (its notification checked before it): failed by
        // the hourly housekeeping once no lease holds it, unlike another credential's.
        let mut late = event("d-late", "s", 1000);
        late.credential_id = Some(id.clone());
        events::insert_batch(&store, std::slice::from_ref(&late))
            .await
            .unwrap();
        let mut kept = event("d-kept", "s", 1000);
        kept.credential_id = Some(other);
        events::insert_batch(&store, std::slice::from_ref(&kept))
            .await
            .unwrap();
        events::claim(&store, &late.id, lease(4000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            events::fail_orphans(&store, 5000).await.unwrap(),
            0,
            "{}: not while an attempt holds it",
            db.label
        );
        assert_eq!(events::fail_orphans(&store, 70_000).await.unwrap(), 1);
        let late = events::get(&store, &late.id).await.unwrap().unwrap();
        assert_eq!(
            (late.status, late.last_error.as_deref()),
            (EventStatus::Failed, Some(credentials::CREDENTIAL_DELETED))
        );
        let kept = events::get(&store, &kept.id).await.unwrap().unwrap();
        assert_eq!(kept.status, EventStatus::Pending);
        // The attempt that held the second cannot end it a second time.
        assert!(
            !events::finish(&store, &batch[1].id, "me", EventStatus::Skipped, "x", 3000)
                .await
                .unwrap()
        );
        assert!(!credentials::delete(&store, &id).await.unwrap());
        assert!(credentials::get(&store, &id).await.unwrap().is_none());
        store.close().await;
        db.cleanup().await;
    });
}

#[tokio::test]
async fn subscriptions_round_trip_and_cascade() {
    on_every_store!(|db| {
        let store = db.store().await;
        let cred = credential(&store).await;
        let id = new_id();
        subscriptions::insert(
            &store,
            &NewSubscription {
                id: &id,
                credential_id: &cred,
                external_id: None,
                resource: "me/mailFolders('inbox')/messages",
                change_types: "created",
                notification_url: "https://relay.example.com/api/ms365/webhook",
                lifecycle_url: Some("https://relay.example.com/api/ms365/lifecycle"),
                client_state: "cs-secret",
                status: relay365_actors::store::status::SubscriptionStatus::Active,
                expires_at: None,
                granted_lifetime_ms: None,
                next_renewal_at: None,
            },
        )
        .await
        .unwrap();
        // Without a Graph id it cannot receive notifications yet.
        assert!(
            subscriptions::receivable_page(&store, "", 100)
                .await
                .unwrap()
                .is_empty(),
            "{}",
            db.label
        );

        subscriptions::record_granted(
            &store, &id, "graph-1", 5_000_000, 4_000_000, 3_000_000, false,
        )
        .await
        .unwrap();
        let got = subscriptions::get_by_external(&store, "graph-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.id, id);
        assert_eq!(got.expires_at, Some(5_000_000));
        assert_eq!(got.granted_lifetime_ms, Some(4_000_000));
        // Touched in one statement with ids that do not exist: only the row named changes.
        assert_eq!(got.last_notification_at, None, "{}", db.label);
        subscriptions::touch_notified(&store, &[new_id(), id.clone(), new_id()], 4_242)
            .await
            .unwrap();
        subscriptions::touch_notified(&store, &[], 9_999)
            .await
            .unwrap();
        let touched = subscriptions::get(&store, &id).await.unwrap().unwrap();
        assert_eq!(touched.last_notification_at, Some(4_242), "{}", db.label);
        assert_eq!(got.next_renewal_at, Some(3_000_000));
        assert_eq!(got.last_renewed_at, None);
        assert_eq!(got.client_state, "cs-secret");
        subscriptions::record_granted(
            &store, &id, "graph-1", 6_000_000, 4_000_000, 4_000_000, true,
        )
        .await
        .unwrap();
        assert!(subscriptions::get(&store, &id)
            .await
            .unwrap()
            .unwrap()
            .last_renewed_at
            .is_some());

        assert_eq!(
            subscriptions::receivable_page(&store, "", 100)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            subscriptions::list(&store, Some(&cred))
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            subscriptions::list(&store, Some("other"))
                .await
                .unwrap()
                .len(),
            0
        );
        assert_eq!(subscriptions::list(&store, None).await.unwrap().len(), 1);

        subscriptions::set_status(
            &store,
            &id,
            relay365_actors::store::status::SubscriptionStatus::Removed,
            Some("subscriptionRemoved"),
        )
        .await
        .unwrap();
        assert!(subscriptions::receivable_page(&store, "", 100)
            .await
            .unwrap()
            .is_empty());

        credentials::delete(&store, &cred).await.unwrap();
        assert!(
            subscriptions::get(&store, &id).await.unwrap().is_none(),
            "{}: cascade",
            db.label
        );
        store.close().await;
        db.cleanup().await;
    });
}

#[tokio::test]
async fn event_inserts_are_idempotent() {
    on_every_store!(|db| {
        let store = db.store().await;
        let batch = vec![
            event("s:created:1:e1", "s", 1000),
            event("s:created:2:e1", "s", 1000),
            event("s:created:1:e1", "s", 1000),
        ];
        let added = events::insert_batch(&store, &batch).await.unwrap();
        assert_eq!(
            added.len(),
            2,
            "{}: a key repeated within a batch is stored once",
            db.label
        );
        assert_eq!(added[0].id, batch[0].id);

        let again = vec![
            event("s:created:2:e1", "s", 2000),
            event("s:created:3:e1", "s", 2000),
        ];
        let added = events::insert_batch(&store, &again).await.unwrap();
        assert_eq!(
            added.len(),
            1,
            "{}: a key seen before is a duplicate",
            db.label
        );
        assert_eq!(added[0].id, again[1].id);
        assert!(events::get(&store, &again[0].id).await.unwrap().is_none());

        let all = events::list(
            &store,
            &EventFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(all.len(), 3);
        assert!(events::insert_batch(&store, &[]).await.unwrap().is_empty());

        // Large batches span several statements, in one transaction.
        let many: Vec<NewEvent> = (0..1200)
            .map(|i| event(&format!("m:{i}"), "m", 3000))
            .collect();
        assert_eq!(
            events::insert_batch(&store, &many).await.unwrap().len(),
            1200
        );
        store.close().await;
        db.cleanup().await;
    });
}

#[tokio::test]
async fn the_receivers_writer_inserts_alike_and_reconnects_after_a_lost_connection() {
    on_every_store!(|db| {
        let store = db.store().await;
        // Named apart from the receivers of the tests that run beside this one, whose
        // connections it must not drop.
        let name = format!(
            "{} {}",
            events::WRITER_APPLICATION_NAME,
            uuid::Uuid::new_v4()
        );
        let mut writer = events::Writer::named(&store, &name);
        let batch = vec![
            event("w:created:1:e1", "w", 1000),
            event("w:created:2:e1", "w", 1000),
            event("w:created:1:e1", "w", 1000),
        ];
        let added = writer.insert_batch(&batch, None).await.unwrap();
        assert_eq!(added.len(), 2, "{}", db.label);
        // The writer and the pool see the same keys.
        let again = vec![
            event("w:created:2:e1", "w", 2000),
            event("w:created:3:e1", "w", 2000),
        ];
        assert_eq!(events::insert_batch(&store, &again).await.unwrap().len(), 1);
        assert!(writer.insert_batch(&again, None).await.unwrap().is_empty());
        let many: Vec<NewEvent> = (0..1200)
            .map(|i| event(&format!("wm:{i}"), "w", 3000))
            .collect();
        assert_eq!(writer.insert_batch(&many, None).await.unwrap().len(), 1200);

        if let Store::Postgres(pool) = &store {
            // The database drops the writer's connection: that batch fails (answered 503 by
            // the receiver), the next one goes through on a new connection.
            let killed: Vec<bool> = sqlx::query_scalar(
                "select pg_terminate_backend(pid, 5000) from pg_stat_activity \
                 where application_name = $1",
            )
            .bind(&name)
            .fetch_all(pool)
            .await
            .unwrap();
            assert_eq!(killed, vec![true], "the writer has one connection to drop");
            let lost = vec![event("w:created:4:e1", "w", 4000)];
            assert!(writer.insert_batch(&lost, None).await.is_err());
            assert_eq!(writer.insert_batch(&lost, None).await.unwrap().len(), 1);
            assert!(writer.insert_batch(&lost, None).await.unwrap().is_empty());
        }
        let n = events::list(
            &store,
            &EventFilter {
                limit: 2000,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .len();
        let expected = if store.backend() == relay365_actors::store::Backend::Postgres {
            1204
        } else {
            1203
        };
        assert_eq!(n, expected, "{}", db.label);
        store.close().await;
        db.cleanup().await;
    });
}

#[tokio::test]
async fn events_list_newest_first_with_filters_and_cursor() {
    on_every_store!(|db| {
        let store = db.store().await;
        let mut batch: Vec<NewEvent> = (0..5)
            .map(|i| event(&format!("k{i}"), "s", 1000 + i))
            .collect();
        batch[4].credential_id = Some("c1".into());
        events::insert_batch(&store, &batch).await.unwrap();
        let page = events::list(
            &store,
            &EventFilter {
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            page.iter().map(|e| e.received_at).collect::<Vec<_>>(),
            vec![1004, 1003],
            "{}",
            db.label
        );
        let next = events::list(
            &store,
            &EventFilter {
                limit: 2,
                before_id: Some(page[1].id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            next.iter().map(|e| e.received_at).collect::<Vec<_>>(),
            vec![1002, 1001]
        );
        // A time cursor: only what was received before that millisecond.
        let before_time = events::list(
            &store,
            &EventFilter {
                limit: 10,
                before_id: Some(events::first_event_id_at(1002)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            before_time
                .iter()
                .map(|e| e.received_at)
                .collect::<Vec<_>>(),
            vec![1001, 1000]
        );
        let by_cred = events::list(
            &store,
            &EventFilter {
                credential_id: Some("c1".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(by_cred.len(), 1);
        let pending = events::list(
            &store,
            &EventFilter {
                status: Some(EventStatus::Pending),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(pending.len(), 5);
        let none = events::list(
            &store,
            &EventFilter {
                status: Some(EventStatus::Failed),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(none.is_empty());
        store.close().await;
        db.cleanup().await;
    });
}

#[tokio::test]
async fn an_instance_sharing_the_database_sweeps_only_its_own_mailboxes() {
    use relay365_actors::store::instances;
    on_every_store!(|db| {
        let store = db.store().await;
        let (mine, theirs) = (credential(&store).await, credential(&store).await);
        // Theirs has the older backlog: a sweep of the oldest 2 of all would see only it.
        let mut batch: Vec<NewEvent> = (0..4)
            .map(|i| event(&format!("h{i}"), "s", 1000 + i))
            .collect();
        for (i, e) in batch.iter_mut().enumerate() {
            e.credential_id = Some(if i < 2 { theirs.clone() } else { mine.clone() });
        }
        events::insert_batch(&store, &batch).await.unwrap();
        let all = events::due(&store, 5000, 5000, 10, None).await.unwrap();
        assert_eq!(all.len(), 4, "{}: solo, every mailbox", db.label);
        if matches!(store, Store::Postgres(_)) {
            instances::acquire(&store, std::slice::from_ref(&mine), "i1", 5000, 90_000)
                .await
                .unwrap();
            instances::acquire(&store, std::slice::from_ref(&theirs), "i2", 5000, 90_000)
                .await
                .unwrap();
            let own = events::due(&store, 5000, 5000, 2, Some("i1"))
                .await
                .unwrap();
            let ids: Vec<&str> = own.iter().map(|d| d.id.as_str()).collect();
            assert_eq!(ids, vec![batch[2].id.as_str(), batch[3].id.as_str()]);
            let shared =
                events::due_per_subscription(&store, (5000, 5000), (10, 1), Some("i1"), 5000)
                    .await
                    .unwrap();
            let ids: Vec<&str> = shared.iter().map(|d| d.id.as_str()).collect();
            assert_eq!(
                ids,
                vec![batch[2].id.as_str()],
                "one of its subscription, its own"
            );
            assert!(events::due(&store, 5000, 5000, 10, Some("i3"))
                .await
                .unwrap()
                .is_empty());
        }
        store.close().await;
        db.cleanup().await;
    });
}

/// One subscription's backlog of due events does not fill a sweep: each subscription gives at
/// most its share, oldest first, and a newer event of another is read all the same.
#[tokio::test]
async fn a_sweep_reads_at_most_a_share_of_one_subscriptions_backlog() {
    on_every_store!(|db| {
        let store = db.store().await;
        let mut batch: Vec<NewEvent> = (0..6)
            .map(|i| event(&format!("q{i}"), "busy", 1000 + i))
            .collect();
        batch.push(event("q-other", "quiet", 2000));
        events::insert_batch(&store, &batch).await.unwrap();
        let due = events::due_per_subscription(&store, (5000, 5000), (4, 3), None, 5000)
            .await
            .unwrap();
        let ids: Vec<&str> = due.iter().map(|d| d.id.as_str()).collect();
        let want: Vec<&str> = [0, 1, 2, 6].iter().map(|&i| batch[i].id.as_str()).collect();
        assert_eq!(ids, want, "{}", db.label);
        store.close().await;
        db.cleanup().await;
    });
}

#[tokio::test]
async fn pending_lifecycle_events_are_read_a_page_at_a_time() {
    use relay365_actors::store::lifecycle;
    on_every_store!(|db| {
        let store = db.store().await;
        let batch: Vec<NewEvent> = (0..3)
            .map(|i| NewEvent {
                kind: "lifecycle",
                change_type: "missed".into(),
                ..event(&format!("l{i}"), "s", 1000 + i)
            })
            .collect();
        events::insert_batch(&store, &batch).await.unwrap();
        let first = lifecycle::pending(&store, "", 2).await.unwrap();
        assert_eq!(first.len(), 2, "{}", db.label);
        let next = lifecycle::pending(&store, &first[1].id, 2).await.unwrap();
        let ids: Vec<&str> = first.iter().chain(&next).map(|e| e.id.as_str()).collect();
        let want: Vec<&str> = batch.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, want, "{}: each once, oldest first", db.label);
        lifecycle::done(&store, &[batch[0].id.clone()], "{}", 2000)
            .await
            .unwrap();
        assert_eq!(lifecycle::pending(&store, "", 10).await.unwrap().len(), 2);
        store.close().await;
        db.cleanup().await;
    });
}

#[tokio::test]
async fn claims_take_due_events_once_and_expired_leases_again() {
    use relay365_actors::store::events::Lease;
    let lease = |owner, now| Lease {
        owner,
        now,
        ms: 1000,
    };
    on_every_store!(|db| {
        let store = db.store().await;
        let batch: Vec<NewEvent> = (0..3).map(|i| event(&format!("c{i}"), "s", 1000)).collect();
        events::insert_batch(&store, &batch).await.unwrap();
        let due = events::due(&store, 5000, 5000, 10, None).await.unwrap();
        assert_eq!(due.len(), 3, "{}", db.label);
        let (a0, a1) = (&due[0].id, &due[1].id);

        let first = events::claim(&store, a0, lease("a", 5000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (first.status, first.attempts, first.lease_owner.as_deref()),
            (EventStatus::Processing, 1, Some("a"))
        );
        assert!(events::claim(&store, a1, lease("a", 5000))
            .await
            .unwrap()
            .is_some());
        assert!(
            events::claim(&store, a0, lease("b", 5000))
                .await
                .unwrap()
                .is_none(),
            "{}: a held event is not claimed twice",
            db.label
        );
        assert_eq!(
            events::due(&store, 5000, 5000, 10, None)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            events::due(&store, 5000, 999, 10, None)
                .await
                .unwrap()
                .is_empty(),
            "not yet due before the given time"
        );

        // a completes one (no targets: no deliveries); the other's lease runs out and b takes
        // it over.
        assert_eq!(
            events::complete(&store, a0, "a", "{}", &[], 5100)
                .await
                .unwrap(),
            Some(vec![])
        );
        let taken = events::claim(&store, a1, lease("b", 6001))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            taken.attempts, 2,
            "{}: an expired lease is claimed again",
            db.label
        );
        // a lost its lease: it may not mark the event any more.
        assert_eq!(
            events::complete(&store, a1, "a", "{}", &[], 6100)
                .await
                .unwrap(),
            None
        );
        assert!(
            !events::finish(&store, a1, "a", EventStatus::Failed, "x", 6100)
                .await
                .unwrap()
        );
        assert!(
            events::retry_later(&store, a1, "b", 9000, "graph 503", false)
                .await
                .unwrap()
        );
        let row = events::get(&store, a1).await.unwrap().unwrap();
        assert_eq!(
            (row.status, row.next_attempt_at),
            (EventStatus::Pending, 9000)
        );
        assert_eq!(row.last_error.as_deref(), Some("graph 503"));
        assert!(
            events::claim(&store, a1, lease("c", 8999))
                .await
                .unwrap()
                .is_none(),
            "not yet due"
        );
        let again = events::claim(&store, a1, lease("c", 9000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.attempts, 3);
        // A refunded retry does not count the attempt.
        assert!(
            events::retry_later(&store, a1, "c", 9000, "token service down", true)
                .await
                .unwrap()
        );
        assert_eq!(events::get(&store, a1).await.unwrap().unwrap().attempts, 2);

        let done = events::get(&store, a0).await.unwrap().unwrap();
        assert_eq!(
            (done.status, done.processed_at),
            (EventStatus::Completed, Some(5100))
        );
        let counts = events::count_by_status(&store).await.unwrap();
        assert!(counts.contains(&("completed".to_string(), 1)));
        store.close().await;
        db.cleanup().await;
    });
}

/// Retention: completed and skipped events received before the cut-off go, with their
/// delivered deliveries; failed events, events with a delivery not delivered, and newer
/// events stay. Deleted in batches.
#[tokio::test]
async fn retention_deletes_old_finished_events_and_keeps_what_is_owed() {
    use relay365_actors::store::deliveries::{self, Attempt};
    use relay365_actors::store::events::{Lease, NewDelivery};
    on_every_store!(|db| {
        let store = db.store().await;
        let target = stored_target(&store).await;
        let lease = |now| Lease {
            owner: "me",
            now,
            ms: 1000,
        };
        // Old events (received at 1000 + i): ends chosen per index; one newer completed one.
        let ends = [
            "completed",
            "completed+delivered",
            "completed+failed",
            "skipped",
            "failed",
        ];
        let mut ids = Vec::new();
        for (i, end) in ends.iter().enumerate() {
            let e = event(&format!("k{i}"), "s", 1000 + i as i64);
            events::insert_batch(&store, std::slice::from_ref(&e))
                .await
                .unwrap();
            events::claim(&store, &e.id, lease(2000))
                .await
                .unwrap()
                .unwrap();
            match *end {
                "skipped" => {
                    assert!(
                        events::finish(&store, &e.id, "me", EventStatus::Skipped, "404", 2000)
                            .await
                            .unwrap()
                    )
                }
                "failed" => {
                    assert!(
                        events::finish(&store, &e.id, "me", EventStatus::Failed, "403", 2000)
                            .await
                            .unwrap()
                    )
                }
                _ => {
                    let d = if *end == "completed" {
                        vec![]
                    } else {
                        vec![NewDelivery {
                            id: new_id(),
                            target_id: target.id.clone(),
                        }]
                    };
                    let made = events::complete(&store, &e.id, "me", "{}", &d, 2000)
                        .await
                        .unwrap()
                        .unwrap();
                    for (did, _) in made {
                        let (claimed, _) = deliveries::claim(&store, &did, lease(2000))
                            .await
                            .unwrap()
                            .unwrap();
                        let attempt = if *end == "completed+delivered" {
                            Attempt::Delivered { status_code: 200 }
                        } else {
                            Attempt::Failed {
                                status_code: Some(500),
                                error: "HTTP 500",
                            }
                        };
                        let answered = deliveries::Answered {
                            id: &did,
                            lease_until: claimed.lease_until.unwrap(),
                            attempt,
                            at: 2000,
                        };
                        assert!(deliveries::record(&store, "me", answered).await.unwrap());
                    }
                }
            }
            ids.push(e.id);
        }
        let newer = event("k-new", "s", 9000);
        events::insert_batch(&store, std::slice::from_ref(&newer))
            .await
            .unwrap();
        events::claim(&store, &newer.id, lease(9000))
            .await
            .unwrap()
            .unwrap();
        events::complete(&store, &newer.id, "me", "{}", &[], 9000)
            .await
            .unwrap()
            .unwrap();

        // Batches of 2: the three deletable old events go in two calls.
        assert_eq!(
            events::purge(&store, 5000, 2).await.unwrap(),
            2,
            "{}",
            db.label
        );
        assert_eq!(events::purge(&store, 5000, 2).await.unwrap(), 1);
        assert_eq!(events::purge(&store, 5000, 2).await.unwrap(), 0);
        let left = |id: &str| {
            let store = store.clone();
            let id = id.to_string();
            async move { events::get(&store, &id).await.unwrap().is_some() }
        };
        assert!(!left(&ids[0]).await && !left(&ids[1]).await && !left(&ids[3]).await);
        assert!(
            left(&ids[2]).await,
            "{}: a failed delivery keeps its event",
            db.label
        );
        assert!(left(&ids[4]).await, "{}: a failed event is kept", db.label);
        assert!(left(&newer.id).await, "{}: a newer event is kept", db.label);
        let dl = deliveries::list(
            &store,
            &deliveries::DeliveryFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            dl.len(),
            1,
            "{}: the delivered delivery went with its event",
            db.label
        );
        assert_eq!(dl[0].event_id, ids[2]);
        store.close().await;
        db.cleanup().await;
    });
}

/// Migration 0002 on a database that already holds events: they stay, and on PostgreSQL their
/// keys are turned into digests, so a repeat of an event stored before the upgrade is still a
/// duplicate. (SQLite cannot compute SHA-256 in SQL: there such a repeat is stored once more,
/// as the migration says.)
#[tokio::test]
async fn migration_0002_keeps_stored_events_and_their_keys() {
    use relay365_actors::store::Backend;
    on_every_store!(|db| {
        let store = Store::connect(&db.url, &Default::default()).await.unwrap();
        let dir = match store.backend() {
            Backend::Postgres => "migrations/postgres",
            Backend::Sqlite => "migrations/sqlite",
        };
        let mut first = sqlx::migrate::Migrator::new(std::path::Path::new(dir))
            .await
            .unwrap();
        first.migrations = std::borrow::Cow::Owned(first.migrations[..1].to_vec());
        let key = "s:created:AAMkAGI2THVSAAA=:W/\"CQAAABYAAAD\"";
        let insert =
            "insert into events (id, idempotency_key, kind, subscription_id, change_type, \
                      raw, next_attempt_at, received_at) \
                      values ($1, $2, 'change', 's', 'created', '{}', 1000, 1000)";
        let old_id = new_id();
        match &store {
            Store::Postgres(p) => {
                first.run(p).await.unwrap();
                sqlx::query(insert)
                    .bind(&old_id)
                    .bind(key)
                    .execute(p)
                    .await
                    .unwrap();
            }
            Store::Sqlite(p) => {
                first.run(p).await.unwrap();
                sqlx::query(insert)
                    .bind(&old_id)
                    .bind(key)
                    .execute(p)
                    .await
                    .unwrap();
            }
        }
        store.migrate().await.unwrap();
        let old = events::get(&store, &old_id).await.unwrap().unwrap();
        let added = events::insert_batch(&store, &[event(key, "s", 2000)])
            .await
            .unwrap();
        match store.backend() {
            Backend::Postgres => {
                assert_eq!(old.idempotency_digest, events::idempotency_digest(key));
                assert!(
                    added.is_empty(),
                    "a repeat across the upgrade is a duplicate"
                );
            }
            Backend::Sqlite => {
                assert_eq!(old.idempotency_digest, key);
                assert_eq!(added.len(), 1);
            }
        }
        store.close().await;
        db.cleanup().await;
    });
}
