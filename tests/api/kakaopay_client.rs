//! The KakaoPay client against the simulator, for both API generations: the whole lifecycle,
//! every error class, and the ambiguous failures that must be settled by order inquiry.

use crate::support::*;
use kakaopay_worker::domain::{Payload, Tid};
use kakaopay_worker::kakaopay::{
    ActionType, CancelRequest, Credentials, ErrorClass, ErrorKind, KakaoPay, OrderStatus,
};
use kakaopay_worker::secret::Secret;
use serde_json::json;
use std::time::Duration;

fn cancel_request(
    tid: &str,
    amount: i64,
    tax_free: i64,
    available: i64,
    payload: &str,
) -> CancelRequest {
    CancelRequest {
        cid: cid(),
        tid: Tid::parse(tid).unwrap(),
        cancel_amount: won(amount),
        cancel_tax_free_amount: won(tax_free),
        cancel_vat_amount: None,
        cancel_available_amount: Some(won(available)),
        payload: Some(Payload::parse(payload).unwrap()),
    }
}

/// ready → approve → partial cancel → full cancel → order inquiry, checking every amount.
async fn lifecycle(creds: Credentials) {
    let sim = spawn_sim().await;
    let kp = client(&sim);

    let ready = kp
        .ready(&creds, &ready_request("B-2026-0001", 11000, 1000))
        .await
        .unwrap();
    assert_eq!(ready.tid.len(), 20);
    assert!(ready.tid.starts_with('T'));
    assert!(ready
        .next_redirect_pc_url
        .as_deref()
        .unwrap()
        .starts_with(&sim.url));
    assert!(ready.created_at.is_some());
    let before = kp.order(&creds, &order_request(&ready.tid)).await.unwrap();
    assert_eq!(before.status, OrderStatus::Ready);
    assert!(before.approved_at.is_none());

    let pg_token = authorize(&sim, &ready.tid).await;
    let mut approve = readied_approve(&ready.tid, "B-2026-0001", pg_token, 11000);
    approve.payload = Some(Payload::parse("pay_1").unwrap());
    let approved = kp.approve(&creds, &approve).await.unwrap();
    assert_eq!(approved.tid, ready.tid);
    assert_eq!(approved.aid.len(), 20);
    assert_eq!(approved.amount.total, 11000);
    assert_eq!(approved.amount.tax_free, 1000);
    assert_eq!(
        approved.amount.vat, 909,
        "default VAT round((11000-1000)/11)"
    );
    assert_eq!(approved.payment_method_type.as_deref(), Some("CARD"));
    assert!(approved.card_info.is_some());
    assert_eq!(approved.payload.as_deref(), Some("pay_1"));

    let part = kp
        .cancel(
            &creds,
            &cancel_request(&ready.tid, 3333, 303, 11000, "rf_1"),
        )
        .await
        .unwrap();
    assert_eq!(part.status, OrderStatus::PartCancelPayment);
    assert_eq!(part.approved_cancel_amount.total, 3333);
    assert_eq!(part.approved_cancel_amount.tax_free, 303);
    assert_eq!(part.cancel_available_amount.total, 7667);
    assert_eq!(part.cancel_available_amount.tax_free, 697);

    let rest = kp
        .cancel(&creds, &cancel_request(&ready.tid, 7667, 697, 7667, "rf_2"))
        .await
        .unwrap();
    assert_eq!(rest.status, OrderStatus::CancelPayment);
    assert_eq!(rest.canceled_amount.total, 11000);
    assert_eq!(rest.canceled_amount.tax_free, 1000);
    assert_eq!(
        rest.canceled_amount.vat, 909,
        "the last cancel takes the VAT that is left"
    );
    assert_eq!(rest.cancel_available_amount, Default::default());

    let order = kp.order(&creds, &order_request(&ready.tid)).await.unwrap();
    assert_eq!(order.status, OrderStatus::CancelPayment);
    assert_eq!(order.amount.as_ref().unwrap().total, 11000);
    assert_eq!(order.canceled_amount.as_ref().unwrap().total, 11000);
    assert_eq!(order.payment_action().unwrap().aid, approved.aid);
    assert_eq!(
        order.cancel_with_payload("rf_1").unwrap().amount,
        Some(3333)
    );
    assert_eq!(order.cancel_with_payload("rf_2").unwrap().aid, rest.aid);
    assert!(order.cancel_with_payload("rf_3").is_none());
    let kinds: Vec<_> = order
        .payment_action_details
        .iter()
        .map(|a| a.payment_action_type.clone())
        .collect();
    assert_eq!(
        kinds,
        [ActionType::Payment, ActionType::Cancel, ActionType::Cancel]
    );
    assert!(order.selected_card_info.is_some());

    // Nothing is left to cancel.
    let err = kp
        .cancel(&creds, &cancel_request(&ready.tid, 1, 0, 0, "rf_3"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Final);
}

fn readied_approve(
    tid: &str,
    order: &str,
    pg_token: kakaopay_worker::domain::PgToken,
    total: i64,
) -> kakaopay_worker::kakaopay::ApproveRequest {
    kakaopay_worker::kakaopay::ApproveRequest {
        cid: cid(),
        tid: Tid::parse(tid).unwrap(),
        partner_order_id: kakaopay_worker::domain::OrderId::parse(order).unwrap(),
        partner_user_id: kakaopay_worker::domain::UserId::parse("member_42").unwrap(),
        pg_token,
        payload: None,
        total_amount: Some(won(total)),
    }
}

#[tokio::test]
async fn open_api_lifecycle() {
    lifecycle(open_creds()).await;
}

#[tokio::test]
async fn legacy_api_lifecycle() {
    lifecycle(legacy_creds()).await;
}

#[tokio::test]
async fn a_wrong_key_is_final_401_in_both_generations() {
    let sim = spawn_sim().await;
    let kp = client(&sim);
    for creds in [
        Credentials::SecretKey(Secret::new("DEVWRONGKEY")),
        Credentials::AdminKey(Secret::new("wrong-admin-key")),
        // A right key in the wrong generation's scheme is still wrong.
        Credentials::AdminKey(Secret::new(kakaopay_worker::sim::DEFAULT_SECRET_KEY)),
    ] {
        let err = kp
            .ready(&creds, &ready_request("B-1", 1000, 0))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(-401), "{err}");
        assert!(err.is_unauthorized());
        assert_eq!(err.class(), ErrorClass::Final);
        assert!(matches!(
            err.kind,
            ErrorKind::Api {
                http_status: 401,
                ..
            }
        ));
    }
}

