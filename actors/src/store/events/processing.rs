//! Processing's writes on `events`: claims under a lease, and the ends of an attempt.
//!
//! The processors claim and complete events in batches (one statement for all the events a
//! worker starts or finishes at one turn): each statement costs PostgreSQL a round trip, a
//! parse and a commit whatever its size, so at a few hundred events a second one statement per
//! event spent more in the statements than in the rows. Every function holds for one event as
//! for many; each row is claimed, completed or put back on its own terms (its lease).

use super::super::credentials::CREDENTIAL_DELETED;
use super::super::lane::On;
use super::super::{with_pool, Store, StoreError};
use super::{EventRow, EventStatus, CLAIMABLE, COLUMNS};

/// The lease a processor holds on the events it claimed.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub owner: &'a str,
    pub now: i64,
    /// How long the claim holds; an event whose lease ran out may be claimed again.
    pub ms: i64,
}

/// Claims one event by id if it is claimable (see [`claim_many`]).
pub async fn claim(
    store: &Store,
    id: &str,
    lease: Lease<'_>,
) -> Result<Option<EventRow>, StoreError> {
    Ok(claim_many(store, &[id], &[], lease).await?.pop())
}

/// Claims those of `ids` that are claimable: marks them `processing` under the lease and
/// counts the attempt (unless the claimer held it already). The others (done, not due, or
/// held by another processor) are left out of the answer. On PostgreSQL a row another process
/// holds is skipped, not waited for (`FOR UPDATE SKIP LOCKED`), so several instances can share
/// the table.
///
/// `held` are those of `ids` the claimer was handed claimed (stored claimed by the receiver,
/// their attempt counted) and never started: still its own, they are not counted again even
/// when their lease ran out while they waited in its queue.
pub async fn claim_many(
    on: impl Into<On<'_>>,
    ids: &[&str],
    held: &[&str],
    lease: Lease<'_>,
) -> Result<Vec<EventRow>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // An event this claimer holds already is claimed again without counting its attempt twice;
    // one whose lease ran out counts anew (an attempt that never ended, a poison message, must
    // spend the attempts), unless the claimer knows it never started it.
    let set = |is_held: &str| {
        format!(
            "update events set status = 'processing', lease_owner = $2, lease_until = $3, \
             attempts = attempts + case when status = 'processing' and lease_owner = $2 \
             and (lease_until >= $1 or {is_held}) then 0 else 1 end"
        )
    };
    // The ids joined to `unnest` rather than `id = any($4)`: with `any`, the planner combined
    // the primary key with the status index, whose `pending` and `processing` ranges hold an
    // entry for every version of every row processed lately, and a claim of 20 events read
    // thousands of index entries.
    let pg = format!(
        "{} where id in (select e.id from unnest($4::text[]) as k(id) \
         join events e on e.id = k.id where {CLAIMABLE} for update of e skip locked) \
         returning {COLUMNS}",
        set("id = any($5::text[])")
    );
    let pg = || {
        sqlx::query_as::<_, EventRow>(&pg)
            .bind(lease.now)
            .bind(lease.owner)
            .bind(lease.now + lease.ms)
            .bind(ids)
            .bind(held)
    };
    Ok(match on.into() {
        On::Pg(c) => pg().fetch_all(c).await?,
        On::Store(Store::Postgres(p)) => pg().fetch_all(p).await?,
        On::Store(Store::Sqlite(p)) => {
            sqlx::query_as::<_, EventRow>(&format!(
                "{} where id in (select value from json_each($4)) and {CLAIMABLE} \
                 returning {COLUMNS}",
                set("id in (select value from json_each($5))")
            ))
            .bind(lease.now)
            .bind(lease.owner)
            .bind(lease.now + lease.ms)
            .bind(serde_json::to_string(ids).unwrap_or_default())
            .bind(serde_json::to_string(held).unwrap_or_default())
            .fetch_all(p)
            .await?
        }
    })
}

/// Ends an event held under `owner`'s lease as `skipped` or `failed` (no deliveries). False
/// if the lease was lost meanwhile (another owner took the event; it must not be marked
/// twice).
pub async fn finish(
    store: &Store,
    id: &str,
    owner: &str,
    status: EventStatus,
    last_error: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let n = with_pool!(store, p => sqlx::query(
        "update events set status = $3, last_error = $4, processed_at = $5, \
         lease_owner = null, lease_until = null \
         where id = $1 and lease_owner = $2 and status = 'processing'")
        .bind(id).bind(owner).bind(status.as_str()).bind(last_error).bind(now)
        .execute(p).await?.rows_affected());
    Ok(n > 0)
}

