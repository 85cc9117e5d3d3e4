//! The real binary started on port 0: its address is read from its own "relay365 is ready"
//! log line instead of picking a free port, dropping it and hoping nothing takes it before
//! the child binds it again. Its stderr is read as it comes, so the pipe never fills.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The `relay365` binary with a clean slate: the developer's own settings do not leak in.
pub fn relay365() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_relay365"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RELAY365_")
            || [
                "DATABASE_URL",
                "RUST_LOG",
                "SERVICE_SECRET",
                "AUTH_SERVICE_URL",
                "API_WEBHOOK_URL",
            ]
            .contains(&k.as_str())
        {
            c.env_remove(k);
        }
    }
    c
}

/// `relay365 serve` (the default command) in `dir` on `db_url`, on port 0, logging to a piped
/// stderr at `info` for the binary (so that [`wait_ready`] can read its address).
pub fn serve(dir: &std::path::Path, db_url: &str) -> Command {
    let mut c = relay365();
    c.current_dir(dir)
        .env("DATABASE_URL", db_url)
        .env("RELAY365_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn,relay365=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// A started child's base URL and its log so far (all of it once the child has ended).
pub struct Logs {
    pub url: String,
    lines: JoinHandle<String>,
}

impl Logs {
    /// Every log line, once the child has exited (its stderr is closed).
    pub fn all(self) -> String {
        self.lines.join().unwrap()
    }
}

/// Reads `child`'s stderr (it must be piped and the child must log at `info` for the binary)
/// until its ready line, and answers the URL it serves.
pub fn wait_ready(child: &mut Child) -> Logs {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    let lines = std::thread::spawn(move || {
        let mut all = String::new();
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let (Some(url), Some(t)) = (ready_url(&line), tx.as_ref()) {
                let _ = t.send(url);
                tx = None;
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the service logged that it is ready");
    Logs { url, lines }
}

/// The URL in a "relay365 is ready" line, text or JSON.
fn ready_url(line: &str) -> Option<String> {
    if !line.contains("relay365 is ready") {
        return None;
    }
    let at = line.find("http://")?;
    let url: String = line[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    Some(url)
}
