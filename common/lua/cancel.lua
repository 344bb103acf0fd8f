-- cancel.lua: cancel a batch of jobs of one queue, each atomically.
-- KEYS: the queue keys of lib.lua's queue_keys
-- ARGV: 1 key base ("aq:{q}:"), 2 log length cap,
--       3 cancel channel ("aq:{q}:cancel"), then the ids.
-- Returns per id: "cancelled" (it was queued, delayed or blocked: it is off
-- its set and will never run; the jobs blocked on it are cancelled too), "cancelling" (it is running: its cancel field is set
-- and its id published on the channel, so its worker signals the handler
-- and reports it cancelled; renew.lua tells a worker that missed the
-- message), "already:STATUS" (it had finished: nothing changed), or
-- "unknown" (no such job).
local now = now_ms()
local Q = queue_keys(ARGV[1])
local cap, channel = ARGV[2], ARGV[3]
local log = new_log()

local out = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local key = Q.job .. id
  local job = redis.call('HMGET', key, 'status', 'cancel', 'children')
  local status = job[1]
  if not status then
    out[#out + 1] = 'unknown'
  elseif status == 'queued' or status == 'delayed' or status == 'blocked' then
    if status == 'blocked' then
      unblock(Q, id)
    else
      redis.call('ZREM', Q.wait, id)
      redis.call('ZREM', Q.delayed, id)
    end
    finish(Q, log, key, id, 'cancelled', now, {'error', 'cancelled'}, nil, job[3])
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

log_write(log, Q.log, cap)
return out
