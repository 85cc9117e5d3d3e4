//! The `events` table: every accepted notification, stored once (idempotency key), then
//! claimed under a lease, processed and marked.
//!
//! Ids are UUIDv7 whose time is `received_at` ([`event_id`]): the primary key lists events in
//! the order they arrived, and grows at its end. The unique index holds a digest of the
//! idempotency key ([`idempotency_digest`]), not the key: its entries are 32 bytes rather than
//! about 250, and it is the one index whose keys are random.

use sqlx::QueryBuilder;

use super::status::EventStatus;
use super::{pg_fetch_all_within, with_pool, Store, StoreError};

mod processing;

pub use processing::{
    claim, claim_many, complete, complete_many, fail_orphans, finish, retry_later, Completion,
    Lease, NewDelivery,
};

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventRow {
    pub id: String,
    /// [`idempotency_digest`] of the idempotency key.
    pub idempotency_digest: String,
    pub kind: String,
    pub subscription_id: Option<String>,
    pub credential_id: Option<String>,
    pub change_type: String,
    pub resource_id: Option<String>,
    /// The item as Graph sent it, clientState masked.
    pub raw: String,
    #[sqlx(try_from = "String")]
    pub status: EventStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub payload: Option<String>,
    pub received_at: i64,
    pub processed_at: Option<i64>,
}

const COLUMNS: &str = "id, idempotency_digest, kind, subscription_id, credential_id, change_type, \
    resource_id, raw, status, attempts, next_attempt_at, lease_owner, lease_until, last_error, \
    payload, received_at, processed_at";

/// A new event, as the receiver (or a resync) produces it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// [`event_id`] of `received_at`.
    pub id: String,
    /// The key of SPEC §3.1; what is stored is its [`idempotency_digest`].
    pub idempotency_key: String,
    /// `change`, `lifecycle` or `resync`.
    pub kind: &'static str,
    pub subscription_id: Option<String>,
    pub credential_id: Option<String>,
    pub change_type: String,
    pub resource_id: Option<String>,
    pub raw: String,
    pub received_at: i64,
    /// Inserted claimed under the writer's lease ([`Writer::insert_batch`]): `processing`, its
    /// first attempt counted, for the receiver to hand straight to a processor, which then
    /// needs no claim of its own (one statement and one row version less per event).
    pub claim: bool,
}

/// An event that an insert really added (not a duplicate).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Inserted {
    pub id: String,
    pub subscription_id: Option<String>,
    pub credential_id: Option<String>,
    pub kind: String,
    /// The row as stored, when it was inserted claimed.
    #[sqlx(skip)]
    pub claimed: Option<Box<EventRow>>,
}

/// A new event id: a UUIDv7 whose time is `received_at` (Unix ms), random below that.
pub fn event_id(received_at: i64) -> String {
    let ms = u64::try_from(received_at).unwrap_or(0);
    let ts = uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, (ms % 1000) as u32 * 1_000_000);
    uuid::Uuid::new_v7(ts).to_string()
}

/// The smallest id [`event_id`] gives at or after `ms`: ids below it are of events received
/// before `ms` (a time cursor for [`list`]).
pub fn first_event_id_at(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0).min((1 << 48) - 1);
    format!(
        "{:08x}-{:04x}-0000-0000-000000000000",
        ms >> 16,
        ms & 0xffff
    )
}

