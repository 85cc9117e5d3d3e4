//! SPEC §4's delivered body, and the Graph message as its `message` object: snake_case,
//! addresses as `{name, email}`, the body as content plus type, enum words in lower case.
//! Pure: no I/O.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::graph::{Message, Recipient};
use crate::primitives::{self, BodyType, EmailInput, Header};

/// The delivered `type` of an event of this change type: `message.created|updated|deleted`.
/// (Resync events carry the change type they represent, so they map the same way.)
pub fn event_type(change_type: &str) -> String {
    format!("message.{}", change_type.to_ascii_lowercase())
}

/// SPEC §4's body, serialized straight from what the attempt holds. Built before as a `Value`
/// (whose every `json!` field is a deep copy of what it is given), the payload's trees were a
/// fifth of the allocations of an event. The fields are in alphabetical order, the order in
/// which those objects wrote their keys, so the bytes delivered are the same, but for
/// `raw_notification`: the notification as stored (as Graph sent it, its client state masked),
/// no longer parsed and written again with its keys sorted.
#[derive(Serialize)]
pub struct Payload<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Value>,
    pub credential_id: Option<&'a str>,
    pub id: &'a str,
    pub message: PayloadMessage<'a>,
    pub primitives: &'a Value,
    pub processed_at: DateTime<Utc>,
    pub provider: &'static str,
    /// The notification as stored (`None`, written `null`, should it not be JSON).
    pub raw_notification: Option<&'a RawValue>,
    pub received_at: DateTime<Utc>,
    pub subscription_id: Option<&'a str>,
    #[serde(rename = "type")]
    pub kind: &'a str,
}

/// The `message` of a delivered event: the normalized message, or only its id when it was
/// deleted.
#[derive(Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)] // one at a time, on the stack, while a payload is written
pub enum PayloadMessage<'a> {
    Fetched(Normalized<'a>),
    Deleted { id: &'a str },
}

/// SPEC §4's `message` object, borrowed from the Graph message: snake_case, addresses as
/// `{name, email}`, the body as content plus type, enum words in lower case. Fields in
/// alphabetical order (see [`Payload`]).
#[derive(Serialize)]
pub struct Normalized<'a> {
    body_content: &'a str,
    body_preview: &'a str,
    body_type: String,
    categories: &'a [String],
    cc: Vec<Address<'a>>,
    conversation_id: Option<&'a str>,
    from: Option<Address<'a>>,
    has_attachments: bool,
    id: &'a str,
    importance: String,
    internet_message_id: Option<&'a str>,
    is_read: bool,
    received_at: Option<DateTime<Utc>>,
    subject: &'a str,
    to: Vec<Address<'a>>,
    web_link: Option<&'a str>,
}

/// A recipient as `{email, name}` (alphabetical, as above); a missing part is `""`.
#[derive(Serialize)]
struct Address<'a> {
    email: &'a str,
    name: &'a str,
}

impl<'a> Address<'a> {
    fn of(r: &'a Recipient) -> Self {
        Address {
            email: r.email_address.address.as_deref().unwrap_or_default(),
            name: r.email_address.name.as_deref().unwrap_or_default(),
        }
    }
}

/// The message as the email primitives read it: what [`EmailInput::from_json_lenient`] reads
/// of the message written as JSON, taken from the message itself (writing it as a `Value` for
/// that copied every field, the body twice). A body type other than HTML or text makes, as
/// there, an empty mail.
pub fn email_input(m: &Message) -> EmailInput {
    let kind = m
        .body
        .as_ref()
        .map(|b| b.content_type.trim().to_ascii_lowercase());
    let body_type = match kind.as_deref() {
        None | Some("text") | Some("") => BodyType::Text,
        Some("html") => BodyType::Html,
        Some(other) => {
            tracing::warn!(content_type = %other, "message has an unexpected shape; primitives see an empty mail");
            return EmailInput::default();
        }
    };
    let from = m.from.as_ref().map(|r| &r.email_address);
    EmailInput {
        subject: m.subject.clone().unwrap_or_default(),
        body: m
            .body
            .as_ref()
            .map(|b| b.content.clone())
            .unwrap_or_default(),
        body_type,
        from_name: from.and_then(|a| a.name.clone()),
        from_address: from
            .and_then(|a| a.address.as_deref())
            .map(|a| a.trim().to_string()),
        headers: m
            .internet_message_headers
            .iter()
            .map(|h| Header {
                name: h.name.clone(),
                value: h.value.clone(),
            })
            .collect(),
        importance: m
            .importance
            .as_deref()
            .map(|i| i.trim().to_ascii_lowercase()),
        is_meeting_message: m
            .odata_type
            .as_deref()
            .is_some_and(primitives::is_event_message_type),
    }
}

