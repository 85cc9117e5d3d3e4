//! Subscriptions at Graph, kept in step with our store: create, renew by hand, delete.
//!
//! These are the operations behind the subscriptions API. Every Graph call goes through the
//! subscription's credential actor (its token and its mailbox limits); the store stays the
//! source of truth (Graph never returns a clientState), and the receiver learns a new or
//! removed subscription before the call returns.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::cluster;
use crate::credential::{self, CredentialError, GraphSession};
use crate::deps::Deps;
use crate::graph::{GraphError, NewSubscription};
use crate::receiver::{self, KnownSubscription};
use crate::renewal;
use crate::store::credentials;
use crate::store::status::SubscriptionStatus;
use crate::store::subscriptions::{self, NewSubscription as NewRow, SubscriptionRow};
use crate::store::{new_id, StoreError};

/// The longest lifetime Graph grants an Outlook message, event or contact subscription
/// without resource data (graph-contract §2).
pub const MAX_LIFETIME_MINUTES: i64 = 10_080;
/// The lifetime asked for when none is given, and at every renewal: graph-contract §2's
/// practical rule, a little under the maximum, so that a clock running ahead of Graph's never
/// asks for more than Graph allows (a 400).
pub const DEFAULT_LIFETIME_MINUTES: i64 = 10_000;
/// Graph raises anything shorter to 45 minutes.
pub const MIN_LIFETIME_MINUTES: i64 = 45;
/// Length of a generated clientState (Graph allows at most 128).
pub const CLIENT_STATE_LEN: usize = 64;
const CHANGE_TYPES: [&str; 3] = ["created", "updated", "deleted"];

/// Why a subscription operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<GraphError> for SubscriptionError {
    fn from(e: GraphError) -> Self {
        SubscriptionError::Credential(CredentialError::Graph(e))
    }
}

/// What a caller asks for when creating a subscription.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub credential_id: String,
    pub resource: Option<String>,
    pub change_types: Option<Vec<String>>,
    pub expiration_minutes: Option<i64>,
    pub notification_url: Option<String>,
}

/// A fresh clientState: 64 alphanumeric characters from the operating system's CSPRNG.
pub fn new_client_state() -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(CLIENT_STATE_LEN)
        .map(char::from)
        .collect()
}

/// The lifetime to ask for: the request's, within Graph's bounds; by default
/// [`DEFAULT_LIFETIME_MINUTES`].
pub fn lifetime_minutes(requested: Option<i64>) -> Result<i64, SubscriptionError> {
    match requested {
        None => Ok(DEFAULT_LIFETIME_MINUTES),
        Some(m) if m <= 0 => Err(SubscriptionError::BadRequest(
            "expiration must be a positive duration".into(),
        )),
        Some(m) => Ok(m.clamp(MIN_LIFETIME_MINUTES, MAX_LIFETIME_MINUTES)),
    }
}

/// When to renew (SPEC §6): `expires_at − min(renew_before, lifetime / 2)`.
pub fn next_renewal_at(
    deps: &Deps,
    expires_at: DateTime<Utc>,
    lifetime: ChronoDuration,
) -> DateTime<Utc> {
    let before =
        ChronoDuration::from_std(deps.settings.renew_before).unwrap_or(ChronoDuration::days(1));
    // Graph's expiry is a remote time: a lifetime that is already over renews at once, and no
    // value can overflow the arithmetic.
    let lead = before.min(lifetime / 2).max(ChronoDuration::zero());
    expires_at.checked_sub_signed(lead).unwrap_or(expires_at)
}

fn normalize_change_types(given: Option<Vec<String>>) -> Result<String, SubscriptionError> {
    let given = given.unwrap_or_else(|| vec!["created".to_string()]);
    let mut out: Vec<&str> = Vec::new();
    for t in &given {
        let t = t.trim();
        let Some(known) = CHANGE_TYPES.iter().find(|k| k.eq_ignore_ascii_case(t)) else {
            return Err(SubscriptionError::BadRequest(format!(
                "change_types: {t:?} is not one of created, updated, deleted"
            )));
        };
        if !out.contains(known) {
            out.push(known);
        }
    }
    if out.is_empty() {
        return Err(SubscriptionError::BadRequest(
            "change_types must not be empty".into(),
        ));
    }
    Ok(out.join(","))
}

