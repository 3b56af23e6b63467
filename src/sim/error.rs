//! The simulator's errors as KakaoPay answers them: a code, a message and the HTTP status;
//! [`codes`] are the codes it uses. Error codes other than -780 and -401 are assumptions
//! (KAKAOPAY.md marks them [U]); they live here so they are easy to change.

pub mod codes {
    /// Kakao's common "invalid parameter" [U].
    pub const INVALID_REQUEST: i64 = -2;
    pub const UNAUTHORIZED: i64 = -401;
    /// approve on a payment that is already paid [U].
    pub const ALREADY_APPROVED: i64 = -702;
    /// tid unknown (or belonging to another merchant) [U].
    pub const TID_NOT_FOUND: i64 = -721;
    /// the ready window has passed [U].
    pub const EXPIRED: i64 = -723;
    /// amount-related refusal: over the remainder, a stale `cancel_available_amount` [U].
    pub const AMOUNT_INVALID: i64 = -724;
    /// approve or cancel refused [V for approve].
    pub const APPROVAL_FAILURE: i64 = -780;
    /// cancel of a payment that is not (or no longer) cancelable [U].
    pub const NOT_CANCELABLE: i64 = -798;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    pub http_status: u16,
    pub code: i64,
    pub message: String,
    pub method_result_code: Option<String>,
    pub method_result_message: Option<String>,
}

impl SimError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        let http_status = if code == codes::UNAUTHORIZED {
            401
        } else {
            400
        };
        SimError {
            http_status,
            code,
            message: message.into(),
            method_result_code: None,
            method_result_message: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        SimError::new(codes::INVALID_REQUEST, message)
    }
}
