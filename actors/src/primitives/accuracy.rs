//! Accuracy of reply, signature and language on relay365's own corpus, with the issue-13 goals
//! asserted.
//!
//! The corpus is in `actors/tests/fixtures/primitives/`: `replies.txt` (mails of every kind of
//! quoting, attribution and signature seen in real mail, written for this project) and
//! `languages.txt` (short sentences, word pairs and text without a language). Every reply case
//! is checked exactly; the figures per kind and per language are printed with
//!
//! ```sh
//! ACCURACY_VERBOSE=1 cargo test -p relay365-actors --lib primitives::accuracy -- --nocapture
//! ```
//!
//! `ACCURACY_COMPARE=1` also measures lingua's low-accuracy mode on the same language corpus
//! (the figures `docs/primitives.md` gives for choosing the mode).

use std::collections::BTreeMap;

use serde_json::json;

use super::classify::language::{detect, whatlang_code, MIN_CONFIDENCE};
use super::{parse, EmailInput};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/primitives/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).expect("fixture exists")
}

fn verbose() -> bool {
    std::env::var_os("ACCURACY_VERBOSE").is_some()
}

/// `(kind, code, text)` of every line of `languages.txt`.
fn language_cases() -> Vec<(String, String, String)> {
    fixture("languages.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.splitn(3, '\t');
            let mut next = || parts.next().expect("kind, code and text").to_string();
            (next(), next(), next())
        })
        .collect()
}

/// `("long", code, text)` cases: for each sentence of the corpus, it and the sentences after it
/// in the same language until the text has 140 letters, as the first lines of a mail read. The
/// detector sees at most 136 letters and uses whatlang from 120 on, so these cases are where
/// that path is measured (the short cases never reach it).
fn long_cases(cases: &[(String, String, String)]) -> Vec<(String, String, String)> {
    let mut per_language: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (_, code, text) in cases.iter().filter(|(k, _, _)| k == "sentence") {
        per_language.entry(code).or_default().push(text);
    }
    let mut long = Vec::new();
    for (code, sentences) in per_language {
        for start in 0..sentences.len() {
            let mut text = String::new();
            let mut next = start;
            while text.chars().filter(|c| c.is_alphabetic()).count() < 140 {
                text.push_str(sentences[next % sentences.len()]);
                text.push(' ');
                next += 1;
            }
            long.push(("long".to_string(), code.to_string(), text));
        }
    }
    long
}

/// Right, und and total per language, for one kind of case.
#[derive(Default, Clone, Copy)]
struct Tally {
    right: usize,
    und: usize,
    total: usize,
}

impl Tally {
    fn rate(self) -> f64 {
        self.right as f64 / self.total.max(1) as f64
    }
}

fn tally_languages(
    cases: &[(String, String, String)],
    kind: &str,
    detect: &dyn Fn(&str) -> &'static str,
    misses: &mut Vec<String>,
) -> BTreeMap<String, Tally> {
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for (k, code, text) in cases.iter().filter(|(k, _, _)| k == kind) {
        let got = detect(text);
        let t = tallies.entry(code.clone()).or_default();
        t.total += 1;
        if got == code {
            t.right += 1;
        } else {
            if got == "und" {
                t.und += 1;
            }
            misses.push(format!("{k} {code}: {text:?} -> {got}"));
        }
    }
    tallies
}

fn print_tallies(title: &str, tallies: &BTreeMap<String, Tally>) {
    println!("{title}");
    for (code, t) in tallies {
        println!(
            "  {code}: {}/{} right ({:.1} %), {} und",
            t.right,
            t.total,
            100.0 * t.rate(),
            t.und
        );
    }
}

/// The mean of the per-language rates, and the share of `und` over all cases.
fn summary(tallies: &BTreeMap<String, Tally>) -> (f64, f64) {
    let mean = tallies.values().map(|t| t.rate()).sum::<f64>() / tallies.len().max(1) as f64;
    let und = tallies.values().map(|t| t.und).sum::<usize>() as f64
        / tallies.values().map(|t| t.total).sum::<usize>().max(1) as f64;
    (mean, und)
}

