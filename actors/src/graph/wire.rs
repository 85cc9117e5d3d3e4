//! Graph's JSON shapes as relay365 reads and writes them.
//!
//! Only the fields the service uses are typed; unknown fields are ignored so that Graph can
//! add properties without breaking us. Secrets (`clientState`) are masked in `Debug`.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// The body of `POST /subscriptions`.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSubscription {
    /// Comma-separated: `created`, `updated`, `deleted`.
    pub change_type: String,
    pub notification_url: String,
    /// Can only be set at creation (graph-contract §1), so it is always sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_notification_url: Option<String>,
    /// e.g. `me/mailFolders('inbox')/messages`.
    pub resource: String,
    pub expiration_date_time: DateTime<Utc>,
    /// Secret, at most 128 characters.
    pub client_state: String,
    /// `v1_2` unless told otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_supported_tls_version: Option<String>,
}

impl fmt::Debug for NewSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSubscription")
            .field("change_type", &self.change_type)
            .field("notification_url", &self.notification_url)
            .field(
                "lifecycle_notification_url",
                &self.lifecycle_notification_url,
            )
            .field("resource", &self.resource)
            .field("expiration_date_time", &self.expiration_date_time)
            .field("client_state", &"***")
            .finish()
    }
}

/// A subscription as Graph returns it (create, renew, list).
#[derive(Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    pub resource: String,
    pub change_type: String,
    #[serde(default)]
    pub notification_url: Option<String>,
    #[serde(default)]
    pub lifecycle_notification_url: Option<String>,
    pub expiration_date_time: DateTime<Utc>,
    /// Echoed by create and renew; always `null` in a list (graph-contract §3).
    #[serde(default)]
    pub client_state: Option<String>,
    #[serde(default)]
    pub application_id: Option<String>,
    #[serde(default)]
    pub creator_id: Option<String>,
    #[serde(default)]
    pub latest_supported_tls_version: Option<String>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("resource", &self.resource)
            .field("change_type", &self.change_type)
            .field("notification_url", &self.notification_url)
            .field(
                "lifecycle_notification_url",
                &self.lifecycle_notification_url,
            )
            .field("expiration_date_time", &self.expiration_date_time)
            .field("client_state", &self.client_state.as_ref().map(|_| "***"))
            .finish()
    }
}

/// `{"emailAddress":{"name","address"}}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Recipient {
    pub email_address: EmailAddress,
}

/// A name and an address; either may be missing on odd messages.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct EmailAddress {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
}

/// `{"contentType": "text"|"html", "content"}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ItemBody {
    pub content_type: String,
    #[serde(default)]
    pub content: String,
}

/// One internet message header.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct MessageHeader {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// A mail message (graph-contract §8). Everything but `id` is optional, because `$select`
/// and delta pages return subsets.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    #[serde(default, rename = "@odata.etag")]
    pub etag: Option<String>,
    /// Set when the message is of a derived type: `#microsoft.graph.eventMessageRequest`,
    /// `…eventMessageResponse` or `…eventMessage` for a meeting request, response or
    /// cancellation. Graph annotates a derived type under any `$select`; a plain message
    /// carries no annotation on a GET (delta pages say `#microsoft.graph.message`).
    #[serde(
        default,
        rename = "@odata.type",
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub from: Option<Recipient>,
    #[serde(default)]
    pub sender: Option<Recipient>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub to_recipients: Vec<Recipient>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub cc_recipients: Vec<Recipient>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub bcc_recipients: Vec<Recipient>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub reply_to: Vec<Recipient>,
    #[serde(default)]
    pub received_date_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub sent_date_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub body_preview: Option<String>,
    #[serde(default)]
    pub body: Option<ItemBody>,
    #[serde(default)]
    pub unique_body: Option<ItemBody>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub has_attachments: Option<bool>,
    /// `low` / `normal` / `high`.
    #[serde(default)]
    pub importance: Option<String>,
    /// Microsoft's own delta sample sends `"true"` as a string, so strings are accepted.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_read: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_draft: Option<bool>,
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub internet_message_id: Option<String>,
    #[serde(default)]
    pub web_link: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub categories: Vec<String>,
    #[serde(default)]
    pub parent_folder_id: Option<String>,
    #[serde(default)]
    pub change_key: Option<String>,
    #[serde(default)]
    pub inference_classification: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub internet_message_headers: Vec<MessageHeader>,
}

/// The `$select` relay365 asks for on a message GET (graph-contract §8): what SPEC §4's
/// `message` and the email primitives read, and no more. The contract's suggested list also
/// has `uniqueBody` (the body a second time), `bccRecipients`, `replyTo`, `sentDateTime`,
/// `isDraft`, `parentFolderId`, `changeKey` and `inferenceClassification`, which nothing
/// reads: each fetch would carry them, and each event parse them, for nothing.
pub const MESSAGE_SELECT: &str = "id,subject,from,sender,toRecipients,ccRecipients,receivedDateTime,bodyPreview,body,hasAttachments,importance,isRead,conversationId,internetMessageId,webLink,categories,internetMessageHeaders";

/// An attachment from `GET …/messages/{id}/attachments`.
#[derive(Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// `#microsoft.graph.fileAttachment`, `…itemAttachment` or `…referenceAttachment`
    /// (Microsoft's sample omits the `#`).
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub size: Option<i64>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_inline: Option<bool>,
    #[serde(default)]
    pub content_id: Option<String>,
    /// Base64; present on file attachments only.
    #[serde(default)]
    pub content_bytes: Option<String>,
    #[serde(default)]
    pub last_modified_date_time: Option<String>,
}

