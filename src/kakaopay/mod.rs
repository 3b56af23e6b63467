//! The KakaoPay client: `ready`, `approve`, `cancel` and the order inquiry, for both API
//! generations behind one interface. The generation follows the location's key: a secret key
//! speaks the current open API (JSON, `SECRET_KEY`), an admin key the older Kakao API (form,
//! `KakaoAK`).
//!
//! There is no retry loop here on purpose: a resend of approve or cancel after an ambiguous
//! failure could move money twice, so retries belong to jobs, which check the order inquiry
//! first (see [`ErrorClass::OutcomeUnknown`]).

mod error;
mod status;
mod time;
mod types;

pub use error::{parse_error_body, ErrorClass, ErrorKind, KakaoPayError};
pub use status::{OrderStatus, StatusClass};
pub use time::{kst, KstTime};
pub use types::*;

use crate::config::KakaoPayArgs;
use crate::secret::Secret;
use serde::{de::DeserializeOwned, Serialize};
use std::time::{Duration, Instant};
use url::Url;

pub const OPEN_API_URL: &str = "https://open-api.kakaopay.com";
pub const LEGACY_API_URL: &str = "https://kapi.kakao.com";

/// Which of KakaoPay's two APIs a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    /// KakaoPay Developers: `open-api.kakaopay.com/online/v1/payment/*`, JSON, `SECRET_KEY`.
    Open,
    /// Kakao Developers: `kapi.kakao.com/v1/payment/*`, form-encoded, `KakaoAK`.
    Legacy,
}

impl Generation {
    pub fn path(self, endpoint: Endpoint) -> String {
        let prefix = match self {
            Generation::Open => "/online/v1/payment/",
            Generation::Legacy => "/v1/payment/",
        };
        format!("{prefix}{}", endpoint.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Ready,
    Approve,
    Cancel,
    Order,
}

impl Endpoint {
    pub const ALL: [Endpoint; 4] = [
        Endpoint::Ready,
        Endpoint::Approve,
        Endpoint::Cancel,
        Endpoint::Order,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Ready => "ready",
            Endpoint::Approve => "approve",
            Endpoint::Cancel => "cancel",
            Endpoint::Order => "order",
        }
    }

    /// Every call but the order inquiry changes something at KakaoPay.
    pub fn changes_state(self) -> bool {
        !matches!(self, Endpoint::Order)
    }
}

/// A location's KakaoPay key; its kind decides the API generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    SecretKey(Secret),
    AdminKey(Secret),
}

impl Credentials {
    pub fn generation(&self) -> Generation {
        match self {
            Credentials::SecretKey(_) => Generation::Open,
            Credentials::AdminKey(_) => Generation::Legacy,
        }
    }

