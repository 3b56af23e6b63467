//! Outbound events as they were first recorded, kept for delivery and redelivery.

use super::{Store, StoreError};
use std::time::Duration;

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
