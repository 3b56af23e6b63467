//! `deliver_event`: POSTs one event to `WEBHOOK_URL`, signed per Standard Webhooks, until the
//! receiver answers 2xx (retried with DESIGN.md's schedule: about a day), then done; after the
//! last attempt the job is dead and an operator can retry it.

use super::Deps;
use crate::events;
use apalis::prelude::Data;
use kakaopay_jobs::queue::JobError;
use kakaopay_jobs::DeliverEvent;

pub async fn deliver_event(job: DeliverEvent, deps: Data<Deps>) -> Result<(), JobError> {
    let started = std::time::Instant::now();
    let result = deliver(job, &deps).await;
    crate::metrics::job_ran(
        deps.store.namespace(),
        "deliver_event",
        super::outcome(&result),
        started,
    );
    result
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
    if let Some(secret) = &webhook.secret {
        if let Some(signature) = events::sign(secret, &event.id, timestamp, &body) {
            request = request.header("webhook-signature", signature);
        }
    }
    match request.body(body).send().await {
        Ok(r) if r.status().is_success() => {
            tracing::info!(event = %event.id, kind = %event.kind, "event delivered");
            Ok(())
        }
        Ok(r) => Err(JobError::retry(format!(
            "the webhook answered HTTP {}",
            r.status().as_u16()
        ))),
        Err(e) => Err(JobError::retry(format!(
            "the webhook could not be reached: {}",
            e.without_url()
        ))),
    }
}
