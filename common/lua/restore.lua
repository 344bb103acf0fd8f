-- restore.lua: put back on the queue jobs the PostgreSQL ledger holds as not
-- finished that Redis no longer has (it lost its data, or an enqueue never
-- reached it), with the attempts they had.
-- KEYS: the queue keys of lib.lua's queue_keys
-- ARGV: 1 key base ("aq:{q}:"), 2 log cap, then RESTORE_FIELDS per job: id, payload,
--       ledger status, attempt, max_attempts, priority, timeout ms (''),
--       run_at ms (''), created ms.
-- A job still in Redis is left alone ("exists"). A job the ledger saw
-- running with no attempt left fails, as a lost lease would; a delayed one
-- not yet due waits in the delayed set; a blocked one (waiting for its
-- parents, --after) is cancelled: the ledger keeps no parents, so it
-- cannot wait for them again; the others are queued.
-- Returns per job its new status, or "exists".
-- The count is script.h's, of the same name (tests/unit.c compares them).
local RESTORE_FIELDS = 9
local now = now_ms()
local Q = queue_keys(ARGV[1])
local cap = ARGV[2]
local log = new_log()
local out, queued, delayed = {}, 0, 0

for i = 3, #ARGV, RESTORE_FIELDS do
  local id, payload, was = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local attempt, max_attempts = tonumber(ARGV[i + 3]) or 0, tonumber(ARGV[i + 4]) or 1
  local priority, timeout, run_at = ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local key = Q.job .. id
  if redis.call('EXISTS', key) == 1 then
    out[#out + 1] = 'exists'
  else
    local fields = {'payload', payload, 'created', ARGV[i + 8], 'max_attempts',
      int(max_attempts), 'attempt', int(attempt), 'restored', int(now)}
    if priority ~= '0' and priority ~= '' then
      fields[#fields + 1] = 'priority'
      fields[#fields + 1] = priority
    end
    if timeout ~= '' then
      fields[#fields + 1] = 'timeout_ms'
      fields[#fields + 1] = timeout
    end
    if run_at ~= '' then
      fields[#fields + 1] = 'run_at'
      fields[#fields + 1] = run_at
    end
    redis.call('HSET', key, unpack(fields))
    redis.call('HINCRBY', Q.stats, 'restored', 1)
    local status
    if was == 'running' and attempt >= max_attempts then
      status = 'failed'
      finish(Q, log, key, id, status, now, {'error', 'redis lost this job while ' ..
        'attempt ' .. int(attempt) .. ' of ' .. int(max_attempts) .. ' ran'}, nil, false)
    elseif was == 'blocked' then
      status = 'cancelled'
      finish(Q, log, key, id, status, now, {'error', 'redis lost this job ' ..
        'while it waited for its parents (--after); enqueue it again'}, nil, false)
    elseif run_at ~= '' and tonumber(run_at) > now then
      status = 'delayed'
      redis.call('HSET', key, 'status', status)
      redis.call('ZADD', Q.delayed, tonumber(run_at), id)
      log_add(log, status, id)
      delayed = 1
    else
      status = 'queued'
      if was == 'running' then
        redis.call('HSET', key, 'error', 'redis lost this job while attempt ' ..
          int(attempt) .. ' of ' .. int(max_attempts) .. ' ran')
      end
      queued = queued + requeue(Q, log, key, id, priority, now)
    end
    out[#out + 1] = status
  end
end

wake(Q.wake, queued + delayed)
log_write(log, Q.log, cap)
return out
