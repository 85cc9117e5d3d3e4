//! Where access tokens come from (SPEC §5): the token-vending auth service, the
//! client-credentials grant, the refresh-token grant, or a static token.
//!
//! Plain async functions, no actors: the credential actor calls [`fetch_token`] when its
//! [`TokenCache`] says the token is due, and stores a rotated refresh token when one comes
//! back. Secrets never reach `Debug` output or logs.

mod cache;

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

pub use cache::{TokenCache, REFRESH_MARGIN};

/// Scope of the client-credentials grant: every application permission granted to the app.
pub const GRAPH_DEFAULT_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Timeout of one token request.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a `static` token is assumed to live: it cannot be refreshed, so it is reused
/// until Graph refuses it.
const STATIC_TOKEN_LIFETIME: chrono::Duration = chrono::Duration::days(365);

/// How a credential gets its access tokens; JSON-tagged by `kind` as in SPEC §3.3.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenSource {
    /// Token vending: the credential's own id is sent to `AUTH_SERVICE_URL`.
    AuthService,
    /// App-only tokens for `users/{mailbox}` paths.
    ClientCredentials {
        tenant_id: String,
        client_id: String,
        client_secret: String,
    },
    /// Delegated tokens; each refresh returns a new refresh token that replaces this one.
    RefreshToken {
        tenant_id: String,
        client_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret: Option<String>,
        refresh_token: String,
    },
    /// A fixed access token (development only).
    Static { access_token: String },
}

impl TokenSource {
    /// The `kind` tag, for display.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AuthService => "auth_service",
            Self::ClientCredentials { .. } => "client_credentials",
            Self::RefreshToken { .. } => "refresh_token",
            Self::Static { .. } => "static",
        }
    }

    /// Checks that required fields are not blank; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let need = |name: &str, v: &str| {
            if v.trim().is_empty() {
                Err(format!("token_source.{name} must not be empty"))
            } else {
                Ok(())
            }
        };
        match self {
            Self::AuthService => Ok(()),
            Self::ClientCredentials {
                tenant_id,
                client_id,
                client_secret,
            } => {
                need("tenant_id", tenant_id)?;
                need("client_id", client_id)?;
                need("client_secret", client_secret)
            }
            Self::RefreshToken {
                tenant_id,
                client_id,
                refresh_token,
                ..
            } => {
                need("tenant_id", tenant_id)?;
                need("client_id", client_id)?;
                need("refresh_token", refresh_token)
            }
            Self::Static { access_token } => need("access_token", access_token),
        }
    }

    /// This source with its refresh token replaced (after a refresh grant rotated it);
    /// other kinds are returned unchanged.
    pub fn with_refresh_token(&self, new_refresh_token: &str) -> Self {
        match self {
            Self::RefreshToken {
                tenant_id,
                client_id,
                client_secret,
                ..
            } => Self::RefreshToken {
                tenant_id: tenant_id.clone(),
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                refresh_token: new_refresh_token.to_string(),
            },
            other => other.clone(),
        }
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AuthService => f.write_str("AuthService"),
            Self::ClientCredentials {
                tenant_id,
                client_id,
                ..
            } => f
                .debug_struct("ClientCredentials")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("client_secret", &"***")
                .finish(),
            Self::RefreshToken {
                tenant_id,
                client_id,
                client_secret,
                ..
            } => f
                .debug_struct("RefreshToken")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("client_secret", &client_secret.as_ref().map(|_| "***"))
                .field("refresh_token", &"***")
                .finish(),
            Self::Static { .. } => f
                .debug_struct("Static")
                .field("access_token", &"***")
                .finish(),
        }
    }
}

/// Where tokens are fetched: the identity platform base and the optional vending service.
#[derive(Clone)]
pub struct TokenEndpoints {
    /// `RELAY365_LOGIN_URL`, e.g. `https://login.microsoftonline.com`.
    pub login_url: String,
    /// `AUTH_SERVICE_URL`; needed only by `auth_service` credentials.
    pub auth_service_url: Option<String>,
    /// `SERVICE_SECRET`, sent as `X-Service-Token`.
    pub service_secret: Option<String>,
}

