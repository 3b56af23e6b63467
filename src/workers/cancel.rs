//! `cancel_payment`: decides a refund by the rules under the payment's refund lock and, if
//! money is due, cancels it at KakaoPay exactly once.
//!
//! The cancel carries `cancel_available_amount` (what is left before it), so KakaoPay itself
//! refuses a cancel that raced another, and `payload = refund_id`. The decision is recorded
//! before the first cancel is sent; from then on every run asks the order inquiry first and
//! reuses that decision, whatever the settings say by then. A refund is recorded `failed` only
//! when KakaoPay proves nothing was paid: an outcome still unknown on the last attempt stays
//! `processing`, with its lock, for the reconciler to settle by inquiry.

use super::Deps;
use crate::domain::{IdempotencyKey, Payload, PaymentId, RefundId, RefundStatus, Tid, Won};
use crate::kakaopay::{
    CancelFound, CancelRequest, ErrorClass, FoundCancel, KakaoPayError, OrderRequest,
};
use crate::refunds::{
    self, IntegrationFacts, NotRefundable, Outcome, PaymentFacts, RefundAsk, Requester,
};
use crate::store::{
    Begin, Created, Decided, Failure, Integration, Integrations, Locked, Paid, Payment, Recorded,
    Refund, ReviewAction, Success,
};
use apalis::prelude::Data;
use kakaopay_jobs::queue::{Delivery, JobError};
use kakaopay_jobs::refunds::validate;
use kakaopay_jobs::CancelPayment;
use std::time::{Duration, Instant};

/// How long a refund waits for another refund of the same payment to finish.
const LOCK_WAIT: Duration = Duration::from_secs(60);

fn retry(e: impl std::fmt::Display) -> JobError {
    JobError::retry(e.to_string())
}

pub async fn cancel_payment(
    job: CancelPayment,
    deps: Data<Deps>,
    delivery: Data<Delivery>,
) -> Result<(), JobError> {
    super::measured::<CancelPayment>(&deps, cancel(job, &deps, &delivery)).await
}

async fn cancel(job: CancelPayment, deps: &Deps, delivery: &Delivery) -> Result<(), JobError> {
    let refund = refund_of(&job, deps).await?;
    if refund.status.is_final() {
        // Its event may not have gone out yet (emitting is idempotent).
        let rule = refund.rule.as_deref().unwrap_or("");
        return announce(deps, &refund, refund.status, refund.amount, rule).await;
    }
    if refund.review.is_some() && delivery.job_id != refund.job_id() {
        // An approval runs under a job of its own; any other job of the refund (the one that
        // left it to a person, still retrying or revived by an operator) only looks on, so
        // that one job at a time acts for it and the reconciler watches the right one.
        tracing::info!(refund_id = %refund.refund_id, job = %delivery.job_id, runs_under = %refund.job_id(), "an earlier job of a reviewed refund leaves it to the review's job");
        return Ok(());
    }
    if let Err(e) = validate(&refund.idempotency_key, &refund.request) {
        let closed = Closed::rejected("invalid_request", e.to_string());
        return finish(deps, &refund, &refund.run, closed).await;
    }
    let Some(locked) = lock(deps, &refund, &delivery.job_id).await? else {
        return Ok(());
    };
    let (payment, integrations) = payment_of(deps, &refund).await?;
    let recorded = locked
        .decided
        .clone()
        .or_else(|| decided_by_an_earlier_release(&refund, &payment));
    let sent_before = recorded.is_some();
    let decision = match recorded {
        // A cancel may have been sent: never decide again.
        Some(decided) => decided,
        None => match decide(&refund, &payment, &locked, integrations.current.as_ref()) {
            Ok(decided) => decided,
            Err(closed) => return finish(deps, &refund, &locked.run, closed).await,
        },
    };
    if integrations.for_refunds().is_none() && !sent_before {
        // Nothing was sent and nothing can be: back to a person (an approval, or an admin
        // amount, of a location whose credentials are all gone), rather than a dead job.
        let cause = format!(
            "no KakaoPay credentials for location {}: reconnect it, then approve again",
            payment.request.location_id
        );
        let closed = Closed {
            status: RefundStatus::ManualReview,
            rule: "integration_disconnected".into(),
            failure: None,
            cause,
        };
        return finish(deps, &refund, &locked.run, closed).await;
    }
    let call = Call::new(
        deps,
        &refund,
        &payment,
        &integrations,
        &locked.run,
        decision,
        Some(delivery),
    )?;
    if sent_before && call.settled_by_inquiry(locked.in_flight_for).await? {
        return Ok(());
    }
    call.send().await
}

