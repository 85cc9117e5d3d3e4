//! Auto-replies and newsletters: mail that no person wrote to this reader.
//!
//! Headers are the surest sign; the subject and the body's own wording catch what clients send
//! without them. Why the body rule needs two things: "I am out of the office tomorrow, can we
//! meet on Monday?" is a person writing. An out-of-office notice says the writer is away *and*
//! when they are back or whom to contact instead (or says outright that it is an automatic
//! reply), so `body:out-of-office` fires only on an absence phrase with a return or contact
//! phrase in the first [`AUTO_REPLY_SCAN`] bytes of the new text, in the 13 languages.
//!
//! Newsletters: list headers (`List-Unsubscribe`, `List-Id`, `Precedence: bulk`), bulk
//! senders' headers (`Feedback-ID`, campaign ids), an unsubscribe link or word, and the
//! markers bulk mail carries ("View this email in your browser", "You are receiving this
//! email because…", "manage your preferences"). Each one found is a signal.

use std::sync::LazyLock;

use regex::Regex;

use super::folded::{rule, Folded};
use super::{EmailInput, Signal};

static AUTO_REPLY_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    rule(
        r"^\s*auto(?:matic)?(?:[- ]?reply)?\s*:|(?-u:\b)(?:automatic reply|auto-?reply|out of (?:the )?office|automatische antwort|abwesenheitsnotiz|réponse automatique|respuesta automática)(?-u:\b)",
    )
});

/// How much of the new text is read for out-of-office wording: a notice says it at once.
const AUTO_REPLY_SCAN: usize = 1_500;

/// "I am away / out of the office / on leave" in the 13 languages.
static ABSENCE: LazyLock<Regex> = LazyLock::new(|| {
    rule(
        r"out of (?:the )?office|(?:i am|i'm|i will be|i'll be)\s+(?:currently\s+)?(?:away|out|on (?:annual |parental |sick )?leave|on vacation|on holiday|travell?ing|off)|currently (?:away|out of|on leave|on vacation|on holiday|unavailable)|nicht im büro|abwesend|außer haus|im urlaub|urlaubsbedingt|absente?s? (?:du bureau|jusqu)|je suis absente?|en congés?|en vacances|fuera de la oficina|estaré fuera|estoy ausente|de vacaciones|fuori (?:ufficio|sede)|sarò assente|in ferie|niet op kantoor|afwezig|met vakantie|fora do escritório|estarei ausente|de férias|poza biurem|na urlopie|nieobecn[ya]|inte på kontoret|på semester|tjänstledig|frånvarande|ikke på kontoret|på ferie|fraværende|poissa toimistolta|lomalla|mimo kancelář|na dovolené|nepřítomn[ýá]|не в офисе|в отпуске|отсутствую",
    )
});
/// When the writer is back, or whom to write to instead.
static RETURN_OR_CONTACT: LazyLock<Regex> = LazyLock::new(|| {
    rule(
        r"(?:^|[^\p{L}])(?:until|till|returning|return on|back (?:on|in the office)|will be back|limited access|no access to (?:my )?e-?mail|in urgent cases|for urgent matters|please contact|bis (?:zum|einschließlich)?|zurück|wieder (?:im büro|erreichbar|da)|in dringenden fällen|wenden sie sich|jusqu|de retour|en cas d'urgence|veuillez contacter|hasta el|regresaré|vuelvo el|en caso de urgencia|póngase en contacto|fino al|rientrerò|per urgenze|contattare|tot en met|tot |weer aanwezig|ben ik (?:weer|terug)|neem contact|até |retornarei|regresso|em caso de urgência|do (?:dnia|poniedziałku|wtorku|środy|czwartku|piątku|soboty|niedzieli|[0-9])|wracam|w pilnych sprawach|proszę o kontakt|till och med|tillbaka|kontakta|til og med|tilbake|tilbage|kontakt|asti|palaan|kiireellisissä|do (?:pondělí|úterý|středy|čtvrtka|pátku|soboty|neděle)|vrátím|v naléhavých|kontaktujte|до |вернусь|по срочным)",
    )
});
/// Saying outright that the mail is an automatic reply.
static AUTOMATIC_REPLY_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    rule(
        r"this is an automatic (?:reply|response|message)|this (?:e-?mail|message) (?:is|was) (?:sent |generated )?automatically|automatische (?:antwort|abwesenheitsnotiz)|dies ist eine automatische|réponse automatique|ceci est une réponse automatique|respuesta automática|risposta automatica|automatisch antwoord|resposta automática|automatyczna odpowiedź|automatiskt svar|automatisk svar|automaattinen vastaus|automatická odpověď|автоматический ответ",
    )
});

