//! The scanner's strings: skipping them eight bytes at a time, reading member names (as
//! written, decoded into the arena only when they hold escapes) and their escapes, as
//! serde_json's `SliceRead` does.

use super::*;

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

/// The character of each escape that is one byte after its backslash (`n`: a line feed), 0 for
/// the others (`u`, and the bytes that are no escape).
static SIMPLE: [u8; 256] = {
    let mut table = [0u8; 256];
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[b'/' as usize] = b'/';
    table[b'b' as usize] = 0x08;
    table[b'f' as usize] = 0x0c;
    table[b'n' as usize] = b'\n';
    table[b'r' as usize] = b'\r';
    table[b't' as usize] = b'\t';
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
    /// Moves to the next quote, backslash or control byte of a string, eight bytes at a time.
    #[inline]
    pub(super) fn skip_to_escape(&mut self) {
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
    pub(super) fn hex_escape(&mut self) -> Result<u16, Syntax> {
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
    pub(super) fn escape_char(&mut self) -> Result<u8, Syntax> {
        match self.b.get(self.i) {
            Some(&c) => {
                self.i += 1;
                Ok(c)
            }
            None => Err(self.err(Code::EofString)),
        }
    }

    /// The escape whose backslash the scanner is on, if it is a usual one: a one-byte escape,
    /// or `\u` and a character outside the surrogates; the scanner then past it. `None` leaves
    /// the scanner where it was, for [`Scanner::escape`] to read the escape (and word what is
    /// wrong with it): a surrogate pair, or an error.
    #[inline]
    fn usual_escape(&mut self) -> Option<char> {
        let next = *self.b.get(self.i + 1)?;
        let simple = SIMPLE[usize::from(next)];
        if simple != 0 {
            self.i += 2;
            return Some(char::from(simple));
        }
        if next != b'u' {
            return None;
        }
        let Some(&[a, b, c, d]) = self.b.get(self.i + 2..self.i + 6) else {
            return None;
        };
        let c = char::from_u32(u32::try_from(hex4(a, b, c, d)).ok()?)?;
        self.i += 6;
        Some(c)
    }

    /// Skips the rest of a string whose quote was consumed, checking its escapes but not what
    /// a `\u` escape names (serde_json's `ignore_str`).
    pub(super) fn skip_str(&mut self) -> Result<(), Syntax> {
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
    /// valid), its written text borrowed from the body, its decoded text appended to `arena`
    /// only if it holds escapes.
    pub(in crate::receiver) fn name(&mut self, arena: &mut String) -> Result<Name<'a>, Syntax> {
        let (at, mark) = (self.i, arena.len());
        // Read in the stretch of valid text from the quote (a name that is not all valid
        // UTF-8 runs past it: read again, as serde_json reads it, to fail where it fails).
        if self.text_holds(at) {
            if let Some(name) = self.name_in(arena)? {
                return Ok(name);
            }
            self.i = at;
            arena.truncate(mark);
        }
        self.name_checked(arena)
    }

    /// [`Scanner::name`] in the stretch of the body known to be valid UTF-8, which holds its
    /// quote: the text between escapes is appended as it is, each escape as its character.
    /// `None` if the name runs past that stretch. Its errors are those of
    /// [`Scanner::name_checked`], which reads in the same order and checks UTF-8 last.
    #[inline]
    pub(super) fn name_in(&mut self, arena: &mut String) -> Result<Option<Name<'a>>, Syntax> {
        let (text, base) = (self.text, self.base);
        // `from` and `to` are next to ASCII bytes: character boundaries if in the stretch.
        let run = |from: usize, to: usize| text.get(from.checked_sub(base)?..to.checked_sub(base)?);
        self.i += 1;
        let b = self.b;
        let open = self.i;
        let mut start = self.i;
        let mut from = None;
        loop {
            self.skip_to_escape();
            match b.get(self.i) {
                None => return Err(self.err(Code::EofString)),
                Some(b'"') => {
                    let Some(written) = run(open, self.i) else {
                        return Ok(None);
                    };
                    let end = self.i;
                    self.i += 1;
                    let Some(from) = from else {
                        return Ok(Some(Name::plain(written)));
                    };
                    arena.push_str(run(start, end).unwrap_or_default());
                    return Ok(Some(Name::escaped(written, from, arena.len())));
                }
                Some(b'\\') => {
                    from.get_or_insert(arena.len());
                    if start < self.i {
                        let Some(plain) = run(start, self.i) else {
                            return Ok(None);
                        };
                        arena.push_str(plain);
                    }
                    let c = self.name_escape()?;
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

    /// [`Scanner::name`] of a name that is not all valid UTF-8 (or not in the body's valid
    /// text): decoded first, then checked, so that the error is where serde_json reports it.
    #[cold]
    #[inline(never)]
    pub(super) fn name_checked(&mut self, arena: &mut String) -> Result<Name<'a>, Syntax> {
        self.i += 1;
        self.scratch.clear();
        let b = self.b;
        let open = self.i;
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
                    let written = &b[open..self.i];
                    self.i += 1;
                    if self.scratch.is_empty() {
                        let text = std::str::from_utf8(written)
                            .map_err(|e| invalid(self.i, written.len(), e))?;
                        return Ok(Name::plain(text));
                    }
                    self.scratch.extend_from_slice(&b[start..self.i - 1]);
                    let text = std::str::from_utf8(&self.scratch)
                        .map_err(|e| invalid(self.i, self.scratch.len(), e))?;
                    let from = arena.len();
                    arena.push_str(text);
                    // The escapes are ASCII and each decodes to a whole character: the written
                    // text is valid UTF-8 exactly when the decoded one is.
                    let written = std::str::from_utf8(written)
                        .map_err(|e| invalid(self.i, written.len(), e))?;
                    return Ok(Name::escaped(written, from, arena.len()));
                }
                Some(b'\\') => {
                    self.scratch.extend_from_slice(&b[start..self.i]);
                    let c = self.name_escape()?;
                    let mut buf = [0u8; 4];
                    self.scratch
                        .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    start = self.i;
                }
                Some(_) => {
                    self.i += 1;
                    return Err(self.err(Code::ControlCharacter));
                }
            }
        }
    }

    /// The character of the escape whose backslash the scanner is on, in a name: the usual
    /// ones read at once, the others (surrogate pairs, errors) as serde_json reads them.
    #[inline]
    fn name_escape(&mut self) -> Result<char, Syntax> {
        if let Some(c) = self.usual_escape() {
            return Ok(c);
        }
        self.i += 1;
        self.escape()
    }

    /// The character of the escape after a backslash (serde_json's `parse_escape` and
    /// `parse_unicode_escape`, validating: a surrogate pair in two escapes).
    #[inline]
    pub(super) fn escape(&mut self) -> Result<char, Syntax> {
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
}
