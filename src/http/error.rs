//! The error body of API.md for every failure: `{"error": {"code", "message", "field"}}`.

use crate::kakaopay::{ErrorClass, KakaoPayError};
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kakaopay_jobs::queue::QueueError;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// KakaoPay's error code, for `kakaopay_error`.
    pub kakaopay_code: Option<i64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            kakaopay_code: None,
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.into()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        // Not a 500: API.md allows none. A broken record or refused Redis command leaves the
        // request without effect, which is what 503 says.
        ApiError::unavailable(message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message, "field": self.field});
        if let Some(code) = self.kakaopay_code {
            error["kakaopay_code"] = json!(code);
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(e) => {
                // Unreachable, or between roles during a failover: the operator sees it.
                tracing::warn!(error = %e, "Redis unavailable; answered 503");
                ApiError::unavailable("Redis is unreachable; nothing was done, try again")
            }
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::internal("the store refused the operation; nothing was done")
            }
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "Redis unavailable; answered 503");
            ApiError::unavailable("Redis is unreachable; nothing was done, try again")
        } else {
            tracing::error!(error = %e, "queue failure");
            ApiError::internal("the queue refused the operation")
        }
    }
}

impl From<KakaoPayError> for ApiError {
    /// A synchronous KakaoPay call (ready) that failed.
    fn from(e: KakaoPayError) -> Self {
        match (e.class(), e.code()) {
            (ErrorClass::Final, code) => ApiError {
                kakaopay_code: code,
                ..ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "kakaopay_error",
                    format!("KakaoPay refused: {e}"),
                )
            },
            _ => ApiError::unavailable(format!("KakaoPay is unreachable or did not answer: {e}")),
        }
    }
}

/// The contract's error body for the responses the framework writes itself (a path that is
/// not UTF-8, a method a route does not take, a rejected extractor): those come as
/// text/plain, and a client of API.md must be able to read every error the same way. HTML
/// pages (the board, the callback pages) and our own JSON pass unchanged.
pub async fn framework_errors(response: Response) -> Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    // The framework's sentence, bounded: it is all the client has to go on.
    let said = axum::body::to_bytes(body, 1024)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|s| !s.is_empty());
    let mut rewritten = framework_error(status, said).into_response();
    // What else the response said (`Allow` on a 405, `Retry-After`) still holds.
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

fn framework_error(status: StatusCode, said: Option<String>) -> ApiError {
    let message = said.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_string()
    });
    let code = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            // axum names the parameter at fault in backticks ("Invalid UTF-8 in `payment_id`").
            let named = message.split('`').nth(1).filter(|n| !n.is_empty());
            let field = match named {
                Some(name) => name.to_string(),
                None if message.contains("query string") => "query".to_string(),
                None => "path".to_string(),
            };
            return ApiError::invalid(field, message);
        }
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "unavailable",
        _ => "invalid_request",
    };
    // No 500s reach a client (API.md): whatever failed had no effect.
    let status = if status.is_server_error() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        status
    };
    ApiError::new(status, code, message)
}