fn check_url(field: &str, url: &str) -> Result<(), SubscriptionError> {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => Ok(()),
        _ => Err(SubscriptionError::BadRequest(format!(
            "{field} must be an http(s) URL"
        ))),
    }
}

/// Creates a subscription at Graph (the validation handshake happens while this waits) and
/// stores it. If Graph already has one for the same resource and change types (409), an
/// existing subscription of ours is returned; one we do not know (its clientState is lost)
/// is deleted at Graph and created again with a clientState of ours.
pub async fn create(deps: &Deps, req: CreateRequest) -> Result<SubscriptionRow, SubscriptionError> {
    let cred = credentials::get(&deps.store, &req.credential_id)
        .await?
        .ok_or_else(|| {
            SubscriptionError::NotFound(format!("no credential {}", req.credential_id))
        })?;
    let resource = match req.resource.map(|r| r.trim().to_string()) {
        Some(r) if r.is_empty() => {
            return Err(SubscriptionError::BadRequest(
                "resource must not be empty".into(),
            ))
        }
        Some(r) => r,
        None => match &cred.mailbox {
            Some(m) => format!("users/{m}/mailFolders('inbox')/messages"),
            None => "me/mailFolders('inbox')/messages".to_string(),
        },
    };
    let change_types = normalize_change_types(req.change_types)?;
    let minutes = lifetime_minutes(req.expiration_minutes)?;
    let notification_url = req
        .notification_url
        .unwrap_or_else(|| deps.settings.notification_url.clone());
    check_url("notification_url", &notification_url)?;

    // Ours already? Creating it again is a no-op.
    let existing = subscriptions::list(&deps.store, Some(&cred.id)).await?;
    if let Some(row) = existing.into_iter().find(|r| {
        r.status == SubscriptionStatus::Active
            && r.external_id.is_some()
            && r.resource.eq_ignore_ascii_case(&resource)
            && r.change_types == change_types
    }) {
        return Ok(row);
    }

    let id = new_id();
    let client_state = new_client_state();
    let lifecycle_url = deps.settings.lifecycle_url.clone();
    subscriptions::insert(
        &deps.store,
        &NewRow {
            id: &id,
            credential_id: &cred.id,
            external_id: None,
            resource: &resource,
            change_types: &change_types,
            notification_url: &notification_url,
            lifecycle_url: Some(&lifecycle_url),
            client_state: &client_state,
            status: SubscriptionStatus::Active,
            expires_at: None,
            granted_lifetime_ms: None,
            next_renewal_at: None,
        },
    )
    .await?;
    let row = subscriptions::get(&deps.store, &id)
        .await?
        .ok_or_else(|| SubscriptionError::NotFound(id.clone()))?;
    match create_at_graph(deps, &row, minutes).await {
        Ok(row) => {
            // The delta baseline: mail already in the folder is never turned into events.
            renewal::created(deps, &row.id);
            Ok(row)
        }
        Err(Adopted(existing)) => {
            subscriptions::delete(&deps.store, &id).await?;
            Ok(*existing)
        }
        Err(Failed(e)) => {
            // Nothing was created at Graph: leave no trace.
            subscriptions::delete(&deps.store, &id).await?;
            Err(e)
        }
    }
}

pub(crate) enum CreateOutcome {
    Adopted(Box<SubscriptionRow>),
    Failed(SubscriptionError),
}
use CreateOutcome::{Adopted, Failed};

impl<E: Into<SubscriptionError>> From<E> for CreateOutcome {
    fn from(e: E) -> Self {
        Failed(e.into())
    }
}

