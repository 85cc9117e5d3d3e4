//! Probe: the CPU that enrichment (parse, classify) costs per mail, on the 5 KB HTML mail that
//! `pipeline_load` sends, in this one thread, without the service around it.
//!
//! ```sh
//! cargo run --release --example enrich_probe [-- --mails 20000]
//! ```
//! Prints the mean time per mail over the run, after a warm-up (the language models and the
//! regular expressions are built once per process). Figures are in docs/benchmarks.md.
#![allow(clippy::unwrap_used)]

mod support;

use std::hint::black_box;
use std::time::Instant;

use clap::Parser;
use relay365_actors::primitives::{email_primitives, warm_up, EmailInput};
use serde_json::json;
use support::html_mail;

#[derive(Parser)]
#[command(about = "CPU per mail of parse + classify on pipeline_load's 5 KB HTML mail")]
struct Args {
    /// Mails enriched (each with its own order number, as in the pipeline load).
    #[arg(long, default_value_t = 20_000)]
    mails: usize,
    /// Runs of `--mails` each; every run prints its figure.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let inputs: Vec<EmailInput> = (0..args.mails.min(1000))
        .map(|i| {
            EmailInput::from_json(&json!({
                "subject": format!("Order {i} confirmed"),
                "body": html_mail(i),
                "body_type": "html",
                "from": {"name": "Kim Lee", "address": "kim@fabrikam.example"},
            }))
        })
        .collect::<Result<_, _>>()?;
    warm_up();
    for input in &inputs {
        black_box(email_primitives(input));
    }
    for run in 1..=args.runs {
        let started = Instant::now();
        for i in 0..args.mails {
            black_box(email_primitives(&inputs[i % inputs.len()]));
        }
        let per = started.elapsed().as_secs_f64() / args.mails as f64;
        println!(
            "run {run}: {:.1} µs per mail ({} mails)",
            per * 1e6,
            args.mails
        );
    }
    Ok(())
}
