-- work.lua: a worker's one round trip: report finished jobs, promote due
-- delayed jobs, claim up to k jobs.
-- KEYS: the queue keys of lib.lua's queue_keys
-- ARGV: 1 key base ("aq:{q}:"), 2 worker id, 3 lease ms, 4 k (jobs to
--       claim), 5 log cap, 6 most delayed jobs to promote, 7 n (reports),
--       then 7 per report: id, lease token, outcome
--       (succeeded|failed|retry|cancelled|requeue), result, error,
--       exit code ('' for a signal), retry delay ms.
-- A report counts only while the job is running under that lease token
-- (fencing): otherwise "stale"; "ok" again for a report already applied.
-- Returns {reports' verdicts, claimed jobs (6 values each: id, payload,
-- attempt, max_attempts, timeout ms or '', lease token), next delayed due
-- ms or -1, server time ms}.
local now = now_ms()
local Q = queue_keys(ARGV[1])
local worker, lease, k, cap = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local log = new_log()
local queued_now = 0

local function apply(key, id, job, outcome, result, err, code, delay)
  local fields = {}
  -- what an earlier attempt left must not pass for this one's
  redis.call('HDEL', key, 'exit_code', 'error')
  if code ~= '' then fields = {'exit_code', code} end
  local attempts_left = (tonumber(job[3]) or 0) < (tonumber(job[4]) or 1)
  if job[6] == '1' and outcome ~= 'succeeded' then outcome = 'cancelled' end
  if outcome == 'retry' and not attempts_left then outcome = 'failed' end
  if outcome == 'succeeded' then
    fields[#fields + 1] = 'result'
    fields[#fields + 1] = result
    finish(Q, log, key, id, 'succeeded', now, fields)
  elseif outcome == 'failed' or outcome == 'cancelled' then
    fields[#fields + 1] = 'error'
    fields[#fields + 1] = err
    finish(Q, log, key, id, outcome, now, fields)
  elseif outcome == 'retry' then
    local due = now + tonumber(delay)
    redis.call('HSET', key, 'status', 'delayed', 'run_at', int(due), 'error', err,
      unpack(fields))
    redis.call('ZADD', Q.delayed, due, id)
    redis.call('HINCRBY', Q.stats, 'retried', 1)
    log_add(log, 'delayed', id)
  else -- requeue: stopped by its worker's shutdown; the attempt is not counted
    redis.call('HSET', key, 'attempt', math.max((tonumber(job[3]) or 1) - 1, 0))
    queued_now = queued_now + requeue(Q, log, key, id, job[5], now)
  end
end

-- 1. reports
local verdicts = {}
for i = 0, tonumber(ARGV[7]) - 1 do
  local b = 8 + i * 7
  local id, token = ARGV[b], ARGV[b + 1]
  local key = Q.job .. id
  -- status, lease, attempt, max_attempts, priority, cancel, done
  local job = redis.call('HMGET', key, 'status', 'lease', 'attempt',
    'max_attempts', 'priority', 'cancel', 'done')
  if job[1] == 'running' and job[2] == token then
    redis.call('ZREM', Q.active, id)
    redis.call('HSET', key, 'done', token)
    apply(key, id, job, ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6])
    verdicts[#verdicts + 1] = 'ok'
  elseif job[7] == token then
    verdicts[#verdicts + 1] = 'ok'
  else
    verdicts[#verdicts + 1] = 'stale'
  end
end

-- 2. delayed jobs that are due (retries, --delay, --run-at)
promote_due(Q, log, now, tonumber(ARGV[6]))

-- 3. claim: the best k of the wait set, each with a fresh lease token
local claimed = {}
if k > 0 then
  local popped = redis.call('ZPOPMIN', Q.wait, k)
  for i = 1, #popped, 2 do
    local id = popped[i]
    local key = Q.job .. id
    local job = redis.call('HMGET', key, 'status', 'payload', 'attempt',
      'max_attempts', 'timeout_ms')
    if job[1] == 'queued' then
      local token = tostring(redis.call('HINCRBY', key, 'claims', 1))
      local attempt = (tonumber(job[3]) or 0) + 1
      redis.call('HSET', key, 'status', 'running', 'attempt', attempt,
        'started', int(now), 'worker', worker, 'lease', token)
      redis.call('HDEL', key, 'event_calls') -- numbered anew for this lease
      redis.call('ZADD', Q.active, now + lease, id)
      log_add(log, 'running', id)
      for _, v in ipairs({id, job[2], attempt, job[4], job[5] or '', token}) do
        claimed[#claimed + 1] = v
      end
    end
  end
end

wake(Q.wake, queued_now - #claimed / 6)
log_write(log, Q.log, cap)
local next_due = redis.call('ZRANGE', Q.delayed, 0, 0, 'WITHSCORES')
return {verdicts, claimed, tonumber(next_due[2]) or -1, now}
