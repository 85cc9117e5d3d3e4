//! Phone numbers: runs of digits and separators that look like one by their layout or a label.

use std::sync::LazyLock;

use regex::Regex;

#[cfg(test)]
use super::runs::runs;
use super::Found;

/// A run of digits and phone separators that starts with `+`, `(` or a digit and ends with a
/// digit, all on one line.
pub(super) static PHONE_CANDIDATE: LazyLock<Regex> = LazyLock::new(|| {
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
pub(super) fn find_phones(text: &str) -> Found {
    find_phones_in(text, &runs(text).phones)
}

/// [`find_phones`] in the runs of phone characters of `text`.
pub(super) fn find_phones_in(text: &str, runs: &[(usize, &str)]) -> Found {
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
pub(super) fn phone_key(phone: &str) -> String {
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
