//! The workers: one apalis worker per job kind on our Redis queue, plus the reconciler, under
//! one apalis Monitor with graceful shutdown. Handlers are plain functions of their job.

mod approve;
mod cancel;
mod deliver;
pub mod reconciler;

pub use reconciler::ReconcilerSettings;

use crate::config::WorkerArgs;
use crate::kakaopay::KakaoPay;
use crate::store::Store;
use apalis::prelude::*;
use kakaopay_jobs::queue::RetrySchedule;
use kakaopay_jobs::queue::{consumer_name, Producer, QueueConfig, Topology};
use kakaopay_jobs::{ApprovePayment, CancelPayment, DeliverEvent, JobKind};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Runs one job of kind `J`, timed and its outcome counted: the one place job metrics are
/// taken, so each worker is the flow of its job and nothing else.
pub(crate) async fn measured<J: kakaopay_jobs::JobKind>(
    deps: &Deps,
    run: impl std::future::Future<Output = Result<(), kakaopay_jobs::queue::JobError>>,
) -> Result<(), kakaopay_jobs::queue::JobError> {
    let started = std::time::Instant::now();
    let result = run.await;
    crate::metrics::job_ran(deps.store.namespace(), J::NAME, outcome(&result), started);
    result
}

/// A run's outcome for the metrics: `done`, `retry` or `permanent`.
pub(crate) fn outcome<T>(result: &Result<T, kakaopay_jobs::queue::JobError>) -> &'static str {
    match result {
        Ok(_) => "done",
        Err(
            kakaopay_jobs::queue::JobError::Retry(_)
            | kakaopay_jobs::queue::JobError::RetryAfter(..),
        ) => "retry",
        Err(kakaopay_jobs::queue::JobError::Permanent(_)) => "permanent",
    }
}

/// What handlers need, shared by all of them.
#[derive(Clone)]
pub struct Deps {
    pub store: Store,
    pub producer: Producer,
    pub kakaopay: KakaoPay,
    /// KakaoPay's ready → approve window.
    pub ready_window: Duration,
    /// Where events go; `None` records them without sending.
    pub webhook: Option<Webhook>,
    /// For webhook deliveries (15 s timeout).
    pub http: reqwest::Client,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: url::Url,
    /// One secret, or two while the receiver rotates: every delivery is signed with each.
    pub secrets: Vec<crate::secret::Secret>,
}

