//! `approve_payment`: approves at KakaoPay exactly once, whatever fails on the way.
//!
//! The first run approves directly. Any later run (counted in the payment record, not by the
//! queue's attempts, which an operator's retry resets), an ambiguous failure, or a payment
//! without its `pg_token` asks the order inquiry first: a payment KakaoPay already shows as
//! paid is recorded from the inquiry (its `PAYMENT` action's `aid`), never approved again.
//! No failure is recorded before the inquiry confirms it, and an approval KakaoPay proves is
//! recorded even over a `failed` record.

use super::Deps;
use crate::domain::{Aid, PaymentStatus, Won};
use crate::kakaopay::{
    Amount, ApproveRequest, Credentials, ErrorClass, KakaoPayError, OrderRequest, StatusClass,
};
use crate::store::{
    Approval, ApprovalRun, Failure, Integration, Payment, Transition, TransitionOutcome,
};
use apalis::prelude::Data;
use kakaopay_jobs::queue::{Delivery, JobError};
use kakaopay_jobs::ApprovePayment;

/// KakaoPay's answer to approving a payment that is already approved (an assumption, KAKAOPAY.md §9).
const ALREADY_APPROVED: i64 = -702;

fn retry(e: impl std::fmt::Display) -> JobError {
    JobError::retry(e.to_string())
}

pub async fn approve_payment(
    job: ApprovePayment,
    deps: Data<Deps>,
    delivery: Data<Delivery>,
) -> Result<(), JobError> {
    super::measured::<ApprovePayment>(&deps, approve(job, &deps, &delivery)).await
}

async fn approve(job: ApprovePayment, deps: &Deps, delivery: &Delivery) -> Result<(), JobError> {
    let mut run = deps
        .store
        .payment_for_approval(&job.payment_id, run_window(deps))
        .await
        .map_err(retry)?
        .ok_or_else(|| JobError::permanent(format!("no payment {}", job.payment_id)))?;
    let mut outcome_unknown = false;
    let result = approve_run(deps, &mut run, delivery, &mut outcome_unknown).await;
    // Every call of this run came back with an answer: the next run need not wait for it.
    if result.is_err() && !outcome_unknown {
        if let Err(e) = deps.store.approval_calls_ended(&run).await {
            tracing::warn!(payment_id = %job.payment_id, error = %e, "could not clear the approval's call mark; the next run waits for it");
        }
    }
    result
}

/// How long one run's calls may take: the inquiry, then the approval.
fn run_window(deps: &Deps) -> std::time::Duration {
    deps.kakaopay.longest_call() * 2 + std::time::Duration::from_secs(2)
}

/// One run: `outcome_unknown` is set when its approval call got no answer (KakaoPay may still
/// be working on it).
async fn approve_run(
    deps: &Deps,
    run: &mut ApprovalRun,
    delivery: &Delivery,
    outcome_unknown: &mut bool,
) -> Result<(), JobError> {
    let earlier_in_flight = run.earlier_in_flight;
    let payment = &run.payment.clone();
    if payment.status != PaymentStatus::Approving {
        // Settled by an earlier run or the reconciler; its event may not have gone out yet
        // (emitting is idempotent).
        return announce(
            deps,
            payment,
            payment.status,
            payment
                .approval
                .as_ref()
                .and_then(|a| a.aid.as_ref())
                .map(Aid::as_str),
        )
        .await;
    }
    let integration = integration_of(deps, payment).await?;
    let credentials = integration.credentials();
    let token = payment.pg_token.clone();
    let inquire_first = delivery.attempt > 1 || payment.approval_runs > 0 || token.is_none();
    if inquire_first && settled_by_inquiry(deps, payment, &integration, &credentials).await? {
        return Ok(());
    }
    // An earlier run's approval may still be on its way to KakaoPay: wait it out and look
    // again, rather than send a second one whose refusal could be taken for a failure.
    if !earlier_in_flight.is_zero() {
        tokio::time::sleep(earlier_in_flight).await;
        deps.store
            .approval_calls(run, run_window(deps))
            .await
            .map_err(retry)?;
        if settled_by_inquiry(deps, payment, &integration, &credentials).await? {
            return Ok(());
        }
    }
    let Some(pg_token) = token else {
        return Err(JobError::permanent(
            "no pg_token, and KakaoPay does not show the payment approvable",
        ));
    };
    let request = ApproveRequest {
        cid: integration.cid.clone(),
        tid: payment.tid.clone(),
        partner_order_id: payment.request.order_id.clone(),
        partner_user_id: payment.request.user_id.clone(),
        pg_token,
        payload: crate::domain::Payload::parse(payment.payment_id.as_str()).ok(),
        total_amount: Some(payment.request.total_amount),
    };
    match deps.kakaopay.approve(&credentials, &request).await {
        Ok(answer) => {
            let approval = Approval {
                aid: recorded_aid(answer.aid),
                payment_method_type: answer.payment_method_type,
                amount: approved_amount(Some(answer.amount), payment),
                approved_at: answer.approved_at.map(|t| t.0.to_rfc3339()),
            };
            record_approval(deps, payment, approval, "KakaoPay approved the payment").await
        }
        Err(e) => {
            *outcome_unknown = e.class() == ErrorClass::OutcomeUnknown;
            after_failed_approve(deps, payment, &integration, &credentials, e).await
        }
    }
}

