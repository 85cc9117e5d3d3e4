//! Per-mailbox request discipline: at most 4 Graph requests in flight, a shared throttle
//! after a 429/503 with `Retry-After`, and backoff with jitter for transient errors.
//!
//! Outlook counts concurrency per app and mailbox (graph-contract §9), so one limiter
//! belongs to one mailbox and every request for that mailbox goes through it. A throttle
//! seen by one request holds back all of them: immediate retries count against the limit.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::GraphError;

tokio::task_local! {
    static HELD_BACK: Arc<AtomicBool>;
}

/// Whether a piece of work's Graph request is held back by its mailbox's limiter (waiting out
/// a throttle, or for one of the mailbox's 4 places), as read when the work is cut short.
///
/// Why: an event's attempt that runs out of time while its request waits out Graph's throttle
/// of the mailbox did nothing wrong and spends no attempt; one that ran out of time on
/// something of its own (a slow download, say) while other requests of the mailbox happened to
/// be throttled spends one, or a message that always overruns would be retried for ever. A
/// task-local, so that no call between the processor and this limiter has to pass it along.
#[derive(Debug, Clone, Default)]
pub struct HeldBack(Arc<AtomicBool>);

impl HeldBack {
    /// Runs `work` watched: the requests it makes (in its own task) mark when they wait here.
    pub async fn watch<F: Future>(&self, work: F) -> F::Output {
        HELD_BACK.scope(self.0.clone(), work).await
    }

    /// Whether a request of the watched work was waiting here when it last moved: still true
    /// once the work was dropped during that wait (a timeout).
    pub fn now(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Marks the watched work (if any) as held back or not.
fn held_back(held: bool) {
    let _ = HELD_BACK.try_with(|h| h.store(held, Ordering::Relaxed));
}

/// Tuning of a [`MailboxLimiter`].
#[derive(Debug, Clone)]
pub struct LimiterConfig {
    /// Requests in flight per mailbox; Outlook allows 4.
    pub max_in_flight: usize,
    /// First backoff delay for transient errors and for 429s without `Retry-After`.
    pub backoff_base: Duration,
    /// Longest backoff delay.
    pub backoff_cap: Duration,
    /// Attempts per call, the first included; then the last error is returned.
    pub max_attempts: u32,
    /// Longest `Retry-After` honoured as given; longer values are cut to this, so a bogus
    /// header cannot park a mailbox for a day.
    pub max_retry_after: Duration,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 4,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            max_attempts: 5,
            max_retry_after: Duration::from_secs(300),
        }
    }
}

/// Whether this process may send requests for a mailbox now, and how many it has in flight.
///
/// Several instances sharing a database split the mailboxes between them, so that Outlook's
/// per-mailbox limit holds across processes: only the instance holding a mailbox sends its
/// requests. Giving a mailbox up is two steps: [`Gate::close`] (no request starts after it),
/// then, once [`Gate::in_flight`] reads 0, the claim in the store is released. A request
/// counts itself in before it looks at the gate, so a zero read after closing means no
/// request runs now or will.
#[derive(Debug)]
pub struct Gate {
    open: AtomicBool,
    in_flight: AtomicUsize,
}

impl Gate {
    /// A gate, open or closed.
    pub fn new(open: bool) -> Self {
        Self {
            open: AtomicBool::new(open),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Lets requests through again.
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// Refuses requests from now on (those in flight run to their end).
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    /// Whether requests may pass.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// Requests that passed and have not ended.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn enter(&self) -> Option<Passage<'_>> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let passage = Passage(self);
        self.is_open().then_some(passage)
    }
}

/// One request through a [`Gate`]; counted out when dropped.
struct Passage<'a>(&'a Gate);

impl Drop for Passage<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The limiter of one mailbox. Cheap to clone; clones share permits and throttle state.
#[derive(Debug, Clone)]
pub struct MailboxLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: LimiterConfig,
    permits: Semaphore,
    /// Whether this instance holds the mailbox (always, when it runs alone).
    gate: Arc<Gate>,
    /// Until when every request of this mailbox waits (set by a 429/503 `Retry-After`).
    throttled_until: Mutex<Option<Instant>>,
}

impl Default for MailboxLimiter {
    fn default() -> Self {
        Self::new(LimiterConfig::default())
    }
}

impl MailboxLimiter {
    /// A limiter with the given tuning (`max_in_flight` of at least 1).
    pub fn new(config: LimiterConfig) -> Self {
        Self::gated(config, Arc::new(Gate::new(true)))
    }

