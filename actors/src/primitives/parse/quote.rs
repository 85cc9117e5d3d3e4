//! Reply, quoted and signature: where the new text of a mail ends and the earlier messages begin.

use std::sync::LazyLock;

use regex::Regex;

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