impl fmt::Debug for TokenEndpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpoints")
            .field("login_url", &self.login_url)
            .field("auth_service_url", &self.auth_service_url)
            .field(
                "service_secret",
                &self.service_secret.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// A bearer token and when it stops working.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// Set by a refresh grant: store it in place of the old refresh token, which may stop
    /// working.
    pub new_refresh_token: Option<String>,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"***")
            .field("expires_at", &self.expires_at)
            .field(
                "new_refresh_token",
                &self.new_refresh_token.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The auth service does not know this credential, or it is not connected (404).
    #[error("credential {credential_id} is not connected at the auth service (it answered 404); connect it there first")]
    NotConnected { credential_id: Uuid },
    /// The auth service refused `SERVICE_SECRET` (401).
    #[error("the auth service rejected SERVICE_SECRET (it answered 401); check that both sides use the same secret")]
    BadServiceSecret,
    /// A setting this source needs is missing.
    #[error("{0} is not set, but this credential's token source needs it")]
    NotConfigured(&'static str),
    /// The identity platform refused the grant (`invalid_client`, `invalid_grant`, …).
    /// Retrying will not help until the credential is fixed.
    #[error("token request rejected (HTTP {status}, {error}): {description}")]
    Rejected {
        status: u16,
        error: String,
        description: String,
    },
    /// Network trouble, a timeout, 429 or 5xx: try again later.
    #[error("token request failed, will retry: {0}")]
    Transient(String),
    /// An answer that is not what the endpoint documents.
    #[error("token endpoint answered unexpectedly: {0}")]
    InvalidResponse(String),
}

impl TokenError {
    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// Fetches a fresh access token for a credential from its source.
pub async fn fetch_token(
    http: &reqwest::Client,
    endpoints: &TokenEndpoints,
    credential_id: Uuid,
    source: &TokenSource,
) -> Result<AccessToken, TokenError> {
    match source {
        TokenSource::Static { access_token } => Ok(AccessToken {
            token: access_token.clone(),
            expires_at: Utc::now() + STATIC_TOKEN_LIFETIME,
            new_refresh_token: None,
        }),
        TokenSource::AuthService => fetch_vended(http, endpoints, credential_id).await,
        TokenSource::ClientCredentials {
            tenant_id,
            client_id,
            client_secret,
        } => {
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", client_id.as_str()),
                ("client_secret", client_secret.as_str()),
                ("scope", GRAPH_DEFAULT_SCOPE),
            ];
            fetch_grant(http, &endpoints.login_url, tenant_id, &form).await
        }
        TokenSource::RefreshToken {
            tenant_id,
            client_id,
            client_secret,
            refresh_token,
        } => {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("client_id", client_id.as_str()),
                ("refresh_token", refresh_token.as_str()),
            ];
            if let Some(secret) = client_secret {
                form.push(("client_secret", secret.as_str()));
            }
            fetch_grant(http, &endpoints.login_url, tenant_id, &form).await
        }
    }
}

/// `POST {AUTH_SERVICE_URL}/auth/oauth/internal/credential-token`.
async fn fetch_vended(
    http: &reqwest::Client,
    endpoints: &TokenEndpoints,
    credential_id: Uuid,
) -> Result<AccessToken, TokenError> {
    #[derive(Deserialize)]
    struct Vended {
        access_token: String,
        #[serde(deserialize_with = "unix_seconds")]
        expires_at: DateTime<Utc>,
    }
    let base = endpoints
        .auth_service_url
        .as_deref()
        .ok_or(TokenError::NotConfigured("AUTH_SERVICE_URL"))?;
    let secret = endpoints
        .service_secret
        .as_deref()
        .ok_or(TokenError::NotConfigured("SERVICE_SECRET"))?;
    let url = format!(
        "{}/auth/oauth/internal/credential-token",
        base.trim_end_matches('/')
    );
    let resp = http
        .post(url)
        .header("X-Service-Token", secret)
        .json(&serde_json::json!({ "credential_id": credential_id }))
        .timeout(TOKEN_TIMEOUT)
        .send()
        .await
        .map_err(transport)?;
    match resp.status().as_u16() {
        200 => {
            let body = resp.bytes().await.map_err(transport)?;
            let v: Vended = serde_json::from_slice(&body)
                .map_err(|e| TokenError::InvalidResponse(format!("auth service body: {e}")))?;
            Ok(AccessToken {
                token: v.access_token,
                expires_at: v.expires_at.min(expiry_in(MAX_TOKEN_LIFETIME_S)),
                new_refresh_token: None,
            })
        }
        404 => Err(TokenError::NotConnected { credential_id }),
        401 => Err(TokenError::BadServiceSecret),
        s if s == 429 || s >= 500 => Err(TokenError::Transient(format!(
            "auth service answered HTTP {s}"
        ))),
        // The body is not shown: we do not know what an unexpected answer may contain.
        s => Err(TokenError::InvalidResponse(format!(
            "auth service answered HTTP {s}"
        ))),
    }
}

