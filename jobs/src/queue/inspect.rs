//! What operators see and do: exact counts per queue, jobs by status, retrying a dead job.

use super::Connection;
use super::{invocation, scripts, Keys, QueueError, GROUP};
use serde::Serialize;
use std::collections::HashMap;

/// Exact counts of one queue, read in one atomic step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Waiting for a worker.
    pub pending: u64,
    /// Delivered to a worker that holds its lease (or held it until the lease runs out).
    pub running: u64,
    /// Waiting for a retry or a delayed start.
    pub scheduled: u64,
    /// Finished, within retention.
    pub done: u64,
    /// Failed at least once and not finished yet (also counted as scheduled, pending or running).
    pub failed: u64,
    /// Out of attempts or failed for good; waiting for an operator.
    pub dead: u64,
}

pub async fn counts(conn: &Connection, namespace: &str, queue: &str) -> Result<Counts, QueueError> {
    let keys = Keys::new(namespace, queue);
    let mut inv = invocation(&scripts::COUNTS, &keys);
    inv.arg(GROUP);
    let c: [u64; 6] = inv.run_nowait(conn).await?;
    Ok(Counts {
        pending: c[0],
        running: c[1],
        scheduled: c[2],
        done: c[3],
        failed: c[4],
        dead: c[5],
    })
}

/// The statuses a job can be listed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Running,
    Scheduled,
    Done,
    Failed,
    Dead,
}

impl std::str::FromStr for Status {
    type Err = QueueError;
    fn from_str(s: &str) -> Result<Self, QueueError> {
        Ok(match s {
            "pending" => Status::Pending,
            "running" => Status::Running,
            "scheduled" => Status::Scheduled,
            "done" => Status::Done,
            "failed" => Status::Failed,
            "dead" => Status::Dead,
            other => {
                return Err(QueueError::Invalid(format!(
                "status must be pending, running, scheduled, done, failed or dead; got {other:?}"
            )))
            }
        })
    }
}

/// One job as operators see it. Arguments are ids only, so showing them reveals nothing secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobInfo {
    pub id: String,
    pub queue: String,
    /// pending, running, scheduled, done or dead.
    pub status: String,
    pub attempts: u32,
    pub max_attempts: u32,
    pub last_error: Option<String>,
    /// Milliseconds since the Unix epoch (Redis's clock).
    pub enqueued_at_ms: u64,
    pub updated_at_ms: u64,
    pub run_at_ms: Option<u64>,
    /// When it ended (done or dead), on Redis's clock.
    pub finished_at_ms: Option<u64>,
    pub args: serde_json::Value,
    /// Each failed attempt (the last 20), oldest first.
    pub errors: Vec<AttemptError>,
}

/// One failed attempt of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AttemptError {
    /// Milliseconds since the Unix epoch (Redis's clock).
    pub at: u64,
    pub attempt: u32,
    pub error: String,
}

fn job_info(queue: &str, id: &str, record: &HashMap<String, Vec<u8>>) -> Option<JobInfo> {
    if record.is_empty() {
        return None;
    }
    let text = |k: &str| {
        record
            .get(k)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let num = |k: &str| text(k).and_then(|v| v.parse::<u64>().ok());
    Some(JobInfo {
        id: id.to_string(),
        queue: queue.to_string(),
        status: text("status").unwrap_or_default(),
        attempts: num("attempts").unwrap_or(0) as u32,
        max_attempts: num("max_attempts").unwrap_or(0) as u32,
        last_error: text("last_error").filter(|e| !e.is_empty()),
        enqueued_at_ms: num("enqueued_at").unwrap_or(0),
        updated_at_ms: num("updated_at").unwrap_or(0),
        run_at_ms: num("run_at"),
        finished_at_ms: match text("status").as_deref() {
            Some("done") | Some("dead") => num("updated_at"),
            _ => None,
        },
        errors: record
            .get("errors")
            .and_then(|e| serde_json::from_slice(e).ok())
            .unwrap_or_default(),
        args: record
            .get("args")
            .and_then(|a| serde_json::from_slice(a).ok())
            .unwrap_or(serde_json::Value::Null),
    })
}

pub(super) async fn load(
    conn: &mut Connection,
    keys: &Keys,
    queue: &str,
    ids: &[String],
) -> Result<Vec<JobInfo>, QueueError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.hgetall(keys.job(id));
    }
    let records: Vec<HashMap<String, Vec<u8>>> = pipe.query_async(conn).await?;
    Ok(ids
        .iter()
        .zip(&records)
        .filter_map(|(id, r)| job_info(queue, id, r))
        .collect())
}

/// Jobs of one status, most recent first, at most `limit`.
pub async fn list(
    conn: &Connection,
    namespace: &str,
    queue: &str,
    status: Status,
    limit: usize,
) -> Result<Vec<JobInfo>, QueueError> {
    let keys = Keys::new(namespace, queue);
    let mut conn = conn.clone();
    let limit = limit.clamp(1, 1000);
    let ids = match status {
        Status::Done => done_ids(&mut conn, &keys, limit).await?,
        Status::Scheduled => newest_in(&mut conn, &keys.scheduled, limit).await?,
        Status::Failed => newest_in(&mut conn, &keys.failed, limit).await?,
        Status::Dead => newest_in(&mut conn, &keys.dead, limit).await?,
        Status::Pending => pending_ids(&mut conn, &keys, limit).await?,
        Status::Running => running_ids(&mut conn, &keys, limit).await?,
    };
    load(&mut conn, &keys, queue, &ids).await
}

