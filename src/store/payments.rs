//! Payment records: the validated request, what KakaoPay answered, the status with its
//! history, and the indexes the reconciler walks.

use super::{now_rfc3339, Shard, Store, StoreError};
use crate::domain::{
    Aid, ItemName, LocationId, OrderId, PaymentId, PaymentStatus, PgToken, RefundPolicy, Service,
    Tid, UserId, Won,
};
use crate::kakaopay::Amount;
use chrono::{DateTime, FixedOffset};
use kakaopay_jobs::queue::{Connection, Enqueued, Invocation, PreparedJob, Script, ThenEnqueue};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

/// A payment request after validation: what the booking system asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewPayment {
    pub location_id: LocationId,
    pub order_id: OrderId,
    pub user_id: UserId,
    pub service: Service,
    pub item_name: ItemName,
    pub quantity: u32,
    pub total_amount: Won,
    pub tax_free_amount: Won,
    pub vat_amount: Option<Won>,
    pub starts_at: Option<DateTime<FixedOffset>>,
    pub return_url: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub refund_policy: Option<RefundPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    pub pc: Option<String>,
    pub mobile: Option<String>,
    pub app: Option<String>,
    pub android_app_scheme: Option<String>,
    pub ios_app_scheme: Option<String>,
}

/// What KakaoPay reported when the payment was approved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// `None` when KakaoPay named none (an inquiry's `PAYMENT` action without one).
    #[serde(
        default,
        deserialize_with = "Aid::lenient",
        serialize_with = "Aid::write_lenient"
    )]
    pub aid: Option<Aid>,
    pub payment_method_type: Option<String>,
    pub amount: Amount,
    pub approved_at: Option<String>,
}

/// Why a payment failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub reason: String,
    pub kakaopay_code: Option<i64>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: String,
    pub from: Option<String>,
    pub to: String,
    pub cause: String,
    /// The operator whose action made the change (their `ADMIN_TOKENS` name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// What the operator wrote with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The parts fixed when the payment is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Doc {
    payment_id: PaymentId,
    request: NewPayment,
    tid: Tid,
    redirect: Redirect,
    created_at: String,
    expires_at: String,
    integration_version: u64,
    fingerprint: String,
}

/// A stored payment's `return_url` (which it may not have), read from its document alone:
/// the rest of the document is skipped without allocating for it.
fn return_url_of(doc: &str) -> Result<Option<String>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Doc {
        request: Request,
    }
    #[derive(Deserialize)]
    struct Request {
        return_url: Option<String>,
    }
    let doc: Doc = serde_json::from_str(doc)?;
    Ok(doc.request.return_url)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub payment_id: PaymentId,
    pub request: NewPayment,
    pub tid: Tid,
    pub redirect: Redirect,
    pub created_at: String,
    pub expires_at: String,
    pub integration_version: u64,
    /// What the request that created it looked like, to tell a repeat from a conflict.
    pub fingerprint: String,
    pub status: PaymentStatus,
    pub pg_token: Option<PgToken>,
    pub approval: Option<Approval>,
    pub failure: Option<Failure>,
    pub updated_at: String,
    pub history: Vec<HistoryEntry>,
    /// Refunded so far, in won, and its tax-free and VAT parts.
    pub refunded: i64,
    pub refunded_tax_free: i64,
    pub refunded_vat: i64,
    /// How many runs of its approval job began before this read (see
    /// [`Store::payment_for_approval`]).
    pub approval_runs: u32,
    /// The refund holding the payment's refund lock, if any.
    pub refund_lock: Option<String>,
}

