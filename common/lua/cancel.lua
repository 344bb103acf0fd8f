-- cancel.lua: cancel a batch of jobs of one queue, each atomically.
-- KEYS: 1 wait, 2 delayed, 3 stats, 4 log
-- ARGV: 1 job key prefix ("aq:{q}:job:"), 2 log length cap,
--       3 cancel channel ("aq:{q}:cancel"), then the ids.
-- Returns per id: "cancelled" (it was queued or delayed: it is off its set
-- and will never run), "cancelling" (it is running: its cancel field is set
-- and its id published on the channel, so its worker signals the handler
-- and reports it cancelled; renew.lua tells a worker that missed the
-- message), "already:STATUS" (it had finished: nothing changed), or
-- "unknown" (no such job).
local now = now_ms()
local jobkey, cap, channel = ARGV[1], ARGV[2], ARGV[3]

local out, cancelled = {}, {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local key = jobkey .. id
  local job = redis.call('HMGET', key, 'status', 'cancel')
  local status = job[1]
  if not status then
    out[#out + 1] = 'unknown'
  elseif status == 'queued' or status == 'delayed' then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('HSET', key, 'status', 'cancelled', 'finished', int(now),
      'error', 'cancelled')
    cancelled[#cancelled + 1] = id
    out[#out + 1] = 'cancelled'
  elseif status == 'running' then
    -- announced again when asked again: a worker whose subscription was
    -- down the first time hears it now rather than at its next renewal
    if job[2] ~= '1' then redis.call('HSET', key, 'cancel', '1') end
    redis.call('PUBLISH', channel, id)
    out[#out + 1] = 'cancelling'
  else
    out[#out + 1] = 'already:' .. status
  end
end

if #cancelled > 0 then
  redis.call('HINCRBY', KEYS[3], 'cancelled', #cancelled)
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', cap, '*', 'status', 'cancelled',
    'ids', table.concat(cancelled, ' '))
end
return out
