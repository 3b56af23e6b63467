//! A closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending its next
//! request as soon as the previous answer is in (what `wrk` does), timing every request.
//! Raw hyper connections rather than a pooled client, so that the generator spends as little
//! as it can of the two cores it shares with the service under test.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request to send: a path with its query, headers and body.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl Req {
    pub fn new(method: Method, path: impl Into<String>) -> Req {
        Req {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn get(path: impl Into<String>) -> Req {
        Req::new(Method::GET, path)
    }

    pub fn post_json(path: impl Into<String>, body: &serde_json::Value) -> Req {
        Req::json(Method::POST, path, body)
    }

    pub fn json(method: Method, path: impl Into<String>, body: &serde_json::Value) -> Req {
        Req {
            method,
            path: path.into(),
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: Bytes::from(body.to_string()),
        }
    }

    pub fn post_form(path: impl Into<String>, body: &'static str) -> Req {
        Req {
            method: Method::POST,
            path: path.into(),
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )],
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Req {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((HeaderName::from_static(name), value));
        }
        self
    }

    pub fn bearer(self, token: &str) -> Req {
        self.header("authorization", &format!("Bearer {token}"))
    }
}

/// What came back; status 0 when the connection failed.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One keep-alive connection.
pub struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            host: HeaderValue::from_str(&addr.to_string()).expect("an address is a valid host"),
            sender: None,
        }
    }

    /// Opens the connection now rather than on the first request.
    pub async fn connect(&mut self) -> anyhow::Result<()> {
        self.sender().await.map(|_| ())
    }

    async fn sender(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let tcp = tokio::net::TcpStream::connect(self.addr).await?;
            tcp.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("set above");
        sender.ready().await?;
        Ok(sender)
    }

    /// Sends one request; a broken connection is reopened for the next one, never retried.
    pub async fn send(&mut self, req: &Req) -> Answer {
        match self.try_send(req).await {
            Ok(answer) => answer,
            Err(_) => {
                self.sender = None;
                Answer::default()
            }
        }
    }

    async fn try_send(&mut self, req: &Req) -> anyhow::Result<Answer> {
        let mut request = Request::builder()
            .method(req.method.clone())
            .uri(&req.path)
            .header(http::header::HOST, self.host.clone())
            .body(Full::new(req.body.clone()))?;
        request.headers_mut().extend(req.headers.iter().cloned());
        let response = self.sender().await?.send_request(request).await?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            location,
            body,
        })
    }
}

/// The result of a closed-loop run: the answers in request order and the sorted latencies.
pub struct Run {
    pub answers: Vec<Answer>,
    latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl Run {
    pub fn per_second(&self) -> f64 {
        self.answers.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `q` (0.5 for the median, 0.99 for p99).
    pub fn quantile(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }

    /// The first answer that was not `expected`, as text.
    pub fn first_unexpected(&self, expected: u16) -> Option<String> {
        self.answers
            .iter()
            .find(|a| a.status != expected)
            .map(|a| format!("HTTP {}: {}", a.status, String::from_utf8_lossy(&a.body)))
    }

    /// How many answers were not `expected`.
    pub fn unexpected(&self, expected: u16) -> usize {
        self.answers.iter().filter(|a| a.status != expected).count()
    }
}

/// Nearest-rank quantile of sorted values.
pub fn quantile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sends every request over `connections` connections, each taking the next unsent request
/// as soon as its previous one is answered. The connections are opened before the clock
/// starts, as `wrk` does, so that the figures are of requests, not of TCP handshakes.
pub async fn closed_loop(addr: SocketAddr, connections: usize, requests: Arc<Vec<Req>>) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let mut conns = Vec::with_capacity(connections.max(1));
    for _ in 0..connections.max(1) {
        let mut conn = Conn::new(addr);
        // A connection that cannot open now is retried by its first request, and counted.
        let _ = conn.connect().await;
        conns.push(conn);
    }
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let (next, requests) = (next.clone(), requests.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(req) = requests.get(i) else { break };
                    let sent = Instant::now();
                    let answer = conn.send(req).await;
                    done.push((i, answer, sent.elapsed()));
                }
                done
            })
        })
        .collect();
    let mut answers = vec![Answer::default(); requests.len()];
    let mut latencies = Vec::with_capacity(requests.len());
    for task in tasks {
        for (i, answer, latency) in task.await.unwrap_or_default() {
            answers[i] = answer;
            latencies.push(latency);
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Run {
        answers,
        latencies,
        elapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&v, 0.0), 1);
        assert_eq!(quantile(&[7u32], 0.99), 7);
        assert_eq!(quantile::<u32>(&[], 0.5), 0);
    }
}
