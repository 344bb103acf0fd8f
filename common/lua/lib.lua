-- lib.lua: helpers shared by the scripts of aq; the build puts this file in
-- front of every other script, so each stays one atomic EVALSHA.
local PRIORITY_SPAN = 4398046511104 -- 2^42 sequence numbers per priority
local WAKE_MAX = 64

-- integers as text: Lua 5.1 would print big numbers with 14 digits only
local function int(x) return string.format('%d', x) end

-- the Redis server's clock in epoch milliseconds
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- put id on the wait set behind the jobs of its priority (FIFO within a
-- priority: a sequence that restarts when the wait set is empty)
local function push_wait(wait, seqkey, id, priority)
  local seq = 0
  if redis.call('ZCARD', wait) > 0 then
    seq = tonumber(redis.call('GET', seqkey) or '0')
  end
  seq = seq + 1
  redis.call('SET', seqkey, int(seq))
  redis.call('ZADD', wait, -(tonumber(priority) or 0) * PRIORITY_SPAN + seq, id)
end

-- wake up to n blocked workers (the list is bounded)
local function wake(list, n)
  if n <= 0 then return end
  local marks = {}
  for i = 1, math.min(n, WAKE_MAX) do marks[i] = '1' end
  redis.call('LPUSH', list, unpack(marks))
  redis.call('LTRIM', list, 0, WAKE_MAX - 1)
end

