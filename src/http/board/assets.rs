//! The board's stylesheet and refresh script, served by the service itself: the pages load
//! nothing from anywhere else, and the CSP allows styles and scripts from `'self'` only (no
//! inline script, no inline style).

use axum::http::header;
use axum::response::{IntoResponse, Response};

const STYLE: &str = include_str!("board.css");
const SCRIPT: &str = include_str!("board.js");

pub async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        STYLE,
    )
        .into_response()
}

pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        SCRIPT,
    )
        .into_response()
}
