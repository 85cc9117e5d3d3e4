//! Reply, quoted and signature: which lines of a mail are the sender's new text and which are
//! the earlier messages it quotes.
//!
//! Why segments rather than "everything after the first quote marker": real mail puts new text
//! below quotes (bottom posts) and between them (inline replies), and clients mark the earlier
//! message in many ways. So every line is classified first (text, a `>` quote, the start of an
//! earlier message: an attribution, a header block, a separator; or a forward), and the lines
//! are then walked as segments:
//! - a `>` run is quoted, with the attribution just above it; the text after it is new again;
//! - an attribution, header block or separator with no `>` lines under it starts an unmarked
//!   earlier message, which runs to the end (Outlook's and mobile clients' top posts);
//! - a forwarded message is content, not a quote: it stays in the reply, header and all;
//! - a mail that is nothing but one quote with no attribution (a whole message inside one
//!   `<blockquote>`) is the sender's text, unquoted.
//!
//! Attributions are recognised as a sentence ending in a "wrote" verb of one of the languages
//! (also wrapped over two or three lines, also glued to the end of a text line), as a dated
//! splitter ending in an address (`2025-03-14 10:28 GMT+01:00 Anna <a@x>:`), or as
//! `---- Anna wrote ----`. The signature is looked for in the last segment of new text only
//! ([`super::signature`]), so a quoted sender's sign-off is never taken.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use super::signature::find_signature_start;

/// The three parts of a body.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Parts {
    pub reply: String,
    pub quoted: String,
    pub signature: String,
}

/// The "wrote" verbs of the attributions clients write, each ending a sentence before `:`
/// (possibly with the sender after it: "skrev Anna <a@x>:", "schrieb Anna:").
const WROTE: &str = r"wrote|writes|schrieb|a\s+écrit|escribió|escreveu|ha\s+scritto|schreef|het\s+volgende\s+geschreven|geschreven|skrev|napisał|napisała|napisal|napisala|pisze|написал|написала|пишет|đã\s+viết|kirjoitti|napsal|napsala|napísal";

/// An attribution: a sentence ending in a "wrote" verb and `:`; a dated splitter ending in an
/// address; `---- … wrote ----`; GroupWise's `>>> Anna 14.03.2025 10:00 >>>`.
static ATTRIBUTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?ix)^(?:
            .{{0,250}}?(?:^|[\s>)\],])(?:{WROTE})(?:\s[^:]{{0,120}})?\s?:
          | (?:[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}|[0-9]{{1,2}}[./][0-9]{{1,2}}[./][0-9]{{2,4}}|\w{{2,4}}\.?,?\s+[0-9]).{{0,200}}[<(\[][^<>()\s]+@[^<>()\s]+[>)\]]\s?:
          | -{{2,}}\s*.{{1,250}}\s(?:wrote|schrieb|a\s+écrit|escribió|skrev)\s*-{{2,}}
          | >>>\s.{{1,250}}[0-9].{{0,100}}>>>
        )$"
    ))
    .expect("valid regex")
});
/// Text glued before an attribution on the same line: "Sounds good. On Mon, … wrote:".
static GLUED_ATTRIBUTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[.!?)]\s+(?:on|am|le|el|op|w dniu|den|il|em|dne)\s").expect("valid regex")
});
/// A line of an e-mail header block, in the languages Outlook and webmail write them.
static HEADER_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\**(from|von|de|van|fra|från|от|od|da|mittente|remitente|lähettäjä|sender|sent|date|datum|gesendet|envoyé|enviado|verzonden|sendt|skickat|отправлено|дата|wysłano|data|lähetetty|odesláno|inviato|to|an|à|a|para|aan|til|till|кому|do|komu|vastaanottaja|cc|bcc|kopie|subject|betreff|objet|asunto|onderwerp|emne|ämne|тема|temat|oggetto|assunto|aihe|předmět|envoyé le)\s?:\**\s*\S",
    )
    .expect("valid regex")
});
/// The header names that say who sent the earlier message.
const FROM_NAMES: [&str; 13] = [
    "from",
    "von",
    "de",
    "van",
    "fra",
    "från",
    "от",
    "od",
    "da",
    "mittente",
    "remitente",
    "lähettäjä",
    "sender",
];
/// "-----Original Message-----" and its translations: an earlier message follows.
static SEPARATOR_ORIGINAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)-{2,}\s*(?:original message|original-nachricht|ursprüngliche nachricht|antwort[- ]nachricht|message d'origine|mensaje original|messaggio originale|oorspronkelijk bericht|oprindelig meddelelse|ursprungligt meddelande|opprinnelig melding|alkuperäinen viesti|původní zpráva|wiadomość oryginalna|oryginalna wiadomość|исходное сообщение|mensagem original|original)\s*-{2,}")
        .expect("valid regex")
});
/// A forwarded message starts: it is content, not a quote.
static FORWARD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:-{2,}\s*(?:forwarded message|weitergeleitete nachricht|message transféré|mensaje reenviado|messaggio inoltrato|doorgestuurd bericht|videresendt meddelelse|vidarebefordrat meddelande|videresendt melding|välitetty viesti|přeposlaná zpráva|wiadomość przekazana|пересылаемое сообщение|mensagem encaminhada)\s*-{2,}|begin forwarded message\s?:|anfang der weitergeleiteten nachricht\s?:|début du message réexpédié\s?:|inizio messaggio inoltrato\s?:)$")
        .expect("valid regex")
});
/// A bare rule line that may stand above a header block (Outlook writes 32 underscores).
static SEPARATOR_RULE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[-_=─—]{5,}$").expect("valid regex"));

