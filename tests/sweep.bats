#!/usr/bin/env bats
# sweep.bats: aq-sweep against a private redis-server: each action (dead
# workers, expired leases, due delayed jobs, --max-wait, trimming) and its
# output line, batches, the queues swept, two sweepers at once, --every and
# its signals, Redis unreachable or restarted, bad options, what a pass
# costs, and the examples of aq-sweep(1).

load helpers

ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)

setup_file() { redis_start; }
teardown_file() { redis_stop; }
setup() { cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null; }
teardown() {
	show_logs_on_failure
	# nothing started here lives on, and the server is up for the next test
	local pid
	for pid in $(cat "$BATS_TEST_TMPDIR"/bg.*.pid 2>/dev/null); do
		kill -KILL "$pid" 2>/dev/null
	done
	rcli ping >/dev/null 2>&1 || redis_run
	return 0
}

# now_ms: the clock of the Redis server, in epoch milliseconds.
now_ms() {
	rcli time | { read -r s && read -r us && echo $((s * 1000 + us / 1000)); }
}

field() { # field QUEUE ID JQ-FILTER
	aq-status -q "$1" "$2" | jq -c "$3"
}

# expire_lease QUEUE ID ATTEMPT [FIELD VALUE]...: turn a queued job into one
# that worker dead-1 claimed (attempt ATTEMPT, token 1) and then died
# holding: running, on the active set with a lease that expired long ago.
expire_lease() {
	local q=$1 id=$2 attempt=$3
	shift 3
	rcli zrem "aq:{$q}:wait" "$id" >/dev/null
	rcli hset "aq:{$q}:job:$id" status running attempt "$attempt" \
	    worker dead-1 lease 1 claims 1 started 1000 "$@" >/dev/null
	rcli zadd "aq:{$q}:active" 1000 "$id" >/dev/null
}

# due_delayed QUEUE ID: a job delayed by an hour whose due time on the
# delayed set is then moved to the past, as if the hour were over.
due_delayed() {
	aq-enqueue -q "$1" --id "$2" --delay 1h '{}' >/dev/null
	rcli zadd "aq:{$1}:delayed" XX 1000 "$2" >/dev/null
}

# start_bg NAME CMD...: run CMD in the background; stdout to bg.NAME.out,
# stderr to bg.NAME.err, pid to bg.NAME.pid.
start_bg() {
	local name=$1
	shift
	"$@" >"$BATS_TEST_TMPDIR/bg.$name.out" 2>"$BATS_TEST_TMPDIR/bg.$name.err" &
	echo $! >"$BATS_TEST_TMPDIR/bg.$name.pid"
}

bg_pid() { cat "$BATS_TEST_TMPDIR/bg.$1.pid"; }

# wait_bg NAME: wait (bounded) until it has exited; its status goes to
# bg.NAME.rc.
wait_bg() {
	local pid rc=0
	pid=$(bg_pid "$1")
	wait_for 100 eval "! kill -0 $pid 2>/dev/null"
	wait "$pid" || rc=$?
	echo "$rc" >"$BATS_TEST_TMPDIR/bg.$1.rc"
}

# stop_bg NAME [SIGNAL]: send SIGTERM (or SIGNAL), then wait_bg.
stop_bg() {
	kill -"${2:-TERM}" "$(bg_pid "$1")" 2>/dev/null
	wait_bg "$1"
}

# The "$ command" lines of a rendered man page's EXAMPLES section, and how
# they are run (as in docs.bats).
man_examples() {
	mandoc -Tutf8 "$1" | col -bx | awk '
		/^[A-Z][A-Z ]*$/ { in_ex = ($0 == "EXAMPLES"); next }
		in_ex && /^ +\$ / { sub(/^ +\$ /, ""); print }'
}
run_examples() {
	local cmd n=0
	while IFS= read -r cmd; do
		n=$((n + 1))
		if ! bash -c "$cmd" </dev/null >"$BATS_TEST_TMPDIR/example.out" 2>&1; then
			echo "example failed: $cmd" >&2
			cat "$BATS_TEST_TMPDIR/example.out" >&2
			return 1
		fi
	done
	echo "$n"
}