/// Fails the events still waiting whose credential no longer exists, and whose lease (if any)
/// ran out: deleting a credential fails its waiting events, but one stored a moment later
/// (its notification checked before the delete, inserted after it) would wait for ever, on
/// several instances, as no instance holds its mailbox. Lifecycle events are the renewal
/// actor's. Returns how many were failed.
pub async fn fail_orphans(store: &Store, now: i64) -> Result<u64, StoreError> {
    Ok(with_pool!(store, p => sqlx::query(
        "update events set status = $1, last_error = $2, processed_at = $3, \
         lease_owner = null, lease_until = null \
         where status in ($4, $5) and kind <> 'lifecycle' and credential_id is not null \
         and (lease_until is null or lease_until < $3) \
         and not exists (select 1 from credentials c where c.id = events.credential_id)")
        .bind(EventStatus::Failed.as_str())
        .bind(CREDENTIAL_DELETED)
        .bind(now)
        .bind(EventStatus::Pending.as_str())
        .bind(EventStatus::Processing.as_str())
        .execute(p).await?.rows_affected()))
}

/// A delivery [`complete_many`] creates: its id and its target.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub target_id: String,
}

/// An event whose attempt succeeded, to be completed with its payload and deliveries.
#[derive(Debug, Clone)]
pub struct Completion {
    pub id: String,
    /// The SPEC §4 body (shared with the deliveries that send it).
    pub payload: std::sync::Arc<str>,
    pub processed_at: i64,
    pub deliveries: Vec<NewDelivery>,
}

/// Completes one event (see [`complete_many`]), its deliveries created unleased.
pub async fn complete(
    store: &Store,
    id: &str,
    owner: &str,
    payload: &str,
    deliveries: &[NewDelivery],
    now: i64,
) -> Result<Option<Vec<(String, String)>>, StoreError> {
    let one = Completion {
        id: id.to_string(),
        payload: std::sync::Arc::from(payload),
        processed_at: now,
        deliveries: deliveries.to_vec(),
    };
    let mut done = complete_many(store, owner, &[&one], None, now).await?;
    Ok(done.pop().flatten())
}

/// Completes events held under `owner`'s lease and creates their deliveries, in one
/// transaction: each event either becomes `completed` with its payload and every delivery of
/// it exists (pending, due now), or, when its lease was lost, nothing of it changed. A
/// delivery of the same event to the same target that exists already (a replay) is made
/// pending again, keeping its id.
///
/// With `send` (the sender's lease), the deliveries are created claimed by it, their first
/// attempt counted: the caller sends them at once, without claiming them again. Should it die
/// first, the lease runs out and the sweep finds them.
///
/// Answers, in the order of `events`, the (delivery id, target id) pairs of each event, or
/// `None` for an event whose lease was lost.
pub async fn complete_many(
    on: impl Into<On<'_>>,
    owner: &str,
    events: &[&Completion],
    send: Option<Lease<'_>>,
    now: i64,
) -> Result<Vec<Option<Vec<(String, String)>>>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let lease_cols = match send {
        Some(l) => (1i64, Some(l.owner), Some(l.now + l.ms)),
        None => (0, None, None),
    };
    let rows = match on.into() {
        On::Store(Store::Sqlite(p)) => complete_sqlite(p, owner, events, lease_cols, now).await?,
        On::Store(Store::Postgres(p)) => complete_pg(p, owner, events, lease_cols, now).await?,
        On::Pg(c) => complete_pg(c, owner, events, lease_cols, now).await?,
    };
    let mut done: std::collections::HashMap<&str, Vec<(String, String)>> = rows
        .iter()
        .filter(|r| r.0 == "event")
        .map(|r| (r.1.as_str(), Vec::new()))
        .collect();
    for (what, id, event_id, target_id) in &rows {
        if what == "delivery" {
            if let Some(list) = done.get_mut(event_id.as_str()) {
                list.push((id.clone(), target_id.clone()));
            }
        }
    }
    Ok(events.iter().map(|e| done.remove(e.id.as_str())).collect())
}

/// The upsert of a delivery [`complete_many`] creates (a replay makes an existing one pending).
/// A delivery to a target deleted since the attempt read the targets is left out, rather than
/// failing the statement (and with it every completion it carries) on the foreign key.
const UPSERT_DELIVERY: &str =
    "on conflict (event_id, target_id) do update set status = 'pending', \
    attempts = excluded.attempts, next_attempt_at = excluded.next_attempt_at, \
    lease_owner = excluded.lease_owner, lease_until = excluded.lease_until, \
    last_status_code = null, last_error = null, delivered_at = null \
    returning id, event_id, target_id";

