//! A JSON scanner for the notification parser (`notification.rs`): one linear pass over the
//! body that checks its syntax and hands out only what is asked for, the member names (decoded)
//! and the text of each value, skipping everything else byte by byte.
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

/// A decoded member name: a slice of the body when it holds no escapes (the usual case), else
/// a range of the caller's arena, where its decoded text was appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Name<'a> {
    Body(&'a str),
    Arena(usize, usize),
}

impl<'a> Name<'a> {
    /// The name's text.
    pub fn get<'s>(&self, arena: &'s str) -> &'s str
    where
        'a: 's,
    {
        match *self {
            Name::Body(s) => s,
            Name::Arena(from, to) => arena.get(from..to).unwrap_or_default(),
        }
    }
}

/// The scanner: a position in the body, and the buffers it reuses.
pub(super) struct Scanner<'a> {
    b: &'a [u8],
    /// The body as text, when all of it is valid UTF-8 (checked once, at the start): then no
    /// slice of it needs checking again.
    text: Option<&'a str>,
    i: usize,
    /// The arrays and objects a skipped value is inside (`[` or `{`), outermost first.
    frames: Vec<u8>,
    /// A name being decoded.
    scratch: Vec<u8>,
}

const ONES: u64 = u64::MAX / 255;

/// Whether a string's byte ends a run of plain text: a quote, a backslash or a control byte.
fn is_escape(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// The value of each hex digit, -1 for the other bytes.
static HEX: [i8; 256] = {
    let mut table = [-1i8; 256];
    let mut c = 0;
    while c < 256 {
        table[c] = match c as u8 {
            b @ b'0'..=b'9' => (b - b'0') as i8,
            b @ b'a'..=b'f' => (b - b'a' + 10) as i8,
            b @ b'A'..=b'F' => (b - b'A' + 10) as i8,
            _ => -1,
        };
        c += 1;
    }
    table
};

/// Four hex digits; negative if one is not.
fn hex4(a: u8, b: u8, c: u8, d: u8) -> i32 {
    let digit = |x: u8| i32::from(HEX[usize::from(x)]);
    let (a, b, c, d) = (digit(a), digit(b), digit(c), digit(d));
    if (a | b | c | d) < 0 {
        -1
    } else {
        (a << 12) | (b << 8) | (c << 4) | d
    }
}

impl<'a> Scanner<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Scanner {
            b,
            text: std::str::from_utf8(b).ok(),
            i: 0,
            frames: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// A scanner of text known to be valid UTF-8.
    pub fn of_text(text: &'a str) -> Self {
        Scanner {
            b: text.as_bytes(),
            text: Some(text),
            i: 0,
            frames: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The index of the next byte.
    pub fn pos(&self) -> usize {
        self.i
    }

    /// The text of `from..to` (on character boundaries), if it is valid UTF-8: serde_json's
    /// check of a `RawValue`, failing as it fails.
    pub fn slice(&self, from: usize, to: usize) -> Result<&'a str, Syntax> {
        if let Some(text) = self.text.and_then(|t| t.get(from..to)) {
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

    /// Moves to the next quote, backslash or control byte of a string, eight bytes at a time.
    #[inline]
    fn skip_to_escape(&mut self) {
        let b = self.b;
        if self.i >= b.len() || is_escape(b[self.i]) {
            return;
        }
        self.i += 1;
        while self.i + 8 <= b.len() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&b[self.i..self.i + 8]);
            let chars = u64::from_le_bytes(word);
            let ctrl = chars.wrapping_sub(ONES * 0x20) & !chars;
            let quote = chars ^ (ONES * u64::from(b'"'));
            let quote = quote.wrapping_sub(ONES) & !quote;
            let backslash = chars ^ (ONES * u64::from(b'\\'));
            let backslash = backslash.wrapping_sub(ONES) & !backslash;
            let found = (ctrl | quote | backslash) & (ONES << 7);
            if found != 0 {
                self.i += found.trailing_zeros() as usize / 8;
                return;
            }
            self.i += 8;
        }
        while self.i < b.len() && !is_escape(b[self.i]) {
            self.i += 1;
        }
    }

    /// Four hex digits of a `\u` escape.
    #[inline]
    fn hex_escape(&mut self) -> Result<u16, Syntax> {
        match self.b.get(self.i..self.i + 4) {
            Some(&[a, b, c, d]) => {
                self.i += 4;
                u16::try_from(hex4(a, b, c, d)).map_err(|_| self.err(Code::InvalidEscape))
            }
            _ => {
                self.i = self.b.len();
                Err(self.err(Code::EofString))
            }
        }
    }

    /// The byte after a backslash.
    #[inline]
    fn escape_char(&mut self) -> Result<u8, Syntax> {
        match self.b.get(self.i) {
            Some(&c) => {
                self.i += 1;
                Ok(c)
            }
            None => Err(self.err(Code::EofString)),
        }
    }

    /// Skips the rest of a string whose quote was consumed, checking its escapes but not what
    /// a `\u` escape names (serde_json's `ignore_str`).
    fn skip_str(&mut self) -> Result<(), Syntax> {
        loop {
            self.skip_to_escape();
            match self.b.get(self.i) {
                None => return Err(self.err(Code::EofString)),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.escape_char()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            self.hex_escape()?;
                        }
                        _ => return Err(self.err(Code::InvalidEscape)),
                    }
                }
                Some(_) => return Err(self.err(Code::ControlCharacter)),
            }
        }
    }

    /// A member name, the scanner on its quote: decoded strictly (surrogates paired, UTF-8
    /// valid), borrowed from the body unless it holds escapes, else appended to `arena`.
    pub fn name(&mut self, arena: &mut String) -> Result<Name<'a>, Syntax> {
        match self.text {
            Some(text) => self.name_in(text, arena),
            None => self.name_checked(arena),
        }
    }

    /// [`Scanner::name`] in a body known to be valid UTF-8: the text between escapes is
    /// appended as it is, each escape as its character.
    fn name_in(&mut self, text: &'a str, arena: &mut String) -> Result<Name<'a>, Syntax> {
        self.i += 1;
        let b = self.b;
        let mut start = self.i;
        let mut from = None;
        loop {
            self.skip_to_escape();
            // `start` and `self.i` are next to ASCII bytes: character boundaries.
            let run = text.get(start..self.i).unwrap_or_default();
            match b.get(self.i) {
                None => return Err(self.err(Code::EofString)),
                Some(b'"') => {
                    self.i += 1;
                    let Some(from) = from else {
                        return Ok(Name::Body(run));
                    };
                    arena.push_str(run);
                    return Ok(Name::Arena(from, arena.len()));
                }
                Some(b'\\') => {
                    from.get_or_insert(arena.len());
                    if !run.is_empty() {
                        arena.push_str(run);
                    }
                    self.i += 1;
                    let c = self.escape()?;
                    arena.push(c);
                    start = self.i;
                }
                Some(_) => {
                    self.i += 1;
                    return Err(self.err(Code::ControlCharacter));
                }
            }
        }
    }

    /// [`Scanner::name`] in a body that is not all valid UTF-8: decoded first, then checked,
    /// so that the error is where serde_json reports it.
    fn name_checked(&mut self, arena: &mut String) -> Result<Name<'a>, Syntax> {
        self.i += 1;
        self.scratch.clear();
        let b = self.b;
        let mut start = self.i;
        loop {
            self.skip_to_escape();
            match b.get(self.i) {
                None => return Err(self.err(Code::EofString)),
                Some(b'"') => {
                    // serde_json's `as_str`: the column of the closing quote, less what is
                    // left of the (decoded) text from its first invalid byte.
                    let invalid = |at: usize, len: usize, e: std::str::Utf8Error| Syntax {
                        code: Code::InvalidUnicodeCodePoint,
                        at,
                        back: len - e.valid_up_to(),
                    };
                    if self.scratch.is_empty() {
                        let text = &b[start..self.i];
                        self.i += 1;
                        let text = std::str::from_utf8(text)
                            .map_err(|e| invalid(self.i, text.len(), e))?;
                        return Ok(Name::Body(text));
                    }
                    self.scratch.extend_from_slice(&b[start..self.i]);
                    self.i += 1;
                    let text = std::str::from_utf8(&self.scratch)
                        .map_err(|e| invalid(self.i, self.scratch.len(), e))?;
                    let from = arena.len();
                    arena.push_str(text);
                    return Ok(Name::Arena(from, arena.len()));
                }
                Some(b'\\') => {
                    self.scratch.extend_from_slice(&b[start..self.i]);
                    self.i += 1;
                    self.decode_escape()?;
                    start = self.i;
                }
                Some(_) => {
                    self.i += 1;
                    return Err(self.err(Code::ControlCharacter));
                }
            }
        }
    }

    /// One escape of a name into `scratch` (serde_json's `parse_escape`, validating).
    fn decode_escape(&mut self) -> Result<(), Syntax> {
        let c = self.escape()?;
        let mut buf = [0u8; 4];
        self.scratch
            .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        Ok(())
    }

    /// The character of the escape after a backslash (serde_json's `parse_escape` and
    /// `parse_unicode_escape`, validating: a surrogate pair in two escapes).
    #[inline]
    fn escape(&mut self) -> Result<char, Syntax> {
        let code = match self.escape_char()? {
            b'"' => return Ok('"'),
            b'\\' => return Ok('\\'),
            b'/' => return Ok('/'),
            b'b' => return Ok('\u{8}'),
            b'f' => return Ok('\u{c}'),
            b'n' => return Ok('\n'),
            b'r' => return Ok('\r'),
            b't' => return Ok('\t'),
            b'u' => self.hex_escape()?,
            _ => return Err(self.err(Code::InvalidEscape)),
        };
        let n = u32::from(code);
        if (0xDC00..=0xDFFF).contains(&n) {
            return Err(self.err(Code::LoneLeadingSurrogate));
        }
        let code = if (0xD800..=0xDBFF).contains(&n) {
            for expected in [b'\\', b'u'] {
                match self.b.get(self.i) {
                    None => return Err(self.err(Code::EofString)),
                    Some(&c) => {
                        self.i += 1;
                        if c != expected {
                            return Err(self.err(Code::UnexpectedEndOfHexEscape));
                        }
                    }
                }
            }
            let n2 = u32::from(self.hex_escape()?);
            if !(0xDC00..=0xDFFF).contains(&n2) {
                return Err(self.err(Code::LoneLeadingSurrogate));
            }
            (((n - 0xD800) << 10) | (n2 - 0xDC00)) + 0x1_0000
        } else {
            n
        };
        // Outside the surrogates every code is a char.
        Ok(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER))
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
mod tests {
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
}
