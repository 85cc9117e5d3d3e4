//! The shape of a notification collection (SPEC §3.1, graph-contract §4, §6): the pure parser
//! the HTTP handlers run before anything is authenticated, and the idempotency key.
//!
//! Kept apart from the actor because it faces the internet unauthenticated: every input is
//! hostile until the receiver has checked its `subscriptionId` and `clientState`, so what is
//! here must stay linear in the body and never panic (fuzzed in `tests/it/receiver/fuzz.rs`).
//!
//! The body is read by a scanner of its own (`scan.rs`), not deserialized: each item's members
//! are listed as name and text, and only the few fields the receiver checks are decoded. A
//! 1 MiB body of 64,000 members built to cost the parser must be answered in 5 ms (issue 9),
//! which serde_json's structures around each member did not allow. It answers every body as
//! the serde_json parser before it did, the same items and error messages, and stored texts of
//! the same meaning: that parser wrote member names decoded and escaped again, this one writes
//! them as sent (`reference.rs` keeps that parser and a property test compares the two).

use std::hash::BuildHasher;

use super::scan::{self, Code, Name, Scanner, Syntax};

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

pub(super) const NOT_A_COLLECTION: &str = "expected a JSON object with a `value` array";

/// The fields of an item that are read, by their index in an item's `fields`.
const SUBSCRIPTION_ID: usize = 0;
const CLIENT_STATE: usize = 1;
const CHANGE_TYPE: usize = 2;
const LIFECYCLE_EVENT: usize = 3;
const EXPIRATION: usize = 4;
const RESOURCE: usize = 5;
const RESOURCE_DATA: usize = 6;
const FIELDS: usize = 7;

fn field(name: &str) -> Option<usize> {
    match name {
        "subscriptionId" => Some(SUBSCRIPTION_ID),
        "clientState" => Some(CLIENT_STATE),
        "changeType" => Some(CHANGE_TYPE),
        "lifecycleEvent" => Some(LIFECYCLE_EVENT),
        "subscriptionExpirationDateTime" => Some(EXPIRATION),
        "resource" => Some(RESOURCE),
        "resourceData" => Some(RESOURCE_DATA),
        _ => None,
    }
}

/// Why the scan stopped: a syntax error (worded once the body is known) or an answer.
enum Fail {
    Syntax(Syntax),
    Answer(ParseError),
}

impl From<Syntax> for Fail {
    fn from(e: Syntax) -> Self {
        Fail::Syntax(e)
    }
}

fn answer(text: String) -> Fail {
    Fail::Answer(ParseError(text))
}

fn not_json(text: &str) -> ParseError {
    ParseError(format!("the body is not JSON: {text}"))
}

/// One member of an item: its name and its value's text, as sent.
struct Member<'a> {
    name: Name<'a>,
    value: &'a str,
}

/// One parse of a body: the scanner and what is reused from item to item.
struct Parser<'a> {
    body: &'a [u8],
    s: Scanner<'a>,
    /// The current item's members, in their order.
    members: Vec<Member<'a>>,
    /// The decoded names of the current item's members that hold escapes.
    arena: String,
    /// For repeated names; seeded per process, so that no body can be built to collide.
    hasher: foldhash::fast::RandomState,
}

/// Parses a notification collection `{"value": [item, …]}`. Any JSON that is not an object
/// with a `value` array of objects, or whose known fields have the wrong types, or an item that
/// has neither `changeType` nor `lifecycleEvent`, is an error. Never panics (fuzzed).
///
/// Only the fields it reads are decoded; each item's stored text is its members as sent, in
/// their order, with `clientState` replaced (a repeated member kept once, its last value).
pub fn parse_collection(body: &[u8]) -> Result<Vec<Item>, ParseError> {
    let mut p = Parser {
        body,
        s: Scanner::new(body),
        members: Vec::with_capacity(16),
        arena: String::new(),
        hasher: foldhash::fast::RandomState::default(),
    };
    p.collection().unwrap_or_else(|fail| {
        Err(match fail {
            Fail::Syntax(e) => not_json(&e.message(body)),
            Fail::Answer(e) => e,
        })
    })
}

/// The two shapes the parser requires somewhere.
#[derive(Clone, Copy)]
enum Shape {
    Object,
    Array,
}

