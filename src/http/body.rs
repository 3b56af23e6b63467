//! The JSON body of a request, refused with the field at fault: malformed JSON, unknown or
//! missing fields and values out of range are 400 naming the field; anything but
//! `application/json` is 415; a body over 64 KiB is 413.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

pub const MAX_BODY: usize = 64 * 1024;

pub struct ApiJson<T>(pub T);

/// The field serde complained about. The path already ends at an unknown field; a missing
/// field is named in the message, under the path of its parent.
fn field_of(message: &str, path: &str) -> String {
    let path = if path == "." || path == "?" { "" } else { path };
    let named = |marker: &str| {
        message
            .split(marker)
            .nth(1)
            .and_then(|rest| rest.split('`').next())
    };
    let joined = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    if let Some(name) = named("missing field `").or_else(|| named("duplicate field `")) {
        return joined(name);
    }
    if let Some(name) = named("unknown field `") {
        if !path.ends_with(name) {
            return joined(name);
        }
    }
    if path.is_empty() {
        "body".to_string()
    } else {
        path.to_string()
    }
}

/// Parses JSON into `T`, naming the field at fault. The body must be one JSON value with no
/// key twice in any object: serde_json keeps the last of two equal keys without a word, and
/// inside `context` that would decide a refund by whichever copy a reader happens to keep.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    whole::<Unique>(bytes)?;
    whole(bytes)
}

/// One JSON value and nothing after it but whitespace.
fn whole<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Most bodies are valid: parsed without tracking the path, which costs on every value,
    // and parsed again with it only to name the field of one that is not.
    let mut de = serde_json::Deserializer::from_slice(bytes);
    if let Ok(value) = T::deserialize(&mut de) {
        if de.end().is_ok() {
            return Ok(value);
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        invalid(e.into_inner(), &path)
    })?;
    de.end().map_err(|e| invalid(e, ""))?;
    Ok(value)
}

fn invalid(e: serde_json::Error, path: &str) -> ApiError {
    let message = e.to_string();
    let field = field_of(&message, path);
    // serde's messages carry line and column noise; keep the sentence.
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_string();
    let message = if message == "trailing characters" {
        "the body must be one JSON value, with nothing after it".to_string()
    } else {
        message
    };
    ApiError::invalid(field, message)
}

/// Any JSON value whose objects, at every depth, name each key once.
struct Unique;

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                // The wording of serde's derive, so `field_of` names the key.
                return Err(serde::de::Error::custom(format!("duplicate field `{key}`")));
            }
            map.next_value::<Unique>()?;
        }
        Ok(Unique)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }
}

/// Whether reading the body failed on the server's body deadline.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(e) = source {
        if e.is::<crate::listener::BodyTimedOut>() {
            return true;
        }
        source = e.source();
    }
    false
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if timed_out(&e) {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the body did not arrive in time",
                )
            } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the body is over 64 KiB",
                )
            } else {
                ApiError::invalid(
                    "body",
                    format!("could not read the body: {}", e.body_text()),
                )
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse::<Body>(br#"{"name":"a","extra":1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("extra"));
        let e = parse::<Body>(br#"{}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"));
        let e = parse::<Body>(br#"{"name":5}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"));
        let e = parse::<Body>(br#"{"name":"a","inner":{"n":-1}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("inner.n"));
        let e = parse::<Body>(br#"{"name":"a","inner":{"m":1}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("inner.m"));
        let e = parse::<Body>(b"{").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("body"));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn one_value_and_nothing_after_it() {
        let e = parse::<Body>(br#"{"name":"a"} {"name":"b"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("body"));
        assert!(e.message.contains("nothing after it"), "{}", e.message);
        let e = parse::<serde_json::Value>(br#"{"name":"a"}x"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(parse::<Body>(b" {\"name\":\"a\"} \n").is_ok());
    }

    #[test]
    fn no_key_twice_at_any_depth() {
        let e = parse::<Body>(br#"{"name":"a","name":"b"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"));
        let e = parse::<serde_json::Value>(br#"{"context":{"fulfilled":false,"fulfilled":true}}"#)
            .unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("context.fulfilled"),
            "{}",
            e.message
        );
        let e = parse::<serde_json::Value>(br#"{"a":[{"b":{"c":1,"c":2}}]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("a[0].b.c"), "{}", e.message);
        // Equal keys in sibling objects are fine.
        assert!(parse::<serde_json::Value>(br#"{"a":{"k":1},"b":{"k":2}}"#).is_ok());
    }
}
