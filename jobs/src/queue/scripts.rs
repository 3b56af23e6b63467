//! Every state change of a job is one of these Lua scripts, so it is atomic: a crash between
//! two Redis calls can never leave a job half-moved. Times come from the server's clock
//! (`TIME`), so workers on machines with skewed clocks agree on what is due.
//!
//! Keys, all under one hash tag (see [`super::Keys`]): `KEYS[1]` stream, `KEYS[2]` scheduled,
//! `KEYS[3]` done (a list), `KEYS[4]` dead, `KEYS[5]` failed, `KEYS[6]` workers (`SETTLE` and
//! `SAMPLE` then take the queue's per-minute stats as `KEYS[7]`); then the
//! record (a hash) of each job the call names, in the order ARGV names them, so that every key
//! a script touches is declared (a cluster routes by them). What a script can only learn as it
//! runs (entries a read delivers, retries falling due, done jobs past their retention) it
//! answers, and the caller names those jobs, with their records, in its next call. A job has at
//! most one live stream entry at a time; its record's `entry` names it.

use std::sync::LazyLock;

use super::Script;

/// Helpers shared by the scripts: server time in ms, group creation, and claiming delivered
/// entries (counting the attempt, or burying a job its workers kept dying on).
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function ensure_group(stream, group)
  if redis.call('EXISTS', stream) == 0 then
    redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
  end
end

-- Variadic calls in bounded chunks: Lua's unpack fails past a few thousand values (the bug
-- that makes apalis-redis's fetch fail above 8,000 due jobs).
local function chunked(list, step, call)
  for i = 1, #list, step do call(i, math.min(i + step - 1, #list)) end
end