/// What serde_json says of the value at `at`, which is not the object or array required there:
/// `None` if it is JSON of another type, else its syntax error. Only for bodies that are wrong
/// anyway, and it reads that one value, so serde_json's own wording of a bad scalar (a number
/// out of range, a string's escape) is kept without copying its number parsing here.
fn wrong_shape(body: &[u8], at: usize, shape: Shape) -> Option<ParseError> {
    use serde::de::DeserializeSeed;
    struct Expect(Shape);
    struct Nothing;
    impl<'de> serde::de::Visitor<'de> for Nothing {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object or an array")
        }
    }
    impl<'de> DeserializeSeed<'de> for Expect {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            match self.0 {
                Shape::Object => d.deserialize_map(Nothing),
                Shape::Array => d.deserialize_seq(Nothing),
            }
        }
    }
    let rest = body.get(at..).unwrap_or_default();
    let e = Expect(shape)
        .deserialize(&mut serde_json::Deserializer::from_slice(rest))
        .err()?;
    if e.classify() == serde_json::error::Category::Data {
        return None;
    }
    let text = e.to_string();
    let code = text
        .rfind(" at line ")
        .and_then(|end| text.get(..end))
        .unwrap_or(&text);
    // Where in `rest` serde_json points (a string's control byte may be a line break), hence
    // where in the body.
    let line_start = match e.line() {
        0 | 1 => Some(0),
        line => memchr::memchr_iter(b'\n', rest)
            .nth(line - 2)
            .map(|nl| nl + 1),
    };
    let Some(line_start) = line_start else {
        return Some(not_json(&text));
    };
    let (line, column) = scan::position(body, at + line_start + e.column());
    Some(not_json(&format!("{code} at line {line} column {column}")))
}

impl<'a> Parser<'a> {
    /// The collection: its `value` (the last, if repeated) read item by item, the other
    /// members skipped. The outer `Result` is what stopped the scan; the inner one, the first
    /// item whose fields are wrong, known only once the whole body is valid JSON.
    fn collection(&mut self) -> Result<Result<Vec<Item>, ParseError>, Fail> {
        match self.s.ws() {
            Some(b'{') => self.s.bump(),
            None => return Err(self.s.peek_err(Code::EofValue).into()),
            Some(_) => {
                return Err(Fail::Answer(
                    wrong_shape(self.body, self.s.pos(), Shape::Object)
                        .unwrap_or_else(|| ParseError(NOT_A_COLLECTION.into())),
                ))
            }
        }
        let mut first = true;
        let mut members = 0;
        let mut items = None;
        while self.s.more_members(&mut first)? {
            self.arena.clear();
            let name = self.s.name(&mut self.arena)?;
            members += 1;
            if members > MAX_MEMBERS {
                return Err(answer(format!(
                    "an object has more than {MAX_MEMBERS} members"
                )));
            }
            self.s.colon()?;
            if name.get(&self.arena) == "value" {
                items = Some(self.items()?);
            } else {
                self.s.skip_value()?;
            }
        }
        self.s.bump();
        self.s.end()?;
        Ok(items.unwrap_or_else(|| Err(ParseError(NOT_A_COLLECTION.into()))))
    }

    /// The `value` array, each item read where it stands.
    fn items(&mut self) -> Result<Result<Vec<Item>, ParseError>, Fail> {
        match self.s.ws() {
            Some(b'[') => self.s.bump(),
            None => return Err(self.s.peek_err(Code::EofValue).into()),
            Some(_) => {
                return Err(Fail::Answer(
                    wrong_shape(self.body, self.s.pos(), Shape::Array)
                        .unwrap_or_else(|| ParseError(NOT_A_COLLECTION.into())),
                ))
            }
        }
        let mut first = true;
        let mut count = 0;
        let mut items = Vec::with_capacity(4);
        let mut wrong = None;
        while self.s.more_elements(&mut first)? {
            // Past a wrong item the rest is only checked for syntax and limits.
            let item = self.item(count, wrong.is_none())?;
            if count == MAX_ITEMS {
                return Err(answer(format!(
                    "a collection has more than {MAX_ITEMS} items"
                )));
            }
            count += 1;
            match item {
                Some(Ok(item)) => items.push(item),
                Some(Err(e)) => wrong = Some(e),
                None => {}
            }
        }
        self.s.bump();
        Ok(wrong.map_or(Ok(items), Err))
    }

