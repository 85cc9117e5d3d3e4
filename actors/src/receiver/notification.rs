//! The shape of a notification collection (SPEC §3.1, graph-contract §4, §6): the pure parser
//! the HTTP handlers run before anything is authenticated, and the idempotency key.
//!
//! Kept apart from the actor because it faces the internet unauthenticated: every input is
//! hostile until the receiver has checked its `subscriptionId` and `clientState`, so what is
//! here must stay linear in the body and never panic (fuzzed in `tests/it/receiver.rs`).

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

/// One notification item, its shape checked by [`parse_collection`]. Not yet authenticated.
#[derive(Clone)]
pub struct Item {
    /// Graph's subscription id. Absent means unknown (the item is dropped).
    pub subscription_id: Option<String>,
    /// Secret: compared in constant time, never logged (hence no `Debug`).
    pub client_state: Option<String>,
    /// A change or a lifecycle notification.
    pub kind: ItemKind,
    /// The item as Graph sent it, `clientState` replaced by `"***"` (what is stored).
    pub raw: String,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("subscription_id", &self.subscription_id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// What an item is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemKind {
    /// A change notification (`changeType`).
    Change {
        change_type: String,
        /// `resourceData.id`, else `resource`.
        resource_id: Option<String>,
        /// `resourceData.@odata.etag`.
        etag: Option<String>,
    },
    /// A lifecycle notification (`lifecycleEvent`).
    Lifecycle {
        event: String,
        /// `subscriptionExpirationDateTime`, verbatim (empty if absent).
        expiration: String,
    },
}

/// Why a body is not a notification collection. The text is safe to answer (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Most items one notification collection may hold. Graph batches a few notifications per
/// POST (graph-contract §4); a collection past this is refused whole (400) before any of it
/// is checked, so that one request's work stays bounded.
pub const MAX_ITEMS: usize = 1_000;

/// Most members one object may have (the collection, an item, its `resourceData`). A real item
/// has about ten; more is refused (400), which bounds what one item can cost.
pub const MAX_MEMBERS: usize = 64;

/// What a visitor says when a limit is passed; its text is the answer's message.
const LIMIT: &str = "limit: ";

/// A JSON object's members as written: each value left unparsed (a slice of the body), the
/// names decoded (borrowed unless they hold escapes). Nothing is built for what is not read.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(12);
                while let Some(Name(name)) = map.next_key()? {
                    if members.len() == MAX_MEMBERS {
                        return Err(serde::de::Error::custom(format_args!(
                            "{LIMIT}an object has more than {MAX_MEMBERS} members"
                        )));
                    }
                    members.push((name, map.next_value()?));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// A collection read in one pass over the body: the members of each item of `value` (at most
/// [`MAX_ITEMS`]), the other top-level members skipped. `None` when there is no `value`.
///
/// One pass matters: a body of up to 1 MiB built to cost the parser is read once, not once as
/// the collection, again as the array and again as each item.
struct Collection<'a>(Option<Vec<Members<'a>>>);

/// What an item that is not an object says, so that its message can name the item.
const NOT_AN_OBJECT: &str = "not an object: ";

impl<'de> Deserialize<'de> for Collection<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Collection<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut items = None;
                let mut members = 0;
                while let Some(Name(name)) = map.next_key()? {
                    members += 1;
                    if members > MAX_MEMBERS {
                        return Err(serde::de::Error::custom(format_args!(
                            "{LIMIT}an object has more than {MAX_MEMBERS} members"
                        )));
                    }
                    if name == "value" {
                        items = Some(map.next_value::<Items<'de>>()?.0);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(Collection(items))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The `value` array: each item's members, read where they stand.
struct Items<'a>(Vec<Members<'a>>);

impl<'de> Deserialize<'de> for Items<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Items<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON array")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(4);
                while let Some(item) = seq.next_element_seed(ItemSeed(items.len()))? {
                    if items.len() == MAX_ITEMS {
                        return Err(serde::de::Error::custom(format_args!(
                            "{LIMIT}a collection has more than {MAX_ITEMS} items"
                        )));
                    }
                    items.push(item);
                }
                Ok(Items(items))
            }
        }
        d.deserialize_seq(Visit)
    }
}

