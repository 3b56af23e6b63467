//! Per-minute counters of a queue, for the board's charts: jobs done and failed attempts per
//! minute, and how long the oldest pending job had waited.
//!
//! They live in Redis, not in a process: several `work` processes run one queue, and the board
//! may be served by an `api` process that runs no job at all. Done and failed are counted by
//! the `SETTLE` script as it records the runs, so every process adds to the same counters, and
//! a settle sent again (its answer lost) counts nothing twice. The oldest pending age cannot be
//! counted that way (it grows exactly when nothing settles: a paused queue, no workers), so
//! every process samples it every few seconds with [`sample_oldest_pending`], and a minute
//! keeps its largest sample.
//!
//! One hash per queue, `{ns:queue}:stats` (under the queue's hash tag, so the scripts that
//! write it declare it and it works on a cluster): fields `d:<minute>`, `f:<minute>`,
//! `o:<minute>` (minutes since the Unix epoch, Redis's clock) and `trimmed`. Minutes older than
//! [`KEPT_MINUTES`] are dropped as new ones are written, and the hash expires a day (and an
//! hour) after the first write of its last minute.

use super::{invocation, scripts, Connection, Keys, QueueError, GROUP};
use serde::Serialize;

/// How many minutes the counters keep: a day.
pub const KEPT_MINUTES: usize = 1440;

/// One minute of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Minute {
    /// Minutes since the Unix epoch on Redis's clock: it began at `minute * 60_000` ms.
    pub minute: u64,
    pub done: u64,
    /// Failed attempts: runs that ended in a retry or in the job's death.
    pub failed: u64,
    /// The oldest pending job's age (ms), the largest sampled in the minute; `None` when no
    /// process sampled it then.
    pub oldest_pending_ms: Option<u64>,
}

/// Samples the oldest pending job's age (0 when none waits) into the current minute, keeping
/// the minute's largest; answers it in ms. Cheap (one script), meant for every few seconds.
pub async fn sample_oldest_pending(
    conn: &Connection,
    namespace: &str,
    queue: &str,
) -> Result<u64, QueueError> {
    let keys = Keys::new(namespace, queue);
    let mut inv = invocation(&scripts::SAMPLE, &keys);
    inv.key(&keys.stats).arg(GROUP);
    // A sample is not worth waiting for replicas: the next one replaces a lost one.
    Ok(inv.run_nowait(conn).await?)
}

