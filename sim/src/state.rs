//! What the simulator remembers: mailboxes and their messages, subscriptions, issued tokens,
//! faults, and logs of every request and notification it handled.
//!
//! These are the simulator's own types. They deliberately share nothing with the service's
//! Graph client, so a wrong idea of Graph cannot hide in both.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Who an access token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    /// App-only (client credentials): may use `users/{id}` paths, not `me`.
    App,
    /// Delegated or vended: the signed-in mailbox (its key).
    User(String),
}

#[derive(Debug, Clone)]
pub(crate) struct IssuedToken {
    pub principal: Principal,
    pub expires_at: DateTime<Utc>,
    pub revoked: bool,
}

/// A subscription as the simulator stores it.
#[derive(Debug, Clone, Serialize)]
pub struct SimSubscription {
    pub id: String,
    pub resource: String,
    /// As sent, e.g. `created,updated`.
    pub change_type: String,
    pub notification_url: String,
    pub lifecycle_notification_url: Option<String>,
    pub expiration_date_time: DateTime<Utc>,
    pub client_state: Option<String>,
    pub latest_supported_tls_version: String,
    /// The mailbox key the resource points at.
    pub mailbox: String,
    /// `None` = every folder (`…/messages`), else a folder name.
    pub folder: Option<String>,
    pub creator_id: String,
    pub created_at: DateTime<Utc>,
    pub renew_count: u32,
    pub last_renewed_at: Option<DateTime<Utc>>,
    pub reauthorize_count: u32,
    pub last_reauthorized_at: Option<DateTime<Utc>>,
    /// Created with `Prefer: IdType="ImmutableId"` (seeded ones count as such). Real Graph
    /// then sends immutable ids in its notifications; the simulator's ids are the same in
    /// both forms, so this only records what the client asked for.
    pub immutable_ids: bool,
}

impl SimSubscription {
    pub(crate) fn has_change_type(&self, ct: &str) -> bool {
        self.change_type
            .split(',')
            .any(|c| c.trim().eq_ignore_ascii_case(ct))
    }

    pub(crate) fn watches(&self, mailbox: &str, folder: &str) -> bool {
        self.mailbox == mailbox && self.folder.as_deref().is_none_or(|f| f == folder)
    }
}

/// An address as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimAddress {
    #[serde(default)]
    pub name: String,
    pub address: String,
}

/// An address given to the control API: `"a@b.test"`, `"Name <a@b.test>"` or
/// `{"name", "address"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AddressInput {
    Text(String),
    Full {
        #[serde(default)]
        name: Option<String>,
        address: String,
    },
}

impl AddressInput {
    pub(crate) fn resolve(&self) -> SimAddress {
        match self {
            Self::Full { name, address } => SimAddress {
                name: name.clone().unwrap_or_else(|| address.clone()),
                address: address.clone(),
            },
            Self::Text(t) => match (t.find('<'), t.rfind('>')) {
                (Some(a), Some(b)) if a < b => SimAddress {
                    name: t[..a].trim().trim_matches('"').to_string(),
                    address: t[a + 1..b].trim().to_string(),
                },
                _ => SimAddress {
                    name: t.trim().to_string(),
                    address: t.trim().to_string(),
                },
            },
        }
    }
}

/// An attachment given to the control API: content as base64 or as plain text.
#[derive(Debug, Clone, Deserialize)]
pub struct AttachmentInput {
    pub name: String,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub content_base64: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub is_inline: bool,
}

/// Mail delivered into a mailbox through the control API.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct NewMail {
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub body: String,
    /// `text` (default) or `html`.
    #[serde(default)]
    pub body_type: Option<String>,
    #[serde(default)]
    pub from: Option<AddressInput>,
    #[serde(default)]
    pub to: Vec<AddressInput>,
    #[serde(default)]
    pub cc: Vec<AddressInput>,
    #[serde(default)]
    pub attachments: Vec<AttachmentInput>,
    /// Folder name, `inbox` by default.
    #[serde(default)]
    pub folder: Option<String>,
    #[serde(default)]
    pub importance: Option<String>,
    #[serde(default)]
    pub is_read: Option<bool>,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub internet_message_id: Option<String>,
    /// Makes it a meeting message, as Graph's `meetingMessageType`: `meetingRequest`,
    /// `meetingCancelled`, `meetingAccepted`, `meetingTenativelyAccepted` (Graph's spelling)
    /// or `meetingDeclined`. Its `@odata.type` follows (`eventMessageRequest`, …).
    #[serde(default)]
    pub meeting_message_type: Option<String>,
}

