//! `messages/{id}` and `messages/{id}/attachments`: one message as Graph renders it, with
//! `$select`, and its attachments. The JSON shapes are shared with [`super::delta`].

use axum::http::{StatusCode, Uri};
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::{fail, graph_time, ok, query_param, Reply};
use crate::state::SimMessage;
use crate::Sim;

fn recipient(a: &crate::state::SimAddress) -> Value {
    json!({"emailAddress": {"name": a.name, "address": a.address}})
}

fn strip_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The `@odata.type` of a meeting message by its `meetingMessageType`: Graph's `eventMessage`
/// and its two derived types. `None` for a value Graph does not have.
pub(crate) fn event_message_type(meeting_message_type: &str) -> Option<&'static str> {
    Some(match meeting_message_type {
        "meetingRequest" => "#microsoft.graph.eventMessageRequest",
        "meetingAccepted" | "meetingTenativelyAccepted" | "meetingDeclined" => {
            "#microsoft.graph.eventMessageResponse"
        }
        "meetingCancelled" => "#microsoft.graph.eventMessage",
        _ => return None,
    })
}

/// A message in the shape of fixture `message-get-response.json`. `uniqueBody` and
/// `internetMessageHeaders` are only returned when selected, as in Graph.
pub(super) fn message_json(m: &SimMessage, select: Option<&[String]>) -> Value {
    let preview: String = if m.body_type == "html" {
        strip_html(&m.body)
    } else {
        m.body.clone()
    };
    let preview: String = preview.chars().take(255).collect();
    let web_link = format!(
        "https://outlook.office365.com/owa/?ItemID={}&exvsurl=1&viewmodel=ReadMessageItem",
        percent_encoding::utf8_percent_encode(&m.id, percent_encoding::NON_ALPHANUMERIC)
    );
    let mut v = json!({
        "@odata.etag": format!("W/\"{}\"", m.change_key),
        "id": m.id,
        "createdDateTime": graph_time(m.created_at),
        "lastModifiedDateTime": graph_time(m.modified_at),
        "changeKey": m.change_key,
        "categories": m.categories,
        "receivedDateTime": m.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "sentDateTime": m.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "hasAttachments": !m.attachments.is_empty(),
        "internetMessageId": m.internet_message_id,
        "subject": m.subject,
        "bodyPreview": preview,
        "importance": m.importance,
        "parentFolderId": m.folder,
        "conversationId": m.conversation_id,
        "isDeliveryReceiptRequested": false,
        "isReadReceiptRequested": false,
        "isRead": m.is_read,
        "isDraft": false,
        "webLink": web_link,
        "inferenceClassification": "focused",
        "body": {"contentType": m.body_type, "content": m.body},
        "sender": recipient(&m.from),
        "from": recipient(&m.from),
        "toRecipients": m.to.iter().map(recipient).collect::<Vec<_>>(),
        "ccRecipients": m.cc.iter().map(recipient).collect::<Vec<_>>(),
        "bccRecipients": [],
        "replyTo": [],
        "flag": {"flagStatus": "notFlagged"},
    });
    // A derived type is annotated under any `$select`; its own property only when selected.
    if let Some(kind) = m.meeting_message_type.as_deref() {
        if let Some(o) = v.as_object_mut() {
            o.insert("@odata.type".into(), json!(event_message_type(kind)));
            o.insert("meetingMessageType".into(), json!(kind));
        }
    }
    let Some(select) = select else { return v };
    let extra = json!({
        "uniqueBody": {"contentType": m.body_type, "content": m.body},
        "internetMessageHeaders": [
            {"name": "Message-ID", "value": m.internet_message_id},
            {"name": "Subject", "value": m.subject},
            {"name": "From", "value": format!("{} <{}>", m.from.name, m.from.address)},
        ],
    });
    let mut all: Map<String, Value> = v.as_object_mut().map(std::mem::take).unwrap_or_default();
    if let Some(e) = extra.as_object() {
        all.extend(e.clone());
    }
    let mut out = Map::new();
    for (k, val) in all {
        let keep = matches!(k.as_str(), "id" | "@odata.etag" | "@odata.type")
            || select.iter().any(|s| s.eq_ignore_ascii_case(&k));
        if keep {
            out.insert(k, val);
        }
    }
    Value::Object(out)
}

pub(super) fn parse_select(raw: Option<String>) -> Option<Vec<String>> {
    raw.map(|s| {
        s.split(',')
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect()
    })
}

pub(super) fn item_not_found() -> Reply {
    fail(
        StatusCode::NOT_FOUND,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

pub(super) fn get_message(
    sim: &Sim,
    mailbox: &str,
    folder: Option<&str>,
    id: &str,
    uri: &Uri,
) -> Reply {
    let select = parse_select(query_param(uri, "$select"));
    let st = sim.state();
    let Some(mb) = st.mailboxes.get(mailbox) else {
        return item_not_found();
    };
    let found = mb.find(id).filter(|m| folder.is_none_or(|f| f == m.folder));
    let Some(m) = found else {
        return item_not_found();
    };
    let mut v = message_json(m, select.as_deref());
    v["@odata.context"] = json!(format!(
        "{}/$metadata#users('{}')/messages/$entity",
        sim.base_url(),
        mb.name
    ));
    ok(Json(v))
}

pub(super) fn list_attachments(sim: &Sim, mailbox: &str, id: &str) -> Reply {
    let st = sim.state();
    let Some(mb) = st.mailboxes.get(mailbox) else {
        return item_not_found();
    };
    let Some(m) = mb.find(id) else {
        return item_not_found();
    };
    let value: Vec<Value> = m
        .attachments
        .iter()
        .map(|a| {
            json!({
                "@odata.type": "#microsoft.graph.fileAttachment",
                "@odata.mediaContentType": a.content_type,
                "id": a.id,
                "lastModifiedDateTime": graph_time(m.modified_at),
                "name": a.name,
                "contentType": a.content_type,
                "size": a.bytes.len(),
                "isInline": a.is_inline,
                "contentId": null,
                "contentLocation": null,
                "contentBytes": base64::engine::general_purpose::STANDARD.encode(&a.bytes),
            })
        })
        .collect();
    ok(Json(json!({
        "@odata.context": format!("{}/$metadata#users('{}')/messages('{}')/attachments", sim.base_url(), mb.name, m.id),
        "value": value,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preview_is_the_text_without_tags_or_runs_of_space() {
        assert_eq!(
            strip_html("<p>Hello<br>world</p>\n  <b>!</b>"),
            "Hello world !"
        );
        assert_eq!(strip_html("no tags"), "no tags");
    }
}
