//! The `relay365` binary as a user runs it: exit codes, start-up errors (one line each, with
//! the cause and the fix), migrations, JSON logs, and no secret in any log line.
use crate::support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::child::relay365;

/// Runs `cmd` to its end, which must be a start-up failure with `code`; answers its one
/// `error:` line, after checking that it is the only line that says something went wrong.
fn start_failure(cmd: &mut Command, code: i32) -> String {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    assert!(
        !err.contains("ERROR"),
        "no error log line besides it: {err}"
    );
    assert!(out.stdout.is_empty());
    errors[0].to_string()
}

#[test]
fn a_bad_value_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("RELAY365_WORKERS", "lots", "workers"),
        ("WEBHOOK_MAX_RETRIES", "-1", "max_retries"),
        ("RELAY365_LISTEN", "not-an-address", "listen"),
        ("DATABASE_URL", "mysql://x", "database_url"),
        ("RELAY365_SQLITE_SYNCHRONOUS", "off", "sqlite_synchronous"),
    ];
    for (var, value, key) in cases {
        let line = start_failure(
            relay365()
                .current_dir(dir.path())
                .arg("serve")
                .env(var, value),
            2,
        );
        assert!(
            line.contains(&format!("`{key}`")) && line.contains(var),
            "{var}: {line}"
        );
        assert!(line.contains("correct it where it is set"), "{line}");
    }
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "workerz = 3\n").unwrap();
    let line = start_failure(
        relay365()
            .current_dir(dir.path())
            .args(["--config", file.to_str().unwrap(), "serve"]),
        2,
    );
    assert!(line.contains("workerz") && line.contains("remove it from the --config file"));
    assert!(!dir.path().join("data").exists(), "nothing was created");
}

#[test]
fn no_api_key_on_a_public_address_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let line = start_failure(
        relay365()
            .current_dir(dir.path())
            .env("RELAY365_LISTEN", "0.0.0.0:0"),
        2,
    );
    assert!(
        line.contains("`api_key`") && line.contains("0.0.0.0:0"),
        "{line}"
    );
    assert!(
        line.contains("set RELAY365_API_KEY") && line.contains("loopback address"),
        "{line}"
    );
    assert!(!dir.path().join("data").exists(), "nothing was created");
}

#[test]
fn a_port_that_is_taken_says_so_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let line = start_failure(
        relay365()
            .current_dir(dir.path())
            .env("RELAY365_LISTEN", &addr),
        1,
    );
    assert!(
        line.contains(&addr) && line.contains("RELAY365_LISTEN"),
        "{line}"
    );
    assert!(line.contains("in use"), "the cause: {line}");
    assert!(
        line.contains("set RELAY365_LISTEN to a free port"),
        "the fix: {line}"
    );
    drop(taken);
}

#[test]
fn a_database_migrated_by_a_newer_relay365_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let migrate = relay365()
        .current_dir(dir.path())
        .arg("migrate")
        .output()
        .unwrap();
    assert!(migrate.status.success());
    // A migration this binary does not have, as a newer relay365 would have left it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("data/relay365.db").display());
        let store = relay365_actors::store::Store::connect(&url, &Default::default())
            .await
            .unwrap();
        let relay365_actors::store::Store::Sqlite(pool) = &store else {
            unreachable!("a SQLite URL")
        };
        sqlx::query(
            "insert into _sqlx_migrations (version, description, success, checksum, execution_time) \
             values (20990101000000, 'from the future', true, x'00', 1)",
        )
        .execute(pool)
        .await
        .unwrap();
        store.close().await;
    });
    for cmd in ["serve", "migrate"] {
        let line = start_failure(
            relay365()
                .current_dir(dir.path())
                .arg(cmd)
                .env("RELAY365_LISTEN", "127.0.0.1:0"),
            1,
        );
        assert!(line.contains("migration 20990101000000"), "{cmd}: {line}");
        assert!(line.contains("a newer relay365"), "{cmd}: {line}");
        assert!(line.contains("run that newer relay365"), "{cmd}: {line}");
    }
}

#[test]
fn migrate_creates_the_embedded_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = relay365()
        .current_dir(dir.path())
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("data/relay365.db").exists());
    let again = relay365()
        .current_dir(dir.path())
        .arg("migrate")
        .output()
        .unwrap();
    assert!(again.status.success());
}

