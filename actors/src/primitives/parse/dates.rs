//! Calendar dates in the forms business mail writes them, as ISO 8601.

use std::collections::HashSet;
use std::sync::LazyLock;

use chrono::NaiveDate;
use regex::Regex;

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
pub(super) fn find_dates(text: &str) -> Vec<String> {
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