/// The `message` of a delivered event.
pub fn normalize_message(m: &Message) -> Normalized<'_> {
    let (body_content, body_type) = match &m.body {
        Some(b) => (b.content.as_str(), b.content_type.to_ascii_lowercase()),
        None => ("", "text".to_string()),
    };
    Normalized {
        body_content,
        body_preview: m.body_preview.as_deref().unwrap_or_default(),
        body_type,
        categories: &m.categories,
        cc: m.cc_recipients.iter().map(Address::of).collect(),
        conversation_id: m.conversation_id.as_deref(),
        from: m.from.as_ref().or(m.sender.as_ref()).map(Address::of),
        has_attachments: m.has_attachments.unwrap_or(false),
        id: &m.id,
        importance: m
            .importance
            .as_deref()
            .unwrap_or("normal")
            .to_ascii_lowercase(),
        internet_message_id: m.internet_message_id.as_deref(),
        is_read: m.is_read.unwrap_or(false),
        received_at: m.received_date_time,
        subject: m.subject.as_deref().unwrap_or_default(),
        to: m.to_recipients.iter().map(Address::of).collect(),
        web_link: m.web_link.as_deref(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn a_graph_message_becomes_the_spec_message() {
        let m: Message = serde_json::from_value(json!({
            "id": "AAMk1",
            "subject": "Invoice",
            "from": {"emailAddress": {"name": "Ann", "address": "ann@example.com"}},
            "toRecipients": [{"emailAddress": {"name": "Bo", "address": "bo@example.com"}}],
            "ccRecipients": null,
            "receivedDateTime": "2026-11-28T10:30:00Z",
            "bodyPreview": "Hi",
            "body": {"contentType": "HTML", "content": "<p>Hi</p>"},
            "hasAttachments": true,
            "isRead": false,
            "importance": "High",
            "conversationId": "c1",
            "internetMessageId": "<m@x>",
            "webLink": "https://outlook/1",
            "categories": ["Red"]
        }))
        .unwrap();
        let v = serde_json::to_value(normalize_message(&m)).unwrap();
        assert_eq!(
            v["from"],
            json!({"name": "Ann", "email": "ann@example.com"})
        );
        assert_eq!(v["to"][0]["email"], "bo@example.com");
        assert_eq!(v["cc"], json!([]));
        assert_eq!(v["body_type"], "html");
        assert_eq!(v["importance"], "high");
        assert_eq!(v["received_at"], "2026-11-28T10:30:00Z");
        assert_eq!(v["has_attachments"], true);
        assert_eq!(v["categories"], json!(["Red"]));
        assert_eq!(event_type("created"), "message.created");
    }

    /// The payload as it was built before, one `json!` object at a time.
    fn as_values(m: &Message, raw: &str, attachments: Option<Value>) -> String {
        let address = |r: &Recipient| {
            json!({
                "name": r.email_address.name.clone().unwrap_or_default(),
                "email": r.email_address.address.clone().unwrap_or_default(),
            })
        };
        let (body_content, body_type) = match &m.body {
            Some(b) => (b.content.clone(), b.content_type.to_ascii_lowercase()),
            None => (String::new(), "text".to_string()),
        };
        let message = json!({
            "id": m.id,
            "subject": m.subject.clone().unwrap_or_default(),
            "from": m.from.as_ref().or(m.sender.as_ref()).map(address),
            "to": m.to_recipients.iter().map(address).collect::<Vec<_>>(),
            "cc": m.cc_recipients.iter().map(address).collect::<Vec<_>>(),
            "received_at": m.received_date_time,
            "body_preview": m.body_preview.clone().unwrap_or_default(),
            "body_content": body_content,
            "body_type": body_type,
            "has_attachments": m.has_attachments.unwrap_or(false),
            "is_read": m.is_read.unwrap_or(false),
            "importance": m.importance.as_deref().unwrap_or("normal").to_ascii_lowercase(),
            "conversation_id": m.conversation_id,
            "internet_message_id": m.internet_message_id,
            "web_link": m.web_link,
            "categories": m.categories,
        });
        let raw: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
        let mut payload = json!({
            "id": "e1",
            "type": "message.created",
            "provider": "ms365",
            "credential_id": "c1",
            "subscription_id": null,
            "received_at": crate::store::to_time(1_764_000_000_123),
            "processed_at": crate::store::to_time(1_764_000_000_456),
            "message": message,
            "primitives": {"language": "en", "intent": ["invoice"]},
            "raw_notification": raw,
        });
        if let Some(a) = attachments {
            payload["attachments"] = a;
        }
        payload.to_string()
    }

    fn payload<'a>(
        message: PayloadMessage<'a>,
        raw: &'a str,
        primitives: &'a Value,
        attachments: Option<Value>,
    ) -> String {
        serde_json::to_string(&Payload {
            attachments,
            credential_id: Some("c1"),
            id: "e1",
            message,
            primitives,
            processed_at: crate::store::to_time(1_764_000_000_456),
            provider: "ms365",
            raw_notification: serde_json::from_str(raw).ok(),
            received_at: crate::store::to_time(1_764_000_000_123),
            subscription_id: None,
            kind: "message.created",
        })
        .unwrap()
    }

    #[test]
    fn the_payload_is_byte_for_byte_what_the_json_objects_wrote() {
        let primitives = json!({"language": "en", "intent": ["invoice"]});
        let full: Message = serde_json::from_value(json!({
            "id": "AAMk1",
            "subject": "Invoice \"7\" é",
            "sender": {"emailAddress": {"name": "Ann", "address": "ann@example.com"}},
            "toRecipients": [{"emailAddress": {"address": "bo@example.com"}}, {"emailAddress": {}}],
            "ccRecipients": [{"emailAddress": {"name": "Cy", "address": "cy@example.com"}}],
            "receivedDateTime": "2026-11-28T10:30:00.5Z",
            "body": {"contentType": "HTML", "content": "<p>Hi\nthere</p>"},
            "hasAttachments": "true",
            "importance": "High",
            "webLink": "https://outlook/1",
            "categories": ["Red", "Blue"]
        }))
        .unwrap();
        let bare: Message = serde_json::from_value(json!({"id": "AAMk2"})).unwrap();
        // Keys in order: the objects wrote the stored notification with its keys sorted.
        let raw = r#"{"changeType":"created","resourceData":{"id":"AAMk1"},"subscriptionId":"s1"}"#;
        let listed = Some(json!([{"name": "a.pdf", "text": "x"}]));
        for (m, attachments) in [(&full, listed), (&bare, None)] {
            assert_eq!(
                payload(
                    PayloadMessage::Fetched(normalize_message(m)),
                    raw,
                    &primitives,
                    attachments.clone()
                ),
                as_values(m, raw, attachments),
            );
        }
        // The notification is written as stored (as Graph sent it, its client state masked).
        let as_sent = r#"{"subscriptionId":"s1", "changeType":"created"}"#;
        let written = payload(
            PayloadMessage::Deleted { id: "AAMk3" },
            as_sent,
            &Value::Null,
            None,
        );
        assert!(written
            .contains(r#""raw_notification":{"subscriptionId":"s1", "changeType":"created"}"#));
        // A deleted message is its id alone; a stored notification that is not JSON is null.
        let deleted = payload(
            PayloadMessage::Deleted { id: "AAMk3" },
            "not json",
            &Value::Null,
            None,
        );
        let v: Value = serde_json::from_str(&deleted).unwrap();
        assert_eq!(v["message"], json!({"id": "AAMk3"}));
        assert_eq!(v["raw_notification"], Value::Null);
        assert_eq!(v["primitives"], Value::Null);
        assert!(v.get("attachments").is_none());
    }

    #[test]
    fn the_primitives_input_is_what_they_read_of_the_message_as_json() {
        let messages = [
            json!({
                "id": "AAMk1",
                "subject": "Invoice",
                "from": {"emailAddress": {"name": "Ann", "address": " ann@example.com "}},
                "body": {"contentType": " HTML", "content": "<p>Hi</p>"},
                "importance": " High ",
                "internetMessageHeaders": [{"name": "X-Priority", "value": "1"}, {"name": "A"}]
            }),
            json!({"id": "AAMk2", "sender": {"emailAddress": {"address": "s@example.com"}}}),
            json!({"id": "AAMk3", "from": {"emailAddress": {"name": "N"}}, "body": {"contentType": "text"}}),
            json!({"id": "AAMk4", "subject": "odd", "body": {"contentType": "rtf", "content": "x"}}),
            json!({"id": "AAMk5", "@odata.type": "#microsoft.graph.eventMessageRequest", "subject": "Sync"}),
            json!({"id": "AAMk6", "@odata.type": "#microsoft.graph.message", "subject": "Plain"}),
        ];
        for m in messages {
            let m: Message = serde_json::from_value(m).unwrap();
            let as_json = serde_json::to_value(&m).unwrap();
            let read = EmailInput::from_json_lenient(&as_json).unwrap_or_default();
            assert_eq!(email_input(&m), read, "{}", m.id);
        }
        let meeting: Message = serde_json::from_value(
            json!({"id": "AAMk7", "@odata.type": "#microsoft.graph.eventMessageResponse"}),
        )
        .unwrap();
        assert!(email_input(&meeting).is_meeting_message);
    }
}
