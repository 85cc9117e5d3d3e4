//! The signature at the end of the sender's new text.
//!
//! Why these clues, in this order (after mailgun's talon, which showed that the sender's name
//! is the strongest clue, and GitHub's email_reply_parser, which reads from the bottom up):
//! 1. a delimiter line: `-- ` (RFC 3676), or `--`/`---` with a short block under it;
//! 2. the last whole-line sign-off ("Best regards,", "Thanks in advance,", "Pozdrawiam",
//!    "Med vänlig hälsning", …) near the end, with only a short block under it;
//! 3. a short block that starts with the sender's own name (from `from`), or a "-Name" line:
//!    name, title, company, phone without any sign-off word;
//! 4. a mobile client's line ("Sent from my iPhone", "Enviado desde mi …"), when it is short
//!    and ends the text: a sentence that merely begins "Sent from my …" is not one.
//!
//! Only the last segment of new text is looked at, so a quoted sender's sign-off is never
//! taken; a sign-off on the first line of a mail is the mail ("Thanks!"), not a signature.

use std::sync::LazyLock;

use regex::Regex;

/// A whole-line sign-off that starts a signature.
static SIGN_OFF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(?:(?:best|kind|warm|warmest|many|with best|with kind|kindest|best personal)\s+(?:regards|wishes)|regards|best|cheers|thanks|thank you|thanks a lot|thanks so much|thank you so much|thanks in advance|thank you in advance|many thanks|thanks again|thx|ty|sincerely|yours sincerely|sincerely yours|yours truly|yours faithfully|respectfully|all the best|all best|talk soon|take care|mit freundlichen grü(?:ß|ss)en|freundliche grü(?:ß|ss)e|viele grü(?:ß|ss)e|beste grü(?:ß|ss)e|liebe grü(?:ß|ss)e|herzliche grü(?:ß|ss)e|schöne grü(?:ß|ss)e|gru(?:ß|ss)|grü(?:ß|ss)e|lg|vg|mfg|danke|vielen dank|cordialement|bien cordialement|bien à vous|salutations|amitiés|merci|merci beaucoup|saludos|un saludo|saludos cordiales|atentamente|un abrazo|gracias|muchas gracias|cordiali saluti|distinti saluti|saluti|grazie|met vriendelijke groet(?:en)?|vriendelijke groet(?:en)?|hartelijke groet(?:en)?|groeten|groet|bedankt|cumprimentos|atenciosamente|abraços|obrigado|obrigada|pozdrawiam|z poważaniem|z pozdrowieniami|dziękuję|med vänlig hälsning|vänliga hälsningar|hälsningar|mvh|med venlig hilsen|venlig hilsen|vennlig hilsen|med vennlig hilsen|hilsen|tak|takk|ystävällisin terveisin|terveisin|kiitos|s pozdravem|děkuji|с уважением|спасибо)\s*[,.!]*$",
    )
    .expect("valid regex")
});
/// Mobile clients' one-line signatures, in the languages of the mail.
static MOBILE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(?:sent from (?:my )?\S.*|sent wirelessly from my \S.*|sent via \S.*|get outlook for \S.*|von meinem \S.*gesendet|gesendet von (?:meinem )?\S.*|envoyé de mon \S.*|envoyé depuis mon \S.*|enviado desde mi \S.*|enviado do meu \S.*|enviado de meu \S.*|inviato da(?:l mio)? \S.*|verzonden (?:vanaf|met) (?:mijn )?\S.*|wysłane z (?:mojego )?\S.*|skickat från min \S.*|sendt fra min \S.*|lähetetty \S+(?:sta|stä|lta|ltä)|odesláno z \S.*|отправлено с \S.*)$",
    )
    .expect("valid regex")
});
/// "-Anna", "– Anna Berg", "—AB": a dash and a name as the last line.
static DASH_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[-–—~]\s?\p{Lu}[\p{L}.'’]*(?:\s\p{Lu}[\p{L}.'’]*){0,2}$").expect("valid regex")
});

/// How many lines a sign-off may stand above the end of the new text.
const SIGN_OFF_WINDOW: usize = 10;
/// The most non-blank lines a signature block without a sign-off word may have.
const NAME_BLOCK_LINES: usize = 7;
/// The longest line of a signature block without a sign-off word.
const BLOCK_LINE_BYTES: usize = 80;
/// The most words of a mobile client's line.
const MOBILE_WORDS: usize = 8;

