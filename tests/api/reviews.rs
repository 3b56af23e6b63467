//! Refunds that need a person: the review list, approve and dismiss over HTTP and on the
//! command line, with named operator tokens, against the real app, Redis and the simulator.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

const KIM: &str = "kim-token-0123456789";

/// The app with a named operator (`kim=…`) next to the bare test token (named `admin`), and a
/// location whose automatic refunds are off, so every refund request waits for a person.
async fn app_with_reviews() -> TestApp {
    app_with_reviews_tuned(|_| {}).await
}

async fn app_with_reviews_tuned(
    tune: impl FnOnce(&mut kakaopay_worker::startup::Settings),
) -> TestApp {
    let app = spawn_app_tuned(AppOptions::default(), |s| {
        tune(s);
        let http = s.http.as_mut().unwrap();
        http.admin_tokens = kakaopay_worker::config::TokenList(vec![
            kakaopay_worker::secret::Secret::new(format!("kim={KIM}")),
            kakaopay_worker::secret::Secret::new(ADMIN_TOKEN),
        ]);
    })
    .await;
    app.connect_reviewed_location().await;
    app
}

/// An approved payment of 22,000 and a member's refund request of it, left to a person.
async fn in_review(app: &TestApp, order: &str) -> (String, String) {
    let request = json!({"requested_by": "member", "reason": "booking_canceled"});
    let (payment, refund) = app
        .refund_in_review(payment_body("loc_r", order), order, request)
        .await;
    let r = app
        .wait_refund(&refund, "manual_review", Duration::from_secs(10))
        .await;
    assert_eq!(r["rule"], "automatic_refunds_off");
    (payment, refund)
}

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> (u16, Value) {
    app.send(Method::POST, path, Some(token), Some(body)).await
}

#[tokio::test]
async fn an_approval_sent_ten_times_at_once_pays_once_and_names_the_operator() {
    let app = app_with_reviews().await;
    let (payment, refund) = in_review(&app, "R-ten").await;
    let (status, listed) = app
        .send(
            Method::GET,
            "/v1/refunds?status=manual_review",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["refunds"][0]["refund_id"], refund.as_str());
    let (status, _) = app
        .send(Method::GET, "/v1/refunds", Some(CLIENT_TOKEN), None)
        .await;
    assert_eq!(status, 403, "operators only");

    let path = format!("/v1/refunds/{refund}/approve");
    let body = json!({"amount": 12000, "note": "customer called"});
    let answers =
        futures::future::join_all((0..10).map(|_| post(&app, &path, KIM, body.clone()))).await;
    for (status, answer) in &answers {
        assert_eq!(*status, 202, "{answer}");
        assert_eq!(answer["status"], "queued");
    }
    let done = app
        .wait_refund(&refund, "succeeded", Duration::from_secs(15))
        .await;
    assert_eq!(
        (done["amount"].as_i64(), done["rule"].as_str()),
        (Some(12000), Some("admin_review"))
    );
    let approval: Vec<&Value> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["from"] == "manual_review")
        .collect();
    assert_eq!(approval.len(), 1, "one approval recorded: {done}");
    assert_eq!(
        (
            approval[0]["by"].as_str(),
            approval[0]["note"].as_str(),
            approval[0]["to"].as_str()
        ),
        (Some("kim"), Some("customer called"), Some("queued"))
    );
    assert!(approval[0]["at"].is_string());

    let cancels = app.cancels_of(&payment).await;
    assert_eq!(cancels, 1, "paid exactly once at KakaoPay");
    assert_eq!(stats(&app.sim).await["endpoints"]["cancel"]["calls"], 1);
    let p = app.payment(&payment).await;
    assert_eq!(
        (p["status"].as_str(), p["refunded_amount"].as_i64()),
        (Some("partially_refunded"), Some(12000))
    );

    // The same call again answers the same; another call on a refund out of review is refused.
    let (status, _) = post(&app, &path, KIM, body.clone()).await;
    assert_eq!(status, 202);
    let (status, answer) = post(&app, &path, KIM, json!({"amount": 5000})).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("not_in_review"))
    );
    let (status, answer) = post(
        &app,
        &format!("/v1/refunds/{refund}/dismiss"),
        KIM,
        json!({"note": "too late"}),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("not_in_review"))
    );
    app.stop().await;
}