    fn authorization(&self) -> String {
        match self {
            Credentials::SecretKey(key) => format!("SECRET_KEY {}", key.expose()),
            Credentials::AdminKey(key) => format!("KakaoAK {}", key.expose()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// The whole call, from sending to the last byte of the answer.
    pub total: Duration,
}

impl From<&KakaoPayArgs> for Timeouts {
    fn from(args: &KakaoPayArgs) -> Self {
        Timeouts {
            connect: args.kakaopay_connect_timeout_ms,
            total: args.kakaopay_timeout_ms,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            total: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone)]
pub struct KakaoPay {
    http: reqwest::Client,
    /// Replaces both real hosts when set (the simulator serves both path families).
    base_override: Option<Url>,
    timeouts: Timeouts,
}

impl KakaoPay {
    /// The longest a call can take from our side: after that, a call we started has ended,
    /// whatever KakaoPay did with it.
    pub fn longest_call(&self) -> Duration {
        self.timeouts.connect + self.timeouts.total
    }

    pub fn new(base_override: Option<Url>, timeouts: Timeouts) -> anyhow::Result<Self> {
        crate::tls::init();
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.total)
            .user_agent(concat!("kakaopay-worker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(KakaoPay {
            http,
            base_override,
            timeouts,
        })
    }

    pub async fn ready(
        &self,
        creds: &Credentials,
        req: &ReadyRequest,
    ) -> Result<ReadyResponse, KakaoPayError> {
        self.call(creds, Endpoint::Ready, req).await
    }

    pub async fn approve(
        &self,
        creds: &Credentials,
        req: &ApproveRequest,
    ) -> Result<ApproveResponse, KakaoPayError> {
        self.call(creds, Endpoint::Approve, req).await
    }

    pub async fn cancel(
        &self,
        creds: &Credentials,
        req: &CancelRequest,
    ) -> Result<CancelResponse, KakaoPayError> {
        self.call(creds, Endpoint::Cancel, req).await
    }

    pub async fn order(
        &self,
        creds: &Credentials,
        req: &OrderRequest,
    ) -> Result<OrderResponse, KakaoPayError> {
        self.call(creds, Endpoint::Order, req).await
    }

    pub fn url(&self, generation: Generation, endpoint: Endpoint) -> String {
        let base = match (&self.base_override, generation) {
            (Some(url), _) => url.as_str().trim_end_matches('/').to_string(),
            (None, Generation::Open) => OPEN_API_URL.to_string(),
            (None, Generation::Legacy) => LEGACY_API_URL.to_string(),
        };
        format!("{base}{}", generation.path(endpoint))
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        creds: &Credentials,
        endpoint: Endpoint,
        req: &Req,
    ) -> Result<Resp, KakaoPayError> {
        let generation = creds.generation();
        let started = Instant::now();
        let result = self.send(creds, generation, endpoint, req).await;
        crate::metrics::kakaopay_call(
            endpoint.name(),
            started,
            result.as_ref().err().map(|e| {
                e.code()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| format!("{:?}", e.class()).to_lowercase())
            }),
        );
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(_) => tracing::debug!(
                endpoint = endpoint.name(),
                ?generation,
                elapsed_ms,
                "kakaopay call ok"
            ),
            Err(e) => tracing::warn!(
                endpoint = endpoint.name(),
                ?generation,
                elapsed_ms,
                code = e.code(),
                class = ?e.class(),
                error = %e,
                "kakaopay call failed"
            ),
        }
        result
    }

    async fn send<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        creds: &Credentials,
        generation: Generation,
        endpoint: Endpoint,
        req: &Req,
    ) -> Result<Resp, KakaoPayError> {
        let err = |kind| KakaoPayError { endpoint, kind };
        let builder = self
            .http
            .post(self.url(generation, endpoint))
            .header(reqwest::header::AUTHORIZATION, creds.authorization());
        let builder = match generation {
            Generation::Open => builder.json(req),
            Generation::Legacy => builder
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded;charset=utf-8",
                )
                .body(form_body(req)),
        };
        let response = builder.send().await.map_err(|e| err(transport_error(&e)))?;
        let http_status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| err(transport_error(&e)))?;

        if !(200..300).contains(&http_status) {
            return Err(err(error::parse_error_body(http_status, &body)
                .unwrap_or_else(|| ErrorKind::Api {
                    http_status,
                    code: None,
                    message: snippet(&body),
                    method_result_code: None,
                    method_result_message: None,
                })));
        }
        serde_json::from_slice::<Resp>(&body).map_err(|e| {
            // A success status carrying an error body (seen with some gateways) is an error.
            err(
                error::parse_error_body(http_status, &body).unwrap_or(ErrorKind::Decode {
                    http_status,
                    detail: format!("{e}; body starts {}", snippet(&body)),
                }),
            )
        })
    }
}

/// The older API takes form fields; lists and maps go as JSON strings, as its clients send them.
pub fn form_body<Req: Serialize>(req: &Req) -> String {
    let value = serde_json::to_value(req).expect("request types serialize to a JSON object");
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    if let serde_json::Value::Object(fields) = value {
        for (name, v) in fields {
            match v {
                serde_json::Value::Null => {}
                serde_json::Value::String(s) => {
                    form.append_pair(&name, &s);
                }
                other => {
                    form.append_pair(&name, &other.to_string());
                }
            }
        }
    }
    form.finish()
}

fn transport_error(e: &reqwest::Error) -> ErrorKind {
    // Connect errors (including a connect timeout) mean nothing was sent.
    if e.is_connect() {
        ErrorKind::Connect(root_cause(e))
    } else if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Dropped(root_cause(e))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_both_generations() {
        let real = KakaoPay::new(None, Timeouts::default()).unwrap();
        assert_eq!(
            real.url(Generation::Open, Endpoint::Ready),
            "https://open-api.kakaopay.com/online/v1/payment/ready"
        );
        assert_eq!(
            real.url(Generation::Legacy, Endpoint::Order),
            "https://kapi.kakao.com/v1/payment/order"
        );
        let sim = KakaoPay::new(
            Some("http://127.0.0.1:8090/".parse().unwrap()),
            Timeouts::default(),
        )
        .unwrap();
        assert_eq!(
            sim.url(Generation::Open, Endpoint::Cancel),
            "http://127.0.0.1:8090/online/v1/payment/cancel"
        );
        assert_eq!(
            sim.url(Generation::Legacy, Endpoint::Approve),
            "http://127.0.0.1:8090/v1/payment/approve"
        );
    }

    #[test]
    fn the_key_kind_picks_the_generation_and_scheme() {
        let open = Credentials::SecretKey(Secret::new("DEVKEY"));
        assert_eq!(open.generation(), Generation::Open);
        assert_eq!(open.authorization(), "SECRET_KEY DEVKEY");
        let legacy = Credentials::AdminKey(Secret::new("adminkey"));
        assert_eq!(legacy.generation(), Generation::Legacy);
        assert_eq!(legacy.authorization(), "KakaoAK adminkey");
        assert!(!format!("{open:?}").contains("DEVKEY"));
    }
}
