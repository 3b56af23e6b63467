//! Where every record lives: the one place that names Redis keys.
//!
//! Payments are spread over [`SHARDS`] groups. Everything of one payment (its record,
//! history and refund list, its refunds' records and history; a refund's id is also its
//! idempotency record) and the indexes its changes touch (the reconciler's `ready`,
//! `approving` and open-refund indexes, the location's payments and refunds, its order's
//! reservation) live under the hash tag of its shard, `{ns:pNN}`. So on a Redis Cluster every
//! state change, indexes included, is one script on one slot, and the shards spread the
//! payments over all masters.
//!
//! The shard is written in the ids: the two characters after `pay_` (and after `rf_`, a
//! refund carrying its payment's), so an id leads to its slot without a lookup. A new
//! payment takes the shard its location and order hash to, which puts its order's
//! reservation in the same slot as the payment it names. A location's integration has a
//! slot of its own (`{ns:loc:ID}`); the queues have theirs (`{ns:queue}`, in `jobs/`).
//!
//! The cross-slot steps are ordered so that the first is the commit point: a payment is
//! stored, then its job enqueued (a crash between leaves it `ready`/`approving` in its
//! shard's index, where the reconciler finds it and enqueues the job again under the same
//! id); a refund is stored, then its job enqueued (the open-refund index, likewise).

use super::Store;
use crate::domain::{PaymentStatus, Shard};

/// Every shard's hash tag, `{ns:pNN}`, formatted once: keys are built on every request.
pub(super) fn shard_tags(ns: &str) -> std::sync::Arc<[String]> {
    Shard::all()
        .map(|shard| format!("{{{ns}:p{:02}}}", shard.number()))
        .collect()
}

/// `parts` end to end, in one allocation of the right size.
fn joined(parts: &[&str]) -> String {
    let mut key = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        key.push_str(part);
    }
    key
}

impl Store {
    pub(super) fn tag(&self, shard: Shard) -> &str {
        &self.tags[usize::from(shard.number())]
    }

    /// Where the record lives (for tests and operators that look at Redis itself).
    pub fn payment_key(&self, id: &str) -> String {
        joined(&[self.tag(Shard::of_id(id)), ":payment:", id])
    }

    pub(super) fn history_key(&self, id: &str) -> String {
        joined(&[self.tag(Shard::of_id(id)), ":payment:", id, ":history"])
    }

    pub fn payment_refunds_key(&self, payment_id: &str) -> String {
        joined(&[
            self.tag(Shard::of_id(payment_id)),
            ":payment:",
            payment_id,
            ":refunds",
        ])
    }

    /// Where the record lives (for tests and operators that look at Redis itself).
    pub fn refund_key(&self, id: &str) -> String {
        joined(&[self.tag(Shard::of_id(id)), ":refund:", id])
    }

    pub(super) fn refund_history_key(&self, id: &str) -> String {
        joined(&[self.tag(Shard::of_id(id)), ":refund:", id, ":history"])
    }

    /// An order's reservation, in the shard its payment takes.
    pub(super) fn order_key(&self, location: &str, order: &str) -> String {
        let shard = Shard::of_order(location, order);
        joined(&[self.tag(shard), ":order:", location, ":", order])
    }

    /// A shard's payments in `status` (`ready`, `approving`), by when they entered it.
    pub fn status_index_key(&self, shard: Shard, status: PaymentStatus) -> String {
        joined(&[self.tag(shard), ":payments:", status.as_str()])
    }

    /// A shard's refunds not final yet, by request time: what the reconciler walks.
    pub(super) fn open_refunds_key(&self, shard: Shard) -> String {
        joined(&[self.tag(shard), ":refunds:open"])
    }

    /// A shard's refunds waiting for an operator (`manual_review`), by when they entered it.
    pub(super) fn review_refunds_key(&self, shard: Shard) -> String {
        joined(&[self.tag(shard), ":refunds:review"])
    }

    /// A shard's refunds, by request time: the refund listing without a location.
    pub(super) fn all_refunds_key(&self, shard: Shard) -> String {
        joined(&[self.tag(shard), ":refunds:all"])
    }

    /// A location's payments in one shard, by creation time (the transactions report).
    pub(super) fn location_payments_key(&self, shard: Shard, location: &str) -> String {
        joined(&[self.tag(shard), ":loc:", location, ":payments"])
    }

    /// A location's refunds in one shard, by request time.
    pub(super) fn location_refunds_key(&self, shard: Shard, location: &str) -> String {
        let (mut key, after) = self.location_refunds_affixes(shard);
        key.push_str(location);
        key.push_str(after);
        key
    }

    /// What comes before and after the location in [`Store::location_refunds_key`]: for the
    /// one script that names it from the payment's location (see `refunds::REQUEST_LUA`).
    pub(super) fn location_refunds_affixes(&self, shard: Shard) -> (String, &'static str) {
        (joined(&[self.tag(shard), ":loc:"]), ":refunds")
    }

    fn location_tag(&self, location: &str) -> String {
        format!("{{{}:loc:{location}}}", self.ns)
    }

    pub(super) fn integration_key(&self, location: &str) -> String {
        format!("{}:integration", self.location_tag(location))
    }

    /// Where the record lives (for tests and operators that look at Redis itself).
    pub fn integration_version_key(&self, location: &str, version: u64) -> String {
        format!("{}:integration:v{version}", self.location_tag(location))
    }

    pub(super) fn integration_seq_key(&self, location: &str) -> String {
        format!("{}:integration:seq", self.location_tag(location))
    }

    /// Which refund of the earlier key layout the refund id `id` names (`migrations`): its
    /// id then did not carry its payment's shard, so a repeat of its request computes another.
    pub(super) fn refund_alias_key(&self, id: &str) -> String {
        joined(&[self.tag(Shard::of_id(id)), ":refund:", id, ":alias"])
    }

    /// A key in a shard that only ever takes a throwaway write (see [`Store::confirm_durable`]).
    pub(super) fn barrier_key(&self, shard: Shard) -> String {
        joined(&[self.tag(shard), ":barrier"])
    }

    pub(super) fn event_key(&self, id: &str) -> String {
        format!("{}:event:{id}", self.ns)
    }

    /// Set once an event's delivery job is enqueued.
    pub(super) fn event_enqueued_key(&self, id: &str) -> String {
        format!("{}:event:{id}:enqueued", self.ns)
    }

    /// A board session, by the SHA-256 of its token.
    pub(super) fn session_key(&self, token: &str) -> String {
        let digest = <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes());
        format!("{{{}:board}}:session:{}", self.ns, hex::encode(digest))
    }

    /// Wrong login tokens from one client address in the current window.
    pub(super) fn login_failures_key(&self, client: &str) -> String {
        format!("{{{}:board}}:login-failures:{client}", self.ns)
    }

    /// A board action's outcome, waiting to be shown once on the page it redirects to.
    pub(super) fn flash_key(&self, id: &str) -> String {
        format!("{{{}:board}}:flash:{id}", self.ns)
    }

    /// The live processes, each scored by when its entry expires (`registry`).
    pub(super) fn live_processes_key(&self) -> String {
        format!("{{{}:workers}}:live", self.ns)
    }

    /// One live process's record, in the same slot as the live set.
    pub(super) fn process_key(&self, id: &str) -> String {
        format!("{{{}:workers}}:process:{id}", self.ns)
    }
}
