//! The one entry point processing calls: a message and its attachments' bytes in, the
//! `primitives` and `attachments` of a delivered event (SPEC §4) out.

use serde::Serialize;
use serde_json::{json, Value};

use super::classify::classify_parsed;
use super::extract::{extract_with_timeout, EXTRACT_TIMEOUT};
use super::input::{DocumentInput, EmailInput};
use super::parse::{parse_rendered, render_body};

/// The most characters of an attachment's text that ride along in an event; the rest is cut and
/// `text_truncated` is set. 100,000 characters is about 40 pages of prose: enough for n8n to
/// work on, small enough to keep events a sensible size.
pub const MAX_ATTACHMENT_TEXT_CHARS: usize = 100_000;

/// Bodies up to this size are parsed and classified on the async worker that holds the event
/// (about 0.1 ms for a 5 KB HTML mail): handing so little to a blocking thread and back costs
/// two thread wake-ups, a large share of the work itself. Larger bodies go to the blocking pool,
/// so that a long mail never holds an async worker.
pub const INLINE_BODY_BYTES: usize = 8 * 1024;

/// One attachment as processing fetched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentBytes {
    /// Graph's attachment id.
    pub id: String,
    pub name: String,
    /// As Graph reports it (`contentType`).
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// One entry of `attachments` in a delivered event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttachmentText {
    pub id: String,
    pub name: String,
    pub content_type: String,
    /// In bytes.
    pub size: u64,
    /// The extracted text, capped at [`MAX_ATTACHMENT_TEXT_CHARS`]; `null` when the type is not
    /// supported or the document could not be read.
    pub text: Option<String>,
    pub text_truncated: bool,
    /// Why `text` is `null` (an error code of `document/extract`, e.g. `unsupported_document`);
    /// absent when text was extracted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_error: Option<String>,
}

/// What [`enrich`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrichment {
    /// `{"parse": {…}, "classify": {…}}`.
    pub primitives: Value,
    /// In the order given.
    pub attachments: Vec<AttachmentText>,
}

/// Parses and classifies a message and extracts the text of its attachments.
///
/// `message` is a Graph message or a normalized one (see [`EmailInput`]); one without a body is
/// treated as empty rather than refused, so a message always gets its primitives. The CPU work
/// of a body over [`INLINE_BODY_BYTES`] and of every attachment runs on blocking threads; each
/// attachment has [`EXTRACT_TIMEOUT`]. Never fails: an attachment that cannot be read gets
/// `text: null` and a `text_error`.
pub async fn enrich(message: &Value, attachments: &[AttachmentBytes]) -> Enrichment {
    let input = EmailInput::from_json_lenient(message).unwrap_or_else(|err| {
        tracing::warn!(error = %err, "message has an unexpected shape; primitives see an empty mail");
        EmailInput::default()
    });
    enrich_input(input, attachments).await
}

/// [`enrich`] of a mail already read: for a caller that holds the message typed, and need not
/// write it as JSON for [`EmailInput::from_json_lenient`] to read it back.
pub async fn enrich_input(input: EmailInput, attachments: &[AttachmentBytes]) -> Enrichment {
    let primitives = if input.body.len() <= INLINE_BODY_BYTES {
        std::panic::catch_unwind(|| email_primitives(&input)).map_err(|_| "panicked".to_string())
    } else {
        tokio::task::spawn_blocking(move || email_primitives(&input))
            .await
            .map_err(|err| err.to_string())
    };
    let primitives = primitives.unwrap_or_else(|err| {
        tracing::error!(error = %err, "email primitives failed");
        json!({"parse": null, "classify": null})
    });

    let mut texts = Vec::with_capacity(attachments.len());
    for attachment in attachments {
        texts.push(attachment_text(attachment).await);
    }
    Enrichment {
        primitives,
        attachments: texts,
    }
}

/// `{"parse": {…}, "classify": {…}}` for a mail, parsing its body once.
pub fn email_primitives(input: &EmailInput) -> Value {
    let parsed = parse_rendered(render_body(input), input.from_name.as_deref());
    let classification = classify_parsed(input, &parsed);
    // Serializing a Classification cannot fail: it has no maps with non-string keys.
    let classification = serde_json::to_value(classification).unwrap_or(Value::Null);
    let mut primitives = serde_json::Map::new();
    primitives.insert("parse".into(), parsed.into_value());
    primitives.insert("classify".into(), classification);
    Value::Object(primitives)
}

async fn attachment_text(attachment: &AttachmentBytes) -> AttachmentText {
    let document = DocumentInput {
        content_type: attachment.content_type.clone(),
        name: Some(attachment.name.clone()),
        bytes: attachment.bytes.clone(),
    };
    let (text, text_truncated, text_error) = match extract_with_timeout(document, EXTRACT_TIMEOUT)
        .await
    {
        Ok(extracted) => {
            let (text, truncated) = cap_chars(extracted.text, MAX_ATTACHMENT_TEXT_CHARS);
            (Some(text), truncated, None)
        }
        Err(err) => {
            tracing::debug!(attachment = %attachment.id, error = %err, "no text for attachment");
            (None, false, Some(err.code().to_string()))
        }
    };
    AttachmentText {
        id: attachment.id.clone(),
        name: attachment.name.clone(),
        content_type: attachment.content_type.clone(),
        size: attachment.bytes.len() as u64,
        text,
        text_truncated,
        text_error,
    }
}

/// Cuts `text` to at most `max` characters (never inside a character).
fn cap_chars(mut text: String, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((cut, _)) => {
            text.truncate(cut);
            (text, true)
        }
        None => (text, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_by_characters_not_bytes() {
        assert_eq!(cap_chars("ééé".to_string(), 2), ("éé".to_string(), true));
        assert_eq!(cap_chars("ab".to_string(), 2), ("ab".to_string(), false));
    }
}
