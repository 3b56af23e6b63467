//! Parts 3 to 5: whole lifecycles through one `serve` process at each concurrency and
//! KakaoPay latency, the Redis commands and memory they cost, and the process's peak memory.

use super::lifecycle::{self, Hooks, Target};
use super::load::{self, Conn, Req};
use super::processes::{self, PrivateRedis, Process};
use super::{
    connect_location, footprint, median, mib, ms, start_service, Env, Report, KAKAOPAY_CALLS,
    LIFECYCLE_NAMESPACE, LOCATION,
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
