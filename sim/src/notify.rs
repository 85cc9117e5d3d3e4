//! Changing mailboxes and telling receivers about it: mail delivery, updates and deletes
//! (change notifications), lifecycle events, and the validation handshake.
//!
//! Like Graph, a notification POST must be answered 2xx within `notification_timeout` (3 s);
//! otherwise it is retried `notification_retries` times in the background, waiting
//! `notification_retry_delay` and doubling. The first attempt is awaited so callers get a
//! report; every attempt is logged ([`Sim::notifications`]).

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::Utc;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Serialize;
use serde_json::{json, Value};

use super::graph::{event_message_type, graph_time};
use super::state::{
    mailbox_key, AddressInput, Mailbox, MessageUpdate, NewMail, NotificationKind,
    NotificationRecord, SimAddress, SimAttachment, SimMessage, SimSubscription,
};
use super::{random_string, Sim};

/// What a control call did.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryReport {
    /// Ids of the messages created or changed.
    pub message_ids: Vec<String>,
    /// First attempts of the notification POSTs (retries continue in the background).
    pub notifications: Vec<NotificationRecord>,
}

/// A control call that cannot be done.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SimError {
    #[error("unknown mailbox '{0}'")]
    UnknownMailbox(String),
    #[error("unknown message '{0}'")]
    UnknownMessage(String),
    #[error("unknown subscription '{0}'")]
    UnknownSubscription(String),
    #[error("{0}")]
    BadRequest(String),
}

/// The three lifecycle events of graph-contract §6.
pub const LIFECYCLE_EVENTS: [&str; 3] =
    ["subscriptionRemoved", "reauthorizationRequired", "missed"];

/// A validation token with characters that must be URL-encoded, so that receivers which
/// forget to decode (or decode twice) fail here rather than against Graph.
fn validation_token() -> String {
    format!(
        "Validation: {} a+b=c&d %41 <é ü> ~{}",
        uuid::Uuid::new_v4(),
        random_string(6)
    )
}

fn message_id() -> String {
    // Graph ids are long base64 strings that may end in `=`.
    format!("AAMkAGI2{}AAA=", random_string(30))
}

fn change_key() -> String {
    format!("CQAAABYAAA{}", random_string(12))
}

fn resource_of(mailbox: &str, id: &str) -> String {
    format!("Users/{mailbox}/Messages/{id}")
}

impl Sim {
    /// Adds a mailbox (no-op if it exists).
    pub fn add_mailbox(&self, name: &str) {
        self.state()
            .mailboxes
            .entry(mailbox_key(name))
            .or_insert_with(|| Mailbox::new(name.trim()));
    }

    /// Names of the mailboxes.
    pub fn mailboxes(&self) -> Vec<String> {
        self.state()
            .mailboxes
            .values()
            .map(|m| m.name.clone())
            .collect()
    }

    /// Subscriptions alive now (expired ones are swept first).
    pub fn subscriptions(&self) -> Vec<SimSubscription> {
        let mut st = self.state();
        st.sweep(Utc::now());
        st.subscriptions.values().cloned().collect()
    }

    /// The log of notification and validation POSTs.
    pub fn notifications(&self) -> Vec<NotificationRecord> {
        self.state().notifications.clone()
    }

    /// Drops the next `n` notification items (they are never sent, as when Graph drops them).
    pub fn drop_next_notifications(&self, n: u32) {
        self.state().drop_next = n;
    }

    /// Sends the next `n` notification items twice.
    pub fn duplicate_next_notifications(&self, n: u32) {
        self.state().duplicate_next = n;
    }

    /// Makes a subscription expire now: Graph removes it and stops delivery, silently.
    pub fn expire_subscription(&self, id: &str) -> bool {
        self.state().subscriptions.remove(id).is_some()
    }

    /// Invalidates every delta token of a mailbox (the next delta answers 410).
    pub fn reset_delta(&self, mailbox: &str) -> Result<(), SimError> {
        let mut st = self.state();
        let mb = st
            .mailboxes
            .get_mut(&mailbox_key(mailbox))
            .ok_or_else(|| SimError::UnknownMailbox(mailbox.into()))?;
        mb.delta_epoch += 1;
        Ok(())
    }

