-- sweep.lua: one janitor's action on one queue, atomic, on at most limit
-- items, costing what is due, not what is held.
-- KEYS: the queue keys of lib.lua's queue_keys
-- ARGV: 1 action, 2 key base ("aq:{q}:"), 3 log cap, 4 limit, 5 the
--       action's parameter (ms: max wait for "stale", retention for "trim").
-- Returns {entries looked at, items...}: a batch is full when entries looked
-- at = limit (entries with no job behind them are dropped, not returned).
-- Actions and their items:
--   recover  jobs whose lease expired: {id, new status, ...}
--   promote  delayed jobs that are due: {id, ...}
--   stale    queued jobs waiting longer than max wait, failed: {id, ...}
--   workers  workers whose heartbeat expired, removed: {worker id, ...}
--   trim     finished jobs older than the retention, deleted with their
--            events (and their failed set entry); the log stream capped:
--            {id, ...}
local now = now_ms()
local Q = queue_keys(ARGV[2])
local action, cap, limit, param = ARGV[1], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local log = new_log()
local out = {}
local looked = 0

-- When a queued job started waiting: its last requeue, its due time, or
-- its creation, whichever is latest.
local function waiting_since(key)
  local t = redis.call('HMGET', key, 'created', 'run_at', 'queued_at')
  local since = 0
  for i = 1, 3 do
    local v = tonumber(t[i])
    if v and v > since then since = v end
  end
  return since
end

-- The wait set is FIFO within each priority level, so the stale jobs of a
-- level are its first ones: look at each level's head, and skip the level
-- at the first job that has not waited too long.
local function fail_stale(max_wait)
  local from = '-inf'
  while looked < limit do
    local head = redis.call('ZRANGEBYSCORE', Q.wait, from, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if #head == 0 then break end
    local level_end = (math.floor(tonumber(head[2]) / PRIORITY_SPAN) + 1) * PRIORITY_SPAN
    -- a few at a time: a level whose head is fresh is done with at once
    local ids = redis.call('ZRANGEBYSCORE', Q.wait, from, '(' .. int(level_end),
      'LIMIT', 0, math.min(limit - looked, 64))
    local fresh = false
    for _, id in ipairs(ids) do
      local key = Q.job .. id
      looked = looked + 1
      if redis.call('HGET', key, 'status') ~= 'queued' then
        redis.call('ZREM', Q.wait, id) -- no job behind it: drop the entry
      elseif now - waiting_since(key) <= max_wait then
        fresh = true
        break
      else
        redis.call('ZREM', Q.wait, id)
        finish(Q, log, key, id, 'failed', now,
          {'error', 'waited longer than ' .. int(max_wait) .. ' ms (--max-wait)'})
        out[#out + 1] = id
      end
    end
    if fresh or #ids == 0 then from = int(level_end) end
  end
end

local function remove_dead_workers()
  local dead = redis.call('ZRANGEBYSCORE', Q.workers, '-inf', now, 'LIMIT', 0, limit)
  for _, w in ipairs(dead) do
    redis.call('ZREM', Q.workers, w)
    redis.call('DEL', Q.worker .. w)
    out[#out + 1] = w
  end
  looked = #dead
end

local function trim_finished(retention)
  local old = redis.call('ZRANGEBYSCORE', Q.done, '-inf', now - retention, 'LIMIT', 0, limit)
  for _, id in ipairs(old) do
    redis.call('DEL', Q.job .. id, Q.events .. id)
    redis.call('ZREM', Q.done, id)
    redis.call('ZREM', Q.failed, id)
    out[#out + 1] = id
  end
  looked = #old
  redis.call('XTRIM', Q.log, 'MAXLEN', '~', cap)
end

if action == 'recover' then
  out, looked = recover_expired(Q, log, now, limit)
elseif action == 'promote' then
  out, looked = promote_due(Q, log, now, limit)
elseif action == 'stale' then
  fail_stale(param)
elseif action == 'workers' then
  remove_dead_workers()
elseif action == 'trim' then
  trim_finished(param)
else
  return redis.error_reply('unknown sweep action ' .. tostring(action))
end
log_write(log, Q.log, cap)
table.insert(out, 1, looked)
return out
