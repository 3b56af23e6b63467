//! Refund records and the payment's side of them.
//!
//! One refund at a time per payment: a refund takes the payment's `refund_lock` before it is
//! decided and keeps it until it has succeeded, failed or moved no money. The decision is made
//! under the lock from the amounts the lock protects, so two concurrent full refunds cannot
//! both pass. Every change is one script with its history entries.

use super::{now_rfc3339, Failure, HistoryEntry, Payment, Store, StoreError};
use crate::domain::{PaymentStatus, RefundStatus};
use kakaopay_jobs::RefundRequest;
use redis::Script;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::LazyLock;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RefundDoc {
    refund_id: String,
    payment_id: String,
    idempotency_key: String,
    request: RefundRequest,
    /// `http` or `job` (enqueued straight into Redis).
    source: String,
    created_at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refund {
    pub refund_id: String,
    pub payment_id: String,
    pub idempotency_key: String,
    pub request: RefundRequest,
    pub source: String,
    pub created_at: String,
    pub status: RefundStatus,
    pub amount: i64,
    pub tax_free_amount: i64,
    pub rule: Option<String>,
    pub aid: Option<String>,
    pub failure: Option<Failure>,
    pub updated_at: String,
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    Created(Refund),
    /// A refund with this id exists already (the same idempotency key).
    Exists(Refund),
}

/// The payment's refund state, read under the refund lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub payment_status: PaymentStatus,
    pub refunded: i64,
    pub refunded_tax_free: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    Locked(Locked),
    /// Another refund of the payment holds the lock.
    Busy,
    /// The refund is already final.
    Final(RefundStatus),
    Missing,
}

/// KEYS: refund, refund history, payment's refunds list, location's refunds.
/// ARGV: refund id, doc, now, history, now_ms.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'status', 'queued', 'amount', 0, 'tax_free_amount', 0, 'updated_at', ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
return 1
"#,
    )
});

/// KEYS: payment, refund, refund history. ARGV: refund id, now.
static BEGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local status = redis.call('HGET', KEYS[2], 'status')
if not status then return {'missing'} end
if status ~= 'queued' and status ~= 'processing' then return {'final', status} end
local pay = redis.call('HMGET', KEYS[1], 'status', 'refund_lock', 'refunded', 'refunded_tax_free')
if not pay[1] then return {'missing'} end
if pay[2] and pay[2] ~= '' and pay[2] ~= ARGV[1] then return {'busy'} end
redis.call('HSET', KEYS[1], 'refund_lock', ARGV[1])
if status == 'queued' then
  redis.call('HSET', KEYS[2], 'status', 'processing', 'updated_at', ARGV[2])
  redis.call('RPUSH', KEYS[3], cjson.encode({at = ARGV[2], from = 'queued', to = 'processing', cause = 'a worker took the refund'}))
end
return {'ok', pay[1], pay[3] or '0', pay[4] or '0'}
"#,
    )
});

/// Ends a refund that moves no (more) money. KEYS: payment, refund, refund history.
/// ARGV: refund id, status, rule, failure json, now, cause.
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local status = redis.call('HGET', KEYS[2], 'status')
if status ~= 'queued' and status ~= 'processing' then return 0 end
redis.call('HSET', KEYS[2], 'status', ARGV[2], 'rule', ARGV[3], 'failure', ARGV[4], 'updated_at', ARGV[5])
redis.call('RPUSH', KEYS[3], cjson.encode({at = ARGV[5], from = status, to = ARGV[2], cause = ARGV[6]}))
if redis.call('HGET', KEYS[1], 'refund_lock') == ARGV[1] then redis.call('HSET', KEYS[1], 'refund_lock', '') end
return 1
"#,
    )
});

/// Records a refund KakaoPay made. KEYS: payment, payment history, refund, refund history.
/// ARGV: refund id, amount, tax free, aid, approved total, now.
static SUCCEED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local status = redis.call('HGET', KEYS[3], 'status')
if status ~= 'processing' then return 0 end
local refunded = redis.call('HINCRBY', KEYS[1], 'refunded', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'refunded_tax_free', ARGV[3])
local from = redis.call('HGET', KEYS[1], 'status')
local to = 'partially_refunded'
if refunded >= tonumber(ARGV[5]) then to = 'refunded' end
redis.call('HSET', KEYS[1], 'status', to, 'updated_at', ARGV[6], 'refund_lock', '')
redis.call('RPUSH', KEYS[2], cjson.encode({at = ARGV[6], from = from, to = to, cause = 'refund ' .. ARGV[1] .. ' of ' .. ARGV[2] .. ' won succeeded'}))
redis.call('HSET', KEYS[3], 'status', 'succeeded', 'amount', ARGV[2], 'tax_free_amount', ARGV[3], 'aid', ARGV[4], 'updated_at', ARGV[6])
redis.call('RPUSH', KEYS[4], cjson.encode({at = ARGV[6], from = status, to = 'succeeded', cause = 'KakaoPay canceled ' .. ARGV[2] .. ' won'}))
return 1
"#,
    )
});

