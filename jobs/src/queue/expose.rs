//! apalis-core's listing, metrics and sink traits on our backend, so tools built on them
//! (apalis-board) can show and feed our queues.

use super::backend::StreamBackend;
use super::inspect::{self, JobInfo, Status};
use super::producer::{enqueue_encoded, Encoded};
use super::QueueError;
use crate::JobKind;
use apalis_core::backend::queue::Queue;
use apalis_core::backend::BackendConfig;
use apalis_core::backend::{
    FetchById, Filter, ListAllTasks, ListQueues, ListTasks, ListWorkers, Metrics, QueueInfo,
    RunningWorker, StatType, Statistic,
};
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::status::Status as TaskStatus;
use apalis_core::task::task_id::TaskId;
use apalis_core::task::Task;
use futures::{FutureExt, Sink};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

fn status_of(filter: &Filter) -> Status {
    match filter.status {
        Some(TaskStatus::Running) => Status::Running,
        Some(TaskStatus::Done) => Status::Done,
        Some(TaskStatus::Failed) => Status::Failed,
        Some(TaskStatus::Killed) => Status::Dead,
        Some(TaskStatus::Queued) => Status::Scheduled,
        _ => Status::Pending,
    }
}

fn task_status(status: &str) -> TaskStatus {
    match status {
        "running" => TaskStatus::Running,
        "scheduled" => TaskStatus::Queued,
        "done" => TaskStatus::Done,
        "dead" => TaskStatus::Killed,
        _ => TaskStatus::Pending,
    }
}

fn task(job: JobInfo) -> Task<Vec<u8>> {
    let mut builder = TaskBuilder::new(serde_json::to_vec(&job.args).unwrap_or_default())
        .task_id(TaskId::from_string(job.id))
        .attempt(job.attempts as usize)
        .max_attempts(job.max_attempts as usize)
        .status(task_status(&job.status))
        .queue(Queue::from(job.queue.as_str()));
    if let Some(at) = job.run_at_ms {
        builder = builder.run_at_timestamp(at / 1000);
    }
    builder.build()
}

fn stat(title: &str, value: u64, priority: u64) -> Statistic {
    Statistic {
        title: title.into(),
        stat_type: StatType::Number,
        value: value.to_string(),
        priority: Some(priority),
    }
}

impl<J: JobKind> StreamBackend<J> {
    fn statistics(
        &self,
    ) -> impl Future<Output = Result<Vec<Statistic>, QueueError>> + Send + 'static {
        let (conn, ns) = (self.connection(), self.config().namespace.clone());
        async move {
            let c = inspect::counts(&conn, &ns, J::NAME).await?;
            Ok(vec![
                stat("RUNNING_JOBS", c.running, 1),
                stat("PENDING_JOBS", c.pending, 2),
                stat("SCHEDULED_JOBS", c.scheduled, 3),
                stat("FAILED_JOBS", c.failed, 4),
                stat("DEAD_JOBS", c.dead, 5),
                stat("DONE_JOBS", c.done, 6),
            ])
        }
    }

    /// Workers by last heartbeat; `live_within` drops those silent for longer.
    fn workers(
        &self,
        live_within: Option<Duration>,
    ) -> impl Future<Output = Result<Vec<RunningWorker>, QueueError>> + Send + 'static {
        let mut conn = self.connection();
        let key = self.config().keys().workers;
        async move {
            let rows: Vec<(String, u64)> = redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await?;
            let now_ms: u64 = {
                let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
                secs * 1000 + micros / 1000
            };
            Ok(rows
                .into_iter()
                .filter(|(_, beat)| {
                    live_within.is_none_or(|w| now_ms.saturating_sub(*beat) <= w.as_millis() as u64)
                })
                .map(|(id, beat)| RunningWorker {
                    id,
                    queue: J::NAME.to_string(),
                    backend: "kakaopay-jobs Redis Streams".into(),
                    started_at: beat / 1000,
                    last_heartbeat: beat / 1000,
                    layers: String::new(),
                })
                .collect())
        }
    }
}

impl<J: JobKind> Metrics for StreamBackend<J> {
    fn global(&self) -> impl Future<Output = Result<Vec<Statistic>, QueueError>> + Send {
        self.statistics()
    }

