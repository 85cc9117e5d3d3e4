//! `relay365 demo` (SPEC §1) as a person runs it: the real binary, no setup, exits 0 with a
//! summary saying every mail was delivered with a valid signature, and prints no secret.
use std::process::Command;

#[test]
fn demo_runs_the_whole_pipeline_and_exits_0() {
    let out = Command::new(env!("CARGO_BIN_EXE_relay365"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    for want in [
        "✓ credential",
        "✓ subscription",
        "✓ target",
        "accepted",
        "throttled",
        "fetched",
        "intent=invoice",
        "is_auto_reply",
        "is_newsletter",
        "attachment INV-2026-0142.pdf",
        "progress ████ 4/4 delivered",
        "root  [supervisor] running",
        "events      4 (4 completed)",
        "deliveries  4 of 4 delivered",
        "1 Graph 429 honoured",
        "notification → delivery",
        "demo ok: 4 of 4 mails delivered, 4 of 4 signatures valid",
    ] {
        assert!(stdout.contains(want), "{want:?} missing from:\n{stdout}");
    }
    assert!(!stdout.contains("INVALID"), "{stdout}");
    // Nothing secret: neither the target's signing secret nor the simulator's client secret.
    assert!(!stdout.contains("whsec_"), "{stdout}");
    assert!(!stdout.contains("sim-client-secret"), "{stdout}");
    // Quiet logs: nothing at info level.
    assert!(!stderr.contains(" INFO "), "{stderr}");
}

#[test]
fn demo_has_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_relay365"))
        .args(["demo", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--keep"));
}

/// `--keep` leaves the service up at the printed URL until Ctrl-C (SIGINT), then exits 0.
#[cfg(unix)]
#[tokio::test]
async fn keep_leaves_it_running_until_ctrl_c() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let mut child = Command::new(env!("CARGO_BIN_EXE_relay365"))
        .args(["demo", "--keep"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Lines go through a channel; the reader keeps draining stdout to its end.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut base = None;
    while let Some(line) = rx.recv().await {
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.trim().strip_prefix("API, /status, /metrics") {
            base = Some(rest.split_whitespace().next().unwrap().to_string());
            break;
        }
    }
    let base = base.unwrap_or_else(|| panic!("no URL printed:\n{seen}"));
    assert!(seen.contains("Still running"), "{seen}");
    let res = reqwest::get(format!("{base}/api/events")).await.unwrap();
    assert_eq!(res.status(), 200);
    let events: serde_json::Value = res.json().await.unwrap();
    assert_eq!(events["events"].as_array().unwrap().len(), 4);

    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    reader.join().unwrap();
    let mut rest = String::new();
    while let Ok(line) = rx.try_recv() {
        rest.push_str(&line);
        rest.push('\n');
    }
    assert!(rest.contains("stopping"), "{rest}");
}