fn parse<T: serde::de::DeserializeOwned>(key: &str, v: serde_json::Value) -> Result<T, StoreError> {
    serde_json::from_value(v).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

impl Store {
    fn refund_key(&self, id: &str) -> String {
        self.key(&format!("refund:{id}"))
    }

    fn refund_history_key(&self, id: &str) -> String {
        self.key(&format!("refund:{id}:history"))
    }

    pub(super) fn payment_refunds_key(&self, payment_id: &str) -> String {
        self.key(&format!("payment:{payment_id}:refunds"))
    }

    /// Stores a new refund `queued`, unless one with its id exists.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_refund(
        &self,
        refund_id: &str,
        payment_id: &str,
        location_id: &str,
        idempotency_key: &str,
        request: &RefundRequest,
        source: &str,
    ) -> Result<Created, StoreError> {
        let now = now_rfc3339();
        let doc = RefundDoc {
            refund_id: refund_id.to_string(),
            payment_id: payment_id.to_string(),
            idempotency_key: idempotency_key.to_string(),
            request: request.clone(),
            source: source.to_string(),
            created_at: now.clone(),
        };
        let history = serde_json::to_string(&HistoryEntry {
            at: now.clone(),
            from: None,
            to: RefundStatus::Queued.to_string(),
            cause: format!("requested by {} ({})", request.requested_by, source),
        })
        .expect("history serializes");
        let created: i64 = CREATE
            .key(self.refund_key(refund_id))
            .key(self.refund_history_key(refund_id))
            .key(self.payment_refunds_key(payment_id))
            .key(self.location_refunds_key(location_id))
            .arg(refund_id)
            .arg(serde_json::to_string(&doc).expect("docs serialize"))
            .arg(&now)
            .arg(history)
            .arg(chrono::Utc::now().timestamp_millis())
            .invoke_async(&mut self.conn.clone())
            .await?;
        let refund = self
            .refund_state(refund_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                key: self.refund_key(refund_id),
                reason: "vanished right after it was stored".into(),
            })?;
        Ok(if created == 1 {
            Created::Created(refund)
        } else {
            Created::Exists(refund)
        })
    }

    /// The refund with its history, as the API shows it.
    pub async fn refund(&self, id: &str) -> Result<Option<Refund>, StoreError> {
        let (fields, history): (HashMap<String, String>, Vec<String>) = redis::pipe()
            .hgetall(self.refund_key(id))
            .lrange(self.refund_history_key(id), 0, -1)
            .query_async(&mut self.conn.clone())
            .await?;
        self.parse_refund(id, fields, &history)
    }

    /// The refund without its history (left empty), read in one command.
    pub async fn refund_state(&self, id: &str) -> Result<Option<Refund>, StoreError> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.refund_key(id))
            .query_async(&mut self.conn.clone())
            .await?;
        self.parse_refund(id, fields, &[])
    }

    /// A payment and one of its refunds (neither with its history) in one round trip: what a
    /// refund request needs to answer.
    pub async fn payment_and_refund(
        &self,
        payment_id: &str,
        refund_id: &str,
    ) -> Result<(Option<Payment>, Option<Refund>), StoreError> {
        let (payment, refund): (HashMap<String, String>, HashMap<String, String>) = redis::pipe()
            .hgetall(self.payment_key(payment_id))
            .hgetall(self.refund_key(refund_id))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok((
            self.parse_payment(payment_id, payment, &[])?,
            self.parse_refund(refund_id, refund, &[])?,
        ))
    }

    fn parse_refund(
        &self,
        id: &str,
        fields: HashMap<String, String>,
        history: &[String],
    ) -> Result<Option<Refund>, StoreError> {
        if fields.is_empty() {
            return Ok(None);
        }
        let key = self.refund_key(id);
        let json = |name: &str| -> Result<Option<serde_json::Value>, StoreError> {
            fields
                .get(name)
                .filter(|v| !v.is_empty())
                .map(|v| {
                    serde_json::from_str(v).map_err(|e| StoreError::Corrupt {
                        key: key.clone(),
                        reason: format!("{name}: {e}"),
                    })
                })
                .transpose()
        };
        let doc: RefundDoc = parse(&key, json("doc")?.unwrap_or_default())?;
        let num = |name: &str| {
            fields
                .get(name)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        let text = |name: &str| fields.get(name).filter(|v| !v.is_empty()).cloned();
        Ok(Some(Refund {
            refund_id: doc.refund_id,
            payment_id: doc.payment_id,
            idempotency_key: doc.idempotency_key,
            request: doc.request,
            source: doc.source,
            created_at: doc.created_at,
            status: parse(
                &key,
                serde_json::Value::String(fields.get("status").cloned().unwrap_or_default()),
            )?,
            amount: num("amount"),
            tax_free_amount: num("tax_free_amount"),
            rule: text("rule"),
            aid: text("aid"),
            failure: json("failure")?.map(|f| parse(&key, f)).transpose()?,
            updated_at: text("updated_at").unwrap_or_default(),
            history: history
                .iter()
                .map(|h| {
                    serde_json::from_str(h).map_err(|e| StoreError::Corrupt {
                        key: key.clone(),
                        reason: e.to_string(),
                    })
                })
                .collect::<Result<_, _>>()?,
        }))
    }

    /// The refunds of a payment, oldest first.
    pub async fn refunds_of(&self, payment_id: &str) -> Result<Vec<Refund>, StoreError> {
        let ids: Vec<String> = redis::cmd("LRANGE")
            .arg(self.payment_refunds_key(payment_id))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn.clone())
            .await?;
        let mut refunds = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.refund(&id).await? {
                refunds.push(r);
            }
        }
        Ok(refunds)
    }

    /// Takes the payment's refund lock for `refund_id` (again, if it holds it) and moves the
    /// refund to `processing`; answers the payment's refund state under the lock.
    pub async fn begin_refund(
        &self,
        payment_id: &str,
        refund_id: &str,
    ) -> Result<Begin, StoreError> {
        let answer: Vec<String> = BEGIN
            .key(self.payment_key(payment_id))
            .key(self.refund_key(refund_id))
            .key(self.refund_history_key(refund_id))
            .arg(refund_id)
            .arg(now_rfc3339())
            .invoke_async(&mut self.conn.clone())
            .await?;
        let key = self.refund_key(refund_id);
        Ok(match answer.first().map(String::as_str) {
            Some("ok") => Begin::Locked(Locked {
                payment_status: parse(&key, serde_json::Value::String(answer[1].clone()))?,
                refunded: answer[2].parse().unwrap_or(0),
                refunded_tax_free: answer[3].parse().unwrap_or(0),
            }),
            Some("busy") => Begin::Busy,
            Some("final") => {
                Begin::Final(parse(&key, serde_json::Value::String(answer[1].clone()))?)
            }
            _ => Begin::Missing,
        })
    }

    /// Notes what the rules decided, before any money moves.
    pub async fn note_decision(
        &self,
        refund_id: &str,
        amount: i64,
        tax_free: i64,
        rule: &str,
    ) -> Result<(), StoreError> {
        let _: () = redis::cmd("HSET")
            .arg(self.refund_key(refund_id))
            .arg("amount")
            .arg(amount)
            .arg("tax_free_amount")
            .arg(tax_free)
            .arg("rule")
            .arg(rule)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Ends a refund without moving money (rejected, manual review, failed) and frees the lock.
    pub async fn finish_refund(
        &self,
        payment_id: &str,
        refund_id: &str,
        status: RefundStatus,
        rule: &str,
        failure: Option<&Failure>,
        cause: &str,
    ) -> Result<bool, StoreError> {
        let done: i64 = FINISH
            .key(self.payment_key(payment_id))
            .key(self.refund_key(refund_id))
            .key(self.refund_history_key(refund_id))
            .arg(refund_id)
            .arg(status.as_str())
            .arg(rule)
            .arg(
                failure
                    .map(|f| serde_json::to_string(f).expect("failures serialize"))
                    .unwrap_or_default(),
            )
            .arg(now_rfc3339())
            .arg(cause)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(done == 1)
    }

    /// Records a refund KakaoPay made: the refund succeeded, the payment partially refunded or
    /// refunded, the lock freed, in one step.
    pub async fn succeed_refund(
        &self,
        payment_id: &str,
        refund_id: &str,
        amount: i64,
        tax_free: i64,
        aid: &str,
        approved_total: i64,
    ) -> Result<bool, StoreError> {
        let done: i64 = SUCCEED
            .key(self.payment_key(payment_id))
            .key(self.history_key(payment_id))
            .key(self.refund_key(refund_id))
            .key(self.refund_history_key(refund_id))
            .arg(refund_id)
            .arg(amount)
            .arg(tax_free)
            .arg(aid)
            .arg(approved_total)
            .arg(now_rfc3339())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(done == 1)
    }
}
