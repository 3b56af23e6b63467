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
use super::ids::checked_refund_id;
use super::query::Query;
use super::refunds::view;
use super::AppState;
use crate::domain::RefundStatus;
use crate::review::{self, Refused};
use crate::store::RefundFilter;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

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

impl From<Refused> for ApiError {
    fn from(e: Refused) -> Self {
        match e {
            Refused::Invalid(field, why) => ApiError::invalid(field, why),
            Refused::NotInReview(_) => ApiError::conflict("not_in_review", e.to_string()),
            Refused::NotRefundable(why) => ApiError::conflict("not_refundable", why),
            Refused::Missing => ApiError::not_found("refund"),
            Refused::Store(e) => e.into(),
        }
    }
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
    let id = checked_refund_id(&refund_id)?;
    let (refund, review) = review::approve(
        &state.store,
        &state.producer,
        &id,
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
    let id = checked_refund_id(&refund_id)?;
    let dismissed = review::dismiss(
        &state.store,
        &state.producer,
        &id,
        Some(&body.note),
        operator.as_str(),
    )
    .await?;
    Ok(Json(view(&dismissed)))
}
