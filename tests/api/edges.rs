//! The contract at the edges: tokens and roles, signatures, every invalid field, unknown ids,
//! body size and type, a Redis outage. No answer is ever a 500.

use crate::support::*;
use kakaopay_worker::sim::DEFAULT_SECRET_KEY;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

fn assert_error(status: u16, answer: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{answer}");
    assert_eq!(answer["error"]["code"], code, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{answer}"
    );
    assert!(
        answer["error"].get("field").is_some(),
        "field is always present: {answer}"
    );
}

#[tokio::test]
async fn tokens_and_roles() {
    let app = spawn_app().await;
    let integration = "/v1/locations/loc_1/kakaopay";
    let body = json!({"cid": "TC0ONETIME", "secret_key": DEFAULT_SECRET_KEY});
    for token in [None, Some("wrong-token"), Some("")] {
        let (status, answer) = app
            .send(Method::PUT, integration, token, Some(body.clone()))
            .await;
        assert_error(status, &answer, 401, "unauthorized");
        let (status, answer) = app.create_payment(payment_body("loc_1", "B-1")).await;
        assert_eq!(status, 409, "the client token works: {answer}");
        let (status, answer) = app
            .send(
                Method::POST,
                "/v1/payments",
                token,
                Some(payment_body("loc_1", "B-1")),
            )
            .await;
        assert_error(status, &answer, 401, "unauthorized");
    }
    let r = app
        .http
        .get(format!(
            "{}/v1/payments/pay_000000000000000000000000",
            app.address
        ))
        .header("Authorization", format!("Basic {CLIENT_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "only bearer tokens");
    for method in [Method::PUT, Method::PATCH, Method::GET, Method::DELETE] {
        let (status, answer) = app
            .send(
                method.clone(),
                integration,
                Some(CLIENT_TOKEN),
                Some(body.clone()),
            )
            .await;
        assert_error(status, &answer, 403, "forbidden");
    }
    // An operator can do what a client can.
    let (status, _) = app
        .send(Method::PUT, integration, Some(ADMIN_TOKEN), Some(body))
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .send(
            Method::POST,
            "/v1/payments",
            Some(ADMIN_TOKEN),
            Some(payment_body("loc_1", "B-2")),
        )
        .await;
    assert_eq!(status, 201);
    app.stop().await;
}

#[tokio::test]
async fn every_invalid_payment_field_is_a_400_naming_it() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let cases: Vec<(&str, Value)> = vec![
        ("location_id", json!("")),
        ("location_id", json!("has space")),
        ("order_id", json!("")),
        ("order_id", json!("x".repeat(101))),
        ("user_id", json!("")),
        ("item_name", json!("i".repeat(101))),
        ("service", json!("spa")),
        ("quantity", json!(0)),
        ("quantity", json!(1.5)),
        ("total_amount", json!(0)),
        ("total_amount", json!(-1)),
        ("total_amount", json!("22000")),
        ("total_amount", json!(2_147_483_648i64)),
        ("total_amount", json!(22000.5)),
        ("tax_free_amount", json!(-1)),
        ("tax_free_amount", json!(22001)),
        ("vat_amount", json!(22001)),
        ("starts_at", json!("tomorrow")),
        ("starts_at", json!("2026-12-01T10:00:00")),
        ("return_url", json!("javascript:alert(1)")),
        ("metadata", json!("not an object")),
        ("metadata", json!({"big": "x".repeat(5000)})),
        ("refund_policy", json!({"rule": "sometimes"})),
    ];
    for (field, value) in cases {
        let mut body = payment_body("loc_1", "B-v");
        body[field] = value.clone();
        let (status, answer) = app.create_payment(body).await;
        assert_error(status, &answer, 400, "invalid_request");
        let named = answer["error"]["field"].as_str().unwrap_or("");
        assert!(named.starts_with(field), "{field}={value}: {answer}");
    }
    for missing in [
        "location_id",
        "order_id",
        "user_id",
        "service",
        "item_name",
        "quantity",
        "total_amount",
        "tax_free_amount",
    ] {
        let mut body = payment_body("loc_1", "B-v");
        body.as_object_mut().unwrap().remove(missing);
        let (status, answer) = app.create_payment(body).await;
        assert_error(status, &answer, 400, "invalid_request");
        assert_eq!(answer["error"]["field"], missing, "{answer}");
    }
    let mut body = payment_body("loc_1", "B-v");
    body.as_object_mut().unwrap().remove("starts_at");
    let (status, answer) = app.create_payment(body).await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (400, Some("starts_at")),
        "bookings need a start"
    );
    let mut body = payment_body("loc_1", "B-v");
    body["surprise"] = json!(1);
    let (status, answer) = app.create_payment(body).await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (400, Some("surprise"))
    );
    let mut shop = payment_body("loc_1", "B-shop");
    shop["service"] = json!("shop_products");
    shop.as_object_mut().unwrap().remove("starts_at");
    let (status, answer) = app.create_payment(shop).await;
    assert_eq!(status, 201, "no start needed for shop products: {answer}");
    assert_eq!(
        sim_ready_calls(&app).await,
        1,
        "no invalid request reached KakaoPay"
    );
    app.stop().await;
}

