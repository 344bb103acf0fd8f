-- event.lua: append a running job's output lines to its event stream, if
-- the writer still holds the job's lease (a fenced worker's lines are dropped).
-- KEYS: 1 the job's hash, 2 its event stream (keys_event_argv in keys.c)
-- ARGV: 1 lease token, 2 stream length cap, 3 the call's number within the
-- lease (1, 2, ...), then type and data per line (type stdout or stderr;
-- data a JSON text).
-- Returns the number of lines appended: 0 when fenced, or when this call
-- was applied already (a worker sends again what a lost connection took,
-- not knowing whether it arrived).
-- The counts are script.h's, of the same names (tests/unit.c compares them).
local EVENT_FIXED_ARGS = 3
local EVENT_LINE_FIELDS = 2
local K = {job = KEYS[1], events = KEYS[2]}
local job = redis.call('HMGET', K.job, 'status', 'lease', 'attempt', 'event_calls')
if job[1] ~= 'running' or job[2] ~= ARGV[1] then return 0 end
local call = tonumber(ARGV[3])
if call <= (tonumber(job[4]) or 0) then return 0 end
redis.call('HSET', K.job, 'event_calls', call)
local n = 0
for i = EVENT_FIXED_ARGS + 1, #ARGV, EVENT_LINE_FIELDS do
  redis.call('XADD', K.events, 'MAXLEN', '~', ARGV[2], '*', 'type', ARGV[i],
    'data', ARGV[i + 1], 'attempt', job[3])
  n = n + 1
end
return n