/// What the unique index holds of an idempotency key: the first 128 bits of its SHA-256, as
/// 32 lowercase hex digits.
pub fn idempotency_digest(key: &str) -> String {
    use sha2::Digest;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = sha2::Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(32);
    for b in &hash[..16] {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// Rows per INSERT statement; far below both engines' bound-parameter limits.
const CHUNK: usize = 500;

/// Inserts events in one transaction, skipping any whose idempotency key is already stored
/// (or repeats earlier in `events`). Returns the events really added. Either all of them are
/// durable when this returns `Ok`, or none is. Every event is inserted pending (`claim` is
/// the receiver's writer's, [`Writer::insert_batch`]).
pub async fn insert_batch(store: &Store, events: &[NewEvent]) -> Result<Vec<Inserted>, StoreError> {
    let unique = dedup(events, None);
    if unique.is_empty() {
        return Ok(Vec::new());
    }
    match store {
        Store::Postgres(p) => insert_pg(p, &unique, None).await,
        Store::Sqlite(p) => insert_sqlite(&mut *p.acquire().await?, &unique, None).await,
    }
}

/// An event to insert, with the digest of its key and whether it is inserted claimed.
struct Row<'a> {
    event: &'a NewEvent,
    digest: String,
    claim: bool,
}

/// The events of `events` whose idempotency key is not repeated earlier in it, with their
/// digests; those that ask for it claimed when there is a lease to claim them under.
fn dedup<'a>(events: &'a [NewEvent], lease: Option<&Lease<'_>>) -> Vec<Row<'a>> {
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    events
        .iter()
        .filter(|e| seen.insert(e.idempotency_key.as_str()))
        .map(|event| Row {
            event,
            digest: idempotency_digest(&event.idempotency_key),
            claim: event.claim && lease.is_some(),
        })
        .collect()
}

/// The rows of those of `added` that were inserted claimed, as stored (built here rather
/// than read back: the insert sends them, and `raw` need not cross the wire twice).
fn with_claimed(
    mut added: Vec<Inserted>,
    unique: &[Row<'_>],
    lease: Option<Lease<'_>>,
) -> Vec<Inserted> {
    let Some(lease) = lease else {
        return added;
    };
    let claimed: std::collections::HashMap<&str, &Row<'_>> = unique
        .iter()
        .filter(|r| r.claim)
        .map(|r| (r.event.id.as_str(), r))
        .collect();
    if claimed.is_empty() {
        return added;
    }
    for a in &mut added {
        if let Some(Row {
            event: e, digest, ..
        }) = claimed.get(a.id.as_str())
        {
            a.claimed = Some(Box::new(EventRow {
                id: e.id.clone(),
                idempotency_digest: digest.clone(),
                kind: e.kind.to_string(),
                subscription_id: e.subscription_id.clone(),
                credential_id: e.credential_id.clone(),
                change_type: e.change_type.clone(),
                resource_id: e.resource_id.clone(),
                raw: e.raw.clone(),
                status: EventStatus::Processing,
                attempts: 1,
                next_attempt_at: e.received_at,
                lease_owner: Some(lease.owner.to_string()),
                lease_until: Some(lease.now + lease.ms),
                last_error: None,
                payload: None,
                received_at: e.received_at,
                processed_at: None,
            }));
        }
    }
    added
}

/// One fixed statement whatever the batch size: prepared once per connection, one round trip
/// per batch, 12 parameters (10 arrays) instead of 14 per row. A single statement is atomic
/// on its own: no BEGIN/COMMIT round trips.
async fn insert_pg<'c>(
    conn: impl sqlx::PgExecutor<'c>,
    unique: &[Row<'_>],
    lease: Option<Lease<'_>>,
) -> Result<Vec<Inserted>, StoreError> {
    let col = |f: fn(&NewEvent) -> &str| unique.iter().map(|r| f(r.event)).collect::<Vec<&str>>();
    let opt = |f: fn(&NewEvent) -> Option<&str>| {
        unique
            .iter()
            .map(|r| f(r.event))
            .collect::<Vec<Option<&str>>>()
    };
    Ok(sqlx::query_as::<_, Inserted>(
        "insert into events (id, idempotency_digest, kind, subscription_id, credential_id, \
         change_type, resource_id, raw, status, attempts, next_attempt_at, received_at, \
         lease_owner, lease_until) \
         select id, k, kind, sub, cred, ct, rid, raw, \
                case when c then 'processing' else 'pending' end, case when c then 1 else 0 end, \
                at, at, case when c then $11 end, case when c then $12::int8 end \
         from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                     $6::text[], $7::text[], $8::text[], $9::int8[], $10::bool[]) \
              as t(id, k, kind, sub, cred, ct, rid, raw, at, c) \
         on conflict (idempotency_digest) do nothing returning id, subscription_id, credential_id, kind",
    )
    .bind(col(|e| &e.id))
    .bind(
        unique
            .iter()
            .map(|r| r.digest.as_str())
            .collect::<Vec<&str>>(),
    )
    .bind(col(|e| e.kind))
    .bind(opt(|e| e.subscription_id.as_deref()))
    .bind(opt(|e| e.credential_id.as_deref()))
    .bind(col(|e| &e.change_type))
    .bind(opt(|e| e.resource_id.as_deref()))
    .bind(col(|e| &e.raw))
    .bind(
        unique
            .iter()
            .map(|r| r.event.received_at)
            .collect::<Vec<i64>>(),
    )
    .bind(unique.iter().map(|r| r.claim).collect::<Vec<bool>>())
    .bind(lease.map(|l| l.owner))
    .bind(lease.map(|l| l.now + l.ms))
    .fetch_all(conn)
    .await
    .map(|added| with_claimed(added, unique, lease))?)
}

/// One statement is atomic on its own (autocommit): a batch that fits one is a single call to
/// the connection's thread; a larger one is chunked inside a transaction.
async fn insert_sqlite(
    conn: &mut sqlx::SqliteConnection,
    unique: &[Row<'_>],
    lease: Option<Lease<'_>>,
) -> Result<Vec<Inserted>, StoreError> {
    if unique.len() <= CHUNK {
        let added = insert_sqlite_rows(unique, lease)
            .build_query_as()
            .fetch_all(conn)
            .await?;
        return Ok(with_claimed(added, unique, lease));
    }
    let mut tx = sqlx::Connection::begin(conn).await?;
    let mut added = Vec::with_capacity(unique.len());
    for chunk in unique.chunks(CHUNK) {
        added.extend(
            insert_sqlite_rows(chunk, lease)
                .build_query_as()
                .fetch_all(&mut *tx)
                .await?,
        );
    }
    tx.commit().await?;
    Ok(with_claimed(added, unique, lease))
}

/// One multi-row insert of `chunk` on SQLite (at most [`CHUNK`] rows: 10 parameters a row, 12
/// for a row inserted claimed).
fn insert_sqlite_rows<'q>(
    chunk: &'q [Row<'q>],
    lease: Option<Lease<'q>>,
) -> QueryBuilder<'q, sqlx::Sqlite> {
    let mut qb = QueryBuilder::new(
        "insert into events (id, idempotency_digest, kind, subscription_id, credential_id, \
         change_type, resource_id, raw, status, attempts, next_attempt_at, received_at, \
         lease_owner, lease_until) ",
    );
    qb.push_values(chunk, |mut b, r| {
        let e = r.event;
        b.push_bind(&e.id)
            .push_bind(&r.digest)
            .push_bind(e.kind)
            .push_bind(&e.subscription_id)
            .push_bind(&e.credential_id)
            .push_bind(&e.change_type)
            .push_bind(&e.resource_id)
            .push_bind(&e.raw);
        match lease.filter(|_| r.claim) {
            Some(l) => b
                .push("'processing'")
                .push("1")
                .push_bind(e.received_at)
                .push_bind(e.received_at)
                .push_bind(l.owner)
                .push_bind(l.now + l.ms),
            None => b
                .push("'pending'")
                .push("0")
                .push_bind(e.received_at)
                .push_bind(e.received_at)
                .push("null")
                .push("null"),
        };
    });
    qb.push(" on conflict (idempotency_digest) do nothing returning id, subscription_id, credential_id, kind");
    qb
}

