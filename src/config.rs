//! The command line: subcommands and settings of API.md, each setting also read from its
//! environment variable. A missing or invalid setting stops the process with one line that
//! names the variable, and exit code 2; a secret's value is never echoed.
//!
//! A leaf: nothing of the crate but [`Secret`] and [`LogFormat`] (leaves themselves). The
//! modules that own the runtime types read these settings (`startup::Settings::from_args`,
//! `workers::WorkerSettings`, `kakaopay::Timeouts`, `http::HttpConfig`, `sim::run`).

use crate::secret::Secret;
use crate::telemetry::LogFormat;
use base64::Engine;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, Parser, Subcommand};
use kakaopay_jobs::queue::{Durability, Topology};
use std::net::SocketAddr;
use std::time::Duration;
use url::Url;

#[derive(Debug, Parser)]
#[command(
    name = "kakaopay-worker",
    version,
    about = "KakaoPay payments and refunds as reliable jobs on Redis"
)]
pub struct Cli {
    /// `pretty` or `json` (one JSON object a line).
    #[arg(
        long,
        env = "LOG_FORMAT",
        default_value = "pretty",
        global = true,
        value_enum
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// HTTP API, all workers and the reconciler in one process.
    Serve {
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        http: HttpArgs,
        #[command(flatten)]
        kakaopay: KakaoPayArgs,
        #[command(flatten)]
        workers: WorkerArgs,
        #[command(flatten)]
        ops: OpsArgs,
    },
    /// The HTTP API only (enqueues, never processes).
    Api {
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        http: HttpArgs,
        #[command(flatten)]
        kakaopay: KakaoPayArgs,
        #[command(flatten)]
        ops: OpsArgs,
    },
    /// Workers and the reconciler only; run as many as you like against one Redis.
    Work {
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        kakaopay: KakaoPayArgs,
        #[command(flatten)]
        workers: WorkerArgs,
        #[command(flatten)]
        ops: OpsArgs,
    },
    /// The KakaoPay simulator.
    Sim(SimArgs),
    /// Runs the simulator and the service in-process and walks one payment and one refund.
    Demo {
        #[command(flatten)]
        redis: RedisArgs,
        /// Keep the demo's Redis keys (they are deleted at the end otherwise).
        #[arg(long)]
        keep: bool,
    },
    /// Operator view of the queues, read straight from Redis.
    Queues {
        #[command(flatten)]
        redis: RedisArgs,
        #[command(subcommand)]
        action: Option<QueuesAction>,
    },
    /// Exits 0 when the service's `/readyz` (or, with `--sim`, the simulator's `/healthz`)
    /// answers 200 in time, else 1: the container healthcheck, which has no shell tools.
    Healthcheck(HealthcheckArgs),
    /// Refunds that need a person, read and resolved straight in Redis.
    Refunds {
        #[command(flatten)]
        redis: RedisArgs,
        #[command(subcommand)]
        action: RefundsAction,
    },
    /// Measures the whole service on this machine (BENCHMARKS.md): starts its own
    /// redis-server, simulator and service processes and prints a Markdown report.
    Bench(BenchArgs),
}

