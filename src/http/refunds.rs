//! `POST /v1/payments/{payment_id}/refunds` and `GET /v1/refunds/{refund_id}`.
//!
//! A refund request is stored `queued` and its `cancel_payment` job enqueued; the worker
//! decides it by the rules. Storing the refund is the commit point: an answer other than 2xx
//! means it was not stored, and so no job runs for it. The job is enqueued second (its id
//! derives from the refund's, so enqueuing again is harmless); if that fails the refund is
//! still accepted, and the reconciler enqueues the job of a `queued` refund that has none.
//! Where one script can (one server, Sentinel), the plain case is checked, stored and
//! enqueued in one step (`Store::request_refund`); every other case is read and decided here.

use super::auth::{Client, Role};
use super::body::ApiJson;
use super::error::ApiError;
use super::ids::{checked_payment_id, checked_refund_id};
use super::AppState;
use crate::domain::{IdempotencyKey, LocationId, PaymentId, RefundId, RefundStatus, Won};
use crate::refunds::{refundable, NotRefundable};
use crate::store::{new_refund_job, Created, Refund};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kakaopay_jobs::queue::{Enqueued, PreparedJob, QueueError};
use kakaopay_jobs::refunds::{same_request, validate, RefundRequestError};
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

/// The request's `Idempotency-Key` header, if any: taken alone, since axum's `HeaderMap`
/// extractor copies every header of every request. Refused only once the body was read, as
/// a missing key always was.
pub struct IdempotencyHeader(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IdempotencyHeader(
            parts.headers.get("idempotency-key").cloned(),
        ))
    }
}

/// The `Idempotency-Key` header, required; one that is there but not text is said to be so,
/// not to be missing (its rule is checked with the request, as it always was).
fn idempotency_key(header: &IdempotencyHeader) -> Result<&str, ApiError> {
    const FIELD: &str = "Idempotency-Key";
    let raw = header
        .0
        .as_ref()
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
    Ok(key)
}

impl RefundBody {
    /// The request as the worker will decide it, checked as every request is
    /// (`kakaopay_jobs::refunds::validate`, shared with refunds enqueued straight into Redis).
    fn into_request(
        self,
        key: &str,
        role: Role,
    ) -> Result<(IdempotencyKey, RefundRequest), ApiError> {
        if self.amount.is_some() && role != Role::Admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only an operator token may give an amount",
            ));
        }
        if self.amount.is_some_and(|a| a <= 0) {
            return Err(not_refundable("an explicit amount must be at least 1 won"));
        }
        let request = RefundRequest {
            reason: self.reason.unwrap_or_default(),
            requested_by: self.requested_by.unwrap_or_else(|| "member".into()),
            canceled_at: self.canceled_at,
            context: self.context.unwrap_or_default(),
            amount: self.amount,
            by_admin: role == Role::Admin,
            received_at: crate::store::now_rfc3339(),
        };
        let invalid = |e: RefundRequestError| match e {
            RefundRequestError::Invalid { field, message } => {
                ApiError::invalid(field, format!("{field} {message}"))
            }
            other => ApiError::invalid("body", other.to_string()),
        };
        validate(key, &request).map_err(invalid)?;
        // The same rule `validate` just applied: cannot fail.
        let key = IdempotencyKey::try_from(key)
            .map_err(|e| ApiError::invalid("Idempotency-Key", e.to_string()))?;
        Ok((key, request))
    }
}

