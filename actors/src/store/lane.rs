//! A connection of its own for a writer that runs one statement at a time: the group commits of
//! processing and delivery ([`crate::group_commit`]), which carry every claim, completion and
//! delivery answer.
//!
//! Why: sqlx pings a pooled connection whenever it is given back (a round trip, and a task to
//! run it), so on the pool each of these statements cost PostgreSQL and relay365 two
//! exchanges instead of one. At a trickle every statement carries one event, so that was paid
//! per event: at 500/s PostgreSQL's CPU per event fell by a tenth without it
//! (`docs/benchmarks.md`). The receiver's [`super::events::Writer`] does the same for inserts.
//! On SQLite, which runs in this process, a lane is the pool.
//!
//! A connection is taken out for a statement and put back only after it succeeded: one that
//! failed, or whose statement was abandoned half-way, is closed, and the next statement opens a
//! new one.

use std::time::Duration;

use sqlx::ConnectOptions;

use super::{Store, StoreError};

/// How long opening a lane's connection may take: what the pools allow for taking one, so that
/// a database that accepts no connection fails the statement (to be redone) instead of holding
/// every write of its group commit.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one statement on a lane may take. Under load a statement carries tens of rows and
/// takes milliseconds; one unanswered this long is on a connection that went silent (a
/// failover that sent no reset), where TCP alone would wait about a quarter of an hour while
/// every claim, completion or delivery answer of the instance queued behind it. It fails
/// instead: its connection is closed, and its writes are redone like any failed write.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The error of something on a lane that took longer than `after`.
pub fn timed_out(what: &str, after: Duration) -> StoreError {
    StoreError::Db(sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} took longer than {after:?}"),
    )))
}

/// Where a statement runs: a store's pool, or a connection of a [`Lane`].
pub enum On<'a> {
    Store(&'a Store),
    Pg(&'a mut sqlx::PgConnection),
}

impl<'a> From<&'a Store> for On<'a> {
    fn from(store: &'a Store) -> Self {
        On::Store(store)
    }
}

/// How a lane's connection shows in PostgreSQL's `pg_stat_activity`.
pub const LANE_APPLICATION_NAME: &str = "relay365 work";

/// One writer's connection (PostgreSQL), opened on first use.
pub struct Lane {
    store: Store,
    options: Option<sqlx::postgres::PgConnectOptions>,
    conn: Option<sqlx::PgConnection>,
}

/// A lane's connection, taken out for one statement ([`Lane::take`]).
pub struct Taken {
    store: Store,
    conn: Option<sqlx::PgConnection>,
}

impl Taken {
    /// Where to run the statement.
    pub fn on(&mut self) -> On<'_> {
        match &mut self.conn {
            Some(c) => On::Pg(c),
            None => On::Store(&self.store),
        }
    }
}

impl Lane {
    /// A lane to the database of `store`, with that pool's connection settings.
    pub fn new(store: &Store) -> Lane {
        let options = match store {
            Store::Postgres(p) => Some(
                (*p.connect_options())
                    .clone()
                    .application_name(LANE_APPLICATION_NAME),
            ),
            Store::Sqlite(_) => None,
        };
        Lane {
            store: store.clone(),
            options,
            conn: None,
        }
    }

    /// The connection for one statement, opened if there is none. Give it back with
    /// [`Lane::put_back`] once the statement succeeded; dropped, it is closed.
    pub async fn take(&mut self) -> Result<Taken, StoreError> {
        let conn = match (self.conn.take(), &self.options) {
            (Some(c), _) => Some(c),
            (None, Some(o)) => Some(
                tokio::time::timeout(CONNECT_TIMEOUT, o.connect())
                    .await
                    .map_err(|_| timed_out("opening a connection", CONNECT_TIMEOUT))??,
            ),
            (None, None) => None,
        };
        Ok(Taken {
            store: self.store.clone(),
            conn,
        })
    }

    /// Keeps the connection of a statement that succeeded for the next one.
    pub fn put_back(&mut self, taken: Taken) {
        self.conn = taken.conn;
    }
}

/// Runs one statement, `$statement` (a future of a `Result<_, StoreError>`, using `$on`), on
/// `$lane`'s connection, within [`STATEMENT_TIMEOUT`], and keeps the connection for the next
/// one only if it succeeded.
macro_rules! on_lane {
    ($lane:expr, |$on:ident| $statement:expr) => {
        async {
            use $crate::store::lane::{timed_out, STATEMENT_TIMEOUT};
            let mut taken = $lane.take().await?;
            let $on = taken.on();
            let result = tokio::time::timeout(STATEMENT_TIMEOUT, $statement)
                .await
                .unwrap_or_else(|_| Err(timed_out("a statement", STATEMENT_TIMEOUT)));
            if result.is_ok() {
                $lane.put_back(taken);
            }
            result
        }
        .await
    };
}
pub(crate) use on_lane;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_database_that_never_answers_fails_the_lane_in_bounded_time() {
        // A server that accepts connections and says nothing.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let url = format!("postgres://postgres@{addr}/none");
        let store = Store::Postgres(sqlx::PgPool::connect_lazy(&url).unwrap());
        let mut lane = Lane::new(&store);
        let started = tokio::time::Instant::now();
        assert!(lane.take().await.is_err());
        assert!(started.elapsed() <= CONNECT_TIMEOUT + Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_statement_that_never_ends_fails_in_bounded_time() {
        let store = Store::Sqlite(sqlx::SqlitePool::connect_lazy("sqlite::memory:").unwrap());
        let mut lane = Lane::new(&store);
        let started = tokio::time::Instant::now();
        let result: Result<(), StoreError> =
            on_lane!(lane, |_on| std::future::pending::<Result<(), StoreError>>());
        let e = result.unwrap_err();
        assert!(e.to_string().contains("took longer than"), "{e}");
        assert!(started.elapsed() >= STATEMENT_TIMEOUT);
        assert!(started.elapsed() <= STATEMENT_TIMEOUT + Duration::from_secs(1));
        // The lane is usable again: the next statement runs.
        let next: Result<u8, StoreError> = on_lane!(lane, |_on| async { Ok(7) });
        assert_eq!(next.unwrap(), 7);
    }
}
