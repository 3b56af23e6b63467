//! Parts 3 to 5: whole lifecycles through one `serve` process at each concurrency and
//! KakaoPay latency, the Redis commands and memory they cost, and the process's peak memory.

use super::lifecycle::{self, Hooks, Outcome, Target};
use super::load::{self, Conn, Req};
use super::processes::{self, PrivateRedis, Process};
use super::{
    connect_location, footprint, median, mib, ms, start_service, Env, Report, KAKAOPAY_CALLS,
    LIFECYCLE_NAMESPACE,
};
use crate::config::BenchArgs;
use anyhow::bail;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

async fn set_latency(sim: SocketAddr, latency_ms: u64) -> anyhow::Result<()> {
    let mut conn = Conn::new(sim);
    conn.send(&Req::new(http::Method::DELETE, "/__sim/faults"))
        .await;
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
pub(super) async fn measure(
    args: &BenchArgs,
    env: &Env,
    redis: &PrivateRedis,
    (sim, sim_addr): (&Process, SocketAddr),
    dir: &std::path::Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let bench = Lifecycles::start(args, env, redis, (sim, sim_addr), dir).await?;
    let memory_before = redis.used_memory().await?;
    let mut finished = bench.rates(report).await?;
    set_latency(sim_addr, 0).await?;
    finished += bench.commands(report).await?;
    bench.redis_memory(memory_before, finished, report).await?;
    bench.serve_memory(dir, report);
    Ok(())
}

/// The `serve` process every part's lifecycles go through, and the processes whose CPU
/// time they are charged with.
struct Lifecycles<'a> {
    args: &'a BenchArgs,
    redis: &'a PrivateRedis,
    sim: &'a Process,
    serve: Process,
    target: Target,
    levels: Vec<usize>,
    concurrency: usize,
}

