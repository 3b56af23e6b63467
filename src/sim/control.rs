//! `/__sim/*`: what tests and operators of the simulator use and KakaoPay does not have.
//!
//! - `POST /__sim/payments/{tid}/user` `{"action": "approve"|"cancel"|"fail", "method": "CARD"|"MONEY"}`
//!   presses a button of the payment page and answers `{"redirect_url": …}`.
//! - `GET /__sim/ledger`, `GET /__sim/ledger/{tid}`: every payment with amounts, status, actions.
//! - `GET|POST|DELETE /__sim/faults`: list, add (one rule or a list), clear fault rules.
//! - `GET /__sim/stats`: calls per endpoint.
//! - `GET /healthz`: the simulator is up (the container healthcheck asks it).

use super::error::SimError;
use super::faults::FaultRule;
use super::ledger::{Method, UserAction};
use super::{lock, Shared};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/__sim/payments/{tid}/user", post(user))
        .route("/__sim/ledger", get(ledger))
        .route("/__sim/ledger/{tid}", get(ledger_one))
        .route(
            "/__sim/faults",
            get(list_faults).post(add_faults).delete(clear_faults),
        )
        .route("/__sim/stats", get(stats))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
}

fn bad_request(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error_code": -2, "error_message": message.into()})),
    )
        .into_response()
}

fn sim_error(status: StatusCode, e: SimError) -> Response {
    (
        status,
        Json(json!({"error_code": e.code, "error_message": e.message})),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Press {
    action: String,
    #[serde(default)]
    method: Option<String>,
}

async fn user(
    State(state): State<Shared>,
    Path(tid): Path<String>,
    body: Result<Json<Press>, JsonRejection>,
) -> Response {
    let Json(press) = match body {
        Ok(b) => b,
        Err(e) => return bad_request(e.body_text()),
    };
    let method = match press.method.as_deref() {
        None | Some("CARD") => Method::Card,
        Some("MONEY") => Method::Money,
        Some(other) => return bad_request(format!("method must be CARD or MONEY, got {other:?}")),
    };
    let action = match press.action.as_str() {
        "approve" => UserAction::Approve { method },
        "cancel" => UserAction::Cancel,
        "fail" => UserAction::Fail,
        other => {
            return bad_request(format!(
                "action must be approve, cancel or fail, got {other:?}"
            ))
        }
    };
    let mut ledger = lock(&state.ledger);
    if ledger.get(&tid).is_none() {
        return sim_error(
            StatusCode::NOT_FOUND,
            SimError::new(super::codes::TID_NOT_FOUND, "TID does not exist"),
        );
    }
    match ledger.user_action(&tid, action) {
        Ok(url) => Json(json!({"redirect_url": url})).into_response(),
        Err(e) => sim_error(StatusCode::CONFLICT, e),
    }
}

async fn ledger(State(state): State<Shared>) -> Json<Value> {
    let ledger = lock(&state.ledger);
    Json(json!({"payments": ledger.all().map(|p| p.ledger_json()).collect::<Vec<_>>()}))
}

async fn ledger_one(State(state): State<Shared>, Path(tid): Path<String>) -> Response {
    match lock(&state.ledger).get(&tid) {
        Some(p) => Json(p.ledger_json()).into_response(),
        None => sim_error(
            StatusCode::NOT_FOUND,
            SimError::new(super::codes::TID_NOT_FOUND, "TID does not exist"),
        ),
    }
}

async fn list_faults(State(state): State<Shared>) -> Json<Value> {
    Json(json!({"faults": lock(&state.faults).list()}))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(FaultRule),
    Many(Vec<FaultRule>),
}

async fn add_faults(
    State(state): State<Shared>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let Json(value) = match body {
        Ok(b) => b,
        Err(e) => return bad_request(e.body_text()),
    };
    let rules = match serde_json::from_value::<OneOrMany>(value.clone()) {
        Ok(OneOrMany::One(r)) => vec![r],
        Ok(OneOrMany::Many(rs)) => rs,
        // Untagged enums hide the reason; parse again as one rule to say what is wrong.
        Err(_) => match serde_json::from_value::<FaultRule>(value) {
            Err(e) => return bad_request(format!("not a fault rule: {e}")),
            Ok(r) => vec![r],
        },
    };
    if let Some(why) = rules.iter().find_map(|r| r.fault().err()) {
        return bad_request(why);
    }
    let mut faults = lock(&state.faults);
    for rule in rules {
        // Checked just above, so this cannot fail.
        let _ = faults.add(rule);
    }
    (StatusCode::CREATED, Json(json!({"faults": faults.list()}))).into_response()
}

async fn clear_faults(State(state): State<Shared>) -> StatusCode {
    lock(&state.faults).clear();
    StatusCode::NO_CONTENT
}

async fn stats(State(state): State<Shared>) -> Json<Value> {
    Json(json!({"endpoints": *lock(&state.stats)}))
}
