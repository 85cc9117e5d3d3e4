//! Delta resync: what changed in a subscription's folder since its last round becomes
//! events, keyed as notifications are (SPEC §3.1), so that a mail notified and then seen
//! again here is stored once, and a mail whose notification Graph dropped arrives once.
//!
//! Each round follows the stored delta link and every `@odata.nextLink`, inserts each page's
//! events as it goes (a round cut short is repeated; its events dedupe), and stores the new
//! delta link only when the round is complete. The baseline, taken when the subscription is
//! created, pages through the folder the same way but turns nothing into events: mail that was
//! there before is never delivered. When Graph has forgotten the link (410, or
//! `syncStateNotFound` / `resyncRequired`), the folder is read again from scratch and only
//! mail received since the last completed round becomes events.

use serde_json::json;

use crate::credential::{self, CredentialError, GraphSession};
use crate::deps::Deps;
use crate::graph::{DeltaItem, DeltaPage, GraphError};
use crate::processor;
use crate::store::events::{self, event_id, NewEvent};
use crate::store::subscriptions::SubscriptionRow;
use crate::store::{delta, now_ms};
use crate::subscription::SubscriptionError;

/// In an incremental round, mail received up to this long before the last round started
/// still counts as `created` (Graph's clock and ours differ, and mail can show in delta a
/// little after it was received); a repeat of what was delivered dedupes by its key. A full
/// read after the link was lost is strict: only mail received since the last round.
const SKEW_MS: i64 = 300_000;

/// How much earlier than a round's `since` to look for mail already stored as created: a
/// message received just before `since` (Graph's clock and ours differ) is notified after it.
const KNOWN_MARGIN_MS: i64 = 600_000;

/// What a round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Events stored (not counting ones already stored).
    pub events: usize,
    /// Pages read.
    pub pages: usize,
    /// The link was gone and the folder was read from scratch.
    pub full: bool,
}

/// The folder a subscription's resource watches: `…/mailFolders('x')/messages` or
/// `…/mailFolders/x/messages` → `x` (as written: folder ids are case-sensitive); a resource
/// without a folder is the inbox.
pub fn folder_of(resource: &str) -> String {
    let segs: Vec<&str> = resource.split('/').filter(|s| !s.is_empty()).collect();
    for (i, s) in segs.iter().enumerate() {
        let keyword = s.get(..11).unwrap_or("");
        if !keyword.eq_ignore_ascii_case("mailfolders") {
            continue;
        }
        if let Some(inner) = s[11..].strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
            return inner.trim_matches(|c| c == '\'' || c == '"').to_string();
        }
        if s.len() == 11 {
            if let Some(f) = segs.get(i + 1) {
                return f.to_string();
            }
        }
    }
    "inbox".to_string()
}

/// Takes the baseline of a new subscription: the current delta link, no events.
/// Nothing is done when a baseline is stored already (it was asked for twice: at creation and
/// by a reload that ran before it ended).
pub async fn baseline(deps: &Deps, row: &SubscriptionRow) -> Result<Round, SubscriptionError> {
    if delta::get(&deps.store, &row.id, &folder_of(&row.resource))
        .await?
        .is_some()
    {
        return Ok(Round::default());
    }
    round(deps, row, Mode::Baseline).await
}

/// Turns what changed since the last round into events.
pub async fn resync(deps: &Deps, row: &SubscriptionRow) -> Result<Round, SubscriptionError> {
    round(deps, row, Mode::Changes).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Baseline,
    Changes,
}

