//! Contract tests against `fixtures/kakaopay/`, written from KAKAOPAY.md: every response
//! fixture parses, every request we build has its fixture's shape (and values), and the
//! simulator answers in the fixtures' shape.

use crate::support::*;
use kakaopay_worker::domain::{ItemName, OrderId, Payload, PgToken, Tid, UserId};
use kakaopay_worker::kakaopay::{
    form_body, parse_error_body, ApproveRequest, ApproveResponse, CancelRequest, CancelResponse,
    ErrorClass, ErrorKind, KakaoPayError, OrderRequest, OrderResponse, OrderStatus, ReadyRequest,
    ReadyResponse,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn fixture(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/kakaopay")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn json(path: &str) -> Value {
    serde_json::from_str(&fixture(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse<T: serde::de::DeserializeOwned>(path: &str) -> T {
    serde_json::from_str(&fixture(path)).unwrap_or_else(|e| panic!("{path} does not parse: {e}"))
}

#[test]
fn every_response_fixture_parses() {
    for gen in ["open", "legacy"] {
        let ready: ReadyResponse = parse(&format!("{gen}/ready.response.json"));
        assert_eq!(ready.tid, "T7c1f0a52e9b3d48a6f1");
        assert!(ready.next_redirect_pc_url.is_some());
        assert_eq!(
            ready.created_at.unwrap().utc().to_rfc3339(),
            "2025-03-01T05:05:12+00:00",
            "KST"
        );

        let approve: ApproveResponse = parse(&format!("{gen}/approve.response.json"));
        assert_eq!(approve.aid, "A7c1f0b13d2e4a59c8b7");
        assert_eq!(approve.amount.total, 22000);
        assert_eq!(approve.amount.vat, 2000);
        assert_eq!(
            approve.card_info.unwrap().install_month.as_deref(),
            Some("00")
        );

        let cancel: CancelResponse = parse(&format!("{gen}/cancel.response.json"));
        assert_eq!(cancel.status, OrderStatus::PartCancelPayment);
        assert_eq!(cancel.approved_cancel_amount.total, 5500);
        assert_eq!(cancel.cancel_available_amount.total, 16500);

        let order: OrderResponse = parse(&format!("{gen}/order.response.json"));
        assert_eq!(order.status, OrderStatus::PartCancelPayment);
        assert_eq!(
            order.selected_card_info.as_ref().unwrap().install_month,
            Some(0),
            "a number here"
        );
        assert_eq!(order.payment_action().unwrap().aid, "A7c1f0b13d2e4a59c8b7");
        assert!(order.cancel_with_payload("refund:RF-000045").is_some());
    }
    let money: ApproveResponse = parse("open/approve.response.money.json");
    assert_eq!(money.payment_method_type.as_deref(), Some("MONEY"));
    assert!(money.card_info.is_none());

    let full: CancelResponse = parse("open/cancel.response.full.json");
    assert_eq!(full.status, OrderStatus::CancelPayment);
    assert_eq!(full.cancel_available_amount.total, 0);
    assert_eq!(full.canceled_amount.total, 22000);

    let ready: OrderResponse = parse("open/order.response.ready.json");
    assert_eq!(ready.status, OrderStatus::Ready);
    assert!(ready.approved_at.is_none() && ready.payment_method_type.is_none());
    assert!(ready.canceled_amount.is_none() && ready.payment_action_details.is_empty());

    let minimal: OrderResponse = parse("open/order.response.minimal_actions.json");
    assert_eq!(minimal.status, OrderStatus::SuccessPayment);
    let action = minimal
        .payment_action()
        .expect("PAYMENT action with only the captured fields");
    assert!(action.amount.is_none() && action.payload.is_none());
}

#[test]
fn every_error_fixture_parses_and_classifies() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kakaopay/errors");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let expected_code: i64 = name.split('.').nth(1).unwrap().parse().unwrap();
        let status = if expected_code == -401 { 401 } else { 400 };
        let body = std::fs::read(&path).unwrap();
        let kind = parse_error_body(status, &body).unwrap_or_else(|| panic!("{name} not read"));
        let err = KakaoPayError {
            endpoint: kakaopay_worker::kakaopay::Endpoint::Approve,
            kind: kind.clone(),
        };
        assert_eq!(err.code(), Some(expected_code), "{name}");
        let ErrorKind::Api { message, .. } = &kind else {
            unreachable!()
        };
        assert!(!message.is_empty(), "{name}");
        let expected_class = if name.contains("user_locked") {
            ErrorClass::Transient
        } else {
            ErrorClass::Final
        };
        assert_eq!(err.class(), expected_class, "{name}");
        seen += 1;
    }
    assert!(seen >= 9, "all error fixtures were read");
}

/// The fixtures' request values, as our typed requests.
fn fixture_requests() -> (ReadyRequest, ApproveRequest, CancelRequest, OrderRequest) {
    let r = json("open/ready.request.json");
    let s = |v: &Value| v.as_str().unwrap().to_string();
    let ready = ReadyRequest {
        cid: cid(),
        partner_order_id: OrderId::parse(s(&r["partner_order_id"])).unwrap(),
        partner_user_id: UserId::parse(s(&r["partner_user_id"])).unwrap(),
        item_name: ItemName::parse(s(&r["item_name"])).unwrap(),
        item_code: Some(s(&r["item_code"])),
        quantity: 2,
        total_amount: won(22000),
        tax_free_amount: won(0),
        vat_amount: Some(won(2000)),
        green_deposit: None,
        approval_url: s(&r["approval_url"]),
        cancel_url: s(&r["cancel_url"]),
        fail_url: s(&r["fail_url"]),
        available_cards: None,
        payment_method_type: None,
        install_month: None,
        use_share_installment: None,
        custom_json: None,
    };
    let a = json("open/approve.request.json");
    let approve = ApproveRequest {
        cid: cid(),
        tid: Tid::parse(s(&a["tid"])).unwrap(),
        partner_order_id: OrderId::parse(s(&a["partner_order_id"])).unwrap(),
        partner_user_id: UserId::parse(s(&a["partner_user_id"])).unwrap(),
        pg_token: PgToken::parse(s(&a["pg_token"])).unwrap(),
        payload: Some(Payload::parse(s(&a["payload"])).unwrap()),
        total_amount: Some(won(22000)),
    };
    let c = json("open/cancel.request.json");
    let cancel = CancelRequest {
        cid: cid(),
        tid: Tid::parse(s(&c["tid"])).unwrap(),
        cancel_amount: won(5500),
        cancel_tax_free_amount: won(0),
        cancel_vat_amount: Some(won(500)),
        cancel_available_amount: Some(won(22000)),
        payload: Some(Payload::parse(s(&c["payload"])).unwrap()),
    };
    let order = order_request("T7c1f0a52e9b3d48a6f1");
    (ready, approve, cancel, order)
}

fn form_fields(body: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

#[test]
fn the_requests_we_build_match_their_fixtures() {
    let (ready, approve, cancel, order) = fixture_requests();
    // Open API: the JSON we send equals the fixture, field for field and value for value.
    assert_eq!(
        serde_json::to_value(&ready).unwrap(),
        json("open/ready.request.json")
    );
    assert_eq!(
        serde_json::to_value(&approve).unwrap(),
        json("open/approve.request.json")
    );
    assert_eq!(
        serde_json::to_value(&cancel).unwrap(),
        json("open/cancel.request.json")
    );
    assert_eq!(
        serde_json::to_value(&order).unwrap(),
        json("open/order.request.json")
    );
    // Older API: the same fields, form-encoded.
    assert_eq!(
        form_fields(&form_body(&ready)),
        form_fields(&fixture("legacy/ready.request.form"))
    );
    assert_eq!(
        form_fields(&form_body(&approve)),
        form_fields(&fixture("legacy/approve.request.form"))
    );
    assert_eq!(
        form_fields(&form_body(&cancel)),
        form_fields(&fixture("legacy/cancel.request.form"))
    );
    assert_eq!(
        form_fields(&form_body(&order)),
        form_fields(&fixture("legacy/order.request.form"))
    );
}

#[test]
fn lists_and_maps_go_as_json_strings_in_forms() {
    let (mut ready, ..) = fixture_requests();
    ready.available_cards = Some(vec!["KB".into(), "SHINHAN".into()]);
    ready.custom_json =
        Some([("return_custom_url".to_string(), "kakaotalk://".to_string())].into());
    let fields = form_fields(&form_body(&ready));
    assert_eq!(fields["available_cards"], r#"["KB","SHINHAN"]"#);
    assert_eq!(
        fields["custom_json"],
        r#"{"return_custom_url":"kakaotalk://"}"#
    );
    assert_eq!(fields["quantity"], "2");
}

/// Every key path of a JSON value (`amount.total`, `payment_action_details[].aid`, …).
fn shape(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    out.insert(path.clone());
                    walk(child, &path, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, &format!("{prefix}[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(v, "", &mut out);
    out
}

async fn post(sim: &kakaopay_worker::sim::SimServer, path: &str, body: &Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/online/v1/payment/{path}", sim.url))
        .header(
            "Authorization",
            format!("SECRET_KEY {}", kakaopay_worker::sim::DEFAULT_SECRET_KEY),
        )
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

#[tokio::test]
async fn the_simulator_answers_in_the_fixtures_shape() {
    let sim = spawn_sim().await;
    let ready = post(&sim, "ready", &json("open/ready.request.json")).await;
    assert_eq!(
        shape(&ready),
        shape(&json("open/ready.response.json")),
        "ready"
    );
    let tid = ready["tid"].as_str().unwrap().to_string();

    let order_req = serde_json::json!({"cid": "TC0ONETIME", "tid": tid});
    let fresh = post(&sim, "order", &order_req).await;
    // Before approval the simulator may say more (zero amounts), never less.
    assert!(
        shape(&fresh).is_superset(&shape(&json("open/order.response.ready.json"))),
        "order before approval"
    );

    let mut approve = json("open/approve.request.json");
    approve["tid"] = tid.clone().into();
    approve["pg_token"] = authorize(&sim, &tid).await.as_str().into();
    let approved = post(&sim, "approve", &approve).await;
    assert_eq!(
        shape(&approved),
        shape(&json("open/approve.response.json")),
        "approve"
    );

    let mut cancel = json("open/cancel.request.json");
    cancel["tid"] = tid.clone().into();
    let canceled = post(&sim, "cancel", &cancel).await;
    assert_eq!(
        shape(&canceled),
        shape(&json("open/cancel.response.json")),
        "cancel"
    );
    assert_eq!(
        canceled["cancel_available_amount"],
        json("open/cancel.response.json")["cancel_available_amount"]
    );

    let order = post(&sim, "order", &order_req).await;
    assert_eq!(
        shape(&order),
        shape(&json("open/order.response.json")),
        "order"
    );
    assert_eq!(
        order["canceled_amount"],
        json("open/order.response.json")["canceled_amount"]
    );
}
