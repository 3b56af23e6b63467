//! Refund records and the payment's side of them.
//!
//! One refund at a time per payment: a refund takes the payment's `refund_lock` before it is
//! decided and keeps it until it has succeeded, failed or moved no money. The decision is made
//! under the lock from the amounts the lock protects, so two concurrent full refunds cannot
//! both pass. Every change is one script with its history entries.
//!
//! Each run of a refund's job takes the lock with a token of its own (`run`): a run whose lease
//! lapsed while another took over can still record a success KakaoPay proves, but nothing
//! else. The decision is recorded once, before the first cancel is sent, and every later run
//! reuses it: settings changed between two attempts cannot change what was asked of KakaoPay.

use super::{now_rfc3339, Failure, HistoryEntry, Payment, Shard, Store, StoreError};
use crate::domain::{Aid, LocationId, PaymentId, PaymentStatus, RefundId, RefundStatus};
use kakaopay_jobs::queue::{Connection, Enqueued, Invocation, PreparedJob, Script, ThenEnqueue};
use kakaopay_jobs::RefundRequest;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RefundDoc {
    refund_id: RefundId,
    payment_id: PaymentId,
    idempotency_key: String,
    request: RefundRequest,
    /// `http` or `job` (enqueued straight into Redis).
    source: String,
    created_at: String,
}

impl RefundDoc {
    /// The refund as it stands when just requested; its record fills in the rest.
    fn into_queued(self, updated_at: String, history: Vec<HistoryEntry>) -> Refund {
        Refund {
            refund_id: self.refund_id,
            payment_id: self.payment_id,
            idempotency_key: self.idempotency_key,
            request: self.request,
            source: self.source,
            created_at: self.created_at,
            status: RefundStatus::Queued,
            amount: 0,
            tax_free_amount: 0,
            rule: None,
            aid: None,
            failure: None,
            updated_at,
            history,
            decided: None,
            run: String::new(),
            review: None,
        }
    }
}

/// What the rules decided, recorded before the first cancel is sent, with the payment's
/// refunded amounts it was decided on (what tells, from the order inquiry's amounts, whether
/// this refund happened).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    pub amount: i64,
    pub tax_free: i64,
    /// `cancel_vat_amount`, when the payment had an explicit VAT.
    #[serde(default)]
    pub vat: Option<i64>,
    pub rule: String,
    /// What was left to refund before this refund (`cancel_available_amount`).
    pub available: i64,
    /// Refunded before this refund, as we had recorded it.
    pub refunded_before: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refund {
    pub refund_id: RefundId,
    pub payment_id: PaymentId,
    pub idempotency_key: String,
    pub request: RefundRequest,
    pub source: String,
    pub created_at: String,
    pub status: RefundStatus,
    pub amount: i64,
    pub tax_free_amount: i64,
    pub rule: Option<String>,
    pub aid: Option<Aid>,
    pub failure: Option<Failure>,
    pub updated_at: String,
    pub history: Vec<HistoryEntry>,
    /// The decision, once recorded: a cancel may have been sent from then on.
    pub decided: Option<Decided>,
    /// The token of the run that holds the refund (empty before any run).
    pub run: String,
    /// An operator's review of it (approved or dismissed), once made.
    pub review: Option<super::Review>,
}

/// The `cancel_payment` job of a refund about to be stored, and how it is enqueued (as
/// [`Refund::insert_opts`] says for a refund without a review).
pub fn new_refund_job(
    refund_id: &RefundId,
    payment_id: &PaymentId,
    idempotency_key: &str,
    request: &RefundRequest,
) -> (
    kakaopay_jobs::CancelPayment,
    kakaopay_jobs::queue::EnqueueOptions,
) {
    let job = kakaopay_jobs::CancelPayment {
        payment_id: payment_id.to_string(),
        refund_id: refund_id.to_string(),
        idempotency_key: idempotency_key.to_string(),
        request: request.clone(),
    };
    let options =
        kakaopay_jobs::queue::EnqueueOptions::with_id(kakaopay_jobs::refunds::job_id(refund_id));
    (job, options)
}

/// What a refund request is decided on, of its payment: read from the record's fields (its
/// location has one of its own, written with the document by `CREATE` and never rewritten)
/// and only the approved total of its approval, since refund requests are a busy path.
#[derive(Debug, Clone, PartialEq)]
pub struct RefundTarget {
    pub status: PaymentStatus,
    /// The approved total, once approved.
    pub approved: Option<i64>,
    pub refunded: i64,
    pub location_id: LocationId,
}

