//! Configuration: `config/default.toml` (built in) → `--config FILE` → environment.
//!
//! Every key has one or more environment names (SPEC §2); [`KEYS`] is the one table of them.
//! Loading checks every value and names the key of the first bad one, so `serve` can exit 2
//! with a message a person can act on.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use relay365_actors::store::SqliteSync;
use serde::Deserialize;

/// The built-in defaults.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Bool,
}

/// A configuration key and its environment names, first name first.
struct Key {
    key: &'static str,
    env: &'static [&'static str],
    kind: Kind,
}

const KEYS: &[Key] = &[
    Key {
        key: "listen",
        env: &["RELAY365_LISTEN"],
        kind: Kind::Str,
    },
    Key {
        key: "database_url",
        env: &["DATABASE_URL"],
        kind: Kind::Str,
    },
    Key {
        key: "sqlite_synchronous",
        env: &["RELAY365_SQLITE_SYNCHRONOUS"],
        kind: Kind::Str,
    },
    Key {
        key: "db_max_connections",
        env: &["RELAY365_DB_MAX_CONNECTIONS"],
        kind: Kind::Int,
    },
    Key {
        key: "public_url",
        env: &["RELAY365_PUBLIC_URL"],
        kind: Kind::Str,
    },
    Key {
        key: "api_webhook_url",
        env: &["API_WEBHOOK_URL"],
        kind: Kind::Str,
    },
    Key {
        key: "api_key",
        env: &["RELAY365_API_KEY"],
        kind: Kind::Str,
    },
    Key {
        key: "graph_url",
        env: &["RELAY365_GRAPH_URL"],
        kind: Kind::Str,
    },
    Key {
        key: "login_url",
        env: &["RELAY365_LOGIN_URL"],
        kind: Kind::Str,
    },
    Key {
        key: "auth_service_url",
        env: &["AUTH_SERVICE_URL"],
        kind: Kind::Str,
    },
    Key {
        key: "service_secret",
        env: &["SERVICE_SECRET"],
        kind: Kind::Str,
    },
    Key {
        key: "graph_timeout_seconds",
        env: &["RELAY365_GRAPH_TIMEOUT_SECONDS"],
        kind: Kind::Int,
    },
    Key {
        key: "workers",
        env: &["WEBHOOK_WORKER_BATCH_SIZE", "RELAY365_WORKERS"],
        kind: Kind::Int,
    },
    Key {
        key: "delivery_workers",
        env: &["RELAY365_DELIVERY_WORKERS"],
        kind: Kind::Int,
    },
    Key {
        key: "max_retries",
        env: &["WEBHOOK_MAX_RETRIES", "RELAY365_MAX_RETRIES"],
        kind: Kind::Int,
    },
    Key {
        key: "retry_base_ms",
        env: &["RELAY365_RETRY_BASE_MS"],
        kind: Kind::Int,
    },
    Key {
        key: "delivery_max_attempts",
        env: &["RELAY365_DELIVERY_MAX_ATTEMPTS"],
        kind: Kind::Int,
    },
    Key {
        key: "renew_before_minutes",
        env: &["RELAY365_RENEW_BEFORE_MINUTES"],
        kind: Kind::Int,
    },
    Key {
        key: "resync_interval_seconds",
        env: &["RELAY365_RESYNC_INTERVAL_SECONDS"],
        kind: Kind::Int,
    },
    Key {
        key: "n8n_webhook_url",
        env: &["RELAY365_N8N_WEBHOOK_URL"],
        kind: Kind::Str,
    },
    Key {
        key: "n8n_webhook_secret",
        env: &["RELAY365_N8N_WEBHOOK_SECRET"],
        kind: Kind::Str,
    },
    Key {
        key: "retention_days",
        env: &["RELAY365_RETENTION_DAYS"],
        kind: Kind::Int,
    },
    Key {
        key: "lease_seconds",
        env: &["RELAY365_LEASE_SECONDS"],
        kind: Kind::Int,
    },
    Key {
        key: "sweep_interval_ms",
        env: &["RELAY365_SWEEP_INTERVAL_MS"],
        kind: Kind::Int,
    },
    Key {
        key: "commit_timeout_ms",
        env: &["RELAY365_COMMIT_TIMEOUT_MS"],
        kind: Kind::Int,
    },
    Key {
        key: "max_connections",
        env: &["RELAY365_MAX_CONNECTIONS"],
        kind: Kind::Int,
    },
    Key {
        key: "public_max_requests",
        env: &["RELAY365_PUBLIC_MAX_REQUESTS"],
        kind: Kind::Int,
    },
    Key {
        key: "public_max_buffered_mib",
        env: &["RELAY365_PUBLIC_MAX_BUFFERED_MIB"],
        kind: Kind::Int,
    },
    Key {
        key: "request_timeout_seconds",
        env: &["RELAY365_REQUEST_TIMEOUT_SECONDS"],
        kind: Kind::Int,
    },
    Key {
        key: "header_timeout_seconds",
        env: &["RELAY365_HEADER_TIMEOUT_SECONDS"],
        kind: Kind::Int,
    },
    Key {
        key: "restart_backoff_ms",
        env: &["RELAY365_RESTART_BACKOFF_MS"],
        kind: Kind::Int,
    },
    Key {
        key: "restart_backoff_max_ms",
        env: &["RELAY365_RESTART_BACKOFF_MAX_MS"],
        kind: Kind::Int,
    },
    Key {
        key: "max_restarts",
        env: &["RELAY365_MAX_RESTARTS"],
        kind: Kind::Int,
    },
    Key {
        key: "restart_window_seconds",
        env: &["RELAY365_RESTART_WINDOW_SECONDS"],
        kind: Kind::Int,
    },
    Key {
        key: "failed_retry_seconds",
        env: &["RELAY365_FAILED_RETRY_SECONDS"],
        kind: Kind::Int,
    },
    Key {
        key: "debug_endpoints",
        env: &["RELAY365_DEBUG_ENDPOINTS"],
        kind: Kind::Bool,
    },
    Key {
        key: "log",
        env: &["RUST_LOG", "RELAY365_LOG"],
        kind: Kind::Str,
    },
    Key {
        key: "log_format",
        env: &["RELAY365_LOG_FORMAT"],
        kind: Kind::Str,
    },
];

