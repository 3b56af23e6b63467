//! Refunds end to end: every REFUNDS.md test vector through the HTTP API and the simulator,
//! the simulator's ledger matching ours to the won; races, faults, idempotency, bad input.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const START: &str = "2026-06-10T10:00:00+09:00";

fn body(service: &str, total: i64, tax_free: i64, policy: Option<Value>) -> Value {
    let mut b = payment_body("loc_1", &format!("V-{:08x}", rand::random::<u32>()));
    b["service"] = json!(service);
    b["total_amount"] = json!(total);
    b["tax_free_amount"] = json!(tax_free);
    b["starts_at"] = json!(START);
    if service == "shop_products" || service == "credit_packages" || service == "invoices" {
        b.as_object_mut().unwrap().remove("starts_at");
    }
    if let Some(p) = policy {
        b["refund_policy"] = p;
    }
    b
}

async fn approved(app: &TestApp, body: Value) -> String {
    let id = app.paid(body).await;
    app.wait_status(&id, "approved").await;
    id
}

async fn request(
    app: &TestApp,
    payment: &str,
    key: &str,
    body: Value,
    token: &str,
) -> (u16, Value) {
    let (status, answer) = app.ask_refund(payment, key, body, token).await;
    assert!(status < 500 || status == 503, "no 500");
    (status, answer)
}

async fn refund_done(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, r) = app
            .send(
                Method::GET,
                &format!("/v1/refunds/{id}"),
                Some(CLIENT_TOKEN),
                None,
            )
            .await;
        assert_eq!(status, 200, "{r}");
        if !matches!(r["status"].as_str(), Some("queued") | Some("processing")) {
            return r;
        }
        assert!(Instant::now() < deadline, "refund {id} never finished: {r}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Requests a refund and waits for its outcome.
async fn refund(app: &TestApp, payment: &str, body: Value, token: &str) -> Value {
    let key = format!("k-{:016x}", rand::random::<u64>());
    let (status, answer) = request(app, payment, &key, body, token).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "queued");
    refund_done(app, answer["refund_id"].as_str().unwrap()).await
}

