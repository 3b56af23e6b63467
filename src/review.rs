//! `kakaopay-worker refunds`: the refunds that need a person, on the command line, read and
//! resolved straight in Redis with the same store operations as the HTTP routes.
//!
//! - `refunds review`: the refunds in `manual_review`, newest first.
//! - `refunds approve ID [--amount N] [--note …]`: runs it as an admin amount.
//! - `refunds dismiss ID --note …`: closes it without money moving.

use crate::config::{RedisArgs, RefundsAction};
use crate::domain::RefundStatus;
use crate::store::{RefundFilter, Reviewed, Store};
use anyhow::{bail, Context};
use kakaopay_jobs::queue::{Connection, EnqueueOptions, Producer, Purpose};

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
            let Some(mut refund) = store.refund_state(&refund_id).await? else {
                bail!("no refund {refund_id}");
            };
            let review = match store
                .approve_review(&refund, amount, note.as_deref(), &by)
                .await?
            {
                Reviewed::Applied(r) | Reviewed::Repeated(r) => r,
                Reviewed::NotInReview(s) => bail!("{refund_id} is {s}, not waiting for review"),
                Reviewed::NotRefundable(why) => bail!("{refund_id} cannot be refunded: {why}"),
                Reviewed::Missing => bail!("no refund {refund_id}"),
            };
            refund.review = Some(review);
            producer
                .enqueue(&refund.job(), EnqueueOptions::with_id(refund.job_id()))
                .await
                .context("approved, but its job was not enqueued (the reconciler will)")?;
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
            if note.trim().is_empty() {
                bail!("--note must say why");
            }
            let Some(refund) = store.refund_state(&refund_id).await? else {
                bail!("no refund {refund_id}");
            };
            match store
                .dismiss_review(&refund.refund_id, note.trim(), &by)
                .await?
            {
                Reviewed::Applied(_) | Reviewed::Repeated(_) => {}
                Reviewed::NotInReview(s) => bail!("{refund_id} is {s}, not waiting for review"),
                Reviewed::NotRefundable(why) => bail!("{refund_id}: {why}"),
                Reviewed::Missing => bail!("no refund {refund_id}"),
            }
            let rule = refund.rule.clone().unwrap_or_default();
            let data = crate::events::refund_data(&refund, RefundStatus::Dismissed, 0, &rule);
            crate::events::emit(
                &store,
                &producer,
                "refund.dismissed",
                &refund.refund_id,
                data,
            )
            .await
            .map_err(|e| anyhow::anyhow!("dismissed, but its event was not recorded: {e}"))?;
            println!("{refund_id} dismissed");
        }
    }
    Ok(())
}
