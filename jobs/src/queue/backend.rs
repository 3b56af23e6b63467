//! The apalis backend: how a worker gets jobs from a queue and records how they ended.
//!
//! Fetching never fails from apalis's point of view (a failed poll would end the worker): a
//! Redis error is logged and the fetch tried again after a short backoff, so a Redis restart
//! or a dropped connection only pauses the worker. Results go through one settler task per
//! worker that records them in batches (group commit), so the drain rate is not one round trip
//! per job.

use super::{
    invocation, millis, scripts, JobError, Keys, QueueConfig, QueueError, RetrySchedule, GROUP,
};
use super::{Connection, Purpose, Topology};
use crate::JobKind;
use apalis_codec::json::JsonCodec;
use apalis_core::backend::finalize::Durable;
use apalis_core::backend::queue::Queue;
use apalis_core::backend::{Backend, BackendConfig, WireFormatBackend};
use apalis_core::error::{AbortError, BoxDynError, RetryAfterError};
use apalis_core::layers::{Layer, Service};
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use apalis_core::task::Task;
use apalis_core::worker::context::WorkerContext;
use futures::future::BoxFuture;
use futures::FutureExt;
use redis::streams::{StreamPendingCountReply, StreamRangeReply, StreamReadReply};
use std::collections::HashMap;
use std::collections::{HashSet, VecDeque};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, OnceCell};
use tokio::task::JoinHandle;

/// What the queue knows about the delivery of a job, in the task's data for the ack layer
/// (and for handlers that want to know their attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub job_id: String,
    pub entry: String,
    pub consumer: String,
    /// This attempt, 1-based, counting attempts whose worker died.
    pub attempt: u32,
    pub max_attempts: u32,
}

/// State shared by a worker's backend, its ack layer, its settler and its lease renewer.
struct Shared {
    conn: Connection,
    keys: Keys,
    config: QueueConfig,
    /// Entries fetched and not yet settled: their leases are renewed.
    held: Mutex<HashSet<String>>,
    /// Jobs fetched and not yet started, in the order fetched. Kept here rather than in the
    /// backend so that a pause can hand them back while the worker is busy (apalis asks for
    /// the next job only when it has room for it).
    unstarted: Mutex<VecDeque<Fetched>>,
    /// The worker's consumer name, once it is known (its first poll).
    consumer: std::sync::OnceLock<String>,
    /// Where the next look for lost leases (`XAUTOCLAIM`) continues, and when it last ran.
    reclaim: Mutex<(String, Option<Instant>)>,
    /// Done jobs past their retention, as the last settle named them: the next one drops them.
    retention: Mutex<Vec<String>>,
    /// Retries the last fetch saw fall due: the next fetch promotes them, busy or not.
    due: Mutex<Vec<String>>,
    /// Whether operators have the queue paused, as last read from Redis.
    paused: AtomicBool,
    /// Runs of this queue under way in this process.
    in_flight: Arc<AtomicUsize>,
}

impl Shared {
    fn held(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unstarted(&self) -> std::sync::MutexGuard<'_, VecDeque<Fetched>> {
        self.unstarted.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn retention(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.retention.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn due(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `XAUTOCLAIM` cursor if it is time to look for lost leases, else an empty string.
    /// Every quarter lease is enough (a crashed worker's jobs wait at most 1.25 leases) and
    /// keeps busy fetches from scanning the pending entries each time.
    fn reclaim_cursor(&self) -> String {
        let every = (self.config.lease / 4).max(Duration::from_millis(50));
        let mut state = self.reclaim.lock().unwrap_or_else(|p| p.into_inner());
        if state.1.is_some_and(|at| at.elapsed() < every) {
            return String::new();
        }
        state.1 = Some(Instant::now());
        state.0.clone()
    }

    fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    fn set_reclaim_cursor(&self, cursor: String) {
        if !cursor.is_empty() {
            self.reclaim.lock().unwrap_or_else(|p| p.into_inner()).0 = cursor;
        }
    }
}

/// Tasks handed to apalis's sink side, waiting for a flush.
#[derive(Default)]
pub(super) struct SinkState {
    pub buffer: Vec<super::producer::Encoded>,
    pub flushing: Option<BoxFuture<'static, Result<(), QueueError>>>,
}

/// A job as a fetch script answers it: entry, id, args, attempt, max attempts.
type Fetched = (String, String, Vec<u8>, u32, u32);

use std::time::Instant;

/// A worker's source of jobs of kind `J`. Give each worker its own (they hold the worker's
/// blocking connection and leases).
pub struct StreamBackend<J> {
    shared: Arc<Shared>,
    topology: Topology,
    /// Blocking reads get a connection of their own (on a multiplexed one they would stall
    /// every other command), opened by the first fetch.
    blocking: Arc<OnceCell<Connection>>,
    /// The fetch under way, a task of its own so that the next batch is on its way while the
    /// worker runs this one, and leased the moment it arrives (even if the worker is busy);
    /// it leaves what it fetched in `shared.unstarted`.
    fetch: Option<JoinHandle<()>>,
    settle: mpsc::Sender<SettleRequest>,
    renewer: Option<JoinHandle<()>>,
    /// Reads the queue's pause flag from Redis every [`PAUSE_LOOK`].
    pause_watch: JoinHandle<()>,
    /// While paused, the wake-up to look again.
    pause_tick: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    closing: Option<BoxFuture<'static, ()>>,
    pub(super) sink: SinkState,
    codec: JsonCodec<Vec<u8>>,
    _job: PhantomData<fn() -> J>,
}

impl<J> std::fmt::Debug for StreamBackend<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamBackend")
            .field("queue", &self.shared.config.queue)
            .finish_non_exhaustive()
    }
}

impl<J: JobKind> StreamBackend<J> {
    /// A backend for one worker. `conn` may be shared by many backends and producers; the
    /// worker's blocking connection is opened on `topology` when it first fetches. Must be
    /// called inside a Tokio runtime (it starts the worker's settler task).
    pub fn new(topology: Topology, conn: Connection, config: QueueConfig) -> Self {
        let config_keys_stream = config.keys().stream;
        let shared = Arc::new(Shared {
            keys: config.keys(),
            conn,
            config,
            held: Mutex::new(HashSet::new()),
            unstarted: Mutex::new(VecDeque::new()),
            consumer: std::sync::OnceLock::new(),
            reclaim: Mutex::new(("0-0".into(), None)),
            retention: Mutex::new(Vec::new()),
            due: Mutex::new(Vec::new()),
            paused: AtomicBool::new(false),
            in_flight: in_flight_counter(&config_keys_stream),
        });
        let (settle, rx) = mpsc::channel(1024);
        tokio::spawn(settler(shared.clone(), rx));
        let pause_watch = tokio::spawn(watch_pause(shared.clone()));
        StreamBackend {
            shared,
            topology,
            blocking: Arc::new(OnceCell::new()),
            fetch: None,
            settle,
            renewer: None,
            pause_watch,
            pause_tick: None,
            closing: None,
            sink: SinkState::default(),
            codec: JsonCodec::default(),
            _job: PhantomData,
        }
    }

