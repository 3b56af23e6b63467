//! `kakaopay-worker bench`: the whole service measured on this machine, in one run, as
//! BENCHMARKS.md reports it. A private `redis-server`, the simulator and the service run as
//! separate processes started from this binary; this process is the load.
//!
//! - `enqueue`: part 1, the HTTP enqueue path of an `api` process (callbacks and refund
//!   requests at 50 and 200 connections) next to `redis-benchmark -t set`.
//! - `lifecycles`: parts 3 to 5, whole payments through one `serve` process at each
//!   concurrency and KakaoPay latency, their Redis commands and memory, peak RSS.
//! - [`load`]: the closed-loop HTTP load generator; [`lifecycle`]: one lifecycle as a booking
//!   system and a member make it, and the webhook listener that hears its outcomes.
//! - [`footprint`]: Redis commands (`MONITOR`) and memory by kind of key.
//! - [`processes`]: the processes, their peak memory and CPU time.
//! - `topologies`: part 6, one server next to a Redis Cluster (`REDIS_CLUSTER_URLS`).
//!
//! Every figure is the median of `--runs` runs. The queue's own benchmark (push and no-op
//! drain next to apalis-redis) is `cargo bench -p kakaopay-jobs --bench queue`.

mod enqueue;
pub mod footprint;
pub mod lifecycle;
mod lifecycles;
pub mod load;
pub mod processes;

/// The webhook secret of the bench's receiver (Standard Webhooks' own example key): a
/// webhook needs one, and the receiver does not check signatures.
pub const BENCH_WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
mod topologies;

use crate::config::BenchArgs;
use anyhow::{bail, Context};
use load::{Conn, Req};
use processes::{free_addr, spawn, wait_ready, PrivateRedis, Process};
use serde_json::json;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

const LOCATION: &str = "bench-location";
const LIFECYCLE_NAMESPACE: &str = "bench-lifecycle";
/// KakaoPay calls in one lifecycle: ready, approve, cancel.
const KAKAOPAY_CALLS: u32 = 3;

/// The Markdown report, also echoed to stderr as it grows so a long run shows progress,
/// and what went wrong: a benchmark whose requests failed measured something else.
#[derive(Default)]
struct Report {
    text: String,
    problems: Vec<String>,
}

impl Report {
    fn line(&mut self, text: impl AsRef<str>) {
        eprintln!("{}", text.as_ref());
        let _ = writeln!(self.text, "{}", text.as_ref());
    }

    fn problem(&mut self, what: String) {
        self.problems.push(what);
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Everything the service processes are started with.
struct Env {
    redis_url: String,
    sim_url: String,
    client_token: String,
    admin_token: String,
    callback_secret: String,
    /// The binary whose `api`, `serve` and `work` are measured.
    service_exe: std::path::PathBuf,
}

impl Env {
    fn service(
        &self,
        namespace: &str,
        bind: SocketAddr,
        extra: &[(&'static str, String)],
    ) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("REDIS_URL", self.redis_url.clone()),
            ("QUEUE_NAMESPACE", namespace.to_string()),
            ("KAKAOPAY_API_URL", self.sim_url.clone()),
            ("BIND", bind.to_string()),
            ("API_TOKENS", self.client_token.clone()),
            ("ADMIN_TOKENS", self.admin_token.clone()),
            ("CALLBACK_SECRET", self.callback_secret.clone()),
            ("LOG_FORMAT", "json".to_string()),
            ("RUST_LOG", "info".to_string()),
        ];
        env.extend(extra.iter().cloned());
        env
    }

    /// What the lifecycles run against: the service at `api`, the simulator at `sim`, the
    /// bench's location and tokens, and the webhook receiver `hooks`.
    fn target(
        &self,
        api: SocketAddr,
        sim: SocketAddr,
        hooks: lifecycle::Hooks,
    ) -> lifecycle::Target {
        lifecycle::Target {
            api,
            sim,
            client_token: self.client_token.clone(),
            admin_token: self.admin_token.clone(),
            location: LOCATION.into(),
            hooks,
        }
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let dir = processes::scratch_dir()?;
    let redis = PrivateRedis::start(&dir).await?;
    let sim_addr = free_addr()?;
    let this = std::env::current_exe().context("cannot find this binary")?;
    let mut sim = spawn(
        &this,
        "sim",
        &["sim"],
        &[("SIM_BIND", sim_addr.to_string())],
        &dir.join("sim.log"),
    )?;
    wait_ready(&mut sim, sim_addr, "/__sim/faults").await?;
    let env = Env {
        redis_url: redis.url(),
        sim_url: format!("http://{sim_addr}"),
        client_token: format!("bench-client-{:016x}", rand::random::<u64>()),
        admin_token: format!("bench-admin-{:016x}", rand::random::<u64>()),
        callback_secret: format!("bench-{:032x}", rand::random::<u128>()),
        service_exe: args.service_binary.clone().unwrap_or(this),
    };
    let mut report = Report::default();
    report.line(format!(
        "# kakaopay-worker bench, {} (version {})\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        env!("CARGO_PKG_VERSION")
    ));
    report.line(format!(
        "Machine: {} CPUs ({}); private redis-server on port {}; medians of {} runs; logs in {}.\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model(),
        redis.port,
        args.runs,
        dir.display()
    ));
    if let Some(other) = &args.service_binary {
        report.line(format!("Service processes run `{}`.\n", other.display()));
    }
    if args.wants("enqueue") {
        enqueue::measure(&args, &env, &redis, sim_addr, &dir, &mut report).await?;
    }
    if args.wants("lifecycle") {
        lifecycles::measure(&args, &env, &redis, (&sim, sim_addr), &dir, &mut report).await?;
    }
    match &args.redis_cluster_urls {
        Some(urls) if args.wants("topologies") => {
            let urls: Vec<&str> = urls.0.iter().map(|u| u.expose()).collect();
            let urls = urls.join(",");
            topologies::measure(&args, &env, &redis, &urls, sim_addr, &dir, &mut report).await?;
        }
        _ => {}
    }
    if let Some(path) = &args.out {
        std::fs::write(path, &report.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("{}", report.text);
    drop(sim);
    drop(redis);
    if !report.problems.is_empty() {
        bail!(
            "the run had failures, so its figures do not count (logs kept in {}): {}",
            dir.display(),
            report.problems.join("; ")
        );
    }
    if !args.keep_logs {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

async fn start_service(
    mode: &str,
    env: &Env,
    namespace: &str,
    extra: &[(&'static str, String)],
    dir: &std::path::Path,
) -> anyhow::Result<(Process, SocketAddr)> {
    let addr = free_addr()?;
    let mut process = spawn(
        &env.service_exe,
        mode,
        &[mode],
        &env.service(namespace, addr, extra),
        &dir.join(format!("{namespace}-{mode}.log")),
    )?;
    if mode != "work" {
        wait_ready(&mut process, addr, "/readyz").await?;
    }
    Ok((process, addr))
}

async fn connect_location(api: SocketAddr, admin_token: &str) -> anyhow::Result<()> {
    let req = Req::json(
        http::Method::PUT,
        format!("/v1/locations/{LOCATION}/kakaopay"),
        &json!({"cid": "TC0ONETIME", "secret_key": crate::sim::DEFAULT_SECRET_KEY}),
    )
    .bearer(admin_token);
    let answer = Conn::new(api).send(&req).await;
    if answer.status != 200 {
        bail!(
            "cannot connect the location: HTTP {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    Ok(())
}
