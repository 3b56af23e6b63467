use super::{invocation, millis, scripts, Keys, QueueError, GROUP};
use super::{Connection, Invocation, Script};
use crate::JobKind;
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How to enqueue one job. Explicit, so a caller sees every choice it makes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnqueueOptions {
    /// The job's id. Enqueuing an id that is already known stores nothing and answers
    /// `duplicate: true`: derive it from what the job is about (a payment, a refund) and a
    /// repeated request enqueues nothing. `None` draws a random id.
    pub id: Option<String>,
    /// Run no sooner than this from now.
    pub delay: Option<Duration>,
    /// Attempts in all; the job kind's schedule decides when `None`.
    pub max_attempts: Option<u32>,
}

impl EnqueueOptions {
    pub fn with_id(id: impl Into<String>) -> Self {
        EnqueueOptions {
            id: Some(id.into()),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub id: String,
    /// A job with this id already existed; nothing was stored.
    pub duplicate: bool,
}

/// Enqueues jobs. Cheap to clone: clones share one multiplexed connection, which reconnects
/// by itself after Redis restarts or drops it.
#[derive(Clone)]
pub struct Producer {
    conn: Connection,
    namespace: String,
    /// Attempts per queue where the deployment sets them (`JOB_ATTEMPTS`); the job kind's
    /// schedule decides for the others.
    attempts: Arc<HashMap<String, u32>>,
    /// Each queue's keys, formatted the first time a job goes there: enqueues run on the
    /// request path.
    keys: Arc<RwLock<HashMap<&'static str, Arc<Keys>>>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Ids travel in keys and stream fields: keep them short and printable.
fn check_id(id: &str) -> Result<(), QueueError> {
    let ok = !id.is_empty() && id.len() <= 200 && id.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(QueueError::Invalid(format!(
            "job id must be 1 to 200 printable ASCII characters without spaces, got {id:?}"
        )))
    }
}

pub fn random_id() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

impl Producer {
    pub fn new(conn: Connection, namespace: impl Into<String>) -> Self {
        Producer {
            conn,
            namespace: namespace.into(),
            attempts: Default::default(),
            keys: Default::default(),
        }
    }

    /// This producer with `attempts` per queue name for the jobs it enqueues without an
    /// explicit `max_attempts`.
    pub fn with_attempts(mut self, attempts: impl IntoIterator<Item = (String, u32)>) -> Self {
        self.attempts = Arc::new(attempts.into_iter().collect());
        self
    }

    /// The attempts a job of `J` gets by default from this producer.
    pub fn attempts_of<J: JobKind>(&self) -> u32 {
        self.attempts
            .get(J::NAME)
            .copied()
            .unwrap_or(J::RETRY.max_attempts)
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn connection(&self) -> Connection {
        self.conn.clone()
    }

    /// Enqueues one job of kind `J` with the kind's default number of attempts.
    pub async fn enqueue<J: JobKind>(
        &self,
        job: &J,
        options: EnqueueOptions,
    ) -> Result<Enqueued, QueueError> {
        let mut out = self.enqueue_batch([(job, options)]).await?;
        Ok(out.remove(0))
    }

    /// Enqueues a job the way its kind says ([`JobKind::insert_opts`]).
    pub async fn insert<J: JobKind>(&self, job: &J) -> Result<Enqueued, QueueError> {
        self.enqueue(job, job.insert_opts()).await
    }

    /// A job of kind `J` ready to enqueue, its call built and nothing sent yet: to enqueue in
    /// the same script as a write it follows from ([`ThenEnqueue`]), or on its own
    /// ([`Producer::enqueue_prepared`]).
    pub fn prepare<J: JobKind>(
        &self,
        job: &J,
        options: EnqueueOptions,
    ) -> Result<PreparedJob, QueueError> {
        let encoded = self.encode(job, options)?;
        let (call, mut ids) = enqueue_call(&self.keys_of::<J>(), vec![encoded])?;
        Ok(PreparedJob {
            id: ids.remove(0),
            call,
        })
    }

    /// Enqueues a prepared job on its own (idempotent by its id, as every enqueue).
    pub async fn enqueue_prepared(&self, job: &PreparedJob) -> Result<Enqueued, QueueError> {
        let stored: Vec<i64> = job.call.run(&self.conn).await?;
        Ok(job.answer(stored.first().copied().unwrap_or(0)))
    }

    fn encode<J: JobKind>(&self, job: &J, options: EnqueueOptions) -> Result<Encoded, QueueError> {
        Ok(Encoded {
            id: options.id,
            args: serde_json::to_vec(job)?,
            max_attempts: options
                .max_attempts
                .unwrap_or_else(|| self.attempts_of::<J>()),
            delay: options.delay.unwrap_or_default(),
        })
    }

    /// Enqueues many jobs of one kind in one atomic round trip.
    pub async fn enqueue_batch<'a, J: JobKind>(
        &self,
        jobs: impl IntoIterator<Item = (&'a J, EnqueueOptions)>,
    ) -> Result<Vec<Enqueued>, QueueError> {
        let mut encoded = Vec::new();
        for (job, options) in jobs {
            encoded.push(self.encode(job, options)?);
        }
        enqueue_encoded(&self.conn, &self.keys_of::<J>(), encoded).await
    }

    fn keys_of<J: JobKind>(&self) -> Arc<Keys> {
        let known = self.keys.read().unwrap_or_else(|e| e.into_inner());
        if let Some(keys) = known.get(J::NAME) {
            return keys.clone();
        }
        drop(known);
        let keys = Arc::new(Keys::new(&self.namespace, J::NAME));
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(J::NAME, keys.clone());
        keys
    }
}

/// A job with its arguments already encoded, as apalis's sink hands them over.
pub(super) struct Encoded {
    pub id: Option<String>,
    pub args: Vec<u8>,
    pub max_attempts: u32,
    pub delay: Duration,
}

pub(super) async fn enqueue_encoded(
    conn: &Connection,
    keys: &Keys,
    jobs: Vec<Encoded>,
) -> Result<Vec<Enqueued>, QueueError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let (call, ids) = enqueue_call(keys, jobs)?;
    let stored: Vec<i64> = call.run(conn).await?;
    Ok(ids
        .into_iter()
        .zip(stored)
        .map(|(id, s)| Enqueued {
            id,
            duplicate: s == 0,
        })
        .collect())
}

/// The `ENQUEUE` call of `jobs`, and their ids (drawn for those without one).
fn enqueue_call(
    keys: &Keys,
    jobs: Vec<Encoded>,
) -> Result<(Invocation<'static>, Vec<String>), QueueError> {
    let mut inv = invocation(&scripts::ENQUEUE, keys);
    inv.arg(GROUP);
    let mut ids = Vec::with_capacity(jobs.len());
    for job in jobs {
        let id = match job.id {
            Some(id) => {
                check_id(&id)?;
                id
            }
            None => random_id(),
        };
        inv.arg(&id)
            .arg(job.args)
            .arg(job.max_attempts.max(1))
            .arg(millis(job.delay));
        inv.key(keys.job(&id));
        ids.push(id);
    }
    Ok((inv, ids))
}

/// One job, encoded, its id known and its `ENQUEUE` call built: see [`Producer::prepare`].
pub struct PreparedJob {
    id: String,
    call: Invocation<'static>,
}

impl PreparedJob {
    fn answer(&self, stored: i64) -> Enqueued {
        Enqueued {
            id: self.id.clone(),
            duplicate: stored == 0,
        }
    }
}

/// A write of the caller's script and the enqueue of the job it leads to, as one script and
/// so one round trip and one atomic step, where one script may touch both: on one server or
/// through Sentinel. A cluster keeps each queue in a slot of its own, so there (and whenever
/// this answers `None`) the caller enqueues the job in a second step, as it always could:
/// every enqueue is idempotent by the job's id.
///
/// Not with [`Durability`](super::Durability) either: there a job must follow only a write
/// that enough replicas hold, since a worker could otherwise act on a write (send a cancel)
/// that a failover then loses and a repeated request makes again.
pub struct ThenEnqueue {
    combined: Script,
}

impl ThenEnqueue {
    /// `first`: the Lua of the caller's script. It asks for the job by answering a second
    /// value that is true, after the answer it gives when it runs alone (where Redis drops
    /// the second).
    pub fn new(first: &str) -> ThenEnqueue {
        ThenEnqueue {
            combined: scripts::then_enqueue(first),
        }
    }

    /// The call of `first` then `job`, as one, where the connection allows it.
    pub fn invocation<'s>(
        &'s self,
        conn: &Connection,
        first: &Invocation<'_>,
        job: &PreparedJob,
    ) -> Option<Invocation<'s>> {
        Self::applies(conn).then(|| Invocation::joined(&self.combined, first, &job.call))
    }

