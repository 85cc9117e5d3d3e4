//! Case-insensitive keyword rules without `(?i)` at every byte.
//!
//! Why: a rule compiled with `(?i)` matches each letter in every case Unicode folds it to, and
//! the regex engine cannot then find its literals with its SIMD prefilter, so it steps its
//! automaton over every byte of the mail (the largest item of enrichment's profile). Instead
//! the text is lowercased once, ASCII letters only ([`Folded`]), and the rules, written in
//! lower case, are compiled case-sensitively ([`rule`]), their non-ASCII letters (`ä`, `é`,
//! `н`) taking both cases as a class. ASCII lowercasing keeps every byte where it was, so a
//! match in the lowered text is the same range of the original, and evidence is quoted as
//! written.

use regex::Regex;

/// A text and its copy with ASCII letters lowercased (same length, same char boundaries).
pub(crate) struct Folded<'a> {
    pub text: &'a str,
    pub lower: String,
}

impl<'a> Folded<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            lower: text.to_ascii_lowercase(),
        }
    }

    /// The first match of `rule`, as written in the original text.
    pub fn find(&self, rule: &Regex) -> Option<&'a str> {
        rule.find(&self.lower).map(|m| &self.text[m.range()])
    }

    /// Every match of `rule`, as written in the original text.
    pub fn find_iter<'r>(&'r self, rule: &'r Regex) -> impl Iterator<Item = &'a str> + 'r {
        rule.find_iter(&self.lower).map(|m| &self.text[m.range()])
    }

    /// The first `max` bytes (never inside a character), folded alike.
    pub fn head(&self, max: usize) -> Folded<'a> {
        let text = super::head(self.text, max);
        Folded {
            text,
            lower: self.lower[..text.len()].to_string(),
        }
    }
}

/// Compiles a rule written in lower case to match [`Folded::lower`] as `(?i)` matched the
/// original: each non-ASCII lowercase letter with a one-letter uppercase becomes a class of
/// both (`ä` → `[äÄ]`, also inside a class, where a nested class is a union). Escapes are
/// copied as they are. Panics on an invalid rule: rules are constants, built at first use.
pub(crate) fn rule(pattern: &str) -> Regex {
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(c);
            if let Some(next) = chars.next() {
                out.push(next);
                if matches!(next, 'p' | 'P') {
                    for c in chars.by_ref() {
                        out.push(c);
                        if c == '}' {
                            break;
                        }
                    }
                }
            }
            continue;
        }
        let mut upper = c.to_uppercase();
        match (upper.next(), upper.next()) {
            (Some(u), None) if !c.is_ascii() && c.is_lowercase() && u != c => {
                out.extend(['[', c, u, ']']);
            }
            _ => out.push(c),
        }
    }
    Regex::new(&out).expect("valid rule")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_matches_any_case_and_quotes_the_original() {
        let r = rule(r"enttäuscht|réunion|не в офисе|nepřítomn[ýá]");
        for (text, want) in [
            ("Ich bin ENTTÄUSCHT.", Some("ENTTÄUSCHT")),
            ("La Réunion de lundi", Some("Réunion")),
            ("Я НЕ В ОФИСЕ", Some("НЕ В ОФИСЕ")),
            ("Jsem NEPŘÍTOMNÝ", Some("NEPŘÍTOMNÝ")),
            ("reunion", None),
        ] {
            assert_eq!(Folded::new(text).find(&r), want, "{text}");
        }
    }

    #[test]
    fn escapes_are_kept() {
        let r = rule(r"(?:^|[^\p{L}])(?:bis|до )");
        assert_eq!(Folded::new("Ab BIS morgen").find(&r), Some(" BIS"));
        assert_eq!(Folded::new("xbis").find(&r), None);
        assert_eq!(Folded::new("ДО понедельника").find(&r), Some("ДО "));
    }

    #[test]
    fn head_keeps_the_two_texts_aligned() {
        let f = Folded::new("Grüße AUS Köln");
        let h = f.head(4);
        assert_eq!(h.text, "Grü");
        assert_eq!(h.lower, "grü");
    }
}
