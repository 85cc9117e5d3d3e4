//! `email/parse`: a mail body as plain text, split into the new part, the quoted earlier
//! messages and the signature, with the links, addresses, phone numbers, dates and amounts in it.
//!
//! Everything here is rule-based and deterministic; `docs/primitives.md` lists the rules.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::LazyLock;

use chrono::NaiveDate;
use linkify::{LinkFinder, LinkKind};
use regex::Regex;
use serde::Serialize;
use serde_json::{Map, Value};

use super::html::{html_to_text, plain_to_text, Rendered};
use super::input::{BodyType, EmailInput};

/// The result of `email/parse` (SPEC §3.3), serialized exactly as delivered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parsed {
    /// The whole body as plain text.
    pub text: String,
    /// The new part: the text before the quoted messages, without the signature.
    pub reply: String,
    /// The quoted earlier messages (from the first quote marker on).
    pub quoted: String,
    /// The signature of the new part (from the sign-off or `--` on).
    pub signature: String,
    /// `http(s)` links: `href` targets and bare URLs, in reading order, deduplicated.
    pub links: Vec<String>,
    /// Email addresses in the text and in `mailto:` links, deduplicated case-insensitively.
    pub emails: Vec<String>,
    /// Phone numbers as written, deduplicated by their digits.
    pub phones: Vec<String>,
    /// Calendar dates as ISO 8601 (`YYYY-MM-DD`), in order of appearance, deduplicated.
    pub dates: Vec<String>,
    /// Money amounts with their ISO 4217 currency.
    pub amounts: Vec<Amount>,
}

impl Parsed {
    /// The JSON of [`Parsed`] (as its `Serialize` gives it), moving the strings rather than
    /// copying them.
    pub fn into_value(self) -> Value {
        let strings =
            |items: Vec<String>| Value::Array(items.into_iter().map(Value::String).collect());
        let amounts = self
            .amounts
            .into_iter()
            .map(|a| {
                let mut amount = Map::new();
                amount.insert("value".into(), Value::from(a.value));
                amount.insert("currency".into(), Value::String(a.currency));
                amount.insert("raw".into(), Value::String(a.raw));
                Value::Object(amount)
            })
            .collect();
        let mut map = Map::new();
        map.insert("text".into(), Value::String(self.text));
        map.insert("reply".into(), Value::String(self.reply));
        map.insert("quoted".into(), Value::String(self.quoted));
        map.insert("signature".into(), Value::String(self.signature));
        map.insert("links".into(), strings(self.links));
        map.insert("emails".into(), strings(self.emails));
        map.insert("phones".into(), strings(self.phones));
        map.insert("dates".into(), strings(self.dates));
        map.insert("amounts".into(), Value::Array(amounts));
        Value::Object(map)
    }
}

/// A money amount found in the text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Amount {
    /// The amount as a number (`1234.5` for "1.234,50 €").
    pub value: f64,
    /// ISO 4217 code (`EUR`, `USD`, …); `$` is read as USD, `¥` as JPY.
    pub currency: String,
    /// The amount as written.
    pub raw: String,
}

/// The body as text, with the `href`s of an HTML body.
pub(crate) fn render_body(input: &EmailInput) -> Rendered {
    match input.body_type {
        BodyType::Html => html_to_text(&input.body),
        BodyType::Text => Rendered {
            text: plain_to_text(&input.body),
            hrefs: Vec::new(),
        },
    }
}

/// Parses a mail. See [`Parsed`] for what each field holds.
pub fn parse(input: &EmailInput) -> Parsed {
    parse_rendered(render_body(input))
}

