//! Builds the service from its settings: the HTTP API (`api`), the workers and reconciler
//! (`work`), or both (`serve`), sharing one Redis connection.

use crate::config::{HttpArgs, JobAttempts, KakaoPayArgs, OpsArgs, RedisArgs, WorkerArgs};
use crate::http::{self, AppState, HttpConfig, Services};
use crate::kakaopay::{KakaoPay, Timeouts};
use crate::store::Store;
use crate::workers::{self, Deps, Webhook, WorkerSettings, Workers};
use anyhow::Context;
use kakaopay_jobs::queue::{Connection, Durability, Producer, Purpose, Topology};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

#[derive(Debug, Clone)]
pub struct Settings {
    pub redis: Topology,
    /// Replicas every answered write waits for (`REDIS_WAIT_REPLICAS`).
    pub durability: Option<Durability>,
    pub namespace: String,
    pub kakaopay_api_url: Option<Url>,
    pub kakaopay_timeouts: Timeouts,
    /// KakaoPay's ready → approve window (15 minutes is the common assumption).
    pub ready_window: Duration,
    /// The API's settings, as the command line takes them; `None` runs no API.
    pub http: Option<HttpArgs>,
    pub workers: Option<WorkerSettings>,
    /// Where outbound events are POSTed (`WEBHOOK_URL`, `WEBHOOK_SECRET`).
    pub webhook: Option<Webhook>,
    /// How the queues are kept and the process watched.
    pub operations: Operations,
}

/// How the queues are kept and the process watched.
#[derive(Debug, Clone)]
pub struct Operations {
    /// Where a process without the API serves /healthz, /readyz, /metrics (`METRICS_BIND`).
    pub metrics_bind: Option<SocketAddr>,
    /// Attempts per queue of the jobs this process enqueues (`JOB_ATTEMPTS`).
    pub job_attempts: JobAttempts,
    /// How long a dead job waits for an operator (`DEAD_RETENTION_DAYS`).
    pub dead_retention: Duration,
    /// How often a process with workers says it is alive (`GET /v1/workers`).
    pub heartbeat: Duration,
}

impl Default for Operations {
    fn default() -> Self {
        Operations {
            metrics_bind: None,
            job_attempts: Default::default(),
            dead_retention: Duration::from_secs(90 * 86_400),
            heartbeat: Duration::from_secs(1),
        }
    }
}

impl Settings {
    /// The service's settings for `serve` (both halves), `api` (no `workers`) or `work` (no
    /// `http`), from the command line.
    pub fn from_args(
        redis: &RedisArgs,
        kakaopay: &KakaoPayArgs,
        http: Option<&HttpArgs>,
        workers: Option<&WorkerArgs>,
        ops: &OpsArgs,
    ) -> Settings {
        Settings {
            operations: Operations {
                // `serve` and `api` serve them with the API, on BIND.
                metrics_bind: http.is_none().then_some(ops.metrics_bind),
                job_attempts: ops.job_attempts.clone(),
                dead_retention: Duration::from_secs(u64::from(ops.dead_retention_days) * 86_400),
                ..Default::default()
            },
            redis: redis.topology(),
            durability: redis.durability(),
            namespace: redis.queue_namespace.clone(),
            kakaopay_api_url: kakaopay.kakaopay_api_url.clone(),
            kakaopay_timeouts: Timeouts::from(kakaopay),
            ready_window: Duration::from_secs(kakaopay.kakaopay_ready_window_secs),
            http: http.cloned(),
            workers: workers.map(WorkerSettings::from),
            webhook: workers.and_then(Webhook::from_args),
        }
    }
}

pub struct Application {
    /// Where the API listens, when it runs.
    pub address: Option<SocketAddr>,
    http: Option<RunningApi>,
    workers: Option<Workers>,
    /// Where a process without the API serves its metrics, when it does.
    pub metrics_address: Option<SocketAddr>,
    ops: Option<crate::ops::OpsServer>,
}

impl Application {
    pub async fn start(settings: Settings) -> anyhow::Result<Application> {
        crate::tls::init();
        crate::metrics::handle();
        let conn = Connection::open(&settings.redis, Purpose::Shared, settings.durability)
            .await
            .with_context(|| format!("cannot connect to Redis ({:?})", settings.redis))?;
        let store = open_store(conn.clone(), &settings).await?;
        let producer = Producer::new(conn, &settings.namespace)
            .with_attempts(settings.operations.job_attempts.0.clone());
        let kakaopay = KakaoPay::new(
            settings.kakaopay_api_url.clone(),
            settings.kakaopay_timeouts,
        )?;
        let api = match &settings.http {
            None => None,
            Some(args) => Some(serve_api(
                args,
                &settings,
                store.clone(),
                producer.clone(),
                kakaopay.clone(),
            )?),
        };
        let ops = settings
            .operations
            .metrics_bind
            .and_then(|bind| serve_ops(bind, store.clone()));
        let workers = settings.workers.map(|w| {
            let deps = Deps {
                store,
                producer,
                kakaopay,
                ready_window: settings.ready_window,
                webhook: settings.webhook.clone(),
                http: webhook_client(),
            };
            start_workers(&settings, deps, w)
        });
        Ok(Application {
            address: api.as_ref().map(|(address, _)| *address),
            http: api.map(|(_, running)| running),
            workers,
            metrics_address: ops.as_ref().map(|o| o.address),
            ops,
        })
    }

