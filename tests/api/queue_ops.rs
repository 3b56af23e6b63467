//! Operators in control of the queues, against real processes and Redis: every state paged,
//! a job's detail, discarding and bulk-retrying dead jobs, the dead jobs' retention and
//! attempts per queue, pausing across `work` processes, the live workers list, and a `work`
//! process's own /healthz, /readyz and /metrics.

use crate::support::*;
use reqwest::Method;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Enqueues a refund job for a payment that does not exist (it dies at its first attempt).
async fn doomed(app: &TestApp, key: &str) -> String {
    let producer = kakaopay_jobs::queue::Producer::new(app.conn().await, &app.namespace);
    let request = kakaopay_jobs::RefundRequest::new("member", "test");
    let requested = kakaopay_jobs::refunds::request_refund(
        &producer,
        "pay_nosuchpayment0000000000",
        key,
        request,
    )
    .await
    .unwrap();
    kakaopay_jobs::refunds::job_id(&requested.refund_id)
}

async fn counts(app: &TestApp, queue: &str) -> Value {
    let (status, answer) = app
        .send(Method::GET, "/v1/queues", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == queue)
        .unwrap()
        .clone()
}

async fn wait_counts(app: &TestApp, queue: &str, field: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let c = counts(app, queue).await;
        if c[field] == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{queue} never had {field} = {n}: {c}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every id of a listing, following next_cursor, `limit` a page.
async fn all_pages(app: &TestApp, queue: &str, status: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/queues/{queue}/jobs?status={status}&limit={limit}");
        if let Some(c) = &cursor {
            path.push_str("&cursor=");
            path.extend(url::form_urlencoded::byte_serialize(c.as_bytes()));
        }
        let (code, page) = app.send(Method::GET, &path, Some(ADMIN_TOKEN), None).await;
        assert_eq!(code, 200, "{path}: {page}");
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.len() <= limit);
        ids.extend(jobs.iter().map(|j| j["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn dead_jobs_are_paged_shown_discarded_and_retried_in_bulk() {
    let app = spawn_app().await;
    let mut dead = Vec::new();
    for i in 0..3 {
        dead.push(doomed(&app, &format!("dead-{i}")).await);
    }
    wait_counts(&app, "cancel_payment", "dead", 3).await;
    let mut paged = all_pages(&app, "cancel_payment", "dead", 2).await;
    paged.sort();
    dead.sort();
    assert_eq!(paged, dead, "each dead job once");

    let (status, job) = app
        .send(
            Method::GET,
            &format!("/v1/queues/cancel_payment/jobs/{}", dead[0]),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(
        (
            job["status"].as_str(),
            job["attempts"].as_u64(),
            job["max_attempts"].as_u64()
        ),
        (Some("dead"), Some(1), Some(12))
    );
    assert_eq!(job["args"]["payment_id"], "pay_nosuchpayment0000000000");
    let errors = job["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{job}");
    assert!(
        errors[0]["error"].as_str().unwrap().contains("no payment"),
        "{job}"
    );
    assert!(
        errors[0]["at"].is_string()
            && job["enqueued_at"].is_string()
            && job["finished_at"].is_string()
    );
    assert!(job.get("run_at").is_some());
    let (status, _) = app
        .send(
            Method::GET,
            "/v1/queues/cancel_payment/jobs/nope",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 404);

    let path = format!("/v1/queues/cancel_payment/jobs/{}", dead[0]);
    let (status, _) = app
        .send(Method::DELETE, &path, Some(CLIENT_TOKEN), None)
        .await;
    assert_eq!(status, 403);
    let (status, answer) = app
        .send(Method::DELETE, &path, Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, 204, "{answer}");
    let (status, _) = app
        .send(Method::DELETE, &path, Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, 404, "gone with its record");
    let audit = kakaopay_jobs::queue::operate::audit(
        &app.conn().await,
        &app.namespace,
        "cancel_payment",
        10,
    )
    .await
    .unwrap();
    assert_eq!(
        (
            audit[0].action.as_str(),
            audit[0].by.as_str(),
            audit[0].subject.as_str()
        ),
        ("discard", "admin", dead[0].as_str())
    );

    // A job that is not dead is not discarded: one waiting in a paused queue.
    let (status, _) = app
        .send(
            Method::POST,
            "/v1/queues/cancel_payment/pause",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let waiting = doomed(&app, "waiting").await;
    let (status, answer) = app
        .send(
            Method::DELETE,
            &format!("/v1/queues/cancel_payment/jobs/{waiting}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("job_not_dead"))
    );
    assert_eq!(counts(&app, "cancel_payment").await["paused"], true);

    let (status, answer) = app
        .send(
            Method::POST,
            "/v1/queues/cancel_payment/retry-dead",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(
        (status, answer["retried"].as_u64()),
        (202, Some(2)),
        "{answer}"
    );
    let c = counts(&app, "cancel_payment").await;
    assert_eq!(
        (c["dead"].as_u64(), c["pending"].as_u64()),
        (Some(0), Some(3)),
        "{c}"
    );
    let mut pending = all_pages(&app, "cancel_payment", "pending", 2).await;
    pending.sort();
    let mut expected = vec![dead[1].clone(), dead[2].clone(), waiting.clone()];
    expected.sort();
    assert_eq!(pending, expected, "every pending job once");
    let (status, _) = app
        .send(
            Method::POST,
            "/v1/queues/cancel_payment/resume",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    wait_counts(&app, "cancel_payment", "dead", 3).await;
    assert_eq!(counts(&app, "cancel_payment").await["paused"], false);
    for (path, field) in [
        (
            "/v1/queues/cancel_payment/jobs?status=done&cursor=nonsense",
            "cursor",
        ),
        (
            "/v1/queues/cancel_payment/jobs?status=dead&cursor=x",
            "cursor",
        ),
    ] {
        let (s, answer) = app.send(Method::GET, path, Some(ADMIN_TOKEN), None).await;
        assert_eq!(
            (s, answer["error"]["field"].as_str()),
            (400, Some(field)),
            "{path}"
        );
    }
    let (status, _) = app
        .send(
            Method::POST,
            "/v1/queues/nope/pause",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn dead_jobs_leave_after_their_retention_and_attempts_are_set_per_queue() {
    let app = spawn_app_tuned(AppOptions::default(), |s| {
        s.operations.dead_retention = Duration::from_secs(1);
        s.operations.job_attempts =
            kakaopay_worker::config::JobAttempts(vec![("approve_payment".into(), 3)]);
    })
    .await;
    // A job the app itself enqueues (the approval a callback asks for) gets JOB_ATTEMPTS.
    app.connect_open_api("loc_1").await;
    let payment = app.paid(payment_body("loc_1", "B-attempts")).await;
    let approval = kakaopay_jobs::JobKind::job_id(&kakaopay_jobs::ApprovePayment {
        payment_id: payment.clone(),
    })
    .unwrap();
    let conn = app.conn().await;
    let info =
        kakaopay_jobs::queue::inspect::job(&conn, &app.namespace, "approve_payment", &approval)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(info.max_attempts, 3, "approve_payment=3");
    let job = doomed(&app, "retention").await;
    let info = kakaopay_jobs::queue::inspect::job(&conn, &app.namespace, "cancel_payment", &job)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.max_attempts, 12, "a queue left out keeps its default");
    wait_counts(&app, "cancel_payment", "dead", 1).await;
    wait_counts(&app, "cancel_payment", "dead", 0).await;
    let gone = kakaopay_jobs::queue::inspect::job(&conn, &app.namespace, "cancel_payment", &job)
        .await
        .unwrap();
    assert!(gone.is_none(), "dropped with its record");
    app.stop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `work` process on the app's Redis and namespace, serving its metrics on `port`.
fn work(app: &TestApp, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kakaopay-worker"))
        .arg("work")
        .envs(app.redis_env())
        .env("KAKAOPAY_API_URL", &app.sim.url)
        .env("JOB_LEASE_SECS", "2")
        .env("METRICS_BIND", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn workers(app: &TestApp) -> Vec<Value> {
    let (status, answer) = app
        .send(Method::GET, "/v1/workers", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["workers"].as_array().unwrap().clone()
}

async fn wait_workers(app: &TestApp, n: usize, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let live = workers(app).await;
        if live.len() == n {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "never {n} workers: {live:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn signal(child: &Child, sig: &str) {
    Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
}

/// `/metrics` parsed by Prometheus's own Python parser: answers (families, histograms with
/// `_bucket` series, families without HELP).
fn parse_metrics(text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let have = |py: &str| {
        Command::new("python3")
            .args(["-c", py])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !have("import prometheus_client.parser") {
        let _ = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--user",
                "prometheus_client",
            ])
            .status();
        assert!(
            have("import prometheus_client.parser"),
            "the Prometheus parser is installed (pip install prometheus_client)"
        );
    }
    let script = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
families, buckets, undocumented = [], [], []
for f in text_string_to_metric_families(sys.stdin.read()):
    families.append(f.name)
    if any(s.name.endswith('_bucket') for s in f.samples):
        buckets.append(f.name)
    if not f.documentation:
        undocumented.append(f.name)
print(json.dumps([families, buckets, undocumented]))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample(text: &str, name: &str, queue: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("queue=\"{queue}\"")))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn a_paused_queue_in_two_work_processes_starts_nothing_until_resumed() {
    let app = spawn_app_with(AppOptions {
        workers: false,
        ..Default::default()
    })
    .await;
    let ports = [free_port(), free_port()];
    let mut a = work(&app, ports[0]);
    let mut b = work(&app, ports[1]);
    wait_workers(&app, 2, Duration::from_secs(20)).await;
    for w in workers(&app).await {
        assert_eq!(w["kind"], "work", "{w}");
        assert_eq!(w["concurrency"], 16);
        assert_eq!(w["queues"].as_array().unwrap().len(), 3);
        assert!(
            w["pid"]
                .as_u64()
                .is_some_and(|p| p == a.id() as u64 || p == b.id() as u64),
            "{w}"
        );
        for field in ["id", "host", "started_at", "last_seen"] {
            assert!(w[field].is_string(), "{field}: {w}");
        }
        assert!(w["in_flight"].is_u64());
    }

    let (status, answer) = app
        .send(
            Method::POST,
            "/v1/queues/cancel_payment/pause",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(
        (status, answer["paused"].as_bool()),
        (200, Some(true)),
        "{answer}"
    );
    // Honoured by every process within a second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for i in 0..5 {
        doomed(&app, &format!("paused-{i}")).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let c = counts(&app, "cancel_payment").await;
    assert_eq!(
        (
            c["pending"].as_u64(),
            c["running"].as_u64(),
            c["dead"].as_u64(),
            c["paused"].as_bool()
        ),
        (Some(5), Some(0), Some(0), Some(true)),
        "nothing started while paused: {c}"
    );
    let metrics_url = format!("http://127.0.0.1:{}", ports[0]);
    let paused_metrics = reqwest::get(format!("{metrics_url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(&paused_metrics, "queue_paused", "cancel_payment"),
        Some(1.0),
        "{paused_metrics}"
    );
    assert!(
        sample(
            &paused_metrics,
            "queue_oldest_pending_age_seconds",
            "cancel_payment"
        )
        .unwrap()
            >= 2.0,
        "{paused_metrics}"
    );

    let (status, _) = app
        .send(
            Method::POST,
            "/v1/queues/cancel_payment/resume",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    wait_counts(&app, "cancel_payment", "dead", 5).await;

    // The work process's own endpoints.
    for path in ["/healthz", "/readyz"] {
        let r = reqwest::get(format!("{metrics_url}{path}")).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // Either process may have run the jobs: each parses, and between them the durations
    // are histograms.
    let mut histograms_seen = Vec::new();
    let mut text = String::new();
    for port in ports {
        text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_no_secret_in(&text, "/metrics");
        let (families, histograms, undocumented) = parse_metrics(&text);
        assert!(
            undocumented.is_empty(),
            "every metric has # HELP: {undocumented:?}"
        );
        for name in [
            "kakaopay_worker_build_info",
            "queue_jobs",
            "queue_oldest_pending_age_seconds",
            "queue_paused",
        ] {
            assert!(families.iter().any(|f| f == name), "{name} in {families:?}");
        }
        histograms_seen.extend(histograms);
    }
    assert!(
        histograms_seen.contains(&"job_duration_seconds".to_string()),
        "{histograms_seen:?}"
    );
    assert_eq!(sample(&text, "queue_paused", "cancel_payment"), Some(0.0));

    // SIGKILL: gone within three heartbeats (1 s each); SIGTERM: gone at once.
    signal(&a, "-KILL");
    a.wait().unwrap();
    let took = wait_workers(&app, 1, Duration::from_secs(10)).await;
    assert!(
        took <= Duration::from_millis(3200),
        "a killed worker left after {took:?}"
    );
    assert_eq!(workers(&app).await[0]["pid"], b.id() as u64);
    signal(&b, "-TERM");
    let took = wait_workers(&app, 0, Duration::from_secs(10)).await;
    assert!(
        took <= Duration::from_millis(1500),
        "a stopped worker left after {took:?}"
    );
    b.wait().unwrap();
    app.stop().await;
}

#[tokio::test]
async fn queue_commands_on_the_command_line() {
    let app = spawn_app().await;
    let job = doomed(&app, "cli-1").await;
    doomed(&app, "cli-2").await;
    wait_counts(&app, "cancel_payment", "dead", 2).await;
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kakaopay-worker"))
            .arg("queues")
            .args(args)
            .envs(app.redis_env())
            .env("OPERATOR_NAME", "park")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, shown, err) = cli(&["job", "cancel_payment", &job]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        shown.contains("dead") && shown.contains("no payment") && shown.contains("1 of 12"),
        "{shown}"
    );
    let (code, _, err) = cli(&["discard", "cancel_payment", &job]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = cli(&["discard", "cancel_payment", &job]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no job"), "{err}");
    let (code, out, err) = cli(&["pause", "cancel_payment"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("paused"));
    assert_eq!(counts(&app, "cancel_payment").await["paused"], true);
    let (code, out, err) = cli(&["retry-dead", "cancel_payment"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("1 dead"), "{out}");
    let (code, _, err) = cli(&["resume", "cancel_payment"]);
    assert_eq!(code, Some(0), "{err}");
    wait_counts(&app, "cancel_payment", "dead", 1).await;
    let audit = kakaopay_jobs::queue::operate::audit(
        &app.conn().await,
        &app.namespace,
        "cancel_payment",
        10,
    )
    .await
    .unwrap();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|a| (a.action.as_str(), a.by.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("resume", "park"),
            ("retry_dead", "park"),
            ("pause", "park"),
            ("discard", "park")
        ]
    );
    let (code, _, err) = cli(&["pause", "nope"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no queue"), "{err}");
    app.stop().await;
}

crate::on_every_topology!(
    dead_jobs_are_paged_shown_discarded_and_retried_in_bulk,
    a_paused_queue_in_two_work_processes_starts_nothing_until_resumed
);