pub(crate) fn parse_rendered(rendered: Rendered) -> Parsed {
    let Rendered { text, hrefs } = rendered;
    let parts = split(&text);

    let mut href_links = Vec::new();
    let mut href_emails = Vec::new();
    let mut href_phones = Vec::new();
    for (offset, href) in hrefs {
        if strip_prefix_ignore_case(&href, "http://").is_some()
            || strip_prefix_ignore_case(&href, "https://").is_some()
        {
            href_links.push((offset, href));
        } else if let Some(address) = strip_prefix_ignore_case(&href, "mailto:") {
            let address = address.split('?').next().unwrap_or_default().trim();
            if address.contains('@') {
                href_emails.push((offset, address.to_string()));
            }
        } else if let Some(number) = strip_prefix_ignore_case(&href, "tel:") {
            href_phones.push((offset, number.trim().to_string()));
        }
    }

    let (text_links, text_emails) = find_links_and_emails(&text);
    let links = merge_dedup(href_links, text_links, |s| Cow::Borrowed(s));
    let emails = merge_dedup(href_emails, text_emails, |s| {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    });
    let runs = runs(&text);
    let phones = merge_dedup(href_phones, find_phones_in(&text, &runs.phones), |s| {
        Cow::Owned(phone_key(s))
    });

    Parsed {
        reply: parts.reply,
        quoted: parts.quoted,
        signature: parts.signature,
        links,
        emails,
        phones,
        dates: find_dates(&text),
        amounts: find_amounts_in(&runs.amounts),
        text,
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Merges two lists of `(offset, value)` into reading order and drops repeats (by `key`).
fn merge_dedup(
    mut first: Vec<(usize, String)>,
    second: Vec<(usize, String)>,
    key: impl Fn(&str) -> Cow<'_, str>,
) -> Vec<String> {
    first.extend(second);
    // A stable sort: at the same offset, href values come before values found in the text.
    first.sort_by_key(|(offset, _)| *offset);
    let mut seen = HashSet::with_capacity(first.len());
    let keep: Vec<bool> = first
        .iter()
        .map(|(_, v)| !v.is_empty() && seen.insert(key(v)))
        .collect();
    drop(seen);
    first
        .into_iter()
        .zip(keep)
        .filter_map(|((_, v), keep)| keep.then_some(v))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Reply, quoted, signature
// ---------------------------------------------------------------------------------------------

/// The three parts of a body.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Parts {
    pub reply: String,
    pub quoted: String,
    pub signature: String,
}

/// "On Mon, 3 Mar 2025 at 10:00, Alice <a@x.com> wrote:" (and German, French, Spanish, Dutch).
static ATTRIBUTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(?:on\s.+\swrote|am\s.+\sschrieb.*|le\s.+\sa\s+écrit|el\s.+\sescribió|op\s.+\sschreef.*)\s?:$",
    )
    .expect("valid regex")
});
/// The start of a two-line attribution (Gmail wraps long ones before "wrote:").
static ATTRIBUTION_START: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^(?:on|am|le|el|op)\s").expect("valid regex"));
static ATTRIBUTION_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:wrote|schrieb.*|a\s+écrit|escribió|schreef.*)\s?:$").expect("valid regex")
});
/// The first line of an Outlook header block ("From: …"), possibly bold in markdown style.
static HEADER_FROM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^\**(?:from|von|de|van)\s?:\**\s*\S").expect("valid regex"));
/// A second line of the same block ("Sent: …" or "Date: …").
static HEADER_SENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\**(?:sent|date|gesendet|datum|envoyé|enviado|verzonden)\s?:")
        .expect("valid regex")
});
/// "-----Original Message-----", "---------- Forwarded message ---------", and the like.
static SEPARATOR_TITLED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^-{2,}\s*(?:original message|ursprüngliche nachricht|forwarded message|weitergeleitete nachricht|message d'origine)\s*-{2,}$")
        .expect("valid regex")
});
/// A bare rule line that may stand above a header block (Outlook writes 32 underscores).
static SEPARATOR_RULE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[-_=─—]{5,}$").expect("valid regex"));
/// A whole-line sign-off that starts a signature.
static SIGN_OFF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(?:(?:best|kind|warm|warmest|many|with best|with kind)\s+(?:regards|wishes)|regards|best|cheers|thanks|thank you|many thanks|thanks again|thx|sincerely|yours sincerely|yours truly|yours faithfully|all the best|talk soon|mit freundlichen grü(?:ß|ss)en|freundliche grü(?:ß|ss)e|viele grü(?:ß|ss)e|beste grü(?:ß|ss)e|liebe grü(?:ß|ss)e|herzliche grü(?:ß|ss)e|gru(?:ß|ss)|grü(?:ß|ss)e|lg|vg|mfg|cordialement|bien à vous|bien cordialement|saludos|un saludo|cordiali saluti|met vriendelijke groet)\s*[,.!]*$",
    )
    .expect("valid regex")
});
/// Mobile clients' one-line signatures.
static MOBILE_SIGNATURE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:sent from my \S.*|sent from (?:outlook|mail) for \S.*|get outlook for \S.*|von meinem \S.*gesendet)$")
        .expect("valid regex")
});

/// The longest line taken for an attribution or a quote header.
const MAX_ATTRIBUTION_BYTES: usize = 300;

/// How many lines a sign-off may stand above the end of the new part.
const SIGN_OFF_WINDOW: usize = 10;

