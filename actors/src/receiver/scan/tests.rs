#![allow(clippy::unwrap_used)]
use super::*;

/// Skips one value of `text` and what follows; the error text if any, as serde_json
/// formats it.
fn skip(text: &str) -> Result<usize, String> {
    let mut s = Scanner::new(text.as_bytes());
    s.skip_value()
        .and_then(|()| s.end())
        .map(|()| s.pos())
        .map_err(|e| e.message(text.as_bytes()))
}

/// What serde_json says of the same text when it only skips it.
fn serde_skip(text: &str) -> Result<usize, String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| text.len())
        .map_err(|e| e.to_string())
}

/// One name of `text` (a quoted string), decoded.
fn name(text: &str) -> Result<String, String> {
    let mut s = Scanner::new(text.as_bytes());
    let mut arena = String::new();
    let n = s.name(&mut arena).map_err(|e| e.message(text.as_bytes()))?;
    Ok(n.get(&arena).to_string())
}

#[test]
fn skips_what_serde_json_skips_and_fails_where_it_fails() {
    for text in [
        "0",
        "-0",
        "1.5e+10",
        "-12.0E-3",
        "01",
        "-",
        "-a",
        "1.",
        "1.e3",
        "1e",
        "1e+",
        "1ex",
        "2.5x",
        " \t\r\n null \n",
        "nul",
        "nulx",
        "tru",
        "fals",
        "\"\"",
        "\"a\\\"b\\\\c\\/\\b\\f\\n\\r\\t\"",
        "\"\\ud800\"",
        "\"\\udc00\\u12\"",
        "\"\\u12G4\"",
        "\"\\x\"",
        "\"abc",
        "\"abc\\",
        "\"tab\there\"",
        "[]",
        "[1,2,[3,{}]]",
        "[1,]",
        "[1 2]",
        "[",
        "[1",
        "{}",
        "{\"a\":1,\"b\":[{\"c\":null}]}",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{\"a\":}",
        "{1:2}",
        "{\"a\":1",
        "{\"a\"",
        "[}",
        "{]",
        "[1]]",
        "{\"a\":1}}",
        "}",
        "",
        "   ",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "\n\n  [1,\n  x]",
    ] {
        assert_eq!(skip(text).is_ok(), serde_skip(text).is_ok(), "{text:?}");
        if let (Err(ours), Err(theirs)) = (skip(text), serde_skip(text)) {
            assert_eq!(ours, theirs, "{text:?}");
        }
    }
}

#[test]
fn nesting_is_not_limited_and_costs_no_stack() {
    let deep = format!("{}0{}", "[".repeat(200_000), "]".repeat(200_000));
    assert_eq!(skip(&deep), Ok(deep.len()));
    let unclosed = "[{\"a\":".repeat(100_000);
    assert!(skip(&unclosed)
        .unwrap_err()
        .starts_with("EOF while parsing a value"));
}

#[test]
fn names_are_decoded_strictly() {
    assert_eq!(name("\"plain\"").unwrap(), "plain");
    assert_eq!(name("\"\\u00e9\\n\\t\\\"\"").unwrap(), "é\n\t\"");
    assert_eq!(name("\"\\ud83d\\ude00!\"").unwrap(), "😀!");
    assert_eq!(name("\"caf\u{e9}\"").unwrap(), "café");
    for text in [
        "\"\\ud800\"",
        "\"\\ud800x\"",
        "\"\\ud800\\n\"",
        "\"\\ud800\\u0041\"",
        "\"\\udc00\"",
        "\"\\ud800",
        "\"\\ud800\\",
        "\"\\u00\"",
        "\"a\nb\"",
        "\"\\q\"",
        "\"abc",
    ] {
        let theirs = serde_json::from_str::<String>(text)
            .unwrap_err()
            .to_string();
        assert_eq!(name(text).unwrap_err(), theirs, "{text:?}");
    }
    // Invalid UTF-8, plain and after an escape: reported where serde_json reports it.
    for bytes in [&b"\"ab\xffcd\""[..], b"\"\\n\xc3(\"", b"\"\xe2\x82\""] {
        let mut s = Scanner::new(bytes);
        let ours = s.name(&mut String::new()).unwrap_err().message(bytes);
        let theirs = serde_json::from_slice::<String>(bytes).unwrap_err();
        assert_eq!(ours, theirs.to_string());
    }
}

#[test]
fn every_escape_is_decoded_as_serde_json_decodes_it() {
    // Each byte after a backslash, and `\u` escapes around the edges of UTF-8's lengths and
    // the surrogates; in a body of valid UTF-8 and in one that is not (another path).
    let mut texts: Vec<String> = (0u8..=0x7f)
        .map(|c| format!("\"a\\{}b\"", char::from(c)))
        .collect();
    for hex in [
        "0000",
        "001f",
        "0041",
        "007f",
        "0080",
        "07ff",
        "0800",
        "d7ff",
        "D7FF",
        "e000",
        "fffd",
        "ffff",
        "FfFf",
        "00g0",
        "12",
        "d800\\udc00",
        "dbff\\udfff",
        "D83D\\uDE00",
        "dc00",
        "d800\\ud800",
    ] {
        texts.push(format!("\"a\\u{hex}b\""));
    }
    for text in texts {
        let theirs = serde_json::from_str::<String>(&text).map_err(|e| e.to_string());
        assert_eq!(name(&text), theirs, "{text:?}");
        let mut bytes = text.clone().into_bytes();
        bytes.extend_from_slice(b" \xff");
        // serde_json reading the string alone from the same bytes.
        let theirs = <String as serde::Deserialize>::deserialize(
            &mut serde_json::Deserializer::from_slice(&bytes),
        )
        .map_err(|e| e.to_string());
        let mut s = Scanner::new(&bytes);
        let mut arena = String::new();
        let ours = s
            .name(&mut arena)
            .map(|n| n.get(&arena).to_string())
            .map_err(|e| e.message(&bytes));
        assert_eq!(ours, theirs, "{text:?}, not all UTF-8");
        // And after an invalid byte: the stretch of valid text is found again from the name.
        let mut later = b"\xff\n".to_vec();
        later.extend_from_slice(&bytes);
        let mut s = Scanner::new(&later);
        s.i = 2;
        let mut arena = String::new();
        let ours = s
            .name(&mut arena)
            .map(|n| n.get(&arena).to_string())
            .map_err(|e| Syntax { at: e.at - 2, ..e }.message(&bytes));
        assert_eq!(ours, theirs, "{text:?}, after an invalid byte");
    }
}

#[test]
fn text_is_checked_once_between_invalid_bytes() {
    let body = b"{\"a\":\"\xff\",\"b\xc3\xa9\":\"\xc3\xa9\",\"c\":\"\xfe\"}";
    let mut s = Scanner::new(body);
    assert_eq!(s.text(0, 6), Some("{\"a\":\""));
    assert_eq!(s.text(0, 7), None);
    assert_eq!(s.text(9, 22), Some("\"b\u{e9}\":\"\u{e9}\",\"c"));
    assert_eq!((s.base, s.text.len()), (9, 16));
    assert_eq!(s.text(10, 14), Some("b\u{e9}\""));
    assert_eq!(s.base, 9);
    assert_eq!(s.text(12, 13), None, "not a character boundary");
    assert_eq!(s.text(20, 28), None);
    assert_eq!(
        s.slice(20, 28).unwrap_err().message(body),
        "invalid unicode code point at line 1 column 26"
    );
}

#[test]
fn positions_count_lines_and_columns_as_serde_json_does() {
    let text = "{\n  \"a\": [1,\n   2,, 3]\n}";
    assert_eq!(skip(text).unwrap_err(), serde_skip(text).unwrap_err());
    assert_eq!(position(b"ab\ncd", 4), (2, 1));
    assert_eq!(position(b"ab", 9), (1, 2));
}

#[test]
fn long_strings_are_read_a_word_at_a_time_to_the_right_byte() {
    for len in 0..40 {
        for tail in ["\"", "\\n\"", "\u{1}\""] {
            let text = format!("\"{}{tail}", "x".repeat(len));
            assert_eq!(skip(&text).is_ok(), serde_skip(&text).is_ok(), "{text:?}");
            if let Err(e) = skip(&text) {
                assert_eq!(e, serde_skip(&text).unwrap_err(), "{text:?}");
            }
        }
    }
}