impl Webhook {
    /// Where `WEBHOOK_URL` and `WEBHOOK_SECRET` send events; `None` without a URL.
    pub fn from_args(args: &WorkerArgs) -> Option<Webhook> {
        args.webhook_url.clone().map(|url| Webhook {
            url,
            secrets: args.webhook_secret.clone().map(|s| s.0).unwrap_or_default(),
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// In-flight jobs per queue in this process.
    pub concurrency: usize,
    pub lease: Duration,
    pub shutdown_timeout: Duration,
    pub reconciler: ReconcilerSettings,
    /// The retry schedule of each job kind (DESIGN.md's by default; tests shorten them).
    pub approve_retry: RetrySchedule,
    pub cancel_retry: RetrySchedule,
    pub deliver_retry: RetrySchedule,
}

impl WorkerSettings {
    /// DESIGN.md's settings, with `concurrency` jobs in flight per queue.
    pub fn defaults(concurrency: usize) -> WorkerSettings {
        WorkerSettings {
            concurrency,
            lease: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            reconciler: ReconcilerSettings {
                every: Duration::from_secs(30),
                approving_grace: Duration::from_secs(120),
            },
            approve_retry: ApprovePayment::RETRY,
            cancel_retry: CancelPayment::RETRY,
            deliver_retry: DeliverEvent::RETRY,
        }
    }
}

impl From<&WorkerArgs> for WorkerSettings {
    fn from(args: &WorkerArgs) -> Self {
        let mut w = WorkerSettings::defaults(args.worker_concurrency as usize);
        w.lease = Duration::from_secs(args.job_lease_secs);
        w.reconciler.every = Duration::from_secs(args.reconcile_every_secs);
        // An approval normally settles in seconds; past a few leases its job is looked at.
        w.reconciler.approving_grace = w.lease * 4;
        w
    }
}

/// What a process with workers keeps up besides running jobs.
#[derive(Debug, Clone, Copy)]
pub struct Keeping {
    /// How the process appears in `GET /v1/workers`.
    pub kind: crate::registry::ProcessKind,
    /// Dead jobs older than this are dropped (`DEAD_RETENTION_DAYS`).
    pub dead_retention: Duration,
    pub heartbeat: Duration,
}

/// Running workers; [`Workers::stop`] stops them gracefully.
pub struct Workers {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    registration: crate::registry::Registration,
}

/// How often each process drops the dead jobs past their retention. Every process does (an
/// idempotent script), so the retention holds with any one of them running.
const DEAD_SWEEP_EVERY: Duration = Duration::from_secs(60);

async fn sweep_dead(store: Store, retention: Duration, mut stopped: watch::Receiver<bool>) {
    let queues = store.queues();
    loop {
        for queue in kakaopay_jobs::QUEUES {
            match queues.drop_expired_dead(queue, retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(queue, jobs = n, "dropped dead jobs past their retention"),
                Err(e) => tracing::warn!(queue, error = %e, "could not drop old dead jobs"),
            }
        }
        let every = DEAD_SWEEP_EVERY.min(retention.max(Duration::from_millis(200)));
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

/// How often each process samples its queues' oldest pending age for the board's charts
/// (the largest sample of a minute is kept, so every process sampling is harmless).
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

async fn sample_queues(store: Store, mut stopped: watch::Receiver<bool>) {
    let queues = store.queues();
    loop {
        for queue in kakaopay_jobs::QUEUES {
            if let Err(e) = queues.sample_oldest_pending(queue).await {
                tracing::debug!(queue, error = %e, "could not sample the oldest pending job");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

fn queue_config<J: JobKind>(
    namespace: &str,
    settings: &WorkerSettings,
    retry: RetrySchedule,
) -> QueueConfig {
    let mut config = QueueConfig::new(namespace, J::NAME, retry);
    config.lease = settings.lease;
    config.fetch_batch = settings.concurrency;
    config
}

/// Starts the workers of every queue, the reconciler and what a process with workers keeps
/// up (its registration, the dead-job sweep, the queue samples), until [`Workers::stop`].
pub fn start(
    topology: Topology,
    deps: Deps,
    settings: WorkerSettings,
    keeping: Keeping,
) -> Workers {
    let (stop, stopped) = watch::channel(false);
    let registration = crate::registry::register(
        deps.store.clone(),
        keeping.kind,
        settings.concurrency,
        keeping.heartbeat,
    );
    let sweeper = tokio::spawn(sweep_dead(
        deps.store.clone(),
        keeping.dead_retention,
        stopped.clone(),
    ));
    let sampler = tokio::spawn(sample_queues(deps.store.clone(), stopped.clone()));
    let monitor = monitor(&topology, &deps, settings);
    let reconciler = tokio::spawn(reconciler::run(
        deps.clone(),
        settings.reconciler,
        stopped.clone(),
    ));
    let task = tokio::spawn(run_until_stopped(
        monitor,
        deps.store.clone(),
        stopped,
        [reconciler, sweeper, sampler],
    ));
    Workers {
        stop,
        task,
        registration,
    }
}

/// One worker per queue, each a plain function of its job; the factory runs again if apalis
/// restarts a worker.
fn monitor(topology: &Topology, deps: &Deps, settings: WorkerSettings) -> Monitor {
    let namespace = deps.store.namespace();
    macro_rules! worker {
        ($job:ty, $retry:expr, $handler:path) => {{
            let (topology, deps) = (topology.clone(), deps.clone());
            let name = consumer_name(<$job>::NAME, 0);
            let config = queue_config::<$job>(namespace, &settings, $retry);
            move |_restarts| {
                WorkerBuilder::new(name.clone())
                    .backend(
                        deps.store
                            .stream_backend::<$job>(topology.clone(), config.clone()),
                    )
                    .concurrency(settings.concurrency)
                    .catch_panic()
                    .data(deps.clone())
                    .build($handler)
            }
        }};
    }
    Monitor::new()
        .should_restart(|ctx, e| {
            tracing::error!(worker = ctx.name(), error = %e, "worker failed; restarting it");
            true
        })
        .shutdown_timeout(settings.shutdown_timeout)
        .register(worker!(
            ApprovePayment,
            settings.approve_retry,
            approve::approve_payment
        ))
        .register(worker!(
            CancelPayment,
            settings.cancel_retry,
            cancel::cancel_payment
        ))
        .register(worker!(
            DeliverEvent,
            settings.deliver_retry,
            deliver::deliver_event
        ))
}

/// Runs the workers until `stopped`, hands back the jobs the shutdown timeout cut off, and
/// waits for the tasks beside them (each stops on `stopped` too).
async fn run_until_stopped(
    monitor: Monitor,
    store: Store,
    stopped: watch::Receiver<bool>,
    beside: [JoinHandle<()>; 3],
) {
    let mut signal = stopped;
    let result = monitor
        .run_with_signal(async move {
            let _ = signal.wait_for(|s| *s).await;
            Ok(())
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "workers stopped with an error");
    }
    // Jobs the shutdown timeout cut off go back to the queue now, not after their lease.
    let approve_name = consumer_name(ApprovePayment::NAME, 0);
    match store
        .queues()
        .release(ApprovePayment::NAME, &approve_name)
        .await
    {
        Ok(n) if n > 0 => tracing::info!(jobs = n, "handed back unfinished jobs"),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not hand back unfinished jobs; their leases will")
        }
    }
    for task in beside {
        let _ = task.await;
    }
}

impl Workers {
    pub async fn stop(self) {
        // Off the list first: a process stopping takes no more work and says so at once.
        self.registration.stop().await;
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
