//! Refunds that need a person (operators): `GET /v1/refunds` (the review list and any other
//! status, newest first, paged), `POST /v1/refunds/{refund_id}/approve` and `/dismiss`.
//!
//! Approving moves the refund back to `queued` and enqueues its job under the review's own id;
//! the worker runs it as an admin amount (rule `admin_review`) with the same cancel path as
//! every refund: the order inquiry before any resend, `cancel_available_amount` as the race
//! guard. Both calls are idempotent: the review is recorded on the refund, and the same call
//! again answers the same.

use super::auth::Admin;
use super::body::ApiJson;
use super::error::ApiError;
use super::query::Query;
use super::refunds::{checked_refund_id, enqueue, view};
use super::AppState;
use crate::domain::RefundStatus;
use crate::store::{Refund, RefundFilter, Review, Reviewed};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// Notes are for people; long enough for a reason, short enough for a history.
const MAX_NOTE: usize = 1000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// Won to refund; what is left of the payment when absent.
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DismissBody {
    note: String,
}

fn checked_note(note: Option<&str>, required: bool) -> Result<Option<String>, ApiError> {
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    match note {
        None if required => Err(ApiError::invalid("note", "note is required")),
        Some(n) if n.chars().count() > MAX_NOTE => Err(ApiError::invalid(
            "note",
            format!("note must be at most {MAX_NOTE} characters"),
        )),
        other => Ok(other.map(str::to_string)),
    }
}

fn not_in_review(status: RefundStatus) -> ApiError {
    ApiError::conflict(
        "not_in_review",
        format!("the refund is {status}, not waiting for review"),
    )
}

#[utoipa::path(get, path = "/v1/refunds", tag = "refunds", operation_id = "list_refunds",
    params(("status" = Option<String>, Query, description = "manual_review, queued, processing, succeeded, rejected, dismissed, failed"),
        ("location_id" = Option<String>, Query), ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the page before")),
    responses((status = 200, description = "refunds (newest first) and next_cursor")), security(("bearer" = [])))]
pub async fn list(
    _: Admin,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = Query::parse(raw.as_deref());
    let status = query.typed(
        "status",
        |s| serde_json::from_value::<RefundStatus>(json!(s)).ok(),
        "must be a refund status",
    )?;
    let filter = RefundFilter {
        status,
        location_id: query.get("location_id").map(str::to_string),
    };
    let page = state
        .store
        .list_refunds(&filter, query.cursor()?.as_ref(), query.limit(50, 200)?)
        .await?;
    Ok(Json(json!({
        "refunds": page.items.iter().map(view).collect::<Vec<_>>(),
        "next_cursor": page.next.map(|c| c.encode()),
    })))
}

#[utoipa::path(post, path = "/v1/refunds/{refund_id}/approve", tag = "refunds", operation_id = "approve_refund",
    request_body = ApproveBody, params(("refund_id" = String, Path)),
    responses((status = 202, description = "Queued, to run as an admin amount (rule admin_review)"),
        (status = 409, description = "not_in_review, not_refundable")), security(("bearer" = [])))]
pub async fn approve(
    Admin(operator): Admin,
    State(state): State<AppState>,
    Path(refund_id): Path<String>,
    ApiJson(body): ApiJson<ApproveBody>,
) -> Result<Response, ApiError> {
    let (refund, review) = approve_refund(
        &state,
        &refund_id,
        body.amount,
        body.note.as_deref(),
        operator.as_str(),
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "refund_id": refund.refund_id,
            "status": RefundStatus::Queued,
            "rule": "admin_review",
            "review": review,
        })),
    )
        .into_response())
}

