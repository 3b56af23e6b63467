//! The simulator as a black box: bad input gets KakaoPay-shaped errors (never a 5xx), the
//! member's page redirects like KakaoPay's, and the admin routes do what they say.

use crate::support::*;
use kakaopay_worker::sim::{DEFAULT_ADMIN_KEY, DEFAULT_SECRET_KEY};
use serde_json::{json, Value};

const OPEN_READY: &str = "/online/v1/payment/ready";
const LEGACY_READY: &str = "/v1/payment/ready";

fn good_ready() -> Value {
    serde_json::from_str(include_str!(
        "../../fixtures/kakaopay/open/ready.request.json"
    ))
    .unwrap()
}

async fn post_json(url: &str, auth: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .header("Authorization", auth)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post_form(url: &str, auth: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .header("Authorization", auth)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn open_auth() -> String {
    format!("SECRET_KEY {DEFAULT_SECRET_KEY}")
}

fn legacy_auth() -> String {
    format!("KakaoAK {DEFAULT_ADMIN_KEY}")
}

#[tokio::test]
async fn bad_json_bodies_get_open_api_errors_never_5xx() {
    let sim = spawn_sim().await;
    let url = format!("{}{OPEN_READY}", sim.url);
    let mut cases: Vec<String> = vec![
        "".into(),
        "{".into(),
        "[]".into(),
        "null".into(),
        "\"text\"".into(),
        "{}".into(),
    ];
    let mut mutate = |field: &str, value: Value| {
        let mut body = good_ready();
        body[field] = value;
        cases.push(body.to_string());
    };
    mutate("cid", json!("SHORT"));
    mutate("cid", json!(12345));
    mutate("partner_order_id", json!(""));
    mutate("partner_order_id", json!("x".repeat(101)));
    mutate("item_name", json!({"nested": true}));
    mutate("quantity", json!(0));
    mutate("quantity", json!(1.5));
    mutate("quantity", json!("many"));
    mutate("total_amount", json!(-1));
    mutate("total_amount", json!(0));
    mutate("total_amount", json!(1e30));
    mutate("total_amount", json!(u64::MAX));
    mutate("tax_free_amount", json!(999_999));
    mutate("vat_amount", json!(-5));
    mutate("approval_url", json!("ftp://x"));
    mutate(
        "approval_url",
        json!(format!("https://{}", "a".repeat(260))),
    );
    mutate("install_month", json!(13));
    mutate("payment_method_type", json!("CASH"));
    mutate("available_cards", json!([1, 2]));
    mutate("custom_json", json!("not a map"));
    let mut missing = good_ready();
    missing.as_object_mut().unwrap().remove("fail_url");
    cases.push(missing.to_string());

    for body in &cases {
        let (status, answer) = post_json(&url, &open_auth(), body).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["error_code"], -2, "{body} → {answer}");
        assert!(answer["error_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert!(answer.get("code").is_none(), "open API error shape only");
    }
    let (status, _) = post_json(&url, &open_auth(), &good_ready().to_string()).await;
    assert_eq!(status, 200, "the unmutated body is fine");
}

#[tokio::test]
async fn the_open_api_wants_json_and_the_legacy_api_takes_form_or_query() {
    let sim = spawn_sim().await;
    let form = include_str!("../../fixtures/kakaopay/legacy/ready.request.form");
    let (status, answer) = post_form(&format!("{}{OPEN_READY}", sim.url), &open_auth(), form).await;
    assert_eq!((status, answer["error_code"].as_i64()), (400, Some(-2)));

    let (status, answer) =
        post_form(&format!("{}{LEGACY_READY}", sim.url), &legacy_auth(), form).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["tid"].as_str().unwrap().len(), 20);

    // Fields in the query string of the POST work too, as real clients use them.
    let (status, answer) = post_form(
        &format!("{}{LEGACY_READY}?{form}", sim.url),
        &legacy_auth(),
        "",
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    let (status, answer) = post_form(
        &format!("{}{LEGACY_READY}", sim.url),
        &legacy_auth(),
        "cid=TC0ONETIME&quantity=abc",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(answer["code"], -2, "legacy error shape: {answer}");
    assert!(answer["msg"].is_string() && answer.get("error_code").is_none());
}

#[tokio::test]
async fn auth_failures_are_401_in_each_generations_shape() {
    let sim = spawn_sim().await;
    let body = good_ready().to_string();
    for auth in [
        "",
        "SECRET_KEY",
        "SECRET_KEY wrong",
        "Bearer x",
        &legacy_auth(),
    ] {
        let (status, answer) = post_json(&format!("{}{OPEN_READY}", sim.url), auth, &body).await;
        assert_eq!(
            (status, answer["error_code"].as_i64()),
            (401, Some(-401)),
            "{auth:?}"
        );
    }
    // DEV_SECRET_KEY, which one public adapter sends for dev keys, is accepted.
    let (status, _) = post_json(
        &format!("{}{OPEN_READY}", sim.url),
        &format!("DEV_SECRET_KEY {DEFAULT_SECRET_KEY}"),
        &body,
    )
    .await;
    assert_eq!(status, 200);
    let (status, answer) = post_form(&format!("{}{LEGACY_READY}", sim.url), &open_auth(), "").await;
    assert_eq!((status, answer["code"].as_i64()), (401, Some(-401)));
}

#[tokio::test]
async fn approve_and_cancel_refuse_what_kakaopay_refuses() {
    let sim = spawn_sim().await;
    let (_, ready) = post_json(
        &format!("{}{OPEN_READY}", sim.url),
        &open_auth(),
        &good_ready().to_string(),
    )
    .await;
    let tid = ready["tid"].as_str().unwrap();
    let approve_url = format!("{}/online/v1/payment/approve", sim.url);
    let cancel_url = format!("{}/online/v1/payment/cancel", sim.url);
    let base = json!({"cid": "TC0ONETIME", "tid": tid, "partner_order_id": "ORD-20250301-000123",
                      "partner_user_id": "user-42", "pg_token": "2c44d553eb444534f36d"});

    // Not authorised by the member yet.
    let (status, answer) = post_json(&approve_url, &open_auth(), &base.to_string()).await;
    assert_eq!(
        (status, answer["error_code"].as_i64()),
        (400, Some(-780)),
        "{answer}"
    );
    // Cancel before approval.
    let cancel =
        json!({"cid": "TC0ONETIME", "tid": tid, "cancel_amount": 100, "cancel_tax_free_amount": 0});
    let (status, answer) = post_json(&cancel_url, &open_auth(), &cancel.to_string()).await;
    assert_eq!(status, 400, "{answer}");
    // Another merchant's cid cannot see the tid.
    let mut other = base.clone();
    other["cid"] = json!("TCOTHERCID");
    let (_, answer) = post_json(&approve_url, &open_auth(), &other.to_string()).await;
    assert_eq!(answer["error_code"], -721);

    let redirect: Value = press(&sim, tid, "approve").await.json().await.unwrap();
    let token = redirect["redirect_url"]
        .as_str()
        .unwrap()
        .rsplit("pg_token=")
        .next()
        .unwrap()
        .to_string();
    assert_eq!(token.len(), 20);
    let mut approve = base.clone();
    approve["pg_token"] = json!(token);
    approve["partner_user_id"] = json!("someone-else");
    let (_, answer) = post_json(&approve_url, &open_auth(), &approve.to_string()).await;
    assert_eq!(answer["error_code"], -780, "partner ids must match ready");
    approve["partner_user_id"] = json!("user-42");
    let (status, answer) = post_json(&approve_url, &open_auth(), &approve.to_string()).await;
    assert_eq!(status, 200, "{answer}");

    for (body, why) in [
        (
            json!({"cid": "TC0ONETIME", "tid": tid, "cancel_amount": 0, "cancel_tax_free_amount": 0}),
            "zero",
        ),
        (
            json!({"cid": "TC0ONETIME", "tid": tid, "cancel_amount": 22001, "cancel_tax_free_amount": 0}),
            "over",
        ),
        (
            json!({"cid": "TC0ONETIME", "tid": tid, "cancel_amount": 100, "cancel_tax_free_amount": 1}),
            "tax-free over",
        ),
        (
            json!({"cid": "TC0ONETIME", "tid": tid, "cancel_amount": 100, "cancel_tax_free_amount": 0, "cancel_available_amount": 21000}),
            "stale guard",
        ),
        (
            json!({"cid": "TC0ONETIME", "tid": tid, "cancel_amount": 100, "cancel_tax_free_amount": 0, "cancel_vat_amount": 5000}),
            "vat over",
        ),
        (
            json!({"cid": "TC0ONETIME", "tid": tid, "cancel_amount": 100}),
            "missing tax-free",
        ),
    ] {
        let (status, answer) = post_json(&cancel_url, &open_auth(), &body.to_string()).await;
        assert_eq!(status, 400, "{why}: {answer}");
        assert!(answer["error_code"].as_i64().unwrap() < 0, "{why}");
    }
    let ledger = ledger(&sim, tid).await;
    assert_eq!(ledger["status"], "SUCCESS_PAYMENT");
    assert_eq!(ledger["canceled_amount"]["total"], 0);
}

#[tokio::test]
async fn green_deposit_forbids_partial_cancels() {
    let sim = spawn_sim().await;
    let mut body = good_ready();
    body["green_deposit"] = json!(1000);
    let (_, ready) = post_json(
        &format!("{}{OPEN_READY}", sim.url),
        &open_auth(),
        &body.to_string(),
    )
    .await;
    let tid = ready["tid"].as_str().unwrap();
    let redirect: Value = press(&sim, tid, "approve").await.json().await.unwrap();
    let token = redirect["redirect_url"]
        .as_str()
        .unwrap()
        .rsplit("pg_token=")
        .next()
        .unwrap()
        .to_string();
    let approve = json!({"cid": "TC0ONETIME", "tid": tid, "partner_order_id": "ORD-20250301-000123",
                         "partner_user_id": "user-42", "pg_token": token});
    let (status, _) = post_json(
        &format!("{}/online/v1/payment/approve", sim.url),
        &open_auth(),
        &approve.to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let cancel_url = format!("{}/online/v1/payment/cancel", sim.url);
    let partial = json!({"cid": "TC0ONETIME", "tid": tid, "cancel_amount": 1000, "cancel_tax_free_amount": 0});
    let (status, _) = post_json(&cancel_url, &open_auth(), &partial.to_string()).await;
    assert_eq!(status, 400);
    let full = json!({"cid": "TC0ONETIME", "tid": tid, "cancel_amount": 22000, "cancel_tax_free_amount": 0});
    let (status, answer) = post_json(&cancel_url, &open_auth(), &full.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "CANCEL_PAYMENT");
}

#[tokio::test]
async fn the_payment_page_redirects_like_kakaopay() {
    let sim = spawn_sim().await;
    let (_, ready) = post_json(
        &format!("{}{OPEN_READY}", sim.url),
        &open_auth(),
        &good_ready().to_string(),
    )
    .await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for key in [
        "next_redirect_pc_url",
        "next_redirect_mobile_url",
        "next_redirect_app_url",
    ] {
        let page = browser
            .get(ready[key].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200, "{key}");
        let html = page.text().await.unwrap();
        assert!(
            html.contains("초코파이 외 1건") && html.contains("22000"),
            "{key}"
        );
        assert!(html.contains("id=\"approve\""));
    }
    let tid = ready["tid"].as_str().unwrap();
    assert_eq!(
        ledger(&sim, tid).await["status"],
        "OPEN_PAYMENT",
        "opening the page is seen"
    );

    let pc = ready["next_redirect_pc_url"].as_str().unwrap();
    let action = pc.replace("/info", "/action/approve");
    let answer = browser
        .post(&action)
        .form(&[("method", "MONEY")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let location = answer.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(
            "https://shop.example.com/pay/kakao/approve?order=ORD-20250301-000123&pg_token="
        ),
        "the merchant's own query is kept: {location}"
    );
    // Pressing again sends the same token (a repeated callback, not a new authorisation).
    let again = browser.post(&action).send().await.unwrap();
    assert_eq!(again.headers()["location"].to_str().unwrap(), location);
    assert_eq!(ledger(&sim, tid).await["status"], "AUTH_PASSWORD");

    let cancel = browser
        .post(pc.replace("/info", "/action/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 303);
    assert!(cancel.headers()["location"]
        .to_str()
        .unwrap()
        .contains("/pay/kakao/cancel"));
    assert_eq!(ledger(&sim, tid).await["status"], "QUIT_PAYMENT");
    let late = browser.post(&action).send().await.unwrap();
    assert_eq!(
        late.status(),
        409,
        "a quit payment cannot be approved from the page"
    );

    assert_eq!(
        browser
            .get(format!("{}/mockup/v1/nope/info", sim.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        browser
            .post(format!("{}/mockup/v1/nope/action/approve", sim.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn item_names_are_escaped_on_the_page() {
    let sim = spawn_sim().await;
    let mut body = good_ready();
    body["item_name"] = json!("<script>alert(1)</script>");
    let (_, ready) = post_json(
        &format!("{}{OPEN_READY}", sim.url),
        &open_auth(),
        &body.to_string(),
    )
    .await;
    let html = reqwest::get(ready["next_redirect_pc_url"].as_str().unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<script>alert"));
    assert!(html.contains("&lt;script&gt;"));
}

#[tokio::test]
async fn control_routes_refuse_nonsense() {
    let sim = spawn_sim().await;
    let http = reqwest::Client::new();
    for body in [
        json!({"fault": "explode"}),
        json!({"endpoint": "refund", "fault": "http500"}),
        json!({"fault": "error"}),
        json!([{"fault": "drop"}, {"fault": "latency"}]),
    ] {
        let r = http
            .post(format!("{}/__sim/faults", sim.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }
    let r = http
        .post(format!("{}/__sim/faults", sim.url))
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let listed: Value = http
        .get(format!("{}/__sim/faults", sim.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["faults"],
        json!([]),
        "a refused list adds nothing, not even its good rules"
    );

    add_fault(
        &sim,
        json!([{"endpoint": "order", "fault": "drop", "count": 2}, {"fault": "latency", "ms": 1}]),
    )
    .await;
    let listed: Value = http
        .get(format!("{}/__sim/faults", sim.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["faults"].as_array().unwrap().len(), 2);
    assert_eq!(
        http.delete(format!("{}/__sim/faults", sim.url))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    let r = press(&sim, "T0000000000000000000", "approve").await;
    assert_eq!(r.status(), 404);
    let (_, ready) = post_json(
        &format!("{}{OPEN_READY}", sim.url),
        &open_auth(),
        &good_ready().to_string(),
    )
    .await;
    let r = press(&sim, ready["tid"].as_str().unwrap(), "dance").await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        http.get(format!("{}/__sim/ledger/T0000000000000000000", sim.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn the_ledger_lists_every_payment_with_its_actions() {
    let sim = spawn_sim().await;
    let kp = client(&sim);
    let creds = open_creds();
    let (ready, approve) = readied_and_authorized(&sim, &kp, &creds, "B-L1", 9000).await;
    kp.approve(&creds, &approve).await.unwrap();
    kp.ready(&creds, &ready_request("B-L2", 500, 0))
        .await
        .unwrap();
    let all: Value = reqwest::get(format!("{}/__sim/ledger", sim.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let payments = all["payments"].as_array().unwrap();
    assert_eq!(payments.len(), 2);
    assert_eq!(payments[0]["tid"], ready.tid.as_str());
    assert_eq!(payments[0]["status"], "SUCCESS_PAYMENT");
    assert_eq!(payments[0]["actions"][0]["payment_action_type"], "PAYMENT");
    assert_eq!(payments[0]["actions"][0]["amount"], 9000);
    assert_eq!(payments[1]["status"], "READY");
    let stats = stats(&sim).await;
    assert_eq!(stats["endpoints"]["ready"]["calls"], 2);
    assert_eq!(stats["endpoints"]["approve"]["succeeded"], 1);
}