#[test]
fn language_goals() {
    let cases = language_cases();
    let mut misses = Vec::new();
    let lingua = |text: &str| detect(text).code;
    let sentences = tally_languages(&cases, "sentence", &lingua, &mut misses);
    let pairs = tally_languages(&cases, "pair", &lingua, &mut misses);
    let none = tally_languages(&cases, "none", &lingua, &mut misses);
    let long = tally_languages(&long_cases(&cases), "long", &lingua, &mut misses);
    let (long_mean, long_und) = summary(&long);
    let (sentence_mean, sentence_und) = summary(&sentences);
    let (pair_mean, pair_und) = summary(&pairs);
    if verbose() {
        print_tallies("sentences (high accuracy)", &sentences);
        print_tallies("word pairs (high accuracy)", &pairs);
        print_tallies("long texts (whatlang, then lingua)", &long);
        println!(
            "long texts: {:.1} % right on average, {:.1} % und",
            100.0 * long_mean,
            100.0 * long_und
        );
        println!(
            "sentences: {:.1} % right on average, {:.1} % und; word pairs: {:.1} % right, {:.1} % und; \
             text without language: {}/{} und; confidence cut-off {MIN_CONFIDENCE}",
            100.0 * sentence_mean,
            100.0 * sentence_und,
            100.0 * pair_mean,
            100.0 * pair_und,
            none.values().map(|t| t.right).sum::<usize>(),
            none.values().map(|t| t.total).sum::<usize>(),
        );
        for miss in &misses {
            println!("  miss: {miss}");
        }
    }
    if std::env::var_os("ACCURACY_COMPARE").is_some() {
        compare_low_accuracy(&cases);
        compare_whatlang(&cases);
    }
    assert!(sentence_mean >= 0.95, "sentences {sentence_mean:.3}");
    assert!(sentence_und <= 0.02, "und on sentences {sentence_und:.3}");
    assert!(pair_mean >= 0.70, "word pairs {pair_mean:.3}");
    assert!(long_mean >= 0.98, "long texts {long_mean:.3}");
    assert!(long_und <= 0.01, "und on long texts {long_und:.3}");
    let none = none.get("und").copied().unwrap_or_default();
    assert_eq!(none.right, none.total, "text without a language is und");
}

/// whatlang (the detector before lingua) on the same corpus: with its reliability cut-off as
/// it was used, and its top guess alone.
fn compare_whatlang(cases: &[(String, String, String)]) {
    // A language outside the 14 is a wrong answer here, not `und`.
    let code = |lang| match whatlang_code(lang) {
        "und" => "other",
        known => known,
    };
    for (title, reliable_only) in [
        ("whatlang with its cut-off", true),
        ("whatlang top guess", false),
    ] {
        let detect = |text: &str| -> &'static str {
            let letters = text.chars().filter(|c| c.is_alphabetic()).count();
            match (letters >= 12).then(|| whatlang::detect(text)).flatten() {
                Some(info) if info.is_reliable() || !reliable_only => code(info.lang()),
                _ => "und",
            }
        };
        let mut misses = Vec::new();
        let (s, su) = summary(&tally_languages(cases, "sentence", &detect, &mut misses));
        let (p, pu) = summary(&tally_languages(cases, "pair", &detect, &mut misses));
        println!(
            "{title}: sentences {:.1} % ({:.1} % und), word pairs {:.1} % ({:.1} % und)",
            100.0 * s,
            100.0 * su,
            100.0 * p,
            100.0 * pu
        );
    }
}

/// lingua's low-accuracy mode on the same corpus, for the record.
fn compare_low_accuracy(cases: &[(String, String, String)]) {
    use lingua::{IsoCode639_1, LanguageDetectorBuilder};
    let codes = [
        IsoCode639_1::EN,
        IsoCode639_1::DE,
        IsoCode639_1::FR,
        IsoCode639_1::ES,
        IsoCode639_1::IT,
        IsoCode639_1::NL,
        IsoCode639_1::PT,
        IsoCode639_1::PL,
        IsoCode639_1::SV,
        IsoCode639_1::DA,
        IsoCode639_1::NB,
        IsoCode639_1::FI,
        IsoCode639_1::CS,
        IsoCode639_1::RU,
    ];
    let low = LanguageDetectorBuilder::from_iso_codes_639_1(&codes)
        .with_low_accuracy_mode()
        .with_preloaded_language_models()
        .build();
    let names: BTreeMap<String, &'static str> = codes
        .iter()
        .map(|c| {
            let s: &'static str = Box::leak(c.to_string().into_boxed_str());
            (c.to_string(), s)
        })
        .collect();
    let detect_low = |text: &str| -> &'static str {
        let best = low
            .compute_language_confidence_values(text)
            .into_iter()
            .next();
        match best {
            Some((language, confidence)) if confidence >= MIN_CONFIDENCE => names
                .get(&language.iso_code_639_1().to_string())
                .copied()
                .unwrap_or("und"),
            _ => "und",
        }
    };
    let mut misses = Vec::new();
    let sentences = tally_languages(cases, "sentence", &detect_low, &mut misses);
    let pairs = tally_languages(cases, "pair", &detect_low, &mut misses);
    print_tallies("sentences (low accuracy)", &sentences);
    print_tallies("word pairs (low accuracy)", &pairs);
    let (s, su) = summary(&sentences);
    let (p, pu) = summary(&pairs);
    println!(
        "low accuracy: sentences {:.1} % ({:.1} % und), word pairs {:.1} % ({:.1} % und)",
        100.0 * s,
        100.0 * su,
        100.0 * p,
        100.0 * pu
    );
}