impl Attachment {
    /// True for a `fileAttachment`, the only kind that carries `contentBytes`.
    pub fn is_file(&self) -> bool {
        self.odata_type.as_deref().is_some_and(|t| {
            t.trim_start_matches('#')
                .eq_ignore_ascii_case("microsoft.graph.fileAttachment")
        })
    }

    /// The decoded content of a file attachment, `None` when it carries none.
    pub fn decode_content(&self) -> Option<Result<Vec<u8>, base64::DecodeError>> {
        use base64::Engine as _;
        let b64 = self.content_bytes.as_deref()?;
        Some(base64::engine::general_purpose::STANDARD.decode(b64))
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("odata_type", &self.odata_type)
            .field("id", &self.id)
            .field("name", &self.name)
            .field("content_type", &self.content_type)
            .field("size", &self.size)
            .field(
                "content_bytes_len",
                &self.content_bytes.as_ref().map(String::len),
            )
            .finish()
    }
}

/// One item of a delta page, in Graph's order.
#[derive(Debug, Clone)]
pub enum DeltaItem {
    /// The message was created or changed (possibly a replay of an earlier change).
    Upserted(Box<Message>),
    /// `{"id", "@removed": {"reason"}}`: deleted or moved out of the folder.
    Removed { id: String, reason: String },
}

/// One page of a per-folder message delta.
#[derive(Debug, Clone, Default)]
pub struct DeltaPage {
    pub items: Vec<DeltaItem>,
    /// Follow this (with [`crate::graph::GraphClient::delta_follow`]) for the next page.
    pub next_link: Option<String>,
    /// Present on the last page of a round: store it whole and use it for the next round.
    pub delta_link: Option<String>,
}

/// A collection page: `value[]` with an optional next link.
#[derive(Debug, Deserialize)]
pub(crate) struct Page<T> {
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    #[serde(default, rename = "@odata.nextLink")]
    pub next_link: Option<String>,
    #[serde(default, rename = "@odata.deltaLink")]
    pub delta_link: Option<String>,
}

impl DeltaPage {
    /// Splits a raw delta page into upserts and removals.
    pub(crate) fn from_raw(raw: Page<serde_json::Value>) -> Result<Self, serde_json::Error> {
        let mut items = Vec::with_capacity(raw.value.len());
        for value in raw.value {
            if let Some(removed) = value.get("@removed") {
                let id = value
                    .get("id")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string();
                let reason = removed
                    .get("reason")
                    .and_then(|v| v.as_str())
                    .unwrap_or("deleted")
                    .to_string();
                items.push(DeltaItem::Removed { id, reason });
            } else {
                items.push(DeltaItem::Upserted(Box::new(serde_json::from_value(
                    value,
                )?)));
            }
        }
        Ok(Self {
            items,
            next_link: raw.next_link,
            delta_link: raw.delta_link,
        })
    }
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Str(String),
    }
    Ok(match Option::<B>::deserialize(d)? {
        Some(B::Bool(b)) => Some(b),
        Some(B::Str(s)) if s.eq_ignore_ascii_case("true") => Some(true),
        Some(B::Str(s)) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    })
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/reference/graph-fixtures"
    );

    fn fixture(name: &str) -> Option<String> {
        // The fixtures live beside the repository; skip quietly when checked out elsewhere.
        std::fs::read_to_string(format!("{FIXTURES}/{name}")).ok()
    }

    #[test]
    fn message_fixture_parses() {
        let Some(text) = fixture("message-get-response.json") else {
            return;
        };
        let m: Message = serde_json::from_str(&text).unwrap();
        assert_eq!(m.id, "AAMkADhMGAAA=");
        assert_eq!(
            m.from.unwrap().email_address.address.as_deref(),
            Some("adelev@contoso.OnMicrosoft.com")
        );
        assert_eq!(m.to_recipients.len(), 1);
        assert_eq!(m.body.unwrap().content_type, "html");
        assert_eq!(m.is_read, Some(true));
    }

    #[test]
    fn delta_fixture_with_removed_and_string_bool_parses() {
        let Some(text) = fixture("delta-page-next-round-removed.json") else {
            return;
        };
        let raw: Page<serde_json::Value> = serde_json::from_str(&text).unwrap();
        let page = DeltaPage::from_raw(raw).unwrap();
        assert!(page.delta_link.is_some());
        assert!(matches!(&page.items[0], DeltaItem::Removed { reason, .. } if reason == "deleted"));
        assert!(matches!(&page.items[1], DeltaItem::Upserted(m) if m.is_read == Some(true)));
    }

    #[test]
    fn subscription_fixtures_parse_and_hide_client_state() {
        let Some(text) = fixture("subscription-create-response-outlook-full.json") else {
            return;
        };
        let s: Subscription = serde_json::from_str(&text).unwrap();
        assert_eq!(s.id, "5522bd62-7c96-4530-85b0-00b916f6151a");
        assert!(!format!("{s:?}").contains("secretClientState"));
        let Some(text) = fixture("subscription-list-response.json") else {
            return;
        };
        let list: Page<Subscription> = serde_json::from_str(&text).unwrap();
        assert_eq!(list.value[0].client_state, None);
    }

    #[test]
    fn attachment_fixture_parses() {
        let Some(text) = fixture("message-attachments-list-response.json") else {
            return;
        };
        let list: Page<Attachment> = serde_json::from_str(&text).unwrap();
        assert!(list.value[0].is_file());
        assert_eq!(list.value[0].size, Some(99));
    }
}
