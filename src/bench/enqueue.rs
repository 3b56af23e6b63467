//! Part 1: the HTTP enqueue path of an `api` process (callbacks and refund requests at 50
//! and 200 connections, `GET /healthz` as the ceiling), next to `redis-benchmark -t set` on
//! the same Redis, with the CPU each process spent per request.

use super::load::{self, closed_loop, Conn, Req};
use super::processes::{self, PrivateRedis, Process};
use super::{connect_location, lifecycle, median, mib, ms, start_service, Env, Report, LOCATION};
use crate::config::BenchArgs;
use anyhow::{bail, Context};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
pub(super) async fn measure(
    args: &BenchArgs,
    env: &Env,
    redis: &PrivateRedis,
    sim_addr: SocketAddr,
    dir: &std::path::Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (api_process, api) = start_service("api", env, "bench-enqueue", &[], dir).await?;
    connect_location(api, &env.admin_token).await?;
    let path = EnqueuePath {
        api,
        processes: [&api_process, &redis.process],
        runs: args.runs,
        per_run: args.requests as usize,
    };
    let needed = path.per_run * LEVELS.len() * args.runs as usize;

    let (created_rate, payments, callbacks) =
        payments_to_call_back(api, sim_addr, env, needed, "EQ").await?;

    report.line("## 1. Enqueue path (one `api` process, HTTP/1.1 keep-alive, closed loop)\n");
    report.line(format!(
        "Setup: {needed} payments created through `POST /v1/payments` (synchronous KakaoPay ready at the simulator, 0 ms) at {created_rate:.0}/s with 64 connections.\n"
    ));

    let set_rates = set_rates(redis, args.runs)?;

    // The ceiling of HTTP through our stack on this machine: a route that touches nothing.
    let health_runs = path
        .at_each_level(200, || vec![Req::get("/healthz"); path.per_run])
        .await;

    let mut callbacks = callbacks.into_iter();
    let callback_runs = path
        .at_each_level(200, || callbacks.by_ref().take(path.per_run).collect())
        .await;

    // Refunds can be asked for only once the payments are approved.
    approve_all(api, env, dir).await?;
    let refund_runs = path
        .at_each_level(
            202,
            refund_requests(&payments, &env.admin_token, path.per_run),
        )
        .await;

    write_table(
        report,
        &set_rates,
        [
            ("`GET /healthz` (no Redis)", &health_runs),
            (
                "callback `GET /kakaopay/callback/…/approve`",
                &callback_runs,
            ),
            ("refund `POST /v1/payments/{id}/refunds`", &refund_runs),
        ],
    );
    report.line(format!(
        "\n{} requests a run. Peak RSS of the `api` process: {:.1} MiB; its CPU time: {:.1} s.\n",
        path.per_run,
        mib(api_process.peak_rss_kib()),
        api_process.cpu().as_secs_f64()
    ));
    drop(api_process);
    Ok(())
}

/// The connections each kind of request is measured at.
const LEVELS: [usize; 2] = [50, 200];

/// Where part 1's requests go, and the processes whose CPU time they are charged with.
struct EnqueuePath<'a> {
    api: SocketAddr,
    /// The `api` process and Redis.
    processes: [&'a Process; 2],
    runs: u32,
    per_run: usize,
}

impl EnqueuePath<'_> {
    /// `runs` closed-loop runs of a fresh `batch()` at each of [`LEVELS`], summarized per level
    /// (`expected`: the status every answer should have).
    async fn at_each_level(
        &self,
        expected: u16,
        mut batch: impl FnMut() -> Vec<Req>,
    ) -> Vec<(usize, Summary)> {
        let mut levels = Vec::new();
        for &c in &LEVELS {
            let mut runs = Vec::new();
            for _ in 0..self.runs {
                runs.push(measured(self.api, c, batch(), self.processes).await);
            }
            levels.push((c, summarize(&runs, expected)));
        }
        levels
    }
}

/// Approves every payment called back about, with a `work` process that lives as long as
/// that takes.
async fn approve_all(api: SocketAddr, env: &Env, dir: &std::path::Path) -> anyhow::Result<()> {
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
    Ok(())
}

