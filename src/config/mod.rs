//! Configuration: `config/default.toml` (built in) → `--config FILE` → environment.
//!
//! Every key has one or more environment names (SPEC §2); `keys.rs` holds the one table of
//! them, `load.rs` the layering and the checks. This file holds the checked [`Config`], its
//! error, and what is derived from it (the URLs sent to Graph, the actors' settings).

use std::net::SocketAddr;
use std::time::Duration;

use relay365_actors::store::SqliteSync;
use serde::Deserialize;

mod keys;
mod load;

use keys::KEYS;

/// The built-in defaults.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// A bad configuration value. Its text names the key and its environment name; [`Self::fix`]
/// says what to do.
#[derive(Debug, thiserror::Error)]
#[error("configuration key `{key}`{env}: {message}")]
pub struct ConfigError {
    pub key: String,
    env: String,
    pub message: String,
    fix: Option<String>,
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
            fix: None,
        }
    }

    /// An error of the `--config` file itself (unreadable, not TOML).
    fn file(message: String) -> Self {
        Self {
            key: "--config".into(),
            env: String::new(),
            message,
            fix: Some("correct the file given with --config, or leave --config out".into()),
        }
    }

    fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// What to do about it.
    pub fn fix(&self) -> String {
        match &self.fix {
            Some(fix) => fix.clone(),
            // Not a key of ours: only a --config file can hold it.
            None if self.env.is_empty() => {
                "remove it from the --config file or correct its name (config/default.toml \
                 lists every key)"
                    .into()
            }
            None => format!(
                "correct it where it is set, in the environment or the --config file \
                 (config/default.toml documents `{}`)",
                self.key
            ),
        }
    }
}

/// Log line format (`log_format`).
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
    pub listen: SocketAddr,
    pub database_url: String,
    pub sqlite_synchronous: SqliteSync,
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
    pub heartbeat_interval_ms: u64,
    pub instance_timeout_ms: u64,
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
    pub log_format: LogFormat,
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

impl Config {
    /// The API-key rule of SPEC §2: without a key, only a loopback address may be served.
    pub fn check_api_key_rule(&self) -> Result<(), ConfigError> {
        let addr = self.listen;
        if self.api_key.is_none() && !addr.ip().is_loopback() {
            return Err(ConfigError::new(
                "api_key",
                format!("must be set when listening on the non-loopback address {addr}"),
            )
            .with_fix(
                "set RELAY365_API_KEY to a long random string (`openssl rand -hex 32`), or \
                 listen on a loopback address (RELAY365_LISTEN=127.0.0.1:8000) behind a proxy",
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
            heartbeat: Duration::from_millis(self.heartbeat_interval_ms),
            instance_timeout: Duration::from_millis(
                self.instance_timeout_ms.max(self.heartbeat_interval_ms * 3),
            ),
            address: self.listen.to_string(),
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
