//! The parser that `notification.rs` had before its scanner (`scan.rs`): serde_json reading
//! the collection in one pass, each member's value a `RawValue`. Kept, for the tests only, as
//! the reference the scanner must agree with: the property test below gives both the same
//! generated and broken bodies and wants the same items, error messages and stored texts of
//! the same meaning (this parser writes names decoded and escaped again, the scanner as sent).

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::notification::{Item, ItemKind, ParseError, MAX_ITEMS, MAX_MEMBERS, NOT_A_COLLECTION};

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

/// Parses a notification collection `{"value": [item, …]}`. Any JSON that is not an object
/// with a `value` array of objects, or whose known fields have the wrong types, or an item that
/// has neither `changeType` nor `lifecycleEvent`, is an error. Never panics (fuzzed).
///
/// Only the fields it reads are decoded; each item's stored text is its members as sent, in
/// their order, with `clientState` replaced (a repeated member kept once, its last value).
pub(super) fn parse_collection(body: &[u8]) -> Result<Vec<Item>, ParseError> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::super::notification;
    use super::*;

    /// A stored text's members, in order: each name decoded, each value's text as written.
    type Stored = Result<Vec<(String, String)>, String>;

    type Outcome = Result<Vec<(Option<String>, Option<String>, ItemKind, Stored)>, String>;

    /// What a stored text means, read by serde_json: the same members in the same order with
    /// the same values, however their names are escaped. (Not a `serde_json::Value`: that
    /// would forget the order, and cannot hold the numbers out of range or the lone
    /// surrogates a value may carry.)
    fn stored(raw: &str) -> Stored {
        let members: Members<'_> =
            serde_json::from_str(raw).map_err(|e| format!("not a JSON object ({e}): {raw}"))?;
        Ok(members
            .0
            .into_iter()
            .map(|(name, value)| (name.into_owned(), value.get().to_owned()))
            .collect())
    }

    fn outcome(r: Result<Vec<Item>, ParseError>) -> Outcome {
        r.map(|items| {
            items
                .into_iter()
                .map(|i| (i.subscription_id, i.client_state, i.kind, stored(&i.raw)))
                .collect()
        })
        .map_err(|e| e.0)
    }

    /// Both parsers answer `body` alike: the same items, stored texts of the same meaning and
    /// the same error messages.
    fn same(body: &[u8]) -> Result<(), TestCaseError> {
        let (ours, reference) = (notification::parse_collection(body), parse_collection(body));
        if !body.contains(&b'\\') {
            // Nothing escaped, nothing written otherwise: the same bytes are stored.
            let raws = |r: &Result<Vec<Item>, ParseError>| -> Option<Vec<String>> {
                r.as_ref()
                    .ok()
                    .map(|items| items.iter().map(|i| i.raw.clone()).collect())
            };
            prop_assert_eq!(
                raws(&ours),
                raws(&reference),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        prop_assert_eq!(
            outcome(ours),
            outcome(reference),
            "{}",
            String::from_utf8_lossy(body)
        );
        Ok(())
    }

    fn ws() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", "", "", " ", "\n", "\t ", "\r\n  "])
    }

    /// A JSON string: plain text, escapes, surrogate pairs and lone surrogates.
    fn string() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "a",
            "Zz",
            "é",
            "😀",
            " ",
            "\\n",
            "\\\"",
            "\\\\",
            "\\/",
            "\\b",
            "\\f",
            "\\r",
            "\\t",
            "\\u00e9",
            "\\u0041",
            "\\uD83D\\uDE00",
            "\\ud800",
            "\\udc00",
            "\\ud800\\u0041",
            "\\u001f",
            "\\u0000",
        ]);
        prop::collection::vec(piece, 0..5).prop_map(|p| format!("\"{}\"", p.concat()))
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(vec![
                "\"value\"", "\"subscriptionId\"", "\"clientState\"", "\"changeType\"",
                "\"lifecycleEvent\"", "\"subscriptionExpirationDateTime\"", "\"resource\"",
                "\"resourceData\"", "\"id\"", "\"@odata.etag\"", "\"client\\u0053tate\"",
                "\"\\u0063hangeType\"", "\"a\"", "\"b\"",
            ])
            .prop_map(String::from),
            1 => string(),
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            prop::sample::select(vec![
                "null",
                "true",
                "false",
                "0",
                "-1",
                "12.5",
                "1e3",
                "-0.0E-2",
                "1e999",
                "123456789012345678901234567890",
            ])
            .prop_map(String::from),
            string(),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec((ws(), inner.clone()), 0..5).prop_map(|els| {
                    let els: Vec<String> = els.iter().map(|(w, v)| format!("{w}{v}{w}")).collect();
                    format!("[{}]", els.join(","))
                }),
                prop::collection::vec((ws(), name(), inner), 0..6).prop_map(|m| {
                    let m: Vec<String> = m
                        .iter()
                        .map(|(w, k, v)| format!("{w}{k}{w}:{w}{v}"))
                        .collect();
                    format!("{{{}}}", m.join(","))
                }),
            ]
        })
    }

    /// A collection of items made of the fields the parser reads (and others), repeated at
    /// times, of any type; sometimes more top-level members.
    fn body() -> impl Strategy<Value = String> {
        let item = prop::collection::vec((ws(), name(), prop_oneof![value(), string()]), 0..9)
            .prop_map(|m| {
                let m: Vec<String> = m.iter().map(|(w, k, v)| format!("{w}{k}:{w}{v}")).collect();
                format!("{{{}}}", m.join(","))
            });
        let items = prop::collection::vec(prop_oneof![6 => item, 1 => value()], 0..4);
        (ws(), items, prop::option::of((name(), value()))).prop_map(|(w, items, other)| {
            let other = other.map(|(k, v)| format!(",{k}:{v}")).unwrap_or_default();
            format!(
                "{w}{{\"value\":{w}[{}]{other}}}{w}",
                items.join(format!(",{w}").as_str())
            )
        })
    }

    /// `body` broken in one place: cut short, a byte left out, added or replaced.
    fn broken(body: &str, at: usize, how: u8, byte: u8) -> Vec<u8> {
        let mut b = body.as_bytes().to_vec();
        let at = at % (b.len() + 1);
        match how % 4 {
            0 => b.truncate(at),
            1 if at < b.len() => {
                b.remove(at);
            }
            2 => b.insert(at, byte),
            _ if at < b.len() => b[at] = byte,
            _ => {}
        }
        b
    }

    fn byte() -> impl Strategy<Value = u8> {
        prop::sample::select(b"\"\\u{}[],: \n0-.eE+x\x01\xff\xc3".to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn the_scanner_answers_as_serde_json_did(body in body()) {
            same(body.as_bytes())?;
        }

        #[test]
        fn and_so_on_broken_bodies(body in body(), at in any::<usize>(), how in any::<u8>(), b in byte()) {
            same(&broken(&body, at, how, b))?;
        }

        #[test]
        fn and_on_any_bytes(bytes in prop::collection::vec(byte(), 0..48)) {
            same(&bytes)?;
            let mut wrapped = b"{\"value\":[{".to_vec();
            wrapped.extend_from_slice(&bytes);
            same(&wrapped)?;
        }
    }

    #[test]
    fn and_on_the_bodies_of_the_edge_probe() {
        let deep = format!("{}0{}", "[".repeat(120), "]".repeat(120));
        let wide: Vec<String> = (0..63)
            .map(|i| format!(r#""m{i:02}xxxxxxxx":{deep}"#))
            .collect();
        let escaped: String = (0..63)
            .map(|i| format!(r#","\u00e9\u00e8{i:02}\n\t\"":1"#))
            .collect();
        let long = "\\u00e9".repeat(10_000);
        for body in [
            format!(
                r#"{{"value":[{{"changeType":"created",{}}}]}}"#,
                wide.join(",")
            ),
            format!(r#"{{"value":[{{"changeType":"created"{escaped}}}]}}"#),
            format!(r#"{{"value":[{{"changeType":"created","resource":"{long}"}}]}}"#),
            format!(r#"{{"value":[{{"changeType":"created"{escaped}{escaped}}}]}}"#),
        ] {
            same(body.as_bytes()).unwrap();
        }
        // Escaped names after a byte of invalid UTF-8 (accepted: it is only skipped).
        let mut invalid = b"{\"x\":\"\xff\",".to_vec();
        invalid.extend_from_slice(
            format!(r#""value":[{{"changeType":"created"{escaped}}}]}}"#).as_bytes(),
        );
        same(&invalid).unwrap();
    }
}