-- Acknowledged entries are not deleted one by one (XDEL is costly, and its tombstones would
-- spoil the group's exact lag): trim_stream drops them from the head in whole nodes.
local function forget_entry(stream, group, entry)
  redis.call('XACK', stream, group, entry)
end

-- The group's fields as a table: last-delivered-id, lag, pending, ...
local function group_info(stream, group)
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    if info['name'] == group then return info end
  end
  return nil
end

-- Drops acknowledged entries: everything older than the oldest entry still being worked on,
-- or than the last one delivered. The oldest pending entry alone is asked for: a busy queue
-- nearly always has one, and the summary's per-consumer counts or the group's info would be
-- built for nothing.
local function trim_stream(stream, group)
  local first = redis.pcall('XPENDING', stream, group, '-', '+', 1)
  if first['err'] then return end
  local oldest
  if #first > 0 then
    oldest = first[1][1]
  else
    local info = group_info(stream, group)
    if not info then return end
    oldest = info['last-delivered-id']
  end
  redis.call('XTRIM', stream, 'MINID', '~', oldest)
end

-- Each failed attempt's error and time, the last 20, for an operator reading the job.
local function record_error(key, now, err)
  local raw = redis.call('HGET', key, 'errors')
  local list = {}
  if raw and raw ~= '' then list = cjson.decode(raw) end
  list[#list + 1] = {at = now, error = err, attempt = tonumber(redis.call('HGET', key, 'attempts') or '0')}
  while #list > 20 do table.remove(list, 1) end
  redis.call('HSET', key, 'errors', cjson.encode(list))
end

local function bury(key, id, now, err)
  record_error(key, now, err)
  redis.call('HSET', key, 'status', 'dead', 'last_error', err, 'updated_at', now, 'entry', '', 'lock_by', '')
  redis.call('ZADD', KEYS[4], now, id)
  redis.call('ZREM', KEYS[5], id)
end

-- Claims delivered entries, named in ARGV from `first` on as entry, id pairs (the i-th job's
-- record is KEYS[6 + i]). The record's lock_by names the consumer running the job: claiming
-- sets it, so a worker whose job was taken over can tell it no longer owns it. An entry read
-- longer than `fresh_ms` ago gets its lease started afresh, so that no other worker takes it
-- over before this one's first renewal.
local function claim(group, consumer, now, first, fresh_ms)
  local out = {}
  local k = 0
  for i = first, #ARGV, 2 do
    k = k + 1
    local entry, id, key = ARGV[i], ARGV[i + 1], KEYS[6 + k]
    local rec = redis.call('HMGET', key, 'entry', 'max_attempts', 'args', 'attempts')
    local held = redis.call('XPENDING', KEYS[1], group, entry, entry, 1, consumer)
    if #held == 0 then
      -- Taken over by another worker (its lease passed since this one read it): not ours.
    elseif rec[1] ~= entry then
      -- No record, or a stale entry of a job that has moved on: it must not run the job.
      forget_entry(KEYS[1], group, entry)
    else
      local attempts = tonumber(rec[4]) + 1
      local max = tonumber(rec[2])
      if attempts > max then
        forget_entry(KEYS[1], group, entry)
        bury(key, id, now, 'its worker was lost on every attempt (last attempt ' .. (attempts - 1) .. ')')
      else
        redis.call('HSET', key, 'attempts', attempts, 'status', 'running', 'lock_by', consumer, 'updated_at', now)
        if tonumber(held[1][3]) > fresh_ms then
          redis.call('XCLAIM', KEYS[1], group, consumer, 0, entry, 'JUSTID')
        end
        out[#out + 1] = {entry, id, rec[3], attempts, max}
      end
    end
  end
  return out
end

-- Adds stream entries as {entry, id} pairs to `out`; an entry that names no job is dropped.
local function named(group, entries, out)
  for _, e in ipairs(entries) do
    local fields = e[2]
    if type(fields) == 'table' and fields[1] == 'id' then
      out[#out + 1] = e[1]
      out[#out + 1] = fields[2]
    else
      forget_entry(KEYS[1], group, e[1])
    end
  end
end

-- The board's per-minute counters (see `stats`), a hash with fields 'd:<minute>' (jobs done),
-- 'f:<minute>' (failed attempts) and 'o:<minute>' (the oldest pending job's age in ms, the
-- largest sampled), minutes counted from the Unix epoch on Redis's clock. Minutes older than a
-- day go as new ones come: one HDEL per minute passed, or one sweep of the hash after a long
-- idle (it holds at most three fields a minute of a day). The whole hash expires a day after
-- its last minute's first write, so a queue nobody uses leaves nothing behind.
local STATS_KEEP = 1440
local function stats_touch(key, minute)
  local upto = minute - STATS_KEEP
  local last = tonumber(redis.call('HGET', key, 'trimmed') or '0') or 0
  if last < upto then
    if upto - last > 60 then
      local old = {}
      for _, f in ipairs(redis.call('HKEYS', key)) do
        local m = tonumber(string.match(f, '^%a:(%d+)$'))
        if m and m <= upto then old[#old + 1] = f end
      end
      chunked(old, 500, function(i, j) redis.call('HDEL', key, unpack(old, i, j)) end)
    else
      for m = last + 1, upto do redis.call('HDEL', key, 'd:' .. m, 'f:' .. m, 'o:' .. m) end
    end
    redis.call('HSET', key, 'trimmed', upto)
    -- Once a minute, not on every write: the hash outlives its last write by a day either way.
    redis.call('PEXPIRE', key, (STATS_KEEP + 60) * 60000)
  end
end

local function stats_minute(now) return math.floor(now / 60000) end
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

/// [`ENQUEUE`]'s Lua, which [`then_enqueue`] also runs inside a function whose KEYS and ARGV
/// are its own: so it must not call the PRELUDE helpers that read the script's globals
/// (`claim`, `bury`, `named`), which there are the caller's keys too.
const ENQUEUE_BODY: &str = r#"
local group = ARGV[1]
ensure_group(KEYS[1], group)
local now = now_ms()
local out = {}
local k = 0
for i = 2, #ARGV, 4 do
  k = k + 1
  local id, args, max, delay = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local key = KEYS[6 + k]
  if redis.call('EXISTS', key) == 1 then
    out[#out + 1] = 0
  else
    if delay > 0 then
      redis.call('HSET', key, 'args', args, 'attempts', 0, 'max_attempts', max,
        'enqueued_at', now, 'updated_at', now, 'status', 'scheduled', 'run_at', now + delay)
      redis.call('ZADD', KEYS[2], now + delay, id)
    else
      local entry = redis.call('XADD', KEYS[1], '*', 'id', id)
      redis.call('HSET', key, 'args', args, 'attempts', 0, 'max_attempts', max,
        'enqueued_at', now, 'updated_at', now, 'status', 'pending', 'entry', entry)
    end
    out[#out + 1] = 1
  end
end
return out
"#;

/// Enqueue jobs. ARGV: group, then per job: id, args, max_attempts, delay_ms (KEYS from 7:
/// their records). Answers per job 1 (stored) or 0 (a job with that id exists: nothing
/// changed).
pub static ENQUEUE: LazyLock<Script> = LazyLock::new(|| script(ENQUEUE_BODY));

/// A script of the caller's (`first`, a body with KEYS and ARGV of its own) followed in the
/// same run by [`ENQUEUE`] of the jobs named after its keys and arguments, when `first`
/// answers a second value that is true (a standalone run of `first` answers only its first).
/// ARGV: how many keys and arguments are `first`'s, then those, then the enqueue's. Answers
/// `first`'s answer and the enqueue's (per job 1 or 0), -1 when it was not asked for, or the
/// error it raised: `first`'s writes stand either way, as they would in two steps, and the
/// caller enqueues again (the reconciler would otherwise).
pub fn then_enqueue(first: &str) -> Script {
    Script::new(&format!(
        r#"{PRELUDE}
local function enqueue(KEYS, ARGV)
{ENQUEUE_BODY}
end
local function first(KEYS, ARGV)
{first}
end
local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local k1, a1, k2, a2 = {{}}, {{}}, {{}}, {{}}
for i = 1, #KEYS do if i <= nk then k1[i] = KEYS[i] else k2[i - nk] = KEYS[i] end end
for i = 3, #ARGV do if i <= na + 2 then a1[i - 2] = ARGV[i] else a2[i - 2 - na] = ARGV[i] end end
local r, wanted = first(k1, a1)
if type(r) == 'table' and r['err'] then return r end
if not wanted then return {{r, -1}} end
local ok, out = pcall(enqueue, k2, a2)
if not ok then
  if type(out) == 'table' then out = out['err'] end
  return {{r, tostring(out)}}
end
return {{r, out}}
"#
    ))
}

/// One fetch without blocking: promote the due jobs the caller names (the previous fetch
/// answered them), take over entries whose worker stopped renewing its lease (when `cursor` is
/// not empty: workers do it every quarter lease, not on every fetch), then read new entries.
/// ARGV: group, consumer, count, lease_ms, promote_chunk, cursor, then the ids to promote (KEYS
/// from 7: their records). Answers {entries as entry, id pairs (to [`CLAIM`]), due ids (a
/// bounded chunk, to promote next), next_due_ms_or_-1, next_cursor}.
pub static FETCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local group, consumer = ARGV[1], ARGV[2]
local count, lease, chunk, cursor = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), ARGV[6]
ensure_group(KEYS[1], group)
local now = now_ms()
for i = 7, #ARGV do
  local id, key = ARGV[i], KEYS[i]
  local at = redis.call('ZSCORE', KEYS[2], id)
  if at and tonumber(at) <= now then
    redis.call('ZREM', KEYS[2], id)
    if redis.call('EXISTS', key) == 1 then
      local entry = redis.call('XADD', KEYS[1], '*', 'id', id)
      redis.call('HSET', key, 'status', 'pending', 'entry', entry, 'updated_at', now)
      redis.call('HDEL', key, 'run_at')
    end
  end
end
local entries = {}
if cursor ~= '' then
  local reclaimed = redis.call('XAUTOCLAIM', KEYS[1], group, consumer, lease, cursor, 'COUNT', count)
  cursor = reclaimed[1]
  named(group, reclaimed[2], entries)
end
local wanted = count - math.floor(#entries / 2)
if wanted > 0 then
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', wanted,
    'STREAMS', KEYS[1], '>')
  if read then named(group, read[1][2], entries) end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, chunk)
local next_due = -1
if #due > 0 then
  next_due = 0
else
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if #first > 0 then next_due = math.max(0, tonumber(first[2]) - now) end
end
return {entries, due, next_due, cursor}
"#,
    )
});

/// Claims delivered entries. ARGV: group, consumer, fresh_ms (a quarter lease), then entry,
/// id pairs (KEYS from 7: the jobs' records). Answers each job claimed as {entry, id, args, attempts, max}.
pub static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
return claim(ARGV[1], ARGV[2], now_ms(), 4, tonumber(ARGV[3]))
"#,
    )
});

