//! Logs (tracing) and metrics (Prometheus text).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global tracing subscriber: readable lines, or JSON lines. Call once, at start.
pub fn init_logs(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// How often histogram samples are folded into their summaries.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process's Prometheus recorder, installed on first use (metrics are process-wide, so
/// several apps in one test process share it).
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by an embedding program); then
            // this handle renders an empty page rather than failing the service.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            // Histogram samples pile up until upkeep folds them into their summaries (about
            // 80 KB a second at 10,000 requests a second if nobody scrapes /metrics).
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "no metrics upkeep thread: /metrics drains histograms");
            }
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "relay365_http_requests_total",
        "HTTP requests answered, by route and status"
    );
    metrics::describe_histogram!(
        "relay365_http_request_duration_seconds",
        "HTTP request latency, by route"
    );
    metrics::describe_histogram!(
        "relay365_receiver_commit_seconds",
        "how long each group commit of notifications took in the store"
    );
    metrics::describe_counter!(
        "relay365_actor_restarts_total",
        "actor restarts by their supervisors"
    );
    metrics::describe_counter!(
        "relay365_actor_give_ups_total",
        "actors given up on after too many restarts"
    );
}
