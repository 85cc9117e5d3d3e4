//! The `delta_state` table: per subscription and folder, the delta link of the last
//! completed round and when it was taken. A resync reads changes since that link; the time
//! bounds a full resync (after Graph forgot the link) to mail received since.

use super::{with_pool, Store, StoreError};

/// One folder's delta state.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeltaRow {
    pub subscription_id: String,
    pub folder: String,
    /// The whole `@odata.deltaLink` URL, as Graph gave it.
    pub delta_link: Option<String>,
    /// When the round that gave this link started (Unix ms).
    pub last_sync_at: Option<i64>,
}

/// The delta state of one folder of a subscription.
pub async fn get(
    store: &Store,
    subscription_id: &str,
    folder: &str,
) -> Result<Option<DeltaRow>, StoreError> {
    Ok(with_pool!(store, p => sqlx::query_as::<_, DeltaRow>(
        "select subscription_id, folder, delta_link, last_sync_at from delta_state \
         where subscription_id = $1 and folder = $2")
        .bind(subscription_id).bind(folder).fetch_optional(p).await?))
}

/// Stores the link and time of a completed round.
pub async fn save(
    store: &Store,
    subscription_id: &str,
    folder: &str,
    delta_link: &str,
    last_sync_at: i64,
) -> Result<(), StoreError> {
    with_pool!(store, p => { sqlx::query(
        "insert into delta_state (subscription_id, folder, delta_link, last_sync_at) \
         values ($1, $2, $3, $4) on conflict (subscription_id, folder) \
         do update set delta_link = excluded.delta_link, last_sync_at = excluded.last_sync_at")
        .bind(subscription_id).bind(folder).bind(delta_link).bind(last_sync_at)
        .execute(p).await?; });
    Ok(())
}
