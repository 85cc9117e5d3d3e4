//! A Graph message as SPEC §4's `message` object: snake_case, addresses as `{name, email}`,
//! the body as content plus type, enum words in lower case. Pure: no I/O.

use serde_json::{json, Value};

use crate::graph::{Message, Recipient};

/// The delivered `type` of an event of this change type: `message.created|updated|deleted`.
/// (Resync events carry the change type they represent, so they map the same way.)
pub fn event_type(change_type: &str) -> String {
    format!("message.{}", change_type.to_ascii_lowercase())
}

fn address(r: &Recipient) -> Value {
    json!({
        "name": r.email_address.name.clone().unwrap_or_default(),
        "email": r.email_address.address.clone().unwrap_or_default(),
    })
}

fn addresses(list: &[Recipient]) -> Value {
    Value::Array(list.iter().map(address).collect())
}

/// The `message` of a delivered event.
pub fn normalize_message(m: &Message) -> Value {
    let (body_content, body_type) = match &m.body {
        Some(b) => (b.content.clone(), b.content_type.to_ascii_lowercase()),
        None => (String::new(), "text".to_string()),
    };
    json!({
        "id": m.id,
        "subject": m.subject.clone().unwrap_or_default(),
        "from": m.from.as_ref().or(m.sender.as_ref()).map(address),
        "to": addresses(&m.to_recipients),
        "cc": addresses(&m.cc_recipients),
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
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
        let v = normalize_message(&m);
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
}