/// One case of `replies.txt`.
struct ReplyCase {
    kind: String,
    name: String,
    html: bool,
    from: Option<String>,
    body: String,
    reply: String,
    signature: String,
}

fn reply_cases() -> Vec<ReplyCase> {
    let text = fixture("replies.txt");
    let mut cases = Vec::new();
    for block in text.split("\n=== ").skip(1) {
        let (title, rest) = block.split_once('\n').expect("a title line");
        let (kind, name) = title.split_once(": ").expect("kind: name");
        let mut case = ReplyCase {
            kind: kind.to_string(),
            name: name.to_string(),
            html: false,
            from: None,
            body: String::new(),
            reply: String::new(),
            signature: String::new(),
        };
        let mut section: Option<&str> = None;
        let mut buf: Vec<&str> = Vec::new();
        let finish = |section: Option<&str>, buf: &mut Vec<&str>, case: &mut ReplyCase| {
            let value = buf.join("\n").trim_end_matches('\n').to_string();
            match section {
                Some("body") => case.body = value,
                Some("reply") => case.reply = value,
                Some("signature") => case.signature = value,
                _ => {}
            }
            buf.clear();
        };
        for line in rest.lines() {
            if let Some(name) = line.strip_prefix("--- ") {
                finish(section, &mut buf, &mut case);
                section = Some(match name {
                    "body" => "body",
                    "reply" => "reply",
                    "signature" => "signature",
                    other => panic!("unknown section {other}"),
                });
            } else if section.is_none() {
                if let Some(t) = line.strip_prefix("type: ") {
                    case.html = t.trim() == "html";
                } else if let Some(f) = line.strip_prefix("from: ") {
                    case.from = Some(f.trim().to_string());
                }
            } else {
                buf.push(line);
            }
        }
        finish(section, &mut buf, &mut case);
        cases.push(case);
    }
    cases
}