/// The longest line taken for an attribution or a quote header.
const MAX_ATTRIBUTION_BYTES: usize = 300;

/// What a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    Blank,
    Text,
    Quote,
}

fn line_kind(line: &str) -> Line {
    let t = line.trim();
    if t.is_empty() {
        Line::Blank
    } else if t.starts_with('>') && !(t.starts_with(">>") && t.ends_with("<<")) {
        // ">>> Big news <<<" is a heading, not a quote.
        Line::Quote
    } else {
        Line::Text
    }
}

/// Who wrote a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    New,
    Quoted,
}

/// Splits normalized text into reply, quoted and signature. `sender` is the display name of
/// the mail's sender, the best clue to a signature without a sign-off.
pub(super) fn split(text: &str, sender: Option<&str>) -> Parts {
    split_lines(text, sender, true)
}

/// [`split`]; `unquote_whole` says whether a mail that is one quote and nothing else is read
/// as the sender's text (once: the unquoted text is not unquoted again).
fn split_lines(text: &str, sender: Option<&str>, unquote_whole: bool) -> Parts {
    let lines = lines(text);
    let kinds: Vec<Line> = lines.iter().map(|l| line_kind(l)).collect();
    let mut segments: Vec<(Role, Range<usize>)> = Vec::new();
    let push =
        |segments: &mut Vec<(Role, Range<usize>)>, role: Role, range: Range<usize>| match segments
            .last_mut()
        {
            Some((last, r)) if *last == role && r.end == range.start => r.end = range.end,
            _ => segments.push((role, range)),
        };
    let mut saw_starter = false;
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        if kinds[i] == Line::Blank {
            let role = segments.last().map_or(Role::New, |(role, _)| *role);
            push(&mut segments, role, i..i + 1);
            i += 1;
            continue;
        }
        if t.len() <= MAX_ATTRIBUTION_BYTES
            && (t.starts_with('-') || t.ends_with(':'))
            && FORWARD.is_match(t)
        {
            // The forwarded message is what the mail is about.
            push(&mut segments, Role::New, i..lines.len());
            break;
        }
        if kinds[i] == Line::Quote && !is_attribution(t) {
            let end = quote_run_end(&kinds, i);
            push(&mut segments, Role::Quoted, i..end);
            i = end;
            continue;
        }
        if let Some(len) = attribution_len(&lines, &kinds, i) {
            saw_starter = true;
            let next = (i + len..lines.len()).find(|&j| kinds[j] != Line::Blank);
            match next {
                Some(j) if kinds[j] == Line::Quote => {
                    let end = quote_run_end(&kinds, j);
                    push(&mut segments, Role::Quoted, i..end);
                    i = end;
                }
                _ => {
                    push(&mut segments, Role::Quoted, i..lines.len());
                    break;
                }
            }
            continue;
        }
        if let Some(start) = earlier_message_start(&lines, i) {
            saw_starter = true;
            // A rule line above the block belongs to it, not to the text before.
            truncate(&mut segments, start);
            segments.push((Role::Quoted, start..lines.len()));
            break;
        }
        push(&mut segments, Role::New, i..i + 1);
        i += 1;
    }

    let has_new_text = segments
        .iter()
        .any(|(role, r)| *role == Role::New && r.clone().any(|j| kinds[j] != Line::Blank));
    if !has_new_text && !saw_starter && unquote_whole {
        // One quote and nothing else: the whole message inside one blockquote.
        return whole_quote(&lines, sender);
    }

    // The signature ends the sender's last segment of new text.
    let last_new = segments
        .iter()
        .rposition(|(role, r)| *role == Role::New && r.clone().any(|j| kinds[j] != Line::Blank));
    let mut reply = Vec::new();
    let mut quoted = Vec::new();
    let mut signature = String::new();
    for (n, (role, range)) in segments.iter().enumerate() {
        let part = &lines[range.clone()];
        match role {
            Role::Quoted => quoted.push(join_trimmed(text, part)),
            Role::New if Some(n) == last_new => {
                let text_before = reply.iter().any(|r: &String| !r.is_empty());
                let cut = find_signature_start(part, sender, text_before).unwrap_or(part.len());
                reply.push(join_trimmed(text, &part[..cut]));
                signature = join_trimmed(text, &part[cut..]);
            }
            Role::New => reply.push(join_trimmed(text, part)),
        }
    }
    Parts {
        reply: join_parts(reply),
        quoted: join_parts(quoted),
        signature,
    }
}

