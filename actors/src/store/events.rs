//! The `events` table: every accepted notification, stored once (idempotency key), then
//! claimed under a lease, processed and marked.

use sqlx::QueryBuilder;

use super::{with_pool, Backend, Store, StoreError};

/// An event as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: String,
    pub idempotency_key: String,
    pub kind: String,
    pub subscription_id: Option<String>,
    pub credential_id: Option<String>,
    pub change_type: String,
    pub resource_id: Option<String>,
    /// The item as Graph sent it, clientState masked.
    pub raw: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub payload: Option<String>,
    pub received_at: i64,
    pub processed_at: Option<i64>,
}

const COLUMNS: &str = "id, idempotency_key, kind, subscription_id, credential_id, change_type, \
    resource_id, raw, status, attempts, next_attempt_at, lease_owner, lease_until, last_error, \
    payload, received_at, processed_at";

/// A new event, as the receiver (or a resync) produces it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub idempotency_key: String,
    /// `change`, `lifecycle` or `resync`.
    pub kind: &'static str,
    pub subscription_id: Option<String>,
    pub credential_id: Option<String>,
    pub change_type: String,
    pub resource_id: Option<String>,
    pub raw: String,
    pub received_at: i64,
}

/// An event that an insert really added (not a duplicate).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Inserted {
    pub id: String,
    pub subscription_id: Option<String>,
    pub kind: String,
}

/// Rows per INSERT statement; far below both engines' bound-parameter limits.
const CHUNK: usize = 500;

/// Inserts events in one transaction, skipping any whose idempotency key is already stored
/// (or repeats earlier in `events`). Returns the events really added. Either all of them are
/// durable when this returns `Ok`, or none is.
pub async fn insert_batch(store: &Store, events: &[NewEvent]) -> Result<Vec<Inserted>, StoreError> {
    let unique = dedup(events);
    if unique.is_empty() {
        return Ok(Vec::new());
    }
    match store {
        Store::Postgres(p) => insert_pg(p, &unique).await,
        Store::Sqlite(p) => insert_sqlite(&mut *p.acquire().await?, &unique).await,
    }
}

/// The events of `events` whose idempotency key is not repeated earlier in it.
fn dedup(events: &[NewEvent]) -> Vec<&NewEvent> {
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    events
        .iter()
        .filter(|e| seen.insert(e.idempotency_key.as_str()))
        .collect()
}

/// One fixed statement whatever the batch size: prepared once per connection, one round trip
/// per batch, 9 parameters (arrays) instead of 12 per row. A single statement is atomic on its
/// own: no BEGIN/COMMIT round trips.
async fn insert_pg<'c>(
    conn: impl sqlx::PgExecutor<'c>,
    unique: &[&NewEvent],
) -> Result<Vec<Inserted>, StoreError> {
    let col = |f: fn(&NewEvent) -> &str| unique.iter().map(|e| f(e)).collect::<Vec<&str>>();
    let opt = |f: fn(&NewEvent) -> Option<&str>| {
        unique.iter().map(|e| f(e)).collect::<Vec<Option<&str>>>()
    };
    Ok(sqlx::query_as::<_, Inserted>(
        "insert into events (id, idempotency_key, kind, subscription_id, credential_id, \
         change_type, resource_id, raw, status, attempts, next_attempt_at, received_at) \
         select id, k, kind, sub, cred, ct, rid, raw, 'pending', 0, at, at \
         from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                     $6::text[], $7::text[], $8::text[], $9::int8[]) \
              as t(id, k, kind, sub, cred, ct, rid, raw, at) \
         on conflict (idempotency_key) do nothing returning id, subscription_id, kind",
    )
    .bind(col(|e| &e.id))
    .bind(col(|e| &e.idempotency_key))
    .bind(col(|e| e.kind))
    .bind(opt(|e| e.subscription_id.as_deref()))
    .bind(opt(|e| e.credential_id.as_deref()))
    .bind(col(|e| &e.change_type))
    .bind(opt(|e| e.resource_id.as_deref()))
    .bind(col(|e| &e.raw))
    .bind(unique.iter().map(|e| e.received_at).collect::<Vec<i64>>())
    .fetch_all(conn)
    .await?)
}

/// One statement is atomic on its own (autocommit): a batch that fits one is a single call to
/// the connection's thread; a larger one is chunked inside a transaction.
async fn insert_sqlite(
    conn: &mut sqlx::SqliteConnection,
    unique: &[&NewEvent],
) -> Result<Vec<Inserted>, StoreError> {
    if unique.len() <= CHUNK {
        return Ok(insert_sqlite_rows(unique)
            .build_query_as()
            .fetch_all(conn)
            .await?);
    }
    let mut tx = sqlx::Connection::begin(conn).await?;
    let mut added = Vec::with_capacity(unique.len());
    for chunk in unique.chunks(CHUNK) {
        added.extend(
            insert_sqlite_rows(chunk)
                .build_query_as()
                .fetch_all(&mut *tx)
                .await?,
        );
    }
    tx.commit().await?;
    Ok(added)
}

