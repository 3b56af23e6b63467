//! A KakaoPay that answers in another shape: a proxy in front of the simulator that rewrites
//! the JSON of the answers a test chooses, for what KAKAOPAY.md cannot promise of every
//! KakaoPay (a field missing, or of another shape than documented).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::{Arc, Mutex};

type Rewrite = Arc<dyn Fn(&str, &mut Value) + Send + Sync>;

#[derive(Clone)]
pub struct Reshaping {
    pub url: String,
    upstream: String,
    client: reqwest::Client,
    rewrite: Arc<Mutex<Option<Rewrite>>>,
}

impl Reshaping {
    /// Starts the proxy in front of `upstream` (callable where no `.await` is, inside the
    /// runtime: `spawn_app_tuned`'s settings hook).
    pub fn start(upstream: &str) -> Reshaping {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let proxy = Reshaping {
            url,
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            rewrite: Arc::new(Mutex::new(None)),
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        proxy
    }

    /// From now on every JSON answer passes through `f` with its path.
    pub fn set(&self, f: impl Fn(&str, &mut Value) + Send + Sync + 'static) {
        *self.rewrite.lock().unwrap() = Some(Arc::new(f));
    }

    pub fn clear(&self) {
        *self.rewrite.lock().unwrap() = None;
    }
}

async fn forward(
    State(proxy): State<Reshaping>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let target = format!(
        "{}{}",
        proxy.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut request = proxy.client.request(method, target).body(body);
    for name in ["authorization", "content-type"] {
        if let Some(v) = headers.get(name) {
            request = request.header(name, v.clone());
        }
    }
    let Ok(answer) = request.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let bytes = answer.bytes().await.unwrap_or_default();
    let rewrite = proxy.rewrite.lock().unwrap().clone();
    let body = match (rewrite, serde_json::from_slice::<Value>(&bytes)) {
        (Some(f), Ok(mut json)) => {
            f(&path, &mut json);
            json.to_string().into_bytes()
        }
        _ => bytes.to_vec(),
    };
    (status, [("content-type", "application/json")], body).into_response()
}