/// The refund's payment and its location's integrations.
async fn payment_of(deps: &Deps, refund: &Refund) -> Result<(Payment, Integrations), JobError> {
    let payment = deps
        .store
        .payment_state(&refund.payment_id)
        .await
        .map_err(retry)?
        .ok_or_else(|| JobError::permanent("the payment vanished"))?;
    let integrations = deps
        .store
        .integrations_of(&payment.request.location_id, payment.integration_version)
        .await
        .map_err(retry)?;
    Ok((payment, integrations))
}

/// The refund's record, created from the job when it was enqueued straight into Redis (the
/// job is then the request).
async fn refund_of(job: &CancelPayment, deps: &Deps) -> Result<Refund, JobError> {
    let store = &deps.store;
    let no_payment = || {
        let (payment, refund) = (&job.payment_id, &job.refund_id);
        JobError::permanent(format!("no payment {payment} for refund {refund}"))
    };
    // Parsed here, where a job enqueued by another program comes in. A payment id not of
    // ours names no payment.
    let payment_id = PaymentId::try_from(job.payment_id.as_str()).map_err(|_| no_payment())?;
    let refund_id = job_refund_id(job, &payment_id)?;
    if let Some(r) = store.refund_state(&refund_id).await.map_err(retry)? {
        return Ok(r);
    }
    let Some(payment) = store.payment_state(&payment_id).await.map_err(retry)? else {
        return Err(no_payment());
    };
    let created = store
        .create_refund(
            &refund_id,
            &payment_id,
            &payment.request.location_id,
            &job.idempotency_key,
            &job.request,
            "job",
        )
        .await
        .map_err(retry)?;
    match created {
        Created::Created(r) | Created::Exists(r) => Ok(r),
    }
}

/// The refund a job names. One enqueued by another program under an id of its own making is
/// the refund its payment and idempotency key name (one key, one refund, however asked).
fn job_refund_id(job: &CancelPayment, payment: &PaymentId) -> Result<RefundId, JobError> {
    if let Ok(id) = RefundId::try_from(job.refund_id.as_str()) {
        return Ok(id);
    }
    let key = IdempotencyKey::try_from(job.idempotency_key.as_str())
        .map_err(|e| JobError::permanent(format!("Idempotency-Key {e}")))?;
    Ok(RefundId::of(payment, &key))
}

/// Takes the payment's refund lock (one refund at a time per payment), waiting a while for
/// another refund to finish. `None`: nothing is left to do.
async fn lock(deps: &Deps, refund: &Refund, job: &str) -> Result<Option<Locked>, JobError> {
    let waiting_since = Instant::now();
    let mut pause = Duration::from_millis(25);
    loop {
        let begin = deps
            .store
            .begin_refund(&refund.payment_id, &refund.refund_id, job)
            .await
            .map_err(retry)?;
        match begin {
            Begin::Locked(l) => return Ok(Some(l)),
            Begin::Final(_) => return Ok(None),
            Begin::Missing => {
                let closed = Closed::rejected("unknown_payment", "no such payment".into());
                finish(deps, refund, &refund.run, closed).await?;
                return Ok(None);
            }
            Begin::Busy if waiting_since.elapsed() < LOCK_WAIT => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Begin::Busy => return Err(retry("another refund of this payment is still running")),
        }
    }
}

