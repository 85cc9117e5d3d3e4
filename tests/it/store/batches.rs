//! Processing's writes in batches: in one statement, each row is claimed, completed or
//! recorded on its own terms (its lease), whatever else the statement carries.

use relay365_actors::store::deliveries::{self, Answered, Attempt};
use relay365_actors::store::events::{self, Completion, Lease, NewDelivery, NewEvent};
use relay365_actors::store::new_id;
use relay365_actors::store::status::{DeliveryStatus, EventStatus};

use super::{event, stored_target};

fn lease(owner: &str, now: i64) -> Lease<'_> {
    Lease {
        owner,
        now,
        ms: 1000,
    }
}

#[tokio::test]
async fn batched_claims_completions_and_records_take_each_row_on_its_own_terms() {
    on_every_store!(|db| {
        let store = db.store().await;
        let target = stored_target(&store).await;
        let batch: Vec<NewEvent> = (0..4).map(|i| event(&format!("b{i}"), "s", 1000)).collect();
        events::insert_batch(&store, &batch).await.unwrap();
        let ids: Vec<&str> = batch.iter().map(|e| e.id.as_str()).collect();

        // Another processor holds the last one: a batch claim takes the others only.
        assert!(events::claim(&store, ids[3], lease("other", 5000))
            .await
            .unwrap()
            .is_some());
        let mut claimed = events::claim_many(&store, &ids, &[], lease("me", 5000))
            .await
            .unwrap();
        claimed.sort_by(|a, b| a.id.cmp(&b.id));
        let got: Vec<(&str, i64, Option<&str>)> = claimed
            .iter()
            .map(|r| (r.id.as_str(), r.attempts, r.lease_owner.as_deref()))
            .collect();
        let mut want: Vec<(&str, i64, Option<&str>)> =
            ids[..3].iter().map(|id| (*id, 1, Some("me"))).collect();
        want.sort();
        assert_eq!(got, want, "{}", db.label);

        // The third's lease runs out and another takes it: completing it changes nothing of
        // it, and the others of the batch complete, their deliveries claimed for the sender.
        assert!(events::claim(&store, ids[2], lease("other", 7000))
            .await
            .unwrap()
            .is_some());
        // The second also names a target deleted since its attempt read the targets: that
        // delivery is left out, and the batch completes all the same.
        let completions: Vec<Completion> = ids[..3]
            .iter()
            .enumerate()
            .map(|(i, id)| Completion {
                id: id.to_string(),
                payload: format!(r#"{{"id":"{id}"}}"#).into(),
                processed_at: 7100,
                deliveries: [target.id.as_str(), "deleted-target"][..if i == 1 { 2 } else { 1 }]
                    .iter()
                    .map(|t| NewDelivery {
                        id: new_id(),
                        target_id: t.to_string(),
                    })
                    .collect(),
            })
            .collect();
        let refs: Vec<&Completion> = completions.iter().collect();
        let done = events::complete_many(&store, "me", &refs, Some(lease("me", 7100)), 7100)
            .await
            .unwrap();
        assert_eq!(done.len(), 3);
        assert!(
            done[2].is_none(),
            "{}: a lost lease completes nothing",
            db.label
        );
        let d: Vec<String> = done[..2]
            .iter()
            .map(|made| {
                let made = made.as_ref().unwrap();
                assert_eq!(made.len(), 1);
                assert_eq!(made[0].1, target.id);
                made[0].0.clone()
            })
            .collect();
        let first = events::get(&store, ids[0]).await.unwrap().unwrap();
        assert_eq!(first.status, EventStatus::Completed);
        assert_eq!(first.payload, Some(completions[0].payload.to_string()));
        let third = events::get(&store, ids[2]).await.unwrap().unwrap();
        assert_eq!(
            (third.status, third.lease_owner.as_deref(), third.payload),
            (EventStatus::Processing, Some("other"), None)
        );
        let made = deliveries::get(&store, &d[0]).await.unwrap().unwrap();
        assert_eq!(
            (
                made.status,
                made.attempts,
                made.lease_owner.as_deref(),
                made.lease_until
            ),
            (DeliveryStatus::Pending, 1, Some("me"), Some(8100)),
            "{}: created claimed, the first attempt counted",
            db.label
        );
        assert!(deliveries::claim(&store, &d[0], lease("other", 7200))
            .await
            .unwrap()
            .is_none());
        assert!(deliveries::due(&store, 7200, 7200, 10)
            .await
            .unwrap()
            .is_empty());
        // Its sender may claim it again when it says it never sent it (its claim ran short
        // while it waited): the lease is renewed, the attempt not counted twice. Not when it
        // does not say so (sent, the answer not written): that waits for the lease to run out.
        assert!(
            deliveries::claim(&store, &d[1], lease("me", 7200))
                .await
                .unwrap()
                .is_none(),
            "{}: sent and held, it is not sent again under the same lease",
            db.label
        );
        let d1 = d[1].as_str();
        let (again, _) = deliveries::claim_many(&store, &[d1], &[d1], lease("me", 7200))
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(
            (again.attempts, again.lease_until),
            (1, Some(8200)),
            "{}",
            db.label
        );

        // An answer of the attempt sent under the claim before is not recorded: the delivery
        // is held under a new one.
        let stale = Answered {
            id: &d[1],
            lease_until: 8100,
            attempt: Attempt::Delivered { status_code: 200 },
            at: 7250,
        };
        assert!(!deliveries::record(&store, "me", stale).await.unwrap());
        let held = deliveries::get(&store, &d[1]).await.unwrap().unwrap();
        assert_eq!(
            (held.status, held.lease_until),
            (DeliveryStatus::Pending, Some(8200)),
            "{}",
            db.label
        );

        // Records: one delivered, one to retry, one for a delivery that does not exist.
        let answered = |id, lease_until, attempt| Answered {
            id,
            lease_until,
            attempt,
            at: 7300,
        };
        let recorded = deliveries::record_many(
            &store,
            "me",
            &[
                answered(&d[0], 8100, Attempt::Delivered { status_code: 204 }),
                answered(
                    &d[1],
                    8200,
                    Attempt::Retry {
                        status_code: Some(503),
                        error: "HTTP 503",
                        next_attempt_at: 9000,
                    },
                ),
                answered(
                    "no-such-delivery",
                    8200,
                    Attempt::Delivered { status_code: 200 },
                ),
            ],
        )
        .await
        .unwrap();
        assert_eq!(recorded, vec![true, true, false], "{}", db.label);
        let delivered = deliveries::get(&store, &d[0]).await.unwrap().unwrap();
        assert_eq!(
            (
                delivered.status,
                delivered.last_status_code,
                delivered.delivered_at
            ),
            (DeliveryStatus::Delivered, Some(204), Some(7300))
        );
        let later = deliveries::get(&store, &d[1]).await.unwrap().unwrap();
        assert_eq!(
            (
                later.status,
                later.next_attempt_at,
                later.last_error.as_deref(),
                later.lease_owner
            ),
            (DeliveryStatus::Pending, 9000, Some("HTTP 503"), None)
        );

        // A batch claim of swept deliveries takes the due one, with what its attempt needs.
        let taken = deliveries::claim_many(
            &store,
            &[d[0].as_str(), d[1].as_str()],
            &[],
            lease("me", 9000),
        )
        .await
        .unwrap();
        assert_eq!(taken.len(), 1, "{}", db.label);
        let (row, out) = &taken[0];
        assert_eq!((row.id.as_str(), row.attempts), (d[1].as_str(), 2));
        assert_eq!(out.payload, Some(completions[1].payload.to_string()));
        assert_eq!(out.url, target.url);

        // Its sender claims it again after its lease ran out: counted, unless the sender knows
        // it never sent it (it waited in its queue).
        let waited = deliveries::claim_many(&store, &[d1], &[d1], lease("me", 11_000))
            .await
            .unwrap();
        assert_eq!(waited[0].0.attempts, 2, "{}", db.label);
        let (died, _) = deliveries::claim(&store, d1, lease("me", 13_000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(died.attempts, 3, "{}", db.label);
        store.close().await;
        db.cleanup().await;
    });
}

#[tokio::test]
async fn the_receivers_writer_stores_changes_claimed_and_their_claimer_takes_them_again_uncounted()
{
    on_every_store!(|db| {
        let store = db.store().await;
        let mut writer = events::Writer::new(&store);
        let mut batch: Vec<NewEvent> = (0..2).map(|i| event(&format!("p{i}"), "s", 1000)).collect();
        batch[0].claim = true;
        let added = writer
            .insert_batch(&batch, Some(lease("me", 1000)))
            .await
            .unwrap();
        assert_eq!(added.len(), 2, "{}", db.label);
        let answer = |id: &str| added.iter().find(|a| a.id == id).unwrap().claimed.clone();

        // Stored claimed, its first attempt counted; the answer carries the row as stored.
        let stored = events::get(&store, &batch[0].id).await.unwrap().unwrap();
        assert_eq!(
            (
                stored.status,
                stored.attempts,
                stored.lease_owner.as_deref(),
                stored.lease_until
            ),
            (EventStatus::Processing, 1, Some("me"), Some(2000)),
            "{}",
            db.label
        );
        assert_eq!(answer(&batch[0].id).as_deref(), Some(&stored));
        // The other did not ask: pending, as any insert.
        let pending = events::get(&store, &batch[1].id).await.unwrap().unwrap();
        assert_eq!(
            (pending.status, pending.attempts),
            (EventStatus::Pending, 0)
        );
        assert!(answer(&batch[1].id).is_none());

        // Held: no one else claims it while the lease runs, and the sweep leaves it alone.
        assert!(events::claim(&store, &batch[0].id, lease("other", 1500))
            .await
            .unwrap()
            .is_none());
        let due = events::due(&store, 1500, 1500, 10, None).await.unwrap();
        assert_eq!(
            due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec![batch[1].id.as_str()]
        );
        // Its claimer takes it again (the claim ran short in a queue): not counted twice.
        let again = events::claim(&store, &batch[0].id, lease("me", 1800))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.attempts, again.lease_until), (1, Some(2800)));
        // Once the lease ran out a claim counts, even its holder's: an attempt that never
        // ended (a poison message) spends the attempts.
        let later = events::claim(&store, &batch[0].id, lease("me", 3000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(later.attempts, 2, "{}", db.label);
        // Unless the holder knows it never started it (handed claimed, it waited in its queue
        // past the lease): not counted again.
        let id = batch[0].id.as_str();
        let waited = events::claim_many(&store, &[id], &[id], lease("me", 5000))
            .await
            .unwrap();
        assert_eq!(waited[0].attempts, 2, "{}", db.label);
        // Which only its holder can say: another's claim counts.
        let taken = events::claim_many(&store, &[id], &[id], lease("other", 7000))
            .await
            .unwrap();
        assert_eq!(
            (taken[0].attempts, taken[0].lease_owner.as_deref()),
            (3, Some("other")),
            "{}",
            db.label
        );

        // No lease, no claim.
        let mut unleased = event("p9", "s", 1000);
        unleased.claim = true;
        let added = writer
            .insert_batch(std::slice::from_ref(&unleased), None)
            .await
            .unwrap();
        assert!(added[0].claimed.is_none());
        let row = events::get(&store, &unleased.id).await.unwrap().unwrap();
        assert_eq!((row.status, row.lease_owner), (EventStatus::Pending, None));
        store.close().await;
        db.cleanup().await;
    });
}

#[tokio::test]
async fn a_lane_keeps_its_connection_and_opens_a_new_one_after_a_failed_statement() {
    use relay365_actors::store::lane::{Lane, On, LANE_APPLICATION_NAME};
    use relay365_actors::store::Store;
    on_every_store!(|db| {
        let store = db.store().await;
        let batch: Vec<NewEvent> = (0..3).map(|i| event(&format!("l{i}"), "s", 1000)).collect();
        events::insert_batch(&store, &batch).await.unwrap();
        let ids: Vec<&str> = batch.iter().map(|e| e.id.as_str()).collect();
        let mut lane = Lane::new(&store);
        let mut taken = lane.take().await.unwrap();
        assert_eq!(
            events::claim_many(taken.on(), &ids[0..1], &[], lease("me", 5000))
                .await
                .unwrap()
                .len(),
            1,
            "{}",
            db.label
        );
        lane.put_back(taken);

        let mut taken = lane.take().await.unwrap();
        if let (On::Pg(conn), Store::Postgres(pool)) = (taken.on(), &store) {
            // The database drops the lane's connection (this one only: other tests run
            // beside this one): the next statement fails, and the lane opens a new
            // connection for the one after.
            let (pid, name): (i32, String) =
                sqlx::query_as("select pg_backend_pid(), current_setting('application_name')")
                    .fetch_one(conn)
                    .await
                    .unwrap();
            assert_eq!(name, LANE_APPLICATION_NAME);
            lane.put_back(taken);
            let killed: bool = sqlx::query_scalar("select pg_terminate_backend($1, 5000)")
                .bind(pid)
                .fetch_one(pool)
                .await
                .unwrap();
            assert!(killed);
            let mut taken = lane.take().await.unwrap();
            assert!(
                events::claim_many(taken.on(), &ids[1..2], &[], lease("me", 5000))
                    .await
                    .is_err()
            );
            drop(taken);
        } else {
            assert_eq!(store.backend(), relay365_actors::store::Backend::Sqlite);
            lane.put_back(taken);
        }
        let mut taken = lane.take().await.unwrap();
        assert_eq!(
            events::claim_many(taken.on(), &ids[2..3], &[], lease("me", 5000))
                .await
                .unwrap()
                .len(),
            1
        );
        lane.put_back(taken);
        drop(lane);
        store.close().await;
        db.cleanup().await;
    });
}

/// One target's backlog of due deliveries does not fill a sweep: each target gives at most
/// its share, and a newer delivery to another target is read all the same.
#[tokio::test]
async fn a_sweep_reads_at_most_a_share_of_one_targets_backlog() {
    on_every_store!(|db| {
        let store = db.store().await;
        let (slow, other) = (
            &stored_target(&store).await.id,
            &stored_target(&store).await.id,
        );
        // Six deliveries to the slow target, due first; one to the other, due last.
        for i in 0..7 {
            let e = event(&format!("w{i}"), "s", 1000 + i);
            events::insert_batch(&store, std::slice::from_ref(&e))
                .await
                .unwrap();
            events::claim(&store, &e.id, lease("me", 2000 + i))
                .await
                .unwrap()
                .unwrap();
            let to = if i < 6 { slow } else { other };
            let d = [NewDelivery {
                id: new_id(),
                target_id: to.clone(),
            }];
            events::complete(&store, &e.id, "me", "{}", &d, 2000 + i)
                .await
                .unwrap()
                .unwrap();
        }
        let due = deliveries::due_per_target(&store, (9000, 9000), (4, 3), 5000)
            .await
            .unwrap();
        let per = |t: &String| due.iter().filter(|(_, target)| target == t).count();
        assert_eq!((per(slow), per(other)), (3, 1), "{}: {due:?}", db.label);
        store.close().await;
        db.cleanup().await;
    });
}
