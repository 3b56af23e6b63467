//! The queues (operators): exact counts, every state listed page by page, a job's detail with
//! each failed attempt, retrying one job or every dead one, discarding a dead job, pausing and
//! resuming; read from and done in the queue itself. What changes a queue is audited there
//! with the operator's name.

use super::auth::Admin;
use super::error::ApiError;
use super::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kakaopay_jobs::queue::inspect::{JobInfo, RetryOutcome, Status};
use kakaopay_jobs::queue::operate::DiscardOutcome;
use kakaopay_jobs::QUEUES;
use serde_json::{json, Value};
use std::collections::HashMap;

pub(super) fn queue_name(name: &str) -> Result<&'static str, ApiError> {
    QUEUES
        .iter()
        .copied()
        .find(|q| *q == name)
        .ok_or_else(|| ApiError::not_found("queue"))
}

fn time(ms: u64) -> Value {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

pub fn job_view(j: &JobInfo) -> Value {
    json!({
        "id": j.id,
        "queue": j.queue,
        "status": j.status,
        "attempts": j.attempts,
        "max_attempts": j.max_attempts,
        "last_error": j.last_error,
        "enqueued_at": time(j.enqueued_at_ms),
        "updated_at": time(j.updated_at_ms),
        "run_at": j.run_at_ms.map(time),
        "finished_at": j.finished_at_ms.map(time),
        "args": j.args,
        "errors": j.errors.iter().map(|e| json!({
            "attempt": e.attempt, "error": e.error, "at": time(e.at),
        })).collect::<Vec<_>>(),
    })
}

#[utoipa::path(get, path = "/v1/queues", tag = "queues",
    responses((status = 200, description = "Exact counts per queue: pending, running, scheduled, done, failed, dead")), security(("bearer" = [])))]
pub async fn list(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let queues = state.store.queues();
    let mut listed = Vec::new();
    for name in QUEUES {
        let c = queues.counts(name).await?;
        let paused = queues.is_paused(name).await?;
        listed.push(json!({
            "name": name, "pending": c.pending, "running": c.running, "scheduled": c.scheduled,
            "done": c.done, "failed": c.failed, "dead": c.dead, "paused": paused,
        }));
    }
    Ok(Json(json!({ "queues": listed })))
}

#[utoipa::path(get, path = "/v1/queues/{name}/jobs", tag = "queues",
    params(("name" = String, Path), ("status" = Option<String>, Query, description = "failed (default), dead, pending, running, scheduled, done"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the page before")),
    responses((status = 200, description = "Jobs with id, attempts, last_error, times, and next_cursor"), (status = 404, description = "Unknown queue")), security(("bearer" = [])))]
pub async fn jobs(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let name = queue_name(&name)?;
    // Parsed by hand: a malformed query is still answered in API.md's error body.
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let status: Status = query
        .get("status")
        .map(String::as_str)
        .unwrap_or("failed")
        .parse()
        .map_err(|e: kakaopay_jobs::queue::QueueError| {
            ApiError::invalid("status", e.to_string())
        })?;
    let limit = match query.get("limit") {
        None => 50,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError::invalid("limit", "limit must be 1 to 1000"))?,
    };
    let cursor = query
        .get("cursor")
        .filter(|c| !c.is_empty() && c.len() <= 300);
    if query.get("cursor").is_some_and(|c| !c.is_empty()) && cursor.is_none() {
        return Err(ApiError::invalid(
            "cursor",
            "cursor is not one this service answered",
        ));
    }
    let page = state
        .store
        .queues()
        .page(name, status, limit, cursor.map(String::as_str))
        .await
        .map_err(|e| match e {
            kakaopay_jobs::queue::QueueError::Invalid(m) => ApiError::invalid("cursor", m),
            other => other.into(),
        })?;
    Ok(Json(json!({
        "queue": name, "status": status,
        "jobs": page.jobs.iter().map(job_view).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor,
    })))
}

#[utoipa::path(get, path = "/v1/queues/{name}/jobs/{job_id}", tag = "queues", operation_id = "get_job",
    params(("name" = String, Path), ("job_id" = String, Path)),
    responses((status = 200, description = "The job: status, attempts, max_attempts, args, errors, times"), (status = 404, description = "Unknown queue or job")),
    security(("bearer" = [])))]
pub async fn job(
    _: Admin,
    State(state): State<AppState>,
    Path((name, job_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let name = queue_name(&name)?;
    let job = state
        .store
        .queues()
        .job(name, &job_id)
        .await?
        .ok_or_else(|| ApiError::not_found("job"))?;
    Ok(Json(job_view(&job)))
}

#[utoipa::path(delete, path = "/v1/queues/{name}/jobs/{job_id}", tag = "queues", operation_id = "discard_job",
    params(("name" = String, Path), ("job_id" = String, Path)),
    responses((status = 204, description = "Discarded, audited"), (status = 404, description = "Unknown queue or job"),
        (status = 409, description = "job_not_dead")),
    security(("bearer" = [])))]
