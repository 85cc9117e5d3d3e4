//! Language of the new text.

use super::{head, Signal};

/// whatlang reads this much of the new text: plenty to tell a language, and it keeps a long
/// mail fast.
const LANGUAGE_SAMPLE_BYTES: usize = 2_000;

/// Below this many letters a guess is not worth giving.
const MIN_LANGUAGE_LETTERS: usize = 12;

pub(super) fn language(subject: &str, own_text: &str, signals: &mut Vec<Signal>) -> String {
    let sample = format!("{subject}\n{}", head(own_text, LANGUAGE_SAMPLE_BYTES));
    let letters = sample.chars().filter(|c| c.is_alphabetic()).count();
    let info = (letters >= MIN_LANGUAGE_LETTERS)
        .then(|| whatlang::detect(&sample))
        .flatten();
    match info {
        Some(info) if info.is_reliable() => {
            let code = iso_639_1(info.lang());
            signals.push(Signal::new(
                "language:whatlang",
                format!("language:{code}"),
                format!("{} confidence={:.2}", info.lang().code(), info.confidence()),
            ));
            code.to_string()
        }
        Some(info) => {
            signals.push(Signal::new(
                "language:unreliable",
                "language:und",
                format!("{} confidence={:.2}", info.lang().code(), info.confidence()),
            ));
            "und".to_string()
        }
        None => {
            signals.push(Signal::new(
                "language:too-short",
                "language:und",
                format!("{letters} letters"),
            ));
            "und".to_string()
        }
    }
}

/// whatlang speaks ISO 639-3; the contract speaks ISO 639-1.
fn iso_639_1(lang: whatlang::Lang) -> &'static str {
    use whatlang::Lang::*;
    match lang {
        Epo => "eo",
        Eng => "en",
        Rus => "ru",
        Cmn => "zh",
        Spa => "es",
        Por => "pt",
        Ita => "it",
        Ben => "bn",
        Fra => "fr",
        Deu => "de",
        Ukr => "uk",
        Kat => "ka",
        Ara => "ar",
        Hin => "hi",
        Jpn => "ja",
        Heb => "he",
        Yid => "yi",
        Pol => "pl",
        Amh => "am",
        Jav => "jv",
        Kor => "ko",
        Nob => "nb",
        Dan => "da",
        Swe => "sv",
        Fin => "fi",
        Tur => "tr",
        Nld => "nl",
        Hun => "hu",
        Ces => "cs",
        Ell => "el",
        Bul => "bg",
        Bel => "be",
        Mar => "mr",
        Kan => "kn",
        Ron => "ro",
        Slv => "sl",
        Hrv => "hr",
        Srp => "sr",
        Mkd => "mk",
        Lit => "lt",
        Lav => "lv",
        Est => "et",
        Tam => "ta",
        Vie => "vi",
        Urd => "ur",
        Tha => "th",
        Guj => "gu",
        Uzb => "uz",
        Pan => "pa",
        Aze => "az",
        Ind => "id",
        Tel => "te",
        Pes => "fa",
        Mal => "ml",
        Ori => "or",
        Mya => "my",
        Nep => "ne",
        Sin => "si",
        Khm => "km",
        Tuk => "tk",
        Aka => "ak",
        Zul => "zu",
        Sna => "sn",
        Afr => "af",
        Lat => "la",
        Slk => "sk",
        Cat => "ca",
        Tgl => "tl",
        Hye => "hy",
        Cym => "cy",
    }
}
