//! Group commit for writes that many callers make at once: while one write is in flight, the
//! requests that arrive wait together, and the next write carries them all.
//!
//! Why: each processor and delivery worker already gathers what it claims or finishes at one
//! turn, but a pool of 16 workers then sent 16 small statements where one would do, and on
//! PostgreSQL every statement costs a round trip, a plan and a commit whatever its size. With
//! one [`GroupCommit`] per kind of write shared by the pool, a statement serves every worker
//! that had something to write meanwhile: under load one statement carries tens of rows, and at
//! a trickle a request waits for no one (it starts a write at once when none is in flight).
//!
//! Unless the write may linger ([`GroupCommit::lingering`]): a write that starts when none is in
//! flight then waits those milliseconds for the requests of the same moment. At a trickle every
//! statement carried one row, and on PostgreSQL the statement, not the row, is what costs
//! (round trips, wake-ups, a commit); so writes whose callers can spare a few milliseconds
//! linger, and the receiver's, which Graph waits for, does not.
//!
//! Not an actor: callers await [`GroupCommit::submit`] from their own tasks (the workers' I/O
//! already runs off their mailboxes), and the write runs on a task of its own, so that a caller
//! that goes away does not take the others' write with it. A write that panics answers its
//! requests with `None` and the next request starts a new one.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::oneshot;

type Flush<Q, A> = Arc<dyn Fn(Vec<Q>) -> BoxFuture<'static, Vec<A>> + Send + Sync>;

/// One kind of write shared by many callers. Cheap to clone.
pub struct GroupCommit<Q, A> {
    shared: Arc<Mutex<Waiting<Q, A>>>,
    flush: Flush<Q, A>,
    linger: Duration,
}

impl<Q, A> Clone for GroupCommit<Q, A> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            flush: self.flush.clone(),
            linger: self.linger,
        }
    }
}

/// The requests waiting for the next write, and whether a write is in flight.
struct Waiting<Q, A> {
    requests: Vec<(Q, oneshot::Sender<A>)>,
    writing: bool,
}

impl<Q: Send + 'static, A: Send + 'static> GroupCommit<Q, A> {
    /// `flush` writes a batch of requests and answers one `A` per request, in their order (a
    /// request it answers nothing for gets `None`).
    pub fn new<F, Fut>(flush: F) -> Self
    where
        F: Fn(Vec<Q>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<A>> + Send + 'static,
    {
        Self {
            shared: Arc::new(Mutex::new(Waiting {
                requests: Vec::new(),
                writing: false,
            })),
            flush: Arc::new(move |batch| flush(batch).boxed()),
            linger: Duration::ZERO,
        }
    }

    /// Makes a write that starts when none is in flight wait `linger` first, so that the
    /// requests of that moment share it. See the module's doc for when that pays.
    pub fn lingering(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Writes `request` with whatever else waits, and answers what the write said of it; `None`
    /// if the write failed to answer (it panicked).
    pub async fn submit(&self, request: Q) -> Option<A> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut w = lock(&self.shared);
            w.requests.push((request, tx));
            !std::mem::replace(&mut w.writing, true)
        };
        if start {
            let (shared, flush) = (self.shared.clone(), self.flush.clone());
            tokio::spawn(write_all(shared, flush, self.linger));
        }
        rx.await.ok()
    }
}

