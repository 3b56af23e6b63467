//! What a `work` process serves on `METRICS_BIND`: `/healthz` (the process is up), `/readyz`
//! (Redis answers) and `/metrics` (Prometheus text, queue gauges read from Redis when
//! scraped). `serve` and `api` serve the same routes with the API on `BIND`.

use crate::store::Store;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub fn router(store: Store) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(store)
}

async fn readyz(State(store): State<Store>) -> Response {
    match store.ping().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"code": "unavailable", "message": "Redis is unreachable", "field": null}})),
        )
            .into_response(),
    }
}

async fn metrics(State(store): State<Store>) -> Response {
    crate::metrics::observe_queues(&store).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
        .into_response()
}

/// The operations server, running until `stop`.
pub struct OpsServer {
    pub address: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl OpsServer {
    /// Serves on `bind`. A port already taken is not fatal for a worker (its jobs matter more
    /// than its scrape): the error is answered and the caller logs it.
    pub fn start(bind: SocketAddr, store: Store) -> std::io::Result<OpsServer> {
        let listener = crate::listener::bind(bind)?;
        let address = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let server = axum::serve(listener, router(store)).with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|s| *s).await;
        });
        let task = tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
        tracing::info!(address = %address, "metrics listening");
        Ok(OpsServer {
            address,
            stop,
            task,
        })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