/// How the writer's connection shows in PostgreSQL's `pg_stat_activity`.
pub const WRITER_APPLICATION_NAME: &str = "relay365 receiver";

/// A connection of its own for the receiver's commits, outside the pool: sqlx pings a pooled
/// connection when it is taken and again when it is given back, two round trips more than the
/// insert itself on every commit. On SQLite it also keeps its 8 MiB page cache (in WAL mode a
/// pooled connection drops its cache whenever another connection wrote, and would re-read the
/// indexes on every commit), and checkpoints every 4,000 pages rather than 1,000 (a page
/// written by many commits is copied back once; the WAL grows to about 16 MB). A connection
/// that failed, or whose insert was abandoned half-way, is closed; the next batch opens a new
/// one.
pub struct Writer {
    target: WriterTarget,
    conn: Option<WriterConn>,
}

enum WriterTarget {
    Sqlite(sqlx::sqlite::SqliteConnectOptions),
    Postgres(sqlx::postgres::PgConnectOptions),
}

enum WriterConn {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Writer {
    /// A writer to the database of `store` (connects on first use).
    pub fn new(store: &Store) -> Writer {
        Writer::named(store, WRITER_APPLICATION_NAME)
    }

    /// [`Writer::new`], its PostgreSQL connection showing `application_name` in
    /// `pg_stat_activity` (so that one writer can be told from the others of a cluster).
    pub fn named(store: &Store, application_name: &str) -> Writer {
        let target = match store {
            Store::Sqlite(p) => WriterTarget::Sqlite(
                (*p.connect_options())
                    .clone()
                    .pragma("cache_size", "-8192")
                    .pragma("wal_autocheckpoint", "4000"),
            ),
            Store::Postgres(p) => WriterTarget::Postgres(
                (*p.connect_options())
                    .clone()
                    .application_name(application_name),
            ),
        };
        Writer { target, conn: None }
    }

