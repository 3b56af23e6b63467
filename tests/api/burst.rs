//! The burst: refund requests fired at a real `api` process 200 at a time, one real `work`
//! process draining them through the simulator. Every request is accepted, every refund
//! succeeds exactly once at KakaoPay, no job is retried or dead, and both processes stay
//! within a fixed memory budget while the backlog is in Redis.
//!
//! CI fires 1,000 refunds; the full burst of issue #7 (20,000) is
//! `BURST_PAYMENTS=2000 cargo test --release --test api -- burst:: --nocapture`.

use crate::support::*;
use futures::StreamExt;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Refunds per payment: 10 × 2,200 won refunds a 22,000 won payment in full.
const SLICES: usize = 10;
const SLICE: i64 = 2_200;
const CONCURRENCY: usize = 200;
/// Resident memory either process may reach, whatever the backlog.
const MEMORY_BUDGET_KB: u64 = 256 * 1024;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn process(app: &TestApp, mode: &str, port: u16, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kakaopay-worker"))
        .arg(mode)
        // Tests run side by side: the default port would be taken by another one's worker.
        .env("METRICS_BIND", "127.0.0.1:0")
        .env("REDIS_URL", "redis://127.0.0.1:6379")
        .env("QUEUE_NAMESPACE", &app.namespace)
        .env("KAKAOPAY_API_URL", &app.sim.url)
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("API_TOKENS", CLIENT_TOKEN)
        .env("ADMIN_TOKENS", ADMIN_TOKEN)
        .env("CALLBACK_SECRET", CALLBACK_SECRET)
        .env("WORKER_CONCURRENCY", "16")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .unwrap()
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_refunds_is_accepted_and_drained_in_bounded_memory() {
    let payments: usize = std::env::var("BURST_PAYMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let refunds = payments * SLICES;
    let app = spawn_app_with(AppOptions {
        workers: false,
        ..Default::default()
    })
    .await;
    app.connect_open_api("loc_1").await;
    let dir = std::env::temp_dir().join(format!("burst-{}", app.namespace));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let mut api = process(&app, "api", port, &dir.join("api.log"));
    let mut work = process(&app, "work", 0, &dir.join("work.log"));
    let api_url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while reqwest::get(format!("{api_url}/readyz")).await.is_err() {
        assert!(Instant::now() < deadline, "the api process never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The payments to refund, approved by the work process.
    let ids: Vec<String> = futures::stream::iter(0..payments)
        .map(|n| {
            let app = &app;
            async move { app.paid(payment_body("loc_1", &format!("BU-{n}"))).await }
        })
        .buffered(32)
        .collect()
        .await;
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(60);
        while app.payment(id).await["status"] != "approved" {
            assert!(Instant::now() < deadline, "payment {id} never approved");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Memory of both processes, sampled all through the burst and the drain.
    let peaks = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let baseline = [rss_kb(api.id()), rss_kb(work.id())];
    let sampler = {
        let peaks = peaks.clone();
        let pids = [api.id(), work.id()];
        tokio::spawn(async move {
            loop {
                for (peak, pid) in peaks.iter().zip(pids) {
                    peak.fetch_max(rss_kb(pid), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // The burst: request k refunds a slice of payment k mod P, so neighbours in the queue
    // belong to different payments.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let started = Instant::now();
    let statuses: Vec<u16> = futures::stream::iter(0..refunds)
        .map(|k| {
            let (http, api_url) = (&http, &api_url);
            let id = &ids[k % payments];
            async move {
                http.post(format!("{api_url}/v1/payments/{id}/refunds"))
                    .bearer_auth(ADMIN_TOKEN)
                    .header("Idempotency-Key", format!("burst-{k}"))
                    .json(&json!({"requested_by": "admin", "reason": "burst", "amount": SLICE}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let accepted_in = started.elapsed();
    let rejected = statuses.iter().filter(|s| **s != 202).count();
    assert_eq!(rejected, 0, "every refund request is accepted");

    // The drain: every payment refunded in full.
    let deadline = Instant::now() + Duration::from_secs(60 + refunds as u64 / 50);
    for id in &ids {
        loop {
            let p = app.payment(id).await;
            if p["status"] == "refunded" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "payment {id} never refunded: {p}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let drained_in = started.elapsed();
    sampler.abort();
    let peak = [
        peaks[0].load(Ordering::Relaxed),
        peaks[1].load(Ordering::Relaxed),
    ];

    // Exactly once at KakaoPay, and every refund recorded as succeeded.
    for id in &ids {
        let p = app.payment(id).await;
        assert_eq!(p["refunded_amount"], SLICE * SLICES as i64, "{p}");
        let ours = p["refunds"].as_array().unwrap();
        assert_eq!(ours.len(), SLICES, "{p}");
        assert!(ours.iter().all(|r| r["status"] == "succeeded"), "{p}");
        let theirs = ledger(&app.sim, p["tid"].as_str().unwrap()).await;
        let cancels = theirs["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["payment_action_type"] == "CANCEL")
            .count();
        assert_eq!(cancels, SLICES, "{theirs}");
        assert_eq!(theirs["canceled_amount"]["total"], p["refunded_amount"]);
    }
    // No job failed even once, none is dead, nothing is left behind.
    let (status, queues) = app
        .send(reqwest::Method::GET, "/v1/queues", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, 200);
    for queue in queues["queues"].as_array().unwrap() {
        for field in ["pending", "running", "scheduled", "failed", "dead"] {
            assert_eq!(queue[field], 0, "{queue}");
        }
    }
    let _ = api.kill();
    let _ = work.kill();
    let _ = api.wait();
    let _ = work.wait();
    let work_log = std::fs::read_to_string(dir.join("work.log")).unwrap();
    let api_log = std::fs::read_to_string(dir.join("api.log")).unwrap();
    assert!(
        !work_log.is_empty() && !api_log.is_empty(),
        "logs were written"
    );
    assert_no_secret_in(&work_log, "the work process's log");
    assert_no_secret_in(&api_log, "the api process's log");
    let errors: Vec<&str> = work_log
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l)
                .map(|v| v["level"] == "ERROR" || v["level"] == "WARN")
                .unwrap_or(false)
        })
        .collect();
    assert!(errors.is_empty(), "the worker logged trouble: {errors:?}");
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "burst: {refunds} refunds over {payments} payments at concurrency {CONCURRENCY}: \
         all accepted in {accepted_in:?} ({:.0}/s), all succeeded in {drained_in:?} ({:.0}/s); \
         peak RSS api {} MiB (from {}), work {} MiB (from {})",
        refunds as f64 / accepted_in.as_secs_f64(),
        refunds as f64 / drained_in.as_secs_f64(),
        peak[0] / 1024,
        baseline[0] / 1024,
        peak[1] / 1024,
        baseline[1] / 1024,
    );
    for (name, kb) in ["api", "work"].iter().zip(peak) {
        assert!(
            kb < MEMORY_BUDGET_KB,
            "{name} peaked at {kb} KiB, over the budget"
        );
    }
    app.stop().await;
}