/// The decision of a refund left `processing` by a release before decisions were recorded
/// whole: it wrote the amount and rule before sending, and held the payment's lock since, so
/// the payment's refunded amount is still the one it decided on.
fn decided_by_an_earlier_release(refund: &Refund, payment: &Payment) -> Option<Decided> {
    let rule = refund.rule.clone()?;
    if refund.status != RefundStatus::Processing || refund.amount <= 0 {
        return None;
    }
    let approved = payment.approval.as_ref()?.amount.total;
    Some(Decided {
        amount: refund.amount,
        tax_free: refund.tax_free_amount,
        vat: None,
        rule,
        available: approved - payment.refunded,
        refunded_before: payment.refunded,
    })
}

/// A refund closed without (more) money moving.
struct Closed {
    status: RefundStatus,
    rule: String,
    failure: Option<Failure>,
    cause: String,
}

impl Closed {
    fn rejected(rule: &str, cause: String) -> Closed {
        Closed {
            status: RefundStatus::Rejected,
            rule: rule.into(),
            failure: None,
            cause,
        }
    }
}

/// REFUNDS.md's decision, from the amounts the lock protects. `Err`: no money is due.
fn decide(
    refund: &Refund,
    payment: &Payment,
    locked: &Locked,
    current: Option<&Integration>,
) -> Result<Decided, Closed> {
    // An approved review's amount is checked like an admin amount: under the lock, against
    // what is left now (another refund may have been paid since it was approved).
    let review_amount = refund
        .review
        .as_ref()
        .filter(|r| r.action == ReviewAction::Approve)
        .map(|r| r.amount);
    // A review approved without an amount refunds what is left (the request's own amount,
    // if it had one, no longer counts).
    let explicit = match review_amount {
        Some(approved) => approved,
        None => refund.request.amount,
    };
    let approved = payment.approval.as_ref().map(|a| a.amount.total);
    let left = refunds::refundable(locked.payment_status, approved, locked.refunded, explicit)
        .map_err(|why| refused(why, review_amount.is_some()))?;
    let facts = facts(payment, locked);
    let decision = match review_amount {
        Some(amount) => refunds::reviewed(&facts, amount.map(won)),
        None => {
            let integration = current.map(|i| IntegrationFacts {
                automatic_refunds: i.automatic_refunds,
                refund_policy: &i.refund_policy,
            });
            refunds::decide(&facts, integration.as_ref(), &ask(refund)?)
        }
    };
    let (status, cause) = match decision.outcome {
        Outcome::Refund => {
            return Ok(Decided {
                amount: decision.amount.get(),
                tax_free: decision.tax_free.get(),
                vat: decision.vat.map(Won::get),
                rule: decision.rule,
                available: left.get(),
                refunded_before: locked.refunded,
            })
        }
        Outcome::Rejected => (RefundStatus::Rejected, "the rules give nothing"),
        Outcome::ManualReview => (RefundStatus::ManualReview, "the rules leave it to a person"),
    };
    Err(Closed {
        status,
        rule: decision.rule,
        failure: None,
        cause: cause.into(),
    })
}

fn won(v: i64) -> Won {
    Won::new(v.max(0)).unwrap_or(Won::ZERO)
}

/// What the rules know of the payment: what KakaoPay approved, and what the lock says is
/// refunded of it.
fn facts<'a>(payment: &'a Payment, locked: &Locked) -> PaymentFacts<'a> {
    let amount = payment.approval.as_ref().map(|a| a.amount.clone());
    let amount = amount.unwrap_or_default();
    PaymentFacts {
        service: payment.request.service,
        starts_at: payment.request.starts_at,
        approved: won(amount.total),
        approved_tax_free: won(amount.tax_free),
        approved_vat: payment.request.vat_amount.map(|_| won(amount.vat)),
        refunded: won(locked.refunded),
        refunded_tax_free: won(locked.refunded_tax_free),
        refunded_vat: won(locked.refunded_vat),
        policy: payment.request.refund_policy.as_ref(),
    }
}