/// Splits normalized text into reply, quoted and signature.
pub(crate) fn split(text: &str) -> Parts {
    let mut lines = Vec::with_capacity(text.len() / 32);
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', text.as_bytes()) {
        lines.push(&text[start..end]);
        start = end + 1;
    }
    lines.push(&text[start..]);
    let quote_start = find_quote_start(&lines).unwrap_or(lines.len());
    let (head, quoted) = lines.split_at(quote_start);
    let signature_start = find_signature_start(head).unwrap_or(head.len());
    let (reply, signature) = head.split_at(signature_start);
    Parts {
        reply: join_trimmed(text, reply),
        quoted: join_trimmed(text, quoted),
        signature: join_trimmed(text, signature),
    }
}

/// Consecutive lines of `text` joined by `\n`, without leading and trailing blank lines: the
/// part of `text` from the first to the end of the last, so nothing is joined.
fn join_trimmed(text: &str, lines: &[&str]) -> String {
    let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
        return String::new();
    };
    let offset = |line: &str| line.as_ptr() as usize - text.as_ptr() as usize;
    text[offset(first)..offset(last) + last.len()]
        .trim_matches('\n')
        .to_string()
}

/// The first line of the quoted part, if any.
fn find_quote_start(lines: &[&str]) -> Option<usize> {
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if t.starts_with('>') {
            return Some(i);
        }
        // Quote headers are short lines; a long paragraph is never one.
        if t.len() > MAX_ATTRIBUTION_BYTES {
            continue;
        }
        // Cheap tests of what each rule needs come first: most lines are none of these.
        if (t.ends_with(':') && ATTRIBUTION.is_match(t))
            || (t.starts_with("--") && SEPARATOR_TITLED.is_match(t))
        {
            return Some(i);
        }
        if starts_attribution(t)
            && ATTRIBUTION_START.is_match(t)
            && lines
                .get(i + 1)
                .is_some_and(|next| ATTRIBUTION_END.is_match(next.trim()))
        {
            return Some(i);
        }
        if may_start_header(t)
            && t.contains(':')
            && HEADER_FROM.is_match(t)
            && lines[i + 1..]
                .iter()
                .take(4)
                .any(|l| HEADER_SENT.is_match(l.trim()))
        {
            // Take a rule line just above the block ("____", "-----") along with it.
            let above = lines[..i].iter().rposition(|l| !l.trim().is_empty());
            return Some(match above {
                Some(j) if SEPARATOR_RULE.is_match(lines[j].trim()) => j,
                _ => i,
            });
        }
    }
    None
}

/// Whether a line may start like [`HEADER_FROM`]: `from`, `von`, `de` or `van` after any `*`
/// (whose first letters have no non-ASCII case variants).
fn may_start_header(line: &str) -> bool {
    line.trim_start_matches('*')
        .starts_with(['f', 'F', 'v', 'V', 'd', 'D'])
}

/// Whether a line starts like [`ATTRIBUTION_START`] (whose words have no non-ASCII case
/// variants).
fn starts_attribution(line: &str) -> bool {
    line.get(..2).is_some_and(|word| {
        ["on", "am", "le", "el", "op"]
            .iter()
            .any(|w| word.eq_ignore_ascii_case(w))
    })
}

/// The first line of the signature within the new part, if any: a `--` line, else the last
/// sign-off or mobile signature within the last [`SIGN_OFF_WINDOW`] non-blank lines.
fn find_signature_start(lines: &[&str]) -> Option<usize> {
    if let Some(i) = lines.iter().position(|l| l.trim_end() == "--") {
        return Some(i);
    }
    let mut non_blank = 0;
    for (i, line) in lines.iter().enumerate().rev() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        non_blank += 1;
        if non_blank > SIGN_OFF_WINDOW {
            break;
        }
        if SIGN_OFF.is_match(t) || MOBILE_SIGNATURE.is_match(t) {
            // A sign-off on the very first line is a one-line mail ("Thanks!"), not a signature.
            return (lines[..i].iter().any(|l| !l.trim().is_empty())).then_some(i);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Links and email addresses
// ---------------------------------------------------------------------------------------------

type Found = Vec<(usize, String)>;

/// Bare `http(s)` URLs and email addresses in the text, with their offsets.
fn find_links_and_emails(text: &str) -> (Found, Found) {
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkKind::Url, LinkKind::Email]);
    let mut links = Vec::new();
    let mut emails = Vec::new();
    for link in finder.links(text) {
        match link.kind() {
            LinkKind::Email => emails.push((link.start(), link.as_str().to_string())),
            _ => {
                let url = link.as_str();
                let lower = url.to_ascii_lowercase();
                if lower.starts_with("http://") || lower.starts_with("https://") {
                    links.push((link.start(), url.to_string()));
                } else if let Some(address) = strip_prefix_ignore_case(url, "mailto:") {
                    let address = address.split('?').next().unwrap_or_default();
                    if address.contains('@') {
                        emails.push((link.start(), address.to_string()));
                    }
                }
            }
        }
    }
    (links, emails)
}

