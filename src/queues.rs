//! `kakaopay-worker queues`: the operator's view of the queues, read straight from Redis.
//!
//! - `queues`: a table of every queue's counts.
//! - `queues show NAME`: the queue's failed and dead jobs with their last errors.
//! - `queues retry NAME JOB_ID`: runs a dead job (or a waiting retry) again.
//! - `queues job NAME JOB_ID`: one job with each failed attempt.
//! - `queues retry-dead NAME`, `queues discard NAME JOB_ID`, `queues pause|resume NAME`:
//!   audited in the queue under `--by` (`OPERATOR_NAME`).

use crate::config::{QueuesAction, RedisArgs};
use anyhow::{bail, Context};
use kakaopay_jobs::queue::inspect::{JobInfo, RetryOutcome, Status};
use kakaopay_jobs::queue::operate::DiscardOutcome;
use kakaopay_jobs::queue::{Connection, Purpose, Queues};
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

fn print_job(j: &JobInfo) {
    let at = |ms: Option<u64>| ms.map_or_else(|| "-".to_string(), time);
    println!("job       {}", j.id);
    println!("queue     {}", j.queue);
    println!("status    {}", j.status);
    println!("attempts  {} of {}", j.attempts, j.max_attempts);
    println!("enqueued  {} UTC", time(j.enqueued_at_ms));
    println!("run at    {}", at(j.run_at_ms));
    println!("finished  {}", at(j.finished_at_ms));
    println!("args      {}", j.args);
    println!("errors ({})", j.errors.len());
    for e in &j.errors {
        println!("  attempt {:>2}  {}  {}", e.attempt, time(e.at), e.error);
    }
}

/// The queue an operator named, if there is one by that name.
fn known(name: &str) -> anyhow::Result<&'static str> {
    QUEUES
        .iter()
        .copied()
        .find(|q| *q == name)
        .with_context(|| format!("no queue {name:?}; the queues are {}", QUEUES.join(", ")))
}

async fn print_counts(queues: &Queues) -> anyhow::Result<()> {
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "queue", "pending", "running", "scheduled", "done", "failed", "dead"
    );
    for name in QUEUES {
        let c = queues.counts(name).await?;
        println!(
            "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            name, c.pending, c.running, c.scheduled, c.done, c.failed, c.dead
        );
    }
    Ok(())
}

pub async fn run(redis: RedisArgs, action: Option<QueuesAction>) -> anyhow::Result<()> {
    let topology = redis.topology();
    let conn = Connection::open(&topology, Purpose::Shared, redis.durability())
        .await
        .with_context(|| format!("cannot connect to Redis ({topology:?})"))?;
    let queues = Queues::new(conn, redis.queue_namespace.as_str());
    match action {
        None => print_counts(&queues).await?,
        Some(QueuesAction::Show { name }) => {
            let name = known(&name)?;
            print_jobs(
                "failed, waiting for a retry",
                &queues.list(name, Status::Failed, 50).await?,
            );
            print_jobs("dead", &queues.list(name, Status::Dead, 50).await?);
        }
        Some(QueuesAction::Retry { name, job_id }) => {
            let name = known(&name)?;
            match queues.retry(name, &job_id).await? {
                RetryOutcome::Retried => println!("{job_id} is back in {name}"),
                RetryOutcome::NotRetryable => bail!("{job_id} is not dead or waiting for a retry"),
                RetryOutcome::NotFound => bail!("no job {job_id} in {name}"),
            }
        }
        Some(QueuesAction::Job { name, job_id }) => {
            let name = known(&name)?;
            let Some(job) = queues.job(name, &job_id).await? else {
                bail!("no job {job_id} in {name}");
            };
            print_job(&job);
        }
        Some(QueuesAction::RetryDead { name, by }) => {
            let name = known(&name)?;
            let retried = queues.retry_dead(name, &by).await?;
            println!("{retried} dead jobs of {name} are back in the queue");
        }
        Some(QueuesAction::Discard { name, job_id, by }) => {
            let name = known(&name)?;
            match queues.discard(name, &job_id, &by).await? {
                DiscardOutcome::Discarded => println!("{job_id} discarded from {name}"),
                DiscardOutcome::NotDead => {
                    bail!("{job_id} is not dead; only dead jobs are discarded")
                }
                DiscardOutcome::NotFound => bail!("no job {job_id} in {name}"),
            }
        }
        Some(QueuesAction::Pause { name, by }) => {
            let name = known(&name)?;
            queues.set_paused(name, true, &by).await?;
            println!("{name} paused: no process starts its jobs until it is resumed");
        }
        Some(QueuesAction::Resume { name, by }) => {
            let name = known(&name)?;
            queues.set_paused(name, false, &by).await?;
            println!("{name} resumed");
        }
    }
    Ok(())
}