    /// Item `idx` of `value`: its members listed, then (if `build`) its fields read.
    fn item(&mut self, idx: usize, build: bool) -> Result<Option<Result<Item, ParseError>>, Fail> {
        match self.s.ws() {
            Some(b'{') => {}
            None => return Err(self.s.peek_err(Code::EofValue).into()),
            Some(_) => {
                return Err(Fail::Answer(
                    wrong_shape(self.body, self.s.pos(), Shape::Object)
                        .unwrap_or_else(|| ParseError(format!("value[{idx}] must be an object"))),
                ))
            }
        }
        let start = self.s.pos();
        self.s.bump();
        self.members.clear();
        self.arena.clear();
        let mut fields = [None; FIELDS];
        let mut first = true;
        while self.s.more_members(&mut first)? {
            let name = self.s.name(&mut self.arena)?;
            if self.members.len() == MAX_MEMBERS {
                return Err(answer(format!(
                    "value[{idx}]: an object has more than {MAX_MEMBERS} members"
                )));
            }
            self.s.colon()?;
            let value = self.value()?;
            if let Some(f) = field(name.get(&self.arena)) {
                fields[f] = Some(self.members.len());
            }
            self.members.push(Member { name, value });
        }
        self.s.bump();
        if !build {
            return Ok(None);
        }
        // The item's names and values are checked text, and so is all of it.
        let text = self.s.slice(start, self.s.pos()).ok();
        Ok(Some(self.build(idx, &fields, text)))
    }

    /// A member's value, skipped; its text (serde_json's `RawValue`: valid UTF-8).
    fn value(&mut self) -> Result<&'a str, Syntax> {
        self.s.ws();
        let from = self.s.pos();
        self.s.skip_value()?;
        self.s.slice(from, self.s.pos())
    }

    /// The item of the members just listed (`fields`: where each read field is, the last
    /// if repeated), `text` its JSON as sent.
    fn build(
        &self,
        idx: usize,
        fields: &[Option<usize>; FIELDS],
        text: Option<&str>,
    ) -> Result<Item, ParseError> {
        let value = |f: usize| fields[f].map(|i| self.members[i].value);
        let subscription_id = string(value(SUBSCRIPTION_ID), idx, "subscriptionId")?;
        let client_state = string(value(CLIENT_STATE), idx, "clientState")?;
        let change_type = string(value(CHANGE_TYPE), idx, "changeType")?;
        let lifecycle = string(value(LIFECYCLE_EVENT), idx, "lifecycleEvent")?;
        let expiration = string(value(EXPIRATION), idx, "subscriptionExpirationDateTime")?;
        let resource = string(value(RESOURCE), idx, "resource")?;
        let (resource_id, etag) = match value(RESOURCE_DATA) {
            None | Some("null") => (None, None),
            Some(rd) => resource_data(rd, idx)?,
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
                    "value[{idx}] has neither changeType nor lifecycleEvent"
                )))
            }
        };
        Ok(Item {
            subscription_id,
            client_state,
            kind,
            raw: self.masked(text, fields[CLIENT_STATE].is_some()),
        })
    }

    /// The item's text to store: its members as sent, `clientState` (if any) as `"***"`.
    ///
    /// A repeated member (names compared decoded) is kept once, with its last value (what a
    /// JSON reader would see). Names are written as sent, escapes and all: the same JSON
    /// string, not decoded and escaped again. Most items need none of that and are written
    /// without a space between their members: then the text is the item as sent, copied whole.
    fn masked(&self, text: Option<&str>, client_state: bool) -> String {
        const SLOTS: usize = 2 * MAX_MEMBERS;
        let members = &self.members;
        let name = |m: &Member<'a>| m.name.get(&self.arena);
        // Which members a later one of the same name overrides: an open-addressing table of
        // the members by name, the index of the last one seen in each slot.
        let mut overridden = [false; MAX_MEMBERS];
        let mut repeated = false;
        if members.len() > 1 {
            let mut slots = [u8::MAX; SLOTS];
            let mut hashes = [0u64; MAX_MEMBERS];
            for (i, m) in members.iter().enumerate().take(MAX_MEMBERS) {
                let h = self.hasher.hash_one(name(m));
                hashes[i] = h;
                let mut slot = (h % SLOTS as u64) as usize;
                loop {
                    let j = usize::from(slots[slot]);
                    if j == usize::from(u8::MAX) {
                        slots[slot] = i as u8;
                        break;
                    }
                    if hashes[j] == h && name(&members[j]) == name(m) {
                        overridden[j] = true;
                        repeated = true;
                        slots[slot] = i as u8;
                        break;
                    }
                    slot = (slot + 1) % SLOTS;
                }
            }
        }
        // `"name":value,` for each member.
        let size: usize = members
            .iter()
            .map(|m| m.name.written.len() + m.value.len() + 4)
            .sum();
        if let Some(text) = text {
            if !repeated
                && !client_state
                && text.len() == size + 2 - usize::from(!members.is_empty())
            {
                return text.to_owned();
            }
        }
        // The item as sent at most, and room for a `"***"` longer than the value it replaces.
        let mut out = String::with_capacity(text.map_or(size + 2, str::len) + 8);
        out.push('{');
        for (m, overridden) in members.iter().zip(overridden) {
            if overridden {
                continue;
            }
            if out.len() > 1 {
                out.push(',');
            }
            out.push('"');
            out.push_str(m.name.written);
            out.push_str("\":");
            out.push_str(if name(m) == "clientState" {
                "\"***\""
            } else {
                m.value
            });
        }
        out.push('}');
        out
    }
}

