//! Outbound events as they were first recorded, kept for delivery and redelivery.

use super::{Store, StoreError};
use std::time::Duration;

impl Store {
    /// Records an event's JSON unless one with its id exists (an outcome recorded twice is
    /// one event).
    pub async fn put_event(&self, id: &str, json: &str, keep: Duration) -> Result<(), StoreError> {
        let set = redis::pipe()
            .cmd("SET")
            .arg(self.event_key(id))
            .arg(json)
            .arg("NX")
            .arg("EX")
            .arg(keep.as_secs().max(1))
            .to_owned();
        let _: (Option<String>,) = self.conn.write(&set).await?;
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
