//! KakaoPay misbehaving on 30 % of the calls that move money (500s, answers later than our
//! timeout, applied-but-failed answers, USER_LOCKED) and on some inquiries: every payment
//! still ends approved once and every refund succeeds once, KakaoPay's ledger equal to ours.

use crate::support::*;
use kakaopay_worker::sim::{Rules, SimConfig};
use serde_json::json;
use std::time::Duration;

const PAYMENTS: usize = 40;

async fn faults(app: &TestApp) {
    for endpoint in ["approve", "cancel"] {
        add_fault(
            &app.sim,
            json!([
                {"endpoint": endpoint, "fault": "http500", "rate": 0.08},
                {"endpoint": endpoint, "fault": "latency", "ms": 2000, "rate": 0.06},
                {"endpoint": endpoint, "fault": "commit_then_fail", "then": "500", "rate": 0.06},
                {"endpoint": endpoint, "fault": "commit_then_fail", "then": "timeout", "ms": 2000, "rate": 0.05},
                {"endpoint": endpoint, "fault": "commit_then_fail", "then": "drop", "rate": 0.05},
                {"endpoint": endpoint, "fault": "error", "code": -780, "method_result_code": "USER_LOCKED", "rate": 0.05},
            ]),
        )
        .await;
    }
    add_fault(
        &app.sim,
        json!({"endpoint": "order", "fault": "http500", "rate": 0.1}),
    )
    .await;
}

#[tokio::test]
async fn every_payment_and_refund_reaches_its_right_end_despite_kakaopay_faults() {
    storm(SimConfig::default()).await;
}

/// The same, with an order inquiry that leaves out every action's `payload` (as one real
/// test-mode answer did): refunds are then told apart by their amounts.
#[tokio::test]
async fn the_same_storm_when_the_order_inquiry_shows_no_payloads() {
    storm(SimConfig {
        rules: Rules {
            inquiry_payload: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
}

async fn storm(sim: SimConfig) {
    let app = spawn_app_with(AppOptions {
        sim,
        ..Default::default()
    })
    .await;
    app.connect_open_api("loc_1").await;
    // Ready is synchronous: it is not faulted here (the booking system would just retry).
    let mut ids = Vec::new();
    for n in 0..PAYMENTS {
        let mut body = payment_body("loc_1", &format!("F-{n}"));
        body["starts_at"] = json!("2027-06-10T10:00:00+09:00");
        let (status, created) = app.create_payment(body).await;
        assert_eq!(status, 201, "{created}");
        let callback = app
            .member_presses(created["tid"].as_str().unwrap(), "approve")
            .await;
        ids.push(created["payment_id"].as_str().unwrap().to_string());
        // Faults start once the member has approved: the approvals are what they hit.
        if n == 0 {
            faults(&app).await;
        }
        assert_eq!(app.follow(&callback).await.status(), 303);
    }
    for id in &ids {
        until("approved", Duration::from_secs(60), || async {
            app.payment(id).await["status"] == "approved"
        })
        .await;
    }

    let mut refunds = Vec::new();
    for id in &ids {
        refunds.push(
            app.request_refund(id, &format!("refund-{id}"), "2027-06-01T10:00:00+09:00")
                .await,
        );
    }
    for refund in &refunds {
        app.wait_refund(refund, "succeeded", Duration::from_secs(60))
            .await;
    }

    let stats = stats(&app.sim).await;
    println!(
        "faults injected: approve {}, cancel {}, order {}",
        stats["endpoints"]["approve"]["faults"],
        stats["endpoints"]["cancel"]["faults"],
        stats["endpoints"]["order"]["faults"]
    );
    assert!(
        stats["endpoints"]["approve"]["faults"].as_u64().unwrap() > 0,
        "the faults really fired"
    );
    for id in &ids {
        let payment = app.payment(id).await;
        assert_eq!(payment["status"], "refunded", "{payment}");
        let theirs = ledger(&app.sim, payment["tid"].as_str().unwrap()).await;
        let kinds: Vec<&str> = theirs["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["payment_action_type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["PAYMENT", "CANCEL"],
            "approved once, refunded once: {theirs}"
        );
        assert_eq!(theirs["status"], "CANCEL_PAYMENT");
        assert_eq!(
            theirs["canceled_amount"]["total"],
            payment["refunded_amount"]
        );
        assert_eq!(
            payment["aid"], theirs["actions"][0]["aid"],
            "our aid is KakaoPay's"
        );
    }
    app.stop().await;
}
