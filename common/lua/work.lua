-- work.lua: a worker's one round trip: report finished jobs, recover jobs
-- whose lease expired, promote due delayed jobs, claim up to k jobs.
-- KEYS: 1 wait, 2 delayed, 3 active, 4 stats, 5 log, 6 seq, 7 wake
-- ARGV: 1 job key prefix, 2 worker id, 3 lease ms, 4 k (jobs to claim),
--       5 log cap, 6 most leases to recover, 7 most delayed to promote,
--       8 n (reports), then 7 per report: id, lease token, outcome
--       (succeeded|failed|retry|cancelled|requeue), result, error,
--       exit code ('' for a signal), retry delay ms.
-- A report counts only while the job is running under that lease token
-- (fencing): otherwise "stale"; "ok" again for a report already applied.
-- Returns {reports' verdicts, claimed jobs (6 values each: id, payload,
-- attempt, max_attempts, timeout ms or '', lease token), next delayed due
-- ms or -1, server time ms}.
local now = now_ms()
local jobprefix, worker, lease = ARGV[1], ARGV[2], tonumber(ARGV[3])
local k, cap = tonumber(ARGV[4]), ARGV[5]
local wait, delayed, active, stats, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6]
local log = new_log()
local queued_now = 0

local function final(key, id, status, fields)
  redis.call('HSET', key, 'status', status, 'finished', int(now), unpack(fields))
  redis.call('HINCRBY', stats, status, 1)
  log_add(log, status, id)
end

local function requeue(key, id, priority)
  redis.call('HSET', key, 'status', 'queued')
  push_wait(wait, seq, id, priority)
  queued_now = queued_now + 1
  log_add(log, 'queued', id)
end

local function apply(key, id, job, outcome, result, err, code, delay)
  local fields = {}
  -- what an earlier attempt left must not pass for this one's
  redis.call('HDEL', key, 'exit_code', 'error')
  if code ~= '' then fields = {'exit_code', code} end
  local attempts_left = tonumber(job[3]) < tonumber(job[4])
  if job[6] == '1' and outcome ~= 'succeeded' then outcome = 'cancelled' end
  if outcome == 'retry' and not attempts_left then outcome = 'failed' end
  if outcome == 'succeeded' then
    fields[#fields + 1] = 'result'
    fields[#fields + 1] = result
    final(key, id, 'succeeded', fields)
  elseif outcome == 'failed' or outcome == 'cancelled' then
    fields[#fields + 1] = 'error'
    fields[#fields + 1] = err
    final(key, id, outcome, fields)
  elseif outcome == 'retry' then
    local due = now + tonumber(delay)
    redis.call('HSET', key, 'status', 'delayed', 'run_at', int(due), 'error', err,
      unpack(fields))
    redis.call('ZADD', delayed, due, id)
    redis.call('HINCRBY', stats, 'retried', 1)
    log_add(log, 'delayed', id)
  else -- requeue: stopped by its worker's shutdown; the attempt is not counted
    redis.call('HSET', key, 'attempt', tonumber(job[3]) - 1)
    requeue(key, id, job[5])
  end
end

-- 1. reports
local verdicts = {}
for i = 0, tonumber(ARGV[8]) - 1 do
  local b = 9 + i * 7
  local id, token = ARGV[b], ARGV[b + 1]
  local key = jobprefix .. id
  -- status, lease, attempt, max_attempts, priority, cancel, done
  local job = redis.call('HMGET', key, 'status', 'lease', 'attempt',
    'max_attempts', 'priority', 'cancel', 'done')
  if job[1] == 'running' and job[2] == token then
    redis.call('ZREM', active, id)
    redis.call('HSET', key, 'done', token)
    apply(key, id, job, ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6])
    verdicts[#verdicts + 1] = 'ok'
  elseif job[7] == token then
    verdicts[#verdicts + 1] = 'ok'
  else
    verdicts[#verdicts + 1] = 'stale'
  end
end

-- 2. leases that expired: the worker stopped renewing (it died, hung or
-- lost Redis); it has killed its handler itself by now
local expired = redis.call('ZRANGEBYSCORE', active, '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
for _, id in ipairs(expired) do
  local key = jobprefix .. id
  local job = redis.call('HMGET', key, 'status', 'worker', 'attempt',
    'max_attempts', 'priority', 'cancel')
  redis.call('ZREM', active, id)
  if job[1] == 'running' then
    local err = 'lease of worker ' .. (job[2] or '?') .. ' expired (attempt ' ..
      (job[3] or '?') .. ' of ' .. (job[4] or '?') .. ')'
    redis.call('HINCRBY', stats, 'recovered', 1)
    if job[6] == '1' then
      final(key, id, 'cancelled', {'error', err})
    elseif tonumber(job[3]) >= tonumber(job[4]) then
      final(key, id, 'failed', {'error', err})
    else
      redis.call('HSET', key, 'error', err)
      requeue(key, id, job[5])
    end
  end
end

-- 3. delayed jobs that are due
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, tonumber(ARGV[7]))
for _, id in ipairs(due) do
  local key = jobprefix .. id
  redis.call('ZREM', delayed, id)
  if redis.call('HGET', key, 'status') == 'delayed' then
    requeue(key, id, redis.call('HGET', key, 'priority'))
  end
end

-- 4. claim: the best k of the wait set, each with a fresh lease token
local claimed = {}
if k > 0 then
  local popped = redis.call('ZPOPMIN', wait, k)
  for i = 1, #popped, 2 do
    local id = popped[i]
    local key = jobprefix .. id
    local job = redis.call('HMGET', key, 'status', 'payload', 'attempt',
      'max_attempts', 'timeout_ms')
    if job[1] == 'queued' then
      local token = tostring(redis.call('HINCRBY', key, 'claims', 1))
      local attempt = (tonumber(job[3]) or 0) + 1
      redis.call('HSET', key, 'status', 'running', 'attempt', attempt,
        'started', int(now), 'worker', worker, 'lease', token)
      redis.call('ZADD', active, now + lease, id)
      log_add(log, 'running', id)
      for _, v in ipairs({id, job[2], attempt, job[4], job[5] or '', token}) do
        claimed[#claimed + 1] = v
      end
    end
  end
end

wake(KEYS[7], queued_now - #claimed / 6)
log_write(log, KEYS[5], cap)
local next_due = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
return {verdicts, claimed, tonumber(next_due[2]) or -1, now}
