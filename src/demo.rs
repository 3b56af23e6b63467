//! `kakaopay-worker demo`: the simulator and the whole service in one process, walking one
//! payment through exactly the HTTP calls a booking system and a member's browser make.

use crate::bench::processes::PrivateRedis;
use crate::config::{HttpArgs, RedisArgs, TokenList};
use crate::secret::Secret;
use crate::sim::{SimConfig, SimServer, DEFAULT_SECRET_KEY};
use crate::startup::{Application, Settings};
use crate::store::Store;
use crate::workers::WorkerSettings;
use anyhow::{bail, Context};
use kakaopay_jobs::queue::{Connection, Purpose, Topology};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn step(n: u32, text: &str) {
    println!("\n{n}. {text}");
}

fn show(label: &str, value: impl std::fmt::Display) {
    println!("   {label:<14} {value}");
}

/// A JSON value as a person reads it: strings without their quotes.
fn text(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

pub async fn run(redis: RedisArgs, keep: bool) -> anyhow::Result<()> {
    crate::tls::init();
    let (topology, _private) = redis_for_demo(&redis).await?;
    let sim = SimServer::spawn(SimConfig::default())
        .await
        .context("cannot start the simulator")?;
    let client_token = format!("demo-client-{:016x}", rand::random::<u64>());
    let admin_token = format!("demo-admin-{:016x}", rand::random::<u64>());
    let namespace = format!(
        "{}-demo-{:06x}",
        redis.queue_namespace,
        rand::random::<u32>() & 0xff_ffff
    );
    let mut workers = WorkerSettings::defaults(4);
    workers.reconciler.every = Duration::from_secs(5);
    let app = Application::start(Settings {
        redis: topology.clone(),
        durability: redis.durability(),
        namespace: namespace.clone(),
        kakaopay_api_url: Some(sim.url.parse()?),
        kakaopay_timeouts: crate::kakaopay::Timeouts::default(),
        ready_window: Duration::from_secs(900),
        http: Some(HttpArgs {
            bind: "127.0.0.1:0".parse()?,
            public_url: None,
            api_tokens: TokenList(vec![Secret::new(&client_token)]),
            admin_tokens: TokenList(vec![Secret::new(&admin_token)]),
            callback_secret: Secret::new(format!("demo-{:032x}", rand::random::<u128>())),
        }),
        workers: Some(workers),
        webhook: None,
        operations: Default::default(),
    })
    .await
    .context("cannot start the service on that Redis")?;
    let api = format!("http://{}", app.address.expect("the API runs"));
    let result = walk(&api, &sim, &client_token, &admin_token).await;
    app.stop().await;
    if keep {
        println!("\n(The demo's Redis keys are kept under the namespace {namespace}.)");
    } else {
        let conn = Connection::open(&topology, Purpose::Shared, None).await?;
        let deleted = Store::new(conn, &namespace).forget_namespace().await?;
        println!("\n(The demo's {deleted} Redis keys are deleted; `demo --keep` keeps them.)");
    }
    result
}

/// The Redis the demo runs on: the one configured when it answers; else, for a plain
/// `REDIS_URL`, a private `redis-server` from PATH that lives as long as the demo.
async fn redis_for_demo(redis: &RedisArgs) -> anyhow::Result<(Topology, Option<PrivateRedis>)> {
    let topology = redis.topology();
    let Topology::Server(url) = &topology else {
        return Ok((topology, None));
    };
    if answers(url).await {
        println!("Redis: {}", Redacted(url));
        return Ok((topology, None));
    }
    let dir = std::env::temp_dir().join(format!("kakaopay-demo-{}", std::process::id()));
    match PrivateRedis::start(&dir).await {
        Ok(private) => {
            println!(
                "Redis: nothing answered at {}, so the demo started its own redis-server on port {} \
                 (stopped when the demo ends).",
                Redacted(url),
                private.port
            );
            Ok((Topology::Server(private.url()), Some(private)))
        }
        Err(_) => bail!(
            "no Redis answers at {} and there is no redis-server on PATH: install Redis 7 \
             (apt-get install redis-server, or brew install redis) or set REDIS_URL to a running one",
            Redacted(url)
        ),
    }
}

async fn answers(url: &str) -> bool {
    let ping = async {
        let client = redis::Client::open(url).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), ping).await,
        Ok(Some(_))
    )
}

