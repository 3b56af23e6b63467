//! Bearer tokens with two roles: clients (the booking system) and operators (admin).

use super::{error::ApiError, AppState};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Admin,
}

/// Compares without leaking through timing how much of a token matched.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn role(state: &AppState, parts: &Parts) -> Result<Role, ApiError> {
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    };
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(unauthorized)?;
    // Check every token, not stopping at a match, so timing says nothing about which.
    let admin = state.config.admin_tokens.iter().fold(false, |hit, t| {
        hit | same(t.expose().as_bytes(), token.as_bytes())
    });
    let client = state.config.api_tokens.iter().fold(false, |hit, t| {
        hit | same(t.expose().as_bytes(), token.as_bytes())
    });
    match (admin, client) {
        (true, _) => Ok(Role::Admin),
        (false, true) => Ok(Role::Client),
        _ => Err(unauthorized()),
    }
}

/// Any valid token: the booking system, or an operator (who may do everything a client can).
pub struct Client(pub Role);

/// An operator's token.
pub struct Admin;

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        role(state, parts).map(Client)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match role(state, parts)? {
            Role::Admin => Ok(Admin),
            Role::Client => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this route needs an operator token",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_compares_whole_values() {
        assert!(super::same(b"abc", b"abc"));
        assert!(!super::same(b"abc", b"abd"));
        assert!(!super::same(b"abc", b"abcd"));
        assert!(!super::same(b"", b"a"));
    }
}
