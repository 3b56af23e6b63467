//! Builds the service from its settings: the HTTP API (`api`), the workers and reconciler
//! (`work`), or both (`serve`), sharing one Redis connection.

use crate::http::{self, AppState, HttpConfig};
use crate::kakaopay::{KakaoPay, Timeouts};
use crate::secret::Secret;
use crate::store::Store;
use crate::workers::{self, Deps, ReconcilerSettings, WorkerSettings, Workers};
use anyhow::Context;
use kakaopay_jobs::queue::{Connection, Durability, Producer, Purpose, Topology};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub bind: SocketAddr,
    pub public_url: Option<Url>,
    pub api_tokens: Vec<Secret>,
    pub admin_tokens: Vec<Secret>,
    pub callback_secret: Secret,
}

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
    pub http: Option<HttpSettings>,
    pub workers: Option<WorkerSettings>,
    /// Where outbound events are POSTed (`WEBHOOK_URL`, `WEBHOOK_SECRET`).
    pub webhook: Option<crate::workers::Webhook>,
    /// How the queues are kept and the process watched.
    pub operations: Operations,
}

/// How the queues are kept and the process watched.
#[derive(Debug, Clone)]
pub struct Operations {
    /// Where a process without the API serves /healthz, /readyz, /metrics (`METRICS_BIND`).
    pub metrics_bind: Option<SocketAddr>,
    /// Attempts per queue of the jobs this process enqueues (`JOB_ATTEMPTS`).
    pub job_attempts: crate::config::JobAttempts,
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
    pub fn worker_defaults(concurrency: usize) -> WorkerSettings {
        WorkerSettings {
            concurrency,
            lease: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            reconciler: ReconcilerSettings {
                every: Duration::from_secs(30),
                approving_grace: Duration::from_secs(120),
            },
            approve_retry: <kakaopay_jobs::ApprovePayment as kakaopay_jobs::JobKind>::RETRY,
            cancel_retry: <kakaopay_jobs::CancelPayment as kakaopay_jobs::JobKind>::RETRY,
            deliver_retry: <kakaopay_jobs::DeliverEvent as kakaopay_jobs::JobKind>::RETRY,
        }
    }
}

pub struct Application {
    /// Where the API listens, when it runs.
    pub address: Option<SocketAddr>,
    http: Option<(watch::Sender<bool>, JoinHandle<()>)>,
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
        let store = Store::new(conn.clone(), &settings.namespace);
        if store.holds_earlier_layout().await? {
            // Moved before anything is served or worked on: a payment this release cannot see
            // could be created again for the same order. The earlier layout never ran on a
            // cluster.
            if matches!(settings.redis, Topology::Cluster(_)) {
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
        tokio::spawn(index_earlier_refunds(
            store.clone(),
            matches!(settings.redis, Topology::Cluster(_)),
        ));
        let producer = Producer::new(conn, &settings.namespace)
            .with_attempts(settings.operations.job_attempts.0.clone());
        let kakaopay = KakaoPay::new(
            settings.kakaopay_api_url.clone(),
            settings.kakaopay_timeouts,
        )?;

        let mut address = None;
        let http = match &settings.http {
            None => None,
            Some(h) => {
                let listener = crate::listener::bind(h.bind)
                    .with_context(|| format!("cannot listen on BIND {}", h.bind))?;
                let local = listener.local_addr()?;
                address = Some(local);
                let public_url = h
                    .public_url
                    .as_ref()
                    .map(|u| u.as_str().trim_end_matches('/').to_string())
                    .unwrap_or_else(|| format!("http://{local}"));
                let operators: Vec<_> = h
                    .admin_tokens
                    .iter()
                    .map(http::auth::Operator::parse)
                    .collect();
                let state = AppState {
                    store: store.clone(),
                    producer: producer.clone(),
                    kakaopay: kakaopay.clone(),
                    config: Arc::new(HttpConfig {
                        public_url,
                        api_tokens: h.api_tokens.clone(),
                        operators,
                        callback_secret: h.callback_secret.clone(),
                        ready_window: settings.ready_window,
                        kakaopay_timeout: settings.kakaopay_timeouts.total,
                    }),
                };
                let (stop, mut stopped) = watch::channel(false);
                let server = crate::listener::serve(
                    listener,
                    http::router(state),
                    crate::listener::Limits::default(),
                    async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    },
                );
                let task = tokio::spawn(server);
                tracing::info!(address = %local, "API listening");
                Some((stop, task))
            }
        };
        let ops = match settings.operations.metrics_bind {
            None => None,
            Some(bind) => match crate::ops::OpsServer::start(bind, store.clone()) {
                Ok(server) => Some(server),
                Err(e) => {
                    // Not fatal: the jobs matter more than the scrape (two workers on one
                    // machine with the default METRICS_BIND, say).
                    tracing::error!(bind = %bind, error = %e, "cannot listen on METRICS_BIND; working without /metrics");
                    None
                }
            },
        };
        let kind = if settings.http.is_some() {
            crate::registry::ProcessKind::Serve
        } else {
            crate::registry::ProcessKind::Work
        };
        let operations = settings.operations.clone();
        let workers = settings.workers.map(|w| {
            workers::start(
                settings.redis.clone(),
                Deps {
                    store,
                    producer,
                    kakaopay,
                    ready_window: settings.ready_window,
                    webhook: settings.webhook.clone(),
                    // Webhook deliveries follow no redirect: a receiver that moved says so
                    // by configuration, not by sending signed events somewhere else.
                    http: reqwest::Client::builder()
                        .redirect(reqwest::redirect::Policy::none())
                        .timeout(Duration::from_secs(15))
                        .connect_timeout(Duration::from_secs(5))
                        .build()
                        .expect("an HTTP client builds"),
                },
                w,
                workers::Keeping {
                    kind,
                    dead_retention: operations.dead_retention,
                    heartbeat: operations.heartbeat,
                },
            )
        });
        Ok(Application {
            address,
            http,
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