/// The request as the rules read it.
fn ask(refund: &Refund) -> Result<RefundAsk<'_>, Closed> {
    let request = &refund.request;
    let canceled_at = request
        .canceled_at
        .as_deref()
        .unwrap_or(&request.received_at);
    let canceled_at = chrono::DateTime::parse_from_rfc3339(canceled_at)
        .map_err(|e| Closed::rejected("invalid_request", e.to_string()))?;
    Ok(RefundAsk {
        // Validated before the lock was taken.
        requested_by: request.requester().unwrap_or(Requester::Member),
        reason: &request.reason,
        canceled_at,
        context: &request.context,
        amount: request.amount.map(won),
        by_admin: request.by_admin,
    })
}

/// How a refund the payment cannot take is closed.
fn refused(why: NotRefundable, reviewed: bool) -> Closed {
    match why {
        NotRefundable::Status(status) => {
            Closed::rejected("not_refundable", format!("the payment is {status}"))
        }
        NotRefundable::NeverApproved => {
            Closed::rejected("not_refundable", "the payment was never approved".into())
        }
        // Another refund was paid after the operator approved this one: what they decided
        // no longer fits, and only they can say what to do now.
        NotRefundable::OverRemaining(left) if reviewed => Closed {
            status: RefundStatus::ManualReview,
            rule: "amount_over_remaining".into(),
            failure: None,
            cause: format!("approved for more than is left: only {left} is left now"),
        },
        NotRefundable::OverRemaining(left) => {
            Closed::rejected("amount_over_remaining", format!("only {left} is left"))
        }
    }
}

/// How long a cancel this process sends may be under way (recorded with it, so that every
/// other process waits as long as this one's settings say).
fn call_window(deps: &Deps) -> Duration {
    deps.kakaopay.longest_call() + Duration::from_secs(2)
}

/// One run's cancel of a decided refund at KakaoPay (or the reconciler's look at one).
struct Call<'a> {
    deps: &'a Deps,
    refund: &'a Refund,
    payment: &'a Payment,
    integration: &'a Integration,
    tid: Tid,
    run: &'a str,
    decision: Decided,
    /// `None` for the reconciler, whose job has ended.
    delivery: Option<&'a Delivery>,
}

