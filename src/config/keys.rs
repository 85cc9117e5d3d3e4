//! The one table of configuration keys: each key's environment names (SPEC §2, first name
//! first; the seed's names are kept as aliases) and the kind of value it takes. Kept apart
//! from the loading so that adding a key is one entry here, one field on [`super::Config`]
//! and one documented line in `config/default.toml` (the test below checks the last).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Str,
    /// A whole number ≥ 0 (held in 64 bits).
    Int,
    /// A whole number from 0 to 4,294,967,295 (held in 32 bits).
    Count,
    Bool,
}

/// A configuration key and its environment names, first name first.
pub(super) struct Key {
    pub(super) key: &'static str,
    pub(super) env: &'static [&'static str],
    pub(super) kind: Kind,
}

pub(super) const KEYS: &[Key] = &[
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
        kind: Kind::Count,
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
        kind: Kind::Count,
    },
    Key {
        key: "retry_base_ms",
        env: &["RELAY365_RETRY_BASE_MS"],
        kind: Kind::Int,
    },
    Key {
        key: "delivery_max_attempts",
        env: &["RELAY365_DELIVERY_MAX_ATTEMPTS"],
        kind: Kind::Count,
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
        key: "heartbeat_interval_ms",
        env: &["RELAY365_HEARTBEAT_INTERVAL_MS"],
        kind: Kind::Int,
    },
    Key {
        key: "instance_timeout_ms",
        env: &["RELAY365_INSTANCE_TIMEOUT_MS"],
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

#[cfg(test)]
mod tests {
    use super::super::DEFAULT_TOML;
    use super::*;

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
}
