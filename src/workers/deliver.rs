//! `deliver_event`: POSTs one event to `WEBHOOK_URL`, signed per Standard Webhooks, until the
//! receiver answers 2xx (retried with DESIGN.md's schedule: about a day), then done; after the
//! last attempt the job is dead and an operator can retry it.

use super::Deps;
use crate::events;
use apalis::prelude::Data;
use kakaopay_jobs::queue::JobError;
use kakaopay_jobs::DeliverEvent;

pub async fn deliver_event(job: DeliverEvent, deps: Data<Deps>) -> Result<(), JobError> {
    super::measured::<DeliverEvent>(&deps, deliver(job, &deps)).await
}

async fn deliver(job: DeliverEvent, deps: &Deps) -> Result<(), JobError> {
    let Some(webhook) = &deps.webhook else {
        // No WEBHOOK_URL: events are recorded but not sent.
        return Ok(());
    };
    let event = events::load(&deps.store, &job.event_id)
        .await
        .map_err(|e| JobError::retry(e.to_string()))?
        .ok_or_else(|| JobError::permanent(format!("no event {}", job.event_id)))?;
    let body = serde_json::to_vec(&event).map_err(|e| JobError::permanent(e.to_string()))?;
    let timestamp = chrono::Utc::now().timestamp();
    let mut request = deps
        .http
        .post(webhook.url.clone())
        .header("content-type", "application/json")
        .header("webhook-id", &event.id)
        .header("webhook-timestamp", timestamp.to_string());
    // Standard Webhooks: several signatures, space-separated, any one of which verifies.
    let signatures: Vec<String> = webhook
        .secrets
        .iter()
        .filter_map(|secret| events::sign(secret, &event.id, timestamp, &body))
        .collect();
    if !signatures.is_empty() {
        request = request.header("webhook-signature", signatures.join(" "));
    }
    match request.body(body).send().await {
        Ok(r) => answered(&event, r.status(), r.headers()),
        Err(e) => Err(JobError::retry(format!(
            "the webhook could not be reached: {}",
            e.without_url()
        ))),
    }
}

/// What the receiver's answer means (Standard Webhooks): 2xx delivered; 410 Gone means the
/// receiver wants no more of this event, so the job ends dead (visible to operators, and
/// retryable by them); a redirect is not followed (the client follows none) and counts as a
/// failure like any other answer, retried no sooner than a `Retry-After` asks.
fn answered(
    event: &events::Event,
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
) -> Result<(), JobError> {
    if status.is_success() {
        tracing::info!(event = %event.id, kind = %event.kind, "event delivered");
        return Ok(());
    }
    let said = format!("the webhook answered HTTP {}", status.as_u16());
    if status == reqwest::StatusCode::GONE {
        tracing::warn!(event = %event.id, "the webhook answered 410 Gone: delivery stopped");
        return Err(JobError::permanent(format!(
            "{said} (Gone): delivery of this event stopped"
        )));
    }
    match retry_after(headers) {
        Some(after) => Err(JobError::RetryAfter(said, after)),
        None => Err(JobError::retry(said)),
    }
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<std::time::Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(std::time::Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let secs = (at.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(std::time::Duration::from_secs(secs as u64))
}

#[cfg(test)]
mod tests {
    use super::retry_after;
    use reqwest::header::{HeaderMap, RETRY_AFTER};

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(
            retry_after(&headers),
            Some(std::time::Duration::from_secs(120))
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(300)).to_rfc2822();
        headers.insert(RETRY_AFTER, later.parse().unwrap());
        let secs = retry_after(&headers).unwrap().as_secs();
        assert!((295..=300).contains(&secs), "{secs}");
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}
