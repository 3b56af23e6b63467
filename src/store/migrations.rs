//! Records of the key layout before shards (`ns:payment:ID`, `ns:loc:L:integration`,
//! `ns:payments:ready`, …) moved to where this release reads them. Every process does it as
//! it starts, before it serves or works, so no request meets a record it cannot see (a
//! payment it could not see could be created again for the same order). Only one server or
//! Sentinel can hold such records: the earlier layout never ran on a cluster.
//!
//! Each record is renamed (`RENAMENX`: nothing at the new name is ever overwritten; a record
//! another process moved first is simply gone); the namespace-wide indexes are spread over
//! the shards. A refund id of the earlier layout does not carry its payment's shard, so the id
//! a repeat of its request computes now gets an alias leading to it. Safe to run again, and
//! by several processes at once.

use super::{Shard, Store, StoreError};
use crate::domain::PaymentStatus;
use kakaopay_jobs::queue::Script;
use std::sync::LazyLock;

/// Whether a migration began and has not finished in this namespace (a crash midway leaves it
/// `running`, and the next process to start goes on with it).
pub(super) const MARKER: &str = "migration:shard-layout";

/// Moves a refund of the earlier layout and leaves its alias, in one step: a process that
/// finds the refund moved finds its alias too. KEYS: old record, new record, old history, new
/// history, alias, open refunds. ARGV: refund id, now ms. The earlier layout runs only on one
/// server or Sentinel, where keys of several slots in one script are allowed.
static MOVE_REFUND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('RENAMENX', KEYS[1], KEYS[2]) == 0 then return -1 end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('RENAMENX', KEYS[3], KEYS[4]) end
if KEYS[5] ~= KEYS[2] .. ':alias' then redis.call('SET', KEYS[5], ARGV[1], 'NX') end
local status = redis.call('HGET', KEYS[2], 'status')
if status == 'queued' or status == 'processing' then redis.call('ZADD', KEYS[6], 'NX', ARGV[2], ARGV[1]) end
return 1
"#,
    )
});

/// What a migration moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub records: u64,
    pub index_entries: u64,
    pub aliases: u64,
}

/// Where an earlier-layout key goes.
enum Target {
    Rename(String),
    /// A sorted set whose members go to the index their id's shard names.
    Spread(Box<dyn Fn(&str) -> String + Send>),
    Drop,
    Keep,
}

impl Store {
    /// Moves every record of the earlier layout in this namespace; answers what it moved.
    /// Marked `running` first and `done` last, so that no process takes a namespace half moved
    /// for one that needs nothing.
    pub async fn migrate_earlier_layout(&self) -> Result<Moved, StoreError> {
        self.mark_migration("running").await?;
        let mut moved = Moved::default();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}:*", self.ns))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut self.conn.clone())
                .await?;
            for key in keys {
                self.move_key(&key, &mut moved).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        self.mark_migration("done").await?;
        Ok(moved)
    }

