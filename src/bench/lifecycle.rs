//! Whole payments as a booking system and its members make them: create (KakaoPay *ready*),
//! the member approves on KakaoPay's page, the callback, the approval by a worker, one full
//! refund by a worker. The booking system learns each outcome from our webhooks, as it would
//! in production, so nobody polls.

use super::load::{Conn, Req};
use crate::events::EventKind;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub const TOTAL: i64 = 22_000;
/// Longest one step may wait for its webhook before the lifecycle counts as failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where our webhooks arrive: each event's type goes to whoever watches its payment.
#[derive(Clone, Default)]
pub struct Hooks {
    watchers: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<String>>>>,
    pub received: Arc<AtomicU64>,
}

impl Hooks {
    /// Serves the webhook endpoint; answers its address.
    pub async fn serve(&self) -> anyhow::Result<SocketAddr> {
        let listener = crate::listener::bind(([127, 0, 0, 1], 0).into())?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/hooks", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(addr)
    }

    fn watch(&self, payment_id: &str) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().insert(payment_id.to_string(), tx);
        rx
    }

    fn unwatch(&self, payment_id: &str) {
        self.lock().remove(payment_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<String>>> {
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn receive(State(hooks): State<Hooks>, Json(event): Json<Value>) -> axum::http::StatusCode {
    hooks.received.fetch_add(1, Ordering::Relaxed);
    let kind = event["type"].as_str().unwrap_or_default().to_string();
    if let Some(id) = event["data"]["payment_id"].as_str() {
        if let Some(tx) = hooks.lock().get(id) {
            let _ = tx.send(kind);
        }
    }
    axum::http::StatusCode::NO_CONTENT
}

/// Who the lifecycles talk to.
#[derive(Clone)]
pub struct Target {
    pub api: SocketAddr,
    pub sim: SocketAddr,
    pub client_token: String,
    pub admin_token: String,
    pub location: String,
    pub hooks: Hooks,
}

/// A run's result.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Lifecycles finished inside the measured window (after the warm-up).
    pub in_window: u64,
    pub window: Duration,
    /// Every lifecycle finished, warm-up and drain included.
    pub finished: u64,
    pub failed: u64,
    pub first_failure: Option<String>,
    /// Sorted durations of the lifecycles finished in the window.
    pub latencies: Vec<Duration>,
    /// Sorted durations of each step of those lifecycles: payment created (KakaoPay ready),
    /// approved (page, callback, worker, webhook), refunded (request, worker, webhook).
    pub steps: [Vec<Duration>; 3],
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.in_window as f64 / self.window.as_secs_f64()
    }
}

/// Runs `concurrency` lifecycles at a time for `warmup + window`; the rate counts those
/// finished inside the window, so the ramp-up does not dilute it. Lifecycles started before
/// the end are finished (and counted in `finished`) so the next run starts on an idle service.
pub async fn run(
    target: &Target,
    concurrency: usize,
    warmup: Duration,
    window: Duration,
    tag: &str,
) -> Outcome {
    let started = Instant::now();
    let (from, until) = (started + warmup, started + warmup + window);
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let target = target.clone();
            let tag = format!("{tag}-{task}");
            tokio::spawn(async move {
                let mut api = Conn::new(target.api);
                let mut sim = Conn::new(target.sim);
                let mut out = Outcome::default();
                let mut n = 0u64;
                while Instant::now() < until {
                    n += 1;
                    let began = Instant::now();
                    match one(&target, &mut api, &mut sim, &format!("{tag}-{n}")).await {
                        Ok(steps) => {
                            out.finished += 1;
                            let ended = Instant::now();
                            if ended >= from && ended < until {
                                out.in_window += 1;
                                out.latencies.push(ended - began);
                                for (all, step) in out.steps.iter_mut().zip(steps) {
                                    all.push(step);
                                }
                            }
                        }
                        Err(e) => {
                            out.failed += 1;
                            out.first_failure.get_or_insert(e.to_string());
                        }
                    }
                }
                out
            })
        })
        .collect();
    let mut total = Outcome {
        window,
        ..Default::default()
    };
    for task in tasks {
        let out = task.await.unwrap_or_default();
        total.in_window += out.in_window;
        total.finished += out.finished;
        total.failed += out.failed;
        total.latencies.extend(out.latencies);
        for (all, step) in total.steps.iter_mut().zip(out.steps) {
            all.extend(step);
        }
        if total.first_failure.is_none() {
            total.first_failure = out.first_failure;
        }
    }
    total.latencies.sort_unstable();
    for step in &mut total.steps {
        step.sort_unstable();
    }
    total
}

fn expect(answer: &super::load::Answer, status: u16, step: &str) -> anyhow::Result<()> {
    if answer.status != status {
        anyhow::bail!(
            "{step}: HTTP {} instead of {status}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    Ok(())
}

async fn wait_for(rx: &mut mpsc::UnboundedReceiver<String>, kind: EventKind) -> anyhow::Result<()> {
    match tokio::time::timeout(STEP_TIMEOUT, rx.recv()).await {
        Ok(Some(k)) if k == kind.as_str() => Ok(()),
        Ok(Some(k)) => anyhow::bail!("expected {kind}, got {k}"),
        Ok(None) => anyhow::bail!("the webhook listener went away"),
        Err(_) => anyhow::bail!("no {kind} within {STEP_TIMEOUT:?}"),
    }
}

/// A meeting room booked for the day after tomorrow.
pub fn payment_body(location: &str, order: &str) -> Value {
    json!({
        "location_id": location, "order_id": order, "user_id": "member_42",
        "service": "bookings", "item_name": "Meeting room A, 2h", "quantity": 1,
        "total_amount": TOTAL, "tax_free_amount": 0,
        "starts_at": (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339(),
    })
}

/// The path and query of an absolute URL.
fn path_of(url: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(url)?;
    Ok(match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    })
}

/// One lifecycle; answers how long its three steps took.
async fn one(
    target: &Target,
    api: &mut Conn,
    sim: &mut Conn,
    order: &str,
) -> anyhow::Result<[Duration; 3]> {
    let began = Instant::now();
    let created = api
        .send(
            &Req::post_json("/v1/payments", &payment_body(&target.location, order))
                .bearer(&target.client_token),
        )
        .await;
    expect(&created, 201, "create")?;
    let created = created.json();
    let payment_id = created["payment_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let page = created["redirect"]["pc"].as_str().unwrap_or_default();
    let press = path_of(page)?.replace("/info", "/action/approve");
    let mut events = target.hooks.watch(&payment_id);
    let created_at = Instant::now();
    let result = async {
        let pressed = sim.send(&Req::post_form(press, "method=CARD")).await;
        let callback = pressed
            .location
            .ok_or_else(|| anyhow::anyhow!("press: HTTP {} without a redirect", pressed.status))?;
        expect(
            &api.send(&Req::get(path_of(&callback)?)).await,
            200,
            "callback",
        )?;
        wait_for(&mut events, EventKind::PaymentApproved).await?;
        let approved_at = Instant::now();
        let refund = Req::post_json(
            format!("/v1/payments/{payment_id}/refunds"),
            &json!({"requested_by": "admin", "reason": "bench", "amount": TOTAL}),
        )
        .bearer(&target.admin_token)
        .header("idempotency-key", order);
        expect(&api.send(&refund).await, 202, "refund")?;
        wait_for(&mut events, EventKind::RefundSucceeded).await?;
        Ok([
            created_at - began,
            approved_at - created_at,
            approved_at.elapsed(),
        ])
    }
    .await;
    target.hooks.unwatch(&payment_id);
    result
}
