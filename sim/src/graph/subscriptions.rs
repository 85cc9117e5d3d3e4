//! `/subscriptions`: create (with the validation handshake), get, list, renew, reauthorize
//! and delete, as Graph answers them, including its refusals of bad resources and expiries.
//! Every write is counted per mailbox in Graph's 20-s throttling window (the most seen is
//! kept), and [`Sim::adopt_subscriptions`] stores subscriptions as if created earlier.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Json;
use chrono::{DateTime, Utc};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    fail, graph_time, invalid, invalid_fail, ok, query_param, quoted_folder, resolve_mailbox, Fail,
    Reply, Who,
};
use crate::state::{mailbox_key, Principal, SeedSubscription, SimSubscription};
use crate::{Sim, SimError};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    change_type: Option<String>,
    notification_url: Option<String>,
    lifecycle_notification_url: Option<String>,
    resource: Option<String>,
    expiration_date_time: Option<String>,
    client_state: Option<String>,
    latest_supported_tls_version: Option<String>,
    include_resource_data: Option<bool>,
}

fn subscription_json(sim: &Sim, s: &SimSubscription, with_client_state: bool) -> Value {
    json!({
        "@odata.context": format!("{}/$metadata#subscriptions/$entity", sim.base_url()),
        "id": s.id,
        "resource": s.resource,
        "applicationId": sim.config().client_id,
        "changeType": s.change_type,
        "clientState": if with_client_state { json!(s.client_state) } else { Value::Null },
        "notificationUrl": s.notification_url,
        "notificationQueryOptions": null,
        "notificationContentType": null,
        "lifecycleNotificationUrl": s.lifecycle_notification_url,
        "expirationDateTime": graph_time(s.expiration_date_time),
        "creatorId": s.creator_id,
        "includeResourceData": null,
        "latestSupportedTlsVersion": s.latest_supported_tls_version,
        "encryptionCertificate": null,
        "encryptionCertificateId": null,
        "notificationUrlAppId": null,
    })
}

/// The expiry Graph grants for a requested one: raised to the 45-minute floor, refused
/// above the maximum, or replaced by the configured test lifetime.
fn granted_expiry(sim: &Sim, requested: &str) -> Result<DateTime<Utc>, Fail> {
    let Ok(asked) = DateTime::parse_from_rfc3339(requested.trim()) else {
        return Err(invalid_fail(format!(
            "expirationDateTime '{requested}' is not a valid date and time."
        )));
    };
    let asked = asked.with_timezone(&Utc);
    let now = Utc::now();
    let cfg = sim.config();
    let to_chrono =
        |d: std::time::Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
    let max = to_chrono(cfg.max_subscription_lifetime);
    if asked > now + max {
        return Err(invalid_fail(format!(
            "Subscription expiration can only be {} minutes in the future.",
            max.num_minutes()
        )));
    }
    if let Some(fixed) = cfg.granted_lifetime {
        return Ok(now + to_chrono(fixed));
    }
    Ok(asked.max(now + to_chrono(cfg.min_subscription_lifetime)))
}

/// Parses `me|users/{id}[/mailFolders('{f}')|/mailFolders/{f}]/messages`.
fn parse_resource(
    sim: &Sim,
    resource: &str,
    principal: &Principal,
) -> Result<(String, Option<String>), Fail> {
    let path = resource.trim().trim_start_matches('/');
    let path = path.split('?').next().unwrap_or_default();
    // Graph takes a percent-encoded UPN (`users/adele%40contoso.com/…`) as Microsoft's SDKs
    // send it, so segments are decoded as the Graph routes' are.
    let decoded: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let unsupported = || {
        invalid_fail(format!(
            "Resource '{resource}' is not supported by the simulator: use me|users/{{id}}[/mailFolders('{{folder}}')]/messages."
        ))
    };
    let (who, rest) = match segs.first() {
        Some(s) if s.eq_ignore_ascii_case("me") => (Who::Me, &segs[1..]),
        Some(s) if s.eq_ignore_ascii_case("users") && segs.len() > 1 => {
            (Who::User(segs[1].to_string()), &segs[2..])
        }
        _ => return Err(unsupported()),
    };
    let key = resolve_mailbox(sim, &who, principal)?;
    let is = |i: usize, k: &str| rest.get(i).is_some_and(|s| s.eq_ignore_ascii_case(k));
    let folder = match rest.len() {
        1 if is(0, "messages") => None,
        2 if is(1, "messages") => Some(quoted_folder(rest[0]).ok_or_else(unsupported)?),
        3 if is(0, "mailfolders") && is(2, "messages") => Some(rest[1].to_lowercase()),
        _ => return Err(unsupported()),
    };
    Ok((key, folder))
}

