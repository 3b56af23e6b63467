//! `GET /v1/transactions?location_id=…&from=…&to=…`: one row per payment and per refund,
//! newest first, as JSON or (`Accept: text/csv`) CSV, with the ids operators type into the
//! KakaoPay dashboard (`id` is the order id, KakaoPay's `partner_order_id`).

use super::auth::Client;
use super::error::ApiError;
use super::ids::location_id;
use super::AppState;
use crate::domain::{Aid, LocationId};
use crate::store::{Payment, Refund, Store};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, FixedOffset};
use serde::Serialize;
use std::collections::HashMap;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub id: String,
    pub time: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub amount: i64,
    pub status: String,
    pub tid: String,
    pub aid: String,
}

/// A text cell a spreadsheet will not run: one that starts like a formula (`=`, `+`, `-`,
/// `@`, tab, CR; OWASP's "CSV Injection") gets a leading `'`. Order ids and item names come
/// from the booking system and its members, and operators open this report in Excel.
fn inert(cell: &str) -> std::borrow::Cow<'_, str> {
    // Spreadsheets skip leading spaces, and Korean Excel reads the fullwidth signs too.
    const STARTS: [char; 10] = ['=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠'];
    if cell.starts_with(STARTS) || cell.trim_start_matches(' ').starts_with(STARTS) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

fn instant(field: &str, raw: Option<&String>) -> Result<Option<DateTime<FixedOffset>>, ApiError> {
    raw.map(|v| {
        DateTime::parse_from_rfc3339(v).map_err(|_| {
            ApiError::invalid(field, format!("{field} must be RFC 3339 with an offset"))
        })
    })
    .transpose()
}

#[utoipa::path(get, path = "/v1/transactions", tag = "transactions",
    params(("location_id" = String, Query), ("from" = Option<String>, Query, description = "RFC 3339"), ("to" = Option<String>, Query, description = "RFC 3339")),
    responses((status = 200, description = "Rows id, time, description, type, amount, status, tid, aid, newest first; CSV with Accept: text/csv")),
    security(("bearer" = [])))]
pub async fn report(
    _: Client,
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let (location, from_ms, to_ms) = period(raw.as_deref())?;
    let rows = rows(&state.store, &location, from_ms, to_ms).await?;
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.to_ascii_lowercase().contains("text/csv"));
    if !wants_csv {
        return Ok(Json(rows).into_response());
    }
    csv_response(&rows)
}

/// The query's location and its `from`..`to` window, as milliseconds since the epoch.
fn period(raw: Option<&str>) -> Result<(LocationId, Option<i64>, Option<i64>), ApiError> {
    let query: HashMap<String, String> = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let location = location_id(
        query
            .get("location_id")
            .ok_or_else(|| ApiError::invalid("location_id", "location_id is required"))?,
    )?;
    let from = instant("from", query.get("from"))?;
    let to = instant("to", query.get("to"))?;
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(ApiError::invalid("from", "from must not be after to"));
        }
    }
    Ok((
        location,
        from.map(|t| t.timestamp_millis()),
        to.map(|t| t.timestamp_millis()),
    ))
}

/// The location's payments and refunds in the window, newest first. A record deleted
/// since the index listed it is left out.
async fn rows(
    store: &Store,
    location: &str,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> Result<Vec<Row>, ApiError> {
    let mut rows = Vec::new();
    for id in store.location_payments(location, from_ms, to_ms).await? {
        let Some(p) = store.payment(&id).await? else {
            continue;
        };
        rows.push(payment_row(&p));
    }
    for id in store.location_refunds(location, from_ms, to_ms).await? {
        let Some(r) = store.refund(&id).await? else {
            continue;
        };
        let Some(p) = store.payment(&r.payment_id).await? else {
            continue;
        };
        rows.push(refund_row(&r, &p));
    }
    // RFC 3339 in UTC with fixed precision sorts as text.
    rows.sort_by(|a, b| b.time.cmp(&a.time));
    Ok(rows)
}

fn payment_row(p: &Payment) -> Row {
    Row {
        id: p.request.order_id.to_string(),
        time: p.created_at.clone(),
        description: format!("{} ({})", p.request.item_name, p.request.service),
        kind: "payment",
        amount: p
            .approval
            .as_ref()
            .map(|a| a.amount.total)
            .unwrap_or(p.request.total_amount.get()),
        status: p.status.to_string(),
        tid: p.tid.to_string(),
        aid: p
            .approval
            .as_ref()
            .and_then(|a| a.aid.as_ref())
            .map(Aid::to_string)
            .unwrap_or_default(),
    }
}

fn refund_row(r: &Refund, p: &Payment) -> Row {
    Row {
        id: p.request.order_id.to_string(),
        time: r.created_at.clone(),
        description: format!("refund of {} ({})", p.request.item_name, p.request.service),
        kind: "refund",
        amount: r.amount,
        status: r.status.to_string(),
        tid: p.tid.to_string(),
        aid: r.aid.as_ref().map(Aid::to_string).unwrap_or_default(),
    }
}

fn csv_response(rows: &[Row]) -> Result<Response, ApiError> {
    let failed = |e: csv::Error| ApiError::internal(e.to_string());
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "id",
        "time",
        "description",
        "type",
        "amount",
        "status",
        "tid",
        "aid",
    ])
    .map_err(failed)?;
    for r in rows {
        out.write_record([
            &*inert(&r.id),
            &r.time,
            &*inert(&r.description),
            r.kind,
            &r.amount.to_string(),
            &r.status,
            &*inert(&r.tid),
            &*inert(&r.aid),
        ])
        .map_err(failed)?;
    }
    let body = out
        .into_inner()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::inert;

    #[test]
    fn cells_that_start_a_formula_are_made_text() {
        for cell in [
            "=1+1",
            "+1",
            "-2",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "=HYPERLINK(\"http://x\")",
        ] {
            assert_eq!(inert(cell), format!("'{cell}"));
        }
        for cell in ["B-2026-0001", "Meeting room A (bookings)", "", "1=1"] {
            assert_eq!(inert(cell), cell);
        }
    }
}
