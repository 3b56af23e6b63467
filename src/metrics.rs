//! Prometheus metrics at `/metrics`: HTTP requests by route and status, job outcomes and
//! durations per kind, KakaoPay calls by endpoint and error code, and queue depths per state
//! (read from the queue when scraped, so they are exact). Every series carries the
//! `namespace`, so several deployments (or tests) in one process stay apart.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;

/// The process-wide recorder (installed once).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle())
        })
        .clone()
}

/// Counts and times every HTTP request by its route template (never the raw path: ids would
/// make a series per payment).
pub async fn track_http(namespace: String, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(req).await;
    let labels = [
        ("namespace", namespace),
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..3])
        .record(started.elapsed().as_secs_f64());
    response
}

/// Records one run of a job: its outcome (`done`, `retry`, `permanent`) and duration.
pub fn job_ran(namespace: &str, kind: &'static str, outcome: &'static str, started: Instant) {
    let labels = [
        ("namespace", namespace.to_string()),
        ("kind", kind.to_string()),
        ("outcome", outcome.to_string()),
    ];
    metrics::counter!("jobs_total", &labels).increment(1);
    metrics::histogram!("job_duration_seconds", &labels[..2])
        .record(started.elapsed().as_secs_f64());
}

/// Records one KakaoPay call: latency per endpoint, errors per endpoint and code.
pub fn kakaopay_call(endpoint: &'static str, started: Instant, error_code: Option<String>) {
    metrics::histogram!("kakaopay_request_duration_seconds", "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
    if let Some(code) = error_code {
        metrics::counter!("kakaopay_errors_total", "endpoint" => endpoint, "code" => code)
            .increment(1);
    }
}

/// Sets the queue-depth gauges from exact counts.
pub fn queue_depth(namespace: &str, queue: &str, counts: &kakaopay_jobs::queue::inspect::Counts) {
    for (state, value) in [
        ("pending", counts.pending),
        ("running", counts.running),
        ("scheduled", counts.scheduled),
        ("done", counts.done),
        ("failed", counts.failed),
        ("dead", counts.dead),
    ] {
        metrics::gauge!("queue_jobs", "namespace" => namespace.to_string(), "queue" => queue.to_string(), "state" => state)
            .set(value as f64);
    }
}

/// Counts a payment or refund the reconciler could not settle in a round, by why: what an
/// operator watches for (`no_credentials` wants a location reconnected).
pub fn unsettled(namespace: &str, subject: &'static str, reason: &'static str) {
    metrics::counter!(
        "reconciler_unsettled_total",
        "namespace" => namespace.to_string(),
        "subject" => subject,
        "reason" => reason
    )
    .increment(1);
}

/// Sets the process's count of Redis round trips (commands and pipelines sent).
pub fn redis_round_trips() {
    metrics::counter!("redis_round_trips_total")
        .absolute(kakaopay_jobs::queue::connection::round_trips());
}
