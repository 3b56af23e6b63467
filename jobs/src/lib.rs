//! The jobs of kakaopay-worker, as a crate of their own so that any Rust program (the booking
//! system, say) can enqueue exactly the jobs the HTTP endpoint enqueues.
//!
//! Each job kind is a typed args struct with a stable name ([`JobKind::NAME`]), which is also
//! the name of its queue, and its retry schedule. Payloads carry ids only: workers read
//! everything else, credentials included, from the store at run time, so nothing secret or
//! stale ever sits in a queue.
//!
//! [`queue`] is the Redis queue itself: the [`queue::Producer`] that enqueues and the apalis
//! backend workers fetch from.

pub mod queue;
pub mod refunds;

use queue::{EnqueueOptions, RetrySchedule};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A job kind: its stable name doubles as its queue name and must never change once jobs of
/// that kind may sit in a queue.
pub trait JobKind: Serialize + for<'de> Deserialize<'de> + Send + Sync + Unpin + 'static {
    const NAME: &'static str;
    /// The default schedule (DESIGN.md); workers may be configured with another.
    const RETRY: RetrySchedule;

    /// The id a job of this kind is enqueued under, derived from what it is about, so that
    /// enqueuing it again stores nothing; `None` draws a random one.
    fn job_id(&self) -> Option<String> {
        None
    }

    /// How a job of this kind is enqueued (River's `InsertOpts`).
    fn insert_opts(&self) -> EnqueueOptions {
        EnqueueOptions {
            id: self.job_id(),
            ..Default::default()
        }
    }
}

/// Approve a payment at KakaoPay after the member authorised it (the `approve` callback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovePayment {
    pub payment_id: String,
}

impl JobKind for ApprovePayment {
    const NAME: &'static str = "approve_payment";
    const RETRY: RetrySchedule =
        RetrySchedule::new(8, Duration::from_secs(1), Duration::from_secs(60));

    /// One approval per payment: a repeated callback, or the reconciler finding the payment
    /// `approving`, enqueues nothing new.
    fn job_id(&self) -> Option<String> {
        Some(format!("approve:{}", self.payment_id))
    }
}

/// Decide a refund by the rules and, if money is due, cancel it at KakaoPay.
///
/// Unlike the other jobs it carries the refund request itself (nothing secret: who asked,
/// when, why, and an operator's explicit amount), so that a refund enqueued straight into
/// Redis by another program is complete without an HTTP call: the worker creates the refund
/// record from it if none exists. Its id and the refund id derive from the payment and the
/// idempotency key ([`refunds::refund_id`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelPayment {
    pub payment_id: String,
    pub refund_id: String,
    pub idempotency_key: String,
    pub request: RefundRequest,
}

impl RefundRequest {
    /// Who asked; `None` for a request that fails validation.
    pub fn requester(&self) -> Option<Requester> {
        Requester::parse(&self.requested_by)
    }

    /// A request received now, with no explicit amount: the rules decide.
    pub fn new(requested_by: &str, reason: &str) -> Self {
        RefundRequest {
            reason: reason.to_string(),
            requested_by: requested_by.to_string(),
            canceled_at: None,
            context: Default::default(),
            amount: None,
            by_admin: false,
            received_at: chrono::Utc::now().to_rfc3339(),
        }
    }
}

/// Who asked for a refund (the rules of REFUNDS.md depend on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requester {
    Member,
    Admin,
    System,
}

impl Requester {
    pub fn parse(raw: &str) -> Option<Requester> {
        match raw {
            "member" => Some(Requester::Member),
            "admin" => Some(Requester::Admin),
            "system" => Some(Requester::System),
            _ => None,
        }
    }
}

/// A refund request, as the booking system sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    #[serde(default)]
    pub reason: String,
    /// `member`, `admin` or `system`.
    pub requested_by: String,
    /// RFC 3339; when absent, the time the request was first received.
    #[serde(default)]
    pub canceled_at: Option<String>,
    #[serde(default)]
    pub context: serde_json::Map<String, serde_json::Value>,
    /// An explicit amount in won, bypassing the rules (operators only).
    #[serde(default)]
    pub amount: Option<i64>,
    /// Whether an operator asked (an admin token, or a trusted program asking as admin).
    #[serde(default)]
    pub by_admin: bool,
    /// When the request was first received (RFC 3339), stamped by whoever enqueued it.
    pub received_at: String,
}

impl JobKind for CancelPayment {
    const NAME: &'static str = "cancel_payment";
    const RETRY: RetrySchedule =
        RetrySchedule::new(12, Duration::from_secs(2), Duration::from_secs(600));

    /// One job per refund (an operator's approval of one runs under an id of its own, which
    /// the refund's record knows).
    fn job_id(&self) -> Option<String> {
        Some(refunds::job_id(&self.refund_id))
    }
}

/// POST one outbound event to the booking system's webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverEvent {
    pub event_id: String,
}

impl JobKind for DeliverEvent {
    const NAME: &'static str = "deliver_event";
    const RETRY: RetrySchedule =
        RetrySchedule::new(18, Duration::from_secs(5), Duration::from_secs(3600));

    /// One delivery job per event.
    fn job_id(&self) -> Option<String> {
        Some(self.event_id.clone())
    }
}

/// Every queue the service runs, in the order operators see them.
pub const QUEUES: [&str; 3] = [
    ApprovePayment::NAME,
    CancelPayment::NAME,
    DeliverEvent::NAME,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_stable() {
        let job = ApprovePayment {
            payment_id: "pay_1".into(),
        };
        let json = serde_json::to_string(&job).unwrap();
        assert_eq!(json, r#"{"payment_id":"pay_1"}"#);
        assert_eq!(
            serde_json::from_str::<ApprovePayment>(&json).unwrap(),
            job,
            "round trip"
        );
    }

    #[test]
    fn unknown_fields_are_refused_so_a_secret_cannot_ride_along() {
        let err = serde_json::from_str::<ApprovePayment>(r#"{"payment_id":"p","key":"x"}"#);
        assert!(err.is_err());
    }

    #[test]
    fn queue_names_are_the_contract_names() {
        assert_eq!(
            QUEUES,
            ["approve_payment", "cancel_payment", "deliver_event"]
        );
    }
}
