//! Auto-replies and newsletters: mail that no person wrote to this reader.
//!
//! Headers are the surest sign; the subject and the body's own wording catch what clients send
//! without them.

use std::sync::LazyLock;

use regex::Regex;

use super::{EmailInput, Signal};

static AUTO_REPLY_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*auto(?:matic)?(?:[- ]?reply)?\s*:|(?-u:\b)(?:automatic reply|auto-?reply|out of (?:the )?office|automatische antwort|abwesenheitsnotiz|réponse automatique|respuesta automática)(?-u:\b)",
    )
    .expect("valid regex")
});

pub(super) fn auto_reply_signals(input: &EmailInput, signals: &mut Vec<Signal>) -> bool {
    let before = signals.len();
    if let Some(value) = input.header("Auto-Submitted") {
        let kind = value.split(';').next().unwrap_or_default().trim();
        if !kind.eq_ignore_ascii_case("no") && !kind.is_empty() {
            signals.push(Signal::new("header:auto-submitted", "is_auto_reply", value));
        }
    }
    if let Some(value) = input
        .header("X-Auto-Response-Suppress")
        .filter(|v| !v.is_empty())
    {
        signals.push(Signal::new(
            "header:x-auto-response-suppress",
            "is_auto_reply",
            value,
        ));
    }
    for name in ["X-Autoreply", "X-Autorespond"] {
        if let Some(value) = input.header(name) {
            signals.push(Signal::new(
                format!("header:{}", name.to_ascii_lowercase()),
                "is_auto_reply",
                value,
            ));
        }
    }
    if let Some(value) = input
        .header("Precedence")
        .filter(|v| v.eq_ignore_ascii_case("auto_reply"))
    {
        signals.push(Signal::new("header:precedence", "is_auto_reply", value));
    }
    if let Some(m) = AUTO_REPLY_SUBJECT.find(&input.subject) {
        signals.push(Signal::new(
            "subject:auto-reply",
            "is_auto_reply",
            m.as_str().trim(),
        ));
    }
    signals.len() > before
}

static UNSUBSCRIBE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(?:unsubscribe|opt[- ]out|abmelden|abbestellen|newsletter abbestellen|se désabonner|désinscription|darse de baja)(?-u:\b)")
        .expect("valid regex")
});

pub(super) fn newsletter_signals(
    input: &EmailInput,
    own_text: &str,
    signals: &mut Vec<Signal>,
) -> bool {
    let before = signals.len();
    if let Some(value) = input.header("List-Unsubscribe") {
        signals.push(Signal::new(
            "header:list-unsubscribe",
            "is_newsletter",
            value,
        ));
    }
    if let Some(value) = input.header("Precedence").filter(|v| {
        ["bulk", "list", "junk"]
            .iter()
            .any(|p| v.eq_ignore_ascii_case(p))
    }) {
        signals.push(Signal::new("header:precedence", "is_newsletter", value));
    }
    if let Some(value) = input.header("List-Id") {
        signals.push(Signal::new("header:list-id", "is_newsletter", value));
    }
    if let Some(m) = UNSUBSCRIBE.find(own_text) {
        signals.push(Signal::new("body:unsubscribe", "is_newsletter", m.as_str()));
    }
    signals.len() > before
}
