//! The 13 payment statuses KakaoPay's order inquiry reports (KAKAOPAY.md §7).

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum OrderStatus {
    Ready,
    SendTms,
    OpenPayment,
    SelectMethod,
    ArsWaiting,
    AuthPassword,
    IssuedSid,
    SuccessPayment,
    PartCancelPayment,
    CancelPayment,
    FailAuthPassword,
    QuitPayment,
    FailPayment,
    /// A status this build does not know; kept verbatim rather than failing the whole answer.
    Other(String),
}

/// How a worker reads a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// Not paid yet, and may still be (or may expire).
    Pending,
    /// Paid; possibly partly or fully cancelled since.
    Paid,
    /// Never paid and never will be.
    Failed,
    /// Not a state a single payment should be in (ISSUED_SID, or unknown): a person must look.
    Unexpected,
}

const NAMES: [(&str, OrderStatus); 13] = [
    ("READY", OrderStatus::Ready),
    ("SEND_TMS", OrderStatus::SendTms),
    ("OPEN_PAYMENT", OrderStatus::OpenPayment),
    ("SELECT_METHOD", OrderStatus::SelectMethod),
    ("ARS_WAITING", OrderStatus::ArsWaiting),
    ("AUTH_PASSWORD", OrderStatus::AuthPassword),
    ("ISSUED_SID", OrderStatus::IssuedSid),
    ("SUCCESS_PAYMENT", OrderStatus::SuccessPayment),
    ("PART_CANCEL_PAYMENT", OrderStatus::PartCancelPayment),
    ("CANCEL_PAYMENT", OrderStatus::CancelPayment),
    ("FAIL_AUTH_PASSWORD", OrderStatus::FailAuthPassword),
    ("QUIT_PAYMENT", OrderStatus::QuitPayment),
    ("FAIL_PAYMENT", OrderStatus::FailPayment),
];

impl OrderStatus {
    pub fn as_str(&self) -> &str {
        match self {
            OrderStatus::Other(s) => s,
            known => NAMES
                .iter()
                .find(|(_, s)| s == known)
                .map(|(name, _)| *name)
                .unwrap_or("UNKNOWN"),
        }
    }

    pub fn class(&self) -> StatusClass {
        use OrderStatus::*;
        match self {
            Ready | SendTms | OpenPayment | SelectMethod | ArsWaiting | AuthPassword => {
                StatusClass::Pending
            }
            SuccessPayment | PartCancelPayment | CancelPayment => StatusClass::Paid,
            FailAuthPassword | QuitPayment | FailPayment => StatusClass::Failed,
            IssuedSid | Other(_) => StatusClass::Unexpected,
        }
    }
}

impl From<String> for OrderStatus {
    fn from(s: String) -> Self {
        NAMES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, status)| status.clone())
            .unwrap_or(OrderStatus::Other(s))
    }
}

impl From<OrderStatus> for String {
    fn from(s: OrderStatus) -> String {
        s.as_str().to_string()
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_thirteen_round_trip() {
        for (name, status) in NAMES {
            assert_eq!(OrderStatus::from(name.to_string()), status);
            assert_eq!(status.as_str(), name);
        }
    }

    #[test]
    fn unknown_statuses_are_kept_not_refused() {
        let s: OrderStatus = serde_json::from_str("\"NEW_THING\"").unwrap();
        assert_eq!(s, OrderStatus::Other("NEW_THING".into()));
        assert_eq!(s.class(), StatusClass::Unexpected);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"NEW_THING\"");
    }

    #[test]
    fn classes() {
        assert_eq!(OrderStatus::AuthPassword.class(), StatusClass::Pending);
        assert_eq!(OrderStatus::PartCancelPayment.class(), StatusClass::Paid);
        assert_eq!(OrderStatus::QuitPayment.class(), StatusClass::Failed);
        assert_eq!(OrderStatus::IssuedSid.class(), StatusClass::Unexpected);
    }
}
