//! Payments: `/board/payments` searches a location's payments (status, order, tid, a time
//! range typed in Korea time) page by page with the store's search, the one `GET
//! /v1/payments` uses; `/board/payments/{id}` shows one with its history and its refunds,
//! each with its own history (and the review forms while it waits for a person).

use super::super::error::ApiError;
use super::super::ids::checked_payment_id;
use super::super::query::Query;
use super::super::AppState;
use super::pages::{
    enc, flash_html, listed, next_link, page, page_with, parse_kst_input, when, won, Failure,
};
use super::reviews::{left_of, review_forms};
use super::Board;
use crate::domain::{PaymentStatus, RefundStatus};
use crate::html::escape;
use crate::store::{HistoryEntry, Payment, PaymentFilter, Refund};
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;

/// Payments per page.
const PAGE: usize = 50;
/// The search's fields, in the order the form shows them (and a next page's link keeps them).
const FIELDS: [&str; 6] = ["location_id", "status", "order_id", "tid", "from", "to"];

pub fn payment_url(id: &str) -> String {
    format!("/board/payments/{}", enc(id))
}

/// The search form, filled in with what was asked.
pub fn search_form(query: &Query) -> String {
    let value = |name: &str| escape(query.get(name).unwrap_or(""));
    let statuses: String = PaymentStatus::ALL
        .iter()
        .map(|s| {
            let selected = if query.get("status") == Some(s.as_str()) {
                " selected"
            } else {
                ""
            };
            format!("<option{selected}>{}</option>", s.as_str())
        })
        .collect();
    format!(
        "<form method=\"get\" action=\"/board/payments\" class=\"search\" id=\"search\">\
         <label>Location <input name=\"location_id\" value=\"{}\" required></label>\
         <label>Status <select name=\"status\"><option value=\"\">any</option>{statuses}</select></label>\
         <label>Order <input name=\"order_id\" value=\"{}\"></label>\
         <label>TID <input name=\"tid\" value=\"{}\"></label>\
         <label>From (KST) <input type=\"datetime-local\" name=\"from\" value=\"{}\"></label>\
         <label>To (KST) <input type=\"datetime-local\" name=\"to\" value=\"{}\"></label>\
         <button type=\"submit\">Search</button></form>",
        value("location_id"),
        value("order_id"),
        value("tid"),
        value("from"),
        value("to"),
    )
}

