//! One job: `/board/queues/{queue}/jobs/{job}` shows its arguments, attempts and each failed
//! attempt's error; retry runs it again; discard (dead jobs only) asks first on a page of its
//! own, and the POST does nothing without that page's `confirm=yes`.

use super::super::queues::{discard_job, queue_name, retry_job};
use super::super::AppState;
use super::pages::{enc, form, page, redirect_with, see_other, sentence, when_ms, Failure, Flash};
use super::Board;
use crate::html::escape;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use kakaopay_jobs::queue::inspect::JobInfo;

pub fn job_url(queue: &str, id: &str) -> String {
    format!("/board/queues/{}/jobs/{}", enc(queue), enc(id))
}

/// A retry button (dead jobs, and jobs waiting for their retry).
fn retry_button(action: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\"><button class=\"retry\" type=\"submit\">Retry</button></form>",
        escape(action)
    )
}

fn retryable(job: &JobInfo) -> bool {
    job.status == "dead" || job.status == "scheduled"
}

/// A failed or dead job on the overview, with its retry button.
pub fn troubled_row(queue: &str, job: &JobInfo) -> String {
    format!(
        "<tr class=\"job\" data-job=\"{id}\"><td>{queue}</td><td><a href=\"{url}\">{id}</a></td><td>{}</td>\
         <td class=\"num\">{} of {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        escape(&job.status),
        job.attempts,
        job.max_attempts,
        escape(job.last_error.as_deref().unwrap_or("")),
        when_ms(job.updated_at_ms),
        retry_button(&format!("/board/retry/{}/{}", enc(queue), enc(&job.id))),
        id = escape(&job.id),
        url = escape(&job_url(queue, &job.id)),
    )
}

/// A job in a queue's listing, with what can be done to it.
pub fn listed_row(queue: &str, job: &JobInfo) -> String {
    let url = job_url(queue, &job.id);
    let mut actions = String::new();
    if retryable(job) {
        actions.push_str(&retry_button(&format!("{url}/retry")));
    }
    if job.status == "dead" {
        actions.push_str(&format!(
            " <a class=\"discard\" href=\"{}\">Discard…</a>",
            escape(&format!("{url}/discard"))
        ));
    }
    format!(
        "<tr class=\"job\" data-job=\"{id}\"><td><a href=\"{url}\">{id}</a></td><td>{}</td><td class=\"num\">{} of {}</td>\
         <td>{}</td><td>{}</td><td>{}</td><td>{actions}</td></tr>",
        escape(&job.status),
        job.attempts,
        job.max_attempts,
        escape(job.last_error.as_deref().unwrap_or("")),
        when_ms(job.enqueued_at_ms),
        when_ms(job.updated_at_ms),
        id = escape(&job.id),
        url = escape(&url),
    )
}

async fn find(state: &AppState, queue: &str, id: &str) -> Result<(&'static str, JobInfo), Failure> {
    let queue = queue_name(queue)?;
    let job = state
        .store
        .queues()
        .job(queue, id)
        .await?
        .ok_or_else(|| super::super::error::ApiError::not_found("job"))?;
    Ok((queue, job))
}

