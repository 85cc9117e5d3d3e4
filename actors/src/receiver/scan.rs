//! A JSON scanner for the notification parser (`notification.rs`): one linear pass over the
//! body that checks its syntax and hands out only what is asked for, the member names (as
//! written, and decoded when they hold escapes) and the text of each value, skipping
//! everything else byte by byte.
//!
//! Why not serde_json: a 1 MiB body of 64,000 members cost the serde parser over 5 ms, mostly
//! in the machinery around each member (a `RawValue` and a `Cow` key per member, a map to find
//! repeated names), not in reading bytes. Why it mirrors serde_json so closely: the parser it
//! replaced was serde_json, and the public edge must answer exactly as before. So the grammar,
//! the order in which things are checked and the error codes and positions follow
//! serde_json 1.0 (`de.rs`: `ignore_value`, `MapAccess`, `SeqAccess`; `read.rs`: `SliceRead`'s
//! string reading), including what it accepts: strings that are only skipped may hold lone
//! surrogate escapes (serde_json checks those only where a string is decoded: names here) and
//! skipped values are not limited in depth (no recursion here: a stack of bytes). The property
//! test in `reference.rs` compares both parsers on generated and broken bodies.

use std::fmt;

mod strings;

/// What is wrong with a body, as serde_json names it (its `ErrorCode`s that can occur here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Code {
    EofList,
    EofObject,
    EofString,
    EofValue,
    ExpectedColon,
    ExpectedListCommaOrEnd,
    ExpectedObjectCommaOrEnd,
    ExpectedSomeIdent,
    ExpectedSomeValue,
    InvalidEscape,
    InvalidNumber,
    InvalidUnicodeCodePoint,
    ControlCharacter,
    KeyMustBeAString,
    LoneLeadingSurrogate,
    TrailingComma,
    TrailingCharacters,
    UnexpectedEndOfHexEscape,
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Code::EofList => "EOF while parsing a list",
            Code::EofObject => "EOF while parsing an object",
            Code::EofString => "EOF while parsing a string",
            Code::EofValue => "EOF while parsing a value",
            Code::ExpectedColon => "expected `:`",
            Code::ExpectedListCommaOrEnd => "expected `,` or `]`",
            Code::ExpectedObjectCommaOrEnd => "expected `,` or `}`",
            Code::ExpectedSomeIdent => "expected ident",
            Code::ExpectedSomeValue => "expected value",
            Code::InvalidEscape => "invalid escape",
            Code::InvalidNumber => "invalid number",
            Code::InvalidUnicodeCodePoint => "invalid unicode code point",
            Code::ControlCharacter => {
                "control character (\\u0000-\\u001F) found while parsing a string"
            }
            Code::KeyMustBeAString => "key must be a string",
            Code::LoneLeadingSurrogate => "lone leading surrogate in hex escape",
            Code::TrailingComma => "trailing comma",
            Code::TrailingCharacters => "trailing characters",
            Code::UnexpectedEndOfHexEscape => "unexpected end of hex escape",
        })
    }
}

/// A syntax error: its code and where serde_json would report it (the byte index whose line
/// and column it names, less `back` columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Syntax {
    pub code: Code,
    at: usize,
    back: usize,
}

impl Syntax {
    /// An error of `code` reported at byte `at` (for errors found outside the scanner).
    pub fn at(code: Code, at: usize) -> Self {
        Syntax { code, at, back: 0 }
    }

    /// The text serde_json gives: `{code} at line {line} column {column}`.
    pub fn message(&self, body: &[u8]) -> String {
        let (line, column) = position(body, self.at);
        format!(
            "{} at line {line} column {}",
            self.code,
            column.saturating_sub(self.back)
        )
    }
}

/// The line (from 1) and column (bytes since the line's start) of byte `at`, as serde_json
/// counts them. Only computed for an error, so a scan of the body is fine.
pub(super) fn position(body: &[u8], at: usize) -> (usize, usize) {
    let at = at.min(body.len());
    let start_of_line = memchr::memrchr(b'\n', &body[..at]).map_or(0, |p| p + 1);
    let line = 1 + memchr::memchr_iter(b'\n', &body[..start_of_line]).count();
    (line, at - start_of_line)
}

