//! The board over HTTP, as a browser's forms would use it (no script): every page for an
//! operator and none without, reviews approved and dismissed with the API's checks, the
//! confirmations that guard discard and retry-all-dead, pause and resume, the charts' counts,
//! and values from members escaped.

use super::*;

const KIM: &str = "kim-token-0123456789";

/// The app with a named operator (`kim=…`) and a location whose refunds all wait for a person.
async fn app_with_reviews() -> TestApp {
    let app = spawn_app_tuned(AppOptions::default(), |s| {
        s.http.as_mut().unwrap().admin_tokens = kakaopay_worker::config::TokenList(vec![
            kakaopay_worker::secret::Secret::new(format!("kim={KIM}")),
            kakaopay_worker::secret::Secret::new(ADMIN_TOKEN),
        ]);
    })
    .await;
    app.connect_reviewed_location().await;
    app
}

async fn session_of(app: &TestApp, token: &str) -> String {
    let r = app
        .http
        .post(format!("{}/board/login", app.address))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

/// A board page: its status and HTML (never a 500, always HTML).
async fn page(app: &TestApp, session: &str, path: &str) -> (u16, String) {
    let r = app
        .http
        .get(format!("{}{path}", app.address))
        .header("Cookie", session)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!(status < 500, "{path}: {status}");
    if status != 303 {
        let kind = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
    }
    (status, r.text().await.unwrap())
}

/// A board form posted; answers the status and where it redirects.
async fn post(app: &TestApp, session: &str, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let r = app
        .http
        .post(format!("{}{path}", app.address))
        .header("Cookie", session)
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, location)
}

/// A form posted and its redirect followed: the page that tells the outcome.
async fn outcome(app: &TestApp, session: &str, path: &str, fields: &[(&str, &str)]) -> String {
    let (status, location) = post(app, session, path, fields).await;
    assert_eq!(status, 303, "{path}");
    let (status, html) = page(app, session, &location).await;
    assert_eq!(status, 200, "{location}");
    html
}

/// The flash of a page, as text.
fn flash(html: &str) -> String {
    let Some(start) = html.find("<p id=\"flash\"") else {
        return String::new();
    };
    let rest = &html[start..];
    let open = rest.find('>').unwrap() + 1;
    rest[open..rest.find("</p>").unwrap()].to_string()
}

