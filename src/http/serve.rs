//! The HTTP server loop: hyper, with the limits that `axum::serve` does not set.
//!
//! The public routes face the internet without a key, so a client must not be able to hold
//! the server by being slow. `axum::serve` runs hyper without a timer, which turns hyper's
//! header-read timeout off: a connection that sends half its headers stays open for ever.
//! Here every connection gets that timeout (`header_timeout`; it also closes idle kept-alive
//! connections), the number of open connections is capped (`max_connections`: one beyond is
//! closed at once, before anything is read), and graceful shutdown waits for the requests in
//! flight. The per-request limits (whole-request timeout, the public routes' concurrency cap)
//! are middleware in [`super`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The most a connection's read buffer holds (hyper's default lets it grow to about 400 KiB).
/// A body passes through it into the public routes' budget, so a held upload costs its share
/// of the budget plus at most this; headers must fit in it too (64 KiB is eight times what
/// common proxies allow).
const READ_BUFFER_MAX: usize = 64 * 1024;

/// The connection limits of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Longest wait for a request's headers (and for the next request on an idle connection).
    pub header_timeout: Duration,
}

impl ServerLimits {
    /// The limits `cfg` sets.
    pub fn of(cfg: &crate::Config) -> Self {
        Self {
            max_connections: cfg.max_connections,
            header_timeout: Duration::from_secs(cfg.header_timeout_seconds),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then waits for open requests to end.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(READ_BUFFER_MAX);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("relay365_http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that goes away or times out ends its connection: not an error of ours.
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
