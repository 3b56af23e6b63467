//! One queue: `/board/queues/{queue}` shows its counts and whether it is paused, its charts,
//! its jobs of one state page by page, and what operators last did to it; pause, resume and
//! retry-every-dead-job are POSTs (the last asks first, on a page of its own).

use super::super::error::ApiError;
use super::super::query::Query;
use super::super::queues::{queue_name, retry_dead_jobs, set_paused};
use super::super::AppState;
use super::pages::{
    flash_html, form, listed, next_link, page, page_with, redirect_with, see_other, when, Failure,
    Flash,
};
use super::Board;
use crate::html::escape;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use kakaopay_jobs::queue::inspect::{Counts, Status};

/// Jobs listed per page.
const PAGE: usize = 50;
const STATUSES: [&str; 6] = ["pending", "running", "scheduled", "done", "failed", "dead"];

fn count_of(c: &Counts, status: &str) -> u64 {
    match status {
        "pending" => c.pending,
        "running" => c.running,
        "scheduled" => c.scheduled,
        "done" => c.done,
        "failed" => c.failed,
        _ => c.dead,
    }
}

pub async fn show(
    Board(operator): Board,
    State(state): State<AppState>,
    Path(queue): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Failure> {
    let queue = queue_name(&queue)?;
    let query = Query::parse(raw.as_deref());
    let queues = state.store.queues();
    let counts = queues.counts(queue).await?;
    let paused = queues.is_paused(queue).await?;
    let mut body = flash_html(&state, &operator, &query).await?;
    body.push_str(&steering(queue, paused, counts.dead));
    body.push_str(&charts(&state, queue, &query).await?);
    let (status, listing) = listed(listing(&state, queue, &counts, &query).await)?;
    body.push_str(&listing);
    body.push_str(&audit(&state, queue).await?);
    Ok(page_with(status, &operator, queue, &body))
}

/// Paused or running, the button that changes it, and the way to retry every dead job.
fn steering(queue: &str, paused: bool, dead: u64) -> String {
    let (said, action, button) = if paused {
        (
            "<p id=\"paused\" class=\"paused\">Paused: no process starts a job of this queue (jobs in flight finish; enqueueing goes on).</p>",
            "resume",
            "Resume",
        )
    } else {
        ("<p id=\"running\">Running.</p>", "pause", "Pause")
    };
    let retry_dead = if dead > 0 {
        format!(
            " <a id=\"retry-dead\" href=\"/board/queues/{queue}/retry-dead\">Retry all {dead} dead jobs…</a>"
        )
    } else {
        String::new()
    };
    format!(
        "{said}<form method=\"post\" action=\"/board/queues/{queue}/{action}\" class=\"inline\">\
         <button id=\"{action}\" type=\"submit\">{button} {queue}</button></form>{retry_dead}"
    )
}

/// The charts over the window the query asks for (1 to 24 hours, 3 by default).
async fn charts(state: &AppState, queue: &str, query: &Query) -> Result<String, Failure> {
    let hours = query
        .get("hours")
        .and_then(|h| h.parse::<usize>().ok())
        .filter(|h| (1..=24).contains(h))
        .unwrap_or(3);
    let queues = state.store.queues();
    // This page's own sample, so that an api process's board shows the wait as of now.
    queues.sample_oldest_pending(queue).await?;
    let minutes = queues.last_minutes(queue, hours * 60).await?;
    let windows: String = [1, 3, 12, 24]
        .iter()
        .map(|h| {
            let class = if *h == hours {
                " class=\"current\""
            } else {
                ""
            };
            format!("<a{class} href=\"/board/queues/{queue}?hours={h}\">{h} h</a>")
        })
        .collect();
    Ok(format!(
        "<h2>Charts</h2><p class=\"tabs\">{windows}</p><div id=\"charts\">{}</div>",
        super::charts::queue_charts(&minutes)
    ))
}

/// One page of the jobs of the state the query asks for (dead by default).
async fn listing(
    state: &AppState,
    queue: &'static str,
    counts: &Counts,
    query: &Query,
) -> Result<String, Failure> {
    let status_name = query.get("status").unwrap_or("dead");
    let status: Status = status_name
        .parse()
        .map_err(|e: kakaopay_jobs::queue::QueueError| {
            ApiError::invalid("status", e.to_string())
        })?;
    let tabs: String = STATUSES
        .iter()
        .map(|s| {
            let class = if *s == status_name {
                " class=\"current\""
            } else {
                ""
            };
            format!(
                "<a{class} id=\"tab-{s}\" href=\"/board/queues/{queue}?status={s}\">{s} ({})</a>",
                count_of(counts, s)
            )
        })
        .collect();
    let cursor = query.get("cursor");
    let page = state
        .store
        .queues()
        .page(queue, status, PAGE, cursor)
        .await
        .map_err(|e| match e {
            kakaopay_jobs::queue::QueueError::Invalid(m) => ApiError::invalid("cursor", m),
            other => other.into(),
        })?;
    let rows: String = page
        .jobs
        .iter()
        .map(|j| super::jobs::listed_row(queue, j))
        .collect();
    let table = if rows.is_empty() {
        format!("<p id=\"no-jobs\">No {status_name} jobs.</p>")
    } else {
        format!(
            "<table id=\"jobs\"><tr><th>job</th><th>status</th><th>attempts</th><th>last error</th>\
             <th>enqueued</th><th>updated</th><th></th></tr>{rows}</table>"
        )
    };
    let base = format!("/board/queues/{queue}?status={status_name}");
    Ok(format!(
        "<h2>Jobs</h2><p class=\"tabs\">{tabs}</p>{table}{}",
        next_link(&base, page.next_cursor.as_deref())
    ))
}

async fn audit(state: &AppState, queue: &str) -> Result<String, Failure> {
    let entries = state.store.queues().audit(queue, 20).await?;
    if entries.is_empty() {
        return Ok(String::new());
    }
    let rows: String = entries
        .iter()
        .map(|e| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                when(&e.at),
                escape(&e.by),
                escape(&e.action),
                escape(&e.subject)
            )
        })
        .collect();
    Ok(format!(
        "<h2>What operators did</h2><table id=\"audit\"><tr><th>at</th><th>by</th><th>action</th><th>subject</th></tr>{rows}</table>"
    ))
}

