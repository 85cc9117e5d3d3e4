//! The delivery targets, as processing reads them: every completed event is matched against
//! every target, so the list is kept in memory rather than read for each event. The HTTP
//! handlers that create or delete a target drop it at once; a change made through another
//! instance sharing the database is seen within [`TTL`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::targets::{self, TargetRow};
use crate::store::{Store, StoreError};

/// How long a read of the targets is used before it is read again.
pub const TTL: Duration = Duration::from_secs(1);

/// The targets, read at most once per [`TTL`].
#[derive(Default)]
pub struct TargetCache {
    slot: Mutex<Option<(Instant, Arc<Vec<TargetRow>>)>>,
}

impl TargetCache {
    /// Every target (from memory when read less than [`TTL`] ago).
    pub async fn get(&self, store: &Store) -> Result<Arc<Vec<TargetRow>>, StoreError> {
        if let Some((at, rows)) = &*self.slot.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < TTL {
                return Ok(rows.clone());
            }
        }
        let read_at = Instant::now();
        let rows = Arc::new(targets::list(store).await?);
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some((read_at, rows.clone()));
        Ok(rows)
    }

    /// Forgets the list: the next [`TargetCache::get`] reads the store.
    pub fn invalidate(&self) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
