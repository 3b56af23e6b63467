//! Refunds that need a person: an operator approves a `manual_review` refund (it goes back to
//! `queued` and is run as an admin amount, rule `admin_review`) or dismisses it (`dismissed`,
//! no money moves). Each is one script on the refund's slot that checks the status, records
//! the review, moves the indexes and appends the history entry with the operator's name and
//! note. A review recorded stays on the refund, so the same call repeated is recognised and
//! answered the same, and a different one refused.

use super::refunds::parse;
use super::{now_rfc3339, HistoryEntry, Refund, Shard, Store, StoreError};
use crate::domain::RefundStatus;
use kakaopay_jobs::queue::Script;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewAction {
    Approve,
    Dismiss,
}

/// What an operator decided about a refund left to a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub action: ReviewAction,
    /// The amount approved; `None`: what is left of the payment when the refund runs.
    #[serde(default)]
    pub amount: Option<i64>,
    #[serde(default)]
    pub note: Option<String>,
    pub by: String,
    pub at: String,
    /// Which approval of the refund this is (1, 2, …; 0 for one made before approvals were
    /// counted): an approval sent back to review by a refund that overtook it is approved
    /// again under a job of its own.
    #[serde(default)]
    pub round: u32,
}

impl Review {
    /// Whether `other` is the same operator call (who made it, and when, aside).
    fn same_call(&self, other: &Review) -> bool {
        self.action == other.action && self.amount == other.amount && self.note == other.note
    }
}

/// What a review call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reviewed {
    Applied(Review),
    /// The same call was made before: nothing changed. With the refund's status now.
    Repeated(Review, RefundStatus),
    /// The refund is not waiting for a person (and no identical call put it where it is).
    NotInReview(RefundStatus),
    /// Approving it would refund more than is left (or the payment cannot be refunded).
    NotRefundable(String),
    Missing,
}

/// Milliseconds on Redis's clock, inside a script.
const NOW_MS: &str =
    "local t = redis.call('TIME')\nlocal now_ms = t[1] * 1000 + math.floor(t[2] / 1000)\n";

/// KEYS: refund, refund history, payment, open refunds, review index. ARGV: refund id, review
/// json, now, history json, amount ('' for what is left). The remaining amount is checked
/// here against what the payment records as refunded; the worker checks it again under the
/// payment's refund lock, so a refund that raced this one cannot make it pay too much.
static APPROVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW_MS}{}",
        r#"
local r = redis.call('HMGET', KEYS[1], 'status', 'review')
if not r[1] then return {'missing', ''} end
if r[1] ~= 'manual_review' then return {'not_in_review', r[1], r[2] or ''} end
local pay = redis.call('HMGET', KEYS[3], 'status', 'refunded', 'approval')
if pay[1] ~= 'approved' and pay[1] ~= 'partially_refunded' then
  local status = pay[1] or 'missing'
  local article = status:match('^[aeiou]') and 'an ' or 'a '
  return {'not_refundable', article .. status .. ' payment cannot be refunded'}
end
local total = 0
if pay[3] and pay[3] ~= '' then total = tonumber(cjson.decode(pay[3])['amount']['total']) or 0 end
local left = total - tonumber(pay[2] or '0')
if left <= 0 then return {'not_refundable', 'nothing is left to refund'} end
if ARGV[5] ~= '' and tonumber(ARGV[5]) > left then
  return {'not_refundable', 'only ' .. left .. ' won is left to refund'}
end
-- Approvals are counted: each runs under a job id of its own.
local round = redis.call('HINCRBY', KEYS[1], 'reviews', 1)
local review = cjson.decode(ARGV[2])
review['round'] = round
-- The earlier job's run token goes: a FINISH of that run resent late (a retry of a reply
-- lost) must not match and send the approved refund back to review.
redis.call('HSET', KEYS[1], 'status', 'queued', 'review', cjson.encode(review), 'rule', 'admin_review', 'updated_at', ARGV[3], 'run', '')
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[4], now_ms, ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
return {'applied', tostring(round)}
"#
    ))
});