/// Records the outcome of runs, and counts them in the current minute of the queue's stats
/// (KEYS[7]): done, and failed (retry or dead). ARGV: group, consumer, done_keep_count,
/// done_keep_ms, the number of runs, then per run: entry, id, outcome (done|retry|dead),
/// delay_ms, error; then done-list items past their retention that the previous call answered,
/// to drop. KEYS from 8: the runs' records, then the dropped items' records.
/// A run whose job this consumer no longer holds (its lease passed and another worker took
/// the job, or it was handed back) changes nothing: the current holder settles the job.
/// Answers {per run 1 (recorded) or 0 (not ours any more), the next items past retention}.
pub static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local group, consumer = ARGV[1], ARGV[2]
local keep_count, keep_ms, runs = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local out = {}
local settled, done = {}, {}
local failed = 0
for r = 1, runs do
  local i = 6 + (r - 1) * 5
  local entry, id, outcome, delay, err = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4]
  local key = KEYS[7 + r]
  local rec = redis.call('HMGET', key, 'entry', 'lock_by', 'attempts', 'status')
  if rec[1] ~= entry or rec[2] ~= consumer then
    out[#out + 1] = 0
  elseif rec[4] == 'done' then
    -- Recorded already (this settle sent again after its answer was lost).
    out[#out + 1] = 1
  else
    settled[#settled + 1] = entry
    if outcome == 'done' then
      -- entry and lock_by stay as they were: a done job is never claimed or settled again
      -- (its entry is acknowledged), and leaving them saves work on the busiest path.
      redis.call('HSET', key, 'status', 'done', 'updated_at', now)
      done[#done + 1] = now .. ':' .. id
      -- Only a job on its second attempt or later can have failed before.
      if tonumber(rec[3]) > 1 then redis.call('ZREM', KEYS[5], id) end
    elseif outcome == 'retry' then
      record_error(key, now, err)
      redis.call('HSET', key, 'status', 'scheduled', 'last_error', err, 'updated_at', now,
        'run_at', now + delay, 'entry', '', 'lock_by', '')
      redis.call('ZADD', KEYS[2], now + delay, id)
      redis.call('ZADD', KEYS[5], now, id)
      failed = failed + 1
    else
      bury(key, id, now, err)
      failed = failed + 1
    end
    out[#out + 1] = 1
  end
end
-- One command each for the whole batch.
chunked(settled, 500, function(i, j) redis.call('XACK', KEYS[1], group, unpack(settled, i, j)) end)
if #settled > 0 then trim_stream(KEYS[1], group) end
-- Done jobs, newest first, as "ms:id": a list, since they only ever arrive in time order.
chunked(done, 1000, function(i, j) redis.call('LPUSH', KEYS[3], unpack(done, i, j)) end)
-- Counted here, with the records: only what this call recorded, once.
if #done > 0 or failed > 0 then
  local minute = stats_minute(now)
  if #done > 0 then redis.call('HINCRBY', KEYS[7], 'd:' .. minute, #done) end
  if failed > 0 then redis.call('HINCRBY', KEYS[7], 'f:' .. minute, failed) end
  stats_touch(KEYS[7], minute)
end
-- Retention: the items named (oldest first) are dropped while they are still the oldest
-- (another worker may have dropped them first), with their records: read, popped and
-- deleted in one command each.
local first_item = 6 + runs * 5
local named_items = #ARGV - first_item + 1
if named_items > 0 then
  local tail = redis.call('LRANGE', KEYS[3], -named_items, -1)
  local still = 0
  while still < named_items and tail[#tail - still] == ARGV[first_item + still] do
    still = still + 1
  end
  if still > 0 then
    redis.call('RPOP', KEYS[3], still)
    -- Only the records of items that name a done job: one written by another hand is
    -- dropped from the list, but the record its text happens to name is left alone.
    local records = {}
    for i = 1, still do
      if string.match(ARGV[first_item + i - 1], '^%d+:') then
        records[#records + 1] = KEYS[7 + runs + i]
      end
    end
    chunked(records, 500, function(i, j) redis.call('DEL', unpack(records, i, j)) end)
  end
end
-- And the next ones due to go, oldest first, at most 500 per call: beyond the count, then by
-- age. Only as many are read into Lua as may be due: the list is in time order, so when the
-- want-th oldest is due, all older ones are too, and want doubles (reading 500 on every
-- settle was most of a settle's cost). An item that does not parse is due: it is not one
-- of ours, and must not stop retention for good.
local function due(item, excess)
  if excess > 0 then return true end
  local colon = string.find(item, ':', 1, true)
  local at = colon and tonumber(string.sub(item, 1, colon - 1))
  return not at or at <= now - keep_ms
end
local beyond = {}
local excess = redis.call('LLEN', KEYS[3]) - keep_count
local last = redis.call('LINDEX', KEYS[3], -1)
if last and due(last, excess) then
  local want = math.min(500, math.max(excess, 0) + 16)
  while want < 500 do
    local probe = redis.call('LINDEX', KEYS[3], -want)
    if not probe or not due(probe, excess - want + 1) then break end
    want = math.min(500, want * 2)
  end
  local oldest = redis.call('LRANGE', KEYS[3], -want, -1)
  for i = #oldest, 1, -1 do
    if not due(oldest[i], excess) then break end
    beyond[#beyond + 1] = oldest[i]
    excess = excess - 1
  end
end
return {out, beyond}
"#,
    )
});

/// Keeps leases: resets the idle time of entries this consumer still holds, and records the
/// worker's heartbeat. ARGV: group, consumer, then entry ids. Entries another consumer took
/// meanwhile are left to it.
pub static RENEW: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local group, consumer = ARGV[1], ARGV[2]
local now = now_ms()
redis.call('ZADD', KEYS[6], now, consumer)
local renewed = 0
for i = 3, #ARGV do
  local held = redis.call('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1, consumer)
  if #held > 0 then
    redis.call('XCLAIM', KEYS[1], group, consumer, 0, ARGV[i], 'JUSTID')
    renewed = renewed + 1
  end
end
return renewed
"#,
    )
});

/// Hands back jobs a consumer holds (a worker shutting down, or a process after its workers
/// stopped): each goes back to the queue as a new entry, its unfinished attempt not counted.
/// ARGV: group, consumer, '1' when these are the last it holds, then entry, id pairs (KEYS
/// from 7: the jobs' records). With the last, a consumer that holds nothing more is removed.
/// Answers how many jobs went back.
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local group, consumer, last = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local now = now_ms()
local released = 0
local k = 0
for i = 4, #ARGV, 2 do
  k = k + 1
  local entry, id, key = ARGV[i], ARGV[i + 1], KEYS[6 + k]
  local held = redis.call('XPENDING', KEYS[1], group, entry, entry, 1, consumer)
  if #held > 0 then
    forget_entry(KEYS[1], group, entry)
    if redis.call('HGET', key, 'entry') == entry then
      if redis.call('HGET', key, 'status') == 'running' and redis.call('HGET', key, 'lock_by') == consumer then
        redis.call('HINCRBY', key, 'attempts', -1)
      end
      local fresh = redis.call('XADD', KEYS[1], '*', 'id', id)
      redis.call('HSET', key, 'status', 'pending', 'entry', fresh, 'updated_at', now, 'lock_by', '')
      released = released + 1
    end
  end
end
if last == '1' and #redis.call('XPENDING', KEYS[1], group, '-', '+', 1, consumer) == 0 then
  redis.call('ZREM', KEYS[6], consumer)
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], group, consumer)
  trim_stream(KEYS[1], group)
end
return released
"#,
    )
});