@test "nothing to do: a pass prints nothing and exits 0" {
	run aq-sweep
	assert_success
	assert_output ''
	aq-enqueue -q calm --id q1 '{}' >/dev/null
	aq-enqueue -q calm --id d1 --delay 1h '{}' >/dev/null
	run aq-sweep --max-wait 1h
	assert_success
	assert_output ''
	run aq-sweep -q calm -q never-used --retention 0 --batch 1
	assert_success
	assert_output ''
	assert_equal "$(field calm q1 .status)$(field calm d1 .status)" '"queued""delayed"'
}

@test "an expired lease: the job is queued again, its attempt counted, with a wake-up marker and a log entry" {
	aq-enqueue -q rq --id j '{}' >/dev/null
	aq-enqueue -q rq --id live '{}' >/dev/null
	expire_lease rq j 1
	expire_lease rq live 1
	rcli zadd 'aq:{rq}:active' XX "$(($(now_ms) + 60000))" live >/dev/null
	rcli del 'aq:{rq}:wake' >/dev/null
	run aq-sweep
	assert_success
	assert_output '{"queue":"rq","action":"recovered","id":"j","status":"queued"}'
	assert_equal "$(field rq j '[.status, .attempt, .error]')" \
	    '["queued",1,"lease of worker dead-1 expired (attempt 1 of 3)"]'
	assert_equal "$(rcli zscore 'aq:{rq}:active' j)" ''
	[ -n "$(rcli zscore 'aq:{rq}:wait' j)" ]
	[ -n "$(rcli hget 'aq:{rq}:job:j' queued_at)" ]
	assert_equal "$(rcli hget 'aq:{rq}:stats' recovered)" 1
	assert_equal "$(rcli llen 'aq:{rq}:wake')" 1
	assert_equal "$(rcli xrevrange 'aq:{rq}:log' + - COUNT 1 | tail -n +2 | paste -sd' ')" \
	    'status queued ids j'
	# a lease that has not expired is left alone
	assert_equal "$(field rq live .status)" '"running"'
	[ -n "$(rcli zscore 'aq:{rq}:active' live)" ]
	# the next claim is the second attempt
	aq-worker -q rq --burst -- true 2>/dev/null
	assert_equal "$(field rq j '[.status, .attempt]')" '["succeeded",2]'
}

@test "an expired lease with no attempts left fails; one being cancelled is cancelled" {
	aq-enqueue -q rf --id last --max-attempts 2 '{}' >/dev/null
	aq-enqueue -q rf --id cx '{}' >/dev/null
	expire_lease rf last 2
	expire_lease rf cx 1 cancel 1
	run aq-sweep -q rf
	assert_success
	assert_equal "${#lines[@]}" 2
	assert_line '{"queue":"rf","action":"recovered","id":"last","status":"failed"}'
	assert_line '{"queue":"rf","action":"recovered","id":"cx","status":"cancelled"}'
	assert_equal "$(field rf last '[.status, .attempt, .error, .finished != null]')" \
	    '["failed",2,"lease of worker dead-1 expired (attempt 2 of 2)",true]'
	assert_equal "$(field rf cx '[.status, .error]')" \
	    '["cancelled","lease of worker dead-1 expired (attempt 1 of 3)"]'
	assert_equal "$(rcli hmget 'aq:{rf}:stats' recovered failed cancelled | paste -sd' ')" '2 1 1'
	assert_equal "$(rcli zcard 'aq:{rf}:active') $(rcli zcard 'aq:{rf}:wait') $(rcli zcard 'aq:{rf}:done')" '0 0 2'
}

@test "a worker killed with SIGKILL: once its lease expired, aq-sweep recovers its job and forgets the worker" {
	aq-enqueue -q kq --id k '{}' >/dev/null
	start_bg w aq-worker -q kq --lease 1s --worker-id w-k -- sh -c 'sleep 30'
	wait_for 50 job_is kq k running
	kill -KILL "$(bg_pid w)"
	# each pass prints what it did; poll until the lease and heartbeat expired
	wait_for 50 eval 'aq-sweep -q kq >>passes.out && grep -q recovered passes.out && grep -q worker_removed passes.out'
	run cat passes.out
	assert_equal "${#lines[@]}" 2
	assert_line '{"queue":"kq","action":"recovered","id":"k","status":"queued"}'
	assert_line '{"queue":"kq","action":"worker_removed","worker":"w-k"}'
	assert_equal "$(field kq k '[.status, .attempt, .error]')" \
	    '["queued",1,"lease of worker w-k expired (attempt 1 of 3)"]'
	assert_equal "$(rcli exists 'aq:{kq}:worker:w-k')" 0
}

