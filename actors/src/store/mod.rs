//! The store: SQLite (embedded default, one process) or PostgreSQL (production, several
//! processes), behind one type.
//!
//! The two schemas are the same tables and columns (`migrations/sqlite`, `migrations/postgres`),
//! so almost every query is one SQL string run on either pool; [`with_pool!`] expands a body
//! once per backend so the sqlx types line up. Ids are UUIDs as text and times are Unix
//! milliseconds, which compare the same way in both engines. The store knows no actors.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub mod credentials;
pub mod deliveries;
pub mod delta;
pub mod events;
pub mod instances;
pub mod lane;
pub mod lifecycle;
pub mod status;
pub mod subscriptions;
pub mod targets;

/// Runs `$body` with `$pool` bound to the concrete pool of `$store`.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool) => $body,
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Fetches all rows of `$query` on the PostgreSQL pool `$pool` in a transaction whose
/// statements may take at most `$ms` milliseconds of the server's time: a query its client
/// gave up on would otherwise run on in the server.
macro_rules! pg_fetch_all_within {
    ($pool:expr, $ms:expr, $query:expr) => {{
        let mut tx = $pool.begin().await?;
        sqlx::query(&format!(
            "set local statement_timeout = {}",
            i64::max($ms, 1)
        ))
        .execute(&mut *tx)
        .await?;
        let rows = $query.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows
    }};
}
pub(crate) use pg_fetch_all_within;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is neither `sqlite://…` nor `postgres://…`, or does not parse.
    #[error("unsupported database URL: {0}")]
    BadUrl(String),
    /// A query failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded (a JSON column, an enum text).
    #[error("corrupt stored value in {what}: {why}")]
    Corrupt { what: &'static str, why: String },
    /// A row with that key exists already (a unique violation, told apart here so that callers
    /// need not know the database's errors).
    #[error("{0}")]
    Conflict(String),
}

impl StoreError {
    /// `e`, or [`StoreError::Conflict`] with `what` if it is a unique violation.
    pub(crate) fn or_conflict(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
        match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what()),
            other => StoreError::Db(other),
        }
    }
}

/// SQLite's durability setting (`RELAY365_SQLITE_SYNCHRONOUS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// WAL with `synchronous=NORMAL`: survives a process crash.
    Normal,
    /// `synchronous=FULL`: also survives power loss.
    Full,
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// SQLite durability.
    pub sqlite_synchronous: SqliteSync,
    /// Upper bound of pooled connections.
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            sqlite_synchronous: SqliteSync::Normal,
            max_connections: 16,
        }
    }
}

/// Which engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool to one of the two engines.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Store {
    /// Opens the store named by `url` (creating a SQLite file and its folder if missing).
    /// Does not apply migrations: see [`Store::migrate`].
    pub async fn connect(url: &str, opts: &StoreOptions) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            let mut o = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::BadUrl(format!("{e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(match opts.sqlite_synchronous {
                    SqliteSync::Normal => SqliteSynchronous::Normal,
                    SqliteSync::Full => SqliteSynchronous::Full,
                })
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            o = o.pragma("temp_store", "memory");
            if let Some(parent) = Path::new(o.get_filename()).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        StoreError::BadUrl(format!("cannot create {}: {e}", parent.display()))
                    })?;
                }
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(opts.max_connections.clamp(1, 8))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(o)
                .await?;
            Ok(Store::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let o =
                PgConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl(format!("{e}")))?;
            // One connection first, so that a server that is down or refuses the login says
            // why (the pool would only say that it timed out).
            {
                use sqlx::{ConnectOptions, Connection};
                match tokio::time::timeout(Duration::from_secs(10), o.connect()).await {
                    Ok(conn) => conn?.close().await?,
                    Err(_) => {
                        return Err(StoreError::Db(sqlx::Error::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no answer from the database within 10 s",
                        ))))
                    }
                }
            }
            let pool = PgPoolOptions::new()
                .max_connections(opts.max_connections.max(1))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(o)
                .await?;
            Ok(Store::Postgres(pool))
        } else {
            Err(StoreError::BadUrl(
                "expected sqlite://… or postgres://…".into(),
            ))
        }
    }

    /// Applies the embedded migrations of this engine.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await?,
            Store::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        Ok(())
    }

    /// A second pool to the same database whose commits do not wait for the disk
    /// (PostgreSQL `synchronous_commit = off`), for work whose every write can be redone:
    /// claims, leases and outcomes of processing and delivery. A PostgreSQL crash may lose
    /// the last fraction of a second of them; the event or delivery is then claimed and done
    /// again (at least once holds), while what was accepted stays durable, because the
    /// receiver commits through its own connection, synchronously. Other writes (credentials,
    /// subscriptions, targets) stay on the durable pool. On SQLite (WAL, `synchronous=NORMAL`
    /// commits do not wait for the disk anyway) this is the same pool.
    pub fn relaxed(&self, max_connections: u32) -> Store {
        match self {
            Store::Sqlite(p) => Store::Sqlite(p.clone()),
            Store::Postgres(p) => {
                // Every statement on this pool finds its rows by key: the ids of a batch, or the
                // due index. Planned from the statistics of a young table (a new install, or any
                // table before autovacuum's next analyze), the batches joined to `unnest` were
                // run as a hash join over a scan of the whole table, a few thousand rows read for
                // each one written; so scans are left as the last resort. And the plan is made
                // once per connection and statement: PostgreSQL planned the claims and the
                // delivery answers anew at every call (0.1–0.2 ms each, as much as running them).
                let o = (*p.connect_options()).clone().options([
                    ("synchronous_commit", "off"),
                    ("enable_seqscan", "off"),
                    ("plan_cache_mode", "force_generic_plan"),
                ]);
                // No ping when a connection is taken: sqlx pings it again when it is given
                // back (always), and a ping is a round trip, which at a trickle cost as much
                // as the statement it guarded. A connection that broke while idle fails its
                // one statement, which is redone like any failed write of this pool.
                Store::Postgres(
                    PgPoolOptions::new()
                        .max_connections(max_connections.max(1))
                        .acquire_timeout(Duration::from_secs(10))
                        .test_before_acquire(false)
                        .connect_lazy_with(o),
                )
            }
        }
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, p => { sqlx::query("select 1").execute(p).await?; });
        Ok(())
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        with_pool!(self, p => p.close().await)
    }
}

/// Now, as stored: Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Unix milliseconds to a UTC time (clamped into chrono's range).
pub fn to_time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A fresh random id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
