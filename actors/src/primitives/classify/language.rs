//! Language of the new text, by lingua's n-gram models of the 14 languages business mail in
//! Europe and the Americas is written in.
//!
//! Why lingua, restricted, preloaded, in high-accuracy mode:
//! - whatlang (before) needs long text: on short sentences its reliability cut-off threw away
//!   a third of the right answers. lingua scores 1- to 5-grams, which is what tells languages
//!   apart in a sentence or two (`docs/primitives.md` has the measured figures).
//! - Restricting the detector to the languages a mail here is written in is both more accurate
//!   (fewer near neighbours to confuse a short text with) and smaller: each language is one
//!   cargo feature, and the other 61 models are not in the binary.
//! - The models are loaded once, on first use, into a process-wide [`LazyLock`] (or earlier by
//!   [`warm_up`]), so no mail pays for loading them and no call mutates shared state.
//! - High-accuracy mode was chosen by measurement on the corpus in
//!   `actors/tests/fixtures/primitives/`: it is markedly better than low-accuracy mode on word
//!   pairs and short sentences. For text of 120 characters or more lingua uses trigrams in
//!   either mode, so long mails cost the same.
//! - Long text (120 letters or more, what most mails begin with) is asked of whatlang first
//!   ([`detect`]): there it is as right as lingua on the corpus, except between Danish and
//!   Norwegian, at a tenth of the cost; its Scandinavian and unreliable answers go to lingua.
//!
//! `und` is kept for text that has no language: fewer than two words once numbers, addresses
//! and links are left out ("12345", a URL, "Kim"), or a best guess below [`MIN_CONFIDENCE`].

use std::sync::LazyLock;

use lingua::{Language, LanguageDetector, LanguageDetectorBuilder};

use super::{head, Signal};

/// The languages told apart. Russian is there so Cyrillic mail is named rather than guessed as
/// a Latin-script language.
const LANGUAGES: [Language; 14] = [
    Language::English,
    Language::German,
    Language::French,
    Language::Spanish,
    Language::Italian,
    Language::Dutch,
    Language::Portuguese,
    Language::Polish,
    Language::Swedish,
    Language::Danish,
    Language::Bokmal,
    Language::Finnish,
    Language::Czech,
    Language::Russian,
];

static DETECTOR: LazyLock<LanguageDetector> = LazyLock::new(|| {
    LanguageDetectorBuilder::from_languages(&LANGUAGES)
        .with_preloaded_language_models()
        .build()
});

/// Loads the language models now rather than on the first mail (the service calls this at
/// start, so the first request is as fast as the others).
pub fn warm_up() {
    LazyLock::force(&DETECTOR);
}

/// The detector reads this much of the new text (after the subject): two sentences are plenty
/// to tell a language, and lingua's time grows with the text (about 0.5 µs a byte for the 14
/// languages, measured on the 50 KB benchmark mail: 600 bytes took a third of the 1 ms budget).
const LANGUAGE_SAMPLE_BYTES: usize = 200;

/// The detector stops reading once it has this many letters. lingua scores only trigrams once a
/// text has 120 letters or more, and 1- to 5-grams below that (about five times the look-ups a
/// letter), so a sample just over 120 letters is its cheapest for the accuracy of a long text:
/// its cost is about proportional to the letters it reads (fst look-ups, a quarter of the
/// pipeline's CPU per event with the whole 200-byte sample). The margin keeps the sample over
/// 120 letters as lingua counts them.
const LANGUAGE_SAMPLE_LETTERS: usize = 136;

/// Below this many words (numbers, addresses and links left out) a text has no language.
const MIN_WORDS: usize = 2;

/// Below this confidence (lingua's share of the best language among the 14) the answer is `und`.
/// Kept low on purpose: lingua's confidences are relative, and on a word pair the right answer
/// often has well under half of the share (the neighbours of a Nordic or Romance pair take the
/// rest), so a high cut-off would throw away right answers as whatlang's did. On the corpus no
/// sentence or word pair falls below it; text without a language is caught by [`MIN_WORDS`].
pub(crate) const MIN_CONFIDENCE: f64 = 0.12;

/// What the detector said of a text: the ISO 639-1 code (or `und`), the rule and the evidence.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Detection {
    pub code: &'static str,
    pub rule: &'static str,
    pub evidence: String,
}

/// The languages whatlang may answer for a long text: the same 14.
const WHATLANG_LANGUAGES: [whatlang::Lang; 14] = [
    whatlang::Lang::Eng,
    whatlang::Lang::Deu,
    whatlang::Lang::Fra,
    whatlang::Lang::Spa,
    whatlang::Lang::Ita,
    whatlang::Lang::Nld,
    whatlang::Lang::Por,
    whatlang::Lang::Pol,
    whatlang::Lang::Swe,
    whatlang::Lang::Dan,
    whatlang::Lang::Nob,
    whatlang::Lang::Fin,
    whatlang::Lang::Ces,
    whatlang::Lang::Rus,
];

static WHATLANG: LazyLock<whatlang::Detector> =
    LazyLock::new(|| whatlang::Detector::with_allowlist(WHATLANG_LANGUAGES.to_vec()));

