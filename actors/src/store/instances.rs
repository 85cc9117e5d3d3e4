//! The `instances` and `credential_owners` tables: which `serve` processes share this
//! database, which are alive, and which of them holds each credential's mailbox.
//!
//! Everything here is a plain row with a time in it, so that PostgreSQL alone coordinates the
//! instances: an instance is alive while its `heartbeat_at` is recent, and it holds a mailbox
//! while its `credential_owners.until` lies ahead. A dead instance's claims are not trusted to
//! run out by themselves: [`take_over`] gives its leases back to the pool at once.

use super::{with_pool, Store, StoreError};

/// One instance, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InstanceRow {
    pub id: String,
    pub address: Option<String>,
    pub version: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub stopped_at: Option<i64>,
}

/// Who holds one credential's mailbox, if anyone.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OwnerRow {
    pub credential_id: String,
    pub instance: Option<String>,
    pub until: Option<i64>,
}

/// Records that instance `me` is alive at `now` (inserting it on its first beat).
pub async fn heartbeat(store: &Store, me: &InstanceRow, now: i64) -> Result<(), StoreError> {
    with_pool!(store, p => { sqlx::query(
        "insert into instances (id, address, version, started_at, heartbeat_at, stopped_at) \
         values ($1, $2, $3, $4, $5, null) \
         on conflict (id) do update set heartbeat_at = excluded.heartbeat_at, \
         address = excluded.address, stopped_at = null")
        .bind(&me.id).bind(&me.address).bind(&me.version).bind(me.started_at).bind(now)
        .execute(p).await?; });
    Ok(())
}

/// Instances seen since `since` (alive or not; the caller tells them apart), oldest first.
pub async fn seen_since(store: &Store, since: i64) -> Result<Vec<InstanceRow>, StoreError> {
    Ok(with_pool!(store, p => sqlx::query_as::<_, InstanceRow>(
        "select id, address, version, started_at, heartbeat_at, stopped_at from instances \
         where heartbeat_at >= $1 or stopped_at >= $1 order by started_at, id")
        .bind(since).fetch_all(p).await?))
}

/// Instances that stopped heartbeating before `before` without saying they stopped.
pub async fn silent(store: &Store, before: i64) -> Result<Vec<String>, StoreError> {
    Ok(with_pool!(store, p => sqlx::query_as::<_, (String,)>(
        "select id from instances where heartbeat_at < $1 and stopped_at is null")
        .bind(before).fetch_all(p).await?)
    .into_iter()
    .map(|(id,)| id)
    .collect())
}

/// Gives everything `instance` held back to the pool at `now`: its event, delivery and
/// renewal leases run out at once and its mailboxes are free. Marks it stopped. Used by the
/// instance itself on a clean stop, and by the others when it went silent. Safe to repeat:
/// an instance that was only slow finds its leases gone and its outcomes refused (every
/// outcome is written only under the lease it was claimed with).
pub async fn take_over(store: &Store, instance: &str, now: i64) -> Result<(), StoreError> {
    with_pool!(store, p => {
        let mut tx = p.begin().await?;
        sqlx::query("update events set lease_until = 0 \
                     where status = 'processing' and lease_owner = $1")
            .bind(instance).execute(&mut *tx).await?;
        sqlx::query("update deliveries set lease_until = 0 \
                     where status = 'pending' and lease_owner = $1")
            .bind(instance).execute(&mut *tx).await?;
        sqlx::query("update subscriptions set lease_owner = null, lease_until = null \
                     where lease_owner = $1")
            .bind(instance).execute(&mut *tx).await?;
        sqlx::query("delete from credential_owners where instance = $1")
            .bind(instance).execute(&mut *tx).await?;
        sqlx::query("update instances set stopped_at = $2 where id = $1 and stopped_at is null")
            .bind(instance).bind(now).execute(&mut *tx).await?;
        tx.commit().await?;
    });
    Ok(())
}

/// Forgets instances that stopped before `before` (kept a while for `/status`).
pub async fn prune(store: &Store, before: i64) -> Result<u64, StoreError> {
    Ok(with_pool!(store, p => sqlx::query(
        "delete from instances where stopped_at is not null and stopped_at < $1")
        .bind(before).execute(p).await?.rows_affected()))
}

/// Every credential with its holder (none when no instance holds it).
pub async fn owners(store: &Store) -> Result<Vec<OwnerRow>, StoreError> {
    Ok(with_pool!(store, p => sqlx::query_as::<_, OwnerRow>(
        "select c.id as credential_id, o.instance, o.until from credentials c \
         left join credential_owners o on o.credential_id = c.id")
        .fetch_all(p).await?))
}

/// Extends every mailbox `me` holds to `until`; answers the credentials it holds.
pub async fn extend(store: &Store, me: &str, until: i64) -> Result<Vec<String>, StoreError> {
    Ok(with_pool!(store, p => sqlx::query_as::<_, (String,)>(
        "update credential_owners set until = $2 where instance = $1 returning credential_id")
        .bind(me).bind(until).fetch_all(p).await?)
    .into_iter()
    .map(|(id,)| id)
    .collect())
}

/// Takes the mailboxes of `credential_ids` for `me` until `until`, those that no other
/// instance holds past `now`; answers the ones `me` holds afterwards. One statement for all
/// (the cluster protocol runs on PostgreSQL only).
pub async fn acquire(
    store: &Store,
    credential_ids: &[String],
    me: &str,
    now: i64,
    until: i64,
) -> Result<Vec<String>, StoreError> {
    let Store::Postgres(p) = store else {
        return Ok(Vec::new());
    };
    Ok(sqlx::query_as::<_, (String,)>(
        "insert into credential_owners (credential_id, instance, until) \
         select id, $2, $3 from credentials where id = any($1) \
         on conflict (credential_id) do update set instance = excluded.instance, \
         until = excluded.until \
         where credential_owners.until < $4 or credential_owners.instance = excluded.instance \
         returning credential_id",
    )
    .bind(credential_ids)
    .bind(me)
    .bind(until)
    .bind(now)
    .fetch_all(p)
    .await?
    .into_iter()
    .map(|(id,)| id)
    .collect())
}

/// Gives the mailboxes of `credential_ids` up, those `me` holds.
pub async fn release(store: &Store, credential_ids: &[String], me: &str) -> Result<(), StoreError> {
    let Store::Postgres(p) = store else {
        return Ok(());
    };
    sqlx::query("delete from credential_owners where credential_id = any($1) and instance = $2")
        .bind(credential_ids)
        .bind(me)
        .execute(p)
        .await?;
    Ok(())
}
