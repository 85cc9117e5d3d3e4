//! Loading: `config/default.toml` (built in), then the `--config` file, then the environment,
//! each layer over the one before; then every value is checked, key by key, so that the first
//! bad one is named with its key and environment name (and `serve` exits 2 with a message a
//! person can act on). The typed keys (`listen`, `sqlite_synchronous`, `log_format`) are
//! parsed once here; the rest of the service reads them from [`Config`] as they are.

use std::net::SocketAddr;
use std::path::Path;

use super::keys::{Kind, KEYS};
use super::{Config, ConfigError, DEFAULT_TOML};

impl Config {
    /// Loads the defaults, then `file` if given, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| ConfigError::file(format!("cannot read {}: {e}", p.display())))?,
            ),
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
            let overlay: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                ConfigError::file(format!("not valid TOML: {}", e.message()))
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
                Kind::Int | Kind::Count => raw
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
                Kind::Count => v
                    .as_integer()
                    .is_some_and(|i| (0..=i64::from(u32::MAX)).contains(&i)),
                Kind::Bool => v.is_bool(),
            };
            if !ok {
                let want = match def.kind {
                    Kind::Str => "a string",
                    Kind::Int => "a whole number ≥ 0",
                    Kind::Count => "a whole number from 0 to 4294967295",
                    Kind::Bool => "true or false",
                };
                return Err(ConfigError::new(
                    def.key,
                    format!("must be {want}, got {v}"),
                ));
            }
        }
        // The typed keys, parsed here so that an error names its key (serde's would not).
        let text = |table: &toml::Table, k: &str| {
            table
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let listen = text(&table, "listen");
        if listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::new(
                "listen",
                format!("must be host:port, got {listen:?}"),
            ));
        }
        for (key, [a, b]) in [
            ("sqlite_synchronous", ["normal", "full"]),
            ("log_format", ["text", "json"]),
        ] {
            let v = text(&table, key).to_ascii_lowercase();
            if v != a && v != b {
                return Err(ConfigError::new(
                    key,
                    format!("must be {a} or {b}, got {v:?}"),
                ));
            }
            table.insert(key.to_string(), toml::Value::String(v));
        }
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::new("config", e.message().to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres:")
            || self.database_url.starts_with("postgresql:"))
        {
            return Err(ConfigError::new(
                "database_url",
                "must start with sqlite:// or postgres://",
            ));
        }
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
            ("heartbeat_interval_ms", self.heartbeat_interval_ms, 10),
            ("instance_timeout_ms", self.instance_timeout_ms, 30),
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
        tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|e| ConfigError::new("log", format!("not a valid filter: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogFormat;
    use relay365_actors::store::SqliteSync;
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
        assert_eq!(c.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(c.database_url, "sqlite://data/relay365.db");
        assert_eq!(c.sqlite_synchronous, SqliteSync::Normal);
        assert_eq!(c.log_format, LogFormat::Text);
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
        assert_eq!(c.listen.to_string(), "127.0.0.1:7");
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
            (
                None,
                &[("RELAY365_DELIVERY_MAX_ATTEMPTS", "4294967296")],
                "delivery_max_attempts",
            ),
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
