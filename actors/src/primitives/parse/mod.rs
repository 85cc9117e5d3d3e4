//! `email/parse`: a mail body as plain text, split into the new part, the quoted earlier
//! messages and the signature, with the links, addresses, phone numbers, dates and amounts in it.
//!
//! Everything here is rule-based and deterministic; `docs/primitives.md` lists the rules.

use linkify::{LinkFinder, LinkKind};
use serde::Serialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashSet;

use super::html::{html_to_text, plain_to_text, Rendered};
use super::input::{BodyType, EmailInput};

mod amounts;
mod dates;
mod phones;
mod quote;
mod runs;
mod signature;

use amounts::find_amounts_in;
use dates::find_dates;
use phones::{find_phones_in, phone_key};
use quote::split;
use runs::runs;

/// The result of `email/parse` (SPEC §3.3), serialized exactly as delivered.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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
    parse_rendered(render_body(input), input.from_name.as_deref())
}

/// Parses a rendered body; `sender` is the sender's display name (a clue to the signature).
pub(crate) fn parse_rendered(rendered: Rendered, sender: Option<&str>) -> Parsed {
    let Rendered { text, hrefs } = rendered;
    let parts = split(&text, sender);

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

/// Values found in the text, with their byte offsets.
pub(super) type Found = Vec<(usize, String)>;

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

#[cfg(test)]
mod tests {
    use super::amounts::{find_amounts, parse_number};
    use super::phones::find_phones;
    use super::quote::Parts;
    use super::*;

    fn split_text(text: &str) -> Parts {
        split(text, None)
    }

    #[test]
    fn splits_quote_markers_and_signatures() {
        let parts = split_text("Sounds good.\n\nBest regards,\nAlice\n\n> Can we meet?\n> Bob");
        assert_eq!(
            parts,
            Parts {
                reply: "Sounds good.".into(),
                quoted: "> Can we meet?\n> Bob".into(),
                signature: "Best regards,\nAlice".into(),
            }
        );
        let parts = split_text("Yes.\n-- \nBob\n+1 555 123 4567");
        assert_eq!(parts.reply, "Yes.");
        assert_eq!(parts.signature, "-- \nBob\n+1 555 123 4567");
        assert_eq!(split_text("Thanks!").reply, "Thanks!");
    }

    #[test]
    fn finds_two_line_attributions_and_header_blocks() {
        let parts = split_text(
            "Fine.\n\nOn Mon, 3 Mar 2025 at 10:00, Bob Example <bob@example.com>\nwrote:\n> hi",
        );
        assert_eq!(parts.reply, "Fine.");
        assert!(parts.quoted.starts_with("On Mon"));
        let parts = split_text("Ok\n\n-----Original Message-----\nFrom: Bob\nSent: Monday\nhi");
        assert_eq!(parts.reply, "Ok");
        assert!(parts.quoted.starts_with("-----Original"));
        // "From:" without a "Sent:"/"Date:" line below is ordinary text.
        assert_eq!(split_text("From: the team\nwith love").quoted, "");
    }

    #[test]
    fn deep_quotes_and_long_inputs_stay_linear() {
        // A whole message in nested quotes is unquoted once, however deep.
        let deep = format!("{} hello there", ">".repeat(100_000));
        assert_eq!(split_text(&deep).reply, "hello there");
        let many = "> a\n".repeat(20_000);
        assert_eq!(split_text(&many).reply.lines().count(), 20_000);
        let headers = "To: x\n".repeat(20_000);
        assert_eq!(split_text(&headers).quoted, "");
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
