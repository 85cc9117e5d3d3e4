//! HTML and plain text → clean plain text, one path for mail bodies and HTML documents.
//!
//! HTML goes through html2text (html5ever, a spec-compliant parser): entities are decoded,
//! `<head>`, `<style>` and `<script>` are dropped, lists keep their `* ` / `1. ` markers,
//! `<blockquote>` lines get `> ` (so quoted replies stay recognisable), table cells are laid out
//! without borders. Link targets (`href`) are collected with the place in the text where they
//! appear, so links can be listed in reading order.

use html2text::render::RichAnnotation;

/// Lines are never wrapped below this width: a mail's lines (and the URLs in them) stay whole.
const RENDER_WIDTH: usize = 10_000;

/// Clean text, and the `href`s with the byte offset of the line they appear on.
#[derive(Debug, Default)]
pub(crate) struct Rendered {
    pub text: String,
    pub hrefs: Vec<(usize, String)>,
}

/// Renders HTML as plain text. Never fails: should html2text refuse the input, the tags are
/// stripped instead so that the caller still gets the words.
pub(crate) fn html_to_text(html: &str) -> Rendered {
    let lines = html2text::config::rich()
        .no_table_borders()
        .no_link_wrapping()
        .allow_width_overflow()
        .lines_from_read(html.as_bytes(), RENDER_WIDTH);
    let lines = match lines {
        Ok(lines) => lines,
        Err(err) => {
            tracing::debug!(error = %err, "html2text refused the HTML; stripping tags instead");
            return Rendered {
                text: plain_to_text(&strip_tags(html)),
                hrefs: Vec::new(),
            };
        }
    };

    let mut builder = TextBuilder::default();
    let mut hrefs = Vec::new();
    let mut line = String::new();
    for tagged in lines {
        line.clear();
        let mut line_hrefs: Vec<&str> = Vec::new();
        for piece in tagged.tagged_strings() {
            line.push_str(&piece.s);
            for annotation in &piece.tag {
                if let RichAnnotation::Link(url) = annotation {
                    if line_hrefs.last() != Some(&url.as_str()) {
                        line_hrefs.push(url);
                    }
                }
            }
        }
        let offset = builder.push_line(&line);
        hrefs.extend(
            line_hrefs
                .into_iter()
                .map(|url| (offset, url.trim().to_string())),
        );
    }
    Rendered {
        text: builder.finish(),
        hrefs,
    }
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
        let cleaned = clean_line(raw);
        if cleaned.is_empty() {
            self.pending_blank = !self.out.is_empty();
            return self.out.len();
        }
        if !self.out.is_empty() {
            self.out.push('\n');
            if self.pending_blank {
                self.out.push('\n');
            }
        }
        self.pending_blank = false;
        let offset = self.out.len();
        self.out.push_str(&cleaned);
        offset
    }

    fn finish(self) -> String {
        self.out
    }
}

/// Non-breaking and other fixed spaces become spaces (tabs stay); zero-width characters and soft hyphens go;
/// trailing whitespace goes.
fn clean_line(raw: &str) -> String {
    let mut line = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '\u{a0}' | '\u{2007}' | '\u{202f}' => line.push(' '),
            '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{ad}' | '\r' => {}
            c => line.push(c),
        }
    }
    line.truncate(line.trim_end().len());
    line
}

/// Last resort when html2text fails: drop everything between `<` and `>`.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
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
            "Café & more here\n* one\n* two\n1. first\n\nItem Price\nTea  4.50\n\nSee the site."
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