/// The last `count` minutes (at most [`KEPT_MINUTES`]), oldest first, ending with the current
/// one on Redis's clock; minutes nothing happened in are there with zeros.
pub async fn last_minutes(
    conn: &Connection,
    namespace: &str,
    queue: &str,
    count: usize,
) -> Result<Vec<Minute>, QueueError> {
    let keys = Keys::new(namespace, queue);
    let count = count.clamp(1, KEPT_MINUTES);
    let mut c = conn.clone();
    let (now_s, _): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await?;
    let now = now_s / 60;
    let minutes: Vec<u64> = (now + 1 - count as u64..=now).collect();
    let mut hmget = redis::cmd("HMGET");
    hmget.arg(&keys.stats);
    for m in &minutes {
        hmget
            .arg(format!("d:{m}"))
            .arg(format!("f:{m}"))
            .arg(format!("o:{m}"));
    }
    let values: Vec<Option<u64>> = hmget.query_async(&mut c).await?;
    Ok(minutes
        .iter()
        .zip(values.chunks(3))
        .map(|(&minute, v)| Minute {
            minute,
            done: v.first().copied().flatten().unwrap_or(0),
            failed: v.get(1).copied().flatten().unwrap_or(0),
            oldest_pending_ms: v.get(2).copied().flatten(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Purpose, Topology};

    async fn connect() -> Connection {
        let topology = Topology::Server("redis://127.0.0.1:6379".into());
        Connection::open(&topology, Purpose::Shared, None)
            .await
            .expect("Redis 7 on 127.0.0.1:6379")
    }

    fn namespace() -> String {
        format!("stats-{:016x}", rand::random::<u64>())
    }

    /// The oldest pending age: a sample of a queue with nothing waiting is 0, one with a job
    /// waiting is its age, and a minute keeps its largest sample.
    #[tokio::test]
    async fn the_oldest_pending_age_keeps_the_largest_sample_of_a_minute() {
        let (conn, ns) = (connect().await, namespace());
        assert_eq!(sample_oldest_pending(&conn, &ns, "q").await.unwrap(), 0);
        let keys = Keys::new(&ns, "q");
        let mut c = conn.clone();
        // A job waiting: an entry the group has not delivered.
        let _: () = redis::pipe()
            .cmd("XGROUP")
            .arg("CREATE")
            .arg(&keys.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .ignore()
            .cmd("XADD")
            .arg(&keys.stream)
            .arg("*")
            .arg("id")
            .arg("j1")
            .ignore()
            .query_async(&mut c)
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let age = sample_oldest_pending(&conn, &ns, "q").await.unwrap();
        assert!((30..10_000).contains(&age), "{age}");
        // A smaller sample (another process's, say) does not lower the minute's value.
        let fields: Vec<String> = redis::cmd("HKEYS")
            .arg(&keys.stats)
            .query_async(&mut c)
            .await
            .unwrap();
        let field = fields.iter().find(|f| f.starts_with("o:")).unwrap().clone();
        let _: () = redis::cmd("HSET")
            .arg(&keys.stats)
            .arg(&field)
            .arg(1_000_000)
            .query_async(&mut c)
            .await
            .unwrap();
        sample_oldest_pending(&conn, &ns, "q").await.unwrap();
        let last = last_minutes(&conn, &ns, "q", 3).await.unwrap();
        assert_eq!(last.len(), 3);
        let sampled = last.iter().filter_map(|m| m.oldest_pending_ms).max();
        assert_eq!(sampled, Some(1_000_000));
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&keys.stats)
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(
            ttl > 86_400_000,
            "expires a day after its last write: {ttl}"
        );
    }

    /// Minutes older than a day go when a new minute is written: after a long idle in one
    /// sweep, and minute by minute otherwise.
    #[tokio::test]
    async fn minutes_older_than_a_day_are_dropped() {
        let (conn, ns) = (connect().await, namespace());
        let keys = Keys::new(&ns, "q");
        let mut c = conn.clone();
        let (now_s, _): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await.unwrap();
        let now = now_s / 60;
        let old = now - KEPT_MINUTES as u64 - 5;
        let recent = now - 10;
        let _: () = redis::cmd("HSET")
            .arg(&keys.stats)
            .arg(format!("d:{old}"))
            .arg(7)
            .arg(format!("o:{old}"))
            .arg(7)
            .arg(format!("d:{recent}"))
            .arg(3)
            .query_async(&mut c)
            .await
            .unwrap();
        sample_oldest_pending(&conn, &ns, "q").await.unwrap();
        let fields: Vec<String> = redis::cmd("HKEYS")
            .arg(&keys.stats)
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(!fields.contains(&format!("d:{old}")), "{fields:?}");
        assert!(!fields.contains(&format!("o:{old}")), "{fields:?}");
        assert!(fields.contains(&format!("d:{recent}")), "{fields:?}");
        let trimmed: u64 = redis::cmd("HGET")
            .arg(&keys.stats)
            .arg("trimmed")
            .query_async(&mut c)
            .await
            .unwrap();
        // (A minute may have begun since `now` was read.)
        assert!(trimmed >= now - KEPT_MINUTES as u64 && trimmed <= now + 1 - KEPT_MINUTES as u64);

        // The next minute's write drops the minute that turned a day old, one by one.
        let _: () = redis::cmd("HSET")
            .arg(&keys.stats)
            .arg("trimmed")
            .arg(trimmed - 2)
            .arg(format!("f:{}", trimmed - 1))
            .arg(1)
            .arg(format!("f:{}", trimmed))
            .arg(1)
            .query_async(&mut c)
            .await
            .unwrap();
        sample_oldest_pending(&conn, &ns, "q").await.unwrap();
        let fields: Vec<String> = redis::cmd("HKEYS")
            .arg(&keys.stats)
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(fields.iter().all(|f| !f.starts_with("f:")), "{fields:?}");
        let last = last_minutes(&conn, &ns, "q", 12).await.unwrap();
        assert_eq!(last.len(), 12);
        assert!(
            last.windows(2).all(|w| w[1].minute == w[0].minute + 1),
            "oldest first"
        );
        let then = last.iter().find(|m| m.minute == recent).unwrap();
        assert_eq!(
            (then.done, then.failed, then.oldest_pending_ms),
            (3, 0, None)
        );
        assert!(last.last().unwrap().minute >= now);
    }
}