pub(super) async fn create_subscription(
    sim: &Sim,
    principal: &Principal,
    headers: &HeaderMap,
    body: &Bytes,
) -> Reply {
    let b: CreateBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return invalid(&format!("Invalid request body: {e}")),
    };
    let (Some(change_type), Some(notification_url), Some(resource), Some(expiry)) = (
        b.change_type,
        b.notification_url,
        b.resource,
        b.expiration_date_time,
    ) else {
        return invalid(
            "changeType, notificationUrl, resource and expirationDateTime are required.",
        );
    };
    let types: Vec<&str> = change_type.split(',').map(str::trim).collect();
    if types.is_empty()
        || types
            .iter()
            .any(|t| !matches!(*t, "created" | "updated" | "deleted"))
    {
        return invalid(&format!(
            "Invalid changeType '{change_type}': use created, updated and/or deleted."
        ));
    }
    if b.client_state
        .as_ref()
        .is_some_and(|c| c.chars().count() > 128)
    {
        return invalid("clientState must be at most 128 characters.");
    }
    if b.include_resource_data == Some(true) {
        return invalid("includeResourceData is not supported by the simulator (relay365 uses basic notifications).");
    }
    for url in std::iter::once(&notification_url).chain(b.lifecycle_notification_url.as_ref()) {
        match url::Url::parse(url) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
            _ => return invalid(&format!("Invalid notification URL '{url}'.")),
        }
    }
    let (mailbox, folder) = match parse_resource(sim, &resource, principal) {
        Ok(r) => r,
        Err(f) => return f.reply(),
    };
    let expires = match granted_expiry(sim, &expiry) {
        Ok(e) => e,
        Err(f) => return f.reply(),
    };
    let mut wanted: Vec<&str> = types.clone();
    wanted.sort_unstable();
    let duplicate_of = |st: &crate::state::State| {
        st.subscriptions.values().find_map(|s| {
            let mut have: Vec<&str> = s.change_type.split(',').map(str::trim).collect();
            have.sort_unstable();
            (s.mailbox == mailbox && s.folder == folder && have == wanted).then(|| s.id.clone())
        })
    };
    let conflict = |id: &str| {
        fail(
            StatusCode::CONFLICT,
            "Conflict",
            &format!("Subscription Id {id} already exists for the requested combination"),
        )
    };
    {
        let mut st = sim.state();
        st.sweep(Utc::now());
        if let Some(id) = duplicate_of(&st) {
            return conflict(&id);
        }
    }

    // The handshake, to both URLs, before anything is stored.
    let urls: Vec<&String> = std::iter::once(&notification_url)
        .chain(b.lifecycle_notification_url.as_ref())
        .collect();
    let checks = futures::future::join_all(urls.iter().map(|u| sim.validate_url(u))).await;
    if let Some(Err(reason)) = checks.into_iter().find(Result::is_err) {
        return invalid(&format!("Subscription validation request failed. {reason}"));
    }

    let sub = SimSubscription {
        id: uuid::Uuid::new_v4().to_string(),
        resource,
        change_type: types.join(","),
        notification_url,
        lifecycle_notification_url: b.lifecycle_notification_url,
        expiration_date_time: expires,
        client_state: b.client_state,
        latest_supported_tls_version: b
            .latest_supported_tls_version
            .unwrap_or_else(|| "v1_2".into()),
        mailbox: mailbox.clone(),
        folder: folder.clone(),
        creator_id: uuid::Uuid::new_v4().to_string(),
        created_at: Utc::now(),
        renew_count: 0,
        last_renewed_at: None,
        reauthorize_count: 0,
        last_reauthorized_at: None,
        immutable_ids: asks_immutable_ids(headers),
    };
    let mut st = sim.state();
    if let Some(id) = duplicate_of(&st) {
        return conflict(&id);
    }
    st.expires_at(sub.expiration_date_time);
    st.count_write(&sub.mailbox, tokio::time::Instant::now());
    st.subscriptions.insert(sub.id.clone(), sub.clone());
    ok((
        StatusCode::CREATED,
        Json(subscription_json(sim, &sub, true)),
    ))
}