pub async fn discard(
    Admin(operator): Admin,
    State(state): State<AppState>,
    Path((name, job_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    discard_job(&state, &name, &job_id, operator.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Discards a dead job for good, audited under `by` (the API's route and the board's form).
pub(super) async fn discard_job(
    state: &AppState,
    name: &str,
    job_id: &str,
    by: &str,
) -> Result<(), ApiError> {
    let name = queue_name(name)?;
    match state.store.queues().discard(name, job_id, by).await? {
        DiscardOutcome::Discarded => {
            tracing::info!(queue = name, job = %job_id, by, "operator discarded a dead job");
            Ok(())
        }
        DiscardOutcome::NotDead => Err(ApiError::conflict(
            "job_not_dead",
            "only a dead job can be discarded",
        )),
        DiscardOutcome::NotFound => Err(ApiError::not_found("job")),
    }
}

#[utoipa::path(post, path = "/v1/queues/{name}/retry-dead", tag = "queues", operation_id = "retry_dead_jobs",
    params(("name" = String, Path)),
    responses((status = 202, description = "retried: how many dead jobs went back to the queue"), (status = 404, description = "Unknown queue")),
    security(("bearer" = [])))]
pub async fn retry_dead(
    Admin(operator): Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (name, retried) = retry_dead_jobs(&state, &name, operator.as_str()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"queue": name, "retried": retried})),
    )
        .into_response())
}

/// Runs every dead job of a queue again, audited under `by`; answers how many went back.
pub(super) async fn retry_dead_jobs(
    state: &AppState,
    name: &str,
    by: &str,
) -> Result<(&'static str, u64), ApiError> {
    let name = queue_name(name)?;
    let retried = state.store.queues().retry_dead(name, by).await?;
    tracing::info!(queue = name, retried, by, "operator retried the dead jobs");
    Ok((name, retried))
}

/// Pauses or resumes a queue, audited under `by`; answers whether it changed.
pub(super) async fn set_paused(
    state: &AppState,
    name: &str,
    paused: bool,
    by: &str,
) -> Result<bool, ApiError> {
    let name = queue_name(name)?;
    let changed = state.store.queues().set_paused(name, paused, by).await?;
    if changed {
        tracing::info!(queue = name, paused, by, "operator changed a queue's pause");
    }
    Ok(changed)
}

#[utoipa::path(post, path = "/v1/queues/{name}/pause", tag = "queues", operation_id = "pause_queue",
    params(("name" = String, Path)),
    responses((status = 200, description = "Paused: no process starts a job of it (jobs in flight finish, enqueueing goes on)"), (status = 404, description = "Unknown queue")),
    security(("bearer" = [])))]
pub async fn pause(
    Admin(operator): Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(&state, &name, true, operator.as_str()).await?;
    Ok(Json(json!({"name": queue_name(&name)?, "paused": true})))
}

#[utoipa::path(post, path = "/v1/queues/{name}/resume", tag = "queues", operation_id = "resume_queue",
    params(("name" = String, Path)),
    responses((status = 200, description = "Running again"), (status = 404, description = "Unknown queue")),
    security(("bearer" = [])))]
pub async fn resume(
    Admin(operator): Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(&state, &name, false, operator.as_str()).await?;
    Ok(Json(json!({"name": queue_name(&name)?, "paused": false})))
}

#[utoipa::path(get, path = "/v1/workers", tag = "queues", operation_id = "list_workers",
    responses((status = 200, description = "The live serve and work processes")), security(("bearer" = [])))]
pub async fn workers(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let live = state.store.live_processes().await?;
    Ok(Json(json!({ "workers": live })))
}

#[utoipa::path(post, path = "/v1/queues/{name}/jobs/{job_id}/retry", tag = "queues", params(("name" = String, Path), ("job_id" = String, Path)),
    responses((status = 202, description = "Back in the queue"), (status = 404, description = "Unknown queue or job"), (status = 409, description = "Not dead or waiting")),
    security(("bearer" = [])))]
pub async fn retry(
    Admin(operator): Admin,
    State(state): State<AppState>,
    Path((name, job_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let name = retry_job(&state, &name, &job_id, operator.as_str()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": job_id, "queue": name, "status": "pending"})),
    )
        .into_response())
}

/// Runs a dead job, or one waiting for its retry, again now (the API's route and the board's
/// button); answers the queue's name.
pub(super) async fn retry_job(
    state: &AppState,
    name: &str,
    job_id: &str,
    by: &str,
) -> Result<&'static str, ApiError> {
    let name = queue_name(name)?;
    match state.store.queues().retry(name, job_id).await? {
        RetryOutcome::Retried => {
            tracing::info!(queue = name, job = %job_id, by, "operator retried a job");
            Ok(name)
        }
        RetryOutcome::NotRetryable => Err(ApiError::conflict(
            "not_retryable",
            "only dead jobs and jobs waiting for a retry can be retried",
        )),
        RetryOutcome::NotFound => Err(ApiError::not_found("job")),
    }
}