// ---------------------------------------------------------------------------------------------
// Phone numbers
// ---------------------------------------------------------------------------------------------

/// A run of digits and phone separators that starts with `+`, `(` or a digit and ends with a
/// digit, all on one line.
static PHONE_CANDIDATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\+|\(|(?-u:\b))[0-9][0-9 \u{a0}./()\-]{5,24}[0-9](?-u:\b)")
        .expect("valid regex")
});
/// A label in front of a number that makes it a phone number.
static PHONE_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:(?-u:\b)(?:tel|tele|telefon|telephone|phone|ph|mobile|mobil|mob|cell|handy|fax|call|direct|office|t|m|f|p)(?-u:\b)\.?\s*:?|☎|📞)\s*$")
        .expect("valid regex")
});
/// North American layout: (555) 123-4567, 555-123-4567, 555.123.4567.
static PHONE_NANP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:\([0-9]{3}\)\s?|[0-9]{3}[-. ])[0-9]{3}[-. ][0-9]{4}$").expect("valid regex")
});
/// Something that is a date, not a phone number.
static DATE_LIKE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\(?[0-9]{1,4}[./-][0-9]{1,2}[./-][0-9]{1,4}\)?$").expect("valid regex")
});

/// Phone numbers: a candidate with 7 to 15 digits that starts with `+` or `00`, has the North
/// American layout, or follows a label such as "Tel:", "Phone", "Mobile", "Fax".
#[cfg(test)]
fn find_phones(text: &str) -> Found {
    find_phones_in(text, &runs(text).phones)
}

/// [`find_phones`] in the runs of phone characters of `text`.
fn find_phones_in(text: &str, runs: &[(usize, &str)]) -> Found {
    let mut phones = Vec::new();
    for &(run_start, haystack) in runs {
        let mut at = run_start;
        // What is left of a run with fewer than 7 digits holds no phone number.
        while haystack[at..].bytes().filter(u8::is_ascii_digit).count() >= 7 {
            let Some(m) = PHONE_CANDIDATE.find_at(haystack, at) else {
                break;
            };
            at = m.end();
            phone_candidate(text, m, &mut phones);
        }
    }
    phones
}

// Classes of characters, for finding the runs of text that can hold a phone number or an amount.
/// Can be part of a [`PHONE_CANDIDATE`] match: digits, `+`, spaces, `.`, `/`, `-`, parentheses.
const PHONE: u8 = 1;
/// Can be part of an [`AMOUNT`] match: digits, capitals, separators, spaces, currency symbols.
const AMOUNT_CHAR: u8 = 2;
const CAPITAL: u8 = 8;
const SYMBOL: u8 = 16;

/// The classes of the ASCII characters.
static ASCII_CLASSES: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        table[b] = match b as u8 {
            b'0'..=b'9' => PHONE | AMOUNT_CHAR,
            b'A'..=b'Z' => AMOUNT_CHAR | CAPITAL,
            b'$' => AMOUNT_CHAR | SYMBOL,
            b' ' | b'.' => PHONE | AMOUNT_CHAR,
            b',' | b'\'' => AMOUNT_CHAR,
            b'+' | b'/' | b'(' | b')' | b'-' => PHONE,
            _ => 0,
        };
        b += 1;
    }
    table
};

/// The classes of a character.
fn classes(c: char) -> u8 {
    match c {
        '\0'..='\u{7f}' => ASCII_CLASSES[c as usize],
        '\u{a0}' => PHONE | AMOUNT_CHAR,
        '\u{202f}' | '\u{2009}' => AMOUNT_CHAR,
        '€' | '£' | '¥' | '₹' => AMOUNT_CHAR | SYMBOL,
        _ => 0,
    }
}

