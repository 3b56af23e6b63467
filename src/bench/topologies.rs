//! Part 6: one server next to a Redis Cluster (`--redis-cluster-urls` / `REDIS_CLUSTER_URLS`),
//! in the same run: the callback enqueue path of an `api` process, whole lifecycles through a
//! `serve` process, and the Redis round trips each lifecycle costs (the service counts them:
//! `redis_round_trips_total`); each also with `REDIS_WAIT_REPLICAS=1` (the private server
//! gets a replica for it), which is what waiting for a replica costs.

use super::enqueue::payments_to_call_back;
use super::lifecycle::{self, Hooks};
use super::load::{closed_loop, Conn, Req};
use super::processes::PrivateRedis;
use super::{connect_location, median, start_service, Env, Report};
use crate::config::BenchArgs;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What one topology measured.
struct Figures {
    callbacks_per_second: f64,
    lifecycles_per_second: f64,
    round_trips_per_lifecycle: f64,
    failed: u64,
}

pub(super) async fn measure(
    args: &BenchArgs,
    env: &Env,
    redis: &PrivateRedis,
    cluster_urls: &str,
    sim_addr: SocketAddr,
    dir: &std::path::Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    // A replica of the private server, so that waiting for one can be measured too.
    let replica = PrivateRedis::start_replica_of(redis, dir).await?;
    let wait = ("REDIS_WAIT_REPLICAS", "1".to_string());
    let cluster = ("REDIS_CLUSTER_URLS", cluster_urls.to_string());
    let topologies = [
        ("one server", Vec::new()),
        ("3-master cluster", vec![cluster.clone()]),
        (
            "one server + replica, REDIS_WAIT_REPLICAS=1",
            vec![wait.clone()],
        ),
        (
            "3-master cluster, REDIS_WAIT_REPLICAS=1",
            vec![cluster, wait],
        ),
    ];
    let mut rows = Vec::new();
    for (n, (name, redis_env)) in topologies.iter().enumerate() {
        match on_topology(args, env, redis_env, sim_addr, dir, n).await {
            Ok(figures) => {
                if figures.failed > 0 {
                    report.problem(format!("{} lifecycles failed on {name}", figures.failed));
                }
                rows.push((name, figures));
            }
            // A cluster without replicas cannot be waited for: said, and the rest measured.
            Err(e) => report.problem(format!("{name}: {e:#}")),
        }
    }
    drop(replica);
    report.line("## 6. One server next to a Redis Cluster (same run)\n");
    report.line(format!(
        "Callbacks: {} per run at 200 connections through one `api` process. Lifecycles: one `serve` process, 64 in flight, KakaoPay at 0 ms, {}-s windows. Round trips: commands and pipelines the `serve` process sent to Redis, per lifecycle finished. Medians of {} runs.\n",
        args.requests, args.seconds, args.runs
    ));
    report.line("| Redis | callbacks/s | lifecycles/s | round trips per lifecycle | ÷ one server (callbacks / lifecycles) |");
    report.line("|---|---|---|---|---|");
    let base = (
        rows[0].1.callbacks_per_second,
        rows[0].1.lifecycles_per_second,
    );
    for (name, f) in &rows {
        report.line(format!(
            "| {name} | {:.0} | {:.0} | {:.1} | {:.2} / {:.2} |",
            f.callbacks_per_second,
            f.lifecycles_per_second,
            f.round_trips_per_lifecycle,
            f.callbacks_per_second / base.0,
            f.lifecycles_per_second / base.1
        ));
    }
    report.line("");
    Ok(())
}

async fn on_topology(
    args: &BenchArgs,
    env: &Env,
    redis_env: &[(&'static str, String)],
    sim_addr: SocketAddr,
    dir: &std::path::Path,
    n: usize,
) -> anyhow::Result<Figures> {
    // A cluster outlives the run: a namespace of its own each time.
    let namespace = format!("bench-topology-{n}-{:08x}", rand::random::<u32>());
    let (api_process, api) = start_service("api", env, &namespace, redis_env, dir).await?;
    connect_location(api, &env.admin_token).await?;
    let per_run = args.requests as usize;
    let needed = per_run * args.runs as usize;
    let (_, _, callbacks) =
        payments_to_call_back(api, sim_addr, env, needed, &format!("T{n}")).await?;
    let mut callbacks = callbacks.into_iter();
    let mut rates = Vec::new();
    for _ in 0..args.runs {
        let batch: Vec<Req> = callbacks.by_ref().take(per_run).collect();
        rates.push(closed_loop(api, 200, Arc::new(batch)).await.per_second());
    }
    drop(api_process);

    let hooks = Hooks::default();
    let hooks_addr = hooks.serve().await?;
    let (serve, api) = start_service(
        "serve",
        env,
        &namespace,
        &[
            redis_env,
            &[
                ("WORKER_CONCURRENCY", "64".to_string()),
                ("WEBHOOK_URL", format!("http://{hooks_addr}/hooks")),
                ("WEBHOOK_SECRET", super::BENCH_WEBHOOK_SECRET.to_string()),
            ],
        ]
        .concat(),
        dir,
    )
    .await?;
    let target = env.target(api, sim_addr, hooks);
    let (mut lifecycles, mut round_trips, mut failed) = (Vec::new(), Vec::new(), 0);
    for run in 0..args.runs {
        let before = round_trips_of(api).await?;
        let out = lifecycle::run(
            &target,
            64,
            Duration::from_secs(1),
            Duration::from_secs(args.seconds),
            &format!("T{n}R{run}"),
        )
        .await;
        let after = round_trips_of(api).await?;
        failed += out.failed;
        lifecycles.push(out.per_second());
        round_trips.push((after - before) as f64 / out.finished.max(1) as f64);
    }
    drop(serve);
    Ok(Figures {
        callbacks_per_second: median(rates),
        lifecycles_per_second: median(lifecycles),
        round_trips_per_lifecycle: median(round_trips),
        failed,
    })
}

/// The service's `redis_round_trips_total`.
async fn round_trips_of(api: SocketAddr) -> anyhow::Result<u64> {
    let answer = Conn::new(api).send(&Req::get("/metrics")).await;
    let text = String::from_utf8_lossy(&answer.body);
    text.lines()
        .find_map(|l| l.strip_prefix("redis_round_trips_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .context("the service's /metrics has no redis_round_trips_total")
}
