//! Shared by the queue tests: a fresh namespace per test on the local Redis, a job kind whose
//! handler does what the test asks, and workers run the way the service runs them.
#![allow(dead_code)]

use apalis::prelude::*;
use kakaopay_jobs::queue::{
    consumer_name, inspect, Delivery, JobError, Producer, QueueConfig, RetrySchedule, StreamBackend,
};
pub use kakaopay_jobs::queue::{Connection, Purpose, Topology};
use kakaopay_jobs::JobKind;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const LOCAL_REDIS: &str = "redis://127.0.0.1:6379";

pub fn namespace() -> String {
    format!("test-{:016x}", rand::random::<u64>())
}

/// What a test job does when it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Behaviour {
    Succeed,
    /// Fail with a retryable error on the first N attempts.
    FailTimes(u32),
    FailPermanently,
    /// Sleep, then succeed.
    Sleep(u64),
    Panic,
    /// Hang forever on attempts before attempt K (a worker that will be killed), then succeed.
    HangBeforeAttempt(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    pub n: u64,
    pub behaviour: Behaviour,
}

impl JobKind for Work {
    const NAME: &'static str = "test_work";
    const RETRY: RetrySchedule =
        RetrySchedule::new(3, Duration::from_millis(50), Duration::from_millis(400));
}

/// What the handlers saw, for the test to check.
#[derive(Default)]
pub struct Seen {
    pub runs: Mutex<HashMap<u64, Vec<(u32, Instant)>>>,
}

impl Seen {
    pub fn runs_of(&self, n: u64) -> Vec<(u32, Instant)> {
        self.runs
            .lock()
            .unwrap()
            .get(&n)
            .cloned()
            .unwrap_or_default()
    }

    pub fn total(&self) -> usize {
        self.runs.lock().unwrap().values().map(Vec::len).sum()
    }
}

pub async fn handle(
    job: Work,
    seen: Data<Arc<Seen>>,
    delivery: Data<Delivery>,
) -> Result<(), JobError> {
    seen.runs
        .lock()
        .unwrap()
        .entry(job.n)
        .or_default()
        .push((delivery.attempt, Instant::now()));
    match job.behaviour {
        Behaviour::Succeed => Ok(()),
        Behaviour::FailTimes(n) if delivery.attempt <= n => Err(JobError::retry(format!(
            "failing attempt {}",
            delivery.attempt
        ))),
        Behaviour::FailTimes(_) => Ok(()),
        Behaviour::FailPermanently => Err(JobError::permanent("this can never work")),
        Behaviour::Sleep(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        }
        Behaviour::Panic => panic!("handler bug"),
        Behaviour::HangBeforeAttempt(k) if delivery.attempt < k => {
            std::future::pending::<()>().await;
            Ok(())
        }
        Behaviour::HangBeforeAttempt(_) => Ok(()),
    }
}

/// Where the queue runs (for the workers' blocking connections) and the shared connection.
pub async fn connect(url: &str) -> (Topology, Connection) {
    let topology = Topology::Server(url.to_string());
    let conn = Connection::open(&topology, Purpose::Shared, None)
        .await
        .unwrap();
    (topology, conn)
}

pub fn config(ns: &str) -> QueueConfig {
    let mut c = QueueConfig::new(ns, Work::NAME, Work::RETRY);
    c.lease = Duration::from_secs(2);
    c
}

pub struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), String>>,
    pub errors: Arc<Mutex<Vec<String>>>,
    pub names: Vec<String>,
}

impl Running {
    /// Stops the workers gracefully and says whether any worker failed.
    pub async fn stop(mut self) -> Vec<String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = (&mut self.task).await.unwrap();
        let mut errors = self.errors.lock().unwrap().clone();
        if let Err(e) = result {
            errors.push(e);
        }
        errors
    }
}

/// Runs `workers` workers of concurrency `concurrency` under an apalis Monitor, as the service does.
pub fn run_workers(
    client: Topology,
    conn: Connection,
    config: QueueConfig,
    workers: usize,
    concurrency: usize,
    seen: Arc<Seen>,
) -> Running {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let names: Vec<String> = (0..workers)
        .map(|i| consumer_name(&config.queue, i))
        .collect();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut monitor = Monitor::new()
        .should_restart({
            let errors = errors.clone();
            move |_ctx, e| {
                errors
                    .lock()
                    .unwrap()
                    .push(format!("worker restarted after: {e}"));
                true
            }
        })
        .on_event({
            let errors = errors.clone();
            move |_ctx, event| {
                if let Event::Error(e) = event {
                    // Job failures are expected in tests; a worker error is not.
                    let text = e.to_string();
                    if !text.contains("failing attempt")
                        && !text.contains("never work")
                        && !text.contains("handler bug")
                    {
                        errors.lock().unwrap().push(text);
                    }
                }
            }
        })
        .shutdown_timeout(Duration::from_secs(5));
    for name in names.clone() {
        let (client, conn, config, seen) =
            (client.clone(), conn.clone(), config.clone(), seen.clone());
        monitor = monitor.register(move |_restarts| {
            WorkerBuilder::new(name.clone())
                .backend(StreamBackend::<Work>::new(
                    client.clone(),
                    conn.clone(),
                    config.clone(),
                ))
                .concurrency(concurrency)
                .catch_panic()
                .data(seen.clone())
                .build(handle)
        });
    }
    let release_conn = conn.clone();
    let queue = config.queue.clone();
    let ns = config.namespace.clone();
    let worker_names = names.clone();
    let task = tokio::spawn(async move {
        let result = monitor
            .run_with_signal(async move {
                let _ = stopped.await;
                Ok(())
            })
            .await
            .map_err(|e| e.to_string());
        for name in &worker_names {
            let _ = inspect::release(&release_conn, &ns, &queue, name).await;
        }
        result
    });
    Running {
        stop: Some(stop),
        task,
        errors,
        names,
    }
}

/// Polls `check` until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub async fn counts(conn: &Connection, ns: &str) -> inspect::Counts {
    inspect::counts(conn, ns, Work::NAME).await.unwrap()
}

pub fn producer(conn: &Connection, ns: &str) -> Producer {
    Producer::new(conn.clone(), ns)
}

pub fn work(n: u64, behaviour: Behaviour) -> Work {
    Work { n, behaviour }
}
