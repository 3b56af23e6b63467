//! What records written by earlier releases need once, run by every worker process at start
//! until one has finished it (a marker key says so; running it twice is harmless).
//!
//! - Integration versions were written with a 30-day expiry: each is made persistent, so that
//!   no payment loses its credentials to time.
//! - Refunds were not indexed while open: every `queued` or `processing` one joins the index
//!   the reconciler walks, so that a refund whose job died is settled, not left holding its
//!   payment's refund lock.

use super::{Store, StoreError};

/// The marker of the migrations below, for this release's records.
const MARKER: &str = "migrated:open-refunds-and-persistent-versions";

impl Store {
    /// Runs the migrations unless they ran before. Answers how many keys each one changed.
    pub async fn migrate(&self) -> Result<Option<(usize, usize)>, StoreError> {
        let marker = self.key(MARKER);
        let done: bool = redis::cmd("EXISTS")
            .arg(&marker)
            .query_async(&mut self.conn.clone())
            .await?;
        if done {
            return Ok(None);
        }
        let versions = self.persist_integration_versions().await?;
        let refunds = self.index_open_refunds().await?;
        let _: () = redis::cmd("SET")
            .arg(&marker)
            .arg(crate::store::now_rfc3339())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(Some((versions, refunds)))
    }

    /// Every key matching `pattern` in this namespace, in batches.
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let (mut cursor, mut keys) = (0u64, Vec::new());
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(self.key(pattern))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    async fn persist_integration_versions(&self) -> Result<usize, StoreError> {
        let mut changed = 0;
        for key in self.scan("loc:*:integration:v*").await? {
            let persisted: i64 = redis::cmd("PERSIST")
                .arg(&key)
                .query_async(&mut self.conn.clone())
                .await?;
            changed += persisted as usize;
        }
        Ok(changed)
    }

    async fn index_open_refunds(&self) -> Result<usize, StoreError> {
        let mut indexed = 0;
        for key in self.scan("refund:*").await? {
            let Some(id) = key.rsplit(':').next().filter(|id| id.starts_with("rf_")) else {
                continue; // a history list
            };
            let status: Option<String> = redis::cmd("HGET")
                .arg(&key)
                .arg("status")
                .query_async(&mut self.conn.clone())
                .await?;
            if matches!(status.as_deref(), Some("queued" | "processing")) {
                let added: i64 = redis::cmd("ZADD")
                    .arg(self.open_refunds_key())
                    .arg("NX")
                    .arg(chrono::Utc::now().timestamp_millis())
                    .arg(id)
                    .query_async(&mut self.conn.clone())
                    .await?;
                indexed += added as usize;
            }
        }
        Ok(indexed)
    }
}
