//! HTML and plain text → clean plain text, one path for mail bodies and HTML documents.
//!
//! HTML goes through html5gum's tokenizer (the WHATWG HTML tokenizer: character references,
//! raw-text elements and malformed markup handled as browsers do), whose emitter lays the tags
//! and text out as they come, without building tokens:
//! - `<script>`, `<style>`, `<title>`, `<template>`, `<svg>` and elements styled
//!   `display:none` (newsletter preheaders, tracking blocks) are dropped;
//! - paragraphs, headings (`# `, `## ` …), lists (`* ` and `1. `), tables and `<blockquote>`
//!   are separated by a blank line; `<div>`, `<br>`, list items and table rows end a line;
//! - table cells in a row are separated by a tab; `<blockquote>` lines get `> ` (so quoted
//!   replies stay recognisable); images show their `alt` text;
//! - whitespace collapses as in a browser, except inside `<pre>`.
//!
//! Link targets (`href`) are collected with the place in the text where they appear, so links
//! can be listed in reading order. No tree is built: rendering a 50 KB mail takes well under a
//! millisecond.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::ops::Range;

use html5gum::{Emitter, Error, State, Tokenizer};

/// Clean text, and the `href`s with the byte offset of the line they appear on.
#[derive(Debug, Default)]
pub(crate) struct Rendered {
    pub text: String,
    pub hrefs: Vec<(usize, String)>,
}

/// Renders HTML as plain text. Never fails: any input is some HTML.
pub(crate) fn html_to_text(html: &str) -> Rendered {
    // A byte-order mark is not content (html5ever's tokenizer dropped it too).
    let html = html.strip_prefix('\u{feff}').unwrap_or(html);
    let mut layout = Layout::default();
    let sink = Sink {
        layout: &mut layout,
        tag: TagBuf::default(),
        last_start_tag: Vec::new(),
        text: Vec::new(),
    };
    // The sink never yields tokens: it lays the text out as the tokenizer calls it. Reading a
    // `&str` cannot fail.
    let Ok(()) = Tokenizer::new_with_emitter(html, sink).finish();
    layout.finish()
}

/// The tag being read: name, kind and the attributes, in one reused buffer.
#[derive(Default)]
struct TagBuf {
    name: Vec<u8>,
    start: bool,
    self_closing: bool,
    /// Attribute names and values, as ranges into `bytes`.
    attrs: Vec<(Range<usize>, Range<usize>)>,
    bytes: Vec<u8>,
}

impl TagBuf {
    fn reset(&mut self, start: bool) {
        self.name.clear();
        self.start = start;
        self.self_closing = false;
        self.attrs.clear();
        self.bytes.clear();
    }

    /// The value of the first attribute with this name (later duplicates do not count, as in
    /// the HTML tokenizer).
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| &self.bytes[n.clone()] == name.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(&self.bytes[v.clone()]).ok())
    }
}

/// The tokenizer's emitter: keeps the current tag and hands tags and text to the layout.
struct Sink<'l> {
    layout: &'l mut Layout,
    tag: TagBuf,
    last_start_tag: Vec<u8>,
    /// Text since the last tag, laid out in one go when the next tag (or the end) comes.
    text: Vec<u8>,
}

impl Sink<'_> {
    /// Lays out the text collected since the last tag.
    fn flush_text(&mut self) {
        if self.text.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.text);
        self.text_utf8(&text);
        // Keep the buffer for the next text.
        self.text = text;
        self.text.clear();
    }

    fn text_utf8(&mut self, bytes: &[u8]) {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.layout.text_without_nul(text),
            Err(err) => {
                let (valid, rest) = bytes.split_at(err.valid_up_to());
                // Valid by construction.
                if let Ok(text) = std::str::from_utf8(valid) {
                    self.layout.text_without_nul(text);
                }
                // Only invalid input could get here, and a `&str` is valid UTF-8.
                self.layout.text_without_nul("\u{fffd}");
                let bad = err.error_len().unwrap_or(rest.len());
                self.text_utf8(&rest[bad..]);
            }
        }
    }
}

