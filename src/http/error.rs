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
            StoreError::Unavailable(_) => {
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
