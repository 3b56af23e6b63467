//! What operators do to a queue besides retrying one job: pause and resume it, discard a dead
//! job, retry every dead job at once, and the retention that drops dead jobs nobody looked at.
//! Each change is one script on the queue's slot, with its entry in the queue's audit list
//! (who, what, when), so that what operators did is on record next to what it did to.

use super::{invocation, millis, scripts, Connection, Keys, QueueError, GROUP};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One thing an operator did to a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339, UTC.
    pub at: String,
    pub by: String,
    /// `pause`, `resume`, `discard`, `retry_dead`.
    pub action: String,
    /// The job it was about, or how many jobs.
    pub subject: String,
}

impl AuditEntry {
    fn new(by: &str, action: &str, subject: impl Into<String>) -> AuditEntry {
        AuditEntry {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            by: by.to_string(),
            action: action.to_string(),
            subject: subject.into(),
        }
    }

    fn json(&self) -> String {
        serde_json::to_string(self).expect("audit entries serialize")
    }
}

/// Pauses (`true`) or resumes a queue: every process's workers of it start no new job while
/// the flag is in Redis (they look every 250 ms). Answers whether it changed.
pub async fn set_paused(
    conn: &Connection,
    namespace: &str,
    queue: &str,
    paused: bool,
    by: &str,
) -> Result<bool, QueueError> {
    let keys = Keys::new(namespace, queue);
    let action = if paused { "pause" } else { "resume" };
    let entry = AuditEntry::new(by, action, queue);
    let mut inv = invocation(&scripts::PAUSE, &keys);
    inv.key(&keys.paused)
        .key(&keys.audit)
        .arg(if paused { "1" } else { "0" })
        .arg(entry.json())
        .arg(entry.json());
    let changed: i64 = inv.run(conn).await?;
    Ok(changed == 1)
}

pub async fn is_paused(
    conn: &Connection,
    namespace: &str,
    queue: &str,
) -> Result<bool, QueueError> {
    let keys = Keys::new(namespace, queue);
    let paused: bool = redis::cmd("EXISTS")
        .arg(&keys.paused)
        .query_async(&mut conn.clone())
        .await?;
    Ok(paused)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscardOutcome {
    Discarded,
    /// The job exists and is not dead.
    NotDead,
    NotFound,
}

/// Discards a dead job and its record, for good.
pub async fn discard(
    conn: &Connection,
    namespace: &str,
    queue: &str,
    id: &str,
    by: &str,
) -> Result<DiscardOutcome, QueueError> {
    let keys = Keys::new(namespace, queue);
    let mut inv = invocation(&scripts::DISCARD, &keys);
    inv.key(keys.job(id))
        .key(&keys.audit)
        .arg(id)
        .arg(AuditEntry::new(by, "discard", id).json());
    let answer: String = inv.run(conn).await?;
    Ok(match answer.as_str() {
        "discarded" => DiscardOutcome::Discarded,
        "not_dead" => DiscardOutcome::NotDead,
        _ => DiscardOutcome::NotFound,
    })
}

/// Dead jobs handled per script call.
const CHUNK: usize = 200;

/// Runs every job dead now again with a fresh set of attempts; answers how many. Jobs that die
/// while it runs may be retried too; it stops once it has handled as many as were dead.
pub async fn retry_dead(
    conn: &Connection,
    namespace: &str,
    queue: &str,
    by: &str,
) -> Result<u64, QueueError> {
    let keys = Keys::new(namespace, queue);
    let mut c = conn.clone();
    let dead_now: u64 = redis::cmd("ZCARD")
        .arg(&keys.dead)
        .query_async(&mut c)
        .await?;
    let (mut retried, mut handled) = (0u64, 0u64);
    while handled < dead_now {
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&keys.dead)
            .arg(0)
            .arg(CHUNK as i64 - 1)
            .query_async(&mut c)
            .await?;
        if ids.is_empty() {
            break;
        }
        let mut inv = invocation(&scripts::RETRY_DEAD, &keys);
        inv.arg(GROUP)
            .arg(AuditEntry::new(by, "retry_dead", format!("{} jobs", ids.len())).json());
        for id in &ids {
            inv.arg(id).key(keys.job(id));
        }
        inv.key(&keys.audit);
        let (r, d): (u64, u64) = inv.run(conn).await?;
        // Ids another operator's retry took meanwhile count as handled too (`r + d` short of
        // `ids`): the loop ends after as many as were dead, whatever happened to them.
        let _ = d;
        retried += r;
        handled += ids.len() as u64;
    }
    Ok(retried)
}

/// Drops dead jobs older than `max_age` (`DEAD_RETENTION_DAYS`) with their records; answers
/// how many went. A bounded amount per call: it runs periodically.
pub async fn drop_expired_dead(
    conn: &Connection,
    namespace: &str,
    queue: &str,
    max_age: Duration,
) -> Result<u64, QueueError> {
    let keys = Keys::new(namespace, queue);
    let mut c = conn.clone();
    let mut dropped = 0;
    for _ in 0..10 {
        // Scores are Redis's clock; the script checks each against it again.
        let (now_s, _): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await?;
        let cutoff = (now_s * 1000).saturating_sub(millis(max_age));
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&keys.dead)
            .arg("-inf")
            .arg(cutoff)
            .arg("LIMIT")
            .arg(0)
            .arg(CHUNK)
            .query_async(&mut c)
            .await?;
        if ids.is_empty() {
            break;
        }
        let mut inv = invocation(&scripts::DROP_DEAD, &keys);
        inv.arg(millis(max_age));
        for id in &ids {
            inv.arg(id).key(keys.job(id));
        }
        let n: u64 = inv.run(conn).await?;
        dropped += n;
        if n == 0 {
            break;
        }
    }
    Ok(dropped)
}

/// The queue's audit list, newest first, at most `limit`.
pub async fn audit(
    conn: &Connection,
    namespace: &str,
    queue: &str,
    limit: usize,
) -> Result<Vec<AuditEntry>, QueueError> {
    let keys = Keys::new(namespace, queue);
    let raw: Vec<String> = redis::cmd("LRANGE")
        .arg(&keys.audit)
        .arg(0)
        .arg(limit.max(1) as i64 - 1)
        .query_async(&mut conn.clone())
        .await?;
    Ok(raw
        .iter()
        .filter_map(|r| serde_json::from_str(r).ok())
        .collect())
}
