//! Loading the renewal schedule from the store: on (re)start, and on a reload (a credential
//! was deleted, mailboxes were taken over, notices from other instances may have been missed).
//!
//! The schedule is read in pages of [`LOAD_PAGE`] subscriptions by id, each page a message to
//! the actor, which asks for the next one once it has put the page in the schedule. Read in
//! one query, 100,000 rows were in memory at once beside the schedule built from them, and the
//! allocator kept most of that after it was freed: the service's peak at start (issue 11). A
//! page at a time, the rows in memory are one page, and the mailbox has a turn between pages.
//!
//! The credentials' tenants come with the first page, before any subscription is scheduled,
//! so that every write is counted against its tenant's window from the start. Jobs that fall
//! due while later pages are still being read start at once: each runs under its lease and
//! on what the store says (see [`super::work`]), so a partial schedule is never wrong, only
//! incomplete. What needs the whole schedule waits for the last page: removing what the store
//! no longer has ([`super::schedule::Schedule::sweep`]) and loading the pending lifecycle events (a job for a
//! subscription the schedule does not know yet would be dropped as another instance's).
//!
//! A reload while a load runs starts over; the pages of the load it replaced are dropped.

use std::sync::Arc;

use ractor::ActorRef;

use super::schedule::Job;
use super::work::Wants;
use super::{Renewal, RenewalMsg, RenewalState};
use crate::store::credentials::{self, CredentialRow};
use crate::store::status::SubscriptionStatus;
use crate::store::subscriptions::{self, ScheduleRow};
use crate::store::{now_ms, StoreError};
use crate::util::spawn_reply;

/// Subscriptions read from the store per page.
pub const LOAD_PAGE: i64 = 5_000;

/// One page of the schedule, read from the store.
pub struct Page {
    /// Which load it belongs to (a later reload replaces an unfinished load).
    load: u64,
    /// The credentials, with the first page.
    credentials: Option<Vec<CredentialRow>>,
    rows: Vec<ScheduleRow>,
}

/// The tenant whose write limit a credential's subscriptions count against.
pub(super) fn tenant_of(row: &CredentialRow) -> Arc<str> {
    row.token_source_json()
        .ok()
        .and_then(|v| v.get("tenant_id").and_then(|t| t.as_str()).map(Arc::from))
        .unwrap_or_else(|| Arc::from(row.id.as_str()))
}

impl Renewal {
    /// Starts loading the schedule from the store (over again, if a load was running).
    pub(super) fn load(&self, myself: &ActorRef<RenewalMsg>, st: &mut RenewalState) {
        st.loads += 1;
        st.loading = Some(st.loads);
        st.schedule.begin_mark();
        let load = st.loads;
        let store = self.deps.store.clone();
        spawn_reply(
            myself,
            async move {
                let credentials = Some(credentials::list(&store).await?);
                let rows = subscriptions::schedule_page(&store, "", LOAD_PAGE).await?;
                Ok(Box::new(Page {
                    load,
                    credentials,
                    rows,
                }))
            },
            RenewalMsg::Loaded,
        );
    }

    /// Puts one page in the schedule, and asks for the next or ends the load.
    pub(super) fn loaded(&self, myself: &ActorRef<RenewalMsg>, st: &mut RenewalState, page: Page) {
        if st.loading != Some(page.load) {
            return; // a reload started over
        }
        if let Some(creds) = &page.credentials {
            Self::set_tenants(st, creds);
        }
        let full = page.rows.len() as i64 >= LOAD_PAGE;
        let after = page.rows.last().map(|r| r.id.clone());
        let now = now_ms();
        for r in page.rows {
            let Some(at) = r.next_renewal_at else {
                continue; // being created by the API right now
            };
            if r.status == SubscriptionStatus::Removed {
                continue;
            }
            let cred = self.credential(myself, st, &r.credential_id);
            st.schedule.schedule(&r.id, &cred, Job::Renew, at);
            // A reload keeps the resync time a subscription has; a new one gets one anywhere
            // within the first interval, so that those loaded together do not resync together.
            if st.schedule.when(&r.id, Job::Resync).is_none() {
                if let Some(at) = self.backstop_at(now, true) {
                    st.schedule.schedule(&r.id, &cred, Job::Resync, at);
                }
            }
            if r.needs_baseline {
                // Lost to a crash, or left to an instance that held the mailbox then.
                let wants = Wants {
                    baseline: true,
                    ..Default::default()
                };
                Self::enqueue(st, Arc::from(r.id), wants);
            }
        }
        match after {
            Some(after) if full => {
                let (store, load) = (self.deps.store.clone(), page.load);
                spawn_reply(
                    myself,
                    async move {
                        let rows = subscriptions::schedule_page(&store, &after, LOAD_PAGE).await?;
                        Ok(Box::new(Page {
                            load,
                            credentials: None,
                            rows,
                        }))
                    },
                    RenewalMsg::Loaded,
                );
            }
            _ => {
                st.loading = None;
                let gone = st.schedule.sweep();
                for id in &gone {
                    st.parked.remove(id);
                    st.failing.remove(id);
                }
                tracing::info!(
                    scheduled = st.schedule.len(),
                    gone = gone.len(),
                    "renewal schedule loaded"
                );
                self.load_lifecycle(myself, String::new());
            }
        }
    }

    pub(super) fn set_tenants(st: &mut RenewalState, creds: &[CredentialRow]) {
        for c in creds {
            let key = match st.tenants.get_key_value(c.id.as_str()) {
                Some((k, _)) => k.clone(),
                None => Arc::from(c.id.as_str()),
            };
            st.tenants.insert(key, tenant_of(c));
        }
    }
}

/// The message a page comes back in.
pub type Loaded = Result<Box<Page>, StoreError>;