impl Payment {
    /// A payment of `doc` as [`Store::create_payment`] stores it: `ready`, nothing paid yet
    /// (a read fills in what happened since).
    fn from_doc(doc: Doc, updated_at: String, history: Vec<HistoryEntry>) -> Payment {
        Payment {
            payment_id: doc.payment_id,
            request: doc.request,
            tid: doc.tid,
            redirect: doc.redirect,
            created_at: doc.created_at,
            expires_at: doc.expires_at,
            integration_version: doc.integration_version,
            fingerprint: doc.fingerprint,
            status: PaymentStatus::Ready,
            pg_token: None,
            approval: None,
            failure: None,
            updated_at,
            history,
            refunded: 0,
            refunded_tax_free: 0,
            refunded_vat: 0,
            approval_runs: 0,
            refund_lock: None,
        }
    }
}

/// A run of a payment's approval job, as it began.
#[derive(Debug, Clone)]
pub struct ApprovalRun {
    pub payment: Payment,
    /// How long an earlier run's calls may still be under way.
    pub earlier_in_flight: Duration,
    /// Until when this run's own may (Redis's clock, ms): its mark in the record.
    deadline: i64,
}

/// The time indexes the reconciler walks (one of each per shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Due {
    /// Payments `ready`, by creation.
    Ready,
    /// Payments `approving`, since they entered it.
    Approving,
    /// Refunds `queued` or `processing`, by request.
    OpenRefunds,
}

/// A status change: allowed only from `from`, recorded with its cause and extra fields.
#[derive(Debug, Clone)]
pub struct Transition {
    pub from: Vec<PaymentStatus>,
    pub to: PaymentStatus,
    pub cause: String,
    pub pg_token: Option<PgToken>,
    pub approval: Option<Approval>,
    pub failure: Option<Failure>,
}

impl Transition {
    pub fn new(from: &[PaymentStatus], to: PaymentStatus, cause: impl Into<String>) -> Self {
        Transition {
            from: from.to_vec(),
            to,
            cause: cause.into(),
            pg_token: None,
            approval: None,
            failure: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionOutcome {
    Applied,
    /// The payment is in another status: nothing changed.
    Refused(PaymentStatus),
    Missing,
}

/// KEYS: payment, history, order key, ready index, location's payments.
/// ARGV: payment id, doc, now, now_ms, history, location id (a field of its own, so that a
/// refund request reads it without the document).
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'status', 'ready', 'updated_at', ARGV[3],
  'location_id', ARGV[6])
redis.call('RPUSH', KEYS[2], ARGV[5])
redis.call('PERSIST', KEYS[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
return 1
"#,
    )
});

/// KEYS: payment, history, ready index, approving index. ARGV: payment id, allowed from
/// (space separated), to, now, now_ms, cause, then field/value pairs to set. Answers the
/// outcome and the status it found, then (dropped when run alone) whether the payment is
/// `approving` now: what its approval job is enqueued on, in [`TRANSITION_THEN_APPROVE`].
const TRANSITION_LUA: &str = r#"
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', ''} end
local allowed = false
for s in string.gmatch(ARGV[2], '%S+') do
  if s == status then allowed = true end
end
if not allowed then return {'refused', status}, status == 'approving' end
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'updated_at', ARGV[4])
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('RPUSH', KEYS[2], cjson.encode({at = ARGV[4], from = status, to = ARGV[3], cause = ARGV[6]}))
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
if ARGV[3] == 'ready' then redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1]) end
if ARGV[3] == 'approving' then redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1]) end
return {'ok', status}, ARGV[3] == 'approving'
"#;

static TRANSITION: LazyLock<Script> = LazyLock::new(|| Script::new(TRANSITION_LUA));

/// A transition and, where it leaves the payment `approving`, its approval job's enqueue.
static TRANSITION_THEN_APPROVE: LazyLock<ThenEnqueue> =
    LazyLock::new(|| ThenEnqueue::new(TRANSITION_LUA));

pub(super) async fn load_hot_scripts(conn: &Connection) -> redis::RedisResult<()> {
    TRANSITION.load(conn).await?;
    TRANSITION_THEN_APPROVE.load(conn).await
}