#[tokio::test]
async fn approve_keeps_the_remaining_amount_check_and_takes_what_is_left_by_default() {
    let app = app_with_reviews().await;
    let (payment, refund) = in_review(&app, "R-left").await;
    let path = format!("/v1/refunds/{refund}/approve");
    let (status, answer) = post(&app, &path, ADMIN_TOKEN, json!({"amount": 22001})).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("not_refundable")),
        "{answer}"
    );
    let (status, answer) = post(&app, &path, ADMIN_TOKEN, json!({"amount": 0})).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("not_refundable"))
    );
    let (status, answer) = post(&app, &path, ADMIN_TOKEN, json!({"amount": "x"})).await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (400, Some("amount"))
    );
    let (status, _) = post(
        &app,
        "/v1/refunds/rf_nosuchrefund00000000000000/approve",
        ADMIN_TOKEN,
        json!({}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post(&app, &path, CLIENT_TOKEN, json!({})).await;
    assert_eq!(status, 403);

    let (status, answer) = post(&app, &path, ADMIN_TOKEN, json!({})).await;
    assert_eq!(status, 202, "{answer}");
    let done = app
        .wait_refund(&refund, "succeeded", Duration::from_secs(15))
        .await;
    assert_eq!(done["amount"], 22000, "what was left");
    let by: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["by"].as_str())
        .collect();
    assert_eq!(by, ["admin"], "a bare token is named admin");
    assert_eq!(app.payment(&payment).await["status"], "refunded");
    app.stop().await;
}

#[tokio::test]
async fn an_operators_refund_request_records_their_name() {
    let app = app_with_reviews().await;
    let payment = app.paid(payment_body("loc_r", "R-named")).await;
    app.wait_status(&payment, "approved").await;
    let (status, answer) = app
        .ask_refund(
            &payment,
            "named-1",
            json!({"requested_by": "admin", "amount": 1000}),
            KIM,
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let refund = answer["refund_id"].as_str().unwrap();
    let done = app
        .wait_refund(refund, "succeeded", Duration::from_secs(15))
        .await;
    assert_eq!(done["history"][0]["by"], "kim", "{done}");
    assert_eq!(done["rule"], "admin_amount");
    app.stop().await;
}

#[tokio::test]
async fn dismiss_needs_a_note_closes_without_money_and_emits_its_event() {
    let app = app_with_reviews().await;
    let (payment, refund) = in_review(&app, "R-dismiss").await;
    let path = format!("/v1/refunds/{refund}/dismiss");
    for body in [json!({}), json!({"note": "  "})] {
        let (status, answer) = post(&app, &path, KIM, body).await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (400, Some("note")),
            "{answer}"
        );
    }
    let (status, answer) = post(&app, &path, KIM, json!({"note": "duplicate booking"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "dismissed");
    let last = answer["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (
            last["by"].as_str(),
            last["note"].as_str(),
            last["to"].as_str()
        ),
        (Some("kim"), Some("duplicate booking"), Some("dismissed"))
    );
    let (status, again) = post(&app, &path, KIM, json!({"note": "duplicate booking"})).await;
    assert_eq!((status, again["status"].as_str()), (200, Some("dismissed")));
    assert_eq!(
        again["history"].as_array().unwrap().len(),
        answer["history"].as_array().unwrap().len(),
        "nothing recorded twice"
    );
    let (status, answer) = post(
        &app,
        &format!("/v1/refunds/{refund}/approve"),
        KIM,
        json!({}),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("not_in_review"))
    );

    let event = kakaopay_worker::events::event_id(
        &refund,
        kakaopay_worker::events::EventKind::RefundDismissed,
    );
    let conn = app.conn().await;
    let job = kakaopay_jobs::queue::inspect::job(&conn, &app.namespace, "deliver_event", &event)
        .await
        .unwrap();
    assert!(job.is_some(), "refund.dismissed emitted");
    let p = app.payment(&payment).await;
    assert_eq!(
        (p["status"].as_str(), p["refunded_amount"].as_i64()),
        (Some("approved"), Some(0))
    );
    let cancels = stats(&app.sim).await["endpoints"]["cancel"]["calls"].as_u64();
    assert_eq!(cancels.unwrap_or(0), 0, "no money moved");
    let (_, listed) = app
        .send(
            Method::GET,
            "/v1/refunds?status=manual_review",
            Some(KIM),
            None,
        )
        .await;
    assert_eq!(listed["refunds"].as_array().unwrap().len(), 0, "{listed}");
    app.stop().await;
}

