//! What the primitives take: a mail ([`EmailInput`]) or a document ([`DocumentInput`]), read
//! from the JSON that n8n or processing sends.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::Value;

use super::extract::{ExtractError, MAX_DOCUMENT_BYTES};

/// Why an input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PrimitiveError {
    /// The JSON does not have the expected shape (HTTP 400).
    #[error("{0}")]
    InvalidInput(String),
    /// The JSON is fine but the document it carries cannot be taken (too large, or of a kind
    /// that is not a file, such as an item attachment).
    #[error(transparent)]
    Document(#[from] ExtractError),
}

impl PrimitiveError {
    fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidInput(message.into())
    }
}

/// How the body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    /// HTML, turned into text by a real HTML parser.
    Html,
    /// Plain text.
    #[default]
    Text,
}

/// One Internet message header, as Graph's `internetMessageHeaders` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A mail as the email primitives see it.
///
/// Read with [`EmailInput::from_json`] from one of three shapes:
/// - a Graph message (`subject`, `body: {contentType, content}`, `from: {emailAddress: {name,
///   address}}`, `internetMessageHeaders: [{name, value}]`, `importance`, `@odata.type`);
/// - the short form `{"subject", "body": "…", "body_type": "html"|"text", "from"?, "headers"?}`
///   where `from` is `"a@b"` or `{"name", "address"|"email"}` and `headers` is
///   `[{name, value}]` or `{name: value}`;
/// - relay365's normalized message (SPEC §4: `body_content`, `body_type`, `from: {name, email}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmailInput {
    pub subject: String,
    pub body: String,
    pub body_type: BodyType,
    pub from_name: Option<String>,
    pub from_address: Option<String>,
    /// In the order given; looked up case-insensitively by [`EmailInput::header`].
    pub headers: Vec<Header>,
    /// Graph's `importance` (`low`, `normal`, `high`), lowercased.
    pub importance: Option<String>,
    /// True for a Graph `eventMessage` (a meeting request, update or cancellation).
    pub is_meeting_message: bool,
}

impl EmailInput {
    /// Reads a mail from JSON. A body is required: `{}` is an error, not an empty mail.
    pub fn from_json(value: &Value) -> Result<Self, PrimitiveError> {
        Self::read(value, true)
    }

    /// Like [`EmailInput::from_json`], but a missing body reads as an empty one. For processing,
    /// where a message without a body (e.g. fetched with a narrow `$select`) is still delivered.
    pub fn from_json_lenient(value: &Value) -> Result<Self, PrimitiveError> {
        Self::read(value, false)
    }

    /// The first header with this name (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.trim())
    }

    fn read(value: &Value, require_body: bool) -> Result<Self, PrimitiveError> {
        let obj = value
            .as_object()
            .ok_or_else(|| PrimitiveError::invalid("expected a JSON object (a message)"))?;

        let subject = optional_string(obj.get("subject"), "subject")?.unwrap_or_default();

        let (body, body_type) = match obj.get("body") {
            // Graph: {"contentType": "html"|"text", "content": "…"}
            Some(Value::Object(body)) => {
                let content = optional_string(body.get("content"), "body.content")?;
                let kind = optional_string(body.get("contentType"), "body.contentType")?;
                (
                    content.unwrap_or_default(),
                    body_type(kind.as_deref(), "body.contentType")?,
                )
            }
            // Short form: "body": "…", "body_type": "html"|"text"
            Some(Value::String(content)) => {
                let kind = optional_string(obj.get("body_type"), "body_type")?;
                (content.clone(), body_type(kind.as_deref(), "body_type")?)
            }
            Some(Value::Null) | None => match optional_string(
                obj.get("body_content"),
                "body_content",
            )? {
                // Normalized message (SPEC §4).
                Some(content) => {
                    let kind = optional_string(obj.get("body_type"), "body_type")?;
                    (content, body_type(kind.as_deref(), "body_type")?)
                }
                None if require_body => return Err(PrimitiveError::invalid(
                    "missing `body`: expected a Graph message with `body: {contentType, content}` \
                         or `{\"subject\", \"body\", \"body_type\"}`",
                )),
                None => (String::new(), BodyType::Text),
            },
            Some(_) => {
                return Err(PrimitiveError::invalid(
                    "`body` must be a string or an object `{contentType, content}`",
                ))
            }
        };

        let (from_name, from_address) = read_from(obj.get("from"))?;

        let mut headers = Vec::new();
        read_headers(
            obj.get("internetMessageHeaders"),
            "internetMessageHeaders",
            &mut headers,
        )?;
        read_headers(obj.get("headers"), "headers", &mut headers)?;

        let importance = optional_string(obj.get("importance"), "importance")?
            .map(|s| s.trim().to_ascii_lowercase());
        let odata_type = optional_string(obj.get("@odata.type"), "@odata.type")?;
        let is_meeting_message = odata_type.as_deref().is_some_and(is_event_message_type)
            || obj.get("meetingMessageType").is_some_and(|v| !v.is_null());

        Ok(Self {
            subject,
            body,
            body_type,
            from_name,
            from_address,
            headers,
            importance,
            is_meeting_message,
        })
    }
}

