//! `POST /v1/payments/{payment_id}/refunds` and `GET /v1/refunds/{refund_id}`.
//!
//! A refund request is stored `queued` and its `cancel_payment` job enqueued; the worker
//! decides it by the rules. Storing the refund is the commit point: an answer other than 2xx
//! means it was not stored, and so no job runs for it. The job is enqueued second (its id
//! derives from the refund's, so enqueuing again is harmless); if that fails the refund is
//! still accepted, and the reconciler enqueues the job of a `queued` refund that has none.

use super::auth::{Client, Role};
use super::body::ApiJson;
use super::error::ApiError;
use super::payments::checked_payment_id;
use super::AppState;
use crate::domain::{PaymentStatus, RefundStatus};
use crate::store::{Created, Refund};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kakaopay_jobs::queue::EnqueueOptions;
use kakaopay_jobs::refunds::{refund_id, same_request, validate, RefundRequestError};
use kakaopay_jobs::RefundRequest;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    requested_by: Option<String>,
    #[serde(default)]
    canceled_at: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    context: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    amount: Option<i64>,
}

fn not_refundable(message: impl Into<String>) -> ApiError {
    ApiError::conflict("not_refundable", message)
}

pub fn view(r: &Refund) -> Value {
    json!({
        "refund_id": r.refund_id,
        "payment_id": r.payment_id,
        "status": r.status,
        "amount": r.amount,
        "tax_free_amount": r.tax_free_amount,
        "rule": r.rule,
        "reason": r.request.reason,
        "requested_by": r.request.requested_by,
        "canceled_at": r.request.canceled_at.as_ref().unwrap_or(&r.request.received_at),
        "context": r.request.context,
        "explicit_amount": r.request.amount,
        "aid": r.aid,
        "failure": r.failure,
        "source": r.source,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "history": r.history,
        "review": r.review,
    })
}

fn accepted(refund: &Refund) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({"refund_id": refund.refund_id, "status": refund.status})),
    )
        .into_response()
}

fn same_or_conflict(existing: &Refund, request: &RefundRequest) -> Result<Response, ApiError> {
    if same_request(&existing.request, request) {
        Ok(accepted(existing))
    } else {
        Err(ApiError::conflict(
            "idempotency_conflict",
            "this Idempotency-Key was used for a different refund request",
        ))
    }
}

/// "an approving", "a ready": statuses are English words in our messages.
fn with_article(word: &str) -> String {
    let article = if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {word}")
}

/// The `Idempotency-Key` header, required; one that is there but not text is said to be so,
/// not to be missing (`kakaopay_jobs::refunds::validate` checks the rest).
fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    const FIELD: &str = "Idempotency-Key";
    let raw = headers
        .get("idempotency-key")
        .ok_or_else(|| ApiError::invalid(FIELD, "the Idempotency-Key header is required"))?;
    let key = raw
        .to_str()
        .map_err(|_| ApiError::invalid(FIELD, "the Idempotency-Key header must be visible ASCII"))?
        .trim();
    if key.is_empty() {
        return Err(ApiError::invalid(
            FIELD,
            "the Idempotency-Key header is empty",
        ));
    }
    Ok(key.to_string())
}

#[utoipa::path(post, path = "/v1/payments/{payment_id}/refunds", tag = "refunds", request_body = RefundBody,
    params(("payment_id" = String, Path), ("Idempotency-Key" = String, Header, description = "Required; the same key and body answer the same refund")),
    responses((status = 202, description = "Refund queued: refund_id, status"), (status = 400, description = "Invalid field or no Idempotency-Key"),
        (status = 403, description = "amount with a client token"), (status = 404, description = "Unknown payment"),
        (status = 409, description = "not_refundable, idempotency_conflict")),
    security(("bearer" = [])))]
