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
                    .map_err(|_| StoreError::Db(sqlx::Error::PoolTimedOut))??,
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
/// `$lane`'s connection, and keeps the connection for the next one only if it succeeded.
macro_rules! on_lane {
    ($lane:expr, |$on:ident| $statement:expr) => {
        async {
            let mut taken = $lane.take().await?;
            let $on = taken.on();
            let result = $statement.await;
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
}
