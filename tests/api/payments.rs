//! Payments end to end: the real app on a random port, real Redis, the simulator as KakaoPay.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

async fn sim_stats(app: &TestApp) -> Value {
    stats(&app.sim).await["endpoints"].clone()
}

async fn approve_ok(app: &TestApp) -> u64 {
    sim_stats(app).await["approve"]["succeeded"]
        .as_u64()
        .unwrap_or(0)
}

/// Approvals KakaoPay applied to a payment, whatever it answered.
async fn approvals_applied(app: &TestApp, payment_id: &str) -> usize {
    let tid = app.payment(payment_id).await["tid"]
        .as_str()
        .unwrap()
        .to_string();
    ledger(&app.sim, &tid).await["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["payment_action_type"] == "PAYMENT")
        .count()
}

async fn happy_path(key: Value) {
    let app = spawn_app().await;
    app.connect_location("loc_1", key).await;

    let (status, created) = app.create_payment(payment_body("loc_1", "B-1")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["payment_id"].as_str().unwrap().to_string();
    assert_eq!(created["status"], "ready");
    assert_eq!(created["tid"].as_str().unwrap().len(), 20);
    assert!(created["redirect"]["pc"]
        .as_str()
        .unwrap()
        .starts_with(&app.sim.url));
    for key in ["mobile", "app", "android_app_scheme", "ios_app_scheme"] {
        assert!(created["redirect"][key].is_string(), "{key}");
    }
    assert!(created["expires_at"].is_string() && created["created_at"].is_string());

    // The identical request again: the same payment, no second ready.
    let (status, again) = app.create_payment(payment_body("loc_1", "B-1")).await;
    assert_eq!(status, 200);
    assert_eq!(again["payment_id"], created["payment_id"]);
    assert_eq!(sim_stats(&app).await["ready"]["calls"], 1);
    // The same order with another body: a conflict.
    let mut other = payment_body("loc_1", "B-1");
    other["total_amount"] = json!(23000);
    let (status, conflict) = app.create_payment(other).await;
    assert_eq!(
        (status, conflict["error"]["code"].as_str()),
        (409, Some("order_conflict"))
    );

    let callback = app
        .member_presses(created["tid"].as_str().unwrap(), "approve")
        .await;
    assert!(
        callback.starts_with(&format!("{}/kakaopay/callback/{id}/", app.address)),
        "{callback}"
    );
    let back = app.follow(&callback).await;
    assert_eq!(back.status(), 303);
    let location = back.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        location,
        format!("https://members.example.com/bookings/1?payment_id={id}&status=approving")
    );

    let payment = app.wait_status(&id, "approved").await;
    assert_eq!(payment["amount"]["total"], 22000);
    assert_eq!(payment["amount"]["vat"], 2000);
    assert_eq!(payment["payment_method_type"], "CARD");
    assert_eq!(payment["aid"].as_str().unwrap().len(), 20);
    assert!(payment["approved_at"].is_string());
    assert_eq!(payment["order_id"], "B-1");
    assert_eq!(payment["metadata"]["booking_id"], "1");
    let steps: Vec<&str> = payment["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["to"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["ready", "approving", "approved"]);
    assert_eq!(approve_ok(&app).await, 1);
    assert_eq!(
        ledger(&app.sim, created["tid"].as_str().unwrap()).await["status"],
        "SUCCESS_PAYMENT"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_member_pays_through_the_open_api() {
    happy_path(json!({"secret_key": kakaopay_worker::sim::DEFAULT_SECRET_KEY})).await;
}

#[tokio::test]
async fn a_member_pays_through_the_older_api() {
    happy_path(json!({"admin_key": kakaopay_worker::sim::DEFAULT_ADMIN_KEY})).await;
}

#[tokio::test]
async fn the_member_cancels_or_fails_at_kakaopay() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    for (order, action, status) in [("B-c", "cancel", "canceled"), ("B-f", "fail", "failed")] {
        let (_, created) = app.create_payment(payment_body("loc_1", order)).await;
        let id = created["payment_id"].as_str().unwrap();
        let callback = app
            .member_presses(created["tid"].as_str().unwrap(), action)
            .await;
        let back = app.follow(&callback).await;
        assert_eq!(back.status(), 303);
        assert!(back.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("status={status}")));
        assert_eq!(app.payment(id).await["status"], status);
    }
    assert_eq!(
        sim_stats(&app).await["approve"]["calls"],
        Value::Null,
        "nothing was approved"
    );
    app.stop().await;
}

#[tokio::test]
async fn unapproved_payments_expire_through_the_reconciler() {
    let mut sim = kakaopay_worker::sim::SimConfig::default();
    sim.rules.ready_window = Duration::from_millis(500);
    let app = spawn_app_with(AppOptions {
        sim,
        ready_window: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    app.connect_open_api("loc_1").await;
    let (_, created) = app.create_payment(payment_body("loc_1", "B-x")).await;
    let id = created["payment_id"].as_str().unwrap();
    let payment = app.wait_status(id, "expired").await;
    assert!(
        payment["history"][1]["cause"]
            .as_str()
            .unwrap()
            .contains("window"),
        "{payment}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_same_callback_ten_times_concurrently_approves_once() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let (_, created) = app.create_payment(payment_body("loc_1", "B-10")).await;
    let id = created["payment_id"].as_str().unwrap().to_string();
    let callback = app
        .member_presses(created["tid"].as_str().unwrap(), "approve")
        .await;
    let answers = futures::future::join_all((0..10).map(|_| app.follow(&callback))).await;
    assert!(answers.iter().all(|r| r.status() == 303));
    app.wait_status(&id, "approved").await;
    // And again after it is approved.
    for _ in 0..10 {
        let r = app.follow(&callback).await;
        assert!(r.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with("status=approved"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sim_stats(&app).await["approve"]["calls"],
        1,
        "one approve call at KakaoPay"
    );
    app.stop().await;
}

#[tokio::test]
async fn kakaopay_500s_are_retried_until_approved() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    add_fault(
        &app.sim,
        json!({"endpoint": "approve", "fault": "http500", "count": 2}),
    )
    .await;
    let id = app.paid(payment_body("loc_1", "B-500")).await;
    app.wait_status(&id, "approved").await;
    assert_eq!(approve_ok(&app).await, 1);
    assert_eq!(
        sim_stats(&app).await["approve"]["calls"],
        3,
        "two 500s, then the approval"
    );
    assert_eq!(approvals_applied(&app, &id).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn commit_then_fail_on_approve_is_found_by_the_inquiry_not_approved_twice() {
    for then in ["500", "timeout", "drop"] {
        let app = spawn_app().await;
        app.connect_open_api("loc_1").await;
        add_fault(&app.sim, json!({"endpoint": "approve", "fault": "commit_then_fail", "then": then, "ms": 5000, "count": 1})).await;
        let id = app.paid(payment_body("loc_1", "B-ctf")).await;
        let payment = app.wait_status(&id, "approved").await;
        assert_eq!(
            approvals_applied(&app, &id).await,
            1,
            "{then}: KakaoPay approved exactly once"
        );
        assert_eq!(
            sim_stats(&app).await["approve"]["calls"],
            1,
            "{then}: the retry asked the inquiry instead"
        );
        assert_eq!(
            payment["aid"].as_str().unwrap().len(),
            20,
            "{then}: the aid came from the inquiry"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_final_kakaopay_error_fails_the_payment_with_its_code() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    add_fault(&app.sim, json!({"endpoint": "approve", "fault": "error", "code": -780, "message": "approval failure!", "count": 1})).await;
    let id = app.paid(payment_body("loc_1", "B-780")).await;
    let payment = app.wait_status(&id, "failed").await;
    assert_eq!(payment["failure"]["kakaopay_code"], -780);
    assert_eq!(approve_ok(&app).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn user_locked_is_retried() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    add_fault(
        &app.sim,
        json!({"endpoint": "approve", "fault": "error", "code": -780, "method_result_code": "USER_LOCKED", "count": 1}),
    )
    .await;
    let id = app.paid(payment_body("loc_1", "B-lock")).await;
    app.wait_status(&id, "approved").await;
    app.stop().await;
}

#[tokio::test]
async fn a_disconnected_location_takes_no_new_payments_but_finishes_approvals_in_flight() {
    let app = spawn_app_with(AppOptions {
        workers: false,
        ..Default::default()
    })
    .await;
    app.connect_open_api("loc_1").await;
    let (_, created) = app.create_payment(payment_body("loc_1", "B-d")).await;
    let id = created["payment_id"].as_str().unwrap().to_string();
    let callback = app
        .member_presses(created["tid"].as_str().unwrap(), "approve")
        .await;
    app.follow(&callback).await;
    let (status, _) = app
        .send(
            Method::DELETE,
            "/v1/locations/loc_1/kakaopay",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, answer) = app.create_payment(payment_body("loc_1", "B-e")).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("not_connected"))
    );
    let (status, _) = app
        .send(
            Method::GET,
            "/v1/locations/loc_1/kakaopay",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 404);
    // Workers start after the disconnect: the approval still uses the credentials it began with.
    let worker_app = kakaopay_worker::startup::Application::start(settings(
        &AppOptions::default(),
        &app.sim.url,
        &app.namespace,
    ))
    .await
    .unwrap();
    app.wait_status(&id, "approved").await;
    worker_app.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn service_disabled_and_masked_keys() {
    let app = spawn_app().await;
    app.connect_location("loc_2", json!({"secret_key": kakaopay_worker::sim::DEFAULT_SECRET_KEY, "services": ["shop_products"]}))
        .await;
    let (status, answer) = app.create_payment(payment_body("loc_2", "B-s")).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("service_disabled"))
    );
    let (_, got) = app
        .send(
            Method::GET,
            "/v1/locations/loc_2/kakaopay",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(got["secret_key"], "****0000");
    assert!(!got
        .to_string()
        .contains(kakaopay_worker::sim::DEFAULT_SECRET_KEY));
    let (status, patched) = app
        .send(
            Method::PATCH,
            "/v1/locations/loc_2/kakaopay",
            Some(ADMIN_TOKEN),
            Some(json!({"services": ["bookings"], "automatic_refunds": false})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["services"], json!(["bookings"]));
    assert_eq!(patched["automatic_refunds"], false);
    let (status, _) = app.create_payment(payment_body("loc_2", "B-s")).await;
    assert_eq!(status, 201);
    app.stop().await;
}

#[tokio::test]
async fn the_reconciler_settles_an_approving_payment_whose_job_is_gone() {
    let app = spawn_app_with(AppOptions {
        workers: false,
        ..Default::default()
    })
    .await;
    app.connect_open_api("loc_1").await;
    let id = app.paid(payment_body("loc_1", "B-lost")).await;
    assert_eq!(app.payment(&id).await["status"], "approving");
    // The approval job is lost (say, Redis lost it in a failover).
    let mut conn = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    // Server only (KEYS on one node): not in the topology matrix.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{}:approve_payment}}*", app.namespace))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();

    // Workers with their reconciler: past the grace it asks KakaoPay, finds the payment still
    // approvable and enqueues the approval again.
    let workers = kakaopay_worker::startup::Application::start(settings(
        &AppOptions::default(),
        &app.sim.url,
        &app.namespace,
    ))
    .await
    .unwrap();
    let payment = app.wait_status(&id, "approved").await;
    assert!(payment["history"].as_array().unwrap().len() == 3);
    assert_eq!(approvals_applied(&app, &id).await, 1);
    workers.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_callback_after_redis_forgot_its_scripts_approves_once() {
    // The callback sends its read and the transition script in one pipeline, so it must load
    // the script itself when Redis has forgotten it (a restart, SCRIPT FLUSH).
    let redis = PrivateRedis::start();
    let app = spawn_app_on(&redis).await;
    app.connect_open_api("loc_1").await;
    let (status, created) = app.create_payment(payment_body("loc_1", "NS-1")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["payment_id"].as_str().unwrap().to_string();
    redis.flush_scripts().await;
    let callback = app
        .member_presses(created["tid"].as_str().unwrap(), "approve")
        .await;
    assert_eq!(app.follow(&callback).await.status(), 303);
    let payment = app.wait_status(&id, "approved").await;
    let theirs = ledger(&app.sim, payment["tid"].as_str().unwrap()).await;
    let approvals = theirs["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["payment_action_type"] == "PAYMENT")
        .count();
    assert_eq!(approvals, 1, "{theirs}");
    app.stop().await;
}

crate::on_every_topology!(
    a_member_pays_through_the_open_api,
    a_member_pays_through_the_older_api,
    the_member_cancels_or_fails_at_kakaopay,
    unapproved_payments_expire_through_the_reconciler,
    the_same_callback_ten_times_concurrently_approves_once,
    kakaopay_500s_are_retried_until_approved,
    commit_then_fail_on_approve_is_found_by_the_inquiry_not_approved_twice,
    a_final_kakaopay_error_fails_the_payment_with_its_code,
    user_locked_is_retried,
    a_disconnected_location_takes_no_new_payments_but_finishes_approvals_in_flight,
    service_disabled_and_masked_keys,
);

#[tokio::test]
async fn a_callback_for_a_record_without_its_document_is_an_error_not_unknown() {
    // The approval reads only the record's document: one the transition finds but whose
    // document is gone is a broken money record to report, not a payment that does not exist.
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let (status, created) = app.create_payment(payment_body("loc_1", "ND-1")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["payment_id"].as_str().unwrap().to_string();
    let conn = app.conn().await;
    let key = kakaopay_worker::store::Store::new(conn.clone(), &app.namespace).payment_key(&id);
    let _: () = redis::cmd("HDEL")
        .arg(&key)
        .arg("doc")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    let callback = app
        .member_presses(created["tid"].as_str().unwrap(), "approve")
        .await;
    let answer = app.follow(&callback).await;
    // API.md has no 500: a broken record is answered as the store failing.
    assert_eq!(answer.status(), 503);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    app.stop().await;
}