/// A Redis URL without its password.
struct Redacted<'a>(&'a str);

impl std::fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match url::Url::parse(self.0) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                write!(f, "{u}")
            }
            Err(_) => f.write_str("(an unparsable URL)"),
        }
    }
}

async fn walk(
    api: &str,
    sim: &SimServer,
    client_token: &str,
    admin_token: &str,
) -> anyhow::Result<()> {
    let walk = Walk {
        // A browser that shows us each redirect instead of following it.
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        api,
        sim,
        client_token,
        admin_token,
    };
    step(
        1,
        "KakaoPay (the simulator) and kakaopay-worker are running",
    );
    show("simulator", &sim.url);
    show("API", api);
    walk.connect_location().await?;
    let payment_id = walk.start_payment().await?;
    let payment = walk.approve(&payment_id).await?;
    walk.compare_ledger(&payment).await?;
    if payment["status"] != "approved" {
        bail!("the payment ended {}, not approved", payment["status"]);
    }
    let refund = walk.refund(&payment_id, &payment).await?;
    if refund["status"] != "succeeded" {
        bail!("the refund ended {}, not succeeded", refund["status"]);
    }
    println!("\nDone: one payment approved once, refunded once.");
    Ok(())
}

/// The parties of the walk: the browser, the service and KakaoPay, and the tokens of the
/// booking system (client) and the operator (admin).
struct Walk<'a> {
    http: reqwest::Client,
    api: &'a str,
    sim: &'a SimServer,
    client_token: &'a str,
    admin_token: &'a str,
}

