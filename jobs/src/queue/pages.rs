//! Every state of a queue listed page by page, with a cursor that goes on where the last page
//! ended (never from an offset, which shifts as jobs come and go):
//!
//! - `dead`, `failed`, `scheduled`: sorted sets, newest first; the cursor is `score:id`.
//! - `done`: the done list, newest first; the cursor is the last item (`ms:id`); a page after an
//!   item retention dropped is empty, since everything after it went first.
//! - `pending`: the stream entries not delivered yet, oldest first; the cursor is an entry id.
//! - `running`: the entries delivered and not acknowledged, oldest first; likewise.
//!
//! Each read asks for one more than the page, so the last page says it is the last
//! (`next_cursor` null).

use super::inspect::{last_delivered, load, no_stream, JobInfo, Status};
use super::{Connection, Keys, QueueError, GROUP};
use redis::streams::{StreamPendingCountReply, StreamRangeReply};

/// One page of jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    pub jobs: Vec<JobInfo>,
    /// Where the next page starts; `None` when this one was the last.
    pub next_cursor: Option<String>,
}

fn bad_cursor() -> QueueError {
    QueueError::Invalid("cursor must be a next_cursor this service answered".into())
}

/// A stream entry id as a comparable pair.
fn entry_id(raw: &str) -> Option<(u64, u64)> {
    let (ms, seq) = raw.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// A page of `status` jobs after `cursor`, at most `limit` (1 to 1000).
pub async fn page(
    conn: &Connection,
    namespace: &str,
    queue: &str,
    status: Status,
    limit: usize,
    cursor: Option<&str>,
) -> Result<JobPage, QueueError> {
    let keys = Keys::new(namespace, queue);
    let mut read = Read {
        conn: conn.clone(),
        keys: &keys,
        limit: limit.clamp(1, 1000),
        cursor,
    };
    let (ids, next) = match status {
        Status::Dead => read.sorted(&keys.dead).await?,
        Status::Failed => read.sorted(&keys.failed).await?,
        Status::Scheduled => read.sorted(&keys.scheduled).await?,
        Status::Done => read.done().await?,
        Status::Pending => read.pending().await?,
        Status::Running => read.running().await?,
    };
    let jobs = load(&mut read.conn, &keys, queue, &ids).await?;
    Ok(JobPage {
        jobs,
        next_cursor: next,
    })
}

type Ids = (Vec<String>, Option<String>);

/// One page's read of a queue: at most `limit` ids after `cursor`, and where the next page
/// starts.
struct Read<'a> {
    conn: Connection,
    keys: &'a Keys,
    limit: usize,
    cursor: Option<&'a str>,
}

/// Keeps the first `limit` of items read one past the page, answering the last one kept
/// when the read found more: where the next page starts.
fn one_page<T: Clone>(items: &mut Vec<T>, limit: usize) -> Option<T> {
    let more = items.len() > limit;
    items.truncate(limit);
    if more {
        items.last().cloned()
    } else {
        None
    }
}

