//! Helpers shared by the integration tests: a simulator on a free port and a client for it.
#![allow(dead_code)] // each test file uses its own part

pub mod matrix;
pub mod reshape;
pub mod topology;

pub use kakaopay_jobs::queue::{Connection, Durability, Purpose, Topology};
use kakaopay_worker::domain::{Cid, ItemName, OrderId, PgToken, Tid, UserId, Won};
use kakaopay_worker::kakaopay::{
    ApproveRequest, Credentials, KakaoPay, OrderRequest, ReadyRequest, ReadyResponse, Timeouts,
};
use kakaopay_worker::secret::Secret;
use kakaopay_worker::sim::{SimConfig, SimServer, DEFAULT_ADMIN_KEY, DEFAULT_SECRET_KEY};
use serde_json::{json, Value};
use std::time::Duration;

pub async fn spawn_sim() -> SimServer {
    spawn_sim_with(SimConfig::default()).await
}

pub async fn spawn_sim_with(config: SimConfig) -> SimServer {
    kakaopay_worker::tls::init();
    SimServer::spawn(config).await.expect("simulator starts")
}

/// A client with short timeouts, so that timeout tests stay fast.
pub fn client(sim: &SimServer) -> KakaoPay {
    client_with(&sim.url, Duration::from_millis(1500))
}

pub fn client_with(url: &str, total: Duration) -> KakaoPay {
    KakaoPay::new(
        Some(url.parse().unwrap()),
        Timeouts {
            connect: Duration::from_millis(500),
            total,
        },
    )
    .unwrap()
}

pub fn open_creds() -> Credentials {
    Credentials::SecretKey(Secret::new(DEFAULT_SECRET_KEY))
}

pub fn legacy_creds() -> Credentials {
    Credentials::AdminKey(Secret::new(DEFAULT_ADMIN_KEY))
}

pub fn cid() -> Cid {
    Cid::parse("TC0ONETIME").unwrap()
}

pub fn won(v: i64) -> Won {
    Won::new(v).unwrap()
}

pub fn ready_request(order: &str, total: i64, tax_free: i64) -> ReadyRequest {
    ReadyRequest {
        cid: cid(),
        partner_order_id: OrderId::parse(order).unwrap(),
        partner_user_id: UserId::parse("member_42").unwrap(),
        item_name: ItemName::parse("Meeting room A, 2h").unwrap(),
        item_code: None,
        quantity: 1,
        total_amount: won(total),
        tax_free_amount: won(tax_free),
        vat_amount: None,
        green_deposit: None,
        approval_url: format!("https://members.example.com/approve?order={order}"),
        cancel_url: "https://members.example.com/cancel".into(),
        fail_url: "https://members.example.com/fail".into(),
        available_cards: None,
        payment_method_type: None,
        install_month: None,
        use_share_installment: None,
        custom_json: None,
    }
}

/// Presses a button of the member's payment page through the control route; answers where
/// the browser would go next.
pub async fn press(sim: &SimServer, tid: &str, action: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/__sim/payments/{tid}/user", sim.url))
        .json(&json!({"action": action}))
        .send()
        .await
        .unwrap()
}

/// The member approves: returns the `pg_token` KakaoPay appended to `approval_url`.
pub async fn authorize(sim: &SimServer, tid: &str) -> PgToken {
    let answer: Value = press(sim, tid, "approve").await.json().await.unwrap();
    let url = url::Url::parse(answer["redirect_url"].as_str().unwrap()).unwrap();
    let token = url
        .query_pairs()
        .find(|(k, _)| k == "pg_token")
        .map(|(_, v)| v.into_owned())
        .expect("pg_token on the redirect");
    PgToken::parse(token).unwrap()
}

/// Ready, then the member authorises: what a worker needs to approve.
pub async fn readied_and_authorized(
    sim: &SimServer,
    kp: &KakaoPay,
    creds: &Credentials,
    order: &str,
    total: i64,
) -> (ReadyResponse, ApproveRequest) {
    let ready = kp
        .ready(creds, &ready_request(order, total, 0))
        .await
        .unwrap();
    let pg_token = authorize(sim, &ready.tid).await;
    let approve = ApproveRequest {
        cid: cid(),
        tid: Tid::parse(ready.tid.clone()).unwrap(),
        partner_order_id: OrderId::parse(order).unwrap(),
        partner_user_id: UserId::parse("member_42").unwrap(),
        pg_token,
        payload: None,
        total_amount: Some(won(total)),
    };
    (ready, approve)
}

pub fn order_request(tid: &str) -> OrderRequest {
    OrderRequest {
        cid: cid(),
        tid: Tid::parse(tid).unwrap(),
    }
}