/// A payment's `status`, `approval`, `refunded` and `location_id` fields, as HMGET answers.
type TargetFields = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl RefundTarget {
    const FIELDS: [&'static str; 4] = ["status", "approval", "refunded", "location_id"];

    /// From the record's [`RefundTarget::FIELDS`], the length of its `doc` (0: none), and the
    /// doc itself when the record has no `location_id` (stored by an earlier release); `None`
    /// when no payment is stored. A record without its status or its doc is broken, as the
    /// full read finds it: a refund accepted for it could never be decided.
    fn parse(
        key: &str,
        (status, approval, refunded, location): TargetFields,
        doc_len: i64,
        doc: Option<String>,
    ) -> Result<Option<RefundTarget>, StoreError> {
        #[derive(Deserialize)]
        struct Approval {
            amount: crate::kakaopay::Amount,
        }
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.to_string(),
            reason,
        };
        let Some(status) = status else {
            // No record at all, or one without its status.
            return match (approval, refunded, location, doc_len) {
                (None, None, None, 0) => Ok(None),
                _ => Err(corrupt("no status".into())),
            };
        };
        if doc_len == 0 {
            return Err(corrupt("no doc".into()));
        }
        let location_id = match location {
            Some(id) => {
                LocationId::try_from(id).map_err(|e| corrupt(format!("location_id: {e}")))?
            }
            None => location_of_doc(doc).map_err(corrupt)?,
        };
        let approved = match approval.filter(|a| !a.is_empty()) {
            Some(a) => {
                let a: Approval =
                    serde_json::from_str(&a).map_err(|e| corrupt(format!("approval: {e}")))?;
                Some(a.amount.total)
            }
            None => None,
        };
        Ok(Some(RefundTarget {
            status: super::payments::parse_status(key, &status)?,
            approved,
            refunded: refunded.and_then(|r| r.parse().ok()).unwrap_or(0),
            location_id,
        }))
    }
}

/// The location in a payment's document (`request.location_id`).
fn location_of_doc(doc: Option<String>) -> Result<LocationId, String> {
    #[derive(Deserialize)]
    struct Doc {
        request: Request,
    }
    #[derive(Deserialize)]
    struct Request {
        location_id: LocationId,
    }
    let doc = doc.ok_or("no doc")?;
    let doc: Doc = serde_json::from_str(&doc).map_err(|e| format!("doc: {e}"))?;
    Ok(doc.request.location_id)
}

impl Refund {
    /// Its `cancel_payment` job, enqueued with [`Refund::insert_opts`].
    pub fn job(&self) -> kakaopay_jobs::CancelPayment {
        let (job, _) = new_refund_job(
            &self.refund_id,
            &self.payment_id,
            &self.idempotency_key,
            &self.request,
        );
        job
    }

    /// The id of the `cancel_payment` job that runs it now. An approved review runs under an
    /// id of its own: the first job (which left it to a person) is done, and enqueuing under
    /// its id again would be taken for a duplicate.
    pub fn job_id(&self) -> String {
        match &self.review {
            Some(r) if r.action == super::ReviewAction::Approve => {
                kakaopay_jobs::refunds::review_job_id(&self.refund_id, r.round)
            }
            _ => kakaopay_jobs::refunds::job_id(&self.refund_id),
        }
    }

    /// How its job is enqueued now: under [`Refund::job_id`].
    pub fn insert_opts(&self) -> kakaopay_jobs::queue::EnqueueOptions {
        kakaopay_jobs::queue::EnqueueOptions::with_id(self.job_id())
    }

    /// Whether another refund of its payment holds the lock (`lock` read from the payment).
    pub fn blocked_by(&self, lock: Option<&str>) -> bool {
        lock.is_some_and(|l| !l.is_empty() && l != self.refund_id.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    Created(Refund),
    /// A refund with this id exists already (the same idempotency key).
    Exists(Refund),
}

/// The payment's refund state, read as this run took the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    /// This run's token: what every later change of the refund by this run names.
    pub run: String,
    pub payment_status: PaymentStatus,
    pub refunded: i64,
    pub refunded_tax_free: i64,
    pub refunded_vat: i64,
    /// The decision of an earlier run, if one was recorded.
    pub decided: Option<Decided>,
    /// How long an earlier run's cancel may still be under way (Redis's clock; zero when
    /// none can be).
    pub in_flight_for: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    Locked(Locked),
    /// Another refund of the payment holds the lock.
    Busy,
    /// The refund is already final.
    Final(RefundStatus),
    Missing,
}

/// What recording a change answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Applied,
    /// Already so (a success recorded twice), or a change this run may no longer make: another
    /// run took the refund over, or it is final.
    Unchanged,
}

/// What recording a success KakaoPay proved answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Success {
    Recorded,
    AlreadyRecorded,
    /// The refund was closed without money (rejected, manual review, dismissed) although
    /// KakaoPay shows it paid: left for an operator, never overwritten silently.
    Contradicted(RefundStatus),
}

/// Milliseconds on Redis's clock, inside a script.
const NOW_MS: &str =
    "local t = redis.call('TIME')\nlocal now_ms = t[1] * 1000 + math.floor(t[2] / 1000)\n";

fn script(body: &str) -> Script {
    Script::new(&format!("{NOW_MS}{body}"))
}

/// KEYS: refund, refund history, payment's refunds list, location's refunds, open refunds,
/// the shard's refunds. ARGV: refund id, doc, now, history. Every key's type is checked before
/// the first write: a script that fails midway keeps what it wrote, and a refund half stored
/// is worse than none. Answers 1 (stored) or 0 (one with its id exists), then (dropped when
/// run alone) whether its job is to be enqueued, in [`CREATE_THEN_ENQUEUE`].
static CREATE_LUA: LazyLock<String> = LazyLock::new(|| format!("{NOW_MS}{CREATE_BODY}"));

const CREATE_BODY: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local kinds = {'hash', 'list', 'list', 'zset', 'zset', 'zset'}
for i, kind in ipairs(kinds) do
  local t = redis.call('TYPE', KEYS[i])['ok']
  if t ~= 'none' and t ~= kind then return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. t) end
