//! The `credentials` table: one row per mailbox connection.

use serde_json::Value;

use super::status::EventStatus;
use super::{now_ms, with_pool, Store, StoreError};

/// A stored credential. `token_source` holds secrets: never serialize this type to a caller.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CredentialRow {
    pub id: String,
    pub name: String,
    pub mailbox: Option<String>,
    pub token_kind: String,
    /// JSON of the token source, secrets included.
    pub token_source: String,
    pub status: String,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl CredentialRow {
    /// The token source as JSON.
    pub fn token_source_json(&self) -> Result<Value, StoreError> {
        serde_json::from_str(&self.token_source).map_err(|e| StoreError::Corrupt {
            what: "credentials.token_source",
            why: e.to_string(),
        })
    }
}

const COLUMNS: &str =
    "id, name, mailbox, token_kind, token_source, status, last_error, created_at, updated_at";

/// Inserts a new credential. Fails with [`StoreError::Conflict`] if the id exists.
pub async fn insert(
    store: &Store,
    id: &str,
    name: &str,
    mailbox: Option<&str>,
    token_kind: &str,
    token_source: &Value,
) -> Result<CredentialRow, StoreError> {
    let now = now_ms();
    let sql = format!(
        "insert into credentials ({COLUMNS}) values ($1, $2, $3, $4, $5, 'active', null, $6, $6) \
         returning {COLUMNS}"
    );
    let row = with_pool!(store, p => sqlx::query_as::<_, CredentialRow>(&sql)
        .bind(id).bind(name).bind(mailbox).bind(token_kind).bind(token_source.to_string()).bind(now)
        .fetch_one(p).await
        .map_err(|e| StoreError::or_conflict(e, || format!("credential {id} exists")))?);
    Ok(row)
}

/// One credential, if it exists.
pub async fn get(store: &Store, id: &str) -> Result<Option<CredentialRow>, StoreError> {
    let sql = format!("select {COLUMNS} from credentials where id = $1");
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, CredentialRow>(&sql).bind(id).fetch_optional(p).await?),
    )
}

/// Every credential, oldest first.
pub async fn list(store: &Store) -> Result<Vec<CredentialRow>, StoreError> {
    let sql = format!("select {COLUMNS} from credentials order by created_at, id");
    Ok(with_pool!(store, p => sqlx::query_as::<_, CredentialRow>(&sql).fetch_all(p).await?))
}

/// Deletes a credential (its subscriptions and targets go with it). True if it existed.
///
/// Its events still waiting to be processed are failed in the same transaction: with the
/// credential gone their mail can no longer be fetched, and nothing else would ever end them
/// (no instance holds the mailbox any more). Events already completed keep their deliveries.
pub async fn delete(store: &Store, id: &str) -> Result<bool, StoreError> {
    let now = now_ms();
    let n = with_pool!(store, p => {
        let mut tx = p.begin().await?;
        sqlx::query(
            "update events set status = $2, last_error = $3, processed_at = $4, \
             lease_owner = null, lease_until = null \
             where credential_id = $1 and status in ($5, $6)")
            .bind(id)
            .bind(EventStatus::Failed.as_str())
            .bind(CREDENTIAL_DELETED)
            .bind(now)
            .bind(EventStatus::Pending.as_str())
            .bind(EventStatus::Processing.as_str())
            .execute(&mut *tx).await?;
        let n = sqlx::query("delete from credentials where id = $1")
            .bind(id).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        n
    });
    Ok(n > 0)
}

/// The `last_error` of an event whose credential was deleted before it was processed.
pub const CREDENTIAL_DELETED: &str =
    "the credential was deleted before this event was processed; its mail can no longer be fetched";

/// Records the credential's health (`active` or `degraded`) and its last error.
pub async fn set_status(
    store: &Store,
    id: &str,
    status: &str,
    last_error: Option<&str>,
) -> Result<(), StoreError> {
    with_pool!(store, p => { sqlx::query(
        "update credentials set status = $2, last_error = $3, updated_at = $4 where id = $1")
        .bind(id).bind(status).bind(last_error).bind(now_ms()).execute(p).await?; });
    Ok(())
}

/// Replaces the stored token source (a refresh grant's new refresh token, durably).
pub async fn set_token_source(
    store: &Store,
    id: &str,
    token_source: &Value,
) -> Result<(), StoreError> {
    with_pool!(store, p => { sqlx::query(
        "update credentials set token_source = $2, updated_at = $3 where id = $1")
        .bind(id).bind(token_source.to_string()).bind(now_ms()).execute(p).await?; });
    Ok(())
}
