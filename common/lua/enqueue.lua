-- enqueue.lua: put a batch of jobs on one queue, atomically.
-- KEYS: wait, delayed, stats, log, seq, wake (keys_enqueue_argv in keys.c)
-- ARGV: 1 job key prefix ("aq:{q}:job:"), 2 log length cap,
--       3 fresh ("1": every id was generated here, so none can exist yet),
--       4 priority, 5 delay ms, 6 run_at ms (epoch), 7 max_attempts,
--       8 timeout ms ('' where not given), 9 the queue's ledger key when
--       aq-enqueue writes to a PostgreSQL ledger, else '', then id and
--       payload per job.
-- With a ledger, its key is set ("unchecked") when missing, in the same
-- step as the jobs: from their first moment, their queue's finished jobs
-- wait in the unarchived set for the archive, and aq-sweep compares the
-- ledger with Redis at its next pass (the key does not hold its run id).
-- Returns per job: "queued", "delayed" or "duplicate:STATUS" (an existing
-- job with that id is left as it is: the id is an idempotency key).
-- The record keeps few fields (each one costs): priority, timeout_ms and
-- run_at only when given; attempt appears with the first claim.
local K = {wait = KEYS[1], delayed = KEYS[2], stats = KEYS[3], log = KEYS[4],
  seq = KEYS[5], wake = KEYS[6]}
local now = now_ms()

local jobkey, cap, fresh = ARGV[1], ARGV[2], ARGV[3] == '1'
local ledger = ARGV[9]
local priority, max_attempts, timeout = tonumber(ARGV[4]), ARGV[7], ARGV[8]

local due
if ARGV[5] ~= '' then
  due = now + tonumber(ARGV[5])
elseif ARGV[6] ~= '' then
  due = tonumber(ARGV[6])
end
local status = 'queued'
if due and due > now then status = 'delayed' end

local fields = {'status', status, 'payload', '', 'created', int(now),
  'max_attempts', max_attempts}
if priority ~= 0 then
  fields[#fields + 1] = 'priority'
  fields[#fields + 1] = ARGV[4]
end
if timeout ~= '' then
  fields[#fields + 1] = 'timeout_ms'
  fields[#fields + 1] = timeout
end
if due then
  fields[#fields + 1] = 'run_at'
  fields[#fields + 1] = int(due)
end

-- FIFO within a priority: a sequence that restarts when the wait set is empty
local seq = 0
if status == 'queued' and redis.call('ZCARD', K.wait) > 0 then
  seq = tonumber(redis.call('GET', K.seq) or '0')
end
local base = -priority * PRIORITY_SPAN

-- scores go to ZADD as numbers: Redis 7 converts them exactly (fpconv)
local out, added, zargs, n = {}, {}, {}, 0
for i = 10, #ARGV, 2 do
  local id = ARGV[i]
  local key = jobkey .. id
  local existing = not fresh and redis.call('HGET', key, 'status')
  if existing then
    out[#out + 1] = 'duplicate:' .. existing
  else
    fields[4] = ARGV[i + 1]
    redis.call('HSET', key, unpack(fields))
    if status == 'queued' then
      seq = seq + 1
      zargs[n + 1] = base + seq
    else
      zargs[n + 1] = due
    end
    zargs[n + 2] = id
    n = n + 2
    added[#added + 1] = id
    out[#out + 1] = status
  end
end

if #added > 0 then
  if ledger ~= '' then redis.call('SET', ledger, 'unchecked', 'NX') end
  if status == 'queued' then
    redis.call('ZADD', K.wait, unpack(zargs))
    redis.call('SET', K.seq, int(seq))
    wake(K.wake, #added)
  else
    redis.call('ZADD', K.delayed, unpack(zargs))
    wake(K.wake, 1) -- so a blocked worker sets its timeout to the new due time
  end
  redis.call('XADD', K.log, 'MAXLEN', '~', cap, '*', 'status', status,
    'ids', table.concat(added, ' '))
  redis.call('HINCRBY', K.stats, 'enqueued', #added)
end
return out