pub async fn show(
    Board(operator): Board,
    State(state): State<AppState>,
    Path((queue, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Failure> {
    let query = super::super::query::Query::parse(raw.as_deref());
    let (queue, job) = find(&state, &queue, &id).await?;
    let mut body = super::pages::flash_html(&state, &operator, &query).await?;
    body.push_str(&facts(queue, &job));
    let url = job_url(queue, &job.id);
    if retryable(&job) {
        body.push_str(&retry_button(&format!("{url}/retry")));
    }
    if job.status == "dead" {
        body.push_str(&format!(
            " <a id=\"discard\" class=\"discard\" href=\"{}\">Discard this job…</a>",
            escape(&format!("{url}/discard"))
        ));
    }
    body.push_str(&format!(
        "<h2>Arguments</h2><pre id=\"args\">{}</pre>",
        escape(&serde_json::to_string_pretty(&job.args).unwrap_or_default())
    ));
    body.push_str(&errors(&job));
    Ok(page(&operator, &format!("Job {}", job.id), &body))
}

fn facts(queue: &str, job: &JobInfo) -> String {
    let optional = |ms: Option<u64>| ms.map(when_ms).unwrap_or_else(|| "-".into());
    format!(
        "<dl class=\"facts\" id=\"job\"><dt>queue</dt><dd><a href=\"/board/queues/{queue}\">{queue}</a></dd>\
         <dt>status</dt><dd id=\"status\">{}</dd><dt>attempts</dt><dd id=\"attempts\">{} of {}</dd>\
         <dt>last error</dt><dd>{}</dd><dt>enqueued</dt><dd>{}</dd><dt>runs at</dt><dd>{}</dd>\
         <dt>updated</dt><dd>{}</dd><dt>finished</dt><dd>{}</dd></dl>",
        escape(&job.status),
        job.attempts,
        job.max_attempts,
        escape(job.last_error.as_deref().unwrap_or("-")),
        when_ms(job.enqueued_at_ms),
        optional(job.run_at_ms),
        when_ms(job.updated_at_ms),
        optional(job.finished_at_ms),
    )
}

fn errors(job: &JobInfo) -> String {
    if job.errors.is_empty() {
        return "<h2>Failed attempts</h2><p>None.</p>".into();
    }
    let rows: String = job
        .errors
        .iter()
        .map(|e| {
            format!(
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                e.attempt,
                when_ms(e.at),
                escape(&e.error)
            )
        })
        .collect();
    format!(
        "<h2>Failed attempts</h2><table id=\"errors\"><tr><th>attempt</th><th>at</th><th>error</th></tr>{rows}</table>"
    )
}

async fn retry_to(
    state: &AppState,
    operator: &str,
    queue: &str,
    id: &str,
    back: &str,
) -> Result<Response, Failure> {
    let flash = match retry_job(state, queue, id, operator).await {
        Ok(_) => Flash::Done(format!("Job {id} is back in its queue.")),
        Err(e) if e.code == "not_retryable" => Flash::Refused(format!(
            "Job {id} is neither dead nor waiting for a retry; nothing was done."
        )),
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            Flash::Refused(format!("{} Nothing was done.", sentence(&e)))
        }
        Err(e) => return Err(e.into()),
    };
    redirect_with(state, operator, back, flash).await
}

/// The retry button of the overview's list: back to the overview.
pub async fn retry_from_overview(
    Board(operator): Board,
    State(state): State<AppState>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Response, Failure> {
    retry_to(&state, &operator, &queue, &id, "/board").await
}

pub async fn retry(
    Board(operator): Board,
    State(state): State<AppState>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let back = match queue_name(&queue) {
        Ok(q) => job_url(q, &id),
        Err(_) => "/board".to_string(),
    };
    retry_to(&state, &operator, &queue, &id, &back).await
}

/// The question before a discard.
pub async fn confirm_discard(
    Board(operator): Board,
    State(state): State<AppState>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let (queue, job) = find(&state, &queue, &id).await?;
    let url = job_url(queue, &job.id);
    let body = if job.status != "dead" {
        format!(
            "<p class=\"error\" id=\"error\">Job {} is {}, not dead: only a dead job can be discarded.</p>\
             <p><a href=\"{}\">Back to the job</a></p>",
            escape(&job.id),
            escape(&job.status),
            escape(&url)
        )
    } else {
        format!(
            "<div class=\"confirm\"><p id=\"question\">Discard dead job <b>{id}</b> of {queue}? Its record goes for good; \
             what it was for (a payment, a refund, an event) is not changed.</p>\
             <p>Last error: {}</p>\
             <form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"confirm\" value=\"yes\">\
             <button id=\"confirm\" type=\"submit\">Discard it</button> <a href=\"{back}\">Cancel</a></form></div>",
            escape(job.last_error.as_deref().unwrap_or("-")),
            id = escape(&job.id),
            action = escape(&format!("{url}/discard")),
            back = escape(&url),
        )
    };
    Ok(page(&operator, "Discard a dead job", &body))
}

/// Discards a dead job, once the confirmation page's form says so.
pub async fn discard(
    Board(operator): Board,
    State(state): State<AppState>,
    Path((queue, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Failure> {
    let queue = queue_name(&queue)?;
    let url = job_url(queue, &id);
    if form(&body).get("confirm") != Some("yes") {
        // Not confirmed: nothing is done; the question is asked.
        return Ok(see_other(&format!("{url}/discard")));
    }
    match discard_job(&state, queue, &id, &operator).await {
        Ok(()) => {
            let flash = Flash::Done(format!("Job {id} of {queue} was discarded."));
            redirect_with(
                &state,
                &operator,
                &format!("/board/queues/{queue}?status=dead"),
                flash,
            )
            .await
        }
        Err(e) if e.code == "job_not_dead" => {
            let flash = Flash::Refused(format!("Job {id} is not dead; nothing was discarded."));
            redirect_with(&state, &operator, &url, flash).await
        }
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            let flash = Flash::Refused(format!("{} Nothing was done.", sentence(&e)));
            redirect_with(&state, &operator, &format!("/board/queues/{queue}"), flash).await
        }
        Err(e) => Err(e.into()),
    }
}