@test "a due delayed job is promoted to the wait set; one not yet due stays delayed" {
	due_delayed dq soon
	aq-enqueue -q dq --id later --delay 1h '{}' >/dev/null
	rcli del 'aq:{dq}:wake' >/dev/null
	run aq-sweep
	assert_success
	assert_output '{"queue":"dq","action":"promoted","id":"soon"}'
	assert_equal "$(field dq soon .status) $(field dq later .status)" '"queued" "delayed"'
	[ -n "$(rcli zscore 'aq:{dq}:wait' soon)" ]
	[ -n "$(rcli hget 'aq:{dq}:job:soon' queued_at)" ]
	assert_equal "$(rcli llen 'aq:{dq}:wake')" 1
	assert_equal "$(rcli xrevrange 'aq:{dq}:log' + - COUNT 1 | tail -n +2 | paste -sd' ')" \
	    'status queued ids soon'
	aq-worker -q dq --burst -- true 2>/dev/null
	assert_equal "$(field dq soon .status) $(field dq later .status)" '"succeeded" "delayed"'
}

@test "--max-wait fails the queued jobs that waited too long, at the head of each priority, and no others" {
	old=$(($(now_ms) - 3600000))
	aq-enqueue -q mw --priority 5 --id p5-old '{}' >/dev/null
	aq-enqueue -q mw --priority 5 --id p5-fresh '{}' >/dev/null
	aq-enqueue -q mw --priority 3 --id due-late '{}' >/dev/null
	aq-enqueue -q mw --priority 2 --id requeued '{}' >/dev/null
	aq-enqueue -q mw --id a-old '{}' >/dev/null
	aq-enqueue -q mw --id b-old '{}' >/dev/null
	aq-enqueue -q mw --id c-fresh '{}' >/dev/null
	aq-enqueue -q mw --priority -1 --id low-old '{}' >/dev/null
	aq-enqueue -q mw --id delayed-old --delay 1h '{}' >/dev/null
	for id in p5-old due-late requeued a-old b-old low-old delayed-old; do
		rcli hset "aq:{mw}:job:$id" created "$old" >/dev/null
	done
	# created long ago, but due or queued again only now: waiting since now
	rcli hset 'aq:{mw}:job:due-late' run_at "$(now_ms)" >/dev/null
	rcli hset 'aq:{mw}:job:requeued' queued_at "$(now_ms)" >/dev/null
	run aq-sweep -q mw
	assert_success
	assert_output ''
	run aq-sweep -q mw --max-wait 10m
	assert_success
	assert_line '{"queue":"mw","action":"failed_stale","id":"a-old"}'
	assert_equal "$(jq -r .id <<<"$output" | sort | paste -sd' ')" 'a-old b-old low-old p5-old'
	for id in a-old b-old low-old p5-old; do
		assert_equal "$(field mw "$id" '[.status, .error, .finished != null]')" \
		    '["failed","waited longer than 600000 ms (--max-wait)",true]'
	done
	for id in p5-fresh due-late requeued c-fresh; do
		assert_equal "$(field mw "$id" .status)" '"queued"'
	done
	assert_equal "$(field mw delayed-old .status)" '"delayed"'
	assert_equal "$(rcli zcard 'aq:{mw}:wait')" 4
	assert_equal "$(rcli hget 'aq:{mw}:stats' failed)" 4
	run aq-sweep -q mw --max-wait 10m
	assert_output ''
}

@test "dead workers are forgotten with their hash; live ones stay" {
	now=$(now_ms)
	rcli zadd 'aq:{wk}:workers' $((now - 1000)) dead-1 $((now + 60000)) live-1 >/dev/null
	rcli hset 'aq:{wk}:worker:dead-1' host h1 pid 1 >/dev/null
	rcli hset 'aq:{wk}:worker:live-1' host h2 pid 2 >/dev/null
	rcli sadd aq:queues wk >/dev/null
	run aq-sweep
	assert_success
	assert_output '{"queue":"wk","action":"worker_removed","worker":"dead-1"}'
	assert_equal "$(rcli zrange 'aq:{wk}:workers' 0 -1)" live-1
	assert_equal "$(rcli exists 'aq:{wk}:worker:dead-1') $(rcli exists 'aq:{wk}:worker:live-1')" '0 1'
}