/// The first line of the signature in the last segment of new text, if any. `text_before`
/// says whether new text stands before the segment (then a sign-off on its first line is a
/// signature too).
pub(super) fn find_signature_start(
    lines: &[&str],
    sender: Option<&str>,
    text_before: bool,
) -> Option<usize> {
    let first_text = lines.iter().position(|l| !l.trim().is_empty())?;
    let allowed = |i: usize| i > first_text || text_before;
    let non_blank: Vec<usize> = (0..lines.len())
        .filter(|&i| !lines[i].trim().is_empty())
        .collect();
    let tail = |from: usize| non_blank.iter().filter(|&&i| i > from).count();

    // 1. Delimiters.
    if let Some(i) = lines.iter().position(|l| l.trim_end() == "--") {
        if allowed(i) {
            return Some(i);
        }
    }
    if let Some(&i) = non_blank
        .iter()
        .rev()
        .take(NAME_BLOCK_LINES + 1)
        .find(|&&i| matches!(lines[i].trim(), "---" | "—" | "–" | "___" | "__"))
    {
        if allowed(i) && tail(i) >= 1 && short_block(lines, i + 1) {
            return Some(i);
        }
    }

    // 2. The last sign-off near the end, with a short block under it.
    for &i in non_blank.iter().rev().take(SIGN_OFF_WINDOW) {
        let t = lines[i].trim();
        if SIGN_OFF.is_match(t) && tail(i) <= NAME_BLOCK_LINES {
            if !allowed(i) {
                return None;
            }
            // A sign-off ending a paragraph ("…, thanks!") is not whole-line: checked by the
            // regex; one followed by a long paragraph is text ("Thanks. Now the next point…").
            if short_block(lines, i + 1) {
                return Some(i.min(mobile_start(lines, &non_blank).unwrap_or(i)));
            }
        }
    }

    // 3. The sender's name or a "-Name" line, with a short block under it.
    let names = sender.map(name_forms).unwrap_or_default();
    for &i in non_blank.iter().rev().take(NAME_BLOCK_LINES) {
        let t = lines[i].trim();
        let is_name = names.iter().any(|n| {
            let bare = t.trim_start_matches(['-', '–', '—', '~', ' ']);
            bare.eq_ignore_ascii_case(n)
        }) || DASH_NAME.is_match(t);
        if is_name && allowed(i) && short_block(lines, i + 1) {
            return Some(i);
        }
    }

    // 4. A mobile client's line ending the text.
    mobile_start(lines, &non_blank).filter(|&i| allowed(i))
}

/// The mobile line among the last two non-blank lines, if one is there.
fn mobile_start(lines: &[&str], non_blank: &[usize]) -> Option<usize> {
    non_blank.iter().rev().take(2).copied().find(|&i| {
        let t = lines[i].trim();
        t.split_whitespace().count() <= MOBILE_WORDS
            && !t.trim_end_matches('.').contains(['.', ',', '?', '!', ';'])
            && MOBILE.is_match(t)
    })
}

/// Whether the lines from `from` on are a signature block: few, short lines.
fn short_block(lines: &[&str], from: usize) -> bool {
    let block: Vec<&str> = lines[from.min(lines.len())..]
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    block.len() <= NAME_BLOCK_LINES
        && block
            .iter()
            .all(|l| l.len() <= BLOCK_LINE_BYTES && !ends_sentence(l) || is_contact(l))
}

/// A line that reads like a sentence of text rather than a signature line.
fn ends_sentence(line: &str) -> bool {
    line.split_whitespace().count() > 6 && line.ends_with(['.', '?', '!'])
}

/// A phone, address or link line, whatever its length.
fn is_contact(line: &str) -> bool {
    line.contains('@')
        || line.contains("://")
        || line.bytes().filter(u8::is_ascii_digit).count() >= 6
}

/// The forms of the sender's display name a signature starts with: the whole name, and the
/// first name ("Berg, Anna" is read as "Anna Berg").
fn name_forms(sender: &str) -> Vec<String> {
    let sender = sender.trim().trim_matches(['"', '\'']);
    let name = match sender.split_once(',') {
        Some((last, first)) => format!("{} {}", first.trim(), last.trim()),
        None => sender.to_string(),
    };
    let mut forms = vec![name.clone()];
    if let Some(first) = name.split_whitespace().next() {
        if first.chars().count() >= 2 && first != name {
            forms.push(first.to_string());
        }
    }
    forms.retain(|f| !f.is_empty() && !f.contains('@'));
    forms
}