/// A bad configuration value. Its text names the key and its environment name.
#[derive(Debug, thiserror::Error)]
#[error("configuration key `{key}`{env}: {message}")]
pub struct ConfigError {
    pub key: String,
    env: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        let env = KEYS
            .iter()
            .find(|k| k.key == key)
            .map(|k| format!(" (env {})", k.env.join(" or ")))
            .unwrap_or_default();
        Self {
            key: key.to_string(),
            env,
            message: message.into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The service's configuration, checked.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub database_url: String,
    pub sqlite_synchronous: String,
    pub db_max_connections: u32,
    pub public_url: String,
    pub api_webhook_url: Option<String>,
    pub api_key: Option<String>,
    pub graph_url: String,
    pub login_url: String,
    pub auth_service_url: Option<String>,
    pub service_secret: Option<String>,
    pub graph_timeout_seconds: u64,
    pub workers: usize,
    pub delivery_workers: usize,
    pub max_retries: u32,
    pub retry_base_ms: u64,
    pub delivery_max_attempts: u32,
    pub renew_before_minutes: u64,
    pub resync_interval_seconds: u64,
    pub n8n_webhook_url: Option<String>,
    pub n8n_webhook_secret: Option<String>,
    pub retention_days: u64,
    pub lease_seconds: u64,
    pub sweep_interval_ms: u64,
    pub commit_timeout_ms: u64,
    pub max_connections: usize,
    pub public_max_requests: usize,
    pub public_max_buffered_mib: usize,
    pub request_timeout_seconds: u64,
    pub header_timeout_seconds: u64,
    pub restart_backoff_ms: u64,
    pub restart_backoff_max_ms: u64,
    pub max_restarts: usize,
    pub restart_window_seconds: u64,
    pub failed_retry_seconds: u64,
    pub debug_endpoints: bool,
    pub log: String,
    pub log_format: String,
}

impl std::fmt::Debug for Config {
    // Hand-written so that secrets never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url))
            .field("public_url", &self.public_url)
            .field("api_key", &masked(&self.api_key))
            .field("service_secret", &masked(&self.service_secret))
            .field("graph_url", &self.graph_url)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// A database URL with any password replaced by `***`, fit for logs.
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        // Not a URL we can take apart: show only what comes before any credentials.
        return match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://***"),
            None => "***".to_string(),
        };
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    // `?password=…` (and `sslpassword`, …) is another way to pass one to PostgreSQL.
    if u.query_pairs().any(|(k, _)| is_secret_param(&k)) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_param(&k) {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// A query parameter that carries a secret.
fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("password") || name.contains("secret") || name.contains("token")
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn every_password_in_a_url_is_masked() {
        for (url, want) in [
            ("postgres://u:pw@db/relay", "postgres://u:***@db/relay"),
            (
                "postgres://u@db/relay?password=pw&sslmode=require",
                "postgres://u@db/relay?password=***&sslmode=require",
            ),
            (
                "postgres://db/relay?user=u&PassWord=pw&sslpassword=x",
                "postgres://db/relay?user=u&PassWord=***&sslpassword=***",
            ),
            ("sqlite://data/relay365.db", "sqlite://data/relay365.db"),
            ("postgres://u:p w@[bad", "postgres://***"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }
}

impl Config {
    /// Loads the defaults, then `file` if given, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match file {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| ConfigError {
                key: "--config".into(),
                env: String::new(),
                message: format!("cannot read {}: {e}", p.display()),
            })?),
            None => None,
        };
        Self::from_sources(text.as_deref(), |name| std::env::var(name).ok())
    }

    /// Loads from the defaults, an optional TOML text and an environment look-up (for tests).
    pub fn from_sources(
        file: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = DEFAULT_TOML
            .parse()
            .map_err(|e| ConfigError::new("default.toml", format!("{e}")))?;
        if let Some(text) = file {
            let overlay: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
                key: "--config".into(),
                env: String::new(),
                message: format!("not valid TOML: {}", e.message()),
            })?;
            for (k, v) in overlay {
                if !KEYS.iter().any(|d| d.key == k) {
                    return Err(ConfigError::new(&k, "unknown key"));
                }
                table.insert(k, v);
            }
        }
        for def in KEYS {
            let Some(raw) = def.env.iter().find_map(|name| env(name)) else {
                continue;
            };
            let value = match def.kind {
                Kind::Str => toml::Value::String(raw),
                Kind::Int => raw
                    .trim()
                    .parse::<i64>()
                    .map(toml::Value::Integer)
                    .map_err(|_| {
                        ConfigError::new(def.key, format!("must be a whole number, got {raw:?}"))
                    })?,
                Kind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
                    "false" | "0" | "no" | "off" => toml::Value::Boolean(false),
                    _ => {
                        return Err(ConfigError::new(
                            def.key,
                            format!("must be true or false, got {raw:?}"),
                        ))
                    }
                },
            };
            table.insert(def.key.to_string(), value);
        }
        // Type-check key by key, so an error names its key.
        for def in KEYS {
            let Some(v) = table.get(def.key) else {
                continue;
            };
            let ok = match def.kind {
                Kind::Str => v.is_str(),
                Kind::Int => v.as_integer().is_some_and(|i| i >= 0),
                Kind::Bool => v.is_bool(),
            };
            if !ok {
                let want = match def.kind {
                    Kind::Str => "a string",
                    Kind::Int => "a whole number ≥ 0",
                    Kind::Bool => "true or false",
                };
                return Err(ConfigError::new(
                    def.key,
                    format!("must be {want}, got {v}"),
                ));
            }
        }
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::new("config", e.message().to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres:")
            || self.database_url.starts_with("postgresql:"))
        {
            return Err(ConfigError::new(
                "database_url",
                "must start with sqlite:// or postgres://",
            ));
        }
        self.sqlite_sync()?;
        for (key, value) in [
            ("public_url", Some(&self.public_url)),
            ("api_webhook_url", self.api_webhook_url.as_ref()),
            ("graph_url", Some(&self.graph_url)),
            ("login_url", Some(&self.login_url)),
            ("auth_service_url", self.auth_service_url.as_ref()),
            ("n8n_webhook_url", self.n8n_webhook_url.as_ref()),
        ] {
            if let Some(v) = value {
                match url::Url::parse(v) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                    _ => {
                        return Err(ConfigError::new(
                            key,
                            format!("must be an http(s) URL, got {v:?}"),
                        ))
                    }
                }
            }
        }
        for (key, value, min) in [
            ("workers", self.workers as u64, 1),
            ("delivery_workers", self.delivery_workers as u64, 1),
            ("db_max_connections", self.db_max_connections as u64, 1),
            ("max_retries", self.max_retries as u64, 1),
            (
                "delivery_max_attempts",
                self.delivery_max_attempts as u64,
                1,
            ),
            ("retry_base_ms", self.retry_base_ms, 1),
            ("retention_days", self.retention_days, 1),
            ("lease_seconds", self.lease_seconds, 2),
            ("sweep_interval_ms", self.sweep_interval_ms, 10),
            ("commit_timeout_ms", self.commit_timeout_ms, 1),
            ("max_connections", self.max_connections as u64, 1),
            ("public_max_requests", self.public_max_requests as u64, 1),
            (
                "public_max_buffered_mib",
                self.public_max_buffered_mib as u64,
                1,
            ),
            ("request_timeout_seconds", self.request_timeout_seconds, 1),
            ("header_timeout_seconds", self.header_timeout_seconds, 1),
            ("graph_timeout_seconds", self.graph_timeout_seconds, 1),
            ("restart_window_seconds", self.restart_window_seconds, 1),
        ] {
            if value < min {
                return Err(ConfigError::new(
                    key,
                    format!("must be at least {min}, got {value}"),
                ));
            }
        }
        if self.workers > 1024 {
            return Err(ConfigError::new("workers", "must be at most 1024"));
        }
        if self.delivery_workers > 1024 {
            return Err(ConfigError::new("delivery_workers", "must be at most 1024"));
        }
        if let Some(secret) = &self.n8n_webhook_secret {
            relay365_actors::store::targets::check_secret(secret)
                .map_err(|why| ConfigError::new("n8n_webhook_secret", why))?;
        }
        if self.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(ConfigError::new("api_key", "must not be empty when set"));
        }
        self.log_format()?;
        tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|e| ConfigError::new("log", format!("not a valid filter: {e}")))?;
        Ok(())
    }

    /// The address to bind.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            ConfigError::new(
                "listen",
                format!("must be host:port, got {:?}", self.listen),
            )
        })
    }

    /// SQLite durability.
    pub fn sqlite_sync(&self) -> Result<SqliteSync, ConfigError> {
        match self.sqlite_synchronous.to_ascii_lowercase().as_str() {
            "normal" => Ok(SqliteSync::Normal),
            "full" => Ok(SqliteSync::Full),
            other => Err(ConfigError::new(
                "sqlite_synchronous",
                format!("must be normal or full, got {other:?}"),
            )),
        }
    }

    /// Log line format.
    pub fn log_format(&self) -> Result<LogFormat, ConfigError> {
        match self.log_format.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(ConfigError::new(
                "log_format",
                format!("must be text or json, got {other:?}"),
            )),
        }
    }

    /// The API-key rule of SPEC §2: without a key, only a loopback address may be served.
    pub fn check_api_key_rule(&self) -> Result<(), ConfigError> {
        let addr = self.listen_addr()?;
        if self.api_key.is_none() && !addr.ip().is_loopback() {
            return Err(ConfigError::new(
                "api_key",
                format!("must be set when listening on the non-loopback address {addr}"),
            ));
        }
        Ok(())
    }

    /// notificationUrl sent to Graph.
    pub fn notification_url(&self) -> String {
        self.api_webhook_url.clone().unwrap_or_else(|| {
            format!(
                "{}/api/ms365/webhook",
                self.public_url.trim_end_matches('/')
            )
        })
    }

    /// lifecycleNotificationUrl sent to Graph.
    pub fn lifecycle_url(&self) -> String {
        format!(
            "{}/api/ms365/lifecycle",
            self.public_url.trim_end_matches('/')
        )
    }

    /// The slice of the configuration the actors need.
    pub fn settings(&self) -> relay365_actors::Settings {
        use relay365_actors::supervision::RestartPolicy;
        relay365_actors::Settings {
            workers: self.workers,
            delivery_workers: self.delivery_workers,
            max_retries: self.max_retries,
            retry_base: Duration::from_millis(self.retry_base_ms),
            delivery_max_attempts: self.delivery_max_attempts,
            renew_before: Duration::from_secs(self.renew_before_minutes * 60),
            resync_interval: Duration::from_secs(self.resync_interval_seconds),
            notification_url: self.notification_url(),
            lifecycle_url: self.lifecycle_url(),
            graph_url: self.graph_url.clone(),
            graph_timeout: Duration::from_secs(self.graph_timeout_seconds),
            login_url: self.login_url.clone(),
            auth_service_url: self.auth_service_url.clone(),
            service_secret: self.service_secret.clone(),
            commit_timeout: Duration::from_millis(self.commit_timeout_ms),
            lease: Duration::from_secs(self.lease_seconds),
            sweep_interval: Duration::from_millis(self.sweep_interval_ms),
            retention: Duration::from_secs(self.retention_days.saturating_mul(86_400)),
            restart: RestartPolicy {
                max_restarts: self.max_restarts,
                window: Duration::from_secs(self.restart_window_seconds),
                backoff_base: Duration::from_millis(self.restart_backoff_ms),
                backoff_max: Duration::from_millis(
                    self.restart_backoff_max_ms.max(self.restart_backoff_ms),
                ),
            },
            park_for: Duration::from_secs(self.failed_retry_seconds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_load_and_match_the_spec() {
        let c = Config::from_sources(None, env(&[])).expect("defaults load");
        assert_eq!(c.listen, "127.0.0.1:8000");
        assert_eq!(c.database_url, "sqlite://data/relay365.db");
        assert_eq!(c.sqlite_sync().expect("sync"), SqliteSync::Normal);
        assert_eq!(c.workers, 16);
        assert_eq!(c.max_retries, 5);
        assert_eq!(c.retry_base_ms, 1000);
        assert_eq!(c.delivery_max_attempts, 8);
        assert_eq!(c.renew_before_minutes, 1440);
        assert_eq!(c.resync_interval_seconds, 900);
        assert!(!c.debug_endpoints);
        assert_eq!(
            c.notification_url(),
            "http://127.0.0.1:8000/api/ms365/webhook"
        );
        assert_eq!(
            c.lifecycle_url(),
            "http://127.0.0.1:8000/api/ms365/lifecycle"
        );
    }

    #[test]
    fn every_key_of_default_toml_is_declared_and_every_declared_key_is_documented() {
        let table: toml::Table = DEFAULT_TOML.parse().expect("toml");
        for k in table.keys() {
            assert!(
                KEYS.iter().any(|d| d.key == k),
                "{k} has no environment name"
            );
        }
        for def in KEYS {
            for name in def.env {
                assert!(
                    DEFAULT_TOML.contains(name),
                    "{name} is not documented in default.toml"
                );
            }
        }
    }

    #[test]
    fn seed_environment_names_override() {
        let c = Config::from_sources(
            None,
            env(&[
                ("DATABASE_URL", "postgres://u:pw@db/relay"),
                ("SERVICE_SECRET", "s3cret"),
                ("AUTH_SERVICE_URL", "http://auth:9000"),
                ("API_WEBHOOK_URL", "https://relay.example.com/hook"),
                ("WEBHOOK_WORKER_BATCH_SIZE", "4"),
                ("WEBHOOK_MAX_RETRIES", "9"),
                ("RELAY365_DEBUG_ENDPOINTS", "true"),
            ]),
        )
        .expect("loads");
        assert_eq!(c.database_url, "postgres://u:pw@db/relay");
        assert_eq!(c.service_secret.as_deref(), Some("s3cret"));
        assert_eq!(c.auth_service_url.as_deref(), Some("http://auth:9000"));
        assert_eq!(c.notification_url(), "https://relay.example.com/hook");
        assert_eq!(c.workers, 4);
        assert_eq!(c.max_retries, 9);
        assert!(c.debug_endpoints);
    }

    #[test]
    fn first_environment_name_wins() {
        let c = Config::from_sources(
            None,
            env(&[
                ("RELAY365_WORKERS", "3"),
                ("WEBHOOK_WORKER_BATCH_SIZE", "7"),
            ]),
        )
        .expect("loads");
        assert_eq!(c.workers, 7);
    }

    #[test]
    fn file_layers_over_defaults_and_env_over_file() {
        let c = Config::from_sources(
            Some("workers = 2\nlisten = \"127.0.0.1:9\""),
            env(&[("RELAY365_LISTEN", "127.0.0.1:7")]),
        )
        .expect("loads");
        assert_eq!(c.workers, 2);
        assert_eq!(c.listen, "127.0.0.1:7");
    }

    #[test]
    fn bad_values_name_their_key() {
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case<'_>] = &[
            (None, &[("RELAY365_WORKERS", "many")], "workers"),
            (None, &[("RELAY365_WORKERS", "0")], "workers"),
            (None, &[("RELAY365_LISTEN", "nowhere")], "listen"),
            (None, &[("DATABASE_URL", "mysql://x")], "database_url"),
            (
                None,
                &[("RELAY365_SQLITE_SYNCHRONOUS", "sometimes")],
                "sqlite_synchronous",
            ),
            (
                None,
                &[("RELAY365_DEBUG_ENDPOINTS", "perhaps")],
                "debug_endpoints",
            ),
            (None, &[("RELAY365_GRAPH_URL", "ftp://x")], "graph_url"),
            (None, &[("RELAY365_LOG_FORMAT", "xml")], "log_format"),
            (Some("workers = \"two\""), &[], "workers"),
            (Some("no_such_key = 1"), &[], "no_such_key"),
        ];
        for (file, vars, key) in cases {
            let err = Config::from_sources(*file, env(vars)).expect_err("must fail");
            assert_eq!(err.key, *key, "{err}");
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn api_key_rule() {
        let open =
            Config::from_sources(None, env(&[("RELAY365_LISTEN", "0.0.0.0:8000")])).expect("loads");
        assert_eq!(
            open.check_api_key_rule().expect_err("refused").key,
            "api_key"
        );
        let keyed = Config::from_sources(
            None,
            env(&[
                ("RELAY365_LISTEN", "0.0.0.0:8000"),
                ("RELAY365_API_KEY", "k"),
            ]),
        )
        .expect("loads");
        assert!(keyed.check_api_key_rule().is_ok());
        let local = Config::from_sources(None, env(&[])).expect("loads");
        assert!(local.check_api_key_rule().is_ok());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = Config::from_sources(
            None,
            env(&[
                ("RELAY365_API_KEY", "key-123"),
                ("SERVICE_SECRET", "svc-456"),
                ("DATABASE_URL", "postgres://u:pw-789@h/d"),
            ]),
        )
        .expect("loads");
        let dbg = format!("{c:?}");
        for secret in ["key-123", "svc-456", "pw-789"] {
            assert!(!dbg.contains(secret), "{dbg}");
        }
    }
}