/// An operator runs a dead job again (with a fresh set of attempts), or a job waiting for its
/// retry right now. ARGV: group, id (KEYS[7]: its record). Answers 'retried', 'not_retryable'
/// or 'not_found'.
pub static RETRY: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local group, id, key = ARGV[1], ARGV[2], KEYS[7]
if redis.call('EXISTS', key) == 0 then return 'not_found' end
local dead = redis.call('ZSCORE', KEYS[4], id)
local waiting = redis.call('ZSCORE', KEYS[2], id)
if not dead and not waiting then return 'not_retryable' end
ensure_group(KEYS[1], group)
local now = now_ms()
if dead then
  redis.call('ZREM', KEYS[4], id)
  redis.call('HSET', key, 'attempts', 0)
else
  redis.call('ZREM', KEYS[2], id)
end
local entry = redis.call('XADD', KEYS[1], '*', 'id', id)
redis.call('HSET', key, 'status', 'pending', 'entry', entry, 'updated_at', now)
redis.call('HDEL', key, 'run_at')
return 'retried'
"#,
    )
});

/// Exact counts, read in one atomic step: the group's lag (entries not yet delivered) and its
/// pending entries (delivered, not acknowledged). ARGV: group. Answers
/// {pending, running, scheduled, done, failed, dead}.
pub static COUNTS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local pending, running = 0, 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = group_info(KEYS[1], ARGV[1])
  if info then
    running = tonumber(info['pending'])
    pending = info['lag']
    if type(pending) ~= 'number' then
      -- Redis could not work the lag out: count the undelivered entries.
      pending = #redis.call('XRANGE', KEYS[1], '(' .. info['last-delivered-id'], '+')
    end
  end
