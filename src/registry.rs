//! Live processes: every `serve` and `work` process registers itself and beats every
//! heartbeat; `GET /v1/workers` lists those whose last beat is recent.
//!
//! A process's entry is scored by when it expires (its last beat plus 2.5 of its own
//! heartbeats, on Redis's clock), so each process sets its own pace and a reader needs no
//! setting to tell the live from the gone: a process killed with SIGKILL drops off within
//! three heartbeats; one stopped with SIGTERM removes itself at once. Both keys share one hash
//! tag (`{ns:workers}`), so a beat is one script on one slot.

use crate::store::{Store, StoreError};
use kakaopay_jobs::queue::Script;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

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

fn tag(store: &Store) -> String {
    format!("{{{}:workers}}", store.namespace())
}

fn live_key(store: &Store) -> String {
    format!("{}:live", tag(store))
}

fn record_key(store: &Store, id: &str) -> String {
    format!("{}:process:{id}", tag(store))
}

fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The live processes, oldest first.
pub async fn live(store: &Store) -> Result<Vec<ProcessInfo>, StoreError> {
    let conn = store.connection();
    let ids: Vec<String> = LIVE.key(live_key(store)).run_nowait(&conn).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = ids.iter().map(|id| record_key(store, id)).collect();
    // One slot: MGET is one command on a cluster too.
    let records: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut conn.clone())
        .await?;
    let mut processes: Vec<ProcessInfo> = records
        .iter()
        .flatten()
        .filter_map(|r| serde_json::from_str(r).ok())
        .collect();
    processes.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    Ok(processes)
}

/// This process's registration; [`Registration::stop`] removes it.
pub struct Registration {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Registers this process and beats every `heartbeat` until stopped.
pub fn register(
    store: Store,
    kind: ProcessKind,
    concurrency: usize,
    heartbeat: Duration,
) -> Registration {
    let pid = std::process::id();
    let host = host();
    let id = format!("{host}-{pid}-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let started_at = crate::store::now_rfc3339();
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let ttl = heartbeat * 5 / 2;
        let (live, record) = (live_key(&store), record_key(&store, &id));
        loop {
            let ns = store.namespace();
            let info = ProcessInfo {
                id: id.clone(),
                host: host.clone(),
                pid,
                kind,
                queues: kakaopay_jobs::QUEUES
                    .iter()
                    .map(|q| q.to_string())
                    .collect(),
                concurrency,
                in_flight: kakaopay_jobs::QUEUES
                    .iter()
                    .map(|q| kakaopay_jobs::queue::in_flight(ns, q))
                    .sum(),
                started_at: started_at.clone(),
                last_seen: crate::store::now_rfc3339(),
            };
            let json = serde_json::to_string(&info).expect("process records serialize");
            let beat = BEAT
                .key(&live)
                .arg(&id)
                .arg(json)
                .arg(ttl.as_millis() as u64)
                .key(&record)
                .run_nowait::<i64>(&store.connection())
                .await;
            if let Err(e) = beat {
                tracing::warn!(error = %e, "heartbeat failed; trying again");
            }
            tokio::select! {
                _ = tokio::time::sleep(heartbeat) => {}
                _ = stopped.wait_for(|s| *s) => break,
            }
        }
        // Stopping: gone from the list at once, not after its entry expires.
        let leave = redis::pipe()
            .cmd("ZREM")
            .arg(&live)
            .arg(&id)
            .cmd("DEL")
            .arg(&record)
            .to_owned();
        if let Err(e) = leave.query_async::<()>(&mut store.connection()).await {
            tracing::warn!(error = %e, "could not leave the workers list; it expires");
        }
    });
    Registration { stop, task }
}

impl Registration {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
