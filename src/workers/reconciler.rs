//! Settles what the redirects and jobs never did, from KakaoPay's order inquiry:
//! `ready` payments past KakaoPay's window, and `approving` payments whose job is dead or gone.
//! Every change it makes is a guarded transition, so several reconcilers (one per `work`
//! process) can run at once without harm.

use super::approve::settled_by_inquiry;
use super::Deps;
use crate::domain::PaymentStatus;
use crate::http::callbacks::approve_job_id;
use crate::kakaopay::{OrderRequest, OrderStatus, StatusClass};
use crate::store::{Failure, Payment, Transition};
use kakaopay_jobs::queue::{inspect, EnqueueOptions};
use kakaopay_jobs::{ApprovePayment, JobKind};
use std::time::Duration;

/// Payments looked at per round and kind, so a round stays short.
const BATCH: usize = 100;

#[derive(Debug, Clone, Copy)]
pub struct ReconcilerSettings {
    pub every: Duration,
    /// How long a payment may stay `approving` before its job is looked at.
    pub approving_grace: Duration,
}

pub async fn run(
    deps: Deps,
    settings: ReconcilerSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = round(&deps, settings).await {
            tracing::warn!(error = %e, "reconciliation round failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

pub async fn round(
    deps: &Deps,
    settings: ReconcilerSettings,
) -> Result<(), crate::store::StoreError> {
    let now = chrono::Utc::now().timestamp_millis();
    for id in deps
        .store
        .payments_in(
            PaymentStatus::Ready,
            now - deps.ready_window.as_millis() as i64,
            BATCH,
        )
        .await?
    {
        if let Some(p) = deps.store.payment(&id).await? {
            expire(deps, &p).await;
        }
    }
    for id in deps
        .store
        .payments_in(
            PaymentStatus::Approving,
            now - settings.approving_grace.as_millis() as i64,
            BATCH,
        )
        .await?
    {
        if let Some(p) = deps.store.payment(&id).await? {
            settle_approving(deps, &p).await;
        }
    }
    Ok(())
}

async fn expire(deps: &Deps, p: &Payment) {
    if p.status != PaymentStatus::Ready {
        return;
    }
    let store = &deps.store;
    let Ok(Some(integration)) = store
        .integration_version(&p.request.location_id, p.integration_version)
        .await
    else {
        let _ = store
            .transition(
                &p.payment_id,
                Transition::new(
                    &[PaymentStatus::Ready],
                    PaymentStatus::Expired,
                    "its integration is gone",
                ),
            )
            .await;
        return;
    };
    let Ok(tid) = crate::domain::Tid::parse(p.tid.clone()) else {
        return;
    };
    let order = match deps
        .kakaopay
        .order(
            &integration.credentials(),
            &OrderRequest {
                cid: integration.cid.clone(),
                tid,
            },
        )
        .await
    {
        Ok(order) => order,
        Err(e) => {
            tracing::warn!(payment_id = %p.payment_id, error = %e, "order inquiry failed; next round");
            return;
        }
    };
    let transition = match order.status.class() {
        StatusClass::Pending => Transition::new(
            &[PaymentStatus::Ready],
            PaymentStatus::Expired,
            format!(
                "KakaoPay's window passed (KakaoPay status {})",
                order.status
            ),
        ),
        StatusClass::Failed if order.status == OrderStatus::QuitPayment => Transition::new(
            &[PaymentStatus::Ready],
            PaymentStatus::Canceled,
            "KakaoPay reports QUIT_PAYMENT",
        ),
        StatusClass::Failed => {
            let mut t = Transition::new(
                &[PaymentStatus::Ready],
                PaymentStatus::Failed,
                format!("KakaoPay reports {}", order.status),
            );
            t.failure = Some(Failure {
                reason: "kakaopay_status".into(),
                kakaopay_code: None,
                message: format!("KakaoPay reports {}", order.status),
            });
            t
        }
        // Paid without our callback ever arriving: record it through the approval job, which
        // reads it from the inquiry (it has no pg_token to approve with).
        StatusClass::Paid => Transition::new(
            &[PaymentStatus::Ready],
            PaymentStatus::Approving,
            "KakaoPay shows it paid",
        ),
        StatusClass::Unexpected => {
            tracing::warn!(payment_id = %p.payment_id, status = %order.status, "unexpected KakaoPay status; left for an operator");
            return;
        }
    };
    let to = transition.to;
    match store.transition(&p.payment_id, transition).await {
        Ok(crate::store::TransitionOutcome::Applied) => {
            tracing::info!(payment_id = %p.payment_id, status = %to, "reconciled a ready payment");
            let kind = match to {
                PaymentStatus::Expired => Some("payment.expired"),
                PaymentStatus::Canceled => Some("payment.canceled"),
                PaymentStatus::Failed => Some("payment.failed"),
                _ => None,
            };
            if let Some(kind) = kind {
                crate::events::emit_logged(
                    &deps.store,
                    &deps.producer,
                    kind,
                    &p.payment_id,
                    crate::events::payment_data(p, to, None),
                )
                .await;
            }
            if to == PaymentStatus::Approving {
                enqueue_approval(deps, &p.payment_id).await;
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(payment_id = %p.payment_id, error = %e, "could not record reconciliation")
        }
    }
}

async fn settle_approving(deps: &Deps, p: &Payment) {
    if p.status != PaymentStatus::Approving {
        return;
    }
    let conn = deps.store.connection();
    let job_id = approve_job_id(&p.payment_id);
    let job = match inspect::job(&conn, deps.store.namespace(), ApprovePayment::NAME, &job_id).await
    {
        Ok(job) => job,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the approval job; next round");
            return;
        }
    };
    if job.as_ref().is_some_and(|j| j.status != "dead") {
        // Still in the queue's hands (waiting, running or retrying).
        return;
    }
    let Ok(Some(integration)) = deps
        .store
        .integration_version(&p.request.location_id, p.integration_version)
        .await
    else {
        return;
    };
    match settled_by_inquiry(deps, p, &integration, &integration.credentials()).await {
        Ok(true) => tracing::info!(payment_id = %p.payment_id, "reconciled an approving payment"),
        // Still approvable: run the approval again.
        Ok(false) if job.is_some() => {
            match inspect::retry(&conn, deps.store.namespace(), ApprovePayment::NAME, &job_id).await
            {
                Ok(_) => tracing::info!(payment_id = %p.payment_id, "approval job retried"),
                Err(e) => tracing::warn!(error = %e, "could not retry the approval job"),
            }
        }
        Ok(false) => enqueue_approval(deps, &p.payment_id).await,
        Err(e) => {
            tracing::warn!(payment_id = %p.payment_id, error = %e, "could not settle an approving payment")
        }
    }
}

async fn enqueue_approval(deps: &Deps, payment_id: &str) {
    let job = ApprovePayment {
        payment_id: payment_id.to_string(),
    };
    if let Err(e) = deps
        .producer
        .enqueue(&job, EnqueueOptions::with_id(approve_job_id(payment_id)))
        .await
    {
        tracing::warn!(payment_id, error = %e, "could not enqueue the approval; next round");
    }
}
