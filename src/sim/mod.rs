//! The KakaoPay simulator: both API generations, the member's payment page, fault injection
//! and a ledger, so that everything runs and is tested without a KakaoPay account.
//!
//! - `api`: `/online/v1/payment/*` (JSON, `SECRET_KEY`/`DEV_SECRET_KEY`) and `/v1/payment/*`
//!   (form or query, `KakaoAK`), each with its own error shape.
//! - `page`: `next_redirect_*_url` pages with Approve / Cancel / Fail buttons.
//! - `control`: `/__sim/*` routes for tests: press a button by JSON, set faults, read the ledger.
//! - `ledger`: KakaoPay's state per `tid` and its rules; `faults`: the injected failures;
//!   `error`: the KakaoPay-shaped errors and their codes; `fields`: a request body's fields.

mod api;
mod control;
mod error;
mod faults;
mod fields;
mod ledger;
mod page;

pub use error::codes;
pub use faults::{AfterCommit, Fault, FaultKind, FaultRule};
pub use ledger::{Method, Rules, UserAction};

use crate::kakaopay::Endpoint;
use crate::secret::Secret;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The keys the simulator accepts when none are configured (`SIM_SECRET_KEYS`' and
/// `SIM_ADMIN_KEYS`' defaults, so they live with the command line).
pub use crate::config::{DEFAULT_ADMIN_KEY, DEFAULT_SECRET_KEY};

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Base of the page URLs handed out by ready; `http://{bind}` when unset.
    pub public_url: Option<String>,
    /// Keys accepted by the open API (`SECRET_KEY`/`DEV_SECRET_KEY`).
    pub secret_keys: Vec<Secret>,
    /// Keys accepted by the older API (`KakaoAK`).
    pub admin_keys: Vec<Secret>,
    pub rules: Rules,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            public_url: None,
            secret_keys: vec![Secret::new(DEFAULT_SECRET_KEY)],
            admin_keys: vec![Secret::new(DEFAULT_ADMIN_KEY)],
            rules: Rules::default(),
        }
    }
}

/// Calls per endpoint, for tests that count what reached "KakaoPay".
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct EndpointStats {
    pub calls: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub faults: u64,
}

struct SimState {
    config: SimConfig,
    public_url: String,
    ledger: Mutex<ledger::Ledger>,
    faults: Mutex<faults::Faults>,
    stats: Mutex<BTreeMap<&'static str, EndpointStats>>,
}

type Shared = Arc<SimState>;

/// Locks a mutex, carrying on if a panicking thread poisoned it: the simulator's state is
/// plain data, always consistent between statements.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SimState {
    fn count(&self, endpoint: Endpoint, f: impl FnOnce(&mut EndpointStats)) {
        f(lock(&self.stats).entry(endpoint.name()).or_default());
    }
}

fn router(state: Shared) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(page::routes())
        .merge(control::routes())
        .with_state(state)
}

/// Marks a response whose connection must be closed without sending it.
#[derive(Debug, Clone, Copy)]
struct DropConnection;

#[derive(Debug)]
struct DroppedOnPurpose;

impl std::fmt::Display for DroppedOnPurpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DroppedOnPurpose {}

/// A running simulator.
pub struct SimServer {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:port`: what `KAKAOPAY_API_URL` points at.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl SimServer {
    /// Serves on `listener` until the returned server is dropped or stopped.
    pub fn start(listener: TcpListener, config: SimConfig) -> std::io::Result<SimServer> {
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let public_url = config.public_url.clone().unwrap_or_else(|| url.clone());
        let state = Arc::new(SimState {
            ledger: Mutex::new(ledger::Ledger::new(config.rules.clone())),
            config,
            public_url,
            faults: Mutex::new(faults::Faults::default()),
            stats: Mutex::new(BTreeMap::new()),
        });
        let task = tokio::spawn(accept_loop(listener, router(state)));
        Ok(SimServer { addr, url, task })
    }

    /// On a free port of 127.0.0.1, for tests and the demo.
    pub async fn spawn(config: SimConfig) -> std::io::Result<SimServer> {
        let listener = crate::listener::bind(([127, 0, 0, 1], 0).into())?;
        SimServer::start(listener, config)
    }

    /// Runs until the accept loop ends (it only ends if the task is aborted).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// hyper directly rather than `axum::serve`, so that a handler can close the connection
/// without an answer (the `drop` fault): a service error makes hyper drop the connection.
async fn accept_loop(listener: TcpListener, app: Router) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                tracing::warn!(error = %e, "sim accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    async move {
                        let response = match app.oneshot(req).await {
                            Ok(r) => r,
                            Err(never) => match never {},
                        };
                        if response.extensions().get::<DropConnection>().is_some() {
                            Err(DroppedOnPurpose)
                        } else {
                            Ok(response)
                        }
                    }
                });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `kakaopay-worker sim`: serves until Ctrl-C or SIGTERM.
pub async fn run(args: crate::config::SimArgs) -> anyhow::Result<()> {
    let config = SimConfig {
        public_url: args
            .sim_public_url
            .map(|u| u.as_str().trim_end_matches('/').to_string()),
        secret_keys: args.sim_secret_keys.0,
        admin_keys: args.sim_admin_keys.0,
        rules: Rules {
            ready_window: std::time::Duration::from_secs(args.sim_ready_window_secs),
            expired_status: args
                .sim_expired_status
                .map(crate::kakaopay::OrderStatus::from),
            inquiry_payload: args.sim_inquiry_payload,
        },
    };
    let listener = crate::listener::bind(args.sim_bind)
        .map_err(|e| anyhow::anyhow!("cannot listen on SIM_BIND {}: {e}", args.sim_bind))?;
    let server = SimServer::start(listener, config)?;
    tracing::info!(url = %server.url, "KakaoPay simulator listening");
    crate::shutdown::signal().await;
    tracing::info!("KakaoPay simulator stopping");
    drop(server);
    Ok(())
}
