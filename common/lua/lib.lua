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
