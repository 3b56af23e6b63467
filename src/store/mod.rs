//! Payments, integrations and idempotency records in Redis, under `QUEUE_NAMESPACE`; the
//! live-process registry; the queues' handle ([`Store::queues`]). Every key the service names
//! and every command it sends is here (the bench and the demo only probe a Redis of their own).
//!
//! Every state change of a payment is one Lua script that checks the current status, applies
//! the change and appends its history entry, so two racing requests or a job that runs twice
//! cannot both win, and no change is ever recorded without its history.

mod events;
mod integrations;
mod keys;
mod migrations;
mod paging;
mod payments;
mod refunds;
mod registry;
mod reviews;
mod search;
mod sessions;

pub use crate::domain::{Shard, SHARDS};
pub use migrations::Moved;

pub use integrations::{Integration, IntegrationSettings, Integrations, KeyKind};
pub use paging::{Cursor, Page};
pub use payments::{
    Approval, ApprovalRun, Due, Failure, HistoryEntry, NewPayment, Payment, Redirect, Transition,
    TransitionOutcome,
};
pub use refunds::{
    new_refund_job, Begin, Created, Decided, Locked, Paid, Recorded, Refund, RefundTarget, Success,
};
pub use registry::{ProcessInfo, ProcessKind};
pub use reviews::{Review, ReviewAction, Reviewed};
pub use search::{PaymentFilter, RefundFilter};

use kakaopay_jobs::queue::{
    Connection, QueueConfig, Queues, RedisErrorClass, StreamBackend, Topology,
};
use kakaopay_jobs::JobKind;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached: the request had no effect (503).
    #[error("Redis is unreachable: {0}")]
    Unavailable(#[source] redis::RedisError),
    #[error("Redis refused the operation: {0}")]
    Redis(#[source] redis::RedisError),
    /// A record that does not parse: a bug or a hand edit, never user input.
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        match RedisErrorClass::of(&e) {
            RedisErrorClass::Unavailable => StoreError::Unavailable(e),
            RedisErrorClass::Refused => StoreError::Redis(e),
        }
    }
}

/// The service's records in one Redis namespace. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Connection,
    ns: String,
    tags: std::sync::Arc<[String]>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("ns", &self.ns)
            .finish_non_exhaustive()
    }
}

impl Store {
    pub fn new(conn: Connection, namespace: impl Into<String>) -> Self {
        let ns = namespace.into();
        Store {
            conn,
            tags: keys::shard_tags(&ns),
            ns,
        }
    }

    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// Deletes every key of this namespace (what the demo leaves), answering how many. KEYS,
    /// not SCAN: on a cluster redis-rs asks every master and joins the answers, and a demo's
    /// namespace is small.
    pub async fn forget_namespace(&self) -> Result<u64, StoreError> {
        let glob: String = self
            .ns
            .chars()
            .flat_map(|c| {
                let escape = matches!(c, '*' | '?' | '[' | ']' | '\\');
                escape.then_some('\\').into_iter().chain([c])
            })
            .collect();
        let mut deleted = 0;
        for pattern in [format!("{{{glob}:*"), format!("{glob}:*")] {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut self.conn.clone())
                .await?;
            for key in keys {
                let n: u64 = redis::cmd("UNLINK")
                    .arg(&key)
                    .query_async(&mut self.conn.clone())
                    .await?;
                deleted += n;
            }
        }
        Ok(deleted)
    }

    /// Every queue of this namespace, to inspect and steer (counts, jobs, retries, pauses,
    /// charts).
    pub fn queues(&self) -> Queues {
        Queues::new(self.conn.clone(), self.ns.as_str())
    }

    /// The backend a worker of `J`'s queue fetches from, on this store's connection.
    pub fn stream_backend<J: JobKind>(
        &self,
        topology: Topology,
        config: QueueConfig,
    ) -> StreamBackend<J> {
        StreamBackend::new(topology, self.conn.clone(), config)
    }

    /// Makes sure what is stored for `id` (a payment or a refund) is held by the replicas
    /// before an answer repeats it (with `REDIS_WAIT_REPLICAS`; nothing without): a throwaway
    /// write to its slot, waited for. A master replicates in order, so once a replica holds
    /// this write it holds every earlier one, including those a request answered 503 made.
    ///
    /// The record is looked for in the same round trip, so that what is confirmed is the node
    /// that holds it (on Sentinel the links find the master apart; one could still be on a
    /// master just replaced).
    pub async fn confirm_durable(&self, id: &str) -> Result<(), StoreError> {
        if self.conn.durability().is_none() {
            return Ok(());
        }
        let record = if id.starts_with("rf_") {
            self.refund_key(id)
        } else {
            self.payment_key(id)
        };
        let barrier = redis::pipe()
            .cmd("SET")
            .arg(self.barrier_key(Shard::of_id(id)))
            .arg(1)
            .arg("PX")
            .arg(60_000)
            .ignore()
            .exists(&record)
            .to_owned();
        let (held,): (bool,) = self.conn.write(&barrier).await?;
        if !held {
            return Err(StoreError::Unavailable(redis::RedisError::from(
                std::io::Error::other("the record is not on the master that holds its slot now"),
            )));
        }
        Ok(())
    }

    /// Whether the namespace holds records of the earlier key layout (before shards): the
    /// indexes every deployment of it wrote, or the marker its reconciler left. This release
    /// reads them only once moved ([`Store::migrate_earlier_layout`]).
    pub async fn holds_earlier_layout(&self) -> Result<bool, StoreError> {
        let keys = [
            "payments:ready",
            "payments:approving",
            "refunds:open",
            "migrated:open-refunds-and-persistent-versions",
        ];
        // One command each: on a cluster they are keys of different slots.
        let asks = keys.map(|key| {
            let mut conn = self.conn.clone();
            let cmd = redis::cmd("EXISTS")
                .arg(format!("{}:{key}", self.ns))
                .to_owned();
            async move { cmd.query_async::<bool>(&mut conn).await }
        });
        let found = futures::future::try_join_all(asks).await?;
        let marker: Option<String> = redis::cmd("GET")
            .arg(format!("{}:{}", self.ns, migrations::MARKER))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(found.into_iter().any(|f| f) || marker.as_deref() == Some("running"))
    }

    /// Loads the scripts of the busiest requests (callbacks, refund requests, events), so that the
    /// first of them after a start do not all find Redis without them at once. Each is
    /// loaded when Redis answers `NOSCRIPT` in any case (after a restart or a failover).
    pub async fn load_hot_scripts(&self) -> Result<(), StoreError> {
        payments::load_hot_scripts(&self.conn).await?;
        refunds::load_hot_scripts(&self.conn).await?;
        events::load_hot_scripts(&self.conn).await?;
        Ok(())
    }

    /// Whether Redis answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

/// Timestamps written into records, as RFC 3339 in UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
