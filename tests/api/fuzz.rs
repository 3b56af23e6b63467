//! Bad input of every shape to every route that takes a body or a query: never a 5xx, and
//! every 4xx in API.md's error shape (proptest, over HTTP against the real app).

use crate::support::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};

const FIELDS: [&str; 22] = [
    "location_id",
    "order_id",
    "user_id",
    "service",
    "item_name",
    "quantity",
    "total_amount",
    "tax_free_amount",
    "vat_amount",
    "starts_at",
    "return_url",
    "metadata",
    "refund_policy",
    "reason",
    "requested_by",
    "canceled_at",
    "context",
    "amount",
    "cid",
    "secret_key",
    "admin_key",
    "services",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-5i64..5).prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,40}".prop_map(Value::from),
        "\\PC{0,300}".prop_map(Value::from),
        Just(json!("bookings")),
        Just(json!("2026-12-01T10:00:00+09:00")),
        Just(json!("https://example.com/x")),
        Just(json!("TC0ONETIME")),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(2, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("[a-z_]{1,12}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn body() -> impl Strategy<Value = Value> {
    proptest::collection::vec((0..FIELDS.len(), value()), 0..10).prop_map(|kv| {
        Value::Object(
            kv.into_iter()
                .map(|(k, v)| (FIELDS[k].to_string(), v))
                .collect(),
        )
    })
}

fn check(status: u16, body: &str, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        status < 500 || status == 502 || status == 503,
        "{what}: HTTP {status} {body}"
    );
    if (400..500).contains(&status) {
        let v: Value = serde_json::from_str(body)
            .map_err(|e| TestCaseError::fail(format!("{what}: not JSON: {e}: {body}")))?;
        prop_assert!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "{what}: {body}"
        );
        prop_assert!(v["error"].get("field").is_some(), "{what}: {body}");
    }
    Ok(())
}

#[test]
fn no_body_or_query_makes_a_5xx_and_every_error_has_the_contract_shape() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (app, payment) = rt.block_on(async {
        let app = spawn_app().await;
        app.connect_open_api("loc_1").await;
        let id = app.paid(payment_body("loc_1", "B-fuzz")).await;
        app.wait_status(&id, "approved").await;
        (app, id)
    });
    let routes = [
        ("POST", "/v1/payments".to_string()),
        ("PUT", "/v1/locations/loc_fuzz/kakaopay".to_string()),
        ("PATCH", "/v1/locations/loc_1/kakaopay".to_string()),
        ("POST", format!("/v1/payments/{payment}/refunds")),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 500,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(0..routes.len(), body(), "[ -~]{0,20}"),
            |(route, body, key)| {
                let (method, path) = &routes[route];
                let token = if route == 3 && body.get("amount").is_some() {
                    CLIENT_TOKEN
                } else {
                    ADMIN_TOKEN
                };
                let (status, text) = rt.block_on(async {
                    let r = app
                        .http
                        .request(method.parse().unwrap(), format!("{}{path}", app.address))
                        .bearer_auth(token)
                        .header("Idempotency-Key", key.clone())
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    (r.status().as_u16(), r.text().await.unwrap())
                });
                check(status, &text, &format!("{method} {path} {body}"))
            },
        )
        .unwrap();

    let mut runner = TestRunner::new(Config {
        cases: 500,
        failure_persistence: None,
        ..Config::default()
    });
    let paths = [
        "/v1/transactions",
        "/v1/queues/cancel_payment/jobs",
        "/v1/payments/",
        "/v1/refunds/",
        "/board",
    ];
    runner
        .run(&(0..paths.len(), "[ -~]{0,60}"), |(p, query)| {
            let url = if p == 2 || p == 3 {
                format!(
                    "{}{}{}",
                    app.address,
                    paths[p],
                    url::form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
                )
            } else {
                format!(
                    "{}{}?{}",
                    app.address,
                    paths[p],
                    query.replace(' ', "%20").replace('#', "%23")
                )
            };
            let (status, text) = rt.block_on(async {
                let r = app
                    .http
                    .get(&url)
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            });
            if p == 4 {
                prop_assert!(status < 500, "{url}: HTTP {status}");
                return Ok(());
            }
            check(status, &text, &url)
        })
        .unwrap();
    rt.block_on(app.stop());
}