/// A subscription to store as if Graph had created it earlier, with no validation handshake
/// and no duplicate check: for benchmarks and tests that seed relay365's store directly
/// (`POST /_sim/subscriptions`).
#[derive(Debug, Clone, Deserialize)]
pub struct SeedSubscription {
    /// Graph's id for it (default: a new GUID), as stored on relay365's side.
    #[serde(default)]
    pub id: Option<String>,
    /// The mailbox whose token will renew it: `me/…` resources are this mailbox's.
    pub mailbox: String,
    /// As in a create: `me|users/{id}[/mailFolders('{folder}')]/messages`.
    pub resource: String,
    /// `created` by default.
    #[serde(default)]
    pub change_type: Option<String>,
    pub notification_url: String,
    #[serde(default)]
    pub lifecycle_notification_url: Option<String>,
    #[serde(default)]
    pub client_state: Option<String>,
    pub expiration_date_time: DateTime<Utc>,
}

/// A change to a stored message (each field optional).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct MessageUpdate {
    pub subject: Option<String>,
    pub body: Option<String>,
    pub is_read: Option<bool>,
    pub importance: Option<String>,
    pub categories: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub(crate) struct SimAttachment {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub is_inline: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct SimMessage {
    pub id: String,
    pub folder: String,
    pub created_seq: u64,
    pub changed_seq: u64,
    pub deleted: bool,
    pub change_key: String,
    pub subject: String,
    pub body: String,
    pub body_type: String,
    pub from: SimAddress,
    pub to: Vec<SimAddress>,
    pub cc: Vec<SimAddress>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    pub is_read: bool,
    pub importance: String,
    pub categories: Vec<String>,
    pub internet_message_id: String,
    pub conversation_id: String,
    pub attachments: Vec<SimAttachment>,
    /// `Some` for a meeting message (an `eventMessage`), see [`NewMail`].
    pub meeting_message_type: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Mailbox {
    /// The name as first given (keys are lower case).
    pub name: String,
    /// Bumped on every change; delta tokens are positions in this sequence.
    pub seq: u64,
    /// Bumped to invalidate every delta token of the mailbox.
    pub delta_epoch: u64,
    /// In arrival order; a deleted message stays, marked (delta reports it as removed).
    pub messages: Vec<SimMessage>,
    /// Message id → index in `messages`, so a GET by id does not scan the mailbox.
    by_id: HashMap<String, usize>,
}

impl Mailbox {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            seq: 0,
            delta_epoch: 1,
            messages: Vec::new(),
            by_id: HashMap::new(),
        }
    }

    /// Adds a message.
    pub(crate) fn push(&mut self, m: SimMessage) {
        self.by_id.insert(m.id.clone(), self.messages.len());
        self.messages.push(m);
    }

    /// The message of this id, unless it was deleted.
    pub(crate) fn find(&self, id: &str) -> Option<&SimMessage> {
        let m = self.messages.get(*self.by_id.get(id)?)?;
        (!m.deleted).then_some(m)
    }

    /// The message of this id, unless it was deleted, to change.
    pub(crate) fn find_mut(&mut self, id: &str) -> Option<&mut SimMessage> {
        let m = self.messages.get_mut(*self.by_id.get(id)?)?;
        (!m.deleted).then_some(m)
    }
}

/// One request the simulator answered (Graph and token routes; not the control API).
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The mailbox a Graph request addressed (`None` for subscriptions and tokens).
    pub mailbox: Option<String>,
    pub status: u16,
    /// Graph's `error.code` (or the token endpoint's `error`) when it failed.
    pub error_code: Option<String>,
    /// The caller's `User-Agent` (Graph's own logs keep it too; Microsoft asks callers to
    /// name themselves in it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Monotonic start and end, for ordering checks in tests.
    #[serde(skip)]
    pub started: Instant,
    #[serde(skip)]
    pub ended: Instant,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
}

/// What a notification POST carried.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    Validation,
    Change,
    Lifecycle,
}

/// One POST the simulator made to a receiver.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationRecord {
    pub kind: NotificationKind,
    pub url: String,
    pub attempt: u32,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
    /// The JSON body sent (absent for validation requests).
    pub body: Option<serde_json::Value>,
}

impl NotificationRecord {
    /// True when the receiver answered 2xx in time.
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Token requests seen, by outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenCounts {
    pub client_credentials: u64,
    pub refresh_token: u64,
    pub vended: u64,
    pub rejected: u64,
}

/// What a fault does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// 429 `TooManyRequests` with `Retry-After`.
    Throttle,
    /// 503 `serviceNotAvailable`, with `Retry-After` when given.
    Unavailable,
    /// Delay the answer by `latency_ms`.
    Latency,
}

/// A fault to inject into Graph routes: for one mailbox or all, for the next `count`
/// requests and/or for `duration_secs`; with neither it stays until cleared.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultSpec {
    pub kind: FaultKind,
    #[serde(default)]
    pub mailbox: Option<String>,
    #[serde(default)]
    pub retry_after_secs: Option<f64>,
    #[serde(default)]
    pub latency_ms: Option<u64>,
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default)]
    pub duration_secs: Option<f64>,
}