/// The runs of text that may hold a phone number or an amount (see [`runs`]).
#[derive(Default)]
struct Runs<'t> {
    phones: Vec<(usize, &'t str)>,
    amounts: Vec<(usize, &'t str)>,
}

/// The maximal runs of phone characters (`PHONE`) with at least 7 digits (fewer are never
/// taken) and of amount characters (`AMOUNT_CHAR`) with a digit and a currency (a symbol, or
/// three capitals in a row for an ISO code). Each run is given as its start and the text up to
/// and including the character after it.
///
/// Every match of [`PHONE_CANDIDATE`] (or [`AMOUNT`]) lies within one run, so searching each run
/// from its start, with `find_at` on this haystack, finds exactly the matches a search of the
/// whole text finds: the text before the run is the context `\b` looks back at, and the
/// character after it the one `\b` looks ahead at. Both kinds of run hold a digit, so only the
/// text around digits is looked at; most text is in no such run.
fn runs(text: &str) -> Runs<'_> {
    let bytes = text.as_bytes();
    let mut runs = Runs::default();
    let (mut phone_end, mut amount_end) = (0, 0);
    let mut at = 0;
    while let Some(found) = bytes[at..].iter().position(u8::is_ascii_digit) {
        let digit = at + found;
        at = digit + 1;
        if digit >= phone_end {
            let (start, end) = expand(text, digit, PHONE);
            phone_end = end;
            let digits = bytes[start..end]
                .iter()
                .filter(|b| b.is_ascii_digit())
                .count();
            if digits >= 7 {
                runs.phones.push((start, &text[..after(text, end)]));
            }
        }
        if digit >= amount_end {
            let (start, end) = expand(text, digit, AMOUNT_CHAR);
            amount_end = end;
            if has_currency(&text[start..end]) {
                runs.amounts.push((start, &text[..after(text, end)]));
            }
        }
    }
    runs
}

/// The maximal run of characters of `class` around the ASCII character at `at`.
fn expand(text: &str, at: usize, class: u8) -> (usize, usize) {
    let start = text[..at]
        .char_indices()
        .rev()
        .find(|&(_, c)| classes(c) & class == 0)
        .map_or(0, |(i, c)| i + c.len_utf8());
    let end = text[at..]
        .char_indices()
        .find(|&(_, c)| classes(c) & class == 0)
        .map_or(text.len(), |(i, _)| at + i);
    (start, end)
}

/// The end of the character at `at`, if any.
fn after(text: &str, at: usize) -> usize {
    text[at..].chars().next().map_or(at, |c| at + c.len_utf8())
}

/// Whether a run of amount characters has a currency symbol or three capitals in a row.
fn has_currency(run: &str) -> bool {
    let mut capitals = 0;
    for c in run.chars() {
        let class = classes(c);
        if class & SYMBOL != 0 {
            return true;
        }
        if class & CAPITAL != 0 {
            capitals += 1;
            if capitals >= 3 {
                return true;
            }
        } else {
            capitals = 0;
        }
    }
    false
}

/// Takes a [`PHONE_CANDIDATE`] match if it is a phone number.
fn phone_candidate(text: &str, m: regex::Match<'_>, phones: &mut Found) {
    {
        let mut candidate = m.as_str();
        let mut start = m.start();
        // A parenthesis that opens a sentence, not an area code: "(+49 30 …)".
        if candidate.starts_with("(+") || (candidate.starts_with('(') && !candidate.contains(')')) {
            candidate = &candidate[1..];
            start += 1;
        }
        let digits = candidate.chars().filter(char::is_ascii_digit).count();
        // DATE_LIKE starts with a digit or `(`: a number starting with `+` is never one.
        if !(7..=15).contains(&digits)
            || (!candidate.starts_with('+') && DATE_LIKE.is_match(candidate))
        {
            return;
        }
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let before = &text[line_start..start];
        let before = &before[floor_char_boundary(before, before.len().saturating_sub(30))..];
        let accepted = candidate.starts_with('+')
            || candidate.starts_with("00")
            || PHONE_NANP.is_match(candidate)
            || PHONE_LABEL.is_match(before);
        if accepted {
            phones.push((
                start,
                candidate.split_whitespace().collect::<Vec<_>>().join(" "),
            ));
        }
    }
}

/// Phone numbers are the same when their digits are (a leading `00` counts as `+`).
fn phone_key(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    match digits.strip_prefix("00") {
        Some(rest) if !phone.trim_start().starts_with('+') => rest.to_string(),
        _ => digits,
    }
}

fn floor_char_boundary(s: &str, mut index: usize) -> usize {
    while !s.is_char_boundary(index) {
        index -= 1;
    }
    index
}

// ---------------------------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------------------------

const MONTHS: &str = "january|february|march|april|may|june|july|august|september|october|november|december|januar|februar|märz|maerz|mai|juni|juli|oktober|dezember|sept|jan|feb|mar|apr|jun|jul|aug|sep|oct|okt|nov|dec|dez";