/// Reads a payment and counts a run of its approval job (the count read is the runs before
/// this one). Unless an earlier run's calls may still be under way (then answered: how long,
/// on Redis's clock), marks until when this run's may be. KEYS: payment. ARGV: this run's
/// longest time, ms.
static APPROVAL_RUN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {{}, 0, 0} end
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local fields = redis.call('HGETALL', KEYS[1])
redis.call('HINCRBY', KEYS[1], 'approval_runs', 1)
local earlier = tonumber(redis.call('HGET', KEYS[1], 'approve_deadline_ms') or '0')
if earlier > now_ms then return {fields, earlier - now_ms, 0} end
local deadline = now_ms + tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'approve_deadline_ms', deadline)
return {fields, 0, deadline}
"#,
    )
});

/// Marks until when a run's calls may be under way. KEYS: payment. ARGV: longest time, ms.
static APPROVAL_CALLS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local deadline = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'approve_deadline_ms', deadline)
return deadline
"#,
    )
});

/// Deletes a hash field if it still holds the given value. KEYS: hash. ARGV: field, value.
static HDEL_IF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"#,
    )
});

/// Deletes a key only if it still holds the given value. KEYS: key. ARGV: value.
static DELETE_IF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

pub(super) fn parse_status(key: &str, s: &str) -> Result<PaymentStatus, StoreError> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        StoreError::Corrupt {
            key: key.to_string(),
            reason: format!("unknown status {s:?}"),
        }
    })
}

