-- event.lua: append a running job's output lines to its event stream, if
-- the writer still holds the job's lease (a fenced worker's lines are dropped).
-- KEYS: 1 the job's hash, 2 its event stream
-- ARGV: 1 lease token, 2 stream length cap, 3 the call's number within the
-- lease (1, 2, ...), then type and data per line (type stdout or stderr;
-- data a JSON text).
-- Returns the number of lines appended: 0 when fenced, or when this call
-- was applied already (a worker sends again what a lost connection took,
-- not knowing whether it arrived).
local job = redis.call('HMGET', KEYS[1], 'status', 'lease', 'attempt', 'event_calls')
if job[1] ~= 'running' or job[2] ~= ARGV[1] then return 0 end
local call = tonumber(ARGV[3])
if call <= (tonumber(job[4]) or 0) then return 0 end
redis.call('HSET', KEYS[1], 'event_calls', call)
local n = 0
for i = 4, #ARGV, 2 do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'type', ARGV[i],
    'data', ARGV[i + 1], 'attempt', job[3])
  n = n + 1
end
return n