/// The string a field holds: absent or null is `None`; another type is an error naming
/// `value[idx].{path}`. Decoded as serde_json decodes a string (the same scanner as names).
fn string(value: Option<&str>, idx: usize, path: &str) -> Result<Option<String>, ParseError> {
    let wrong = || ParseError(format!("value[{idx}].{path} must be a string"));
    match value {
        None | Some("null") => Ok(None),
        Some(v) if v.starts_with('"') => {
            let mut decoded = String::new();
            match Scanner::of_text(v).name(&mut decoded) {
                Ok(name) if name.has_escapes() => Ok(Some(decoded)),
                Ok(name) => Ok(Some(name.written.to_owned())),
                Err(_) => Err(wrong()),
            }
        }
        Some(_) => Err(wrong()),
    }
}

/// `resourceData.id` and `resourceData.@odata.etag` of item `idx` (`rd`: the value's text).
fn resource_data(rd: &str, idx: usize) -> Result<(Option<String>, Option<String>), ParseError> {
    let (id, etag) = resource_data_members(rd).map_err(|limit| {
        ParseError(if limit {
            format!("value[{idx}].resourceData: an object has more than {MAX_MEMBERS} members")
        } else {
            format!("value[{idx}].resourceData must be an object")
        })
    })?;
    Ok((
        string(id, idx, "resourceData.id")?,
        string(etag, idx, "resourceData.@odata.etag")?,
    ))
}

/// The texts of `id` and `@odata.etag` in the object `rd` (already valid JSON); the error says
/// whether a limit was passed (else it is not an object, or a name is not a valid string).
fn resource_data_members(rd: &str) -> Result<(Option<&str>, Option<&str>), bool> {
    let mut s = Scanner::of_text(rd);
    let mut arena = String::new();
    if s.ws() != Some(b'{') {
        return Err(false);
    }
    s.bump();
    let (mut first, mut count, mut id, mut etag) = (true, 0, None, None);
    while s.more_members(&mut first).map_err(|_| false)? {
        arena.clear();
        let name = s.name(&mut arena).map_err(|_| false)?;
        if count == MAX_MEMBERS {
            return Err(true);
        }
        count += 1;
        s.colon().map_err(|_| false)?;
        s.ws();
        let from = s.pos();
        s.skip_value().map_err(|_| false)?;
        let value = rd.get(from..s.pos()).ok_or(false)?;
        match name.get(&arena) {
            "id" => id = Some(value),
            "@odata.etag" => etag = Some(value),
            _ => {}
        }
    }
    s.bump();
    s.end().map_err(|_| false)?;
    Ok((id, etag))
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
mod tests;