/// `n` dead jobs in cancel_payment: refunds of a payment that does not exist.
async fn dead_jobs(app: &TestApp, n: usize) -> Vec<String> {
    let producer = kakaopay_jobs::queue::Producer::new(app.conn().await, &app.namespace);
    let mut jobs = Vec::new();
    for i in 0..n {
        let request = kakaopay_jobs::RefundRequest::new("member", "test");
        let requested = kakaopay_jobs::refunds::request_refund(
            &producer,
            "pay_nosuchpayment0000000000",
            &format!("dead-{i}"),
            request,
        )
        .await
        .unwrap();
        jobs.push(kakaopay_jobs::refunds::job_id(&requested.refund_id));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while dead_count(app).await < n as u64 {
        assert!(Instant::now() < deadline, "the jobs never died");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    jobs
}

async fn dead_count(app: &TestApp) -> u64 {
    let (_, q) = app
        .send(Method::GET, "/v1/queues", Some(ADMIN_TOKEN), None)
        .await;
    q["queues"][1]["dead"].as_u64().unwrap()
}

/// An approved payment of 22,000 at loc_r and a member's refund request left to a person.
async fn in_review(app: &TestApp, order: &str) -> (String, String) {
    let mut body = payment_body("loc_r", order);
    body["item_name"] = json!("<script>alert('item')</script>");
    let request = json!({"requested_by": "member", "reason": "<img src=x onerror=alert(1)>"});
    app.refund_in_review(body, order, request).await
}

#[tokio::test]
async fn every_board_page_answers_an_operator_and_sends_anyone_else_to_login() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let payment = app.paid(payment_body("loc_1", "B-pages")).await;
    app.wait_status(&payment, "approved").await;
    let job = dead_jobs(&app, 1).await.remove(0);
    let session = session_of(&app, ADMIN_TOKEN).await;
    let job_path = format!(
        "/board/queues/cancel_payment/jobs/{}",
        job.replace(':', "%3A")
    );
    let mut pages = vec![
        "/board".to_string(),
        "/board/counts".into(),
        "/board/workers".into(),
        "/board/reviews".into(),
        "/board/payments".into(),
        "/board/payments?location_id=loc_1&status=approved".into(),
        format!("/board/payments/{payment}"),
        "/board/queues/cancel_payment".into(),
        "/board/queues/cancel_payment?hours=24".into(),
        "/board/queues/cancel_payment/retry-dead".into(),
        job_path.clone(),
        format!("{job_path}/discard"),
    ];
    for status in ["pending", "running", "scheduled", "done", "failed", "dead"] {
        pages.push(format!("/board/queues/approve_payment?status={status}"));
    }
    for path in &pages {
        let (status, html) = page(&app, &session, path).await;
        assert_eq!(status, 200, "{path}: {html}");
        let (status, _) = page(&app, "kp_board=nobody", path).await;
        assert_eq!(status, 303, "{path} without a session");
    }
    let (_, html) = page(&app, &session, "/board/queues/approve_payment?status=done").await;
    assert!(
        html.contains(&format!("approve:{payment}")),
        "the done job is listed: {html}"
    );
    let (_, html) = page(&app, &session, &job_path).await;
    assert!(
        html.contains("no payment") && html.contains(" KST</time>") && html.contains("1 of "),
        "the job's attempts, error and times: {html}"
    );
    let (_, html) = page(&app, &session, &format!("/board/payments/{payment}")).await;
    assert!(html.contains("₩22,000") && html.contains("KST"), "{html}");
    let (_, html) = page(&app, &session, "/board/workers").await;
    assert!(
        html.contains(&format!("<td class=\"num\">{}</td>", std::process::id())),
        "this process: {html}"
    );
    let (_, html) = page(&app, &session, "/board").await;
    assert!(html.contains("data-refresh=\"/board/counts\"") && html.contains("/board/board.js"));

    // Every action needs an operator too.
    for path in [
        "/board/queues/cancel_payment/pause",
        "/board/queues/cancel_payment/retry-dead",
        "/board/reviews/rf_000000000000000000000000/dismiss",
    ] {
        let (status, location) = post(&app, "kp_board=nobody", path, &[("confirm", "yes")]).await;
        assert_eq!((status, location.as_str()), (303, "/board/login"), "{path}");
    }
    let (_, q) = app
        .send(Method::GET, "/v1/queues", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(q["queues"][1]["paused"], false);

    // Unknown things and bad input: a page that says so, never JSON or a 500.
    for (path, status, said) in [
        ("/board/queues/nope", 404, "No such queue"),
        ("/board/queues/cancel_payment/jobs/nope", 404, "No such job"),
        ("/board/payments/pay_nope", 404, "No such payment"),
        (
            "/board/queues/cancel_payment?status=weird",
            400,
            "status must be",
        ),
        (
            "/board/queues/cancel_payment?status=dead&cursor=zzz",
            400,
            "cursor",
        ),
        (
            "/board/payments?location_id=loc_1&from=yesterday",
            400,
            "from must be a time",
        ),
        (
            "/board/payments?location_id=loc_1&status=nope",
            400,
            "status must be a payment status",
        ),
        ("/board/reviews?cursor=zzz", 400, "cursor must be"),
    ] {
        let (got, html) = page(&app, &session, path).await;
        assert_eq!(got, status, "{path}");
        assert!(
            html.to_lowercase().contains(&said.to_lowercase()),
            "{path}: {html}"
        );
    }
    // What the pages load is served here, as the CSP allows.
    for (path, kind) in [
        ("/board/board.css", "text/css"),
        ("/board/board.js", "text/javascript"),
    ] {
        let r = app
            .http
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }
    let r = app
        .http
        .get(format!("{}/board", app.address))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("style-src 'self'")
            && csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    app.stop().await;
}

#[tokio::test]
async fn reviews_on_the_board_check_what_the_api_checks_and_name_the_operator() {
    let app = app_with_reviews().await;
    let (payment, refund) = in_review(&app, "R-board").await;
    let kim = session_of(&app, KIM).await;
    let (status, html) = page(&app, &kim, "/board/reviews").await;
    assert_eq!(status, 200);
    assert!(
        html.contains(&format!("data-refund=\"{refund}\"")),
        "{html}"
    );
    assert!(html.contains("₩22,000"), "what is left: {html}");

    // A dismissal without a note: refused, said so, nothing done.
    let dismiss = format!("/board/reviews/{refund}/dismiss");
    for note in ["", "   "] {
        let html = outcome(&app, &kim, &dismiss, &[("note", note)]).await;
        assert!(flash(&html).contains("needs a note"), "{}", flash(&html));
    }
    let html = outcome(&app, &kim, &dismiss, &[]).await;
    assert!(flash(&html).contains("needs a note"));
    // An amount that is no number, or more than is left; a refund that does not exist.
    let approve = format!("/board/reviews/{refund}/approve");
    let html = outcome(&app, &kim, &approve, &[("amount", "12k"), ("note", "")]).await;
    assert!(
        flash(&html).contains("whole number of won"),
        "{}",
        flash(&html)
    );
    let html = outcome(&app, &kim, &approve, &[("amount", "50000")]).await;
    assert!(
        flash(&html).contains("Only 22000 won is left"),
        "{}",
        flash(&html)
    );
    let html = outcome(&app, &kim, &approve, &[("amount", "-5")]).await;
    assert!(flash(&html).contains("at least 1 won"), "{}", flash(&html));
    let html = outcome(&app, &kim, "/board/reviews/rf_nope/approve", &[]).await;
    assert!(flash(&html).contains("No such refund"), "{}", flash(&html));
    app.wait_refund(&refund, "manual_review", Duration::from_secs(1))
        .await;

    // A flash is shown once, and only to whom it was for.
    let (_, location) = post(&app, &kim, &dismiss, &[("note", "")]).await;
    let admin = session_of(&app, ADMIN_TOKEN).await;
    assert!(flash(&page(&app, &admin, &location).await.1).is_empty());
    assert!(!flash(&page(&app, &kim, &location).await.1).is_empty());
    assert!(
        flash(&page(&app, &kim, &location).await.1).is_empty(),
        "once"
    );

    // Dismissed from the payment's page: back there, with the note and kim's name on record.
    let note = "<script>alert('note')</script>";
    let html = outcome(
        &app,
        &kim,
        &dismiss,
        &[("note", note), ("payment", &payment)],
    )
    .await;
    assert!(
        flash(&html).contains("dismissed by kim"),
        "{}",
        flash(&html)
    );
    assert!(
        html.contains(&format!("id=\"refund-{refund}\"")),
        "the payment's page"
    );
    let r = app
        .wait_refund(&refund, "dismissed", Duration::from_secs(1))
        .await;
    let last = r["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["by"].as_str(), last["note"].as_str()),
        (Some("kim"), Some(note))
    );
    // A second review of it is refused as the API refuses it.
    let html = outcome(&app, &kim, &approve, &[]).await;
    assert!(
        flash(&html).contains("not waiting for review"),
        "{}",
        flash(&html)
    );

    // Values from members and operators appear escaped, never as markup.
    let (_, html) = page(&app, &kim, &format!("/board/payments/{payment}")).await;
    assert!(
        html.contains("&lt;script&gt;alert(&#39;note&#39;)&lt;/script&gt;"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(&#39;item&#39;)&lt;/script&gt;"),
        "{html}"
    );
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{html}"
    );
    let (_, found) = page(&app, &kim, "/board/payments?location_id=loc_r").await;
    for html in [&html, &found] {
        assert!(
            !html.contains("<script>alert") && !html.contains("<img src=x"),
            "{html}"
        );
    }

    // Approved on the board with an amount: queued, then paid once.
    let (_, second) = in_review(&app, "R-board-2").await;
    let html = outcome(
        &app,
        &kim,
        &format!("/board/reviews/{second}/approve"),
        &[("amount", "₩12,000"), ("note", "customer called")],
    )
    .await;
    assert!(
        flash(&html).contains("approved for ₩12,000 by kim"),
        "{}",
        flash(&html)
    );
    let done = app
        .wait_refund(&second, "succeeded", Duration::from_secs(15))
        .await;
    assert_eq!(
        (done["amount"].as_i64(), done["rule"].as_str()),
        (Some(12000), Some("admin_review"))
    );
    app.stop().await;
}

#[tokio::test]
async fn discard_and_retry_all_dead_do_nothing_unconfirmed_and_pause_shows_everywhere() {
    let app = spawn_app().await;
    let jobs = dead_jobs(&app, 3).await;
    let session = session_of(&app, ADMIN_TOKEN).await;
    let queue = "/board/queues/cancel_payment";
    let job = jobs[0].replace(':', "%3A");

    // Without the confirmation: sent to the question, nothing done.
    let (status, location) = post(&app, &session, &format!("{queue}/retry-dead"), &[]).await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/board/queues/cancel_payment/retry-dead")
    );
    let (status, location) = post(
        &app,
        &session,
        &format!("{queue}/jobs/{job}/discard"),
        &[("confirm", "no")],
    )
    .await;
    assert_eq!(status, 303);
    assert!(location.ends_with("/discard"), "{location}");
    assert_eq!(dead_count(&app).await, 3, "nothing was done");
    let (_, html) = page(&app, &session, &location).await;
    assert!(html.contains("Discard dead job"), "{html}");
    let (_, html) = page(&app, &session, &format!("{queue}/retry-dead")).await;
    assert!(
        html.contains("Retry 3 dead jobs of cancel_payment?"),
        "{html}"
    );

    // Confirmed: one discarded, then the rest retried, each audited with the operator's name.
    let html = outcome(
        &app,
        &session,
        &format!("{queue}/jobs/{job}/discard"),
        &[("confirm", "yes")],
    )
    .await;
    assert!(flash(&html).contains("was discarded"), "{}", flash(&html));
    assert_eq!(dead_count(&app).await, 2);
    let html = outcome(
        &app,
        &session,
        &format!("{queue}/jobs/{job}/discard"),
        &[("confirm", "yes")],
    )
    .await;
    assert!(flash(&html).contains("No such job"), "{}", flash(&html));
    let html = outcome(
        &app,
        &session,
        &format!("{queue}/retry-dead"),
        &[("confirm", "yes")],
    )
    .await;
    assert!(
        flash(&html).contains("2 dead jobs of cancel_payment are back"),
        "{}",
        flash(&html)
    );
    let (_, html) = page(&app, &session, queue).await;
    assert!(
        html.contains("retry_dead") && html.contains("discard") && html.contains("<td>admin</td>"),
        "{html}"
    );

    // Pause and resume: shown on the board and in the API.
    let html = outcome(&app, &session, &format!("{queue}/pause"), &[]).await;
    assert!(html.contains("id=\"paused\""), "{html}");
    let (_, q) = app
        .send(Method::GET, "/v1/queues", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(q["queues"][1]["paused"], true);
    let (_, counts) = page(&app, &session, "/board/counts").await;
    assert!(
        counts.contains("<td class=\"paused\">paused</td>"),
        "{counts}"
    );
    let html = outcome(&app, &session, &format!("{queue}/resume"), &[]).await;
    assert!(flash(&html).contains("runs again"), "{}", flash(&html));
    let (_, q) = app
        .send(Method::GET, "/v1/queues", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(q["queues"][1]["paused"], false);
    app.stop().await;
}

/// The bars a chart of the page drew: (minute, value).
fn bars(html: &str, queue_series: &str) -> Vec<(u64, u64)> {
    let start = html
        .find(&format!("data-series=\"{queue_series}\" role=\"img\""))
        .unwrap_or_else(|| panic!("no {queue_series} chart"));
    let svg = &html[start..start + html[start..].find("</svg>").unwrap()];
    svg.split("data-minute=\"")
        .skip(1)
        .map(|rest| {
            let minute = rest[..rest.find('"').unwrap()].parse().unwrap();
            let value_at = rest.find("data-value=\"").unwrap() + 12;
            let value = rest[value_at..value_at + rest[value_at..].find('"').unwrap()]
                .parse()
                .unwrap();
            (minute, value)
        })
        .collect()
}

#[tokio::test]
async fn the_charts_show_jobs_done_and_failed_in_the_minute_they_ended() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let before = kakaopay_jobs::queue::stats::last_minutes(
        &app.conn().await,
        &app.namespace,
        "approve_payment",
        1,
    )
    .await
    .unwrap()[0]
        .minute;
    // Three payments approved (three approve_payment jobs done), two refunds of nothing (two
    // failed attempts, dead at once).
    for i in 0..3 {
        let id = app
            .paid(payment_body("loc_1", &format!("B-chart-{i}")))
            .await;
        app.wait_status(&id, "approved").await;
    }
    dead_jobs(&app, 2).await;
    let after = kakaopay_jobs::queue::stats::last_minutes(
        &app.conn().await,
        &app.namespace,
        "approve_payment",
        1,
    )
    .await
    .unwrap()[0]
        .minute;
    let session = session_of(&app, ADMIN_TOKEN).await;
    let (_, html) = page(&app, &session, "/board/queues/approve_payment").await;
    let done = bars(&html, "done");
    assert_eq!(done.iter().map(|b| b.1).sum::<u64>(), 3, "{done:?}");
    assert!(
        done.iter().all(|(m, _)| (before..=after).contains(m)),
        "{done:?} in {before}..={after}"
    );
    assert!(bars(&html, "failed").is_empty());
    assert!(html.contains("3 done in the window."));
    let (_, html) = page(&app, &session, "/board/queues/cancel_payment").await;
    let failed = bars(&html, "failed");
    assert_eq!(failed.iter().map(|b| b.1).sum::<u64>(), 2, "{failed:?}");
    assert!(failed.iter().all(|(m, _)| (before..=after).contains(m)));
    assert!(bars(&html, "done").is_empty());
    // The page sampled the oldest pending job's age itself (nothing waits: 0, no bar).
    assert!(html.contains("latest sample: 0 s"), "{html}");
    app.stop().await;
}

// The counters are written by the queue's scripts under the queue's hash tag: on a cluster too.
crate::on_every_topology!(the_charts_show_jobs_done_and_failed_in_the_minute_they_ended);