end
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'status', 'queued', 'amount', 0, 'tax_free_amount', 0, 'updated_at', ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], now_ms, ARGV[1])
redis.call('ZADD', KEYS[5], now_ms, ARGV[1])
redis.call('ZADD', KEYS[6], now_ms, ARGV[1])
return 1, true
"#;

/// A refund request decided and stored in one step, for the plain case only: a payment
/// approved or partially refunded whose approved total (its approval's `amount.total`) less
/// its `refunded` leaves the amount asked (ARGV[7], '' for all that is left), and no refund of
/// that key. That is `refunds::refundable`'s rule where it allows; every other case (no
/// payment, a refund of that key, a refusal, anything the two-step read would find broken or
/// is not sure to read alike) answers 0 and is read and decided in Rust, in two steps, as every
/// request once was. So this may only ever refuse what the rule would allow, never the reverse
/// (`tests/api/money_paths.rs`, `the_one_step_refund_request_takes_only_what_the_rule_allows`).
/// The approval's amounts must each be what `lenient::int` reads (an integer, or a string of
/// one); cjson cannot tell `1.0` from `1`, which only a hand edit writes.
///
/// It names the location's refunds from the payment's location (its `location_id`, or its
/// document's for a payment of an earlier release), a key it is not given: so it runs only
/// where one script reaches every key (one server, Sentinel), with its job, through
/// [`REQUEST_THEN_ENQUEUE`]. KEYS: payment, refund, refund alias, refund history, payment's
/// refunds, open refunds, shard's refunds. ARGV: `CREATE`'s four, the location key's prefix and
/// suffix, the amount asked.
static REQUEST_LUA: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{NOW_MS}local function create(KEYS, ARGV)\n{CREATE_BODY}\nend\n{}",
        r#"
local p = redis.call('HMGET', KEYS[1], 'status', 'approval', 'refunded', 'location_id')
local status, approval, refunded, location = p[1], p[2], p[3] or '0', p[4]
local function digits(v) return type(v) == 'string' and #v <= 15 and string.match(v, '^%d+$') ~= nil end
-- An amount as `lenient::int` reads it, within what a double holds exactly; nil if not one.
local function int(v)
  if v == nil or v == cjson.null then return 0 end
  if type(v) == 'number' and v == math.floor(v) and math.abs(v) < 1e15 then return v end
  if type(v) == 'string' and #v <= 16 and string.match(v, '^%-?%d+$') then return tonumber(v) end
  return nil
end
local function decoded(json)
  if not json or json == '' then return nil end
  local ok, v = pcall(cjson.decode, json)
  if ok and type(v) == 'table' then return v end
  return nil
end
if status ~= 'approved' and status ~= 'partially_refunded' then return 0 end
if not digits(refunded) then return 0 end
local a = decoded(approval)
if not (a and type(a.amount) == 'table') then return 0 end
for _, field in ipairs({'total', 'tax_free', 'vat', 'point', 'discount', 'green_deposit'}) do
  if int(a.amount[field]) == nil then return 0 end
end
local total = int(a.amount.total)
if redis.call('HSTRLEN', KEYS[1], 'doc') == 0 then return 0 end
if not location then
  local d = decoded(redis.call('HGET', KEYS[1], 'doc'))
  location = d and type(d.request) == 'table' and d.request.location_id
end
if not (type(location) == 'string' and #location <= 100 and string.match(location, '^[%w_%-%.]+$')) then
  return 0
end
if redis.call('EXISTS', KEYS[2], KEYS[3]) > 0 then return 0 end
local left = total - tonumber(refunded)
local asked = ARGV[7]
if left <= 0 or (asked ~= '' and not (digits(asked) and tonumber(asked) <= left)) then return 0 end
return create({KEYS[2], KEYS[4], KEYS[5], ARGV[5] .. location .. ARGV[6], KEYS[6], KEYS[7]}, ARGV)
"#
    )
});

/// What the one-step call is built from (its keys and arguments): never run alone.
static REQUEST: LazyLock<Script> = LazyLock::new(|| Script::new(&REQUEST_LUA));

static REQUEST_THEN_ENQUEUE: LazyLock<ThenEnqueue> =
    LazyLock::new(|| ThenEnqueue::new(&REQUEST_LUA));

static CREATE: LazyLock<Script> = LazyLock::new(|| Script::new(&CREATE_LUA));

/// A new refund stored with its job enqueued, in one step where Redis allows it.
static CREATE_THEN_ENQUEUE: LazyLock<ThenEnqueue> = LazyLock::new(|| ThenEnqueue::new(&CREATE_LUA));

pub(super) async fn load_hot_scripts(conn: &Connection) -> redis::RedisResult<()> {
    CREATE.load(conn).await?;
    CREATE_THEN_ENQUEUE.load(conn).await?;
    REQUEST_THEN_ENQUEUE.load(conn).await
}