/// Drops the segments' lines from `start` on.
fn truncate(segments: &mut Vec<(Role, Range<usize>)>, start: usize) {
    while let Some((_, r)) = segments.last_mut() {
        if r.start >= start {
            segments.pop();
        } else {
            r.end = r.end.min(start);
            break;
        }
    }
}

/// The lines of `text`, as slices of it. A line that holds text and then the start of an
/// earlier message ("Sounds good. On Mon, … wrote:", "Sent from Samsung Mobile-------- Original
/// message --------") is cut in two there.
fn lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::with_capacity(text.len() / 32);
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', text.as_bytes()).chain(std::iter::once(text.len()));
    for end in ends {
        let line = &text[start..end];
        start = end + 1;
        match glued_split(line) {
            Some(at) => {
                lines.push(&line[..at]);
                lines.push(&line[at..]);
            }
            None => lines.push(line),
        }
    }
    lines
}

/// Where an earlier message starts inside a line after some text, if it does.
fn glued_split(line: &str) -> Option<usize> {
    if line.len() > 2 * MAX_ATTRIBUTION_BYTES {
        return None;
    }
    let t = line.trim_end();
    if t.contains("--") {
        if let Some(m) = SEPARATOR_ORIGINAL.find(t) {
            if m.start() > 0 && !t[..m.start()].trim().is_empty() {
                return Some(m.start());
            }
        }
    }
    if t.ends_with(':') && t.bytes().any(|b| b.is_ascii_digit()) {
        for m in GLUED_ATTRIBUTION.find_iter(t) {
            // The attribution starts after the sentence end and the space.
            let at = m.start() + t[m.start()..].find(char::is_whitespace)?;
            let at = at + t[at..].len() - t[at..].trim_start().len();
            if ATTRIBUTION.is_match(&t[at..]) {
                return Some(at);
            }
        }
    }
    None
}

/// Whether a (trimmed) line is an attribution by itself.
fn is_attribution(t: &str) -> bool {
    t.len() <= MAX_ATTRIBUTION_BYTES
        && (t.ends_with(':') || t.ends_with('-') || t.ends_with('>'))
        && ATTRIBUTION.is_match(t)
}

