//! Who is at the board. A browser cannot send a bearer token by itself, so `/board/login`
//! takes the token once and opens a session in Redis (`store::sessions`): the HttpOnly,
//! SameSite=Strict cookie holds a random token that expires, and `/board/logout` revokes it;
//! a bearer header works too. Every POST is refused unless it comes from our own origin
//! ([`refused_cross_origin`]).

use super::super::error::ApiError;
use super::super::AppState;
use super::pages::bare_page;
use crate::html::escape;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::time::Duration;

const COOKIE: &str = "kp_board";
/// A session lasts a working day; a logout ends it at once.
const SESSION: Duration = Duration::from_secs(8 * 3600);
/// Wrong tokens allowed from one address per window before the form stops checking.
const LOGIN_TRIES: u64 = 10;
const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        })
}

/// The operator asking, by an admin bearer token or a live board session.
pub(super) async fn operator(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<String>, ApiError> {
    if let Some(token) = super::super::auth::bearer(headers) {
        if let Some(name) = super::super::auth::operator_named(state, token) {
            return Ok(Some(name));
        }
    }
    let Some(cookie) = session_cookie(headers) else {
        return Ok(None);
    };
    // A session records the operator and the fingerprint of the token it was opened with.
    let session = state.store.session(&cookie).await?;
    Ok(session.and_then(|s| {
        let (name, fingerprint) = s.split_once('\n')?;
        super::super::auth::still_admin(state, fingerprint).then(|| name.to_string())
    }))
}

/// Whom login failures are counted for: the client's address, an IPv6 client by its /64
/// (one host usually holds a whole /64).
fn client_of(peer: &super::super::auth::Peer) -> String {
    match peer.ip() {
        Some(std::net::IpAddr::V6(ip)) if ip.to_ipv4_mapped().is_none() => {
            let s = ip.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(std::net::IpAddr::V6(ip)) => ip.to_ipv4_mapped().expect("mapped").to_string(),
        Some(ip) => ip.to_string(),
        None => "-".to_string(),
    }
}

pub(super) fn to_login() -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/board/login")]).into_response()
}

/// Refuses a board POST that a page of another origin made: a browser says where a request
/// comes from in `Sec-Fetch-Site`, or at least in `Origin`; a request with neither is no
/// browser's cross-site form (curl, a script holding a bearer token). `SameSite=Strict`
/// alone would let a page on another port or a sibling subdomain act with the cookie.
pub fn refused_cross_origin(state: &AppState, req: &axum::extract::Request) -> Option<Response> {
    if req.method() == axum::http::Method::POST
        && req.uri().path().starts_with("/board")
        && !same_origin(req.headers(), &state.config.public_url)
    {
        tracing::warn!(path = %req.uri().path(), "refused a board action from another origin");
        return Some(bare_page(
            StatusCode::FORBIDDEN,
            "<p id=\"refused\">Refused: this form was sent from another site.</p>",
        ));
    }
    None
}

fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = value("sec-fetch-site") {
        return site == "same-origin" || site == "none";
    }
    let Some(origin) = value("origin") else {
        return true;
    };
    let ours = url::Url::parse(public_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    let host = value("host").unwrap_or("");
    origin == ours
        || origin
            .split_once("://")
            .is_some_and(|(_, authority)| !host.is_empty() && authority == host)
}

fn login_page(status: StatusCode, message: &str) -> Response {
    bare_page(
        status,
        &format!(
            "<p>{}</p><form method=\"post\" action=\"/board/login\"><label>Operator token \
             <input type=\"password\" name=\"token\" id=\"token\"></label> <button id=\"login\" type=\"submit\">Open the board</button></form>",
            escape(message)
        ),
    )
}

pub async fn login_form() -> Response {
    login_page(StatusCode::OK, "Operators only.")
}

#[derive(Deserialize)]
pub struct Login {
    token: String,
}

pub async fn login(
    State(state): State<AppState>,
    peer: super::super::auth::Peer,
    headers: HeaderMap,
    Form(form): Form<Login>,
) -> Result<Response, ApiError> {
    let client = client_of(&peer);
    let token = form.token.trim();
    let operator = super::super::auth::operator_named(&state, token);
    // Past the limit every attempt gets the same 429, right token or not, so guesses sent
    // in parallel learn nothing once the count (incremented atomically) is over.
    let failures = match operator {
        None => state.store.login_failed(&client, LOGIN_WINDOW).await?,
        Some(_) => state.store.login_failures(&client).await?,
    };
    let over = match operator {
        None => failures > LOGIN_TRIES,
        Some(_) => failures >= LOGIN_TRIES,
    };
    if over {
        tracing::warn!(client = %client, "board login refused: too many wrong tokens");
        let mut response = login_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong tokens from this address; try again later.",
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            LOGIN_WINDOW.as_secs().to_string().parse().expect("digits"),
        );
        return Ok(response);
    }
    let Some(operator) = operator else {
        tracing::warn!(client = %client, failures, "board login with a wrong token");
        // Each wrong guess costs the guesser a second, on top of the window's limit.
        tokio::time::sleep(Duration::from_secs(1)).await;
        return Ok(login_page(
            StatusCode::UNAUTHORIZED,
            "That is not an operator token.",
        ));
    };
    // A login replaces the session the browser had, rather than leaving it open.
    if let Some(old) = session_cookie(&headers) {
        state.store.close_session(&old).await?;
    }
    let fingerprint = hex::encode(super::super::auth::fingerprint(token.as_bytes()));
    let token = state
        .store
        .open_session(&format!("{operator}\n{fingerprint}"), SESSION)
        .await?;
    let secure = if state.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={token}; Path=/board; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION.as_secs()
    );
    tracing::info!(operator = %operator, "board session opened");
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/board".to_string()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response())
}

/// Ends the session at once: its record is deleted, so a copy of the cookie is worthless.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = session_cookie(&headers) {
        state.store.close_session(&token).await?;
    }
    let clear = format!("{COOKIE}=; Path=/board; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/board/login".to_string()),
            (header::SET_COOKIE, clear),
        ],
    )
        .into_response())
}