#[derive(Debug, Clone)]
pub(crate) struct ActiveFault {
    pub id: u64,
    pub spec: FaultSpec,
    pub remaining: Option<u32>,
    pub until: Option<Instant>,
}

impl ActiveFault {
    pub(crate) fn live(&self, now: Instant) -> bool {
        self.remaining.is_none_or(|n| n > 0) && self.until.is_none_or(|u| now < u)
    }
}

/// Everything mutable, behind one mutex (never held across an await).
#[derive(Debug, Default)]
pub(crate) struct State {
    pub tokens: HashMap<String, IssuedToken>,
    /// refresh token → mailbox key.
    pub refresh_tokens: HashMap<String, String>,
    /// credential id (as sent) → mailbox key, for token vending.
    pub credentials: HashMap<String, String>,
    pub subscriptions: BTreeMap<String, SimSubscription>,
    pub mailboxes: BTreeMap<String, Mailbox>,
    pub requests: Vec<RequestRecord>,
    pub request_seq: u64,
    pub in_flight: HashMap<String, usize>,
    pub max_in_flight: HashMap<String, usize>,
    pub faults: Vec<ActiveFault>,
    pub fault_seq: u64,
    pub drop_next: u32,
    pub duplicate_next: u32,
    pub notifications: Vec<NotificationRecord>,
    pub token_counts: TokenCounts,
    /// No subscription expires before this: a lower bound, lowered by every create, renewal
    /// and adoption ([`State::expires_at`]) and made exact by each sweep that removes
    /// something. A sweep before it has nothing to do, so a request does not walk 100,000
    /// subscriptions.
    pub earliest_expiry: Option<DateTime<Utc>>,
    /// Subscriptions removed because their expiry passed.
    pub expired: u64,
    /// Mailbox key → when its subscriptions' writes of the last [`WRITE_WINDOW`] came.
    pub writes: HashMap<String, VecDeque<Instant>>,
    /// Mailbox key → the most subscription writes seen in one [`WRITE_WINDOW`].
    pub max_writes: HashMap<String, usize>,
}

/// Graph's throttling window for subscription writes (graph-contract §3: 500 POST, PATCH or
/// DELETE per app and tenant in 20 s).
pub(crate) const WRITE_WINDOW: Duration = Duration::from_secs(20);

/// How many subscriptions there are, how many were renewed, how many lapsed.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct SubscriptionCounts {
    /// Alive now.
    pub live: usize,
    /// Alive and renewed at least once.
    pub renewed: usize,
    /// Renewals of the live ones, all told.
    pub renewals: u64,
    /// Removed because their expiry passed before a renewal (Graph does so silently); not
    /// counting those removed through the control API.
    pub expired: u64,
}

impl State {
    /// Removes subscriptions whose expiry has passed (Graph deletes them and stops delivery).
    pub(crate) fn sweep(&mut self, now: DateTime<Utc>) -> usize {
        self.tokens
            .retain(|_, t| t.expires_at > now - chrono::Duration::hours(1));
        if self.earliest_expiry.is_none_or(|e| e > now) {
            return 0;
        }
        let before = self.subscriptions.len();
        let mut next: Option<DateTime<Utc>> = None;
        self.subscriptions.retain(|_, s| {
            let keep = s.expiration_date_time > now;
            if keep {
                next = Some(next.map_or(s.expiration_date_time, |n| n.min(s.expiration_date_time)));
            }
            keep
        });
        self.earliest_expiry = next;
        let removed = before - self.subscriptions.len();
        self.expired += removed as u64;
        removed
    }

    /// Notes a subscription's new expiry (created, renewed or adopted), for the sweep.
    pub(crate) fn expires_at(&mut self, at: DateTime<Utc>) {
        self.earliest_expiry = Some(self.earliest_expiry.map_or(at, |e| e.min(at)));
    }

    /// Counts a subscription write (create, renew, delete) for a mailbox at `now`, and keeps
    /// the most writes seen in one window.
    pub(crate) fn count_write(&mut self, mailbox: &str, now: Instant) {
        let q = self.writes.entry(mailbox.to_string()).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WRITE_WINDOW)
        {
            q.pop_front();
        }
        q.push_back(now);
        let n = q.len();
        let max = self.max_writes.entry(mailbox.to_string()).or_default();
        *max = (*max).max(n);
    }
}

/// Lower-case key of a mailbox name.
pub(crate) fn mailbox_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Most entries kept in each log; older ones are dropped so a long-running `relay365 sim`
/// does not grow without bound.
pub(crate) const LOG_CAP: usize = 10_000;

/// Appends to a log, dropping the oldest tenth once it is full.
pub(crate) fn push_capped<T>(log: &mut Vec<T>, item: T) {
    if log.len() >= LOG_CAP {
        log.drain(..LOG_CAP / 10);
    }
    log.push(item);
}
