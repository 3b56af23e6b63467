//! `/board`: the queues' counts (refreshed in place from `/board/counts`), the refunds
//! waiting for a person, failed and dead jobs with a retry button, the way to a location's
//! payments; and `/board/workers`, the live processes.

use super::super::AppState;
use super::pages::{flash_html, kst, page, when, Failure};
use super::{payments, Board};
use crate::domain::RefundStatus;
use crate::html::escape;
use crate::store::RefundFilter;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use kakaopay_jobs::queue::inspect::Status;
use kakaopay_jobs::QUEUES;

/// Failed and dead jobs listed per queue and status on the overview; the queue's page has all.
const TROUBLED: usize = 50;
/// Reviews counted on the overview, at most (the review page has them all).
const REVIEWS_COUNTED: usize = 100;

pub async fn show(
    Board(operator): Board,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Failure> {
    let query = super::super::query::Query::parse(raw.as_deref());
    let mut body = flash_html(&state, &operator, &query).await?;
    body.push_str(&reviews_waiting(&state).await?);
    body.push_str("<h2>Queues</h2>");
    body.push_str(&counts_table(&state).await?);
    body.push_str(&troubled(&state).await?);
    body.push_str("<h2>Payments</h2>");
    body.push_str(&payments::search_form(&query));
    if query.get("location_id").is_some() {
        match payments::results(&state, &query).await {
            Ok(found) => body.push_str(&found),
            Err(Failure(e)) if e.status.is_client_error() => body.push_str(&format!(
                "<p class=\"error\" id=\"error\">{}</p>",
                escape(&super::pages::sentence(&e))
            )),
            Err(e) => return Err(e),
        }
    }
    Ok(page(&operator, "Overview", &body))
}

/// The counts table alone, for `board.js` to swap in (marked so the script knows it got the
/// fragment, not the login form a lapsed session is redirected to).
pub async fn counts(Board(_): Board, State(state): State<AppState>) -> Result<Response, Failure> {
    let table = counts_table(&state).await?;
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (
                header::HeaderName::from_static("x-board-fragment"),
                "counts",
            ),
        ],
        Html(table),
    )
        .into_response())
}

/// Every queue's exact counts and whether it is paused, as of now.
pub async fn counts_table(state: &AppState) -> Result<String, Failure> {
    let queues = state.store.queues();
    let mut rows = String::new();
    for queue in QUEUES {
        let c = queues.counts(queue).await?;
        let paused = queues.is_paused(queue).await?;
        let state_cell = if paused {
            "<td class=\"paused\">paused</td>"
        } else {
            "<td class=\"running\">running</td>"
        };
        rows.push_str(&format!(
            "<tr id=\"queue-{queue}\"><td><a href=\"/board/queues/{queue}\">{queue}</a></td>{state_cell}\
             <td class=\"num pending\">{}</td><td class=\"num running\">{}</td><td class=\"num scheduled\">{}</td>\
             <td class=\"num done\">{}</td><td class=\"num failed\">{}</td><td class=\"num dead\">{}</td></tr>",
            c.pending, c.running, c.scheduled, c.done, c.failed, c.dead
        ));
    }
    Ok(format!(
        "<table id=\"queues\" data-refresh=\"/board/counts\"><caption>As of {}; refreshed every 5 seconds.</caption>\
         <tr><th>queue</th><th>state</th><th class=\"num\">pending</th><th class=\"num\">running</th>\
         <th class=\"num\">scheduled</th><th class=\"num\">done</th><th class=\"num\">failed</th><th class=\"num\">dead</th></tr>{rows}</table>",
        kst(chrono::Utc::now())
    ))
}

async fn reviews_waiting(state: &AppState) -> Result<String, Failure> {
    let filter = RefundFilter {
        status: Some(RefundStatus::ManualReview),
        location_id: None,
    };
    let page = state
        .store
        .list_refunds(&filter, None, REVIEWS_COUNTED)
        .await?;
    let n = page.items.len();
    let more = if page.next.is_some() { "+" } else { "" };
    let text = match n {
        0 => "No refund waits for a person.".to_string(),
        1 => "1 refund waits for a person.".to_string(),
        n => format!("{n}{more} refunds wait for a person."),
    };
    Ok(format!(
        "<p id=\"reviews-waiting\"><a href=\"/board/reviews\">{}</a></p>",
        escape(&text)
    ))
}

/// Failed and dead jobs of every queue, each with a retry button.
async fn troubled(state: &AppState) -> Result<String, Failure> {
    let queues = state.store.queues();
    let mut rows = String::new();
    for queue in QUEUES {
        for status in [Status::Dead, Status::Failed] {
            for job in queues.list(queue, status, TROUBLED).await? {
                rows.push_str(&super::jobs::troubled_row(queue, &job));
            }
        }
    }
    if rows.is_empty() {
        return Ok("<h2>Failed and dead jobs</h2><p id=\"no-troubled\">None.</p>".into());
    }
    Ok(format!(
        "<h2>Failed and dead jobs</h2><table id=\"troubled\"><tr><th>queue</th><th>job</th><th>status</th>\
         <th>attempts</th><th>last error</th><th>updated</th><th></th></tr>{rows}</table>"
    ))
}

/// `/board/workers`: the live `serve` and `work` processes.
pub async fn workers(
    Board(operator): Board,
    State(state): State<AppState>,
) -> Result<Response, Failure> {
    let live = state.store.live_processes().await?;
    let mut rows = String::new();
    for p in &live {
        rows.push_str(&format!(
            "<tr class=\"worker\" data-id=\"{id}\"><td>{host}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{id}</td></tr>",
            p.pid,
            escape(&serde_json::to_value(p.kind).ok().and_then(|k| k.as_str().map(str::to_string)).unwrap_or_default()),
            escape(&p.queues.join(", ")),
            p.concurrency,
            p.in_flight,
            when(&p.started_at),
            when(&p.last_seen),
            id = escape(&p.id),
            host = escape(&p.host),
        ));
    }
    let body = if live.is_empty() {
        "<p id=\"no-workers\">No serve or work process is running: nothing runs the jobs.</p>"
            .to_string()
    } else {
        format!(
            "<table id=\"workers\"><tr><th>host</th><th class=\"num\">pid</th><th>kind</th><th>queues</th>\
             <th class=\"num\">concurrency</th><th class=\"num\">in flight</th><th>started</th><th>last seen</th><th>id</th></tr>{rows}</table>"
        )
    };
    Ok(page(&operator, "Workers", &body))
}
