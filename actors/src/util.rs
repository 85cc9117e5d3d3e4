//! Small helpers shared by the actors.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use ractor::{ActorRef, Message};

use crate::supervision::Crash;

/// Runs `work` on a task and sends its result back to `me` as a message. This is how actors
/// do I/O without doing it inside `handle` (a slow handler stalls the whole mailbox).
///
/// If `work` panics, `me` fails instead (see [`spawn_guarded`]): an actor waiting for an
/// answer that will never come would otherwise look healthy for ever.
pub fn spawn_reply<M, T, F>(me: &ActorRef<M>, work: F, wrap: fn(T) -> M)
where
    M: Message + From<Crash>,
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let to = me.clone();
    spawn_guarded(me, async move {
        let out = work.await;
        let _ = to.send_message(wrap(out));
    });
}

/// Runs `work` on a task of `me`'s. A panic in it becomes `me`'s failure, as if `handle` had
/// returned an error: its supervisor restarts it and `/status` shows why. Every task an actor
/// spawns goes through here, so that no panic is lost in a task nobody awaits. A task that
/// does not end by itself when `me` stops is to be aborted with the handle.
pub fn spawn_guarded<M, F>(me: &ActorRef<M>, work: F) -> tokio::task::JoinHandle<()>
where
    M: Message + From<Crash>,
    F: Future<Output = ()> + Send + 'static,
{
    let me = me.clone();
    tokio::spawn(async move {
        if let Err(panic) = AssertUnwindSafe(work).catch_unwind().await {
            let why = format!("a task of this actor panicked: {}", panic_text(&*panic));
            tracing::error!(actor = ?me.get_name(), "{why}");
            let _ = me.send_message(M::from(Crash(why)));
        }
    })
}

/// The message a panic was raised with, when it is text.
pub fn panic_text(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The longest wait between two attempts of anything (SPEC §2: capped at 1 h).
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(3600);

/// How long to wait before attempt `attempt + 1` after `attempt` failed (1-based): `base`
/// doubled per attempt, capped at [`MAX_BACKOFF`], then jittered into its upper half, so that
/// items that failed together do not all come back in the same instant.
pub fn backoff(base: std::time::Duration, attempt: u32) -> std::time::Duration {
    use rand::Rng;
    let exp = attempt.saturating_sub(1).min(30);
    let full = base
        .checked_mul(1u32 << exp)
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF);
    let half = full / 2;
    half + full
        .saturating_sub(half)
        .mul_f64(rand::thread_rng().gen::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_stays_in_its_upper_half_and_is_capped() {
        let base = Duration::from_millis(100);
        for attempt in 1..=5u32 {
            let full = base * (1 << (attempt - 1));
            for _ in 0..50 {
                let d = backoff(base, attempt);
                assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
            }
        }
        assert!(backoff(Duration::from_secs(1), 40) <= MAX_BACKOFF);
        assert!(backoff(Duration::from_secs(1), 40) >= MAX_BACKOFF / 2);
    }
}