    /// Delivers mail into a mailbox and notifies every subscription watching it for
    /// `created`, batching the items per notification URL.
    pub async fn deliver(
        &self,
        mailbox: &str,
        mails: Vec<NewMail>,
    ) -> Result<DeliveryReport, SimError> {
        let key = mailbox_key(mailbox);
        let mut ids = Vec::new();
        let batches = {
            let mut st = self.state();
            let st = &mut *st;
            let mb = st
                .mailboxes
                .get_mut(&key)
                .ok_or_else(|| SimError::UnknownMailbox(mailbox.into()))?;
            let mut touched = Vec::new();
            for mail in mails {
                let m = build_message(mb, mail)?;
                ids.push(m.id.clone());
                touched.push((m.id.clone(), m.folder.clone(), m.change_key.clone()));
                mb.push(m);
            }
            let name = mb.name.clone();
            batch_for(
                st.subscriptions.values(),
                &name,
                "created",
                &touched,
                self.tenant_id(),
            )
        };
        let notifications = self.send_batches(NotificationKind::Change, batches).await;
        Ok(DeliveryReport {
            message_ids: ids,
            notifications,
        })
    }

    /// Changes a message and sends `updated` notifications.
    pub async fn update_message(
        &self,
        mailbox: &str,
        id: &str,
        update: MessageUpdate,
    ) -> Result<DeliveryReport, SimError> {
        self.change_message(mailbox, id, "updated", |m| {
            if let Some(s) = update.subject {
                m.subject = s;
            }
            if let Some(b) = update.body {
                m.body = b;
            }
            if let Some(r) = update.is_read {
                m.is_read = r;
            }
            if let Some(i) = update.importance {
                m.importance = i;
            }
            if let Some(c) = update.categories {
                m.categories = c;
            }
        })
        .await
    }

    /// Deletes a message and sends `deleted` notifications; delta then reports `@removed`.
    pub async fn delete_message(
        &self,
        mailbox: &str,
        id: &str,
    ) -> Result<DeliveryReport, SimError> {
        self.change_message(mailbox, id, "deleted", |m| m.deleted = true)
            .await
    }

    async fn change_message(
        &self,
        mailbox: &str,
        id: &str,
        change: &str,
        apply: impl FnOnce(&mut SimMessage),
    ) -> Result<DeliveryReport, SimError> {
        let batches = {
            let mut st = self.state();
            let st = &mut *st;
            let mb = st
                .mailboxes
                .get_mut(&mailbox_key(mailbox))
                .ok_or_else(|| SimError::UnknownMailbox(mailbox.into()))?;
            mb.seq += 1;
            let seq = mb.seq;
            let m = mb
                .find_mut(id)
                .ok_or_else(|| SimError::UnknownMessage(id.into()))?;
            apply(m);
            m.changed_seq = seq;
            m.change_key = change_key();
            m.modified_at = Utc::now();
            let touched = vec![(m.id.clone(), m.folder.clone(), m.change_key.clone())];
            let name = mb.name.clone();
            batch_for(
                st.subscriptions.values(),
                &name,
                change,
                &touched,
                self.tenant_id(),
            )
        };
        let notifications = self.send_batches(NotificationKind::Change, batches).await;
        Ok(DeliveryReport {
            message_ids: vec![id.to_string()],
            notifications,
        })
    }

    /// Sends a lifecycle event (`subscriptionRemoved`, `reauthorizationRequired`, `missed`)
    /// to a subscription's lifecycleNotificationUrl, in the fixtures' shape.
    /// `subscriptionRemoved` also removes the subscription. A subscription without a
    /// lifecycle URL gets nothing, as in Graph.
    pub async fn send_lifecycle(
        &self,
        subscription_id: &str,
        event: &str,
    ) -> Result<Vec<NotificationRecord>, SimError> {
        if !LIFECYCLE_EVENTS.contains(&event) {
            return Err(SimError::BadRequest(format!(
                "unknown lifecycle event '{event}'; use one of {LIFECYCLE_EVENTS:?}"
            )));
        }
        let sub = {
            let mut st = self.state();
            st.sweep(Utc::now());
            let sub = st.subscriptions.get(subscription_id).cloned();
            let sub = sub.ok_or_else(|| SimError::UnknownSubscription(subscription_id.into()))?;
            if event == "subscriptionRemoved" {
                st.subscriptions.remove(subscription_id);
            }
            sub
        };
        let Some(url) = sub.lifecycle_notification_url.clone() else {
            return Ok(Vec::new());
        };
        let mut item = json!({
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": graph_time(sub.expiration_date_time),
            "tenantId": self.tenant_id(),
            "lifecycleEvent": event,
        });
        if let Some(cs) = &sub.client_state {
            item["clientState"] = json!(cs);
        }
        Ok(self
            .send_batches(NotificationKind::Lifecycle, vec![(url, vec![item])])
            .await)
    }

