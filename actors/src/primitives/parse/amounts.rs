//! Money amounts: a currency symbol or ISO code before or after a number.
//!
//! Only the runs of text that hold a digit and a currency are searched (see [`super::runs`]),
//! so a long mail costs little more than a short one.

use std::sync::LazyLock;

use regex::Regex;

#[cfg(test)]
use super::runs::runs;
use super::Amount;

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
pub(super) static AMOUNT: LazyLock<Regex> = LazyLock::new(|| {
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
pub(super) fn find_amounts(text: &str) -> Vec<Amount> {
    find_amounts_in(&runs(text).amounts)
}

/// [`find_amounts`] in the runs of amount characters of a text.
pub(super) fn find_amounts_in(runs: &[(usize, &str)]) -> Vec<Amount> {
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
pub(super) fn parse_number(raw: &str) -> Option<f64> {
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