/// Lines without trailing spaces (the parser trims them, the corpus keeps `-- `).
fn normalized(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[test]
fn reply_and_signature_goals() {
    let cases = reply_cases();
    assert!(cases.len() >= 60, "the corpus has {} cases", cases.len());
    let mut kinds: BTreeMap<String, Tally> = BTreeMap::new();
    let mut signatures = Tally::default();
    let mut false_signatures = 0;
    let mut failures = Vec::new();
    for case in &cases {
        let parsed = parse(&mail(&case.body, case.html, case.from.as_deref()));
        let (reply, signature) = (normalized(&parsed.reply), normalized(&parsed.signature));
        let (want_reply, want_signature) = (normalized(&case.reply), normalized(&case.signature));
        // Nothing of the quoted part may leak into reply or signature.
        let leaks = parsed
            .quoted
            .lines()
            .map(str::trim)
            .filter(|l| l.chars().count() > 20)
            .any(|l| reply.contains(l) || signature.contains(l));
        let t = kinds.entry(case.kind.clone()).or_default();
        t.total += 1;
        let reply_right = reply == want_reply && !leaks;
        if reply_right {
            t.right += 1;
        }
        if !want_signature.is_empty() {
            signatures.total += 1;
            if signature == want_signature {
                signatures.right += 1;
            }
        } else if !signature.is_empty() {
            false_signatures += 1;
        }
        if !reply_right || signature != want_signature {
            failures.push(format!(
                "{}: {}\n  reply: {reply:?}\n  want:  {want_reply:?}\n  signature: {signature:?}\n  want:      {want_signature:?}\n  quoted: {:?}",
                case.kind, case.name, parsed.quoted
            ));
        }
    }
    if verbose() {
        println!("reply extraction, right per kind ({} cases):", cases.len());
        for (kind, t) in &kinds {
            println!(
                "  {kind:<22} {}/{} ({:.0} %)",
                t.right,
                t.total,
                100.0 * t.rate()
            );
        }
        println!(
            "signatures: {}/{} found exactly ({:.0} %), {false_signatures} taken where there is none",
            signatures.right,
            signatures.total,
            100.0 * signatures.rate()
        );
        for failure in &failures {
            println!("FAIL {failure}");
        }
    }
    for (kind, t) in &kinds {
        assert!(t.rate() >= 0.9, "{kind}: {}/{} right", t.right, t.total);
    }
    assert!(
        signatures.rate() >= 0.8,
        "signatures {}/{}",
        signatures.right,
        signatures.total
    );
    assert_eq!(false_signatures, 0, "signatures taken where there is none");
}

fn mail(body: &str, html: bool, from: Option<&str>) -> EmailInput {
    let mut value =
        json!({"subject": "Re: x", "body": body, "body_type": if html { "html" } else { "text" }});
    if let Some(name) = from {
        value["from"] = json!({"name": name, "address": "sender@example.com"});
    }
    EmailInput::from_json(&value).expect("valid mail")
}

/// Out-of-office notices from the body alone (the subject says nothing), in the 13 languages,
/// and mails by people that merely mention an absence.
#[test]
fn auto_reply_from_the_body() {
    let notices = [
        "I am currently out of the office, returning on Monday 17 March. For urgent matters please contact sales@example.com.",
        "Thank you for your email. I'm on annual leave until 21 March with limited access to email.",
        "Ich bin bis einschließlich 14.03. nicht im Büro. In dringenden Fällen wenden Sie sich bitte an info@example.de.",
        "Je suis absente du bureau jusqu'au 14 mars. En cas d'urgence, veuillez contacter mon collègue.",
        "Estaré fuera de la oficina hasta el 14 de marzo. En caso de urgencia, póngase en contacto con ventas@example.es.",
        "Sarò assente fino al 14 marzo. Per urgenze contattare ufficio@example.it.",
        "Ik ben tot en met 14 maart afwezig. Voor dringende zaken kunt u contact opnemen met info@example.nl.",
        "Estarei ausente até 14 de março. Em caso de urgência, contacte geral@example.pt.",
        "Jestem na urlopie do 14 marca. W pilnych sprawach proszę o kontakt z biuro@example.pl.",
        "Jag är på semester till och med 14 mars. Kontakta info@example.se vid brådskande ärenden.",
        "Jeg er på ferie og tilbage den 14. marts. Kontakt venligst info@example.dk.",
        "Jeg er på ferie til og med 14. mars. Kontakt info@example.no ved behov.",
        "Olen lomalla 14.3. asti. Kiireellisissä asioissa ota yhteyttä info@example.fi.",
        "Jsem na dovolené do pátku 14. 3. V naléhavých případech kontaktujte info@example.cz.",
        "This is an automatic reply: your message has been received.",
    ];
    let people = [
        "I am out of the office tomorrow, can we meet on Monday instead?",
        "Hi Tom, are you back from your holiday? Let's catch up.",
        "Ich bin morgen im Homeoffice, ruf mich einfach an.",
        "Can you send me the invoice until Friday?",
        "We are on vacation next week in Spain, any restaurant tips?",
        "Je serai en réunion tout l'après-midi.",
        "Please contact the supplier about the delayed order.",
        "Sounds good, thanks!",
    ];
    let classify_body = |body: &str| {
        super::classify(
            &EmailInput::from_json(&json!({"subject": "Re: offer", "body": body}))
                .expect("valid mail"),
        )
    };
    let mut wrong = Vec::new();
    for body in notices {
        let c = classify_body(body);
        let fired = c.signals.iter().any(|s| s.rule == "body:out-of-office");
        if !(c.is_auto_reply && fired) {
            wrong.push(format!("missed: {body}"));
        }
    }
    for body in people {
        if classify_body(body).is_auto_reply {
            wrong.push(format!("taken for a notice: {body}"));
        }
    }
    if verbose() {
        println!(
            "auto-reply from the body: {}/{} notices found, {} people's mails taken",
            notices.len() - wrong.iter().filter(|w| w.starts_with("missed")).count(),
            notices.len(),
            wrong.iter().filter(|w| w.starts_with("taken")).count()
        );
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Newsletters by their links and markers, without list headers.
#[test]
fn newsletter_from_the_body() {
    let html = "<p>View this email in your browser</p><p>Spring sale: 20 % off.</p>\
        <p><a href=\"https://news.example.com/unsubscribe?u=1\">Unsubscribe</a></p>";
    let c = super::classify(
        &EmailInput::from_json(
            &json!({"subject": "Spring sale", "body": html, "body_type": "html"}),
        )
        .expect("valid mail"),
    );
    assert!(c.is_newsletter);
    let rules: Vec<&str> = c.signals.iter().map(|s| s.rule.as_str()).collect();
    assert!(rules.contains(&"body:unsubscribe-link"), "{rules:?}");
    assert!(rules.contains(&"body:bulk-marker"), "{rules:?}");
    let c = super::classify(
        &EmailInput::from_json(&json!({
            "subject": "Weekly digest", "body": "Your weekly digest.",
            "headers": {"Feedback-ID": "1.eu-west-1.abc:AmazonSES"}
        }))
        .expect("valid mail"),
    );
    assert_eq!(
        c.signals
            .first()
            .map(|s| (s.rule.as_str(), s.effect.as_str())),
        Some(("header:bulk-sender", "is_newsletter"))
    );
    let person = super::classify(
        &EmailInput::from_json(&json!({"subject": "Lunch", "body": "Are you free for lunch on Friday? See https://example.com/menu"}))
            .expect("valid mail"),
    );
    assert!(!person.is_newsletter);
}