impl Store {
    /// Ids in a location's index (one key per shard, read together) created between
    /// `from_ms` and `to_ms`, newest first.
    async fn indexed_between(
        &self,
        key: impl Fn(Shard) -> String,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<String>, StoreError> {
        let to = to_ms.map_or_else(|| "+inf".into(), |t| t.to_string());
        let from = from_ms.map_or_else(|| "-inf".into(), |f| f.to_string());
        let reads = Shard::all().map(|shard| {
            let mut conn = self.conn.clone();
            let cmd = redis::cmd("ZREVRANGEBYSCORE")
                .arg(key(shard))
                .arg(&to)
                .arg(&from)
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(0)
                .arg(100_000)
                .to_owned();
            async move { cmd.query_async::<Vec<(String, f64)>>(&mut conn).await }
        });
        let mut all: Vec<(String, f64)> = futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        Ok(all.into_iter().map(|(id, _)| id).collect())
    }

    pub async fn location_payments(
        &self,
        location: &str,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<String>, StoreError> {
        let key = |shard| self.location_payments_key(shard, location);
        self.indexed_between(key, from_ms, to_ms).await
    }

    pub async fn location_refunds(
        &self,
        location: &str,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<String>, StoreError> {
        let key = |shard| self.location_refunds_key(shard, location);
        self.indexed_between(key, from_ms, to_ms).await
    }

    /// Reserves `location`+`order` for `payment_id` while its ready call runs (for `hold`, more
    /// than the call can take). Answers the payment id that holds the order if another does.
    pub async fn reserve_order(
        &self,
        location: &str,
        order: &str,
        payment_id: &str,
        hold: Duration,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        let key = self.order_key(location, order);
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(payment_id)
            .arg("NX")
            .arg("PX")
            .arg(hold.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await?;
        if set.is_some() {
            return Ok(None);
        }
        let holder: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
        // Expired between the two calls: try again.
        match holder {
            Some(h) => Ok(Some(h)),
            None => Box::pin(self.reserve_order(location, order, payment_id, hold)).await,
        }
    }

    /// Gives up a reservation whose ready call failed, so the order can be tried again.
    pub async fn release_order(
        &self,
        location: &str,
        order: &str,
        payment_id: &str,
    ) -> Result<(), StoreError> {
        let _: i64 = DELETE_IF
            .key(self.order_key(location, order))
            .arg(payment_id)
            .run(&self.conn)
            .await?;
        Ok(())
    }

    /// Stores a payment KakaoPay accepted, in status `ready`. Answers false if the order's
    /// reservation was lost meanwhile (it expired, or a failover lost it).
    #[allow(clippy::too_many_arguments)]
    pub async fn create_payment(
        &self,
        payment_id: &PaymentId,
        request: NewPayment,
        tid: Tid,
        redirect: Redirect,
        expires_at: String,
        integration_version: u64,
        fingerprint: String,
    ) -> Result<Option<Payment>, StoreError> {
        // One instant for the record and its index score, so that listings ordered by the
        // index are ordered by `created_at` too.
        let instant = chrono::Utc::now();
        let now = instant.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let doc = Doc {
            payment_id: payment_id.clone(),
            tid,
            redirect,
            created_at: now.clone(),
            expires_at,
            integration_version,
            fingerprint,
            request,
        };
        let entry = HistoryEntry {
            at: now.clone(),
            from: None,
            to: PaymentStatus::Ready.to_string(),
            cause: "KakaoPay ready accepted the payment".into(),
            by: None,
            note: None,
        };
        let history = serde_json::to_string(&entry).expect("history serializes");
        let shard = Shard::of_id(payment_id);
        let created: i64 = CREATE
            .key(self.payment_key(payment_id))
            .key(self.history_key(payment_id))
            .key(self.order_key(&doc.request.location_id, doc.request.order_id.as_str()))
            .key(self.status_index_key(shard, PaymentStatus::Ready))
            .key(self.location_payments_key(shard, &doc.request.location_id))
            .arg(payment_id.as_str())
            .arg(serde_json::to_string(&doc).expect("docs serialize"))
            .arg(&now)
            .arg(instant.timestamp_millis())
            .arg(history)
            .arg(doc.request.location_id.as_str())
            .run(&self.conn)
            .await?;
        if created != 1 {
            return Ok(None);
        }
        // Answered from what was written, not read back: once stored, the answer must not
        // depend on a second round trip that could fail.
        Ok(Some(Payment::from_doc(doc, now, vec![entry])))
    }

    /// The payment with its history, as the API shows it.
    pub async fn payment(&self, id: &str) -> Result<Option<Payment>, StoreError> {
        let (fields, history): (HashMap<String, String>, Vec<String>) = redis::pipe()
            .hgetall(self.payment_key(id))
            .lrange(self.history_key(id), 0, -1)
            .query_async(&mut self.conn.clone())
            .await?;
        self.parse_payment(id, fields, &history)
    }

    /// The payment without its history (left empty): what callbacks, refund requests and
    /// workers decide on, read in one command.
    pub async fn payment_state(&self, id: &str) -> Result<Option<Payment>, StoreError> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.payment_key(id))
            .query_async(&mut self.conn.clone())
            .await?;
        self.parse_payment(id, fields, &[])
    }

    pub(super) fn parse_payment(
        &self,
        id: &str,
        fields: HashMap<String, String>,
        history: &[String],
    ) -> Result<Option<Payment>, StoreError> {
        if fields.is_empty() {
            return Ok(None);
        }
        let key = self.payment_key(id);
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.clone(),
            reason,
        };
        fn typed<T: serde::de::DeserializeOwned>(
            fields: &HashMap<String, String>,
            name: &str,
        ) -> Result<Option<T>, String> {
            fields
                .get(name)
                .filter(|v| !v.is_empty())
                .map(|v| serde_json::from_str(v).map_err(|e| format!("{name}: {e}")))
                .transpose()
        }
        let doc: Doc = typed(&fields, "doc")
            .map_err(corrupt)?
            .ok_or_else(|| corrupt("no doc".into()))?;
        let history = history
            .iter()
            .map(|h| serde_json::from_str(h).map_err(|e| corrupt(format!("history: {e}"))))
            .collect::<Result<_, _>>()?;
        let number =
            |name: &str| -> i64 { fields.get(name).and_then(|v| v.parse().ok()).unwrap_or(0) };
        Ok(Some(Payment {
            status: parse_status(&key, fields.get("status").map(String::as_str).unwrap_or(""))?,
            pg_token: fields
                .get("pg_token")
                .and_then(|t| PgToken::parse(t.as_str()).ok()),
            approval: typed(&fields, "approval").map_err(corrupt)?,
            failure: typed(&fields, "failure").map_err(corrupt)?,
            refunded: number("refunded"),
            refunded_tax_free: number("refunded_tax_free"),
            refunded_vat: number("refunded_vat"),
            approval_runs: fields
                .get("approval_runs")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            refund_lock: fields.get("refund_lock").filter(|l| !l.is_empty()).cloned(),
            ..Payment::from_doc(
                doc,
                fields.get("updated_at").cloned().unwrap_or_default(),
                history,
            )
        }))
    }

    /// The payment as an approval run reads it, counting the run in the same step: a run that
    /// sees an earlier one began asks the order inquiry before approving, whatever the queue's
    /// attempt counter says (an operator's retry or a shutdown's hand-back reset it). Answers
    /// how long an earlier run's calls may still be under way (a lease that lapsed mid-call);
    /// if none may, marks that this run's calls may take `longest` (a run that must wait marks
    /// its own with [`Store::approval_calls`] when it is done waiting, so that a waiter that
    /// dies pushes nobody's wait further).
    pub async fn payment_for_approval(
        &self,
        id: &str,
        longest: Duration,
    ) -> Result<Option<ApprovalRun>, StoreError> {
        let (fields, earlier_ms, deadline): (HashMap<String, String>, i64, i64) = APPROVAL_RUN
            .key(self.payment_key(id))
            .arg(longest.as_millis() as u64)
            .run(&self.conn)
            .await?;
        Ok(self
            .parse_payment(id, fields, &[])?
            .map(|payment| ApprovalRun {
                payment,
                earlier_in_flight: Duration::from_millis(earlier_ms.max(0) as u64),
                deadline,
            }))
    }

    /// Marks that `run`'s calls, starting now, may take `longest`.
    pub async fn approval_calls(
        &self,
        run: &mut ApprovalRun,
        longest: Duration,
    ) -> Result<(), StoreError> {
        run.deadline = APPROVAL_CALLS
            .key(self.payment_key(&run.payment.payment_id))
            .arg(longest.as_millis() as u64)
            .run(&self.conn)
            .await?;
        Ok(())
    }

    /// This approval run's calls have all come back: a later run need not wait for them.
    pub async fn approval_calls_ended(&self, run: &ApprovalRun) -> Result<(), StoreError> {
        let _: i64 = HDEL_IF
            .key(self.payment_key(&run.payment.payment_id))
            .arg("approve_deadline_ms")
            .arg(run.deadline)
            .run(&self.conn)
            .await?;
        Ok(())
    }

    /// The payment holding an order, if any.
    pub async fn order_holder(
        &self,
        location: &str,
        order: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(redis::cmd("GET")
            .arg(self.order_key(location, order))
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Applies a status change atomically with its history entry.
    pub async fn transition(
        &self,
        id: &str,
        t: Transition,
    ) -> Result<TransitionOutcome, StoreError> {
        let answer: (String, String) = self.transition_invocation(id, &t).run(&self.conn).await?;
        self.transition_outcome(id, answer)
    }

    fn transition_invocation(&self, id: &str, t: &Transition) -> Invocation<'static> {
        let (keys, args) = self.transition_call(id, t);
        let mut inv = TRANSITION.prepare_invoke();
        for key in &keys {
            inv.key(key);
        }
        for arg in &args {
            inv.arg(arg);
        }
        inv
    }

    /// `read` (of the payment's record) and a transition of the payment, in one round trip;
    /// with `approval` the payment's approval job too, where one script may do both and the
    /// transition leaves the payment `approving` (answered when it was enqueued).
    async fn read_and_transition<R: redis::FromRedisValue>(
        &self,
        read: redis::Cmd,
        id: &str,
        t: &Transition,
        approval: Option<&PreparedJob>,
    ) -> Result<(R, (String, String), Option<Enqueued>), StoreError> {
        let transition = self.transition_invocation(id, t);
        let combined = approval.and_then(|job| {
            let call = TRANSITION_THEN_APPROVE.invocation(&self.conn, &transition, job)?;
            Some((job, call))
        });
        let call = combined.as_ref().map_or(&transition, |(_, call)| call);
        let mut pipe = redis::pipe();
        pipe.add_command(read).add_command(call.cmd());
        let sent: redis::RedisResult<(R, redis::Value)> = self.conn.write(&pipe).await;
        let (read, answer) = match sent {
            // Redis does not know the script yet (a restart, a flush, a promoted replica):
            // nothing ran, so load it and send the pair again.
            Err(e) if e.code() == Some("NOSCRIPT") => {
                call.load(&self.conn).await?;
                self.conn.write(&pipe).await?
            }
            other => other?,
        };
        let (answer, enqueued) = match &combined {
            Some((job, _)) => TRANSITION_THEN_APPROVE.answer(answer, job)?,
            None => (answer, None),
        };
        let answer =
            redis::FromRedisValue::from_redis_value(answer).map_err(redis::RedisError::from)?;
        Ok((read, answer, enqueued))
    }

    /// The payment as it was (without its history) and a transition of it, in one round trip:
    /// what a member's cancel or failure needs, to announce it.
    pub async fn payment_and_transition(
        &self,
        id: &str,
        t: Transition,
    ) -> Result<(Option<Payment>, TransitionOutcome), StoreError> {
        let read = redis::cmd("HGETALL").arg(self.payment_key(id)).clone();
        let (fields, answer, _): (HashMap<String, String>, _, _) =
            self.read_and_transition(read, id, &t, None).await?;
        Ok((
            self.parse_payment(id, fields, &[])?,
            self.transition_outcome(id, answer)?,
        ))
    }

    /// Where the member goes back to (the payment's `return_url`, `None` without one; the
    /// outcome is `Missing` when no payment is stored under `id`) and a transition of the
    /// payment, in one round trip: what an approval callback needs, with its approval job,
    /// enqueued in the same step where it can be (answered when it was; otherwise the
    /// caller enqueues it). Only the record's document is read, and of it only that URL is
    /// parsed, since a member's browser arriving back from KakaoPay is the busiest request
    /// there is.
    pub async fn return_url_and_transition(
        &self,
        id: &str,
        t: Transition,
        approval: &PreparedJob,
    ) -> Result<(Option<String>, TransitionOutcome, Option<Enqueued>), StoreError> {
        let key = self.payment_key(id);
        let read = redis::cmd("HGET").arg(&key).arg("doc").clone();
        let (doc, answer, enqueued): (Option<String>, _, _) = self
            .read_and_transition(read, id, &t, Some(approval))
            .await?;
        let outcome = self.transition_outcome(id, answer)?;
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.clone(),
            reason,
        };
        let return_url = match (doc, &outcome) {
            (None, TransitionOutcome::Missing) => None,
            // The script found a record to move: one without its document is broken.
            (None, _) => return Err(corrupt("no doc".into())),
            (Some(doc), _) => return_url_of(&doc).map_err(|e| corrupt(format!("doc: {e}")))?,
        };
        Ok((return_url, outcome, enqueued))
    }

    /// The keys and arguments of the transition script.
    fn transition_call(&self, id: &str, t: &Transition) -> (Vec<String>, Vec<String>) {
        debug_assert!(t.from.iter().all(|f| f.can_move_to(t.to)), "{t:?}");
        let from: Vec<&str> = t.from.iter().map(|s| s.as_str()).collect();
        let shard = Shard::of_id(id);
        let keys = vec![
            self.payment_key(id),
            self.history_key(id),
            self.status_index_key(shard, PaymentStatus::Ready),
            self.status_index_key(shard, PaymentStatus::Approving),
        ];
        let mut args = vec![
            id.to_string(),
            from.join(" "),
            t.to.as_str().to_string(),
            now_rfc3339(),
            chrono::Utc::now().timestamp_millis().to_string(),
            t.cause.clone(),
        ];
        if let Some(token) = &t.pg_token {
            args.extend(["pg_token".to_string(), token.to_string()]);
        }
        if let Some(a) = &t.approval {
            args.extend([
                "approval".to_string(),
                serde_json::to_string(a).expect("approvals serialize"),
            ]);
            // A failure recorded before KakaoPay proved the approval no longer stands.
            if t.failure.is_none() {
                args.extend(["failure".to_string(), String::new()]);
            }
        }
        if let Some(f) = &t.failure {
            args.extend([
                "failure".to_string(),
                serde_json::to_string(f).expect("failures serialize"),
            ]);
        }
        (keys, args)
    }

    fn transition_outcome(
        &self,
        id: &str,
        (outcome, status): (String, String),
    ) -> Result<TransitionOutcome, StoreError> {
        Ok(match outcome.as_str() {
            "ok" => TransitionOutcome::Applied,
            "refused" => TransitionOutcome::Refused(parse_status(&self.payment_key(id), &status)?),
            _ => TransitionOutcome::Missing,
        })
    }

    fn due_key(&self, index: Due, shard: Shard) -> String {
        match index {
            Due::Ready => self.status_index_key(shard, PaymentStatus::Ready),
            Due::Approving => self.status_index_key(shard, PaymentStatus::Approving),
            Due::OpenRefunds => self.open_refunds_key(shard),
        }
    }

    /// A page of one shard's `index`: the ids that entered it before `before_ms`, oldest
    /// first, from the `offset`-th on.
    pub async fn due(
        &self,
        index: Due,
        shard: Shard,
        before_ms: i64,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        Ok(redis::cmd("ZRANGEBYSCORE")
            .arg(self.due_key(index, shard))
            .arg("-inf")
            .arg(before_ms)
            .arg("LIMIT")
            .arg(offset)
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// How many of `ids` are still in `index` (those settled meanwhile have left it).
    pub async fn still_due(
        &self,
        index: Due,
        shard: Shard,
        ids: &[String],
    ) -> Result<usize, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let scores: Vec<Option<f64>> = redis::cmd("ZMSCORE")
            .arg(self.due_key(index, shard))
            .arg(ids)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(scores.iter().filter(|s| s.is_some()).count())
    }

    /// Drops an entry of `index` whose record is gone or final (a repair: it needs nothing
    /// more).
    pub async fn forget_due(&self, index: Due, id: &str) -> Result<(), StoreError> {
        let zrem = redis::pipe()
            .cmd("ZREM")
            .arg(self.due_key(index, Shard::of_id(id)))
            .arg(id)
            .to_owned();
        let _: (i64,) = self.conn.write(&zrem).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A release before typed aids reads `aid` as a string: writing `null` would make it take
    /// the record for corrupt during a rolling deploy or a rollback.
    #[test]
    fn an_approval_without_an_aid_is_written_as_every_release_reads_it() {
        let approval = Approval {
            aid: None,
            payment_method_type: None,
            amount: Amount::default(),
            approved_at: None,
        };
        let json = serde_json::to_value(&approval).unwrap();
        assert_eq!(json["aid"], "");
        let back: Approval = serde_json::from_value(json).unwrap();
        assert_eq!(back, approval);
        let with: Approval = serde_json::from_value(
            serde_json::json!({"aid": "A53d1b3534b976a88b68", "amount": {}}),
        )
        .unwrap();
        assert_eq!(with.aid.as_deref(), Some("A53d1b3534b976a88b68"));
    }
}