/// True for an `@odata.type` of Graph's `eventMessage` or one of its derived types
/// (`eventMessageRequest`, `eventMessageResponse`): a meeting request, response or
/// cancellation. The leading `#` and the case vary between Graph's answers and samples.
pub fn is_event_message_type(odata_type: &str) -> bool {
    const EVENT_MESSAGE: &str = "microsoft.graph.eventMessage";
    odata_type
        .trim_start_matches('#')
        .get(..EVENT_MESSAGE.len())
        .is_some_and(|t| t.eq_ignore_ascii_case(EVENT_MESSAGE))
}

fn optional_string(value: Option<&Value>, field: &str) -> Result<Option<String>, PrimitiveError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(PrimitiveError::invalid(format!(
            "`{field}` must be a string"
        ))),
    }
}

fn body_type(kind: Option<&str>, field: &str) -> Result<BodyType, PrimitiveError> {
    match kind.map(|k| k.trim().to_ascii_lowercase()).as_deref() {
        None | Some("text") | Some("") => Ok(BodyType::Text),
        Some("html") => Ok(BodyType::Html),
        Some(other) => Err(PrimitiveError::invalid(format!(
            "`{field}` must be \"html\" or \"text\", not {other:?}"
        ))),
    }
}

/// `from` as Graph (`{emailAddress: {name, address}}`), normalized (`{name, email}`), short
/// (`{name, address}`) or a bare address string.
fn read_from(value: Option<&Value>) -> Result<(Option<String>, Option<String>), PrimitiveError> {
    let obj = match value {
        None | Some(Value::Null) => return Ok((None, None)),
        Some(Value::String(address)) => return Ok((None, Some(address.trim().to_string()))),
        Some(Value::Object(obj)) => obj,
        Some(_) => {
            return Err(PrimitiveError::invalid(
                "`from` must be a string or an object",
            ))
        }
    };
    let inner = match obj.get("emailAddress") {
        Some(Value::Object(inner)) => inner,
        Some(Value::Null) | None => obj,
        Some(_) => {
            return Err(PrimitiveError::invalid(
                "`from.emailAddress` must be an object",
            ))
        }
    };
    let name = optional_string(inner.get("name"), "from.name")?;
    let address = match optional_string(inner.get("address"), "from.address")? {
        Some(address) => Some(address),
        None => optional_string(inner.get("email"), "from.email")?,
    };
    Ok((name, address.map(|a| a.trim().to_string())))
}

/// Headers as `[{name, value}]` (Graph) or `{name: value}`, appended in the order given.
fn read_headers(
    value: Option<&Value>,
    field: &str,
    out: &mut Vec<Header>,
) -> Result<(), PrimitiveError> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) => {
            for item in items {
                let name = item.get("name").and_then(Value::as_str);
                let value = item.get("value").and_then(Value::as_str);
                match (name, value) {
                    (Some(name), Some(value)) => out.push(Header {
                        name: name.to_string(),
                        value: value.to_string(),
                    }),
                    _ => {
                        return Err(PrimitiveError::invalid(format!(
                            "`{field}` items must be {{\"name\": string, \"value\": string}}"
                        )))
                    }
                }
            }
            Ok(())
        }
        Some(Value::Object(map)) => {
            for (name, value) in map {
                let value = value.as_str().ok_or_else(|| {
                    PrimitiveError::invalid(format!("`{field}.{name}` must be a string"))
                })?;
                out.push(Header {
                    name: name.clone(),
                    value: value.to_string(),
                });
            }
            Ok(())
        }
        Some(_) => Err(PrimitiveError::invalid(format!(
            "`{field}` must be an array of {{name, value}} or an object"
        ))),
    }
}