async fn sim_ready_calls(app: &TestApp) -> u64 {
    stats(&app.sim).await["endpoints"]["ready"]["calls"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test]
async fn integration_bodies_are_checked() {
    let app = spawn_app().await;
    let path = "/v1/locations/loc_1/kakaopay";
    for (body, field) in [
        (json!({"cid": "TC0ONETIME"}), "secret_key"),
        (
            json!({"cid": "TC0ONETIME", "secret_key": "a", "admin_key": "b"}),
            "admin_key",
        ),
        (json!({"cid": "SHORT", "secret_key": "a"}), "cid"),
        (json!({"secret_key": "a"}), "cid"),
        (
            json!({"cid": "TC0ONETIME", "secret_key": "has space"}),
            "secret_key",
        ),
        (
            json!({"cid": "TC0ONETIME", "secret_key": "k", "services": ["spa"]}),
            "services",
        ),
        (
            json!({"cid": "TC0ONETIME", "secret_key": "k", "refund_policy": {"spa": {"rule": "no_refund"}}}),
            "refund_policy",
        ),
        (
            json!({"cid": "TC0ONETIME", "secret_key": "k", "refund_policy": {"bookings": {"rule": "tiers"}}}),
            "refund_policy",
        ),
        (
            json!({"cid": "TC0ONETIME", "secret_key": "k", "automatic_refunds": "yes"}),
            "automatic_refunds",
        ),
    ] {
        let (status, answer) = app
            .send(Method::PUT, path, Some(ADMIN_TOKEN), Some(body.clone()))
            .await;
        assert_error(status, &answer, 400, "invalid_request");
        assert!(
            answer["error"]["field"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{body}: {answer}"
        );
    }
    let (status, answer) = app
        .send(
            Method::PUT,
            "/v1/locations/bad%20id/kakaopay",
            Some(ADMIN_TOKEN),
            Some(json!({"cid": "TC0ONETIME", "secret_key": "k"})),
        )
        .await;
    assert_error(status, &answer, 400, "invalid_request");
    let (status, answer) = app
        .send(
            Method::PATCH,
            path,
            Some(ADMIN_TOKEN),
            Some(json!({"services": []})),
        )
        .await;
    assert_error(status, &answer, 404, "not_found");
    let (status, answer) = app
        .send(Method::DELETE, path, Some(ADMIN_TOKEN), None)
        .await;
    assert_error(status, &answer, 404, "not_found");
    app.connect_open_api("loc_1").await;
    let (status, answer) = app
        .send(
            Method::PATCH,
            path,
            Some(ADMIN_TOKEN),
            Some(json!({"secret_key": "new"})),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (400, Some("secret_key")),
        "PATCH changes no key"
    );
    app.stop().await;
}

#[tokio::test]
async fn callbacks_need_their_own_signature() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let (_, first) = app.create_payment(payment_body("loc_1", "B-a")).await;
    let (_, second) = app.create_payment(payment_body("loc_1", "B-b")).await;
    let real = app
        .member_presses(first["tid"].as_str().unwrap(), "approve")
        .await;
    let second_id = second["payment_id"].as_str().unwrap();
    let first_id = first["payment_id"].as_str().unwrap();
    let first_sig = real.split('/').nth(6).unwrap().to_string();

    // Another payment's signature, a forged one, a tampered one.
    for url in [
        format!(
            "{}/kakaopay/callback/{second_id}/{first_sig}/approve?pg_token=abc",
            app.address
        ),
        format!(
            "{}/kakaopay/callback/{first_id}/forged/approve?pg_token=abc",
            app.address
        ),
        format!(
            "{}/kakaopay/callback/{first_id}/{}x/approve?pg_token=abc",
            app.address, first_sig
        ),
        format!(
            "{}/kakaopay/callback/{first_id}/{first_sig}A/cancel",
            app.address
        ),
    ] {
        let r = app.follow(&url).await;
        assert_eq!(r.status(), 403, "{url}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["error"]["code"], "bad_signature");
    }
    assert_eq!(
        app.payment(second_id).await["status"],
        "ready",
        "nothing changed"
    );

    let no_token = real.split('?').next().unwrap().to_string();
    let r = app.follow(&no_token).await;
    assert_eq!(r.status(), 400, "no pg_token");
    let r = app
        .follow(&format!(
            "{}/kakaopay/callback/pay_000000000000000000000000/{first_sig}/approve?pg_token=a",
            app.address
        ))
        .await;
    assert_eq!(
        r.status(),
        403,
        "the signature is checked before anything is looked up"
    );
    let unknown = "pay_zzzzzzzzzzzzzzzzzzzzzzzz";
    let sig = kakaopay_worker::http::callbacks::sign(CALLBACK_SECRET, unknown);
    let r = app
        .follow(&format!(
            "{}/kakaopay/callback/{unknown}/{sig}/approve?pg_token=a",
            app.address
        ))
        .await;
    assert_eq!(r.status(), 404, "an unknown payment");
    let r = app
        .follow(&format!(
            "{}/kakaopay/callback/{first_id}/{first_sig}/explode",
            app.address
        ))
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        app.follow(&real).await.status(),
        303,
        "the real one still works"
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_ids_bodies_and_media_types() {
    let app = spawn_app().await;
    for path in [
        "/v1/payments/pay_000000000000000000000000",
        "/v1/payments/nope",
        "/v1/payments/pay_x:history",
        "/v1/nothing",
    ] {
        let (status, answer) = app.send(Method::GET, path, Some(CLIENT_TOKEN), None).await;
        assert_error(status, &answer, 404, "not_found");
    }
    let (status, answer) = app
        .send(
            Method::GET,
            "/v1/locations/nowhere/kakaopay",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_error(status, &answer, 404, "not_found");

    let url = format!("{}/v1/payments", app.address);
    let r = app
        .http
        .post(&url)
        .bearer_auth(CLIENT_TOKEN)
        .header("Content-Type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = app
        .http
        .post(&url)
        .bearer_auth(CLIENT_TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415, "no content type");
    let big = json!({"metadata": "x".repeat(70 * 1024)}).to_string();
    let r = app
        .http
        .post(&url)
        .bearer_auth(CLIENT_TOKEN)
        .header("Content-Type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "payload_too_large");
    for junk in ["{", "[]", "null", "\"x\"", "{\"location_id\": 5}"] {
        let r = app
            .http
            .post(&url)
            .bearer_auth(CLIENT_TOKEN)
            .header("Content-Type", "application/json")
            .body(junk)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{junk}");
    }
    let (status, answer) = app
        .send(Method::DELETE, "/v1/payments", Some(CLIENT_TOKEN), None)
        .await;
    assert_eq!(status, 405, "{answer}");
    let r = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_kakaopay_refusal_of_ready_is_a_502_with_its_code_and_frees_the_order() {
    let app = spawn_app().await;
    app.connect_location("loc_1", json!({"secret_key": "DEVNOTAREALKEY"}))
        .await;
    let (status, answer) = app.create_payment(payment_body("loc_1", "B-k")).await;
    assert_error(status, &answer, 502, "kakaopay_error");
    assert_eq!(answer["error"]["kakaopay_code"], -401);
    assert!(!answer.to_string().contains("DEVNOTAREALKEY"));
    app.connect_open_api("loc_1").await;
    let (status, _) = app.create_payment(payment_body("loc_1", "B-k")).await;
    assert_eq!(status, 201, "the failed attempt did not keep the order");
    add_fault(
        &app.sim,
        json!({"endpoint": "ready", "fault": "drop", "count": 1}),
    )
    .await;
    let (status, answer) = app.create_payment(payment_body("loc_1", "B-k2")).await;
    assert_error(status, &answer, 503, "unavailable");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_identical_creates_make_one_payment() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    add_fault(
        &app.sim,
        json!({"endpoint": "ready", "fault": "latency", "ms": 300, "count": 1}),
    )
    .await;
    let answers = futures::future::join_all(
        (0..8).map(|_| app.create_payment(payment_body("loc_1", "B-same"))),
    )
    .await;
    let ids: std::collections::HashSet<_> = answers
        .iter()
        .map(|(_, a)| a["payment_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert_eq!(answers.iter().filter(|(s, _)| *s == 201).count(), 1);
    assert_eq!(sim_ready_calls(&app).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn redis_down_is_503_and_the_service_recovers() {
    let mut redis = PrivateRedis::start();
    let app = spawn_app_with(AppOptions {
        redis: Topology::Server(redis.url()),
        ..Default::default()
    })
    .await;
    app.connect_open_api("loc_1").await;
    let (_, created) = app.create_payment(payment_body("loc_1", "B-r")).await;
    let id = created["payment_id"].as_str().unwrap().to_string();
    redis.stop();
    let (status, answer) = app
        .send(
            Method::GET,
            &format!("/v1/payments/{id}"),
            Some(CLIENT_TOKEN),
            None,
        )
        .await;
    assert_error(status, &answer, 503, "unavailable");
    let (status, answer) = app.create_payment(payment_body("loc_1", "B-r2")).await;
    assert_error(status, &answer, 503, "unavailable");
    let r = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    redis.boot();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = app
            .send(
                Method::GET,
                &format!("/v1/payments/{id}"),
                Some(CLIENT_TOKEN),
                None,
            )
            .await;
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let callback = app
        .member_presses(created["tid"].as_str().unwrap(), "approve")
        .await;
    assert_eq!(app.follow(&callback).await.status(), 303);
    app.wait_status(&id, "approved").await;
    app.stop().await;
}

#[tokio::test]
async fn openapi_lists_every_route_and_every_listed_route_is_served() {
    let app = spawn_app().await;
    let doc: Value = app
        .http
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    documented.sort();
    // API.md's routes.
    let mut contract = vec![
        "PUT /v1/locations/{location_id}/kakaopay",
        "PATCH /v1/locations/{location_id}/kakaopay",
        "GET /v1/locations/{location_id}/kakaopay",
        "DELETE /v1/locations/{location_id}/kakaopay",
        "POST /v1/payments",
        "GET /v1/payments/{payment_id}",
        "POST /v1/payments/{payment_id}/refunds",
        "GET /v1/refunds/{refund_id}",
        "GET /v1/transactions",
        "GET /v1/queues",
        "GET /v1/queues/{name}/jobs",
        "POST /v1/queues/{name}/jobs/{job_id}/retry",
        "GET /v1/payments",
        "GET /v1/refunds",
        "POST /v1/refunds/{refund_id}/approve",
        "POST /v1/refunds/{refund_id}/dismiss",
        "GET /v1/queues/{name}/jobs/{job_id}",
        "DELETE /v1/queues/{name}/jobs/{job_id}",
        "POST /v1/queues/{name}/retry-dead",
        "POST /v1/queues/{name}/pause",
        "POST /v1/queues/{name}/resume",
        "GET /v1/workers",
        "GET /kakaopay/callback/{payment_id}/{sig}/{action}",
        "GET /metrics",
        "GET /healthz",
        "GET /readyz",
    ];
    contract.sort();
    assert_eq!(documented, contract);
    // An independent validator accepts the document (unique operation ids included).
    let mut validator = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys; from openapi_spec_validator import validate; validate(json.load(sys.stdin)); print('valid')",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with openapi-spec-validator (scripts/test installs it)");
    use std::io::Write;
    validator
        .stdin
        .take()
        .unwrap()
        .write_all(doc.to_string().as_bytes())
        .unwrap();
    let out = validator.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for route in &documented {
        let (method, path) = route.split_once(' ').unwrap();
        let concrete = path
            .replace("{location_id}", "loc_1")
            .replace("{payment_id}", "pay_000000000000000000000000")
            .replace("{refund_id}", "rf_000000000000000000000000")
            .replace("{name}", "approve_payment")
            .replace("{job_id}", "nope")
            .replace("{sig}", "sig")
            .replace("{action}", "approve");
        let r = app
            .http
            .request(
                method.parse().unwrap(),
                format!("{}{concrete}", app.address),
            )
            .bearer_auth(ADMIN_TOKEN)
            .header("Idempotency-Key", "k")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 405, "{route} is routed");
        if r.status() == 404 {
            let body: Value = r.json().await.unwrap();
            assert_ne!(
                body["error"]["message"], "no such route",
                "{route} is routed"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn every_framework_rejection_answers_the_error_body() {
    let app = spawn_app().await;
    // A path parameter that is not UTF-8, on every route that takes one.
    for path in [
        "/v1/payments/%FF",
        "/v1/refunds/%C3%28",
        "/v1/locations/%FF/kakaopay",
        "/v1/queues/%FF/jobs",
    ] {
        let (status, answer) = app.send(Method::GET, path, Some(ADMIN_TOKEN), None).await;
        assert_error(status, &answer, 400, "invalid_request");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("UTF-8"),
            "{answer}"
        );
    }
    // A method a route does not take, inside and outside /v1.
    for (method, path) in [
        (Method::PUT, "/v1/payments"),
        (Method::POST, "/healthz"),
        (Method::DELETE, "/metrics"),
    ] {
        let (status, answer) = app
            .send(method.clone(), path, Some(ADMIN_TOKEN), None)
            .await;
        assert_error(status, &answer, 405, "method_not_allowed");
        if path != "/v1/payments" {
            let r = app
                .http
                .request(method, format!("{}{path}", app.address))
                .send()
                .await
                .unwrap();
            assert!(
                r.headers()["allow"].to_str().unwrap().contains("GET"),
                "{path}"
            );
        }
    }
    app.stop().await;
}

async fn post_raw(app: &TestApp, path: &str, body: &str, key: Option<&[u8]>) -> (u16, Value) {
    let mut req = app
        .http
        .post(format!("{}{path}", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        req = req.header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes(key).unwrap(),
        );
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_body_is_one_json_value_with_each_key_once_at_every_depth() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let body = payment_body("loc_1", "B-strict").to_string();
    let (status, answer) = post_raw(&app, "/v1/payments", &format!("{body} {body}"), None).await;
    assert_error(status, &answer, 400, "invalid_request");
    assert_eq!(answer["error"]["field"], "body");
    let (status, answer) = post_raw(&app, "/v1/payments", &format!("{body}x"), None).await;
    assert_error(status, &answer, 400, "invalid_request");
    let nested = body.replace(
        r#""booking_id":"1""#,
        r#""booking_id":"1","booking_id":"2""#,
    );
    assert_ne!(nested, body);
    let (status, answer) = post_raw(&app, "/v1/payments", &nested, None).await;
    assert_error(status, &answer, 400, "invalid_request");
    assert_eq!(answer["error"]["field"], "metadata.booking_id");

    let id = app.paid(payment_body("loc_1", "B-strict-2")).await;
    app.wait_status(&id, "approved").await;
    let refund =
        r#"{"requested_by": "member", "context": {"fulfilled": false, "fulfilled": true}}"#;
    let path = format!("/v1/payments/{id}/refunds");
    let (status, answer) = post_raw(&app, &path, refund, Some(b"strict-1")).await;
    assert_error(status, &answer, 400, "invalid_request");
    assert_eq!(answer["error"]["field"], "context.fulfilled");
    let (status, answer) = post_raw(
        &app,
        &path,
        r#"{"requested_by": "member"} []"#,
        Some(b"strict-2"),
    )
    .await;
    assert_error(status, &answer, 400, "invalid_request");
    let (_, payment) = app
        .send(
            Method::GET,
            &format!("/v1/payments/{id}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(payment["refunds"], json!([]), "nothing was requested");
    app.stop().await;
}

#[tokio::test]
async fn small_edges_of_headers_and_messages() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    // Auth schemes are case-insensitive.
    for scheme in ["BEARER", "bearer", "Bearer"] {
        let r = app
            .http
            .get(format!(
                "{}/v1/payments/pay_000000000000000000000000",
                app.address
            ))
            .header("Authorization", format!("{scheme} {CLIENT_TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{scheme}");
    }
    // A client's request id is echoed when it is a short token, replaced otherwise.
    for (sent, kept) in [
        ("req-123.abc", true),
        (&*"x".repeat(10_000), false),
        ("two words", false),
    ] {
        let r = app
            .http
            .get(format!("{}/healthz", app.address))
            .header("X-Request-Id", sent)
            .send()
            .await
            .unwrap();
        let echoed = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(echoed == sent, kept, "{sent:.20}");
        assert!(echoed.len() <= 64);
    }
    // A quantity out of range says what the range is.
    let mut body = payment_body("loc_1", "B-qty");
    body["quantity"] = json!(1u64 << 40);
    let (status, answer) = app
        .send(Method::POST, "/v1/payments", Some(CLIENT_TOKEN), Some(body))
        .await;
    assert_error(status, &answer, 400, "invalid_request");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(!message.contains("at least 1"), "{message}");
    // An Idempotency-Key that is there but not text is not "missing".
    let id = app.paid(payment_body("loc_1", "B-key")).await;
    let path = format!("/v1/payments/{id}/refunds");
    let (status, answer) =
        post_raw(&app, &path, r#"{"requested_by": "member"}"#, Some(b"k\xff")).await;
    assert_error(status, &answer, 400, "invalid_request");
    assert_eq!(answer["error"]["field"], "Idempotency-Key");
    assert!(
        !answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("required"),
        "{answer}"
    );
    app.stop().await;
}

#[tokio::test]
async fn head_on_a_callback_changes_nothing_and_logs_carry_no_signature() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let (_, created) = app.create_payment(payment_body("loc_1", "B-head")).await;
    let id = created["payment_id"].as_str().unwrap().to_string();
    let approve = app
        .member_presses(created["tid"].as_str().unwrap(), "approve")
        .await;
    let sig = approve
        .split('/')
        .rev()
        .nth(1)
        .expect("…/{sig}/approve?pg_token=…")
        .to_string();
    assert!(sig.len() > 20, "{approve}");
    let r = app.http.head(&approve).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let (_, payment) = app
        .send(
            Method::GET,
            &format!("/v1/payments/{id}"),
            Some(CLIENT_TOKEN),
            None,
        )
        .await;
    assert_eq!(payment["status"], "ready", "HEAD did nothing");
    let cancel = approve.replace("/approve", "/cancel");
    app.follow(&cancel).await;
    app.follow(&approve).await;
    let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(
        logs.contains(&format!("/kakaopay/callback/{id}/[sig]/cancel")),
        "the callback is logged"
    );
    assert!(!logs.contains(&sig), "the signature is in the logs");
    app.stop().await;
}