/// KEYS: refund, refund history, review index. ARGV: refund id, review json, now, history json.
static DISMISS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local r = redis.call('HMGET', KEYS[1], 'status', 'review')
if not r[1] then return {'missing', ''} end
if r[1] ~= 'manual_review' then return {'not_in_review', r[1], r[2] or ''} end
redis.call('HSET', KEYS[1], 'status', 'dismissed', 'review', ARGV[2], 'updated_at', ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('ZREM', KEYS[3], ARGV[1])
return {'applied', ''}
"#,
    )
});

impl Store {
    /// Approves `refund` (read just before) for `amount` (`None`: what is left), by `by`.
    pub async fn approve_review(
        &self,
        refund: &Refund,
        amount: Option<i64>,
        note: Option<&str>,
        by: &str,
    ) -> Result<Reviewed, StoreError> {
        let review = review(ReviewAction::Approve, amount, note, by);
        let cause = match amount {
            Some(a) => format!("an operator approved a refund of {a} won"),
            None => "an operator approved a refund of what is left".to_string(),
        };
        let entry = entry(&review, RefundStatus::Queued, cause);
        let id = &refund.refund_id;
        let answer: Vec<String> = APPROVE
            .key(self.refund_key(id))
            .key(self.refund_history_key(id))
            .key(self.payment_key(&refund.payment_id))
            .key(self.open_refunds_key(Shard::of_id(id)))
            .key(self.review_refunds_key(Shard::of_id(id)))
            .arg(id.as_str())
            .arg(serde_json::to_string(&review).expect("reviews serialize"))
            .arg(&review.at)
            .arg(serde_json::to_string(&entry).expect("history serializes"))
            .arg(amount.map_or(String::new(), |a| a.to_string()))
            .run(&self.conn)
            .await?;
        self.reviewed(id, review, answer)
    }

    /// Dismisses `refund_id` with the operator's `note`, by `by`.
    pub async fn dismiss_review(
        &self,
        refund_id: &str,
        note: &str,
        by: &str,
    ) -> Result<Reviewed, StoreError> {
        let review = review(ReviewAction::Dismiss, None, Some(note), by);
        let cause = "an operator dismissed the refund; no money moves".to_string();
        let entry = entry(&review, RefundStatus::Dismissed, cause);
        let answer: Vec<String> = DISMISS
            .key(self.refund_key(refund_id))
            .key(self.refund_history_key(refund_id))
            .key(self.review_refunds_key(Shard::of_id(refund_id)))
            .arg(refund_id)
            .arg(serde_json::to_string(&review).expect("reviews serialize"))
            .arg(&review.at)
            .arg(serde_json::to_string(&entry).expect("history serializes"))
            .run(&self.conn)
            .await?;
        self.reviewed(refund_id, review, answer)
    }

    fn reviewed(
        &self,
        id: &str,
        wanted: Review,
        answer: Vec<String>,
    ) -> Result<Reviewed, StoreError> {
        let key = self.refund_key(id);
        let part = |i: usize| answer.get(i).cloned().unwrap_or_default();
        Ok(match part(0).as_str() {
            "applied" => Reviewed::Applied(Review {
                round: part(1).parse().unwrap_or(0),
                ..wanted
            }),
            "not_refundable" => Reviewed::NotRefundable(part(1)),
            "not_in_review" => {
                let status: RefundStatus = parse(&key, serde_json::Value::String(part(1)))?;
                let earlier: Option<Review> = serde_json::from_str(&part(2)).ok();
                match earlier {
                    Some(earlier) if earlier.same_call(&wanted) => {
                        Reviewed::Repeated(earlier, status)
                    }
                    _ => Reviewed::NotInReview(status),
                }
            }
            _ => Reviewed::Missing,
        })
    }
}

fn review(action: ReviewAction, amount: Option<i64>, note: Option<&str>, by: &str) -> Review {
    Review {
        action,
        amount,
        note: note.map(str::to_string),
        by: by.to_string(),
        at: now_rfc3339(),
        round: 0,
    }
}

fn entry(review: &Review, to: RefundStatus, cause: String) -> HistoryEntry {
    HistoryEntry {
        at: review.at.clone(),
        from: Some(RefundStatus::ManualReview.to_string()),
        to: to.to_string(),
        cause,
        by: Some(review.by.clone()),
        note: review.note.clone(),
    }
}
