//! Newest-first pages over indexes spread across the shards (a location's payments, the
//! refunds waiting for review), with a cursor that never repeats or skips an entry.
//!
//! Why merge shards rather than keep one index per location: a payment is created by one
//! script on its shard's slot, and that script writes the shard's per-location index with it.
//! An index in a slot of its own (the location's tag) could not be written in the same atomic
//! step on a cluster, and a crash between the two would leave a payment no listing shows.
//! Merging costs one read per shard a page (sent concurrently), which an operator's or the
//! booking system's search can afford; the record and its index can never disagree.
//!
//! The cursor is the position of the last entry shown: its score (ms) and id. Entries are
//! ordered by (score, id) descending, a total order, so the next page starts strictly after
//! it: an entry added meanwhile is newer (a higher score) and lands before the cursor, never
//! in a page still to come, and none already shown comes again.

use super::{Store, StoreError};

/// Where a page ends: the last entry shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub ms: i64,
    pub id: String,
}

impl Cursor {
    /// `ms:id`, as `next_cursor` carries it.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.ms, self.id)
    }

    /// `None` for anything [`Cursor::encode`] did not make.
    pub fn decode(raw: &str) -> Option<Cursor> {
        let (ms, id) = raw.split_once(':')?;
        let ok = !id.is_empty()
            && id.len() <= 64
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        ok.then_some(Cursor {
            ms: ms.parse().ok()?,
            id: id.to_string(),
        })
    }

    /// Whether an entry comes after this cursor in newest-first order.
    fn before(&self, ms: i64, id: &str) -> bool {
        (ms, id) < (self.ms, self.id.as_str())
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `None` when nothing is left.
    pub next: Option<Cursor>,
}

impl Store {
    /// Up to `limit` entries of `keys` (sorted sets scored in ms) after `after`, within
    /// `[from_ms, to_ms]`, newest first, as (ms, id). Answers fewer only when no more exist.
    pub(super) async fn merged_page(
        &self,
        keys: &[String],
        (from_ms, to_ms): (Option<i64>, Option<i64>),
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let upper = match (after, to_ms) {
            (Some(c), Some(t)) => c.ms.min(t),
            (Some(c), None) => c.ms,
            (None, Some(t)) => t,
            (None, None) => i64::MAX,
        };
        let lower = from_ms.map_or_else(|| "-inf".to_string(), |f| f.to_string());
        let reads = keys.iter().map(|key| {
            let mut conn = self.conn.clone();
            // Entries at exactly the cursor's score (usually none or one) are read whole and
            // sorted by id here; the rest strictly below it, `limit` from each shard.
            let mut pipe = redis::pipe();
            let at_cursor = after.filter(|c| c.ms <= upper);
            if let Some(c) = at_cursor {
                pipe.cmd("ZRANGEBYSCORE")
                    .arg(key)
                    .arg(c.ms)
                    .arg(c.ms)
                    .arg("WITHSCORES");
            }
            let top = if at_cursor.is_some() {
                format!("({upper}")
            } else if upper == i64::MAX {
                "+inf".to_string()
            } else {
                upper.to_string()
            };
            pipe.cmd("ZREVRANGEBYSCORE")
                .arg(key)
                .arg(top)
                .arg(&lower)
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(0)
                .arg(limit);
            async move { pipe.query_async::<Vec<Vec<(String, f64)>>>(&mut conn).await }
        });
        let mut all: Vec<(i64, String)> = futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .flatten()
            .map(|(id, score)| (score as i64, id))
            .filter(|(ms, id)| after.is_none_or(|c| c.before(*ms, id)))
            .filter(|(ms, _)| from_ms.is_none_or(|f| *ms >= f))
            .collect();
        all.sort_by(|a, b| b.cmp(a));
        all.dedup();
        all.truncate(limit);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let c = Cursor {
            ms: 1_700_000_000_123,
            id: "pay_ab12".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for bad in ["", "x", "12", "12:", "a:pay_1", "12:pay 1", "12:{x}"] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_order_is_total() {
        let c = Cursor {
            ms: 10,
            id: "b".into(),
        };
        assert!(c.before(10, "a") && c.before(9, "z"));
        assert!(!c.before(10, "b") && !c.before(10, "c") && !c.before(11, "a"));
    }
}
