//! The `subscriptions` table: our record of each Graph subscription, the source of truth
//! (Graph never returns a subscription's clientState).

use super::status::SubscriptionStatus;
use super::{now_ms, with_pool, Store, StoreError};

/// A stored subscription. `client_state` is secret: never serialize this type to a caller.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SubscriptionRow {
    pub id: String,
    pub credential_id: String,
    pub external_id: Option<String>,
    pub resource: String,
    pub change_types: String,
    pub notification_url: String,
    pub lifecycle_url: Option<String>,
    pub client_state: String,
    #[sqlx(try_from = "String")]
    pub status: SubscriptionStatus,
    pub expires_at: Option<i64>,
    pub granted_lifetime_ms: Option<i64>,
    pub next_renewal_at: Option<i64>,
    pub renewal_attempts: i64,
    pub last_error: Option<String>,
    /// The instance renewing it now, and until when (see [`claim_lease`]).
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub last_renewed_at: Option<i64>,
    pub last_reauthorized_at: Option<i64>,
    pub last_notification_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, credential_id, external_id, resource, change_types, notification_url, \
    lifecycle_url, client_state, status, expires_at, granted_lifetime_ms, next_renewal_at, \
    renewal_attempts, last_error, lease_owner, lease_until, last_renewed_at, last_reauthorized_at, last_notification_at, \
    created_at, updated_at";

/// What a new subscription row starts with.
#[derive(Debug, Clone)]
pub struct NewSubscription<'a> {
    pub id: &'a str,
    pub credential_id: &'a str,
    pub external_id: Option<&'a str>,
    pub resource: &'a str,
    pub change_types: &'a str,
    pub notification_url: &'a str,
    pub lifecycle_url: Option<&'a str>,
    pub client_state: &'a str,
    pub status: SubscriptionStatus,
    pub expires_at: Option<i64>,
    pub granted_lifetime_ms: Option<i64>,
    pub next_renewal_at: Option<i64>,
}

/// Inserts a subscription row.
pub async fn insert(store: &Store, s: &NewSubscription<'_>) -> Result<SubscriptionRow, StoreError> {
    let now = now_ms();
    let sql = format!(
        "insert into subscriptions (id, credential_id, external_id, resource, change_types, \
         notification_url, lifecycle_url, client_state, status, expires_at, granted_lifetime_ms, \
         next_renewal_at, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) returning {COLUMNS}"
    );
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, SubscriptionRow>(&sql)
        .bind(s.id).bind(s.credential_id).bind(s.external_id).bind(s.resource)
        .bind(s.change_types).bind(s.notification_url).bind(s.lifecycle_url).bind(s.client_state)
        .bind(s.status.as_str()).bind(s.expires_at).bind(s.granted_lifetime_ms).bind(s.next_renewal_at)
        .bind(now)
        .fetch_one(p).await?),
    )
}

/// One subscription by our id.
pub async fn get(store: &Store, id: &str) -> Result<Option<SubscriptionRow>, StoreError> {
    let sql = format!("select {COLUMNS} from subscriptions where id = $1");
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, SubscriptionRow>(&sql).bind(id).fetch_optional(p).await?),
    )
}

/// One subscription by Graph's id.
pub async fn get_by_external(
    store: &Store,
    external_id: &str,
) -> Result<Option<SubscriptionRow>, StoreError> {
    let sql = format!("select {COLUMNS} from subscriptions where external_id = $1");
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, SubscriptionRow>(&sql).bind(external_id).fetch_optional(p).await?),
    )
}

/// The subscriptions with these Graph ids (those that exist), in one statement.
pub async fn get_many_by_external(
    store: &Store,
    external_ids: &[String],
) -> Result<Vec<SubscriptionRow>, StoreError> {
    Ok(match store {
        Store::Postgres(p) => {
            let sql = format!("select {COLUMNS} from subscriptions where external_id = any($1)");
            sqlx::query_as::<_, SubscriptionRow>(&sql)
                .bind(external_ids)
                .fetch_all(p)
                .await?
        }
        Store::Sqlite(p) => {
            let sql = format!(
                "select {COLUMNS} from subscriptions \
                 where external_id in (select value from json_each($1))"
            );
            let ids = serde_json::to_string(external_ids).unwrap_or_default();
            sqlx::query_as::<_, SubscriptionRow>(&sql)
                .bind(ids)
                .fetch_all(p)
                .await?
        }
    })
}

