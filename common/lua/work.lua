-- work.lua: a worker's one round trip: report finished jobs, promote due
-- delayed jobs, claim up to k jobs (none while the queue is paused).
-- KEYS: the queue keys of lib.lua's queue_keys
-- ARGV: 1 key base ("aq:{q}:"), 2 worker id, 3 lease ms, 4 k (jobs to
--       claim), 5 log cap, 6 most delayed jobs to promote, 7 n (reports),
--       then REPORT_FIELDS per report: id, lease token, outcome
--       (succeeded|failed|retry|cancelled|requeue), result, error,
--       exit code ('' for a signal), retry delay ms.
-- The lease token is the job's field lease, counted up by every claim.
-- A report counts only while the job is running under that lease token
-- (fencing): otherwise "stale"; "ok" again for a report already applied.
-- Returns {reports' verdicts, claimed jobs (CLAIM_FIELDS values each: id,
-- payload, attempt, max_attempts, timeout ms or '', lease token), next
-- delayed due ms or -1, server time ms}.
-- This is the hot path: two redis.call per job reported (an HMGET and an
-- HSET) and two per job claimed (the same), the
-- set entries and counters of the whole call written once; one EXISTS per
-- call asks whether the queue is paused.
-- REPORT_FIELDS and CLAIM_FIELDS are script.h's, of the same names
-- (tests/unit.c compares them); WORK_FIXED_ARGS counts ARGV 1 to 7 above.
local WORK_FIXED_ARGS = 7
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
  else -- requeue: stopped by its worker's shutdown; the attempt is not counted
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

-- 3. claim: the best k of the wait set, each with a fresh lease token (the
-- job's claim counter, counted up: a new token for every claim); nothing
-- while the queue is paused (aq-queue pause): the worker then waits on the
-- wake list as on an empty queue, and resume wakes it
local claimed, active = {}, {}
if k > 0 and redis.call('EXISTS', Q.paused) == 0 then
  local popped = redis.call('ZPOPMIN', Q.wait, k)
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

batch_write(Q, B)
wake(Q.wake, math.max(queued_now - #claimed / CLAIM_FIELDS, retried))
log_write(log, Q.log, cap)
if not head then head = redis.call('ZRANGE', Q.delayed, 0, 0, 'WITHSCORES') end
return {verdicts, claimed, tonumber(head[2]) or -1, now}