impl Walk<'_> {
    async fn connect_location(&self) -> anyhow::Result<()> {
        step(2, "An operator connects location demo-gangnam to KakaoPay (PUT /v1/locations/demo-gangnam/kakaopay)");
        let integration: Value = self
            .http
            .put(format!("{}/v1/locations/demo-gangnam/kakaopay", self.api))
            .bearer_auth(self.admin_token)
            .json(&json!({"cid": "TC0ONETIME", "secret_key": DEFAULT_SECRET_KEY}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        show("cid", text(&integration["cid"]));
        show("secret_key", text(&integration["secret_key"]));
        show("services", &integration["services"]);
        Ok(())
    }

    /// Steps 3 and 4: the payment up to our callback. Returns its id.
    async fn start_payment(&self) -> anyhow::Result<String> {
        step(
            3,
            "The booking system starts a payment for a meeting room (POST /v1/payments)",
        );
        let created: Value = self
            .http
            .post(format!("{}/v1/payments", self.api))
            .bearer_auth(self.client_token)
            .json(&json!({
                "location_id": "demo-gangnam", "order_id": format!("DEMO-{:06}", rand::random::<u32>() % 1_000_000),
                "user_id": "member_42", "service": "bookings", "item_name": "Meeting room A, 2h",
                "quantity": 1, "total_amount": 22000, "tax_free_amount": 0,
                "starts_at": (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339(),
            }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let payment_id = created["payment_id"]
            .as_str()
            .context("no payment_id")?
            .to_string();
        show("payment_id", &payment_id);
        show("status", text(&created["status"]));
        show("tid", text(&created["tid"]));
        show("pay page", text(&created["redirect"]["pc"]));

        step(4, "The member opens KakaoPay's page and presses Approve");
        let page_url = created["redirect"]["pc"]
            .as_str()
            .context("no redirect")?
            .to_string();
        let page = self.http.get(&page_url).send().await?.text().await?;
        if !page.contains("id=\"approve\"") {
            bail!("the payment page has no Approve button");
        }
        let pressed = self
            .http
            .post(page_url.replace("/info", "/action/approve"))
            .form(&[("method", "CARD")])
            .send()
            .await?;
        let callback = pressed
            .headers()
            .get("location")
            .context("KakaoPay did not redirect")?
            .to_str()?
            .to_string();
        show(
            "KakaoPay sends the browser to",
            callback.split('?').next().unwrap_or(""),
        );
        let back = self.http.get(&callback).send().await?;
        show(
            "our callback",
            format!("HTTP {}: the approval is queued", back.status().as_u16()),
        );
        Ok(payment_id)
    }

    /// Step 5: the payment once a worker is done with it.
    async fn approve(&self, payment_id: &str) -> anyhow::Result<Value> {
        step(5, "A worker approves at KakaoPay");
        let started = Instant::now();
        let payment = self
            .settled(
                &format!("/v1/payments/{payment_id}"),
                ["approving", "ready"],
                "the payment was not approved within 30 s",
            )
            .await?;
        show("status", text(&payment["status"]));
        show("aid", text(&payment["aid"]));
        show(
            "amount",
            format!(
                "{} won (VAT {})",
                payment["amount"]["total"], payment["amount"]["vat"]
            ),
        );
        show("method", text(&payment["payment_method_type"]));
        show(
            "took",
            format!("{} ms after the callback", started.elapsed().as_millis()),
        );
        for h in payment["history"].as_array().into_iter().flatten() {
            show(
                "history",
                format!(
                    "{} → {}: {}",
                    h["at"].as_str().unwrap_or(""),
                    h["to"].as_str().unwrap_or(""),
                    h["cause"].as_str().unwrap_or("")
                ),
            );
        }
        Ok(payment)
    }

    /// Step 6: the simulator's own record of the approval.
    async fn compare_ledger(&self, payment: &Value) -> anyhow::Result<()> {
        step(6, "KakaoPay's own ledger agrees");
        let ledger = self.ledger(payment).await?;
        show("status", text(&ledger["status"]));
        show("approved", format!("{} won", ledger["amount"]["total"]));
        Ok(())
    }

    /// Steps 7 and 8: the refund once a worker is done with it, and KakaoPay's word on it.
    async fn refund(&self, payment_id: &str, payment: &Value) -> anyhow::Result<Value> {
        step(7, "The member cancels two days ahead; the booking system asks for a refund (POST /v1/payments/{id}/refunds)");
        let requested: Value = self
            .http
            .post(format!("{}/v1/payments/{payment_id}/refunds", self.api))
            .bearer_auth(self.client_token)
            .header("Idempotency-Key", format!("demo-{payment_id}"))
            .json(&json!({"reason": "booking_canceled", "requested_by": "member", "context": {}}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let refund_id = requested["refund_id"]
            .as_str()
            .context("no refund_id")?
            .to_string();
        show("refund_id", &refund_id);
        show("status", text(&requested["status"]));

        step(
            8,
            "A worker decides it by the refund rules and cancels at KakaoPay",
        );
        let refund = self
            .settled(
                &format!("/v1/refunds/{refund_id}"),
                ["queued", "processing"],
                "the refund was not decided within 30 s",
            )
            .await?;
        show("status", text(&refund["status"]));
        show("rule", text(&refund["rule"]));
        show("amount", format!("{} won", refund["amount"]));
        let ledger = self.ledger(payment).await?;
        show(
            "KakaoPay says",
            format!(
                "{}, {} won canceled",
                text(&ledger["status"]),
                ledger["canceled_amount"]["total"]
            ),
        );
        Ok(refund)
    }

    /// The record at `path` once its status is none of `busy`, asked for every 50 ms; the
    /// `late` error after 30 s.
    async fn settled(&self, path: &str, busy: [&str; 2], late: &str) -> anyhow::Result<Value> {
        let started = Instant::now();
        loop {
            let record: Value = self
                .http
                .get(format!("{}{path}", self.api))
                .bearer_auth(self.client_token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            if busy.iter().all(|b| record["status"] != *b) {
                return Ok(record);
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("{late}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The simulator's ledger row of the payment.
    async fn ledger(&self, payment: &Value) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!(
                "{}/__sim/ledger/{}",
                self.sim.url,
                payment["tid"].as_str().unwrap_or("")
            ))
            .send()
            .await?
            .json()
            .await?)
    }
}