/// Creates `row` at Graph (again, when it was removed there) and records what Graph granted.
pub(crate) async fn create_at_graph(
    deps: &Deps,
    row: &SubscriptionRow,
    minutes: i64,
) -> Result<SubscriptionRow, CreateOutcome> {
    let session = credential::session(deps, &row.credential_id).await?;
    let mut retried = false;
    loop {
        let requested_at = Utc::now();
        let body = NewSubscription {
            change_type: row.change_types.clone(),
            notification_url: row.notification_url.clone(),
            lifecycle_notification_url: row.lifecycle_url.clone(),
            resource: row.resource.clone(),
            expiration_date_time: requested_at + ChronoDuration::minutes(minutes),
            client_state: row.client_state.clone(),
            latest_supported_tls_version: Some("v1_2".into()),
        };
        let created = session
            .call_app(|c, t| {
                let body = body.clone();
                async move { c.create_subscription(&t, &body).await }
            })
            .await;
        match created {
            Ok(sub) => {
                let lifetime = sub.expiration_date_time - requested_at;
                return Ok(record(
                    deps,
                    row,
                    &sub.id,
                    sub.expiration_date_time,
                    lifetime,
                    false,
                )
                .await?);
            }
            Err(CredentialError::Graph(e @ GraphError::Conflict { .. })) if !retried => {
                retried = true;
                let Some(existing_id) = find_conflicting(&session, &e, row).await? else {
                    return Err(Failed(CredentialError::Graph(e).into()));
                };
                if let Some(ours) =
                    subscriptions::get_by_external(&deps.store, &existing_id).await?
                {
                    return Err(Adopted(Box::new(ours)));
                }
                tracing::info!(subscription = %row.id, graph_id = %existing_id, "replacing a subscription we hold no clientState for");
                let deleted = session
                    .call_app(|c, t| {
                        let id = existing_id.clone();
                        async move { c.delete_subscription(&t, &id).await }
                    })
                    .await;
                match deleted {
                    Ok(()) | Err(CredentialError::Graph(GraphError::NotFound { .. })) => continue,
                    Err(e) => return Err(Failed(e.into())),
                }
            }
            Err(e) => return Err(Failed(e.into())),
        }
    }
}

/// The Graph id of the subscription a 409 refers to: from the message, or by listing.
async fn find_conflicting(
    session: &GraphSession,
    err: &GraphError,
    row: &SubscriptionRow,
) -> Result<Option<String>, CredentialError> {
    if let Some(id) = err.conflicting_subscription_id() {
        return Ok(Some(id.to_string()));
    }
    let all = session
        .call_app(|c, t| async move { c.list_subscriptions(&t).await })
        .await?;
    let norm = |s: &str| s.trim_start_matches('/').to_ascii_lowercase();
    Ok(all
        .into_iter()
        .find(|s| norm(&s.resource) == norm(&row.resource) && s.change_type == row.change_types)
        .map(|s| s.id))
}

/// Tells the receiver that Graph's `external_id` is `row`, with its clientState.
async fn learn(deps: &Deps, external_id: &str, row: &SubscriptionRow) {
    receiver::learn(
        deps,
        external_id,
        KnownSubscription {
            id: row.id.clone(),
            credential_id: row.credential_id.clone(),
            client_state: row.client_state.clone(),
        },
    )
    .await;
}

/// Stores what Graph granted, tells the receiver and the renewal actor, returns the new row.
async fn record(
    deps: &Deps,
    row: &SubscriptionRow,
    external_id: &str,
    expires_at: DateTime<Utc>,
    lifetime: ChronoDuration,
    renewed: bool,
) -> Result<SubscriptionRow, SubscriptionError> {
    let next = next_renewal_at(deps, expires_at, lifetime);
    subscriptions::record_granted(
        &deps.store,
        &row.id,
        external_id,
        expires_at.timestamp_millis(),
        lifetime.num_milliseconds(),
        next.timestamp_millis(),
        renewed,
    )
    .await?;
    // The new Graph id is learnt before the old one is forgotten, so that no notification in
    // between is dropped as unknown.
    learn(deps, external_id, row).await;
    let old = row
        .external_id
        .clone()
        .filter(|old| old.as_str() != external_id);
    if let Some(old) = &old {
        receiver::forget(deps, old);
    }
    let row = subscriptions::get(&deps.store, &row.id)
        .await?
        .ok_or_else(|| SubscriptionError::NotFound(row.id.clone()))?;
    renewal::schedule(deps, &row);
    cluster::changes::subscription_changed(deps, &row.id, old.into_iter().collect());
    Ok(row)
}

