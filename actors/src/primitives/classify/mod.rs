//! `email/classify`: intent, urgency, auto-reply, newsletter and language of a mail, each
//! decision explained by the [`Signal`]s that led to it.
//!
//! Rules only, evaluated in a fixed order, so the same mail always gives the same answer (no
//! hash-map order, no clock). `docs/primitives.md` lists the rules.

use serde::Serialize;

use super::input::EmailInput;
use super::parse::{parse_rendered, render_body, Parsed};

mod bulk;
mod folded;
mod intent;
pub(crate) mod language;
mod urgency;

use bulk::{auto_reply_signals, newsletter_signals};
use folded::Folded;
use intent::intent;
use language::language;
pub use language::warm_up;
use urgency::urgency;

/// What the sender wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Request,
    Question,
    Meeting,
    Invoice,
    Order,
    Complaint,
    Notification,
    Newsletter,
    AutoReply,
    Other,
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Question => "question",
            Self::Meeting => "meeting",
            Self::Invoice => "invoice",
            Self::Order => "order",
            Self::Complaint => "complaint",
            Self::Notification => "notification",
            Self::Newsletter => "newsletter",
            Self::AutoReply => "auto_reply",
            Self::Other => "other",
        }
    }
}

/// How soon the mail wants an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    Low,
    Normal,
    High,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
        }
    }
}

/// One piece of evidence: which `rule` fired, what it decided (`effect`) and on what
/// (`evidence`: the header, keyword or text that matched).
///
/// `effect` is one of `is_auto_reply`, `is_newsletter`, `intent:<intent>`,
/// `urgency:<urgency>` or `language:<code>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Signal {
    pub rule: String,
    pub effect: String,
    pub evidence: String,
}

impl Signal {
    fn new(
        rule: impl Into<String>,
        effect: impl Into<String>,
        evidence: impl Into<String>,
    ) -> Self {
        Self {
            rule: rule.into(),
            effect: effect.into(),
            evidence: shorten(&evidence.into()),
        }
    }
}

/// The result of `email/classify` (SPEC §3.3).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Classification {
    pub intent: Intent,
    pub urgency: Urgency,
    pub is_auto_reply: bool,
    pub is_newsletter: bool,
    /// ISO 639-1 code (`en`, `de`, …), or `und` when the text is too short or mixed to tell.
    pub language: String,
    /// The evidence for every decision, in the order the rules ran.
    pub signals: Vec<Signal>,
}

/// Classifies a mail.
pub fn classify(input: &EmailInput) -> Classification {
    classify_parsed(
        input,
        &parse_rendered(render_body(input), input.from_name.as_deref()),
    )
}

/// Classifies a mail that was already parsed (so processing parses each body once).
pub fn classify_parsed(input: &EmailInput, parsed: &Parsed) -> Classification {
    let mut signals = Vec::new();
    // The new part is what the sender wrote now; without one (a bare forward) the whole text.
    let own_text = if parsed.reply.is_empty() {
        &parsed.text
    } else {
        &parsed.reply
    };
    let own_text = head(own_text, SCAN_LIMIT);
    let subject = input.subject.trim();
    // Lowercased once for every keyword rule (`folded`).
    let (own, subject_folded) = (Folded::new(own_text), Folded::new(subject));

    let is_auto_reply = auto_reply_signals(input, &own, &mut signals);
    let is_newsletter = newsletter_signals(input, &own, &parsed.links, &mut signals);
    let intent = intent(
        input,
        &subject_folded,
        &own,
        is_auto_reply,
        is_newsletter,
        &mut signals,
    );
    let urgency = urgency(
        input,
        &subject_folded,
        &own,
        is_auto_reply || is_newsletter,
        &mut signals,
    );
    let language = language(subject, own_text, &mut signals);

    Classification {
        intent,
        urgency,
        is_auto_reply,
        is_newsletter,
        language,
        signals,
    }
}

/// Only the first this many bytes of the new part are read for keywords and language: enough
/// to decide, and it keeps a huge mail as fast as a small one.
const SCAN_LIMIT: usize = 8_000;

fn head(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn shorten(text: &str) -> String {
    const MAX: usize = 100;
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.len() <= MAX {
        return one_line;
    }
    format!("{}…", head(&one_line, MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mail(value: serde_json::Value) -> EmailInput {
        EmailInput::from_json(&value).expect("valid mail")
    }

    #[test]
    fn a_request_with_a_question_is_a_request_by_tie_break() {
        let c = classify(&mail(json!({
            "subject": "Report", "body": "Hi Tom,\n\nCan you send me the Q3 report?\n\nThanks,\nAnna",
        })));
        assert_eq!(c.intent, Intent::Request);
        assert_eq!(c.urgency, Urgency::Normal);
        assert_eq!(
            c.signals
                .iter()
                .find(|s| s.rule == "intent:highest-score")
                .map(|s| s.evidence.as_str()),
            Some("request=2 question=1")
        );
    }

    #[test]
    fn urgency_comes_from_headers_graph_and_keywords_but_bulk_is_low() {
        let high = classify(&mail(
            json!({"subject": "URGENT: server down", "body": "x", "importance": "normal"}),
        ));
        assert_eq!(high.urgency, Urgency::High);
        let low = classify(&mail(
            json!({"subject": "fyi", "body": "x", "headers": {"X-Priority": "5 (Lowest)"}}),
        ));
        assert_eq!(low.urgency, Urgency::Low);
        let bulk = classify(&mail(json!({
            "subject": "Urgent: last chance", "body": "Sale", "headers": {"Precedence": "bulk"}
        })));
        assert_eq!(
            (bulk.urgency, bulk.is_newsletter, bulk.intent),
            (Urgency::Low, true, Intent::Newsletter)
        );
    }

    #[test]
    fn language_is_iso_639_1_or_und() {
        let de = classify(&mail(json!({
            "subject": "Rechnung",
            "body": "Sehr geehrte Damen und Herren, anbei erhalten Sie die Rechnung für den Monat März. Bitte überweisen Sie den Betrag bis zum Monatsende."
        })));
        assert_eq!(de.language, "de");
        assert_eq!(
            classify(&mail(json!({"subject": "", "body": "ok"}))).language,
            "und"
        );
    }

    #[test]
    fn the_same_mail_always_gives_the_same_answer() {
        let input = mail(json!({
            "subject": "Invoice overdue - please pay ASAP",
            "body": "Your invoice INV-1 for €120.00 is past due. Could you pay today?",
            "headers": [{"name": "Importance", "value": "high"}, {"name": "X-Priority", "value": "1"}],
        }));
        let first = serde_json::to_string(&classify(&input)).expect("serializable");
        for _ in 0..20 {
            assert_eq!(
                serde_json::to_string(&classify(&input)).expect("serializable"),
                first
            );
        }
    }
}
