//! What went wrong with a KakaoPay call, and what the caller may do about it.
//!
//! The class is decided by the error code in the body, not by the HTTP status: some HTTP
//! stacks lose bodies or statuses, and KakaoPay answers business errors with 400 and auth
//! errors with 401 alike.

use super::Endpoint;
use std::fmt;

/// What a caller may do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Nothing happened at KakaoPay (or it is safe to ask again): retry later.
    Transient,
    /// KakaoPay refused for good; asking again gives the same answer.
    Final,
    /// The request may have been applied (timeout or broken connection after sending, an
    /// unreadable success): ask the order inquiry what happened before any resend.
    OutcomeUnknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request never reached KakaoPay.
    Connect(String),
    /// Sent, but no answer within the timeout.
    Timeout,
    /// Sent, then the connection broke before a whole answer arrived.
    Dropped(String),
    /// KakaoPay answered with an error.
    Api {
        http_status: u16,
        code: Option<i64>,
        message: String,
        method_result_code: Option<String>,
        method_result_message: Option<String>,
    },
    /// A success status whose body could not be read.
    Decode { http_status: u16, detail: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KakaoPayError {
    pub endpoint: Endpoint,
    pub kind: ErrorKind,
}

/// Kakao's platform-wide "internal error" code: worth another try.
const INTERNAL_ERROR: i64 = -1;
const APPROVAL_FAILURE: i64 = -780;
const UNAUTHORIZED: i64 = -401;

impl KakaoPayError {
    pub fn class(&self) -> ErrorClass {
        // Asking again is always safe for the order inquiry: it changes nothing at KakaoPay.
        let unknown_or_retry = if self.endpoint.changes_state() {
            ErrorClass::OutcomeUnknown
        } else {
            ErrorClass::Transient
        };
        match &self.kind {
            ErrorKind::Connect(_) => ErrorClass::Transient,
            ErrorKind::Timeout | ErrorKind::Dropped(_) => unknown_or_retry,
            ErrorKind::Decode { .. } if self.endpoint.changes_state() => ErrorClass::OutcomeUnknown,
            ErrorKind::Decode { .. } => ErrorClass::Final,
            ErrorKind::Api {
                http_status,
                code,
                method_result_code,
                ..
            } => match code {
                Some(UNAUTHORIZED) => ErrorClass::Final,
                Some(APPROVAL_FAILURE) if method_result_code.as_deref() == Some("USER_LOCKED") => {
                    ErrorClass::Transient
                }
                Some(INTERNAL_ERROR) => ErrorClass::Transient,
                Some(_) if *http_status >= 500 => ErrorClass::Transient,
                Some(_) => ErrorClass::Final,
                // No KakaoPay error code: the answer came from something in between.
                None => match http_status {
                    500.. | 408 | 429 => ErrorClass::Transient,
                    401 | 403 => ErrorClass::Final,
                    _ => unknown_or_retry,
                },
            },
        }
    }

    /// KakaoPay's error code, when it gave one.
    pub fn code(&self) -> Option<i64> {
        match &self.kind {
            ErrorKind::Api { code, .. } => *code,
            _ => None,
        }
    }

    pub fn method_result_code(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Api {
                method_result_code, ..
            } => method_result_code.as_deref(),
            _ => None,
        }
    }

    pub fn is_unauthorized(&self) -> bool {
        self.code() == Some(UNAUTHORIZED)
            || matches!(
                self.kind,
                ErrorKind::Api {
                    http_status: 401,
                    code: None,
                    ..
                }
            )
    }
}

impl fmt::Display for KakaoPayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ep = self.endpoint.name();
        match &self.kind {
            ErrorKind::Connect(e) => write!(f, "KakaoPay {ep}: could not connect: {e}"),
            ErrorKind::Timeout => write!(f, "KakaoPay {ep}: no answer within the timeout"),
            ErrorKind::Dropped(e) => write!(f, "KakaoPay {ep}: connection broke: {e}"),
            ErrorKind::Api {
                http_status,
                code,
                message,
                method_result_code,
                ..
            } => {
                write!(f, "KakaoPay {ep}: HTTP {http_status}")?;
                if let Some(code) = code {
                    write!(f, ", code {code}")?;
                }
                write!(f, ": {message}")?;
                if let Some(mrc) = method_result_code {
                    write!(f, " ({mrc})")?;
                }
                Ok(())
            }
            ErrorKind::Decode {
                http_status,
                detail,
            } => {
                write!(
                    f,
                    "KakaoPay {ep}: unreadable HTTP {http_status} answer: {detail}"
                )
            }
        }
    }
}