/// One multi-row insert of `chunk` on SQLite (at most [`CHUNK`] rows: 10 parameters a row).
fn insert_sqlite_rows<'q>(chunk: &'q [&'q NewEvent]) -> QueryBuilder<'q, sqlx::Sqlite> {
    let mut qb = QueryBuilder::new(
        "insert into events (id, idempotency_key, kind, subscription_id, credential_id, \
         change_type, resource_id, raw, status, attempts, next_attempt_at, received_at) ",
    );
    qb.push_values(chunk, |mut b, e| {
        b.push_bind(&e.id)
            .push_bind(&e.idempotency_key)
            .push_bind(e.kind)
            .push_bind(&e.subscription_id)
            .push_bind(&e.credential_id)
            .push_bind(&e.change_type)
            .push_bind(&e.resource_id)
            .push_bind(&e.raw)
            .push("'pending'")
            .push("0")
            .push_bind(e.received_at)
            .push_bind(e.received_at);
    });
    qb.push(" on conflict (idempotency_key) do nothing returning id, subscription_id, kind");
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
                    .application_name(WRITER_APPLICATION_NAME),
            ),
        };
        Writer { target, conn: None }
    }

    /// [`insert_batch`] on this writer's connection.
    pub async fn insert_batch(&mut self, events: &[NewEvent]) -> Result<Vec<Inserted>, StoreError> {
        use sqlx::ConnectOptions;
        let unique = dedup(events);
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
            WriterConn::Sqlite(c) => insert_sqlite(c, &unique).await,
            WriterConn::Postgres(c) => insert_pg(&mut *c, &unique).await,
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
    pub status: Option<String>,
    pub credential_id: Option<String>,
    /// Only events received strictly before this (Unix ms)…
    pub before_ms: Option<i64>,
    /// …or, at the same millisecond, with an id ordered before this one (a page cursor).
    pub before_id: Option<String>,
    pub limit: i64,
}

/// Events newest first.
pub async fn list(store: &Store, f: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
    let sql = format!(
        "select {COLUMNS} from events \
         where ($1 is null or status = $1) and ($2 is null or credential_id = $2) \
         and ($3 is null or received_at < $3 or (received_at = $3 and $4 is not null and id < $4)) \
         order by received_at desc, id desc limit $5"
    );
    Ok(with_pool!(store, p => sqlx::query_as::<_, EventRow>(&sql)
        .bind(&f.status).bind(&f.credential_id).bind(f.before_ms).bind(&f.before_id).bind(f.limit)
        .fetch_all(p).await?))
}

/// Claims up to `limit` events that are due: pending with `next_attempt_at <= now`, or
/// processing under a lease that ran out (its owner died). Each claimed event is marked
/// `processing` under `owner` until `now + lease_ms`, and its `attempts` counted.
/// On PostgreSQL the claim skips rows another process holds (`FOR UPDATE SKIP LOCKED`).
pub async fn claim_due(
    store: &Store,
    owner: &str,
    now: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<EventRow>, StoreError> {
    let lock = match store.backend() {
        Backend::Postgres => "for update skip locked",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "update events set status = 'processing', lease_owner = $1, lease_until = $2, \
         attempts = attempts + 1 \
         where id in (select id from events \
            where (status = 'pending' and next_attempt_at <= $3) \
               or (status = 'processing' and lease_until < $3) \
            order by next_attempt_at limit $4 {lock}) \
         returning {COLUMNS}"
    );
    Ok(with_pool!(store, p => sqlx::query_as::<_, EventRow>(&sql)
        .bind(owner).bind(now + lease_ms).bind(now).bind(limit).fetch_all(p).await?))
}

/// Claims one event by id if it is due (used when a processor is handed an id directly).
pub async fn claim(
    store: &Store,
    id: &str,
    owner: &str,
    now: i64,
    lease_ms: i64,
) -> Result<Option<EventRow>, StoreError> {
    let sql = format!(
        "update events set status = 'processing', lease_owner = $2, lease_until = $3, \
         attempts = attempts + 1 \
         where id = $1 and ((status = 'pending' and next_attempt_at <= $4) \
            or (status = 'processing' and lease_until < $4)) \
         returning {COLUMNS}"
    );
    Ok(with_pool!(store, p => sqlx::query_as::<_, EventRow>(&sql)
        .bind(id).bind(owner).bind(now + lease_ms).bind(now).fetch_optional(p).await?))
}

/// Ends an event held under `owner`'s lease: `completed`, `skipped` or `failed`. False if the
/// lease was lost meanwhile (another owner took the event; it must not be marked twice).
pub async fn finish(
    store: &Store,
    id: &str,
    owner: &str,
    status: &str,
    payload: Option<&str>,
    last_error: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    let n = with_pool!(store, p => sqlx::query(
        "update events set status = $3, payload = coalesce($4, payload), last_error = $5, \
         processed_at = $6, lease_owner = null, lease_until = null \
         where id = $1 and lease_owner = $2 and status = 'processing'")
        .bind(id).bind(owner).bind(status).bind(payload).bind(last_error).bind(now)
        .execute(p).await?.rows_affected());
    Ok(n > 0)
}

/// Puts an event held under `owner`'s lease back to `pending`, due at `next_attempt_at`.
pub async fn retry_later(
    store: &Store,
    id: &str,
    owner: &str,
    next_attempt_at: i64,
    last_error: &str,
) -> Result<bool, StoreError> {
    let n = with_pool!(store, p => sqlx::query(
        "update events set status = 'pending', next_attempt_at = $3, last_error = $4, \
         lease_owner = null, lease_until = null \
         where id = $1 and lease_owner = $2 and status = 'processing'")
        .bind(id).bind(owner).bind(next_attempt_at).bind(last_error)
        .execute(p).await?.rows_affected());
    Ok(n > 0)
}

/// How many events are in each status (for `/status` and metrics).
pub async fn count_by_status(store: &Store) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(with_pool!(store, p => sqlx::query_as::<_, (String, i64)>(
        "select status, count(*) from events group by status order by status")
        .fetch_all(p).await?))
}