/// Reads item `.0` of `value`, naming it in its errors.
struct ItemSeed(usize);

impl<'de> serde::de::DeserializeSeed<'de> for ItemSeed {
    type Value = Members<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        use serde::de::Error;
        let i = self.0;
        Members::deserialize(d).map_err(|e| {
            let text = e.to_string();
            match text.strip_prefix(LIMIT) {
                Some(rest) => D::Error::custom(format_args!("{LIMIT}value[{i}]: {rest}")),
                None if text.starts_with("invalid type") => {
                    D::Error::custom(format_args!("{NOT_AN_OBJECT}value[{i}] must be an object"))
                }
                None => e,
            }
        })
    }
}

/// The message of a passed limit, if `e` is one (without serde's position suffix).
fn limit(e: &serde_json::Error) -> Option<ParseError> {
    let text = e.to_string();
    let rest = text.strip_prefix(LIMIT)?;
    let end = rest.find(" at line ").unwrap_or(rest.len());
    Some(ParseError(rest[..end].to_string()))
}

/// A member name, borrowed from the body when it has no escapes.
#[derive(Deserialize)]
struct Name<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'a> Members<'a> {
    /// The value of `name` (the last one, if it is repeated).
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// The string `name`: absent or null is `None`; another type is an error.
    fn string(&self, name: &str, at: &str) -> Result<Option<String>, ParseError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => serde_json::from_str::<Option<String>>(v.get())
                .map_err(|_| ParseError(format!("{at}.{name} must be a string"))),
        }
    }
}

const NOT_A_COLLECTION: &str = "expected a JSON object with a `value` array";

/// Parses a notification collection `{"value": [item, …]}`. Any JSON that is not an object
/// with a `value` array of objects, or whose known fields have the wrong types, or an item that
/// has neither `changeType` nor `lifecycleEvent`, is an error. Never panics (fuzzed).
///
/// Only the fields it reads are decoded; each item's stored text is its members as sent, in
/// their order, with `clientState` replaced (a repeated member kept once, its last value).
pub fn parse_collection(body: &[u8]) -> Result<Vec<Item>, ParseError> {
    let Collection(values) = serde_json::from_slice(body).map_err(|e| {
        if let Some(l) = limit(&e) {
            return l;
        }
        let text = e.to_string();
        if let Some(rest) = text.strip_prefix(NOT_AN_OBJECT) {
            let end = rest.find(" at line ").unwrap_or(rest.len());
            return ParseError(rest[..end].to_string());
        }
        match e.classify() {
            serde_json::error::Category::Data => ParseError(NOT_A_COLLECTION.into()),
            _ => ParseError(format!("the body is not JSON: {e}")),
        }
    })?;
    let Some(values) = values else {
        return Err(ParseError(NOT_A_COLLECTION.into()));
    };
    let mut items = Vec::with_capacity(values.len());
    for (i, m) in values.into_iter().enumerate() {
        let at = format!("value[{i}]");
        let subscription_id = m.string("subscriptionId", &at)?;
        let client_state = m.string("clientState", &at)?;
        let change_type = m.string("changeType", &at)?;
        let lifecycle = m.string("lifecycleEvent", &at)?;
        let expiration = m.string("subscriptionExpirationDateTime", &at)?;
        let resource = m.string("resource", &at)?;
        let rat = format!("{at}.resourceData");
        let (resource_id, etag) = match m.get("resourceData") {
            None => (None, None),
            Some(rd) if rd.get() == "null" => (None, None),
            Some(rd) => {
                let rd: Members<'_> = serde_json::from_str(rd.get()).map_err(|e| {
                    limit(&e)
                        .map(|l| ParseError(format!("{rat}: {}", l.0)))
                        .unwrap_or_else(|| ParseError(format!("{rat} must be an object")))
                })?;
                (rd.string("id", &rat)?, rd.string("@odata.etag", &rat)?)
            }
        };
        let kind = match (lifecycle, change_type) {
            (Some(event), _) => ItemKind::Lifecycle {
                event,
                expiration: expiration.unwrap_or_default(),
            },
            (None, Some(change_type)) => ItemKind::Change {
                change_type,
                resource_id: resource_id.or(resource),
                etag,
            },
            (None, None) => {
                return Err(ParseError(format!(
                    "{at} has neither changeType nor lifecycleEvent"
                )))
            }
        };
        items.push(Item {
            subscription_id,
            client_state,
            kind,
            raw: masked(&m),
        });
    }
    Ok(items)
}