/// The credentials to approve and inquire with. Without any, the job is dead with a message
/// that says what to do, and the reconciler settles the payment once the location is
/// connected again.
pub async fn integration_of(deps: &Deps, payment: &Payment) -> Result<Integration, JobError> {
    let location = &payment.request.location_id;
    deps.store
        .integrations_of(location, payment.integration_version)
        .await
        .map_err(retry)?
        .for_approval()
        .cloned()
        .ok_or_else(|| {
            JobError::permanent(format!(
                "no KakaoPay credentials for location {location}: reconnect it, then retry this job"
            ))
        })
}

async fn after_failed_approve(
    deps: &Deps,
    payment: &Payment,
    integration: &Integration,
    credentials: &Credentials,
    e: KakaoPayError,
) -> Result<(), JobError> {
    match e.class() {
        ErrorClass::Transient => Err(retry(&e)),
        // It may have gone through: find out before anything else.
        ErrorClass::OutcomeUnknown => {
            if settled_by_inquiry(deps, payment, integration, credentials).await? {
                Ok(())
            } else {
                Err(retry(&e))
            }
        }
        ErrorClass::Final if e.code() == Some(ALREADY_APPROVED) => {
            if settled_by_inquiry(deps, payment, integration, credentials).await? {
                Ok(())
            } else {
                Err(JobError::permanent(format!(
                    "{e}, yet the inquiry does not show it approved"
                )))
            }
        }
        // A refusal of a run that is not the first may answer a duplicate: only failures
        // the inquiry confirms are recorded.
        ErrorClass::Final => {
            if settled_by_inquiry(deps, payment, integration, credentials).await? {
                return Ok(());
            }
            let failure = Failure {
                reason: "kakaopay_error".into(),
                kakaopay_code: e.code(),
                message: e.to_string(),
            };
            record_failure(deps, payment, failure).await
        }
    }
}

/// Settles the payment from the order inquiry if KakaoPay says how it ended. Answers false if
/// it is still approvable (so the caller approves).
pub async fn settled_by_inquiry(
    deps: &Deps,
    payment: &Payment,
    integration: &Integration,
    credentials: &Credentials,
) -> Result<bool, JobError> {
    let tid = payment.tid.clone();
    let order = deps
        .kakaopay
        .order(
            credentials,
            &OrderRequest {
                cid: integration.cid.clone(),
                tid,
            },
        )
        .await
        .map_err(|e| match e.class() {
            ErrorClass::Final => JobError::permanent(format!("order inquiry refused: {e}")),
            _ => retry(&e),
        })?;
    match order.status.class() {
        StatusClass::Paid => {
            let action = order.payment_action();
            let approval = Approval {
                aid: action.and_then(|a| recorded_aid(a.aid.clone())),
                payment_method_type: order.payment_method_type.clone(),
                amount: approved_amount(order.amount.clone(), payment),
                approved_at: order.approved_at.map(|t| t.0.to_rfc3339()),
            };
            record_approval(
                deps,
                payment,
                approval,
                &format!("the order inquiry shows {}", order.status),
            )
            .await?;
            Ok(true)
        }
        StatusClass::Failed => {
            let failure = Failure {
                reason: "kakaopay_status".into(),
                kakaopay_code: None,
                message: format!("KakaoPay reports {}", order.status),
            };
            record_failure(deps, payment, failure).await?;
            Ok(true)
        }
        StatusClass::Pending => Ok(false),
        StatusClass::Unexpected => Err(JobError::permanent(format!(
            "KakaoPay reports {} for a single payment; left for an operator",
            order.status
        ))),
    }
}

/// What was approved: KakaoPay's amounts where it gives them, else what the payment asked for
/// (an answer that leaves `amount` out must not record an approval of 0 won, which could then
/// never be refunded).
fn approved_amount(reported: Option<Amount>, payment: &Payment) -> Amount {
    match reported {
        Some(a) if a.total > 0 => a,
        _ => {
            let r = &payment.request;
            let vat = r
                .vat_amount
                .unwrap_or_else(|| Won::default_vat(r.total_amount, r.tax_free_amount));
            tracing::warn!(payment_id = %payment.payment_id, "KakaoPay gave no approved amount; recording the payment's own");
            Amount {
                total: r.total_amount.get(),
                tax_free: r.tax_free_amount.get(),
                vat: vat.get(),
                ..Amount::default()
            }
        }
    }
}