impl Command {
    /// The subcommand as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Serve { .. } => "serve",
            Command::Api { .. } => "api",
            Command::Work { .. } => "work",
            Command::Sim(_) => "sim",
            Command::Demo { .. } => "demo",
            Command::Queues { .. } => "queues",
            Command::Healthcheck(_) => "healthcheck",
            Command::Refunds { .. } => "refunds",
            Command::Bench(_) => "bench",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Runs of each measurement; the report gives their medians.
    #[arg(long, default_value = "3", value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Requests in each run of the enqueue path.
    #[arg(long, default_value = "8000", value_parser = clap::value_parser!(u64).range(100..))]
    pub requests: u64,
    /// Seconds of each lifecycle run's measured window (after a one-second warm-up).
    #[arg(long, default_value = "5", value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
    /// Lifecycles in flight at once, one level after the other; the highest is also the
    /// service's WORKER_CONCURRENCY.
    #[arg(long, value_delimiter = ',', default_value = "16,64,256", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: Vec<u32>,
    /// KakaoPay latencies (ms) of the lifecycle runs, set on the simulator.
    #[arg(long, value_delimiter = ',', default_value = "0,100")]
    pub latencies: Vec<u64>,
    /// Parts to run: `enqueue`, `lifecycle` (with the Redis and memory figures), `topologies`
    /// (one server next to the cluster of `--redis-cluster-urls`).
    #[arg(long, value_delimiter = ',', default_value = "enqueue,lifecycle,topologies", value_parser = ["enqueue", "lifecycle", "topologies"])]
    pub only: Vec<String>,
    /// A Redis Cluster to measure next to the private one-server Redis (part 6). Its keys are
    /// written under `bench-topology-*` namespaces.
    #[arg(long, env = "REDIS_CLUSTER_URLS", value_parser = redis_urls, hide_env_values = true)]
    pub redis_cluster_urls: Option<RedisUrls>,
    /// Also write the report to this file.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Measure the `api`, `serve` and `work` of another build (the same simulator, load and
    /// Redis): how a change is compared with the build before it.
    #[arg(long)]
    pub service_binary: Option<std::path::PathBuf>,
    /// Keep the processes' logs (otherwise removed after a successful run).
    #[arg(long)]
    pub keep_logs: bool,
}

impl BenchArgs {
    pub fn wants(&self, part: &str) -> bool {
        self.only.iter().any(|p| p == part)
    }
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// What to ask; by default `/readyz` at `BIND` (or `/healthz` at `SIM_BIND` with
    /// `--sim`), a wildcard address asked on loopback.
    pub url: Option<Url>,
    /// Check the simulator instead of the service.
    #[arg(long)]
    pub sim: bool,
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    #[arg(long, env = "SIM_BIND", default_value = "127.0.0.1:8090")]
    pub sim_bind: SocketAddr,
    /// How long to wait for the answer.
    #[arg(long, default_value = "2000", value_parser = millis)]
    pub timeout_ms: Duration,
}

#[derive(Debug, Subcommand)]
pub enum QueuesAction {
    /// A queue's failed and dead jobs.
    Show { name: String },
    /// Runs a dead or failed job again.
    Retry { name: String, job_id: String },
    /// One job: its status, attempts, arguments and each failed attempt's error.
    Job { name: String, job_id: String },
    /// Runs every dead job of the queue again.
    RetryDead {
        name: String,
        #[arg(long, env = "OPERATOR_NAME", default_value = "cli")]
        by: String,
    },
    /// Discards a dead job for good.
    Discard {
        name: String,
        job_id: String,
        #[arg(long, env = "OPERATOR_NAME", default_value = "cli")]
        by: String,
    },
    /// No process starts a job of the queue until it is resumed (jobs in flight finish).
    Pause {
        name: String,
        #[arg(long, env = "OPERATOR_NAME", default_value = "cli")]
        by: String,
    },
    /// Lets the queue's jobs start again.
    Resume {
        name: String,
        #[arg(long, env = "OPERATOR_NAME", default_value = "cli")]
        by: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RefundsAction {
    /// The refunds waiting for a person, newest first.
    Review {
        /// Only this location's.
        #[arg(long)]
        location_id: Option<String>,
        #[arg(long, default_value = "50", value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// Approves a refund in review: it runs as an admin amount (rule admin_review).
    Approve {
        refund_id: String,
        /// Won to refund; what is left of the payment when not given.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        amount: Option<i64>,
        #[arg(long)]
        note: Option<String>,
        /// The name recorded in the refund's history.
        #[arg(long, env = "OPERATOR_NAME", default_value = "cli")]
        by: String,
    },
    /// Closes a refund in review without money moving.
    Dismiss {
        refund_id: String,
        #[arg(long)]
        note: String,
        /// The name recorded in the refund's history.
        #[arg(long, env = "OPERATOR_NAME", default_value = "cli")]
        by: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379", value_parser = redis_url, hide_env_values = true)]
    pub redis_url: Secret,
    /// Seed nodes of a Redis Cluster, comma separated; the service then runs on the cluster.
    #[arg(long, env = "REDIS_CLUSTER_URLS", value_parser = redis_urls, hide_env_values = true,
        conflicts_with = "redis_sentinel_urls")]
    pub redis_cluster_urls: Option<RedisUrls>,
    /// Sentinel addresses, comma separated; the master is found (and followed) through them.
    #[arg(long, env = "REDIS_SENTINEL_URLS", value_parser = redis_urls, hide_env_values = true,
        requires = "redis_sentinel_master")]
    pub redis_sentinel_urls: Option<RedisUrls>,
    /// The name the Sentinels monitor the master under.
    #[arg(long, env = "REDIS_SENTINEL_MASTER", value_parser = non_empty)]
    pub redis_sentinel_master: Option<String>,
    /// Replicas that must hold a write before it is answered (Redis WAIT); 0 waits for none.
    #[arg(long, env = "REDIS_WAIT_REPLICAS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub redis_wait_replicas: u32,
    /// How long a write waits for REDIS_WAIT_REPLICAS replicas, ms.
    #[arg(long, env = "REDIS_WAIT_TIMEOUT_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub redis_wait_timeout_ms: u64,
    /// Prefix of every Redis key the service writes.
    #[arg(long, env = "QUEUE_NAMESPACE", default_value = "kakaopay", value_parser = namespace)]
    pub queue_namespace: String,
}

