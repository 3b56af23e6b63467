//! The money paths under what storms never reach: every expiring key expired (months passing),
//! settings changed between two attempts, the last attempt's outcome unknown, a lease lapsing
//! mid-call, an order inquiry without the field we match on, a Redis error between the two
//! steps of a refund request. Real Redis, real processes, the simulator; each test names the
//! item of issue #15 it proves.

use crate::support::*;
use kakaopay_jobs::queue::inspect;
use kakaopay_worker::sim::{Rules, SimConfig, DEFAULT_SECRET_KEY};
use reqwest::Method;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CANCELED_AT: &str = "2027-06-01T10:00:00+09:00";

fn body(order: &str) -> Value {
    let mut b = payment_body("loc_1", order);
    b["starts_at"] = json!("2027-06-10T10:00:00+09:00");
    b
}

async fn approved(app: &TestApp, order: &str) -> String {
    let id = app.paid(body(order)).await;
    app.wait_status(&id, "approved").await;
    id
}

/// A refund request as the store keeps it: a member's, or an operator's of `amount`.
fn stored_request(amount: Option<i64>) -> kakaopay_jobs::RefundRequest {
    kakaopay_jobs::RefundRequest {
        reason: "booking_canceled".into(),
        requested_by: if amount.is_some() { "admin" } else { "member" }.into(),
        canceled_at: Some(CANCELED_AT.into()),
        context: Default::default(),
        amount,
        by_admin: amount.is_some(),
        received_at: CANCELED_AT.into(),
    }
}

async fn store(app: &TestApp) -> kakaopay_worker::store::Store {
    kakaopay_worker::store::Store::new(redis_conn().await, &app.namespace)
}

async fn redis_conn() -> Connection {
    Connection::open(
        &Topology::Server(matrix::LOCAL_REDIS.into()),
        Purpose::Shared,
        None,
    )
    .await
    .unwrap()
}

/// Months pass: every key of the namespace that carries an expiry is gone. Answers how many.
async fn expire_every_expiring_key(namespace: &str) -> usize {
    let mut conn = redis_conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{namespace}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut expired = 0;
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if ttl > 0 {
            let _: i64 = redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            expired += 1;
        }
    }
    expired
}

async fn job(app: &TestApp, queue: &str, id: &str) -> Option<inspect::JobInfo> {
    inspect::job(&redis_conn().await, &app.namespace, queue, id)
        .await
        .unwrap()
}