    fn fetch_by_queue(&self) -> impl Future<Output = Result<Vec<Statistic>, QueueError>> + Send {
        self.statistics()
    }
}

impl<J: JobKind> ListWorkers for StreamBackend<J> {
    /// Workers that renewed their leases within two lease periods.
    fn list_workers(&self) -> impl Future<Output = Result<Vec<RunningWorker>, QueueError>> + Send {
        self.workers(Some(self.config().lease * 2))
    }

    fn list_all_workers(
        &self,
    ) -> impl Future<Output = Result<Vec<RunningWorker>, QueueError>> + Send {
        self.workers(None)
    }
}

impl<J: JobKind> ListQueues for StreamBackend<J> {
    fn list_queues(&self) -> impl Future<Output = Result<Vec<QueueInfo>, QueueError>> + Send {
        let stats = self.statistics();
        let workers = self.workers(Some(self.config().lease * 2));
        async move {
            Ok(vec![QueueInfo {
                name: J::NAME.to_string(),
                stats: stats.await?,
                workers: workers.await?.into_iter().map(|w| w.id).collect(),
                activity: Vec::new(),
            }])
        }
    }
}

impl<J: JobKind> ListTasks for StreamBackend<J> {
    fn list_tasks(
        &self,
        filter: &Filter,
    ) -> impl Future<Output = Result<Vec<Task<Vec<u8>>>, QueueError>> + Send {
        let (conn, ns) = (self.connection(), self.config().namespace.clone());
        let (status, offset, limit) = (
            status_of(filter),
            filter.offset() as usize,
            filter.limit() as usize,
        );
        async move {
            let jobs = inspect::list(&conn, &ns, J::NAME, status, offset + limit).await?;
            Ok(jobs
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(task)
                .collect())
        }
    }
}

impl<J: JobKind> ListAllTasks for StreamBackend<J> {
    /// One backend serves one queue: all its tasks are the queue's.
    fn list_all_tasks(
        &self,
        filter: &Filter,
    ) -> impl Future<Output = Result<Vec<Task<Vec<u8>>>, QueueError>> + Send {
        self.list_tasks(filter)
    }
}

impl<J: JobKind> FetchById for StreamBackend<J> {
    fn fetch_by_id(
        &mut self,
        id: &TaskId,
    ) -> impl Future<Output = Result<Option<Task<Vec<u8>>>, QueueError>> + Send {
        let (conn, ns, id) = (
            self.connection(),
            self.config().namespace.clone(),
            id.to_string(),
        );
        async move { Ok(inspect::job(&conn, &ns, J::NAME, &id).await?.map(task)) }
    }
}

/// apalis's `TaskSink` (push, push_bulk, push_task) comes with this: tasks are buffered and
/// enqueued in one round trip on flush, keeping their id, delay and attempts when set.
impl<J: JobKind> Sink<Task<Vec<u8>>> for StreamBackend<J> {
    type Error = QueueError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), QueueError>> {
        // Finish a flush under way before taking more.
        let this = self.get_mut();
        if let Some(flush) = this.sink.flushing.as_mut() {
            let result = ready!(flush.poll_unpin(cx));
            this.sink.flushing = None;
            result?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, task: Task<Vec<u8>>) -> Result<(), QueueError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let delay = task
            .run_at()
            .map(|at| Duration::from_secs(at.saturating_sub(now)))
            .unwrap_or_default();
        let encoded = Encoded {
            id: task.task_id().map(|id| id.to_string()),
            max_attempts: task
                .max_attempts()
                .map(|m| m as u32)
                .unwrap_or(J::RETRY.max_attempts),
            delay,
            args: task.args,
        };
        self.get_mut().sink.buffer.push(encoded);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), QueueError>> {
        let this = self.get_mut();
        if this.sink.flushing.is_none() && !this.sink.buffer.is_empty() {
            let jobs = std::mem::take(&mut this.sink.buffer);
            let (conn, keys) = (this.connection(), this.config().keys());
            this.sink.flushing =
                Some(async move { enqueue_encoded(&conn, &keys, jobs).await.map(|_| ()) }.boxed());
        }
        if let Some(flush) = this.sink.flushing.as_mut() {
            let result = ready!(flush.poll_unpin(cx));
            this.sink.flushing = None;
            result?;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), QueueError>> {
        self.poll_flush(cx)
    }
}