    /// [`insert_batch`] on this writer's connection; the events that ask for it
    /// ([`NewEvent::claim`]) inserted claimed under `lease`, their rows in the answer
    /// ([`Inserted::claimed`]).
    pub async fn insert_batch(
        &mut self,
        events: &[NewEvent],
        lease: Option<Lease<'_>>,
    ) -> Result<Vec<Inserted>, StoreError> {
        use sqlx::ConnectOptions;
        let unique = dedup(events, lease.as_ref());
        if unique.is_empty() {
            return Ok(Vec::new());
        }
        // Taken out for the insert and put back only after a success: a failed connection,
        // or one whose insert was abandoned half-way (a timeout drops this future), is closed.
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => match &self.target {
                WriterTarget::Sqlite(o) => WriterConn::Sqlite(o.connect().await?),
                WriterTarget::Postgres(o) => WriterConn::Postgres(o.connect().await?),
            },
        };
        let result = match &mut conn {
            WriterConn::Sqlite(c) => insert_sqlite(c, &unique, lease).await,
            WriterConn::Postgres(c) => insert_pg(&mut *c, &unique, lease).await,
        };
        if result.is_ok() {
            self.conn = Some(conn);
        }
        result
    }
}

/// One event.
pub async fn get(store: &Store, id: &str) -> Result<Option<EventRow>, StoreError> {
    let sql = format!("select {COLUMNS} from events where id = $1");
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, EventRow>(&sql).bind(id).fetch_optional(p).await?),
    )
}

/// Filters of [`list`].
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub status: Option<EventStatus>,
    pub credential_id: Option<String>,
    /// Only events whose id is below this one: received before it (a page cursor, or
    /// [`first_event_id_at`] of a time).
    pub before_id: Option<String>,
    pub limit: i64,
}

/// Events newest first (by id, which is by time received). Only the filters given become
/// conditions, so that each can use its index (a cursor seeks instead of scanning from the
/// newest event).
pub async fn list(store: &Store, f: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
    let filters = [
        ("status =", f.status.map(EventStatus::as_str)),
        ("credential_id =", f.credential_id.as_deref()),
        ("id <", f.before_id.as_deref()),
    ];
    let mut sql = format!("select {COLUMNS} from events");
    let mut n = 0;
    for (cond, _) in filters.iter().filter(|(_, v)| v.is_some()) {
        n += 1;
        sql.push_str(if n == 1 { " where " } else { " and " });
        sql.push_str(&format!("{cond} ${n}"));
    }
    sql.push_str(&format!(" order by id desc limit ${}", n + 1));
    Ok(with_pool!(store, p => {
        let mut q = sqlx::query_as::<_, EventRow>(&sql);
        for v in filters.iter().filter_map(|(_, v)| *v) {
            q = q.bind(v);
        }
        q.bind(f.limit).fetch_all(p).await?
    }))
}

