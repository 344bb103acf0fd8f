-- archive.lua: what aq-sweep does in Redis once PostgreSQL committed a batch
-- of the archive: acknowledge the log entries it read, and let the finished
-- jobs it archived be trimmed (unarchived set -> done set, by finish time).
-- KEYS: the queue keys of lib.lua's queue_keys
-- ARGV: 1 key base ("aq:{q}:"), 2 consumer group, 3 n (log entry ids),
--       then the n entry ids, then the ids of the archived finished jobs.
-- Returns {entries acknowledged, jobs made trimmable}.
local Q = queue_keys(ARGV[1])
local group, n = ARGV[2], tonumber(ARGV[3])
local unarchived = Q.unarchived

local acked = 0
if n > 0 then
  acked = redis.call('XACK', Q.log, group, unpack(ARGV, 4, 3 + n))
end
local moved = 0
for i = 4 + n, #ARGV do
  local id = ARGV[i]
  local at = redis.call('ZSCORE', unarchived, id)
  if at then
    redis.call('ZREM', unarchived, id)
    redis.call('ZADD', Q.done, at, id)
    moved = moved + 1
  end
end
return {acked, moved}