/// Approves a refund waiting for review, as operator `by` (the API's route and the board's
/// form both come here, so they check and record alike); answers the refund, queued, and
/// the review recorded.
pub(super) async fn approve_refund(
    state: &AppState,
    refund_id: &str,
    amount: Option<i64>,
    note: Option<&str>,
    by: &str,
) -> Result<(Refund, Review), ApiError> {
    let id = checked_refund_id(refund_id)?;
    if amount.is_some_and(|a| a <= 0) {
        return Err(ApiError::conflict(
            "not_refundable",
            "an amount must be at least 1 won",
        ));
    }
    let note = checked_note(note, false)?;
    let mut refund = state
        .store
        .refund_state(id)
        .await?
        .ok_or_else(|| ApiError::not_found("refund"))?;
    let reviewed = state
        .store
        .approve_review(&refund, amount, note.as_deref(), by)
        .await?;
    let review = match reviewed {
        Reviewed::Applied(review) => {
            tracing::info!(refund_id = %refund.refund_id, by, amount = ?amount, "an operator approved a refund");
            review
        }
        Reviewed::Repeated(review) => {
            state.store.confirm_durable(&refund.refund_id).await?;
            review
        }
        Reviewed::NotInReview(status) => return Err(not_in_review(status)),
        Reviewed::NotRefundable(why) => return Err(ApiError::conflict("not_refundable", why)),
        Reviewed::Missing => return Err(ApiError::not_found("refund")),
    };
    refund.review = Some(review.clone());
    refund.status = RefundStatus::Queued;
    // Enqueued second, idempotent by its id; a repeat enqueues again in case the first
    // call's enqueue failed (the reconciler would too).
    enqueue(state, &refund).await;
    Ok((refund, review))
}

#[utoipa::path(post, path = "/v1/refunds/{refund_id}/dismiss", tag = "refunds", operation_id = "dismiss_refund",
    request_body = DismissBody, params(("refund_id" = String, Path)),
    responses((status = 200, description = "The refund, dismissed"), (status = 409, description = "not_in_review")),
    security(("bearer" = [])))]
pub async fn dismiss(
    Admin(operator): Admin,
    State(state): State<AppState>,
    Path(refund_id): Path<String>,
    ApiJson(body): ApiJson<DismissBody>,
) -> Result<Json<Value>, ApiError> {
    let dismissed = dismiss_refund(&state, &refund_id, Some(&body.note), operator.as_str()).await?;
    Ok(Json(view(&dismissed)))
}

/// Dismisses a refund waiting for review with the operator's note (required), as `by`, and
/// emits `refund.dismissed`: the API's route and the board's form both; answers the refund.
pub(super) async fn dismiss_refund(
    state: &AppState,
    refund_id: &str,
    note: Option<&str>,
    by: &str,
) -> Result<Refund, ApiError> {
    let id = checked_refund_id(refund_id)?;
    let note = checked_note(note, true)?.unwrap_or_default();
    let refund = state
        .store
        .refund_state(id)
        .await?
        .ok_or_else(|| ApiError::not_found("refund"))?;
    let reviewed = state
        .store
        .dismiss_review(&refund.refund_id, &note, by)
        .await?;
    match reviewed {
        Reviewed::Applied(_) => {
            tracing::info!(refund_id = %refund.refund_id, by, "an operator dismissed a refund")
        }
        Reviewed::Repeated(_) => state.store.confirm_durable(&refund.refund_id).await?,
        Reviewed::NotInReview(status) => return Err(not_in_review(status)),
        Reviewed::NotRefundable(why) => return Err(ApiError::conflict("not_refundable", why)),
        Reviewed::Missing => return Err(ApiError::not_found("refund")),
    }
    let dismissed = state
        .store
        .refund(&refund.refund_id)
        .await?
        .ok_or_else(|| ApiError::not_found("refund"))?;
    // The event's id derives from the refund, so a repeated call that emits again sends it
    // once; a repeat is also how an event a failed emit missed gets out.
    let rule = dismissed.rule.clone().unwrap_or_default();
    let data = crate::events::refund_data(&dismissed, RefundStatus::Dismissed, 0, &rule);
    crate::events::emit_logged(
        &state.store,
        &state.producer,
        "refund.dismissed",
        &dismissed.refund_id,
        data,
    )
    .await;
    Ok(dismissed)
}