pub async fn search(
    Board(operator): Board,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Failure> {
    let query = Query::parse(raw.as_deref());
    let mut body = search_form(&query);
    if query.get("location_id").is_none() {
        body.push_str("<p>Give a location to search its payments.</p>");
        return Ok(page(&operator, "Payments", &body));
    }
    let (status, found) = listed(results(&state, &query).await)?;
    body.push_str(&found);
    Ok(page_with(status, &operator, "Payments", &body))
}

/// The filter the query asks for, checked as `GET /v1/payments` checks it (times may also be
/// typed in Korea time).
fn filter_of(query: &Query) -> Result<PaymentFilter, ApiError> {
    let location = query
        .get("location_id")
        .ok_or_else(|| ApiError::invalid("location_id", "location_id is required"))?;
    let time = |name: &str| {
        query
            .get(name)
            .map(|raw| {
                parse_kst_input(raw).ok_or_else(|| {
                    ApiError::invalid(
                        name,
                        format!("{name} must be a time like 2026-12-01 10:00 (KST) or RFC 3339"),
                    )
                })
            })
            .transpose()
    };
    Ok(PaymentFilter {
        location_id: super::super::ids::location_id(location)?.into(),
        status: query.typed(
            "status",
            |s| PaymentStatus::ALL.into_iter().find(|p| p.as_str() == s),
            "must be a payment status",
        )?,
        order_id: query.get("order_id").map(str::to_string),
        tid: query.get("tid").map(str::to_string),
        from_ms: time("from")?,
        to_ms: time("to")?,
    })
}

/// One page of the search the query asks for, as a table with a link to the next page.
pub async fn results(state: &AppState, query: &Query) -> Result<String, Failure> {
    let filter = filter_of(query)?;
    let found = state
        .store
        .search_payments(&filter, query.cursor()?.as_ref(), PAGE)
        .await?;
    if found.items.is_empty() {
        return Ok("<p id=\"no-payments\">No payment matches.</p>".into());
    }
    let rows: String = found.items.iter().map(payment_row).collect();
    let kept: Vec<String> = FIELDS
        .iter()
        .filter_map(|f| query.get(f).map(|v| format!("{f}={}", enc(v))))
        .collect();
    let base = format!("/board/payments?{}", kept.join("&"));
    let next = found.next.map(|c| c.encode());
    Ok(format!(
        "<table id=\"payments\"><tr><th>created</th><th>order</th><th>item</th><th>service</th><th class=\"num\">amount</th>\
         <th class=\"num\">refunded</th><th>status</th><th>tid</th></tr>{rows}</table>{}",
        next_link(&base, next.as_deref())
    ))
}

fn payment_row(p: &Payment) -> String {
    format!(
        "<tr class=\"payment\" data-payment=\"{id}\"><td><a href=\"{url}\">{}</a></td><td><a href=\"{url}\">{}</a></td>\
         <td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"status\">{}</td><td>{}</td></tr>",
        when(&p.created_at),
        escape(p.request.order_id.as_str()),
        escape(p.request.item_name.as_str()),
        p.request.service,
        won(p.request.total_amount.get()),
        won(p.refunded),
        p.status,
        escape(&p.tid),
        id = escape(&p.payment_id),
        url = escape(&payment_url(&p.payment_id)),
    )
}

pub async fn show(
    Board(operator): Board,
    State(state): State<AppState>,
    Path(payment_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Failure> {
    let query = Query::parse(raw.as_deref());
    let (payment, refunds) = state
        .store
        .payment_with_refunds(&checked_payment_id(&payment_id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("payment"))?;
    let mut body = flash_html(&state, &operator, &query).await?;
    body.push_str(&facts(&payment));
    body.push_str("<h2>History</h2>");
    body.push_str(&history(&payment.history, "payment-history"));
    body.push_str(&format!("<h2>Refunds ({})</h2>", refunds.len()));
    for r in &refunds {
        body.push_str(&refund_section(r, &payment));
    }
    let title = format!("Payment {}", payment.payment_id);
    Ok(page(&operator, &title, &body))
}

fn facts(p: &Payment) -> String {
    let r = &p.request;
    let approval = p.approval.as_ref();
    let fact = |name: &str, value: String| {
        format!(
            "<dt>{name}</dt><dd id=\"{}\">{value}</dd>",
            name.replace(' ', "-")
        )
    };
    let mut out = String::from("<dl class=\"facts\" id=\"payment\">");
    out.push_str(&fact("status", p.status.to_string()));
    out.push_str(&fact("location", escape(&r.location_id)));
    out.push_str(&fact("order", escape(r.order_id.as_str())));
    out.push_str(&fact("member", escape(r.user_id.as_str())));
    out.push_str(&fact(
        "item",
        format!("{} × {}", escape(r.item_name.as_str()), r.quantity),
    ));
    out.push_str(&fact("service", r.service.to_string()));
    out.push_str(&fact("amount", won(r.total_amount.get())));
    out.push_str(&fact("tax free", won(r.tax_free_amount.get())));
    out.push_str(&fact(
        "vat",
        r.vat_amount
            .map(|v| won(v.get()))
            .unwrap_or_else(|| "-".into()),
    ));
    out.push_str(&fact("refunded", won(p.refunded)));
    out.push_str(&fact("left", won(left_of(p))));
    out.push_str(&fact("tid", escape(&p.tid)));
    out.push_str(&fact(
        "aid",
        escape(approval.and_then(|a| a.aid.as_deref()).unwrap_or("-")),
    ));
    out.push_str(&fact(
        "method",
        escape(
            approval
                .and_then(|a| a.payment_method_type.as_deref())
                .unwrap_or("-"),
        ),
    ));
    out.push_str(&fact(
        "approved at",
        approval
            .and_then(|a| a.approved_at.as_deref())
            .map(when)
            .unwrap_or_else(|| "-".into()),
    ));
    out.push_str(&fact("created", when(&p.created_at)));
    out.push_str(&fact("expires", when(&p.expires_at)));
    out.push_str(&fact("updated", when(&p.updated_at)));
    if let Some(f) = &p.failure {
        out.push_str(&fact(
            "failure",
            escape(&format!("{}: {}", f.reason, f.message)),
        ));
    }
    out.push_str("</dl>");
    out
}

fn refund_section(r: &Refund, p: &Payment) -> String {
    let forms = if r.status == RefundStatus::ManualReview {
        review_forms(&r.refund_id, Some(left_of(p)), Some(&p.payment_id))
    } else {
        String::new()
    };
    let amount = if r.amount > 0 {
        won(r.amount)
    } else {
        "-".into()
    };
    format!(
        "<section class=\"refund\" id=\"refund-{id}\" data-refund=\"{id}\"><h3>Refund {id}</h3>\
         <dl class=\"facts\"><dt>status</dt><dd class=\"status\">{}</dd><dt>amount</dt><dd class=\"amount\">{amount}</dd>\
         <dt>rule</dt><dd>{}</dd><dt>reason</dt><dd>{}</dd><dt>requested by</dt><dd>{}</dd><dt>requested</dt><dd>{}</dd>\
         <dt>updated</dt><dd>{}</dd></dl>{forms}{}</section>",
        r.status,
        escape(r.rule.as_deref().unwrap_or("-")),
        escape(&r.request.reason),
        escape(&r.request.requested_by),
        when(&r.created_at),
        when(&r.updated_at),
        history(&r.history, "refund-history"),
        id = escape(&r.refund_id),
    )
}

/// A history, oldest first: each change with its time, cause, and the operator and note of
/// an operator's action.
fn history(entries: &[HistoryEntry], class: &str) -> String {
    let rows: String = entries
        .iter()
        .map(|h| {
            format!(
                "<tr><td>{}</td><td>{} → {}</td><td>{}</td><td class=\"by\">{}</td><td class=\"note\">{}</td></tr>",
                when(&h.at),
                escape(h.from.as_deref().unwrap_or("-")),
                escape(&h.to),
                escape(&h.cause),
                escape(h.by.as_deref().unwrap_or("")),
                escape(h.note.as_deref().unwrap_or("")),
            )
        })
        .collect();
    format!(
        "<table class=\"{class}\"><tr><th>at</th><th>change</th><th>cause</th><th>by</th><th>note</th></tr>{rows}</table>"
    )
}