impl Emitter for Sink<'_> {
    type Token = Infallible;

    fn set_last_start_tag(&mut self, last_start_tag: Option<&[u8]>) {
        self.last_start_tag.clear();
        self.last_start_tag
            .extend_from_slice(last_start_tag.unwrap_or_default());
    }

    fn emit_eof(&mut self) {
        self.flush_text();
    }

    fn emit_error(&mut self, _error: Error) {}

    fn should_emit_errors(&mut self) -> bool {
        false
    }

    fn pop_token(&mut self) -> Option<Infallible> {
        None
    }

    fn emit_string(&mut self, s: &[u8]) {
        // The layout does not depend on how text is cut into chunks.
        self.text.extend_from_slice(s);
    }

    fn init_start_tag(&mut self) {
        self.tag.reset(true);
    }

    fn init_end_tag(&mut self) {
        self.tag.reset(false);
    }

    fn init_comment(&mut self) {}

    fn emit_current_tag(&mut self) -> Option<State> {
        self.flush_text();
        if self.tag.start {
            self.last_start_tag.clear();
            self.last_start_tag.extend_from_slice(&self.tag.name);
        }
        let tag = &self.tag;
        // Tag names are ASCII-lowercased input: valid UTF-8.
        let name = std::str::from_utf8(&tag.name).unwrap_or("\u{fffd}");
        self.layout.tag(name, tag)
    }

    fn emit_current_comment(&mut self) {}

    fn emit_current_doctype(&mut self) {}

    fn set_self_closing(&mut self) {
        self.tag.self_closing = true;
    }

    fn set_force_quirks(&mut self) {}

    fn push_tag_name(&mut self, s: &[u8]) {
        self.tag.name.extend_from_slice(s);
    }

    fn push_comment(&mut self, _s: &[u8]) {}

    fn push_doctype_name(&mut self, _s: &[u8]) {}

    fn init_doctype(&mut self) {}

    fn init_attribute(&mut self) {
        let at = self.tag.bytes.len();
        self.tag.attrs.push((at..at, at..at));
    }

    fn push_attribute_name(&mut self, s: &[u8]) {
        self.tag.bytes.extend_from_slice(s);
        let end = self.tag.bytes.len();
        if let Some((name, value)) = self.tag.attrs.last_mut() {
            name.end = end;
            *value = end..end;
        }
    }

    fn push_attribute_value(&mut self, s: &[u8]) {
        self.tag.bytes.extend_from_slice(s);
        if let Some((_, value)) = self.tag.attrs.last_mut() {
            value.end = self.tag.bytes.len();
        }
    }

    fn set_doctype_public_identifier(&mut self, _value: &[u8]) {}

    fn set_doctype_system_identifier(&mut self, _value: &[u8]) {}

    fn push_doctype_public_identifier(&mut self, _s: &[u8]) {}

    fn push_doctype_system_identifier(&mut self, _s: &[u8]) {}

    fn current_is_appropriate_end_tag_token(&mut self) -> bool {
        !self.tag.start && !self.last_start_tag.is_empty() && self.tag.name == self.last_start_tag
    }
}

