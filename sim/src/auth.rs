//! Token issuing: the identity platform's `/{tenant}/oauth2/v2.0/token` (client credentials
//! and refresh token, with rotation) and the token-vending route of the auth service.
//!
//! Access tokens are random opaque strings mapped to who they speak for; Graph routes look
//! them up, so the control API can revoke or expire them to exercise refresh-on-401.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use super::state::{mailbox_key, IssuedToken, Principal, RequestRecord};
use super::{random_string, Sim};

/// Why a bearer token was refused.
pub(crate) enum AuthFailure {
    Missing,
    Unknown,
    Expired,
}

impl Sim {
    /// Issues an access token for `principal`.
    pub(crate) fn issue_access_token(&self, principal: Principal) -> (String, DateTime<Utc>) {
        let token = format!("sim-at.{}", random_string(32));
        let lifetime = chrono::Duration::from_std(self.config().token_lifetime)
            .unwrap_or(chrono::Duration::hours(1));
        let expires_at = Utc::now() + lifetime;
        self.state().tokens.insert(
            token.clone(),
            IssuedToken {
                principal,
                expires_at,
                revoked: false,
            },
        );
        (token, expires_at)
    }

    /// Checks a bearer token.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthFailure> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthFailure::Missing)?;
        let st = self.state();
        let issued = st.tokens.get(token).ok_or(AuthFailure::Unknown)?;
        if issued.revoked {
            return Err(AuthFailure::Unknown);
        }
        if issued.expires_at <= Utc::now() {
            return Err(AuthFailure::Expired);
        }
        Ok(issued.principal.clone())
    }

    /// Issues a refresh token for a mailbox, as if its user had signed in with
    /// `offline_access`. Fails if the mailbox does not exist.
    pub fn issue_refresh_token(&self, mailbox: &str) -> Option<String> {
        let key = mailbox_key(mailbox);
        let mut st = self.state();
        st.mailboxes.contains_key(&key).then(|| {
            let rt = format!("sim-rt.{}", random_string(32));
            st.refresh_tokens.insert(rt.clone(), key);
            rt
        })
    }

    /// Connects a credential id to a mailbox for token vending. Fails if the mailbox does
    /// not exist.
    pub fn connect_credential(&self, credential_id: &str, mailbox: &str) -> bool {
        let key = mailbox_key(mailbox);
        let mut st = self.state();
        if !st.mailboxes.contains_key(&key) {
            return false;
        }
        st.credentials
            .insert(credential_id.trim().to_lowercase(), key);
        true
    }

    /// Disconnects a credential; vending then answers 404.
    pub fn disconnect_credential(&self, credential_id: &str) -> bool {
        self.state()
            .credentials
            .remove(&credential_id.trim().to_lowercase())
            .is_some()
    }

    /// Revokes every access token (of one mailbox's user, or all): Graph answers 401 until
    /// a new token is fetched. Returns how many were revoked.
    pub fn revoke_tokens(&self, mailbox: Option<&str>) -> usize {
        self.mark_tokens(mailbox, |t| t.revoked = true)
    }

    /// Makes every access token (of one mailbox's user, or all) expired now.
    pub fn expire_tokens(&self, mailbox: Option<&str>) -> usize {
        let past = Utc::now() - chrono::Duration::seconds(1);
        self.mark_tokens(mailbox, |t| t.expires_at = past)
    }

    fn mark_tokens(&self, mailbox: Option<&str>, f: impl Fn(&mut IssuedToken)) -> usize {
        let key = mailbox.map(mailbox_key);
        let mut st = self.state();
        let mut n = 0;
        for t in st.tokens.values_mut() {
            let hit = match (&key, &t.principal) {
                (None, _) => true,
                (Some(k), Principal::User(m)) => k == m,
                (Some(_), Principal::App) => false,
            };
            if hit {
                f(t);
                n += 1;
            }
        }
        n
    }

    /// Counts of token requests by grant, and of refused ones.
    pub fn token_counts(&self) -> super::TokenCounts {
        self.state().token_counts.clone()
    }

    pub(crate) fn record(&self, mut rec: RequestRecord) {
        let mut st = self.state();
        st.request_seq += 1;
        rec.seq = st.request_seq;
        super::state::push_capped(&mut st.requests, rec);
    }

    fn tenant_matches(&self, tenant: &str) -> bool {
        tenant.eq_ignore_ascii_case(&self.config().tenant)
            || tenant.eq_ignore_ascii_case(self.tenant_id())
    }
}

