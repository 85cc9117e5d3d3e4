//! The `deliveries` table: one row per completed event and matching target, claimed under a
//! lease by the delivery pool, retried with backoff, and ended `delivered` or `failed`.

use super::events::Lease;
use super::lane::On;
use super::status::DeliveryStatus;
use super::{pg_fetch_all_within, with_pool, Store, StoreError};

/// A delivery as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: String,
    pub event_id: String,
    pub target_id: String,
    #[sqlx(try_from = "String")]
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub last_status_code: Option<i64>,
    /// The target's answer (at most 1 KB of it) or why there was none.
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

const COLUMNS: &str = "id, event_id, target_id, status, attempts, next_attempt_at, lease_owner, \
    lease_until, last_status_code, last_error, created_at, delivered_at";

/// What one attempt needs besides the row: the event's body and the target.
#[derive(Clone, sqlx::FromRow)]
pub struct Outgoing {
    /// The SPEC §4 body, as stored when the event completed.
    pub payload: Option<String>,
    pub url: String,
    /// Secret: never log.
    pub secret: String,
    pub headers: String,
    /// When the notification was received (for the end-to-end latency).
    pub received_at: i64,
}

/// A delivery being sent stays `pending` under a lease; it may be claimed again when it is
/// due and not held (or its lease ran out: its sender died).
const CLAIMABLE: &str =
    "status = 'pending' and next_attempt_at <= $1 and (lease_until is null or lease_until < $1)";

/// Deliveries to hand to the pool, oldest first, with their target: pending ones due at or
/// before `due_before` and not held under a lease that still runs at `now` (see
/// [`super::events::due`]).
pub async fn due(
    store: &Store,
    now: i64,
    due_before: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, (String, String)>(
        "select id, target_id from deliveries where status = 'pending' \
         and next_attempt_at <= $2 and (lease_until is null or lease_until < $1) \
         order by next_attempt_at limit $3")
        .bind(now).bind(due_before).bind(limit).fetch_all(p).await?),
    )
}

/// The same as [`due`], but at most `per_target` of one target: what a sweep reads besides
/// when [`due`] came back full. The backlog of one slow target (its deliveries waiting in a
/// worker's queue past their lease, so due again) would otherwise fill every sweep, and the
/// others' work that only a sweep brings back would wait until it drained. It reads and sorts
/// every due row, so it runs only then, and on PostgreSQL within `budget_ms` of the server's
/// time (a query left behind by a client that gave up would run on).
pub async fn due_per_target(
    store: &Store,
    (now, due_before): (i64, i64),
    (limit, per_target): (i64, i64),
    budget_ms: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    let sql = "select id, target_id from (select id, target_id, next_attempt_at, row_number() \
             over (partition by target_id order by next_attempt_at) as n from deliveries \
             where status = 'pending' and next_attempt_at <= $2 \
             and (lease_until is null or lease_until < $1)) d \
         where n <= $4 order by next_attempt_at limit $3";
    // A macro, not a closure: the query's type is the store's.
    macro_rules! q {
        () => {
            sqlx::query_as::<_, (String, String)>(sql)
                .bind(now)
                .bind(due_before)
                .bind(limit)
                .bind(per_target)
        };
    }
    Ok(match store {
        Store::Sqlite(p) => q!().fetch_all(p).await?,
        Store::Postgres(p) => pg_fetch_all_within!(p, budget_ms, q!()),
    })
}

/// A claimed delivery with what its attempt needs.
#[derive(sqlx::FromRow)]
struct Claimed {
    #[sqlx(flatten)]
    row: DeliveryRow,
    #[sqlx(flatten)]
    out: Outgoing,
}

/// Claims one delivery for an attempt (see [`claim_many`]).
pub async fn claim(
    store: &Store,
    id: &str,
    lease: Lease<'_>,
) -> Result<Option<(DeliveryRow, Outgoing)>, StoreError> {
    Ok(claim_many(store, &[id], &[], lease).await?.pop())
}