#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Base URL KakaoPay redirects members to; `http://{BIND}` when unset.
    #[arg(long, env = "PUBLIC_URL", value_parser = http_url)]
    pub public_url: Option<Url>,
    /// Comma-separated bearer tokens of API clients.
    #[arg(long, env = "API_TOKENS", value_parser = token_list, default_value = "", hide_env_values = true, hide_default_value = true)]
    pub api_tokens: TokenList,
    /// Comma-separated bearer tokens of operators.
    #[arg(long, env = "ADMIN_TOKENS", value_parser = token_list, default_value = "", hide_env_values = true, hide_default_value = true)]
    pub admin_tokens: TokenList,
    /// HMAC key that signs callback URLs.
    #[arg(long, env = "CALLBACK_SECRET", value_parser = non_empty_secret, hide_env_values = true)]
    pub callback_secret: Secret,
}

#[derive(Debug, Clone, Args)]
pub struct KakaoPayArgs {
    /// Calls both KakaoPay API generations at this base instead of the real hosts.
    #[arg(long, env = "KAKAOPAY_API_URL", value_parser = http_url)]
    pub kakaopay_api_url: Option<Url>,
    #[arg(long, env = "KAKAOPAY_CONNECT_TIMEOUT_MS", default_value = "2000", value_parser = millis)]
    pub kakaopay_connect_timeout_ms: Duration,
    /// The whole call, sending to last byte.
    #[arg(long, env = "KAKAOPAY_TIMEOUT_MS", default_value = "10000", value_parser = millis)]
    pub kakaopay_timeout_ms: Duration,
    /// KakaoPay's ready → approve window: unapproved payments expire after it.
    #[arg(long, env = "KAKAOPAY_READY_WINDOW_SECS", default_value = "900", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub kakaopay_ready_window_secs: u64,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// In-flight jobs per queue per process.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value = "16", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub worker_concurrency: u32,
    /// Where outbound events are POSTed; unset sends none.
    #[arg(long, env = "WEBHOOK_URL", value_parser = http_url, requires = "webhook_secret")]
    pub webhook_url: Option<Url>,
    /// Standard Webhooks signing secret, `whsec_<base64>` of 24 to 64 bytes; two, comma-
    /// separated, while the receiver rotates (each delivery is signed with both).
    #[arg(long, env = "WEBHOOK_SECRET", value_parser = webhook_secrets, hide_env_values = true)]
    pub webhook_secret: Option<WebhookSecrets>,
    /// A job whose worker stops renewing its lease for this long runs again elsewhere.
    #[arg(long, env = "JOB_LEASE_SECS", default_value = "30", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub job_lease_secs: u64,
    /// How often the reconciler looks at stuck payments.
    #[arg(long, env = "RECONCILE_EVERY_SECS", default_value = "30", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub reconcile_every_secs: u64,
}

