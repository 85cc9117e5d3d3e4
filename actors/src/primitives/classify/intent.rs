//! Intent: what the sender wants, by keyword scores, with a fixed order to break ties.

use std::sync::LazyLock;

use regex::Regex;

use super::folded::{rule, Folded};
use super::{EmailInput, Intent, Signal};

/// Keyword rules per intent, in the order that breaks ties: when two intents score the same,
/// the one listed first wins (a complaint about an invoice is a complaint). Written in lower case
/// ([`rule`]).
static KEYWORDS: LazyLock<Vec<(Intent, Regex)>> = LazyLock::new(|| {
    let rules: [(Intent, &str); 7] = [
        (
            Intent::Complaint,
            r"complaint|complain|unacceptable|disappointed|disappointing|frustrated|refund|broken|damaged|defective|not working|doesn't work|does not work|still (?:not|no|waiting)|terrible|worst|beschwerde|reklamation|mangelhaft|enttäuscht|kaputt|beschädigt|funktioniert nicht|rückerstattung",
        ),
        (
            Intent::Invoice,
            r"invoice|invoices|invoice number|amount due|payment due|due date|past due|overdue|outstanding balance|billing|bill|remittance|rechnung|rechnungsnummer|zahlungsziel|fällig|zahlungserinnerung|mahnung|facture",
        ),
        (
            Intent::Order,
            r"order|orders|purchase order|order number|order confirmation|shipment|shipped|shipping|tracking number|delivery|bestellung|auftrag|lieferung|versand|sendungsnummer|commande",
        ),
        (
            Intent::Meeting,
            r"meeting|meet|call|calendar|invite|invitation|schedule|reschedule|appointment|agenda|availability|available|teams meeting|zoom|termin|besprechung|treffen|einladung|réunion|rendez-vous",
        ),
        (
            Intent::Request,
            r"please|could you|can you|would you|will you|kindly|request|requesting|need|needs|required|send me|let me know|bitte|könnten sie|können sie|würden sie|anfrage|benötige|brauche|merci de|pourriez-vous",
        ),
        (
            Intent::Question,
            r"question|questions|wondering|curious|how do|how can|what is|why|frage|fragen|wie kann|warum",
        ),
        (
            Intent::Notification,
            r"notification|alert|do not reply|don't reply|no-reply|automated message|your account|password reset|reset your password|verify your|verification code|has been (?:updated|created|changed|shipped|approved)|status update|benachrichtigung|nicht antworten|automatisch erstellt",
        ),
    ];
    rules
        .into_iter()
        .map(|(intent, words)| (intent, rule(&format!(r"(?-u:\b)(?:{words})(?-u:\b)"))))
        .collect()
});

/// Local parts of addresses that send machine mail.
const NO_REPLY_SENDERS: [&str; 9] = [
    "noreply",
    "no-reply",
    "no_reply",
    "donotreply",
    "do-not-reply",
    "notification",
    "notifications",
    "mailer-daemon",
    "postmaster",
];

/// How much a keyword in the subject weighs against one in the body.
const SUBJECT_WEIGHT: u32 = 2;

pub(super) fn intent(
    input: &EmailInput,
    subject: &Folded<'_>,
    own_text: &Folded<'_>,
    is_auto_reply: bool,
    is_newsletter: bool,
    signals: &mut Vec<Signal>,
) -> Intent {
    if is_auto_reply {
        signals.push(Signal::new(
            "intent:auto-reply",
            "intent:auto_reply",
            "is_auto_reply",
        ));
        return Intent::AutoReply;
    }
    if is_newsletter {
        signals.push(Signal::new(
            "intent:newsletter",
            "intent:newsletter",
            "is_newsletter",
        ));
        return Intent::Newsletter;
    }

    let mut scores: Vec<(Intent, u32)> = KEYWORDS.iter().map(|(intent, _)| (*intent, 0)).collect();
    let mut add = |intent: Intent, points: u32| {
        if let Some(entry) = scores.iter_mut().find(|(i, _)| *i == intent) {
            entry.1 += points;
        }
    };

    if input.is_meeting_message {
        add(Intent::Meeting, 3);
        signals.push(Signal::new(
            "graph:event-message",
            "intent:meeting",
            "eventMessage",
        ));
    }
    if let Some(address) = &input.from_address {
        let local = address
            .split('@')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if NO_REPLY_SENDERS.contains(&local.as_str()) {
            add(Intent::Notification, SUBJECT_WEIGHT);
            signals.push(Signal::new(
                "sender:no-reply",
                "intent:notification",
                address.as_str(),
            ));
        }
    }
    for (intent, regex) in KEYWORDS.iter() {
        for (place, text, weight) in [("subject", subject, SUBJECT_WEIGHT), ("body", own_text, 1)] {
            let mut matched: Vec<String> = Vec::new();
            for m in text.find_iter(regex) {
                let word = m.to_lowercase();
                if !matched.contains(&word) {
                    matched.push(word);
                }
            }
            for word in matched {
                add(*intent, weight);
                signals.push(Signal::new(
                    format!("{place}:keyword"),
                    format!("intent:{}", intent.as_str()),
                    word,
                ));
            }
        }
    }
    if subject.text.ends_with('?') {
        add(Intent::Question, SUBJECT_WEIGHT);
        signals.push(Signal::new(
            "subject:question-mark",
            "intent:question",
            subject.text,
        ));
    }
    if let Some(sentence) = own_text
        .text
        .lines()
        .map(str::trim)
        .find(|l| l.ends_with('?') && !l.starts_with('>'))
    {
        add(Intent::Question, 1);
        signals.push(Signal::new(
            "body:question-mark",
            "intent:question",
            sentence,
        ));
    }

    // The highest score wins; ties go to the intent listed first in KEYWORDS.
    let best = scores.iter().copied().filter(|(_, score)| *score > 0).fold(
        None::<(Intent, u32)>,
        |best, (intent, score)| match best {
            Some((_, top)) if top >= score => best,
            _ => Some((intent, score)),
        },
    );
    let tally = scores
        .iter()
        .filter(|(_, score)| *score > 0)
        .map(|(intent, score)| format!("{}={score}", intent.as_str()))
        .collect::<Vec<_>>()
        .join(" ");
    match best {
        Some((intent, _)) => {
            signals.push(Signal::new(
                "intent:highest-score",
                format!("intent:{}", intent.as_str()),
                tally,
            ));
            intent
        }
        None => {
            signals.push(Signal::new(
                "intent:default",
                "intent:other",
                "no intent rule matched",
            ));
            Intent::Other
        }
    }
}