    async fn mark_migration(&self, state: &str) -> Result<(), StoreError> {
        let _: () = redis::cmd("SET")
            .arg(format!("{}:{MARKER}", self.ns))
            .arg(state)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Moves one key.
    async fn move_key(&self, key: &str, moved: &mut Moved) -> Result<(), StoreError> {
        let rest = &key[self.ns.len() + 1..];
        if let Some(id) = rest.strip_prefix("refund:").filter(|r| !r.contains(':')) {
            moved.aliases += u64::from(self.move_refund(key, id).await?);
            moved.records += 1;
            return Ok(());
        }
        match self.target(rest) {
            Target::Keep => return Ok(()),
            Target::Drop => {
                let _: i64 = redis::cmd("DEL")
                    .arg(key)
                    .query_async(&mut self.conn.clone())
                    .await?;
            }
            Target::Rename(to) => {
                let renamed: redis::RedisResult<i64> = redis::cmd("RENAMENX")
                    .arg(key)
                    .arg(&to)
                    .query_async(&mut self.conn.clone())
                    .await;
                match renamed {
                    Ok(1) => moved.records += 1,
                    Ok(_) => tracing::warn!(key, to, "not moved: a record stands at its new name"),
                    // Moved by another process meanwhile.
                    Err(e) if e.to_string().contains("no such key") => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
                if to.contains(":integration:v") {
                    let _: i64 = redis::cmd("PERSIST")
                        .arg(&to)
                        .query_async(&mut self.conn.clone())
                        .await?;
                }
            }
            Target::Spread(to) => moved.index_entries += self.spread(key, to).await?,
        }
        Ok(())
    }

    fn target(&self, rest: &str) -> Target {
        let parts: Vec<&str> = rest.splitn(3, ':').collect();
        let index = |status| -> Target {
            let store = self.clone();
            Target::Spread(Box::new(move |id| {
                store.status_index_key(Shard::of_id(id), status)
            }))
        };
        match parts.as_slice() {
            ["payments", "ready"] => index(PaymentStatus::Ready),
            ["payments", "approving"] => index(PaymentStatus::Approving),
            ["refunds", "open"] => {
                let store = self.clone();
                Target::Spread(Box::new(move |id| store.open_refunds_key(Shard::of_id(id))))
            }
            ["migrated", _] => Target::Drop,
            ["migration", _] => Target::Keep,
            ["payment", id] => Target::Rename(self.payment_key(id)),
            ["payment", id, "history"] => Target::Rename(self.history_key(id)),
            ["payment", id, "refunds"] => Target::Rename(self.payment_refunds_key(id)),
            ["refund", id, "history"] => Target::Rename(self.refund_history_key(id)),
            ["order", location, order] => Target::Rename(self.order_key(location, order)),
            ["loc", location, what] => self.location_target(location, what),
            _ => Target::Keep,
        }
    }

    fn location_target(&self, location: &str, what: &str) -> Target {
        let location = location.to_string();
        let store = self.clone();
        match what {
            "integration" => Target::Rename(self.integration_key(&location)),
            "integration:seq" => Target::Rename(self.integration_seq_key(&location)),
            "payments" => Target::Spread(Box::new(move |id| {
                store.location_payments_key(Shard::of_id(id), &location)
            })),
            "refunds" => Target::Spread(Box::new(move |id| {
                store.location_refunds_key(Shard::of_id(id), &location)
            })),
            version => match version.strip_prefix("integration:v").map(str::parse::<u64>) {
                Some(Ok(v)) => Target::Rename(self.integration_version_key(&location, v)),
                _ => Target::Keep,
            },
        }
    }

    /// Spreads a sorted set's members over the indexes `to` names, then drops it.
    async fn spread(
        &self,
        key: &str,
        to: Box<dyn Fn(&str) -> String + Send>,
    ) -> Result<u64, StoreError> {
        let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut self.conn.clone())
            .await?;
        let mut pipe = redis::pipe();
        for (id, score) in &members {
            pipe.zadd(to(id), id, *score).ignore();
        }
        pipe.del(key).ignore();
        let () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(members.len() as u64)
    }

    /// Moves a refund's record and history, with the alias a repeat of its request looks it
    /// up by (the id it computes now, with its payment's shard) and, if it is open, its place
    /// in the open index. Answers whether it wrote an alias.
    async fn move_refund(&self, key: &str, id: &str) -> Result<bool, StoreError> {
        let doc: Option<String> = redis::cmd("HGET")
            .arg(key)
            .arg("doc")
            .query_async(&mut self.conn.clone())
            .await?;
        let Some(doc) = doc else { return Ok(false) };
        let named: serde_json::Value =
            serde_json::from_str(&doc).map_err(|e| StoreError::Corrupt {
                key: key.to_string(),
                reason: format!("doc: {e}"),
            })?;
        let text = |field: &str| named[field].as_str().unwrap_or_default().to_string();
        let now = kakaopay_jobs::refunds::refund_id(&text("payment_id"), &text("idempotency_key"));
        let moved: i64 = MOVE_REFUND
            .key(key)
            .key(self.refund_key(id))
            .key(format!("{key}:history"))
            .key(self.refund_history_key(id))
            .key(self.refund_alias_key(&now))
            .key(self.open_refunds_key(Shard::of_id(id)))
            .arg(id)
            .arg(chrono::Utc::now().timestamp_millis())
            .run(&self.conn)
            .await?;
        if moved == -1 {
            tracing::warn!(key, "not moved: a record stands at its new name");
        }
        Ok(moved == 1 && now != id)
    }
}

/// Set once every refund stored before the refund listings had indexes of their own
/// (`refunds:all`, `refunds:review`) is in them.
const REFUND_INDEXES: &str = "migration:refund-indexes";

impl Store {
    /// Puts refunds of an earlier release into the listings' indexes (every refund in
    /// `refunds:all`, one waiting for a person in `refunds:review` too), once per namespace:
    /// without it, `GET /v1/refunds` without a location would not show them. Safe to run again
    /// and by several processes at once (`ZADD NX`); processes run it in the background, as it
    /// scans the keyspace (on a cluster each shard's node, for that shard's refunds; elsewhere
    /// one scan finds them all). A refund it cannot read is left out, with a warning.
    pub async fn index_earlier_refunds(&self, cluster: bool) -> Result<u64, StoreError> {
        let marker = format!("{}:{REFUND_INDEXES}", self.ns);
        let done: Option<String> = redis::cmd("GET")
            .arg(&marker)
            .query_async(&mut self.conn.clone())
            .await?;
        if done.is_some() {
            return Ok(0);
        }
        let patterns: Vec<(String, String)> = if cluster {
            Shard::all()
                .map(|s| {
                    (
                        self.tag(s).to_string(),
                        format!("{}:refund:rf_*", self.tag(s)),
                    )
                })
                .collect()
        } else {
            let all = format!("{{{}:p*}}:refund:rf_*", self.ns);
            vec![(all.clone(), all)]
        };
        let mut indexed = 0;
        for (node_key, pattern) in patterns {
            indexed += self.index_refunds_matching(&node_key, &pattern).await?;
        }
        let _: () = redis::cmd("SET")
            .arg(&marker)
            .arg("done")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(indexed)
    }