fn not_found_subscription(id: &str) -> Reply {
    fail(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        &format!("The object was not found: subscription '{id}'."),
    )
}

pub(super) fn get_subscription(sim: &Sim, id: &str) -> Reply {
    let mut st = sim.state();
    st.sweep(Utc::now());
    match st.subscriptions.get(id) {
        Some(s) => ok(Json(subscription_json(sim, s, false))),
        None => not_found_subscription(id),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RenewBody {
    expiration_date_time: Option<String>,
    notification_url: Option<String>,
}

pub(super) fn renew_subscription(sim: &Sim, id: &str, body: &Bytes) -> Reply {
    let b: RenewBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return invalid(&format!("Invalid request body: {e}")),
    };
    if b.expiration_date_time.is_none() && b.notification_url.is_none() {
        return invalid("expirationDateTime or notificationUrl is required.");
    }
    let expiry = match b
        .expiration_date_time
        .as_deref()
        .map(|e| granted_expiry(sim, e))
        .transpose()
    {
        Ok(e) => e,
        Err(f) => return f.reply(),
    };
    let mut st = sim.state();
    st.sweep(Utc::now());
    let Some(s) = st.subscriptions.get_mut(id) else {
        return not_found_subscription(id);
    };
    if let Some(e) = expiry {
        s.expiration_date_time = e;
    }
    if let Some(u) = b.notification_url {
        s.notification_url = u;
    }
    s.renew_count += 1;
    s.last_renewed_at = Some(Utc::now());
    let s = s.clone();
    st.expires_at(s.expiration_date_time);
    st.count_write(&s.mailbox, tokio::time::Instant::now());
    ok(Json(subscription_json(sim, &s, true)))
}

pub(super) fn reauthorize_subscription(sim: &Sim, id: &str) -> Reply {
    let mut st = sim.state();
    st.sweep(Utc::now());
    let Some(s) = st.subscriptions.get_mut(id) else {
        return not_found_subscription(id);
    };
    s.reauthorize_count += 1;
    s.last_reauthorized_at = Some(Utc::now());
    ok(StatusCode::NO_CONTENT)
}

pub(super) fn delete_subscription(sim: &Sim, id: &str) -> Reply {
    let mut st = sim.state();
    st.sweep(Utc::now());
    match st.subscriptions.remove(id) {
        Some(s) => {
            st.count_write(&s.mailbox, tokio::time::Instant::now());
            ok(StatusCode::NO_CONTENT)
        }
        None => not_found_subscription(id),
    }
}

pub(super) fn list_subscriptions(sim: &Sim, uri: &Uri) -> Reply {
    let skip: usize = query_param(uri, "$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let page = sim.config().list_page_size.max(1);
    let mut st = sim.state();
    st.sweep(Utc::now());
    let mut all: Vec<&SimSubscription> = st.subscriptions.values().collect();
    all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let value: Vec<Value> = all
        .iter()
        .skip(skip)
        .take(page)
        .map(|s| subscription_json(sim, s, false))
        .collect();
    let mut body = json!({
        "@odata.context": format!("{}/$metadata#subscriptions", sim.base_url()),
        "value": value,
    });
    if skip + page < all.len() {
        body["@odata.nextLink"] = json!(format!(
            "{}/subscriptions?$skiptoken={}",
            sim.base_url(),
            skip + page
        ));
    }
    ok(Json(body))
}

impl Sim {
    /// Stores subscriptions as if Graph had created them earlier ([`SeedSubscription`]):
    /// no handshake, no duplicate check, the expiry as given (it must lie ahead). Answers
    /// their ids. Nothing is stored when one of them is refused.
    pub fn adopt_subscriptions(
        &self,
        seeds: Vec<SeedSubscription>,
    ) -> Result<Vec<String>, SimError> {
        let now = Utc::now();
        let mut subs = Vec::with_capacity(seeds.len());
        for seed in seeds {
            let key = mailbox_key(&seed.mailbox);
            if !self.state().mailboxes.contains_key(&key) {
                return Err(SimError::UnknownMailbox(seed.mailbox));
            }
            let (mailbox, folder) = parse_resource(self, &seed.resource, &Principal::User(key))
                .map_err(|f| SimError::BadRequest(f.message))?;
            if seed.expiration_date_time <= now {
                return Err(SimError::BadRequest(format!(
                    "expiration_date_time of {} has passed",
                    seed.resource
                )));
            }
            subs.push(SimSubscription {
                id: seed.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                resource: seed.resource,
                change_type: seed.change_type.unwrap_or_else(|| "created".into()),
                notification_url: seed.notification_url,
                lifecycle_notification_url: seed.lifecycle_notification_url,
                expiration_date_time: seed.expiration_date_time,
                client_state: seed.client_state,
                latest_supported_tls_version: "v1_2".into(),
                mailbox,
                folder,
                creator_id: uuid::Uuid::new_v4().to_string(),
                created_at: now,
                renew_count: 0,
                last_renewed_at: None,
                reauthorize_count: 0,
                last_reauthorized_at: None,
                immutable_ids: true,
            });
        }
        let mut st = self.state();
        if let Some(s) = subs.iter().find(|s| st.subscriptions.contains_key(&s.id)) {
            return Err(SimError::BadRequest(format!(
                "subscription {} exists already",
                s.id
            )));
        }
        let ids = subs.iter().map(|s| s.id.clone()).collect();
        for s in subs {
            st.expires_at(s.expiration_date_time);
            st.subscriptions.insert(s.id.clone(), s);
        }
        Ok(ids)
    }
}

/// Whether a request carries `Prefer: IdType="ImmutableId"` (among other preferences).
fn asks_immutable_ids(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| {
            p.trim()
                .replace(' ', "")
                .eq_ignore_ascii_case("IdType=\"ImmutableId\"")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimConfig;

    #[test]
    fn resources_parse_in_every_folder_spelling_and_others_are_refused() {
        let sim = Sim::new(SimConfig::default(), "http://sim.test".into()).expect("sim");
        let me = Principal::User("adele@contoso.com".into());
        let folder = |r: &str| parse_resource(&sim, r, &me).ok().map(|(_, f)| f);
        assert_eq!(folder("me/messages"), Some(None));
        assert_eq!(
            folder("/me/mailFolders('Inbox')/messages"),
            Some(Some("inbox".into()))
        );
        assert_eq!(
            folder("me/MailFolders/Archive/messages?$filter=x"),
            Some(Some("archive".into()))
        );
        assert_eq!(folder("me/events"), None);
        assert_eq!(folder("groups/g/conversations"), None);
        // `/me` needs a user's token.
        assert!(parse_resource(&sim, "me/messages", &Principal::App).is_err());
    }
}
