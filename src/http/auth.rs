//! Bearer tokens with two roles: clients (the booking system) and operators (admin). An
//! operator's token may carry a name (`ADMIN_TOKENS` entries `name=token`; a bare token is
//! named `admin`): the name every history entry of their actions records as `by`.

use super::{error::ApiError, AppState};
use crate::secret::Secret;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Admin,
}

/// Compares without leaking through timing how much of a token matched, or its length: the
/// values compared are their SHA-256 digests, always 32 bytes.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (fingerprint(a), fingerprint(b));
    a.iter().zip(&b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A token's SHA-256: what a board session remembers of the token that opened it.
pub(super) fn fingerprint(token: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token).into()
}

/// The token of an `Authorization: Bearer …` header. The scheme is case-insensitive
/// (RFC 7235: `BEARER`, `bearer` and `Bearer` are one scheme).
pub(super) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The name an operator's actions are recorded under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorName(String);

impl OperatorName {
    /// The name of a bare token in `ADMIN_TOKENS`.
    pub const DEFAULT: &'static str = "admin";

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One `ADMIN_TOKENS` entry: who, and the token that proves it.
#[derive(Debug, Clone)]
pub struct Operator {
    pub name: OperatorName,
    pub token: Secret,
}

impl Operator {
    /// `name=token`, or a bare token (named `admin`). Only a plain name (letters, digits,
    /// `_.@-`, at most 64) before the first `=` counts as one, so a token that merely holds
    /// an `=` (base64 padding) stays whole.
    pub fn parse(entry: &Secret) -> Operator {
        let raw = entry.expose();
        let named = raw.split_once('=').filter(|(name, token)| {
            !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c))
                && !token.trim().is_empty()
        });
        match named {
            Some((name, token)) => Operator {
                name: OperatorName(name.to_string()),
                token: Secret::new(token.trim()),
            },
            None => Operator {
                name: OperatorName(OperatorName::DEFAULT.to_string()),
                token: entry.clone(),
            },
        }
    }
}

/// Who a request is from: the role, and the operator's name for an admin token.
fn role(state: &AppState, parts: &Parts) -> Result<(Role, Option<OperatorName>), ApiError> {
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    };
    let token = bearer(&parts.headers).ok_or_else(unauthorized)?;
    // Check every token, not stopping at a match, so timing says nothing about which.
    let admin = state.config.operators.iter().fold(None, |hit, o| {
        let matches = same(o.token.expose().as_bytes(), token.as_bytes());
        if matches && hit.is_none() {
            Some(o.name.clone())
        } else {
            hit
        }
    });
    let client = state.config.api_tokens.iter().fold(false, |hit, t| {
        hit | same(t.expose().as_bytes(), token.as_bytes())
    });
    match (admin, client) {
        (Some(name), _) => Ok((Role::Admin, Some(name))),
        (None, true) => Ok((Role::Client, None)),
        _ => Err(unauthorized()),
    }
}

/// The operator an admin token belongs to, checking every token (timing says nothing of
/// which matched).
pub(super) fn operator_named(state: &AppState, token: &str) -> Option<String> {
    state.config.operators.iter().fold(None, |hit, o| {
        let matches = same(o.token.expose().as_bytes(), token.as_bytes());
        if matches && hit.is_none() {
            Some(o.name.as_str().to_string())
        } else {
            hit
        }
    })
}

/// Whether an admin token with this fingerprint is still configured: a board session dies
/// with the token that opened it.
pub(super) fn still_admin(state: &AppState, fingerprint_hex: &str) -> bool {
    state.config.operators.iter().fold(false, |hit, o| {
        let ours = hex::encode(fingerprint(o.token.expose().as_bytes()));
        hit | same(ours.as_bytes(), fingerprint_hex.as_bytes())
    })
}

/// The client's address as the listener saw it (`-` when the server did not record it).
pub struct Peer(Option<std::net::IpAddr>);

impl Peer {
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.0
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => write!(f, "{ip}"),
            None => f.write_str("-"),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(Peer(peer))
    }
}

/// Any valid token: the booking system, or an operator (who may do everything a client can),
/// with the operator's name.
pub struct Client(pub Role, pub Option<OperatorName>);

/// An operator's token, and whose it is.
pub struct Admin(pub OperatorName);

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        role(state, parts).map(|(role, name)| Client(role, name))
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match role(state, parts)? {
            (Role::Admin, Some(name)) => Ok(Admin(name)),
            _ => Err(ApiError::new(
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
    fn the_scheme_is_case_insensitive() {
        let mut headers = axum::http::HeaderMap::new();
        for value in ["Bearer t0k", "BEARER t0k", "bearer  t0k ", "bEaReR t0k"] {
            headers.insert(super::header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(super::bearer(&headers), Some("t0k"), "{value}");
        }
        for value in ["Basic t0k", "Bearer", "Bearer   ", "Bearert0k"] {
            headers.insert(super::header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(super::bearer(&headers), None, "{value}");
        }
    }

    #[test]
    fn same_compares_whole_values() {
        assert!(super::same(b"abc", b"abc"));
        assert!(!super::same(b"abc", b"abd"));
        assert!(!super::same(b"abc", b"abcd"));
        assert!(!super::same(b"", b"a"));
    }

    #[test]
    fn admin_tokens_may_carry_a_name() {
        use super::{Operator, Secret};
        let named = Operator::parse(&Secret::new("kim=tok-123"));
        assert_eq!(
            (named.name.as_str(), named.token.expose()),
            ("kim", "tok-123")
        );
        let bare = Operator::parse(&Secret::new("tok-123"));
        assert_eq!(
            (bare.name.as_str(), bare.token.expose()),
            ("admin", "tok-123")
        );
        // Base64 padding is not a name.
        let padded = Operator::parse(&Secret::new("dG9rZW4="));
        assert_eq!(
            (padded.name.as_str(), padded.token.expose()),
            ("admin", "dG9rZW4=")
        );
        let odd = Operator::parse(&Secret::new("a b=tok"));
        assert_eq!(odd.name.as_str(), "admin");
    }
}