impl<'a> Lifecycles<'a> {
    async fn start(
        args: &'a BenchArgs,
        env: &Env,
        redis: &'a PrivateRedis,
        (sim, sim_addr): (&'a Process, SocketAddr),
        dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
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
                ("WEBHOOK_SECRET", super::BENCH_WEBHOOK_SECRET.to_string()),
            ],
            dir,
        )
        .await?;
        connect_location(api, &env.admin_token).await?;
        let target = env.target(api, sim_addr, hooks);
        Ok(Lifecycles {
            args,
            redis,
            sim,
            serve,
            target,
            levels,
            concurrency,
        })
    }

    /// The CPU time so far of `serve`, the simulator, Redis and this process (the load).
    fn cpu(&self) -> [Duration; 4] {
        [
            self.serve.cpu(),
            self.sim.cpu(),
            self.redis.process.cpu(),
            processes::own_cpu(),
        ]
    }

    /// Part 3: a row per KakaoPay latency and concurrency. Returns the lifecycles finished,
    /// which part 4 divides the memory by.
    async fn rates(&self, report: &mut Report) -> anyhow::Result<u64> {
        let window = Duration::from_secs(self.args.seconds);
        let warmup = Duration::from_secs(1);
        report.line(format!(
            "## 3. Lifecycles (one `serve` process, WORKER_CONCURRENCY={}, webhooks on)\n",
            self.concurrency
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
        for &latency in &self.args.latencies {
            set_latency(self.target.sim, latency).await?;
            for &c in &self.levels {
                self.serve.reset_peak_rss();
                let mut runs = Runs::default();
                for _ in 0..self.args.runs {
                    run_no += 1;
                    let cpu_before = self.cpu();
                    let tag = format!("LC{run_no}");
                    let out = lifecycle::run(&self.target, c, warmup, window, &tag).await;
                    runs.peak_rss = runs.peak_rss.max(self.serve.peak_rss_kib());
                    let cpu_after = self.cpu();
                    finished += out.finished;
                    if let Some(f) = &out.first_failure {
                        report.problem(format!(
                            "lifecycles failed at {latency} ms, concurrency {c}: {f}"
                        ));
                    }
                    runs.add(&out, std::array::from_fn(|i| cpu_after[i] - cpu_before[i]));
                }
                runs.row(latency, c, report);
            }
        }
        Ok(finished)
    }

    /// Part 4: commands per lifecycle, with MONITOR on (it slows Redis, not the counts).
    /// Returns the lifecycles finished.
    async fn commands(&self, report: &mut Report) -> anyhow::Result<u64> {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let monitor = tokio::spawn(footprint::monitor(self.redis.port, stopped));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let smallest = self.levels.iter().copied().min().unwrap_or(16);
        let out = lifecycle::run(
            &self.target,
            smallest,
            Duration::ZERO,
            Duration::from_secs(2),
            "MON",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop.send(());
        let commands = monitor.await??;
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
        Ok(out.finished)
    }

    /// Part 4's memory: what Redis kept for the `finished` lifecycles, by kind of key.
    async fn redis_memory(
        &self,
        memory_before: i64,
        finished: u64,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let memory_after = self.redis.used_memory().await?;
        let kinds = footprint::memory_by_kind(&self.redis.client).await?;
        let per_payment = |bytes: f64| bytes / finished.max(1) as f64;
        report.line(format!(
            "\nMemory: `used_memory` grew by {} bytes over {finished} finished lifecycles: **{:.0} bytes per finished payment** while its jobs are still within the queue's retention (50,000 done jobs or 24 h) and its events within their 30 days.\n",
            memory_after - memory_before,
            per_payment((memory_after - memory_before) as f64)
        ));
        report.line("| key kind | keys | expiring | bytes (MEMORY USAGE) | bytes per payment |");
        report.line("|---|---|---|---|---|");
        let mut kept = 0u64;
        // Only this part's keys: the enqueue part's payments share the Redis.
        for (kind, usage) in kinds
            .iter()
            .filter(|(k, _)| k.contains(LIFECYCLE_NAMESPACE))
        {
            let per = per_payment(usage.bytes as f64);
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
            per_payment(kept as f64)
        ));
        Ok(())
    }

    /// Part 5: the peak memory of `serve` over every run above, and what its log complains of.
    fn serve_memory(&self, dir: &std::path::Path, report: &mut Report) {
        report.line("## 5. Memory of `serve`\n");
        report.line(format!(
            "Peak RSS (VmHWM) of the `serve` process over every lifecycle run above: **{:.1} MiB** (now {:.1} MiB).\n",
            mib(self.serve.peak_rss_kib()),
            mib(self.serve.rss_kib())
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
            self.target
                .hooks
                .received
                .load(std::sync::atomic::Ordering::Relaxed)
        ));
    }
}

/// The runs of one row of part 3, each figure kept per run so the row shows their medians.
#[derive(Default)]
struct Runs {
    peak_rss: u64,
    rates: Vec<f64>,
    p50s: Vec<f64>,
    p99s: Vec<f64>,
    steps: [Vec<f64>; 3],
    /// CPU ms per lifecycle of `serve`, the simulator, Redis and the load.
    cpus: Vec<[f64; 4]>,
    failed: u64,
    first_failure: Option<String>,
}

impl Runs {
    fn add(&mut self, out: &Outcome, cpu_spent: [Duration; 4]) {
        self.failed += out.failed;
        if self.first_failure.is_none() {
            self.first_failure = out.first_failure.clone();
        }
        self.rates.push(out.per_second());
        self.p50s.push(ms(load::quantile(&out.latencies, 0.5)));
        self.p99s.push(ms(load::quantile(&out.latencies, 0.99)));
        for (medians, step) in self.steps.iter_mut().zip(&out.steps) {
            medians.push(ms(load::quantile(step, 0.5)));
        }
        self.cpus
            .push(cpu_spent.map(|spent| ms(spent) / out.finished.max(1) as f64));
    }

    fn row(self, latency: u64, c: usize, report: &mut Report) {
        let rate = median(self.rates);
        let cpu: Vec<f64> = (0..4)
            .map(|i| median(self.cpus.iter().map(|c| c[i]).collect()))
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
        let [created, approved, refunded] = self.steps.map(median);
        report.line(format!(
            "| {latency} ms | {c} | {rate:.0} | {:.1} | {:.1} | {} | {ideal_lifecycle} | {ideal_call} | {created:.1} / {approved:.1} / {refunded:.1} | {:.2} / {:.2} / {:.2} / {:.2} | {:.1} |",
            median(self.p50s),
            median(self.p99s),
            self.failed,
            cpu[0], cpu[1], cpu[2], cpu[3],
            mib(self.peak_rss)
        ));
        if let Some(f) = self.first_failure {
            report.line(format!("\nFirst failure: {f}\n"));
        }
    }
}