#[tokio::test]
async fn user_locked_is_transient_and_nothing_was_approved() {
    let sim = spawn_sim().await;
    let kp = client(&sim);
    let creds = open_creds();
    let (ready, approve) = readied_and_authorized(&sim, &kp, &creds, "B-2", 5000).await;
    add_fault(
        &sim,
        json!({"endpoint": "approve", "fault": "error", "code": -780, "method_result_code": "USER_LOCKED", "count": 1}),
    )
    .await;
    let err = kp.approve(&creds, &approve).await.unwrap_err();
    assert_eq!(err.code(), Some(-780));
    assert_eq!(err.method_result_code(), Some("USER_LOCKED"));
    assert_eq!(err.class(), ErrorClass::Transient);
    // The retry goes through.
    kp.approve(&creds, &approve).await.unwrap();
    let order = kp.order(&creds, &order_request(&ready.tid)).await.unwrap();
    assert_eq!(order.status, OrderStatus::SuccessPayment);
}

#[tokio::test]
async fn business_errors_are_final() {
    let sim = spawn_sim().await;
    let kp = client(&sim);
    let creds = legacy_creds();
    let (ready, approve) = readied_and_authorized(&sim, &kp, &creds, "B-3", 5000).await;

    let mut wrong_token = approve.clone();
    wrong_token.pg_token = kakaopay_worker::domain::PgToken::parse("0000000000000000000a").unwrap();
    let err = kp.approve(&creds, &wrong_token).await.unwrap_err();
    assert_eq!(
        (err.code(), err.class()),
        (Some(-780), ErrorClass::Final),
        "{err}"
    );

    let mut wrong_amount = approve.clone();
    wrong_amount.total_amount = Some(won(4999));
    let err = kp.approve(&creds, &wrong_amount).await.unwrap_err();
    assert_eq!(
        (err.code(), err.class()),
        (Some(-780), ErrorClass::Final),
        "{err}"
    );

    kp.approve(&creds, &approve).await.unwrap();
    let err = kp.approve(&creds, &approve).await.unwrap_err();
    assert_eq!(
        (err.code(), err.class()),
        (Some(-702), ErrorClass::Final),
        "a second approve: {err}"
    );

    // A stale race guard: KakaoPay refuses instead of over-refunding.
    let err = kp
        .cancel(&creds, &cancel_request(&ready.tid, 1000, 0, 4000, "rf_x"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Final, "{err}");
    let err = kp
        .cancel(&creds, &cancel_request(&ready.tid, 5001, 0, 5000, "rf_x"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Final, "{err}");
    let ledger = ledger(&sim, &ready.tid).await;
    assert_eq!(
        ledger["canceled_amount"]["total"], 0,
        "refused cancels moved nothing"
    );

    let err = kp
        .order(&creds, &order_request("T0000000000000000000"))
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.class()), (Some(-721), ErrorClass::Final));
}

