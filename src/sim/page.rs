//! The member's side: the page `next_redirect_*_url` opens, where a person presses Approve,
//! Cancel or Fail and is sent on to the merchant's `approval_url` (with a fresh `pg_token`),
//! `cancel_url` or `fail_url`, as KakaoPay's own page does after KakaoTalk confirms.

use super::ledger::{Method, UserAction};
use super::{lock, Shared};
use crate::html::escape;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/mockup/v1/{token}/{view}", get(show))
        .route("/pay/mockup/{token}", get(show_app))
        .route("/mockup/v1/{token}/action/{action}", post(press))
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"ko\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}}\
         .pay{{background:#ffeb00;border:0;padding:.8rem 1.4rem;font-size:1.1rem;border-radius:.5rem}}\
         button{{margin:.3rem}}</style></head><body><h1>{title}</h1>{body}</body></html>",
        title = escape(title)
    );
    (status, Html(html)).into_response()
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "결제 정보를 찾을 수 없습니다",
        "<p>This payment link is unknown.</p>",
    )
}

async fn show_app(state: State<Shared>, Path(token): Path<String>) -> Response {
    show(state, Path((token, "aInfo".to_string()))).await
}

async fn show(
    State(state): State<Shared>,
    Path((token, view)): Path<(String, String)>,
) -> Response {
    if !["info", "mInfo", "aInfo"].contains(&view.as_str()) {
        return not_found();
    }
    let mut ledger = lock(&state.ledger);
    ledger.open_page(&token);
    let Some(p) = ledger.by_page_token(&token) else {
        return not_found();
    };
    let action = |a: &str| format!("/mockup/v1/{}/action/{a}", escape(&token));
    let body = format!(
        "<p id=\"item\">{item}</p><p id=\"amount\"><strong>{total}원</strong></p>\
         <p id=\"status\">status: {status}</p>\
         <form method=\"post\" action=\"{approve}\">\
         <label><input type=\"radio\" name=\"method\" value=\"CARD\" checked> 카드</label>\
         <label><input type=\"radio\" name=\"method\" value=\"MONEY\"> 카카오페이머니</label><br>\
         <button class=\"pay\" id=\"approve\" type=\"submit\">Approve (결제하기)</button></form>\
         <form method=\"post\" action=\"{cancel}\"><button id=\"cancel\" type=\"submit\">Cancel (취소)</button></form>\
         <form method=\"post\" action=\"{fail}\"><button id=\"fail\" type=\"submit\">Fail (실패)</button></form>\
         <p><small>KakaoPay simulator, tid {tid}</small></p>",
        item = escape(&p.item_name),
        total = p.amount.total,
        status = p.status,
        approve = action("approve"),
        cancel = action("cancel"),
        fail = action("fail"),
        tid = escape(&p.tid),
    );
    page(StatusCode::OK, "카카오페이 결제", &body)
}

#[derive(Debug, Default, Deserialize)]
struct Pressed {
    method: Option<String>,
}

async fn press(
    State(state): State<Shared>,
    Path((token, action)): Path<(String, String)>,
    form: Result<Form<Pressed>, FormRejection>,
) -> Response {
    let method = match form.ok().and_then(|Form(f)| f.method).as_deref() {
        Some("MONEY") => Method::Money,
        _ => Method::Card,
    };
    let action = match action.as_str() {
        "approve" => UserAction::Approve { method },
        "cancel" => UserAction::Cancel,
        "fail" => UserAction::Fail,
        _ => return not_found(),
    };
    let mut ledger = lock(&state.ledger);
    let Some(tid) = ledger.by_page_token(&token).map(|p| p.tid.clone()) else {
        return not_found();
    };
    match ledger.user_action(&tid, action) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(e) => page(
            StatusCode::CONFLICT,
            "결제를 진행할 수 없습니다",
            &format!("<p>{}</p>", escape(&e.message)),
        ),
    }
}
