//! Helpers shared by the integration tests: a simulator on a free port and a client for it.
#![allow(dead_code)] // each test file uses its own part

use kakaopay_worker::domain::{Cid, ItemName, OrderId, PgToken, Tid, UserId, Won};
use kakaopay_worker::kakaopay::{
    ApproveRequest, Credentials, KakaoPay, OrderRequest, ReadyRequest, ReadyResponse, Timeouts,
};
use kakaopay_worker::secret::Secret;
use kakaopay_worker::sim::{SimConfig, SimServer, DEFAULT_ADMIN_KEY, DEFAULT_SECRET_KEY};
use serde_json::{json, Value};
use std::time::Duration;

pub async fn spawn_sim() -> SimServer {
    spawn_sim_with(SimConfig::default()).await
}

pub async fn spawn_sim_with(config: SimConfig) -> SimServer {
    kakaopay_worker::tls::init();
    SimServer::spawn(config).await.expect("simulator starts")
}

/// A client with short timeouts, so that timeout tests stay fast.
pub fn client(sim: &SimServer) -> KakaoPay {
    client_with(&sim.url, Duration::from_millis(1500))
}

pub fn client_with(url: &str, total: Duration) -> KakaoPay {
    KakaoPay::new(
        Some(url.parse().unwrap()),
        Timeouts {
            connect: Duration::from_millis(500),
            total,
        },
    )
    .unwrap()
}

pub fn open_creds() -> Credentials {
    Credentials::SecretKey(Secret::new(DEFAULT_SECRET_KEY))
}

pub fn legacy_creds() -> Credentials {
    Credentials::AdminKey(Secret::new(DEFAULT_ADMIN_KEY))
}

pub fn cid() -> Cid {
    Cid::parse("TC0ONETIME").unwrap()
}

pub fn won(v: i64) -> Won {
    Won::new(v).unwrap()
}

pub fn ready_request(order: &str, total: i64, tax_free: i64) -> ReadyRequest {
    ReadyRequest {
        cid: cid(),
        partner_order_id: OrderId::parse(order).unwrap(),
        partner_user_id: UserId::parse("member_42").unwrap(),
        item_name: ItemName::parse("Meeting room A, 2h").unwrap(),
        item_code: None,
        quantity: 1,
        total_amount: won(total),
        tax_free_amount: won(tax_free),
        vat_amount: None,
        green_deposit: None,
        approval_url: format!("https://members.example.com/approve?order={order}"),
        cancel_url: "https://members.example.com/cancel".into(),
        fail_url: "https://members.example.com/fail".into(),
        available_cards: None,
        payment_method_type: None,
        install_month: None,
        use_share_installment: None,
        custom_json: None,
    }
}

/// Presses a button of the member's payment page through the control route; answers where
/// the browser would go next.
pub async fn press(sim: &SimServer, tid: &str, action: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/__sim/payments/{tid}/user", sim.url))
        .json(&json!({"action": action}))
        .send()
        .await
        .unwrap()
}

/// The member approves: returns the `pg_token` KakaoPay appended to `approval_url`.
pub async fn authorize(sim: &SimServer, tid: &str) -> PgToken {
    let answer: Value = press(sim, tid, "approve").await.json().await.unwrap();
    let url = url::Url::parse(answer["redirect_url"].as_str().unwrap()).unwrap();
    let token = url
        .query_pairs()
        .find(|(k, _)| k == "pg_token")
        .map(|(_, v)| v.into_owned())
        .expect("pg_token on the redirect");
    PgToken::parse(token).unwrap()
}

/// Ready, then the member authorises: what a worker needs to approve.
pub async fn readied_and_authorized(
    sim: &SimServer,
    kp: &KakaoPay,
    creds: &Credentials,
    order: &str,
    total: i64,
) -> (ReadyResponse, ApproveRequest) {
    let ready = kp
        .ready(creds, &ready_request(order, total, 0))
        .await
        .unwrap();
    let pg_token = authorize(sim, &ready.tid).await;
    let approve = ApproveRequest {
        cid: cid(),
        tid: Tid::parse(ready.tid.clone()).unwrap(),
        partner_order_id: OrderId::parse(order).unwrap(),
        partner_user_id: UserId::parse("member_42").unwrap(),
        pg_token,
        payload: None,
        total_amount: Some(won(total)),
    };
    (ready, approve)
}

pub fn order_request(tid: &str) -> OrderRequest {
    OrderRequest {
        cid: cid(),
        tid: Tid::parse(tid).unwrap(),
    }
}

pub async fn ledger(sim: &SimServer, tid: &str) -> Value {
    reqwest::get(format!("{}/__sim/ledger/{tid}", sim.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn add_fault(sim: &SimServer, rule: Value) {
    let status = reqwest::Client::new()
        .post(format!("{}/__sim/faults", sim.url))
        .json(&rule)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201, "fault rule accepted");
}

pub async fn stats(sim: &SimServer) -> Value {
    reqwest::get(format!("{}/__sim/stats", sim.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