/// Writes what waits, batch after batch, until nothing does.
async fn write_all<Q, A>(shared: Arc<Mutex<Waiting<Q, A>>>, flush: Flush<Q, A>, linger: Duration) {
    // Should a write panic, the requests waiting then are answered `None` (their senders are
    // dropped with the guard) and the next request starts a new writer.
    let guard = Writing(shared.clone());
    if !linger.is_zero() {
        tokio::time::sleep(linger).await;
    }
    loop {
        let batch = {
            let mut w = lock(&shared);
            if w.requests.is_empty() {
                w.writing = false;
                break;
            }
            std::mem::take(&mut w.requests)
        };
        let (requests, replies): (Vec<Q>, Vec<oneshot::Sender<A>>) = batch.into_iter().unzip();
        let answers = flush(requests).await;
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
    std::mem::forget(guard);
}

/// Clears `writing` and fails the waiting requests if the writer unwinds.
struct Writing<Q, A>(Arc<Mutex<Waiting<Q, A>>>);

impl<Q, A> Drop for Writing<Q, A> {
    fn drop(&mut self) {
        let mut w = lock(&self.0);
        w.writing = false;
        w.requests.clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic never happens while the lock is held (only pushes and takes), so a poisoned
    // lock still holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A write that records the size of each batch and answers each request doubled.
    fn doubling(sizes: Arc<Mutex<Vec<usize>>>, pause: Duration) -> GroupCommit<u32, u32> {
        GroupCommit::new(move |batch: Vec<u32>| {
            let sizes = sizes.clone();
            async move {
                sizes.lock().unwrap().push(batch.len());
                tokio::time::sleep(pause).await;
                batch.into_iter().map(|x| x * 2).collect()
            }
        })
    }

    #[tokio::test]
    async fn a_lone_request_is_written_at_once_and_answered() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let g = doubling(sizes.clone(), Duration::ZERO);
        assert_eq!(g.submit(21).await, Some(42));
        assert_eq!(*sizes.lock().unwrap(), vec![1]);
    }

    #[tokio::test]
    async fn requests_that_arrive_during_a_write_share_the_next_one() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let g = doubling(sizes.clone(), Duration::from_millis(50));
        let first = tokio::spawn({
            let g = g.clone();
            async move { g.submit(1).await }
        });
        // Wait until the first write is in flight (it recorded its batch).
        while sizes.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (2..=10)
            .map(|i| {
                let g = g.clone();
                tokio::spawn(async move { g.submit(i).await })
            })
            .collect();
        assert_eq!(first.await.unwrap(), Some(2));
        for (i, r) in (2..=10).zip(rest) {
            assert_eq!(r.await.unwrap(), Some(i * 2), "each gets its own answer");
        }
        assert_eq!(
            *sizes.lock().unwrap(),
            vec![1, 9],
            "nine requests, one write"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lingering_write_waits_for_the_requests_of_the_same_moment() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let g = doubling(sizes.clone(), Duration::ZERO).lingering(Duration::from_millis(5));
        let started = tokio::time::Instant::now();
        let first = tokio::spawn({
            let g = g.clone();
            async move { g.submit(1).await }
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
        let second = tokio::spawn({
            let g = g.clone();
            async move { g.submit(2).await }
        });
        assert_eq!(first.await.unwrap(), Some(2));
        assert_eq!(second.await.unwrap(), Some(4));
        assert_eq!(*sizes.lock().unwrap(), vec![2], "one write for both");
        assert!(started.elapsed() >= Duration::from_millis(5), "it lingered");
        // Later requests start a write of their own, which lingers again.
        assert_eq!(g.submit(3).await, Some(6));
        assert_eq!(*sizes.lock().unwrap(), vec![2, 1]);
    }

    #[tokio::test]
    async fn a_write_that_panics_answers_none_and_the_next_request_writes_again() {
        let calls = Arc::new(AtomicUsize::new(0));
        let g: GroupCommit<u32, u32> = GroupCommit::new({
            let calls = calls.clone();
            move |batch: Vec<u32>| {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    assert!(!first, "injected: the first write panics");
                    batch
                }
            }
        });
        assert_eq!(g.submit(7).await, None);
        assert_eq!(g.submit(8).await, Some(8));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_write_that_answers_too_few_leaves_the_rest_none() {
        let g: GroupCommit<u32, u32> =
            GroupCommit::new(|batch: Vec<u32>| async move { batch.into_iter().take(0).collect() });
        assert_eq!(g.submit(1).await, None);
    }
}
