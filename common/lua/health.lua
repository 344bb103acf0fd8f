-- health.lua: the figures of one queue for aq-health, from counters and
-- sorted-set cardinalities only: never a scan of the jobs.
-- KEYS: the queue keys of lib.lua's queue_keys
-- ARGV: 1 key base, 2 the archive's consumer group
-- Returns HEALTH_FIGURES values: {waiting, delayed, active, live workers, oldest waiting age ms
-- (-1 when none waits), server time ms, stats as a flat field/value list,
-- finished jobs waiting for the ledger's archive, log entries the archive
-- has not read (-1: no archive; -2: unknown, the log was capped past it),
-- 1 when the queue is paused (aq-queue pause) else 0, jobs blocked on
-- their parents (--after), its rate limit, the limit's period ms, its
-- concurrency limit (each 0 when not set), ms its throttle hold has left
-- (0: none)}.
-- The count is script.h's, of the same name (tests/unit.c compares them).
local HEALTH_FIGURES = 15
local now = now_ms()
local Q = queue_keys(ARGV[1])

-- The oldest waiting job is the head of one of the priority levels (FIFO
-- within a level): look at each level's head only.
local function oldest_age()
  local oldest, from = -1, '-inf'
  for _ = 1, 2001 do -- at most one per priority level
    local head = redis.call('ZRANGEBYSCORE', Q.wait, from, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if #head == 0 then break end
    local t = redis.call('HMGET', Q.job .. head[1], 'created', 'run_at', 'queued_at')
    local since = 0
    for i = 1, 3 do
      local v = tonumber(t[i])
      if v and v > since then since = v end
    end
    if since > 0 and now - since > oldest then oldest = now - since end
    from = int((math.floor(tonumber(head[2]) / PRIORITY_SPAN) + 1) * PRIORITY_SPAN)
  end
  return oldest
end

-- The archive's lag in log entries, from XINFO GROUPS (Redis 7).
local function archive_lag()
  local groups = redis.pcall('XINFO', 'GROUPS', Q.log)
  if groups.err then return -1 end
  for _, g in ipairs(groups) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    if info.name == ARGV[2] then
      return tonumber(info.lag) or -2
    end
  end
  return -1
end

local lim = redis.call('HMGET', Q.limits, 'rate', 'period_ms', 'concurrency')
local figures = {redis.call('ZCARD', Q.wait), redis.call('ZCARD', Q.delayed),
  redis.call('ZCARD', Q.active), redis.call('ZCOUNT', Q.workers, now, '+inf'),
  oldest_age(), now, redis.call('HGETALL', Q.stats),
  redis.call('ZCARD', Q.unarchived), archive_lag(), redis.call('EXISTS', Q.paused),
  redis.call('ZCARD', Q.blocked),
  tonumber(lim[1]) or 0, tonumber(lim[2]) or 0, tonumber(lim[3]) or 0,
  math.max(redis.call('PTTL', Q.throttled), 0)}
assert(#figures == HEALTH_FIGURES, 'health.lua returns HEALTH_FIGURES values')
return figures