    /// POSTs each batch (with drop/duplicate faults applied), awaiting first attempts.
    async fn send_batches(
        &self,
        kind: NotificationKind,
        batches: Vec<(String, Vec<Value>)>,
    ) -> Vec<NotificationRecord> {
        let mut sends = Vec::new();
        {
            let mut st = self.state();
            for (url, items) in batches {
                let mut keep = Vec::new();
                let mut again = Vec::new();
                for item in items {
                    if st.drop_next > 0 {
                        st.drop_next -= 1;
                        continue;
                    }
                    if st.duplicate_next > 0 {
                        st.duplicate_next -= 1;
                        again.push(item.clone());
                    }
                    keep.push(item);
                }
                if !keep.is_empty() {
                    sends.push((url.clone(), keep));
                }
                if !again.is_empty() {
                    sends.push((url, again));
                }
            }
        }
        let mut out = Vec::new();
        // Sequential, so a duplicate arrives after its original.
        for (url, items) in sends {
            out.push(
                self.post_with_retries(kind, url, json!({ "value": items }))
                    .await,
            );
        }
        out
    }

    async fn post_with_retries(
        &self,
        kind: NotificationKind,
        url: String,
        body: Value,
    ) -> NotificationRecord {
        let first = self.post_once(kind, &url, &body, 1).await;
        if !first.delivered() && self.config().notification_retries > 0 {
            let sim = self.clone();
            tokio::spawn(async move {
                let mut delay = sim.config().notification_retry_delay;
                for attempt in 2..=sim.config().notification_retries + 1 {
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    if sim.post_once(kind, &url, &body, attempt).await.delivered() {
                        break;
                    }
                }
            });
        }
        first
    }

    async fn post_once(
        &self,
        kind: NotificationKind,
        url: &str,
        body: &Value,
        attempt: u32,
    ) -> NotificationRecord {
        let result = self
            .http()
            .post(url)
            .json(body)
            .timeout(self.config().notification_timeout)
            .send()
            .await;
        let (status, error) = match result {
            Ok(r) => (Some(r.status().as_u16()), None),
            Err(e) => (
                None,
                Some(if e.is_timeout() {
                    "timed out".to_string()
                } else {
                    e.without_url().to_string()
                }),
            ),
        };
        let rec = NotificationRecord {
            kind,
            url: url.to_string(),
            attempt,
            status,
            error,
            at: Utc::now(),
            body: Some(body.clone()),
        };
        super::state::push_capped(&mut self.state().notifications, rec.clone());
        rec
    }

    /// The validation handshake of one URL: `POST {url}?validationToken={token}` with
    /// `text/plain`; the answer must be 200, `text/plain`, with the decoded token as the
    /// whole body, within `validation_timeout`.
    pub(crate) async fn validate_url(&self, url: &str) -> Result<(), String> {
        let token = validation_token();
        let sep = if url.contains('?') { '&' } else { '?' };
        let target = format!(
            "{url}{sep}validationToken={}",
            utf8_percent_encode(&token, NON_ALPHANUMERIC)
        );
        let result = self
            .http()
            .post(&target)
            .header("content-type", "text/plain; charset=utf-8")
            .timeout(self.config().validation_timeout)
            .send()
            .await;
        let outcome = match result {
            Err(e) if e.is_timeout() => (
                None,
                Err("Subscription validation request timed out.".to_string()),
            ),
            Err(e) => (
                None,
                Err(format!(
                    "Subscription validation request failed: {}",
                    e.without_url()
                )),
            ),
            Ok(resp) => {
                let status = resp.status();
                let plain = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/plain"));
                let text = resp.text().await.unwrap_or_default();
                let verdict = if status.as_u16() != 200 {
                    Err(format!(
                        "HTTP status code is '{}'.",
                        status.canonical_reason().unwrap_or(status.as_str())
                    ))
                } else if !plain {
                    Err("The response Content-Type must be text/plain.".to_string())
                } else if text != token {
                    Err("The response body must be the decoded validationToken.".to_string())
                } else {
                    Ok(())
                };
                (Some(status.as_u16()), verdict)
            }
        };
        let rec = NotificationRecord {
            kind: NotificationKind::Validation,
            url: url.to_string(),
            attempt: 1,
            status: outcome.0,
            error: outcome.1.as_ref().err().cloned(),
            at: Utc::now(),
            body: None,
        };
        super::state::push_capped(&mut self.state().notifications, rec);
        outcome.1
    }
}

