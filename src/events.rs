//! Outbound events: what the booking system hears about each outcome, POSTed to `WEBHOOK_URL`
//! by `deliver_event` jobs and signed the Standard Webhooks way.
//!
//! An event's id derives from its subject and type, so an outcome recorded twice (a job that
//! ran again) is one event, delivered once per id however often delivery is retried.

use crate::domain::{PaymentStatus, RefundStatus};
use crate::secret::Secret;
use crate::store::{Payment, Refund, ReviewAction, Store, StoreError};
use base64::Engine;
use hmac::{Hmac, Mac};
use kakaopay_jobs::queue::Producer;
use kakaopay_jobs::{DeliverEvent, JobKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Events are kept this long for redelivery by operators.
const EVENT_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);
/// That an event's delivery was enqueued is kept longer than the event: an outcome announced
/// again after the event expired (a job revived, a request replayed) is not delivered again.
const ENQUEUED_TTL: std::time::Duration = std::time::Duration::from_secs(60 * 24 * 3600);

/// Whether an event recorded without the note that its delivery was enqueued (by a release
/// before the note, or a crash between the two) had its delivery enqueued then: every release
/// enqueued right after recording, and an emit cut short is tried again within minutes, so
/// one over an hour old was; its job may be forgotten by now, and enqueuing anew would
/// deliver it twice.
fn enqueued_long_ago(earlier: &str) -> bool {
    serde_json::from_str::<Event>(earlier)
        .ok()
        .and_then(|e| chrono::DateTime::parse_from_rfc3339(&e.created_at).ok())
        .is_some_and(|at| chrono::Utc::now().signed_duration_since(at) > chrono::Duration::hours(1))
}

/// What an event tells, named as the webhook's `type` (API.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "payment.approved")]
    PaymentApproved,
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    #[serde(rename = "payment.canceled")]
    PaymentCanceled,
    #[serde(rename = "payment.expired")]
    PaymentExpired,
    #[serde(rename = "refund.succeeded")]
    RefundSucceeded,
    #[serde(rename = "refund.rejected")]
    RefundRejected,
    #[serde(rename = "refund.manual_review")]
    RefundManualReview,
    #[serde(rename = "refund.failed")]
    RefundFailed,
    #[serde(rename = "refund.dismissed")]
    RefundDismissed,
}

impl EventKind {
    /// The event a payment reaching `status` is announced by; `None` for a status the booking
    /// system does not hear about (`ready`, `approving`, and refunds' doing).
    pub fn of_payment(status: PaymentStatus) -> Option<EventKind> {
        match status {
            PaymentStatus::Approved => Some(EventKind::PaymentApproved),
            PaymentStatus::Failed => Some(EventKind::PaymentFailed),
            PaymentStatus::Canceled => Some(EventKind::PaymentCanceled),
            PaymentStatus::Expired => Some(EventKind::PaymentExpired),
            _ => None,
        }
    }