end
return {pending, running, redis.call('ZCARD', KEYS[2]), redis.call('LLEN', KEYS[3]),
  redis.call('ZCARD', KEYS[5]), redis.call('ZCARD', KEYS[4])}
"#,
    )
});

/// Samples how long the oldest job waiting for a worker has waited (0 when none waits) into
/// the current minute of the queue's stats (KEYS[7]), keeping the largest sample of the
/// minute: every process samples, and the longest wait is what an operator needs to see.
/// ARGV: group. Answers the age in ms.
pub static SAMPLE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = now_ms()
local age = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = group_info(KEYS[1], ARGV[1])
  if info then
    local first = redis.call('XRANGE', KEYS[1], '(' .. info['last-delivered-id'], '+', 'COUNT', 1)
    if #first > 0 then
      local ms = tonumber(string.match(first[1][1], '^(%d+)-'))
      if ms then age = math.max(0, now - ms) end
    end
  end
end
local minute = stats_minute(now)
local field = 'o:' .. minute
local was = tonumber(redis.call('HGET', KEYS[7], field) or '-1') or -1
if age > was then redis.call('HSET', KEYS[7], field, age) end
stats_touch(KEYS[7], minute)
return age
"#,
    )
});

/// An operator discards a dead job (its record goes with it), audited. ARGV: id, audit entry
/// (KEYS[7]: its record, KEYS[8]: the queue's audit list). Answers 'discarded', 'not_dead' or
/// 'not_found'.
pub static DISCARD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id, key = ARGV[1], KEYS[7]
local dead = redis.call('ZSCORE', KEYS[4], id)
if not dead then
  if redis.call('EXISTS', key) == 1 then return 'not_dead' end
  return 'not_found'