#[tokio::test]
async fn http_500_without_a_body_is_transient() {
    let sim = spawn_sim().await;
    let kp = client(&sim);
    add_fault(
        &sim,
        json!({"endpoint": "ready", "fault": "http500", "count": 1}),
    )
    .await;
    let err = kp
        .ready(&open_creds(), &ready_request("B-4", 1000, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind,
            ErrorKind::Api {
                http_status: 500,
                code: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Transient);
    kp.ready(&open_creds(), &ready_request("B-4", 1000, 0))
        .await
        .unwrap();
}

#[tokio::test]
async fn commit_then_timeout_is_outcome_unknown_and_the_inquiry_shows_the_approval() {
    let sim = spawn_sim().await;
    let kp = crate::support::client_with(&sim.url, Duration::from_millis(300));
    let creds = open_creds();
    let (ready, mut approve) = readied_and_authorized(&sim, &kp, &creds, "B-5", 7000).await;
    approve.payload = Some(Payload::parse("pay_5").unwrap());
    add_fault(
        &sim,
        json!({"endpoint": "approve", "fault": "commit_then_fail", "then": "timeout", "ms": 5000, "count": 1}),
    )
    .await;
    let err = kp.approve(&creds, &approve).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert_eq!(err.class(), ErrorClass::OutcomeUnknown);

    let order = kp.order(&creds, &order_request(&ready.tid)).await.unwrap();
    assert_eq!(
        order.status,
        OrderStatus::SuccessPayment,
        "KakaoPay did apply it"
    );
    assert_eq!(
        order.payment_action().unwrap().payload.as_deref(),
        Some("pay_5")
    );
    let stats = stats(&sim).await;
    assert_eq!(stats["endpoints"]["approve"]["calls"], 1);
}

#[tokio::test]
async fn commit_then_500_on_cancel_is_visible_in_the_inquiry_by_payload() {
    let sim = spawn_sim().await;
    let kp = client(&sim);
    let creds = legacy_creds();
    let (ready, approve) = readied_and_authorized(&sim, &kp, &creds, "B-6", 30000).await;
    kp.approve(&creds, &approve).await.unwrap();
    add_fault(
        &sim,
        json!({"endpoint": "cancel", "fault": "commit_then_fail", "then": "500", "count": 1}),
    )
    .await;
    let err = kp
        .cancel(&creds, &cancel_request(&ready.tid, 30000, 0, 30000, "rf_6"))
        .await
        .unwrap_err();
    assert_eq!(
        err.class(),
        ErrorClass::Transient,
        "a 500 is retried, and a retry inquires first"
    );
    let order = kp.order(&creds, &order_request(&ready.tid)).await.unwrap();
    assert_eq!(order.status, OrderStatus::CancelPayment);
    assert!(order.cancel_with_payload("rf_6").is_some());
}

#[tokio::test]
async fn a_dropped_connection_is_outcome_unknown_and_applied_nothing() {
    let sim = spawn_sim().await;
    let kp = client(&sim);
    let creds = open_creds();
    let (ready, approve) = readied_and_authorized(&sim, &kp, &creds, "B-7", 1000).await;
    add_fault(
        &sim,
        json!({"endpoint": "approve", "fault": "drop", "count": 1}),
    )
    .await;
    let err = kp.approve(&creds, &approve).await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Dropped(_)), "{err:?}");
    assert_eq!(err.class(), ErrorClass::OutcomeUnknown);
    let order = kp.order(&creds, &order_request(&ready.tid)).await.unwrap();
    assert_eq!(order.status, OrderStatus::AuthPassword, "still approvable");
    kp.approve(&creds, &approve).await.unwrap();
}

#[tokio::test]
async fn latency_beyond_the_timeout_is_a_timeout() {
    let sim = spawn_sim().await;
    let kp = crate::support::client_with(&sim.url, Duration::from_millis(200));
    add_fault(
        &sim,
        json!({"endpoint": "order", "fault": "latency", "ms": 2000, "count": 1}),
    )
    .await;
    let err = kp
        .order(&open_creds(), &order_request("T0000000000000000000"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert_eq!(
        err.class(),
        ErrorClass::Transient,
        "an inquiry is always safe to repeat"
    );
}

#[tokio::test]
async fn nothing_listening_is_a_transient_connect_error() {
    // Bind then drop, so the port is very likely closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kp = KakaoPay::new(
        Some(format!("http://127.0.0.1:{port}").parse().unwrap()),
        kakaopay_worker::kakaopay::Timeouts::default(),
    )
    .unwrap();
    let err = kp
        .approve(
            &open_creds(),
            &readied_approve(
                "T0000000000000000000",
                "B-8",
                kakaopay_worker::domain::PgToken::parse("abc").unwrap(),
                1000,
            ),
        )
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Connect(_)), "{err:?}");
    assert_eq!(
        err.class(),
        ErrorClass::Transient,
        "nothing was sent, so a resend is safe"
    );
}

#[tokio::test]
async fn the_ready_window_expires() {
    let sim = spawn_sim_with(kakaopay_worker::sim::SimConfig {
        rules: kakaopay_worker::sim::Rules {
            ready_window: Duration::from_millis(300),
            expired_status: Some(OrderStatus::QuitPayment),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let kp = client(&sim);
    let creds = open_creds();
    let (ready, approve) = readied_and_authorized(&sim, &kp, &creds, "B-9", 1000).await;
    // The window is a wall-clock rule: waiting past it is the only way to test it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = kp.approve(&creds, &approve).await.unwrap_err();
    assert_eq!(err.code(), Some(-723), "{err}");
    assert_eq!(err.class(), ErrorClass::Final);
    let order = kp.order(&creds, &order_request(&ready.tid)).await.unwrap();
    assert_eq!(order.status, OrderStatus::QuitPayment);
}