    /// The event a refund reaching `status` is announced by; `None` while it is open.
    pub fn of_refund(status: RefundStatus) -> Option<EventKind> {
        match status {
            RefundStatus::Succeeded => Some(EventKind::RefundSucceeded),
            RefundStatus::Rejected => Some(EventKind::RefundRejected),
            RefundStatus::ManualReview => Some(EventKind::RefundManualReview),
            RefundStatus::Failed => Some(EventKind::RefundFailed),
            RefundStatus::Dismissed => Some(EventKind::RefundDismissed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PaymentApproved => "payment.approved",
            EventKind::PaymentFailed => "payment.failed",
            EventKind::PaymentCanceled => "payment.canceled",
            EventKind::PaymentExpired => "payment.expired",
            EventKind::RefundSucceeded => "refund.succeeded",
            EventKind::RefundRejected => "refund.rejected",
            EventKind::RefundManualReview => "refund.manual_review",
            EventKind::RefundFailed => "refund.failed",
            EventKind::RefundDismissed => "refund.dismissed",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub created_at: String,
    pub data: Value,
}

/// What a payment event carries.
fn payment_data(p: &Payment, status: PaymentStatus, aid: Option<&str>) -> Value {
    serde_json::json!({
        "payment_id": p.payment_id,
        "location_id": p.request.location_id,
        "order_id": p.request.order_id,
        "service": p.request.service,
        "status": status,
        "total_amount": p.request.total_amount,
        "tid": p.tid,
        "aid": aid,
    })
}

/// What a refund event carries.
fn refund_data(r: &Refund, status: RefundStatus, amount: i64, rule: &str) -> Value {
    serde_json::json!({
        "refund_id": r.refund_id,
        "payment_id": r.payment_id,
        "status": status,
        "amount": amount,
        "rule": rule,
        "reason": r.request.reason,
    })
}

pub fn event_id(subject: &str, kind: EventKind) -> String {
    let digest = Sha256::digest(format!("{subject}\n{kind}").as_bytes());
    format!("evt_{}", &hex::encode(digest)[..24])
}

/// Announces a payment's move to `status`, if the booking system hears of that status.
pub async fn announce_payment(
    store: &Store,
    producer: &Producer,
    payment: &Payment,
    status: PaymentStatus,
    aid: Option<&str>,
) -> Result<(), String> {
    let Some(kind) = EventKind::of_payment(status) else {
        return Ok(());
    };
    let data = payment_data(payment, status, aid);
    emit(store, producer, kind, &payment.payment_id, data).await
}

/// Like [`announce_payment`], for callers that cannot do better than log a failure.
pub async fn announce_payment_logged(
    store: &Store,
    producer: &Producer,
    payment: &Payment,
    status: PaymentStatus,
) {
    if let Err(e) = announce_payment(store, producer, payment, status, None).await {
        tracing::error!(payment_id = %payment.payment_id, %status, error = %e, "could not emit an event");
    }
}

/// Announces a refund's outcome, if it has one.
pub async fn announce_refund(
    store: &Store,
    producer: &Producer,
    refund: &Refund,
    status: RefundStatus,
    amount: i64,
    rule: &str,
) -> Result<(), String> {
    let Some(kind) = EventKind::of_refund(status) else {
        return Ok(());
    };
    let data = refund_data(refund, status, amount, rule);
    // An event's id derives from its subject: a refund that an overtaken approval sent back
    // to review is announced again, as the review of that approval.
    let subject = match &refund.review {
        Some(r) if status == RefundStatus::ManualReview && r.action == ReviewAction::Approve => {
            format!("{}:review:{}", refund.refund_id, r.round)
        }
        _ => refund.refund_id.to_string(),
    };
    emit(store, producer, kind, &subject, data).await
}

/// Records the event and enqueues its delivery (both idempotent by the event's id).
async fn emit(
    store: &Store,
    producer: &Producer,
    kind: EventKind,
    subject: &str,
    data: Value,
) -> Result<(), String> {
    let event = Event {
        id: event_id(subject, kind),
        kind,
        created_at: crate::store::now_rfc3339(),
        data,
    };
    let json = serde_json::to_string(&event).map_err(|e| e.to_string())?;
    let job = DeliverEvent {
        event_id: event.id.clone(),
    };
    let job = producer
        .prepare(&job, job.insert_opts())
        .map_err(|e| e.to_string())?;
    let (earlier, noted, enqueued) = store
        .put_event_with(&event.id, &json, EVENT_TTL, &job)
        .await
        .map_err(|e| e.to_string())?;
    if noted || earlier.as_deref().is_some_and(enqueued_long_ago) {
        return Ok(());
    }
    if enqueued.is_none() {
        producer
            .enqueue_prepared(&job)
            .await
            .map_err(|e| e.to_string())?;
    }
    store
        .event_enqueued(&event.id, ENQUEUED_TTL)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(event = %event.id, %kind, subject, "event emitted");
    Ok(())
}

pub async fn load(store: &Store, id: &str) -> Result<Option<Event>, StoreError> {
    let raw = store.event_json(id).await?;
    raw.map(|r| {
        serde_json::from_str(&r).map_err(|e| StoreError::Corrupt {
            key: store.event_record(id),
            reason: e.to_string(),
        })
    })
    .transpose()
}

/// The Standard Webhooks signature: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`
/// under the base64-decoded part of `whsec_…`.
pub fn sign(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.expose().strip_prefix("whsec_")?)
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signs_the_specifications_example() {
        let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let sig = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn every_kind_is_named_as_it_is_serialized() {
        use EventKind::*;
        for kind in [
            PaymentApproved,
            PaymentFailed,
            PaymentCanceled,
            PaymentExpired,
            RefundSucceeded,
            RefundRejected,
            RefundManualReview,
            RefundFailed,
            RefundDismissed,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }

    #[test]
    fn ids_are_stable_per_subject_and_type() {
        assert_eq!(
            event_id("pay_1", EventKind::PaymentApproved),
            event_id("pay_1", EventKind::PaymentApproved)
        );
        assert_ne!(
            event_id("pay_1", EventKind::PaymentApproved),
            event_id("pay_1", EventKind::PaymentFailed)
        );
        // Ids of events already delivered must not change: they hash the type's name.
        assert_eq!(event_id("pay_1", EventKind::PaymentApproved), {
            let digest = Sha256::digest(b"pay_1\npayment.approved");
            format!("evt_{}", &hex::encode(digest)[..24])
        });
    }
}