/// One statement on PostgreSQL (data-modifying CTEs). Joined to `unnest`, the rows are found
/// by the primary key, one look-up each (see `claim_many`), and with no condition on `status`,
/// which could make the planner prefer the status index: a lease is only ever held on a
/// `processing` event (every write that ends one clears it), so the owner says it all.
async fn complete_pg<'e>(
    exec: impl sqlx::PgExecutor<'e>,
    owner: &str,
    events: &[&Completion],
    (attempts, lease_owner, lease_until): (i64, Option<&str>, Option<i64>),
    now: i64,
) -> Result<Vec<(String, String, String, String)>, StoreError> {
    let dels = || {
        events
            .iter()
            .flat_map(|e| e.deliveries.iter().map(move |d| (e, d)))
    };
    let sql = format!(
        "with i as (select * from unnest($2::text[], $3::text[], $4::int8[]) \
             as i(id, payload, processed_at)), \
         done as (update events e set status = 'completed', payload = i.payload, \
             last_error = null, processed_at = i.processed_at, lease_owner = null, \
             lease_until = null \
             from i where e.id = i.id and e.lease_owner = $1 \
             returning e.id), \
         made as (insert into deliveries (id, event_id, target_id, status, attempts, \
             next_attempt_at, created_at, lease_owner, lease_until) \
             select d.id, d.event_id, d.target_id, 'pending', $8, $5, $5, $9, $10 \
             from unnest($6::text[], $7::text[], $11::text[]) as d(id, event_id, target_id) \
             join done on done.id = d.event_id join targets t on t.id = d.target_id \
             {UPSERT_DELIVERY}) \
         select 'event', id, '', '' from done \
         union all select 'delivery', id, event_id, target_id from made"
    );
    Ok(sqlx::query_as(&sql)
        .bind(owner)
        .bind(events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| &*e.payload).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.processed_at).collect::<Vec<_>>())
        .bind(now)
        .bind(dels().map(|(_, d)| d.id.as_str()).collect::<Vec<_>>())
        .bind(dels().map(|(e, _)| e.id.as_str()).collect::<Vec<_>>())
        .bind(attempts)
        .bind(lease_owner)
        .bind(lease_until)
        .bind(
            dels()
                .map(|(_, d)| d.target_id.as_str())
                .collect::<Vec<_>>(),
        )
        .fetch_all(exec)
        .await?)
}

/// SQLite runs in this process: a transaction of a few statements per event costs no round
/// trips. Answers rows as the PostgreSQL statement does.
async fn complete_sqlite(
    p: &sqlx::SqlitePool,
    owner: &str,
    events: &[&Completion],
    (attempts, lease_owner, lease_until): (i64, Option<&str>, Option<i64>),
    now: i64,
) -> Result<Vec<(String, String, String, String)>, StoreError> {
    let insert = format!(
        "insert into deliveries (id, event_id, target_id, status, attempts, next_attempt_at, \
         created_at, lease_owner, lease_until) \
         select $1, $2, $3, 'pending', $4, $5, $5, $6, $7 \
         where exists (select 1 from targets where id = $3) {UPSERT_DELIVERY}"
    );
    let mut rows = Vec::new();
    let mut tx = p.begin().await?;
    for e in events {
        let n = sqlx::query(
            "update events set status = 'completed', payload = $3, last_error = null, \
             processed_at = $4, lease_owner = null, lease_until = null \
             where id = $1 and lease_owner = $2 and status = 'processing'",
        )
        .bind(&e.id)
        .bind(owner)
        .bind(&*e.payload)
        .bind(e.processed_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            continue;
        }
        rows.push(("event".into(), e.id.clone(), String::new(), String::new()));
        for d in &e.deliveries {
            let made: Option<(String, String, String)> = sqlx::query_as(&insert)
                .bind(&d.id)
                .bind(&e.id)
                .bind(&d.target_id)
                .bind(attempts)
                .bind(now)
                .bind(lease_owner)
                .bind(lease_until)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some((id, event_id, target_id)) = made {
                rows.push(("delivery".into(), id, event_id, target_id));
            }
        }
    }
    tx.commit().await?;
    Ok(rows)
}

/// Puts an event held under `owner`'s lease back to `pending`, due at `next_attempt_at`.
/// With `refund`, the attempt is not counted (the failure was not the event's: its
/// credential's token source was down, or its actor restarting).
pub async fn retry_later(
    store: &Store,
    id: &str,
    owner: &str,
    next_attempt_at: i64,
    last_error: &str,
    refund: bool,
) -> Result<bool, StoreError> {
    let n = with_pool!(store, p => sqlx::query(
        "update events set status = 'pending', next_attempt_at = $3, last_error = $4, \
         attempts = attempts - $5, lease_owner = null, lease_until = null \
         where id = $1 and lease_owner = $2 and status = 'processing'")
        .bind(id).bind(owner).bind(next_attempt_at).bind(last_error).bind(i64::from(refund))
        .execute(p).await?.rows_affected());
    Ok(n > 0)
}
