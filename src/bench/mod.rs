//! `kakaopay-worker bench`: the whole service measured on this machine, in one run, as
//! BENCHMARKS.md reports it. A private `redis-server`, the simulator and the service run as
//! separate processes started from this binary; this process is the load.
//!
//! - [`load`]: a closed-loop HTTP load generator (the enqueue path: callbacks and refund
//!   requests at 50 and 200 connections, next to `redis-benchmark -t set`).
//! - [`lifecycle`]: whole payments (ready, callback, approval, one refund) at 16/64/256 at a
//!   time, against the simulator at 0 and 100 ms.
//! - [`footprint`]: Redis commands per lifecycle and memory per finished payment.
//! - [`processes`]: the processes, their peak memory and CPU time.
//!
//! Every figure is the median of `--runs` runs. The queue's own benchmark (push and no-op
//! drain next to apalis-redis) is `cargo bench -p kakaopay-jobs --bench queue`.

pub mod footprint;
pub mod lifecycle;
pub mod load;
pub mod processes;

use crate::config::BenchArgs;
use anyhow::{bail, Context};
use lifecycle::{Hooks, Target};
use load::{closed_loop, Conn, Req};
use processes::{free_addr, spawn, wait_ready, PrivateRedis, Process};
use serde_json::json;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        enqueue(&args, &env, &redis, sim_addr, &dir, &mut report).await?;
    }
    if args.wants("lifecycle") {
        lifecycles(&args, &env, &redis, (&sim, sim_addr), &dir, &mut report).await?;
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
    let mut req = Req::post_json(
        format!("/v1/locations/{LOCATION}/kakaopay"),
        &json!({"cid": "TC0ONETIME", "secret_key": crate::sim::DEFAULT_SECRET_KEY}),
    )
    .bearer(admin_token);
    req.method = http::Method::PUT;
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

/// Waits until a queue has nothing pending, running or scheduled; fails on a failed or dead job.
async fn wait_drained(api: SocketAddr, admin_token: &str, queue: &str) -> anyhow::Result<()> {
    let mut conn = Conn::new(api);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let answer = conn
            .send(&Req::get("/v1/queues").bearer(admin_token))
            .await
            .json();
        let q = answer["queues"]
            .as_array()
            .and_then(|qs| qs.iter().find(|q| q["name"] == queue))
            .cloned()
            .unwrap_or_default();
        if q["failed"].as_u64().unwrap_or(0) + q["dead"].as_u64().unwrap_or(0) > 0 {
            bail!("jobs of {queue} failed: {q}");
        }
        let busy = ["pending", "running", "scheduled"]
            .iter()
            .map(|f| q[*f].as_u64().unwrap_or(u64::MAX))
            .sum::<u64>();
        if busy == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{queue} did not drain: {q}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Part 1: the HTTP enqueue path of an `api` process, next to Redis's own SET rate.
async fn enqueue(
    args: &BenchArgs,
    env: &Env,
    redis: &PrivateRedis,
    sim_addr: SocketAddr,
    dir: &std::path::Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    const LEVELS: [usize; 2] = [50, 200];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (api_process, api) = start_service("api", env, "bench-enqueue", &[], dir).await?;
    connect_location(api, &env.admin_token).await?;
    let per_run = args.requests as usize;
    let needed = per_run * LEVELS.len() * args.runs as usize;

    // Payments to call back about: created through the API (KakaoPay ready at the
    // simulator), then approved by the member on the simulator's page.
    let creates: Vec<Req> = (0..needed)
        .map(|n| {
            Req::post_json(
                "/v1/payments",
                &lifecycle::payment_body(LOCATION, &format!("EQ-{n}")),
            )
            .bearer(&env.client_token)
        })
        .collect();
    let created = closed_loop(api, 64, Arc::new(creates)).await;
    if created.unexpected(201) > 0 {
        bail!(
            "{} payments were not created; the first: {}",
            created.unexpected(201),
            created.first_unexpected(201).unwrap_or_default()
        );
    }
    let created_rate = created.per_second();
    let payments: Vec<String> = created
        .answers
        .iter()
        .map(|a| {
            a.json()["payment_id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let presses: Vec<Req> = created
        .answers
        .iter()
        .map(|a| {
            let page = a.json()["redirect"]["pc"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let path = url::Url::parse(&page)
                .map(|u| u.path().to_string())
                .unwrap_or_default();
            Req::post_form(path.replace("/info", "/action/approve"), "method=CARD")
        })
        .collect();
    let pressed = closed_loop(sim_addr, 64, Arc::new(presses)).await;
    let mut callbacks = Vec::with_capacity(needed);
    for answer in &pressed.answers {
        let url = answer
            .location
            .as_deref()
            .context("the simulator did not redirect")?;
        let url = url::Url::parse(url)?;
        callbacks.push(Req::get(format!(
            "{}?{}",
            url.path(),
            url.query().unwrap_or("")
        )));
    }

    report.line("## 1. Enqueue path (one `api` process, HTTP/1.1 keep-alive, closed loop)\n");
    report.line(format!(
        "Setup: {needed} payments created through `POST /v1/payments` (synchronous KakaoPay ready at the simulator, 0 ms) at {created_rate:.0}/s with 64 connections.\n"
    ));

    let mut set_rates = Vec::new();
    for &c in &LEVELS {
        let mut rates = Vec::new();
        let mut p50s = Vec::new();
        for _ in 0..args.runs {
            let (rate, p50) = redis.benchmark_set(c, 200_000)?;
            rates.push(rate);
            p50s.push(p50);
        }
        set_rates.push((c, median(rates), median(p50s)));
    }
    let set_rate = |c: usize| {
        set_rates
            .iter()
            .find(|s| s.0 == c)
            .map(|s| s.1)
            .unwrap_or(f64::NAN)
    };

    // The ceiling of HTTP through our stack on this machine: a route that touches nothing.
    let mut health_runs = Vec::new();
    for &c in &LEVELS {
        let mut runs = Vec::new();
        for _ in 0..args.runs {
            let batch = vec![Req::get("/healthz"); per_run];
            runs.push(measured(api, c, batch, [&api_process, &redis.process]).await);
        }
        health_runs.push((c, summarize(&runs, 200)));
    }

    let mut callbacks = callbacks.into_iter();
    let mut callback_runs = Vec::new();
    for &c in &LEVELS {
        let mut runs = Vec::new();
        for _ in 0..args.runs {
            let batch: Vec<Req> = callbacks.by_ref().take(per_run).collect();
            runs.push(measured(api, c, batch, [&api_process, &redis.process]).await);
        }
        callback_runs.push((c, summarize(&runs, 200)));
    }

    // Approve them all (a `work` process), so that refunds can be asked for.
    let (work, _) = start_service(
        "work",
        env,
        "bench-enqueue",
        &[("WORKER_CONCURRENCY", "64".into())],
        dir,
    )
    .await?;
    wait_drained(api, &env.admin_token, "approve_payment").await?;
    drop(work);

    let mut refund_runs = Vec::new();
    let mut k = 0usize;
    for &c in &LEVELS {
        let mut runs = Vec::new();
        for _ in 0..args.runs {
            let batch: Vec<Req> = (0..per_run)
                .map(|_| {
                    k += 1;
                    Req::post_json(
                        format!("/v1/payments/{}/refunds", payments[k % payments.len()]),
                        &json!({"requested_by": "admin", "reason": "bench", "amount": 1}),
                    )
                    .bearer(&env.admin_token)
                    .header("idempotency-key", &format!("bench-{k}"))
                })
                .collect();
            runs.push(measured(api, c, batch, [&api_process, &redis.process]).await);
        }
        refund_runs.push((c, summarize(&runs, 202)));
    }

    report.line("| request | connections | requests/s | p50 ms | p99 ms | max ms | not 2xx | ÷ SET rate | CPU µs per request: api / redis / load | 2 cores ÷ that CPU |");
    report.line("|---|---|---|---|---|---|---|---|---|---|");
    for runs in [&health_runs, &callback_runs, &refund_runs] {
        for (c, s) in runs {
            if s.bad > 0 {
                report.problem(format!(
                    "{} enqueue-path answers at {c} connections were not 2xx",
                    s.bad
                ));
            }
        }
    }
    for (name, runs) in [
        ("`GET /healthz` (no Redis)", &health_runs),
        (
            "callback `GET /kakaopay/callback/…/approve`",
            &callback_runs,
        ),
        ("refund `POST /v1/payments/{id}/refunds`", &refund_runs),
    ] {
        for (c, s) in runs {
            report.line(format!(
                "| {name} | {c} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {:.2} | {:.0} / {:.0} / {:.0} | {:.0}/s |",
                s.rate,
                s.p50,
                s.p99,
                s.max,
                s.bad,
                s.rate / set_rate(*c),
                s.cpu_us[0],
                s.cpu_us[1],
                s.cpu_us[2],
                cores as f64 * 1e6 / s.cpu_us.iter().sum::<f64>()
            ));
        }
    }
    for (c, rate, p50) in &set_rates {
        report.line(format!(
            "| `redis-benchmark -t set -n 200000` | {c} | {rate:.0} | {p50:.2} | | | | 1.00 | | |"
        ));
    }
    report.line(format!(
        "\n{per_run} requests a run. Peak RSS of the `api` process: {:.1} MiB; its CPU time: {:.1} s.\n",
        mib(api_process.peak_rss_kib()),
        api_process.cpu().as_secs_f64()
    ));
    drop(api_process);
    Ok(())
}

/// A closed-loop run with the CPU time the api process, Redis and this process spent on it.
async fn measured(
    api: SocketAddr,
    connections: usize,
    batch: Vec<Req>,
    [service, redis]: [&Process; 2],
) -> (load::Run, [f64; 3]) {
    let before = [service.cpu(), redis.cpu(), processes::own_cpu()];
    let run = closed_loop(api, connections, Arc::new(batch)).await;
    let after = [service.cpu(), redis.cpu(), processes::own_cpu()];
    let n = run.answers.len().max(1) as f64;
    let cpu = [0, 1, 2].map(|i| (after[i] - before[i]).as_secs_f64() * 1e6 / n);
    (run, cpu)
}

struct Summary {
    cpu_us: [f64; 3],
    rate: f64,
    p50: f64,
    p99: f64,
    max: f64,
    bad: usize,
}

fn summarize(measured: &[(load::Run, [f64; 3])], expected: u16) -> Summary {
    let runs: Vec<&load::Run> = measured.iter().map(|(r, _)| r).collect();
    Summary {
        cpu_us: [0, 1, 2].map(|i| median(measured.iter().map(|(_, c)| c[i]).collect())),
        rate: median(runs.iter().map(|r| r.per_second()).collect()),
        p50: median(runs.iter().map(|r| ms(r.quantile(0.5))).collect()),
        p99: median(runs.iter().map(|r| ms(r.quantile(0.99))).collect()),
        max: median(runs.iter().map(|r| ms(r.quantile(1.0))).collect()),
        bad: runs.iter().map(|r| r.unexpected(expected)).sum(),
    }
}

async fn set_latency(sim: SocketAddr, latency_ms: u64) -> anyhow::Result<()> {
    let mut conn = Conn::new(sim);
    let mut clear = Req::get("/__sim/faults");
    clear.method = http::Method::DELETE;
    conn.send(&clear).await;
    if latency_ms > 0 {
        let answer = conn
            .send(&Req::post_json(
                "/__sim/faults",
                &json!({"fault": "latency", "ms": latency_ms}),
            ))
            .await;
        if !(200..300).contains(&answer.status) {
            bail!("the simulator refused the latency: HTTP {}", answer.status);
        }
    }
    Ok(())
}

/// Parts 3 to 5: whole lifecycles through one `serve` process, their Redis commands and
/// memory, and the process's peak memory.
async fn lifecycles(
    args: &BenchArgs,
    env: &Env,
    redis: &PrivateRedis,
    (sim, sim_addr): (&Process, SocketAddr),
    dir: &std::path::Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let levels: Vec<usize> = args.concurrency.iter().map(|&c| c as usize).collect();
    let hooks = Hooks::default();
    let hooks_addr = hooks.serve().await?;
    let concurrency = levels.iter().copied().max().unwrap_or(16);
    let (serve, api) = start_service(
        "serve",
        env,
        LIFECYCLE_NAMESPACE,
        &[
            ("WORKER_CONCURRENCY", concurrency.to_string()),
            ("WEBHOOK_URL", format!("http://{hooks_addr}/hooks")),
        ],
        dir,
    )
    .await?;
    connect_location(api, &env.admin_token).await?;
    let target = Target {
        api,
        sim: sim_addr,
        client_token: env.client_token.clone(),
        admin_token: env.admin_token.clone(),
        location: LOCATION.into(),
        hooks,
    };
    let memory_before = redis.used_memory().await?;
    let window = Duration::from_secs(args.seconds);
    let warmup = Duration::from_secs(1);

    report.line(format!(
        "## 3. Lifecycles (one `serve` process, WORKER_CONCURRENCY={concurrency}, webhooks on)\n"
    ));
    report.line("Each lifecycle: `POST /v1/payments` (KakaoPay ready) → the member presses Approve on the simulator's page → our callback → approval by a worker → `payment.approved` webhook → `POST /v1/payments/{id}/refunds` (full) → cancel by a worker → `refund.succeeded` webhook.\n");
    report.line(format!(
        "Rates count lifecycles finished in a {}-s window after a {}-s warm-up.\n",
        window.as_secs(),
        warmup.as_secs()
    ));
    report.line("| KakaoPay latency | concurrency | lifecycles/s | p50 ms | p99 ms | failed | ÷ (concurrency ÷ 3 calls × latency) | ÷ (concurrency ÷ latency) | p50 ms per step: created / approved / refunded | CPU ms per lifecycle: serve / sim / redis / load | `serve` peak RSS MiB |");
    report.line("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut finished = 0u64;
    let mut run_no = 0;
    for &latency in &args.latencies {
        set_latency(sim_addr, latency).await?;
        for &c in &levels {
            serve.reset_peak_rss();
            let mut peak_rss = 0u64;
            let mut rates = Vec::new();
            let mut p50s = Vec::new();
            let mut p99s = Vec::new();
            let mut steps: [Vec<f64>; 3] = Default::default();
            let mut cpus = Vec::new();
            let mut failed = 0;
            let mut first_failure = None;
            for _ in 0..args.runs {
                run_no += 1;
                let cpu_before = [
                    serve.cpu(),
                    sim.cpu(),
                    redis.process.cpu(),
                    processes::own_cpu(),
                ];
                let out = lifecycle::run(&target, c, warmup, window, &format!("LC{run_no}")).await;
                peak_rss = peak_rss.max(serve.peak_rss_kib());
                let cpu_after = [
                    serve.cpu(),
                    sim.cpu(),
                    redis.process.cpu(),
                    processes::own_cpu(),
                ];
                finished += out.finished;
                failed += out.failed;
                if let Some(f) = &out.first_failure {
                    report.problem(format!(
                        "lifecycles failed at {latency} ms, concurrency {c}: {f}"
                    ));
                }
                if first_failure.is_none() {
                    first_failure = out.first_failure.clone();
                }
                rates.push(out.per_second());
                p50s.push(ms(load::quantile(&out.latencies, 0.5)));
                p99s.push(ms(load::quantile(&out.latencies, 0.99)));
                for (medians, step) in steps.iter_mut().zip(&out.steps) {
                    medians.push(ms(load::quantile(step, 0.5)));
                }
                let per = |i: usize| ms(cpu_after[i] - cpu_before[i]) / out.finished.max(1) as f64;
                cpus.push([per(0), per(1), per(2), per(3)]);
            }
            let rate = median(rates);
            let cpu: Vec<f64> = (0..4)
                .map(|i| median(cpus.iter().map(|c| c[i]).collect()))
                .collect();
            let (ideal_lifecycle, ideal_call) = if latency == 0 {
                ("".to_string(), "".to_string())
            } else {
                let l = latency as f64 / 1000.0;
                (
                    format!("{:.2}", rate / (c as f64 / (KAKAOPAY_CALLS as f64 * l))),
                    format!("{:.2}", rate / (c as f64 / l)),
                )
            };
            report.line(format!(
                "| {latency} ms | {c} | {rate:.0} | {:.1} | {:.1} | {failed} | {ideal_lifecycle} | {ideal_call} | {:.1} / {:.1} / {:.1} | {:.2} / {:.2} / {:.2} / {:.2} | {:.1} |",
                median(p50s),
                median(p99s),
                median(steps[0].clone()),
                median(steps[1].clone()),
                median(steps[2].clone()),
                cpu[0], cpu[1], cpu[2], cpu[3],
                mib(peak_rss)
            ));
            if let Some(f) = first_failure {
                report.line(format!("\nFirst failure: {f}\n"));
            }
        }
    }
    set_latency(sim_addr, 0).await?;

    // Part 4: commands per lifecycle, with MONITOR on (it slows Redis, not the counts).
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let monitor = tokio::spawn(footprint::monitor(redis.port, stopped));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let smallest = levels.iter().copied().min().unwrap_or(16);
    let out = lifecycle::run(
        &target,
        smallest,
        Duration::ZERO,
        Duration::from_secs(2),
        "MON",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stop.send(());
    let commands = monitor.await??;
    finished += out.finished;
    let n = out.finished.max(1) as f64;
    report.line("\n## 4. Redis per lifecycle\n");
    report.line(format!(
        "Commands counted with `MONITOR` over {} lifecycles at concurrency {smallest} (background work of the idle loops included): **{:.1} commands sent per lifecycle** (each a round trip unless pipelined), and {:.1} more run inside our Lua scripts.\n",
        out.finished,
        commands.sent_total() as f64 / n,
        commands.in_scripts_total() as f64 / n,
    ));
    report.line("| command | sent per lifecycle | run in scripts per lifecycle |");
    report.line("|---|---|---|");
    let mut names: Vec<&String> = commands
        .sent
        .keys()
        .chain(commands.in_scripts.keys())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        report.line(format!(
            "| {name} | {:.2} | {:.2} |",
            *commands.sent.get(name).unwrap_or(&0) as f64 / n,
            *commands.in_scripts.get(name).unwrap_or(&0) as f64 / n
        ));
    }

    let memory_after = redis.used_memory().await?;
    let kinds = footprint::memory_by_kind(&redis.client).await?;
    report.line(format!(
        "\nMemory: `used_memory` grew by {} bytes over {finished} finished lifecycles: **{:.0} bytes per finished payment** while its jobs are still within the queue's retention (50,000 done jobs or 24 h) and its events within their 30 days.\n",
        memory_after - memory_before,
        (memory_after - memory_before) as f64 / finished.max(1) as f64
    ));
    report.line("| key kind | keys | expiring | bytes (MEMORY USAGE) | bytes per payment |");
    report.line("|---|---|---|---|---|");
    let mut kept = 0u64;
    // Only this part's keys: the enqueue part's payments share the Redis.
    for (kind, usage) in kinds
        .iter()
        .filter(|(k, _)| k.contains(LIFECYCLE_NAMESPACE))
    {
        let per = usage.bytes as f64 / finished.max(1) as f64;
        if per < 1.0 {
            continue;
        }
        let retained =
            kind.contains(":job:") || kind.ends_with(":done") || usage.expiring == usage.keys;
        if !retained {
            kept += usage.bytes;
        }
        report.line(format!(
            "| `{kind}` | {} | {} | {} | {per:.0} |",
            usage.keys, usage.expiring, usage.bytes
        ));
    }
    report.line(format!(
        "\nAfter retention (job records and the done index trimmed, events expired), what stays is **{:.0} bytes per payment**.\n",
        kept as f64 / finished.max(1) as f64
    ));
    report.line("## 5. Memory of `serve`\n");
    report.line(format!(
        "Peak RSS (VmHWM) of the `serve` process over every lifecycle run above: **{:.1} MiB** (now {:.1} MiB).\n",
        mib(serve.peak_rss_kib()),
        mib(serve.rss_kib())
    ));
    let log = std::fs::read_to_string(dir.join(format!("{LIFECYCLE_NAMESPACE}-serve.log")))
        .unwrap_or_default();
    let troubles = log
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains("\"level\":\"WARN\""))
        .count();
    if troubles > 0 {
        report.problem(format!("the serve log has {troubles} warnings or errors"));
    }
    report.line(format!(
        "The `serve` log has {troubles} warnings or errors; webhooks received: {}.\n",
        target
            .hooks
            .received
            .load(std::sync::atomic::Ordering::Relaxed)
    ));
    Ok(())
}
