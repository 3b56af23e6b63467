//! `/board`: a small server-rendered page for operators, behind an admin token: the queues
//! with their counts, failed and dead jobs with their last errors and a retry button, and the
//! latest payments and refunds of a location.
//!
//! A browser cannot send a bearer token by itself, so `/board/login` takes the token once and
//! sets an HttpOnly, SameSite=Strict cookie holding an HMAC of it (never the token itself);
//! a bearer header works too.

use super::error::ApiError;
use super::AppState;
use axum::extract::{Form, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use kakaopay_jobs::queue::inspect::{self, Status};
use kakaopay_jobs::QUEUES;
use serde::Deserialize;
use sha2::Sha256;
use std::collections::HashMap;

const COOKIE: &str = "kp_board";

fn session_for(state: &AppState, token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(state.config.callback_secret.expose().as_bytes())
        .expect("any key length");
    mac.update(b"board-session\n");
    mac.update(token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Whether the request carries an operator's token, as a bearer header or a board session.
fn is_admin(state: &AppState, headers: &HeaderMap) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_string)
        });
    let same = super::auth::same;
    state.config.admin_tokens.iter().any(|t| {
        bearer.is_some_and(|b| same(b.as_bytes(), t.expose().as_bytes()))
            || cookie
                .as_deref()
                .is_some_and(|c| same(c.as_bytes(), session_for(state, t.expose()).as_bytes()))
    })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(status: StatusCode, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>kakaopay-worker board</title>\
         <style>body{{font-family:sans-serif;margin:2rem}}table{{border-collapse:collapse;margin-bottom:1.5rem}}\
         td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}th{{background:#f4f4f4}}\
         .dead{{color:#a00}}</style></head><body><h1>kakaopay-worker</h1>{body}</body></html>"
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

fn login_page(message: &str) -> Response {
    page(
        StatusCode::UNAUTHORIZED,
        &format!(
            "<p>{}</p><form method=\"post\" action=\"/board/login\"><label>Operator token \
             <input type=\"password\" name=\"token\" id=\"token\"></label> <button id=\"login\" type=\"submit\">Open the board</button></form>",
            escape(message)
        ),
    )
}

#[derive(Deserialize)]
pub struct Login {
    token: String,
}

pub async fn login(State(state): State<AppState>, Form(form): Form<Login>) -> Response {
    let token = form.token.trim();
    if !state
        .config
        .admin_tokens
        .iter()
        .any(|t| super::auth::same(t.expose().as_bytes(), token.as_bytes()))
    {
        return login_page("That is not an operator token.");
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/board; HttpOnly; SameSite=Strict",
        session_for(&state, token)
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/board".to_string()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response()
}

pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    if !is_admin(&state, &headers) {
        return Ok(login_page("Operators only."));
    }
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let conn = state.store.connection();
    let ns = state.store.namespace();
    let mut body = String::new();
    if let (Some(job), Some(outcome)) = (query.get("job"), query.get("outcome")) {
        let said = match outcome.as_str() {
            "retried" => "is back in its queue",
            "not_retryable" => "is neither dead nor waiting for a retry",
            _ => "was not found",
        };
        body.push_str(&format!("<p id=\"flash\">Job {} {said}.</p>", escape(job)));
    }
    body.push_str(
        "<h2>Queues</h2><table id=\"queues\"><tr><th>queue</th><th>pending</th><th>running</th>\
        <th>scheduled</th><th>done</th><th>failed</th><th>dead</th></tr>",
    );
    let mut troubled = String::new();
    for queue in QUEUES {
        let c = inspect::counts(&conn, ns, queue).await?;
        body.push_str(&format!(
            "<tr id=\"queue-{queue}\"><td>{queue}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"dead\">{}</td></tr>",
            c.pending, c.running, c.scheduled, c.done, c.failed, c.dead
        ));
        for status in [Status::Dead, Status::Failed] {
            for job in inspect::list(&conn, ns, queue, status, 50).await? {
                troubled.push_str(&format!(
                    "<tr class=\"job\" data-job=\"{id}\"><td>{queue}</td><td>{id}</td><td>{}</td><td>{} of {}</td><td>{}</td>\
                     <td><form method=\"post\" action=\"/board/retry/{queue}/{id_url}\"><button class=\"retry\" type=\"submit\">Retry</button></form></td></tr>",
                    job.status,
                    job.attempts,
                    job.max_attempts,
                    escape(job.last_error.as_deref().unwrap_or("")),
                    id = escape(&job.id),
                    id_url = url::form_urlencoded::byte_serialize(job.id.as_bytes()).collect::<String>(),
                ));
            }
        }
    }
    body.push_str("</table><h2>Failed and dead jobs</h2>");
    if troubled.is_empty() {
        body.push_str("<p id=\"no-troubled\">None.</p>");
    } else {
        body.push_str(&format!(
            "<table id=\"troubled\"><tr><th>queue</th><th>job</th><th>status</th><th>attempts</th><th>last error</th><th></th></tr>{troubled}</table>"
        ));
    }
    if let Some(location) = query
        .get("location_id")
        .filter(|l| super::integrations::location_id(l).is_ok())
    {
        body.push_str(&format!("<h2>Latest payments and refunds of {}</h2><table id=\"payments\"><tr><th>time</th><th>order</th>\
            <th>item</th><th>type</th><th>amount</th><th>status</th><th>tid</th></tr>", escape(location)));
        for id in state
            .store
            .location_payments(location, None, None)
            .await?
            .into_iter()
            .take(50)
        {
            let Some(p) = state.store.payment(&id).await? else {
                continue;
            };
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>payment</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&p.created_at), escape(p.request.order_id.as_str()), escape(p.request.item_name.as_str()),
                p.request.total_amount.get(), p.status, escape(&p.tid)
            ));
            for r in state.store.refunds_of(&id).await? {
                body.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>refund {}</td><td>refund</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&r.created_at), escape(p.request.order_id.as_str()), escape(&r.refund_id), r.amount, r.status, escape(&p.tid)
                ));
            }
        }
        body.push_str("</table>");
    } else {
        body.push_str("<form method=\"get\" action=\"/board\"><label>Location <input name=\"location_id\"></label> <button type=\"submit\">Show payments</button></form>");
    }
    Ok(page(StatusCode::OK, &body))
}

pub async fn retry(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((queue, job)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !is_admin(&state, &headers) {
        return Ok(login_page("Operators only."));
    }
    let Some(queue) = QUEUES.iter().copied().find(|q| *q == queue) else {
        return Err(ApiError::not_found("queue"));
    };
    let outcome = inspect::retry(
        &state.store.connection(),
        state.store.namespace(),
        queue,
        &job,
    )
    .await?;
    tracing::info!(queue, job = %job, ?outcome, "operator retried a job from the board");
    let outcome = serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let back = format!(
        "/board?job={}&outcome={outcome}",
        url::form_urlencoded::byte_serialize(job.as_bytes()).collect::<String>()
    );
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, back)]).into_response())
}
