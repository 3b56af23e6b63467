//! Outbound events: what the booking system hears about each outcome, POSTed to `WEBHOOK_URL`
//! by `deliver_event` jobs and signed the Standard Webhooks way.
//!
//! An event's id derives from its subject and type, so an outcome recorded twice (a job that
//! ran again) is one event, delivered once per id however often delivery is retried.

use crate::secret::Secret;
use crate::store::{Store, StoreError};
use base64::Engine;
use hmac::{Hmac, Mac};
use kakaopay_jobs::queue::{EnqueueOptions, Producer};
use kakaopay_jobs::DeliverEvent;
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: String,
    pub data: Value,
}

/// What a payment event carries.
pub fn payment_data(
    p: &crate::store::Payment,
    status: crate::domain::PaymentStatus,
    aid: Option<&str>,
) -> Value {
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
pub fn refund_data(
    r: &crate::store::Refund,
    status: crate::domain::RefundStatus,
    amount: i64,
    rule: &str,
) -> Value {
    serde_json::json!({
        "refund_id": r.refund_id,
        "payment_id": r.payment_id,
        "status": status,
        "amount": amount,
        "rule": rule,
        "reason": r.request.reason,
    })
}

pub fn event_id(subject: &str, kind: &str) -> String {
    let digest = Sha256::digest(format!("{subject}\n{kind}").as_bytes());
    format!("evt_{}", &hex::encode(digest)[..24])
}

/// Records the event and enqueues its delivery (both idempotent by the event's id).
pub async fn emit(
    store: &Store,
    producer: &Producer,
    kind: &str,
    subject: &str,
    data: Value,
) -> Result<(), String> {
    let event = Event {
        id: event_id(subject, kind),
        kind: kind.to_string(),
        created_at: crate::store::now_rfc3339(),
        data,
    };
    let json = serde_json::to_string(&event).map_err(|e| e.to_string())?;
    let (earlier, enqueued) = store
        .put_event(&event.id, &json, EVENT_TTL)
        .await
        .map_err(|e| e.to_string())?;
    if enqueued || earlier.as_deref().is_some_and(enqueued_long_ago) {
        return Ok(());
    }
    producer
        .enqueue(
            &DeliverEvent {
                event_id: event.id.clone(),
            },
            EnqueueOptions::with_id(event.id.clone()),
        )
        .await
        .map_err(|e| e.to_string())?;
    store
        .event_enqueued(&event.id, ENQUEUED_TTL)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(event = %event.id, kind, subject, "event emitted");
    Ok(())
}

/// Like [`emit`], for callers that cannot do better than log a failure.
pub async fn emit_logged(
    store: &Store,
    producer: &Producer,
    kind: &str,
    subject: &str,
    data: Value,
) {
    if let Err(e) = emit(store, producer, kind, subject, data).await {
        tracing::error!(kind, subject, error = %e, "could not emit an event");
    }
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
    fn ids_are_stable_per_subject_and_type() {
        assert_eq!(
            event_id("pay_1", "payment.approved"),
            event_id("pay_1", "payment.approved")
        );
        assert_ne!(
            event_id("pay_1", "payment.approved"),
            event_id("pay_1", "payment.failed")
        );
    }
}