/// KEYS: payment, refund, refund history, open refunds. ARGV: refund id, now, run token, the
/// job's id (named in the history).
/// (Indexing the refund as open here too covers refunds stored by an earlier release.)
static BEGIN: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local status = redis.call('HGET', KEYS[2], 'status')
if not status then return {'missing'} end
if status ~= 'queued' and status ~= 'processing' then return {'final', status} end
local pay = redis.call('HMGET', KEYS[1], 'status', 'refund_lock', 'refunded', 'refunded_tax_free', 'refunded_vat')
if not pay[1] then return {'missing'} end
if pay[2] and pay[2] ~= '' and pay[2] ~= ARGV[1] then return {'busy'} end
redis.call('HSET', KEYS[1], 'refund_lock', ARGV[1])
redis.call('HSET', KEYS[2], 'run', ARGV[3])
redis.call('ZADD', KEYS[4], 'NX', now_ms, ARGV[1])
if status == 'queued' then
  redis.call('HSET', KEYS[2], 'status', 'processing', 'updated_at', ARGV[2])
  redis.call('RPUSH', KEYS[3], cjson.encode({at = ARGV[2], from = 'queued', to = 'processing', cause = 'a worker took the refund (job ' .. ARGV[4] .. ')'}))
end
local r = redis.call('HMGET', KEYS[2], 'decided', 'send_deadline_ms')
local wait = 0
if r[2] then wait = math.max(0, tonumber(r[2]) - now_ms) end
return {'ok', pay[1], pay[3] or '0', pay[4] or '0', pay[5] or '0', r[1] or '', tostring(wait)}
"#,
    )
});

/// Records the decision (once, with its history entry) and until when the cancel about to be
/// sent may be under way. KEYS: refund, refund history. ARGV: run token, decision json, now,
/// cause, amount, tax free, rule, the call's longest time in ms. Answers the decision in
/// force (an earlier run's, if one was recorded).
static SENDING: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local r = redis.call('HMGET', KEYS[1], 'status', 'run', 'decided')
if r[1] ~= 'processing' or r[2] ~= ARGV[1] then return {'stale'} end
local decided = r[3]
if not decided then
  decided = ARGV[2]
  redis.call('HSET', KEYS[1], 'decided', decided, 'amount', ARGV[5], 'tax_free_amount', ARGV[6], 'rule', ARGV[7], 'updated_at', ARGV[3])
  redis.call('RPUSH', KEYS[2], cjson.encode({at = ARGV[3], from = 'processing', to = 'processing', cause = ARGV[4]}))
end
redis.call('HSET', KEYS[1], 'send_deadline_ms', now_ms + tonumber(ARGV[8]))
return {'ok', decided}
"#,
    )
});

/// A cancel came back with an answer: it is no longer under way. KEYS: refund. ARGV: run.
static CALL_ENDED: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('HGET', KEYS[1], 'run') == ARGV[1] then return redis.call('HDEL', KEYS[1], 'send_deadline_ms') end
return 0
"#,
    )
});

/// Ends a refund that moves no (more) money, if `run` still holds it (and, with a `margin`,
/// only once that long has passed since a cancel of it could last have been under way). KEYS:
/// payment, refund, refund history, open refunds, the shard's review index (a refund left to
/// a person joins it in the same step). ARGV: refund id, status, rule, failure json, now,
/// cause, run, margin ms ('' for none).
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local r = redis.call('HMGET', KEYS[2], 'status', 'run', 'send_deadline_ms')
local status = r[1]
if status ~= 'queued' and status ~= 'processing' then return 0 end
if (r[2] or '') ~= ARGV[7] then return 0 end
if ARGV[8] ~= '' and r[3] and now_ms < tonumber(r[3]) + tonumber(ARGV[8]) then return 0 end
redis.call('HSET', KEYS[2], 'status', ARGV[2], 'rule', ARGV[3], 'failure', ARGV[4], 'updated_at', ARGV[5])
redis.call('RPUSH', KEYS[3], cjson.encode({at = ARGV[5], from = status, to = ARGV[2], cause = ARGV[6]}))
if redis.call('HGET', KEYS[1], 'refund_lock') == ARGV[1] then redis.call('HSET', KEYS[1], 'refund_lock', '') end
redis.call('ZREM', KEYS[4], ARGV[1])
if ARGV[2] == 'manual_review' then redis.call('ZADD', KEYS[5], now_ms, ARGV[1]) end
return 1
"#,
    )
});

/// Records a refund KakaoPay made, whichever run proves it: from `processing`, or from `failed`
/// (a success proven after the refund was given up, by KakaoPay's answer or the refund's own
/// payload: amounts alone could be another refund's). KEYS: payment, payment history, refund,
/// refund history, open refunds. ARGV: refund id, amount, tax free, vat, aid, approved total,
/// now, cause, '1' when proven by amounts alone.
static SUCCEED: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local status = redis.call('HGET', KEYS[3], 'status')
if status == 'succeeded' then return {'already', status} end
if status ~= 'processing' and not (status == 'failed' and ARGV[9] ~= '1') then return {'contradicted', status or ''} end
local refunded = redis.call('HINCRBY', KEYS[1], 'refunded', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'refunded_tax_free', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'refunded_vat', ARGV[4])
local from = redis.call('HGET', KEYS[1], 'status')
local to = 'partially_refunded'
if refunded >= tonumber(ARGV[6]) then to = 'refunded' end
redis.call('HSET', KEYS[1], 'status', to, 'updated_at', ARGV[7])
if redis.call('HGET', KEYS[1], 'refund_lock') == ARGV[1] then redis.call('HSET', KEYS[1], 'refund_lock', '') end
redis.call('RPUSH', KEYS[2], cjson.encode({at = ARGV[7], from = from, to = to, cause = 'refund ' .. ARGV[1] .. ' of ' .. ARGV[2] .. ' won succeeded'}))
redis.call('HSET', KEYS[3], 'status', 'succeeded', 'amount', ARGV[2], 'tax_free_amount', ARGV[3], 'aid', ARGV[5], 'failure', '', 'updated_at', ARGV[7])
redis.call('RPUSH', KEYS[4], cjson.encode({at = ARGV[7], from = status, to = 'succeeded', cause = ARGV[8]}))
redis.call('ZREM', KEYS[5], ARGV[1])
return {'ok', status}
"#,
    )
});

