-- enqueue.lua: put a batch of jobs on one queue, atomically.
-- KEYS: 1 wait, 2 delayed, 3 stats, 4 log, 5 seq, 6 wake
-- ARGV: 1 job key prefix ("aq:{q}:job:"), 2 log length cap, 3 job count n,
--       then 7 per job: id, payload, priority, delay ms, run_at ms (epoch),
--       max_attempts, timeout ms ('' where not given)
-- Returns per job: "queued", "delayed" or "duplicate:STATUS" (an existing
-- job with that id is left as it is: the id is an idempotency key).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local PRIORITY_SPAN = 4398046511104 -- 2^42 sequence numbers per priority
local WAKE_MAX = 64
-- integers as text: Lua 5.1 would print big numbers with 14 digits only
local function int(x) return string.format('%d', x) end

local jobkey, n = ARGV[1], tonumber(ARGV[3])
local out, queued, delayed, wait_args, delay_args = {}, {}, {}, {}, {}
-- FIFO within a priority: a sequence that restarts when the wait set is empty
local seq = 0
if redis.call('ZCARD', KEYS[1]) > 0 then
  seq = tonumber(redis.call('GET', KEYS[5]) or '0')
end

for i = 0, n - 1 do
  local b = 4 + i * 7
  local id, payload, priority = ARGV[b], ARGV[b + 1], tonumber(ARGV[b + 2])
  local key = jobkey .. id
  local existing = redis.call('HGET', key, 'status')
  if existing then
    out[#out + 1] = 'duplicate:' .. existing
  else
    local due
    if ARGV[b + 3] ~= '' then
      due = now + tonumber(ARGV[b + 3])
    elseif ARGV[b + 4] ~= '' then
      due = tonumber(ARGV[b + 4])
    end
    local status = 'queued'
    if due and due > now then status = 'delayed' end
    redis.call('HSET', key, 'status', status, 'payload', payload,
      'created', int(now), 'priority', priority, 'max_attempts', ARGV[b + 5],
      'attempt', 0)
    if ARGV[b + 6] ~= '' then redis.call('HSET', key, 'timeout_ms', ARGV[b + 6]) end
    if due then redis.call('HSET', key, 'run_at', int(due)) end
    if status == 'delayed' then
      delay_args[#delay_args + 1] = int(due)
      delay_args[#delay_args + 1] = id
      delayed[#delayed + 1] = id
    else
      seq = seq + 1
      wait_args[#wait_args + 1] = int(-priority * PRIORITY_SPAN + seq)
      wait_args[#wait_args + 1] = id
      queued[#queued + 1] = id
    end
    out[#out + 1] = status
  end
end

local cap = ARGV[2]
if #queued > 0 then
  redis.call('ZADD', KEYS[1], unpack(wait_args))
  redis.call('SET', KEYS[5], int(seq))
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', cap, '*', 'status', 'queued',
    'ids', table.concat(queued, ' '))
  local wake = {}
  for i = 1, math.min(#queued, WAKE_MAX) do wake[i] = '1' end
  redis.call('LPUSH', KEYS[6], unpack(wake))
  redis.call('LTRIM', KEYS[6], 0, WAKE_MAX - 1)
end
if #delayed > 0 then
  redis.call('ZADD', KEYS[2], unpack(delay_args))
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', cap, '*', 'status', 'delayed',
    'ids', table.concat(delayed, ' '))
end
if #queued + #delayed > 0 then
  redis.call('HINCRBY', KEYS[3], 'enqueued', #queued + #delayed)
end
return out