    /// Runs `first` then `job` as one call, where the connection allows it (`None`: it does
    /// not, and the caller runs `first` alone). Answers as [`ThenEnqueue::answer`].
    pub async fn run(
        &self,
        conn: &Connection,
        first: &Invocation<'_>,
        job: &PreparedJob,
    ) -> redis::RedisResult<Option<(redis::Value, Option<Enqueued>)>> {
        let Some(call) = self.invocation(conn, first, job) else {
            return Ok(None);
        };
        let answer = call.run(conn).await?;
        self.answer(answer, job).map(Some)
    }

    /// Whether one script may write and enqueue on this connection (so a caller with more
    /// to prepare for the combined call can skip it where it never runs).
    pub fn applies(conn: &Connection) -> bool {
        conn.scripts_span_slots() && conn.durability().is_none()
    }

    /// Loads the combined script, where it can run, before the first request needs it (it is
    /// loaded when Redis answers `NOSCRIPT` in any case).
    pub async fn load(&self, conn: &Connection) -> redis::RedisResult<()> {
        if Self::applies(conn) {
            self.combined.load(conn).await?;
        }
        Ok(())
    }

    /// The combined call's answer: `first`'s, and the job as enqueued when it was (`None`
    /// when `first` did not ask for it, or its enqueue failed: the caller tries on its own).
    pub fn answer(
        &self,
        value: redis::Value,
        job: &PreparedJob,
    ) -> redis::RedisResult<(redis::Value, Option<Enqueued>)> {
        let (first, then): (redis::Value, redis::Value) =
            redis::FromRedisValue::from_redis_value(value).map_err(redis::RedisError::from)?;
        let enqueued = match then {
            redis::Value::Array(stored) => match stored.first() {
                Some(redis::Value::Int(s)) => Some(job.answer(*s)),
                _ => None,
            },
            // Not asked for.
            redis::Value::Int(-1) => None,
            // The enqueue failed (its write stands): said here, since the caller's own
            // enqueue may well succeed and say nothing of a queue that needs looking at.
            other => {
                tracing::warn!(job = %job.id, answer = ?other, "a job could not be enqueued with the write it follows; enqueuing it on its own");
                None
            }
        };
        Ok((first, enqueued))
    }
}