/// How the queues are kept and the process watched (every service process).
#[derive(Debug, Clone, Args)]
pub struct OpsArgs {
    /// Attempts per queue, `name=N` pairs (a queue left out keeps its default); a job out of
    /// attempts is dead.
    #[arg(long, env = "JOB_ATTEMPTS", default_value = "approve_payment=8,cancel_payment=12,deliver_event=18", value_parser = job_attempts)]
    pub job_attempts: JobAttempts,
    /// How long a dead job waits for an operator before it is dropped.
    #[arg(long, env = "DEAD_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub dead_retention_days: u32,
    /// Where a `work` process serves /healthz, /readyz and /metrics (`serve` and `api` serve
    /// them on BIND).
    #[arg(long, env = "METRICS_BIND", default_value = "127.0.0.1:9464")]
    pub metrics_bind: SocketAddr,
}

/// Attempts per queue (`JOB_ATTEMPTS`), the defaults of DESIGN.md where not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobAttempts(pub Vec<(String, u32)>);

impl Default for JobAttempts {
    fn default() -> Self {
        use kakaopay_jobs::{ApprovePayment, CancelPayment, DeliverEvent, JobKind};
        JobAttempts(vec![
            (
                ApprovePayment::NAME.into(),
                ApprovePayment::RETRY.max_attempts,
            ),
            (
                CancelPayment::NAME.into(),
                CancelPayment::RETRY.max_attempts,
            ),
            (DeliverEvent::NAME.into(), DeliverEvent::RETRY.max_attempts),
        ])
    }
}

impl JobAttempts {
    pub fn of(&self, queue: &str) -> Option<u32> {
        self.0.iter().find(|(q, _)| q == queue).map(|(_, n)| *n)
    }
}

fn job_attempts(s: &str) -> Result<JobAttempts, String> {
    let mut attempts = JobAttempts::default();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, n) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not name=N"))?;
        let n: u32 = n
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| format!("attempts of {} must be 1 to 1000", name.trim()))?;
        let slot = attempts
            .0
            .iter_mut()
            .find(|(q, _)| q == name.trim())
            .ok_or_else(|| {
                format!(
                    "no queue {:?}; the queues are {}",
                    name.trim(),
                    kakaopay_jobs::QUEUES.join(", ")
                )
            })?;
        slot.1 = n;
    }
    Ok(attempts)
}

/// The keys the simulator accepts when none are configured; the demo and README use them.
pub const DEFAULT_SECRET_KEY: &str = "DEVSIMULATOR0SECRET0KEY0000000000000000";
pub const DEFAULT_ADMIN_KEY: &str = "simulator0admin0key0000000000000";

