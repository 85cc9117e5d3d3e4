//! Resident memory and time of the language detector (issue 13's goal: at most 80 MB added).
//!
//! `cargo run --release -p relay365-actors --example language_memory`
//!
//! Prints the process's resident size (VmRSS from /proc/self/status, Linux) before and after
//! the detector's models are loaded, the time loading took, and the time classify then takes
//! on a short mail. The figures are in docs/primitives.md.

use std::time::Instant;

use relay365_actors::primitives::{classify, warm_up, EmailInput};
use serde_json::json;

/// Resident size in KiB, or 0 where /proc is not there.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let before = rss_kib();
    let start = Instant::now();
    warm_up();
    let load = start.elapsed();
    let after = rss_kib();
    println!(
        "VmRSS before {:.1} MiB, after loading the detector {:.1} MiB: +{:.1} MiB in {:.0} ms",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / 1024.0,
        load.as_secs_f64() * 1000.0
    );

    let input = EmailInput::from_json(&json!({
        "subject": "Lunch",
        "body": "Hi Sam, are you free for lunch on Friday? Cheers, Kim",
    }));
    let Ok(input) = input else {
        eprintln!("invalid mail");
        return;
    };
    let runs = 2_000;
    let start = Instant::now();
    let mut language = String::new();
    for _ in 0..runs {
        language = classify(std::hint::black_box(&input)).language;
    }
    let per_mail = start.elapsed().as_secs_f64() * 1e6 / f64::from(runs);
    println!(
        "classify of a short mail: {per_mail:.1} µs per mail (language {language}); VmRSS now {:.1} MiB",
        rss_kib() as f64 / 1024.0
    );
}