    /// A limiter whose requests pass `gate` (see [`Gate`]).
    pub fn gated(config: LimiterConfig, gate: Arc<Gate>) -> Self {
        let permits = Semaphore::new(config.max_in_flight.max(1));
        Self {
            inner: Arc::new(Inner {
                config,
                permits,
                gate,
                throttled_until: Mutex::new(None),
            }),
        }
    }

    /// The tuning in use.
    pub fn config(&self) -> &LimiterConfig {
        &self.inner.config
    }

    /// Requests running now (for `/status`).
    pub fn in_flight(&self) -> usize {
        self.inner.config.max_in_flight.max(1) - self.inner.permits.available_permits()
    }

    /// Until when this mailbox is throttled, in wall-clock time (for `/status`); `None` when
    /// it is not.
    pub fn throttled_until(&self) -> Option<DateTime<Utc>> {
        let until = self.throttled_until_instant()?;
        let left = until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())?;
        chrono::Duration::from_std(left)
            .ok()
            .map(|d| Utc::now() + d)
    }

    /// How long this mailbox is still throttled; `None` when it is not.
    pub fn throttled_for(&self) -> Option<Duration> {
        self.throttled_until_instant()?
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    fn throttled_until_instant(&self) -> Option<Instant> {
        *self
            .inner
            .throttled_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Holds every request of this mailbox back until `now + wait` (never shortens a
    /// throttle already in force).
    pub fn throttle_for(&self, wait: Duration) {
        let wait = wait.min(self.inner.config.max_retry_after);
        let until = Instant::now() + wait;
        let mut slot = self
            .inner
            .throttled_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if slot.is_none_or(|cur| cur < until) {
            *slot = Some(until);
        }
    }

    /// Runs one Graph request under the mailbox's rules: waits out a throttle, takes a
    /// permit, calls `call`, and retries throttled and transient errors up to
    /// `max_attempts`. Any other error (401 included: the caller refreshes its token and
    /// calls again) is returned at once. The permit is released while waiting between
    /// attempts, so a sleeping retry does not count as in flight.
    pub async fn run<T, F, Fut>(&self, call: F) -> Result<T, GraphError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, GraphError>>,
    {
        self.run_as(false, call).await
    }

    /// Like [`MailboxLimiter::run`], for requests that are not the mailbox's (subscriptions
    /// are the app's): they do not pass the gate, so any instance may send them.
    pub async fn run_app<T, F, Fut>(&self, call: F) -> Result<T, GraphError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, GraphError>>,
    {
        self.run_as(true, call).await
    }

    /// [`MailboxLimiter::run_app`] when `app`, else [`MailboxLimiter::run`].
    pub async fn run_as<T, F, Fut>(&self, app: bool, mut call: F) -> Result<T, GraphError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, GraphError>>,
    {
        let max_attempts = self.inner.config.max_attempts.max(1);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = {
                held_back(true);
                self.wait_throttle().await;
                let permit = self.inner.permits.acquire().await;
                // A throttle may have begun while this call waited for its permit.
                self.wait_throttle().await;
                held_back(false);
                let _permit = permit.map_err(|_| GraphError::Transient {
                    status: None,
                    message: "limiter closed".into(),
                })?;
                let _passage = match (!app).then(|| self.inner.gate.enter()) {
                    Some(None) => return Err(GraphError::NotHeld),
                    passage => passage,
                };
                call().await
            };
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if !err.is_retryable() || attempt >= max_attempts {
                return Err(err);
            }
            match &err {
                GraphError::Throttled {
                    retry_after: Some(wait),
                    ..
                } => {
                    tracing::debug!(?wait, attempt, "graph throttled; honouring Retry-After");
                    self.throttle_for(*wait);
                }
                _ => {
                    let delay = self.backoff(attempt);
                    tracing::debug!(?delay, attempt, error = %err, "graph transient error; backing off");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn wait_throttle(&self) {
        while let Some(until) = self.throttled_until_instant() {
            if until <= Instant::now() {
                break;
            }
            tokio::time::sleep_until(until).await;
        }
    }

    /// Exponential backoff with "equal jitter": half the step fixed, half random, so retries
    /// of many requests spread out but never come back immediately.
    fn backoff(&self, attempt: u32) -> Duration {
        let c = &self.inner.config;
        let exp = c.backoff_base.saturating_mul(1u32 << (attempt - 1).min(20));
        let step = exp.min(c.backoff_cap);
        let half = step / 2;
        let jitter = rand::thread_rng().gen_range(0.0..=1.0);
        half + half.mul_f64(jitter)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

    fn quick() -> LimiterConfig {
        LimiterConfig {
            max_in_flight: 4,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(1),
            max_attempts: 3,
            max_retry_after: Duration::from_secs(60),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_by_every_request() {
        let limiter = MailboxLimiter::new(quick());
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let got = limiter
            .run(|| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        Err(GraphError::Throttled {
                            code: "TooManyRequests".into(),
                            retry_after: Some(Duration::from_secs(2)),
                        })
                    } else {
                        Ok(Instant::now())
                    }
                }
            })
            .await
            .unwrap();
        assert!(got - started >= Duration::from_secs(2));
        assert!(limiter.throttled_until().is_none());
        // A throttle set by one request holds back the next one too.
        limiter.throttle_for(Duration::from_secs(5));
        assert!(limiter.throttled_until().is_some());
        let before = Instant::now();
        let at = limiter
            .run(|| async { Ok::<_, GraphError>(Instant::now()) })
            .await
            .unwrap();
        assert!(at - before >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn watched_work_shows_whether_its_request_is_held_back() {
        let limiter = MailboxLimiter::new(quick());
        let call = |secs| async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            Ok::<_, GraphError>(())
        };

        // Waiting out a throttle of 5 s, then 2 s in the call itself.
        limiter.throttle_for(Duration::from_secs(5));
        let held = HeldBack::default();
        let work = tokio::spawn({
            let (limiter, held) = (limiter.clone(), held.clone());
            async move { held.watch(limiter.run(|| call(2))).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(held.now(), "waiting out the throttle");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!held.now(), "in the call, no longer held back");
        work.await.unwrap().unwrap();

        // Cut short while waiting out a throttle: it still says so.
        limiter.throttle_for(Duration::from_secs(5));
        let held = HeldBack::default();
        let cut = tokio::time::timeout(Duration::from_secs(1), held.watch(limiter.run(|| call(0))));
        assert!(cut.await.is_err());
        assert!(held.now(), "dropped while held back");

        // Cut short in a slow call of its own while another request of the mailbox met a
        // throttle: not held back.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let held = HeldBack::default();
        let slow = held.watch(limiter.run(|| call(10)));
        let other = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            limiter.throttle_for(Duration::from_secs(30));
            std::future::pending::<()>().await
        };
        let cut = tokio::time::timeout(Duration::from_secs(2), async { tokio::join!(slow, other) });
        assert!(cut.await.is_err());
        assert!(limiter.throttled_for().is_some());
        assert!(!held.now(), "its own call was slow");
    }

    #[tokio::test(start_paused = true)]
    async fn non_retryable_errors_return_at_once_and_attempts_are_capped() {
        let limiter = MailboxLimiter::new(quick());
        let calls = AtomicU32::new(0);
        let err = limiter
            .run(|| {
                calls.fetch_add(1, Ordering::SeqCst);
                async {
                    Err::<(), _>(GraphError::Unauthorized {
                        code: "InvalidAuthenticationToken".into(),
                        message: String::new(),
                    })
                }
            })
            .await
            .unwrap_err();
        assert!(matches!(err, GraphError::Unauthorized { .. }));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let err = limiter
            .run(|| {
                calls.fetch_add(1, Ordering::SeqCst);
                async {
                    Err::<(), _>(GraphError::Transient {
                        status: Some(503),
                        message: "down".into(),
                    })
                }
            })
            .await
            .unwrap_err();
        assert!(matches!(err, GraphError::Transient { .. }));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_never_exceeds_the_permits() {
        let limiter = MailboxLimiter::new(quick());
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (limiter, now, max) = (limiter.clone(), now.clone(), max.clone());
                tokio::spawn(async move {
                    limiter
                        .run(|| {
                            let (now, max) = (now.clone(), max.clone());
                            async move {
                                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                                max.fetch_max(n, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                now.fetch_sub(1, Ordering::SeqCst);
                                Ok::<_, GraphError>(())
                            }
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 4);
        assert_eq!(limiter.in_flight(), 0);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let limiter = MailboxLimiter::new(quick());
        for attempt in 1..10 {
            let d = limiter.backoff(attempt);
            let step =
                (Duration::from_millis(100) * (1 << (attempt - 1))).min(Duration::from_secs(1));
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?}");
        }
    }
}