/// The item's text to store: its members as sent, `clientState` (if any) as `"***"`.
///
/// A repeated member is kept once, with its last value (what a JSON reader would see). The
/// work is bounded by [`MAX_MEMBERS`] and linear past a handful of members.
fn masked(m: &Members<'_>) -> String {
    let members = &m.0;
    // Which members a later one of the same name overrides. A real item has about ten: a scan
    // of the names after each costs less than hashing them; past that, one pass over a map.
    let mut overridden = vec![false; members.len()];
    if members.len() <= 16 {
        for (i, (name, _)) in members.iter().enumerate() {
            overridden[i] = members[i + 1..].iter().any(|(later, _)| later == name);
        }
    } else {
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(members.len());
        for (i, (name, _)) in members.iter().enumerate() {
            if let Some(earlier) = last.insert(name.as_ref(), i) {
                overridden[earlier] = true;
            }
        }
    }
    let size: usize = members
        .iter()
        .map(|(name, value)| name.len() + value.get().len() + 4)
        .sum();
    let mut out = String::with_capacity(size + 2);
    out.push('{');
    for ((name, value), overridden) in members.iter().zip(overridden) {
        if overridden {
            continue;
        }
        if out.len() > 1 {
            out.push(',');
        }
        if name.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
            // Escaping a string again cannot fail.
            out.push_str(&serde_json::to_string(name.as_ref()).unwrap_or_default());
        } else {
            out.push('"');
            out.push_str(name);
            out.push('"');
        }
        out.push(':');
        out.push_str(if name == "clientState" {
            "\"***\""
        } else {
            value.get()
        });
    }
    out.push('}');
    out
}

