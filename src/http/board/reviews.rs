//! Refunds that need a person: `/board/reviews` lists those in `manual_review`, newest first,
//! page by page, each with its payment and what is left of it, and the two forms: approve
//! (an amount, or blank for what is left; a note) and dismiss (a note, required). The forms
//! are also on a payment's page, under each refund waiting for review.

use super::super::error::ApiError;
use super::super::ids::checked_payment_id;
use super::super::ids::checked_refund_id;
use super::super::query::Query;
use super::super::AppState;
use super::pages::{
    enc, flash_html, form, listed, next_link, page_with, redirect_with, sentence, when, won,
    Failure, Flash,
};
use super::Board;
use crate::domain::RefundStatus;
use crate::html::escape;
use crate::store::{Payment, Refund, RefundFilter};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;

/// Reviews per page.
const PAGE: usize = 20;

/// What is left of a payment to refund.
pub fn left_of(p: &Payment) -> i64 {
    let approved = p.approval.as_ref().map(|a| a.amount.total).unwrap_or(0);
    (approved - p.refunded).max(0)
}

/// The approve and dismiss forms of one refund; `payment` set when they sit on its page
/// (the redirect goes back there).
pub fn review_forms(refund_id: &str, left: Option<i64>, payment: Option<&str>) -> String {
    let id = escape(refund_id);
    let back = payment
        .map(|p| {
            format!(
                "<input type=\"hidden\" name=\"payment\" value=\"{}\">",
                escape(p)
            )
        })
        .unwrap_or_default();
    let left = left
        .map(|l| format!("blank: what is left, {}", won(l)))
        .unwrap_or_else(|| "blank: what is left".into());
    format!(
        "<form method=\"post\" action=\"/board/reviews/{url}/approve\" class=\"review approve\" data-refund=\"{id}\">{back}\
         <label>Amount (won) <input name=\"amount\" inputmode=\"numeric\" placeholder=\"{left}\"></label> \
         <label>Note <input name=\"note\" maxlength=\"1000\"></label> <button class=\"approve\" type=\"submit\">Approve</button></form>\
         <form method=\"post\" action=\"/board/reviews/{url}/dismiss\" class=\"review dismiss\" data-refund=\"{id}\">{back}\
         <label>Note (why) <input name=\"note\" maxlength=\"1000\" required></label> <button class=\"dismiss\" type=\"submit\">Dismiss</button></form>",
        url = enc(refund_id),
        left = escape(&left),
    )
}

pub async fn show(
    Board(operator): Board,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Failure> {
    let query = Query::parse(raw.as_deref());
    let mut body = flash_html(&state, &operator, &query).await?;
    let location = query.get("location_id");
    body.push_str(&format!(
        "<form method=\"get\" action=\"/board/reviews\" class=\"search\"><label>Location \
         <input name=\"location_id\" value=\"{}\"></label> <button type=\"submit\">Filter</button></form>",
        escape(location.unwrap_or(""))
    ));
    let (status, found) = listed(listing(&state, &query).await)?;
    body.push_str(&found);
    Ok(page_with(
        status,
        &operator,
        "Refunds waiting for review",
        &body,
    ))
}

async fn listing(state: &AppState, query: &Query) -> Result<String, Failure> {
    let location = query
        .get("location_id")
        .map(super::super::ids::location_id)
        .transpose()?;
    let filter = RefundFilter {
        status: Some(RefundStatus::ManualReview),
        location_id: location.clone().map(String::from),
    };
    let found = state
        .store
        .list_refunds(&filter, query.cursor()?.as_ref(), PAGE)
        .await?;
    if found.items.is_empty() {
        return Ok("<p id=\"no-reviews\">No refund waits for a person.</p>".into());
    }
    let mut rows = String::new();
    for r in &found.items {
        let payment = state.store.payment(&r.payment_id).await?;
        rows.push_str(&review_row(r, payment.as_ref()));
    }
    let base = match &location {
        Some(l) => format!("/board/reviews?location_id={}", enc(l)),
        None => "/board/reviews".to_string(),
    };
    let next = found.next.map(|c| c.encode());
    Ok(format!(
        "<table id=\"reviews\"><tr><th>refund</th><th>payment</th><th>paid</th><th>left</th><th>reason</th>\
         <th>rule</th><th>requested</th><th>decide</th></tr>{rows}</table>{}",
        next_link(&base, next.as_deref())
    ))
}

fn review_row(r: &Refund, payment: Option<&Payment>) -> String {
    let (about, paid, left) = match payment {
        Some(p) => (
            format!(
                "<a href=\"/board/payments/{}\">{}</a><br>{} · {}<br>{}",
                enc(&p.payment_id),
                escape(&p.payment_id),
                escape(p.request.order_id.as_str()),
                escape(p.request.item_name.as_str()),
                escape(&p.request.location_id),
            ),
            won(p.request.total_amount.get()),
            Some(left_of(p)),
        ),
        None => (escape(&r.payment_id), "-".into(), None),
    };
    format!(
        "<tr class=\"review\" data-refund=\"{id}\"><td>{id}</td><td>{about}</td><td class=\"num\">{paid}</td>\
         <td class=\"num\">{}</td><td>{}<br>by {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        left.map(won).unwrap_or_else(|| "-".into()),
        escape(&r.request.reason),
        escape(&r.request.requested_by),
        escape(r.rule.as_deref().unwrap_or("-")),
        when(&r.created_at),
        review_forms(&r.refund_id, left, None),
        id = escape(&r.refund_id),
    )
}

/// Where a review form's redirect goes: the payment's page it sat on, or the review list.
fn back_of(fields: &Query) -> String {
    match fields
        .get("payment")
        .and_then(|p| checked_payment_id(p).ok())
    {
        Some(p) => format!("/board/payments/{}", enc(&p)),
        None => "/board/reviews".to_string(),
    }
}

/// An amount as an operator may type it: `12000`, `12,000`, `₩12,000`; blank for none.
fn typed_amount(raw: Option<&str>) -> Result<Option<i64>, String> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let digits: String = raw
        .trim_start_matches('₩')
        .chars()
        .filter(|c| *c != ',' && !c.is_whitespace())
        .collect();
    digits.parse::<i64>().map(Some).map_err(|_| {
        let shown: String = raw.chars().take(40).collect();
        format!("The amount must be a whole number of won, like 12000 (blank: what is left); \"{shown}\" is not. Nothing was done.")
    })
}