/// The condition of an event a processor (of instance `$2`, at `$1`) may claim: pending and
/// due, processing under a lease that ran out (its owner died or lost it), or processing under
/// `$2`'s own lease (inserted claimed by its receiver, then kept waiting in a processor's queue
/// until the claim ran short, [`Writer::insert_batch`]). Lifecycle events are the renewal
/// actor's.
///
/// Written as a `case`, which no index can answer, so that a claim by id is always planned as
/// a look-up of each id in the primary key: as `status = … or status = …`, a planner misled
/// by the statistics of a young table read every entry of the status index's `pending` and
/// `processing` ranges (thousands, most of them dead) for each claim.
const CLAIMABLE: &str = "kind <> 'lifecycle' and case status \
    when 'pending' then next_attempt_at <= $1 \
    when 'processing' then lease_until < $1 or lease_owner = $2 else false end";

/// Change events to hand to the processors, oldest first, with their subscription: pending
/// ones due at or before `due_before`, and processing ones whose lease ran out by `now` (their
/// owner died). Each is claimed there, by id. The sweep passes a `due_before` a little in the
/// past, so that it leaves fresh work to the fast path that already carries it.
///
/// With a `holder` (an instance sharing the database with others), only the events of the
/// mailboxes the store says it holds (`credential_owners`): taking the oldest `limit` of all
/// and leaving the others' out afterwards, a backlog of other instances' mailboxes could fill
/// every sweep and starve this instance's own.
pub async fn due(
    store: &Store,
    now: i64,
    due_before: i64,
    limit: i64,
    holder: Option<&str>,
) -> Result<Vec<Due>, StoreError> {
    const DUE: &str = "select id, subscription_id, credential_id from events \
         where kind <> 'lifecycle' and ((status = 'pending' and next_attempt_at <= $2) \
         or (status = 'processing' and lease_until < $1))";
    let sql = match holder {
        None => format!("{DUE} order by next_attempt_at limit $3"),
        Some(_) => format!("{DUE}{HELD} order by next_attempt_at limit $3"),
    };
    Ok(with_pool!(store, p => {
        let q = sqlx::query_as::<_, Due>(&sql).bind(now).bind(due_before).bind(limit);
        match holder {
            Some(h) => q.bind(h),
            None => q,
        }
        .fetch_all(p)
        .await?
    }))
}

/// The condition on the mailboxes an instance holds, its id bound as `$4`.
const HELD: &str = " and credential_id in \
     (select credential_id from credential_owners where instance = $4)";

/// The same as [`due`], but at most `per_subscription` of one subscription: what a sweep reads
/// besides when [`due`] came back full. A subscription's events run one at a time, so its
/// backlog (waiting in a worker's queue past its lease, so due again) would otherwise fill
/// every sweep, and the others' work that only a sweep brings back would wait until it
/// drained. It reads and sorts every due row, so it runs only then, and on PostgreSQL within
/// `budget_ms` of the server's time (a query left behind by a client that gave up would run
/// on).
pub async fn due_per_subscription(
    store: &Store,
    (now, due_before): (i64, i64),
    (limit, per_subscription): (i64, i64),
    holder: Option<&str>,
    budget_ms: i64,
) -> Result<Vec<Due>, StoreError> {
    // Without a holder, `$4` is empty and takes every mailbox.
    let sql = "select id, subscription_id, credential_id from (select id, subscription_id, \
             credential_id, next_attempt_at, row_number() over (partition by subscription_id \
             order by next_attempt_at) as n from events where kind <> 'lifecycle' \
             and ((status = 'pending' and next_attempt_at <= $2) \
             or (status = 'processing' and lease_until < $1)) and ($4 = '' or credential_id in \
             (select credential_id from credential_owners where instance = $4))) e \
         where n <= $5 order by next_attempt_at limit $3";
    // A macro, not a closure: the query's type is the store's.
    macro_rules! q {
        () => {
            sqlx::query_as::<_, Due>(sql)
                .bind(now)
                .bind(due_before)
                .bind(limit)
                .bind(holder.unwrap_or(""))
                .bind(per_subscription)
        };
    }
    Ok(match store {
        Store::Sqlite(p) => q!().fetch_all(p).await?,
        Store::Postgres(p) => pg_fetch_all_within!(p, budget_ms, q!()),
    })
}