/// Every subscription, or those of one credential; oldest first.
pub async fn list(
    store: &Store,
    credential_id: Option<&str>,
) -> Result<Vec<SubscriptionRow>, StoreError> {
    let sql = format!(
        "select {COLUMNS} from subscriptions where ($1 is null or credential_id = $1) \
         order by created_at, id"
    );
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, SubscriptionRow>(&sql).bind(credential_id).fetch_all(p).await?),
    )
}

/// What the receiver keeps of a subscription Graph may notify about.
/// `client_state` is secret: never serialize this type to a caller.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReceivableRow {
    pub id: String,
    pub credential_id: String,
    pub external_id: String,
    pub client_state: String,
}

/// Subscriptions that Graph may notify about (they have a Graph id and were not removed):
/// what the receiver checks notifications against. One page: the first `limit` by our id
/// after `after` (`""` for the first page; the last row's id for the next). Read in pages,
/// never all at once, so that loading 100,000 of them does not hold them all as rows beside
/// the map being built from them.
pub async fn receivable_page(
    store: &Store,
    after: &str,
    limit: i64,
) -> Result<Vec<ReceivableRow>, StoreError> {
    Ok(with_pool!(store, p => sqlx::query_as::<_, ReceivableRow>(
        "select id, credential_id, external_id, client_state from subscriptions \
         where id > $1 and external_id is not null and status <> 'removed' \
         order by id limit $2")
        .bind(after).bind(limit).fetch_all(p).await?))
}

/// Records a successful create or renew at Graph.
pub async fn record_granted(
    store: &Store,
    id: &str,
    external_id: &str,
    expires_at: i64,
    granted_lifetime_ms: i64,
    next_renewal_at: i64,
    renewed: bool,
) -> Result<(), StoreError> {
    let now = now_ms();
    with_pool!(store, p => { sqlx::query(
        "update subscriptions set external_id = $2, status = 'active', expires_at = $3, \
         granted_lifetime_ms = $4, next_renewal_at = $5, renewal_attempts = 0, last_error = null, \
         last_renewed_at = case when $6 then $7 else last_renewed_at end, updated_at = $7 \
         where id = $1")
        .bind(id).bind(external_id).bind(expires_at).bind(granted_lifetime_ms)
        .bind(next_renewal_at).bind(renewed).bind(now)
        .execute(p).await?; });
    Ok(())
}

/// Sets a subscription's status and last error.
pub async fn set_status(
    store: &Store,
    id: &str,
    status: SubscriptionStatus,
    last_error: Option<&str>,
) -> Result<(), StoreError> {
    with_pool!(store, p => { sqlx::query(
        "update subscriptions set status = $2, last_error = $3, updated_at = $4 where id = $1")
        .bind(id).bind(status.as_str()).bind(last_error).bind(now_ms()).execute(p).await?; });
    Ok(())
}

/// Notes that notifications arrived for these subscriptions (our ids) at `at`, in one
/// statement (one per subscription was a commit each: at a trickle of notifications over many
/// mailboxes, as many commits as the notifications' own).
pub async fn touch_notified(store: &Store, ids: &[String], at: i64) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    match store {
        Store::Postgres(p) => {
            sqlx::query(
                "update subscriptions set last_notification_at = $2 \
                 where id in (select unnest($1::text[]))",
            )
            .bind(ids)
            .bind(at)
            .execute(p)
            .await?;
        }
        Store::Sqlite(p) => {
            sqlx::query(
                "update subscriptions set last_notification_at = $2 \
                 where id in (select value from json_each($1))",
            )
            .bind(serde_json::to_string(ids).unwrap_or_default())
            .bind(at)
            .execute(p)
            .await?;
        }
    }
    Ok(())
}