/// How many lines (1 to 3) the attribution starting at `i` takes, if one does. An attribution
/// needs a date, a time or an address in it, or a quote right under it.
fn attribution_len(lines: &[&str], kinds: &[Line], i: usize) -> Option<usize> {
    let first = lines[i].trim();
    if first.len() > MAX_ATTRIBUTION_BYTES {
        return None;
    }
    // Most lines are text that ends no attribution: test the ends of the three candidate
    // joins before building any.
    let ends_like =
        (i..lines.len().min(i + 3)).any(|j| lines[j].trim_end().ends_with([':', '-', '>']));
    if !ends_like {
        return None;
    }
    let mut joined = String::new();
    for k in 1..=3 {
        let j = i + k - 1;
        if j >= lines.len() || kinds[j] == Line::Blank || (k > 1 && kinds[j] == Line::Quote) {
            return None;
        }
        // A line that ends a sentence is text, not the first part of a wrapped attribution.
        if k > 1 && lines[j - 1].trim_end().ends_with(['.', '!', '?']) {
            return None;
        }
        let line = lines[j].trim();
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(line);
        // Cheap first: every form of attribution ends in `:`, `-` or `>`.
        if !line.ends_with([':', '-', '>']) {
            continue;
        }
        if joined.len() > MAX_ATTRIBUTION_BYTES {
            return None;
        }
        if is_attribution(&joined) {
            let strong = joined.bytes().any(|b| b.is_ascii_digit() || b == b'@');
            let quote_below = (j + 1..lines.len())
                .find(|&n| kinds[n] != Line::Blank)
                .is_some_and(|n| kinds[n] == Line::Quote);
            return (strong || quote_below).then_some(k);
        }
    }
    None
}

/// The end (exclusive) of the run of quote lines starting at `i`: quote lines with blank lines
/// between them, up to the last quote line.
fn quote_run_end(kinds: &[Line], i: usize) -> usize {
    let mut end = i + 1;
    let mut j = i + 1;
    while j < kinds.len() {
        match kinds[j] {
            Line::Quote => end = j + 1,
            Line::Blank => {}
            Line::Text => break,
        }
        j += 1;
    }
    end
}

/// The first line of an earlier message that starts at line `i` with a separator or a header
/// block (`From:` with `Sent:`/`Date:`/`Subject:`/`To:`, in any order), if one does. A rule
/// line just above a header block is taken along.
fn earlier_message_start(lines: &[&str], i: usize) -> Option<usize> {
    let t = lines[i].trim();
    if t.len() > MAX_ATTRIBUTION_BYTES {
        return None;
    }
    if t.starts_with("--") && SEPARATOR_ORIGINAL.is_match(t) {
        return Some(i);
    }
    if !t.contains(':') {
        return None;
    }
    let mut headers = 0;
    let mut from = false;
    for line in lines[i..].iter().take(8) {
        let l = line.trim();
        let Some(caps) = (l.len() <= MAX_ATTRIBUTION_BYTES)
            .then(|| HEADER_LINE.captures(l))
            .flatten()
        else {
            break;
        };
        headers += 1;
        let name = caps.get(1).map_or("", |m| m.as_str()).to_lowercase();
        from |= FROM_NAMES.contains(&name.as_str());
    }
    if headers < 2 || !from {
        return None;
    }
    let above = lines[..i].iter().rposition(|l| !l.trim().is_empty());
    Some(match above {
        Some(j) if SEPARATOR_RULE.is_match(lines[j].trim()) => j,
        _ => i,
    })
}

/// A mail that is one quote and nothing else: the text without its `>` markers is the reply.
/// Every level of `>` comes off at once, so nesting costs nothing more.
fn whole_quote(lines: &[&str], sender: Option<&str>) -> Parts {
    let unquoted: Vec<&str> = lines
        .iter()
        .map(|l| l.trim_start_matches(|c: char| c == '>' || c.is_whitespace()))
        .collect();
    let joined = unquoted.join("\n");
    if joined.trim().is_empty() {
        return Parts::default();
    }
    split_lines(&joined, sender, false)
}

/// Consecutive lines of `text` joined by `\n`, without leading and trailing blank lines: the
/// part of `text` from the first to the end of the last, so nothing is joined.
pub(super) fn join_trimmed(text: &str, lines: &[&str]) -> String {
    let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
        return String::new();
    };
    let offset = |line: &str| line.as_ptr() as usize - text.as_ptr() as usize;
    text[offset(first)..offset(last) + last.len()]
        .trim_matches(|c: char| c == '\n' || c == ' ')
        .to_string()
}

/// Non-empty parts, separated by a blank line.
fn join_parts(parts: Vec<String>) -> String {
    let parts: Vec<String> = parts.into_iter().filter(|p| !p.is_empty()).collect();
    parts.join("\n\n")
}