#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    #[arg(long, env = "SIM_BIND", default_value = "127.0.0.1:8090")]
    pub sim_bind: SocketAddr,
    /// Base of the payment page URLs; `http://{SIM_BIND}` when unset.
    #[arg(long, env = "SIM_PUBLIC_URL", value_parser = http_url)]
    pub sim_public_url: Option<Url>,
    /// Comma-separated secret keys the open API accepts.
    #[arg(long, env = "SIM_SECRET_KEYS", value_parser = token_list, default_value = DEFAULT_SECRET_KEY, hide_env_values = true)]
    pub sim_secret_keys: TokenList,
    /// Comma-separated admin keys the older API accepts.
    #[arg(long, env = "SIM_ADMIN_KEYS", value_parser = token_list, default_value = DEFAULT_ADMIN_KEY, hide_env_values = true)]
    pub sim_admin_keys: TokenList,
    /// Seconds after ready within which a payment can be approved.
    #[arg(long, env = "SIM_READY_WINDOW_SECS", default_value = "900", value_parser = clap::value_parser!(u64).range(1..))]
    pub sim_ready_window_secs: u64,
    /// Status an expired, never-approved payment turns into (e.g. QUIT_PAYMENT); unset keeps it pending.
    #[arg(long, env = "SIM_EXPIRED_STATUS", value_parser = ["QUIT_PAYMENT", "FAIL_PAYMENT", "FAIL_AUTH_PASSWORD"])]
    pub sim_expired_status: Option<String>,
    /// `false`: the order inquiry leaves out each action's `payload`, as one real test-mode
    /// answer did (KAKAOPAY.md §2), so that refunds must be matched by amounts.
    #[arg(long, env = "SIM_INQUIRY_PAYLOAD", default_value = "true", action = clap::ArgAction::Set)]
    pub sim_inquiry_payload: bool,
}

/// A comma-separated list of secrets; empty items are ignored.
#[derive(Debug, Clone, Default)]
pub struct TokenList(pub Vec<Secret>);

fn token_list(s: &str) -> Result<TokenList, String> {
    Ok(TokenList(
        s.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(Secret::new)
            .collect(),
    ))
}

fn non_empty_secret(s: &str) -> Result<Secret, String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(Secret::new(s))
}

fn redis_url(s: &str) -> Result<Secret, String> {
    // The URL may hold a password: the message never repeats it.
    let url = Url::parse(s).map_err(|_| "not a URL".to_string())?;
    match url.scheme() {
        "redis" | "rediss" | "unix" | "redis+unix" => Ok(Secret::new(s)),
        _ => Err("must start with redis://, rediss:// or unix://".into()),
    }
}

/// A comma-separated list of Redis URLs (they may hold passwords: never echoed).
#[derive(Clone)]
pub struct RedisUrls(pub Vec<Secret>);

impl std::fmt::Debug for RedisUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrls({} addresses)", self.0.len())
    }
}

fn redis_urls(s: &str) -> Result<RedisUrls, String> {
    let urls: Vec<Secret> = s
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(redis_url)
        .collect::<Result<_, _>>()?;
    if urls.is_empty() {
        return Err("must list at least one redis:// address".into());
    }
    Ok(RedisUrls(urls))
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(s.trim().to_string())
}

impl RedisArgs {
    /// Which Redis to run on: a cluster or Sentinel when given, else the one server.
    pub fn topology(&self) -> Topology {
        let exposed = |urls: &RedisUrls| urls.0.iter().map(|u| u.expose().to_string()).collect();
        match (&self.redis_cluster_urls, &self.redis_sentinel_urls) {
            (Some(nodes), _) => Topology::Cluster(exposed(nodes)),
            (None, Some(sentinels)) => Topology::Sentinel {
                sentinels: exposed(sentinels),
                master: self.redis_sentinel_master.clone().unwrap_or_default(),
            },
            (None, None) => Topology::Server(self.redis_url.expose().to_string()),
        }
    }

    pub fn durability(&self) -> Option<Durability> {
        (self.redis_wait_replicas > 0).then(|| Durability {
            replicas: self.redis_wait_replicas,
            timeout: Duration::from_millis(self.redis_wait_timeout_ms),
        })
    }
}

fn namespace(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err("must be 1 to 64 characters of letters, digits, _ - . :".into())
    }
}

fn http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an http:// or https:// URL".into());
    }
    Ok(url)
}

fn millis(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<u64>() {
        Ok(ms) if (1..=600_000).contains(&ms) => Ok(Duration::from_millis(ms)),
        _ => Err("must be a number of milliseconds from 1 to 600000".into()),
    }
}