impl<'a> Call<'a> {
    /// The call for `payment`'s refund with the location's credentials; without any, the job
    /// is dead with a message that says what to do.
    fn new(
        deps: &'a Deps,
        refund: &'a Refund,
        payment: &'a Payment,
        integrations: &'a Integrations,
        run: &'a str,
        decision: Decided,
        delivery: Option<&'a Delivery>,
    ) -> Result<Call<'a>, JobError> {
        let integration = integrations.for_refunds().ok_or_else(|| {
            JobError::permanent(format!(
                "no KakaoPay credentials for location {}: reconnect it, then retry this job",
                payment.request.location_id
            ))
        })?;
        Ok(Call {
            deps,
            refund,
            payment,
            integration,
            tid: payment.tid.clone(),
            run,
            decision,
            delivery,
        })
    }

    fn last_attempt(&self) -> bool {
        self.delivery.is_none_or(|d| d.attempt >= d.max_attempts)
    }

    /// What the order inquiry says of this refund's cancel.
    async fn inquire(&self) -> Result<CancelFound, KakaoPayError> {
        let order_request = OrderRequest {
            cid: self.integration.cid.clone(),
            tid: self.tid.clone(),
        };
        let order = self
            .deps
            .kakaopay
            .order(&self.integration.credentials(), &order_request)
            .await?;
        Ok(order.find_cancel(
            &self.refund.refund_id,
            self.decision.amount,
            self.decision.refunded_before,
        ))
    }

    /// An earlier run may have sent the cancel: records it if KakaoPay shows it. If it does
    /// not while that earlier call may still be under way (`in_flight_for`: a lease that
    /// lapsed mid-call), the call is waited out and KakaoPay asked again, so that two runs
    /// never have a cancel of one refund in flight at once. Answers false if it must be sent.
    async fn settled_by_inquiry(&self, in_flight_for: Duration) -> Result<bool, JobError> {
        let earlier_call_ends = Instant::now() + in_flight_for;
        loop {
            match self.inquire().await {
                Ok(CancelFound::Applied(found)) => {
                    self.found(found, "the order inquiry shows the cancel")
                        .await?;
                    return Ok(true);
                }
                Ok(CancelFound::NotApplied) if Instant::now() < earlier_call_ends => {
                    tokio::time::sleep_until(earlier_call_ends.into()).await
                }
                Ok(CancelFound::NotApplied) => return Ok(false),
                Ok(CancelFound::Unclear(why)) => return Err(self.unsettled(why)),
                Err(e) => return Err(self.unsettled(format!("order inquiry: {e}"))),
            }
        }
    }

    /// Sends the cancel and records what came of it. A refusal may be KakaoPay's answer to a
    /// duplicate of a cancel that did go through, and a failure without an answer may have
    /// been applied: nothing but a success is recorded before the inquiry has its say.
    async fn send(&self) -> Result<(), JobError> {
        let Some(decision) = self
            .deps
            .store
            .sending_refund(
                &self.refund.refund_id,
                self.run,
                &self.decision,
                call_window(self.deps),
            )
            .await
            .map_err(retry)?
        else {
            return Ok(()); // Another run took the refund over.
        };
        let won = |v: i64| Won::new(v).map_err(|e| JobError::permanent(e.to_string()));
        let request = CancelRequest {
            cid: self.integration.cid.clone(),
            tid: self.tid.clone(),
            cancel_amount: won(decision.amount)?,
            cancel_tax_free_amount: won(decision.tax_free)?,
            cancel_vat_amount: decision.vat.map(won).transpose()?,
            cancel_available_amount: Some(won(decision.available)?),
            payload: Some(
                Payload::parse(self.refund.refund_id.clone())
                    .map_err(|e| JobError::permanent(format!("refund id as payload: {e}")))?,
            ),
        };
        let answer = self
            .deps
            .kakaopay
            .cancel(&self.integration.credentials(), &request)
            .await;
        let e = match answer {
            Ok(answer) => {
                let this = &answer.approved_cancel_amount;
                let paid = if this.total > 0 {
                    Paid {
                        amount: this.total,
                        tax_free: this.tax_free,
                        vat: this.vat,
                        aid: answer.aid.clone(),
                        by_amounts: false,
                    }
                } else {
                    self.paid_as_reported(FoundCancel {
                        aid: answer.aid.clone(),
                        amount: None,
                        by_amounts: false,
                    })
                };
                return self.succeeded(paid, "KakaoPay canceled it").await;
            }
            Err(e) => e,
        };
        if e.class() != ErrorClass::OutcomeUnknown {
            // KakaoPay answered: this cancel is over, whatever it did.
            if let Err(err) = self
                .deps
                .store
                .cancel_call_ended(&self.refund.refund_id, self.run)
                .await
            {
                tracing::warn!(refund_id = %self.refund.refund_id, error = %err, "could not clear the cancel's call mark; the next run waits for it");
            }
        }
        match self.inquire().await {
            Ok(CancelFound::Applied(found)) => {
                self.found(found, "the order inquiry shows the cancel")
                    .await
            }
            Ok(CancelFound::NotApplied) if e.class() == ErrorClass::Final => self.failed(&e).await,
            Ok(CancelFound::NotApplied) => Err(self.unsettled(e.to_string())),
            Ok(CancelFound::Unclear(why)) => Err(self.unsettled(format!("{e}; {why}"))),
            Err(inquiry) => Err(self.unsettled(format!("{e}; order inquiry: {inquiry}"))),
        }
    }

    /// The refund as KakaoPay reports it paid: its amount where KakaoPay gives one, the
    /// decision's parts otherwise.
    fn paid_as_reported(&self, found: FoundCancel) -> Paid {
        let FoundCancel {
            aid,
            amount,
            by_amounts,
        } = found;
        let d = &self.decision;
        let amount = amount.filter(|a| *a > 0).unwrap_or(d.amount);
        if amount != d.amount {
            tracing::warn!(refund_id = %self.refund.refund_id, decided = d.amount, reported = amount, "KakaoPay reports another amount than decided; recording KakaoPay's");
        }
        Paid {
            amount,
            tax_free: d.tax_free.min(amount),
            vat: d.vat.unwrap_or(0).min(amount),
            aid,
            by_amounts,
        }
    }

    /// Not settled yet: another attempt, or, on the last one, the refund stays `processing`
    /// with its lock and the reconciler settles it by inquiry. Never `failed` on a guess.
    fn unsettled(&self, why: String) -> JobError {
        if self.last_attempt() {
            tracing::warn!(refund_id = %self.refund.refund_id, error = %why, "refund outcome unknown after the last attempt; left to the reconciler");
            JobError::permanent(format!(
                "outcome unknown ({why}); the reconciler settles it by order inquiry"
            ))
        } else {
            JobError::retry(why)
        }
    }

    /// Records the cancel the inquiry found.
    async fn found(&self, found: FoundCancel, cause: &str) -> Result<(), JobError> {
        self.succeeded(self.paid_as_reported(found), cause).await
    }

    async fn succeeded(&self, paid: Paid, cause: &str) -> Result<(), JobError> {
        record_success(
            self.deps,
            self.refund,
            self.payment,
            &self.decision,
            paid,
            cause,
        )
        .await
    }

    async fn failed(&self, e: &KakaoPayError) -> Result<(), JobError> {
        let failure = Failure {
            reason: "kakaopay_error".into(),
            kakaopay_code: e.code(),
            message: e.to_string(),
        };
        let closed = Closed {
            status: RefundStatus::Failed,
            rule: self.decision.rule.clone(),
            cause: e.to_string(),
            failure: Some(failure),
        };
        finish(self.deps, self.refund, self.run, closed).await
    }
}

