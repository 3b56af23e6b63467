//! Settles what the redirects and jobs never did, from KakaoPay's order inquiry:
//! `ready` payments past KakaoPay's window, `approving` payments whose job is dead or gone, and
//! refunds whose job is dead or gone (settled by inquiry, or their job enqueued again).
//! Every change it makes is a guarded transition, so several reconcilers (one per `work`
//! process) can run at once without harm.
//!
//! Each walk pages through its whole index, a bounded number of pages a round, and carries on
//! the next round where it stopped: entries it cannot settle yet never hide newer ones.

use super::approve::{integration_of, settled_by_inquiry};
use super::{cancel, Deps};
use crate::domain::PaymentStatus;
use crate::kakaopay::{OrderRequest, OrderResponse, OrderStatus, StatusClass};
use crate::store::{Due, Failure, Payment, Refund, Shard, StoreError, Transition};
use kakaopay_jobs::{ApprovePayment, CancelPayment, JobKind};
use std::collections::HashMap;
use std::time::Duration;

/// Entries read per page.
const PAGE: usize = 100;
/// Pages per walk and round, so that a round stays short.
const PAGES_PER_ROUND: usize = 10;

#[derive(Debug, Clone, Copy)]
pub struct ReconcilerSettings {
    pub every: Duration,
    /// How long a payment may stay `approving`, or a refund open, before its job is looked at.
    pub approving_grace: Duration,
}