    fn task(
        &self,
        (entry, id, args, attempt, max_attempts): Fetched,
        consumer: &str,
    ) -> Task<Vec<u8>> {
        TaskBuilder::new(args)
            .task_id(TaskId::from_string(id.clone()))
            // apalis counts the attempt up as the task starts.
            .attempt(attempt.saturating_sub(1) as usize)
            .max_attempts(max_attempts as usize)
            .queue(Queue::from(J::NAME))
            .data(Delivery {
                job_id: id,
                entry,
                consumer: consumer.to_string(),
                attempt,
                max_attempts,
            })
            .build()
    }
}

impl<J> Drop for StreamBackend<J> {
    fn drop(&mut self) {
        self.pause_watch.abort();
        if let Some(fetch) = self.fetch.take() {
            fetch.abort();
        }
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
    }
}

/// How often a worker reads its queue's pause flag: a pause is honoured by every process
/// within this (and a fetch under way), well inside the second operators are promised.
const PAUSE_LOOK: Duration = Duration::from_millis(250);

/// Keeps `shared.paused` to what Redis says. A failed read keeps the last answer: a Redis
/// hiccup neither pauses a queue nor resumes one.
async fn watch_pause(shared: Arc<Shared>) {
    let mut conn = shared.conn.clone();
    loop {
        let read: redis::RedisResult<bool> = redis::cmd("EXISTS")
            .arg(&shared.keys.paused)
            .query_async(&mut conn)
            .await;
        if let Ok(paused) = read {
            let was = shared.paused.swap(paused, Ordering::Relaxed);
            if was != paused {
                tracing::info!(queue = %shared.config.queue, paused, "queue pause changed");
            }
            if paused {
                hand_back_unstarted(&shared).await;
            }
        }
        tokio::time::sleep(PAUSE_LOOK).await;
    }
}

/// Gives the jobs fetched but not started back to the queue (a paused queue may stay paused
/// for hours: held, they would keep an attempt counted and a lease renewed for nothing). A
/// hand-back that fails keeps them, leases renewed, for the next look.
async fn hand_back_unstarted(shared: &Shared) {
    let Some(consumer) = shared.consumer.get() else {
        return;
    };
    let unstarted: Vec<Fetched> = shared.unstarted().drain(..).collect();
    if unstarted.is_empty() {
        return;
    }
    let mut inv = invocation(&scripts::RELEASE, &shared.keys);
    inv.arg(GROUP).arg(consumer).arg("0");
    for (entry, id, ..) in &unstarted {
        inv.arg(entry).arg(id).key(shared.keys.job(id));
    }
    let queue = &shared.config.queue;
    match inv.run_nowait::<u64>(&shared.conn).await {
        Ok(n) => {
            tracing::info!(queue = %queue, jobs = n, "paused: handed back jobs not started");
            let mut held = shared.held();
            for (entry, ..) in &unstarted {
                held.remove(entry);
            }
        }
        Err(e) => {
            tracing::warn!(queue = %queue, error = %e, "paused: could not hand back jobs; next look");
            let mut kept = shared.unstarted();
            for fetched in unstarted.into_iter().rev() {
                kept.push_front(fetched);
            }
        }
    }
}

/// The process's count of runs under way per queue (by its stream key), for the workers
/// registry: every backend of one queue in this process shares it.
fn in_flight_counter(stream: &str) -> Arc<AtomicUsize> {
    static COUNTERS: LazyLock<Mutex<HashMap<String, Arc<AtomicUsize>>>> =
        LazyLock::new(Default::default);
    COUNTERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(stream.to_string())
        .or_default()
        .clone()
}

/// Runs of `queue` under way in this process now.
pub fn in_flight(namespace: &str, queue: &str) -> usize {
    in_flight_counter(&Keys::new(namespace, queue).stream).load(Ordering::Relaxed)
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis((50u64 << failures.min(5)).min(2_000))
}

/// Fetches until there is work, however long that takes and whatever Redis does meanwhile.
async fn fetch_cycle<J: JobKind>(
    shared: Arc<Shared>,
    topology: Topology,
    blocking: Arc<OnceCell<Connection>>,
    consumer: String,
) {
    let mut failures = 0u32;
    loop {
        // Paused: nothing more is taken from the queue (what was fetched waits unstarted).
        while shared.is_paused() {
            tokio::time::sleep(PAUSE_LOOK / 2).await;
        }
        let attempt = fetch_once(&shared, &topology, &blocking, &consumer).await;
        match attempt {
            Ok(jobs) if jobs.is_empty() => failures = 0,
            Ok(jobs) => {
                let (good, poison): (Vec<_>, Vec<_>) = jobs
                    .into_iter()
                    .partition(|(_, _, args, _, _)| serde_json::from_slice::<J>(args).is_ok());
                if !poison.is_empty() {
                    bury_undecodable(&shared, &consumer, poison).await;
                }
                if !good.is_empty() {
                    shared.held().extend(good.iter().map(|j| j.0.clone()));
                    shared.unstarted().extend(good);
                    return;
                }
            }
            Err(e) => {
                let queue = &shared.config.queue;
                tracing::warn!(queue = %queue, error = %e, "fetching jobs failed; trying again");
                tokio::time::sleep(backoff(failures)).await;
                failures += 1;
            }
        }
    }
}

/// One fetch, then, when there is nothing to do, one blocking read until a job arrives, a
/// retry falls due, or it is time to look for lost leases again. Answers the jobs claimed
/// (none when it is worth fetching again at once).
async fn fetch_once(
    shared: &Shared,
    topology: &Topology,
    blocking: &OnceCell<Connection>,
    consumer: &str,
) -> Result<Vec<Fetched>, redis::RedisError> {
    let (keys, config) = (&shared.keys, &shared.config);
    let batch = config.fetch_batch.max(1);
    let cursor = shared.reclaim_cursor();
    let mut fetch = invocation(&scripts::FETCH, keys);
    fetch
        .arg(GROUP)
        .arg(consumer)
        .arg(batch)
        .arg(millis(config.lease).max(1))
        .arg(config.promote_chunk.max(1))
        .arg(&cursor);
    // A failed fetch promoted nothing: its due ids are named again by the next.
    let promote = std::mem::take(&mut *shared.due());
    for id in &promote {
        fetch.arg(id).key(keys.job(id));
    }
    let answer: Result<(Vec<String>, Vec<String>, i64, String), _> =
        fetch.run_nowait(&shared.conn).await;
    let (entries, due, next_due, next_cursor) = answer.inspect_err(|_| {
        shared.due().extend(promote);
    })?;
    shared.set_reclaim_cursor(next_cursor);
    let promote_next = !due.is_empty();
    *shared.due() = due;
    if !entries.is_empty() {
        return claim(shared, consumer, &entries).await;
    }
    if promote_next {
        return Ok(Vec::new());
    }
    let mut block = config.max_block.min(config.lease);
    if next_due >= 0 {
        block = block.min(Duration::from_millis(next_due as u64));
    }
    let blocking = blocking
        .get_or_try_init(|| {
            let purpose = Purpose::Blocking {
                longest: config.max_block,
            };
            Connection::open(topology, purpose, None)
        })
        .await?;
    // The connection is named after the consumer (in the same round trip), so that handing
    // the consumer's jobs back can first cut off a read still waiting.
    let (reply,): (Option<StreamReadReply>,) = redis::pipe()
        .cmd("CLIENT")
        .arg("SETNAME")
        .arg(blocking_client_name(consumer))
        .ignore()
        .cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg(consumer)
        .arg("COUNT")
        .arg(batch)
        .arg("BLOCK")
        .arg(millis(block).max(1))
        .arg("STREAMS")
        .arg(&keys.stream)
        .arg(">")
        .query_async(&mut blocking.clone())
        .await?;
    let mut entries = Vec::new();
    for delivered in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
        // An entry that names no job is claimed as job "" (which has no record): forgotten.
        let id: String = delivered.get("id").unwrap_or_default();
        entries.extend([delivered.id, id]);
    }
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    claim(shared, consumer, &entries).await
}

