//! Lifecycle events in the `events` table (kind `lifecycle`): the receiver stores them like
//! any notification; the renewal actor, not the processors, acts on them and marks them
//! done. Until it has, they stay `pending` and are found again after a restart.

use super::{with_pool, Store, StoreError};

/// A lifecycle event waiting to be acted on.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingLifecycle {
    pub id: String,
    /// Our subscription id.
    pub subscription_id: Option<String>,
    /// `reauthorizationRequired`, `subscriptionRemoved`, `missed`, or another Graph may add.
    pub change_type: String,
}

/// Lifecycle events not yet acted on, oldest first, from after the id `after` (a page's last).
pub async fn pending(
    store: &Store,
    after: &str,
    limit: i64,
) -> Result<Vec<PendingLifecycle>, StoreError> {
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, PendingLifecycle>(
        "select id, subscription_id, change_type from events \
         where kind = 'lifecycle' and status = 'pending' and id > $1 order by id limit $2")
        .bind(after).bind(limit).fetch_all(p).await?),
    )
}

/// Which of these lifecycle events are still pending (another instance may have acted).
pub async fn still_pending(store: &Store, ids: &[String]) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let row: Option<(String,)> = with_pool!(store, p => sqlx::query_as(
            "select id from events where id = $1 and kind = 'lifecycle' and status = 'pending'")
            .bind(id).fetch_optional(p).await?);
        out.extend(row.map(|r| r.0));
    }
    Ok(out)
}

/// Marks lifecycle events done (`completed`), with what was done.
pub async fn done(store: &Store, ids: &[String], note: &str, now: i64) -> Result<(), StoreError> {
    for id in ids {
        with_pool!(store, p => { sqlx::query(
            "update events set status = 'completed', payload = $2, processed_at = $3, \
             last_error = null where id = $1 and kind = 'lifecycle' and status = 'pending'")
            .bind(id).bind(note).bind(now).execute(p).await?; });
    }
    Ok(())
}