/// Deletes a subscription row. True if it existed.
pub async fn delete(store: &Store, id: &str) -> Result<bool, StoreError> {
    let n = with_pool!(store, p => sqlx::query("delete from subscriptions where id = $1")
        .bind(id).execute(p).await?.rows_affected());
    Ok(n > 0)
}

/// What the renewal actor keeps of a subscription: enough to schedule it, nothing more (at
/// 100,000 subscriptions a whole row each would cost tens of megabytes).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduleRow {
    pub id: String,
    pub credential_id: String,
    #[sqlx(try_from = "String")]
    pub status: SubscriptionStatus,
    pub next_renewal_at: Option<i64>,
    /// No delta round was ever completed for it: its baseline is still to be taken.
    pub needs_baseline: bool,
}

/// Subscriptions the renewal actor schedules (all but `removed`), one page: the first `limit`
/// by id after `after` (`""` for the first page; the last row's id for the next). Keyset
/// pages on the primary key, so each is an index range and a load never holds more than one
/// page of rows (the actor's schedule is the only copy that lasts).
pub async fn schedule_page(
    store: &Store,
    after: &str,
    limit: i64,
) -> Result<Vec<ScheduleRow>, StoreError> {
    Ok(with_pool!(store, p => sqlx::query_as::<_, ScheduleRow>(
        "select s.id, s.credential_id, s.status, s.next_renewal_at, \
         not exists (select 1 from delta_state d where d.subscription_id = s.id) as needs_baseline \
         from subscriptions s where s.id > $1 and s.status <> 'removed' order by s.id limit $2")
        .bind(after).bind(limit).fetch_all(p).await?))
}

/// Takes the renewal lease of one subscription for `owner` until `until`, unless another
/// owner holds an unexpired one; answers the row when taken. On PostgreSQL a row another
/// instance is updating is skipped, not waited for (`FOR UPDATE SKIP LOCKED`), so that
/// several instances sharing the database renew each subscription once.
pub async fn claim_lease(
    store: &Store,
    id: &str,
    owner: &str,
    now: i64,
    until: i64,
) -> Result<Option<SubscriptionRow>, StoreError> {
    let lock = match store.backend() {
        super::Backend::Postgres => "for update skip locked",
        super::Backend::Sqlite => "",
    };
    let sql = format!(
        "update subscriptions set lease_owner = $2, lease_until = $3 \
         where id = (select id from subscriptions where id = $1 \
                     and (lease_owner is null or lease_owner = $2 or lease_until < $4) {lock}) \
         returning {COLUMNS}"
    );
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, SubscriptionRow>(&sql)
        .bind(id).bind(owner).bind(until).bind(now).fetch_optional(p).await?),
    )
}

/// Gives a renewal lease back.
pub async fn release_lease(store: &Store, id: &str, owner: &str) -> Result<(), StoreError> {
    with_pool!(store, p => { sqlx::query(
        "update subscriptions set lease_owner = null, lease_until = null \
         where id = $1 and lease_owner = $2")
        .bind(id).bind(owner).execute(p).await?; });
    Ok(())
}

/// Records a failed renewal: one more attempt, the status and reason, and when to try again.
pub async fn renewal_failed(
    store: &Store,
    id: &str,
    status: SubscriptionStatus,
    last_error: &str,
    next_renewal_at: i64,
) -> Result<(), StoreError> {
    with_pool!(store, p => { sqlx::query(
        "update subscriptions set status = $2, last_error = $3, next_renewal_at = $4, \
         renewal_attempts = renewal_attempts + 1, updated_at = $5 where id = $1")
        .bind(id).bind(status.as_str()).bind(last_error).bind(next_renewal_at).bind(now_ms())
        .execute(p).await?; });
    Ok(())
}

/// Gives a subscription a new clientState (before it is created again at Graph).
pub async fn set_client_state(
    store: &Store,
    id: &str,
    client_state: &str,
) -> Result<(), StoreError> {
    with_pool!(store, p => { sqlx::query(
        "update subscriptions set client_state = $2, updated_at = $3 where id = $1")
        .bind(id).bind(client_state).bind(now_ms()).execute(p).await?; });
    Ok(())
}
