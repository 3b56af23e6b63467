//! A real browser: headless Chromium (Debian's, driven through chromedriver) opens the board,
//! logs in, sees a dead job and retries it; and a member walks a payment through the
//! simulator's page, pressing Approve, through our callback to the return page.
//! Screenshots go to a temporary directory (printed), for people to look at.

use crate::support::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (.ci/run installs Debian's chromium-driver)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1200,900", format!("--user-data-dir={}", profile.display())],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

fn shots() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kakaopay-screenshots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn save(client: &Client, dir: &std::path::Path, name: &str) {
    let png = client.screenshot().await.unwrap();
    let path = dir.join(name);
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

#[tokio::test]
async fn an_operator_retries_a_dead_job_on_the_board_and_a_member_approves_on_kakaopays_page() {
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let driver = chromedriver();
    let profile =
        std::env::temp_dir().join(format!("kakaopay-chromium-{:x}", rand::random::<u32>()));
    let client = browser(&driver, &profile).await;
    let dir = shots();

    // A member pays on the simulator's page.
    let mut body = payment_body("loc_1", "B-browser");
    body["return_url"] = json!(format!("{}/healthz", app.address));
    let (status, created) = app.create_payment(body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["payment_id"].as_str().unwrap().to_string();
    client
        .goto(created["redirect"]["pc"].as_str().unwrap())
        .await
        .unwrap();
    let amount = client
        .find(Locator::Id("amount"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(amount.contains("22000"), "{amount}");
    save(&client, &dir, "kakaopay-page.png").await;
    client
        .find(Locator::Id("approve"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // KakaoPay's page → our callback → the return page, with the outcome in the URL.
    let deadline = Instant::now() + Duration::from_secs(10);
    let landed = loop {
        let url = client.current_url().await.unwrap();
        if url.path() == "/healthz" {
            break url;
        }
        assert!(
            Instant::now() < deadline,
            "the browser never came back: {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let query: std::collections::HashMap<String, String> =
        landed.query_pairs().into_owned().collect();
    assert_eq!(query.get("payment_id"), Some(&id));
    assert_eq!(query.get("status").map(String::as_str), Some("approving"));
    app.wait_status(&id, "approved").await;

    // An operator finds a dead job on the board and retries it.
    let conn = app.conn().await;
    let producer = kakaopay_jobs::queue::Producer::new(conn, &app.namespace);
    let request = kakaopay_jobs::RefundRequest::new("member", "test");
    let refund = kakaopay_jobs::refunds::request_refund(
        &producer,
        "pay_nosuchpayment0000000000",
        "k",
        request,
    )
    .await
    .unwrap();
    let job = kakaopay_jobs::refunds::job_id(&refund.refund_id);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, q) = app
            .send(reqwest::Method::GET, "/v1/queues", Some(ADMIN_TOKEN), None)
            .await;
        if q["queues"][1]["dead"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{q}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    client
        .goto(&format!("{}/board", app.address))
        .await
        .unwrap();
    client
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(ADMIN_TOKEN)
        .await
        .unwrap();
    client
        .find(Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // After a click the next page may still be loading: wait for what it should show.
    let row = client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(&format!("tr[data-job=\"{job}\"]")))
        .await
        .expect("the dead job is on the board");
    let text = row.text().await.unwrap();
    assert!(
        text.contains("dead") && text.contains("no payment"),
        "{text}"
    );
    // In the table board.js refreshes: read through its replacements.
    let dead_cell = until_text(&client, "#queue-cancel_payment td.dead", "1", false).await;
    assert_eq!(dead_cell, "1");
    save(&client, &dir, "board.png").await;
    row.find(Locator::Css("button.retry"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let flash = client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Id("flash"))
        .await
        .expect("the retry's outcome")
        .text()
        .await
        .unwrap();
    assert!(
        flash.contains(&job) && flash.contains("back in its queue"),
        "{flash}"
    );
    save(&client, &dir, "board-after-retry.png").await;

    let page: Value = json!(client.source().await.unwrap().len());
    assert!(page.as_u64().unwrap() > 0);
    client.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    app.stop().await;
}

/// Waits until the element `css` shows text containing `wanted`, reloading the page between
/// looks when `reload` (a page that does not change by itself).
async fn until_text(client: &Client, css: &str, wanted: &str, reload: bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(e) = client.find(Locator::Css(css)).await {
            if let Ok(text) = e.text().await {
                if text.contains(wanted) {
                    return text;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{css} never showed {wanted:?}: {}",
            client.source().await.unwrap_or_default()
        );
        if reload {
            client.refresh().await.unwrap();
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Clicks `css` once it is there. board.js replaces refreshed parts of a page every few
/// seconds, so an element found may be gone by the click: it is found again.
async fn click(client: &Client, css: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let clicked = match client.find(Locator::Css(css)).await {
            Ok(e) => e.click().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match clicked {
            Ok(()) => return,
            Err(e) => assert!(Instant::now() < deadline, "{css}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn paused(app: &TestApp) -> bool {
    let (_, q) = app
        .send(reqwest::Method::GET, "/v1/queues", Some(ADMIN_TOKEN), None)
        .await;
    q["queues"][1]["paused"].as_bool().unwrap()
}

#[tokio::test]
async fn an_operator_approves_a_review_retries_every_dead_job_and_pauses_a_queue_on_the_board() {
    let app = spawn_app().await;
    app.connect_reviewed_location().await;
    // A refund left to a person, and three dead jobs.
    let (payment, refund) = app
        .refund_in_review(
            payment_body("loc_r", "B-review"),
            "B-review",
            json!({"requested_by": "member", "reason": "booking_canceled"}),
        )
        .await;
    let producer = kakaopay_jobs::queue::Producer::new(app.conn().await, &app.namespace);
    for i in 0..3 {
        let request = kakaopay_jobs::RefundRequest::new("member", "test");
        kakaopay_jobs::refunds::request_refund(
            &producer,
            "pay_nosuchpayment0000000000",
            &format!("dead-{i}"),
            request,
        )
        .await
        .unwrap();
    }

    let driver = chromedriver();
    let profile =
        std::env::temp_dir().join(format!("kakaopay-chromium-{:x}", rand::random::<u32>()));
    let client = browser(&driver, &profile).await;
    let dir = shots();
    client
        .goto(&format!("{}/board/login", app.address))
        .await
        .unwrap();
    client
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(ADMIN_TOKEN)
        .await
        .unwrap();
    click(&client, "#login").await;

    // The review: from the overview to the list, approved for 12,000 with a note.
    until_text(&client, "#reviews-waiting", "1 refund waits", true).await;
    click(&client, "#reviews-waiting a").await;
    let form = format!("form.approve[data-refund=\"{refund}\"]");
    client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(&format!("{form} input[name=amount]")))
        .await
        .unwrap()
        .send_keys("12000")
        .await
        .unwrap();
    client
        .find(Locator::Css(&format!("{form} input[name=note]")))
        .await
        .unwrap()
        .send_keys("customer called")
        .await
        .unwrap();
    save(&client, &dir, "board-reviews.png").await;
    click(&client, &format!("{form} button.approve")).await;
    until_text(&client, "#flash", "approved for ₩12,000 by admin", false).await;
    client
        .goto(&format!("{}/board/payments/{payment}", app.address))
        .await
        .unwrap();
    let shown = until_text(
        &client,
        &format!("#refund-{refund} .status"),
        "succeeded",
        true,
    )
    .await;
    assert_eq!(shown, "succeeded");
    let amount = client
        .find(Locator::Css(&format!("#refund-{refund} .amount")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(amount, "₩12,000");
    save(&client, &dir, "board-payment.png").await;
    assert_eq!(app.cancels_of(&payment).await, 1, "paid once at KakaoPay");

    // Every dead job retried, after the board asked.
    client
        .goto(&format!("{}/board/queues/cancel_payment", app.address))
        .await
        .unwrap();
    until_text(&client, "#retry-dead", "Retry all 3 dead jobs", true).await;
    save(&client, &dir, "board-queue.png").await;
    click(&client, "#retry-dead").await;
    until_text(
        &client,
        "#question",
        "Retry 3 dead jobs of cancel_payment?",
        false,
    )
    .await;
    click(&client, "#confirm").await;
    until_text(
        &client,
        "#flash",
        "3 dead jobs of cancel_payment are back in the queue",
        false,
    )
    .await;
    let audit = kakaopay_jobs::queue::operate::audit(
        &app.conn().await,
        &app.namespace,
        "cancel_payment",
        10,
    )
    .await
    .unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "retry_dead" && e.by == "admin" && e.subject == "3 jobs"),
        "{audit:?}"
    );

    // Paused, seen paused by the API, then resumed.
    click(&client, "#pause").await;
    until_text(&client, "#paused", "Paused", false).await;
    assert!(paused(&app).await);
    click(&client, "#resume").await;
    until_text(&client, "#running", "Running", false).await;
    assert!(!paused(&app).await);

    // The overview's counts refresh by themselves (board.js, allowed by the CSP).
    client
        .goto(&format!("{}/board", app.address))
        .await
        .unwrap();
    let first = until_text(&client, "#queues caption", "As of", false).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // The caption may be replaced between finding it and reading it: read again.
        let now = match client.find(Locator::Css("#queues caption")).await {
            Ok(e) => e.text().await.unwrap_or_else(|_| first.clone()),
            Err(_) => first.clone(),
        };
        if now != first {
            break;
        }
        assert!(Instant::now() < deadline, "the counts never refreshed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    save(&client, &dir, "board-overview.png").await;
    client.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    app.stop().await;
}