/// The identity platform's error body (fixture `token-error-response.json`).
fn identity_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace = uuid::Uuid::new_v4();
    let correlation = uuid::Uuid::new_v4();
    let now = Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {now}"),
        "error_codes": [code],
        "timestamp": now,
        "trace_id": trace,
        "correlation_id": correlation,
    });
    (status, Json(body)).into_response()
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(crate) async fn token_endpoint(
    State(sim): State<Sim>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let started = (Instant::now(), Utc::now());
    let (resp, code) = grant(&sim, &tenant, &form);
    let status = resp.status().as_u16();
    if status != 200 {
        sim.state().token_counts.rejected += 1;
    }
    sim.record(RequestRecord {
        seq: 0,
        method: "POST".into(),
        path: format!("/{tenant}/oauth2/v2.0/token"),
        query: None,
        mailbox: None,
        status,
        error_code: code,
        user_agent: None,
        started: started.0,
        ended: Instant::now(),
        started_at: started.1,
        ended_at: Utc::now(),
    });
    resp
}

fn grant(sim: &Sim, tenant: &str, form: &HashMap<String, String>) -> (Response, Option<String>) {
    let fail = |status, error: &str, code, desc: &str| {
        (
            identity_error(status, error, code, desc),
            Some(error.to_string()),
        )
    };
    let cfg = sim.config();
    if !sim.tenant_matches(tenant) {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let client_id = field("client_id");
    if client_id.is_empty() {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    }
    if client_id != cfg.client_id {
        return fail(StatusCode::BAD_REQUEST, "unauthorized_client", 700016, &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."));
    }
    let secret = form.get("client_secret");
    match field("grant_type") {
        "client_credentials" => {
            if secret.map(String::as_str) != Some(cfg.client_secret.as_str()) {
                return fail(StatusCode::UNAUTHORIZED, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.");
            }
            let scope = field("scope");
            if !scope.split(' ').any(|s| s.ends_with("/.default")) {
                return fail(StatusCode::BAD_REQUEST, "invalid_scope", 1002012, &format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."));
            }
            sim.state().token_counts.client_credentials += 1;
            let (token, _) = sim.issue_access_token(Principal::App);
            let secs = cfg.token_lifetime.as_secs();
            let body = json!({"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": token});
            (Json(body).into_response(), None)
        }
        "refresh_token" => {
            if secret.is_some_and(|s| s != &cfg.client_secret) {
                return fail(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided.",
                );
            }
            let old = field("refresh_token");
            // Rotation: the old refresh token stops working as soon as it is used.
            let mailbox = sim.state().refresh_tokens.remove(old);
            let Some(mailbox) = mailbox else {
                return fail(StatusCode::BAD_REQUEST, "invalid_grant", 70000, "The provided value for the 'refresh_token' is not valid: it is unknown, revoked or already used.");
            };
            let new_rt = format!("sim-rt.{}", random_string(32));
            {
                let mut st = sim.state();
                st.refresh_tokens.insert(new_rt.clone(), mailbox.clone());
                st.token_counts.refresh_token += 1;
            }
            let (token, _) = sim.issue_access_token(Principal::User(mailbox));
            let secs = cfg.token_lifetime.as_secs();
            let body = json!({"access_token": token, "token_type": "Bearer", "expires_in": secs, "scope": "Mail.Read offline_access", "refresh_token": new_rt});
            (Json(body).into_response(), None)
        }
        "" => fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        ),
        other => fail(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{other}'."),
        ),
    }
}

#[derive(Deserialize)]
pub(crate) struct VendRequest {
    credential_id: String,
}

/// `POST /auth/oauth/internal/credential-token` (token vending).
pub(crate) async fn vend_token(
    State(sim): State<Sim>,
    headers: HeaderMap,
    body: Option<Json<VendRequest>>,
) -> Response {
    let started = (Instant::now(), Utc::now());
    let resp = vend(&sim, &headers, body.map(|b| b.0));
    let status = resp.status().as_u16();
    if status != 200 {
        sim.state().token_counts.rejected += 1;
    }
    sim.record(RequestRecord {
        seq: 0,
        method: "POST".into(),
        path: "/auth/oauth/internal/credential-token".into(),
        query: None,
        mailbox: None,
        status,
        error_code: None,
        user_agent: None,
        started: started.0,
        ended: Instant::now(),
        started_at: started.1,
        ended_at: Utc::now(),
    });
    resp
}

fn vend(sim: &Sim, headers: &HeaderMap, body: Option<VendRequest>) -> Response {
    let given = headers.get("x-service-token").and_then(|v| v.to_str().ok());
    if given != Some(sim.config().service_secret.as_str()) {
        let body = json!({"error": "unauthorized", "message": "missing or wrong X-Service-Token"});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    let Some(req) = body else {
        let body = json!({"error": "bad_request", "message": "body must be {\"credential_id\": \"<uuid>\"}"});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    };
    let mailbox = sim
        .state()
        .credentials
        .get(&req.credential_id.trim().to_lowercase())
        .cloned();
    let Some(mailbox) = mailbox else {
        let body = json!({"error": "not_found", "message": format!("credential {} is not connected", req.credential_id)});
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    };
    sim.state().token_counts.vended += 1;
    let (token, expires_at) = sim.issue_access_token(Principal::User(mailbox));
    Json(json!({"access_token": token, "expires_at": expires_at.timestamp(), "token_type": "Bearer"})).into_response()
}
