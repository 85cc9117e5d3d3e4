//! `document/extract`: the text of a PDF, DOCX, HTML or plain-text document.
//!
//! Each format goes through a crate made for it: pdf-extract (on lopdf) for PDF, zip +
//! quick-xml for DOCX (`word/document.xml`), html5gum (the WHATWG tokenizer) for HTML,
//! encoding_rs for text in other charsets. Caps: [`MAX_DOCUMENT_BYTES`] on the input, [`EXTRACT_TIMEOUT`] on the work (see
//! [`extract_with_timeout`]). A broken or unsupported document is an [`ExtractError`], never a
//! panic: pdf-extract panics on some malformed PDFs, so it runs inside `catch_unwind`.

use std::io::{Cursor, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use encoding_rs::{Encoding, UTF_8, WINDOWS_1252};
use quick_xml::events::Event;
use quick_xml::Reader;
use serde::Serialize;

use super::html::{html_to_text, plain_to_text};
use super::input::DocumentInput;

/// The largest document taken: 25 MiB (Graph's own limit for a file attachment added in one
/// request is lower; large attachments arrive through upload sessions of up to 150 MB, which
/// are not worth extracting in line).
pub const MAX_DOCUMENT_BYTES: usize = 25 * 1024 * 1024;

/// How long one extraction may take before it is given up.
pub const EXTRACT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most `word/document.xml` may inflate to: a zip bomb stops here.
const MAX_DOCX_XML_BYTES: u64 = 200 * 1024 * 1024;

const DOCX_MEDIA_TYPE: &str =
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

/// Why a document gave no text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// Over [`MAX_DOCUMENT_BYTES`] (HTTP 413).
    #[error("the document is {size} bytes; the limit is {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// A kind of document this service does not read (HTTP 422 `unsupported_document`).
    #[error("unsupported document type {content_type:?}: {reason}")]
    Unsupported {
        content_type: String,
        reason: String,
    },
    /// The document claims a supported kind but cannot be read (HTTP 422 `broken_document`).
    #[error("broken {kind} document: {reason}")]
    Broken { kind: &'static str, reason: String },
    /// The extraction ran over its time cap (HTTP 422 `extraction_timeout`).
    #[error("text extraction did not finish within {} s", .0.as_secs())]
    Timeout(Duration),
}

impl ExtractError {
    /// The snake_case code the HTTP API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "document_too_large",
            Self::Unsupported { .. } => "unsupported_document",
            Self::Broken { .. } => "broken_document",
            Self::Timeout(_) => "extraction_timeout",
        }
    }

    fn broken(kind: DocumentKind, reason: impl std::fmt::Display) -> Self {
        Self::Broken {
            kind: kind.label(),
            reason: reason.to_string(),
        }
    }
}

/// The kinds of document that have text to extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    Pdf,
    Docx,
    Html,
    Text,
}

impl DocumentKind {
    /// The kind from the content type; for a missing or generic one (`application/octet-stream`)
    /// from the file name's extension, then from the first bytes (`%PDF-`, a zip).
    pub fn detect(content_type: &str, name: Option<&str>, bytes: &[u8]) -> Option<Self> {
        let media_type = media_type(content_type);
        match media_type.as_str() {
            "application/pdf" | "application/x-pdf" => Some(Self::Pdf),
            DOCX_MEDIA_TYPE => Some(Self::Docx),
            "text/html" | "application/xhtml+xml" => Some(Self::Html),
            "application/json" | "application/xml" => Some(Self::Text),
            t if t.starts_with("text/") => Some(Self::Text),
            "" | "application/octet-stream" | "binary/octet-stream" => {
                Self::from_extension(name).or_else(|| Self::sniff(bytes))
            }
            _ => None,
        }
    }

    fn from_extension(name: Option<&str>) -> Option<Self> {
        let extension = name?.rsplit_once('.')?.1.to_ascii_lowercase();
        match extension.as_str() {
            "pdf" => Some(Self::Pdf),
            "docx" => Some(Self::Docx),
            "html" | "htm" => Some(Self::Html),
            "txt" | "csv" | "md" | "log" | "json" | "xml" => Some(Self::Text),
            _ => None,
        }
    }

    fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"%PDF-") {
            Some(Self::Pdf)
        } else if bytes.starts_with(b"PK\x03\x04") {
            Some(Self::Docx)
        } else {
            None
        }
    }

    /// The media type reported for this kind when the caller gave none.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Docx => DOCX_MEDIA_TYPE,
            Self::Html => "text/html",
            Self::Text => "text/plain",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Pdf => "PDF",
            Self::Docx => "DOCX",
            Self::Html => "HTML",
            Self::Text => "text",
        }
    }
}

/// `text/html; charset=utf-8` → `text/html`.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The result of `document/extract` (SPEC §3.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Extracted {
    /// The media type as given (without parameters), or the detected one when the given one was
    /// empty or `application/octet-stream`.
    pub content_type: String,
    pub text: String,
    /// The number of pages, for PDF.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages: Option<u32>,
}

/// Extracts the text of a document, synchronously. Prefer [`extract_with_timeout`] on a
/// runtime: a large PDF can take a while.
pub fn extract(content_type: &str, bytes: &[u8]) -> Result<Extracted, ExtractError> {
    extract_named(content_type, None, bytes)
}

/// Like [`extract`], with the file name as a hint for a generic content type.
pub fn extract_named(
    content_type: &str,
    name: Option<&str>,
    bytes: &[u8],
) -> Result<Extracted, ExtractError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(ExtractError::TooLarge {
            size: bytes.len(),
            max: MAX_DOCUMENT_BYTES,
        });
    }
    let kind = DocumentKind::detect(content_type, name, bytes).ok_or_else(|| {
        ExtractError::Unsupported {
            content_type: content_type.to_string(),
            reason: "text can be extracted from PDF, DOCX, HTML and plain text".to_string(),
        }
    })?;
    let charset = content_type_charset(content_type);
    let given = media_type(content_type);
    let content_type = match given.as_str() {
        "" | "application/octet-stream" | "binary/octet-stream" => kind.media_type().to_string(),
        _ => given,
    };
    let (text, pages) = match kind {
        DocumentKind::Pdf => {
            let (text, pages) = pdf_text(bytes)?;
            (text, Some(pages))
        }
        DocumentKind::Docx => (docx_text(bytes)?, None),
        DocumentKind::Html => (html_to_text(&decode_text(charset, bytes)).text, None),
        DocumentKind::Text => (plain_to_text(&decode_text(charset, bytes)), None),
    };
    Ok(Extracted {
        content_type,
        text,
        pages,
    })
}

/// [`extract_named`] on a blocking thread, given up after `timeout`.
///
/// A blocking thread cannot be stopped: after a timeout the extraction runs on to its end in
/// the background and its result is dropped. The size cap bounds how long that can be.
pub async fn extract_with_timeout(
    document: DocumentInput,
    timeout: Duration,
) -> Result<Extracted, ExtractError> {
    if document.bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(ExtractError::TooLarge {
            size: document.bytes.len(),
            max: MAX_DOCUMENT_BYTES,
        });
    }
    run_capped(timeout, move || {
        extract_named(
            &document.content_type,
            document.name.as_deref(),
            &document.bytes,
        )
    })
    .await
}

/// Runs `work` on a blocking thread and gives up waiting after `timeout`.
async fn run_capped<T: Send + 'static>(
    timeout: Duration,
    work: impl FnOnce() -> Result<T, ExtractError> + Send + 'static,
) -> Result<T, ExtractError> {
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(result)) => result,
        // The task panicked outside the PDF guard, or the runtime is shutting down.
        Ok(Err(join)) => Err(ExtractError::Broken {
            kind: "unknown",
            reason: join.to_string(),
        }),
        Err(_) => Err(ExtractError::Timeout(timeout)),
    }
}

// ---------------------------------------------------------------------------------------------
// Text and HTML: charsets
// ---------------------------------------------------------------------------------------------

