//! The live-process registry's records (`crate::registry` keeps them up): every `serve` and
//! `work` process's entry in the live set, scored by when it expires (its last beat plus 2.5
//! of its own heartbeats, on Redis's clock), and its record beside it. Both keys share one
//! hash tag (`{ns:workers}`), so a beat is one script on one slot and the records are one
//! `MGET`.

use super::{Store, StoreError};
use kakaopay_jobs::queue::Script;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use std::time::Duration;

/// Which kind of process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessKind {
    Serve,
    Work,
}

/// One live process, as `GET /v1/workers` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub kind: ProcessKind,
    pub queues: Vec<String>,
    /// In-flight jobs per queue this process allows.
    pub concurrency: usize,
    /// Jobs it is running now (all queues).
    pub in_flight: usize,
    pub started_at: String,
    pub last_seen: String,
}

/// KEYS: the live set, the process's record. ARGV: id, record, ttl ms. Drops the entries of
/// processes gone meanwhile.
static BEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return 1
"#,
    )
});

/// KEYS: the live set. Answers the ids of processes not expired.
static LIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"#,
    )
});

impl Store {
    /// The live processes, oldest first.
    pub async fn live_processes(&self) -> Result<Vec<ProcessInfo>, StoreError> {
        let ids: Vec<String> = LIVE
            .key(self.live_processes_key())
            .run_nowait(&self.conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.process_key(id)).collect();
        // One slot: MGET is one command on a cluster too.
        let records: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.conn.clone())
            .await?;
        let mut processes: Vec<ProcessInfo> = records
            .iter()
            .flatten()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect();
        processes.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        Ok(processes)
    }

    /// One beat of a live process: its record, and its entry live for `ttl` from now.
    pub async fn beat_process(&self, info: &ProcessInfo, ttl: Duration) -> Result<(), StoreError> {
        let json = serde_json::to_string(info).expect("process records serialize");
        BEAT.key(self.live_processes_key())
            .arg(&info.id)
            .arg(json)
            .arg(ttl.as_millis() as u64)
            .key(self.process_key(&info.id))
            .run_nowait::<i64>(&self.conn)
            .await?;
        Ok(())
    }

    /// A stopping process off the live set at once, not after its entry expires.
    pub async fn forget_process(&self, id: &str) -> Result<(), StoreError> {
        let leave = redis::pipe()
            .cmd("ZREM")
            .arg(self.live_processes_key())
            .arg(id)
            .cmd("DEL")
            .arg(self.process_key(id))
            .to_owned();
        leave.query_async::<()>(&mut self.conn.clone()).await?;
        Ok(())
    }
}