#[test]
fn a_password_in_the_database_url_never_reaches_the_output() {
    let dir = tempfile::tempdir().unwrap();
    // A password both in the user part and as a parameter (each alone is a unit test).
    for url in ["postgres://relay:s3cret-pw@127.0.0.1:9/relay?password=s3cret-pw&sslmode=disable"] {
        for cmd in ["migrate", "serve"] {
            let out = relay365()
                .current_dir(dir.path())
                .arg(cmd)
                .env("DATABASE_URL", url)
                .env("RELAY365_LISTEN", "127.0.0.1:0")
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(1),
                "{cmd} with an unreachable database"
            );
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // One line: the cause, then what to check.
            let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
            assert_eq!(errors.len(), 1, "{cmd}: {text}");
            assert!(!text.contains("s3cret-pw"), "{cmd}: {text}");
            assert!(
                text.contains("127.0.0.1:9"),
                "{cmd} names the database: {text}"
            );
            // The cause, and what to check, not only that a pool timed out.
            assert!(text.contains("Connection refused"), "{cmd}: {text}");
            assert!(text.contains("is the database running"), "{cmd}: {text}");
        }
    }
}

/// A PostgreSQL that answers but refuses the login (here: a role it does not have) is named,
/// with what to check, in one line; the same for a database that does not exist.
#[test]
fn a_database_that_refuses_the_login_says_so_and_exits_1() {
    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("TEST_DATABASE_URL is not set: skipped");
        return;
    };
    let host = base
        .split_once('@')
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest).to_string())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (url, says) in [
        (
            format!("postgres://relay365_no_such_role@{host}/test"),
            "relay365_no_such_role",
        ),
        (
            format!("postgres://postgres@{host}/relay365_no_such_db"),
            "relay365_no_such_db",
        ),
    ] {
        let line = start_failure(
            relay365()
                .current_dir(dir.path())
                .arg("serve")
                .env("DATABASE_URL", &url)
                .env("RELAY365_LISTEN", "127.0.0.1:0"),
            1,
        );
        assert!(
            line.contains("does not exist") && line.contains(says),
            "{line}"
        );
        assert!(
            line.contains("DATABASE_URL"),
            "the fix names the setting: {line}"
        );
    }
}

#[test]
fn help_on_every_command() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["status", "--help"],
    ] {
        let out = relay365().args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
    let out = relay365().arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn serves_json_logs_without_secrets_and_status_prints_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        "api-key-SECRET-1",
        "service-SECRET-2",
        "client-SECRET-3",
        "refresh-SECRET-4",
        "static-SECRET-5",
    ];
    let mut child = relay365()
        .current_dir(dir.path())
        .env("RELAY365_LISTEN", "127.0.0.1:0")
        .env("RELAY365_API_KEY", secrets[0])
        .env("SERVICE_SECRET", secrets[1])
        // Nothing listens there: token requests fail, and their failure is logged.
        .env("RELAY365_LOGIN_URL", "http://127.0.0.1:9")
        .env("RELAY365_GRAPH_URL", "http://127.0.0.1:9/v1.0")
        .env("RELAY365_LOG_FORMAT", "json")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = support::child::wait_ready(&mut child);
    let base = logs.url.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ready = rt.block_on(async {
        for _ in 0..500 {
            if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
                if r.status() == 200 {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    });
    assert!(ready, "the service became ready");
    let out = relay365()
        .args(["status", "--url", &base])
        .env("RELAY365_API_KEY", secrets[0])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    for name in [
        "root",
        "receiver",
        "processors",
        "delivery",
        "renewal",
        "credentials",
    ] {
        assert!(tree.contains(name), "{tree}");
    }
    // Credentials carrying secrets, used until their tokens fail: still nothing in the logs.
    let created = rt.block_on(async {
        let http = reqwest::Client::new();
        let mut ids = Vec::new();
        for source in [
            serde_json::json!({"kind": "client_credentials", "tenant_id": "t", "client_id": "c", "client_secret": secrets[2]}),
            serde_json::json!({"kind": "refresh_token", "tenant_id": "t", "client_id": "c", "refresh_token": secrets[3]}),
            serde_json::json!({"kind": "static", "access_token": secrets[4]}),
        ] {
            let res = http
                .post(format!("{base}/api/credentials"))
                .bearer_auth(secrets[0])
                .json(&serde_json::json!({"name": "n", "mailbox": "m@example.com", "token_source": source}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
            let body: serde_json::Value = res.json().await.unwrap();
            ids.push(body["id"].as_str().unwrap().to_string());
        }
        for id in &ids {
            let res = http
                .post(format!("{base}/api/ms365/subscriptions"))
                .bearer_auth(secrets[0])
                .json(&serde_json::json!({"credential_id": id}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body = res.text().await.unwrap();
            assert!(status >= 500, "{status} {body}");
            for s in secrets {
                assert!(!body.contains(s), "a secret in an error answer: {body}");
            }
        }
        ids.len()
    });
    assert_eq!(created, 3);
    let denied = relay365()
        .args(["status", "--url", &base])
        .output()
        .unwrap();
    assert_eq!(
        denied.status.code(),
        Some(1),
        "without the key the status is refused"
    );

    // SIGTERM: a graceful stop, exit 0.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let logs = logs.all();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 3, "{logs}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    for s in secrets {
        assert!(!logs.contains(s), "a secret reached the logs");
    }
}