async fn pause_to(
    state: &AppState,
    operator: &str,
    queue: &str,
    paused: bool,
) -> Result<Response, Failure> {
    let queue = queue_name(queue)?;
    let changed = set_paused(state, queue, paused, operator).await?;
    let text = match (paused, changed) {
        (true, true) => {
            format!("{queue} is paused: no process starts its jobs; jobs in flight finish.")
        }
        (true, false) => format!("{queue} was paused already."),
        (false, true) => format!("{queue} runs again."),
        (false, false) => format!("{queue} was running already."),
    };
    redirect_with(
        state,
        operator,
        &format!("/board/queues/{queue}"),
        Flash::Done(text),
    )
    .await
}

pub async fn pause(
    Board(operator): Board,
    State(state): State<AppState>,
    Path(queue): Path<String>,
) -> Result<Response, Failure> {
    pause_to(&state, &operator, &queue, true).await
}

pub async fn resume(
    Board(operator): Board,
    State(state): State<AppState>,
    Path(queue): Path<String>,
) -> Result<Response, Failure> {
    pause_to(&state, &operator, &queue, false).await
}

/// The question before every dead job of a queue runs again.
pub async fn confirm_retry_dead(
    Board(operator): Board,
    State(state): State<AppState>,
    Path(queue): Path<String>,
) -> Result<Response, Failure> {
    let queue = queue_name(&queue)?;
    let counts = state.store.queues().counts(queue).await?;
    let body = if counts.dead == 0 {
        format!(
            "<p id=\"question\">{queue} has no dead job.</p><p><a href=\"/board/queues/{queue}\">Back to {queue}</a></p>"
        )
    } else {
        let jobs = if counts.dead == 1 { "job" } else { "jobs" };
        format!(
            "<div class=\"confirm\"><p id=\"question\">Retry {n} dead {jobs} of {queue}? Each runs again with a fresh set of attempts.</p>\
             <form method=\"post\" action=\"/board/queues/{queue}/retry-dead\"><input type=\"hidden\" name=\"confirm\" value=\"yes\">\
             <button id=\"confirm\" type=\"submit\">Retry {n} dead {jobs}</button> <a href=\"/board/queues/{queue}\">Cancel</a></form></div>",
            n = counts.dead,
        )
    };
    Ok(page(&operator, "Retry every dead job", &body))
}

/// Runs every dead job again, once the confirmation page's form says so.
pub async fn retry_dead(
    Board(operator): Board,
    State(state): State<AppState>,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let queue = queue_name(&queue)?;
    if form(&body).get("confirm") != Some("yes") {
        // Not confirmed: nothing is done; the question is asked.
        return Ok(see_other(&format!("/board/queues/{queue}/retry-dead")));
    }
    let (_, retried) = retry_dead_jobs(&state, queue, &operator).await?;
    let text = match retried {
        0 => format!("{queue} had no dead job left to retry."),
        1 => format!("1 dead job of {queue} is back in the queue."),
        n => format!("{n} dead jobs of {queue} are back in the queue."),
    };
    redirect_with(
        &state,
        &operator,
        &format!("/board/queues/{queue}?status=pending"),
        Flash::Done(text),
    )
    .await
}
