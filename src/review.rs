//! Refunds that need a person: an operator's approval or dismissal, the one flow that the
//! HTTP routes, the board and the command line share, and `kakaopay-worker refunds`.
//!
//! - `refunds review`: the refunds in `manual_review`, newest first.
//! - `refunds approve ID [--amount N] [--note …]`: runs it as an admin amount.
//! - `refunds dismiss ID --note …`: closes it without money moving.
//!
//! Both decisions are one script each on the refund's slot (`store::reviews`); the job an
//! approval needs and the event a dismissal makes follow, idempotent by their ids. A repeat
//! of a decision already carried out enqueues nothing: the job's record may be gone by then
//! (done jobs are kept for a while only), and a job enqueued again would run for nothing.

use crate::config::{RedisArgs, RefundsAction};
use crate::domain::{RefundId, RefundStatus};
use crate::events::announce_refund;
use crate::store::{Refund, RefundFilter, Review, Reviewed, Store, StoreError};
use anyhow::Context;
use kakaopay_jobs::queue::{Connection, Producer, Purpose};

/// Notes are for people; long enough for a reason, short enough for a history.
pub const MAX_NOTE: usize = 1000;

/// Why a decision was not made.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{1}")]
    Invalid(&'static str, String),
    #[error("the refund is {0}, not waiting for review")]
    NotInReview(RefundStatus),
    #[error("{0}")]
    NotRefundable(String),
    #[error("no such refund")]
    Missing,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A note trimmed, at most [`MAX_NOTE`] characters; `required`: it must say something.
pub fn checked_note(note: Option<&str>, required: bool) -> Result<Option<String>, Refused> {
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    match note {
        None if required => Err(Refused::Invalid("note", "note is required".into())),
        Some(n) if n.chars().count() > MAX_NOTE => Err(Refused::Invalid(
            "note",
            format!("note must be at most {MAX_NOTE} characters"),
        )),
        other => Ok(other.map(str::to_string)),
    }
}

/// Approves `refund_id` for `amount` (`None`: what is left when it runs) and enqueues its
/// job. Answers the refund as queued, with the review in force.
pub async fn approve(
    store: &Store,
    producer: &Producer,
    refund_id: &RefundId,
    amount: Option<i64>,
    note: Option<&str>,
    by: &str,
) -> Result<(Refund, Review), Refused> {
    if amount.is_some_and(|a| a <= 0) {
        return Err(Refused::NotRefundable(
            "an amount must be at least 1 won".into(),
        ));
    }
    let note = checked_note(note, false)?;
    let mut refund = store
        .refund_state(refund_id)
        .await?
        .ok_or(Refused::Missing)?;
    let (review, enqueue) = match store
        .approve_review(&refund, amount, note.as_deref(), by)
        .await?
    {
        Reviewed::Applied(review) => {
            tracing::info!(%refund_id, by, amount = ?amount, "an operator approved a refund");
            (review, true)
        }
        Reviewed::Repeated(review, now) => {
            store.confirm_durable(&refund.refund_id).await?;
            // Still open (as the script saw it, not as read before): the first call's
            // enqueue may have failed or not happened yet (the reconciler would, too).
            (review, !now.is_final())
        }
        Reviewed::NotInReview(status) => return Err(Refused::NotInReview(status)),
        Reviewed::NotRefundable(why) => return Err(Refused::NotRefundable(why)),
        Reviewed::Missing => return Err(Refused::Missing),
    };
    refund.review = Some(review.clone());
    refund.status = RefundStatus::Queued;
    if enqueue {
        if let Err(e) = producer.enqueue(&refund.job(), refund.insert_opts()).await {
            tracing::warn!(%refund_id, error = %e, "approved, but its job was not enqueued; the reconciler will");
        }
    }
    Ok((refund, review))
}

/// Dismisses `refund_id` with the operator's `note` and announces it. Answers the refund.
pub async fn dismiss(
    store: &Store,
    producer: &Producer,
    refund_id: &RefundId,
    note: Option<&str>,
    by: &str,
) -> Result<Refund, Refused> {
    let note = checked_note(note, true)?.unwrap_or_default();
    let refund = store
        .refund_state(refund_id)
        .await?
        .ok_or(Refused::Missing)?;
    match store.dismiss_review(&refund.refund_id, &note, by).await? {
        Reviewed::Applied(_) => tracing::info!(%refund_id, by, "an operator dismissed a refund"),
        Reviewed::Repeated(..) => store.confirm_durable(&refund.refund_id).await?,
        Reviewed::NotInReview(status) => return Err(Refused::NotInReview(status)),
        Reviewed::NotRefundable(why) => return Err(Refused::NotRefundable(why)),
        Reviewed::Missing => return Err(Refused::Missing),
    }
    let dismissed = store
        .refund(&refund.refund_id)
        .await?
        .ok_or(Refused::Missing)?;
    // The event's id derives from the refund, and a repeat is how an event that a failed
    // emit missed gets out (a delivery already enqueued is not enqueued again).
    let rule = dismissed.rule.clone().unwrap_or_default();
    let status = RefundStatus::Dismissed;
    if let Err(e) = announce_refund(store, producer, &dismissed, status, 0, &rule).await {
        tracing::error!(refund_id = %dismissed.refund_id, error = %e, "could not emit an event");
    }
    Ok(dismissed)
}

pub async fn run(redis: RedisArgs, action: RefundsAction) -> anyhow::Result<()> {
    let topology = redis.topology();
    let conn = Connection::open(&topology, Purpose::Shared, redis.durability())
        .await
        .with_context(|| format!("cannot connect to Redis ({topology:?})"))?;
    let store = Store::new(conn.clone(), &redis.queue_namespace);
    let producer = Producer::new(conn, &redis.queue_namespace);
    match action {
        RefundsAction::Review { location_id, limit } => {
            let filter = RefundFilter {
                status: Some(RefundStatus::ManualReview),
                location_id,
            };
            let page = store.list_refunds(&filter, None, limit as usize).await?;
            println!("refunds waiting for review ({})", page.items.len());
            println!(
                "  {:<28} {:<28} {:<28} {:<24}  requested",
                "refund id", "payment id", "rule", "reason"
            );
            for r in &page.items {
                println!(
                    "  {:<28} {:<28} {:<28} {:<24}  {}",
                    r.refund_id,
                    r.payment_id,
                    r.rule.as_deref().unwrap_or("-"),
                    r.request.reason,
                    r.created_at
                );
            }
        }
        RefundsAction::Approve {
            refund_id,
            amount,
            note,
            by,
        } => {
            let id = cli_refund_id(&refund_id)?;
            approve(&store, &producer, &id, amount, note.as_deref(), &by)
                .await
                .map_err(|e| refused(&refund_id, e))?;
            match amount {
                Some(a) => println!("{refund_id} approved for {a} won; queued"),
                None => println!("{refund_id} approved for what is left; queued"),
            }
        }
        RefundsAction::Dismiss {
            refund_id,
            note,
            by,
        } => {
            let id = cli_refund_id(&refund_id)?;
            dismiss(&store, &producer, &id, Some(&note), &by)
                .await
                .map_err(|e| refused(&refund_id, e))?;
            println!("{refund_id} dismissed");
        }
    }
    Ok(())
}

/// A refund id typed by an operator: one that is not ours names no refund.
fn cli_refund_id(raw: &str) -> anyhow::Result<RefundId> {
    RefundId::try_from(raw).map_err(|_| anyhow::anyhow!("no refund {raw}"))
}

fn refused(refund_id: &str, e: Refused) -> anyhow::Error {
    match e {
        Refused::Invalid("note", why) => anyhow::anyhow!("--note: {why}"),
        Refused::Missing => anyhow::anyhow!("no refund {refund_id}"),
        Refused::Store(e) => anyhow::Error::new(e).context("Redis"),
        other => anyhow::anyhow!("{refund_id}: {other}"),
    }
}