/// Emits the event of a settled payment (approved or failed).
async fn announce(
    deps: &Deps,
    payment: &Payment,
    status: PaymentStatus,
    aid: Option<&str>,
) -> Result<(), JobError> {
    // Only what this job settles: a payment canceled or expired was announced by what did it.
    if !matches!(status, PaymentStatus::Approved | PaymentStatus::Failed) {
        return Ok(());
    }
    crate::events::announce_payment(&deps.store, &deps.producer, payment, status, aid)
        .await
        .map_err(JobError::retry)
}

/// The aid KakaoPay named, as the record keeps it: one in an unexpected shape is logged and
/// left out, never a reason to lose the approval itself.
fn recorded_aid(raw: String) -> Option<Aid> {
    match Aid::parse(raw.as_str()) {
        Ok(aid) => Some(aid),
        Err(e) if !raw.is_empty() => {
            tracing::warn!(aid = %raw, error = %e, "KakaoPay named an aid of another shape; recorded without it");
            None
        }
        Err(_) => None,
    }
}

async fn record_approval(
    deps: &Deps,
    payment: &Payment,
    approval: Approval,
    cause: &str,
) -> Result<(), JobError> {
    let aid = approval.aid.clone();
    // From `failed` too: KakaoPay's proof outranks a failure recorded before it arrived.
    let mut t = Transition::new(
        &[PaymentStatus::Approving, PaymentStatus::Failed],
        PaymentStatus::Approved,
        cause,
    );
    t.approval = Some(approval);
    match deps
        .store
        .transition(&payment.payment_id, t)
        .await
        .map_err(retry)?
    {
        TransitionOutcome::Applied => {
            tracing::info!(payment_id = %payment.payment_id, "payment approved");
            announce(deps, payment, PaymentStatus::Approved, aid.as_deref()).await
        }
        // Another run got there first.
        TransitionOutcome::Refused(_) | TransitionOutcome::Missing => Ok(()),
    }
}

async fn record_failure(deps: &Deps, payment: &Payment, failure: Failure) -> Result<(), JobError> {
    tracing::warn!(payment_id = %payment.payment_id, code = failure.kakaopay_code, message = %failure.message, "payment failed");
    let mut t = Transition::new(
        &[PaymentStatus::Approving],
        PaymentStatus::Failed,
        failure.message.clone(),
    );
    t.failure = Some(failure);
    if deps
        .store
        .transition(&payment.payment_id, t)
        .await
        .map_err(retry)?
        == TransitionOutcome::Applied
    {
        announce(deps, payment, PaymentStatus::Failed, None).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment() -> Payment {
        let request: crate::store::NewPayment = serde_json::from_value(serde_json::json!({
            "location_id": "loc_1", "order_id": "B-1", "user_id": "member_42",
            "service": "bookings", "item_name": "Room", "quantity": 1,
            "total_amount": 22000, "tax_free_amount": 0, "vat_amount": null,
            "starts_at": null, "return_url": null, "metadata": null, "refund_policy": null,
        }))
        .unwrap();
        Payment {
            payment_id: "pay_100000000000000000000000".try_into().unwrap(),
            request,
            tid: crate::domain::Tid::parse("T1234567890123456789").unwrap(),
            redirect: crate::store::Redirect {
                pc: None,
                mobile: None,
                app: None,
                android_app_scheme: None,
                ios_app_scheme: None,
            },
            created_at: String::new(),
            expires_at: String::new(),
            integration_version: 1,
            fingerprint: String::new(),
            status: PaymentStatus::Approving,
            pg_token: None,
            approval: None,
            failure: None,
            updated_at: String::new(),
            history: Vec::new(),
            refunded: 0,
            refunded_tax_free: 0,
            refunded_vat: 0,
            approval_runs: 0,
            refund_lock: None,
        }
    }

    #[test]
    fn an_answer_without_its_amount_records_what_the_payment_asked_for() {
        let p = payment();
        let recorded = approved_amount(None, &p);
        assert_eq!((recorded.total, recorded.vat), (22000, 2000));
        assert_eq!(approved_amount(Some(Amount::default()), &p).total, 22000);
        let reported = Amount {
            total: 21000,
            ..Amount::default()
        };
        assert_eq!(approved_amount(Some(reported), &p).total, 21000);
    }
}
