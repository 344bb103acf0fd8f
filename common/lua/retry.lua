-- retry.lua: put failed jobs of one queue back on the wait set, or delete
-- them: a batch, atomically.
-- KEYS: the queue keys of lib.lua's queue_keys
-- ARGV: 1 key base ("aq:{q}:"), 2 log cap, 3 action (retry|delete),
--       4 "ids", then the ids; or 4 "all", 5 offset, 6 count: the entries
--       of the failed set from offset (oldest first), count of them.
-- A retried job starts afresh: attempt 0, no error, exit_code, result or
-- finished, queued_at now; it leaves the failed and done (or unarchived)
-- sets and goes on the wait set behind the jobs of its priority, with a
-- wake-up marker, in one log entry (queued) for the batch.
-- A deleted job loses its record, its events and its set entries. A job
-- the ledger has not archived yet (in the unarchived set) is not deleted:
-- the ledger would keep its last state, and aq-sweep would take a job
-- that was running there for one Redis lost.
-- Returns {entries looked at, then id and outcome per job}: "queued",
-- "deleted", "unknown", "unarchived" (not deleted, see above), or
-- "refused:STATUS" for a job that is not failed (left alone: a running
-- job is not retried). With "all", an entry of the failed set whose job is not
-- failed is dropped from the set and not returned.
local now = now_ms()
local Q = queue_keys(ARGV[1])
local cap, action, what = ARGV[2], ARGV[3], ARGV[4]
local log = new_log()
local out = {0}
local queued = 0

local function retry(key, id, priority)
  redis.call('HDEL', key, 'error', 'exit_code', 'result', 'finished', 'cancel')
  redis.call('HSET', key, 'attempt', 0)
  unfinish(Q, id)
  queued = queued + requeue(Q, log, key, id, priority, now)
  return 'queued'
end

local function delete(key, id)
  if redis.call('ZSCORE', Q.unarchived, id) then return 'unarchived' end
  redis.call('DEL', key, Q.events .. id)
  unfinish(Q, id)
  return 'deleted'
end

-- one job: its outcome, or nil for a stale entry of the failed set
local function act(id, from_set)
  local key = Q.job .. id
  local job = redis.call('HMGET', key, 'status', 'priority')
  if job[1] ~= 'failed' then
    if not from_set then return job[1] and 'refused:' .. job[1] or 'unknown' end
    redis.call('ZREM', Q.failed, id)
    return nil
  end
  if action == 'delete' then return delete(key, id) end
  return retry(key, id, job[2])
end

local ids
if what == 'all' then
  local from = tonumber(ARGV[5])
  ids = redis.call('ZRANGE', Q.failed, from, from + tonumber(ARGV[6]) - 1)
else
  ids = {unpack(ARGV, 5)}
end
if action ~= 'retry' and action ~= 'delete' then
  return redis.error_reply('unknown retry action ' .. tostring(action))
end
for _, id in ipairs(ids) do
  local outcome = act(id, what == 'all')
  if outcome then
    out[#out + 1] = id
    out[#out + 1] = outcome
  end
end
out[1] = #ids
wake(Q.wake, queued)
log_write(log, Q.log, cap)
return out