/// Elements without an end tag.
const VOID: [&str; 14] = [
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

/// Lays tokens out as lines, written straight into the normalized text.
#[derive(Default)]
struct Layout {
    /// The finished lines, normalized.
    out: TextBuilder,
    /// The `href`s of finished lines, with the offset of their line in `out`.
    hrefs: Vec<(usize, String)>,
    /// The last finished line had text (before normalizing); an empty line is a blank line.
    last_line_filled: bool,
    line: String,
    line_hrefs: Vec<String>,
    /// Whitespace was seen since the last character of the line.
    pending_space: bool,
    /// A list marker or heading prefix to write before the next character (empty: none).
    pending_prefix: String,
    /// Inside `<script>`, `<style>`, `<title>`, `<template>`, `<svg>` (counted).
    skip_depth: usize,
    /// Inside an element styled `display:none`: its name and how deep same-named elements nest.
    hidden: Option<(String, usize)>,
    pre_depth: usize,
    quote_depth: usize,
    /// One entry per open list: `None` for `<ul>`, the next number for `<ol>`.
    lists: Vec<Option<i64>>,
    /// One entry per open table: cells opened in the current row.
    cells: Vec<usize>,
}

impl Layout {
    /// Lays out a start or end tag; returns the tokenizer state its content needs, if any.
    fn tag(&mut self, name: &str, tag: &TagBuf) -> Option<State> {
        let start = tag.start;

        if let Some((hidden, depth)) = &mut self.hidden {
            if hidden.as_str() == name && !VOID.contains(&name) && !tag.self_closing {
                if start {
                    *depth += 1;
                } else {
                    *depth -= 1;
                    if *depth == 0 {
                        self.hidden = None;
                    }
                }
            }
            return raw_kind(name, start);
        }
        if start
            && !tag.attrs.is_empty()
            && is_hidden(tag)
            && !VOID.contains(&name)
            && !tag.self_closing
        {
            self.hidden = Some((name.to_string(), 1));
            return raw_kind(name, start);
        }

        match name {
            "script" | "style" | "title" | "template" | "svg" | "textarea" => {
                if start {
                    self.skip_depth += 1;
                } else {
                    self.skip_depth = self.skip_depth.saturating_sub(1);
                }
                return raw_kind(name, start);
            }
            _ if self.skip_depth > 0 => return None,
            "br" if start => self.end_line(true),
            "p" | "table" | "hr" | "dl" | "figure" => self.paragraph(),
            "div" | "section" | "article" | "header" | "footer" | "nav" | "aside" | "main"
            | "address" | "center" | "form" | "fieldset" | "caption" | "dt" | "dd"
            | "figcaption" | "tbody" | "thead" | "tfoot" => self.end_line(false),
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                self.paragraph();
                if start {
                    let level = name[1..].parse::<usize>().unwrap_or(1);
                    self.pending_prefix.clear();
                    for _ in 0..level {
                        self.pending_prefix.push('#');
                    }
                    self.pending_prefix.push(' ');
                }
            }
            "ul" | "ol" => {
                if self.lists.is_empty() {
                    self.paragraph();
                } else {
                    self.end_line(false);
                }
                if start {
                    let first = tag
                        .attribute("start")
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(1);
                    self.lists.push((name == "ol").then_some(first));
                } else {
                    self.lists.pop();
                }
            }
            "li" if start => {
                self.end_line(false);
                let prefix = &mut self.pending_prefix;
                prefix.clear();
                for _ in 1..self.lists.len() {
                    prefix.push_str("  ");
                }
                match self.lists.last_mut() {
                    Some(Some(n)) => {
                        *n += 1;
                        // Writing to a String cannot fail.
                        let _ = write!(prefix, "{}. ", *n - 1);
                    }
                    _ => prefix.push_str("* "),
                }
            }
            "li" => self.end_line(false),
            "blockquote" => {
                self.paragraph();
                if start {
                    self.quote_depth += 1;
                } else {
                    self.quote_depth = self.quote_depth.saturating_sub(1);
                }
            }
            "pre" => {
                self.paragraph();
                if start {
                    self.pre_depth += 1;
                } else {
                    self.pre_depth = self.pre_depth.saturating_sub(1);
                }
            }
            "tr" => {
                self.end_line(false);
                if let Some(cells) = self.cells.last_mut() {
                    *cells = 0;
                }
            }
            "td" | "th" if start => {
                if let Some(cells) = self.cells.last_mut() {
                    if *cells > 0 && !self.line.is_empty() {
                        self.line.push('\t');
                        self.pending_space = false;
                    }
                    *cells += 1;
                }
            }
            "a" if start => {
                if let Some(href) = tag.attribute("href") {
                    let href = href.trim();
                    if !href.is_empty() {
                        self.line_hrefs.push(href.to_string());
                    }
                }
            }
            "img" => {
                if let Some(alt) = tag.attribute("alt") {
                    self.text(alt);
                }
            }
            _ => {}
        }
        if name == "table" {
            if start {
                self.cells.push(0);
            } else {
                self.cells.pop();
            }
        }
        None
    }

    /// Text from the tokenizer, whose U+0000 characters in text are not content (html5ever
    /// gave them as separate tokens, which were not laid out).
    fn text_without_nul(&mut self, text: &str) {
        if !text.contains('\0') {
            self.text(text);
            return;
        }
        for part in text.split('\0') {
            self.text(part);
        }
    }

    fn text(&mut self, text: &str) {
        if self.skip_depth > 0 || self.hidden.is_some() {
            return;
        }
        if self.pre_depth > 0 {
            let mut parts = text.split('\n');
            if let Some(first) = parts.next() {
                self.push_str(first);
            }
            for part in parts {
                self.end_line(true);
                self.push_str(part);
            }
            return;
        }
        // HTML collapses ASCII whitespace only; a non-breaking space is content. ASCII bytes
        // never occur inside a multi-byte character, so scanning bytes is safe.
        let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c');
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if is_space(bytes[i]) {
                self.pending_space = true;
                i += 1;
                continue;
            }
            // A run of words with single spaces between them is already collapsed: it is
            // copied as it stands (a word never ends in a space, so each of those spaces would
            // be written anyway).
            let run_start = i;
            loop {
                while i < bytes.len() && !is_space(bytes[i]) {
                    i += 1;
                }
                if bytes.get(i) == Some(&b' ') && bytes.get(i + 1).is_some_and(|&b| !is_space(b)) {
                    i += 1;
                } else {
                    break;
                }
            }
            if self.pending_space && self.has_content() {
                self.line.push(' ');
            }
            self.pending_space = false;
            self.start_content();
            self.line.push_str(&text[run_start..i]);
        }
    }

    fn push_str(&mut self, text: &str) {
        if !text.is_empty() {
            self.start_content();
            self.line.push_str(text);
        }
    }

    /// Writes the quote prefix and any pending marker before the first character of a line.
    fn start_content(&mut self) {
        if self.line.is_empty() {
            for _ in 0..self.quote_depth {
                self.line.push_str("> ");
            }
        }
        if !self.pending_prefix.is_empty() {
            self.line.push_str(&self.pending_prefix);
            self.pending_prefix.clear();
        }
    }

    fn has_content(&self) -> bool {
        !self.line.is_empty() && !self.line.ends_with(['\t', ' '])
    }

    /// Ends the current line; `force` also when it is empty (`<br>`: an empty line is a blank).
    fn end_line(&mut self, force: bool) {
        if force || !self.line.is_empty() {
            self.write_line();
        }
        self.pending_space = false;
    }

    /// Moves the current line and its hrefs into the text.
    fn write_line(&mut self) {
        let offset = self.out.push_line(&self.line);
        self.hrefs
            .extend(self.line_hrefs.drain(..).map(|href| (offset, href)));
        self.last_line_filled = !self.line.is_empty();
        self.line.clear();
    }

    /// Ends the current line and leaves a blank line.
    fn paragraph(&mut self) {
        self.end_line(false);
        if self.last_line_filled {
            // The blank line carries no hrefs: those of an empty line wait for its text.
            self.out.push_line("");
            self.last_line_filled = false;
        }
    }

    fn finish(mut self) -> Rendered {
        self.end_line(false);
        if !self.line_hrefs.is_empty() {
            self.write_line();
        }
        Rendered {
            text: self.out.finish(),
            hrefs: self.hrefs,
        }
    }
}

