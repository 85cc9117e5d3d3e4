//! Resident memory and time of the language detector (issue 13's goal: at most 80 MB added).
//!
//! `cargo run --release -p relay365-actors --example language_memory`
//!
//! Prints the process's resident size (VmRSS from /proc/self/status, Linux) before the
//! detector is built, after it is built, and after it has read a sentence of every language
//! of the corpus (lingua's models are embedded in the binary and their pages become resident
//! as they are read, so the last figure is the one that counts), the time building took, and
//! the time classify takes on a short mail. The figures are in docs/primitives.md.

use std::time::Instant;

use relay365_actors::primitives::{classify, warm_up, EmailInput};
use serde_json::json;

/// Resident size in KiB, or 0 where /proc is not there.
fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// A `… kB` line of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
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

    let corpus = include_str!("../tests/fixtures/primitives/languages.txt");
    let start = Instant::now();
    let mut mails = 0;
    for line in corpus.lines().filter(|l| !l.starts_with('#')) {
        let Some(text) = line.split('\t').nth(2) else {
            continue;
        };
        let Ok(input) = EmailInput::from_json(&json!({"subject": "", "body": text})) else {
            continue;
        };
        std::hint::black_box(classify(&input));
        mails += 1;
    }
    let corpus_time = start.elapsed();
    let used = rss_kib();
    println!(
        "after classifying the {mails} texts of the language corpus ({:.0} µs each): VmRSS {:.1} MiB, +{:.1} MiB over the start",
        corpus_time.as_secs_f64() * 1e6 / f64::from(mails.max(1)),
        used as f64 / 1024.0,
        used.saturating_sub(before) as f64 / 1024.0
    );
    println!(
        "  of which anonymous (heap) {:.1} MiB, file-backed (the models embedded in the binary, shared and clean) {:.1} MiB",
        status_kib("RssAnon:") as f64 / 1024.0,
        status_kib("RssFile:") as f64 / 1024.0
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

    // Time of classify by the length of the text (the detector reads at most 300 bytes).
    let sentence = "The quarterly figures are attached and the meeting is moved to Thursday. ";
    for bytes in [60, 150, 300, 1_000] {
        let body: String = sentence
            .repeat(bytes / sentence.len() + 1)
            .chars()
            .take(bytes)
            .collect();
        let Ok(input) = EmailInput::from_json(&json!({"subject": "", "body": body})) else {
            continue;
        };
        let start = Instant::now();
        for _ in 0..500 {
            std::hint::black_box(classify(std::hint::black_box(&input)));
        }
        println!(
            "classify of {bytes} bytes of text: {:.1} µs",
            start.elapsed().as_secs_f64() * 1e6 / 500.0
        );
    }
}
