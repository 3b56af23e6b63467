//! What operators see and steer: queues over HTTP and on the command line, the transactions
//! report as JSON and CSV.

mod board;

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

/// A refund for a payment that does not exist: its job dies at once, leaving a dead job.
async fn dead_job(app: &TestApp) -> String {
    let conn = app.conn().await;
    let producer = kakaopay_jobs::queue::Producer::new(conn, &app.namespace);
    let request = kakaopay_jobs::RefundRequest::new("member", "test");
    let requested = kakaopay_jobs::refunds::request_refund(
        &producer,
        "pay_nosuchpayment0000000000",
        "k1",
        request,
    )
    .await
    .unwrap();
    let job = kakaopay_jobs::refunds::job_id(&requested.refund_id);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, answer) = app
            .send(
                Method::GET,
                "/v1/queues/cancel_payment/jobs?status=dead",
                Some(ADMIN_TOKEN),
                None,
            )
            .await;
        if answer["jobs"].as_array().is_some_and(|j| !j.is_empty()) {
            return job;
        }
        assert!(Instant::now() < deadline, "no dead job: {answer}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn queues_over_http() {
    let app = spawn_app().await;
    let (status, _) = app.send(Method::GET, "/v1/queues", None, None).await;
    assert_eq!(status, 401);
    let (status, answer) = app
        .send(Method::GET, "/v1/queues", Some(CLIENT_TOKEN), None)
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );

    let job = dead_job(&app).await;
    let (status, answer) = app
        .send(Method::GET, "/v1/queues", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = answer["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["approve_payment", "cancel_payment", "deliver_event"]
    );
    let cancel = &answer["queues"][1];
    for field in ["pending", "running", "scheduled", "done", "failed", "dead"] {
        assert!(cancel[field].is_u64(), "{field}: {cancel}");
    }
    assert_eq!(cancel["dead"], 1);

    let (_, dead) = app
        .send(
            Method::GET,
            "/v1/queues/cancel_payment/jobs?status=dead&limit=10",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    let listed = &dead["jobs"][0];
    assert_eq!(listed["id"], job.as_str());
    assert_eq!(listed["attempts"], 1);
    assert!(
        listed["last_error"]
            .as_str()
            .unwrap()
            .contains("no payment"),
        "{listed}"
    );
    assert!(listed["updated_at"].is_string() && listed["enqueued_at"].is_string());

    let (status, answer) = app
        .send(
            Method::POST,
            &format!("/v1/queues/cancel_payment/jobs/{job}/retry"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let (status, _) = app
        .send(
            Method::POST,
            &format!("/v1/queues/cancel_payment/jobs/{job}/retry"),
            Some(CLIENT_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .send(
            Method::POST,
            "/v1/queues/cancel_payment/jobs/nope/retry",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 404);
    for (path, status, field) in [
        ("/v1/queues/nope/jobs", 404, None),
        (
            "/v1/queues/cancel_payment/jobs?status=weird",
            400,
            Some("status"),
        ),
        ("/v1/queues/cancel_payment/jobs?limit=0", 400, Some("limit")),
        (
            "/v1/queues/cancel_payment/jobs?limit=abc",
            400,
            Some("limit"),
        ),
        (
            "/v1/queues/cancel_payment/jobs?status=%ZZ",
            400,
            Some("status"),
        ),
    ] {
        let (s, answer) = app.send(Method::GET, path, Some(ADMIN_TOKEN), None).await;
        assert_eq!(s, status, "{path}: {answer}");
        assert_eq!(answer["error"]["field"].as_str(), field, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn queues_on_the_command_line() {
    let app = spawn_app().await;
    let job = dead_job(&app).await;
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kakaopay-worker"))
            .arg("queues")
            .args(args)
            .envs(app.redis_env())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, table, _) = cli(&[]);
    assert_eq!(code, Some(0));
    let row = table
        .lines()
        .find(|l| l.starts_with("cancel_payment"))
        .expect("a cancel_payment row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        ["cancel_payment", "0", "0", "0", "0", "0", "1"],
        "{table}"
    );
    let (code, shown, _) = cli(&["show", "cancel_payment"]);
    assert_eq!(code, Some(0));
    assert!(
        shown.contains(&job) && shown.contains("no payment"),
        "{shown}"
    );
    let (code, out, _) = cli(&["retry", "cancel_payment", &job]);
    assert_eq!(code, Some(0), "{out}");
    let (code, _, err) = cli(&["retry", "cancel_payment", "nope"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no job"), "{err}");
    let (code, _, err) = cli(&["show", "nope"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no queue"), "{err}");
    app.stop().await;
}

#[tokio::test]
async fn the_transactions_report_as_json_and_csv() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let before = chrono::Utc::now();
    let id = app.paid(payment_body("loc_1", "B-report")).await;
    app.wait_status(&id, "approved").await;
    let r = app
        .http
        .post(format!("{}/v1/payments/{id}/refunds", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .header("Idempotency-Key", "report-1")
        .json(&json!({"requested_by": "admin", "amount": 5000}))
        .send()
        .await
        .unwrap();
    let refund_id = r.json::<Value>().await.unwrap()["refund_id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_refund(&refund_id, "succeeded", Duration::from_secs(10))
        .await;
    let payment = app.payment(&id).await;

    let (status, rows) = app
        .send(
            Method::GET,
            "/v1/transactions?location_id=loc_1",
            Some(CLIENT_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rows}");
    let rows = rows.as_array().unwrap().clone();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (
            rows[0]["type"].as_str(),
            rows[0]["amount"].as_i64(),
            rows[0]["status"].as_str()
        ),
        (Some("refund"), Some(5000), Some("succeeded"))
    );
    assert_eq!(
        (
            rows[1]["type"].as_str(),
            rows[1]["amount"].as_i64(),
            rows[1]["status"].as_str()
        ),
        (Some("payment"), Some(22000), Some("partially_refunded"))
    );
    for row in &rows {
        assert_eq!(
            row["id"], "B-report",
            "the order id operators search KakaoPay's dashboard for"
        );
        assert_eq!(row["tid"], payment["tid"]);
        assert_eq!(row["aid"].as_str().unwrap().len(), 20);
        assert!(row["description"]
            .as_str()
            .unwrap()
            .contains("Meeting room A"));
    }
    assert_eq!(rows[1]["aid"], payment["aid"]);

    let csv_text = app
        .http
        .get(format!("{}/v1/transactions?location_id=loc_1", app.address))
        .bearer_auth(CLIENT_TOKEN)
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "id",
            "time",
            "description",
            "type",
            "amount",
            "status",
            "tid",
            "aid"
        ]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), rows.len());
    for (record, row) in records.iter().zip(&rows) {
        for (i, field) in [
            "id",
            "time",
            "description",
            "type",
            "amount",
            "status",
            "tid",
            "aid",
        ]
        .iter()
        .enumerate()
        {
            let json_value = match &row[*field] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(&record[i], json_value, "{field}");
        }
    }

    let from = (before - chrono::Duration::seconds(60)).to_rfc3339();
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let q = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let (_, within) = app
        .send(
            Method::GET,
            &format!("/v1/transactions?location_id=loc_1&from={}", q(&from)),
            Some(CLIENT_TOKEN),
            None,
        )
        .await;
    assert_eq!(within.as_array().unwrap().len(), 2);
    let (_, none) = app
        .send(
            Method::GET,
            &format!("/v1/transactions?location_id=loc_1&from={}", q(&future)),
            Some(CLIENT_TOKEN),
            None,
        )
        .await;
    assert_eq!(none, json!([]));
    let (_, other) = app
        .send(
            Method::GET,
            "/v1/transactions?location_id=elsewhere",
            Some(CLIENT_TOKEN),
            None,
        )
        .await;
    assert_eq!(other, json!([]));
    for (path, field) in [
        ("/v1/transactions", "location_id"),
        ("/v1/transactions?location_id=loc_1&from=yesterday", "from"),
        (
            &format!(
                "/v1/transactions?location_id=loc_1&from={}&to={}",
                q(&future),
                q(&from)
            ),
            "from",
        ),
    ] {
        let (status, answer) = app.send(Method::GET, path, Some(CLIENT_TOKEN), None).await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (400, Some(field)),
            "{path}"
        );
    }
    app.stop().await;
}

/// The value of the series `name` whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_read_back_exactly_after_a_known_sequence() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let id = app.paid(payment_body("loc_1", "B-metrics")).await;
    app.wait_status(&id, "approved").await;
    let r = app
        .http
        .post(format!("{}/v1/payments/{id}/refunds", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .header("Idempotency-Key", "m-1")
        .json(&json!({"requested_by": "admin", "amount": 2000}))
        .send()
        .await
        .unwrap();
    let refund_id = r.json::<Value>().await.unwrap()["refund_id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_refund(&refund_id, "succeeded", Duration::from_secs(10))
        .await;
    let _ = app
        .send(
            Method::GET,
            "/v1/payments/pay_000000000000000000000000",
            Some(CLIENT_TOKEN),
            None,
        )
        .await;
    // The two events (approved, refund succeeded) settle without a webhook.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, q) = app
            .send(Method::GET, "/v1/queues", Some(ADMIN_TOKEN), None)
            .await;
        if q["queues"][2]["done"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{q}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let text = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ns = app.namespace.as_str();
    let value = |name: &str, labels: &[(&str, &str)]| {
        let mut all = vec![("namespace", ns)];
        all.extend_from_slice(labels);
        metric(&text, name, &all).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    assert_eq!(
        value(
            "queue_jobs",
            &[("queue", "approve_payment"), ("state", "done")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "queue_jobs",
            &[("queue", "cancel_payment"), ("state", "done")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "queue_jobs",
            &[("queue", "deliver_event"), ("state", "done")]
        ),
        2.0
    );
    assert_eq!(
        value(
            "queue_jobs",
            &[("queue", "approve_payment"), ("state", "dead")]
        ),
        0.0
    );
    assert_eq!(
        value(
            "jobs_total",
            &[("kind", "approve_payment"), ("outcome", "done")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "jobs_total",
            &[("kind", "cancel_payment"), ("outcome", "done")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "jobs_total",
            &[("kind", "deliver_event"), ("outcome", "done")]
        ),
        2.0
    );
    assert_eq!(
        value(
            "http_requests_total",
            &[
                ("route", "/v1/payments"),
                ("method", "POST"),
                ("status", "201")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            "http_requests_total",
            &[("route", "/v1/payments/{payment_id}"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "http_requests_total",
            &[
                ("route", "/v1/payments/{payment_id}/refunds"),
                ("status", "202")
            ]
        ),
        1.0
    );
    assert!(value("job_duration_seconds_count", &[("kind", "approve_payment")]) >= 1.0);
    assert!(
        metric(
            &text,
            "kakaopay_request_duration_seconds_count",
            &[("endpoint", "approve")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        metric(
            &text,
            "kakaopay_request_duration_seconds_count",
            &[("endpoint", "cancel")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        !text.contains(CLIENT_TOKEN) && !text.contains(kakaopay_worker::sim::DEFAULT_SECRET_KEY)
    );
    app.stop().await;
}

#[tokio::test]
async fn the_board_shows_queues_and_retries_dead_jobs_for_operators_only() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let id = app.paid(payment_body("loc_1", "B-board")).await;
    app.wait_status(&id, "approved").await;
    let job = dead_job(&app).await;
    let board = format!("{}/board", app.address);

    // Nobody, a client, a wrong token: sent to the login form, not shown the board.
    for token in [None, Some(CLIENT_TOKEN)] {
        let mut req = app.http.get(&board);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/board/login");
    }
    let r = app.http.get(format!("{board}/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"token\"") && !html.contains("id=\"queues\""));
    let r = app
        .http
        .post(format!("{board}/login"))
        .form(&[("token", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .http
        .post(format!("{board}/retry/cancel_payment/{job}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "no retry without an operator");
    assert_eq!(r.headers()["location"], "/board/login");

    // An operator logs in: a session cookie, never the token itself.
    let r = app
        .http
        .post(format!("{board}/login"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(ADMIN_TOKEN));
    let session = cookie.split(';').next().unwrap().to_string();

    let html = app
        .http
        .get(format!("{board}?location_id=loc_1"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"queue-cancel_payment\""), "{html}");
    assert!(
        html.contains(&format!("data-job=\"{job}\"")),
        "the dead job is listed"
    );
    assert!(html.contains("no payment"), "with its last error");
    assert!(
        html.contains("B-board") && html.contains("approved"),
        "the location's payments"
    );
    assert!(
        !html.contains(ADMIN_TOKEN) && !html.contains(kakaopay_worker::sim::DEFAULT_SECRET_KEY)
    );

    let r = app
        .http
        .post(format!("{board}/retry/cancel_payment/{job}"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "retried");
    let r = app
        .http
        .get(&board)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a bearer token works too");
    app.stop().await;
}

#[tokio::test]
async fn a_csv_report_cannot_run_formulas_in_a_spreadsheet() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let mut body = payment_body("loc_1", "=HYPERLINK(\"http://evil.example\",\"x\")");
    body["item_name"] = json!("@SUM(1+1)");
    let (status, _) = app.create_payment(body).await;
    assert_eq!(status, 201);
    let report = format!("{}/v1/transactions?location_id=loc_1", app.address);
    let csv_text = app
        .http
        .get(&report)
        .bearer_auth(CLIENT_TOKEN)
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let record = reader.records().next().unwrap().unwrap();
    assert_eq!(&record[0], "'=HYPERLINK(\"http://evil.example\",\"x\")");
    assert!(record[2].starts_with("'@SUM(1+1)"), "{:?}", &record[2]);
    assert_eq!(&record[4], "22000", "numbers stay numbers");
    let (_, rows) = app
        .send(
            Method::GET,
            "/v1/transactions?location_id=loc_1",
            Some(CLIENT_TOKEN),
            None,
        )
        .await;
    assert_eq!(
        rows[0]["id"], "=HYPERLINK(\"http://evil.example\",\"x\")",
        "JSON as given"
    );
    app.stop().await;
}

/// Logs in as an operator, answering the `Cookie` header value of the new session.
async fn board_session(app: &TestApp) -> (String, String) {
    let r = app
        .http
        .post(format!("{}/board/login", app.address))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    (cookie.split(';').next().unwrap().to_string(), cookie)
}

async fn board_status(app: &TestApp, session: &str) -> u16 {
    app.http
        .get(format!("{}/board", app.address))
        .header("Cookie", session)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn board_sessions_are_fresh_expiring_and_end_at_logout() {
    let app = spawn_app().await;
    let (first, set_cookie) = board_session(&app).await;
    let (second, _) = board_session(&app).await;
    assert_ne!(first, second, "a new session at every login");
    assert!(set_cookie.contains("Max-Age=28800"), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "plain http: {set_cookie}");
    assert_eq!(board_status(&app, &first).await, 200);
    assert_eq!(board_status(&app, &second).await, 200);
    let mut conn = app.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{}:board}}:session:*", app.namespace))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let value = first.split_once('=').unwrap().1;
    assert!(
        keys.iter().all(|k| !k.contains(value)),
        "Redis holds no cookie"
    );
    for key in &keys {
        let ttl: i64 = redis::cmd("TTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((28_000..=28_800).contains(&ttl), "{key} expires: {ttl}");
    }

    let r = app
        .http
        .post(format!("{}/board/logout", app.address))
        .header("Cookie", &first)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(board_status(&app, &first).await, 303, "ended at once");
    assert_eq!(
        board_status(&app, &second).await,
        200,
        "the other session lives on"
    );
    // A cookie nobody issued opens nothing.
    assert_eq!(board_status(&app, "kp_board=forged").await, 303);
    app.stop().await;
}

#[tokio::test]
async fn a_board_session_ends_with_the_token_that_opened_it() {
    let app = spawn_app().await;
    let (session, _) = board_session(&app).await;
    let namespace = app.namespace.clone();
    app.stop().await;
    // The same namespace after a restart: with the token still configured, and without it.
    let same = spawn_app_tuned(AppOptions::default(), |s| s.namespace = namespace.clone()).await;
    assert_eq!(board_status(&same, &session).await, 200);
    same.stop().await;
    let rotated = spawn_app_tuned(AppOptions::default(), |s| {
        s.namespace = namespace.clone();
        s.http.as_mut().unwrap().admin_tokens =
            kakaopay_worker::config::TokenList(vec![kakaopay_worker::secret::Secret::new(
                "a-new-operator-token-0123456789",
            )]);
    })
    .await;
    assert_eq!(
        board_status(&rotated, &session).await,
        303,
        "the token was revoked"
    );
    rotated.stop().await;
}

#[tokio::test]
async fn board_cookies_are_secure_under_https() {
    let app = spawn_app_tuned(AppOptions::default(), |s| {
        s.http.as_mut().unwrap().public_url = Some("https://pay.example.com".parse().unwrap());
    })
    .await;
    let (_, set_cookie) = board_session(&app).await;
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
    app.stop().await;
}

#[tokio::test]
async fn board_actions_from_another_origin_are_refused() {
    let app = spawn_app().await;
    let (session, _) = board_session(&app).await;
    let logout = format!("{}/board/logout", app.address);
    let post = |headers: &'static [(&'static str, &'static str)]| {
        let mut req = app.http.post(&logout).header("Cookie", &session);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    for headers in [
        &[("Origin", "http://evil.example")][..],
        &[("Origin", "null")],
        &[("Sec-Fetch-Site", "cross-site")],
        // Another port or a sibling subdomain: same site, another origin.
        &[
            ("Sec-Fetch-Site", "same-site"),
            ("Origin", "http://127.0.0.1:1"),
        ],
    ] {
        let r = post(headers).await.unwrap();
        assert_eq!(r.status(), 403, "{headers:?}");
        assert_eq!(
            board_status(&app, &session).await,
            200,
            "{headers:?} did nothing"
        );
    }
    // Login is a board action too: no logging a victim into an attacker's session.
    let r = app
        .http
        .post(format!("{}/board/login", app.address))
        .header("Origin", "http://evil.example")
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Our own page's form, as a browser sends it.
    let r = app
        .http
        .post(&logout)
        .header("Cookie", &session)
        .header("Origin", &app.address)
        .header("Sec-Fetch-Site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(board_status(&app, &session).await, 303, "logged out");
    app.stop().await;
}

#[tokio::test]
async fn wrong_board_tokens_are_slowed_then_refused() {
    let app = spawn_app().await;
    let login = format!("{}/board/login", app.address);
    let started = std::time::Instant::now();
    // Fifteen guesses at once: the count is taken before the answer, so only ten are told.
    let wrong = (0..15).map(|i| {
        app.http
            .post(&login)
            .form(&[("token", format!("guess-{i}"))])
            .send()
    });
    let mut statuses: Vec<u16> = futures::future::join_all(wrong)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    statuses.sort();
    assert_eq!(statuses, [[401; 10].as_slice(), &[429; 5]].concat());
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "each wrong token costs a second"
    );
    // Ten wrong in the window: not even the right token is checked now.
    let r = app
        .http
        .post(&login)
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(!r.headers().contains_key("set-cookie"));
    app.stop().await;
}

#[tokio::test]
async fn board_and_callback_pages_tell_the_browser_to_keep_them_apart() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let mut body = payment_body("loc_1", "B-page");
    body.as_object_mut().unwrap().remove("return_url");
    let (_, created) = app.create_payment(body).await;
    let cancel = app
        .member_presses(created["tid"].as_str().unwrap(), "cancel")
        .await;
    let callback_page = app.follow(&cancel).await;
    let login_page = app
        .http
        .get(format!("{}/board/login", app.address))
        .send()
        .await
        .unwrap();
    for r in [callback_page, login_page] {
        let h = r.headers();
        assert_eq!(
            h["content-type"].to_str().unwrap().split(';').next(),
            Some("text/html")
        );
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
            "{csp}"
        );
    }
    app.stop().await;
}

crate::on_every_topology!(
    queues_over_http,
    queues_on_the_command_line,
    the_transactions_report_as_json_and_csv,
    metrics_read_back_exactly_after_a_known_sequence,
    the_board_shows_queues_and_retries_dead_jobs_for_operators_only,
);
