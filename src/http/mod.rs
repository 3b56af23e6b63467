//! The HTTP API (axum on hyper 1): routes of API.md, bearer auth with two roles, the error
//! body of API.md everywhere, 64 KiB JSON bodies, a request id on every request and its logs.
//! Nothing slow runs in a handler but the synchronous KakaoPay *ready* call.

pub mod auth;
mod board;
mod body;
pub mod callbacks;
mod error;
mod ids;
mod integrations;
mod openapi;
mod openapi_bodies;
pub mod payments;
mod query;
mod queues;
pub mod refunds;
mod request_id;
mod reviews;
mod search;
mod transactions;

pub use error::ApiError;

use crate::config::HttpArgs;
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
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Base of the callback URLs KakaoPay sends members back to.
    pub public_url: String,
    pub api_tokens: Vec<Secret>,
    /// The operators, named (`ADMIN_TOKENS` entries `name=token`).
    pub operators: Vec<auth::Operator>,
    pub callback_secret: Secret,
    /// How long after ready a payment can still be approved (KakaoPay's window).
    pub ready_window: Duration,
    /// The KakaoPay client's whole-call timeout (how long a concurrent create may wait).
    pub kakaopay_timeout: Duration,
}

impl HttpConfig {
    /// The API's settings from the command line's, once it listens on `local`: the callback
    /// URLs' base is `PUBLIC_URL`, else `http://{local}`.
    pub fn new(
        args: &HttpArgs,
        local: SocketAddr,
        ready_window: Duration,
        kakaopay_timeout: Duration,
    ) -> HttpConfig {
        let public_url = args
            .public_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("http://{local}"));
        HttpConfig {
            public_url,
            api_tokens: args.api_tokens.0.clone(),
            operators: args
                .admin_tokens
                .0
                .iter()
                .map(auth::Operator::parse)
                .collect(),
            callback_secret: args.callback_secret.clone(),
            ready_window,
            kakaopay_timeout,
        }
    }
}

/// What every handler reaches: one allocation, shared, so that handing it to a request is
/// a reference count and not a copy of each part.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

pub struct Services {
    pub store: Store,
    pub producer: Producer,
    pub kakaopay: KakaoPay,
    pub config: HttpConfig,
}

impl AppState {
    pub fn new(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
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
        .route(
            "/kakaopay/callback/{payment_id}/{sig}/{action}",
            get(callbacks::callback).head(callbacks::head),
        )
        .merge(board::routes())
        .route("/healthz", get(healthz))
        .route(
            "/openapi.json",
            get(|| async { Json(<openapi::ApiDoc as utoipa::OpenApi>::openapi()) }),
        )
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        // The one layer each route is wrapped in: axum clones a route's layers for every
        // request, so whatever needs no route is put around the router, in [`app`].
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            per_route,
        ))
        .with_state(state)
}

/// The API as served: the router inside what every request passes through, outermost first
/// (a request id that is fit to log, its span, the id echoed, the body limit).
pub fn app(state: AppState) -> impl crate::listener::App {
    tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn(drop_unfit_request_id))
        .layer(SetRequestIdLayer::x_request_id(request_id::RequestIds))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(DefaultBodyLimit::max(body::MAX_BODY))
        .service(router(state))
}

fn request_span(req: &Request<axum::body::Body>) -> tracing::Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    // The path only (query strings carry pg_tokens), and without a callback's signature:
    // whoever reads logs must not be able to cancel a payment.
    let path = callbacks::loggable_path(req.uri().path());
    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %path)
}

/// What needs the route: its metrics by route template. Around the handler, in this order:
/// a board form from another site refused, the framework's own errors put in the contract's
/// shape, the page headers, and the request counted with the status it was answered.
async fn per_route(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let counted = crate::metrics::HttpRequest::start(&req);
    let mut response = match board::refused_cross_origin(&state, &req) {
        Some(refused) => refused,
        None => error::framework_errors(next.run(req).await).await,
    };
    page_headers(&mut response);
    counted.finish(state.store.namespace(), response.status());
    response
}

/// What a browser needs told about our pages (the board, the callback pages): no framing
/// (clickjacking), nothing loaded or posted anywhere but here, no URL in a Referer (a
/// callback's URL holds a capability). On every response, sniffing off.
///
/// The CSP allows exactly what the board uses: its stylesheet and its refresh script from
/// this origin (no inline style or script, so markup slipped into a page could not run or
/// restyle anything), the script's fetch of the counts, forms to here. Its charts are SVG
/// inside the page, which needs no image source.
fn page_headers(response: &mut axum::response::Response) {
    use axum::http::{header, HeaderValue};
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if html {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; \
                 form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
}

/// A client's `X-Request-Id` is kept when it is a short token; anything else (long, or with
/// characters a log reader would trip on) is replaced by our own, since it is echoed back
/// and written into every log line of the request.
async fn drop_unfit_request_id(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let fit = |v: &axum::http::HeaderValue| {
        let v = v.as_bytes();
        (1..=64).contains(&v.len())
            && v.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    };
    let headers = req.headers_mut();
    let all: Vec<_> = headers.get_all("x-request-id").iter().collect();
    if all.len() != 1 || !fit(all[0]) {
        headers.remove("x-request-id");
    }
    next.run(req).await
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
