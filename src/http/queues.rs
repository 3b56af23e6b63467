//! `GET /v1/queues`, `GET /v1/queues/{name}/jobs`, `POST /v1/queues/{name}/jobs/{job_id}/retry`
//! (operators): exact counts and the jobs behind them, read from the queue itself.

use super::auth::Admin;
use super::error::ApiError;
use super::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kakaopay_jobs::queue::inspect::{self, JobInfo, RetryOutcome, Status};
use kakaopay_jobs::QUEUES;
use serde_json::{json, Value};
use std::collections::HashMap;

fn queue_name(name: &str) -> Result<&'static str, ApiError> {
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
        "args": j.args,
    })
}

#[utoipa::path(get, path = "/v1/queues", tag = "queues",
    responses((status = 200, description = "Exact counts per queue: pending, running, scheduled, done, failed, dead")), security(("bearer" = [])))]
pub async fn list(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let conn = state.store.connection();
    let mut queues = Vec::new();
    for name in QUEUES {
        let c = inspect::counts(&conn, state.store.namespace(), name).await?;
        queues.push(json!({
            "name": name, "pending": c.pending, "running": c.running, "scheduled": c.scheduled,
            "done": c.done, "failed": c.failed, "dead": c.dead,
        }));
    }
    Ok(Json(json!({ "queues": queues })))
}

#[utoipa::path(get, path = "/v1/queues/{name}/jobs", tag = "queues",
    params(("name" = String, Path), ("status" = Option<String>, Query, description = "failed (default), dead, pending, running, scheduled, done"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 50")),
    responses((status = 200, description = "Jobs with id, attempts, last_error, times"), (status = 404, description = "Unknown queue")), security(("bearer" = [])))]
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
    let jobs = inspect::list(
        &state.store.connection(),
        state.store.namespace(),
        name,
        status,
        limit,
    )
    .await?;
    Ok(Json(
        json!({ "queue": name, "status": status, "jobs": jobs.iter().map(job_view).collect::<Vec<_>>() }),
    ))
}

#[utoipa::path(post, path = "/v1/queues/{name}/jobs/{job_id}/retry", tag = "queues", params(("name" = String, Path), ("job_id" = String, Path)),
    responses((status = 202, description = "Back in the queue"), (status = 404, description = "Unknown queue or job"), (status = 409, description = "Not dead or waiting")),
    security(("bearer" = [])))]
pub async fn retry(
    _: Admin,
    State(state): State<AppState>,
    Path((name, job_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let name = queue_name(&name)?;
    match inspect::retry(
        &state.store.connection(),
        state.store.namespace(),
        name,
        &job_id,
    )
    .await?
    {
        RetryOutcome::Retried => {
            tracing::info!(queue = name, job = %job_id, "operator retried a job");
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"id": job_id, "queue": name, "status": "pending"})),
            )
                .into_response())
        }
        RetryOutcome::NotRetryable => Err(ApiError::conflict(
            "not_retryable",
            "only dead jobs and jobs waiting for a retry can be retried",
        )),
        RetryOutcome::NotFound => Err(ApiError::not_found("job")),
    }
}