pub async fn create(
    Client(role, operator): Client,
    State(state): State<AppState>,
    Path(payment_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RefundBody>,
) -> Result<Response, ApiError> {
    let payment_id = checked_payment_id(&payment_id)?.to_string();
    let key = idempotency_key(&headers)?;
    if body.amount.is_some() && role != Role::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only an operator token may give an amount",
        ));
    }
    let request = RefundRequest {
        reason: body.reason.unwrap_or_default(),
        requested_by: body.requested_by.unwrap_or_else(|| "member".into()),
        canceled_at: body.canceled_at,
        context: body.context.unwrap_or_default(),
        amount: body.amount,
        by_admin: role == Role::Admin,
        received_at: crate::store::now_rfc3339(),
    };
    if request.amount.is_some_and(|a| a <= 0) {
        return Err(not_refundable("an explicit amount must be at least 1 won"));
    }
    validate(&key, &request).map_err(|e| match e {
        RefundRequestError::Invalid { field, message } => {
            ApiError::invalid(field, format!("{field} {message}"))
        }
        other => ApiError::invalid("body", other.to_string()),
    })?;

    let refund_id = refund_id(&payment_id, &key);
    let (payment, existing) = state
        .store
        .payment_and_refund(&payment_id, &refund_id)
        .await?;
    let payment = payment.ok_or_else(|| ApiError::not_found("payment"))?;
    if let Some(existing) = existing {
        // Perhaps stored by a request answered 503 (too few replicas in time).
        state.store.confirm_durable(&existing.refund_id).await?;
        let answer = same_or_conflict(&existing, &request)?;
        if existing.status == RefundStatus::Queued {
            // A repeat of a request whose job may not have been enqueued: make sure it is.
            enqueue(&state, &existing).await;
        }
        return Ok(answer);
    }
    if !matches!(
        payment.status,
        PaymentStatus::Approved | PaymentStatus::PartiallyRefunded
    ) {
        return Err(not_refundable(format!(
            "{} payment cannot be refunded",
            with_article(&payment.status.to_string())
        )));
    }
    let approved = payment
        .approval
        .as_ref()
        .map(|a| a.amount.total)
        .unwrap_or(0);
    let left = approved - payment.refunded;
    if left <= 0 {
        return Err(not_refundable("nothing is left to refund"));
    }
    if let Some(amount) = request.amount {
        if amount > left {
            return Err(not_refundable(format!("only {left} won is left to refund")));
        }
    }

    let created = state
        .store
        .create_refund_by(
            (&refund_id, &payment_id, &payment.request.location_id, &key),
            &request,
            "http",
            operator.as_ref().map(|o| o.as_str()),
        )
        .await?;
    let refund = match created {
        Created::Created(refund) => refund,
        // The same key at the same moment.
        Created::Exists(existing) => {
            state.store.confirm_durable(&existing.refund_id).await?;
            return same_or_conflict(&existing, &request);
        }
    };
    enqueue(&state, &refund).await;
    Ok(accepted(&refund))
}

/// A refund id as we make them; anything else names no refund (and never reaches a key).
pub fn checked_refund_id(raw: &str) -> Result<&str, ApiError> {
    let ok = raw.len() == 27
        && raw.starts_with("rf_")
        && raw[3..]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(raw)
    } else {
        Err(ApiError::not_found("refund"))
    }
}

/// Enqueues a stored refund's job (idempotent by its id). A failure is logged, not answered:
/// the refund is stored, and the reconciler enqueues the job of a `queued` refund that has
/// none.
pub(super) async fn enqueue(state: &AppState, refund: &Refund) {
    match state
        .producer
        .enqueue(&refund.job(), EnqueueOptions::with_id(refund.job_id()))
        .await
    {
        Ok(e) if !e.duplicate => {
            tracing::info!(refund_id = %refund.refund_id, payment_id = %refund.payment_id, "refund queued")
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(refund_id = %refund.refund_id, error = %e, "refund stored but its job not enqueued; the reconciler will")
        }
    }
}

#[utoipa::path(get, path = "/v1/refunds/{refund_id}", tag = "refunds", params(("refund_id" = String, Path)),
    responses((status = 200, description = "The refund"), (status = 404, description = "Unknown refund")), security(("bearer" = [])))]
pub async fn get(
    _: Client,
    State(state): State<AppState>,
    Path(refund_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let refund = state
        .store
        .refund(checked_refund_id(&refund_id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("refund"))?;
    Ok(Json(view(&refund)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn statuses_take_their_article() {
        assert_eq!(super::with_article("approving"), "an approving");
        assert_eq!(super::with_article("expired"), "an expired");
        assert_eq!(super::with_article("ready"), "a ready");
        assert_eq!(super::with_article("canceled"), "a canceled");
    }
}