/// Claims delivered entries, given as entry, id pairs.
async fn claim(
    shared: &Shared,
    consumer: &str,
    entries: &[String],
) -> Result<Vec<Fetched>, redis::RedisError> {
    let mut inv = invocation(&scripts::CLAIM, &shared.keys);
    inv.arg(GROUP)
        .arg(consumer)
        .arg(millis(shared.config.lease / 4));
    for pair in entries.chunks(2) {
        inv.arg(&pair[0])
            .arg(&pair[1])
            .key(shared.keys.job(&pair[1]));
    }
    inv.run_nowait(&shared.conn).await
}

/// A job whose arguments do not parse as its kind can never run: dead at once, said why.
async fn bury_undecodable(shared: &Shared, consumer: &str, jobs: Vec<Fetched>) {
    let mut inv = invocation(&scripts::SETTLE, &shared.keys);
    settle_header(&mut inv, shared, consumer, jobs.len());
    for (entry, id, args, _, _) in &jobs {
        tracing::error!(queue = %shared.config.queue, job = %id, "job arguments do not parse; job is dead");
        let error = format!(
            "arguments do not parse as {}: {}",
            shared.config.queue,
            String::from_utf8_lossy(args)
        );
        inv.arg(entry)
            .arg(id)
            .arg("dead")
            .arg(0)
            .arg(truncate(&error))
            .key(shared.keys.job(id));
    }
    if let Err(e) = inv.run::<(Vec<i64>, Vec<String>)>(&shared.conn).await {
        tracing::warn!(error = %e, "could not record undecodable jobs; they will be seen again");
    }
}

fn settle_header(
    inv: &mut super::connection::Invocation<'_>,
    shared: &Shared,
    consumer: &str,
    runs: usize,
) {
    let retention = shared.config.done_retention;
    // Before any record: SETTLE counts into the stats as KEYS[7].
    inv.key(&shared.keys.stats);
    inv.arg(GROUP)
        .arg(consumer)
        .arg(retention.max_count)
        .arg(millis(retention.max_age))
        .arg(runs);
}