impl std::error::Error for KakaoPayError {}

/// Reads KakaoPay's error body of either generation (`error_code`/`error_message` or
/// `code`/`msg`), whatever the endpoint's generation, since proxies and versions mix them.
pub fn parse_error_body(http_status: u16, body: &[u8]) -> Option<ErrorKind> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    let code = ["error_code", "code"]
        .iter()
        .find_map(|k| obj.get(*k))
        .and_then(|c| c.as_i64().or_else(|| c.as_str()?.trim().parse().ok()))?;
    let message = ["error_message", "msg", "message"]
        .iter()
        .find_map(|k| obj.get(*k)?.as_str())
        .unwrap_or("")
        .to_string();
    let extras = obj.get("extras");
    let extra = |k: &str| extras?.get(k)?.as_str().map(str::to_string);
    Some(ErrorKind::Api {
        http_status,
        code: Some(code),
        message,
        method_result_code: extra("method_result_code"),
        method_result_message: extra("method_result_message"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(endpoint: Endpoint, status: u16, body: &str) -> KakaoPayError {
        let kind = parse_error_body(status, body.as_bytes()).unwrap_or(ErrorKind::Api {
            http_status: status,
            code: None,
            message: String::new(),
            method_result_code: None,
            method_result_message: None,
        });
        KakaoPayError { endpoint, kind }
    }

    #[test]
    fn user_locked_is_transient_other_780s_are_final() {
        let locked = r#"{"error_code":-780,"error_message":"approval failure!","extras":{"method_result_code":"USER_LOCKED"}}"#;
        assert_eq!(
            api(Endpoint::Approve, 400, locked).class(),
            ErrorClass::Transient
        );
        let plain = r#"{"code":-780,"msg":"approval failure!"}"#;
        assert_eq!(
            api(Endpoint::Approve, 400, plain).class(),
            ErrorClass::Final
        );
    }

    #[test]
    fn the_body_code_decides_not_the_status() {
        // -401 is final even when some stack turned it into a 500 or a 200-ish status.
        let e = api(
            Endpoint::Cancel,
            500,
            r#"{"error_code":-401,"error_message":"no"}"#,
        );
        assert_eq!(e.class(), ErrorClass::Final);
        assert!(e.is_unauthorized());
        // A 401 whose body was lost is still an auth failure.
        let e = api(Endpoint::Ready, 401, "");
        assert_eq!(e.class(), ErrorClass::Final);
        assert!(e.is_unauthorized());
        // A business code with a 5xx: KakaoPay had trouble, try again.
        assert_eq!(
            api(Endpoint::Approve, 503, r#"{"code":-799,"msg":"x"}"#).class(),
            ErrorClass::Transient
        );
        assert_eq!(
            api(Endpoint::Approve, 400, r#"{"code":-1,"msg":"internal"}"#).class(),
            ErrorClass::Transient
        );
        assert_eq!(
            api(Endpoint::Approve, 400, r#"{"code":"-721","msg":"no tid"}"#).code(),
            Some(-721)
        );
    }

    #[test]
    fn answers_without_a_code_from_something_in_between() {
        assert_eq!(
            api(Endpoint::Approve, 502, "<html>bad gateway</html>").class(),
            ErrorClass::Transient
        );
        assert_eq!(
            api(Endpoint::Approve, 429, "").class(),
            ErrorClass::Transient
        );
        // A bare 400 on approve: we cannot know KakaoPay did nothing, so inquire first.
        assert_eq!(
            api(Endpoint::Approve, 400, "").class(),
            ErrorClass::OutcomeUnknown
        );
        assert_eq!(api(Endpoint::Order, 400, "").class(), ErrorClass::Transient);
    }

    #[test]
    fn timeouts_are_unknown_only_where_money_moves() {
        let t = |endpoint| {
            KakaoPayError {
                endpoint,
                kind: ErrorKind::Timeout,
            }
            .class()
        };
        assert_eq!(t(Endpoint::Approve), ErrorClass::OutcomeUnknown);
        assert_eq!(t(Endpoint::Cancel), ErrorClass::OutcomeUnknown);
        assert_eq!(t(Endpoint::Ready), ErrorClass::OutcomeUnknown);
        assert_eq!(t(Endpoint::Order), ErrorClass::Transient);
        let c = KakaoPayError {
            endpoint: Endpoint::Cancel,
            kind: ErrorKind::Connect("refused".into()),
        };
        assert_eq!(c.class(), ErrorClass::Transient);
    }
}
