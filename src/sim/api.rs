//! KakaoPay's four endpoints in both generations, with their auth schemes, body encodings
//! and error shapes.

use super::error::{codes, SimError};
use super::faults::{AfterCommit, Fault};
use super::fields::Fields;
use super::{lock, DropConnection, Shared};
use crate::kakaopay::{Endpoint, Generation};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::time::Duration;

pub fn routes() -> Router<Shared> {
    let mut router = Router::new();
    for generation in [Generation::Open, Generation::Legacy] {
        for endpoint in Endpoint::ALL {
            router = router.route(
                &generation.path(endpoint),
                post(
                    move |state: State<Shared>, headers: HeaderMap, uri: Uri, body: Bytes| {
                        call(state, generation, endpoint, headers, uri, body)
                    },
                ),
            );
        }
    }
    router
}

/// Each generation's error body: `error_code/error_message` or `code/msg`.
pub fn error_response(generation: Generation, e: &SimError) -> Response {
    let mut body = match generation {
        Generation::Open => json!({"error_code": e.code, "error_message": e.message}),
        Generation::Legacy => json!({"code": e.code, "msg": e.message}),
    };
    if e.method_result_code.is_some() || e.method_result_message.is_some() {
        body["extras"] = json!({
            "method_result_code": e.method_result_code,
            "method_result_message": e.method_result_message,
        });
    }
    let status = StatusCode::from_u16(e.http_status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(body)).into_response()
}

fn dropped() -> Response {
    let mut r = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    r.extensions_mut().insert(DropConnection);
    r
}

fn internal_error() -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
}

fn check_auth(state: &Shared, generation: Generation, headers: &HeaderMap) -> Result<(), SimError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (scheme, key) = value.split_once(' ').unwrap_or((value, ""));
    let (schemes, keys): (&[&str], _) = match generation {
        Generation::Open => (&["SECRET_KEY", "DEV_SECRET_KEY"], &state.config.secret_keys),
        Generation::Legacy => (&["KakaoAK"], &state.config.admin_keys),
    };
    if schemes.contains(&scheme) && keys.iter().any(|k| k.expose() == key.trim()) {
        Ok(())
    } else {
        Err(SimError::new(
            codes::UNAUTHORIZED,
            "no permission: invalid authorization",
        ))
    }
}

fn parse_body(
    generation: Generation,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
) -> Result<Fields, SimError> {
    match generation {
        Generation::Open => {
            let is_json = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| {
                    ct.trim_start()
                        .to_ascii_lowercase()
                        .starts_with("application/json")
                });
            if !is_json {
                return Err(SimError::invalid("Content-Type must be application/json"));
            }
            Fields::from_json(body)
        }
        Generation::Legacy => Ok(Fields::from_form(uri.query(), body)),
    }
}

async fn call(
    State(state): State<Shared>,
    generation: Generation,
    endpoint: Endpoint,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    state.count(endpoint, |s| s.calls += 1);
    let response = handle(&state, generation, endpoint, &headers, &uri, &body).await;
    let ok =
        response.status().is_success() && response.extensions().get::<DropConnection>().is_none();
    state.count(
        endpoint,
        |s| if ok { s.succeeded += 1 } else { s.failed += 1 },
    );
    response
}

async fn handle(
    state: &Shared,
    generation: Generation,
    endpoint: Endpoint,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
) -> Response {
    if let Err(e) = check_auth(state, generation, headers) {
        return error_response(generation, &e);
    }
    let fields = match parse_body(generation, headers, uri, body) {
        Ok(f) => f,
        Err(e) => return error_response(generation, &e),
    };
    let fault = lock(&state.faults).pick(endpoint);
    if fault.is_some() {
        state.count(endpoint, |s| s.faults += 1);
        tracing::info!(endpoint = endpoint.name(), ?fault, "sim: injecting fault");
    }
    match &fault {
        Some(Fault::Error {
            code,
            http_status,
            message,
            method_result_code,
            method_result_message,
        }) => {
            let e = SimError {
                http_status: *http_status,
                code: *code,
                message: message.clone(),
                method_result_code: method_result_code.clone(),
                method_result_message: method_result_message.clone(),
            };
            return error_response(generation, &e);
        }
        Some(Fault::Http500) => return internal_error(),
        Some(Fault::Drop) => return dropped(),
        Some(Fault::Latency { ms }) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        Some(Fault::CommitThenFail { .. }) | None => {}
    }
    let result: Result<Value, SimError> = {
        let mut ledger = lock(&state.ledger);
        match endpoint {
            Endpoint::Ready => ledger.ready(&fields, &state.public_url),
            Endpoint::Approve => ledger.approve(&fields),
            Endpoint::Cancel => ledger.cancel(&fields),
            Endpoint::Order => ledger.order(&fields),
        }
    };
    let answer = match result {
        Ok(v) => v,
        Err(e) => return error_response(generation, &e),
    };
    match fault {
        Some(Fault::CommitThenFail { then, ms }) => match then {
            AfterCommit::Http500 => internal_error(),
            AfterCommit::Drop => dropped(),
            AfterCommit::Timeout => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                internal_error()
            }
        },
        _ => Json(answer).into_response(),
    }
}