/// Creates a subscription Graph no longer has again, under our id, with a new clientState:
/// stored first, so that the validation handshake and the first notifications of the new
/// Graph subscription already find it.
pub(crate) async fn recreate(
    deps: &Deps,
    row: &SubscriptionRow,
    minutes: i64,
) -> Result<SubscriptionRow, SubscriptionError> {
    let client_state = new_client_state();
    subscriptions::set_client_state(&deps.store, &row.id, &client_state).await?;
    let fresh = SubscriptionRow {
        client_state,
        ..row.clone()
    };
    match create_at_graph(deps, &fresh, minutes).await {
        // Graph has it still, as ours (a `subscriptionRemoved` acted on a second time, after
        // a restart, once the first recreate had succeeded): it keeps the clientState it was
        // created with, which must be ours again, or its notifications would be refused.
        Err(Adopted(ours)) if ours.id == row.id => {
            subscriptions::set_client_state(&deps.store, &row.id, &row.client_state).await?;
            if let Some(external_id) = &ours.external_id {
                learn(deps, external_id, row).await;
            }
            cluster::changes::subscription_changed(deps, &row.id, Vec::new());
            subscriptions::get(&deps.store, &row.id)
                .await?
                .ok_or_else(|| SubscriptionError::NotFound(row.id.clone()))
        }
        other => other.map_err(outcome_error),
    }
}

/// PATCHes a subscription's expiry at Graph and records what Graph granted. A 404 comes back
/// as the error: the caller decides to recreate.
pub(crate) async fn patch(
    deps: &Deps,
    row: &SubscriptionRow,
    external_id: &str,
    minutes: i64,
) -> Result<SubscriptionRow, SubscriptionError> {
    let session = credential::session(deps, &row.credential_id).await?;
    let requested_at = Utc::now();
    let expiry = requested_at + ChronoDuration::minutes(minutes);
    let sub = session
        .call_app(|c, t| {
            let ext = external_id.to_string();
            async move { c.renew_subscription(&t, &ext, expiry).await }
        })
        .await?;
    record(
        deps,
        row,
        &sub.id,
        sub.expiration_date_time,
        sub.expiration_date_time - requested_at,
        true,
    )
    .await
}

/// True when `e` says Graph no longer has the subscription (404 on PATCH).
pub(crate) fn is_gone(e: &SubscriptionError) -> bool {
    matches!(
        e,
        SubscriptionError::Credential(CredentialError::Graph(GraphError::NotFound { .. }))
    )
}

/// Renews a subscription now (PATCH). A subscription Graph no longer has (404) is created
/// again, keeping our id.
pub async fn renew(
    deps: &Deps,
    id: &str,
    minutes: Option<i64>,
) -> Result<SubscriptionRow, SubscriptionError> {
    let row = subscriptions::get(&deps.store, id)
        .await?
        .ok_or_else(|| SubscriptionError::NotFound(format!("no subscription {id}")))?;
    let minutes = lifetime_minutes(minutes)?;
    let Some(external_id) = row.external_id.clone() else {
        return create_at_graph(deps, &row, minutes)
            .await
            .map_err(outcome_error);
    };
    match patch(deps, &row, &external_id, minutes).await {
        Err(e) if is_gone(&e) => {
            tracing::info!(subscription = %row.id, "gone at Graph; creating it again");
            let row = recreate(deps, &row, minutes).await?;
            // What arrived while Graph had no subscription comes through delta.
            renewal::resync(deps, &row.id);
            Ok(row)
        }
        Err(SubscriptionError::Credential(e)) => {
            subscriptions::set_status(&deps.store, &row.id, row.status, Some(&e.to_string()))
                .await?;
            Err(e.into())
        }
        other => other,
    }
}