/// `POST {login_url}/{tenant}/oauth2/v2.0/token` with a form (graph-contract §10).
async fn fetch_grant(
    http: &reqwest::Client,
    login_url: &str,
    tenant: &str,
    form: &[(&str, &str)],
) -> Result<AccessToken, TokenError> {
    #[derive(Deserialize)]
    struct Granted {
        access_token: String,
        #[serde(deserialize_with = "seconds")]
        expires_in: i64,
        #[serde(default)]
        refresh_token: Option<String>,
    }
    #[derive(Deserialize)]
    struct Refused {
        #[serde(default)]
        error: String,
        #[serde(default)]
        error_description: String,
    }
    let url = format!(
        "{}/{}/oauth2/v2.0/token",
        login_url.trim_end_matches('/'),
        percent_encoding::utf8_percent_encode(tenant, percent_encoding::NON_ALPHANUMERIC)
    );
    let resp = http
        .post(url)
        .form(form)
        .timeout(TOKEN_TIMEOUT)
        .send()
        .await
        .map_err(transport)?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(transport)?;
    if status == 200 {
        let g: Granted = serde_json::from_slice(&body)
            .map_err(|e| TokenError::InvalidResponse(format!("token response: {e}")))?;
        return Ok(AccessToken {
            token: g.access_token,
            expires_at: expiry_in(g.expires_in),
            new_refresh_token: g.refresh_token,
        });
    }
    if status == 429 || status >= 500 {
        return Err(TokenError::Transient(format!(
            "identity platform answered HTTP {status}"
        )));
    }
    match serde_json::from_slice::<Refused>(&body) {
        // The description holds AADSTS codes and trace ids, never the secret.
        Ok(r) if !r.error.is_empty() => {
            let description = r
                .error_description
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            Err(TokenError::Rejected {
                status,
                error: r.error,
                description,
            })
        }
        _ => Err(TokenError::InvalidResponse(format!(
            "identity platform answered HTTP {status}"
        ))),
    }
}

fn transport(err: reqwest::Error) -> TokenError {
    TokenError::Transient(err.without_url().to_string())
}

/// A number of seconds sent as a number or a string.
fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Int(i64),
        Float(f64),
        Str(String),
    }
    match N::deserialize(d)? {
        N::Int(i) => Ok(i),
        N::Float(f) => Ok(f as i64),
        N::Str(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// Longest lifetime believed of a token (a day; Entra's are about an hour). A token source that
/// claims more is refreshed daily all the same.
const MAX_TOKEN_LIFETIME_S: i64 = 24 * 3600;

/// When a token that lives `secs` from now expires. The number comes from a remote service:
/// any value, however absurd, gives a time between now and a day from now, never a panic.
fn expiry_in(secs: i64) -> DateTime<Utc> {
    let secs = secs.clamp(0, MAX_TOKEN_LIFETIME_S);
    let now = Utc::now();
    chrono::TimeDelta::try_seconds(secs)
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(now)
}

fn unix_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let secs = seconds(d)?;
    DateTime::from_timestamp(secs, 0)
        .ok_or_else(|| serde::de::Error::custom("expires_at out of range"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn token_source_json_matches_the_spec() {
        let cases = [
            (r#"{"kind":"auth_service"}"#, "auth_service"),
            (
                r#"{"kind":"client_credentials","tenant_id":"t","client_id":"c","client_secret":"s"}"#,
                "client_credentials",
            ),
            (
                r#"{"kind":"refresh_token","tenant_id":"t","client_id":"c","refresh_token":"r"}"#,
                "refresh_token",
            ),
            (r#"{"kind":"static","access_token":"a"}"#, "static"),
        ];
        for (json, kind) in cases {
            let ts: TokenSource = serde_json::from_str(json).unwrap();
            assert_eq!(ts.kind(), kind);
            assert!(ts.validate().is_ok());
            let back: TokenSource =
                serde_json::from_value(serde_json::to_value(&ts).unwrap()).unwrap();
            assert_eq!(back, ts);
        }
        assert!(serde_json::from_str::<TokenSource>(r#"{"kind":"password"}"#).is_err());
        let blank: TokenSource =
            serde_json::from_str(r#"{"kind":"static","access_token":" "}"#).unwrap();
        assert_eq!(
            blank.validate().unwrap_err(),
            "token_source.access_token must not be empty"
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let ts = TokenSource::RefreshToken {
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: Some("sekrit-1".into()),
            refresh_token: "sekrit-2".into(),
        };
        let tok = AccessToken {
            token: "sekrit-3".into(),
            expires_at: Utc::now(),
            new_refresh_token: Some("sekrit-4".into()),
        };
        let ep = TokenEndpoints {
            login_url: "l".into(),
            auth_service_url: None,
            service_secret: Some("sekrit-5".into()),
        };
        let cc = TokenSource::ClientCredentials {
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: "sekrit-6".into(),
        };
        let st = TokenSource::Static {
            access_token: "sekrit-7".into(),
        };
        let all = format!("{ts:?} {tok:?} {ep:?} {cc:?} {st:?}");
        assert!(!all.contains("sekrit"), "{all}");
        assert!(all.contains("***"));
    }

    #[test]
    fn rotation_replaces_only_the_refresh_token() {
        let ts = TokenSource::RefreshToken {
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: None,
            refresh_token: "old".into(),
        };
        let new = ts.with_refresh_token("new");
        assert!(
            matches!(new, TokenSource::RefreshToken { ref refresh_token, ref tenant_id, .. } if refresh_token == "new" && tenant_id == "t")
        );
    }
}