/// From this many letters on, a text is long enough for whatlang (see [`detect`]); it is also
/// where lingua stops using 1- and 2-grams.
const LONG_TEXT_LETTERS: usize = 120;

/// The language of a text.
///
/// A long text (a mail's first sentences, most of the time) goes to whatlang first: on
/// 120 letters or more it is as right as lingua on the corpus, save for telling Danish from
/// Norwegian, at a tenth of the cost (about 40 µs against 300–400 µs, lingua's n-gram look-ups
/// having been a quarter of the pipeline's CPU per event). Its answer is taken when it calls it
/// reliable and it is not one of the three Scandinavian languages; anything else, and every
/// short text, is lingua's to decide (`docs/primitives.md`, *Accuracy*).
pub(crate) fn detect(text: &str) -> Detection {
    let (sample, letters) = words_only(text);
    let words = sample.split_whitespace().count();
    if words < MIN_WORDS {
        return Detection {
            code: "und",
            rule: "language:too-short",
            evidence: format!("{words} words"),
        };
    }
    if letters >= LONG_TEXT_LETTERS {
        if let Some(info) = WHATLANG.detect(&sample) {
            let code = whatlang_code(info.lang());
            if info.is_reliable() && !matches!(code, "da" | "nb" | "sv") {
                return Detection {
                    code,
                    rule: "language:whatlang",
                    evidence: format!("{code} confidence={:.2}", info.confidence()),
                };
            }
        }
    }
    let best = DETECTOR
        .compute_language_confidence_values(sample)
        .into_iter()
        .next();
    match best {
        Some((language, confidence)) if confidence >= MIN_CONFIDENCE => Detection {
            code: code(language),
            rule: "language:lingua",
            evidence: format!("{} confidence={confidence:.2}", code(language)),
        },
        Some((language, confidence)) => Detection {
            code: "und",
            rule: "language:unreliable",
            evidence: format!("{} confidence={confidence:.2}", code(language)),
        },
        None => Detection {
            code: "und",
            rule: "language:unreliable",
            evidence: "no language".to_string(),
        },
    }
}

/// The words of a text that carry its language: tokens with a letter, without links, addresses
/// and digits, up to [`LANGUAGE_SAMPLE_LETTERS`] letters.
fn words_only(text: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut letters = 0;
    for token in text.split_whitespace() {
        if letters >= LANGUAGE_SAMPLE_LETTERS {
            break;
        }
        let lower_has = |needle: &str| token.len() >= needle.len() && token.contains(needle);
        if lower_has("://") || lower_has("www.") || token.contains('@') {
            continue;
        }
        // The word between its first and last letters, without its ASCII digits: written
        // straight into `out`, not through a string of its own per word.
        let word = token.trim_matches(|c: char| !c.is_alphabetic());
        let word_letters = word.chars().filter(|c| c.is_alphabetic()).count();
        if word_letters < 1 {
            continue;
        }
        letters += word_letters;
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().filter(|c| !c.is_ascii_digit()));
    }
    (out, letters)
}

/// The ISO 639-1 code of one of [`WHATLANG_LANGUAGES`] (`und` for any other: none is allowed).
pub(crate) fn whatlang_code(language: whatlang::Lang) -> &'static str {
    use whatlang::Lang::*;
    match language {
        Eng => "en",
        Deu => "de",
        Fra => "fr",
        Spa => "es",
        Ita => "it",
        Nld => "nl",
        Por => "pt",
        Pol => "pl",
        Swe => "sv",
        Dan => "da",
        Nob => "nb",
        Fin => "fi",
        Ces => "cs",
        Rus => "ru",
        _ => "und",
    }
}

/// The ISO 639-1 code of one of [`LANGUAGES`].
fn code(language: Language) -> &'static str {
    match language {
        Language::English => "en",
        Language::German => "de",
        Language::French => "fr",
        Language::Spanish => "es",
        Language::Italian => "it",
        Language::Dutch => "nl",
        Language::Portuguese => "pt",
        Language::Polish => "pl",
        Language::Swedish => "sv",
        Language::Danish => "da",
        Language::Bokmal => "nb",
        Language::Finnish => "fi",
        Language::Czech => "cs",
        Language::Russian => "ru",
    }
}

pub(super) fn language(subject: &str, own_text: &str, signals: &mut Vec<Signal>) -> String {
    let sample = format!("{subject}\n{}", head(own_text, LANGUAGE_SAMPLE_BYTES));
    let detection = detect(&sample);
    signals.push(Signal::new(
        detection.rule,
        format!("language:{}", detection.code),
        detection.evidence,
    ));
    detection.code.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_keep_their_letters_and_inner_marks_without_digits_links_or_addresses() {
        let (words, letters) = words_only(
            "Re: 3 Rechnungen (Nr. 42a-7b) — see https://x.io, www.y.de or ann@example.com; \
             ab1cd \"Öl\"! ١٢٣ 12345 x-٣-y",
        );
        assert_eq!(words, "Re Rechnungen Nr a-b see or abcd Öl x-٣-y");
        assert_eq!(letters, 29);
    }
}
