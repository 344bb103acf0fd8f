-- work.lua: a worker's one round trip: report finished jobs, promote due
-- delayed jobs, claim up to k jobs as the queue's flow control lets it
-- (none while the queue is paused or throttled; no more than its rate and
-- concurrency limits allow).
-- KEYS: the queue keys of lib.lua's queue_keys
-- ARGV: 1 key base ("aq:{q}:"), 2 worker id, 3 lease ms, 4 k (jobs to
--       claim), 5 log cap, 6 most delayed jobs to promote, 7 n (reports),
--       then REPORT_FIELDS per report: id, lease token, outcome
--       (succeeded|failed|retry|cancelled|requeue|throttled), result,
--       error, exit code ('' for a signal), delay ms (retry: its backoff;
--       throttled: how long the queue is to be held).
-- The lease token is the job's field lease, counted up by every claim.
-- A report counts only while the job is running under that lease token
-- (fencing): otherwise "stale"; "ok" again for a report already applied.
-- Returns {reports' verdicts, claimed jobs (CLAIM_FIELDS values each: id,
-- payload, attempt, max_attempts, timeout ms or '', lease token), the
-- next time worth a look (ms: the next delayed job due, or the end of a
-- rate window or throttle that held the claim back) or -1, server time
-- ms, held: 0, or 1 when a rate or concurrency limit held the claim back
-- while jobs wait, 2 while the queue is throttled}.
-- This is the hot path: two redis.call per job reported (an HMGET and an
-- HSET) and two per job claimed (the same), the
-- set entries and counters of the whole call written once; one EXISTS per
-- call asks whether any flow control (pause, limits, throttle) is set.
-- REPORT_FIELDS, CLAIM_FIELDS and WORK_REPLY_VALUES are script.h's, of the
-- same names (tests/unit.c compares them); WORK_FIXED_ARGS counts ARGV 1
-- to 7 above.
local WORK_FIXED_ARGS = 7
local WORK_REPLY_VALUES = 5
local REPORT_FIELDS = 7
local CLAIM_FIELDS = 6
local now = now_ms()
local now_s = int(now)
local Q = queue_keys(ARGV[1])
local worker, lease, k, cap = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local log = new_log()
local B = new_batch()
local queued_now = 0
local retried = 0
local inactive = {}

-- A handler asked for the queue to be held ms milliseconds (the service
-- it calls throttles it): no claim until then, by the Redis clock. A hold
-- that ends later already is kept; the log says until when.
local function throttle(id, ms)
  if ms <= 0 then return end
  local untl = now + ms
  if untl > (tonumber(redis.call('GET', Q.throttled)) or 0) then
    -- expiring at its end by the same clock that decides the claims
    redis.call('SET', Q.throttled, int(untl), 'PXAT', int(untl))
    redis.call('XADD', Q.log, 'MAXLEN', '~', cap, '*', 'status', 'throttled',
      'ids', id, 'until', int(untl))
  end
end

