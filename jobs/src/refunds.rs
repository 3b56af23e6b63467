//! Requesting a refund straight into Redis, with the same validation and idempotency as
//! `POST /v1/payments/{payment_id}/refunds`: the same idempotency key and request answer the
//! same refund; the same key with another request is refused.

use crate::queue::{inspect, Producer, QueueError};
use crate::{CancelPayment, JobKind, RefundRequest};
use sha2::{Digest, Sha256};

/// The refund a payment and an idempotency key name, whichever way it was requested. It
/// carries its payment's shard (the two characters after `pay_`), so that it is stored in
/// its payment's hash slot and found there from its id alone.
pub fn refund_id(payment_id: &str, idempotency_key: &str) -> String {
    let digest = Sha256::digest(format!("{payment_id}\n{idempotency_key}").as_bytes());
    let tail = payment_id.strip_prefix("pay_").unwrap_or(payment_id);
    let shard: String = tail.chars().chain(['0', '0']).take(2).collect();
    format!("rf_{shard}{}", &hex::encode(digest)[..22])
}

/// The `cancel_payment` job of a refund.
pub fn job_id(refund_id: &str) -> String {
    format!("cancel:{refund_id}")
}

/// The `cancel_payment` job of a refund's `round`th approval by an operator (the job of an
/// earlier one is done, and enqueuing under its id again would be taken for a duplicate).
pub fn review_job_id(refund_id: &str, round: u32) -> String {
    let first = job_id(refund_id);
    match round {
        0 => format!("{first}:review"),
        n => format!("{first}:review:{n}"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RefundRequestError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("this idempotency key was used for a different refund request")]
    IdempotencyConflict,
    #[error(transparent)]
    Queue(#[from] QueueError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> RefundRequestError {
    RefundRequestError::Invalid {
        field,
        message: message.into(),
    }
}

/// What an `Idempotency-Key` must be, the one rule for the HTTP route and this crate.
pub const IDEMPOTENCY_KEY_RULE: &str = "must be 1 to 200 printable characters without spaces";

pub fn valid_idempotency_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 200 && key.chars().all(|c| c.is_ascii_graphic())
}

/// Checks a request the way the HTTP route does (what needs the payment, such as the amount
/// left, is checked by the worker).
pub fn validate(idempotency_key: &str, request: &RefundRequest) -> Result<(), RefundRequestError> {
    if !valid_idempotency_key(idempotency_key) {
        return Err(invalid("Idempotency-Key", IDEMPOTENCY_KEY_RULE));
    }
    if request.requester().is_none() {
        return Err(invalid("requested_by", "must be member, admin or system"));
    }
    if request.reason.chars().count() > 200 {
        return Err(invalid("reason", "must be at most 200 characters"));
    }
    for (field, value) in [
        ("canceled_at", request.canceled_at.as_deref()),
        ("received_at", Some(request.received_at.as_str())),
    ] {
        if let Some(v) = value {
            chrono::DateTime::parse_from_rfc3339(v)
                .map_err(|_| invalid(field, "must be RFC 3339 with an offset"))?;
        }
    }
    if let Some(amount) = request.amount {
        if !request.by_admin {
            return Err(invalid("amount", "only an operator may give an amount"));
        }
        if amount <= 0 {
            return Err(invalid("amount", "must be at least 1"));
        }
    }
    if serde_json::to_string(&request.context)
        .map(|c| c.len())
        .unwrap_or(0)
        > 4096
    {
        return Err(invalid("context", "must be at most 4 KiB"));
    }
    Ok(())
}

/// Whether two requests are the same request (the time each was received aside).
pub fn same_request(a: &RefundRequest, b: &RefundRequest) -> bool {
    a.reason == b.reason
        && a.requested_by == b.requested_by
        && a.canceled_at == b.canceled_at
        && a.context == b.context
        && a.amount == b.amount
        && a.by_admin == b.by_admin
}

/// The outcome of requesting a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub refund_id: String,
    /// The same request was made before: nothing new was enqueued.
    pub duplicate: bool,
}

/// Enqueues a refund request for `payment_id`. The worker decides it by the rules, creates
/// its record and, if money is due, cancels it at KakaoPay.
pub async fn request_refund(
    producer: &Producer,
    payment_id: &str,
    idempotency_key: &str,
    request: RefundRequest,
) -> Result<Requested, RefundRequestError> {
    validate(idempotency_key, &request)?;
    let refund_id = refund_id(payment_id, idempotency_key);
    let job = CancelPayment {
        payment_id: payment_id.to_string(),
        refund_id: refund_id.clone(),
        idempotency_key: idempotency_key.to_string(),
        request: request.clone(),
    };
    let enqueued = producer.insert(&job).await?;
    if enqueued.duplicate {
        let existing = inspect::job(
            &producer.connection(),
            producer.namespace(),
            CancelPayment::NAME,
            &job_id(&refund_id),
        )
        .await?;
        let earlier = existing.and_then(|j| serde_json::from_value::<CancelPayment>(j.args).ok());
        if earlier.is_some_and(|e| !same_request(&e.request, &request)) {
            return Err(RefundRequestError::IdempotencyConflict);
        }
    }
    Ok(Requested {
        refund_id,
        duplicate: enqueued.duplicate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RefundRequest {
        RefundRequest {
            reason: "booking_canceled".into(),
            requested_by: "member".into(),
            canceled_at: None,
            context: Default::default(),
            amount: None,
            by_admin: false,
            received_at: "2026-11-28T10:00:00Z".into(),
        }
    }

    #[test]
    fn ids_derive_from_payment_and_key() {
        assert_eq!(refund_id("pay_1", "k"), refund_id("pay_1", "k"));
        assert_ne!(refund_id("pay_1", "k"), refund_id("pay_2", "k"));
        assert_ne!(refund_id("pay_1", "k"), refund_id("pay_1", "k2"));
        assert_eq!(refund_id("pay_1", "k").len(), 27);
    }

    #[test]
    fn every_rejection() {
        assert!(validate("k", &request()).is_ok());
        assert!(validate("", &request()).is_err());
        assert!(validate("has space", &request()).is_err());
        let mut r = request();
        r.requested_by = "robot".into();
        assert!(validate("k", &r).is_err());
        let mut r = request();
        r.amount = Some(100);
        assert!(validate("k", &r).is_err(), "only operators give amounts");
        r.by_admin = true;
        assert!(validate("k", &r).is_ok());
        r.amount = Some(0);
        assert!(validate("k", &r).is_err());
        r.amount = Some(-5);
        assert!(validate("k", &r).is_err());
        let mut r = request();
        r.canceled_at = Some("yesterday".into());
        assert!(validate("k", &r).is_err());
    }

    #[test]
    fn the_time_received_does_not_make_a_request_different() {
        let mut later = request();
        later.received_at = "2026-11-28T11:00:00Z".into();
        assert!(same_request(&request(), &later));
        later.reason = "other".into();
        assert!(!same_request(&request(), &later));
    }
}