/// The 409 of a payment that cannot take the refund asked for.
fn refused(why: NotRefundable) -> ApiError {
    not_refundable(match why {
        NotRefundable::Status(status) => format!(
            "{} payment cannot be refunded",
            with_article(status.as_str())
        ),
        NotRefundable::NeverApproved => "the payment was never approved".into(),
        NotRefundable::OverRemaining(Won::ZERO) => "nothing is left to refund".into(),
        NotRefundable::OverRemaining(left) => format!("only {} won is left to refund", left.get()),
    })
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
    key: IdempotencyHeader,
    ApiJson(body): ApiJson<RefundBody>,
) -> Result<Response, ApiError> {
    let payment_id = checked_payment_id(&payment_id)?;
    let (key, request) = body.into_request(idempotency_key(&key)?, role)?;
    let refund_id = RefundId::of(&payment_id, &key);
    let by = operator.as_ref().map(|o| o.as_str());
    let (job, options) = new_refund_job(&refund_id, &payment_id, &key, &request);
    let job = state.producer.prepare(&job, options)?;
    let ids = (&refund_id, &payment_id, key.as_str());
    if let Some((refund, enqueued)) = state.store.request_refund(ids, &request, by, &job).await? {
        return Ok(stored(&state, &refund, enqueued, &job).await);
    }
    // Not the plain case, or not where one step can do it: read, decide, store.
    let (payment, existing) = state
        .store
        .refund_target_and_refund(&payment_id, &refund_id)
        .await?;
    let payment = payment.ok_or_else(|| ApiError::not_found("payment"))?;
    if let Some(existing) = existing {
        return repeated(&state, &existing, &request).await;
    }
    let left = refundable(
        payment.status,
        payment.approved,
        payment.refunded,
        request.amount,
    )
    .map_err(refused)?;
    if left == Won::ZERO {
        return Err(refused(NotRefundable::OverRemaining(Won::ZERO)));
    }
    let ids = (&refund_id, &payment_id, &payment.location_id, &key);
    store_and_enqueue(&state, ids, &request, by, &job).await
}

/// A request whose key names a stored refund: its answer again (or a conflict).
async fn repeated(
    state: &AppState,
    existing: &Refund,
    request: &RefundRequest,
) -> Result<Response, ApiError> {
    // Perhaps stored by a request answered 503 (too few replicas in time).
    state.store.confirm_durable(&existing.refund_id).await?;
    let answer = same_or_conflict(existing, request)?;
    if existing.status == RefundStatus::Queued {
        // A repeat of a request whose job may not have been enqueued: make sure it is.
        enqueue(state, existing).await;
    }
    Ok(answer)
}

/// Stores the refund `queued` with its job, enqueued in the same step where Redis allows.
async fn store_and_enqueue(
    state: &AppState,
    ids: (&RefundId, &PaymentId, &LocationId, &IdempotencyKey),
    request: &RefundRequest,
    by: Option<&str>,
    job: &PreparedJob,
) -> Result<Response, ApiError> {
    let (refund_id, payment_id, location_id, key) = ids;
    let (created, enqueued) = state
        .store
        .create_refund_with(
            (refund_id, payment_id, location_id, key),
            request,
            "http",
            by,
            Some(job),
        )
        .await?;
    let refund = match created {
        Created::Created(refund) => refund,
        // The same key at the same moment.
        Created::Exists(existing) => {
            state.store.confirm_durable(&existing.refund_id).await?;
            return same_or_conflict(&existing, request);
        }
    };
    Ok(stored(state, &refund, enqueued, job).await)
}

/// The answer of a refund just stored, once its job is enqueued: in the same step, or now
/// (a cluster, durable writes, or an enqueue that failed there).
async fn stored(
    state: &AppState,
    refund: &Refund,
    enqueued: Option<Enqueued>,
    job: &PreparedJob,
) -> Response {
    match enqueued {
        Some(enqueued) => log_enqueued(refund, Ok(enqueued)),
        None => log_enqueued(refund, state.producer.enqueue_prepared(job).await),
    }
    accepted(refund)
}

/// Enqueues a stored refund's job (idempotent by its id). A failure is logged, not answered:
/// the refund is stored, and the reconciler enqueues the job of a `queued` refund that has
/// none.
pub(super) async fn enqueue(state: &AppState, refund: &Refund) {
    let enqueued = state
        .producer
        .enqueue(&refund.job(), refund.insert_opts())
        .await;
    log_enqueued(refund, enqueued);
}

fn log_enqueued(refund: &Refund, enqueued: Result<Enqueued, QueueError>) {
    match enqueued {
        Ok(e) if !e.duplicate => {
            // Debug, not info: the request path stays lean, and what operators follow is the
            // refund's outcome (logged by its worker) and its history (who asked, when).
            tracing::debug!(refund_id = %refund.refund_id, payment_id = %refund.payment_id, "refund queued")
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
        .refund(&checked_refund_id(&refund_id)?)
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
