//! The `targets` table: where completed events are delivered (n8n webhooks, any HTTP
//! endpoint), with the signing secret and the headers each delivery carries.

use std::collections::BTreeMap;

use super::{now_ms, with_pool, Store, StoreError};

/// A target as stored. `secret` and the header values are secrets: the API shows them only
/// in the answer that created the target.
#[derive(Clone, sqlx::FromRow)]
pub struct TargetRow {
    pub id: String,
    pub url: String,
    /// `whsec_…`.
    pub secret: String,
    /// A JSON object of header names to values.
    pub headers: String,
    pub credential_id: Option<String>,
    /// A JSON array of event types; `None` means every type.
    pub event_types: Option<String>,
    pub created_at: i64,
}

impl std::fmt::Debug for TargetRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetRow")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("secret", &"***")
            .field("credential_id", &self.credential_id)
            .finish_non_exhaustive()
    }
}

impl TargetRow {
    /// The headers sent on every delivery.
    pub fn header_map(&self) -> Result<BTreeMap<String, String>, StoreError> {
        serde_json::from_str(&self.headers).map_err(|e| StoreError::Corrupt {
            what: "targets.headers",
            why: e.to_string(),
        })
    }

    /// The event types this target takes; `None` means all.
    pub fn event_type_list(&self) -> Result<Option<Vec<String>>, StoreError> {
        self.event_types
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| StoreError::Corrupt {
                what: "targets.event_types",
                why: e.to_string(),
            })
    }

    /// True when an event of `credential_id` and `event_type` goes to this target.
    pub fn matches(&self, credential_id: Option<&str>, event_type: &str) -> bool {
        let credential_ok = self
            .credential_id
            .as_deref()
            .is_none_or(|c| Some(c) == credential_id);
        let type_ok = match self.event_type_list() {
            Ok(None) => true,
            Ok(Some(types)) => types.iter().any(|t| t == event_type),
            // A row that cannot be read takes nothing rather than everything.
            Err(_) => false,
        };
        credential_ok && type_ok
    }
}

const COLUMNS: &str = "id, url, secret, headers, credential_id, event_types, created_at";

/// Stores a new target.
pub async fn insert(store: &Store, t: &TargetRow) -> Result<(), StoreError> {
    with_pool!(store, p => { sqlx::query(
        "insert into targets (id, url, secret, headers, credential_id, event_types, created_at) \
         values ($1, $2, $3, $4, $5, $6, $7)")
        .bind(&t.id).bind(&t.url).bind(&t.secret).bind(&t.headers).bind(&t.credential_id)
        .bind(&t.event_types).bind(t.created_at).execute(p).await?; });
    Ok(())
}

/// Creates the target of `id` or, when it exists, points it at `url` (keeping its secret
/// unless one is given). Used for the default target of `RELAY365_N8N_WEBHOOK_URL`, so that a
/// restart does not add a second one. Returns true when it was created.
pub async fn upsert_default(
    store: &Store,
    id: &str,
    url: &str,
    secret: &str,
    replace_secret: bool,
) -> Result<bool, StoreError> {
    let existed = get(store, id).await?.is_some();
    with_pool!(store, p => { sqlx::query(
        "insert into targets (id, url, secret, headers, created_at) values ($1, $2, $3, '{}', $4) \
         on conflict (id) do update set url = excluded.url, \
         secret = case when $5 then excluded.secret else targets.secret end")
        .bind(id).bind(url).bind(secret).bind(now_ms()).bind(replace_secret)
        .execute(p).await?; });
    Ok(!existed)
}

/// One target.
pub async fn get(store: &Store, id: &str) -> Result<Option<TargetRow>, StoreError> {
    let sql = format!("select {COLUMNS} from targets where id = $1");
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, TargetRow>(&sql).bind(id).fetch_optional(p).await?),
    )
}

/// Every target, oldest first.
pub async fn list(store: &Store) -> Result<Vec<TargetRow>, StoreError> {
    let sql = format!("select {COLUMNS} from targets order by created_at, id");
    Ok(with_pool!(store, p => sqlx::query_as::<_, TargetRow>(&sql).fetch_all(p).await?))
}

/// Deletes a target (its deliveries go with it). False when there was none.
pub async fn delete(store: &Store, id: &str) -> Result<bool, StoreError> {
    let n = with_pool!(store, p => {
        let mut tx = p.begin().await?;
        sqlx::query("delete from deliveries where target_id = $1").bind(id).execute(&mut *tx).await?;
        let n = sqlx::query("delete from targets where id = $1").bind(id).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        n
    });
    Ok(n > 0)
}

/// The id of the target `RELAY365_N8N_WEBHOOK_URL` creates: fixed, so that there is one.
pub const DEFAULT_TARGET_ID: &str = "5e1a7365-0000-4000-8000-000000000001";

/// The prefix of a Standard Webhooks signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Checks a signing secret given by a person: `whsec_` + base64 of 24 to 64 bytes.
pub fn check_secret(secret: &str) -> Result<(), String> {
    use base64::Engine as _;
    let Some(b64) = secret.strip_prefix(SECRET_PREFIX) else {
        return Err("must start with whsec_".into());
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "must be whsec_ followed by standard base64".to_string())?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!(
            "must hold 24 to 64 bytes of key, this one holds {}",
            key.len()
        ));
    }
    Ok(())
}

/// A new random signing secret: `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> String {
    use base64::Engine as _;
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_checked_and_generated_ones_pass() {
        assert!(check_secret(&generate_secret()).is_ok());
        assert!(check_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(check_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(check_secret("whsec_c2hvcnQ=").is_err()); // 5 bytes
        assert!(check_secret("whsec_not base64!").is_err());
    }
}