/// Last errors are for people: keep them to a readable size.
fn truncate(s: &str) -> String {
    const MAX: usize = 2000;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Renews the leases of everything this worker holds, and says the worker is alive.
async fn renew_leases(shared: Arc<Shared>, consumer: String) {
    let every = (shared.config.lease / 3).max(Duration::from_millis(100));
    let conn = shared.conn.clone();
    loop {
        let held: Vec<String> = shared.held().iter().cloned().collect();
        let mut inv = invocation(&scripts::RENEW, &shared.keys);
        inv.arg(GROUP).arg(&consumer).arg(&held);
        if let Err(e) = inv.run_nowait::<i64>(&conn).await {
            tracing::warn!(queue = %shared.config.queue, error = %e, "renewing leases failed");
        }
        tokio::time::sleep(every).await;
    }
}

fn blocking_client_name(consumer: &str) -> String {
    format!("kpq-block-{consumer}")
}

/// Closes, on the server, a blocking read of `consumer` that may still be waiting: otherwise
/// the jobs handed back could be delivered straight to it again.
async fn cut_off_blocked_reads(conn: &Connection, keys: &Keys, consumer: &str) {
    let name = format!("name={}", blocking_client_name(consumer));
    let mut list = redis::cmd("CLIENT");
    list.arg("LIST");
    let clients: Result<String, _> = conn.on_node_of(&keys.stream, list).await;
    let Ok(clients) = clients else { return };
    for line in clients.lines().filter(|l| l.split(' ').any(|f| f == name)) {
        if let Some(id) = line.split(' ').find_map(|f| f.strip_prefix("id=")) {
            let mut kill = redis::cmd("CLIENT");
            kill.arg("KILL").arg("ID").arg(id);
            let _: Result<(), _> = conn.on_node_of(&keys.stream, kill).await;
        }
    }
}

/// Hands back everything `consumer` holds to its queue. For a worker stopping, and for a
/// process whose workers were stopped without finishing (a shutdown timeout).
pub async fn release(conn: &Connection, keys: &Keys, consumer: &str) -> Result<u64, QueueError> {
    cut_off_blocked_reads(conn, keys, consumer).await;
    const PAGE: usize = 200;
    let mut released = 0;
    loop {
        let held = held_by(conn, keys, consumer, PAGE).await?;
        let last = held.len() < PAGE;
        let mut inv = invocation(&scripts::RELEASE, keys);
        inv.arg(GROUP)
            .arg(consumer)
            .arg(if last { "1" } else { "0" });
        for (entry, id) in &held {
            // An entry whose stream entry is gone names no job: claimed as "", forgotten.
            let id = id.as_deref().unwrap_or("");
            inv.arg(entry).arg(id).key(keys.job(id));
        }
        released += inv.run_nowait::<u64>(conn).await?;
        if last {
            return Ok(released);
        }
    }
}

/// Up to `page` entries `consumer` holds, with the job each names (if its entry still exists).
async fn held_by(
    conn: &Connection,
    keys: &Keys,
    consumer: &str,
    page: usize,
) -> Result<Vec<(String, Option<String>)>, QueueError> {
    let pending: redis::RedisResult<StreamPendingCountReply> = redis::cmd("XPENDING")
        .arg(&keys.stream)
        .arg(GROUP)
        .arg("-")
        .arg("+")
        .arg(page)
        .arg(consumer)
        .query_async(&mut conn.clone())
        .await;
    let entries: Vec<String> = match pending {
        Ok(p) => p.ids.into_iter().map(|p| p.id).collect(),
        // No stream or group yet: nothing can be held.
        Err(e) if e.code() == Some("NOGROUP") => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for entry in &entries {
        pipe.cmd("XRANGE").arg(&keys.stream).arg(entry).arg(entry);
    }
    let ranges: Vec<StreamRangeReply> = pipe.query_async(&mut conn.clone()).await?;
    Ok(entries
        .into_iter()
        .zip(ranges)
        .map(|(entry, range)| {
            let id = range.ids.first().and_then(|e| e.get::<String>("id"));
            (entry, id)
        })
        .collect())
}

impl<J: JobKind> StreamBackend<J> {
    /// The shared, multiplexed connection (for inspection and producing).
    pub fn connection(&self) -> Connection {
        self.shared.conn.clone()
    }

    fn start_fetch(&mut self, worker: &WorkerContext) {
        self.fetch = Some(tokio::spawn(fetch_cycle::<J>(
            self.shared.clone(),
            self.topology.clone(),
            self.blocking.clone(),
            worker.name().to_string(),
        )));
    }

    fn stop_background(&mut self) {
        if let Some(fetch) = self.fetch.take() {
            fetch.abort();
        }
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        // Closing the blocking connection cancels a read still waiting for jobs.
        self.blocking = Arc::new(OnceCell::new());
    }
}

impl<J: JobKind> Backend for StreamBackend<J> {
    type Task = Task<Vec<u8>>;
    type Error = QueueError;

    fn poll_ready(
        &mut self,
        _cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), QueueError>> {
        let _ = self.shared.consumer.set(worker.name().to_string());
        if self.renewer.is_none() {
            self.renewer = Some(tokio::spawn(renew_leases(
                self.shared.clone(),
                worker.name().to_string(),
            )));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<Task<Vec<u8>>, QueueError>>> {
        loop {
            if let Some(fetch) = self.fetch.as_mut() {
                if let Poll::Ready(result) = fetch.poll_unpin(cx) {
                    self.fetch = None;
                    // Only a panic inside the fetch task; the entries it may have claimed are
                    // recovered through their leases.
                    if let Err(e) = result {
                        tracing::error!(queue = %self.shared.config.queue, error = %e, "fetch task failed")
                    }
                }
            }
            if self.shared.is_paused() {
                // Fetched jobs wait unstarted (their leases kept) until the queue resumes.
                let tick = self
                    .pause_tick
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(PAUSE_LOOK / 2)));
                ready!(std::future::Future::poll(tick.as_mut(), cx));
                self.pause_tick = None;
                continue;
            }
            let (next, left) = {
                let mut unstarted = self.shared.unstarted();
                (unstarted.pop_front(), unstarted.len())
            };
            if let Some(fetched) = next {
                if self.fetch.is_none() && left < self.shared.config.fetch_batch / 2 {
                    self.start_fetch(worker);
                }
                return Poll::Ready(Some(Ok(self.task(fetched, worker.name()))));
            }
            if self.fetch.is_none() {
                self.start_fetch(worker);
                continue;
            }
            return Poll::Pending;
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), QueueError>> {
        if self.closing.is_none() {
            // Jobs fetched but not started, and entries a stopped fetch may have been given,
            // go back to the queue for other workers.
            self.stop_background();
            self.shared.unstarted().clear();
            let shared = self.shared.clone();
            let consumer = worker.name().to_string();
            self.closing = Some(
                async move {
                    match release(&shared.conn, &shared.keys, &consumer).await {
                        Ok(n) if n > 0 => {
                            tracing::info!(queue = %shared.config.queue, jobs = n, "handed back unstarted jobs")
                        }
                        Ok(_) => {}
                        // Not fatal: the leases run out and other workers take the jobs over.
                        Err(e) => tracing::warn!(queue = %shared.config.queue, error = %e, "could not hand back jobs"),
                    }
                    shared.held().clear();
                }
                .boxed(),
            );
        }
        if let Some(closing) = self.closing.as_mut() {
            ready!(closing.poll_unpin(cx));
        }
        Poll::Ready(Ok(()))
    }
}

impl<J: JobKind> BackendConfig for StreamBackend<J> {
    type Args = J;
    type Id = String;
    type Kind = Durable;
    type Config = QueueConfig;
    type Layer = AckLayer;

    fn config(&self) -> &QueueConfig {
        &self.shared.config
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> AckLayer {
        AckLayer {
            settle: self.settle.clone(),
            retry: self.shared.config.retry,
            in_flight: self.shared.in_flight.clone(),
        }
    }
}

impl<J: JobKind> WireFormatBackend for StreamBackend<J> {
    type Codec = JsonCodec<Vec<u8>>;
    type Compact = Vec<u8>;

    fn codec(&self) -> &Self::Codec {
        &self.codec
    }
}

/// How one run ended, as the queue records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Retry { delay: Duration, error: String },
    Dead { error: String },
}

/// Decides what a run's result means for the job. One retry mechanism: the queue's.
pub fn classify<R>(
    result: &Result<R, BoxDynError>,
    delivery: &Delivery,
    retry: &RetrySchedule,
) -> Outcome {
    let err = match result {
        Ok(_) => return Outcome::Done,
        Err(e) => e,
    };
    let error = truncate(&err.to_string());
    if matches!(err.downcast_ref::<JobError>(), Some(JobError::Permanent(_)))
        || err.downcast_ref::<AbortError>().is_some()
    {
        return Outcome::Dead { error };
    }
    if delivery.attempt >= delivery.max_attempts {
        return Outcome::Dead {
            error: format!(
                "{error} (attempt {} of {})",
                delivery.attempt, delivery.max_attempts
            ),
        };
    }
    let delay = match (
        err.downcast_ref::<RetryAfterError>(),
        err.downcast_ref::<JobError>(),
    ) {
        (Some(r), _) => r.get_duration(),
        // A peer's wish, within reason: never sooner than our schedule, never over a day.
        (_, Some(JobError::RetryAfter(_, after))) => (*after)
            .max(retry.delay(delivery.attempt))
            .min(Duration::from_secs(24 * 3600)),
        _ => retry.delay(delivery.attempt),
    };
    Outcome::Retry { delay, error }
}

struct SettleRequest {
    delivery: Delivery,
    outcome: Outcome,
    done: oneshot::Sender<()>,
}

/// Records results in batches: whatever arrived while the previous batch was being written
/// goes in the next one, so a busy worker writes many results per round trip.
async fn settler(shared: Arc<Shared>, mut rx: mpsc::Receiver<SettleRequest>) {
    const MAX_BATCH: usize = 256;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        settle_batch(&shared, &batch).await;
        {
            let mut held = shared.held();
            for request in batch.drain(..) {
                held.remove(&request.delivery.entry);
                let _ = request.done.send(());
            }
        }
        // Busy, the next settle drops the done jobs past retention; idle, they go now.
        if rx.is_empty() {
            drop_retained(&shared).await;
        }
    }
}

/// Drops the done jobs past their retention that the last settle named (a settle of no runs),
/// for as long as there are more, a bounded number of rounds.
async fn drop_retained(shared: &Shared) {
    for _ in 0..10 {
        let beyond = std::mem::take(&mut *shared.retention());
        if beyond.is_empty() {
            return;
        }
        let mut inv = invocation(&scripts::SETTLE, &shared.keys);
        settle_header(&mut inv, shared, "", 0);
        for item in &beyond {
            inv.arg(item)
                .key(shared.keys.job(super::done_item_id(item)));
        }
        match inv
            .run_nowait::<(Vec<i64>, Vec<String>)>(&shared.conn)
            .await
        {
            Ok((_, next)) => *shared.retention() = next,
            Err(e) => {
                // Not lost: the next settle names them again.
                tracing::warn!(queue = %shared.config.queue, error = %e, "could not drop old done jobs");
                return;
            }
        }
    }
}

async fn settle_batch(shared: &Shared, batch: &[SettleRequest]) {
    // The batch may mix consumers only in theory (one settler per worker); group by consumer.
    let conn = shared.conn.clone();
    let mut consumers: Vec<&str> = batch.iter().map(|r| r.delivery.consumer.as_str()).collect();
    consumers.dedup();
    for consumer in consumers {
        let runs: Vec<&SettleRequest> = batch
            .iter()
            .filter(|r| r.delivery.consumer == consumer)
            .collect();
        let mut inv = invocation(&scripts::SETTLE, &shared.keys);
        settle_header(&mut inv, shared, consumer, runs.len());
        for r in &runs {
            let d = &r.delivery;
            inv.key(shared.keys.job(&d.job_id));
            match &r.outcome {
                Outcome::Done => inv.arg(&d.entry).arg(&d.job_id).arg("done").arg(0).arg(""),
                Outcome::Retry { delay, error } => inv
                    .arg(&d.entry)
                    .arg(&d.job_id)
                    .arg("retry")
                    .arg(millis(*delay))
                    .arg(error),
                Outcome::Dead { error } => inv
                    .arg(&d.entry)
                    .arg(&d.job_id)
                    .arg("dead")
                    .arg(0)
                    .arg(error),
            };
        }
        // Done jobs past their retention, as the previous settle named them, go with this one.
        let beyond = std::mem::take(&mut *shared.retention());
        for item in &beyond {
            inv.arg(item)
                .key(shared.keys.job(super::done_item_id(item)));
        }
        // Keep trying for as long as the lease would have protected the jobs; after that other
        // workers take them over and run them again (at least once, never lost).
        let deadline = tokio::time::Instant::now() + shared.config.lease;
        let mut failures = 0;
        loop {
            match inv.run::<(Vec<i64>, Vec<String>)>(&conn).await {
                Ok((recorded, next)) => {
                    *shared.retention() = next;
                    let lost = recorded.iter().filter(|r| **r == 0).count();
                    if lost > 0 {
                        tracing::warn!(queue = %shared.config.queue, lost, "results not recorded: the lease had passed, or a settle sent again found them recorded");
                    }
                    break;
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(queue = %shared.config.queue, error = %e, "recording results failed; trying again");
                    tokio::time::sleep(backoff(failures)).await;
                    failures += 1;
                }
                Err(e) => {
                    tracing::error!(queue = %shared.config.queue, error = %e, "could not record results; the jobs may run again");
                    break;
                }
            }
        }
    }
}

/// The backend's layer around every run: it reads the result and has the queue record it
/// before the worker counts the run as finished.
#[derive(Clone)]
pub struct AckLayer {
    settle: mpsc::Sender<SettleRequest>,
    retry: RetrySchedule,
    in_flight: Arc<AtomicUsize>,
}

impl<S> Layer<S> for AckLayer {
    type Service = AckService<S>;

    fn layer(&self, inner: S) -> AckService<S> {
        AckService {
            inner,
            settle: self.settle.clone(),
            retry: self.retry,
            in_flight: self.in_flight.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AckService<S> {
    inner: S,
    settle: mpsc::Sender<SettleRequest>,
    retry: RetrySchedule,
    in_flight: Arc<AtomicUsize>,
}

impl<S, Args> Service<Task<Args>> for AckService<S>
where
    S: Service<Task<Args>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError>,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<S::Response, BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxDynError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        let delivery = task.data().get::<Delivery>().cloned();
        let run = self.inner.call(task);
        let settle = self.settle.clone();
        let retry = self.retry;
        let in_flight = InFlight::start(self.in_flight.clone());
        async move {
            let result = run.await.map_err(Into::into);
            if let Some(delivery) = delivery {
                let outcome = classify(&result, &delivery, &retry);
                let (done, recorded) = oneshot::channel();
                if settle
                    .send(SettleRequest {
                        delivery,
                        outcome,
                        done,
                    })
                    .await
                    .is_ok()
                {
                    let _ = recorded.await;
                }
            }
            drop(in_flight);
            result
        }
        .boxed()
    }
}

/// One run counted as under way for as long as it lives (a run cancelled midway too).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn start(counter: Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(attempt: u32, max_attempts: u32) -> Delivery {
        Delivery {
            job_id: "j".into(),
            entry: "1-0".into(),
            consumer: "c".into(),
            attempt,
            max_attempts,
        }
    }

    const SCHEDULE: RetrySchedule =
        RetrySchedule::new(3, Duration::from_millis(100), Duration::from_secs(1));

    #[test]
    fn handler_answers_decide_the_outcome() {
        let ok: Result<(), BoxDynError> = Ok(());
        assert_eq!(classify(&ok, &delivery(1, 3), &SCHEDULE), Outcome::Done);

        let retry: Result<(), BoxDynError> = Err(Box::new(JobError::retry("kakaopay 500")));
        assert!(
            matches!(classify(&retry, &delivery(1, 3), &SCHEDULE), Outcome::Retry { delay, .. } if delay <= Duration::from_millis(100))
        );
        assert!(
            matches!(
                classify(&retry, &delivery(3, 3), &SCHEDULE),
                Outcome::Dead { .. }
            ),
            "last attempt"
        );

        let permanent: Result<(), BoxDynError> = Err(Box::new(JobError::permanent("-780")));
        assert!(
            matches!(classify(&permanent, &delivery(1, 3), &SCHEDULE), Outcome::Dead { error } if error.contains("-780"))
        );

        let abort: Result<(), BoxDynError> = Err(Box::new(AbortError::new("stop")));
        assert!(matches!(
            classify(&abort, &delivery(1, 3), &SCHEDULE),
            Outcome::Dead { .. }
        ));

        let after: Result<(), BoxDynError> = Err(Box::new(RetryAfterError::new(
            "later",
            Duration::from_secs(7),
        )));
        assert_eq!(
            classify(&after, &delivery(1, 3), &SCHEDULE),
            Outcome::Retry {
                delay: Duration::from_secs(7),
                error: "RetryError: later".into()
            }
        );
    }

    #[test]
    fn last_errors_are_truncated_on_a_char_boundary() {
        let long = "가".repeat(1000);
        let t = truncate(&long);
        assert!(t.len() <= 2004 && t.ends_with('…'));
    }
}

#[cfg(test)]
mod claims {
    use super::*;
    use crate::queue::{EnqueueOptions, Producer, RetrySchedule};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize)]
    struct Probe;

    impl JobKind for Probe {
        const NAME: &'static str = "probe";
        const RETRY: RetrySchedule =
            RetrySchedule::new(3, Duration::from_millis(50), Duration::from_millis(400));
    }

    /// A queue holding one job `id`, with a 200 ms lease.
    async fn one_job(id: &str) -> (Topology, Connection, QueueConfig) {
        let topology = Topology::Server("redis://127.0.0.1:6379".into());
        let conn = Connection::open(&topology, Purpose::Shared, None)
            .await
            .unwrap();
        let ns = format!("test-{:016x}", rand::random::<u64>());
        Producer::new(conn.clone(), &ns)
            .enqueue(&Probe, EnqueueOptions::with_id(id))
            .await
            .unwrap();
        let mut config = QueueConfig::new(&ns, Probe::NAME, Probe::RETRY);
        config.lease = Duration::from_millis(200);
        (topology, conn, config)
    }

    /// A fetch by `consumer` without the claim that follows it: the entries it was given (and,
    /// with a `cursor`, took over).
    async fn fetch_unclaimed(
        backend: &StreamBackend<Probe>,
        consumer: &str,
        cursor: &str,
    ) -> Vec<String> {
        let mut read = invocation(&scripts::FETCH, &backend.shared.keys);
        read.arg(GROUP)
            .arg(consumer)
            .arg(1)
            .arg(200)
            .arg(10)
            .arg(cursor);
        let (entries, _, _, _): (Vec<String>, Vec<String>, i64, String) =
            read.run_nowait(&backend.shared.conn).await.unwrap();
        entries
    }

    /// One worker read an entry and stalled past its lease before claiming it; another took
    /// it over and runs it. The late claim must get nothing (the job would run twice at once).
    #[tokio::test]
    async fn a_claim_after_the_entry_was_taken_over_gets_nothing() {
        let (topology, conn, config) = one_job("taken").await;
        let slow = StreamBackend::<Probe>::new(topology.clone(), conn.clone(), config.clone());
        let entries = fetch_unclaimed(&slow, "slow", "").await;
        assert_eq!(entries.len(), 2, "one entry read: {entries:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let fast = StreamBackend::<Probe>::new(topology.clone(), conn, config);
        let blocking = OnceCell::new();
        let taken = fetch_once(&fast.shared, &topology, &blocking, "fast")
            .await
            .unwrap();
        assert_eq!(taken.len(), 1, "taken over: {taken:?}");
        let late = claim(&slow.shared, "slow", &entries).await.unwrap();
        assert!(late.is_empty(), "the late claim got {late:?}");
    }

    /// The other order: the slow worker claims the entry it read long ago. Its lease starts
    /// at the claim, so another worker looking for lost leases right after does not take it.
    #[tokio::test]
    async fn a_late_claim_starts_the_lease_afresh() {
        let (topology, conn, config) = one_job("late").await;
        let slow = StreamBackend::<Probe>::new(topology.clone(), conn.clone(), config.clone());
        let entries = fetch_unclaimed(&slow, "slow", "").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let claimed = claim(&slow.shared, "slow", &entries).await.unwrap();
        assert_eq!(claimed.len(), 1, "the slow worker runs it");
        let fast = StreamBackend::<Probe>::new(topology, conn, config);
        let taken = fetch_unclaimed(&fast, "fast", "0-0").await;
        assert!(taken.is_empty(), "taken over at once: {taken:?}");
    }
    /// SETTLE of the `entries` (entry, id pairs) `consumer` claimed, all done: whether each
    /// was recorded.
    async fn settle_done(shared: &Shared, consumer: &str, entries: &[String]) -> Vec<i64> {
        let mut inv = invocation(&scripts::SETTLE, &shared.keys);
        settle_header(&mut inv, shared, consumer, entries.len() / 2);
        for pair in entries.chunks(2) {
            inv.key(shared.keys.job(&pair[1]));
            inv.arg(&pair[0]).arg(&pair[1]).arg("done").arg(0).arg("");
        }
        let (recorded, _): (Vec<i64>, Vec<String>) = inv.run_nowait(&shared.conn).await.unwrap();
        recorded
    }

    /// Settled entries leave the stream (in whole nodes, as `XTRIM MINID ~` does), and a
    /// settle whose stream is gone still records its jobs done.
    #[tokio::test]
    async fn settled_entries_are_trimmed_from_the_stream() {
        let (topology, conn, config) = one_job("t-first").await;
        let ns = config.namespace.clone();
        let producer = Producer::new(conn.clone(), &ns);
        let more = (0..249).map(|i| (&Probe, EnqueueOptions::with_id(format!("t{i}"))));
        producer.enqueue_batch(more).await.unwrap();
        let backend = StreamBackend::<Probe>::new(topology, conn.clone(), config);
        let shared = &backend.shared;
        let fetch = || async {
            let mut read = invocation(&scripts::FETCH, &shared.keys);
            read.arg(GROUP)
                .arg("c")
                .arg(500)
                .arg(30_000)
                .arg(10)
                .arg("");
            let (entries, _, _, _): (Vec<String>, Vec<String>, i64, String) =
                read.run_nowait(&shared.conn).await.unwrap();
            entries
        };
        let xlen = || async {
            let mut c = conn.clone();
            let n: i64 = redis::cmd("XLEN")
                .arg(&shared.keys.stream)
                .query_async(&mut c)
                .await
                .unwrap();
            n
        };
        let entries = fetch().await;
        assert_eq!(claim(shared, "c", &entries).await.unwrap().len(), 250);
        assert_eq!(xlen().await, 250);
        assert!(settle_done(shared, "c", &entries)
            .await
            .iter()
            .all(|r| *r == 1));
        assert!(xlen().await < 100, "trimmed: {} left", xlen().await);

        producer
            .enqueue(&Probe, EnqueueOptions::with_id("t-late"))
            .await
            .unwrap();
        let late = fetch().await;
        assert_eq!(claim(shared, "c", &late).await.unwrap().len(), 1);
        let mut c = conn.clone();
        let _: () = redis::cmd("DEL")
            .arg(&shared.keys.stream)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(settle_done(shared, "c", &late).await, [1]);
        let newest: Vec<String> = redis::cmd("LRANGE")
            .arg(&shared.keys.done)
            .arg(0)
            .arg(0)
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(newest[0].ends_with(":t-late"), "{newest:?}");
    }
}