/// The tokenizer state an element's content needs (as the tree builder would ask for).
fn raw_kind(name: &str, start: bool) -> Option<State> {
    if !start {
        return None;
    }
    match name {
        "script" => Some(State::ScriptData),
        "style" | "xmp" | "iframe" | "noembed" | "noframes" => Some(State::RawText),
        "title" | "textarea" => Some(State::RcData),
        "plaintext" => Some(State::PlainText),
        _ => None,
    }
}

/// `style="display: none"` (any spacing or case) or the `hidden` attribute.
fn is_hidden(tag: &TagBuf) -> bool {
    tag.attribute("hidden").is_some()
        || tag.attribute("style").is_some_and(|style| {
            let style: String = style.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            style.to_ascii_lowercase().contains("display:none")
        })
}

/// Normalizes a plain-text body: line endings, invisible characters, trailing spaces, runs of
/// blank lines (kept to one), leading and trailing blank lines.
pub(crate) fn plain_to_text(text: &str) -> String {
    let mut builder = TextBuilder::default();
    for line in text.split('\n') {
        builder.push_line(line.strip_suffix('\r').unwrap_or(line));
    }
    builder.finish()
}

/// Builds normalized text line by line.
#[derive(Default)]
struct TextBuilder {
    out: String,
    /// A blank line was seen after some text; written only if more text follows.
    pending_blank: bool,
}

