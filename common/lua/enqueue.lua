-- enqueue.lua: put a batch of jobs on one queue, atomically.
-- KEYS: wait, delayed, stats, log, seq, wake (keys_enqueue_argv in keys.c)
-- ARGV: 1 job key prefix ("aq:{q}:job:"), 2 log length cap,
--       3 fresh ("1": every id was generated here, so none can exist yet),
--       4 priority, 5 delay ms, 6 run_at ms (epoch), 7 max_attempts,
--       8 timeout ms ('' where not given), 9 the queue's ledger key when
--       aq-enqueue writes to a PostgreSQL ledger, else '', 10 key base
--       ("aq:{q}:"), 11 the parents (--after: ids separated by spaces, ''
--       for none), then id and payload per job.
-- With a ledger, its key is set ("unchecked") when missing, in the same
-- step as the jobs: from their first moment, their queue's finished jobs
-- wait in the unarchived set for the archive, and aq-sweep compares the
-- ledger with Redis at its next pass (the key does not hold its run id).
-- Returns per job: "queued", "delayed" or "duplicate:STATUS" (an existing
-- job with that id is left as it is: the id is an idempotency key).
-- With parents, each is looked up once for the batch: a job whose parents
-- all succeeded is enqueued as above; one with a parent that failed or was
-- cancelled is created "cancelled" at once (error "parent ID failed");
-- one with a parent not finished yet is created "blocked": it waits in the
-- blocked set, its pending parents in deps:ID, itself in children:PARENT of
-- each (whose record gets the field children, so finish in lib.lua knows
-- to release or cancel it). A parent Redis does not have makes each new
-- job "unknown-parent:ID": none is created (a duplicate is still said).
-- The record keeps few fields (each one costs): priority, timeout_ms and
-- run_at only when given; attempt appears with the first claim.
local K = {wait = KEYS[1], delayed = KEYS[2], stats = KEYS[3], log = KEYS[4],
  seq = KEYS[5], wake = KEYS[6]}
local now = now_ms()

local jobkey, cap, fresh = ARGV[1], ARGV[2], ARGV[3] == '1'
local ledger, kbase, after = ARGV[9], ARGV[10], ARGV[11]
local FIRST_JOB = 12
local priority, max_attempts, timeout = tonumber(ARGV[4]), ARGV[7], ARGV[8]

local due
if ARGV[5] ~= '' then
  due = now + tonumber(ARGV[5])
elseif ARGV[6] ~= '' then
  due = tonumber(ARGV[6])
end
local status = 'queued'
if due and due > now then status = 'delayed' end

-- the parents: pending ones, else the first that failed, or one unknown
local pending, dead, unknown = {}, nil, nil
for parent in string.gmatch(after, '%S+') do
  local st = redis.call('HGET', jobkey .. parent, 'status')
  if not st then
    unknown = parent
    break
  elseif st == 'failed' or st == 'cancelled' then
    dead = dead or ('parent ' .. parent .. ' ' .. st)
  elseif st ~= 'succeeded' then
    pending[#pending + 1] = parent
  end
end
if dead then
  status = 'cancelled'
elseif #pending > 0 then
  status = 'blocked'
end

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
if after ~= '' then
  fields[#fields + 1] = 'after'
  fields[#fields + 1] = after
end
if dead then
  fields[#fields + 1] = 'error'
  fields[#fields + 1] = dead
end

-- FIFO within a priority: a sequence that restarts when the wait set is empty
local seq = 0
if status == 'queued' and redis.call('ZCARD', K.wait) > 0 then
  seq = tonumber(redis.call('GET', K.seq) or '0')
end
local base = -priority * PRIORITY_SPAN

-- scores go to ZADD as numbers: Redis 7 converts them exactly (fpconv)
local out, added, zargs, n = {}, {}, {}, 0
for i = FIRST_JOB, #ARGV, 2 do
  local id = ARGV[i]
  local key = jobkey .. id
  local existing = not fresh and redis.call('HGET', key, 'status')
  if existing then
    out[#out + 1] = 'duplicate:' .. existing
  elseif unknown then
    out[#out + 1] = 'unknown-parent:' .. unknown
  else
    fields[4] = ARGV[i + 1]
    redis.call('HSET', key, unpack(fields))
    if status == 'blocked' then
      redis.call('SADD', kbase .. 'deps:' .. id, unpack(pending))
      zargs[n + 1] = now
    elseif status == 'queued' then
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

-- jobs created blocked: each pending parent learns of them; jobs created
-- cancelled: finished as any job is (finish_one in lib.lua)
local function settle_new(ids)
  if status == 'blocked' then
    redis.call('ZADD', kbase .. 'blocked', unpack(zargs))
    for _, parent in ipairs(pending) do
      redis.call('SADD', kbase .. 'children:' .. parent, unpack(ids))
      redis.call('HSET', jobkey .. parent, 'children', '1')
    end
  else
    local Q = {stats = K.stats, done = kbase .. 'done', failed = kbase .. 'failed',
      unarchived = kbase .. 'unarchived', ledger = kbase .. 'ledger'}
    local log = new_log()
    for _, id in ipairs(ids) do
      finish_one(Q, log, jobkey .. id, id, 'cancelled', now, {})
    end
    log_write(log, K.log, cap)
  end
end

if #added > 0 then
  if ledger ~= '' then redis.call('SET', ledger, 'unchecked', 'NX') end
  if status == 'blocked' or status == 'cancelled' then
    settle_new(added)
  elseif status == 'queued' then
    redis.call('ZADD', K.wait, unpack(zargs))
    redis.call('SET', K.seq, int(seq))
    wake(K.wake, #added)
  else
    redis.call('ZADD', K.delayed, unpack(zargs))
    wake(K.wake, 1) -- so a blocked worker sets its timeout to the new due time
  end
  if status ~= 'cancelled' then
    redis.call('XADD', K.log, 'MAXLEN', '~', cap, '*', 'status', status,
      'ids', table.concat(added, ' '))
  end
  redis.call('HINCRBY', K.stats, 'enqueued', #added)
end
return out