-- state changes, gathered by status, written as one log entry per status
local function new_log() return {order = {}, ids = {}} end
local function log_add(log, status, id)
  if not log.ids[status] then
    log.ids[status] = {}
    log.order[#log.order + 1] = status
  end
  local ids = log.ids[status]
  ids[#ids + 1] = id
end
local function log_write(log, key, cap)
  for _, status in ipairs(log.order) do
    redis.call('XADD', key, 'MAXLEN', '~', cap, '*', 'status', status,
      'ids', table.concat(log.ids[status], ' '))
  end
end

-- The keys every queue script but enqueue takes, in this order (see
-- keys_script_argv in keys.c); base is "PREFIX:{QUEUE}:".
local function queue_keys(base)
  return {wait = KEYS[1], delayed = KEYS[2], active = KEYS[3], stats = KEYS[4],
    log = KEYS[5], seq = KEYS[6], wake = KEYS[7], done = KEYS[8],
    workers = KEYS[9], base = base, job = base .. 'job:',
    events = base .. 'events:', worker = base .. 'worker:',
    ledger = base .. 'ledger', unarchived = base .. 'unarchived',
    failed = base .. 'failed', paused = base .. 'paused',
    blocked = base .. 'blocked', deps = base .. 'deps:',
    children = base .. 'children:',
    limits = base .. 'limits', rate = base .. 'rate',
    throttled = base .. 'throttled'}
end

-- Where a finished job goes: the done set orders finished jobs by time, so
-- trimming them costs what is due only. A queue with a PostgreSQL ledger
-- (aq-sweep keeps PREFIX:{Q}:ledger set) holds them in the unarchived set
-- instead, until aq-sweep has archived them (archive.lua moves them on):
-- nothing is trimmed before the ledger has it.
local function finished_set(Q)
  if Q.finished == nil then
    if redis.call('EXISTS', Q.ledger) == 1 then
      Q.finished = Q.unarchived
    else
      Q.finished = Q.done
    end
  end
  return Q.finished
end

-- Finished jobs of one call, for their set entries and counters to be
-- written once per call rather than once per job (each redis.call costs).
local function new_batch() return {zargs = {}, failed = {}, counts = {}, order = {}} end
local function batch_count(B, counter, n)
  if not B.counts[counter] then
    B.counts[counter] = 0
    B.order[#B.order + 1] = counter
  end
  B.counts[counter] = B.counts[counter] + n
end
local function batch_write(Q, B)
  if #B.zargs > 0 then redis.call('ZADD', finished_set(Q), unpack(B.zargs)) end
  if #B.failed > 0 then redis.call('ZADD', Q.failed, unpack(B.failed)) end
  for _, counter in ipairs(B.order) do
    redis.call('HINCRBY', Q.stats, counter, B.counts[counter])
  end
end

-- the final state of one job, without its children (see finish)
local function finish_one(Q, log, key, id, status, now, fields, B)
  redis.call('HSET', key, 'status', status, 'finished', int(now), unpack(fields))
  if B then
    B.zargs[#B.zargs + 1] = now
    B.zargs[#B.zargs + 1] = id
    if status == 'failed' then
      B.failed[#B.failed + 1] = now
      B.failed[#B.failed + 1] = id
    end
    batch_count(B, status, 1)
  else
    redis.call('HINCRBY', Q.stats, status, 1)
    redis.call('ZADD', finished_set(Q), now, id)
    if status == 'failed' then redis.call('ZADD', Q.failed, now, id) end
  end
  log_add(log, status, id)
end

-- a blocked job stops waiting for its parents: it leaves the blocked set,
-- its set of pending parents and their sets of children
local function unblock(Q, id)
  local deps = Q.deps .. id
  for _, parent in ipairs(redis.call('SMEMBERS', deps)) do
    redis.call('SREM', Q.children .. parent, id)
  end
  redis.call('DEL', deps)
  redis.call('ZREM', Q.blocked, id)
end

-- a blocked job whose parents all succeeded becomes queued, or delayed
-- while its run_at is ahead; returns 1 when queued (for wake-ups)
local function release(Q, log, key, id, now)
  local job = redis.call('HMGET', key, 'priority', 'run_at')
  redis.call('ZREM', Q.blocked, id)
  local due = tonumber(job[2])
  if due and due > now then
    redis.call('HSET', key, 'status', 'delayed')
    redis.call('ZADD', Q.delayed, due, id)
    log_add(log, 'delayed', id)
    wake(Q.wake, 1) -- a blocked worker sets its wait to the due time
    return 0
  end
  redis.call('HSET', key, 'status', 'queued', 'queued_at', int(now))
  push_wait(Q.wait, Q.seq, id, job[1])
  log_add(log, 'queued', id)
  return 1
end

-- A parent reached status: its children (the jobs enqueued --after it)
-- learn it. On success each child drops it from its pending parents and is
-- released when none is left; otherwise each blocked child is cancelled
-- ("parent ID failed" or "... cancelled"), and so on down to the
-- grandchildren: a loop over a work list, not a recursion. A graph of
-- dependencies has no cycle (a parent exists before its child), and each
-- job is settled once (its set of children is deleted as it is read), so
-- the loop ends after the jobs below the parent.
local function settle_children(Q, log, parent, status, now, B)
  local todo, queued = {{parent, status}}, 0
  local n = 1
  while n > 0 do
    local p, st = todo[n][1], todo[n][2]
    todo[n] = nil
    n = n - 1
    local ckey = Q.children .. p
    local kids = redis.call('SMEMBERS', ckey)
    redis.call('DEL', ckey)
    redis.call('HDEL', Q.job .. p, 'children')
    for _, id in ipairs(kids) do
      local key = Q.job .. id
      local job = redis.call('HMGET', key, 'status', 'children')
      if job[1] == 'blocked' then
        if st == 'succeeded' then
          local deps = Q.deps .. id
          redis.call('SREM', deps, p)
          if redis.call('SCARD', deps) == 0 then
            queued = queued + release(Q, log, key, id, now)
          end
        else
          unblock(Q, id)
          finish_one(Q, log, key, id, 'cancelled', now,
            {'error', 'parent ' .. p .. ' ' .. st}, B)
          if job[2] then
            n = n + 1
            todo[n] = {id, 'cancelled'}
          end
        end
      end
    end
  end
  wake(Q.wake, queued)
end

-- A job reaches a final state: succeeded, failed or cancelled; with a
-- batch B its set entries and counter wait for batch_write. A failed job
-- also goes on the failed set (by finish time), where aq-status --state
-- failed and aq-retry find it without a scan. children is the job's field
-- of that name when the caller read it (set only on a job that has
-- children, so a job without costs no call more), or nil: then finish
-- reads it.
local function finish(Q, log, key, id, status, now, fields, B, children)
  finish_one(Q, log, key, id, status, now, fields, B)
  if children == nil then children = redis.call('HGET', key, 'children') end
  if children then settle_children(Q, log, id, status, now, B) end
end

-- a finished job leaves the sets of finished jobs (it is retried, or
-- deleted)
local function unfinish(Q, id)
  redis.call('ZREM', Q.done, id)
  redis.call('ZREM', Q.unarchived, id)
  redis.call('ZREM', Q.failed, id)
end

-- a job goes back on the wait set; returns 1 (for counting wake-ups)
local function requeue(Q, log, key, id, priority, now)
  redis.call('HSET', key, 'status', 'queued', 'queued_at', int(now))
  push_wait(Q.wait, Q.seq, id, priority)
  log_add(log, 'queued', id)
  return 1
end

-- Jobs whose lease expired (their worker died, hung or lost Redis; it has
-- killed their handler by now, or its keeper has): back on the queue with
-- the attempt counted, or failed when none is left, or cancelled when
-- that was asked. At most limit of them. Returns {id, new status, ...} and
-- the number of set entries looked at (stale entries are dropped).
local function recover_expired(Q, log, now, limit)
  local out, queued = {}, 0
  local expired = redis.call('ZRANGEBYSCORE', Q.active, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(expired) do
    local key = Q.job .. id
    local job = redis.call('HMGET', key, 'status', 'worker', 'attempt',
      'max_attempts', 'priority', 'cancel', 'children')
    redis.call('ZREM', Q.active, id)
    if job[1] == 'running' then
      local err = 'lease of worker ' .. (job[2] or '?') .. ' expired (attempt ' ..
        (job[3] or '?') .. ' of ' .. (job[4] or '?') .. ')'
      local status = 'queued'
      redis.call('HINCRBY', Q.stats, 'recovered', 1)
      if job[6] == '1' then
        status = 'cancelled'
        finish(Q, log, key, id, status, now, {'error', err}, nil, job[7])
      elseif (tonumber(job[3]) or 0) >= (tonumber(job[4]) or 1) then
        status = 'failed'
        finish(Q, log, key, id, status, now, {'error', err}, nil, job[7])
      else
        redis.call('HSET', key, 'error', err)
        queued = queued + requeue(Q, log, key, id, job[5], now)
      end
      out[#out + 1] = id
      out[#out + 1] = status
    end
  end
  wake(Q.wake, queued)
  return out, #expired
end

-- Delayed jobs that are due move to the wait set; at most limit of them.
-- Returns their ids, and the number of set entries looked at.
local function promote_due(Q, log, now, limit)
  local out = {}
  local due = redis.call('ZRANGEBYSCORE', Q.delayed, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    local key = Q.job .. id
    redis.call('ZREM', Q.delayed, id)
    if redis.call('HGET', key, 'status') == 'delayed' then
      requeue(Q, log, key, id, redis.call('HGET', key, 'priority'), now)
      out[#out + 1] = id
    end
  end
  wake(Q.wake, #out)
  return out, #due
end