/// Our records and KakaoPay's ledger agree to the won.
async fn ledgers_match(app: &TestApp, payment_id: &str) -> Value {
    let payment = app.payment(payment_id).await;
    let theirs = ledger(&app.sim, payment["tid"].as_str().unwrap()).await;
    assert_eq!(
        theirs["canceled_amount"]["total"], payment["refunded_amount"],
        "refunded: {payment} vs {theirs}"
    );
    assert_eq!(
        theirs["canceled_amount"]["tax_free"], payment["refunded_tax_free_amount"],
        "tax-free"
    );
    let succeeded: i64 = payment["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "succeeded")
        .map(|r| r["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(json!(succeeded), payment["refunded_amount"]);
    let cancels = theirs["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["payment_action_type"] == "CANCEL")
        .count();
    let ours = payment["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "succeeded")
        .count();
    assert_eq!(cancels, ours, "one KakaoPay cancel per succeeded refund");
    payment
}

fn member(at: &str) -> Value {
    json!({"reason": "booking_canceled", "requested_by": "member", "canceled_at": at})
}

fn expect(r: &Value, status: &str, amount: i64, rule: &str) {
    assert_eq!(
        (
            r["status"].as_str(),
            r["amount"].as_i64(),
            r["rule"].as_str()
        ),
        (Some(status), Some(amount), Some(rule)),
        "{r}"
    );
}

#[tokio::test]
async fn every_refunds_md_vector_end_to_end() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let min_notice = json!({"rule": "min_notice", "notice_minutes": 1440});
    let tiers = json!({"rule": "tiers", "tiers": [{"notice_minutes": 2880, "percent": 100}, {"notice_minutes": 1440, "percent": 50}]});
    let cases: Vec<(&str, Value, Value, &str, i64, &str, &str)> = vec![
        (
            "1",
            body("bookings", 30000, 0, Some(min_notice.clone())),
            member("2026-06-09T10:00:00+09:00"),
            "succeeded",
            30000,
            "min_notice_met",
            "refunded",
        ),
        (
            "2",
            body("bookings", 30000, 0, Some(min_notice.clone())),
            member("2026-06-09T10:01:00+09:00"),
            "rejected",
            0,
            "min_notice_missed",
            "approved",
        ),
        (
            "3",
            body("bookings", 30000, 0, Some(json!({"rule": "before_start"}))),
            member("2026-06-10T09:59:00+09:00"),
            "succeeded",
            30000,
            "before_start",
            "refunded",
        ),
        (
            "4",
            body("bookings", 30000, 0, Some(json!({"rule": "before_start"}))),
            member(START),
            "rejected",
            0,
            "already_started",
            "approved",
        ),
        (
            "5",
            body("bookings", 30000, 0, Some(json!({"rule": "no_refund"}))),
            member("2026-06-03T10:00:00+09:00"),
            "rejected",
            0,
            "policy_no_refund",
            "approved",
        ),
        (
            "7",
            body("bookings", 30000, 0, Some(tiers.clone())),
            member("2026-06-09T04:00:00+09:00"),
            "succeeded",
            15000,
            "tier_50",
            "partially_refunded",
        ),
        (
            "8",
            body("bookings", 30000, 0, Some(tiers.clone())),
            member("2026-06-10T08:00:00+09:00"),
            "rejected",
            0,
            "tier_0",
            "approved",
        ),
        (
            "9",
            body("event_tickets", 30000, 0, Some(min_notice.clone())),
            member("2026-06-08T10:00:00+09:00"),
            "succeeded",
            30000,
            "min_notice_met",
            "refunded",
        ),
        (
            "10",
            body("event_tickets", 30000, 0, None),
            json!({"reason": "event_canceled", "requested_by": "system", "canceled_at": "2026-06-08T10:00:00+09:00"}),
            "manual_review",
            0,
            "event_canceled_by_organizer",
            "approved",
        ),
        (
            "11",
            body(
                "shop_products",
                30000,
                0,
                Some(json!({"rule": "until_fulfilled"})),
            ),
            json!({"reason": "order_canceled", "requested_by": "member", "context": {"fulfilled": false}}),
            "succeeded",
            30000,
            "not_fulfilled",
            "refunded",
        ),
        (
            "12",
            body("shop_products", 30000, 0, None),
            json!({"reason": "order_canceled", "requested_by": "admin"}),
            "manual_review",
            0,
            "shop_order_admin_cancel",
            "approved",
        ),
        (
            "13",
            body("credit_packages", 30000, 0, None),
            member("2026-06-01T10:00:00+09:00"),
            "rejected",
            0,
            "credit_package_non_refundable",
            "approved",
        ),
        (
            "14",
            body("invoices", 30000, 0, None),
            member("2026-06-01T10:00:00+09:00"),
            "manual_review",
            0,
            "invoice_credit_note",
            "approved",
        ),
    ];
    for (vector, payment_body, ask, status, amount, rule, payment_status) in cases {
        let id = approved(&app, payment_body).await;
        let r = refund(&app, &id, ask, CLIENT_TOKEN).await;
        expect(&r, status, amount, rule);
        let payment = ledgers_match(&app, &id).await;
        assert_eq!(payment["status"], payment_status, "vector {vector}");
    }

    // 6: automatic refunds off.
    app.connect_location(
        "loc_off",
        json!({"secret_key": kakaopay_worker::sim::DEFAULT_SECRET_KEY, "automatic_refunds": false}),
    )
    .await;
    let mut off = body("bookings", 30000, 0, None);
    off["location_id"] = json!("loc_off");
    let id = approved(&app, off).await;
    expect(
        &refund(&app, &id, member("2026-06-01T10:00:00+09:00"), CLIENT_TOKEN).await,
        "manual_review",
        0,
        "automatic_refunds_off",
    );

    // 15: an operator refunds 10,000, then the member the rest.
    let id = approved(&app, body("bookings", 30000, 0, None)).await;
    let first = refund(
        &app,
        &id,
        json!({"reason": "goodwill", "requested_by": "admin", "amount": 10000}),
        ADMIN_TOKEN,
    )
    .await;
    expect(&first, "succeeded", 10000, "admin_amount");
    assert_eq!(
        ledgers_match(&app, &id).await["status"],
        "partially_refunded"
    );
    let rest = refund(&app, &id, member("2026-06-01T10:00:00+09:00"), CLIENT_TOKEN).await;
    expect(&rest, "succeeded", 20000, "min_notice_met");
    assert_eq!(ledgers_match(&app, &id).await["status"], "refunded");

    // 16: tax-free parts: 303 then 697.
    let id = approved(&app, body("bookings", 11000, 1000, None)).await;
    let first = refund(
        &app,
        &id,
        json!({"requested_by": "admin", "amount": 3333}),
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(
        (first["amount"].as_i64(), first["tax_free_amount"].as_i64()),
        (Some(3333), Some(303))
    );
    let second = refund(
        &app,
        &id,
        json!({"requested_by": "admin", "amount": 7667}),
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(
        (
            second["amount"].as_i64(),
            second["tax_free_amount"].as_i64()
        ),
        (Some(7667), Some(697))
    );
    let payment = ledgers_match(&app, &id).await;
    assert_eq!(
        (
            payment["refunded_amount"].as_i64(),
            payment["refunded_tax_free_amount"].as_i64()
        ),
        (Some(11000), Some(1000))
    );

    // Disconnected: manual review.
    let id = approved(&app, body("bookings", 30000, 0, None)).await;
    app.send(
        Method::DELETE,
        "/v1/locations/loc_1/kakaopay",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    expect(
        &refund(&app, &id, member("2026-06-01T10:00:00+09:00"), CLIENT_TOKEN).await,
        "manual_review",
        0,
        "integration_disconnected",
    );
    app.stop().await;
}

#[tokio::test]
async fn two_full_refunds_at_once_cancel_once() {
    // 17, fifty times.
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    for round in 0..50 {
        let id = approved(&app, body("bookings", 30000, 0, None)).await;
        let ask = member("2026-06-01T10:00:00+09:00");
        let (key_a, key_b) = (format!("a{round}"), format!("b{round}"));
        let (a, b) = tokio::join!(
            request(&app, &id, &key_a, ask.clone(), CLIENT_TOKEN),
            request(&app, &id, &key_b, ask.clone(), CLIENT_TOKEN)
        );
        let mut outcomes = Vec::new();
        for (status, answer) in [a, b] {
            if status == 202 {
                outcomes.push(
                    refund_done(&app, answer["refund_id"].as_str().unwrap()).await["status"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            } else {
                assert_eq!(
                    (status, answer["error"]["code"].as_str()),
                    (409, Some("not_refundable")),
                    "{answer}"
                );
            }
        }
        assert_eq!(
            outcomes.iter().filter(|s| *s == "succeeded").count(),
            1,
            "round {round}: {outcomes:?}"
        );
        assert!(
            outcomes.iter().all(|s| s == "succeeded" || s == "rejected"),
            "{outcomes:?}"
        );
        let payment = ledgers_match(&app, &id).await;
        assert_eq!(payment["refunded_amount"], 30000);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_cancel_applied_but_unanswered_is_found_not_repeated() {
    // 18, for each way the answer can fail.
    for then in ["500", "timeout", "drop"] {
        let app = spawn_app().await;
        app.connect_open_api("loc_1").await;
        let id = approved(&app, body("bookings", 30000, 0, None)).await;
        add_fault(&app.sim, json!({"endpoint": "cancel", "fault": "commit_then_fail", "then": then, "ms": 5000, "count": 1})).await;
        let r = refund(&app, &id, member("2026-06-01T10:00:00+09:00"), CLIENT_TOKEN).await;
        expect(&r, "succeeded", 30000, "min_notice_met");
        ledgers_match(&app, &id).await;
        assert_eq!(
            stats(&app.sim).await["endpoints"]["cancel"]["calls"],
            1,
            "{then}: one cancel call"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn the_same_idempotency_key_ten_times_at_once_is_one_refund() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let id = approved(&app, body("bookings", 30000, 0, None)).await;
    let ask = member("2026-06-01T10:00:00+09:00");
    let answers = futures::future::join_all(
        (0..10).map(|_| request(&app, &id, "same-key", ask.clone(), CLIENT_TOKEN)),
    )
    .await;
    let ids: std::collections::HashSet<_> = answers
        .iter()
        .map(|(s, a)| {
            assert_eq!(*s, 202, "{a}");
            a["refund_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    refund_done(&app, ids.iter().next().unwrap()).await;
    let payment = ledgers_match(&app, &id).await;
    assert_eq!(payment["refunds"].as_array().unwrap().len(), 1);
    // Later, the same key and body: the same refund; another body: a conflict.
    let (status, again) = request(&app, &id, "same-key", ask, CLIENT_TOKEN).await;
    assert_eq!(
        (status, again["refund_id"].as_str()),
        (202, ids.iter().next().map(String::as_str))
    );
    assert_eq!(again["status"], "succeeded");
    let (status, answer) = request(
        &app,
        &id,
        "same-key",
        member("2026-06-02T10:00:00+09:00"),
        CLIENT_TOKEN,
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("idempotency_conflict"))
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_refund_requests_store_nothing() {
    let app = spawn_app_with(AppOptions {
        workers: false,
        ..Default::default()
    })
    .await;
    app.connect_open_api("loc_1").await;
    let id = app.paid(body("bookings", 30000, 0, None)).await;
    // Not approved yet (no workers): not refundable.
    let (status, answer) = request(
        &app,
        &id,
        "k0",
        member("2026-06-01T10:00:00+09:00"),
        CLIENT_TOKEN,
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("not_refundable"))
    );
    let workers = kakaopay_worker::startup::Application::start(settings(
        &AppOptions::default(),
        &app.sim.url,
        &app.namespace,
    ))
    .await
    .unwrap();
    app.wait_status(&id, "approved").await;

    for (amount, status, code) in [
        (json!(-1), 409, "not_refundable"),
        (json!(0), 409, "not_refundable"),
        (json!(30001), 409, "not_refundable"),
        (json!(1.5), 400, "invalid_request"),
        (json!("100"), 400, "invalid_request"),
    ] {
        let (s, answer) = request(
            &app,
            &id,
            "k1",
            json!({"requested_by": "admin", "amount": amount}),
            ADMIN_TOKEN,
        )
        .await;
        assert_eq!(
            (s, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "amount {amount}: {answer}"
        );
    }
    let (s, answer) = request(
        &app,
        &id,
        "k2",
        json!({"requested_by": "robot"}),
        CLIENT_TOKEN,
    )
    .await;
    assert_eq!(
        (s, answer["error"]["field"].as_str()),
        (400, Some("requested_by"))
    );
    let (s, answer) = request(
        &app,
        &id,
        "k3",
        json!({"requested_by": "admin", "amount": 100}),
        CLIENT_TOKEN,
    )
    .await;
    assert_eq!(
        (s, answer["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "a client token with an amount"
    );
    let (s, answer) = request(
        &app,
        &id,
        "k4",
        json!({"canceled_at": "yesterday"}),
        CLIENT_TOKEN,
    )
    .await;
    assert_eq!(
        (s, answer["error"]["field"].as_str()),
        (400, Some("canceled_at"))
    );
    let (s, answer) = request(&app, &id, "k5", json!({"surprise": 1}), CLIENT_TOKEN).await;
    assert_eq!(
        (s, answer["error"]["field"].as_str()),
        (400, Some("surprise"))
    );
    let r = app
        .http
        .post(format!("{}/v1/payments/{id}/refunds", app.address))
        .bearer_auth(CLIENT_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no Idempotency-Key");
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["error"]["field"], "Idempotency-Key");
    let (s, _) = request(
        &app,
        "pay_000000000000000000000000",
        "k6",
        json!({}),
        CLIENT_TOKEN,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .send(
            Method::GET,
            "/v1/refunds/rf_000000000000000000000000",
            Some(CLIENT_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, 404);

    let payment = app.payment(&id).await;
    assert_eq!(payment["refunds"], json!([]), "nothing stored");
    let conn = app.conn().await;
    let jobs = kakaopay_jobs::queue::inspect::counts(&conn, &app.namespace, "cancel_payment")
        .await
        .unwrap();
    assert_eq!(
        jobs.pending + jobs.running + jobs.done,
        0,
        "nothing enqueued"
    );
    workers.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_refund_enqueued_straight_into_redis_is_decided_and_recorded() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let id = approved(&app, body("bookings", 30000, 0, None)).await;
    let conn = app.conn().await;
    let producer = kakaopay_jobs::queue::Producer::new(conn, &app.namespace);
    let request = kakaopay_jobs::RefundRequest {
        reason: "booking_canceled".into(),
        requested_by: "member".into(),
        canceled_at: Some("2026-06-01T10:00:00+09:00".into()),
        context: Default::default(),
        amount: None,
        by_admin: false,
        received_at: chrono::Utc::now().to_rfc3339(),
    };
    let first = kakaopay_jobs::refunds::request_refund(&producer, &id, "direct-1", request.clone())
        .await
        .unwrap();
    let again = kakaopay_jobs::refunds::request_refund(&producer, &id, "direct-1", request.clone())
        .await
        .unwrap();
    assert_eq!(
        (first.refund_id.clone(), again.duplicate),
        (again.refund_id.clone(), true)
    );
    let mut other = request.clone();
    other.reason = "changed my mind".into();
    assert!(matches!(
        kakaopay_jobs::refunds::request_refund(&producer, &id, "direct-1", other).await,
        Err(kakaopay_jobs::refunds::RefundRequestError::IdempotencyConflict)
    ));
    // The worker stores the refund from the job when it takes it: until then it is unknown.
    until(
        "the worker stored the refund",
        Duration::from_secs(15),
        || async {
            let path = format!("/v1/refunds/{}", first.refund_id);
            app.send(Method::GET, &path, Some(CLIENT_TOKEN), None)
                .await
                .0
                == 200
        },
    )
    .await;
    let r = refund_done(&app, &first.refund_id).await;
    expect(&r, "succeeded", 30000, "min_notice_met");
    assert_eq!(r["source"], "job");
    // The same key over HTTP answers the same refund.
    let (status, answer) = self::request(
        &app,
        &id,
        "direct-1",
        member("2026-06-01T10:00:00+09:00"),
        CLIENT_TOKEN,
    )
    .await;
    assert_eq!(
        (status, answer["refund_id"].as_str()),
        (202, Some(first.refund_id.as_str()))
    );
    ledgers_match(&app, &id).await;
    app.stop().await;
}

#[tokio::test]
async fn a_refund_request_after_redis_forgot_its_scripts_is_stored_and_refunded_once() {
    // On one server the refund and its job are stored by one script, which the request must
    // load itself when Redis has forgotten it (a restart, SCRIPT FLUSH).
    let redis = PrivateRedis::start();
    let app = spawn_app_on(&redis).await;
    app.connect_open_api("loc_1").await;
    let policy = json!({"rule": "until_fulfilled"});
    let id = approved(&app, body("shop_products", 30_000, 0, Some(policy))).await;
    redis.flush_scripts().await;
    let asked = json!({"reason": "order_canceled", "requested_by": "member", "context": {"fulfilled": false}});
    let done = refund(&app, &id, asked, CLIENT_TOKEN).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let payment = ledgers_match(&app, &id).await;
    assert_eq!(payment["refunded_amount"], 30_000, "{payment}");
    app.stop().await;
}

crate::on_every_topology!(
    every_refunds_md_vector_end_to_end,
    two_full_refunds_at_once_cancel_once,
    a_cancel_applied_but_unanswered_is_found_not_repeated,
    the_same_idempotency_key_ten_times_at_once_is_one_refund,
    bad_refund_requests_store_nothing,
    a_refund_enqueued_straight_into_redis_is_decided_and_recorded,
);
