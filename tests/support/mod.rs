//! Shared helpers of the integration tests: a fresh database per test on each backend, a test
//! configuration, and the service started in-process on a free port.

/// Runs the body once on each backend of [`TestDb::all`], each with a database of its own, and
/// fails afterwards if any of them failed: a panic on SQLite no longer hides the PostgreSQL
/// result of the same test (both are printed, with the backend named). The database goes when
/// its run ends, also by a panic: the SQLite folder with the value, the PostgreSQL schema by
/// [`Leftover::remove`]. `return` in the body ends that backend's run.
macro_rules! on_every_store {
    (|$db:ident| $body:block) => {{
        let mut failed: Vec<&'static str> = Vec::new();
        for $db in $crate::support::TestDb::all().await {
            let (label, leftover) = ($db.label, $db.leftover());
            let run =
                ::futures::FutureExt::catch_unwind(::std::panic::AssertUnwindSafe(async { $body }));
            if run.await.is_err() {
                eprintln!("-- the run on {label} failed (its panic is above)");
                failed.push(label);
            }
            leftover.remove().await;
        }
        assert!(failed.is_empty(), "failed on {failed:?}");
    }};
}

pub mod api;
pub mod balancer;
pub mod child;
pub mod sink;

use relay365::{App, Config};
use relay365_actors::store::{credentials, new_id, Store, StoreOptions};

/// A database of its own for one test: a SQLite file in a temporary folder, or a PostgreSQL
/// schema of its own in `TEST_DATABASE_URL`'s database.
pub struct TestDb {
    pub url: String,
    pub label: &'static str,
    _dir: Option<tempfile::TempDir>,
    pg_schema: Option<(String, String)>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("relay365.db").display());
        TestDb {
            url,
            label: "sqlite",
            _dir: Some(dir),
            pg_schema: None,
        }
    }

    /// None when `TEST_DATABASE_URL` is unset (CI always sets it, so these tests always run
    /// there; locally they are skipped with a note).
    pub async fn postgres() -> Option<TestDb> {
        let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("TEST_DATABASE_URL is unset: skipping the PostgreSQL variant");
            return None;
        };
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = Store::connect(
            &base,
            &StoreOptions {
                max_connections: 1,
                ..Default::default()
            },
        )
        .await
        .expect("TEST_DATABASE_URL must be reachable");
        if let Store::Postgres(pool) = &admin {
            sqlx::query(&format!("create schema {schema}"))
                .execute(pool)
                .await
                .unwrap();
        }
        admin.close().await;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        Some(TestDb {
            url,
            label: "postgres",
            _dir: None,
            pg_schema: Some((base, schema)),
        })
    }

    /// Every backend available: SQLite always, PostgreSQL when configured.
    pub async fn all() -> Vec<TestDb> {
        let mut v = vec![TestDb::sqlite().await];
        if let Some(pg) = TestDb::postgres().await {
            v.push(pg);
        }
        v
    }

    /// An open, migrated store on this database.
    pub async fn store(&self) -> Store {
        let s = Store::connect(&self.url, &StoreOptions::default())
            .await
            .unwrap();
        s.migrate().await.unwrap();
        s
    }

    /// Drops the PostgreSQL schema (the SQLite folder goes with the value).
    pub async fn cleanup(self) {
        self.leftover().remove().await;
    }

    /// What [`TestDb::cleanup`] removes, to be removed after a run that may have panicked.
    pub fn leftover(&self) -> Leftover {
        Leftover(self.pg_schema.clone())
    }
}

/// A PostgreSQL schema of a test, dropped by [`Leftover::remove`] (if it is still there).
pub struct Leftover(Option<(String, String)>);

impl Leftover {
    pub async fn remove(self) {
        if let Some((base, schema)) = &self.0 {
            if let Ok(Store::Postgres(pool)) = Store::connect(
                base,
                &StoreOptions {
                    max_connections: 1,
                    ..Default::default()
                },
            )
            .await
            {
                let _ = sqlx::query(&format!("drop schema if exists {schema} cascade"))
                    .execute(&pool)
                    .await;
                pool.close().await;
            }
        }
    }
}

/// The configuration tests start from: a free port, fast restarts, debug endpoints on.
pub fn test_config(db_url: &str, extra: &[(&str, &str)]) -> Config {
    let mut env: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), db_url.into()),
        ("RELAY365_LISTEN".into(), "127.0.0.1:0".into()),
        ("RELAY365_DEBUG_ENDPOINTS".into(), "true".into()),
        ("RELAY365_RESTART_BACKOFF_MS".into(), "10".into()),
        ("RELAY365_RESTART_BACKOFF_MAX_MS".into(), "50".into()),
        ("RELAY365_WORKERS".into(), "2".into()),
        ("RELAY365_DELIVERY_WORKERS".into(), "2".into()),
        ("RELAY365_DB_MAX_CONNECTIONS".into(), "4".into()),
    ];
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        env.push((k.to_string(), v.to_string()));
    }
    Config::from_sources(None, |name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .expect("test configuration is valid")
}

/// Starts the service in-process on a free port.
pub async fn spawn_app(cfg: Config) -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    App::start(cfg, listener).await.expect("app starts")
}

/// Stores a credential with a static token, as if created before the service started; answers
/// its id.
pub async fn seed_credential(store: &Store) -> String {
    let id = new_id();
    credentials::insert(
        store,
        &id,
        "ops",
        None,
        "static",
        &serde_json::json!({"kind": "static", "access_token": "x"}),
    )
    .await
    .unwrap();
    id
}

/// Polls `f` every 10 ms until it returns true or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

/// Starts the service on a free port whose URL is also its public URL (so that a simulator
/// can reach its webhook), with the given extra settings.
pub async fn spawn_public_app(db_url: &str, extra: &[(&str, &str)]) -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = format!("http://{}", listener.local_addr().unwrap());
    let mut all: Vec<(&str, &str)> = vec![("RELAY365_PUBLIC_URL", public.as_str())];
    all.extend_from_slice(extra);
    App::start(test_config(db_url, &all), listener)
        .await
        .expect("app starts")
}

/// The node named `name` in a `/status` tree (`node` is usually `status["root"]`).
pub fn find_actor<'a>(node: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    if node["name"] == name {
        return Some(node);
    }
    node["children"]
        .as_array()?
        .iter()
        .find_map(|c| find_actor(c, name))
}

/// A local HTTP server for tests, on a free loopback port, serving `app`; it stops when the
/// returned handle is dropped.
pub struct LocalServer {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl LocalServer {
    pub async fn start(app: axum::Router) -> LocalServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        LocalServer { url, task }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
