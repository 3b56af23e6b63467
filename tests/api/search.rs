//! `GET /v1/payments`: a location's payments, newest first, filtered, and paged with a cursor
//! that never repeats or skips one while new payments arrive; on one server, Sentinel and a
//! cluster (where a location's payments are spread over every shard's slot).

use crate::support::*;
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;
use std::collections::HashSet;

async fn create(app: &TestApp, location: &str, order: String) -> String {
    let (status, created) = app.create_payment(payment_body(location, &order)).await;
    assert_eq!(status, 201, "{created}");
    created["payment_id"].as_str().unwrap().to_string()
}

async fn page(app: &TestApp, query: &str) -> (Vec<Value>, Option<String>) {
    let (status, answer) = app
        .send(
            Method::GET,
            &format!("/v1/payments?{query}"),
            Some(CLIENT_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{query}: {answer}");
    (
        answer["payments"].as_array().unwrap().clone(),
        answer["next_cursor"].as_str().map(str::to_string),
    )
}

fn encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_while_payments_arrive_misses_none_and_repeats_none() {
    let app = spawn_app_with(AppOptions {
        workers: false,
        ..Default::default()
    })
    .await;
    app.connect_open_api("loc_s").await;
    let existing: HashSet<String> = futures::stream::iter(0..500)
        .map(|i| create(&app, "loc_s", format!("S-{i}")))
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(existing.len(), 500);

    // 100 more arrive while the 500 are paged through, 50 a page.
    let arriving = async {
        futures::stream::iter(500..600)
            .map(|i| create(&app, "loc_s", format!("S-{i}")))
            .buffer_unordered(4)
            .collect::<HashSet<String>>()
            .await
    };
    let paging = async {
        let mut seen = Vec::new();
        let mut last_created: Option<String> = None;
        let mut cursor: Option<String> = None;
        loop {
            let mut query = "location_id=loc_s&limit=50".to_string();
            if let Some(c) = &cursor {
                query.push_str(&format!("&cursor={}", encoded(c)));
            }
            let (payments, next) = page(&app, &query).await;
            for p in &payments {
                let created = p["created_at"].as_str().unwrap().to_string();
                if let Some(before) = &last_created {
                    assert!(&created <= before, "newest first");
                }
                last_created = Some(created);
                seen.push(p["payment_id"].as_str().unwrap().to_string());
            }
            match next {
                Some(c) => cursor = Some(c),
                None => return seen,
            }
            tokio::task::yield_now().await;
        }
    };
    let (arrived, seen) = tokio::join!(arriving, paging);
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no payment twice");
    let missed: Vec<&String> = existing.iter().filter(|p| !unique.contains(p)).collect();
    assert!(
        missed.is_empty(),
        "missed {} of the 500: {missed:?}",
        missed.len()
    );
    assert!(
        seen.iter()
            .all(|p| existing.contains(p) || arrived.contains(p)),
        "only this location's payments"
    );
    let (first, _) = page(&app, "location_id=loc_s&limit=200").await;
    assert!(
        arrived.contains(first[0]["payment_id"].as_str().unwrap()),
        "the newest first"
    );
    app.stop().await;
}

#[tokio::test]
async fn filters_by_status_order_tid_and_time() {
    let app = spawn_app().await;
    app.connect_open_api("loc_f").await;
    app.connect_open_api("loc_g").await;
    let before = chrono::Utc::now();
    let ready = create(&app, "loc_f", "F-1".into()).await;
    let paid = app.paid(payment_body("loc_f", "F-2")).await;
    app.wait_status(&paid, "approved").await;
    let other = create(&app, "loc_g", "G-1".into()).await;
    let after = chrono::Utc::now();

    let ids = |payments: Vec<Value>| -> Vec<String> {
        payments
            .iter()
            .map(|p| p["payment_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(page(&app, "location_id=loc_f").await.0),
        [paid.clone(), ready.clone()]
    );
    assert_eq!(ids(page(&app, "location_id=loc_g").await.0), [other]);
    assert_eq!(
        ids(page(&app, "location_id=loc_f&status=approved").await.0),
        [paid.as_str()]
    );
    assert_eq!(
        ids(page(&app, "location_id=loc_f&status=ready").await.0),
        [ready.as_str()]
    );
    assert_eq!(
        ids(page(&app, "location_id=loc_f&order_id=F-1").await.0),
        [ready.as_str()]
    );
    assert!(page(&app, "location_id=loc_g&order_id=F-1")
        .await
        .0
        .is_empty());
    let tid = app.payment(&paid).await["tid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        ids(page(&app, &format!("location_id=loc_f&tid={tid}")).await.0),
        [paid.as_str()]
    );
    let window = |from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>| {
        format!(
            "location_id=loc_f&from={}&to={}",
            encoded(&from.to_rfc3339()),
            encoded(&to.to_rfc3339())
        )
    };
    assert_eq!(page(&app, &window(before, after)).await.0.len(), 2);
    let later = after + chrono::Duration::hours(1);
    assert!(
        page(&app, &window(later, later + chrono::Duration::hours(1)))
            .await
            .0
            .is_empty()
    );
    let (one, next) = page(&app, "location_id=loc_f&limit=1").await;
    assert_eq!(ids(one), [paid.as_str()]);
    let (two, end) = page(
        &app,
        &format!(
            "location_id=loc_f&limit=1&cursor={}",
            encoded(&next.unwrap())
        ),
    )
    .await;
    assert_eq!(ids(two), [ready.as_str()]);
    assert_eq!(end, None, "the last page says so");
    let row = &page(&app, "location_id=loc_f&status=approved").await.0[0];
    assert_eq!(
        (row["total_amount"].as_i64(), row["order_id"].as_str()),
        (Some(22000), Some("F-2"))
    );

    for (query, field) in [
        ("", "location_id"),
        ("location_id=a%20b", "location_id"),
        ("location_id=loc_f&status=nope", "status"),
        ("location_id=loc_f&from=yesterday", "from"),
        ("location_id=loc_f&limit=0", "limit"),
        ("location_id=loc_f&cursor=zzz", "cursor"),
    ] {
        let (status, answer) = app
            .send(
                Method::GET,
                &format!("/v1/payments?{query}"),
                Some(CLIENT_TOKEN),
                None,
            )
            .await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (400, Some(field)),
            "{query}: {answer}"
        );
    }
    let (status, _) = app
        .send(Method::GET, "/v1/payments?location_id=loc_f", None, None)
        .await;
    assert_eq!(status, 401);
    app.stop().await;
}

crate::on_every_topology!(
    filters_by_status_order_tid_and_time,
    paging_while_payments_arrive_misses_none_and_repeats_none
);
