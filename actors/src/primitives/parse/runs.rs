//! The runs of text that can hold a phone number or an amount.
//!
//! The phone and amount regexes are the costly part of a parse; running them only on these runs
//! (found around the digits) keeps a 50 KB mail well under a millisecond, with exactly the
//! matches a search of the whole text would find.

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
pub(super) struct Runs<'t> {
    pub(super) phones: Vec<(usize, &'t str)>,
    pub(super) amounts: Vec<(usize, &'t str)>,
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
pub(super) fn runs(text: &str) -> Runs<'_> {
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
