//! Urgency: headers and Graph's importance first, then urgent wording; bulk mail is low.

use std::sync::LazyLock;

use regex::Regex;

use super::folded::{rule, Folded};
use super::{EmailInput, Signal, Urgency};

static URGENT_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    rule(
        r"(?-u:\b)(?:urgent|urgently|asap|as soon as possible|immediately|emergency|critical|right away|time[- ]sensitive|dringend|eilt|sofort|umgehend|schnellstmöglich|urgence)(?-u:\b)",
    )
});

pub(super) fn urgency(
    input: &EmailInput,
    subject: &Folded<'_>,
    own_text: &Folded<'_>,
    is_bulk: bool,
    signals: &mut Vec<Signal>,
) -> Urgency {
    let mut high = false;
    let mut low = false;

    let mut header_level =
        |name: &str, level: Option<Urgency>, value: &str, signals: &mut Vec<Signal>| {
            if let Some(level) = level {
                high |= level == Urgency::High;
                low |= level == Urgency::Low;
                signals.push(Signal::new(
                    format!("header:{}", name.to_ascii_lowercase()),
                    format!("urgency:{}", level.as_str()),
                    value,
                ));
            }
        };
    if let Some(value) = input.header("Importance") {
        header_level("Importance", importance_level(value), value, signals);
    }
    if let Some(value) = input.header("X-Priority") {
        let level = match value.trim().chars().next() {
            Some('1' | '2') => Some(Urgency::High),
            Some('4' | '5') => Some(Urgency::Low),
            _ => None,
        };
        header_level("X-Priority", level, value, signals);
    }
    if let Some(value) = input.header("Priority") {
        let level = match value.to_ascii_lowercase().as_str() {
            "urgent" => Some(Urgency::High),
            "non-urgent" => Some(Urgency::Low),
            _ => None,
        };
        header_level("Priority", level, value, signals);
    }
    if let Some(importance) = &input.importance {
        if let Some(level) = importance_level(importance) {
            high |= level == Urgency::High;
            low |= level == Urgency::Low;
            signals.push(Signal::new(
                "graph:importance",
                format!("urgency:{}", level.as_str()),
                importance.as_str(),
            ));
        }
    }
    for (place, text) in [("subject", subject), ("body", own_text)] {
        if let Some(m) = text.find(&URGENT_WORDS) {
            high = true;
            signals.push(Signal::new(
                format!("{place}:urgent-keyword"),
                "urgency:high",
                m.to_lowercase(),
            ));
        }
    }

    if is_bulk {
        signals.push(Signal::new(
            "urgency:bulk",
            "urgency:low",
            "auto-reply or newsletter",
        ));
        Urgency::Low
    } else if high {
        Urgency::High
    } else if low {
        Urgency::Low
    } else {
        signals.push(Signal::new(
            "urgency:default",
            "urgency:normal",
            "no urgency rule matched",
        ));
        Urgency::Normal
    }
}

fn importance_level(value: &str) -> Option<Urgency> {
    match value.trim().to_ascii_lowercase().as_str() {
        "high" | "urgent" => Some(Urgency::High),
        "low" => Some(Urgency::Low),
        _ => None,
    }
}