/// ISO (2025-03-14), dotted (14.03.2025), slashed (03/14/2025 or 14/03/2025), "14 March 2025"
/// and "March 14, 2025". Years have four digits; dates without a year are not taken.
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?x)
        (?-u:\b)(?P<iy>[0-9]{{4}})-(?P<im>[0-9]{{1,2}})-(?P<id>[0-9]{{1,2}})(?:T|(?-u:\b))
        | (?-u:\b)(?P<dd>[0-9]{{1,2}})\.(?P<dm>[0-9]{{1,2}})\.(?P<dy>[0-9]{{4}})(?-u:\b)
        | (?-u:\b)(?P<sa>[0-9]{{1,2}})/(?P<sb>[0-9]{{1,2}})/(?P<sy>[0-9]{{4}})(?-u:\b)
        | (?-u:\b)(?P<nd>[0-9]{{1,2}})(?:st|nd|rd|th)?\.?\s+(?P<nm>(?i:{MONTHS}))\.?,?\s+(?P<ny>[0-9]{{4}})(?-u:\b)
        | (?-u:\b)(?P<mm>(?i:{MONTHS}))\.?\s+(?P<md>[0-9]{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<my>[0-9]{{4}})(?-u:\b)
        "
    ))
    .expect("valid regex")
});

/// Dates as `YYYY-MM-DD`, in order of appearance, each once. A slashed date is read as
/// month/day/year (Outlook's en-US form) unless the first number is over 12.
fn find_dates(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut seen_spellings = HashSet::new();
    let mut dates = Vec::new();
    for m in DATE.find_iter(text) {
        // The same spelling always reads as the same date (or none): read each once, as
        // capture groups cost far more than finding the match.
        if !seen_spellings.insert(m.as_str()) {
            continue;
        }
        let Some(caps) = DATE.captures_at(text, m.start()) else {
            continue;
        };
        let num = |name: &str| caps.name(name).and_then(|m| m.as_str().parse::<u32>().ok());
        let month = |name: &str| caps.name(name).and_then(|m| month_number(m.as_str()));
        let ymd = if let Some(y) = num("iy") {
            Some((y, num("im"), num("id")))
        } else if let Some(y) = num("dy") {
            Some((y, num("dm"), num("dd")))
        } else if let (Some(y), Some(a), Some(b)) = (num("sy"), num("sa"), num("sb")) {
            Some(if a > 12 {
                (y, Some(b), Some(a))
            } else {
                (y, Some(a), Some(b))
            })
        } else if let Some(y) = num("ny") {
            Some((y, month("nm"), num("nd")))
        } else {
            num("my").map(|y| (y, month("mm"), num("md")))
        };
        let Some((year, Some(month), Some(day))) = ymd else {
            continue;
        };
        let Ok(year) = i32::try_from(year) else {
            continue;
        };
        if let Some(date) = NaiveDate::from_ymd_opt(year, month, day) {
            let iso = date.format("%Y-%m-%d").to_string();
            if seen.insert(iso.clone()) {
                dates.push(iso);
            }
        }
    }
    dates
}

fn month_number(name: &str) -> Option<u32> {
    let name = name.to_lowercase();
    let month = match name.get(..3)? {
        "jan" => 1,
        "feb" => 2,
        "mar" | "mär" | "mae" => 3,
        "apr" => 4,
        "may" | "mai" => 5,
        "jun" => 6,
        "jul" => 7,
        "aug" => 8,
        "sep" => 9,
        "oct" | "okt" => 10,
        "nov" => 11,
        "dec" | "dez" => 12,
        _ => return None,
    };
    Some(month)
}

// ---------------------------------------------------------------------------------------------
// Money amounts
// ---------------------------------------------------------------------------------------------

const CURRENCY_CODES: &str =
    "EUR|USD|GBP|CHF|JPY|CAD|AUD|NZD|SEK|NOK|DKK|PLN|CZK|HUF|CNY|INR|BRL|MXN|ZAR|SGD|HKD";
/// A number with optional thousands separators (`,` `.` `'` or a thin space) and up to two
/// decimals.
const NUMBER: &str =
    r"[0-9]{1,3}(?:[,.'\u{202f}\u{2009}][0-9]{3})+(?:[.,][0-9]{1,2})?|[0-9]+(?:[.,][0-9]{1,2})?";

/// Currency symbols, longest first where one ends another (`US$` before `$`).
const SYMBOLS: [&str; 8] = ["US$", "C$", "A$", "€", "$", "£", "¥", "₹"];