async fn wait_dead(app: &TestApp, queue: &str, id: &str) -> inspect::JobInfo {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(j) = job(app, queue, id).await.filter(|j| j.status == "dead") {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} never died");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn refund_of(app: &TestApp, id: &str) -> Value {
    let (status, refund) = app
        .send(
            Method::GET,
            &format!("/v1/refunds/{id}"),
            Some(CLIENT_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{refund}");
    refund
}

/// A refund request by `token`, answering the status and body as they came.
async fn admin_refund(app: &TestApp, payment: &str, key: &str, amount: i64) -> String {
    let body = json!({"requested_by": "admin", "reason": "goodwill", "amount": amount});
    let (status, answer) = app.ask_refund(payment, key, body, ADMIN_TOKEN).await;
    assert_eq!(status, 202, "{answer}");
    answer["refund_id"].as_str().unwrap().to_string()
}

/// KakaoPay's ledger and ours agree: one CANCEL per succeeded refund, the same totals.
async fn ledgers_agree(app: &TestApp, payment_id: &str) -> Value {
    let payment = app.payment(payment_id).await;
    let theirs = ledger(&app.sim, payment["tid"].as_str().unwrap()).await;
    assert_eq!(
        theirs["canceled_amount"]["total"], payment["refunded_amount"],
        "refunded: {payment} vs {theirs}"
    );
    let cancels = theirs["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["payment_action_type"] == "CANCEL")
        .count();
    let succeeded = payment["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "succeeded")
        .count();
    assert_eq!(
        cancels, succeeded,
        "one KakaoPay cancel per succeeded refund"
    );
    theirs
}

fn never_failed(refund: &Value) {
    let history = refund["history"].as_array().unwrap();
    assert!(
        history.iter().all(|h| h["to"] != "failed"),
        "recorded failed on the way: {refund}"
    );
}

// ---------------------------------------------------------------------------------------
// 1. Time passing: credentials outlive every expiry.

#[tokio::test]
async fn payments_from_before_months_passed_are_approved_and_refunded_with_their_credentials() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let early = approved(&app, "M-early").await;
    let (status, later) = app.create_payment(body("M-later")).await;
    assert_eq!(status, 201, "{later}");
    let later_id = later["payment_id"].as_str().unwrap().to_string();
    // The location moves to another merchant id: its old payments stay under the one they
    // were made with. Then months pass.
    app.connect_location(
        "loc_1",
        json!({"cid": "TCSUBSCRIP", "secret_key": DEFAULT_SECRET_KEY}),
    )
    .await;
    expire_every_expiring_key(&app.namespace).await;

    let callback = app
        .member_presses(later["tid"].as_str().unwrap(), "approve")
        .await;
    assert_eq!(app.follow(&callback).await.status(), 303);
    app.wait_status(&later_id, "approved").await;
    for (payment, key) in [(&early, "months-1"), (&later_id, "months-2")] {
        let refund = app.request_refund(payment, key, CANCELED_AT).await;
        app.wait_refund(&refund, "succeeded", Duration::from_secs(15))
            .await;
        ledgers_agree(&app, payment).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_payment_without_credentials_waits_visibly_until_its_location_is_reconnected() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let (status, created) = app.create_payment(body("M-orphan")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["payment_id"].as_str().unwrap().to_string();
    // The version it was made with is gone (as an earlier release let it expire after 30
    // days), and the location is disconnected.
    let _: i64 = redis::cmd("DEL")
        .arg(store(&app).await.integration_version_key("loc_1", 1))
        .query_async(&mut redis_conn().await)
        .await
        .unwrap();
    let (status, _) = app
        .send(
            Method::DELETE,
            "/v1/locations/loc_1/kakaopay",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let callback = app
        .member_presses(created["tid"].as_str().unwrap(), "approve")
        .await;
    assert_eq!(app.follow(&callback).await.status(), 303);

    let dead = wait_dead(&app, "approve_payment", &format!("approve:{id}")).await;
    let error = dead.last_error.unwrap_or_default();
    assert!(error.contains("reconnect"), "says what to do: {error}");
    assert_eq!(app.payment(&id).await["status"], "approving");
    // Connected again: the reconciler finishes the approval.
    app.connect_open_api("loc_1").await;
    app.wait_status(&id, "approved").await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 2. Settings changed between attempt 1 (cancel applied, answer lost) and attempt 2.

enum Change {
    AutomaticRefundsOff,
    Disconnected,
    PolicyNoRefund,
}

async fn settings_changed_between_attempts(change: Change) {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let id = approved(&app, "S-1").await;
    let tid = app.payment(&id).await["tid"].as_str().unwrap().to_string();
    // KakaoPay applies the cancel and holds the answer past our timeout; the inquiry asked
    // right after fails too.
    add_fault(
        &app.sim,
        json!([
            {"endpoint": "cancel", "fault": "commit_then_fail", "then": "timeout", "ms": 3000, "count": 1},
            {"endpoint": "order", "fault": "http500", "count": 1},
        ]),
    )
    .await;
    let refund = app.request_refund(&id, "settings-1", CANCELED_AT).await;
    until(
        "KakaoPay applied the cancel",
        Duration::from_secs(10),
        || async { ledger(&app.sim, &tid).await["canceled_amount"]["total"] == 22000 },
    )
    .await;
    let (method, patch) = match change {
        Change::AutomaticRefundsOff => (Method::PATCH, Some(json!({"automatic_refunds": false}))),
        Change::Disconnected => (Method::DELETE, None),
        Change::PolicyNoRefund => (
            Method::PATCH,
            Some(json!({"refund_policy": {"bookings": {"rule": "no_refund"}}})),
        ),
    };
    let (status, answer) = app
        .send(
            method,
            "/v1/locations/loc_1/kakaopay",
            Some(ADMIN_TOKEN),
            patch,
        )
        .await;
    assert!(status == 200 || status == 204, "{answer}");

    let r = app
        .wait_refund(&refund, "succeeded", Duration::from_secs(20))
        .await;
    assert_eq!(r["amount"], 22000, "{r}");
    assert_eq!(
        r["rule"], "min_notice_met",
        "the first decision stands: {r}"
    );
    ledgers_agree(&app, &id).await;
    assert_eq!(app.payment(&id).await["status"], "refunded");
    app.stop().await;
}

#[tokio::test]
async fn a_retried_refund_keeps_its_decision_when_automatic_refunds_are_turned_off() {
    settings_changed_between_attempts(Change::AutomaticRefundsOff).await;
}

#[tokio::test]
async fn a_retried_refund_keeps_its_decision_when_the_location_disconnects() {
    settings_changed_between_attempts(Change::Disconnected).await;
}

#[tokio::test]
async fn a_retried_refund_keeps_its_decision_when_the_policy_changes() {
    settings_changed_between_attempts(Change::PolicyNoRefund).await;
}

// ---------------------------------------------------------------------------------------
// 3 and 6. An outcome unknown on the last attempt; a dead job holding the refund lock.

/// Workers alone on the app's namespace, with `tune` applied to their settings.
async fn workers(
    app: &TestApp,
    tune: impl FnOnce(&mut kakaopay_worker::startup::Settings),
) -> kakaopay_worker::startup::Application {
    let mut s = settings(&AppOptions::default(), &app.sim.url, &app.namespace);
    s.http = None;
    tune(&mut s);
    kakaopay_worker::startup::Application::start(s)
        .await
        .unwrap()
}

/// The API alone (no workers), with loc_1 connected.
async fn api_only() -> TestApp {
    let app = spawn_app_with(AppOptions {
        workers: false,
        ..Default::default()
    })
    .await;
    app.connect_open_api("loc_1").await;
    app
}

/// A payment just created (`ready`); answers its id.
async fn ready_payment(app: &TestApp, order: &str) -> String {
    let (status, created) = app.create_payment(body(order)).await;
    assert_eq!(status, 201, "{created}");
    created["payment_id"].as_str().unwrap().to_string()
}

/// The API alone (no workers), with a payment approved by workers that are gone again.
async fn api_with_approved(order: &str) -> (TestApp, String) {
    let app = api_only().await;
    let approver = workers(&app, |_| {}).await;
    let id = approved(&app, order).await;
    approver.stop().await;
    (app, id)
}

/// Gives a waiting job `n` attempts in all (no worker has fetched it yet).
async fn attempts(app: &TestApp, queue: &str, job_id: &str, n: u32) {
    let key = format!("{{{}:{queue}}}:job:{job_id}", app.namespace);
    let _: () = redis::cmd("HSET")
        .arg(key)
        .arg("max_attempts")
        .arg(n)
        .query_async(&mut redis_conn().await)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unknown_outcome_on_the_last_attempt_is_settled_by_inquiry_never_failed() {
    let (app, id) = api_with_approved("U-1").await;
    // The only attempt: applied, the connection dropped, the inquiry after it failing.
    add_fault(
        &app.sim,
        json!([
            {"endpoint": "cancel", "fault": "commit_then_fail", "then": "drop", "count": 1},
            {"endpoint": "order", "fault": "http500", "count": 1},
        ]),
    )
    .await;
    let refund = app.request_refund(&id, "unknown-1", CANCELED_AT).await;
    let job_id = kakaopay_jobs::refunds::job_id(&refund);
    attempts(&app, "cancel_payment", &job_id, 1).await;
    let worker = workers(&app, |_| {}).await;
    wait_dead(&app, "cancel_payment", &job_id).await;
    let r = refund_of(&app, &refund).await;
    assert!(
        r["status"] == "processing" || r["status"] == "succeeded",
        "never failed while unknown: {r}"
    );
    // The reconciler asks KakaoPay and records what it did.
    let r = app
        .wait_refund(&refund, "succeeded", Duration::from_secs(20))
        .await;
    never_failed(&r);
    ledgers_agree(&app, &id).await;
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_refund_whose_job_died_holding_the_lock_is_settled_and_the_next_one_runs() {
    let (app, id) = api_with_approved("L-1").await;
    // The cancel fails unapplied, and every inquiry the job makes fails: the job dies with
    // the refund processing, holding the payment's refund lock.
    add_fault(
        &app.sim,
        json!([
            {"endpoint": "cancel", "fault": "http500", "count": 1},
            {"endpoint": "order", "fault": "http500", "count": 2},
        ]),
    )
    .await;
    let first = admin_refund(&app, &id, "lock-1", 5000).await;
    let first_job = kakaopay_jobs::refunds::job_id(&first);
    attempts(&app, "cancel_payment", &first_job, 2).await;
    let worker = workers(&app, |_| {}).await;
    wait_dead(&app, "cancel_payment", &first_job).await;
    let second = app.request_refund(&id, "lock-2", CANCELED_AT).await;
    // KakaoPay shows no cancel of the first: it failed, provably. The second takes the lock.
    let r = app
        .wait_refund(&first, "failed", Duration::from_secs(20))
        .await;
    assert_eq!(r["failure"]["reason"], "gave_up", "{r}");
    let r = app
        .wait_refund(&second, "succeeded", Duration::from_secs(20))
        .await;
    assert_eq!(r["amount"], 22000, "{r}");
    ledgers_agree(&app, &id).await;
    worker.stop().await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 7. An order inquiry without payloads.

#[tokio::test]
async fn without_payloads_in_the_inquiry_an_applied_cancel_is_found_by_its_amounts() {
    let app = spawn_app_with(AppOptions {
        sim: SimConfig {
            rules: Rules {
                inquiry_payload: false,
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    app.connect_open_api("loc_1").await;
    let id = approved(&app, "P-1").await;
    add_fault(
        &app.sim,
        json!({"endpoint": "cancel", "fault": "commit_then_fail", "then": "500", "count": 1}),
    )
    .await;
    let partial = admin_refund(&app, &id, "payload-1", 5000).await;
    let r = app
        .wait_refund(&partial, "succeeded", Duration::from_secs(15))
        .await;
    never_failed(&r);
    assert_eq!(r["amount"], 5000);
    let rest = app.request_refund(&id, "payload-2", CANCELED_AT).await;
    let r = app
        .wait_refund(&rest, "succeeded", Duration::from_secs(15))
        .await;
    assert_eq!(r["amount"], 17000);
    ledgers_agree(&app, &id).await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 8. A lease lapsing mid-call: two runs of one refund.

#[tokio::test]
async fn a_refund_taken_over_after_a_lease_lapse_is_canceled_once_and_recorded_succeeded() {
    let app = api_only().await;
    let rescuer_options = AppOptions {
        kakaopay_timeout: Duration::from_secs(6),
        ..Default::default()
    };
    let approver = kakaopay_worker::startup::Application::start(settings(
        &rescuer_options,
        &app.sim.url,
        &app.namespace,
    ))
    .await
    .unwrap();
    let id = approved(&app, "Z-1").await;
    approver.stop().await;

    // KakaoPay takes 4 s over each cancel. The first worker sends one, then stalls (SIGSTOP)
    // with it in flight: its lease lapses and another worker takes the job over.
    add_fault(
        &app.sim,
        json!({"endpoint": "cancel", "fault": "latency", "ms": 4000, "count": 2}),
    )
    .await;
    let mut first = work_process(&app, "6000");
    let refund = app.request_refund(&id, "lapse-1", CANCELED_AT).await;
    until(
        "the first worker sent the cancel",
        Duration::from_secs(15),
        || async { stats(&app.sim).await["endpoints"]["cancel"]["calls"] == 1 },
    )
    .await;
    let sent = Instant::now();
    signal(&first, "-STOP");
    let rescuer = kakaopay_worker::startup::Application::start(settings(
        &rescuer_options,
        &app.sim.url,
        &app.namespace,
    ))
    .await
    .unwrap();
    // The first worker wakes once its own call would have ended (or the refund is settled).
    let wake = sent + Duration::from_millis(7000);
    until(
        "the refund is settled or the stall is over",
        Duration::from_secs(10),
        || async {
            Instant::now() >= wake
                || !matches!(
                    refund_of(&app, &refund).await["status"].as_str(),
                    Some("queued" | "processing")
                )
        },
    )
    .await;
    signal(&first, "-CONT");

    let r = app
        .wait_refund(&refund, "succeeded", Duration::from_secs(20))
        .await;
    never_failed(&r);
    assert_eq!(app.payment(&id).await["status"], "refunded");
    let theirs = ledgers_agree(&app, &id).await;
    assert_eq!(theirs["canceled_amount"]["total"], 22000);
    assert_eq!(
        stats(&app.sim).await["endpoints"]["cancel"]["calls"],
        1,
        "the second run never sent a cancel while the first one's could be in flight"
    );
    let _ = first.kill();
    first.wait().unwrap();
    rescuer.stop().await;
    app.stop().await;
}

/// A `kakaopay-worker work` process on the app's namespace, with a 2 s lease and KakaoPay
/// calls of at most `timeout_ms`.
fn work_process(app: &TestApp, timeout_ms: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_kakaopay-worker"))
        .arg("work")
        // Tests run side by side: the default port would be taken by another one's worker.
        .env("METRICS_BIND", "127.0.0.1:0")
        .env("REDIS_URL", "redis://127.0.0.1:6379")
        .env("QUEUE_NAMESPACE", &app.namespace)
        .env("KAKAOPAY_API_URL", &app.sim.url)
        .env("KAKAOPAY_TIMEOUT_MS", timeout_ms)
        .env("KAKAOPAY_CONNECT_TIMEOUT_MS", "500")
        .env("JOB_LEASE_SECS", "2")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn signal(child: &std::process::Child, sig: &str) {
    Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
}

#[tokio::test]
async fn an_approval_taken_over_after_a_lease_lapse_waits_for_the_first_call_never_fails_it() {
    let app = api_only().await;
    // KakaoPay takes 4 s over the first approval; a second one it would refuse outright.
    add_fault(
        &app.sim,
        json!([
            {"endpoint": "approve", "fault": "latency", "ms": 4000, "count": 1},
            {"endpoint": "approve", "fault": "error", "code": -799, "count": 1},
        ]),
    )
    .await;
    let mut first = work_process(&app, "5000");
    let id = app.paid(body("Z-2")).await;
    let tid = app.payment(&id).await["tid"].as_str().unwrap().to_string();
    until(
        "the first worker sent the approval",
        Duration::from_secs(15),
        || async { stats(&app.sim).await["endpoints"]["approve"]["calls"] == 1 },
    )
    .await;
    // It stalls with the call in flight; its lease lapses and another worker takes over.
    signal(&first, "-STOP");
    let rescuer = kakaopay_worker::startup::Application::start(settings(
        &AppOptions {
            kakaopay_timeout: Duration::from_secs(6),
            ..Default::default()
        },
        &app.sim.url,
        &app.namespace,
    ))
    .await
    .unwrap();
    // KakaoPay applies the stalled worker's approval, and that worker never wakes up.
    until(
        "KakaoPay applied the first approval",
        Duration::from_secs(10),
        || async { ledger(&app.sim, &tid).await["status"] == "SUCCESS_PAYMENT" },
    )
    .await;
    signal(&first, "-KILL");
    first.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(25);
    let payment = loop {
        let p = app.payment(&id).await;
        assert_ne!(
            p["status"], "failed",
            "recorded failed while KakaoPay approved it: {p}"
        );
        if p["status"] == "approved" {
            break p;
        }
        assert!(Instant::now() < deadline, "never approved: {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(payment["amount"]["total"], 22000);
    assert_eq!(
        stats(&app.sim).await["endpoints"]["approve"]["calls"],
        1,
        "no second approval while the first could be in flight"
    );
    rescuer.stop().await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 9. An approval run again after an operator's retry (its attempts reset).

#[tokio::test]
async fn an_approval_rerun_after_an_operators_retry_asks_kakaopay_before_recording_a_failure() {
    let app = api_only().await;
    // The approval is applied but answered 500; run again, KakaoPay refuses the duplicate
    // with an error that is not "already approved".
    add_fault(
        &app.sim,
        json!([
            {"endpoint": "approve", "fault": "commit_then_fail", "then": "500", "count": 1},
            {"endpoint": "approve", "fault": "error", "code": -799, "count": 1},
        ]),
    )
    .await;
    let id = app.paid(body("A-1")).await;
    let job_id = format!("approve:{id}");
    attempts(&app, "approve_payment", &job_id, 1).await;
    let worker = workers(&app, |s| {
        // Only the operator acts here.
        s.workers.as_mut().unwrap().reconciler.approving_grace = Duration::from_secs(600);
    })
    .await;
    wait_dead(&app, "approve_payment", &job_id).await;
    let (status, answer) = app
        .send(
            Method::POST,
            &format!("/v1/queues/approve_payment/jobs/{job_id}/retry"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let payment = app.wait_status(&id, "approved").await;
    assert!(
        payment["history"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["to"] != "failed"),
        "{payment}"
    );
    let tid = payment["tid"].as_str().unwrap();
    let payments = ledger(&app.sim, tid).await["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["payment_action_type"] == "PAYMENT")
        .count();
    assert_eq!(payments, 1, "approved once");
    worker.stop().await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 10. A Redis error between the two steps of a refund request.

#[tokio::test]
async fn a_refund_request_that_is_not_answered_2xx_is_never_paid() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let id = approved(&app, "R-1").await;
    let key = "not-stored-1";
    // The refund cannot be stored: a key of the wrong type stands where the payment's list
    // of refunds goes (what the request reads first is untouched).
    let refund_key = store(&app).await.payment_refunds_key(&id);
    let mut conn = redis_conn().await;
    let _: () = redis::cmd("SET")
        .arg(&refund_key)
        .arg("in the way")
        .query_async(&mut conn)
        .await
        .unwrap();
    let member =
        json!({"requested_by": "member", "reason": "booking_canceled", "canceled_at": CANCELED_AT});
    let (status, answer) = app.ask_refund(&id, key, member, CLIENT_TOKEN).await;
    assert!(status >= 500, "not accepted: {status} {answer}");
    let _: i64 = redis::cmd("DEL")
        .arg(&refund_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Nothing was enqueued for it, so nothing will ever pay it.
    let refund_id = kakaopay_jobs::refunds::refund_id(&id, key);
    let queued = job(
        &app,
        "cancel_payment",
        &kakaopay_jobs::refunds::job_id(&refund_id),
    )
    .await;
    assert!(
        queued.is_none(),
        "a job for an unanswered refund: {queued:?}"
    );
    assert_eq!(app.payment(&id).await["refunded_amount"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_refund_stored_but_not_enqueued_is_accepted_and_its_job_enqueued_by_the_reconciler() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let id = approved(&app, "R-2").await;
    let key = "not-enqueued-1";
    let refund_id = kakaopay_jobs::refunds::refund_id(&id, key);
    // The job's record cannot be written.
    let job_key = format!(
        "{{{}:cancel_payment}}:job:{}",
        app.namespace,
        kakaopay_jobs::refunds::job_id(&refund_id)
    );
    let mut conn = redis_conn().await;
    let _: () = redis::cmd("SET")
        .arg(&job_key)
        .arg("in the way")
        .query_async(&mut conn)
        .await
        .unwrap();
    let member =
        json!({"requested_by": "member", "reason": "booking_canceled", "canceled_at": CANCELED_AT});
    let (status, answer) = app.ask_refund(&id, key, member, CLIENT_TOKEN).await;
    assert_eq!(status, 202, "the refund is stored: {answer}");
    let _: i64 = redis::cmd("DEL")
        .arg(&job_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    app.wait_refund(&refund_id, "succeeded", Duration::from_secs(20))
        .await;
    ledgers_agree(&app, &id).await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 5. The reconciler's walk gets past entries it cannot settle.

#[tokio::test]
async fn the_reconciler_reaches_a_paid_payment_behind_many_it_cannot_settle() {
    let app = spawn_app_with(AppOptions {
        ready_window: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    app.connect_open_api("loc_1").await;
    let (status, created) = app.create_payment(body("W-real")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["payment_id"].as_str().unwrap().to_string();
    // 150 ready payments whose KakaoPay tid is unknown, so that every inquiry fails, all
    // made in the same millisecond as the real one and listed before it.
    let mut conn = redis_conn().await;
    let store = store(&app).await;
    let shard = kakaopay_worker::store::Shard::of_id(&id);
    let ready = store.status_index_key(shard, kakaopay_worker::domain::PaymentStatus::Ready);
    let doc: String = redis::cmd("HGET")
        .arg(store.payment_key(&id))
        .arg("doc")
        .query_async(&mut conn)
        .await
        .unwrap();
    let made: i64 = redis::cmd("ZSCORE")
        .arg(&ready)
        .arg(&id)
        .query_async(&mut conn)
        .await
        .unwrap();
    // In the real one's shard: the ids start with its shard's two characters.
    let fake_id = |rest: &str| format!("{}{rest}", &id[..6]);
    for n in 0..150 {
        let fake = fake_id(&format!("!{n:021}"));
        let mut d: Value = serde_json::from_str(&doc).unwrap();
        d["payment_id"] = json!(fake);
        d["tid"] = json!(format!("T{n:019x}"));
        let _: () = redis::pipe()
            .hset_multiple(
                store.payment_key(&fake),
                &[("doc", d.to_string()), ("status", "ready".into())],
            )
            .zadd(&ready, &fake, made)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // And one that cannot even be read.
    let corrupt = fake_id("!!corrupt");
    let _: () = redis::pipe()
        .hset(store.payment_key(&corrupt), "doc", "not json")
        .zadd(&ready, &corrupt, made)
        .query_async(&mut conn)
        .await
        .unwrap();
    // The member pays at KakaoPay; our callback never arrives.
    let tid = created["tid"].as_str().unwrap();
    let pg_token = authorize(&app.sim, tid).await;
    let kp = client(&app.sim);
    let approve = kakaopay_worker::kakaopay::ApproveRequest {
        cid: cid(),
        tid: kakaopay_worker::domain::Tid::parse(tid).unwrap(),
        partner_order_id: kakaopay_worker::domain::OrderId::parse("W-real").unwrap(),
        partner_user_id: kakaopay_worker::domain::UserId::parse("member_42").unwrap(),
        pg_token,
        payload: None,
        total_amount: None,
    };
    kp.approve(&open_creds(), &approve).await.unwrap();
    app.wait_status(&id, "approved").await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// 4. An explicit VAT is shared out across refunds.

#[tokio::test]
async fn refunds_of_a_payment_with_an_explicit_vat_send_their_share_of_it() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let mut b = body("V-1");
    b["vat_amount"] = json!(1000);
    let id = app.paid(b).await;
    app.wait_status(&id, "approved").await;
    let half = admin_refund(&app, &id, "vat-1", 11000).await;
    app.wait_refund(&half, "succeeded", Duration::from_secs(15))
        .await;
    let tid = app.payment(&id).await["tid"].as_str().unwrap().to_string();
    // Half the payment, half its VAT (KakaoPay's default would be 11000 / 11 = 1000).
    assert_eq!(ledger(&app.sim, &tid).await["canceled_amount"]["vat"], 500);
    let rest = app.request_refund(&id, "vat-2", CANCELED_AT).await;
    app.wait_refund(&rest, "succeeded", Duration::from_secs(15))
        .await;
    let theirs = ledgers_agree(&app, &id).await;
    assert_eq!(theirs["canceled_amount"]["vat"], 1000);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Records an earlier release left behind (items 1, 2 and 6 for data already in Redis).

#[tokio::test]
async fn refunds_an_earlier_release_left_processing_are_settled_as_kakaopay_shows() {
    let (app, first) = api_with_approved("O-1").await;
    let approver = workers(&app, |_| {}).await;
    let second = approved(&app, "O-2").await;
    approver.stop().await;
    let mut conn = redis_conn().await;
    let store = kakaopay_worker::store::Store::new(conn.clone(), &app.namespace);
    let kp = client(&app.sim);
    let mut refunds = Vec::new();
    for (payment, key, with_job) in [(&first, "old-1", false), (&second, "old-2", true)] {
        let refund_id = kakaopay_jobs::refunds::refund_id(payment, key);
        if with_job {
            assert_eq!(
                app.request_refund(payment, key, CANCELED_AT).await,
                refund_id
            );
        } else {
            store
                .create_refund(
                    &refund_id.as_str().try_into().unwrap(),
                    &payment.as_str().try_into().unwrap(),
                    "loc_1",
                    key,
                    &stored_request(None),
                    "http",
                )
                .await
                .unwrap();
        }
        // The earlier release's worker took it (amount and rule written, the payment's lock
        // held, no decision recorded), sent the cancel, and KakaoPay applied it; the answer
        // was lost with the process.
        let _: () = redis::pipe()
            .hset_multiple(
                store.refund_key(&refund_id),
                &[
                    ("status", "processing"),
                    ("amount", "22000"),
                    ("tax_free_amount", "0"),
                    ("rule", "min_notice_met"),
                ],
            )
            .hset(store.payment_key(payment), "refund_lock", &refund_id)
            .query_async(&mut conn)
            .await
            .unwrap();
        let tid = app.payment(payment).await["tid"]
            .as_str()
            .unwrap()
            .to_string();
        let cancel = kakaopay_worker::kakaopay::CancelRequest {
            cid: cid(),
            tid: kakaopay_worker::domain::Tid::parse(tid).unwrap(),
            cancel_amount: won(22000),
            cancel_tax_free_amount: won(0),
            cancel_vat_amount: None,
            cancel_available_amount: Some(won(22000)),
            payload: Some(kakaopay_worker::domain::Payload::parse(refund_id.clone()).unwrap()),
        };
        kp.cancel(&open_creds(), &cancel).await.unwrap();
        refunds.push(refund_id);
    }
    // Automatic refunds are off by now, so deciding again would leave both to a person.
    let (status, answer) = app
        .send(
            Method::PATCH,
            "/v1/locations/loc_1/kakaopay",
            Some(ADMIN_TOKEN),
            Some(json!({"automatic_refunds": false})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");

    // This release starts on them.
    let worker = workers(&app, |_| {}).await;
    for (refund, payment) in refunds.iter().zip([&first, &second]) {
        let r = app
            .wait_refund(refund, "succeeded", Duration::from_secs(20))
            .await;
        assert_eq!(r["amount"], 22000, "{r}");
        ledgers_agree(&app, payment).await;
    }
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_failed_refund_is_reopened_only_by_proof_of_its_own_cancel() {
    let (app, id) = api_with_approved("F-1").await;
    let store = kakaopay_worker::store::Store::new(redis_conn().await, &app.namespace);
    let refund = kakaopay_jobs::refunds::refund_id(&id, "reopen-1");
    store
        .create_refund(
            &refund.as_str().try_into().unwrap(),
            &id.as_str().try_into().unwrap(),
            "loc_1",
            "reopen-1",
            &stored_request(Some(5000)),
            "job",
        )
        .await
        .unwrap();
    let failed = store
        .finish_refund(
            &id,
            &refund,
            "",
            None,
            kakaopay_worker::domain::RefundStatus::Failed,
            "admin_amount",
            None,
            "KakaoPay refused it",
        )
        .await
        .unwrap();
    assert_eq!(failed, kakaopay_worker::store::Recorded::Applied);
    let paid = |by_amounts| kakaopay_worker::store::Paid {
        amount: 5000,
        tax_free: 0,
        vat: 0,
        aid: "A1234567890123456789".into(),
        by_amounts,
    };
    // Amounts alone could be another refund of the same size: not proof enough to reopen.
    let by_amounts = store
        .succeed_refund(&id, &refund, &paid(true), 22000, "amounts fit")
        .await
        .unwrap();
    assert!(
        matches!(by_amounts, kakaopay_worker::store::Success::Contradicted(_)),
        "{by_amounts:?}"
    );
    assert_eq!(app.payment(&id).await["refunded_amount"], 0);
    // Its own payload (or KakaoPay's answer to its call) is.
    let proven = store
        .succeed_refund(&id, &refund, &paid(false), 22000, "payload found")
        .await
        .unwrap();
    assert_eq!(proven, kakaopay_worker::store::Success::Recorded);
    let r = refund_of(&app, &refund).await;
    assert_eq!(r["status"], "succeeded");
    assert!(r["failure"].is_null(), "the failure no longer stands: {r}");
    assert_eq!(app.payment(&id).await["refunded_amount"], 5000);
    app.stop().await;
}

#[tokio::test]
async fn a_run_waiting_for_an_earlier_approval_call_never_erases_its_mark() {
    let app = api_only().await;
    let id = &ready_payment(&app, "D-1").await;
    let store = kakaopay_worker::store::Store::new(redis_conn().await, &app.namespace);
    let window = Duration::from_secs(60);
    let first = store
        .payment_for_approval(id, window)
        .await
        .unwrap()
        .unwrap();
    assert!(first.earlier_in_flight.is_zero());
    // A second run finds the first one's calls possibly in flight, fails before it sends
    // anything, and says its calls came back: the first one's mark must stand.
    let second = store
        .payment_for_approval(id, window)
        .await
        .unwrap()
        .unwrap();
    assert!(second.earlier_in_flight > Duration::from_secs(50));
    store.approval_calls_ended(&second).await.unwrap();
    let third = store
        .payment_for_approval(id, window)
        .await
        .unwrap()
        .unwrap();
    assert!(
        third.earlier_in_flight > Duration::from_secs(50),
        "the first run's call is still to be waited for: {:?}",
        third.earlier_in_flight
    );
    // The first run's calls come back: nothing is left to wait for.
    store.approval_calls_ended(&first).await.unwrap();
    let fourth = store
        .payment_for_approval(id, window)
        .await
        .unwrap()
        .unwrap();
    assert!(fourth.earlier_in_flight.is_zero());
    app.stop().await;
}

#[tokio::test]
async fn an_approval_proven_after_a_failure_clears_the_failure() {
    let app = api_only().await;
    let id = &ready_payment(&app, "C-1").await;
    let store = kakaopay_worker::store::Store::new(redis_conn().await, &app.namespace);
    use kakaopay_worker::domain::PaymentStatus::{Approved, Failed, Ready};
    use kakaopay_worker::store::{Approval, Failure, Transition};
    let mut failed = Transition::new(&[Ready], Failed, "KakaoPay refused it");
    failed.failure = Some(Failure {
        reason: "kakaopay_error".into(),
        kakaopay_code: Some(-799),
        message: "refused".into(),
    });
    store.transition(id, failed).await.unwrap();
    let mut approved = Transition::new(&[Failed], Approved, "the order inquiry shows it paid");
    approved.approval = Some(Approval {
        aid: Some(kakaopay_worker::domain::Aid::parse("A1234567890123456789").unwrap()),
        payment_method_type: Some("CARD".into()),
        amount: kakaopay_worker::kakaopay::Amount {
            total: 22000,
            ..Default::default()
        },
        approved_at: None,
    });
    store.transition(id, approved).await.unwrap();
    let p = app.payment(id).await;
    assert_eq!(p["status"], "approved");
    assert!(p["failure"].is_null(), "the failure no longer stands: {p}");
    app.stop().await;
}

#[tokio::test]
async fn a_refund_waiting_behind_a_lock_that_cannot_be_settled_is_not_revived_to_spin_on_it() {
    let (app, id) = api_with_approved("K-1").await;
    let mut conn = redis_conn().await;
    let store = kakaopay_worker::store::Store::new(conn.clone(), &app.namespace);
    let holder = kakaopay_jobs::refunds::refund_id(&id, "holder");
    let waiting = kakaopay_jobs::refunds::refund_id(&id, "waiting");
    for (refund, key, amount) in [(&holder, "holder", 5000), (&waiting, "waiting", 1000)] {
        store
            .create_refund(
                &refund.as_str().try_into().unwrap(),
                &id.as_str().try_into().unwrap(),
                "loc_1",
                key,
                &stored_request(Some(amount)),
                "job",
            )
            .await
            .unwrap();
    }
    // The holder took the lock and sent its cancel, its job is gone, and KakaoPay shows a
    // cancel of another amount by someone else: the reconciler cannot tell what happened.
    let decided = json!({"amount": 5000, "tax_free": 0, "rule": "admin_amount", "available": 22000, "refunded_before": 0});
    let _: () = redis::pipe()
        .hset_multiple(
            store.refund_key(&holder),
            &[
                ("status", "processing".to_string()),
                ("decided", decided.to_string()),
            ],
        )
        .hset(store.payment_key(&id), "refund_lock", &holder)
        .query_async(&mut conn)
        .await
        .unwrap();
    let tid = app.payment(&id).await["tid"].as_str().unwrap().to_string();
    let dashboard = kakaopay_worker::kakaopay::CancelRequest {
        cid: cid(),
        tid: kakaopay_worker::domain::Tid::parse(tid).unwrap(),
        cancel_amount: won(3000),
        cancel_tax_free_amount: won(0),
        cancel_vat_amount: None,
        cancel_available_amount: None,
        payload: Some(kakaopay_worker::domain::Payload::parse("dashboard").unwrap()),
    };
    client(&app.sim)
        .cancel(&open_creds(), &dashboard)
        .await
        .unwrap();

    let worker = workers(&app, |_| {}).await;
    let unsettled = format!(
        "reconciler_unsettled_total{{namespace=\"{}\",subject=\"refund\",reason=\"unclear\"}}",
        app.namespace
    );
    until(
        "two rounds found the holder unclear",
        Duration::from_secs(20),
        || async {
            let text = app
                .http
                .get(format!("{}/metrics", app.address))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .find(|l| l.starts_with(&unsettled))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|n| n >= 2.0)
        },
    )
    .await;
    // The waiting refund was left alone: no job to wait 60 s on the lock and die, again and
    // again. The holder still holds it, for an operator.
    let waiting_job = job(
        &app,
        "cancel_payment",
        &kakaopay_jobs::refunds::job_id(&waiting),
    )
    .await;
    assert!(waiting_job.is_none(), "{waiting_job:?}");
    assert_eq!(refund_of(&app, &holder).await["status"], "processing");
    assert_eq!(refund_of(&app, &waiting).await["status"], "queued");
    worker.stop().await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// The key layout changed (shards): records of the earlier one are moved as a process starts.

/// The earlier layout never ran on a cluster: finding it there is refused, not guessed at.
#[tokio::test]
async fn a_cluster_holding_the_earlier_key_layout_is_refused_at_start() {
    let namespace = format!("test-{:016x}", rand::random::<u64>());
    let cluster = Topology::Cluster(crate::support::topology::shared_cluster().urls());
    let conn = Connection::open(&cluster, Purpose::Shared, None)
        .await
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(format!("{namespace}:payments:ready"))
        .arg(1)
        .arg("pay_fromtheearlierlayout0000")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    let sim = spawn_sim().await;
    let options = AppOptions {
        redis: cluster,
        ..Default::default()
    };
    let refused =
        kakaopay_worker::startup::Application::start(settings(&options, &sim.url, &namespace))
            .await;
    let error = refused.err().expect("refused").to_string();
    assert!(
        error.contains("earlier key layout") && error.contains(&namespace),
        "{error}"
    );
}

/// Every key of the namespace put back where the layout before shards kept it
/// (`{ns:pNN}:payment:ID` → `ns:payment:ID`, the shards' indexes merged into one each,
/// `{ns:loc:L}:integration` → `ns:loc:L:integration`), and the earlier release's marker set.
async fn back_to_the_earlier_layout(namespace: &str) {
    let mut conn = redis_conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{namespace}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    for key in keys {
        let (tag, rest) = key.split_once("}:").unwrap();
        let earlier = match tag.strip_prefix(&format!("{{{namespace}:")).unwrap() {
            location if location.starts_with("loc:") => format!("{namespace}:{location}:{rest}"),
            _ if rest == "barrier" => continue,
            shard if shard.starts_with('p') && shard[1..].parse::<u16>().is_ok() => {
                format!("{namespace}:{rest}")
            }
            // A queue: the earlier layout kept it as it is.
            _ => continue,
        };
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if kind == "zset" {
            let _: i64 = redis::cmd("ZUNIONSTORE")
                .arg(&earlier)
                .arg(2)
                .arg(&earlier)
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            let _: i64 = redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
        } else {
            let _: () = redis::cmd("RENAME")
                .arg(&key)
                .arg(&earlier)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
    let _: () = redis::cmd("SET")
        .arg(format!(
            "{namespace}:migrated:open-refunds-and-persistent-versions"
        ))
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// A refund as the earlier release named it: `rf_` and 24 hex digits of its request, with
/// no shard in them.
async fn with_its_earlier_id(namespace: &str, payment: &str, refund: &str, key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{payment}\n{key}").as_bytes());
    let earlier: String = format!("rf_{}", &hex::encode(digest)[..24]);
    let mut conn = redis_conn().await;
    let record = format!("{namespace}:refund:{refund}");
    let mut doc: Value = serde_json::from_str(
        &redis::cmd("HGET")
            .arg(&record)
            .arg("doc")
            .query_async::<String>(&mut conn)
            .await
            .unwrap(),
    )
    .unwrap();
    doc["refund_id"] = json!(earlier);
    let _: () = redis::pipe()
        .rename(&record, format!("{namespace}:refund:{earlier}"))
        .rename(
            format!("{record}:history"),
            format!("{namespace}:refund:{earlier}:history"),
        )
        .hset(
            format!("{namespace}:refund:{earlier}"),
            "doc",
            doc.to_string(),
        )
        .lrem(format!("{namespace}:payment:{payment}:refunds"), 0, refund)
        .rpush(format!("{namespace}:payment:{payment}:refunds"), &earlier)
        .zrem(format!("{namespace}:loc:loc_1:refunds"), refund)
        .zadd(format!("{namespace}:loc:loc_1:refunds"), &earlier, 1)
        .query_async(&mut conn)
        .await
        .unwrap();
    earlier
}

#[tokio::test]
async fn records_of_the_earlier_key_layout_are_moved_and_answered_as_before() {
    earlier_layout_moved_at_start(false).await;
}

/// A process died midway through moving them (the indexes it looks for already moved, most
/// records not): the next one to start finishes the move before it serves.
#[tokio::test]
async fn a_migration_cut_off_midway_is_finished_by_the_next_start() {
    earlier_layout_moved_at_start(true).await;
}

async fn earlier_layout_moved_at_start(cut_off_midway: bool) {
    let mut app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let paid = approved(&app, "L-paid").await;
    let refund_new = app.request_refund(&paid, "legacy-key", CANCELED_AT).await;
    app.wait_refund(&refund_new, "succeeded", Duration::from_secs(15))
        .await;
    let (status, ready) = app.create_payment(body("L-ready")).await;
    assert_eq!(status, 201, "{ready}");
    app.app.take().unwrap().stop().await;

    back_to_the_earlier_layout(&app.namespace).await;
    let refund = with_its_earlier_id(&app.namespace, &paid, &refund_new, "legacy-key").await;
    if cut_off_midway {
        let ns = &app.namespace;
        let _: () = redis::pipe()
            .set(format!("{ns}:migration:shard-layout"), "running")
            .del(format!("{ns}:payments:ready"))
            .del(format!("{ns}:payments:approving"))
            .del(format!("{ns}:refunds:open"))
            .del(format!(
                "{ns}:migrated:open-refunds-and-persistent-versions"
            ))
            .query_async(&mut redis_conn().await)
            .await
            .unwrap();
    }

    // This release starts on them.
    let settings = settings(&AppOptions::default(), &app.sim.url, &app.namespace);
    let started = kakaopay_worker::startup::Application::start(settings)
        .await
        .unwrap();
    app.address = format!("http://{}", started.address.unwrap());
    app.app = Some(started);
    assert!(!store(&app).await.holds_earlier_layout().await.unwrap());

    let payment = app.payment(&paid).await;
    assert_eq!(payment["status"], "refunded", "{payment}");
    assert_eq!(
        payment["refunds"][0]["refund_id"],
        refund.as_str(),
        "{payment}"
    );
    let r = app
        .wait_refund(&refund, "succeeded", Duration::from_secs(5))
        .await;
    assert_eq!(r["amount"], 22000, "{r}");
    // The same refund request again is that refund, not a second one.
    let member =
        json!({"requested_by": "member", "reason": "booking_canceled", "canceled_at": CANCELED_AT});
    let (status, again) = app
        .ask_refund(&paid, "legacy-key", member, CLIENT_TOKEN)
        .await;
    assert!(status == 200 || status == 202, "{status} {again}");
    assert_eq!(again["refund_id"], refund.as_str(), "{again}");
    ledgers_agree(&app, &paid).await;
    // The same payment request again is that payment, not a second one.
    let (status, repeat) = app.create_payment(body("L-ready")).await;
    assert_eq!(status, 200, "{repeat}");
    assert_eq!(repeat["payment_id"], ready["payment_id"]);
    app.stop().await;
}

/// Payments are stored with their location in a field of its own, which a refund request reads
/// instead of the payment's document. A payment stored by an earlier release, without that
/// field, still has its refunds filed under its location (the transactions report's index).
#[tokio::test]
async fn a_refund_is_filed_under_its_payments_location_with_or_without_its_field() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let store = store(&app).await;
    let mut conn = redis_conn().await;
    for (order, earlier) in [("F-field", false), ("F-earlier", true)] {
        let id = approved(&app, order).await;
        let key = store.payment_key(&id);
        let field: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("location_id")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(field.as_deref(), Some("loc_1"), "stored with the payment");
        if earlier {
            let _: () = redis::cmd("HDEL")
                .arg(&key)
                .arg("location_id")
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        let asked = json!({"requested_by": "admin", "amount": 1000});
        let (status, answer) = app
            .ask_refund(&id, &format!("{order}-1"), asked, ADMIN_TOKEN)
            .await;
        assert_eq!(status, 202, "{answer}");
        let refund = answer["refund_id"].as_str().unwrap();
        app.wait_refund(refund, "succeeded", Duration::from_secs(10))
            .await;
    }
    let (status, rows) = app
        .send(
            Method::GET,
            "/v1/transactions?location_id=loc_1",
            Some(CLIENT_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rows}");
    let refunds: Vec<_> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "refund")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(refunds.len(), 2, "{rows}");
    assert!(refunds.contains(&"F-earlier"), "{rows}");
    app.stop().await;
}

/// A refund request reads only the fields it decides on, not the payment's document: a record
/// that has lost its document or its status is still broken to it, answered 503 with nothing
/// stored (a refund accepted for it could never be decided, and would hold its payment's
/// refund lock for good), never taken for a payment that does not exist.
#[tokio::test]
async fn a_refund_request_for_a_record_without_its_doc_or_status_stores_nothing() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let store = store(&app).await;
    let mut conn = redis_conn().await;
    for (order, field) in [("N-doc", "doc"), ("N-status", "status")] {
        let id = approved(&app, order).await;
        let _: () = redis::cmd("HDEL")
            .arg(store.payment_key(&id))
            .arg(field)
            .query_async(&mut conn)
            .await
            .unwrap();
        let key = format!("{order}-1");
        let asked = json!({"requested_by": "admin", "amount": 1000});
        let (status, answer) = app.ask_refund(&id, &key, asked, ADMIN_TOKEN).await;
        assert_eq!(status, 503, "without its {field}: {answer}");
        assert_eq!(answer["error"]["code"], "unavailable", "{answer}");
        let refund = kakaopay_jobs::refunds::refund_id(&id, &key);
        let (status, _) = app
            .send(
                Method::GET,
                &format!("/v1/refunds/{refund}"),
                Some(CLIENT_TOKEN),
                None,
            )
            .await;
        assert_eq!(status, 404, "nothing stored without its {field}");
    }
    app.stop().await;
}

/// A refund request's one step (`REQUEST` in `store::refunds`, one server and Sentinel) takes
/// only what the two-step path, reading the payment and applying `refunds::refundable`, would
/// take too; anything else it leaves to that path. Payment records are varied one field at a
/// time and at random around a real approved one, and asked for all, part or too much.
#[tokio::test]
async fn the_one_step_refund_request_takes_only_what_the_rule_allows() {
    use kakaopay_worker::domain::{IdempotencyKey, PaymentId, RefundId};
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let real = approved(&app, "G-real").await;
    let store = store(&app).await;
    let mut conn = redis_conn().await;
    let template: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(store.payment_key(&real))
        .query_async(&mut conn)
        .await
        .unwrap();
    let namespace = app.namespace.clone();
    // No workers from here on: the records below are the store's alone.
    app.stop().await;
    let producer = kakaopay_jobs::queue::Producer::new(conn.clone(), namespace.as_str());
    let long = |n: usize| "x".repeat(n);
    let (x100, x101) = (long(100), long(101));
    let values: Vec<(&str, Vec<Option<&str>>)> = vec![
        (
            "status",
            vec![
                Some("approved"),
                Some("partially_refunded"),
                Some("refunded"),
                Some("ready"),
                Some("approving"),
                Some("canceled"),
                Some("junk"),
                None,
            ],
        ),
        (
            "approval",
            vec![
                Some("keep"),
                Some(""),
                None,
                Some("{"),
                Some(r#"{"amount":{}}"#),
                Some(r#"{"amount":{"total":"22000"}}"#),
                Some(r#"{"amount":{"total":22000.5}}"#),
                Some(r#"{"amount":{"total":22000,"tax_free":"x"}}"#),
                Some(r#"{"amount":{"total":22000,"vat":true}}"#),
                Some(r#"{"amount":{"total":9007199254740995}}"#),
                Some(r#"{"amount":"22000"}"#),
                Some(r#"{"aid":"A"}"#),
            ],
        ),
        (
            "refunded",
            vec![
                None,
                Some("0"),
                Some("21999"),
                Some("22000"),
                Some("23000"),
                Some("-1"),
                Some("1e3"),
                Some(" 5"),
                Some(""),
            ],
        ),
        (
            "location_id",
            vec![
                Some("loc_1"),
                None,
                Some("loc 1"),
                Some(""),
                Some(x100.as_str()),
                Some(x101.as_str()),
                Some("loc:1"),
                Some("loc{1}"),
                Some("loc_1\n"),
                Some("é"),
            ],
        ),
        ("doc", vec![Some("keep"), None]),
        // A refund of the request's key, by the earlier key layout's alias.
        ("alias", vec![None, Some("set")]),
    ];
    let asked = [
        None,
        Some(1),
        Some(21_999),
        Some(22_000),
        Some(22_001),
        Some(9_007_199_254_740_995),
    ];
    // The real record, each field varied alone, then random mixes.
    let mut cases: Vec<Vec<usize>> = vec![vec![0; values.len()]];
    for (f, (_, vs)) in values.iter().enumerate() {
        for v in 1..vs.len() {
            let mut c = vec![0; values.len()];
            c[f] = v;
            cases.push(c);
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    for _ in 0..150 {
        cases.push(
            values
                .iter()
                .map(|(_, vs)| rng.random_range(0..vs.len()))
                .collect(),
        );
    }
    let idem = IdempotencyKey::try_from("g-1").unwrap();
    let mut earlier: Option<RefundId> = None;
    let (mut taken, mut plain) = (0, 0);
    for (n, case) in cases.iter().enumerate() {
        for (a, amount) in asked.iter().enumerate() {
            let id = PaymentId::try_from(format!("{}{:022}", &real[..6], n * 10 + a)).unwrap();
            let refund_id = RefundId::of(&id, &idem);
            let key = store.payment_key(&id);
            let mut fields = template.clone();
            let mut pipe = redis::pipe();
            pipe.del(&key);
            for (f, &v) in case.iter().enumerate() {
                match (values[f].0, values[f].1[v]) {
                    (_, Some("keep")) => {}
                    ("alias", Some(_)) => match &earlier {
                        Some(e) => {
                            pipe.set(
                                format!("{}:alias", store.refund_key(&refund_id)),
                                e.as_str(),
                            );
                        }
                        None => continue,
                    },
                    ("alias", None) => {}
                    (name, Some(value)) => {
                        fields.insert(name.into(), value.into());
                    }
                    (name, None) => {
                        fields.remove(name);
                    }
                }
            }
            let pairs: Vec<(String, String)> = fields.into_iter().collect();
            let _: () = pipe
                .hset_multiple(&key, &pairs)
                .query_async(&mut conn)
                .await
                .unwrap();
            let request = stored_request(*amount);
            // What the two-step path decides.
            let (target, existing) = store
                .refund_target_and_refund(&id, &refund_id)
                .await
                .unwrap_or((None, None));
            let allowed = existing.is_none()
                && target.is_some_and(|t| {
                    kakaopay_worker::refunds::refundable(t.status, t.approved, t.refunded, *amount)
                        .is_ok_and(|left| left.get() > 0)
                });
            let (job, options) =
                kakaopay_worker::store::new_refund_job(&refund_id, &id, "g-1", &request);
            let job = producer.prepare(&job, options).unwrap();
            let one_step = store
                .request_refund((&refund_id, &id, "g-1"), &request, None, &job)
                .await
                .unwrap();
            let shown = format!("{case:?} asked {amount:?}");
            assert!(one_step.is_none() || allowed, "taken, not allowed: {shown}");
            if one_step.is_some() {
                taken += 1;
                earlier.get_or_insert(refund_id.clone());
                // Taken once: the same request again is the two-step path's (a repeat).
                let again = store
                    .request_refund((&refund_id, &id, "g-1"), &request, None, &job)
                    .await
                    .unwrap();
                assert!(again.is_none(), "taken twice: {shown}");
            }
            if case.iter().all(|v| *v == 0) && allowed {
                plain += 1;
                assert!(
                    one_step.is_some(),
                    "the plain case left to two steps: {shown}"
                );
            }
        }
    }
    assert_eq!(plain, 4, "all, 1, 21,999 and 22,000 won of the real record");
    assert!(taken > 4 * plain, "{taken}");
}