async fn round(deps: &Deps, row: &SubscriptionRow, mode: Mode) -> Result<Round, SubscriptionError> {
    let folder = folder_of(&row.resource);
    let started = now_ms();
    let state = delta::get(&deps.store, &row.id, &folder).await?;
    let session = credential::session(deps, &row.credential_id).await?;
    let mut out = Round::default();
    let stored_link = state
        .as_ref()
        .and_then(|s| s.delta_link.clone())
        .filter(|_| mode == Mode::Changes);
    let last_sync = state.as_ref().and_then(|s| s.last_sync_at);
    let mut page = match stored_link {
        Some(link) => match follow(&session, &link).await {
            Ok(p) => p,
            Err(e) if sync_state_gone(&e) => {
                tracing::info!(subscription = %row.id, %folder, "delta link expired; reading the folder again");
                out.full = true;
                start(&session, &folder).await?
            }
            Err(e) => return Err(e.into()),
        },
        None => {
            // No link: a baseline, or a subscription older than its delta state.
            out.full = mode == Mode::Changes;
            start(&session, &folder).await?
        }
    };
    // In a full read only mail received since the last completed round is new (or, before
    // any round, since the subscription was created).
    let since = last_sync.unwrap_or(row.created_at);
    let since = if out.full { since } else { since - SKEW_MS };
    // Mail already stored as created (notified, or found by an earlier round) comes back here
    // when it changed since (read, moved by a rule): under its new etag it would make a new
    // key, and be delivered twice.
    let mut known: Option<std::collections::HashSet<String>> = None;
    loop {
        out.pages += 1;
        if mode == Mode::Changes {
            let mut new = to_events(row, &page.items, out.full, since);
            if new.iter().any(|e| e.change_type == "created") {
                if known.is_none() {
                    let from = since.saturating_sub(KNOWN_MARGIN_MS);
                    known = Some(
                        events::created_since(&deps.store, &row.credential_id, &row.id, from)
                            .await?,
                    );
                }
                if let Some(known) = &known {
                    new.retain(|e| {
                        e.change_type != "created"
                            || e.resource_id.as_ref().is_none_or(|id| !known.contains(id))
                    });
                }
            }
            if !new.is_empty() {
                let inserted = events::insert_batch(&deps.store, &new).await?;
                out.events += inserted.len();
                if !inserted.is_empty() {
                    processor::dispatch(deps, inserted);
                }
            }
        }
        if let Some(next) = page.next_link.take() {
            page = follow(&session, &next).await?;
            continue;
        }
        match page.delta_link {
            Some(link) => delta::save(&deps.store, &row.id, &folder, &link, started).await?,
            None => {
                return Err(CredentialError::Graph(GraphError::InvalidResponse(
                    "a delta page without nextLink or deltaLink".into(),
                ))
                .into())
            }
        }
        return Ok(out);
    }
}

async fn start(session: &GraphSession, folder: &str) -> Result<DeltaPage, CredentialError> {
    let mailbox = session.mailbox.clone();
    session
        .call(|c, t| {
            let (mailbox, folder) = (mailbox.clone(), folder.to_string());
            async move { c.delta_start(&t, mailbox.as_deref(), &folder, None).await }
        })
        .await
}

async fn follow(session: &GraphSession, link: &str) -> Result<DeltaPage, CredentialError> {
    session
        .call(|c, t| {
            let link = link.to_string();
            async move { c.delta_follow(&t, &link, None).await }
        })
        .await
}

/// 410 Gone, or the codes Graph gives an expired delta token.
fn sync_state_gone(e: &CredentialError) -> bool {
    match e {
        CredentialError::Graph(GraphError::Other { status, code, .. }) => {
            *status == 410
                || code.eq_ignore_ascii_case("syncStateNotFound")
                || code.eq_ignore_ascii_case("resyncRequired")
        }
        _ => false,
    }
}

/// The events of one delta page. An item received since the last round is `created`; an
/// older one that changed is `updated`; a removed one is `deleted`; each only if the
/// subscription asked for that change type. In a full read only `created` counts (what was
/// removed or changed while the link was lost cannot be told apart from old mail).
fn to_events(row: &SubscriptionRow, items: &[DeltaItem], full: bool, since: i64) -> Vec<NewEvent> {
    let wanted = |ct: &str| row.change_types.split(',').any(|t| t.trim() == ct);
    let now = now_ms();
    let mut out = Vec::new();
    for item in items {
        let (ct, id, etag) = match item {
            DeltaItem::Upserted(m) => {
                let received = m.received_date_time.map(|t| t.timestamp_millis());
                // Graph gives the time to the second: a mail of the second `since` falls in
                // may be after it.
                let new = received.is_none_or(|r| r >= since - 999);
                let ct = match (new, full) {
                    (true, _) => "created",
                    (false, false) => "updated",
                    (false, true) => continue,
                };
                (ct, m.id.as_str(), m.etag.as_deref().unwrap_or(""))
            }
            DeltaItem::Removed { id, .. } if !full => ("deleted", id.as_str(), ""),
            DeltaItem::Removed { .. } => continue,
        };
        if !wanted(ct) || id.is_empty() {
            continue;
        }
        let raw = json!({
            "source": "delta",
            "changeType": ct,
            "resource": row.resource,
            "resourceData": {"id": id, "@odata.etag": etag},
        });
        out.push(NewEvent {
            id: event_id(now),
            idempotency_key: format!("{}:{ct}:{id}:{etag}", row.id),
            kind: "resync",
            subscription_id: Some(row.id.clone()),
            credential_id: Some(row.credential_id.clone()),
            change_type: ct.to_string(),
            resource_id: Some(id.to_string()),
            raw: raw.to_string(),
            received_at: now,
            claim: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_comes_from_the_resource() {
        assert_eq!(
            folder_of("users/a@b.test/mailFolders('Inbox')/messages"),
            "Inbox"
        );
        assert_eq!(folder_of("me/mailfolders/AAMkF=/messages"), "AAMkF=");
        assert_eq!(folder_of("me/messages"), "inbox");
    }
}