@test "trim: finished jobs past the retention go with their events; queued, delayed and running ones stay" {
	aq-enqueue -q tq --id s1 '{}' >/dev/null
	aq-enqueue -q tq --id s2 '{}' >/dev/null
	aq-worker -q tq --burst -- echo out 2>/dev/null
	aq-enqueue -q tq --id c1 --delay 1h '{}' >/dev/null
	aq-cancel -q tq c1 >/dev/null
	aq-enqueue -q tq --id q1 '{}' >/dev/null
	aq-enqueue -q tq --id d1 --delay 1h '{}' >/dev/null
	aq-enqueue -q tq --id r1 '{}' >/dev/null
	expire_lease tq r1 1
	rcli zadd 'aq:{tq}:active' XX "$(($(now_ms) + 60000))" r1 >/dev/null
	assert_equal "$(rcli exists 'aq:{tq}:events:s1')" 1
	# the default retention is a day
	run aq-sweep
	assert_success
	assert_output ''
	# s1 finished two hours ago
	rcli zadd 'aq:{tq}:done' XX $(($(now_ms) - 7200000)) s1 >/dev/null
	run aq-sweep --retention 1h
	assert_success
	assert_output '{"queue":"tq","action":"trimmed","id":"s1"}'
	assert_equal "$(rcli exists 'aq:{tq}:job:s1' 'aq:{tq}:events:s1')" 0
	assert_equal "$(rcli exists 'aq:{tq}:job:s2' 'aq:{tq}:events:s2')" 2
	run aq-sweep --retention 0
	assert_success
	assert_equal "$(jq -r .id <<<"$output" | sort | paste -sd' ')" 'c1 s2'
	assert_line '{"queue":"tq","action":"trimmed","id":"c1"}'
	assert_equal "$(rcli exists 'aq:{tq}:job:s2' 'aq:{tq}:events:s2' 'aq:{tq}:job:c1')" 0
	assert_equal "$(rcli zcard 'aq:{tq}:done')" 0
	assert_equal "$(field tq q1 .status) $(field tq d1 .status) $(field tq r1 .status)" \
	    '"queued" "delayed" "running"'
	run aq-status -q tq s1
	assert_failure 1
	assert_output '{"id":"s1","queue":"tq","status":"unknown"}'
	# the id of a trimmed job is free again
	run aq-enqueue -q tq --id s1 '{}'
	assert_output '{"id":"s1","queue":"tq","status":"queued"}'
}

@test "--log-cap caps the log stream, approximately (whole nodes of the stream)" {
	rcli eval "for i = 1, 1000 do redis.call('XADD', KEYS[1], '*', 'status', 'queued', 'ids', 'x') end" \
	    1 'aq:{lc}:log' >/dev/null
	run aq-sweep -q lc
	assert_success
	assert_equal "$(rcli xlen 'aq:{lc}:log')" 1000
	run aq-sweep -q lc --log-cap 100
	assert_success
	assert_output ''
	n=$(rcli xlen 'aq:{lc}:log')
	echo "log entries left: $n" >&2
	((n >= 100 && n <= 200))
}