/// The newest `limit` ids of the done list, whose items are `finished_at:id`.
async fn done_ids(
    conn: &mut Connection,
    keys: &Keys,
    limit: usize,
) -> Result<Vec<String>, QueueError> {
    let items: Vec<String> = redis::cmd("LRANGE")
        .arg(&keys.done)
        .arg(0)
        .arg(limit as i64 - 1)
        .query_async(conn)
        .await?;
    Ok(items
        .iter()
        .filter_map(|item| item.split_once(':').map(|(_, id)| id.to_string()))
        .collect())
}

/// The `limit` ids of highest score in one of the sorted sets.
async fn newest_in(
    conn: &mut Connection,
    set: &str,
    limit: usize,
) -> Result<Vec<String>, QueueError> {
    Ok(redis::cmd("ZREVRANGE")
        .arg(set)
        .arg(0)
        .arg(limit as i64 - 1)
        .query_async(conn)
        .await?)
}

/// Pending jobs are the stream's entries not yet delivered to the group, oldest first.
async fn pending_ids(
    conn: &mut Connection,
    keys: &Keys,
    limit: usize,
) -> Result<Vec<String>, QueueError> {
    let Some(last) = last_delivered(conn, keys).await? else {
        return Ok(Vec::new());
    };
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&keys.stream)
        .arg(format!("({last}"))
        .arg("+")
        .arg("COUNT")
        .arg(limit)
        .query_async(conn)
        .await?;
    Ok(entries
        .ids
        .iter()
        .filter_map(|e| e.get::<String>("id"))
        .collect())
}

/// Running jobs are the entries delivered to the group and not acknowledged, oldest first.
/// The group's pending list names only the entries, so each is read for its job id.
async fn running_ids(
    conn: &mut Connection,
    keys: &Keys,
    limit: usize,
) -> Result<Vec<String>, QueueError> {
    let pending: redis::streams::StreamPendingCountReply = match redis::cmd("XPENDING")
        .arg(&keys.stream)
        .arg(GROUP)
        .arg("-")
        .arg("+")
        .arg(limit)
        .query_async(conn)
        .await
    {
        Ok(p) => p,
        Err(e) if no_stream(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    if pending.ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for entry in &pending.ids {
        pipe.cmd("XRANGE")
            .arg(&keys.stream)
            .arg(&entry.id)
            .arg(&entry.id);
    }
    let ranges: Vec<redis::streams::StreamRangeReply> = pipe.query_async(conn).await?;
    Ok(ranges
        .iter()
        .filter_map(|r| r.ids.first()?.get::<String>("id"))
        .collect())
}

/// The id of the last entry delivered to the group; `None` before the stream or the group
/// exists.
pub(super) async fn last_delivered(
    conn: &mut Connection,
    keys: &Keys,
) -> Result<Option<String>, QueueError> {
    let groups: redis::streams::StreamInfoGroupsReply = match redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&keys.stream)
        .query_async(conn)
        .await
    {
        Ok(g) => g,
        Err(e) if no_stream(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(groups
        .groups
        .into_iter()
        .find(|g| g.name == GROUP)
        .map(|g| g.last_delivered_id))
}

/// The errors Redis answers about a stream or group that does not exist yet.
pub(super) fn no_stream(e: &redis::RedisError) -> bool {
    e.code().is_some_and(|c| c == "NOGROUP" || c == "ERR")
}

pub async fn job(
    conn: &Connection,
    namespace: &str,
    queue: &str,
    id: &str,
) -> Result<Option<JobInfo>, QueueError> {
    let keys = Keys::new(namespace, queue);
    let mut jobs = load(&mut conn.clone(), &keys, queue, &[id.to_string()]).await?;
    Ok(jobs.pop())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOutcome {
    /// Back in the queue: a dead job with a fresh set of attempts, or a waiting retry now.
    Retried,
    /// The job exists but is pending, running or done.
    NotRetryable,
    NotFound,
}

/// An operator's retry of a dead job (or of one waiting for its next attempt).
pub async fn retry(
    conn: &Connection,
    namespace: &str,
    queue: &str,
    id: &str,
) -> Result<RetryOutcome, QueueError> {
    let keys = Keys::new(namespace, queue);
    let mut inv = invocation(&scripts::RETRY, &keys);
    inv.arg(GROUP).arg(id).key(keys.job(id));
    let answer: String = inv.run(conn).await?;
    Ok(match answer.as_str() {
        "retried" => RetryOutcome::Retried,
        "not_retryable" => RetryOutcome::NotRetryable,
        _ => RetryOutcome::NotFound,
    })
}

/// Hands back to the queue every job a stopped worker (a consumer) still holds.
pub async fn release(
    conn: &Connection,
    namespace: &str,
    queue: &str,
    consumer: &str,
) -> Result<u64, QueueError> {
    super::backend::release(conn, &Keys::new(namespace, queue), consumer).await
}

/// How long the oldest job waiting for a worker has waited (its stream entry's age, on
/// Redis's clock); `None` when none waits.
pub async fn oldest_pending_age(
    conn: &Connection,
    namespace: &str,
    queue: &str,
) -> Result<Option<std::time::Duration>, QueueError> {
    let keys = Keys::new(namespace, queue);
    let mut conn = conn.clone();
    let Some(last) = last_delivered(&mut conn, &keys).await? else {
        return Ok(None);
    };
    let (first, (now_s, now_us)): (redis::streams::StreamRangeReply, (u64, u64)) = redis::pipe()
        .cmd("XRANGE")
        .arg(&keys.stream)
        .arg(format!("({last}"))
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .cmd("TIME")
        .query_async(&mut conn)
        .await?;
    let now_ms = now_s * 1000 + now_us / 1000;
    Ok(first.ids.first().and_then(|e| {
        let ms: u64 = e.id.split_once('-')?.0.parse().ok()?;
        Some(std::time::Duration::from_millis(now_ms.saturating_sub(ms)))
    }))
}
