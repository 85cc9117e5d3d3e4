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
/// spawns goes through here, so that no panic is lost in a task nobody awaits.
pub fn spawn_guarded<M, F>(me: &ActorRef<M>, work: F)
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
    });
}

/// The message a panic was raised with, when it is text.
pub fn panic_text(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