/// A document as `document/extract` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentInput {
    /// As given (may be empty: the kind is then sniffed from the bytes and the name).
    pub content_type: String,
    /// The file name, when known (a Graph fileAttachment has one).
    pub name: Option<String>,
    pub bytes: Vec<u8>,
}

/// Standard base64, padded or not. Graph's `contentBytes` is padded standard base64; some
/// clients wrap lines, so ASCII whitespace is removed before decoding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl DocumentInput {
    /// Reads `{"content_type", "content_base64", "name"?}` or a Graph fileAttachment
    /// (`{"@odata.type": "#microsoft.graph.fileAttachment", "name", "contentType",
    /// "contentBytes"}`). A document over [`MAX_DOCUMENT_BYTES`] is refused before it is
    /// decoded.
    pub fn from_json(value: &Value) -> Result<Self, PrimitiveError> {
        let obj = value
            .as_object()
            .ok_or_else(|| PrimitiveError::invalid("expected a JSON object (a document)"))?;

        if let Some(kind) = optional_string(obj.get("@odata.type"), "@odata.type")? {
            if kind != "#microsoft.graph.fileAttachment" {
                return Err(ExtractError::Unsupported {
                    content_type: kind,
                    reason:
                        "only file attachments (#microsoft.graph.fileAttachment) carry a document"
                            .to_string(),
                }
                .into());
            }
        }

        let (encoded, content_type, name) = if obj.contains_key("contentBytes") {
            (
                optional_string(obj.get("contentBytes"), "contentBytes")?,
                optional_string(obj.get("contentType"), "contentType")?,
                optional_string(obj.get("name"), "name")?,
            )
        } else {
            (
                optional_string(obj.get("content_base64"), "content_base64")?,
                optional_string(obj.get("content_type"), "content_type")?,
                optional_string(obj.get("name"), "name")?,
            )
        };
        let encoded = encoded.ok_or_else(|| {
            PrimitiveError::invalid(
                "missing `content_base64` (or `contentBytes` of a Graph fileAttachment)",
            )
        })?;

        let compact: Vec<u8> = encoded
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let decoded_len = compact.len() / 4 * 3 + (compact.len() % 4).saturating_sub(1);
        let padding = compact.iter().rev().take_while(|&&b| b == b'=').count();
        let decoded_len = decoded_len.saturating_sub(padding);
        if decoded_len > MAX_DOCUMENT_BYTES {
            return Err(ExtractError::TooLarge {
                size: decoded_len,
                max: MAX_DOCUMENT_BYTES,
            }
            .into());
        }
        let bytes = BASE64.decode(&compact).map_err(|err| {
            PrimitiveError::invalid(format!("the content is not valid base64: {err}"))
        })?;

        Ok(Self {
            content_type: content_type.unwrap_or_default(),
            name,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_graph_message() {
        let input = EmailInput::from_json(&json!({
            "subject": "Hello",
            "body": {"contentType": "html", "content": "<p>Hi</p>"},
            "from": {"emailAddress": {"name": "Adele Vance", "address": "adelev@contoso.com"}},
            "internetMessageHeaders": [{"name": "List-Unsubscribe", "value": " <mailto:u@x.com> "}],
            "importance": "High",
        }))
        .expect("valid");
        assert_eq!(input.subject, "Hello");
        assert_eq!(input.body, "<p>Hi</p>");
        assert_eq!(input.body_type, BodyType::Html);
        assert_eq!(input.from_name.as_deref(), Some("Adele Vance"));
        assert_eq!(input.from_address.as_deref(), Some("adelev@contoso.com"));
        assert_eq!(input.header("list-unsubscribe"), Some("<mailto:u@x.com>"));
        assert_eq!(input.importance.as_deref(), Some("high"));
        assert!(!input.is_meeting_message);
    }

    #[test]
    fn tells_a_meeting_message_by_its_graph_type() {
        for (odata_type, meeting) in [
            ("#microsoft.graph.eventMessage", true),
            ("#microsoft.graph.eventMessageRequest", true),
            ("#microsoft.graph.eventMessageResponse", true),
            ("microsoft.graph.EventMessage", true),
            ("#microsoft.graph.message", false),
            ("#microsoft.graph.event", false),
            ("#microsoft.graph.éventMessage", false),
        ] {
            let input =
                EmailInput::from_json_lenient(&json!({"subject": "s", "@odata.type": odata_type}))
                    .expect("valid");
            assert_eq!(input.is_meeting_message, meeting, "{odata_type}");
        }
    }

    #[test]
    fn reads_the_short_and_the_normalized_forms() {
        let short = EmailInput::from_json(&json!({
            "subject": "S", "body": "<b>x</b>", "body_type": "html", "from": "a@b.com",
            "headers": {"Precedence": "bulk"},
        }))
        .expect("valid");
        assert_eq!(short.body_type, BodyType::Html);
        assert_eq!(short.from_address.as_deref(), Some("a@b.com"));
        assert_eq!(short.header("precedence"), Some("bulk"));

        let normalized = EmailInput::from_json(&json!({
            "id": "AAMk", "subject": "S", "body_content": "plain", "body_type": "text",
            "from": {"name": "N", "email": "n@x.com"}, "importance": "low",
        }))
        .expect("valid");
        assert_eq!(normalized.body, "plain");
        assert_eq!(normalized.body_type, BodyType::Text);
        assert_eq!(normalized.from_address.as_deref(), Some("n@x.com"));
    }

    #[test]
    fn rejects_malformed_mails_with_a_clear_message() {
        let cases = [
            (json!([]), "expected a JSON object"),
            (json!({"subject": "no body"}), "missing `body`"),
            (json!({"body": 3}), "`body` must be"),
            (
                json!({"body": "x", "body_type": "pdf"}),
                "`body_type` must be \"html\" or \"text\"",
            ),
            (
                json!({"body": "x", "subject": 1}),
                "`subject` must be a string",
            ),
            (
                json!({"body": "x", "headers": [{"name": "A"}]}),
                "`headers` items must be",
            ),
            (json!({"body": "x", "from": 5}), "`from` must be"),
        ];
        for (value, expected) in cases {
            let err = EmailInput::from_json(&value).expect_err("must fail");
            assert!(err.to_string().contains(expected), "{value}: {err}");
        }
        assert_eq!(
            EmailInput::from_json_lenient(&json!({"subject": "S"}))
                .expect("lenient")
                .body,
            ""
        );
    }

    #[test]
    fn reads_documents_in_both_shapes() {
        let doc = DocumentInput::from_json(&json!({
            "content_type": "text/plain", "content_base64": "aGVs\nbG8="
        }))
        .expect("valid");
        assert_eq!(doc.bytes, b"hello");
        assert_eq!(doc.content_type, "text/plain");

        let attachment = DocumentInput::from_json(&json!({
            "@odata.type": "#microsoft.graph.fileAttachment",
            "id": "AAMkAGI2", "name": "a.txt", "contentType": "text/plain",
            "size": 5, "contentBytes": "aGVsbG8"
        }))
        .expect("valid");
        assert_eq!(attachment.bytes, b"hello");
        assert_eq!(attachment.name.as_deref(), Some("a.txt"));

        let item = DocumentInput::from_json(&json!({
            "@odata.type": "#microsoft.graph.itemAttachment", "name": "m"
        }));
        assert!(matches!(
            item,
            Err(PrimitiveError::Document(ExtractError::Unsupported { .. }))
        ));
        let bad = DocumentInput::from_json(&json!({"content_base64": "@@@"}));
        assert!(matches!(bad, Err(PrimitiveError::InvalidInput(m)) if m.contains("base64")));
        let missing = DocumentInput::from_json(&json!({"content_type": "text/plain"}));
        assert!(matches!(missing, Err(PrimitiveError::InvalidInput(m)) if m.contains("missing")));
    }

    #[test]
    fn refuses_an_oversized_document_before_decoding() {
        let encoded = "A".repeat((MAX_DOCUMENT_BYTES / 3 + 2) * 4);
        let err =
            DocumentInput::from_json(&json!({"content_base64": encoded})).expect_err("too large");
        assert!(matches!(
            err,
            PrimitiveError::Document(ExtractError::TooLarge { .. })
        ));
    }
}