impl TextBuilder {
    /// Appends a line and returns the byte offset where its text starts (or would start).
    fn push_line(&mut self, raw: &str) -> usize {
        let mark = self.out.len();
        if !self.out.is_empty() {
            self.out.push('\n');
            if self.pending_blank {
                self.out.push('\n');
            }
        }
        let offset = self.out.len();
        push_clean(&mut self.out, raw);
        let trimmed = self.out[offset..].trim_end().len();
        self.out.truncate(offset + trimmed);
        if trimmed == 0 {
            // A blank line: written only if more text follows.
            self.out.truncate(mark);
            self.pending_blank = !self.out.is_empty();
            return self.out.len();
        }
        self.pending_blank = false;
        offset
    }

    fn finish(self) -> String {
        self.out
    }
}

/// Non-breaking and other fixed spaces become spaces (tabs stay); zero-width characters and
/// soft hyphens go.
fn push_clean(out: &mut String, raw: &str) {
    // The characters to change are `\r` and characters whose UTF-8 starts with 0xC2 (U+00A0,
    // U+00AD), 0xE2 (U+2007 … U+2060) or 0xEF (U+FEFF): most lines have none.
    let bytes = raw.as_bytes();
    let first = match (
        memchr::memchr3(0xc2, 0xe2, 0xef, bytes),
        memchr::memchr(b'\r', bytes),
    ) {
        (None, None) => {
            out.push_str(raw);
            return;
        }
        (Some(a), Some(b)) => a.min(b),
        (Some(i), None) | (None, Some(i)) => i,
    };
    out.push_str(&raw[..first]);
    let raw = &raw[first..];
    let mut kept = 0;
    for (i, c) in raw.char_indices() {
        let replacement = match c {
            '\u{a0}' | '\u{2007}' | '\u{202f}' => " ",
            '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{ad}' | '\r' => "",
            _ => continue,
        };
        out.push_str(&raw[kept..i]);
        out.push_str(replacement);
        kept = i + c.len_utf8();
    }
    out.push_str(&raw[kept..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_html_without_style_script_or_head() {
        let html = "<html><head><title>T</title><style>p{color:red}</style></head><body>\
            <script>alert(1)</script><p>Caf&eacute; &amp; more&nbsp;here</p>\
            <ul><li>one</li><li>two</li></ul>\
            <ol><li>first</li></ol>\
            <table><tr><td>Item</td><td>Price</td></tr><tr><td>Tea</td><td>4.50</td></tr></table>\
            <p>See <a href=\"https://example.com/a\">the <b>site</b></a>.</p></body></html>";
        let rendered = html_to_text(html);
        assert_eq!(
            rendered.text,
            "Café & more here\n\n* one\n* two\n\n1. first\n\nItem\tPrice\nTea\t4.50\n\nSee the site."
        );
        let see = rendered.text.find("See").expect("line present");
        assert_eq!(
            rendered.hrefs,
            vec![(see, "https://example.com/a".to_string())]
        );
    }

    #[test]
    fn normalizes_plain_text() {
        assert_eq!(
            plain_to_text("\r\n\r\nHi\u{a0}there  \r\n\r\n\r\n\u{200b}\r\nBye\r\n\r\n"),
            "Hi there\n\nBye"
        );
    }
}
