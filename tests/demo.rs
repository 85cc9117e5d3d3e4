//! `relay365 demo` (SPEC §1) as a person runs it: the real binary, no setup, exits 0 with a
//! summary saying every mail was delivered with a valid signature, and prints no secret.
#![allow(clippy::unwrap_used)]

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