pub async fn ledger(sim: &SimServer, tid: &str) -> Value {
    reqwest::get(format!("{}/__sim/ledger/{tid}", sim.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn add_fault(sim: &SimServer, rule: Value) {
    let status = reqwest::Client::new()
        .post(format!("{}/__sim/faults", sim.url))
        .json(&rule)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201, "fault rule accepted");
}

/// Polls `check` until it holds, failing after `within` with `what`.
pub async fn until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn stats(sim: &SimServer) -> Value {
    reqwest::get(format!("{}/__sim/stats", sim.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// The whole service on a random port, against real Redis and the simulator.

use kakaopay_worker::config::{HttpArgs, TokenList};
use kakaopay_worker::startup::{Application, Settings};
use kakaopay_worker::workers::{ReconcilerSettings, WorkerSettings};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

pub const CLIENT_TOKEN: &str = "client-token-0123456789";
pub const ADMIN_TOKEN: &str = "admin-token-0123456789";
pub const CALLBACK_SECRET: &str = "callback-secret-0123456789";

/// Every log line of this test process (all its tests), to show no secret is ever logged.
pub fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,h2=info,reqwest=info,tower=info")
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buffer
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every secret the test setup hands the service.
pub const SECRETS: [&str; 5] = [
    DEFAULT_SECRET_KEY,
    DEFAULT_ADMIN_KEY,
    CLIENT_TOKEN,
    ADMIN_TOKEN,
    CALLBACK_SECRET,
];

/// No secret of the test setup in `text` (a response, a log file), named by `what`.
pub fn assert_no_secret_in(text: &str, what: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "a secret in {what}: {secret}");
    }
}

/// No secret of the test setup in any log line so far.
///
/// Every test of the one test binary logs into the same buffer, so each call reads only what
/// was logged since the last call (from a secret's length before it, so that a secret written
/// across that point is found too), and once a secret has been seen every later call fails as
/// well: the same verdict as reading the whole buffer each time, without reading the whole
/// process's logs again at the end of every test.
pub fn assert_no_secrets_logged() {
    /// How far earlier calls read, and the first secret they found.
    static READ: Mutex<(usize, Option<&str>)> = Mutex::new((0, None));
    let overlap = SECRETS.iter().map(|s| s.len()).max().unwrap_or(1) - 1;
    let logs = logs();
    let mut read = READ.lock().unwrap_or_else(PoisonError::into_inner);
    let fresh = {
        let buffer = logs.lock().unwrap();
        let from = read.0.saturating_sub(overlap);
        read.0 = buffer.len();
        String::from_utf8_lossy(&buffer[from..]).into_owned()
    };
    if read.1.is_none() {
        read.1 = SECRETS.into_iter().find(|secret| fresh.contains(secret));
    }
    let (logged, found) = *read;
    drop(read);
    assert!(logged > 0, "logs are captured");
    if let Some(secret) = found {
        panic!("a secret in the logs: {secret}");
    }
}

#[derive(Clone)]
pub struct AppOptions {
    pub sim: SimConfig,
    /// The test's topology (see [`matrix`]) unless a test sets its own.
    pub redis: Topology,
    pub durability: Option<Durability>,
    pub ready_window: Duration,
    pub workers: bool,
    pub kakaopay_timeout: Duration,
    pub webhook: Option<kakaopay_worker::workers::Webhook>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            sim: SimConfig::default(),
            redis: matrix::topology(),
            durability: None,
            ready_window: Duration::from_secs(900),
            workers: true,
            kakaopay_timeout: Duration::from_millis(1500),
            webhook: None,
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub sim: SimServer,
    pub namespace: String,
    /// The Redis it runs on.
    pub redis: Topology,
    pub http: reqwest::Client,
    pub app: Option<Application>,
}

pub fn settings(options: &AppOptions, sim_url: &str, namespace: &str) -> Settings {
    Settings {
        redis: options.redis.clone(),
        durability: options.durability,
        namespace: namespace.to_string(),
        kakaopay_api_url: Some(sim_url.parse().unwrap()),
        kakaopay_timeouts: Timeouts {
            connect: Duration::from_millis(500),
            total: options.kakaopay_timeout,
        },
        ready_window: options.ready_window,
        http: Some(HttpArgs {
            bind: "127.0.0.1:0".parse().unwrap(),
            public_url: None,
            api_tokens: TokenList(vec![Secret::new(CLIENT_TOKEN)]),
            admin_tokens: TokenList(vec![Secret::new(ADMIN_TOKEN)]),
            callback_secret: Secret::new(CALLBACK_SECRET),
        }),
        workers: options.workers.then_some(WorkerSettings {
            concurrency: 8,
            lease: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(5),
            reconciler: ReconcilerSettings {
                every: Duration::from_millis(200),
                approving_grace: Duration::from_secs(3),
            },
            approve_retry: kakaopay_jobs::queue::RetrySchedule::new(
                8,
                Duration::from_millis(50),
                Duration::from_millis(400),
            ),
            cancel_retry: kakaopay_jobs::queue::RetrySchedule::new(
                12,
                Duration::from_millis(50),
                Duration::from_millis(400),
            ),
            deliver_retry: kakaopay_jobs::queue::RetrySchedule::new(
                18,
                Duration::from_millis(50),
                Duration::from_millis(200),
            ),
        }),
        webhook: options.webhook.clone(),
        operations: Default::default(),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    spawn_app_tuned(options, |_| {}).await
}

/// The app with its settings changed by `tune` first (retry schedules, reconciler timing).
/// An app on a private one-server Redis of its own (for tests that disturb that Redis).
pub async fn spawn_app_on(redis: &PrivateRedis) -> TestApp {
    spawn_app_with(AppOptions {
        redis: Topology::Server(redis.url()),
        ..Default::default()
    })
    .await
}

pub async fn spawn_app_tuned(options: AppOptions, tune: impl FnOnce(&mut Settings)) -> TestApp {
    logs();
    let sim = spawn_sim_with(options.sim.clone()).await;
    let namespace = format!("test-{:016x}", rand::random::<u64>());
    let mut settings = settings(&options, &sim.url, &namespace);
    tune(&mut settings);
    let redis = settings.redis.clone();
    let app = Application::start(settings).await.expect("app starts");
    TestApp {
        address: format!("http://{}", app.address.unwrap()),
        sim,
        namespace,
        redis,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        app: Some(app),
    }
}

impl TestApp {
    /// A connection of the test's own to the app's Redis.
    pub async fn conn(&self) -> Connection {
        Connection::open(&self.redis, Purpose::Shared, None)
            .await
            .expect("Redis is reachable")
    }

    /// The environment a child process needs to run on the app's Redis and namespace.
    pub fn redis_env(&self) -> Vec<(&'static str, String)> {
        let mut env = matrix::env_of(&self.redis);
        env.push(("QUEUE_NAMESPACE", self.namespace.clone()));
        env
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.address));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        assert!(
            status < 500 || status == 502 || status == 503,
            "no 500 anywhere: {method_path}",
            method_path = path
        );
        let text = r.text().await.unwrap_or_default();
        assert_no_secret_in(&text, path);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn connect_location(&self, location: &str, key: Value) {
        let mut body = json!({"cid": "TC0ONETIME"});
        body.as_object_mut()
            .unwrap()
            .extend(key.as_object().unwrap().clone());
        let (status, answer) = self
            .send(
                reqwest::Method::PUT,
                &format!("/v1/locations/{location}/kakaopay"),
                Some(ADMIN_TOKEN),
                Some(body),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    pub async fn connect_open_api(&self, location: &str) {
        self.connect_location(location, json!({"secret_key": DEFAULT_SECRET_KEY}))
            .await;
    }

    pub async fn create_payment(&self, body: Value) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            "/v1/payments",
            Some(CLIENT_TOKEN),
            Some(body),
        )
        .await
    }

    pub async fn payment(&self, id: &str) -> Value {
        let (status, answer) = self
            .send(
                reqwest::Method::GET,
                &format!("/v1/payments/{id}"),
                Some(CLIENT_TOKEN),
                None,
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// The member presses a button at KakaoPay; answers our callback URL KakaoPay redirects to.
    pub async fn member_presses(&self, tid: &str, action: &str) -> String {
        let answer: Value = press(&self.sim, tid, action).await.json().await.unwrap();
        answer["redirect_url"]
            .as_str()
            .expect("a redirect")
            .to_string()
    }

    /// The member's browser follows KakaoPay's redirect to our callback.
    pub async fn follow(&self, url: &str) -> reqwest::Response {
        let r = self.http.get(url).send().await.unwrap();
        // 503 is the contract's answer while Redis is unreachable; nothing else 5xx.
        assert!(
            r.status().as_u16() < 500 || r.status() == 503,
            "no 500 anywhere: {url}: {}",
            r.status()
        );
        for (name, value) in r.headers() {
            assert_no_secret_in(value.to_str().unwrap_or(""), name.as_str());
        }
        r
    }

    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let p = self.payment(id).await;
            if p["status"] == status {
                return p;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "payment {id} never reached {status}: {p}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Creates a payment and has the member approve it; answers the payment id, approving.
    pub async fn paid(&self, body: Value) -> String {
        let (status, created) = self.create_payment(body).await;
        assert_eq!(status, 201, "{created}");
        let id = created["payment_id"].as_str().unwrap().to_string();
        let callback = self
            .member_presses(created["tid"].as_str().unwrap(), "approve")
            .await;
        let r = self.follow(&callback).await;
        assert_eq!(r.status(), 303);
        id
    }

    /// Polls refund `id` until it has `status`, failing after `within`; answers the refund.
    pub async fn wait_refund(&self, id: &str, status: &str, within: Duration) -> Value {
        let deadline = std::time::Instant::now() + within;
        loop {
            let (_, refund) = self
                .send(
                    reqwest::Method::GET,
                    &format!("/v1/refunds/{id}"),
                    Some(CLIENT_TOKEN),
                    None,
                )
                .await;
            if refund["status"] == status {
                return refund;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "refund {id} never reached {status}: {refund}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Connects `loc_r` with automatic refunds off: every refund request of it waits for a
    /// person.
    pub async fn connect_reviewed_location(&self) {
        self.connect_location(
            "loc_r",
            json!({"secret_key": kakaopay_worker::sim::DEFAULT_SECRET_KEY, "automatic_refunds": false}),
        )
        .await;
    }

    /// `payment` (a body for `loc_r`) paid and approved, and a member's refund request of it
    /// under `{order}-k` with `request`, left to a person: the payment and refund ids.
    pub async fn refund_in_review(
        &self,
        payment: Value,
        order: &str,
        request: Value,
    ) -> (String, String) {
        let payment = self.paid(payment).await;
        self.wait_status(&payment, "approved").await;
        let (status, answer) = self
            .ask_refund(&payment, &format!("{order}-k"), request, CLIENT_TOKEN)
            .await;
        assert_eq!(status, 202, "{answer}");
        let refund = answer["refund_id"].as_str().unwrap().to_string();
        self.wait_refund(&refund, "manual_review", Duration::from_secs(10))
            .await;
        (payment, refund)
    }

    /// The CANCEL actions in KakaoPay's ledger of `payment`.
    pub async fn cancels_of(&self, payment: &str) -> usize {
        let tid = self.payment(payment).await["tid"]
            .as_str()
            .unwrap()
            .to_string();
        ledger(&self.sim, &tid).await["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["payment_action_type"] == "CANCEL")
            .count()
    }

    /// Pauses or resumes `queue` through the API.
    pub async fn set_paused(&self, queue: &str, paused: bool) {
        let action = if paused { "pause" } else { "resume" };
        let (status, answer) = self
            .send(
                reqwest::Method::POST,
                &format!("/v1/queues/{queue}/{action}"),
                Some(ADMIN_TOKEN),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    /// A refund request of `payment` under `key` with `body`, sent with `token`: the status and
    /// the answer's body.
    pub async fn ask_refund(
        &self,
        payment: &str,
        key: &str,
        body: Value,
        token: &str,
    ) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/payments/{payment}/refunds", self.address))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A member's refund request of payment `id` under `key`; answers the refund id, queued.
    pub async fn request_refund(&self, id: &str, key: &str, canceled_at: &str) -> String {
        let r = self
            .http
            .post(format!("{}/v1/payments/{id}/refunds", self.address))
            .bearer_auth(CLIENT_TOKEN)
            .header("Idempotency-Key", key)
            .json(&json!({"requested_by": "member", "reason": "booking_canceled", "canceled_at": canceled_at}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        assert_no_secret_in(&text, "a refund answer");
        assert_eq!(status, 202, "{text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        answer["refund_id"].as_str().unwrap().to_string()
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
        assert_no_secrets_logged();
    }
}

pub fn payment_body(location: &str, order: &str) -> Value {
    json!({
        "location_id": location, "order_id": order, "user_id": "member_42", "service": "bookings",
        "item_name": "Meeting room A, 2h", "quantity": 1, "total_amount": 22000, "tax_free_amount": 0,
        "starts_at": "2026-12-01T10:00:00+09:00", "return_url": "https://members.example.com/bookings/1",
        "metadata": {"booking_id": "1"}
    })
}

/// A private redis-server (append-only file on, so a restart keeps the data), for tests that
/// stop Redis.
pub struct PrivateRedis {
    port: u16,
    dir: std::path::PathBuf,
    fsync: &'static str,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        Self::start_with("always")
    }

    /// With `appendfsync` `always` or `everysec`.
    pub fn start_with(fsync: &'static str) -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("kakaopay-redis-{port}-{:x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = PrivateRedis {
            port,
            dir,
            fsync,
            child: None,
        };
        r.boot();
        r
    }

    /// Makes Redis forget every script (as a restart or a promoted replica would).
    pub async fn flush_scripts(&self) {
        let mut conn = redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn boot(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", self.fsync])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