pub(super) fn parse<T: serde::de::DeserializeOwned>(
    key: &str,
    v: serde_json::Value,
) -> Result<T, StoreError> {
    serde_json::from_value(v).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

impl Store {
    /// Stores a new refund `queued`, unless one with its id exists.
    pub async fn create_refund(
        &self,
        refund_id: &RefundId,
        payment_id: &PaymentId,
        location_id: &str,
        idempotency_key: &str,
        request: &RefundRequest,
        source: &str,
    ) -> Result<Created, StoreError> {
        let ids = (refund_id, payment_id, location_id, idempotency_key);
        self.create_refund_by(ids, request, source, None).await
    }

    /// [`Store::create_refund`], recording the operator who asked (`by`) in its history.
    /// `ids`: refund, payment, location, idempotency key.
    pub async fn create_refund_by(
        &self,
        ids: (&RefundId, &PaymentId, &str, &str),
        request: &RefundRequest,
        source: &str,
        by: Option<&str>,
    ) -> Result<Created, StoreError> {
        let (created, _) = self
            .create_refund_with(ids, request, source, by, None)
            .await?;
        Ok(created)
    }

    /// [`Store::create_refund_by`] with the refund's job (see [`Refund::job`]), enqueued in
    /// the same step where Redis allows it: answered when it was, else the caller enqueues it.
    pub async fn create_refund_with(
        &self,
        (refund_id, payment_id, location_id, idempotency_key): (&RefundId, &PaymentId, &str, &str),
        request: &RefundRequest,
        source: &str,
        by: Option<&str>,
        job: Option<&PreparedJob>,
    ) -> Result<(Created, Option<Enqueued>), StoreError> {
        let ids = (refund_id, payment_id, idempotency_key);
        let (doc, history_entry, shard) = self.new_records(ids, request, source, by)?;
        let now = doc.created_at.clone();
        let mut create = CREATE.key(self.refund_key(refund_id));
        create
            .key(self.refund_history_key(refund_id))
            .key(self.payment_refunds_key(payment_id))
            .key(self.location_refunds_key(shard, location_id))
            .key(self.open_refunds_key(shard))
            .key(self.all_refunds_key(shard))
            .arg(refund_id.as_str())
            .arg(serde_json::to_string(&doc).expect("docs serialize"))
            .arg(&now)
            .arg(serde_json::to_string(&history_entry).expect("history serializes"));
        let (created, enqueued) = self.run_create(&create, job).await?;
        if created == 1 {
            // Answered from what was written, not read back: once stored, the answer must not
            // depend on a second round trip that could fail.
            let refund = doc.into_queued(now, vec![history_entry]);
            return Ok((Created::Created(refund), enqueued));
        }
        let refund = self
            .refund_state(refund_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                key: self.refund_key(refund_id),
                reason: "vanished right after it was found".into(),
            })?;
        Ok((Created::Exists(refund), None))
    }

    /// A refund request decided and stored with its job in one step, where Redis allows it and
    /// the payment's own fields make it plain that the rule allows it (see [`REQUEST_LUA`]):
    /// the refund as stored, and its job as enqueued when it was. `None` for every other case,
    /// which the caller reads and decides in two steps ([`Store::refund_target_and_refund`],
    /// [`Store::create_refund_with`]).
    pub async fn request_refund(
        &self,
        (refund_id, payment_id, idempotency_key): (&RefundId, &PaymentId, &str),
        request: &RefundRequest,
        by: Option<&str>,
        job: &PreparedJob,
    ) -> Result<Option<(Refund, Option<Enqueued>)>, StoreError> {
        if !ThenEnqueue::applies(&self.conn) {
            return Ok(None);
        }
        let ids = (refund_id, payment_id, idempotency_key);
        let (doc, history_entry, shard) = self.new_records(ids, request, "http", by)?;
        let (before, after) = self.location_refunds_affixes(shard);
        let mut call = REQUEST.key(self.payment_key(payment_id));
        call.key(self.refund_key(refund_id))
            .key(self.refund_alias_key(refund_id))
            .key(self.refund_history_key(refund_id))
            .key(self.payment_refunds_key(payment_id))
            .key(self.open_refunds_key(shard))
            .key(self.all_refunds_key(shard))
            .arg(refund_id.as_str())
            .arg(serde_json::to_string(&doc).expect("docs serialize"))
            .arg(&doc.created_at)
            .arg(serde_json::to_string(&history_entry).expect("history serializes"))
            .arg(before)
            .arg(after)
            .arg(request.amount.map(|a| a.to_string()).unwrap_or_default());
        let Some((answer, enqueued)) = REQUEST_THEN_ENQUEUE.run(&self.conn, &call, job).await?
        else {
            return Ok(None);
        };
        let stored: i64 =
            redis::FromRedisValue::from_redis_value(answer).map_err(redis::RedisError::from)?;
        if stored != 1 {
            return Ok(None);
        }
        let now = doc.created_at.clone();
        Ok(Some((doc.into_queued(now, vec![history_entry]), enqueued)))
    }

    /// A new refund's document and first history entry, and its shard (its payment's).
    fn new_records(
        &self,
        (refund_id, payment_id, idempotency_key): (&RefundId, &PaymentId, &str),
        request: &RefundRequest,
        source: &str,
        by: Option<&str>,
    ) -> Result<(RefundDoc, HistoryEntry, Shard), StoreError> {
        let now = now_rfc3339();
        let history_entry = HistoryEntry {
            at: now.clone(),
            from: None,
            to: RefundStatus::Queued.to_string(),
            cause: format!("requested by {} ({})", request.requested_by, source),
            by: by.map(str::to_string),
            note: None,
        };
        let doc = RefundDoc {
            refund_id: refund_id.clone(),
            payment_id: payment_id.clone(),
            idempotency_key: idempotency_key.to_string(),
            request: request.clone(),
            source: source.to_string(),
            created_at: now,
        };
        let shard = Shard::of_id(payment_id);
        if Shard::of_id(refund_id) != shard {
            return Err(StoreError::Corrupt {
                key: self.refund_key(refund_id),
                reason: format!("refund id {refund_id} is not of payment {payment_id}'s shard"),
            });
        }
        Ok((doc, history_entry, shard))
    }

    /// Runs `CREATE`, with `job`'s enqueue in the same script where Redis allows it.
    async fn run_create(
        &self,
        create: &Invocation<'_>,
        job: Option<&PreparedJob>,
    ) -> Result<(i64, Option<Enqueued>), StoreError> {
        let combined = match job {
            Some(job) => CREATE_THEN_ENQUEUE.run(&self.conn, create, job).await?,
            None => None,
        };
        let Some((created, enqueued)) = combined else {
            return Ok((create.run(&self.conn).await?, None));
        };
        let created =
            redis::FromRedisValue::from_redis_value(created).map_err(redis::RedisError::from)?;
        Ok((created, enqueued))
    }

    /// The refund with its history, as the API shows it.
    pub async fn refund(&self, id: &str) -> Result<Option<Refund>, StoreError> {
        type Answer = (HashMap<String, String>, Vec<String>, Option<String>);
        let (fields, history, alias): Answer = redis::pipe()
            .hgetall(self.refund_key(id))
            .lrange(self.refund_history_key(id), 0, -1)
            .get(self.refund_alias_key(id))
            .query_async(&mut self.conn.clone())
            .await?;
        match alias {
            Some(earlier) if fields.is_empty() => Box::pin(self.refund(&earlier)).await,
            _ => self.parse_refund(id, fields, &history),
        }
    }

    /// The refund without its history (left empty), read in one round trip. An id a refund of
    /// the earlier key layout is known by now leads to it (see `migrations`).
    pub async fn refund_state(&self, id: &str) -> Result<Option<Refund>, StoreError> {
        let (fields, alias): (HashMap<String, String>, Option<String>) = redis::pipe()
            .hgetall(self.refund_key(id))
            .get(self.refund_alias_key(id))
            .query_async(&mut self.conn.clone())
            .await?;
        match alias {
            Some(earlier) if fields.is_empty() => Box::pin(self.refund_state(&earlier)).await,
            _ => self.parse_refund(id, fields, &[]),
        }
    }

    /// What a refund request needs of a payment (without the rest of its record) and the
    /// refund its key names, if stored (without its history), in one round trip (two for a
    /// payment stored before payments had a `location_id` field).
    pub async fn refund_target_and_refund(
        &self,
        payment_id: &str,
        refund_id: &str,
    ) -> Result<(Option<RefundTarget>, Option<Refund>), StoreError> {
        type Answer = (TargetFields, i64, HashMap<String, String>, Option<String>);
        let payment_key = self.payment_key(payment_id);
        let (payment, doc_len, refund, alias): Answer = redis::pipe()
            .cmd("HMGET")
            .arg(&payment_key)
            .arg(&RefundTarget::FIELDS)
            // Whether it has its document, without reading it.
            .cmd("HSTRLEN")
            .arg(&payment_key)
            .arg("doc")
            .hgetall(self.refund_key(refund_id))
            .get(self.refund_alias_key(refund_id))
            .query_async(&mut self.conn.clone())
            .await?;
        let doc = match &payment {
            (Some(_), _, _, None) if doc_len > 0 => {
                redis::cmd("HGET")
                    .arg(&payment_key)
                    .arg("doc")
                    .query_async(&mut self.conn.clone())
                    .await?
            }
            _ => None,
        };
        let target = RefundTarget::parse(&payment_key, payment, doc_len, doc)?;
        let refund = match alias.filter(|_| refund.is_empty()) {
            Some(earlier) => self.refund_state(&earlier).await?,
            None => self.parse_refund(refund_id, refund, &[])?,
        };
        Ok((target, refund))
    }

    pub(super) fn parse_refund(
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
        let history = history
            .iter()
            .map(|h| {
                serde_json::from_str(h).map_err(|e| StoreError::Corrupt {
                    key: key.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(Refund {
            status: parse(
                &key,
                serde_json::Value::String(fields.get("status").cloned().unwrap_or_default()),
            )?,
            amount: num("amount"),
            tax_free_amount: num("tax_free_amount"),
            rule: text("rule"),
            aid: text("aid").and_then(|a| Aid::parse(a).ok()),
            failure: json("failure")?.map(|f| parse(&key, f)).transpose()?,
            decided: json("decided")?.map(|d| parse(&key, d)).transpose()?,
            run: text("run").unwrap_or_default(),
            review: json("review")?.map(|r| parse(&key, r)).transpose()?,
            ..doc.into_queued(text("updated_at").unwrap_or_default(), history)
        }))
    }

    /// A payment with its refunds (oldest first), as its page and `GET` show it.
    pub async fn payment_with_refunds(
        &self,
        payment_id: &PaymentId,
    ) -> Result<Option<(Payment, Vec<Refund>)>, StoreError> {
        let Some(payment) = self.payment(payment_id).await? else {
            return Ok(None);
        };
        let refunds = self.refunds_of(payment_id).await?;
        Ok(Some((payment, refunds)))
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

    /// Takes the payment's refund lock for `refund_id` under a new run token (taking the
    /// refund over from an earlier run of it) and moves the refund to `processing`; answers the
    /// payment's refund state under the lock and what earlier runs recorded.
    pub async fn begin_refund(
        &self,
        payment_id: &str,
        refund_id: &str,
        job: &str,
    ) -> Result<Begin, StoreError> {
        let run = format!("{:016x}", rand::random::<u64>());
        let answer: Vec<String> = BEGIN
            .key(self.payment_key(payment_id))
            .key(self.refund_key(refund_id))
            .key(self.refund_history_key(refund_id))
            .key(self.open_refunds_key(Shard::of_id(refund_id)))
            .arg(refund_id)
            .arg(now_rfc3339())
            .arg(&run)
            .arg(job)
            .run(&self.conn)
            .await?;
        let key = self.refund_key(refund_id);
        let num = |i: usize| answer.get(i).and_then(|v| v.parse::<i64>().ok());
        Ok(match answer.first().map(String::as_str) {
            Some("ok") => Begin::Locked(Locked {
                run,
                payment_status: parse(&key, serde_json::Value::String(answer[1].clone()))?,
                refunded: num(2).unwrap_or(0),
                refunded_tax_free: num(3).unwrap_or(0),
                refunded_vat: num(4).unwrap_or(0),
                decided: decided(&key, answer.get(5))?,
                in_flight_for: Duration::from_millis(num(6).unwrap_or(0).max(0) as u64),
            }),
            Some("busy") => Begin::Busy,
            Some("final") => {
                Begin::Final(parse(&key, serde_json::Value::String(answer[1].clone()))?)
            }
            _ => Begin::Missing,
        })
    }

    /// Marks a cancel about to be sent by `run`, taking at most `longest`, recording
    /// `decision` with its history entry unless an earlier run recorded one. Answers the
    /// decision to send (the recorded one), or `None` if `run` no longer holds the refund.
    pub async fn sending_refund(
        &self,
        refund_id: &str,
        run: &str,
        decision: &Decided,
        longest: Duration,
    ) -> Result<Option<Decided>, StoreError> {
        let answer: Vec<String> = SENDING
            .key(self.refund_key(refund_id))
            .key(self.refund_history_key(refund_id))
            .arg(run)
            .arg(serde_json::to_string(decision).expect("decisions serialize"))
            .arg(now_rfc3339())
            .arg(format!(
                "the rules decided {} won ({}); canceling at KakaoPay",
                decision.amount, decision.rule
            ))
            .arg(decision.amount)
            .arg(decision.tax_free)
            .arg(&decision.rule)
            .arg(longest.as_millis() as u64)
            .run(&self.conn)
            .await?;
        match answer.first().map(String::as_str) {
            Some("ok") => decided(&self.refund_key(refund_id), answer.get(1)),
            _ => Ok(None),
        }
    }

    /// The cancel `run` sent came back with an answer: nothing of it is under way any more, so
    /// the next run need not wait for it.
    pub async fn cancel_call_ended(&self, refund_id: &str, run: &str) -> Result<(), StoreError> {
        let _: i64 = CALL_ENDED
            .key(self.refund_key(refund_id))
            .arg(run)
            .run(&self.conn)
            .await?;
        Ok(())
    }

    /// Ends a refund without moving money (rejected, manual review, failed) and frees the
    /// lock, if the run `run` (empty: no run ever took it) still holds it; with a `margin`,
    /// only once that long has passed since a cancel of it could last have been under way.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_refund(
        &self,
        payment_id: &str,
        refund_id: &str,
        run: &str,
        margin: Option<Duration>,
        status: RefundStatus,
        rule: &str,
        failure: Option<&Failure>,
        cause: &str,
    ) -> Result<Recorded, StoreError> {
        let done: i64 = FINISH
            .key(self.payment_key(payment_id))
            .key(self.refund_key(refund_id))
            .key(self.refund_history_key(refund_id))
            .key(self.open_refunds_key(Shard::of_id(refund_id)))
            .key(self.review_refunds_key(Shard::of_id(refund_id)))
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
            .arg(run)
            .arg(margin.map_or(String::new(), |m| m.as_millis().to_string()))
            .run(&self.conn)
            .await?;
        Ok(if done == 1 {
            Recorded::Applied
        } else {
            Recorded::Unchanged
        })
    }

    /// Records a refund KakaoPay made: the refund succeeded, the payment partially refunded or
    /// refunded, the lock freed, in one step, whichever run proves it.
    pub async fn succeed_refund(
        &self,
        payment_id: &str,
        refund_id: &str,
        paid: &Paid,
        approved_total: i64,
        cause: &str,
    ) -> Result<Success, StoreError> {
        let (outcome, status): (String, String) = SUCCEED
            .key(self.payment_key(payment_id))
            .key(self.history_key(payment_id))
            .key(self.refund_key(refund_id))
            .key(self.refund_history_key(refund_id))
            .key(self.open_refunds_key(Shard::of_id(refund_id)))
            .arg(refund_id)
            .arg(paid.amount)
            .arg(paid.tax_free)
            .arg(paid.vat)
            .arg(&paid.aid)
            .arg(approved_total)
            .arg(now_rfc3339())
            .arg(cause)
            .arg(if paid.by_amounts { "1" } else { "0" })
            .run(&self.conn)
            .await?;
        Ok(match outcome.as_str() {
            "ok" => Success::Recorded,
            "already" => Success::AlreadyRecorded,
            _ => Success::Contradicted(parse(
                &self.refund_key(refund_id),
                serde_json::Value::String(status),
            )?),
        })
    }
}

/// A refund as KakaoPay made it, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paid {
    pub amount: i64,
    pub tax_free: i64,
    pub vat: i64,
    pub aid: String,
    /// Proven only by the inquiry's canceled amounts (no payload to match).
    pub by_amounts: bool,
}

fn decided(key: &str, raw: Option<&String>) -> Result<Option<Decided>, StoreError> {
    raw.filter(|r| !r.is_empty())
        .map(|r| {
            serde_json::from_str(r).map_err(|e| StoreError::Corrupt {
                key: key.to_string(),
                reason: format!("decided: {e}"),
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(
        status: Option<&str>,
        approval: Option<&str>,
        refunded: Option<&str>,
        location: Option<&str>,
    ) -> TargetFields {
        let own = |v: Option<&str>| v.map(str::to_string);
        (own(status), own(approval), own(refunded), own(location))
    }

    const DOC: &str = r#"{"payment_id":"pay_1","request":{"location_id":"loc_1","order_id":"o","metadata":{"deep":[1,{"x":"y"}]}},"tid":"T1"}"#;

    #[test]
    fn a_refund_target_is_read_from_its_fields_and_the_parts_it_needs() {
        let approval = r#"{"aid":"A1","amount":{"total":"30000","tax_free":0},"approved_at":null}"#;
        let target = RefundTarget::parse(
            "k",
            fields(
                Some("partially_refunded"),
                Some(approval),
                Some("1000"),
                Some("loc_1"),
            ),
            900,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            target,
            RefundTarget {
                status: PaymentStatus::PartiallyRefunded,
                approved: Some(30_000),
                refunded: 1_000,
                location_id: LocationId::try_from("loc_1").unwrap(),
            }
        );
        let unapproved = RefundTarget::parse(
            "k",
            fields(Some("ready"), Some(""), None, Some("loc_1")),
            900,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!((unapproved.approved, unapproved.refunded), (None, 0));
    }

    #[test]
    fn a_payment_of_an_earlier_release_is_located_by_its_doc() {
        let earlier = RefundTarget::parse(
            "k",
            fields(Some("approved"), None, None, None),
            DOC.len() as i64,
            Some(DOC.into()),
        )
        .unwrap()
        .unwrap();
        assert_eq!(earlier.location_id.as_str(), "loc_1");
    }

    #[test]
    fn a_missing_payment_is_none_and_a_broken_one_is_corrupt() {
        assert_eq!(
            RefundTarget::parse("k", fields(None, None, None, None), 0, None).unwrap(),
            None
        );
        let (with, without) = (DOC.len() as i64, 0);
        let broken = [
            // No doc: with its location field or without.
            (
                fields(Some("approved"), None, None, Some("loc_1")),
                without,
                None,
            ),
            (fields(Some("approved"), None, None, None), without, None),
            (fields(Some("approved"), None, None, None), 1, Some("{")),
            (
                fields(Some("approved"), None, None, Some("loc 1")),
                with,
                None,
            ),
            (
                fields(
                    Some("approved"),
                    Some("{\"amount\":1}"),
                    None,
                    Some("loc_1"),
                ),
                with,
                None,
            ),
            (
                fields(Some("no_such_status"), None, None, Some("loc_1")),
                with,
                None,
            ),
            // No status.
            (fields(None, None, Some("0"), None), with, None),
            (fields(None, None, None, Some("loc_1")), with, None),
            (fields(None, None, None, None), with, None),
        ];
        for (f, doc_len, doc) in broken {
            let answer = RefundTarget::parse("k", f.clone(), doc_len, doc.map(str::to_string));
            assert!(
                matches!(answer, Err(StoreError::Corrupt { .. })),
                "{f:?} {doc_len} {doc:?}: {answer:?}"
            );
        }
    }
}