pub async fn run(
    deps: Deps,
    settings: ReconcilerSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut reconciler = Reconciler::new(deps, settings);
    loop {
        if let Err(e) = reconciler.round().await {
            tracing::warn!(error = %e, "reconciliation round failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The three walks and where each stopped: an offset into its index, which entries settled
/// since have left (so it counts only those still there).
pub struct Reconciler {
    deps: Deps,
    settings: ReconcilerSettings,
    /// Per walk and shard.
    offsets: HashMap<(Due, Shard), usize>,
}

const WALKS: [Due; 3] = [Due::Ready, Due::Approving, Due::OpenRefunds];

impl Reconciler {
    pub fn new(deps: Deps, settings: ReconcilerSettings) -> Reconciler {
        Reconciler {
            deps,
            settings,
            offsets: HashMap::new(),
        }
    }

    pub async fn round(&mut self) -> Result<(), StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        let ready_before = now - self.deps.ready_window.as_millis() as i64;
        let grace_before = now - self.settings.approving_grace.as_millis() as i64;
        for index in WALKS {
            let before = match index {
                Due::Ready => ready_before,
                _ => grace_before,
            };
            for shard in Shard::all() {
                let offset = self.offsets.get(&(index, shard)).copied().unwrap_or(0);
                // One shard that cannot be read (its master failing over) must not keep the
                // round from the others.
                match self.walk(index, shard, before, offset).await {
                    Ok(next) => {
                        self.offsets.insert((index, shard), next);
                    }
                    Err(e) => {
                        tracing::warn!(?index, ?shard, error = %e, "could not walk a shard; next round")
                    }
                }
            }
        }
        Ok(())
    }

    /// Up to [`PAGES_PER_ROUND`] pages of one shard's index from `offset`; answers where the
    /// next round goes on (back to the start once the end is reached).
    async fn walk(
        &self,
        index: Due,
        shard: Shard,
        before_ms: i64,
        mut offset: usize,
    ) -> Result<usize, StoreError> {
        let store = &self.deps.store;
        for _ in 0..PAGES_PER_ROUND {
            let page = store.due(index, shard, before_ms, offset, PAGE).await?;
            for id in &page {
                // One record that cannot be read must not stop the rest of the walk.
                if let Err(e) = self.settle(index, id).await {
                    tracing::warn!(id, error = %e, "could not reconcile; next round");
                }
            }
            if page.len() < PAGE {
                return Ok(0);
            }
            offset += store.still_due(index, shard, &page).await?;
        }
        Ok(offset)
    }

    async fn settle(&self, index: Due, id: &str) -> Result<(), StoreError> {
        let (deps, store) = (&self.deps, &self.deps.store);
        // An entry whose record is gone (or final) needs nothing more: it is dropped.
        match index {
            Due::Ready => match store.payment_state(id).await? {
                Some(p) => expire(deps, &p).await,
                None => store.forget_due(index, id).await?,
            },
            Due::Approving => match store.payment_state(id).await? {
                Some(p) => settle_approving(deps, &p).await,
                None => store.forget_due(index, id).await?,
            },
            Due::OpenRefunds => match store.refund_state(id).await? {
                Some(r) if !r.status.is_final() => {
                    settle_refund(deps, &r, self.settings.approving_grace).await
                }
                _ => store.forget_due(index, id).await?,
            },
        }
        Ok(())
    }
}

/// Where a payment's or refund's job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// Waiting, running or retrying: still the queue's to finish.
    InHand,
    Dead,
    /// Done, or no record of it (never enqueued, or dropped after it finished).
    Gone,
}

async fn job_state(deps: &Deps, queue: &str, id: &str) -> Option<Job> {
    match deps.store.queues().job(queue, id).await {
        Ok(Some(job)) if job.status == "dead" => Some(Job::Dead),
        Ok(Some(job)) if job.status != "done" => Some(Job::InHand),
        Ok(_) => Some(Job::Gone),
        Err(e) => {
            tracing::warn!(job = id, error = %e, "could not read a job; next round");
            None
        }
    }
}

async fn expire(deps: &Deps, p: &Payment) {
    if p.status != PaymentStatus::Ready {
        return;
    }
    let store = &deps.store;
    let integration = match integration_of(deps, p).await {
        Ok(i) => i,
        Err(e) => {
            // Without credentials there is no asking KakaoPay: the member cannot have paid
            // through us after the window either, but say so where an operator looks.
            crate::metrics::unsettled(store.namespace(), "payment", "no_credentials");
            tracing::warn!(payment_id = %p.payment_id, error = %e, "a ready payment past its window cannot be checked");
            return;
        }
    };
    let request = OrderRequest {
        cid: integration.cid.clone(),
        tid: p.tid.clone(),
    };
    let order = match deps
        .kakaopay
        .order(&integration.credentials(), &request)
        .await
    {
        Ok(order) => order,
        Err(e) => {
            tracing::warn!(payment_id = %p.payment_id, error = %e, "order inquiry failed; next round");
            return;
        }
    };
    let Some(transition) = past_window(&order) else {
        tracing::warn!(payment_id = %p.payment_id, status = %order.status, "unexpected KakaoPay status; left for an operator");
        return;
    };
    let to = transition.to;
    match store.transition(&p.payment_id, transition).await {
        Ok(crate::store::TransitionOutcome::Applied) => {
            tracing::info!(payment_id = %p.payment_id, status = %to, "reconciled a ready payment");
            crate::events::announce_payment_logged(&deps.store, &deps.producer, p, to).await;
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

/// What a `ready` payment past its window becomes, by what the order inquiry shows; `None`
/// for a status we do not know, which is left for an operator.
fn past_window(order: &OrderResponse) -> Option<Transition> {
    let from = &[PaymentStatus::Ready];
    let transition = match order.status.class() {
        StatusClass::Pending => Transition::new(
            from,
            PaymentStatus::Expired,
            format!(
                "KakaoPay's window passed (KakaoPay status {})",
                order.status
            ),
        ),
        StatusClass::Failed if order.status == OrderStatus::QuitPayment => Transition::new(
            from,
            PaymentStatus::Canceled,
            "KakaoPay reports QUIT_PAYMENT",
        ),
        StatusClass::Failed => {
            let cause = format!("KakaoPay reports {}", order.status);
            let mut t = Transition::new(from, PaymentStatus::Failed, cause.clone());
            t.failure = Some(Failure {
                reason: "kakaopay_status".into(),
                kakaopay_code: None,
                message: cause,
            });
            t
        }
        // Paid without our callback ever arriving: record it through the approval job, which
        // reads it from the inquiry (it has no pg_token to approve with).
        StatusClass::Paid => {
            Transition::new(from, PaymentStatus::Approving, "KakaoPay shows it paid")
        }
        StatusClass::Unexpected => return None,
    };
    Some(transition)
}

async fn settle_approving(deps: &Deps, p: &Payment) {
    if p.status != PaymentStatus::Approving {
        return;
    }
    let job_id = ApprovePayment {
        payment_id: p.payment_id.to_string(),
    }
    .job_id()
    .expect("approvals have ids");
    let job = match job_state(deps, ApprovePayment::NAME, &job_id).await {
        None | Some(Job::InHand) => return,
        Some(job) => job,
    };
    let integration = match integration_of(deps, p).await {
        Ok(i) => i,
        Err(e) => {
            crate::metrics::unsettled(deps.store.namespace(), "payment", "no_credentials");
            tracing::warn!(payment_id = %p.payment_id, error = %e, "an approving payment cannot be settled");
            return;
        }
    };
    match settled_by_inquiry(deps, p, &integration, &integration.credentials()).await {
        Ok(true) => tracing::info!(payment_id = %p.payment_id, "reconciled an approving payment"),
        // Still approvable: run the approval again.
        Ok(false) if job == Job::Dead => retry_job(deps, ApprovePayment::NAME, &job_id).await,
        Ok(false) => enqueue_approval(deps, &p.payment_id).await,
        Err(e) => {
            crate::metrics::unsettled(deps.store.namespace(), "payment", "inquiry");
            tracing::warn!(payment_id = %p.payment_id, error = %e, "could not settle an approving payment")
        }
    }
}

/// An open refund whose job has ended: a `queued` one gets its job (again), a `processing`
/// one is settled by inquiry (given up only `margin` after its last call could have ended).
async fn settle_refund(deps: &Deps, r: &Refund, margin: Duration) {
    // An approved review runs under a job id of its own (`Refund::job_id`).
    let job_id = r.job_id();
    let job = match job_state(deps, CancelPayment::NAME, &job_id).await {
        None | Some(Job::InHand) => return,
        Some(job) => job,
    };
    if r.status == crate::domain::RefundStatus::Queued {
        // Never started: its job was not enqueued (a request whose enqueue failed after the
        // refund was stored), or died waiting for another refund of the payment: not revived
        // while that one still holds the lock, or it would only wait and die again.
        let lock = match deps.store.payment_state(&r.payment_id).await {
            Ok(p) => p.and_then(|p| p.refund_lock),
            Err(_) => return,
        };
        if r.blocked_by(lock.as_deref()) {
            return;
        }
        return match job {
            Job::Dead => retry_job(deps, CancelPayment::NAME, &job_id).await,
            _ => enqueue_refund(deps, r).await,
        };
    }
    match cancel::settle(deps, r, margin).await {
        Ok(()) => tracing::info!(refund_id = %r.refund_id, "reconciled a refund whose job ended"),
        Err(e) => {
            crate::metrics::unsettled(deps.store.namespace(), "refund", "unclear");
            tracing::warn!(refund_id = %r.refund_id, error = %e, "could not settle a refund; next round")
        }
    }
}

async fn retry_job(deps: &Deps, queue: &str, job_id: &str) {
    match deps.store.queues().retry(queue, job_id).await {
        Ok(_) => tracing::info!(job = job_id, "job retried by the reconciler"),
        Err(e) => tracing::warn!(job = job_id, error = %e, "could not retry a job"),
    }
}

async fn enqueue_approval(deps: &Deps, payment_id: &str) {
    let job = ApprovePayment {
        payment_id: payment_id.to_string(),
    };
    if let Err(e) = deps.producer.insert(&job).await {
        tracing::warn!(payment_id, error = %e, "could not enqueue the approval; next round");
    }
}

async fn enqueue_refund(deps: &Deps, r: &Refund) {
    match deps.producer.enqueue(&r.job(), r.insert_opts()).await {
        Ok(_) => tracing::info!(refund_id = %r.refund_id, "refund job enqueued by the reconciler"),
        Err(e) => {
            tracing::warn!(refund_id = %r.refund_id, error = %e, "could not enqueue a refund job; next round")
        }
    }
}