impl Read<'_> {
    /// One of the sorted sets (`key`), newest first; the cursor is `score:id`.
    async fn sorted(&mut self, key: &str) -> Result<Ids, QueueError> {
        let limit = self.limit;
        let after = match self.cursor {
            None => None,
            Some(c) => {
                let (score, id) = c.split_once(':').ok_or_else(bad_cursor)?;
                Some((
                    score.parse::<i64>().map_err(|_| bad_cursor())?,
                    id.to_string(),
                ))
            }
        };
        let mut pipe = redis::pipe();
        let top = match &after {
            // Entries at exactly the cursor's score are read whole and ordered by id here.
            Some((score, _)) => {
                pipe.cmd("ZRANGEBYSCORE")
                    .arg(key)
                    .arg(score)
                    .arg(score)
                    .arg("WITHSCORES");
                format!("({score}")
            }
            None => "+inf".to_string(),
        };
        pipe.cmd("ZREVRANGEBYSCORE")
            .arg(key)
            .arg(top)
            .arg("-inf")
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(limit + 1);
        let parts: Vec<Vec<(String, f64)>> = pipe.query_async(&mut self.conn).await?;
        let mut all: Vec<(i64, String)> = parts
            .into_iter()
            .flatten()
            .map(|(id, score)| (score as i64, id))
            .filter(|(score, id)| {
                after
                    .as_ref()
                    .is_none_or(|(s, i)| (*score, id.as_str()) < (*s, i.as_str()))
            })
            .collect();
        all.sort_by(|a, b| b.cmp(a));
        let next = one_page(&mut all, limit).map(|(s, id)| format!("{s}:{id}"));
        Ok((all.into_iter().map(|(_, id)| id).collect(), next))
    }

    /// The done list, newest first; the cursor is the last item (`ms:id`).
    async fn done(&mut self) -> Result<Ids, QueueError> {
        let (done, limit) = (&self.keys.done, self.limit);
        let start = match self.cursor {
            None => 0,
            Some(item) => {
                if !item.contains(':') {
                    return Err(bad_cursor());
                }
                let at: Option<i64> = redis::cmd("LPOS")
                    .arg(done)
                    .arg(item)
                    .query_async(&mut self.conn)
                    .await?;
                match at {
                    Some(i) => i + 1,
                    None => return Ok((Vec::new(), None)),
                }
            }
        };
        let mut items: Vec<String> = redis::cmd("LRANGE")
            .arg(done)
            .arg(start)
            .arg(start + limit as i64)
            .query_async(&mut self.conn)
            .await?;
        let next = one_page(&mut items, limit);
        let ids = items
            .iter()
            .map(|item| super::done_item_id(item).to_string())
            .collect();
        Ok((ids, next))
    }

    /// The stream entries not delivered yet, oldest first; the cursor is an entry id.
    async fn pending(&mut self) -> Result<Ids, QueueError> {
        let (keys, limit, cursor) = (self.keys, self.limit, self.cursor);
        if cursor.is_some_and(|c| entry_id(c).is_none()) {
            return Err(bad_cursor());
        }
        let Some(last) = last_delivered(&mut self.conn, keys).await? else {
            return Ok((Vec::new(), None));
        };
        // Undelivered entries come after the group's last delivered one; a cursor further on
        // goes on from there.
        let from = match cursor {
            Some(c) if entry_id(c) > entry_id(&last) => c.to_string(),
            _ => last,
        };
        let mut entries: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&keys.stream)
            .arg(format!("({from}"))
            .arg("+")
            .arg("COUNT")
            .arg(limit + 1)
            .query_async(&mut self.conn)
            .await?;
        let next = one_page(&mut entries.ids, limit).map(|e| e.id);
        let ids = entries
            .ids
            .iter()
            .filter_map(|e| e.get::<String>("id"))
            .collect();
        Ok((ids, next))
    }

    /// The entries delivered and not acknowledged, oldest first; the cursor is an entry id.
    async fn running(&mut self) -> Result<Ids, QueueError> {
        let (keys, limit) = (self.keys, self.limit);
        let start = match self.cursor {
            None => "-".to_string(),
            Some(c) if entry_id(c).is_some() => format!("({c}"),
            Some(_) => return Err(bad_cursor()),
        };
        let held: StreamPendingCountReply = match redis::cmd("XPENDING")
            .arg(&keys.stream)
            .arg(GROUP)
            .arg(start)
            .arg("+")
            .arg(limit + 1)
            .query_async(&mut self.conn)
            .await
        {
            Ok(p) => p,
            Err(e) if no_stream(&e) => return Ok((Vec::new(), None)),
            Err(e) => return Err(e.into()),
        };
        let mut entries: Vec<String> = held.ids.into_iter().map(|p| p.id).collect();
        let next = one_page(&mut entries, limit);
        if entries.is_empty() {
            return Ok((Vec::new(), None));
        }
        let mut pipe = redis::pipe();
        for entry in &entries {
            pipe.cmd("XRANGE").arg(&keys.stream).arg(entry).arg(entry);
        }
        let ranges: Vec<StreamRangeReply> = pipe.query_async(&mut self.conn).await?;
        let ids = ranges
            .iter()
            .filter_map(|r| r.ids.first()?.get::<String>("id"))
            .collect();
        Ok((ids, next))
    }
}