/// A currency before the number ("€1,234.50", "USD 99", "CHF 1'250.00") or after it
/// ("1.234,50 €", "99 EUR").
static AMOUNT: LazyLock<Regex> = LazyLock::new(|| {
    let symbol = r"US\$|C\$|A\$|€|\$|£|¥|₹";
    Regex::new(&format!(
        r"(?:{symbol}|(?-u:\b)(?:{CURRENCY_CODES})(?-u:\b))[ \u{{a0}}]?(?:{NUMBER})|(?-u:\b)(?:{NUMBER})[ \u{{a0}}]?(?:{symbol}|(?:{CURRENCY_CODES})(?-u:\b))"
    ))
    .expect("valid regex")
});

/// Money amounts in order of appearance.
///
/// A match is a currency, an optional space and a number, or the other way round. Numbers
/// hold only digits and separators, so a match that starts with a digit has its currency at
/// the end. Currency and number are told apart by spelling rather than by capture groups
/// (which cost far more than the match itself); at most one space stands between them.
#[cfg(test)]
fn find_amounts(text: &str) -> Vec<Amount> {
    find_amounts_in(&runs(text).amounts)
}

/// [`find_amounts`] in the runs of amount characters of a text.
fn find_amounts_in(runs: &[(usize, &str)]) -> Vec<Amount> {
    let mut amounts = Vec::new();
    for &(run_start, haystack) in runs {
        let mut at = run_start;
        // What is left of a run without a digit holds no amount.
        while haystack[at..].bytes().any(|b| b.is_ascii_digit()) {
            let Some(m) = AMOUNT.find_at(haystack, at) else {
                break;
            };
            at = m.end();
            if let Some(amount) = read_amount(m.as_str()) {
                amounts.push(amount);
            }
        }
    }
    amounts
}

/// Reads an [`AMOUNT`] match.
fn read_amount(raw: &str) -> Option<Amount> {
    {
        let (currency, number) = if raw.starts_with(|c: char| c.is_ascii_digit()) {
            let currency = currency_suffix(raw)?;
            let number = &raw[..raw.len() - currency.len()];
            (currency, number.trim_end_matches([' ', '\u{a0}']))
        } else {
            let currency = currency_prefix(raw)?;
            let number = &raw[currency.len()..];
            (currency, number.trim_start_matches([' ', '\u{a0}']))
        };
        let (value, code) = (parse_number(number)?, currency_code(currency)?);
        Some(Amount {
            value,
            currency: code.to_string(),
            raw: raw.to_string(),
        })
    }
}

/// The symbol or ISO code an amount starts with.
fn currency_prefix(raw: &str) -> Option<&str> {
    SYMBOLS
        .iter()
        .copied()
        .chain(CURRENCY_CODES.split('|'))
        .find(|c| raw.starts_with(c))
        .map(|c| &raw[..c.len()])
}

/// The symbol or ISO code an amount ends with.
fn currency_suffix(raw: &str) -> Option<&str> {
    SYMBOLS
        .iter()
        .copied()
        .chain(CURRENCY_CODES.split('|'))
        .find(|c| raw.ends_with(c))
        .map(|c| &raw[raw.len() - c.len()..])
}

fn currency_code(symbol: &str) -> Option<&'static str> {
    let code = match symbol {
        "€" => "EUR",
        "$" | "US$" => "USD",
        "£" => "GBP",
        "¥" => "JPY",
        "₹" => "INR",
        "C$" => "CAD",
        "A$" => "AUD",
        code => CURRENCY_CODES.split('|').find(|c| *c == code)?,
    };
    Some(code)
}

