//! Queue benchmark: enqueue rates, and the no-op drain rate of our backend next to
//! apalis-redis 1.0.0 (its defaults and its fastest setting), in one run on one Redis.
//!
//! `cargo bench -p kakaopay-jobs --bench queue` (REDIS_URL, default redis://127.0.0.1:6379).
//! Each figure is the median of ROUNDS runs. Backlogs stay under 8,000 jobs so that
//! apalis-redis survives them (above that its fetch script fails and its workers exit).

use apalis::prelude::*;
use apalis_redis::{Config as RedisConfig, RedisStorage};
use kakaopay_jobs::queue::{
    consumer_name, inspect, Connection, EnqueueOptions, Keys, Producer, Purpose, QueueConfig,
    RetrySchedule, StreamBackend, Topology,
};
use kakaopay_jobs::JobKind;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 7;
/// Our drains: long enough (about a second) that rounds agree.
const DRAIN_JOBS: u64 = 40_000;
/// apalis-redis's: above 8,000 due jobs its fetch script fails.
const THEIR_DRAIN_JOBS: u64 = 7_000;
const CONCURRENCY: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noop {
    n: u64,
}

impl JobKind for Noop {
    const NAME: &'static str = "bench_noop";
    const RETRY: RetrySchedule =
        RetrySchedule::new(3, Duration::from_millis(100), Duration::from_secs(1));
}

async fn count(_job: Noop, counter: Data<Arc<AtomicU64>>) -> Result<(), BoxDynError> {
    counter.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn namespace() -> String {
    format!("bench-{:08x}", rand::random::<u32>())
}

/// Deletes a namespace's queue (one hash slot, so one node of a cluster holds it all).
async fn drop_queue(conn: &Connection, ns: &str) {
    let stream = Keys::new(ns, Noop::NAME).stream;
    let mut keys_cmd = redis::cmd("KEYS");
    keys_cmd.arg(format!("{{{ns}:*"));
    let keys: Vec<String> = conn.on_node_of(&stream, keys_cmd).await.unwrap_or_default();
    let mut conn = conn.clone();
    for chunk in keys.chunks(500) {
        let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
    }
}

/// Deletes apalis-redis's keys (one server only).
async fn drop_keys(conn: &ConnectionManager, pattern: &str) {
    let mut conn = conn.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
    }
}