#[cfg(test)]
mod retention {
    //! SETTLE's retention of done jobs, against a done list written by hand: which items it
    //! names as past their retention, and how it drops the ones it named before.
    use super::*;

    struct DoneList {
        conn: Connection,
        keys: Keys,
        /// Oldest first.
        items: Vec<String>,
    }

    /// A done list of `aged` items 10 s old, then `fresh` items of now, each with a record.
    async fn done_list(aged: usize, fresh: usize) -> DoneList {
        let topology = Topology::Server("redis://127.0.0.1:6379".into());
        let conn = Connection::open(&topology, Purpose::Shared, None)
            .await
            .unwrap();
        let keys = Keys::new(&format!("test-{:016x}", rand::random::<u64>()), "kept");
        let mut c = conn.clone();
        let (s, us): (i64, i64) = redis::cmd("TIME").query_async(&mut c).await.unwrap();
        let now = s * 1000 + us / 1000;
        let items: Vec<String> = (0..aged)
            .map(|i| format!("{}:a{i}", now - 10_000))
            .chain((0..fresh).map(|i| format!("{now}:f{i}")))
            .collect();
        for chunk in items.chunks(500) {
            let mut pipe = redis::pipe();
            pipe.cmd("LPUSH").arg(&keys.done).arg(chunk);
            for item in chunk {
                pipe.hset(keys.job(super::super::done_item_id(item)), "status", "done");
            }
            let _: () = pipe.query_async(&mut c).await.unwrap();
        }
        DoneList { conn, keys, items }
    }

