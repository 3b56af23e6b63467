//! Our statuses of payments and refunds (API.md), and which moves between them are allowed.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Ready,
    Approving,
    Approved,
    PartiallyRefunded,
    Refunded,
    Canceled,
    Failed,
    Expired,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 8] = [
        PaymentStatus::Ready,
        PaymentStatus::Approving,
        PaymentStatus::Approved,
        PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded,
        PaymentStatus::Canceled,
        PaymentStatus::Failed,
        PaymentStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Ready => "ready",
            PaymentStatus::Approving => "approving",
            PaymentStatus::Approved => "approved",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::Canceled => "canceled",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Expired => "expired",
        }
    }

    /// The state machine of API.md. Anything else is refused by the store.
    pub fn can_move_to(self, next: PaymentStatus) -> bool {
        use PaymentStatus::*;
        matches!(
            (self, next),
            (Ready, Approving | Canceled | Failed | Expired)
                | (Approving, Approved | Failed)
                // A correction: KakaoPay proves approved a payment recorded failed (an answer
                // that came after the failure was recorded, from a run whose lease lapsed).
                | (Failed, Approved)
                | (Approved, PartiallyRefunded | Refunded)
                | (PartiallyRefunded, PartiallyRefunded | Refunded)
        )
    }

    /// Money was taken and some of it may be given back.
    pub fn is_refundable(self) -> bool {
        matches!(
            self,
            PaymentStatus::Approved | PaymentStatus::PartiallyRefunded
        )
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            PaymentStatus::Refunded
                | PaymentStatus::Canceled
                | PaymentStatus::Failed
                | PaymentStatus::Expired
        )
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Queued,
    Processing,
    Succeeded,
    Rejected,
    ManualReview,
    Failed,
    /// An operator closed a review without money moving.
    Dismissed,
}

impl RefundStatus {
    pub const ALL: [RefundStatus; 7] = [
        RefundStatus::Queued,
        RefundStatus::Processing,
        RefundStatus::Succeeded,
        RefundStatus::Rejected,
        RefundStatus::ManualReview,
        RefundStatus::Failed,
        RefundStatus::Dismissed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Queued => "queued",
            RefundStatus::Processing => "processing",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Rejected => "rejected",
            RefundStatus::ManualReview => "manual_review",
            RefundStatus::Failed => "failed",
            RefundStatus::Dismissed => "dismissed",
        }
    }

    pub fn can_move_to(self, next: RefundStatus) -> bool {
        use RefundStatus::*;
        matches!(
            (self, next),
            (Queued, Processing | Rejected | ManualReview)
                | (Processing, Succeeded | Failed | Rejected | ManualReview)
                // A correction: KakaoPay proves paid a refund recorded failed.
                | (Failed, Succeeded)
                // An operator's review: approved (run again as an admin amount) or dismissed.
                | (ManualReview, Queued | Dismissed)
        )
    }

    pub fn is_final(self) -> bool {
        !matches!(self, RefundStatus::Queued | RefundStatus::Processing)
    }
}

impl fmt::Display for RefundStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_moves_of_the_contract_are_allowed() {
        use PaymentStatus::*;
        for (from, to) in [
            (Ready, Approving),
            (Ready, Canceled),
            (Ready, Failed),
            (Ready, Expired),
            (Approving, Approved),
            (Approving, Failed),
            (Approved, PartiallyRefunded),
            (Approved, Refunded),
            (PartiallyRefunded, Refunded),
            (Failed, Approved),
        ] {
            assert!(from.can_move_to(to), "{from} -> {to}");
        }
    }

    #[test]
    fn every_other_payment_move_is_refused() {
        use PaymentStatus::*;
        let mut allowed = 0;
        for from in PaymentStatus::ALL {
            for to in PaymentStatus::ALL {
                allowed += from.can_move_to(to) as u32;
            }
        }
        // The ten moves above plus partially_refunded -> partially_refunded (a second partial refund).
        assert_eq!(allowed, 11);
        assert!(!Approved.can_move_to(Ready));
        assert!(!Refunded.can_move_to(PartiallyRefunded));
        assert!(!Approving.can_move_to(Expired));
        assert!(!Failed.can_move_to(Refunded));
        for s in PaymentStatus::ALL.into_iter().filter(|s| s.is_final()) {
            // Only KakaoPay's proof of an approval reopens a failed payment.
            assert!(
                PaymentStatus::ALL
                    .iter()
                    .all(|&t| !s.can_move_to(t) || (s, t) == (Failed, Approved)),
                "{s} is final"
            );
        }
    }

    #[test]
    fn refund_finals_go_nowhere() {
        for s in RefundStatus::ALL.into_iter().filter(|s| s.is_final()) {
            // The corrections and an operator's review are the only ways out.
            let reopened = |t: RefundStatus| {
                (s, t) == (RefundStatus::Failed, RefundStatus::Succeeded)
                    || (s == RefundStatus::ManualReview
                        && matches!(t, RefundStatus::Queued | RefundStatus::Dismissed))
            };
            assert!(
                RefundStatus::ALL
                    .iter()
                    .all(|&t| !s.can_move_to(t) || reopened(t)),
                "{s}"
            );
        }
        assert!(RefundStatus::Queued.can_move_to(RefundStatus::Processing));
        assert!(!RefundStatus::Queued.can_move_to(RefundStatus::Succeeded));
    }

    #[test]
    fn names_match_the_contract() {
        let names: Vec<_> = PaymentStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "ready",
                "approving",
                "approved",
                "partially_refunded",
                "refunded",
                "canceled",
                "failed",
                "expired"
            ]
        );
        for s in RefundStatus::ALL {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
    }
}