fn build_message(mb: &mut Mailbox, mail: NewMail) -> Result<SimMessage, SimError> {
    let body_type = match mail.body_type.as_deref().unwrap_or("text") {
        t @ ("text" | "html") => t.to_string(),
        other => {
            return Err(SimError::BadRequest(format!(
                "body_type must be text or html, not '{other}'"
            )))
        }
    };
    if let Some(kind) = mail.meeting_message_type.as_deref() {
        if event_message_type(kind).is_none() {
            return Err(SimError::BadRequest(format!(
                "meeting_message_type must be one of meetingRequest, meetingCancelled, \
                 meetingAccepted, meetingTenativelyAccepted, meetingDeclined, not '{kind}'"
            )));
        }
    }
    let mut attachments = Vec::new();
    for a in mail.attachments {
        let bytes = match (&a.content_base64, &a.content) {
            (Some(b64), _) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| {
                    SimError::BadRequest(format!(
                        "attachment '{}': content_base64 is not base64: {e}",
                        a.name
                    ))
                })?,
            (None, Some(text)) => text.as_bytes().to_vec(),
            (None, None) => Vec::new(),
        };
        attachments.push(SimAttachment {
            id: format!("AAMkAtt{}=", random_string(18)),
            name: a.name,
            content_type: a
                .content_type
                .unwrap_or_else(|| "application/octet-stream".into()),
            bytes,
            is_inline: a.is_inline,
        });
    }
    let addr = |a: &AddressInput| a.resolve();
    let owner = SimAddress {
        name: mb.name.clone(),
        address: mb.name.clone(),
    };
    mb.seq += 1;
    let now = Utc::now();
    let id = message_id();
    Ok(SimMessage {
        internet_message_id: mail
            .internet_message_id
            .unwrap_or_else(|| format!("<{}@sim.test>", random_string(12))),
        conversation_id: format!("AAQkAD{}=", random_string(12)),
        id,
        folder: mail
            .folder
            .map(|f| f.to_lowercase())
            .unwrap_or_else(|| "inbox".into()),
        created_seq: mb.seq,
        changed_seq: mb.seq,
        deleted: false,
        change_key: change_key(),
        subject: mail.subject,
        body: mail.body,
        body_type,
        from: mail.from.as_ref().map(addr).unwrap_or_else(|| SimAddress {
            name: "Sim Sender".into(),
            address: "sender@sim.test".into(),
        }),
        to: if mail.to.is_empty() {
            vec![owner]
        } else {
            mail.to.iter().map(addr).collect()
        },
        cc: mail.cc.iter().map(addr).collect(),
        created_at: now,
        modified_at: now,
        is_read: mail.is_read.unwrap_or(false),
        importance: mail.importance.unwrap_or_else(|| "normal".into()),
        categories: mail.categories,
        attachments,
        meeting_message_type: mail.meeting_message_type,
    })
}

/// Notification items per notificationUrl, for messages `(id, folder, change_key)` of `mailbox`,
/// in the shape of fixture `change-notification-message-created.json`.
fn batch_for<'a>(
    subs: impl Iterator<Item = &'a SimSubscription>,
    mailbox: &str,
    change: &str,
    touched: &[(String, String, String)],
    tenant_id: &str,
) -> Vec<(String, Vec<Value>)> {
    let key = mailbox_key(mailbox);
    let now = Utc::now();
    let mut by_url: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for s in subs.filter(|s| s.expiration_date_time > now && s.has_change_type(change)) {
        for (id, folder, ck) in touched {
            if !s.watches(&key, folder) {
                continue;
            }
            let resource = resource_of(mailbox, id);
            let mut item = json!({
                "id": random_string(9),
                "subscriptionId": s.id,
                "subscriptionExpirationDateTime": graph_time(s.expiration_date_time),
                "changeType": change,
                "resource": resource,
                "tenantId": tenant_id,
                "resourceData": {
                    "@odata.type": "#Microsoft.Graph.Message",
                    "@odata.id": resource,
                    "@odata.etag": format!("W/\"{ck}\""),
                    "id": id,
                },
            });
            if let Some(cs) = &s.client_state {
                item["clientState"] = json!(cs);
            }
            by_url
                .entry(s.notification_url.clone())
                .or_default()
                .push(item);
        }
    }
    by_url.into_iter().collect()
}
