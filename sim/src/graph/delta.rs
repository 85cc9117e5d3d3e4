//! `mailFolders/{f}/messages/delta`: the per-folder delta query, its pages and its tokens
//! (which carry the first request's query options and the mailbox's epoch, so a reset
//! invalidates them as Graph's `syncStateNotFound` does).

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::messages::{item_not_found, message_json, parse_select};
use super::{fail, ok, query_param, Reply};
use crate::state::SimMessage;
use crate::Sim;

/// What a delta token remembers; query options of the first request travel inside it.
#[derive(Serialize, Deserialize)]
struct DeltaToken {
    /// Mailbox key and folder it belongs to.
    m: String,
    f: String,
    /// Epoch of the mailbox's delta state; a reset invalidates older tokens.
    e: u64,
    /// Changes after this sequence number…
    s: u64,
    /// …up to this one (skip tokens only; a delta token reads up to "now").
    u: Option<u64>,
    /// Cursor inside a round (skip tokens only).
    c: Option<u64>,
    sel: Option<Vec<String>>,
}

fn encode_token(t: &DeltaToken) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(t).unwrap_or_default())
}

fn decode_token(s: &str) -> Option<DeltaToken> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim())
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn page_size(sim: &Sim, headers: &HeaderMap) -> usize {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.trim().strip_prefix("odata.maxpagesize="))
        .find_map(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(sim.config().delta_page_size)
        .clamp(1, 1000)
}

pub(super) fn delta(
    sim: &Sim,
    mailbox: &str,
    segs: &[String],
    folder: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Reply {
    let st = sim.state();
    let Some(mb) = st.mailboxes.get(mailbox) else {
        return item_not_found();
    };
    let skip = query_param(uri, "$skiptoken");
    let dtok = query_param(uri, "$deltatoken");
    let gone = || {
        fail(
            StatusCode::GONE,
            "syncStateNotFound",
            "The sync state is not found, expired or invalid. Start a new full synchronization.",
        )
    };
    let (since, upto, cursor, select) = match (skip, dtok) {
        (Some(t), _) | (None, Some(t)) => {
            let Some(tok) = decode_token(&t) else {
                return gone();
            };
            if tok.m != mailbox || tok.f != folder || tok.e != mb.delta_epoch {
                return gone();
            }
            (
                tok.s,
                tok.u.unwrap_or(mb.seq),
                tok.c.unwrap_or(tok.s),
                tok.sel,
            )
        }
        (None, None) => (0, mb.seq, 0, parse_select(query_param(uri, "$select"))),
    };
    let mut changes: Vec<&SimMessage> = mb
        .messages
        .iter()
        .filter(|m| m.folder == folder && m.changed_seq > cursor && m.changed_seq <= upto)
        // A message that was created and deleted since the last round was never seen.
        .filter(|m| !(m.deleted && m.created_seq > since))
        .collect();
    changes.sort_by_key(|m| m.changed_seq);
    let n = page_size(sim, headers);
    let more = changes.len() > n;
    changes.truncate(n);
    let value: Vec<Value> = changes
        .iter()
        .map(|m| {
            if m.deleted {
                json!({"@odata.type": "#microsoft.graph.message", "id": m.id, "@removed": {"reason": "deleted"}})
            } else {
                let mut v = message_json(m, select.as_deref());
                if let Some(o) = v.as_object_mut() {
                    o.entry("@odata.type")
                        .or_insert_with(|| json!("#microsoft.graph.message"));
                }
                v
            }
        })
        .collect();
    // Links keep the caller's own path form (me or users/{id}).
    let prefix: String = segs
        .iter()
        .take_while(|s| !s.to_lowercase().starts_with("mailfolders"))
        .cloned()
        .collect::<Vec<_>>()
        .join("/");
    let link_base = format!(
        "{}/{}/mailFolders('{}')/messages/delta",
        sim.base_url(),
        prefix,
        folder
    );
    let mut body = json!({
        "@odata.context": format!("{}/$metadata#Collection(message)", sim.base_url()),
        "value": value,
    });
    if more {
        let last = changes.last().map(|m| m.changed_seq).unwrap_or(cursor);
        let tok = DeltaToken {
            m: mailbox.into(),
            f: folder.into(),
            e: mb.delta_epoch,
            s: since,
            u: Some(upto),
            c: Some(last),
            sel: select,
        };
        body["@odata.nextLink"] = json!(format!("{link_base}?$skiptoken={}", encode_token(&tok)));
    } else {
        let tok = DeltaToken {
            m: mailbox.into(),
            f: folder.into(),
            e: mb.delta_epoch,
            s: upto,
            u: None,
            c: None,
            sel: select,
        };
        body["@odata.deltaLink"] = json!(format!("{link_base}?$deltatoken={}", encode_token(&tok)));
    }
    ok(Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_garbage_is_no_token() {
        let tok = DeltaToken {
            m: "adele@contoso.com".into(),
            f: "inbox".into(),
            e: 2,
            s: 7,
            u: Some(9),
            c: None,
            sel: Some(vec!["subject".into()]),
        };
        let back = decode_token(&encode_token(&tok));
        let back = back.as_ref();
        assert_eq!(
            back.map(|t| (t.m.as_str(), t.f.as_str(), t.e, t.s, t.u)),
            Some(("adele@contoso.com", "inbox", 2, 7, Some(9)))
        );
        assert_eq!(
            back.and_then(|t| t.sel.clone()),
            Some(vec!["subject".to_string()])
        );
        assert!(decode_token("not a token").is_none());
    }
}
