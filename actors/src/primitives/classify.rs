//! `email/classify`: intent, urgency, auto-reply, newsletter and language of a mail, each
//! decision explained by the [`Signal`]s that led to it.
//!
//! Rules only, evaluated in a fixed order, so the same mail always gives the same answer (no
//! hash-map order, no clock). `docs/primitives.md` lists the rules.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use super::input::EmailInput;
use super::parse::{parse_rendered, render_body, Parsed};

/// What the sender wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    classify_parsed(input, &parse_rendered(render_body(input)))
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

    let is_auto_reply = auto_reply_signals(input, &mut signals);
    let is_newsletter = newsletter_signals(input, own_text, &mut signals);
    let intent = intent(
        input,
        subject,
        own_text,
        is_auto_reply,
        is_newsletter,
        &mut signals,
    );
    let urgency = urgency(
        input,
        subject,
        own_text,
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

// ---------------------------------------------------------------------------------------------
// Auto-reply and newsletter
// ---------------------------------------------------------------------------------------------

static AUTO_REPLY_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*auto(?:matic)?(?:[- ]?reply)?\s*:|(?-u:\b)(?:automatic reply|auto-?reply|out of (?:the )?office|automatische antwort|abwesenheitsnotiz|réponse automatique|respuesta automática)(?-u:\b)",
    )
    .expect("valid regex")
});

fn auto_reply_signals(input: &EmailInput, signals: &mut Vec<Signal>) -> bool {
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

fn newsletter_signals(input: &EmailInput, own_text: &str, signals: &mut Vec<Signal>) -> bool {
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

// ---------------------------------------------------------------------------------------------
// Intent
// ---------------------------------------------------------------------------------------------

/// Keyword rules per intent, in the order that breaks ties: when two intents score the same,
/// the one listed first wins (a complaint about an invoice is a complaint).
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
        .map(|(intent, words)| {
            (
                intent,
                Regex::new(&format!(r"(?i)(?-u:\b)(?:{words})(?-u:\b)")).expect("valid regex"),
            )
        })
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

fn intent(
    input: &EmailInput,
    subject: &str,
    own_text: &str,
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
            for m in regex.find_iter(text) {
                let word = m.as_str().to_lowercase();
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
    if subject.ends_with('?') {
        add(Intent::Question, SUBJECT_WEIGHT);
        signals.push(Signal::new(
            "subject:question-mark",
            "intent:question",
            subject,
        ));
    }
    if let Some(sentence) = own_text
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

// ---------------------------------------------------------------------------------------------
// Urgency
// ---------------------------------------------------------------------------------------------

static URGENT_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(?:urgent|urgently|asap|as soon as possible|immediately|emergency|critical|right away|time[- ]sensitive|dringend|eilt|sofort|umgehend|schnellstmöglich|urgence)(?-u:\b)")
        .expect("valid regex")
});

fn urgency(
    input: &EmailInput,
    subject: &str,
    own_text: &str,
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
        if let Some(m) = URGENT_WORDS.find(text) {
            high = true;
            signals.push(Signal::new(
                format!("{place}:urgent-keyword"),
                "urgency:high",
                m.as_str().to_lowercase(),
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

// ---------------------------------------------------------------------------------------------
// Language
// ---------------------------------------------------------------------------------------------

/// whatlang reads this much of the new text: plenty to tell a language, and it keeps a long
/// mail fast.
const LANGUAGE_SAMPLE_BYTES: usize = 2_000;

/// Below this many letters a guess is not worth giving.
const MIN_LANGUAGE_LETTERS: usize = 12;

fn language(subject: &str, own_text: &str, signals: &mut Vec<Signal>) -> String {
    let sample = format!("{subject}\n{}", head(own_text, LANGUAGE_SAMPLE_BYTES));
    let letters = sample.chars().filter(|c| c.is_alphabetic()).count();
    let info = (letters >= MIN_LANGUAGE_LETTERS)
        .then(|| whatlang::detect(&sample))
        .flatten();
    match info {
        Some(info) if info.is_reliable() => {
            let code = iso_639_1(info.lang());
            signals.push(Signal::new(
                "language:whatlang",
                format!("language:{code}"),
                format!("{} confidence={:.2}", info.lang().code(), info.confidence()),
            ));
            code.to_string()
        }
        Some(info) => {
            signals.push(Signal::new(
                "language:unreliable",
                "language:und",
                format!("{} confidence={:.2}", info.lang().code(), info.confidence()),
            ));
            "und".to_string()
        }
        None => {
            signals.push(Signal::new(
                "language:too-short",
                "language:und",
                format!("{letters} letters"),
            ));
            "und".to_string()
        }
    }
}

/// whatlang speaks ISO 639-3; the contract speaks ISO 639-1.
fn iso_639_1(lang: whatlang::Lang) -> &'static str {
    use whatlang::Lang::*;
    match lang {
        Epo => "eo",
        Eng => "en",
        Rus => "ru",
        Cmn => "zh",
        Spa => "es",
        Por => "pt",
        Ita => "it",
        Ben => "bn",
        Fra => "fr",
        Deu => "de",
        Ukr => "uk",
        Kat => "ka",
        Ara => "ar",
        Hin => "hi",
        Jpn => "ja",
        Heb => "he",
        Yid => "yi",
        Pol => "pl",
        Amh => "am",
        Jav => "jv",
        Kor => "ko",
        Nob => "nb",
        Dan => "da",
        Swe => "sv",
        Fin => "fi",
        Tur => "tr",
        Nld => "nl",
        Hun => "hu",
        Ces => "cs",
        Ell => "el",
        Bul => "bg",
        Bel => "be",
        Mar => "mr",
        Kan => "kn",
        Ron => "ro",
        Slv => "sl",
        Hrv => "hr",
        Srp => "sr",
        Mkd => "mk",
        Lit => "lt",
        Lav => "lv",
        Est => "et",
        Tam => "ta",
        Vie => "vi",
        Urd => "ur",
        Tha => "th",
        Guj => "gu",
        Uzb => "uz",
        Pan => "pa",
        Aze => "az",
        Ind => "id",
        Tel => "te",
        Pes => "fa",
        Mal => "ml",
        Ori => "or",
        Mya => "my",
        Nep => "ne",
        Sin => "si",
        Khm => "km",
        Tuk => "tk",
        Aka => "ak",
        Zul => "zu",
        Sna => "sn",
        Afr => "af",
        Lat => "la",
        Slk => "sk",
        Cat => "ca",
        Tgl => "tl",
        Hye => "hy",
        Cym => "cy",
    }
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
