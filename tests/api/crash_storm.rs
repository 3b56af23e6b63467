//! The crash storm: the API here, three real `work` processes, and every 300 ms one of them
//! SIGKILLed at random (and started again) while payments and refunds flow through the
//! simulator. At the end every payment and refund is final, nothing is lost, and KakaoPay saw
//! exactly one approve per payment and one cancel per refund.
//!
//! CI runs it small; the full storm of issue #7 is
//! `STORM_PAYMENTS=1000 STORM_REFUNDS=500 cargo test --release --test api -- crash_storm:: --nocapture`.

use crate::support::*;
use rand::Rng;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn worker(redis_env: &[(&'static str, String)], sim_url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kakaopay-worker"))
        .arg("work")
        // Tests run side by side: the default port would be taken by another one's worker.
        .env("METRICS_BIND", "127.0.0.1:0")
        .envs(redis_env.iter().cloned())
        .env("KAKAOPAY_API_URL", sim_url)
        .env("KAKAOPAY_TIMEOUT_MS", "2000")
        .env("JOB_LEASE_SECS", "1")
        .env("RECONCILE_EVERY_SECS", "1")
        .env("WORKER_CONCURRENCY", "8")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn nothing_is_lost_or_doubled_while_workers_keep_dying() {
    let payments = count("STORM_PAYMENTS", 60);
    let refunds = count("STORM_REFUNDS", 30).min(payments);
    // What is tested is exactly-once under kills, not the attempt budget. A run killed after
    // sending makes the next runs wait out its call window (about 6 s here), and with a kill
    // every 300 ms most of them die waiting, each an attempt: the default 12 attempts of a
    // refund ran out in one CI run on a loaded machine (the refund ended `failed` with
    // KakaoPay showing no cancel: right, but not what this checks). The API stamps a job's
    // attempts when it enqueues it.
    let options = AppOptions {
        workers: false,
        ..Default::default()
    };
    let app = spawn_app_tuned(options, |s| {
        s.operations.job_attempts = kakaopay_worker::config::JobAttempts(vec![
            ("approve_payment".into(), 40),
            ("cancel_payment".into(), 40),
        ]);
    })
    .await;
    app.connect_open_api("loc_1").await;
    let mut workers: Vec<Child> = (0..3)
        .map(|_| worker(&app.redis_env(), &app.sim.url))
        .collect();

    // KakaoPay answers approve and cancel after 100 ms, so kills land in the middle of calls.
    add_fault(
        &app.sim,
        json!([
            {"endpoint": "approve", "fault": "latency", "ms": 100},
            {"endpoint": "cancel", "fault": "latency", "ms": 100},
        ]),
    )
    .await;
    // The storm: every 300 ms a random worker dies and a new one starts.
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let storm = {
        let redis_env = app.redis_env();
        let sim_url = app.sim.url.clone();
        tokio::spawn(async move {
            let mut kills = 0u32;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                    _ = stopped.changed() => break,
                }
                let victim = rand::rng().random_range(0..workers.len());
                let _ = Command::new("kill")
                    .args(["-KILL", &workers[victim].id().to_string()])
                    .status();
                let _ = workers[victim].wait();
                kills += 1;
                workers[victim] = worker(&redis_env, &sim_url);
            }
            (workers, kills)
        })
    };

    let started = Instant::now();
    let mut ids = Vec::new();
    for n in 0..payments {
        let mut body = payment_body("loc_1", &format!("S-{n}"));
        body["starts_at"] = json!("2027-06-10T10:00:00+09:00");
        let (status, created) = app.create_payment(body).await;
        assert_eq!(status, 201, "{created}");
        let callback = app
            .member_presses(created["tid"].as_str().unwrap(), "approve")
            .await;
        assert_eq!(app.follow(&callback).await.status(), 303);
        ids.push(created["payment_id"].as_str().unwrap().to_string());
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &ids {
        while app.payment(id).await["status"] != "approved" {
            assert!(
                Instant::now() < deadline,
                "payment {id} never approved: {}",
                app.payment(id).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut refund_ids = Vec::new();
    for id in ids.iter().take(refunds) {
        refund_ids.push(
            app.request_refund(id, &format!("storm-{id}"), "2027-06-01T10:00:00+09:00")
                .await,
        );
    }
    for refund in &refund_ids {
        let left = deadline.saturating_duration_since(Instant::now());
        app.wait_refund(refund, "succeeded", left).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    let (mut workers, kills) = storm.await.unwrap();
    for w in workers.iter_mut() {
        let _ = w.kill();
        let _ = w.wait();
    }

    // KakaoPay's side: one approve per payment, one cancel per refund, ledgers equal.
    for (n, id) in ids.iter().enumerate() {
        let payment = app.payment(id).await;
        let theirs = ledger(&app.sim, payment["tid"].as_str().unwrap()).await;
        let kinds: Vec<&str> = theirs["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["payment_action_type"].as_str().unwrap())
            .collect();
        let expected: &[&str] = if n < refunds {
            &["PAYMENT", "CANCEL"]
        } else {
            &["PAYMENT"]
        };
        assert_eq!(kinds, expected, "{payment}");
        assert_eq!(
            theirs["canceled_amount"]["total"],
            payment["refunded_amount"]
        );
        assert_eq!(
            payment["status"],
            if n < refunds { "refunded" } else { "approved" }
        );
    }
    println!(
        "crash storm: {payments} payments and {refunds} refunds in {elapsed:?} with {kills} worker kills; \
         every one final, one approve per payment, one cancel per refund"
    );
    assert!(kills >= 5, "the storm really blew ({kills} kills)");
    app.stop().await;
}

crate::on_every_topology!(nothing_is_lost_or_doubled_while_workers_keep_dying);
