//! `kakaopay-worker queues`: the operator's view of the queues, read straight from Redis.
//!
//! - `queues`: a table of every queue's counts.
//! - `queues show NAME`: the queue's failed and dead jobs with their last errors.
//! - `queues retry NAME JOB_ID`: runs a dead job (or a waiting retry) again.

use crate::config::{QueuesAction, RedisArgs};
use anyhow::{bail, Context};
use kakaopay_jobs::queue::inspect::{self, JobInfo, RetryOutcome, Status};
use kakaopay_jobs::queue::{Connection, Purpose};
use kakaopay_jobs::QUEUES;

fn time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

fn print_jobs(title: &str, jobs: &[JobInfo]) {
    println!("{title} ({})", jobs.len());
    if jobs.is_empty() {
        println!("  none");
        return;
    }
    println!(
        "  {:<44} {:>8}  {:<19}  last error",
        "job id", "attempts", "updated (UTC)"
    );
    for j in jobs {
        let error: String = j
            .last_error
            .as_deref()
            .unwrap_or("-")
            .chars()
            .take(100)
            .collect();
        println!(
            "  {:<44} {:>3} of {:<2}  {:<19}  {}",
            j.id,
            j.attempts,
            j.max_attempts,
            time(j.updated_at_ms),
            error
        );
    }
}

pub async fn run(redis: RedisArgs, action: Option<QueuesAction>) -> anyhow::Result<()> {
    let topology = redis.topology();
    let conn = Connection::open(&topology, Purpose::Shared, redis.durability())
        .await
        .with_context(|| format!("cannot connect to Redis ({topology:?})"))?;
    let ns = redis.queue_namespace.as_str();
    let known = |name: &str| -> anyhow::Result<&'static str> {
        QUEUES
            .iter()
            .copied()
            .find(|q| *q == name)
            .with_context(|| format!("no queue {name:?}; the queues are {}", QUEUES.join(", ")))
    };
    match action {
        None => {
            println!(
                "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                "queue", "pending", "running", "scheduled", "done", "failed", "dead"
            );
            for name in QUEUES {
                let c = inspect::counts(&conn, ns, name).await?;
                println!(
                    "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    name, c.pending, c.running, c.scheduled, c.done, c.failed, c.dead
                );
            }
        }
        Some(QueuesAction::Show { name }) => {
            let name = known(&name)?;
            print_jobs(
                "failed, waiting for a retry",
                &inspect::list(&conn, ns, name, Status::Failed, 50).await?,
            );
            print_jobs(
                "dead",
                &inspect::list(&conn, ns, name, Status::Dead, 50).await?,
            );
        }
        Some(QueuesAction::Retry { name, job_id }) => {
            let name = known(&name)?;
            match inspect::retry(&conn, ns, name, &job_id).await? {
                RetryOutcome::Retried => println!("{job_id} is back in {name}"),
                RetryOutcome::NotRetryable => bail!("{job_id} is not dead or waiting for a retry"),
                RetryOutcome::NotFound => bail!("no job {job_id} in {name}"),
            }
        }
    }
    Ok(())
}
