//! The pool-wide writes of processing: the claims of the events the workers start and the
//! completions of those that succeeded, each one group commit for every worker
//! ([`crate::group_commit`]), on a connection of its own ([`crate::store::lane`]).
//!
//! Each statement costs PostgreSQL a round trip, a parse and a commit whatever its size: what
//! every worker has to write while one is in flight goes in the next, tens of rows under load.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::deps::Deps;
use crate::group_commit::GroupCommit;
use crate::store::events::{self, Completion, EventRow, Lease};
use crate::store::lane::{on_lane, Lane};
use crate::store::{now_ms, Store};

/// An event a worker is about to start, to be claimed first.
#[derive(Debug)]
pub struct ToClaim {
    pub id: String,
    /// Handed to the worker claimed already (by the receiver's insert) and never started:
    /// its attempt is counted, so claiming it again must not count another one.
    pub held: bool,
}

/// Claims those of `asked` that are claimable: the rows claimed. The others are done, not
/// due, or another processor's. The pool's claims that wait meanwhile share one statement
/// ([`claims_writer`]).
pub async fn claim(deps: &Deps, asked: Vec<ToClaim>) -> Result<Vec<EventRow>, String> {
    deps.writes
        .event_claims
        .submit(asked)
        .await
        .unwrap_or_else(|| Err("the claiming write failed".into()))
}

/// The pool-wide group commit of claims: each request is a worker's events, each answer its
/// rows.
pub fn claims_writer(work: Store, owner: Arc<str>, lease_ms: i64) -> ClaimsWriter {
    let lane = Arc::new(tokio::sync::Mutex::new(Lane::new(&work)));
    GroupCommit::new(move |requests: Vec<Vec<ToClaim>>| {
        let (lane, owner) = (lane.clone(), owner.clone());
        async move {
            let all = || requests.iter().flatten();
            let ids: Vec<&str> = all().map(|c| c.id.as_str()).collect();
            let held: Vec<&str> = all().filter(|c| c.held).map(|c| c.id.as_str()).collect();
            let lease = Lease {
                owner: &owner,
                now: now_ms(),
                ms: lease_ms,
            };
            let mut lane = lane.lock().await;
            match on_lane!(lane, |on| events::claim_many(on, &ids, &held, lease)) {
                Ok(rows) => {
                    let mut rows: HashMap<String, EventRow> =
                        rows.into_iter().map(|r| (r.id.clone(), r)).collect();
                    requests
                        .iter()
                        .map(|asked| Ok(asked.iter().filter_map(|c| rows.remove(&c.id)).collect()))
                        .collect()
                }
                Err(e) => {
                    let e = e.to_string();
                    requests.iter().map(|_| Err(e.clone())).collect()
                }
            }
        }
    })
}

/// See [`claims_writer`].
pub type ClaimsWriter = GroupCommit<Vec<ToClaim>, Result<Vec<EventRow>, String>>;

/// How long a completing write that starts when none is in flight waits for the completions
/// of the same moment. Under load the write in flight gathers them anyway; at a trickle (500
/// events a second) each event had a statement of its own, the costliest of the pipeline in
/// PostgreSQL (a row of each table written, a payload compressed), and sharing them cut
/// PostgreSQL's CPU per event by a quarter. Its price is the notification's latency: these
/// milliseconds, once.
pub const COMPLETIONS_LINGER: Duration = Duration::from_millis(3);

/// The pool-wide group commit of completions: each request is a worker's completions, each
/// answer, per completion, its deliveries (`None`: the lease was lost).
pub fn completions_writer(work: Store, owner: Arc<str>, lease_ms: i64) -> CompletionsWriter {
    let lane = Arc::new(tokio::sync::Mutex::new(Lane::new(&work)));
    GroupCommit::new(move |requests: Vec<Vec<Completion>>| {
        let (lane, owner) = (lane.clone(), owner.clone());
        async move {
            let all: Vec<&Completion> = requests.iter().flatten().collect();
            let send = Lease {
                owner: &owner,
                now: now_ms(),
                ms: lease_ms,
            };
            let mut lane = lane.lock().await;
            let completed = on_lane!(lane, |on| events::complete_many(
                on,
                &owner,
                &all,
                Some(send),
                send.now
            ));
            match completed {
                Ok(results) => {
                    let mut results = results.into_iter();
                    requests
                        .iter()
                        .map(|r| {
                            let lease = SendLease {
                                now: send.now,
                                ms: send.ms,
                            };
                            Ok((lease, results.by_ref().take(r.len()).collect()))
                        })
                        .collect()
                }
                Err(e) => {
                    let e = e.to_string();
                    requests.iter().map(|_| Err(e.clone())).collect()
                }
            }
        }
    })
    .lingering(COMPLETIONS_LINGER)
}

/// What [`completions_writer`] answers a request: the sender's lease the deliveries were made
/// under, and each completion's deliveries.
pub type Completed = Result<(SendLease, Vec<Option<Vec<(String, String)>>>), String>;

/// The lease deliveries were created under (the owner is this instance).
#[derive(Debug, Clone, Copy)]
pub struct SendLease {
    pub now: i64,
    pub ms: i64,
}

/// See [`completions_writer`].
pub type CompletionsWriter = GroupCommit<Vec<Completion>, Completed>;