/// The idempotency key of an item (SPEC §3.1): `{our subscription}:{changeType}:{resource id}:
/// {etag}` for changes (etag empty if absent), `{Graph subscriptionId}:{lifecycleEvent}:
/// {subscriptionExpirationDateTime}` for lifecycle items.
pub fn idempotency_key(
    our_subscription: &str,
    graph_subscription: &str,
    kind: &ItemKind,
) -> String {
    match kind {
        ItemKind::Change {
            change_type,
            resource_id,
            etag,
        } => format!(
            "{our_subscription}:{change_type}:{}:{}",
            resource_id.as_deref().unwrap_or(""),
            etag.as_deref().unwrap_or("")
        ),
        ItemKind::Lifecycle { event, expiration } => {
            format!("{graph_subscription}:{event}:{expiration}")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::Value;

    use super::*;

    #[test]
    fn parses_and_masks() {
        let body =
            br#"{"value":[{"subscriptionId":"s","clientState":"secret","changeType":"created",
            "resource":"r","resourceData":{"id":"m1","@odata.etag":"W/\"1\""}},
            {"subscriptionId":"s","clientState":"secret","lifecycleEvent":"missed",
             "subscriptionExpirationDateTime":"2019-03-20T11:00:00Z"}]}"#;
        let items = parse_collection(body).unwrap();
        assert_eq!(items.len(), 2);
        assert!(!items[0].raw.contains("secret") && items[0].raw.contains("\"***\""));
        assert_eq!(
            idempotency_key("our", "s", &items[0].kind),
            "our:created:m1:W/\"1\""
        );
        assert_eq!(
            idempotency_key("our", "s", &items[1].kind),
            "s:missed:2019-03-20T11:00:00Z"
        );
        assert_eq!(items[0].client_state.as_deref(), Some("secret"));
    }

    #[test]
    fn rejects_bad_shapes() {
        for body in [
            &b"nope"[..],
            b"[]",
            b"{}",
            b"{\"value\":{}}",
            b"{\"value\":[1]}",
            b"{\"value\":[{\"subscriptionId\":1,\"changeType\":\"created\"}]}",
            b"{\"value\":[{\"changeType\":\"created\",\"resourceData\":[]}]}",
            b"{\"value\":[{\"subscriptionId\":\"s\"}]}",
        ] {
            assert!(
                parse_collection(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(parse_collection(b"{\"value\":[]}").unwrap().is_empty());
        assert!(parse_collection(b"{\"value\":[]")
            .unwrap_err()
            .0
            .starts_with("the body is not JSON"));
        assert_eq!(parse_collection(b"[1]").unwrap_err().0, NOT_A_COLLECTION);
    }

    #[test]
    fn stores_the_item_as_sent_with_only_the_client_state_replaced() {
        let body =
            br#"{"value":[{"b":1, "clientState":"secret","a":[1, 2.50],"changeType":"created",
            "x\"y":{"k":"v"},"b":"last","resourceData":null}]}"#;
        let items = parse_collection(body).unwrap();
        // Order and formatting of values kept; a repeated member once, with its last value.
        assert_eq!(
            items[0].raw,
            r#"{"clientState":"***","a":[1, 2.50],"changeType":"created","x\"y":{"k":"v"},"b":"last","resourceData":null}"#
        );
        let raw: Value = serde_json::from_str(&items[0].raw).unwrap();
        assert_eq!(raw["x\"y"]["k"], "v");
        // A null clientState is masked too; an absent one is not invented.
        let items = parse_collection(
            br#"{"value":[{"clientState":null,"changeType":"created"},{"changeType":"updated"}]}"#,
        )
        .unwrap();
        assert_eq!(
            items[0].raw,
            r#"{"clientState":"***","changeType":"created"}"#
        );
        assert_eq!(items[0].client_state, None);
        assert_eq!(items[1].raw, r#"{"changeType":"updated"}"#);
    }

    #[test]
    fn limits_are_a_clear_error() {
        let members: String = (0..=MAX_MEMBERS).map(|i| format!(",\"m{i}\":1")).collect();
        let body = format!(r#"{{"value":[{{"changeType":"created"{members}}}]}}"#);
        let err = parse_collection(body.as_bytes()).unwrap_err();
        assert_eq!(
            err.0,
            format!("value[0]: an object has more than {MAX_MEMBERS} members")
        );
        let body = format!(
            r#"{{"value":[{{"changeType":"created","resourceData":{{"id":"x"{members}}}}}]}}"#
        );
        let err = parse_collection(body.as_bytes()).unwrap_err();
        assert!(
            err.0
                .starts_with("value[0].resourceData: an object has more"),
            "{err}"
        );

        let item = r#"{"changeType":"created"}"#;
        let many = vec![item; MAX_ITEMS + 1].join(",");
        let err = parse_collection(format!(r#"{{"value":[{many}]}}"#).as_bytes()).unwrap_err();
        assert_eq!(
            err.0,
            format!("a collection has more than {MAX_ITEMS} items")
        );
        let just = vec![item; MAX_ITEMS].join(",");
        let items = parse_collection(format!(r#"{{"value":[{just}]}}"#).as_bytes()).unwrap();
        assert_eq!(items.len(), MAX_ITEMS);
    }

    #[test]
    fn repeated_names_past_the_scan_keep_their_last_value() {
        let mut body = String::from(r#"{"value":[{"changeType":"created""#);
        for i in 0..30 {
            body.push_str(&format!(r#","m{}":{i}"#, i % 10));
        }
        body.push_str("}]}");
        let items = parse_collection(body.as_bytes()).unwrap();
        let raw: Value = serde_json::from_str(&items[0].raw).unwrap();
        let obj = raw.as_object().unwrap();
        assert_eq!(obj.len(), 11);
        assert_eq!(raw["m0"], 20);
        assert_eq!(raw["m9"], 29);
    }
}
