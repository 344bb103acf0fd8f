-- renew.lua: a worker's heartbeat: extend the leases it holds, learn which
-- were lost or are to be cancelled, refresh its registration, and recover
-- (bounded) the jobs of workers whose leases expired.
-- KEYS: the queue keys of lib.lua's queue_keys, then the worker's hash
--       (keys_renew_argv in keys.c)
-- ARGV: 1 key base, 2 worker id, 3 lease ms, 4 heartbeat ttl ms, 5 host,
--       6 pid, 7 queue, 8 started ms, 9 most leases to recover (0: none
--       this time), 10 log cap, then id and lease token per job held.
-- Returns {one verdict per job: "ok", "cancel", "done" (not running any
-- more: the outcome reported under that lease token was applied, as when
-- Redis stopped before its answer reached the worker) or "lost", server
-- time ms}.
-- The count is script.h's, of the same name (tests/unit.c compares them).
local RENEW_FIXED_ARGS = 10
local worker_hash = KEYS[10]
local now = now_ms()
local Q = queue_keys(ARGV[1])
local lease = tonumber(ARGV[3])
local out = {}
local held = 0
for i = RENEW_FIXED_ARGS + 1, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local job = redis.call('HMGET', Q.job .. id, 'status', 'lease', 'cancel', 'done')
  if job[1] == 'running' and job[2] == token then
    redis.call('ZADD', Q.active, 'XX', now + lease, id)
    held = held + 1
    if job[3] == '1' then out[#out + 1] = 'cancel' else out[#out + 1] = 'ok' end
  elseif job[4] == token then
    out[#out + 1] = 'done'
  else
    out[#out + 1] = 'lost'
  end
end
local ttl = tonumber(ARGV[4])
redis.call('ZADD', Q.workers, now + ttl, ARGV[2])
redis.call('HSET', worker_hash, 'host', ARGV[5], 'pid', ARGV[6], 'queue', ARGV[7],
  'started', ARGV[8], 'jobs', held, 'heartbeat', int(now))
redis.call('PEXPIRE', worker_hash, ttl)
if tonumber(ARGV[9]) > 0 then
  local log = new_log()
  recover_expired(Q, log, now, tonumber(ARGV[9]))
  log_write(log, Q.log, ARGV[10])
end
out[#out + 1] = now
return out