@test "--batch 2: seven due jobs and seven finished ones are all done in one pass, over several calls" {
	for i in 1 2 3 4 5 6 7; do aq-enqueue -q bq --id "f$i" '{}' >/dev/null; done
	aq-worker -q bq --burst -- true 2>/dev/null
	for i in 1 2 3 4 5 6 7; do due_delayed bq "d$i"; done
	rcli config resetstat >/dev/null
	run aq-sweep -q bq --batch 2 --retention 0
	assert_success
	assert_equal "$(grep -c '"action":"promoted"' <<<"$output")" 7
	assert_equal "$(grep -c '"action":"trimmed"' <<<"$output")" 7
	assert_equal "$(jq -r .id <<<"$output" | sort -u | wc -l)" 14
	assert_equal "$(rcli zcard 'aq:{bq}:delayed') $(rcli zcard 'aq:{bq}:done')" '0 0'
	# workers 1 call, recover 1, promote 4 (2+2+2+1), trim 4
	calls=$(rcli info commandstats | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p')
	echo "evalsha calls: $calls" >&2
	((calls >= 10))
}

@test "-q, repeated, sweeps only those queues; without it, every known queue" {
	for q in qa qb qc; do due_delayed "$q" j; done
	run aq-sweep -q qa -q qc
	assert_success
	assert_output "$(printf '%s\n' '{"queue":"qa","action":"promoted","id":"j"}' \
	    '{"queue":"qc","action":"promoted","id":"j"}')"
	assert_equal "$(field qb j .status)" '"delayed"'
	run aq-sweep
	assert_success
	assert_output '{"queue":"qb","action":"promoted","id":"j"}'
}

@test "--prefix and AQ_PREFIX: only the keys under that prefix are swept" {
	aq-enqueue --prefix other -q px --id j --delay 1h '{}' >/dev/null
	rcli zadd 'other:{px}:delayed' XX 1000 j >/dev/null
	run aq-sweep
	assert_output ''
	run env AQ_PREFIX=other aq-sweep
	assert_output '{"queue":"px","action":"promoted","id":"j"}'
	assert_equal "$(rcli hget 'other:{px}:job:j' status)" queued
}

@test "two sweepers at once on 2000 expired leases recover each job exactly once" {
	rcli eval "for i = 1, 2000 do
		local id = 'j' .. i
		redis.call('HSET', 'aq:{race}:job:' .. id, 'status', 'running',
		    'payload', '{}', 'created', '1000', 'max_attempts', '3',
		    'attempt', '1', 'worker', 'dead-1', 'lease', '1', 'claims', '1')
		redis.call('ZADD', 'aq:{race}:active', 1000, id)
	end" 0 >/dev/null
	start_bg s1 aq-sweep -q race --batch 2
	start_bg s2 aq-sweep -q race --batch 2
	wait_bg s1
	wait_bg s2
	assert_equal "$(cat bg.s1.rc) $(cat bg.s2.rc)" '0 0'
	echo "first: $(wc -l <bg.s1.out), second: $(wc -l <bg.s2.out)" >&2
	assert_equal "$(cat bg.s1.out bg.s2.out | wc -l)" 2000
	assert_equal "$(cat bg.s1.out bg.s2.out | jq -r .id | sort -u | wc -l)" 2000
	assert_equal "$(rcli hget 'aq:{race}:stats' recovered)" 2000
	assert_equal "$(rcli zcard 'aq:{race}:wait') $(rcli zcard 'aq:{race}:active')" '2000 0'
}

@test "--every makes passes until SIGTERM or SIGINT, then exits 0" {
	due_delayed ev first
	start_bg sw aq-sweep -q ev --every 100ms
	wait_for 50 grep -q '"first"' bg.sw.out
	due_delayed ev second
	wait_for 50 grep -q '"second"' bg.sw.out
	stop_bg sw TERM
	assert_equal "$(cat bg.sw.rc)" 0
	assert_equal "$(wc -l <bg.sw.out)" 2
	# a signal ends a long sleep at once
	due_delayed ev third
	start_bg long aq-sweep -q ev --every 1h
	wait_for 50 grep -q '"third"' bg.long.out
	stop_bg long INT
	assert_equal "$(cat bg.long.rc)" 0
}

@test "Redis unreachable: one pass exits 69 naming the URL; --every logs it and tries again" {
	url="unix://$REDIS_DIR/none.sock"
	run aq-sweep -u "$url"
	assert_failure 69
	assert_output --partial "cannot connect to redis at $url"
	start_bg sw aq-sweep --every 100ms
	redis_kill
	wait_for 50 grep -q "cannot connect to redis at $AQ_REDIS_URL: .*; trying again each pass" bg.sw.err
	redis_run
	wait_for 50 grep -q "redis at $AQ_REDIS_URL is back" bg.sw.err
	stop_bg sw
	assert_equal "$(cat bg.sw.rc)" 0
	# said once while it lasted, not once per pass
	assert_equal "$(grep -c 'cannot connect' bg.sw.err)" 1
}

# explain_bg NAME: say on stderr whether it still runs or how it exited,
# and what it wrote on its stderr (for a test that failed).
explain_bg() {
	local pid rc=0
	pid=$(bg_pid "$1")
	if kill -0 "$pid" 2>/dev/null; then
		echo "$1 is still running; its stderr:" >&2
	else
		wait "$pid" || rc=$?
		echo "$1 exited with status $rc; its stderr:" >&2
	fi
	cat "$BATS_TEST_TMPDIR/bg.$1.err" >&2
}

# restart_under_sweeper ARGS...: a sweeper with --every 100ms and ARGS
# promotes a due job; Redis is stopped, which the sweeper logs, and started
# again (empty); the sweeper lives through it and promotes the next job.
restart_under_sweeper() {
	due_delayed rs first
	start_bg sw aq-sweep --every 100ms "$@"
	wait_for 50 grep -q '"first"' bg.sw.out
	redis_kill
	wait_for 50 grep -q 'redis at' bg.sw.err || true # checked below
	redis_run
	due_delayed rs second
	wait_for 50 grep -q '"second"' bg.sw.out || { explain_bg sw; return 1; }
	stop_bg sw
	assert_equal "$(cat bg.sw.rc)" 0
	run cat bg.sw.err
	assert_output --partial 'redis at'
}

@test "--every -q: Redis stopped and started between passes is logged and tried again" {
	restart_under_sweeper -q rs
}

@test "--every: Redis stopped and started between passes is logged and tried again" {
	restart_under_sweeper
}

@test "bad options are usage errors (64) and do nothing; -h prints the usage" {
	due_delayed bad j
	run aq-sweep -q 'no spaces'
	assert_failure 64
	assert_output --partial 'invalid queue name'
	for opt in '--every 0' '--every soon' '--max-wait 0' '--retention -1' \
	    '--log-cap 99' '--batch 0' '--batch 100001' '--prefix a{b}' '--bogus' 'extra'; do
		# shellcheck disable=SC2086 # one option and its value, split on purpose
		run aq-sweep $opt
		[ "$status" -eq 64 ] || { echo "aq-sweep $opt: exit $status" >&2; return 1; }
	done
	run aq-sweep -u "unix://$REDIS_SOCK" --redis-url-file /dev/null
	assert_failure 64
	assert_equal "$(field bad j .status)" '"delayed"'
	run aq-sweep -h
	assert_success
	assert_output --partial 'usage: aq-sweep [-q queue ...]'
}

@test "a pass over 100,000 waiting jobs with nothing due makes no per-job calls" {
	seq 100000 | aq-enqueue -q big >/dev/null
	aq-enqueue -q big --id later --delay 1h '{}' >/dev/null
	rcli config resetstat >/dev/null
	run aq-sweep --max-wait 1h --retention 0
	assert_success
	assert_output ''
	# every command counts, those the scripts run included
	run rcli info commandstats
	total=$(tr -d '\r' <<<"$output" | awk -F'[:=,]' '/^cmdstat_/ && $1 !~ /config/ { n += $3 } END { print n }')
	echo "calls for the pass: $total" >&2
	echo "$output" >&2
	((total > 0 && total < 50))
	assert_equal "$(rcli zcard 'aq:{big}:wait')" 100000
}

@test "the examples of aq-sweep(1) run as written" {
	run bash -c "$(declare -f man_examples run_examples); BATS_TEST_TMPDIR='$BATS_TEST_TMPDIR'; man_examples '$ROOT/man/aq-sweep.1' | run_examples"
	assert_success
	((output > 0))
}

@test "--every 1h: SIGTERM at any moment of its run, before, during or after a pass, ends it at once" {
	aq-enqueue -q sig '{}' >/dev/null
	for ((k = 0; k < 20; k++)); do
		start_bg s aq-sweep --every 1h
		# a different moment each time: during the first pass, or around
		# the sleep that follows it
		sleep "0.0$((RANDOM % 10))"
		pid=$(bg_pid s)
		kill -TERM "$pid"
		wait_for 50 eval "! kill -0 $pid 2>/dev/null"
		# 0: it caught the signal and stopped; 143: the signal came before
		# main (a sanitizer's start-up is slow), when there is nothing to stop
		rc=0
		wait "$pid" || rc=$?
		[ "$rc" = 0 ] || [ "$rc" = 143 ]
	done
}