    impl DoneList {
        /// A settle of no runs that drops `named` first: the items it names next.
        async fn settle(&self, keep_count: u64, keep_ms: u64, named: &[String]) -> Vec<String> {
            let mut inv = invocation(&scripts::SETTLE, &self.keys);
            inv.key(&self.keys.stats);
            inv.arg(GROUP).arg("").arg(keep_count).arg(keep_ms).arg(0);
            for item in named {
                inv.arg(item)
                    .key(self.keys.job(super::super::done_item_id(item)));
            }
            let (_, beyond): (Vec<i64>, Vec<String>) = inv.run_nowait(&self.conn).await.unwrap();
            beyond
        }

        async fn left(&self) -> (Vec<String>, usize) {
            let mut c = self.conn.clone();
            let mut list: Vec<String> = redis::cmd("LRANGE")
                .arg(&self.keys.done)
                .arg(0)
                .arg(-1)
                .query_async(&mut c)
                .await
                .unwrap();
            list.reverse();
            let records: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.keys.job_prefix))
                .query_async(&mut c)
                .await
                .unwrap();
            (list, records.len())
        }

        async fn remove(self) {
            let mut c = self.conn.clone();
            let mut keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.keys.job_prefix))
                .query_async(&mut c)
                .await
                .unwrap();
            keys.extend([self.keys.done.clone(), self.keys.stats.clone()]);
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut c)
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_settle_names_every_done_item_past_retention_oldest_first_up_to_500() {
        // (aged, fresh, keep_count, keep_ms, how many of the oldest are named)
        let cases = [
            (300, 5, 1_000, 1_000, 300), // by age alone, far more than one settle adds
            (0, 40, 10, 60_000, 30),     // by count alone
            (10, 40, 45, 1_000, 10),     // by count, then by age; no fresh one
            (0, 40, 1_000, 60_000, 0),   // none
            (0, 0, 0, 0, 0),             // an empty list
            (700, 0, 1_000, 1_000, 500), // at most 500 a call
            (0, 700, 100, 60_000, 500),
        ];
        for (aged, fresh, keep_count, keep_ms, named) in cases {
            let list = done_list(aged, fresh).await;
            let beyond = list.settle(keep_count, keep_ms, &[]).await;
            assert_eq!(
                beyond,
                list.items[..named],
                "{aged} aged, {fresh} fresh, keep {keep_count} / {keep_ms} ms"
            );
            list.remove().await;
        }
    }

    #[tokio::test]
    async fn named_items_are_dropped_with_their_records_while_they_are_still_the_oldest() {
        let list = done_list(0, 10).await;
        let items = list.items.clone();
        // The three oldest and then one that is not next: the three go, the rest stays.
        let named = [&items[..3], &items[5..6]].concat();
        list.settle(1_000, 60_000, &named).await;
        let (left, records) = list.left().await;
        assert_eq!((left.as_slice(), records), (&items[3..], 7));
        // Named again (another worker dropped them first): nothing more goes.
        list.settle(1_000, 60_000, &items[..3]).await;
        assert_eq!(list.left().await, (items[3..].to_vec(), 7));
        list.remove().await;
    }

    #[tokio::test]
    async fn an_item_not_of_ours_is_dropped_without_the_record_its_text_names() {
        let list = done_list(0, 3).await;
        let mut c = list.conn.clone();
        let junk = list.keys.job("junk");
        let _: () = redis::pipe()
            .rpush(&list.keys.done, "junk")
            .hset(&junk, "status", "running")
            .query_async(&mut c)
            .await
            .unwrap();
        let named = list.settle(1_000, 60_000, &[]).await;
        assert_eq!(named, ["junk"], "it would stop retention for good");
        list.settle(1_000, 60_000, &named).await;
        let (left, _) = list.left().await;
        assert_eq!(left, list.items, "the item is gone");
        let status: Option<String> = redis::cmd("HGET")
            .arg(&junk)
            .arg("status")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(status.as_deref(), Some("running"), "the record stays");
        list.remove().await;
    }
}
