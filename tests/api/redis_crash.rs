//! Redis killed (SIGKILL) and restarted in the middle of load, with its append-only file on:
//! with `appendfsync always` every request that got a 2xx (or a callback's 303) is there after
//! recovery and ends final; with `everysec` the writes of the last second may be lost, and
//! the test reports how many were. The processes recover without restarting.

use crate::support::*;
use std::time::{Duration, Instant};

/// Creates and approves payments for three seconds while, in another task, Redis is killed at
/// 0.7 s and started again 1.5 s later (requests meanwhile wait for the reconnection or get 503). Answers the payments whose creation got a 201 and
/// whose callback a 303, how many requests were refused with 503, and Redis back.
async fn load(
    app: &TestApp,
    mut redis: PrivateRedis,
    prefix: &str,
) -> (Vec<String>, usize, PrivateRedis) {
    let crash = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        redis.stop();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        redis.boot();
        redis
    });
    let started = Instant::now();
    let mut accepted = Vec::new();
    let mut refused = 0;
    let mut n = 0;
    while started.elapsed() < Duration::from_millis(3000) {
        n += 1;
        let (status, created) = app
            .create_payment(payment_body("loc_1", &format!("{prefix}-{n}")))
            .await;
        if status != 201 {
            assert_eq!(status, 503, "{created}");
            refused += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let callback = app
            .member_presses(created["tid"].as_str().unwrap(), "approve")
            .await;
        let back = app.follow(&callback).await;
        if back.status() == 303 {
            accepted.push(created["payment_id"].as_str().unwrap().to_string());
        } else {
            assert_eq!(back.status(), 503);
            refused += 1;
        }
    }
    let redis = crash.await.unwrap();
    (accepted, refused, redis)
}

#[tokio::test]
async fn with_appendfsync_always_every_accepted_request_survives_a_redis_crash() {
    for fsync in ["always", "everysec"] {
        let redis = PrivateRedis::start_with(fsync);
        let app = spawn_app_with(AppOptions {
            redis: Topology::Server(redis.url()),
            ..Default::default()
        })
        .await;
        app.connect_open_api("loc_1").await;
        let (accepted, refused, _redis) = load(&app, redis, fsync).await;
        let mut lost = 0;
        for id in &accepted {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let (status, p) = app
                    .send(
                        reqwest::Method::GET,
                        &format!("/v1/payments/{id}"),
                        Some(CLIENT_TOKEN),
                        None,
                    )
                    .await;
                if status == 404 {
                    lost += 1;
                    break;
                }
                if status == 200 && p["status"] == "approved" {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{fsync}: payment {id} stuck: {status} {p}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        println!("appendfsync {fsync}: {} accepted, {refused} refused with 503 during the outage, {lost} accepted then lost", accepted.len());
        if fsync == "always" {
            assert_eq!(lost, 0, "with appendfsync always nothing accepted is lost");
        }
        assert!(!accepted.is_empty());
        app.stop().await;
    }
}