end
redis.call('ZREM', KEYS[4], id)
redis.call('DEL', key)
redis.call('LPUSH', KEYS[8], ARGV[2])
redis.call('LTRIM', KEYS[8], 0, 999)
return 'discarded'
"#,
    )
});

/// An operator runs dead jobs again, each with a fresh set of attempts, audited. ARGV: group,
/// audit entry, then ids (KEYS from 7: their records; the last key: the audit list). A dead
/// id without a record is dropped. Answers {retried, dropped}.
pub static RETRY_DEAD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local group = ARGV[1]
ensure_group(KEYS[1], group)
local now = now_ms()
local retried, dropped = 0, 0
for i = 3, #ARGV do
  local id, key = ARGV[i], KEYS[i + 4]
  if redis.call('ZSCORE', KEYS[4], id) then
    redis.call('ZREM', KEYS[4], id)
    if redis.call('EXISTS', key) == 1 then
      local entry = redis.call('XADD', KEYS[1], '*', 'id', id)
      redis.call('HSET', key, 'attempts', 0, 'status', 'pending', 'entry', entry, 'updated_at', now)
      redis.call('HDEL', key, 'run_at')
      retried = retried + 1
    else
      dropped = dropped + 1
    end
  end
end
if retried > 0 then
  redis.call('LPUSH', KEYS[#KEYS], ARGV[2])
  redis.call('LTRIM', KEYS[#KEYS], 0, 999)
end
return {retried, dropped}
"#,
    )
});

/// Drops dead jobs older than the retention, with their records. ARGV: max age ms, then ids
/// (KEYS from 7: their records). Answers how many went.
pub static DROP_DEAD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local cutoff = now_ms() - tonumber(ARGV[1])
local dropped = 0
for i = 2, #ARGV do
  local id, key = ARGV[i], KEYS[i + 5]
  local at = redis.call('ZSCORE', KEYS[4], id)
  if at and tonumber(at) <= cutoff then
    redis.call('ZREM', KEYS[4], id)
    redis.call('DEL', key)
    dropped = dropped + 1
  end
end
return dropped
"#,
    )
});

/// Pauses ('1') or resumes ('0') a queue, audited. ARGV: '1' or '0', the pause record, audit
/// entry (KEYS[7]: the pause flag, KEYS[8]: the audit list). Answers 1 if it changed.
pub static PAUSE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local was = redis.call('EXISTS', KEYS[7])
if ARGV[1] == '1' then
  redis.call('SET', KEYS[7], ARGV[2])
else
  redis.call('DEL', KEYS[7])
end
redis.call('LPUSH', KEYS[8], ARGV[3])
redis.call('LTRIM', KEYS[8], 0, 999)
if (was == 1) == (ARGV[1] == '1') then return 0 end
return 1
"#,
    )
});

#[cfg(test)]
mod tests {
    #[test]
    fn the_enqueue_that_runs_inside_another_script_reads_no_global_keys() {
        for helper in ["claim(", "bury(", "named("] {
            assert!(!super::ENQUEUE_BODY.contains(helper), "{helper}");
        }
    }
}