pub(crate) fn outcome_error(o: CreateOutcome) -> SubscriptionError {
    match o {
        Failed(e) => e,
        Adopted(row) => SubscriptionError::BadRequest(format!(
            "Graph already has this subscription as {}",
            row.id
        )),
    }
}

/// Deletes a subscription at Graph (a 404 there is fine) and then from the store.
pub async fn delete(deps: &Deps, id: &str) -> Result<(), SubscriptionError> {
    let row = subscriptions::get(&deps.store, id)
        .await?
        .ok_or_else(|| SubscriptionError::NotFound(format!("no subscription {id}")))?;
    if let Some(ext) = &row.external_id {
        let session = credential::session(deps, &row.credential_id).await?;
        let res = session
            .call_app(|c, t| {
                let ext = ext.clone();
                async move { c.delete_subscription(&t, &ext).await }
            })
            .await;
        match res {
            Ok(()) | Err(CredentialError::Graph(GraphError::NotFound { .. })) => {}
            Err(e) => return Err(e.into()),
        }
        receiver::forget(deps, ext);
    }
    subscriptions::delete(&deps.store, id).await?;
    renewal::unschedule(deps, id);
    cluster::changes::subscription_changed(deps, id, row.external_id.into_iter().collect());
    Ok(())
}

/// Deletes every subscription of a credential at Graph, best effort (the credential is going
/// away; its rows go with it). Returns how many Graph deletions failed.
pub async fn delete_all_at_graph(deps: &Deps, credential_id: &str) -> usize {
    let rows = subscriptions::list(&deps.store, Some(credential_id))
        .await
        .unwrap_or_default();
    let mut failed = 0;
    let session = match credential::session(deps, credential_id).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(credential = %credential_id, error = %e, "cannot delete subscriptions at Graph");
            None
        }
    };
    for row in rows {
        let Some(ext) = row.external_id else { continue };
        receiver::forget(deps, &ext);
        let Some(session) = &session else {
            failed += 1;
            continue;
        };
        let res = session
            .call_app(|c, t| {
                let ext = ext.clone();
                async move { c.delete_subscription(&t, &ext).await }
            })
            .await;
        if let Err(e) = res {
            if !matches!(e, CredentialError::Graph(GraphError::NotFound { .. })) {
                tracing::warn!(subscription = %row.id, error = %e, "could not delete at Graph");
                failed += 1;
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_clamped_to_graphs_bounds() {
        assert_eq!(lifetime_minutes(None).ok(), Some(10_000));
        assert_eq!(lifetime_minutes(Some(100_000)).ok(), Some(10_080));
        assert_eq!(lifetime_minutes(Some(10)).ok(), Some(45));
        assert_eq!(lifetime_minutes(Some(600)).ok(), Some(600));
        assert!(lifetime_minutes(Some(0)).is_err());
        assert!(lifetime_minutes(Some(-5)).is_err());
    }

    #[test]
    fn client_states_are_random_and_within_graphs_limit() {
        let a = new_client_state();
        let b = new_client_state();
        assert_eq!(a.len(), CLIENT_STATE_LEN);
        assert!(a.len() <= 128);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn change_types_are_checked_and_normalized() {
        assert_eq!(
            normalize_change_types(None).ok().as_deref(),
            Some("created")
        );
        let v = |s: &[&str]| Some(s.iter().map(|x| x.to_string()).collect());
        assert_eq!(
            normalize_change_types(v(&["Created", "deleted", "created"]))
                .ok()
                .as_deref(),
            Some("created,deleted")
        );
        assert!(normalize_change_types(v(&["moved"])).is_err());
        assert!(normalize_change_types(v(&[])).is_err());
    }
}