/// The reconciler's settlement of a `processing` refund whose job has ended (dead, or its
/// record gone): recorded as KakaoPay shows it, `failed` only once the inquiry proves no
/// cancel of it and none can still be under way. An `Err` leaves it for the next round (and,
/// with a dead job to show for it, for an operator).
pub(super) async fn settle(deps: &Deps, refund: &Refund, margin: Duration) -> Result<(), JobError> {
    let (payment, integrations) = payment_of(deps, refund).await?;
    let recorded = refund
        .decided
        .clone()
        .or_else(|| decided_by_an_earlier_release(refund, &payment));
    let Some(decision) = recorded else {
        return give_up(
            deps,
            refund,
            margin,
            "its job ended before a cancel was sent",
        )
        .await;
    };
    let call = Call::new(
        deps,
        refund,
        &payment,
        &integrations,
        &refund.run,
        decision,
        None,
    )?;
    match call.inquire().await.map_err(retry)? {
        CancelFound::Applied(found) => {
            call.found(
                found,
                "the reconciler found the cancel in the order inquiry",
            )
            .await
        }
        CancelFound::NotApplied => {
            give_up(
                deps,
                refund,
                margin,
                "its job ended and KakaoPay shows no cancel of it",
            )
            .await
        }
        CancelFound::Unclear(why) => Err(JobError::permanent(why)),
    }
}