    /// Stops gracefully: the API stops taking requests and finishes those under way, the
    /// workers finish or hand back their jobs.
    pub async fn stop(self) {
        if let Some((stop, task)) = self.http {
            let _ = stop.send(true);
            let _ = task.await;
        }
        if let Some(workers) = self.workers {
            workers.stop().await;
        }
        if let Some(ops) = self.ops {
            ops.stop().await;
        }
    }

    pub async fn run_until_signal(self) {
        crate::shutdown::signal().await;
        tracing::info!("stopping");
        self.stop().await;
    }
}

/// The service's records on `conn`. Records of the earlier key layout are moved first;
/// refunds of an earlier release are indexed meanwhile.
async fn open_store(conn: Connection, settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::new(conn, &settings.namespace);
    let cluster = matches!(settings.redis, Topology::Cluster(_));
    if store.holds_earlier_layout().await? {
        // Moved before anything is served or worked on: a payment this release cannot see
        // could be created again for the same order. The earlier layout never ran on a
        // cluster.
        if cluster {
            anyhow::bail!(
                "QUEUE_NAMESPACE {} holds records of the earlier key layout on a cluster",
                settings.namespace
            );
        }
        let moved = store.migrate_earlier_layout().await?;
        tracing::info!(
            ?moved,
            "records of the earlier key layout moved to their shards"
        );
    }
    tokio::spawn(index_earlier_refunds(store.clone(), cluster));
    if let Err(e) = store.load_hot_scripts().await {
        // Only a head start: each script is loaded when Redis answers NOSCRIPT.
        tracing::debug!(error = %e, "scripts not loaded ahead");
    }
    Ok(store)
}

/// The API's server: told to stop through the sender, finished when the task is.
type RunningApi = (watch::Sender<bool>, JoinHandle<()>);

/// Listens on BIND and serves the API there, answering the address it listens on.
fn serve_api(
    args: &HttpArgs,
    settings: &Settings,
    store: Store,
    producer: Producer,
    kakaopay: KakaoPay,
) -> anyhow::Result<(SocketAddr, RunningApi)> {
    let listener = crate::listener::bind(args.bind)
        .with_context(|| format!("cannot listen on BIND {}", args.bind))?;
    let local = listener.local_addr()?;
    let config = HttpConfig::new(
        args,
        local,
        settings.ready_window,
        settings.kakaopay_timeouts.total,
    );
    let state = AppState::new(Services {
        store,
        producer,
        kakaopay,
        config,
    });
    let (stop, mut stopped) = watch::channel(false);
    let server = crate::listener::serve(
        listener,
        http::app(state),
        crate::listener::Limits::default(),
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
    );
    let task = tokio::spawn(server);
    tracing::info!(address = %local, "API listening");
    Ok((local, (stop, task)))
}

/// /healthz, /readyz and /metrics on METRICS_BIND, for a process without the API.
fn serve_ops(bind: SocketAddr, store: Store) -> Option<crate::ops::OpsServer> {
    match crate::ops::OpsServer::start(bind, store) {
        Ok(server) => Some(server),
        Err(e) => {
            // Not fatal: the jobs matter more than the scrape (two workers on one
            // machine with the default METRICS_BIND, say).
            tracing::error!(bind = %bind, error = %e, "cannot listen on METRICS_BIND; working without /metrics");
            None
        }
    }
}

/// The client of webhook deliveries. It follows no redirect: a receiver that moved says so by
/// configuration, not by sending signed events somewhere else.
fn webhook_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client builds")
}

/// The workers and the reconciler, in a process listed as `serve` (with the API) or `work`.
fn start_workers(settings: &Settings, deps: Deps, workers: WorkerSettings) -> Workers {
    let kind = if settings.http.is_some() {
        crate::registry::ProcessKind::Serve
    } else {
        crate::registry::ProcessKind::Work
    };
    workers::start(
        settings.redis.clone(),
        deps,
        workers,
        workers::Keeping {
            kind,
            dead_retention: settings.operations.dead_retention,
            heartbeat: settings.operations.heartbeat,
        },
    )
}

/// Refunds of an earlier release join the listings (once per namespace; a process stopped
/// midway leaves it to the next start).
async fn index_earlier_refunds(store: Store, cluster: bool) {
    match store.index_earlier_refunds(cluster).await {
        Ok(0) => {}
        Ok(indexed) => {
            tracing::info!(
                indexed,
                "refunds of an earlier release added to the listings"
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "refunds of an earlier release not indexed; the next start tries again")
        }
    }
}
