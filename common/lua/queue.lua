-- queue.lua: aq-queue's actions on one queue, each atomic.
-- KEYS: the queue keys of lib.lua's queue_keys
-- ARGV: 1 action, 2 key base ("aq:{q}:"), 3 log cap, 4 limit (purge: the
--       most jobs of one call), 5 rate (limit: jobs per period; '' keeps
--       it, 'off' removes it), 6 its period ms, 7 concurrency (limit: ''
--       keeps it, 'off' removes it)
-- Actions and their replies:
--   pause   set the paused key (to the time it was paused, ms; kept when
--           it is set already): workers claim nothing while it exists
--   resume  delete it and a handler's throttle hold, and wake the blocked
--           workers (up to 64) when jobs wait
--   limit   set or remove the rate and concurrency limits (the limits
--           hash; work.lua enforces them), and wake the blocked workers
--           (a limit raised or removed lets them claim now)
--   show    change nothing
--   each of the four returns QUEUE_FIGURES values: {1 when paused else 0,
--           waiting, delayed, running, rate limit, its period ms,
--           concurrency limit (each 0 when not set), ms the throttle hold
--           has left (0: none)}
--   purge   the first limit jobs of the wait set become cancelled, with
--           the error "purged", in one log entry: {entries looked at,
--           ids...} (entries with no queued job behind them are dropped,
--           not returned)
-- The count is script.h's, of the same name (tests/unit.c compares them).
local QUEUE_FIGURES = 8
local now = now_ms()
local action, Q, cap = ARGV[1], queue_keys(ARGV[2]), ARGV[3]

local function figures()
  local lim = redis.call('HMGET', Q.limits, 'rate', 'period_ms', 'concurrency')
  local f = {redis.call('EXISTS', Q.paused), redis.call('ZCARD', Q.wait),
    redis.call('ZCARD', Q.delayed), redis.call('ZCARD', Q.active),
    tonumber(lim[1]) or 0, tonumber(lim[2]) or 0, tonumber(lim[3]) or 0,
    math.max(redis.call('PTTL', Q.throttled), 0)}
  assert(#f == QUEUE_FIGURES, 'queue.lua returns QUEUE_FIGURES values')
  return f
end

local function purge(limit)
  local log, B, out = new_log(), new_batch(), {0}
  local popped = redis.call('ZPOPMIN', Q.wait, limit)
  for i = 1, #popped, 2 do
    local id = popped[i]
    local key = Q.job .. id
    if redis.call('HGET', key, 'status') == 'queued' then
      finish(Q, log, key, id, 'cancelled', now, {'error', 'purged'}, B)
      out[#out + 1] = id
    end
  end
  out[1] = #popped / 2
  batch_write(Q, B)
  log_write(log, Q.log, cap)
  return out
end

-- limit: each of rate and concurrency set, removed ('off') or kept ('')
local function limit(rate, period, concurrency)
  if rate == 'off' then
    redis.call('HDEL', Q.limits, 'rate', 'period_ms')
    redis.call('DEL', Q.rate)
  elseif rate ~= '' then
    redis.call('HSET', Q.limits, 'rate', rate, 'period_ms', period)
  end
  if concurrency == 'off' then
    redis.call('HDEL', Q.limits, 'concurrency')
  elseif concurrency ~= '' then
    redis.call('HSET', Q.limits, 'concurrency', concurrency)
  end
  wake(Q.wake, redis.call('ZCARD', Q.wait))
end

if action == 'pause' then
  redis.call('SET', Q.paused, int(now), 'NX')
elseif action == 'resume' then
  if redis.call('DEL', Q.paused, Q.throttled) > 0 then
    wake(Q.wake, redis.call('ZCARD', Q.wait))
  end
elseif action == 'limit' then
  limit(ARGV[5], ARGV[6], ARGV[7])
elseif action == 'purge' then
  return purge(tonumber(ARGV[4]))
elseif action ~= 'show' then
  return redis.error_reply('unknown queue action ' .. tostring(action))
end
return figures()
