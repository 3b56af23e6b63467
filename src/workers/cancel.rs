//! `cancel_payment`: decides a refund by the rules under the payment's refund lock and, if
//! money is due, cancels it at KakaoPay exactly once.
//!
//! The cancel carries `cancel_available_amount` (what is left before it), so KakaoPay itself
//! refuses a cancel that raced another, and `payload = refund_id`, so that after any ambiguous
//! failure or on any later attempt the order inquiry shows whether this very refund happened.

use super::Deps;
use crate::domain::{PaymentStatus, RefundStatus, Tid, Won};
use crate::kakaopay::{CancelRequest, ErrorClass, OrderRequest};
use crate::refunds::{self, IntegrationFacts, Outcome, PaymentFacts, RefundAsk, Requester};
use crate::store::{Begin, Created, Failure, Integration, Refund};
use apalis::prelude::{BoxDynError, Data};
use kakaopay_jobs::queue::{Delivery, JobError};
use kakaopay_jobs::refunds::validate;
use kakaopay_jobs::CancelPayment;
use std::time::{Duration, Instant};

/// How long a refund waits for another refund of the same payment to finish.
const LOCK_WAIT: Duration = Duration::from_secs(60);

fn retry(e: impl std::fmt::Display) -> BoxDynError {
    Box::new(JobError::retry(e.to_string()))
}

fn permanent(e: impl std::fmt::Display) -> BoxDynError {
    Box::new(JobError::permanent(e.to_string()))
}

pub async fn cancel_payment(
    job: CancelPayment,
    deps: Data<Deps>,
    delivery: Data<Delivery>,
) -> Result<(), BoxDynError> {
    let started = Instant::now();
    let result = cancel(job, &deps, &delivery).await;
    let outcome = match &result {
        Ok(()) => "done",
        Err(e) if matches!(e.downcast_ref::<JobError>(), Some(JobError::Permanent(_))) => {
            "permanent"
        }
        Err(_) => "retry",
    };
    crate::metrics::job_ran(deps.store.namespace(), "cancel_payment", outcome, started);
    result
}

