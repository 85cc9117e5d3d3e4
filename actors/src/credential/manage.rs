//! Creating and deleting credentials: the workflow behind the credentials API.
//!
//! It lives here rather than in the HTTP handler (as [`crate::subscription`] does for
//! subscriptions) because it spans the store, Graph and the tree: a new credential is a row
//! and a started actor; deleting one removes its subscriptions at Graph (best effort), its
//! rows and its actor, and tells the receiver. The handler only parses, calls and maps.

use crate::cluster;
use crate::deps::Deps;
use crate::store::credentials::{self, CredentialRow};
use crate::store::StoreError;
use crate::subscription;
use crate::token::TokenSource;
use crate::tree::{self, TreeError};

/// A credential as the caller gives it (parsed and validated by the caller).
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub id: String,
    pub name: String,
    pub mailbox: Option<String>,
    pub source: TokenSource,
}

/// Why a credential could not be created or deleted.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// [`StoreError::Conflict`] when the id exists.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// Stores a new credential and starts its actor.
pub async fn create(deps: &Deps, new: NewCredential) -> Result<CredentialRow, ManageError> {
    let NewCredential {
        id,
        name,
        mailbox,
        source,
    } = new;
    if matches!(source, TokenSource::AuthService) && deps.settings.auth_service_url.is_none() {
        return Err(ManageError::BadRequest(
            "token_source auth_service needs AUTH_SERVICE_URL to be configured".into(),
        ));
    }
    let stored = serde_json::to_value(&source).map_err(|e| StoreError::Corrupt {
        what: "credentials.token_source",
        why: e.to_string(),
    })?;
    if credentials::get(&deps.store, &id).await?.is_some() {
        return Err(StoreError::Conflict(format!("credential {id} exists")).into());
    }
    let row = credentials::insert(
        &deps.store,
        &id,
        &name,
        mailbox.as_deref(),
        source.kind(),
        &stored,
    )
    .await?;
    tree::start_credential(deps, row.clone()).await?;
    cluster::rebalance(deps);
    cluster::changes::credential_changed(deps, &id);
    tracing::info!(credential = %id, kind = source.kind(), "credential created");
    Ok(row)
}

/// Deletes the credential: its subscriptions at Graph (best effort), its rows, its actor.
pub async fn delete(deps: &Deps, id: &str) -> Result<(), ManageError> {
    credentials::get(&deps.store, id)
        .await?
        .ok_or_else(|| ManageError::NotFound(format!("no credential {id}")))?;
    let failed = subscription::delete_all_at_graph(deps, id).await;
    if failed > 0 {
        tracing::warn!(credential = %id, failed, "some subscriptions could not be deleted at Graph; they expire on their own");
    }
    credentials::delete(&deps.store, id).await?;
    if let Err(e) = tree::stop_credential(deps, id).await {
        tracing::warn!(credential = %id, error = %e, "stopping the credential actor");
    }
    tree::subscriptions_changed(deps);
    cluster::changes::credential_changed(deps, id);
    tracing::info!(credential = %id, "credential deleted");
    Ok(())
}