/// A member name: its text as written between its quotes, and where its decoded text is when
/// it holds escapes (a range of the caller's arena, where it was appended). Without escapes
/// the written text is the name (the usual case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Name<'a> {
    /// The name as sent, without its quotes, escapes as written: valid JSON string content.
    pub written: &'a str,
    /// The range of the arena holding the decoded name, if it holds escapes.
    decoded: Option<(usize, usize)>,
}

impl<'a> Name<'a> {
    /// A name without escapes.
    pub fn plain(written: &'a str) -> Self {
        Name {
            written,
            decoded: None,
        }
    }

    /// A name with escapes, decoded into `from..to` of the arena.
    pub fn escaped(written: &'a str, from: usize, to: usize) -> Self {
        Name {
            written,
            decoded: Some((from, to)),
        }
    }

    /// Whether the name holds escapes (its text is in the arena).
    pub fn has_escapes(&self) -> bool {
        self.decoded.is_some()
    }

    /// The name's (decoded) text.
    #[inline]
    pub fn get<'s>(&self, arena: &'s str) -> &'s str
    where
        'a: 's,
    {
        match self.decoded {
            None => self.written,
            Some((from, to)) => arena.get(from..to).unwrap_or_default(),
        }
    }
}

/// The scanner: a position in the body, and the buffers it reuses.
pub(super) struct Scanner<'a> {
    b: &'a [u8],
    /// A stretch of the body known to be valid UTF-8, from byte `base`: all of it when the
    /// whole body is (checked once, at the start), else from where text was last asked for to
    /// the next byte that is not (see [`Scanner::text`]). Text in it needs no checking again.
    text: &'a str,
    base: usize,
    i: usize,
    /// The arrays and objects a skipped value is inside (`[` or `{`), outermost first.
    frames: Vec<u8>,
    /// A name being decoded.
    scratch: Vec<u8>,
}

/// The valid UTF-8 that `b` starts with. (`from_utf8` checks a word at a time, `utf8_chunks`
/// a byte at a time; the prefix is checked twice only when there is an invalid byte.)
fn valid_start(b: &[u8]) -> &str {
    match std::str::from_utf8(b) {
        Ok(text) => text,
        Err(e) => b
            .get(..e.valid_up_to())
            .and_then(|valid| std::str::from_utf8(valid).ok())
            .unwrap_or_default(),
    }
}