async fn cancel(job: CancelPayment, deps: &Deps, delivery: &Delivery) -> Result<(), BoxDynError> {
    let store = &deps.store;
    let refund = match store.refund_state(&job.refund_id).await.map_err(retry)? {
        Some(r) => r,
        // Enqueued straight into Redis: the job is the request.
        None => {
            let Some(payment) = store.payment_state(&job.payment_id).await.map_err(retry)? else {
                return Err(permanent(format!(
                    "no payment {} for refund {}",
                    job.payment_id, job.refund_id
                )));
            };
            match store
                .create_refund(
                    &job.refund_id,
                    &job.payment_id,
                    &payment.request.location_id,
                    &job.idempotency_key,
                    &job.request,
                    "job",
                )
                .await
                .map_err(retry)?
            {
                Created::Created(r) | Created::Exists(r) => r,
            }
        }
    };
    if refund.status.is_final() {
        // Its event may not have gone out yet (emitting is idempotent).
        return announce(
            deps,
            &refund,
            refund.status,
            refund.amount,
            refund.rule.as_deref().unwrap_or(""),
        )
        .await;
    }
    if let Err(e) = validate(&refund.idempotency_key, &refund.request) {
        return finish(
            deps,
            &refund,
            RefundStatus::Rejected,
            "invalid_request",
            None,
            &e.to_string(),
        )
        .await;
    }
    let began_before = refund.status == RefundStatus::Processing;

    // One refund at a time per payment.
    let waiting_since = Instant::now();
    let locked = loop {
        match store
            .begin_refund(&refund.payment_id, &refund.refund_id)
            .await
            .map_err(retry)?
        {
            Begin::Locked(l) => break l,
            Begin::Final(_) => return Ok(()),
            Begin::Missing => {
                return finish(
                    deps,
                    &refund,
                    RefundStatus::Rejected,
                    "unknown_payment",
                    None,
                    "no such payment",
                )
                .await
            }
            Begin::Busy if waiting_since.elapsed() < LOCK_WAIT => {
                tokio::time::sleep(Duration::from_millis(25)).await
            }
            Begin::Busy => return Err(retry("another refund of this payment is still running")),
        }
    };
    let payment = store
        .payment_state(&refund.payment_id)
        .await
        .map_err(retry)?
        .ok_or_else(|| permanent("the payment vanished"))?;
    let Some(approval) = payment.approval.clone() else {
        return finish(
            deps,
            &refund,
            RefundStatus::Rejected,
            "not_refundable",
            None,
            "the payment was never approved",
        )
        .await;
    };
    if !matches!(
        locked.payment_status,
        PaymentStatus::Approved | PaymentStatus::PartiallyRefunded
    ) {
        return finish(
            deps,
            &refund,
            RefundStatus::Rejected,
            "not_refundable",
            None,
            &format!("the payment is {}", locked.payment_status),
        )
        .await;
    }

    let (current, original) = store
        .integration_now_and_at(&payment.request.location_id, payment.integration_version)
        .await
        .map_err(retry)?;
    let won = |v: i64| Won::new(v.max(0)).unwrap_or(Won::ZERO);
    let facts = PaymentFacts {
        service: payment.request.service,
        starts_at: payment.request.starts_at,
        approved: won(approval.amount.total),
        approved_tax_free: won(approval.amount.tax_free),
        refunded: won(locked.refunded),
        refunded_tax_free: won(locked.refunded_tax_free),
        policy: payment.request.refund_policy.as_ref(),
    };
    let left = refunds::remaining(&facts);
    if refund.request.amount.is_some_and(|a| a > left.get()) {
        return finish(
            deps,
            &refund,
            RefundStatus::Rejected,
            "amount_over_remaining",
            None,
            &format!("only {left} is left"),
        )
        .await;
    }
    let canceled_at = refund
        .request
        .canceled_at
        .as_deref()
        .unwrap_or(&refund.request.received_at);
    let canceled_at = chrono::DateTime::parse_from_rfc3339(canceled_at).map_err(permanent)?;
    let requested_by = match refund.request.requested_by.as_str() {
        "admin" => Requester::Admin,
        "system" => Requester::System,
        _ => Requester::Member,
    };
    let decision = refunds::decide(
        &facts,
        current
            .as_ref()
            .map(|i| IntegrationFacts {
                automatic_refunds: i.automatic_refunds,
                refund_policy: &i.refund_policy,
            })
            .as_ref(),
        &RefundAsk {
            requested_by,
            reason: &refund.request.reason,
            canceled_at,
            context: &refund.request.context,
            amount: refund.request.amount.map(won),
            by_admin: refund.request.by_admin,
        },
    );
    match decision.outcome {
        Outcome::Rejected => {
            return finish(
                deps,
                &refund,
                RefundStatus::Rejected,
                &decision.rule,
                None,
                "the rules give nothing",
            )
            .await
        }
        Outcome::ManualReview => {
            return finish(
                deps,
                &refund,
                RefundStatus::ManualReview,
                &decision.rule,
                None,
                "the rules leave it to a person",
            )
            .await
        }
        Outcome::Refund => {}
    }
    store
        .note_decision(
            &refund.refund_id,
            decision.amount.get(),
            decision.tax_free.get(),
            &decision.rule,
        )
        .await
        .map_err(retry)?;

    let integration = credentials_for(current, original)?;
    let credentials = integration.credentials();
    let tid = Tid::parse(payment.tid.clone()).map_err(permanent)?;
    let order_request = OrderRequest {
        cid: integration.cid.clone(),
        tid: tid.clone(),
    };
    let succeeded = Succeeded {
        payment_id: &payment.payment_id,
        refund_id: &refund.refund_id,
        amount: decision.amount.get(),
        tax_free: decision.tax_free.get(),
        approved_total: approval.amount.total,
    };

    // A previous run may have reached KakaoPay: look before canceling.
    let found = |order: &crate::kakaopay::OrderResponse| {
        order
            .cancel_with_payload(&refund.refund_id)
            .map(|a| a.aid.clone())
    };
    if delivery.attempt > 1 || began_before {
        let order = deps
            .kakaopay
            .order(&credentials, &order_request)
            .await
            .map_err(retry)?;
        if let Some(aid) = found(&order) {
            return succeeded.record(deps, &refund, &decision.rule, &aid).await;
        }
    }
    let cancel = CancelRequest {
        cid: integration.cid.clone(),
        tid,
        cancel_amount: decision.amount,
        cancel_tax_free_amount: decision.tax_free,
        cancel_vat_amount: None,
        cancel_available_amount: Some(left),
        payload: crate::domain::Payload::parse(refund.refund_id.clone()).ok(),
    };
    match deps.kakaopay.cancel(&credentials, &cancel).await {
        Ok(answer) => {
            succeeded
                .record(deps, &refund, &decision.rule, &answer.aid)
                .await
        }
        Err(e) => match e.class() {
            ErrorClass::Final => {
                let failure = Failure {
                    reason: "kakaopay_error".into(),
                    kakaopay_code: e.code(),
                    message: e.to_string(),
                };
                finish(
                    deps,
                    &refund,
                    RefundStatus::Failed,
                    &decision.rule,
                    Some(&failure),
                    &e.to_string(),
                )
                .await
            }
            ErrorClass::OutcomeUnknown => {
                if let Ok(order) = deps.kakaopay.order(&credentials, &order_request).await {
                    if let Some(aid) = found(&order) {
                        return succeeded.record(deps, &refund, &decision.rule, &aid).await;
                    }
                }
                give_up_or_retry(deps, &refund, delivery, e.to_string()).await
            }
            ErrorClass::Transient => give_up_or_retry(deps, &refund, delivery, e.to_string()).await,
        },
    }
}