/// One or two Standard Webhooks secrets (two while the receiver rotates).
#[derive(Debug, Clone)]
pub struct WebhookSecrets(pub Vec<Secret>);

fn webhook_secrets(s: &str) -> Result<WebhookSecrets, String> {
    let secrets = s
        .split(',')
        .map(webhook_secret)
        .collect::<Result<Vec<_>, _>>()?;
    if secrets.len() > 2 {
        return Err("takes one secret, or two while rotating".into());
    }
    Ok(WebhookSecrets(secrets))
}

fn webhook_secret(s: &str) -> Result<Secret, String> {
    let key = s
        .strip_prefix("whsec_")
        .ok_or("must look like whsec_<base64>")?;
    // Standard Webhooks: a key of 24 to 64 random bytes.
    match base64::engine::general_purpose::STANDARD.decode(key.trim()) {
        Ok(bytes) if (24..=64).contains(&bytes.len()) => Ok(Secret::new(s.trim())),
        Ok(_) => Err("the part after whsec_ must decode to 24 to 64 bytes".into()),
        _ => Err("the part after whsec_ must be base64".into()),
    }
}

/// Every environment variable the command line reads.
const VARIABLES: [&str; 28] = [
    "LOG_FORMAT",
    "JOB_ATTEMPTS",
    "DEAD_RETENTION_DAYS",
    "METRICS_BIND",
    "REDIS_URL",
    "QUEUE_NAMESPACE",
    "BIND",
    "PUBLIC_URL",
    "API_TOKENS",
    "ADMIN_TOKENS",
    "CALLBACK_SECRET",
    "KAKAOPAY_API_URL",
    "KAKAOPAY_CONNECT_TIMEOUT_MS",
    "KAKAOPAY_TIMEOUT_MS",
    "KAKAOPAY_READY_WINDOW_SECS",
    "WORKER_CONCURRENCY",
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "JOB_LEASE_SECS",
    "RECONCILE_EVERY_SECS",
    "SIM_BIND",
    "SIM_PUBLIC_URL",
    "SIM_SECRET_KEYS",
    "SIM_ADMIN_KEYS",
    "SIM_READY_WINDOW_SECS",
    "SIM_EXPIRED_STATUS",
    "SIM_INQUIRY_PAYLOAD",
    "RUST_LOG",
];

impl Cli {
    /// Parses the command line and environment, or exits: 0 for `--help`/`--version`,
    /// 2 with one line naming the setting for anything missing or invalid. A variable set to
    /// the empty string counts as unset (as compose files and process managers pass them).
    /// Call it before starting threads: it edits the process environment.
    pub fn parse_or_exit() -> Cli {
        for var in VARIABLES {
            if std::env::var_os(var).is_some_and(|v| v.is_empty()) {
                std::env::remove_var(var);
            }
        }
        match Cli::try_parse() {
            Ok(cli) => cli,
            Err(e) => match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
                _ => {
                    eprintln!("{}", one_line(&e));
                    std::process::exit(2);
                }
            },
        }
    }
}

/// `--callback-secret <CALLBACK_SECRET>` → `CALLBACK_SECRET`: every setting's value name is
/// its environment variable.
fn variable(arg: &str) -> String {
    match (arg.find('<'), arg.find('>')) {
        (Some(a), Some(b)) if a < b => arg[a + 1..b].to_string(),
        _ => arg.trim_start_matches('-').replace('-', "_").to_uppercase(),
    }
}

