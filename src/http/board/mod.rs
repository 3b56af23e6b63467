//! `/board`: the operators' pages, server-rendered HTML behind an admin token (a session
//! opened at `/board/login`, or a bearer header). It shows and does what the `/v1` operator
//! routes do, by calling the same functions, so both check, refuse and record alike (with the
//! operator's name in histories and the queues' audit):
//!
//! - `overview`: queue counts (refreshed in place by `board.js`), failed and dead jobs with a
//!   retry button, live workers, the way to everything else.
//! - `queues`: one queue: every state page by page, pause and resume, retry-all-dead, charts.
//! - `jobs`: one job with its attempts and errors; retry; discard.
//! - `reviews`: refunds waiting for a person, approved or dismissed from the page.
//! - `payments`: the payments search, a payment with its history and refunds.
//! - `charts`: per-minute charts drawn as inline SVG (the counters: `kakaopay_jobs::queue::stats`).
//! - `pages`: layout, escaping, ₩ and KST; `session`: login, logout, the same-origin check;
//!   `assets`: the stylesheet and the refresh script, served from here (CSP `'self'`).
//!
//! Every action is a POST (refused from other origins by [`refused_cross_origin`]) answered with
//! a redirect to a page that shows its outcome once (a flash). Discarding and retrying every
//! dead job ask first, on a page of their own: a confirmation that works without script.

mod assets;
mod charts;
mod jobs;
mod overview;
mod pages;
mod payments;
mod queues;
mod reviews;
mod session;

pub use session::refused_cross_origin;

use super::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

/// The board's routes; every page is a GET, every action a POST.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/board", get(overview::show))
        .route("/board/counts", get(overview::counts))
        .route("/board/workers", get(overview::workers))
        .route("/board/board.css", get(assets::style))
        .route("/board/board.js", get(assets::script))
        .route(
            "/board/login",
            get(session::login_form).post(session::login),
        )
        .route("/board/logout", post(session::logout))
        .route(
            "/board/retry/{queue}/{job}",
            post(jobs::retry_from_overview),
        )
        .route("/board/queues/{queue}", get(queues::show))
        .route("/board/queues/{queue}/pause", post(queues::pause))
        .route("/board/queues/{queue}/resume", post(queues::resume))
        .route(
            "/board/queues/{queue}/retry-dead",
            get(queues::confirm_retry_dead).post(queues::retry_dead),
        )
        .route("/board/queues/{queue}/jobs/{job}", get(jobs::show))
        .route("/board/queues/{queue}/jobs/{job}/retry", post(jobs::retry))
        .route(
            "/board/queues/{queue}/jobs/{job}/discard",
            get(jobs::confirm_discard).post(jobs::discard),
        )
        .route("/board/reviews", get(reviews::show))
        .route("/board/reviews/{refund}/approve", post(reviews::approve))
        .route("/board/reviews/{refund}/dismiss", post(reviews::dismiss))
        .route("/board/payments", get(payments::search))
        .route("/board/payments/{payment}", get(payments::show))
}

/// The operator a board request is from. Without one the request goes to the login form;
/// so it comes first in every handler, before anything is read or done.
pub struct Board(pub String);

impl FromRequestParts<AppState> for Board {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match session::operator(state, &parts.headers).await {
            Ok(Some(name)) => Ok(Board(name)),
            Ok(None) => Err(session::to_login()),
            Err(e) => Err(pages::Failure(e).into_response()),
        }
    }
}