/// The messages a subscription has a `created` event for, stored since `since` (Unix ms): a
/// resync's `created` item for one of them is that mail again, under the etag it has now (it
/// was read, or a rule touched it), which makes another key. Found through the credential's
/// index (`credential_id, id`, ids being in time order), so a round reads only its own
/// mailbox's latest events.
pub async fn created_since(
    store: &Store,
    credential_id: &str,
    subscription_id: &str,
    since: i64,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let rows: Vec<(Option<String>,)> = with_pool!(store, p => sqlx::query_as(
        "select resource_id from events where credential_id = $1 and id >= $2 \
         and subscription_id = $3 and change_type = 'created'")
        .bind(credential_id).bind(first_event_id_at(since)).bind(subscription_id)
        .fetch_all(p).await?);
    Ok(rows.into_iter().filter_map(|(r,)| r).collect())
}

/// A change event that is due, with what routes it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Due {
    pub id: String,
    pub subscription_id: Option<String>,
    pub credential_id: Option<String>,
}

/// Makes an event pending again, due now, with its attempts reset (`POST …/replay`). False
/// when there is no such event or it is being processed right now.
pub async fn replay(store: &Store, id: &str, now: i64) -> Result<bool, StoreError> {
    let n = with_pool!(store, p => sqlx::query(
        "update events set status = 'pending', attempts = 0, next_attempt_at = $2, \
         last_error = null, lease_owner = null, lease_until = null \
         where id = $1 and kind <> 'lifecycle' and status <> 'processing'")
        .bind(id).bind(now).execute(p).await?.rows_affected());
    Ok(n > 0)
}

/// Deletes up to `batch` completed or skipped events received before `before`, whose
/// deliveries (if any) were all delivered; their deliveries go with them. Returns how many
/// events were deleted. Failed events, and events with a delivery still pending or failed,
/// are kept. Ids are in time order, so the candidates are a range of the primary key.
pub async fn purge(store: &Store, before: i64, batch: i64) -> Result<u64, StoreError> {
    // One statement, its conditions checked again on every row it deletes: a read and then
    // deletes in one transaction failed on SQLite whenever anything committed between them
    // (a WAL snapshot cannot be upgraded to a write), and on PostgreSQL could delete an event
    // a replay had just made pending again. Deliveries go with their events (`on delete
    // cascade`).
    let n = with_pool!(store, p => sqlx::query(
        "delete from events where id in (\
             select id from events e where id < $1 and status in ('completed', 'skipped') \
             and not exists (select 1 from deliveries d where d.event_id = e.id \
                             and d.status <> 'delivered') \
             order by id limit $2) \
         and status in ('completed', 'skipped')")
        .bind(first_event_id_at(before)).bind(batch).execute(p).await?.rows_affected());
    Ok(n)
}

/// How many events are in each status (for `/status` and metrics).
pub async fn count_by_status(store: &Store) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(with_pool!(store, p => sqlx::query_as::<_, (String, i64)>(
        "select status, count(*) from events group by status order by status")
        .fetch_all(p).await?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_digest_is_the_first_half_of_the_sha256() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(
            idempotency_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223"
        );
        assert_ne!(
            idempotency_digest("s:created:1:"),
            idempotency_digest("s:created:1:e")
        );
    }

    #[test]
    fn ids_carry_their_time_and_sort_by_it() {
        let t = 1_764_600_000_123;
        let id = event_id(t);
        let (secs, nanos) = uuid::Uuid::parse_str(&id)
            .unwrap()
            .get_timestamp()
            .unwrap()
            .to_unix();
        assert_eq!(secs as i64 * 1000 + i64::from(nanos / 1_000_000), t);
        assert!(first_event_id_at(t) <= id);
        assert!(event_id(t - 1) < first_event_id_at(t));
        assert!(id < first_event_id_at(t + 1));
        assert!(event_id(t + 1) > id);
        assert_eq!(
            first_event_id_at(-5),
            "00000000-0000-0000-0000-000000000000"
        );
    }
}