/// One line for a parse error, without the offending value (it may be a secret).
pub fn one_line(e: &clap::Error) -> String {
    let args: Vec<String> = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        _ => Vec::new(),
    };
    let names: Vec<String> = args.iter().map(|a| variable(a)).collect();
    match e.kind() {
        ErrorKind::MissingRequiredArgument if !names.is_empty() => format!(
            "error: {} is required: set the environment variable or pass --{}",
            names.join(", "),
            names[0].to_lowercase().replace('_', "-")
        ),
        ErrorKind::ArgumentConflict => {
            let mut all = names.clone();
            if let Some(ContextValue::String(other)) = e.get(ContextKind::PriorArg) {
                all.push(variable(other));
            }
            format!("error: {} cannot be set together", all.join(" and "))
        }
        ErrorKind::ValueValidation | ErrorKind::InvalidValue if !names.is_empty() => {
            let reason = match (std::error::Error::source(e), e.get(ContextKind::ValidValue)) {
                (Some(src), _) => src.to_string(),
                (None, Some(ContextValue::Strings(valid))) => {
                    format!("must be one of {}", valid.join(", "))
                }
                _ => "not a valid value".to_string(),
            };
            format!("error: invalid {}: {reason}", names[0])
        }
        _ => e
            .render()
            .to_string()
            .lines()
            .next()
            .unwrap_or("error: invalid command line")
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        let mut argv = vec!["kakaopay-worker"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map_err(|e| one_line(&e))
    }

    #[test]
    fn sim_runs_on_defaults() {
        let cli = parse(&["sim"]).unwrap();
        let Command::Sim(args) = cli.command else {
            panic!("not sim")
        };
        assert_eq!(args.sim_bind.to_string(), "127.0.0.1:8090");
        assert_eq!(args.sim_secret_keys.0.len(), 1);
    }

    #[test]
    fn a_missing_callback_secret_names_the_variable() {
        // The variable may be set in the environment running the tests: only flags here.
        if std::env::var_os("CALLBACK_SECRET").is_some() {
            return;
        }
        let err = parse(&["api"]).unwrap_err();
        assert!(err.contains("CALLBACK_SECRET"), "{err}");
        assert_eq!(err.lines().count(), 1);
    }

    #[test]
    fn invalid_values_name_the_variable_and_never_echo_the_value() {
        let err = parse(&["work", "--webhook-secret", "hunter2-not-base64"]).unwrap_err();
        assert!(err.contains("WEBHOOK_SECRET"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse(&["work", "--redis-url", "http://user:pw123@host"]).unwrap_err();
        assert!(err.contains("REDIS_URL") && !err.contains("pw123"), "{err}");
        let err = parse(&["work", "--worker-concurrency", "0"]).unwrap_err();
        assert!(err.contains("WORKER_CONCURRENCY"), "{err}");
        let err = parse(&["sim", "--log-format", "xml"]).unwrap_err();
        assert!(err.contains("LOG_FORMAT"), "{err}");
        let err = parse(&["work", "--queue-namespace", "a{b}"]).unwrap_err();
        assert!(err.contains("QUEUE_NAMESPACE"), "{err}");
    }

    #[test]
    fn token_lists_skip_blanks_and_hide_values() {
        let t = token_list(" a , ,b,").unwrap();
        assert_eq!(
            t.0.iter().map(|s| s.expose()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(
            !format!("{t:?}").contains('a'.to_string().as_str())
                || format!("{t:?}").contains("****")
        );
    }

    #[test]
    fn job_attempts_name_queues_and_keep_defaults() {
        let a = job_attempts("cancel_payment=3").unwrap();
        assert_eq!(
            (
                a.of("approve_payment"),
                a.of("cancel_payment"),
                a.of("deliver_event")
            ),
            (Some(8), Some(3), Some(18))
        );
        assert!(job_attempts("nope=3").is_err());
        assert!(job_attempts("cancel_payment=0").is_err());
        assert!(job_attempts("cancel_payment").is_err());
        let err = parse(&["work", "--job-attempts", "x=1"]).unwrap_err();
        assert!(err.contains("JOB_ATTEMPTS"), "{err}");
    }

    #[test]
    fn webhook_secrets_must_be_whsec_base64() {
        assert!(webhook_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(webhook_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(webhook_secret("whsec_").is_err());
        assert!(webhook_secret("whsec_!!!").is_err());
    }
}
