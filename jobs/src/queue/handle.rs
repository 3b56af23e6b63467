//! [`Queues`]: every queue of one namespace as operators and the service's own upkeep see and
//! steer them, behind one handle, so a caller holds no raw connection and names no key. Each
//! method is the free function of [`inspect`], [`pages`], [`operate`] or [`stats`] of the same
//! name, on the handle's connection and namespace.

use super::inspect::{self, Counts, JobInfo, RetryOutcome, Status};
use super::operate::{self, AuditEntry, DiscardOutcome};
use super::pages::{self, JobPage};
use super::stats::{self, Minute};
use super::{Connection, QueueError};
use std::sync::Arc;
use std::time::Duration;

/// The queues of one namespace: counts, jobs, pages, retries, discards, pauses, audit and
/// charts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Queues {
    conn: Connection,
    namespace: Arc<str>,
}

impl Queues {
    pub fn new(conn: Connection, namespace: impl Into<Arc<str>>) -> Self {
        Queues {
            conn,
            namespace: namespace.into(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Exact counts of `queue`, read in one atomic step.
    pub async fn counts(&self, queue: &str) -> Result<Counts, QueueError> {
        inspect::counts(&self.conn, &self.namespace, queue).await
    }

    /// One job with each failed attempt; `None` when there is no record of it.
    pub async fn job(&self, queue: &str, id: &str) -> Result<Option<JobInfo>, QueueError> {
        inspect::job(&self.conn, &self.namespace, queue, id).await
    }

    /// Jobs of one status, most recent first, at most `limit`.
    pub async fn list(
        &self,
        queue: &str,
        status: Status,
        limit: usize,
    ) -> Result<Vec<JobInfo>, QueueError> {
        inspect::list(&self.conn, &self.namespace, queue, status, limit).await
    }

    /// A page of `status` jobs after `cursor`, at most `limit` (1 to 1000).
    pub async fn page(
        &self,
        queue: &str,
        status: Status,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<JobPage, QueueError> {
        pages::page(&self.conn, &self.namespace, queue, status, limit, cursor).await
    }

    /// An operator's retry of a dead job (or of one waiting for its next attempt).
    pub async fn retry(&self, queue: &str, id: &str) -> Result<RetryOutcome, QueueError> {
        inspect::retry(&self.conn, &self.namespace, queue, id).await
    }

    /// Runs every job dead now again, audited under `by`; answers how many.
    pub async fn retry_dead(&self, queue: &str, by: &str) -> Result<u64, QueueError> {
        operate::retry_dead(&self.conn, &self.namespace, queue, by).await
    }

    /// Discards a dead job and its record for good, audited under `by`.
    pub async fn discard(
        &self,
        queue: &str,
        id: &str,
        by: &str,
    ) -> Result<DiscardOutcome, QueueError> {
        operate::discard(&self.conn, &self.namespace, queue, id, by).await
    }

    /// Drops the dead jobs older than `max_age`, a bounded amount per call; answers how many.
    pub async fn drop_expired_dead(
        &self,
        queue: &str,
        max_age: Duration,
    ) -> Result<u64, QueueError> {
        operate::drop_expired_dead(&self.conn, &self.namespace, queue, max_age).await
    }

    /// Pauses (`true`) or resumes `queue`, audited under `by`; answers whether it changed.
    pub async fn set_paused(
        &self,
        queue: &str,
        paused: bool,
        by: &str,
    ) -> Result<bool, QueueError> {
        operate::set_paused(&self.conn, &self.namespace, queue, paused, by).await
    }

    pub async fn is_paused(&self, queue: &str) -> Result<bool, QueueError> {
        operate::is_paused(&self.conn, &self.namespace, queue).await
    }

    /// What operators did to `queue`, newest first, at most `limit`.
    pub async fn audit(&self, queue: &str, limit: usize) -> Result<Vec<AuditEntry>, QueueError> {
        operate::audit(&self.conn, &self.namespace, queue, limit).await
    }

    /// Hands back to `queue` every job a stopped worker (`consumer`) still holds.
    pub async fn release(&self, queue: &str, consumer: &str) -> Result<u64, QueueError> {
        inspect::release(&self.conn, &self.namespace, queue, consumer).await
    }

    /// How long the oldest job waiting for a worker has waited; `None` when none waits.
    pub async fn oldest_pending_age(&self, queue: &str) -> Result<Option<Duration>, QueueError> {
        inspect::oldest_pending_age(&self.conn, &self.namespace, queue).await
    }

    /// Samples the oldest pending job's age into the current minute of the charts (ms).
    pub async fn sample_oldest_pending(&self, queue: &str) -> Result<u64, QueueError> {
        stats::sample_oldest_pending(&self.conn, &self.namespace, queue).await
    }

    /// The charts' last `count` minutes, oldest first, ending with the current one.
    pub async fn last_minutes(&self, queue: &str, count: usize) -> Result<Vec<Minute>, QueueError> {
        stats::last_minutes(&self.conn, &self.namespace, queue, count).await
    }
}