/// The `charset` parameter of a content type, if any.
fn content_type_charset(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// Bytes → text: a byte-order mark wins, then the declared charset, then UTF-8 if the bytes are
/// valid UTF-8, else Windows-1252 (what unlabeled 8-bit mail text almost always is).
fn decode_text(charset: Option<&str>, bytes: &[u8]) -> String {
    if let Some((encoding, bom)) = Encoding::for_bom(bytes) {
        return encoding
            .decode_without_bom_handling(&bytes[bom..])
            .0
            .into_owned();
    }
    if let Some(encoding) = charset.and_then(|c| Encoding::for_label(c.as_bytes())) {
        return encoding.decode_without_bom_handling(bytes).0.into_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => {
            let encoding = if bytes.is_ascii() {
                UTF_8
            } else {
                WINDOWS_1252
            };
            encoding.decode_without_bom_handling(bytes).0.into_owned()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PDF
// ---------------------------------------------------------------------------------------------

/// The text of every page (pages separated by a blank line) and the number of pages.
fn pdf_text(bytes: &[u8]) -> Result<(String, u32), ExtractError> {
    let pages = catch_unwind(AssertUnwindSafe(|| {
        pdf_extract::extract_text_from_mem_by_pages(bytes)
    }))
    .map_err(|panic| {
        let detail = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unexpected structure".to_string());
        ExtractError::broken(
            DocumentKind::Pdf,
            format!("the PDF reader gave up: {detail}"),
        )
    })?
    .map_err(|err| ExtractError::broken(DocumentKind::Pdf, err))?;
    let count = u32::try_from(pages.len()).unwrap_or(u32::MAX);
    let text = pages
        .iter()
        .map(|page| plain_to_text(page))
        .filter(|page| !page.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    Ok((text, count))
}

// ---------------------------------------------------------------------------------------------
// DOCX
// ---------------------------------------------------------------------------------------------

/// The text of the main document part: paragraphs on their own lines, table cells separated by
/// tabs and rows by line breaks, `w:tab` as a tab, `w:br` as a line break. Deleted text
/// (tracked changes), field codes, headers, footers and comments are left out.
fn docx_text(bytes: &[u8]) -> Result<String, ExtractError> {
    let broken = |reason: String| ExtractError::broken(DocumentKind::Docx, reason);
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|err| broken(format!("not a valid zip archive: {err}")))?;
    let mut part = archive
        .by_name("word/document.xml")
        .map_err(|err| broken(format!("no word/document.xml: {err}")))?;
    let mut xml = Vec::new();
    (&mut part)
        .take(MAX_DOCX_XML_BYTES + 1)
        .read_to_end(&mut xml)
        .map_err(|err| broken(format!("word/document.xml cannot be inflated: {err}")))?;
    if xml.len() as u64 > MAX_DOCX_XML_BYTES {
        return Err(broken(format!(
            "word/document.xml inflates to more than {MAX_DOCX_XML_BYTES} bytes"
        )));
    }
    let xml =
        String::from_utf8(xml).map_err(|_| broken("word/document.xml is not UTF-8".to_string()))?;
    docx_xml_text(&xml)
        .map_err(|err| broken(format!("word/document.xml is not well-formed: {err}")))
}

fn docx_xml_text(xml: &str) -> Result<String, quick_xml::Error> {
    let mut reader = Reader::from_str(xml);
    let mut out = String::new();
    let mut in_text = false;
    let mut cell_depth = 0usize;
    loop {
        match reader.read_event()? {
            Event::Start(e) => match e.local_name().as_ref() {
                b"t" => in_text = true,
                b"tc" => cell_depth += 1,
                b"tab" => out.push('\t'),
                b"br" | b"cr" => out.push('\n'),
                _ => {}
            },
            Event::Empty(e) => match e.local_name().as_ref() {
                b"tab" => out.push('\t'),
                b"br" | b"cr" => out.push('\n'),
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                b"t" => in_text = false,
                // Inside a cell, paragraphs are joined by a space to keep the row on one line.
                b"p" if cell_depth > 0 => out.push(' '),
                b"p" => out.push('\n'),
                b"tc" => {
                    cell_depth = cell_depth.saturating_sub(1);
                    trim_end_spaces(&mut out);
                    out.push('\t');
                }
                b"tr" => {
                    trim_end_spaces(&mut out);
                    if out.ends_with('\t') {
                        out.pop();
                    }
                    out.push('\n');
                }
                _ => {}
            },
            Event::Text(t) if in_text => out.push_str(&t.xml10_content()?),
            Event::CData(t) if in_text => out.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(r) if in_text => {
                if let Some(c) = r.resolve_char_ref()? {
                    out.push(c);
                } else {
                    out.push_str(match r.decode()?.as_ref() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        _ => "",
                    });
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(plain_to_text(&out))
}

fn trim_end_spaces(out: &mut String) {
    out.truncate(out.trim_end_matches(' ').len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_kinds_by_type_name_and_bytes() {
        assert_eq!(
            DocumentKind::detect("Application/PDF", None, b""),
            Some(DocumentKind::Pdf)
        );
        assert_eq!(
            DocumentKind::detect("text/csv; charset=utf-8", None, b""),
            Some(DocumentKind::Text)
        );
        assert_eq!(
            DocumentKind::detect("application/octet-stream", Some("Report.DOCX"), b""),
            Some(DocumentKind::Docx)
        );
        assert_eq!(
            DocumentKind::detect("", None, b"%PDF-1.4"),
            Some(DocumentKind::Pdf)
        );
        assert_eq!(
            DocumentKind::detect("image/png", Some("a.pdf"), b"%PDF-"),
            None
        );
    }

    #[test]
    fn extracts_text_in_its_charset() {
        let latin1 = extract("text/plain; charset=ISO-8859-1", b"Gr\xfc\xdfe\r\n").expect("text");
        assert_eq!(
            latin1,
            Extracted {
                content_type: "text/plain".into(),
                text: "Grüße".into(),
                pages: None
            }
        );
        assert_eq!(
            extract("text/plain", b"\xef\xbb\xbfhi").expect("bom").text,
            "hi"
        );
        assert_eq!(
            extract("text/plain", b"caf\xe9").expect("1252").text,
            "café"
        );
        let html = extract("text/html", b"<p>A &amp; B</p><script>x()</script>").expect("html");
        assert_eq!(html.text, "A & B");
    }

    #[test]
    fn refuses_unsupported_and_oversized_documents() {
        let err = extract("application/msword", b"\xd0\xcf\x11\xe0").expect_err("unsupported");
        assert_eq!(err.code(), "unsupported_document");
        let big = vec![b'a'; MAX_DOCUMENT_BYTES + 1];
        assert_eq!(
            extract("text/plain", &big),
            Err(ExtractError::TooLarge {
                size: MAX_DOCUMENT_BYTES + 1,
                max: MAX_DOCUMENT_BYTES
            })
        );
    }

    #[test]
    fn broken_pdf_and_docx_are_typed_errors() {
        let pdf = extract("application/pdf", b"%PDF-1.7\nnot really").expect_err("broken");
        assert_eq!(pdf.code(), "broken_document");
        assert!(pdf.to_string().starts_with("broken PDF document"), "{pdf}");
        let docx = extract(DOCX_MEDIA_TYPE, b"PK\x03\x04garbage").expect_err("broken");
        assert!(
            docx.to_string()
                .starts_with("broken DOCX document: not a valid zip"),
            "{docx}"
        );
    }

    #[test]
    fn reads_docx_markup() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>
<w:p><w:r><w:t>Fish &amp; </w:t></w:r><w:r><w:t xml:space="preserve">chips&#33;</w:t></w:r></w:p>
<w:p><w:r><w:t>a</w:t><w:tab/><w:t>b</w:t><w:br/><w:t>c</w:t><w:delText>gone</w:delText></w:r></w:p>
<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Item</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Price</w:t></w:r></w:p></w:tc></w:tr>
<w:tr><w:tc><w:p><w:r><w:t>Tea</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>4.50</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
</w:body></w:document>"#;
        assert_eq!(
            docx_xml_text(xml).expect("well-formed"),
            "Fish & chips!\na\tb\nc\nItem\tPrice\nTea\t4.50"
        );
    }

    #[tokio::test]
    async fn the_async_wrapper_applies_the_time_cap() {
        let doc = DocumentInput {
            content_type: "text/plain".into(),
            name: None,
            bytes: b"hello".to_vec(),
        };
        let ok = extract_with_timeout(doc.clone(), EXTRACT_TIMEOUT)
            .await
            .expect("fast");
        assert_eq!(ok.text, "hello");
        let slow = run_capped(Duration::from_millis(20), || {
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        });
        assert_eq!(
            slow.await,
            Err(ExtractError::Timeout(Duration::from_millis(20)))
        );
    }
}