-- job: status, lease, attempt, max_attempts, priority, cancel, done,
-- exit_code, error, children (for finish) (what an earlier attempt left must not pass for this
-- one's: removed when there)
local function apply(key, id, token, job, outcome, result, err, code, delay)
  local fields = {'done', token}
  if job[8] or job[9] then redis.call('HDEL', key, 'exit_code', 'error') end
  if code ~= '' then
    fields[#fields + 1] = 'exit_code'
    fields[#fields + 1] = code
  end
  local attempts_left = (tonumber(job[3]) or 0) < (tonumber(job[4]) or 1)
  if job[6] == '1' and outcome ~= 'succeeded' then outcome = 'cancelled' end
  if outcome == 'retry' and not attempts_left then outcome = 'failed' end
  if outcome == 'succeeded' then
    fields[#fields + 1] = 'result'
    fields[#fields + 1] = result
    finish(Q, log, key, id, 'succeeded', now, fields, B, job[10])
  elseif outcome == 'failed' or outcome == 'cancelled' then
    fields[#fields + 1] = 'error'
    fields[#fields + 1] = err
    finish(Q, log, key, id, outcome, now, fields, B, job[10])
  elseif outcome == 'retry' then
    local due = now + tonumber(delay)
    redis.call('HSET', key, 'status', 'delayed', 'run_at', int(due), 'error', err,
      unpack(fields))
    redis.call('ZADD', Q.delayed, due, id)
    batch_count(B, 'retried', 1)
    log_add(log, 'delayed', id)
    retried = 1 -- a blocked worker is woken to set its wait to the due time
  else -- requeue (its worker's shutdown) or throttled (its handler asked
    -- for the queue to be held): back on the queue, the attempt not counted
    if outcome == 'throttled' then
      throttle(id, tonumber(delay) or 0)
      fields[#fields + 1] = 'error'
      fields[#fields + 1] = err
    end
    redis.call('HSET', key, 'attempt', math.max((tonumber(job[3]) or 1) - 1, 0),
      unpack(fields))
    queued_now = queued_now + requeue(Q, log, key, id, job[5], now)
  end
end

-- 1. reports
local verdicts = {}
for i = 0, tonumber(ARGV[7]) - 1 do
  local b = WORK_FIXED_ARGS + 1 + i * REPORT_FIELDS
  local id, token = ARGV[b], ARGV[b + 1]
  local key = Q.job .. id
  local job = redis.call('HMGET', key, 'status', 'lease', 'attempt',
    'max_attempts', 'priority', 'cancel', 'done', 'exit_code', 'error',
    'children')
  if job[1] == 'running' and job[2] == token then
    inactive[#inactive + 1] = id
    apply(key, id, token, job, ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5],
      ARGV[b + 6])
    verdicts[#verdicts + 1] = 'ok'
  elseif job[7] == token then
    verdicts[#verdicts + 1] = 'ok'
  else
    verdicts[#verdicts + 1] = 'stale'
  end
end
if #inactive > 0 then redis.call('ZREM', Q.active, unpack(inactive)) end

-- 2. delayed jobs that are due (retries, --delay, --run-at): one look at
-- the earliest tells whether any is, and when the next is due
local head = redis.call('ZRANGE', Q.delayed, 0, 0, 'WITHSCORES')
if head[2] and tonumber(head[2]) <= now then
  promote_due(Q, log, now, tonumber(ARGV[6]))
  head = nil
end

-- When the rate set is full: when its oldest claim leaves the window (ms);
-- -1 while it has room.
local function rate_full_until(limits)
  if redis.call('ZCARD', Q.rate) < tonumber(limits[2]) then return -1 end
  local oldest = redis.call('ZRANGE', Q.rate, 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + tonumber(limits[3])
end

-- 3. flow control: how many of the k jobs this call may claim, when a
-- claim held back is worth trying again (ms; -1: when a worker wakes it),
-- and whether the queue takes no claim at all now (paused, throttled or
-- out of its rate).
-- Paused (aq-queue pause): none, until resume wakes the workers.
-- Throttled: none until the hold ends. Concurrency: no more jobs leased
-- than the limit, across all workers. Rate: no more claims in any period
-- than the limit, across all workers: the claims of the last period are
-- kept in the rate set (a sliding window, exact at every instant).
local function flow_room(limits)
  if redis.call('EXISTS', Q.paused) == 1 then return 0, -1, true end
  local untl = tonumber(redis.call('GET', Q.throttled))
  if untl and untl > now then return 0, untl, true end
  local room, at = k, -1
  if limits[1] then
    room = math.min(room, tonumber(limits[1]) - redis.call('ZCARD', Q.active))
  end
  if limits[2] then
    redis.call('ZREMRANGEBYSCORE', Q.rate, '-inf', now - tonumber(limits[3]))
    room = math.min(room, tonumber(limits[2]) - redis.call('ZCARD', Q.rate))
    at = rate_full_until(limits)
  end
  return math.max(room, 0), at, at ~= -1
end

-- One look tells whether any flow control is set; only then are they read.
local limits, room, retry_at, closed = {}, k, -1, false
if (k > 0 or #inactive > 0) and
    redis.call('EXISTS', Q.paused, Q.limits, Q.throttled) > 0 then
  limits = redis.call('HMGET', Q.limits, 'concurrency', 'rate', 'period_ms')
  room, retry_at, closed = flow_room(limits)
end

-- 4. claim: the best of the wait set, each with a fresh lease token (the
-- job's claim counter, counted up: a new token for every claim); a worker
-- that claims nothing waits on the wake list as on an empty queue
local claimed, active, rated = {}, {}, {}
if room > 0 then
  local popped = redis.call('ZPOPMIN', Q.wait, room)
  for i = 1, #popped, 2 do
    local id = popped[i]
    local key = Q.job .. id
    local job = redis.call('HMGET', key, 'status', 'payload', 'attempt',
      'max_attempts', 'timeout_ms', 'lease', 'event_calls')
    if job[1] == 'queued' then
      local token = tostring((tonumber(job[6]) or 0) + 1)
      local attempt = (tonumber(job[3]) or 0) + 1
      if job[7] then -- the job's event calls are numbered anew for this lease
        redis.call('HSET', key, 'status', 'running', 'attempt', attempt,
          'started', now_s, 'worker', worker, 'lease', token, 'event_calls', 0)
      else
        redis.call('HSET', key, 'status', 'running', 'attempt', attempt,
          'started', now_s, 'worker', worker, 'lease', token)
      end
      active[#active + 1] = now + lease
      active[#active + 1] = id
      if limits[2] then
        rated[#rated + 1] = now
        rated[#rated + 1] = id .. ':' .. token
      end
      log_add(log, 'running', id)
      local n = #claimed
      claimed[n + 1] = id
      claimed[n + 2] = job[2]
      claimed[n + 3] = attempt
      claimed[n + 4] = job[4]
      claimed[n + 5] = job[5] or ''
      claimed[n + 6] = token
    end
  end
end
if #active > 0 then redis.call('ZADD', Q.active, unpack(active)) end
if #rated > 0 then
  redis.call('ZADD', Q.rate, unpack(rated))
  redis.call('PEXPIRE', Q.rate, limits[3])
  if retry_at == -1 and room < k then retry_at = rate_full_until(limits) end
end

-- A limit or a throttle held the claim back while jobs wait: the wake-up
-- markers would only bring the blocked workers round to be refused too
-- (they look again when the window or the hold ends, or when woken). A
-- manual pause keeps them: resume wakes the workers. Slots a concurrency
-- limit has free again (jobs of this call ended, and it claimed fewer)
-- wake as many blocked workers, unless the queue takes no claim now.
local held = 0
local paused = closed and retry_at == -1
if room < k and not paused and redis.call('ZCARD', Q.wait) > 0 then
  held = 1
  redis.call('DEL', Q.wake)
end
if closed and not paused and redis.call('EXISTS', Q.throttled) == 1 then held = 2 end
if limits[1] and #inactive > 0 and not closed then
  local free = tonumber(limits[1]) - redis.call('ZCARD', Q.active)
  if free > 0 then wake(Q.wake, math.min(free, redis.call('ZCARD', Q.wait))) end
end

batch_write(Q, B)
if held > 0 then queued_now = 0 end
wake(Q.wake, math.max(queued_now - #claimed / CLAIM_FIELDS, retried))
log_write(log, Q.log, cap)
if not head then head = redis.call('ZRANGE', Q.delayed, 0, 0, 'WITHSCORES') end
local next_at = tonumber(head[2]) or -1
if retry_at ~= -1 and (next_at == -1 or retry_at < next_at) then next_at = retry_at end
local reply = {verdicts, claimed, next_at, now, held}
assert(#reply == WORK_REPLY_VALUES, 'work.lua returns WORK_REPLY_VALUES values')
return reply
