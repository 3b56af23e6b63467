//! The HTTP API (axum on hyper 1): routes of API.md, bearer auth with two roles, the error
//! body of API.md everywhere, 64 KiB JSON bodies, a request id on every request and its logs.
//! Nothing slow runs in a handler but the synchronous KakaoPay *ready* call.

pub mod auth;
mod board;
mod body;
pub mod callbacks;
mod error;
mod integrations;
mod openapi;
pub mod payments;
mod query;
mod queues;
pub mod refunds;
mod reviews;
mod search;
mod transactions;

pub use error::ApiError;

use crate::kakaopay::KakaoPay;
use crate::secret::Secret;
use crate::store::Store;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use kakaopay_jobs::queue::Producer;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Base of the callback URLs KakaoPay sends members back to.
    pub public_url: String,
    pub api_tokens: Vec<Secret>,
    /// The operators' bare tokens (what the board's session checks compare).
    pub admin_tokens: Vec<Secret>,
    /// The operators, named (`ADMIN_TOKENS` entries `name=token`).
    pub operators: Vec<auth::Operator>,
    pub callback_secret: Secret,
    /// How long after ready a payment can still be approved (KakaoPay's window).
    pub ready_window: Duration,
    /// The KakaoPay client's whole-call timeout (how long a concurrent create may wait).
    pub kakaopay_timeout: Duration,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub producer: Producer,
    pub kakaopay: KakaoPay,
    pub config: Arc<HttpConfig>,
}

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route(
            "/v1/locations/{location_id}/kakaopay",
            put(integrations::put)
                .patch(integrations::patch)
                .get(integrations::get)
                .delete(integrations::delete),
        )
        .route("/v1/payments", post(payments::create).get(search::search))
        .route("/v1/payments/{payment_id}", get(payments::get))
        .route("/v1/payments/{payment_id}/refunds", post(refunds::create))
        .route("/v1/refunds", get(reviews::list))
        .route("/v1/refunds/{refund_id}", get(refunds::get))
        .route("/v1/refunds/{refund_id}/approve", post(reviews::approve))
        .route("/v1/refunds/{refund_id}/dismiss", post(reviews::dismiss))
        .route("/v1/transactions", get(transactions::report))
        .route("/v1/queues", get(queues::list))
        .route("/v1/queues/{name}/jobs", get(queues::jobs))
        .route("/v1/queues/{name}/jobs/{job_id}/retry", post(queues::retry))
        .route(
            "/v1/queues/{name}/jobs/{job_id}",
            get(queues::job).delete(queues::discard),
        )
        .route("/v1/queues/{name}/retry-dead", post(queues::retry_dead))
        .route("/v1/queues/{name}/pause", post(queues::pause))
        .route("/v1/queues/{name}/resume", post(queues::resume))
        .route("/v1/workers", get(queues::workers))
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        });
    Router::new()
        .merge(v1)
        .route("/kakaopay/callback/{payment_id}/{sig}/{action}", get(callbacks::callback))
        .route("/board", get(board::show))
        .route("/board/login", post(board::login))
        .route("/board/retry/{queue}/{job}", post(board::retry))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(|| async { Json(<openapi::ApiDoc as utoipa::OpenApi>::openapi()) }))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(body::MAX_BODY))
        .layer(axum::middleware::from_fn({
            let namespace = state.store.namespace().to_string();
            move |req, next| crate::metrics::track_http(namespace.clone(), req, next)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string();
                // The path only: query strings carry pg_tokens.
                tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is up")))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Prometheus text; queue depths are read from the queue now, so they are exact.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    crate::metrics::observe_queues(&state.store).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::handle().render(),
    )
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Redis answers"), (status = 503, description = "Redis is unreachable")))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))).into_response(),
        Err(_) => ApiError::unavailable("Redis is unreachable").into_response(),
    }
}
