//! Start-up failures a person can act on.
//!
//! Whatever stops `serve` or `migrate` before the service runs (a bad setting, the API-key
//! rule, a port that is taken, a database that is down, refuses the login, or was migrated by
//! a newer relay365) ends as one [`StartError`]: one line on stderr that names the cause and
//! the fix, and SPEC §1's exit code (2 for a setting a person has to change, so that a process
//! manager does not try again; 1 for the rest). It is printed rather than logged: the log may
//! be JSON for a machine, and this line is for the person who reads the terminal or
//! `journalctl`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;

use relay365_actors::store::StoreError;
use sqlx::migrate::MigrateError;

use crate::config::{redact_url, ConfigError};

/// A start-up failure: what went wrong, what to do, and the exit code.
#[derive(Debug)]
pub struct StartError {
    cause: String,
    fix: String,
    code: u8,
}

impl StartError {
    /// Any other failure (exit 1): the cause as it chained up.
    pub fn other(err: &anyhow::Error) -> StartError {
        if let Some(known) = err.chain().find_map(|e| e.downcast_ref::<StartError>()) {
            return StartError {
                cause: known.cause.clone(),
                fix: known.fix.clone(),
                code: known.code,
            };
        }
        StartError {
            cause: format!("{err:#}"),
            fix: "this is not a setting; the log above may say more (RUST_LOG=debug)".into(),
            code: 1,
        }
    }

    /// A bad setting (exit 2).
    pub fn config(err: &ConfigError) -> StartError {
        StartError {
            cause: err.to_string(),
            fix: err.fix(),
            code: 2,
        }
    }

    /// The listen address cannot be bound (exit 1: a port that is taken may be free later).
    pub fn bind(addr: SocketAddr, err: &io::Error) -> StartError {
        let fix = match err.kind() {
            io::ErrorKind::AddrInUse => {
                "another process listens there (`ss -ltnp` shows which): stop it, or set \
                 RELAY365_LISTEN to a free port"
            }
            io::ErrorKind::PermissionDenied => {
                "ports below 1024 need root or CAP_NET_BIND_SERVICE: set RELAY365_LISTEN to a \
                 port above 1023 (the HTTPS proxy in front takes 443)"
            }
            io::ErrorKind::AddrNotAvailable => {
                "that address is not one of this machine's: set RELAY365_LISTEN to one of its \
                 addresses, 127.0.0.1, or 0.0.0.0 for all"
            }
            _ => "check RELAY365_LISTEN",
        };
        StartError {
            cause: format!("cannot listen on {addr} (RELAY365_LISTEN): {err}"),
            fix: fix.into(),
            code: 1,
        }
    }

    /// The store at `url` cannot be opened or migrated (exit 1).
    pub fn store(url: &str, err: &StoreError) -> StartError {
        let db = redact_url(url);
        match err {
            StoreError::Migrate(MigrateError::VersionMissing(version)) => StartError {
                cause: format!(
                    "the database {db} has migration {version}, which this relay365 ({}) does \
                     not know: a newer relay365 has migrated it",
                    env!("CARGO_PKG_VERSION")
                ),
                fix: "run that newer relay365 (or a later one) on it, or restore the backup \
                      taken before the upgrade"
                    .into(),
                code: 1,
            },
            StoreError::Migrate(e) => StartError {
                cause: format!("applying migrations to {db} failed: {e}"),
                fix: "see the database's own log; a migration that stopped half-way must be \
                      repaired by hand, or the backup from before it restored"
                    .into(),
                code: 1,
            },
            e if url.starts_with("sqlite:") => StartError {
                cause: format!("cannot open the database {db}: {e}"),
                fix: "check that DATABASE_URL names a file whose folder this user may create \
                      and write"
                    .into(),
                code: 1,
            },
            e => StartError {
                cause: format!("cannot open the database {db}: {e}"),
                fix: "is the database running, and are DATABASE_URL's host, port, user and \
                      password right?"
                    .into(),
                code: 1,
            },
        }
    }

    /// Another `serve` holds the SQLite file's lock (exit 2: running a second one is a setting
    /// to change, not a failure to retry).
    pub fn already_serving(path: &str, lock: &str) -> StartError {
        StartError {
            cause: format!("another relay365 is already serving {path} (it holds {lock})"),
            fix: "stop it first, or run several instances on PostgreSQL \
                  (DATABASE_URL=postgres://…), which they can share"
                .into(),
            code: 2,
        }
    }

    /// The exit code for `main`.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

impl fmt::Display for StartError {
    /// `error: {cause}; {fix}`, on one line whatever the cause's text holds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        write!(
            f,
            "error: {}; {}",
            one_line(&self.cause),
            one_line(&self.fix)
        )
    }
}

impl std::error::Error for StartError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_is_one_line_with_cause_and_fix() {
        let e = StartError::bind(
            "127.0.0.1:8000".parse().expect("an address"),
            &io::Error::from(io::ErrorKind::AddrInUse),
        );
        let line = e.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with("error: cannot listen on 127.0.0.1:8000"));
        assert!(
            line.contains("set RELAY365_LISTEN to a free port"),
            "{line}"
        );
        let multi = StartError::other(&anyhow::anyhow!("first\nsecond"));
        assert!(!multi.to_string().contains('\n'));
    }

    #[test]
    fn an_unknown_migration_says_a_newer_relay365_made_it() {
        let e = StartError::store(
            "postgres://u:pw@db/relay",
            &StoreError::Migrate(MigrateError::VersionMissing(20990101)),
        );
        let line = e.to_string();
        assert!(line.contains("migration 20990101"), "{line}");
        assert!(line.contains("newer relay365"), "{line}");
        assert!(!line.contains("pw@"), "{line}");
    }
}