/// Claims those of `ids` that are claimable for an attempt (counted), each with what its
/// attempt needs; the others (not due, already delivered or failed, or held by another sender)
/// are left out. One round trip on PostgreSQL (the claim in a data-modifying CTE, joined to
/// the events and targets), a row another instance holds skipped, not waited for.
///
/// `held` are those of `ids` the sender was handed claimed (created under its lease, their
/// attempt counted) and never sent: still its own, they are not counted again even when their
/// lease ran out while they waited in its queue. A delivery the sender holds and does not name
/// there (sent, its answer not written) is not claimable until its lease runs out: it was
/// sent, and going again is another attempt.
pub async fn claim_many(
    store: &Store,
    ids: &[&str],
    held: &[&str],
    lease: Lease<'_>,
) -> Result<Vec<(DeliveryRow, Outgoing)>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // A delivery this sender holds already (created claimed for it, then kept waiting in its
    // queue until the claim ran short) is claimed again, its attempt not counted twice. Only
    // those it says it never sent: one it holds because its answer could not be written was
    // sent, and waits for its lease to run out to be sent again, counted.
    let set = |is_held: &str| {
        format!(
            "update deliveries set attempts = attempts + \
             case when lease_owner = $2 and {is_held} then 0 else 1 end, \
             lease_owner = $2, lease_until = $3"
        )
    };
    let mine = |is_held: &str| format!("(status = 'pending' and lease_owner = $2 and {is_held})");
    const JOIN: &str = "e.payload, t.url, t.secret, t.headers, e.received_at";
    let found = match store {
        Store::Postgres(p) => {
            let held_is = "id = any($5::text[])";
            let sql = format!(
                "with c as ({} where id in (select d.id from unnest($4::text[]) as k(want) \
                 join deliveries d on d.id = k.want where ({CLAIMABLE} or {}) \
                 for update of d skip locked) returning {COLUMNS}) \
                 select c.*, {JOIN} from c \
                 join events e on e.id = c.event_id join targets t on t.id = c.target_id",
                set(held_is),
                mine(held_is)
            );
            sqlx::query_as::<_, Claimed>(&sql)
                .bind(lease.now)
                .bind(lease.owner)
                .bind(lease.now + lease.ms)
                .bind(ids)
                .bind(held)
                .fetch_all(p)
                .await?
        }
        Store::Sqlite(p) => {
            let ids = serde_json::to_string(ids).unwrap_or_default();
            let mut tx = p.begin().await?;
            let held_is = "id in (select value from json_each($5))";
            let taken: Vec<(String,)> = sqlx::query_as(&format!(
                "{} where id in (select value from json_each($4)) \
                 and ({CLAIMABLE} or {}) returning id",
                set(held_is),
                mine(held_is)
            ))
            .bind(lease.now)
            .bind(lease.owner)
            .bind(lease.now + lease.ms)
            .bind(&ids)
            .bind(serde_json::to_string(held).unwrap_or_default())
            .fetch_all(&mut *tx)
            .await?;
            let taken: Vec<&str> = taken.iter().map(|(id,)| id.as_str()).collect();
            let claimed = sqlx::query_as::<_, Claimed>(&format!(
                "select {}, {JOIN} from deliveries c join events e on e.id = c.event_id \
                 join targets t on t.id = c.target_id \
                 where c.id in (select value from json_each($1))",
                prefixed("c.")
            ))
            .bind(serde_json::to_string(&taken).unwrap_or_default())
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            claimed
        }
    };
    Ok(found.into_iter().map(|c| (c.row, c.out)).collect())
}

/// [`COLUMNS`], each prefixed with a table alias.
fn prefixed(alias: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("{alias}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy)]
pub enum Attempt<'a> {
    /// 2xx.
    Delivered { status_code: u16 },
    /// Try again at `next_attempt_at`.
    Retry {
        status_code: Option<u16>,
        error: &'a str,
        next_attempt_at: i64,
    },
    /// Attempts exhausted.
    Failed {
        status_code: Option<u16>,
        error: &'a str,
    },
}

/// How one attempt of a held delivery ended, for [`record_many`].
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    pub id: &'a str,
    /// The `lease_until` of the claim the attempt was sent under. Only that claim's answer is
    /// recorded: the delivery may have been made pending again meanwhile (the event replayed,
    /// or the lease ran out and the delivery was claimed again), and a late answer of the old
    /// attempt must not end the new one.
    pub lease_until: i64,
    pub attempt: Attempt<'a>,
    pub at: i64,
}

/// Records an attempt of a delivery held under `owner`'s lease (see [`record_many`]).
pub async fn record(
    store: &Store,
    owner: &str,
    answered: Answered<'_>,
) -> Result<bool, StoreError> {
    Ok(record_many(store, owner, &[answered])
        .await?
        .first()
        .copied()
        .unwrap_or(false))
}

