-- renew.lua: a worker's heartbeat: extend the leases it holds, learn which
-- were lost or are to be cancelled, and refresh its registration.
-- KEYS: 1 active, 2 workers, 3 the worker's hash
-- ARGV: 1 job key prefix, 2 worker id, 3 lease ms, 4 heartbeat ttl ms,
--       5 host, 6 pid, 7 queue, 8 started ms, then id and lease token per job.
-- Returns {one verdict per job: "ok", "cancel" or "lost", server time ms}.
local now = now_ms()
local jobprefix, lease = ARGV[1], tonumber(ARGV[3])
local out = {}
local held = 0
for i = 9, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local job = redis.call('HMGET', jobprefix .. id, 'status', 'lease', 'cancel')
  if job[1] == 'running' and job[2] == token then
    redis.call('ZADD', KEYS[1], 'XX', now + lease, id)
    held = held + 1
    if job[3] == '1' then out[#out + 1] = 'cancel' else out[#out + 1] = 'ok' end
  else
    out[#out + 1] = 'lost'
  end
end
local ttl = tonumber(ARGV[4])
redis.call('ZADD', KEYS[2], now + ttl, ARGV[2])
redis.call('HSET', KEYS[3], 'host', ARGV[5], 'pid', ARGV[6], 'queue', ARGV[7],
  'started', ARGV[8], 'jobs', held, 'heartbeat', int(now))
redis.call('PEXPIRE', KEYS[3], ttl)
out[#out + 1] = now
return out
