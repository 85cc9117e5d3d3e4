//! The real binary started on port 0: its address is read from its own "relay365 is ready"
//! log line instead of picking a free port, dropping it and hoping nothing takes it before
//! the child binds it again. Its stderr is read as it comes, so the pipe never fills.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

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
