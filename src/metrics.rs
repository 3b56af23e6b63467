//! Prometheus metrics at `/metrics`: HTTP requests by route and status, job outcomes and
//! durations per kind, KakaoPay calls by endpoint and error code, and queue depths per state
//! (read from the queue when scraped, so they are exact). Every series carries the
//! `namespace`, so several deployments (or tests) in one process stay apart.

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// KakaoPay calls and HTTP requests: tens of milliseconds normally, seconds when KakaoPay is
/// slow, up to the 10-second call timeout.
const CALL_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0,
];

/// Job runs: one KakaoPay call or a few, plus waits for a payment's refund lock (up to a
/// minute) and for an earlier call's window.
const JOB_BUCKETS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// The process-wide recorder (installed once), with histogram buckets for every duration and
/// a `# HELP` for every series.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = builder()
                .install_recorder()
                .unwrap_or_else(|_| builder().build_recorder().handle());
            describe();
            handle
        })
        .clone()
}

fn builder() -> PrometheusBuilder {
    let full = |name: &str| Matcher::Full(name.to_string());
    PrometheusBuilder::new()
        .set_buckets_for_metric(full("http_request_duration_seconds"), &CALL_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(full("kakaopay_request_duration_seconds"), &CALL_BUCKETS)
        })
        .and_then(|b| b.set_buckets_for_metric(full("job_duration_seconds"), &JOB_BUCKETS))
        .expect("the buckets are not empty")
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("http_requests_total", "HTTP requests by route and status");
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by route"
    );
    describe_counter!(
        "jobs_total",
        "Job runs by kind and outcome (done, retry, permanent)"
    );
    describe_histogram!(
        "job_duration_seconds",
        Unit::Seconds,
        "Time a job run took, by kind"
    );
    describe_histogram!(
        "kakaopay_request_duration_seconds",
        Unit::Seconds,
        "Time a KakaoPay call took, by endpoint"
    );
    describe_counter!(
        "kakaopay_errors_total",
        "KakaoPay calls that failed, by endpoint and code"
    );
    describe_gauge!("queue_jobs", "Jobs per queue and state, exact when scraped");
    describe_gauge!(
        "queue_oldest_pending_age_seconds",
        Unit::Seconds,
        "How long the oldest job waiting for a worker has waited, per queue (0 when none waits)"
    );
    describe_gauge!("queue_paused", "1 while operators have the queue paused");
    describe_counter!(
        "reconciler_unsettled_total",
        "Payments and refunds the reconciler could not settle in a round, by why"
    );
    describe_counter!(
        "redis_round_trips_total",
        "Redis commands and pipelines sent"
    );
    describe_gauge!(
        "kakaopay_worker_build_info",
        "The running build: 1, labelled with its version"
    );
    metrics::gauge!("kakaopay_worker_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Sets the per-queue gauges of one namespace from Redis, as a scrape asks: exact depths,
/// the oldest pending job's age, whether it is paused. A queue Redis does not answer for
/// keeps its last values.
pub async fn observe_queues(store: &crate::store::Store) {
    let queues = store.queues();
    let ns = store.namespace();
    for queue in kakaopay_jobs::QUEUES {
        if let Ok(counts) = queues.counts(queue).await {
            queue_depth(ns, queue, &counts);
        }
        let labels = [("namespace", ns.to_string()), ("queue", queue.to_string())];
        if let Ok(age) = queues.oldest_pending_age(queue).await {
            metrics::gauge!("queue_oldest_pending_age_seconds", &labels)
                .set(age.map_or(0.0, |a| a.as_secs_f64()));
        }
        if let Ok(paused) = queues.is_paused(queue).await {
            metrics::gauge!("queue_paused", &labels).set(if paused { 1.0 } else { 0.0 });
        }
    }
    redis_round_trips();
}

/// One HTTP request being answered, counted and timed by its route template (never the raw
/// path: ids would make a series per payment) once its status is known.
pub struct HttpRequest {
    started: Instant,
    method: &'static str,
    route: Option<MatchedPath>,
}

impl HttpRequest {
    pub fn start(req: &Request) -> HttpRequest {
        HttpRequest {
            started: Instant::now(),
            method: method_label(req.method()),
            route: req.extensions().get::<MatchedPath>().cloned(),
        }
    }

    pub fn finish(self, namespace: &str, status: StatusCode) {
        let route = self.route.as_ref().map_or("unmatched", |p| p.as_str());
        let (count, duration) = http_series(namespace, self.method, route, status);
        count.increment(1);
        duration.record(self.started.elapsed().as_secs_f64());
    }
}

/// The request counter (by status) and the duration histogram of one route and method.
type HttpSeries = (metrics::Counter, metrics::Histogram);

/// Namespace, then route, then method and status: each level looked up by what the request
/// already holds, so that counting a request allocates nothing once its series exist.
type HttpSeriesIndex = HashMap<String, HashMap<String, HashMap<(&'static str, u16), HttpSeries>>>;

/// A method as a label: any client can send a method of its own making, and each would be a
/// series of its own.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 7] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("other", |known| known.as_str())
}

/// The entry of `key` in `map`, made the first time: looked up by `&str`, so that only a new
/// key is copied.
fn level<'a, V: Default>(map: &'a mut HashMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// The series of a request, registered with the recorder the first time they are seen.
fn http_series(
    namespace: &str,
    method: &'static str,
    route: &str,
    status: StatusCode,
) -> HttpSeries {
    static SERIES: OnceLock<Mutex<HttpSeriesIndex>> = OnceLock::new();
    let mut index = SERIES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    level(level(&mut index, namespace), route)
        .entry((method, status.as_u16()))
        .or_insert_with(|| {
            let labels = [
                ("namespace", namespace.to_string()),
                ("method", method.to_string()),
                ("route", route.to_string()),
                ("status", status.as_str().to_string()),
            ];
            (
                metrics::counter!("http_requests_total", &labels),
                metrics::histogram!("http_request_duration_seconds", &labels[..3]),
            )
        })
        .clone()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_of_a_clients_own_making_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        let made_up = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&made_up), "other");
        assert_eq!(method_label(&Method::CONNECT), "other");
    }
}
