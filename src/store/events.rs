//! Outbound events as they were first recorded, kept for delivery and redelivery.

use super::{Store, StoreError};
use kakaopay_jobs::queue::{Enqueued, PreparedJob, Script, ThenEnqueue};
use std::sync::LazyLock;
use std::time::Duration;

/// [`Store::put_event`] as the first part of [`PUT_EVENT_THEN_DELIVER`] (never run alone:
/// elsewhere the event and its note are in different slots, and `put_event` sends the two
/// commands). KEYS: the event, the note that its delivery is enqueued. ARGV: its JSON,
/// seconds kept. Answers the JSON recorded earlier ('' for none) and 1 if the note is there,
/// then whether the delivery is to be enqueued: for a new event never noted, the one case
/// that needs no decision of the caller.
const PUT_EVENT_LUA: &str = r#"
local earlier = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'GET', 'EX', ARGV[2])
local noted = redis.call('EXISTS', KEYS[2])
return {earlier or '', noted}, (not earlier) and noted == 0
"#;

/// What the combined call is built from (its keys and arguments).
static PUT_EVENT: LazyLock<Script> = LazyLock::new(|| Script::new(PUT_EVENT_LUA));

/// A new event recorded and its delivery enqueued in one step, where Redis allows it.
static PUT_EVENT_THEN_DELIVER: LazyLock<ThenEnqueue> =
    LazyLock::new(|| ThenEnqueue::new(PUT_EVENT_LUA));

pub(super) async fn load_hot_scripts(
    conn: &kakaopay_jobs::queue::Connection,
) -> redis::RedisResult<()> {
    // Only the combined script: `PUT_EVENT` never runs alone.
    PUT_EVENT_THEN_DELIVER.load(conn).await
}

impl Store {
    /// Records an event's JSON unless one with its id exists (an outcome recorded twice is
    /// one event). Answers the JSON recorded earlier, if any, and whether its delivery was
    /// noted as enqueued: the delivery job's record is kept for a while only, and a job
    /// enqueued again after that would deliver the event a second time.
    pub async fn put_event(
        &self,
        id: &str,
        json: &str,
        keep: Duration,
    ) -> Result<(Option<String>, bool), StoreError> {
        let set = redis::pipe()
            .cmd("SET")
            .arg(self.event_key(id))
            .arg(json)
            .arg("NX")
            .arg("GET")
            .arg("EX")
            .arg(keep.as_secs().max(1))
            .to_owned();
        let (earlier,): (Option<String>,) = self.conn.write(&set).await?;
        let enqueued: bool = redis::cmd("EXISTS")
            .arg(self.event_enqueued_key(id))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok((earlier, enqueued))
    }

    /// [`Store::put_event`] with the event's delivery job, enqueued in the same step where
    /// Redis allows it and the event is new (answered when it was; the caller enqueues it
    /// otherwise, if it decides to). The note that it is enqueued is still the caller's to
    /// make once the job is: a note without a job would leave the event undelivered for good.
    pub async fn put_event_with(
        &self,
        id: &str,
        json: &str,
        keep: Duration,
        delivery: &PreparedJob,
    ) -> Result<(Option<String>, bool, Option<Enqueued>), StoreError> {
        let mut put = PUT_EVENT.key(self.event_key(id));
        put.key(self.event_enqueued_key(id))
            .arg(json)
            .arg(keep.as_secs().max(1));
        let combined = PUT_EVENT_THEN_DELIVER
            .run(&self.conn, &put, delivery)
            .await?;
        let Some((first, enqueued)) = combined else {
            let (earlier, noted) = self.put_event(id, json, keep).await?;
            return Ok((earlier, noted, None));
        };
        let (earlier, noted): (String, i64) =
            redis::FromRedisValue::from_redis_value(first).map_err(redis::RedisError::from)?;
        Ok((
            Some(earlier).filter(|e| !e.is_empty()),
            noted == 1,
            enqueued,
        ))
    }

    /// Notes that the event's delivery is enqueued, for as long as the event is kept.
    pub async fn event_enqueued(&self, id: &str, keep: Duration) -> Result<(), StoreError> {
        let _: () = redis::cmd("SET")
            .arg(self.event_enqueued_key(id))
            .arg(1)
            .arg("EX")
            .arg(keep.as_secs().max(1))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// An event's JSON, if it is still kept.
    pub async fn event_json(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(redis::cmd("GET")
            .arg(self.event_key(id))
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// The key an event is kept under (for messages about a corrupt one).
    pub fn event_record(&self, id: &str) -> String {
        self.event_key(id)
    }
}
