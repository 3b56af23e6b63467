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
use std::collections::HashMap;

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
    pub async fn migrate_earlier_layout(&self) -> Result<Moved, StoreError> {
        let mut moved = Moved::default();
        let mut refunds = Vec::new();
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
                if let Some(id) = self.move_key(&key, &mut moved).await? {
                    refunds.push(id);
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for id in refunds {
            moved.aliases += u64::from(self.alias_and_index(&id).await?);
        }
        Ok(moved)
    }

    /// Moves one key; answers the refund id when it moved a refund's record.
    async fn move_key(&self, key: &str, moved: &mut Moved) -> Result<Option<String>, StoreError> {
        let rest = &key[self.ns.len() + 1..];
        let refund = rest
            .strip_prefix("refund:")
            .filter(|r| !r.contains(':'))
            .map(str::to_string);
        match self.target(rest) {
            Target::Keep => return Ok(None),
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
                    Err(e) if e.to_string().contains("no such key") => return Ok(None),
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
        Ok(refund)
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
            ["payment", id] => Target::Rename(self.payment_key(id)),
            ["payment", id, "history"] => Target::Rename(self.history_key(id)),
            ["payment", id, "refunds"] => Target::Rename(self.payment_refunds_key(id)),
            ["refund", id] => Target::Rename(self.refund_key(id)),
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

    /// Gives a moved refund the alias a repeat of its request looks it up by, and indexes it
    /// as open if it is (refunds stored before the open index existed were not). Answers
    /// whether it wrote an alias.
    async fn alias_and_index(&self, id: &str) -> Result<bool, StoreError> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.refund_key(id))
            .query_async(&mut self.conn.clone())
            .await?;
        let Some(refund) = self.parse_refund(id, fields, &[])? else {
            return Ok(false);
        };
        if !refund.status.is_final() {
            let _: i64 = redis::cmd("ZADD")
                .arg(self.open_refunds_key(Shard::of_id(id)))
                .arg("NX")
                .arg(chrono::Utc::now().timestamp_millis())
                .arg(id)
                .query_async(&mut self.conn.clone())
                .await?;
        }
        let now = kakaopay_jobs::refunds::refund_id(&refund.payment_id, &refund.idempotency_key);
        if now == id {
            return Ok(false);
        }
        let set: Option<String> = redis::cmd("SET")
            .arg(self.refund_alias_key(&now))
            .arg(id)
            .arg("NX")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.is_some())
    }
}