/// Records a refund KakaoPay made (whichever run or reconciler proves it) and announces it.
pub(super) async fn record_success(
    deps: &Deps,
    refund: &Refund,
    payment: &Payment,
    decision: &Decided,
    paid: Paid,
    cause: &str,
) -> Result<(), JobError> {
    let approved_total = payment.approval.as_ref().map_or(0, |a| a.amount.total);
    let recorded = deps
        .store
        .succeed_refund(
            &refund.payment_id,
            &refund.refund_id,
            &paid,
            approved_total,
            cause,
        )
        .await
        .map_err(retry)?;
    match recorded {
        Success::Recorded | Success::AlreadyRecorded => {
            tracing::info!(refund_id = %refund.refund_id, amount = paid.amount, "refund succeeded");
            announce(deps, refund, RefundStatus::Succeeded, paid.amount, &decision.rule).await
        }
        Success::Contradicted(status) => Err(JobError::permanent(format!(
            "KakaoPay shows refund {} paid ({} won, aid {}) but it was recorded {status}: left for an operator",
            refund.refund_id, paid.amount, paid.aid
        ))),
    }
}

/// Emits the event of a refund's outcome.
pub(crate) async fn announce(
    deps: &Deps,
    refund: &Refund,
    status: RefundStatus,
    amount: i64,
    rule: &str,
) -> Result<(), JobError> {
    crate::events::announce_refund(&deps.store, &deps.producer, refund, status, amount, rule)
        .await
        .map_err(retry)
}

/// Closes a refund without money moving, if `run` still holds it, and announces it.
async fn finish(deps: &Deps, refund: &Refund, run: &str, closed: Closed) -> Result<(), JobError> {
    close(deps, refund, run, None, closed).await
}

/// With a `margin`, only once that long has passed since a cancel of it could last have
/// been under way.
async fn close(
    deps: &Deps,
    refund: &Refund,
    run: &str,
    margin: Option<Duration>,
    closed: Closed,
) -> Result<(), JobError> {
    let recorded = deps
        .store
        .finish_refund(
            &refund.payment_id,
            &refund.refund_id,
            run,
            margin,
            closed.status,
            &closed.rule,
            closed.failure.as_ref(),
            &closed.cause,
        )
        .await
        .map_err(retry)?;
    if recorded == Recorded::Applied {
        tracing::info!(refund_id = %refund.refund_id, status = %closed.status, rule = %closed.rule, "refund closed without money moving");
        announce(deps, refund, closed.status, 0, &closed.rule).await?;
    }
    Ok(())
}

/// Closes a refund its job left behind, as `failed`: unless another run took it over
/// meanwhile, or less than `margin` has passed since a cancel of it could last have been
/// under way (KakaoPay may apply a slow call late).
async fn give_up(
    deps: &Deps,
    refund: &Refund,
    margin: Duration,
    why: &str,
) -> Result<(), JobError> {
    let rule = refund.rule.clone().unwrap_or_else(|| "gave_up".into());
    let closed = Closed {
        status: RefundStatus::Failed,
        failure: Some(Failure {
            reason: "gave_up".into(),
            kakaopay_code: None,
            message: why.to_string(),
        }),
        rule,
        cause: why.to_string(),
    };
    close(deps, refund, &refund.run, Some(margin), closed).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approval_that_no_longer_fits_goes_back_to_a_person_even_when_nothing_is_left() {
        for left in [Won::ZERO, Won::new(7_000).unwrap()] {
            let closed = refused(NotRefundable::OverRemaining(left), true);
            assert_eq!(closed.status, RefundStatus::ManualReview, "{left}");
            assert_eq!(closed.rule, "amount_over_remaining");
            let closed = refused(NotRefundable::OverRemaining(left), false);
            assert_eq!(closed.status, RefundStatus::Rejected, "{left}");
            assert_eq!(closed.rule, "amount_over_remaining");
        }
    }
}