impl<'a> Scanner<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Scanner {
            b,
            text: valid_start(b),
            base: 0,
            i: 0,
            frames: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// A scanner of text known to be valid UTF-8.
    pub fn of_text(text: &'a str) -> Self {
        Scanner {
            b: text.as_bytes(),
            text,
            base: 0,
            i: 0,
            frames: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The index of the next byte.
    pub fn pos(&self) -> usize {
        self.i
    }

    /// The text of `from..to`, if it is valid UTF-8 and `from` and `to` are character
    /// boundaries (the parser only asks next to ASCII bytes); `None` says neither.
    #[inline]
    pub fn text(&mut self, from: usize, to: usize) -> Option<&'a str> {
        if from < self.base || to > self.base + self.text.len() {
            self.text_from(from);
        }
        self.text
            .get(from.checked_sub(self.base)?..to.checked_sub(self.base)?)
    }

    /// Whether the stretch of valid text holds byte `at` (moving it there if it did not).
    #[inline]
    pub fn text_holds(&mut self, at: usize) -> bool {
        (at >= self.base && at < self.base + self.text.len()) || self.text_from(at)
    }

    /// Moves the stretch of valid text to start at `at` and run to the next invalid byte;
    /// whether it holds any. Only when text is asked for outside it, which stays linear in
    /// the body: the parser asks for text in the body's order, but for an item's whole text
    /// after its members, so each stretch between two invalid bytes is checked at most twice
    /// (from its first name, from its first item), and text that runs past an invalid byte
    /// ends the parse.
    #[cold]
    #[inline(never)]
    fn text_from(&mut self, at: usize) -> bool {
        self.text = valid_start(self.b.get(at..).unwrap_or_default());
        self.base = at;
        !self.text.is_empty()
    }

    /// The text of `from..to` (on character boundaries), if it is valid UTF-8: serde_json's
    /// check of a `RawValue`, failing as it fails.
    pub fn slice(&mut self, from: usize, to: usize) -> Result<&'a str, Syntax> {
        if let Some(text) = self.text(from, to) {
            return Ok(text);
        }
        std::str::from_utf8(self.b.get(from..to).unwrap_or_default())
            .map_err(|e| Syntax::at(Code::InvalidUnicodeCodePoint, from + e.valid_up_to() + 1))
    }

    /// Steps over the byte that [`Scanner::ws`] peeked.
    pub fn bump(&mut self) {
        self.i += 1;
    }

    /// An error caused by the byte just read.
    pub fn err(&self, code: Code) -> Syntax {
        Syntax::at(code, self.i)
    }

    /// An error caused by the byte peeked at.
    pub fn peek_err(&self, code: Code) -> Syntax {
        Syntax::at(code, (self.i + 1).min(self.b.len()))
    }

    /// Skips whitespace; the next byte, not consumed.
    #[inline]
    pub fn ws(&mut self) -> Option<u8> {
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b' ' | b'\n' | b'\t' | b'\r' => self.i += 1,
                _ => return Some(c),
            }
        }
        None
    }

    /// Whether the object being read has another member (serde_json's `has_next_key`). On
    /// `true` the scanner is on the name's quote; on `false`, on the closing brace.
    pub fn more_members(&mut self, first: &mut bool) -> Result<bool, Syntax> {
        let Some(c) = self.ws() else {
            return Err(self.peek_err(Code::EofObject));
        };
        if c == b'}' {
            Ok(false)
        } else if *first {
            *first = false;
            if c == b'"' {
                Ok(true)
            } else {
                Err(self.peek_err(Code::KeyMustBeAString))
            }
        } else if c == b',' {
            self.i += 1;
            match self.ws() {
                Some(b'"') => Ok(true),
                Some(b'}') => Err(self.peek_err(Code::TrailingComma)),
                Some(_) => Err(self.peek_err(Code::KeyMustBeAString)),
                None => Err(self.peek_err(Code::EofValue)),
            }
        } else {
            Err(self.peek_err(Code::ExpectedObjectCommaOrEnd))
        }
    }

    /// Whether the array being read has another element (serde_json's `has_next_element`).
    /// On `false` the scanner is on the closing bracket.
    pub fn more_elements(&mut self, first: &mut bool) -> Result<bool, Syntax> {
        let Some(c) = self.ws() else {
            return Err(self.peek_err(Code::EofList));
        };
        if c == b']' {
            Ok(false)
        } else if *first {
            *first = false;
            Ok(true)
        } else if c == b',' {
            self.i += 1;
            match self.ws() {
                Some(b']') => Err(self.peek_err(Code::TrailingComma)),
                Some(_) => Ok(true),
                None => Err(self.peek_err(Code::EofValue)),
            }
        } else {
            Err(self.peek_err(Code::ExpectedListCommaOrEnd))
        }
    }

    /// The `:` after a name.
    pub fn colon(&mut self) -> Result<(), Syntax> {
        match self.ws() {
            Some(b':') => {
                self.i += 1;
                Ok(())
            }
            Some(_) => Err(self.peek_err(Code::ExpectedColon)),
            None => Err(self.peek_err(Code::EofObject)),
        }
    }

    /// Nothing but whitespace left (serde_json's `end`).
    pub fn end(&mut self) -> Result<(), Syntax> {
        match self.ws() {
            Some(_) => Err(self.peek_err(Code::TrailingCharacters)),
            None => Ok(()),
        }
    }

    /// The rest of a literal (`null`, `true`, `false`) whose first byte was consumed.
    fn ident(&mut self, rest: &[u8]) -> Result<(), Syntax> {
        for &expected in rest {
            match self.b.get(self.i) {
                None => return Err(self.err(Code::EofValue)),
                Some(&c) => {
                    self.i += 1;
                    if c != expected {
                        return Err(self.err(Code::ExpectedSomeIdent));
                    }
                }
            }
        }
        Ok(())
    }

    fn peek_or_null(&self) -> u8 {
        self.b.get(self.i).copied().unwrap_or(0)
    }

    fn digits(&mut self) {
        while self.peek_or_null().is_ascii_digit() {
            self.i += 1;
        }
    }

    /// A number after its sign (serde_json's `ignore_integer`, `ignore_decimal`,
    /// `ignore_exponent`): the grammar only, its value is never needed.
    fn number(&mut self) -> Result<(), Syntax> {
        match self.b.get(self.i) {
            Some(b'0') => {
                self.i += 1;
                if self.peek_or_null().is_ascii_digit() {
                    return Err(self.peek_err(Code::InvalidNumber));
                }
            }
            Some(b'1'..=b'9') => {
                self.i += 1;
                self.digits();
            }
            Some(_) => {
                self.i += 1;
                return Err(self.err(Code::InvalidNumber));
            }
            None => return Err(self.err(Code::InvalidNumber)),
        }
        if self.peek_or_null() == b'.' {
            self.i += 1;
            if !self.peek_or_null().is_ascii_digit() {
                return Err(self.peek_err(Code::InvalidNumber));
            }
            self.digits();
        }
        if let b'e' | b'E' = self.peek_or_null() {
            self.i += 1;
            if let b'+' | b'-' = self.peek_or_null() {
                self.i += 1;
            }
            match self.b.get(self.i) {
                Some(b'0'..=b'9') => self.i += 1,
                Some(_) => {
                    self.i += 1;
                    return Err(self.err(Code::InvalidNumber));
                }
                None => return Err(self.err(Code::InvalidNumber)),
            }
            self.digits();
        }
        Ok(())
    }

    /// Skips one value, checking its syntax as serde_json's `ignore_value` does (the same
    /// errors at the same places): no recursion, the open arrays and objects on a stack of
    /// bytes, the innermost last.
    pub fn skip_value(&mut self) -> Result<(), Syntax> {
        self.frames.clear();
        'value: loop {
            let Some(c) = self.ws() else {
                return Err(self.peek_err(Code::EofValue));
            };
            match c {
                b'[' => {
                    self.i += 1;
                    match self.ws() {
                        Some(b']') => self.i += 1,
                        Some(_) => {
                            self.frames.push(b'[');
                            continue 'value;
                        }
                        None => return Err(self.peek_err(Code::EofList)),
                    }
                }
                b'{' => {
                    self.i += 1;
                    match self.ws() {
                        Some(b'}') => self.i += 1,
                        Some(b'"') => {
                            self.frames.push(b'{');
                            self.i += 1;
                            self.skip_str()?;
                            self.colon()?;
                            continue 'value;
                        }
                        Some(_) => return Err(self.peek_err(Code::KeyMustBeAString)),
                        None => return Err(self.peek_err(Code::EofObject)),
                    }
                }
                b'"' => {
                    self.i += 1;
                    self.skip_str()?;
                }
                b'n' => {
                    self.i += 1;
                    self.ident(b"ull")?;
                }
                b't' => {
                    self.i += 1;
                    self.ident(b"rue")?;
                }
                b'f' => {
                    self.i += 1;
                    self.ident(b"alse")?;
                }
                b'-' => {
                    self.i += 1;
                    self.number()?;
                }
                b'0'..=b'9' => self.number()?,
                _ => return Err(self.peek_err(Code::ExpectedSomeValue)),
            }
            // A value ended: close what it ends, up to the next one.
            while let Some(&frame) = self.frames.last() {
                let list = frame == b'[';
                match self.ws() {
                    Some(b',') => {
                        self.i += 1;
                        if !list {
                            match self.ws() {
                                Some(b'"') => self.i += 1,
                                Some(_) => return Err(self.peek_err(Code::KeyMustBeAString)),
                                None => return Err(self.peek_err(Code::EofObject)),
                            }
                            self.skip_str()?;
                            self.colon()?;
                        }
                        continue 'value;
                    }
                    Some(b']') if list => {}
                    Some(b'}') if !list => {}
                    Some(_) => {
                        return Err(self.peek_err(if list {
                            Code::ExpectedListCommaOrEnd
                        } else {
                            Code::ExpectedObjectCommaOrEnd
                        }))
                    }
                    None => {
                        return Err(self.peek_err(if list {
                            Code::EofList
                        } else {
                            Code::EofObject
                        }))
                    }
                }
                self.i += 1;
                self.frames.pop();
            }
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests;