/// A refund KakaoPay made, to be recorded.
struct Succeeded<'a> {
    payment_id: &'a str,
    refund_id: &'a str,
    amount: i64,
    tax_free: i64,
    approved_total: i64,
}

impl Succeeded<'_> {
    async fn record(
        &self,
        deps: &Deps,
        refund: &Refund,
        rule: &str,
        aid: &str,
    ) -> Result<(), BoxDynError> {
        deps.store
            .succeed_refund(
                self.payment_id,
                self.refund_id,
                self.amount,
                self.tax_free,
                aid,
                self.approved_total,
            )
            .await
            .map_err(retry)?;
        tracing::info!(refund_id = %self.refund_id, amount = self.amount, "refund succeeded");
        announce(deps, refund, RefundStatus::Succeeded, self.amount, rule).await
    }
}

/// Emits the event of a refund's outcome.
async fn announce(
    deps: &Deps,
    refund: &Refund,
    status: RefundStatus,
    amount: i64,
    rule: &str,
) -> Result<(), BoxDynError> {
    let kind = match status {
        RefundStatus::Succeeded => "refund.succeeded",
        RefundStatus::Rejected => "refund.rejected",
        RefundStatus::ManualReview => "refund.manual_review",
        RefundStatus::Failed => "refund.failed",
        _ => return Ok(()),
    };
    let data = crate::events::refund_data(refund, status, amount, rule);
    crate::events::emit(&deps.store, &deps.producer, kind, &refund.refund_id, data)
        .await
        .map_err(retry)
}

/// The credentials to cancel with: the location's current ones for the same merchant, else
/// those the payment was made with.
fn credentials_for(
    current: Option<Integration>,
    original: Option<Integration>,
) -> Result<Integration, BoxDynError> {
    match (current, original) {
        (Some(c), Some(o)) if c.cid != o.cid => Ok(o),
        (Some(c), _) => Ok(c),
        (None, Some(o)) => Ok(o),
        (None, None) => Err(permanent("no credentials for this payment")),
    }
}

/// Retries, unless this was the last attempt: then the refund fails (the inquiry, asked
/// first on every later attempt, showed no cancel for it) and the payment is free again.
async fn give_up_or_retry(
    deps: &Deps,
    refund: &Refund,
    delivery: &Delivery,
    error: String,
) -> Result<(), BoxDynError> {
    if delivery.attempt < delivery.max_attempts {
        return Err(retry(error));
    }
    let failure = Failure {
        reason: "gave_up".into(),
        kakaopay_code: None,
        message: format!(
            "KakaoPay could not be reached after {} attempts: {error}",
            delivery.attempt
        ),
    };
    finish(
        deps,
        refund,
        RefundStatus::Failed,
        "gave_up",
        Some(&failure),
        &failure.message,
    )
    .await
}

async fn finish(
    deps: &Deps,
    refund: &Refund,
    status: RefundStatus,
    rule: &str,
    failure: Option<&Failure>,
    cause: &str,
) -> Result<(), BoxDynError> {
    let finished = deps
        .store
        .finish_refund(
            &refund.payment_id,
            &refund.refund_id,
            status,
            rule,
            failure,
            cause,
        )
        .await
        .map_err(retry)?;
    tracing::info!(refund_id = %refund.refund_id, status = %status, rule, "refund decided without money moving");
    if finished {
        announce(deps, refund, status, 0, rule).await?;
    }
    Ok(())
}
