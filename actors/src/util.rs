//! Small helpers shared by the actors.

use std::future::Future;

use ractor::{ActorRef, Message};

/// Runs `work` on a task and sends its result back to `me` as a message. This is how actors
/// do I/O without doing it inside `handle` (a slow handler stalls the whole mailbox).
pub fn spawn_reply<M, T, F>(me: &ActorRef<M>, work: F, wrap: fn(T) -> M)
where
    M: Message,
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let me = me.clone();
    tokio::spawn(async move {
        let out = work.await;
        let _ = me.send_message(wrap(out));
    });
}