    /// Scans the node holding `node_key` for refund records matching `pattern`.
    async fn index_refunds_matching(
        &self,
        node_key: &str,
        pattern: &str,
    ) -> Result<u64, StoreError> {
        let mut indexed = 0;
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) = self.conn.on_node_of(node_key, scan).await?;
            for key in keys {
                let Some(id) = key.rsplit_once(":refund:").map(|(_, id)| id.to_string()) else {
                    continue;
                };
                if id.contains(':') {
                    continue; // its history or alias
                }
                match self.index_refund(&id).await {
                    Ok(true) => indexed += 1,
                    Ok(false) => {}
                    // One record it cannot read must not keep the others out of the listings.
                    Err(e @ StoreError::Corrupt { .. }) => {
                        tracing::warn!(refund_id = %id, error = %e, "an unreadable refund left out of the listings")
                    }
                    Err(e) => return Err(e),
                }
            }
            if next == 0 {
                return Ok(indexed);
            }
            cursor = next;
        }
    }

    /// Adds one refund to the listings' indexes of its shard (scores: when it was requested,
    /// and for one waiting for a person when it was last changed).
    async fn index_refund(&self, id: &str) -> Result<bool, StoreError> {
        let Some(refund) = self.refund_state(id).await? else {
            return Ok(false);
        };
        let ms = |at: &str| {
            chrono::DateTime::parse_from_rfc3339(at)
                .map(|t| t.timestamp_millis())
                .unwrap_or(0)
        };
        let shard = Shard::of_id(id);
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(self.all_refunds_key(shard))
            .arg("NX")
            .arg(ms(&refund.created_at))
            .arg(id)
            .ignore();
        if refund.status == crate::domain::RefundStatus::ManualReview {
            pipe.cmd("ZADD")
                .arg(self.review_refunds_key(shard))
                .arg("NX")
                .arg(ms(&refund.updated_at))
                .arg(id)
                .ignore();
        }
        let _: () = self.conn.write(&pipe).await?;
        Ok(true)
    }
}
