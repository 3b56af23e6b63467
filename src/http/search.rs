//! `GET /v1/payments` (clients): a location's payments, newest first, filtered by status,
//! order, tid and creation time, paged with a cursor that never repeats or skips a payment
//! while new ones arrive (see `store::paging` for how the shards are merged).

use super::auth::Client;
use super::error::ApiError;
use super::query::Query;
use super::AppState;
use crate::domain::PaymentStatus;
use crate::store::{Payment, PaymentFilter};
use axum::extract::{RawQuery, State};
use axum::Json;
use serde_json::{json, Value};

/// A payment in a listing: what tells one from another; its detail has the rest.
fn summary(p: &Payment) -> Value {
    let r = &p.request;
    json!({
        "payment_id": p.payment_id,
        "location_id": r.location_id,
        "order_id": r.order_id,
        "user_id": r.user_id,
        "service": r.service,
        "item_name": r.item_name,
        "total_amount": r.total_amount,
        "status": p.status,
        "tid": p.tid,
        "aid": p.approval.as_ref().map(|a| &a.aid),
        "refunded_amount": p.refunded,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    })
}

#[utoipa::path(get, path = "/v1/payments", tag = "payments", operation_id = "search_payments",
    params(("location_id" = String, Query), ("status" = Option<String>, Query), ("order_id" = Option<String>, Query),
        ("tid" = Option<String>, Query), ("from" = Option<String>, Query, description = "RFC 3339, created at or after"),
        ("to" = Option<String>, Query, description = "RFC 3339, created at or before"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the page before")),
    responses((status = 200, description = "payments (newest first) and next_cursor")), security(("bearer" = [])))]
pub async fn search(
    _: Client,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = Query::parse(raw.as_deref());
    let location_id = query
        .get("location_id")
        .ok_or_else(|| ApiError::invalid("location_id", "location_id is required"))?;
    super::ids::location_id(location_id)?;
    let filter = PaymentFilter {
        location_id: location_id.to_string(),
        status: query.typed(
            "status",
            |s| serde_json::from_value::<PaymentStatus>(json!(s)).ok(),
            "must be a payment status",
        )?,
        order_id: query.get("order_id").map(str::to_string),
        tid: query.get("tid").map(str::to_string),
        from_ms: query.time_ms("from")?,
        to_ms: query.time_ms("to")?,
    };
    let page = state
        .store
        .search_payments(&filter, query.cursor()?.as_ref(), query.limit(50, 200)?)
        .await?;
    Ok(Json(json!({
        "payments": page.items.iter().map(summary).collect::<Vec<_>>(),
        "next_cursor": page.next.map(|c| c.encode()),
    })))
}