async fn wait_until(counter: &AtomicU64, target: u64, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while counter.load(Ordering::Relaxed) < target {
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Some(start.elapsed())
}

fn median(xs: &[f64]) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// A table row: median, then the lowest and highest round.
fn row(what: &str, xs: &[f64]) {
    let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = xs.iter().copied().fold(0.0, f64::max);
    println!("| {what} | {:.0} | {min:.0} – {max:.0} |", median(xs));
}

/// Jobs per second for one sequential producer, one job per call.
async fn enqueue_single(conn: &Connection) -> f64 {
    let ns = namespace();
    let p = Producer::new(conn.clone(), &ns);
    let jobs = 3_000;
    let start = Instant::now();
    for n in 0..jobs {
        p.enqueue(&Noop { n }, EnqueueOptions::default())
            .await
            .unwrap();
    }
    let rate = jobs as f64 / start.elapsed().as_secs_f64();
    drop_queue(conn, &ns).await;
    rate
}

/// Jobs per second for 64 concurrent producers sharing one connection, one job per call.
async fn enqueue_concurrent(conn: &Connection) -> f64 {
    let ns = namespace();
    let p = Producer::new(conn.clone(), &ns);
    let per_task = 300;
    let start = Instant::now();
    let tasks: Vec<_> = (0..64u64)
        .map(|t| {
            let p = p.clone();
            tokio::spawn(async move {
                for n in 0..per_task {
                    p.enqueue(&Noop { n: t * 1000 + n }, EnqueueOptions::default())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rate = (64 * per_task) as f64 / start.elapsed().as_secs_f64();
    drop_queue(conn, &ns).await;
    rate
}

/// Jobs per second in batches of 100.
async fn enqueue_batched(conn: &Connection) -> f64 {
    let ns = namespace();
    let p = Producer::new(conn.clone(), &ns);
    let jobs: Vec<Noop> = (0..20_000).map(|n| Noop { n }).collect();
    let start = Instant::now();
    for chunk in jobs.chunks(100) {
        p.enqueue_batch(chunk.iter().map(|j| (j, EnqueueOptions::default())))
            .await
            .unwrap();
    }
    let rate = jobs.len() as f64 / start.elapsed().as_secs_f64();
    drop_queue(conn, &ns).await;
    rate
}

/// Our backend: backlog first, then the workers. Answers two rates: until the handler ran every
/// job (what the apalis-redis figures measure), and until every job is recorded done.
async fn drain_ours(
    topology: &Topology,
    conn: &Connection,
    raw: Option<&ConnectionManager>,
    workers: usize,
    profile: Option<&mut Vec<(String, f64, f64)>>,
) -> (f64, f64) {
    let ns = namespace();
    let p = Producer::new(conn.clone(), &ns);
    let jobs: Vec<Noop> = (0..DRAIN_JOBS).map(|n| Noop { n }).collect();
    for chunk in jobs.chunks(1000) {
        p.enqueue_batch(chunk.iter().map(|j| (j, EnqueueOptions::default())))
            .await
            .unwrap();
    }
    let stats_before = match raw {
        Some(raw) => command_stats(raw).await,
        None => Default::default(),
    };
    let counter = Arc::new(AtomicU64::new(0));
    let mut config = QueueConfig::new(&ns, Noop::NAME, Noop::RETRY);
    config.fetch_batch = CONCURRENCY;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let mut handles = Vec::new();
    for i in 0..workers {
        let worker = WorkerBuilder::new(consumer_name(Noop::NAME, i))
            .backend(StreamBackend::<Noop>::new(
                topology.clone(),
                conn.clone(),
                config.clone(),
            ))
            .concurrency(CONCURRENCY)
            .catch_panic()
            .data(counter.clone())
            .build(count);
        let mut stop = stop_rx.clone();
        handles.push(tokio::spawn(worker.run_until(async move {
            let _ = stop.wait_for(|s| *s).await;
            Ok::<(), std::io::Error>(())
        })));
    }
    wait_until(&counter, DRAIN_JOBS, Duration::from_secs(120))
        .await
        .expect("drained");
    let ran = DRAIN_JOBS as f64 / start.elapsed().as_secs_f64();
    loop {
        if inspect::counts(conn, &ns, Noop::NAME).await.unwrap().done == DRAIN_JOBS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let recorded = DRAIN_JOBS as f64 / start.elapsed().as_secs_f64();
    if let (Some(profile), Some(raw)) = (profile, raw) {
        let after = command_stats(raw).await;
        *profile = after
            .iter()
            .map(|(name, (calls, usec))| {
                let (c0, u0) = stats_before.get(name).copied().unwrap_or((0.0, 0.0));
                (name.clone(), (calls - c0) / DRAIN_JOBS as f64, usec - u0)
            })
            .filter(|(name, calls, _)| *calls > 0.0 && name != "info")
            .collect();
        profile.sort_by(|a, b| b.2.total_cmp(&a.2));
    }
    let _ = stop_tx.send(true);
    for h in handles {
        let _ = h.await;
    }
    drop_queue(conn, &ns).await;
    (ran, recorded)
}

/// How apalis-redis 1.0.0 is run.
#[derive(Clone, Copy)]
enum Theirs {
    /// Its default config, with the same worker layers as ours.
    Defaults,
    /// lock_tasks(false), batch_size(100), same layers.
    Fastest,
    /// Exactly as its README runs a worker: default config, no concurrency limit, no poll interval.
    Readme,
}

/// apalis-redis 1.0.0: backlog first, then one worker; timed until the handler ran every job.
async fn drain_apalis_redis(conn: &ConnectionManager, how: Theirs) -> f64 {
    let queue = namespace();
    let config = match how {
        Theirs::Fastest => RedisConfig::default()
            .queue(&queue)
            .lock_tasks(false)
            .batch_size(100),
        Theirs::Defaults | Theirs::Readme => RedisConfig::default().queue(&queue),
    };
    let mut storage =
        RedisStorage::<Noop, ConnectionManager>::new(conn.clone()).with_config(config);
    let jobs: Vec<Noop> = (0..THEIR_DRAIN_JOBS).map(|n| Noop { n }).collect();
    storage.push_bulk(jobs).await.unwrap();
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let stop = async move {
        let _ = stop_rx.wait_for(|s| *s).await;
        Ok::<(), std::io::Error>(())
    };
    let name = format!("{queue}-worker");
    let handle = match how {
        Theirs::Readme => tokio::spawn(
            WorkerBuilder::new(name)
                .backend(storage)
                .data(counter.clone())
                .build(count)
                .run_until(stop),
        ),
        Theirs::Defaults | Theirs::Fastest => tokio::spawn(
            WorkerBuilder::new(name)
                .backend(storage.poll_with_interval(Duration::from_millis(100)))
                .concurrency(CONCURRENCY)
                .catch_panic()
                .data(counter.clone())
                .build(count)
                .run_until(stop),
        ),
    };
    wait_until(&counter, THEIR_DRAIN_JOBS, Duration::from_secs(300))
        .await
        .expect("apalis-redis drained");
    let rate = THEIR_DRAIN_JOBS as f64 / start.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
    drop_keys(conn, &format!("*{queue}*")).await;
    rate
}

/// Seconds of CPU the Redis server has used so far.
async fn redis_cpu(conn: &ConnectionManager) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| *k == "used_cpu_user" || *k == "used_cpu_sys")
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum()
}

/// Calls and microseconds per Redis command so far (commands run by scripts included).
async fn command_stats(conn: &ConnectionManager) -> std::collections::BTreeMap<String, (f64, f64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let field = |k: &str| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                    .and_then(|v| v.parse::<f64>().ok())
            };
            Some((name.to_string(), (field("calls")?, field("usec")?)))
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url.as_str()).unwrap();
    let raw = client.get_connection_manager().await.unwrap();
    let topology = Topology::Server(url.clone());
    let conn = Connection::open(&topology, Purpose::Shared, None)
        .await
        .unwrap();

    let mut single = Vec::new();
    let mut concurrent = Vec::new();
    let mut batched = Vec::new();
    let mut ours = Vec::new();
    let mut ours_recorded = Vec::new();
    let mut ours_two = Vec::new();
    let mut theirs_default = Vec::new();
    let mut theirs_fastest = Vec::new();
    let mut theirs_readme = Vec::new();
    let mut redis_share = Vec::new();
    // With REDIS_CLUSTER_URLS, the same enqueues and 1-worker drain on the cluster, each round
    // right after the one-server figures.
    let cluster = match std::env::var("REDIS_CLUSTER_URLS") {
        Ok(urls) if !urls.is_empty() => {
            let topology = Topology::Cluster(urls.split(',').map(String::from).collect());
            let conn = Connection::open(&topology, Purpose::Shared, None)
                .await
                .expect("the cluster of REDIS_CLUSTER_URLS answers");
            Some((topology, conn))
        }
        _ => None,
    };
    let mut on_cluster: Vec<[f64; 4]> = Vec::new();
    // Where Redis spends its time in one of our drains (the enqueue before it left out).
    let mut profile = Vec::new();
    drain_ours(&topology, &conn, Some(&raw), 1, Some(&mut profile)).await;
    let total_usec: f64 = profile
        .iter()
        .filter(|p| p.0 != "evalsha" && p.0 != "eval")
        .map(|p| p.2)
        .sum();
    for round in 1..=ROUNDS {
        single.push(enqueue_single(&conn).await);
        concurrent.push(enqueue_concurrent(&conn).await);
        batched.push(enqueue_batched(&conn).await);
        let cpu_before = redis_cpu(&raw).await;
        let wall = Instant::now();
        let (ran, recorded) = drain_ours(&topology, &conn, Some(&raw), 1, None).await;
        redis_share.push((redis_cpu(&raw).await - cpu_before) / wall.elapsed().as_secs_f64());
        ours.push(ran);
        ours_recorded.push(recorded);
        ours_two.push(drain_ours(&topology, &conn, Some(&raw), 2, None).await.1);
        theirs_default.push(drain_apalis_redis(&raw, Theirs::Defaults).await);
        theirs_fastest.push(drain_apalis_redis(&raw, Theirs::Fastest).await);
        theirs_readme.push(drain_apalis_redis(&raw, Theirs::Readme).await);
        if let Some((topology, conn)) = &cluster {
            on_cluster.push([
                enqueue_single(conn).await,
                enqueue_concurrent(conn).await,
                enqueue_batched(conn).await,
                drain_ours(topology, conn, None, 1, None).await.1,
            ]);
        }
        eprintln!("round {round} of {ROUNDS} done");
    }
    println!("Queue benchmark: {ROUNDS} rounds, {DRAIN_JOBS}-job backlogs, no-op handler, concurrency {CONCURRENCY}, release build, one Redis");
    println!();
    println!("| measurement (jobs/s) | median | range |");
    println!("|---|---:|---:|");
    row("enqueue, one producer, one job per call", &single);
    row(
        "enqueue, 64 concurrent producers, one job per call",
        &concurrent,
    );
    row("enqueue, batches of 100", &batched);
    row(
        "drain, ours, 1 worker (leases and crash recovery on), until the handler ran every job",
        &ours,
    );
    row(
        "drain, ours, 1 worker, until every job is recorded done",
        &ours_recorded,
    );
    row("drain, ours, 2 workers, until recorded done", &ours_two);
    row(
        "drain, apalis-redis 1.0.0 defaults, until the handler ran every job",
        &theirs_default,
    );
    row(
        "drain, apalis-redis 1.0.0 fastest (lock_tasks(false), batch_size(100)), same",
        &theirs_fastest,
    );
    row("drain, apalis-redis 1.0.0 defaults as its README runs a worker (no concurrency limit, no poll interval)", &theirs_readme);
    println!();
    let (ours, ours_recorded, ours_two) =
        (median(&ours), median(&ours_recorded), median(&ours_two));
    let (theirs_default, theirs_fastest, theirs_readme) = (
        median(&theirs_default),
        median(&theirs_fastest),
        median(&theirs_readme),
    );
    let redis_share = median(&redis_share);
    println!("Redis commands per job in one of our drains (commands run by scripts included; evalsha is the scripts' total):");
    println!();
    println!("| command | calls per job | share of command time |");
    println!("|---|---:|---:|");
    for (name, calls, usec) in &profile {
        let share = if name == "evalsha" || name == "eval" {
            String::from("(total)")
        } else {
            format!("{:.0}%", usec / total_usec * 100.0)
        };
        println!("| {name} | {calls:.2} | {share} |");
    }
    println!();
    println!(
        "Redis server CPU during our 1-worker drain: {:.0}% of one core",
        redis_share * 100.0
    );
    println!();
    println!("Ratios of medians, ours recorded done / apalis-redis:");
    println!(
        "- 1 worker / fastest: {:.2}x; / defaults: {:.2}x; / README defaults: {:.2}x",
        ours_recorded / theirs_fastest,
        ours_recorded / theirs_default,
        ours_recorded / theirs_readme
    );
    println!(
        "- 2 workers / fastest: {:.2}x; / defaults: {:.2}x; / README defaults: {:.2}x",
        ours_two / theirs_fastest,
        ours_two / theirs_default,
        ours_two / theirs_readme
    );
    println!(
        "- (1 worker until the handler ran every job / fastest: {:.2}x)",
        ours / theirs_fastest
    );
    if !on_cluster.is_empty() {
        let one = [
            median(&single),
            median(&concurrent),
            median(&batched),
            ours_recorded,
        ];
        println!();
        println!("One server next to the cluster of REDIS_CLUSTER_URLS (same rounds):");
        println!();
        println!("| measurement (jobs/s) | one server | cluster | cluster ÷ one server |");
        println!("|---|---:|---:|---:|");
        let names = [
            "enqueue, one producer, one job per call",
            "enqueue, 64 concurrent producers",
            "enqueue, batches of 100",
            "drain, ours, 1 worker, until recorded done",
        ];
        for (i, name) in names.iter().enumerate() {
            let theirs: Vec<f64> = on_cluster.iter().map(|r| r[i]).collect();
            let c = median(&theirs);
            println!("| {name} | {:.0} | {c:.0} | {:.2} |", one[i], c / one[i]);
        }
    }
}