/// Reads "1,234.50", "1.234,50", "1'234.50", "12,5" and "1.234" (a group of three digits after
/// the only separator is a thousands group).
fn parse_number(raw: &str) -> Option<f64> {
    let cleaned: String = raw
        .chars()
        .filter(|c| !matches!(c, '\'' | '\u{202f}' | '\u{2009}'))
        .collect();
    let last_dot = cleaned.rfind('.');
    let last_comma = cleaned.rfind(',');
    let decimal = match (last_dot, last_comma) {
        (Some(d), Some(c)) => Some(d.max(c)),
        (Some(i), None) | (None, Some(i)) => {
            let separators = cleaned.matches(['.', ',']).count();
            let decimals = cleaned.len() - i - 1;
            (separators == 1 && decimals != 3).then_some(i)
        }
        (None, None) => None,
    };
    let mut normalized = String::with_capacity(cleaned.len());
    for (i, c) in cleaned.char_indices() {
        match c {
            '.' | ',' if Some(i) == decimal => normalized.push('.'),
            '.' | ',' => {}
            c => normalized.push(c),
        }
    }
    normalized.parse::<f64>().ok().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_quote_markers_and_signatures() {
        let parts = split("Sounds good.\n\nBest regards,\nAlice\n\n> Can we meet?\n> Bob");
        assert_eq!(
            parts,
            Parts {
                reply: "Sounds good.".into(),
                quoted: "> Can we meet?\n> Bob".into(),
                signature: "Best regards,\nAlice".into(),
            }
        );
        let parts = split("Yes.\n-- \nBob\n+1 555 123 4567");
        assert_eq!(parts.reply, "Yes.");
        assert_eq!(parts.signature, "-- \nBob\n+1 555 123 4567");
        assert_eq!(split("Thanks!").reply, "Thanks!");
    }

    #[test]
    fn finds_two_line_attributions_and_header_blocks() {
        let parts = split(
            "Fine.\n\nOn Mon, 3 Mar 2025 at 10:00, Bob Example <bob@example.com>\nwrote:\n> hi",
        );
        assert_eq!(parts.reply, "Fine.");
        assert!(parts.quoted.starts_with("On Mon"));
        let parts = split("Ok\n\n-----Original Message-----\nFrom: Bob\nSent: Monday\nhi");
        assert_eq!(parts.reply, "Ok");
        assert!(parts.quoted.starts_with("-----Original"));
        // "From:" without a "Sent:"/"Date:" line below is ordinary text.
        assert_eq!(split("From: the team\nwith love").quoted, "");
    }

    #[test]
    fn reads_numbers_the_way_they_are_written() {
        assert_eq!(parse_number("1,234.50"), Some(1234.5));
        assert_eq!(parse_number("1.234,50"), Some(1234.5));
        assert_eq!(parse_number("1'234.50"), Some(1234.5));
        assert_eq!(parse_number("12,5"), Some(12.5));
        assert_eq!(parse_number("1.234"), Some(1234.0));
        assert_eq!(parse_number("99"), Some(99.0));
    }

    #[test]
    fn finds_amounts_dates_and_phones() {
        let text = "Total: €1,234.50 or 99 EUR, CHF 1'250.00, $15 and 12,50 €.\n\
            Due 2025-03-14, 14.03.2025, March 15th, 2025, 1 Apr 2025, 4/2/2025 and 31/12/2025.\n\
            Call +49 30 1234567 or (555) 123-4567; Tel: 030 98765432. Order 123456789.";
        assert_eq!(
            find_amounts(text),
            vec![
                Amount {
                    value: 1234.5,
                    currency: "EUR".into(),
                    raw: "€1,234.50".into()
                },
                Amount {
                    value: 99.0,
                    currency: "EUR".into(),
                    raw: "99 EUR".into()
                },
                Amount {
                    value: 1250.0,
                    currency: "CHF".into(),
                    raw: "CHF 1'250.00".into()
                },
                Amount {
                    value: 15.0,
                    currency: "USD".into(),
                    raw: "$15".into()
                },
                Amount {
                    value: 12.5,
                    currency: "EUR".into(),
                    raw: "12,50 €".into()
                },
            ]
        );
        assert_eq!(
            find_dates(text),
            vec![
                "2025-03-14",
                "2025-03-15",
                "2025-04-01",
                "2025-04-02",
                "2025-12-31"
            ]
        );
        let phones: Vec<String> = find_phones(text).into_iter().map(|(_, p)| p).collect();
        assert_eq!(
            phones,
            vec!["+49 30 1234567", "(555) 123-4567", "030 98765432"]
        );
        assert!(find_dates("2025-02-30 and 2025-13-01").is_empty());
        assert_eq!(
            find_dates("4 December 2025, 4 December 2025 and 4 Dec 2025"),
            vec!["2025-12-04"]
        );
        let amounts: Vec<(f64, String, String)> =
            find_amounts("A$20, 5 US$, 10\u{a0}€, USD 5, 7 C$ and 3USD.")
                .into_iter()
                .map(|a| (a.value, a.currency, a.raw))
                .collect();
        let expected = [
            (20.0, "AUD", "A$20"),
            (5.0, "USD", "5 US$"),
            (10.0, "EUR", "10\u{a0}€"),
            (5.0, "USD", "USD 5"),
            (7.0, "CAD", "7 C$"),
            (3.0, "USD", "3USD"),
        ]
        .map(|(v, c, r)| (v, c.to_string(), r.to_string()));
        assert_eq!(amounts, expected);
    }
}
