//! KakaoPay answers of another shape than KAKAOPAY.md documents, and records an earlier
//! release wrote: what is parsed into a type (`Tid`, `Aid`) must never lose money on the way,
//! and a job enqueued straight into Redis is taken by what it means, not by its spelling.

use crate::support::reshape::Reshaping;
use crate::support::*;
use kakaopay_worker::store::Store;
use serde_json::{json, Value};
use std::time::Duration;

const CANCELED_AT: &str = "2027-06-01T10:00:00+09:00";

/// A booking nine days after the refunds are asked for: the rules refund all of it.
fn body(order: &str) -> Value {
    let mut b = payment_body("loc_1", order);
    b["starts_at"] = json!("2027-06-10T10:00:00+09:00");
    b
}

/// An app whose KakaoPay is the simulator behind a proxy that can reshape its answers.
async fn app_behind_reshaping() -> (TestApp, Reshaping) {
    let mut proxy = None;
    let app = spawn_app_tuned(AppOptions::default(), |settings| {
        let sim = settings.kakaopay_api_url.as_ref().expect("the simulator");
        let reshaping = Reshaping::start(sim.as_str());
        settings.kakaopay_api_url = Some(reshaping.url.parse().unwrap());
        proxy = Some(reshaping);
    })
    .await;
    (app, proxy.expect("the proxy started"))
}

fn on(path: &'static str, field: &'static str, value: Value) -> impl Fn(&str, &mut Value) {
    move |p, answer| {
        if p.ends_with(path) {
            answer[field] = value.clone();
        }
    }
}

#[tokio::test]
async fn a_ready_answer_with_a_malformed_tid_stores_nothing_and_gives_the_order_back() {
    let (app, kakaopay) = app_behind_reshaping().await;
    app.connect_open_api("loc_1").await;
    // A tid of another shape is KakaoPay's mistake (502); an answer without one is unreadable,
    // as a cut-off answer is (503). Either way nothing is stored.
    for (tid, code) in [
        (json!("T-short"), "kakaopay_error"),
        (json!(""), "kakaopay_error"),
        (Value::Null, "unavailable"),
    ] {
        kakaopay.set(on("/payment/ready", "tid", tid.clone()));
        let (status, answer) = app.create_payment(payment_body("loc_1", "S-1")).await;
        assert_eq!(answer["error"]["code"], code, "tid {tid}: {answer}");
        assert_eq!(status, if code == "unavailable" { 503 } else { 502 });
    }
    // Nothing was stored under the order: the booking system's retry makes the payment.
    kakaopay.clear();
    let (status, created) = app.create_payment(payment_body("loc_1", "S-1")).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["tid"].as_str().map(str::len), Some(20), "{created}");
    app.stop().await;
}

#[tokio::test]
async fn an_aid_of_another_shape_never_costs_the_approval_or_the_refund() {
    let (app, kakaopay) = app_behind_reshaping().await;
    app.connect_open_api("loc_1").await;
    kakaopay.set(on("/payment/approve", "aid", json!("A-of-another-shape")));
    let id = app.paid(body("S-2")).await;
    let paid = app.wait_status(&id, "approved").await;
    assert_eq!(
        paid["aid"], "A-of-another-shape",
        "kept as KakaoPay named it: {paid}"
    );
    assert_eq!(paid["amount"]["total"], 22000, "{paid}");

    kakaopay.set(on("/payment/cancel", "aid", json!("")));
    let refund = app.request_refund(&id, "shape-1", CANCELED_AT).await;
    let refund = app
        .wait_refund(&refund, "succeeded", Duration::from_secs(15))
        .await;
    assert_eq!(refund["amount"], 22000, "{refund}");
    assert!(refund["aid"].is_null(), "{refund}");
    assert_eq!(app.cancels_of(&id).await, 1, "paid once");
    app.stop().await;
}

#[tokio::test]
async fn an_approval_recorded_without_an_aid_by_an_earlier_release_still_reads() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let id = app.paid(body("S-3")).await;
    let paid = app.wait_status(&id, "approved").await;
    // An earlier release wrote "" where the order inquiry named no aid.
    let conn = app.conn().await;
    let key = Store::new(conn.clone(), &app.namespace).payment_key(&id);
    let mut approval: Value = {
        let mut c = conn.clone();
        let raw: String = redis::cmd("HGET")
            .arg(&key)
            .arg("approval")
            .query_async(&mut c)
            .await
            .unwrap();
        serde_json::from_str(&raw).unwrap()
    };
    approval["aid"] = json!("");
    let mut c = conn.clone();
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("approval")
        .arg(approval.to_string())
        .query_async(&mut c)
        .await
        .unwrap();
    let read = app.payment(&id).await;
    assert_eq!(read["status"], "approved", "{read}");
    assert!(read["aid"].is_null(), "{read}");
    assert_eq!(read["amount"], paid["amount"]);
    let refund = app.request_refund(&id, "legacy-1", CANCELED_AT).await;
    app.wait_refund(&refund, "succeeded", Duration::from_secs(15))
        .await;
    app.stop().await;
}

#[tokio::test]
async fn a_job_enqueued_under_a_refund_id_of_its_own_is_the_refund_its_key_names() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let id = app.paid(body("S-4")).await;
    app.wait_status(&id, "approved").await;
    // Another program enqueues straight into Redis and spells the refund its own way.
    let producer = kakaopay_jobs::queue::Producer::new(app.conn().await, &app.namespace);
    let mut request = kakaopay_jobs::RefundRequest::new("member", "booking_canceled");
    request.canceled_at = Some(CANCELED_AT.into());
    let job = kakaopay_jobs::CancelPayment {
        payment_id: id.clone(),
        refund_id: "ERP-refund-77".into(),
        idempotency_key: "erp-77".into(),
        request,
    };
    producer.insert(&job).await.unwrap();
    let refund = kakaopay_jobs::refunds::refund_id(&id, "erp-77");
    let paid = app
        .wait_refund(&refund, "succeeded", Duration::from_secs(15))
        .await;
    assert_eq!(paid["amount"], 22000, "{paid}");
    // The booking system asking with the same key is answered that refund, not paid again.
    let (status, again) = app
        .ask_refund(
            &id,
            "erp-77",
            json!({"requested_by": "member", "reason": "booking_canceled", "canceled_at": CANCELED_AT}),
            CLIENT_TOKEN,
        )
        .await;
    assert!(matches!(status, 202 | 409), "{status} {again}");
    assert_eq!(app.cancels_of(&id).await, 1, "one key, one refund");
    let payment = app.payment(&id).await;
    assert_eq!(payment["refunded_amount"], 22000, "{payment}");
    app.stop().await;
}