/// What an operator decided about a refund waiting for review.
enum Decision {
    /// An amount, or `None` for what is left.
    Approve(Option<i64>),
    Dismiss,
}

/// Decides the review of the refund a form's path names (a malformed id is an unknown
/// refund), with the form's note, under the operator's name.
async fn decide(
    state: &AppState,
    refund: &str,
    decision: Decision,
    fields: &Query,
    operator: &str,
) -> Result<(), ApiError> {
    let id = checked_refund_id(refund)?;
    let (store, producer, note) = (&state.store, &state.producer, fields.get("note"));
    match decision {
        Decision::Approve(amount) => {
            crate::review::approve(store, producer, &id, amount, note, operator).await?;
        }
        Decision::Dismiss => {
            crate::review::dismiss(store, producer, &id, note, operator).await?;
        }
    }
    Ok(())
}

pub async fn approve(
    Board(operator): Board,
    State(state): State<AppState>,
    Path(refund): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let fields = form(&body);
    let back = back_of(&fields);
    let amount = match typed_amount(fields.get("amount")) {
        Ok(a) => a,
        Err(why) => return redirect_with(&state, &operator, &back, Flash::Refused(why)).await,
    };
    let decision = Decision::Approve(amount);
    let approved = decide(&state, &refund, decision, &fields, &operator).await;
    let flash = match approved {
        Ok(()) => Flash::Done(format!(
            "Refund {refund} approved for {} by {operator}: it is queued and runs as an admin refund.",
            amount.map(won).unwrap_or_else(|| "what is left".into())
        )),
        Err(e) => refused("approved", e)?,
    };
    redirect_with(&state, &operator, &back, flash).await
}

pub async fn dismiss(
    Board(operator): Board,
    State(state): State<AppState>,
    Path(refund): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let fields = form(&body);
    let back = back_of(&fields);
    let dismissed = decide(&state, &refund, Decision::Dismiss, &fields, &operator).await;
    let flash = match dismissed {
        Ok(()) => Flash::Done(format!(
            "Refund {refund} dismissed by {operator}: no money moves."
        )),
        Err(e) if e.field.as_deref() == Some("note") => Flash::Refused(format!(
            "A dismissal needs a note saying why ({}); nothing was done.",
            e.message
        )),
        Err(e) => refused("dismissed", e)?,
    };
    redirect_with(&state, &operator, &back, flash).await
}

/// An operator's mistake told on the page; Redis being away is an error page (503).
fn refused(what: &str, e: ApiError) -> Result<Flash, Failure> {
    if e.status.is_client_error() {
        Ok(Flash::Refused(format!(
            "Not {what}: {} Nothing was done.",
            sentence(&e)
        )))
    } else {
        Err(Failure(e))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn amounts_are_read_as_people_type_them() {
        use super::typed_amount;
        assert_eq!(typed_amount(None), Ok(None));
        assert_eq!(typed_amount(Some("  ")), Ok(None));
        assert_eq!(typed_amount(Some("12000")), Ok(Some(12000)));
        assert_eq!(typed_amount(Some("₩12,000")), Ok(Some(12000)));
        assert!(typed_amount(Some("12k")).is_err());
        assert!(typed_amount(Some("1.5")).is_err());
    }
}