#[tokio::test]
async fn the_review_list_pages_newest_first_with_filters() {
    let app = app_with_reviews().await;
    let mut refunds = Vec::new();
    for i in 0..3 {
        refunds.push(in_review(&app, &format!("R-page-{i}")).await.1);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/refunds?status=manual_review&limit=2".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", urlencode(c)));
        }
        let (status, page) = app.send(Method::GET, &path, Some(ADMIN_TOKEN), None).await;
        assert_eq!(status, 200, "{page}");
        let items = page["refunds"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|r| r["refund_id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    refunds.reverse();
    assert_eq!(seen, refunds, "newest first, each once");
    let (_, by_location) = app
        .send(
            Method::GET,
            "/v1/refunds?location_id=loc_r&status=manual_review",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(by_location["refunds"].as_array().unwrap().len(), 3);
    let (_, elsewhere) = app
        .send(
            Method::GET,
            "/v1/refunds?location_id=loc_other",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(elsewhere["refunds"].as_array().unwrap().len(), 0);
    let (_, all) = app
        .send(Method::GET, "/v1/refunds", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(all["refunds"].as_array().unwrap().len(), 3);
    for (path, field) in [
        ("/v1/refunds?status=nope", "status"),
        ("/v1/refunds?limit=0", "limit"),
        ("/v1/refunds?cursor=garbage", "cursor"),
    ] {
        let (status, answer) = app.send(Method::GET, path, Some(ADMIN_TOKEN), None).await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (400, Some(field)),
            "{path}"
        );
    }
    app.stop().await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn refunds_on_the_command_line() {
    let app = app_with_reviews().await;
    let (_, approve_me) = in_review(&app, "R-cli-1").await;
    let (_, dismiss_me) = in_review(&app, "R-cli-2").await;
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kakaopay-worker"))
            .arg("refunds")
            .args(args)
            .envs(app.redis_env())
            .env("OPERATOR_NAME", "lee")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, table, err) = cli(&["review"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        table.contains(&approve_me) && table.contains(&dismiss_me),
        "{table}"
    );
    let (code, out, err) = cli(&[
        "approve",
        &approve_me,
        "--amount",
        "7000",
        "--note",
        "  ok \n",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let done = app
        .wait_refund(&approve_me, "succeeded", Duration::from_secs(15))
        .await;
    assert_eq!(done["amount"], 7000);
    let approval = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["from"] == "manual_review")
        .unwrap()
        .clone();
    assert_eq!(approval["note"], "ok", "trimmed as the HTTP route trims it");
    let (code, _, err) = cli(&["dismiss", &dismiss_me]);
    assert_eq!(code, Some(2), "--note is required: {err}");
    for (note, says) in [
        ("   ", "note is required"),
        (&*"x".repeat(1001), "at most 1000"),
    ] {
        let (code, _, err) = cli(&["dismiss", &dismiss_me, "--note", note]);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains(says), "{err}");
    }
    let (code, out, err) = cli(&["dismiss", &dismiss_me, "--note", "goodwill voucher instead"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let dismissed = app
        .wait_refund(&dismiss_me, "dismissed", Duration::from_secs(5))
        .await;
    let last = dismissed["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["by"].as_str(), last["note"].as_str()),
        (Some("lee"), Some("goodwill voucher instead"))
    );
    let (code, _, err) = cli(&["approve", &dismiss_me]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not waiting for review"), "{err}");
    app.stop().await;
}

crate::on_every_topology!(
    an_approval_sent_ten_times_at_once_pays_once_and_names_the_operator,
    the_review_list_pages_newest_first_with_filters,
    refunds_of_an_earlier_release_join_the_listings,
    an_approval_overtaken_by_another_refund_goes_back_to_review
);

/// The first job's run token is dropped by the approval: a late FINISH of that run (a reply
/// lost, the command resent) must not match and send the approved refund back to review.
#[tokio::test]
async fn an_approval_drops_the_first_runs_token() {
    let app = app_with_reviews().await;
    let (_, refund) = in_review(&app, "R-run").await;
    let key = format!("{}:refund:{refund}", shard_tag(&app, &refund).await);
    let mut conn = app.conn().await;
    let run: Option<String> = redis::cmd("HGET")
        .arg(&key)
        .arg("run")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        run.is_some_and(|r| !r.is_empty()),
        "the first run left its token on {key}"
    );
    // Paused, so that the approved refund's own run does not take a token of its own yet.
    app.set_paused("cancel_payment", true).await;
    let (status, answer) = post(
        &app,
        &format!("/v1/refunds/{refund}/approve"),
        KIM,
        json!({}),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let run: Option<String> = redis::cmd("HGET")
        .arg(&key)
        .arg("run")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        run.as_deref().unwrap_or(""),
        "",
        "the first run's token is gone"
    );
    app.set_paused("cancel_payment", false).await;
    app.wait_refund(&refund, "succeeded", Duration::from_secs(15))
        .await;
    app.stop().await;
}

/// An approval that another refund of the payment overtakes (paid after the approval was
/// checked, before its job ran) goes back to a person: the operator's decision was for more
/// than is left now, and only they can say what to do. The second approval runs under a job
/// of its own (the first review's job is done) and pays what is left, once.
#[tokio::test]
async fn an_approval_overtaken_by_another_refund_goes_back_to_review() {
    let app = app_with_reviews().await;
    let (payment, first) = in_review(&app, "R-over").await;
    add_fault(
        &app.sim,
        json!({"endpoint": "cancel", "fault": "latency", "ms": 1500, "count": 1}),
    )
    .await;
    let (status, answer) = app
        .ask_refund(
            &payment,
            "R-over-admin",
            json!({"requested_by": "admin", "amount": 15000}),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let other = answer["refund_id"].as_str().unwrap().to_string();
    app.wait_refund(&other, "processing", Duration::from_secs(10))
        .await;
    let path = format!("/v1/refunds/{first}/approve");
    let (status, answer) = post(&app, &path, KIM, json!({"amount": 12000})).await;
    assert_eq!(status, 202, "22,000 is left when it is approved: {answer}");
    app.wait_refund(&other, "succeeded", Duration::from_secs(10))
        .await;
    let back = app
        .wait_refund(&first, "manual_review", Duration::from_secs(15))
        .await;
    assert_eq!(back["rule"], "amount_over_remaining", "{back}");
    let last = back["history"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["cause"].as_str().unwrap().contains("7,000")
            || last["cause"].as_str().unwrap().contains("7000"),
        "says what is left: {last}"
    );

    let (status, answer) = post(&app, &path, KIM, json!({"amount": 12000})).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("not_refundable")),
        "{answer}"
    );
    let (status, answer) = post(&app, &path, KIM, json!({"note": "the rest, then"})).await;
    assert_eq!(status, 202, "{answer}");
    let done = app
        .wait_refund(&first, "succeeded", Duration::from_secs(15))
        .await;
    assert_eq!(done["amount"], 7000, "{done}");
    assert_eq!(app.payment(&payment).await["status"], "refunded");
    let cancels = app.cancels_of(&payment).await;
    assert_eq!(cancels, 2, "one cancel each");
    app.stop().await;
}

/// An approved refund is run by its approval's job alone: another job of the same refund (the
/// first one revived, or a copy enqueued straight into Redis) only looks on, even when it
/// comes first. One worker at a time, so the order is certain.
#[tokio::test]
async fn only_the_approvals_job_acts_for_an_approved_refund() {
    let app = app_with_reviews_tuned(|s| s.workers.as_mut().unwrap().concurrency = 1).await;
    let (_, refund) = in_review(&app, "R-jobs").await;
    let conn = app.conn().await;
    let first = kakaopay_jobs::refunds::job_id(&refund);
    let args = kakaopay_jobs::queue::inspect::job(&conn, &app.namespace, "cancel_payment", &first)
        .await
        .unwrap()
        .expect("the first job is kept")
        .args;
    let job: kakaopay_jobs::CancelPayment = serde_json::from_value(args).unwrap();
    app.set_paused("cancel_payment", true).await;
    let copy = format!("{first}:copy");
    kakaopay_jobs::queue::Producer::new(conn.clone(), &app.namespace)
        .enqueue(
            &job,
            kakaopay_jobs::queue::EnqueueOptions::with_id(copy.clone()),
        )
        .await
        .unwrap();
    let (status, answer) = post(
        &app,
        &format!("/v1/refunds/{refund}/approve"),
        KIM,
        json!({"amount": 5000}),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    app.set_paused("cancel_payment", false).await;
    let done = app
        .wait_refund(&refund, "succeeded", Duration::from_secs(15))
        .await;
    let takers: Vec<String> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["cause"].as_str())
        .filter(|c| c.starts_with("a worker took the refund"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        takers,
        [
            format!("a worker took the refund (job {first})"),
            format!("a worker took the refund (job {first}:review:1)")
        ],
        "{done}"
    );
    app.stop().await;
}

/// Forgets a done job as its retention would: its record and its place in the done list.
async fn forget_done_job(app: &TestApp, queue: &str, id: &str) {
    let conn = app.conn().await;
    until("the job is done", Duration::from_secs(10), || async {
        kakaopay_jobs::queue::inspect::job(&conn, &app.namespace, queue, id)
            .await
            .unwrap()
            .is_some_and(|j| j.status == "done")
    })
    .await;
    let keys = kakaopay_jobs::queue::Keys::new(&app.namespace, queue);
    let mut c = app.conn().await;
    let _: () = redis::pipe()
        .cmd("DEL")
        .arg(keys.job(id))
        .cmd("LREM")
        .arg(&keys.done)
        .arg(0)
        .arg(id)
        .query_async(&mut c)
        .await
        .unwrap();
}

/// A decision repeated after its job's record is gone (done jobs are kept for a while only)
/// answers as before and enqueues nothing: no second run of the refund, no second delivery
/// of its event.
#[tokio::test]
async fn a_repeat_after_the_jobs_are_forgotten_enqueues_nothing() {
    let app = app_with_reviews().await;
    let (_, approved) = in_review(&app, "R-late-a").await;
    let (_, dismissed) = in_review(&app, "R-late-d").await;
    let conn = app.conn().await;
    let job = |queue: &'static str, id: String| {
        let conn = conn.clone();
        let ns = app.namespace.clone();
        async move {
            kakaopay_jobs::queue::inspect::job(&conn, &ns, queue, &id)
                .await
                .unwrap()
        }
    };

    let approve = format!("/v1/refunds/{approved}/approve");
    let (status, _) = post(&app, &approve, KIM, json!({"note": "ok"})).await;
    assert_eq!(status, 202);
    app.wait_refund(&approved, "succeeded", Duration::from_secs(15))
        .await;
    let review_job = format!("{}:review:1", kakaopay_jobs::refunds::job_id(&approved));
    forget_done_job(&app, "cancel_payment", &review_job).await;
    let (status, again) = post(&app, &approve, KIM, json!({"note": "ok"})).await;
    assert_eq!(status, 202, "the same call, the same answer: {again}");
    assert!(
        job("cancel_payment", review_job).await.is_none(),
        "no job enqueued again for a refund already paid"
    );

    let dismiss = format!("/v1/refunds/{dismissed}/dismiss");
    let (status, _) = post(&app, &dismiss, KIM, json!({"note": "voucher"})).await;
    assert_eq!(status, 200);
    let event = kakaopay_worker::events::event_id(
        &dismissed,
        kakaopay_worker::events::EventKind::RefundDismissed,
    );
    forget_done_job(&app, "deliver_event", &event).await;
    let (status, _) = post(&app, &dismiss, KIM, json!({"note": "voucher"})).await;
    assert_eq!(status, 200);
    assert!(
        job("deliver_event", event).await.is_none(),
        "the event is not delivered a second time"
    );
    app.stop().await;
}

/// Refunds stored before the listings had indexes of their own (an earlier release) are in
/// the listings once a process of this release has started: one left to a person is in the
/// review list without a location filter.
#[tokio::test]
async fn refunds_of_an_earlier_release_join_the_listings() {
    let app = app_with_reviews().await;
    let (_, refund) = in_review(&app, "R-earlier").await;
    let tag = shard_tag(&app, &refund).await;
    let mut conn = app.conn().await;
    let marker = format!("{}:migration:refund-indexes", app.namespace);
    until(
        "the start's own indexing done",
        Duration::from_secs(10),
        || {
            let mut conn = conn.clone();
            let marker = marker.clone();
            async move {
                let done: Option<String> = redis::cmd("GET")
                    .arg(&marker)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                done.is_some()
            }
        },
    )
    .await;
    // A record it cannot read is left out, not a reason to stop.
    let unreadable = format!("rf_{}{}", &refund[3..5], "z".repeat(22));
    let _: () = redis::cmd("HSET")
        .arg(format!("{tag}:refund:{unreadable}"))
        .arg("doc")
        .arg("{not json")
        .arg("status")
        .arg("manual_review")
        .query_async(&mut conn)
        .await
        .unwrap();
    // As an earlier release left it: in no listing index, and no migration marker (one
    // command each: on a cluster they are keys of different slots).
    for (command, key) in [
        ("ZREM", format!("{tag}:refunds:all")),
        ("ZREM", format!("{tag}:refunds:review")),
        ("DEL", format!("{}:migration:refund-indexes", app.namespace)),
    ] {
        let mut cmd = redis::cmd(command);
        cmd.arg(&key);
        if command == "ZREM" {
            cmd.arg(&refund);
        }
        let _: i64 = cmd.query_async(&mut conn).await.unwrap();
    }
    assert!(listed(&app, "/v1/refunds?status=manual_review")
        .await
        .is_empty());
    let store = kakaopay_worker::store::Store::new(app.conn().await, &app.namespace);
    let cluster = matches!(app.redis, kakaopay_jobs::queue::Topology::Cluster(_));
    assert_eq!(store.index_earlier_refunds(cluster).await.unwrap(), 1);
    assert_eq!(
        listed(&app, "/v1/refunds?status=manual_review").await,
        vec![refund.clone()]
    );
    assert_eq!(listed(&app, "/v1/refunds").await, vec![refund]);
    assert_eq!(
        store.index_earlier_refunds(cluster).await.unwrap(),
        0,
        "once per namespace"
    );
    app.stop().await;
}

async fn listed(app: &TestApp, path: &str) -> Vec<String> {
    let (status, answer) = app.send(Method::GET, path, Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200, "{answer}");
    answer["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["refund_id"].as_str().unwrap().to_string())
        .collect()
}

/// A repeat that read the refund before the first call's script ran still enqueues the job
/// when the refund is open by then: it goes by the status the script saw.
#[tokio::test]
async fn a_repeat_goes_by_the_status_its_script_saw() {
    use kakaopay_worker::domain::RefundStatus;
    use kakaopay_worker::store::Reviewed;
    let app = app_with_reviews().await;
    let (_, refund) = in_review(&app, "R-stale").await;
    // Paused, so that nothing runs the refund on between the two calls.
    app.set_paused("cancel_payment", true).await;
    let store = kakaopay_worker::store::Store::new(app.conn().await, &app.namespace);
    let stale = store.refund_state(&refund).await.unwrap().unwrap();
    let first = store
        .approve_review(&stale, None, Some("ok"), "kim")
        .await
        .unwrap();
    assert!(matches!(first, Reviewed::Applied(_)), "{first:?}");
    let again = store
        .approve_review(&stale, None, Some("ok"), "kim")
        .await
        .unwrap();
    assert!(
        matches!(again, Reviewed::Repeated(_, RefundStatus::Queued)),
        "{again:?}"
    );
    app.stop().await;
}

/// An approval of a refund whose location has no credentials left at all (disconnected, and
/// the payment's own version gone) sends nothing and goes back to a person, saying why,
/// instead of a dead job and a refund left `processing`. While the payment's own credentials
/// are kept (a disconnect keeps them), an approval is paid with them.
#[tokio::test]
async fn an_approval_without_any_credentials_goes_back_to_review() {
    let app = app_with_reviews().await;
    let (payment, refund) = in_review(&app, "R-creds").await;
    let (status, _) = app
        .send(
            Method::DELETE,
            "/v1/locations/loc_r/kakaopay",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let mut conn = app.conn().await;
    let pattern = format!("{{{}:loc:loc_r}}:*", app.namespace);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    for key in keys.iter().filter(|k| k.contains(":integration")) {
        let _: i64 = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let (status, answer) = post(
        &app,
        &format!("/v1/refunds/{refund}/approve"),
        KIM,
        json!({}),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    until("back in review", Duration::from_secs(10), || async {
        let (_, r) = app
            .send(
                Method::GET,
                &format!("/v1/refunds/{refund}"),
                Some(ADMIN_TOKEN),
                None,
            )
            .await;
        r["status"] == "manual_review" && r["rule"] == "integration_disconnected"
    })
    .await;
    let (_, r) = app
        .send(
            Method::GET,
            &format!("/v1/refunds/{refund}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    let last = r["history"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["cause"].as_str().unwrap().contains("reconnect it"),
        "{last}"
    );
    assert_eq!(app.payment(&payment).await["refunded_amount"], 0);
    let cancels = stats(&app.sim).await["endpoints"]["cancel"]["calls"].as_u64();
    assert_eq!(cancels.unwrap_or(0), 0);
    app.stop().await;
}

/// The hash tag of the shard `refund` lives in (`{ns:pNN}`), as the store names its keys.
async fn shard_tag(app: &TestApp, refund: &str) -> String {
    let store = kakaopay_worker::store::Store::new(app.conn().await, &app.namespace);
    let key = store.refund_key(refund);
    key.split(":refund:").next().unwrap().to_string()
}