/// Records attempts of deliveries held under `owner`'s lease, each only if it is still held
/// under the claim it was sent under, in one statement on PostgreSQL, one transaction on
/// SQLite. Answers, in order, whether each was still held (false: the lease was lost or taken
/// anew, nothing recorded).
pub async fn record_many(
    on: impl Into<On<'_>>,
    owner: &str,
    attempts: &[Answered<'_>],
) -> Result<Vec<bool>, StoreError> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    let cols: Vec<Columns<'_>> = attempts.iter().map(columns).collect();
    let pg = || {
        // Each row found by the primary key, one look-up each: no condition on `status`,
        // which let the planner prefer the status index and read every pending delivery
        // (thousands in a backlog) for each batch. A lease is only ever held on a pending
        // delivery (every write that ends one clears it), so the owner says it all.
        sqlx::query_as::<_, (String,)>(
            "update deliveries d set status = r.status, last_status_code = r.code, \
                 last_error = r.error, next_attempt_at = coalesce(r.next, d.next_attempt_at), \
                 delivered_at = r.delivered_at, lease_owner = null, lease_until = null \
                 from unnest($2::text[], $3::text[], $4::int8[], $5::text[], $6::int8[], \
                     $7::int8[], $8::int8[]) as r(id, status, code, error, next, delivered_at, \
                     held_until) \
                 where d.id = r.id and d.lease_owner = $1 and d.lease_until = r.held_until \
                 returning d.id",
        )
        .bind(owner)
        .bind(cols.iter().map(|c| c.id).collect::<Vec<_>>())
        .bind(cols.iter().map(|c| c.status.as_str()).collect::<Vec<_>>())
        .bind(cols.iter().map(|c| c.code).collect::<Vec<_>>())
        .bind(cols.iter().map(|c| c.error).collect::<Vec<_>>())
        .bind(cols.iter().map(|c| c.next).collect::<Vec<_>>())
        .bind(cols.iter().map(|c| c.delivered_at).collect::<Vec<_>>())
        .bind(cols.iter().map(|c| c.held_until).collect::<Vec<_>>())
    };
    let recorded: Vec<String> = match on.into() {
        On::Pg(c) => pg()
            .fetch_all(c)
            .await?
            .into_iter()
            .map(|(id,)| id)
            .collect(),
        On::Store(Store::Postgres(p)) => pg()
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|(id,)| id)
            .collect(),
        On::Store(Store::Sqlite(p)) => {
            let mut tx = p.begin().await?;
            let mut recorded = Vec::new();
            for c in &cols {
                let n = sqlx::query(
                    "update deliveries set status = $3, last_status_code = $4, last_error = $5, \
                     next_attempt_at = coalesce($6, next_attempt_at), delivered_at = $7, \
                     lease_owner = null, lease_until = null \
                     where id = $1 and lease_owner = $2 and lease_until = $8 \
                     and status = 'pending'",
                )
                .bind(c.id)
                .bind(owner)
                .bind(c.status.as_str())
                .bind(c.code)
                .bind(c.error)
                .bind(c.next)
                .bind(c.delivered_at)
                .bind(c.held_until)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n > 0 {
                    recorded.push(c.id.to_string());
                }
            }
            tx.commit().await?;
            recorded
        }
    };
    Ok(attempts
        .iter()
        .map(|a| recorded.iter().any(|r| r == a.id))
        .collect())
}

/// The columns one attempt sets.
struct Columns<'a> {
    id: &'a str,
    status: DeliveryStatus,
    code: Option<i64>,
    error: Option<&'a str>,
    next: Option<i64>,
    delivered_at: Option<i64>,
    held_until: i64,
}

fn columns<'a>(a: &Answered<'a>) -> Columns<'a> {
    let now = a.at;
    let (status, code, error, next, delivered_at) = match a.attempt {
        Attempt::Delivered { status_code } => (
            DeliveryStatus::Delivered,
            Some(status_code),
            None,
            None,
            Some(now),
        ),
        Attempt::Retry {
            status_code,
            error,
            next_attempt_at,
        } => (
            DeliveryStatus::Pending,
            status_code,
            Some(error),
            Some(next_attempt_at),
            None,
        ),
        Attempt::Failed { status_code, error } => {
            (DeliveryStatus::Failed, status_code, Some(error), None, None)
        }
    };
    Columns {
        id: a.id,
        held_until: a.lease_until,
        status,
        code: code.map(i64::from),
        error,
        next,
        delivered_at,
    }
}

/// Makes a failed delivery pending again with its attempts reset (`POST …/retry`). Returns
/// the row's target when it was failed; `None` when there is no such delivery or it is not
/// failed.
pub async fn retry(store: &Store, id: &str, now: i64) -> Result<Option<String>, StoreError> {
    Ok(with_pool!(store, p => sqlx::query_as::<_, (String,)>(
        "update deliveries set status = 'pending', attempts = 0, next_attempt_at = $2, \
         lease_owner = null, lease_until = null where id = $1 and status = 'failed' \
         returning target_id")
        .bind(id).bind(now).fetch_optional(p).await?)
    .map(|(t,)| t))
}

/// One delivery.
pub async fn get(store: &Store, id: &str) -> Result<Option<DeliveryRow>, StoreError> {
    let sql = format!("select {COLUMNS} from deliveries where id = $1");
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, DeliveryRow>(&sql).bind(id).fetch_optional(p).await?),
    )
}

/// Filters of [`list`].
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub target_id: Option<String>,
    pub event_id: Option<String>,
    pub limit: i64,
}

/// Deliveries newest first.
pub async fn list(store: &Store, f: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
    let filters = [
        ("status =", f.status.map(DeliveryStatus::as_str)),
        ("target_id =", f.target_id.as_deref()),
        ("event_id =", f.event_id.as_deref()),
    ];
    let mut sql = format!("select {COLUMNS} from deliveries");
    let mut n = 0;
    for (cond, _) in filters.iter().filter(|(_, v)| v.is_some()) {
        n += 1;
        sql.push_str(if n == 1 { " where " } else { " and " });
        sql.push_str(&format!("{cond} ${n}"));
    }
    sql.push_str(&format!(
        " order by created_at desc, id desc limit ${}",
        n + 1
    ));
    Ok(with_pool!(store, p => {
        let mut q = sqlx::query_as::<_, DeliveryRow>(&sql);
        for v in filters.iter().filter_map(|(_, v)| *v) {
            q = q.bind(v);
        }
        q.bind(f.limit).fetch_all(p).await?
    }))
}
