//! What `relay365 demo` prints while it runs and at the end. Everything here is seen from the
//! outside, the way a user could see it: the API's event list, the simulator's request log
//! (which plays Graph, so it knows when a message was fetched or throttled) and what the sink
//! received. Nothing reaches into the service's internals, so the demo shows what is really
//! observable.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{primitives_line, text, Api, Received};
use crate::sim::SimHandle;

/// A mail the demo sent, and what has been seen of it so far.
struct Tracked {
    n: usize,
    subject: String,
    message_id: String,
    notified_at: Instant,
    event_id: Option<String>,
    status: String,
    attempts: i64,
    fetched: bool,
    intent: String,
    language: String,
    delivered_after: Option<Duration>,
    signature_valid: bool,
}

/// Follows the demo's mails from notification to delivery.
#[derive(Default)]
pub(super) struct Watch {
    mails: Vec<Tracked>,
    last_request: u64,
}

fn short(id: &str) -> String {
    let head: String = id.chars().take(10).collect();
    format!("{head}…")
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

impl Watch {
    /// Starts following a mail just sent.
    pub(super) fn track(
        &mut self,
        n: usize,
        subject: String,
        message_id: String,
        notified_at: Instant,
    ) {
        self.mails.push(Tracked {
            n,
            subject,
            message_id,
            notified_at,
            event_id: None,
            status: "?".into(),
            attempts: 0,
            fetched: false,
            intent: "?".into(),
            language: "?".into(),
            delivered_after: None,
            signature_valid: false,
        });
    }

    /// Mails delivered so far.
    pub(super) fn delivered(&self) -> usize {
        self.mails
            .iter()
            .filter(|m| m.delivered_after.is_some())
            .count()
    }

    pub(super) fn all_delivered(&self) -> bool {
        self.delivered() == self.mails.len()
    }

    /// Looks every 100 ms for `during`, printing what happened.
    pub(super) async fn follow(
        &mut self,
        api: &Api,
        sim: &SimHandle,
        sink: &mut mpsc::UnboundedReceiver<Received>,
        during: Duration,
    ) -> anyhow::Result<()> {
        let until = Instant::now() + during;
        loop {
            self.tick(api, sim, sink).await?;
            if Instant::now() >= until {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn tick(
        &mut self,
        api: &Api,
        sim: &SimHandle,
        sink: &mut mpsc::UnboundedReceiver<Received>,
    ) -> anyhow::Result<()> {
        let events = api.get("/api/events?limit=100").await?;
        for e in events["events"].as_array().into_iter().flatten().rev() {
            let Some(m) = self
                .mails
                .iter_mut()
                .find(|m| e["resource_id"].as_str() == Some(m.message_id.as_str()))
            else {
                continue;
            };
            if m.event_id.is_none() {
                m.event_id = Some(text(&e["id"]));
                println!(
                    "  [{}] accepted   event {} stored before the 202",
                    m.n,
                    text(&e["id"])
                );
            }
            let attempts = e["attempts"].as_i64().unwrap_or(0);
            if let Some(err) = e["last_error"].as_str() {
                if attempts > m.attempts && e["status"] == "pending" {
                    println!(
                        "  [{}] retry      processing attempt {attempts} failed ({err}); tried again with backoff",
                        m.n
                    );
                }
            }
            m.attempts = attempts;
            m.status = text(&e["status"]);
        }

        let requests = sim.sim().requests();
        let seen = self.last_request;
        for r in requests.iter().filter(|r| r.seq > seen) {
            self.last_request = self.last_request.max(r.seq);
            let path = percent_encoding::percent_decode_str(&r.path).decode_utf8_lossy();
            let Some(m) = self
                .mails
                .iter_mut()
                .find(|m| !m.message_id.is_empty() && path.contains(m.message_id.as_str()))
            else {
                continue;
            };
            let what = if path.ends_with("/attachments") {
                "its attachments"
            } else {
                "the message"
            };
            if r.status == 429 {
                println!(
                    "  [{}] throttled  Graph answered the fetch of {what} ({}) with 429: relay365 waits for Retry-After, then asks again",
                    m.n,
                    short(&m.message_id)
                );
            } else if (200..300).contains(&r.status) && (!m.fetched || what != "the message") {
                m.fetched = true;
                println!(
                    "  [{}] fetched    {what} from Graph ({} {})",
                    m.n, r.method, r.status
                );
            }
        }

        while let Ok(got) = sink.try_recv() {
            let Some(m) = self
                .mails
                .iter_mut()
                .find(|m| got.body["message"]["id"].as_str() == Some(m.message_id.as_str()))
            else {
                continue;
            };
            let (line, intent, language) = primitives_line(&got.body);
            m.intent = intent;
            m.language = language;
            println!("  [{}] enriched   {line}", m.n);
            let after = got.at.saturating_duration_since(m.notified_at);
            if m.delivered_after.is_none() {
                m.delivered_after = Some(after);
                m.signature_valid = got.signature_valid;
            }
            println!(
                "  [{}] delivered  to the sink {} after the notification; signature {}",
                m.n,
                secs(after),
                if got.signature_valid {
                    "valid (checked with the standardwebhooks crate)"
                } else {
                    "INVALID"
                }
            );
            println!("{}", self.progress());
        }
        Ok(())
    }

    fn progress(&self) -> String {
        let done = self.delivered();
        let total = self.mails.len().max(done);
        format!(
            "  ── progress {}{} {done}/{total} delivered",
            "█".repeat(done),
            "░".repeat(total - done)
        )
    }

    /// Prints the summary table; `Err` unless every mail was delivered with a valid signature.
    pub(super) fn summary(&self, deliveries: &Value, graph_429: usize) -> anyhow::Result<()> {
        let mut by_event: HashMap<&str, (&str, i64)> = HashMap::new();
        for d in deliveries["deliveries"].as_array().into_iter().flatten() {
            if let Some(id) = d["event_id"].as_str() {
                by_event.insert(
                    id,
                    (
                        d["status"].as_str().unwrap_or("?"),
                        d["attempts"].as_i64().unwrap_or(0),
                    ),
                );
            }
        }
        println!(
            "{:<3} {:<44} {:<13} {:<5} {:<10} {:>5} {:<10} {:>5} {:<9} {:>9}",
            "#",
            "mail",
            "intent",
            "lang",
            "event",
            "tries",
            "delivery",
            "tries",
            "signature",
            "notif→del"
        );
        let mut times = Vec::new();
        let (mut processing_retries, mut delivery_retries, mut delivered, mut valid) = (0, 0, 0, 0);
        for m in &self.mails {
            let (d_status, d_attempts) = m
                .event_id
                .as_deref()
                .and_then(|id| by_event.get(id).copied())
                .unwrap_or(("none", 0));
            processing_retries += (m.attempts - 1).max(0);
            delivery_retries += (d_attempts - 1).max(0);
            if m.delivered_after.is_some() {
                delivered += 1;
            }
            if m.signature_valid {
                valid += 1;
            }
            times.extend(m.delivered_after);
            let subject: String = m.subject.chars().take(44).collect();
            println!(
                "{:<3} {:<44} {:<13} {:<5} {:<10} {:>5} {:<10} {:>5} {:<9} {:>9}",
                m.n,
                subject,
                m.intent,
                m.language,
                m.status,
                m.attempts,
                d_status,
                d_attempts,
                if m.signature_valid {
                    "valid"
                } else {
                    "INVALID"
                },
                m.delivered_after.map_or("-".into(), secs)
            );
        }
        times.sort();
        let total = self.mails.len();
        println!();
        println!(
            "events      {total} ({} completed)",
            self.mails
                .iter()
                .filter(|m| m.status == "completed")
                .count()
        );
        println!(
            "deliveries  {} of {total} delivered",
            by_event.values().filter(|(s, _)| *s == "delivered").count()
        );
        println!("retries     {graph_429} Graph 429 honoured, {processing_retries} processing, {delivery_retries} delivery");
        if let (Some(min), Some(max)) = (times.first(), times.last()) {
            println!(
                "notification → delivery  min {}, median {}, max {}",
                secs(*min),
                secs(times[times.len() / 2]),
                secs(*max)
            );
        }
        println!();
        if delivered != total || valid != total {
            bail!("{delivered} of {total} mails delivered, {valid} of {total} signatures valid");
        }
        println!(
            "demo ok: {delivered} of {total} mails delivered, {valid} of {total} signatures valid"
        );
        Ok(())
    }
}
