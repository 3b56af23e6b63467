//! The Redis queue under apalis: Redis Streams with a consumer group, one queue per job kind.
//!
//! - [`Producer`] enqueues jobs (with a caller-chosen id: the same id twice stores one job and
//!   says it was a duplicate); [`ThenEnqueue`] enqueues one in the same script as the write
//!   it follows from, where one script can reach both (one server, Sentinel).
//! - [`StreamBackend`] is the apalis backend workers fetch from: a blocking `XREADGROUP` wakes a
//!   worker the moment a job arrives; a job whose worker stops renewing its lease is taken over
//!   by another with `XAUTOCLAIM`, its attempt counted; delayed retries wait in a sorted set
//!   and are promoted in bounded chunks.
//! - [`RetrySchedule`] is the one retry mechanism: exponential, capped, full jitter, per job
//!   kind. A handler answers [`JobError::Retry`] or [`JobError::Permanent`].
//! - [`inspect`] gives exact counts, job listings and operator retries; [`pages`] every
//!   state page by page; [`operate`] pause, discard, retry-dead and their audit; [`stats`]
//!   per-minute counters (done, failed, oldest pending age) for the board's charts.
//! - [`Queues`] is all of those behind one handle: a namespace's connection, cheap to clone.
//!
//! Every key of a queue shares one hash tag (`{namespace:queue}`), so the layout works on
//! Redis Cluster, and every state change is one Lua script (`scripts`).

mod backend;
pub mod connection;
mod error;
mod expose;
mod handle;
pub mod inspect;
pub mod operate;
pub mod pages;
mod producer;
mod retry;
mod scripts;
pub mod stats;

pub use backend::{classify, in_flight, Delivery, Outcome, StreamBackend};
pub use connection::{Connection, Durability, Invocation, Purpose, Script, Topology};
pub use error::{JobError, QueueError, RedisErrorClass};
pub use handle::Queues;
pub use producer::{EnqueueOptions, Enqueued, PreparedJob, Producer, ThenEnqueue};
pub use retry::RetrySchedule;

use std::time::Duration;

/// The consumer group every worker of a queue joins.
pub const GROUP: &str = "workers";

/// Where one queue lives in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub stream: String,
    pub scheduled: String,
    pub done: String,
    pub dead: String,
    pub failed: String,
    pub workers: String,
    /// Present while operators have the queue paused (its value: who, since when).
    pub paused: String,
    /// What operators did to the queue, newest first (the last 1,000).
    pub audit: String,
    /// Per-minute counters for the board's charts (a hash, see [`stats`]).
    pub stats: String,
    /// Prefix of each job's record (a hash): `{ns:queue}:job:` + id. Scripts get records as
    /// keys, never build them.
    pub job_prefix: String,
}

impl Keys {
    pub fn new(namespace: &str, queue: &str) -> Keys {
        let tag = format!("{{{namespace}:{queue}}}");
        Keys {
            stream: format!("{tag}:stream"),
            scheduled: format!("{tag}:scheduled"),
            done: format!("{tag}:done"),
            dead: format!("{tag}:dead"),
            failed: format!("{tag}:failed"),
            workers: format!("{tag}:workers"),
            paused: format!("{tag}:paused"),
            audit: format!("{tag}:audit"),
            stats: format!("{tag}:stats"),
            job_prefix: format!("{tag}:job:"),
        }
    }

    /// In the order the scripts expect them.
    fn all(&self) -> [&str; 6] {
        [
            &self.stream,
            &self.scheduled,
            &self.done,
            &self.dead,
            &self.failed,
            &self.workers,
        ]
    }

    pub fn job(&self, id: &str) -> String {
        format!("{}{id}", self.job_prefix)
    }
}

/// Calls a script with a queue's keys (the records of the jobs it names are added after).
fn invocation<'a>(script: &'a Script, keys: &Keys) -> connection::Invocation<'a> {
    let mut inv = script.prepare_invoke();
    for key in keys.all() {
        inv.key(key);
    }
    inv
}

/// The id in an `done` list item (`ms:id`).
fn done_item_id(item: &str) -> &str {
    item.split_once(':').map_or(item, |(_, id)| id)
}

/// How long finished jobs stay visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_count: u64,
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_count: 50_000,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// A worker-side queue: which queue, and how its workers fetch and retry.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub namespace: String,
    pub queue: String,
    /// A job whose worker has not renewed its lease for this long is taken over by another
    /// worker (crash recovery). Workers renew every third of it.
    pub lease: Duration,
    /// Jobs fetched per round trip (a worker keeps them leased until it runs them).
    pub fetch_batch: usize,
    /// Longest a blocking read waits before the worker looks at due retries and lost leases.
    /// A retry or delayed job scheduled while a worker blocks starts at most this late; new
    /// jobs wake the worker at once.
    pub max_block: Duration,
    /// Due retries moved to the stream per fetch, at most.
    pub promote_chunk: usize,
    pub retry: RetrySchedule,
    pub done_retention: Retention,
}

impl QueueConfig {
    pub fn new(
        namespace: impl Into<String>,
        queue: impl Into<String>,
        retry: RetrySchedule,
    ) -> Self {
        QueueConfig {
            namespace: namespace.into(),
            queue: queue.into(),
            lease: Duration::from_secs(30),
            fetch_batch: 32,
            max_block: Duration::from_millis(250),
            promote_chunk: 500,
            retry,
            done_retention: Retention::default(),
        }
    }

    pub fn keys(&self) -> Keys {
        Keys::new(&self.namespace, &self.queue)
    }
}

/// A consumer name unique to this worker of this process: the consumer group tells workers
/// apart by it, and a restarted process must not inherit a dead one's entries by name (they
/// are taken over through their leases instead).
pub fn consumer_name(queue: &str, index: usize) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    format!(
        "{queue}-{host}-{}-{:06x}-{index}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// Milliseconds for Redis, at least 1 where 0 would mean "forever" or "now".
fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_queue_shares_one_hash_tag() {
        let keys = Keys::new("kakaopay", "cancel_payment");
        let others = [&keys.paused, &keys.audit, &keys.stats];
        for key in keys.all().into_iter().chain(others.map(String::as_str)) {
            assert!(key.starts_with("{kakaopay:cancel_payment}:"), "{key}");
        }
        assert_eq!(keys.job("j1"), "{kakaopay:cancel_payment}:job:j1");
    }
}
