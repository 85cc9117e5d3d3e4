//! A typed Microsoft Graph client for the calls relay365 makes: subscriptions, messages,
//! attachments and per-folder delta.
//!
//! The client holds no token and no state: each call takes the bearer token, so the
//! credential actor that owns the token decides when to refresh it. Every request has a
//! timeout. Errors come back as [`GraphError`], typed by status and `error.code`; retrying
//! and the per-mailbox limits live in [`limiter`].

mod error;
pub mod limiter;
mod wire;

use std::time::Duration;

use chrono::{DateTime, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use error::{parse_retry_after, GraphError};
pub use limiter::{Gate, HeldBack, LimiterConfig, MailboxLimiter};
pub use wire::{
    Attachment, DeltaItem, DeltaPage, EmailAddress, ItemBody, Message, MessageHeader,
    NewSubscription, Recipient, Subscription, MESSAGE_SELECT,
};

/// Default timeout of one Graph request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Characters escaped in one path segment (ids and mailbox names may hold `/`, `?`, `#`, `%`).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// The Graph path prefix of a mailbox: `me` without a mailbox (delegated tokens), else
/// `users/{mailbox}` (user id or UPN, escaped).
pub fn mailbox_path(mailbox: Option<&str>) -> String {
    match mailbox {
        None => "me".to_string(),
        Some(m) => format!("users/{}", utf8_percent_encode(m, SEGMENT)),
    }
}

/// A Graph client bound to one base URL (`https://graph.microsoft.com/v1.0`, or a simulator).
#[derive(Debug, Clone)]
pub struct GraphClient {
    base: String,
    http: reqwest::Client,
    timeout: Duration,
}

impl GraphClient {
    /// A client for `base_url` (trailing `/` ignored) on a shared `reqwest::Client`, with the
    /// default 30 s timeout per request.
    pub fn new(base_url: impl Into<String>, http: reqwest::Client) -> Self {
        let base = base_url.into().trim_end_matches('/').to_string();
        Self {
            base,
            http,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same client with another per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /subscriptions` → 201. A duplicate gives [`GraphError::Conflict`]; a failed
    /// validation handshake gives a 400 [`GraphError::Other`].
    ///
    /// Created with `Prefer: IdType="ImmutableId"`, so that its notifications carry the same
    /// immutable message ids as the GETs and the delta rounds (graph-contract §1): with plain
    /// ids a resync's items never matched a notification's idempotency key, and each resync
    /// delivered the mail of the last round again. A subscription cannot be switched later.
    pub async fn create_subscription(
        &self,
        token: &str,
        new: &NewSubscription,
    ) -> Result<Subscription, GraphError> {
        let req = self
            .request(Method::POST, &self.url("subscriptions"), token)
            .header("Prefer", "IdType=\"ImmutableId\"")
            .json(new);
        self.send_json(req).await
    }

    /// `PATCH /subscriptions/{id}` with a new expiry → 200. A 404 means it is gone: recreate.
    pub async fn renew_subscription(
        &self,
        token: &str,
        id: &str,
        expiration: DateTime<Utc>,
    ) -> Result<Subscription, GraphError> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Renew {
            expiration_date_time: DateTime<Utc>,
        }
        let url = self.url(&format!("subscriptions/{}", seg(id)));
        let req = self.request(Method::PATCH, &url, token).json(&Renew {
            expiration_date_time: expiration,
        });
        self.send_json(req).await
    }

    /// `POST /subscriptions/{id}/reauthorize` → 204. Does not extend the expiry.
    pub async fn reauthorize_subscription(&self, token: &str, id: &str) -> Result<(), GraphError> {
        let url = self.url(&format!("subscriptions/{}/reauthorize", seg(id)));
        self.send_empty(self.request(Method::POST, &url, token))
            .await
    }

    /// `DELETE /subscriptions/{id}` → 204. An unknown id is [`GraphError::NotFound`], which
    /// callers deleting a subscription may treat as done.
    pub async fn delete_subscription(&self, token: &str, id: &str) -> Result<(), GraphError> {
        let url = self.url(&format!("subscriptions/{}", seg(id)));
        self.send_empty(self.request(Method::DELETE, &url, token))
            .await
    }

    /// `GET /subscriptions`, following `@odata.nextLink`: every subscription this app created
    /// (`clientState` is always `None` here).
    pub async fn list_subscriptions(&self, token: &str) -> Result<Vec<Subscription>, GraphError> {
        self.collect_pages(token, self.url("subscriptions")).await
    }

    /// `GET /{me|users/{mailbox}}/messages/{id}` with the `$select` of graph-contract §8 and
    /// immutable ids. 404 means the message is gone or moved.
    pub async fn get_message(
        &self,
        token: &str,
        mailbox: Option<&str>,
        id: &str,
    ) -> Result<Message, GraphError> {
        let url = self.url(&format!("{}/messages/{}", mailbox_path(mailbox), seg(id)));
        let req = self
            .request(Method::GET, &url, token)
            .query(&[("$select", MESSAGE_SELECT)])
            .header("Prefer", "IdType=\"ImmutableId\"");
        self.send_json(req).await
    }

    /// `GET /{me|users/{mailbox}}/messages/{id}/attachments`, following next links.
    pub async fn list_attachments(
        &self,
        token: &str,
        mailbox: Option<&str>,
        message_id: &str,
    ) -> Result<Vec<Attachment>, GraphError> {
        let url = self.url(&format!(
            "{}/messages/{}/attachments",
            mailbox_path(mailbox),
            seg(message_id)
        ));
        self.collect_pages(token, url).await
    }

    /// The first page of a delta round over one folder (`inbox` or a folder id):
    /// `GET /{me|users/{m}}/mailFolders/{folder}/messages/delta`. `page_size` becomes
    /// `Prefer: odata.maxpagesize`. Continue with [`GraphClient::delta_follow`].
    pub async fn delta_start(
        &self,
        token: &str,
        mailbox: Option<&str>,
        folder: &str,
        page_size: Option<u32>,
    ) -> Result<DeltaPage, GraphError> {
        let url = self.url(&format!(
            "{}/mailFolders/{}/messages/delta",
            mailbox_path(mailbox),
            seg(folder)
        ));
        self.delta_get(token, &url, page_size).await
    }

    /// Follows a `next_link` or a stored `delta_link` exactly as Graph gave it. A link that
    /// does not point at this client's base URL is refused, so a token never leaves Graph.
    pub async fn delta_follow(
        &self,
        token: &str,
        link: &str,
        page_size: Option<u32>,
    ) -> Result<DeltaPage, GraphError> {
        self.check_link(link)?;
        self.delta_get(token, link, page_size).await
    }

    async fn delta_get(
        &self,
        token: &str,
        url: &str,
        page_size: Option<u32>,
    ) -> Result<DeltaPage, GraphError> {
        let mut prefer = "IdType=\"ImmutableId\"".to_string();
        if let Some(n) = page_size {
            prefer.push_str(&format!(", odata.maxpagesize={n}"));
        }
        let req = self
            .request(Method::GET, url, token)
            .header("Prefer", prefer);
        let raw: wire::Page<serde_json::Value> = self.send_json(req).await?;
        DeltaPage::from_raw(raw)
            .map_err(|e| GraphError::InvalidResponse(format!("delta item: {e}")))
    }

    async fn collect_pages<T: DeserializeOwned>(
        &self,
        token: &str,
        first: String,
    ) -> Result<Vec<T>, GraphError> {
        let mut out = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            self.check_link(&url)?;
            let page: wire::Page<T> = self
                .send_json(self.request(Method::GET, &url, token))
                .await?;
            out.extend(page.value);
            next = page.next_link;
        }
        Ok(out)
    }

    /// Refuses links outside the base URL (a next link is followed with our bearer token).
    fn check_link(&self, link: &str) -> Result<(), GraphError> {
        let origin = |u: &str| url::Url::parse(u).ok().map(|u| u.origin());
        match (origin(link), origin(&self.base)) {
            (Some(a), Some(b)) if a == b => Ok(()),
            _ => Err(GraphError::InvalidResponse(format!(
                "link {link:?} does not point at the Graph base {}",
                self.base
            ))),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    fn request(&self, method: Method, url: &str, token: &str) -> RequestBuilder {
        self.http
            .request(method, url)
            .bearer_auth(token)
            .timeout(self.timeout)
    }

    async fn send(&self, req: RequestBuilder) -> Result<reqwest::Response, GraphError> {
        let resp = req.send().await.map_err(GraphError::from_reqwest)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap_or_default();
        let err = GraphError::from_response(status, &headers, &body);
        tracing::debug!(
            status = status.as_u16(),
            code = err.code().unwrap_or(""),
            "graph error"
        );
        Err(err)
    }

    async fn send_json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, GraphError> {
        let resp = self.send(req).await?;
        let bytes = resp.bytes().await.map_err(GraphError::from_reqwest)?;
        serde_json::from_slice(&bytes).map_err(|e| GraphError::InvalidResponse(e.to_string()))
    }

    async fn send_empty(&self, req: RequestBuilder) -> Result<(), GraphError> {
        self.send(req).await.map(drop)
    }
}

/// One escaped path segment.
fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_paths() {
        assert_eq!(mailbox_path(None), "me");
        assert_eq!(
            mailbox_path(Some("alice@contoso.com")),
            "users/alice@contoso.com"
        );
        assert_eq!(mailbox_path(Some("a/b c")), "users/a%2Fb%20c");
    }

    #[test]
    fn foreign_links_are_refused() {
        let c = GraphClient::new("http://127.0.0.1:9/v1.0/", reqwest::Client::new());
        assert_eq!(c.base_url(), "http://127.0.0.1:9/v1.0");
        assert!(c
            .check_link("http://127.0.0.1:9/v1.0/me/mailFolders/inbox/messages/delta?$skiptoken=x")
            .is_ok());
        assert!(c.check_link("https://evil.example/v1.0/x").is_err());
        assert!(c.check_link("not a url").is_err());
    }
}
