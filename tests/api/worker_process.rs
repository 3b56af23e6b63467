//! A real `kakaopay-worker work` process killed with SIGKILL in the middle of an approval.

use crate::support::*;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_worker_killed_mid_approve_leaves_the_payment_approved_once() {
    // The API alone in this process; the worker is another process.
    let app = spawn_app_with(AppOptions {
        workers: false,
        ..Default::default()
    })
    .await;
    app.connect_open_api("loc_1").await;
    // KakaoPay applies the approval, then holds the answer: the worker dies waiting for it.
    add_fault(&app.sim, json!({"endpoint": "approve", "fault": "commit_then_fail", "then": "timeout", "ms": 30000, "count": 1})).await;
    let mut worker = Command::new(env!("CARGO_BIN_EXE_kakaopay-worker"))
        .arg("work")
        // Tests run side by side: the default port would be taken by another one's worker.
        .env("METRICS_BIND", "127.0.0.1:0")
        .env("REDIS_URL", "redis://127.0.0.1:6379")
        .env("QUEUE_NAMESPACE", &app.namespace)
        .env("KAKAOPAY_API_URL", &app.sim.url)
        .env("KAKAOPAY_TIMEOUT_MS", "60000")
        .env("JOB_LEASE_SECS", "2")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let id = app.paid(payment_body("loc_1", "B-kill")).await;
    let tid = app.payment(&id).await["tid"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ledger(&app.sim, &tid).await["status"] != "SUCCESS_PAYMENT" {
        assert!(
            Instant::now() < deadline,
            "the worker process never approved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.payment(&id).await["status"],
        "approving",
        "the worker has not heard back"
    );
    Command::new("kill")
        .args(["-KILL", &worker.id().to_string()])
        .status()
        .unwrap();
    worker.wait().unwrap();

    // Another worker takes the job over once the lease runs out, asks the order inquiry
    // first, and records the approval KakaoPay already made.
    let rescue = kakaopay_worker::startup::Application::start(settings(
        &AppOptions::default(),
        &app.sim.url,
        &app.namespace,
    ))
    .await
    .unwrap();
    let payment = app.wait_status(&id, "approved").await;
    let actions = ledger(&app.sim, &tid).await["actions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        actions
            .iter()
            .filter(|a| a["payment_action_type"] == "PAYMENT")
            .count(),
        1,
        "approved once"
    );
    assert_eq!(
        stats(&app.sim).await["endpoints"]["approve"]["calls"],
        1,
        "no second approve call"
    );
    assert_eq!(payment["aid"], actions[0]["aid"]);
    rescue.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_worker_killed_mid_cancel_leaves_the_refund_succeeded_once() {
    // The API alone here; a temporary worker approves the payment, then only the worker
    // process below may take the refund.
    let app = spawn_app_with(AppOptions {
        workers: false,
        ..Default::default()
    })
    .await;
    app.connect_open_api("loc_1").await;
    let id = app.paid(payment_body("loc_1", "B-refund-kill")).await;
    let approver = kakaopay_worker::startup::Application::start(settings(
        &AppOptions::default(),
        &app.sim.url,
        &app.namespace,
    ))
    .await
    .unwrap();
    app.wait_status(&id, "approved").await;
    approver.stop().await;
    let tid = app.payment(&id).await["tid"].as_str().unwrap().to_string();

    add_fault(&app.sim, json!({"endpoint": "cancel", "fault": "commit_then_fail", "then": "timeout", "ms": 30000, "count": 1})).await;
    let mut worker = Command::new(env!("CARGO_BIN_EXE_kakaopay-worker"))
        .arg("work")
        // Tests run side by side: the default port would be taken by another one's worker.
        .env("METRICS_BIND", "127.0.0.1:0")
        .env("REDIS_URL", "redis://127.0.0.1:6379")
        .env("QUEUE_NAMESPACE", &app.namespace)
        .env("KAKAOPAY_API_URL", &app.sim.url)
        .env("KAKAOPAY_TIMEOUT_MS", "60000")
        .env("JOB_LEASE_SECS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let r = app
        .http
        .post(format!("{}/v1/payments/{id}/refunds", app.address))
        .bearer_auth(CLIENT_TOKEN)
        .header("Idempotency-Key", "kill-1")
        .json(&json!({"requested_by": "member", "canceled_at": "2026-11-01T10:00:00+09:00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let refund_id = r.json::<serde_json::Value>().await.unwrap()["refund_id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ledger(&app.sim, &tid).await["status"] != "CANCEL_PAYMENT" {
        assert!(
            Instant::now() < deadline,
            "the worker process never canceled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Command::new("kill")
        .args(["-KILL", &worker.id().to_string()])
        .status()
        .unwrap();
    worker.wait().unwrap();

    let rescue = kakaopay_worker::startup::Application::start(settings(
        &AppOptions::default(),
        &app.sim.url,
        &app.namespace,
    ))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let refund = loop {
        let (_, r) = app
            .send(
                reqwest::Method::GET,
                &format!("/v1/refunds/{refund_id}"),
                Some(CLIENT_TOKEN),
                None,
            )
            .await;
        if r["status"] == "succeeded" {
            break r;
        }
        assert!(Instant::now() < deadline, "refund never succeeded: {r}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(refund["amount"], 22000);
    let actions = ledger(&app.sim, &tid).await["actions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        actions
            .iter()
            .filter(|a| a["payment_action_type"] == "CANCEL")
            .count(),
        1,
        "refunded once"
    );
    assert_eq!(
        stats(&app.sim).await["endpoints"]["cancel"]["calls"],
        1,
        "no second cancel call"
    );
    assert_eq!(app.payment(&id).await["status"], "refunded");
    rescue.stop().await;
    app.stop().await;
}
