//! The token cache rule of SPEC §5, as pure logic: a token is reused until 5 minutes
//! before it expires. The credential actor owns one cache and decides when to refresh.

use chrono::{DateTime, Utc};

use super::AccessToken;

/// How long before expiry a token stops being handed out.
pub const REFRESH_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// Holds the current access token of one credential.
#[derive(Debug, Default, Clone)]
pub struct TokenCache {
    current: Option<AccessToken>,
}

impl TokenCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when the cached token can still be used at `now`.
    pub fn valid(&self, now: DateTime<Utc>) -> bool {
        self.current.as_ref().is_some_and(|t| {
            // Checked: an expiry at the very start of time must not panic here.
            t.expires_at
                .checked_sub_signed(REFRESH_MARGIN)
                .is_some_and(|refresh_at| now < refresh_at)
        })
    }

    /// The token to use at `now`, or `None` when a refresh is due.
    pub fn get(&self, now: DateTime<Utc>) -> Option<&str> {
        self.valid(now)
            .then(|| self.current.as_ref().map(|t| t.token.as_str()))
            .flatten()
    }

    /// Stores a fresh token.
    pub fn set(&mut self, token: AccessToken) {
        self.current = Some(token);
    }

    /// Forgets the token, e.g. after Graph answered 401 with it.
    pub fn invalidate(&mut self) {
        self.current = None;
    }

    /// When the cached token expires (for `/status`).
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.current.as_ref().map(|t| t.expires_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_until_five_minutes_before_expiry() {
        let now = Utc::now();
        let mut cache = TokenCache::new();
        assert!(!cache.valid(now));
        assert_eq!(cache.get(now), None);
        cache.set(AccessToken {
            token: "t".into(),
            expires_at: now + chrono::Duration::minutes(60),
            new_refresh_token: None,
        });
        assert_eq!(cache.get(now), Some("t"));
        assert!(cache.valid(now + chrono::Duration::minutes(54)));
        assert!(!cache.valid(now + chrono::Duration::minutes(55)));
        assert!(!cache.valid(now + chrono::Duration::minutes(61)));
        assert_eq!(
            cache.expires_at(),
            Some(now + chrono::Duration::minutes(60))
        );
        cache.invalidate();
        assert!(!cache.valid(now));
    }

    #[test]
    fn a_token_shorter_than_the_margin_is_never_valid() {
        let now = Utc::now();
        let mut cache = TokenCache::new();
        cache.set(AccessToken {
            token: "t".into(),
            expires_at: now + chrono::Duration::minutes(4),
            new_refresh_token: None,
        });
        assert!(!cache.valid(now));
    }
}