/// The out-of-office wording of the new text, if it reads as a notice.
fn out_of_office(own_text: &Folded<'_>) -> Option<String> {
    let scan = own_text.head(AUTO_REPLY_SCAN);
    if let Some(m) = scan.find(&AUTOMATIC_REPLY_TEXT) {
        return Some(m.to_string());
    }
    let absence = scan.find(&ABSENCE)?;
    let back = scan.find(&RETURN_OR_CONTACT)?;
    Some(format!("{} … {}", absence, back.trim()))
}

pub(super) fn auto_reply_signals(
    input: &EmailInput,
    own_text: &Folded<'_>,
    signals: &mut Vec<Signal>,
) -> bool {
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
    if let Some(m) = Folded::new(&input.subject).find(&AUTO_REPLY_SUBJECT) {
        signals.push(Signal::new("subject:auto-reply", "is_auto_reply", m.trim()));
    }
    if let Some(evidence) = out_of_office(own_text) {
        signals.push(Signal::new("body:out-of-office", "is_auto_reply", evidence));
    }
    signals.len() > before
}

/// Headers that bulk senders (mailing services, campaign tools) add and people's mail does not.
const BULK_HEADERS: [&str; 6] = [
    "Feedback-ID",
    "X-Campaign",
    "X-Campaign-Id",
    "X-CampaignID",
    "X-Mailgun-Campaign-Id",
    "X-MC-User",
];
/// An unsubscribe or preferences link.
static UNSUBSCRIBE_LINK: LazyLock<Regex> = LazyLock::new(|| {
    rule(
        r"unsub|opt-?out|optout|abmeld|abbestell|desinscri|désinscri|desabonn|désabonn|baja|afmeld|uitschrijv|cancelar|wypisz|avregistr|avmeld|manage[-_]?preferences|email[-_]?preferences",
    )
});
/// What bulk mail says and a person's mail does not.
static BULK_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    rule(
        r"view (?:this (?:e-?mail|message) )?(?:in|on) (?:your |a )?(?:web )?browser|view (?:it )?online|you (?:are|were) receiving this (?:e-?mail|message|newsletter|because)|you received this (?:e-?mail|message) because|manage (?:your )?(?:e-?mail |subscription )?preferences|update your (?:e-?mail )?preferences|im browser (?:ansehen|anzeigen|öffnen)|diese e-mail im browser|afficher (?:dans|sur) (?:le|votre) navigateur|ver (?:en|en el) navegador|visualizza nel browser|bekijk (?:deze e-?mail )?in (?:je|uw) browser|zobacz w przeglądarce|visa i webbläsaren|vis i browser",
    )
});
static UNSUBSCRIBE: LazyLock<Regex> = LazyLock::new(|| {
    rule(
        r"(?-u:\b)(?:unsubscribe|opt[- ]out|abmelden|abbestellen|newsletter abbestellen|se désabonner|désinscription|darse de baja)(?-u:\b)",
    )
});

pub(super) fn newsletter_signals(
    input: &EmailInput,
    own_text: &Folded<'_>,
    links: &[String],
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
    for name in BULK_HEADERS {
        if let Some(value) = input.header(name) {
            signals.push(Signal::new(
                "header:bulk-sender",
                "is_newsletter",
                format!("{name}: {value}"),
            ));
            break;
        }
    }
    if let Some(m) = own_text.find(&UNSUBSCRIBE) {
        signals.push(Signal::new("body:unsubscribe", "is_newsletter", m));
    }
    if let Some(link) = links
        .iter()
        .find(|l| UNSUBSCRIBE_LINK.is_match(&l.to_ascii_lowercase()))
    {
        signals.push(Signal::new(
            "body:unsubscribe-link",
            "is_newsletter",
            link.as_str(),
        ));
    }
    if let Some(m) = own_text.find(&BULK_MARKER) {
        signals.push(Signal::new("body:bulk-marker", "is_newsletter", m));
    }
    signals.len() > before
}