/// Batches of `per_run` refund requests of 1 won, going round the payments, each with an
/// idempotency key of its own so that none is answered from an earlier one.
fn refund_requests<'a>(
    payments: &'a [String],
    admin_token: &'a str,
    per_run: usize,
) -> impl FnMut() -> Vec<Req> + 'a {
    let mut k = 0usize;
    move || {
        (0..per_run)
            .map(|_| {
                k += 1;
                Req::post_json(
                    format!("/v1/payments/{}/refunds", payments[k % payments.len()]),
                    &json!({"requested_by": "admin", "reason": "bench", "amount": 1}),
                )
                .bearer(admin_token)
                .header("idempotency-key", &format!("bench-{k}"))
            })
            .collect()
    }
}

/// `redis-benchmark -t set` at each of [`LEVELS`]: connections, median rate, median p50.
fn set_rates(redis: &PrivateRedis, runs: u32) -> anyhow::Result<Vec<(usize, f64, f64)>> {
    let mut set_rates = Vec::new();
    for &c in &LEVELS {
        let mut rates = Vec::new();
        let mut p50s = Vec::new();
        for _ in 0..runs {
            let (rate, p50) = redis.benchmark_set(c, 200_000)?;
            rates.push(rate);
            p50s.push(p50);
        }
        set_rates.push((c, median(rates), median(p50s)));
    }
    Ok(set_rates)
}

/// Part 1's table: a row per kind of request and level, then Redis's SET rates they are
/// divided by. The first kind is `/healthz`, whose `api` CPU the others are divided by (the
/// cost of the stack itself: issue #17 sets its targets in that ratio). Answers that were not
/// 2xx are the run's problems.
fn write_table(
    report: &mut Report,
    set_rates: &[(usize, f64, f64)],
    kinds: [(&str, &Vec<(usize, Summary)>); 3],
) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let set_rate = |c: usize| {
        set_rates
            .iter()
            .find(|s| s.0 == c)
            .map(|s| s.1)
            .unwrap_or(f64::NAN)
    };
    let healthz_cpu = |c: usize| {
        kinds[0]
            .1
            .iter()
            .find(|(at, _)| *at == c)
            .map_or(f64::NAN, |(_, s)| s.cpu_us[0])
    };
    report.line("| request | connections | requests/s | p50 ms | p99 ms | max ms | not 2xx | ÷ SET rate | CPU µs per request: api / redis / load | 2 cores ÷ that CPU | api CPU ÷ `/healthz`'s |");
    report.line("|---|---|---|---|---|---|---|---|---|---|---|");
    for (_, runs) in kinds {
        for (c, s) in runs {
            if s.bad > 0 {
                report.problem(format!(
                    "{} enqueue-path answers at {c} connections were not 2xx",
                    s.bad
                ));
            }
        }
    }
    for (name, runs) in kinds {
        for (c, s) in runs {
            report.line(format!(
                "| {name} | {c} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {:.2} | {:.0} / {:.0} / {:.0} | {:.0}/s | {:.1} |",
                s.rate,
                s.p50,
                s.p99,
                s.max,
                s.bad,
                s.rate / set_rate(*c),
                s.cpu_us[0],
                s.cpu_us[1],
                s.cpu_us[2],
                cores as f64 * 1e6 / s.cpu_us.iter().sum::<f64>(),
                s.cpu_us[0] / healthz_cpu(*c)
            ));
        }
    }
    for (c, rate, p50) in set_rates {
        report.line(format!(
            "| `redis-benchmark -t set -n 200000` | {c} | {rate:.0} | {p50:.2} | | | | 1.00 | | | |"
        ));
    }
}

/// `n` payments to call back about, created through the API (KakaoPay ready at the
/// simulator) and approved by the member on the simulator's page: the creation rate, the
/// payment ids and the callbacks.
pub(super) async fn payments_to_call_back(
    api: SocketAddr,
    sim_addr: SocketAddr,
    env: &Env,
    needed: usize,
    tag: &str,
) -> anyhow::Result<(f64, Vec<String>, Vec<Req>)> {
    let creates: Vec<Req> = (0..needed)
        .map(|n| {
            Req::post_json(
                "/v1/payments",
                &lifecycle::payment_body(LOCATION, &format!("{tag}-{n}")),
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
    let (payments, presses): (Vec<String>, Vec<Req>) = created
        .answers
        .iter()
        .map(|a| {
            let created = a.json();
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            let path = url::Url::parse(&text(&created["redirect"]["pc"]))
                .map(|u| u.path().to_string())
                .unwrap_or_default();
            (
                text(&created["payment_id"]),
                Req::post_form(path.replace("/info", "/action/approve"), "method=CARD"),
            )
        })
        .unzip();
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

    Ok((created_rate, payments, callbacks))
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
