#!/usr/bin/env bats
# guarantees.bats: the guarantees of aq(7) (DESIGN.md section 5), each test
# named after the ones it proves: G1 a reported job is run to a final state
# whatever is killed; G2 at-least-once, never two live leases on one job, a
# fenced worker cannot write the outcome; G3 a worker that cannot renew a
# lease kills that handler itself; G5 Redis down: tools exit 69 naming it,
# running workers ride it out. Plus the stats counters.
#
# Every wait is a bounded poll (wait_for); the only sleeps are the random
# pauses between chaos kills and the length of a Redis outage.

load helpers

HANDLERS=$(cd "$BATS_TEST_DIRNAME/handlers" && pwd)
CHAOS=$HANDLERS/chaos

setup_file() { redis_start; }
teardown_file() { redis_stop; }

setup() {
	command -v flock >/dev/null || skip "flock (util-linux) is not installed"
	cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null
	export LOCKS=$BATS_TEST_TMPDIR/locks OVERLAPS=$BATS_TEST_TMPDIR/overlaps
	export CHAOS_LOG=$BATS_TEST_TMPDIR/chaos.log RECORD=$BATS_TEST_TMPDIR/record
	mkdir -p "$LOCKS"
	: >"$OVERLAPS"
	: >"$CHAOS_LOG"
	: >"$RECORD"
}

teardown() {
	show_logs_on_failure
	# whatever happened, nothing this test started lives on
	kill_started
	redis_plain_again
	return 0
}



# running PID: the process is alive (a zombie is not)
running() {
	local stat
	stat=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $stat != Z* ]]
}

# stop_bg NAME: SIGTERM, then wait for it (bounded); its exit status goes to
# NAME.rc and the pid file is removed.
stop_bg() {
	local pid rc
	pid=$(pid_of "$1")
	kill -TERM "$pid" 2>/dev/null
	wait_for 200 eval "! running $pid"
	rc=0
	wait "$pid" || rc=$?
	echo "$rc" >"$BATS_TEST_TMPDIR/$1.rc"
	rm -f "$BATS_TEST_TMPDIR/$1.pid"
	return 0
}

# kill_worker NAME: SIGKILL, and reap it
kill_worker() {
	local pid
	pid=$(pid_of "$1")
	{ kill -KILL "$pid" && wait "$pid"; } 2>/dev/null || true
	rm -f "$BATS_TEST_TMPDIR/$1.pid"
	return 0
}


field() { # field QUEUE ID JQ-FILTER
	aq-status -q "$1" "$2" | jq -c "$3"
}

stat_of() { # stat_of QUEUE COUNTER: the counter, 0 when unset
	local v
	v=$(rcli hget "aq:{$1}:stats" "$2")
	echo "${v:-0}"
}

# finals_are QUEUE N: N jobs of QUEUE reached a final state
finals_are() {
	local q=$1
	(( $(stat_of "$q" succeeded) + $(stat_of "$q" failed) + $(stat_of "$q" cancelled) == $2 ))
}

now_ms() { date +%s%3N; }

# held_by WORKER: how many runs of the jobs of ./held.ids WORKER started, by
# $CHAOS_LOG
held_by() {
	awk -v w="$1" 'NR == FNR { held[$1] = 1; next } $3 == "start" && $4 == w && held[$1]' \
	    held.ids "$CHAOS_LOG" | wc -l
}

# running_handlers WORKER: how many runs of the chaos handler WORKER started
# and that have not ended, by $CHAOS_LOG
running_handlers() {
	awk -v w="$1" '$3 == "start" && $4 == w { r[$5] = 1 }
	    $2 == "end" && $3 == w { delete r[$4] }
	    END { n = 0; for (p in r) n++; print n }' "$CHAOS_LOG"
}

@test "G1 G2 G3: 500 jobs while workers are SIGKILLed and replaced 15 times, aq-sweep running: every job succeeds, no job ever runs twice at once, no handler is left" {
	# 6 jobs run 5 s on their first attempt, more than twice the lease, and
	# go first (also when recovered): the first kills catch some of them,
	# and a handler that outlived its worker would still be running when
	# its job runs again
	seq 6 | jq -c '{n: ., first_sleep: 5}' |
	    aq-enqueue -q chaos --priority 1 --max-attempts 1000 >enqueued
	seq 7 500 | jq -c '{n: .}' | aq-enqueue -q chaos --max-attempts 1000 >>enqueued
	jq -r .id enqueued >ids
	assert_equal "$(wc -l <ids)" 500
	# enough attempts that no job can fail however often it is caught by a
	# kill: the test is about runs, not about running out of attempts

	start_bg sweep aq-sweep --every 500ms
	live=() n=0
	spawn() { # spawn SLOT: a fresh worker in live[SLOT]
		n=$((n + 1))
		start_bg "w$n" aq-worker -q chaos -c 4 --lease 2s --worker-id "cw$n" -- "$CHAOS"
		live[$1]=w$n
	}
	spawn 0
	spawn 1
	spawn 2
	wait_for 100 redis_is 3 zcard 'aq:{chaos}:workers'
	wait_for 100 eval "(( \$(rcli zcard 'aq:{chaos}:active') > 0 ))"

	for ((k = 0; k < 15; k++)); do
		sleep "0.$((2 + RANDOM % 5))" # a random pause of 0.2-0.6 s, not a wait
		i=$((RANDOM % 3))
		victim=$(pid_of "${live[i]}")
		held=$(running_handlers "c${live[i]}")
		{ kill -KILL "$victim" && wait "$victim"; } 2>/dev/null || true
		rm -f "${live[i]}.pid"
		echo "kill $k: worker c${live[i]} (pid $victim) running $held handlers" >>kills
		spawn "$i"
	done

	wait_for 900 finals_are chaos 500
	for w in "${live[@]}"; do
		assert running "$(pid_of "$w")"
	done
	assert running "$(pid_of sweep)"
	for w in "${live[@]}"; do
		stop_bg "$w"
		assert_equal "$(rc_of "$w")" 0
	done
	stop_bg sweep
	assert_equal "$(rc_of sweep)" 0
	cat kills >&2

	# every job succeeded, and its result is that of its last attempt
	aq-status -q chaos <ids >statuses
	assert_equal "$(jq -r .status statuses | sort | uniq -c | xargs)" "500 succeeded"
	assert_equal "$(jq -c 'select(.result.attempt != .attempt or .result.id != .id)' statuses)" ""
	# every job ran, and no run of a job overlapped another
	assert_equal "$(awk '$3 == "start" { print $1 }' "$CHAOS_LOG" | sort -u)" "$(sort ids)"
	assert_equal "$(sort -u "$OVERLAPS")" ""
	# the counters; each recovery cost its job exactly one more attempt
	assert_equal "$(stat_of chaos enqueued)" 500
	assert_equal "$(stat_of chaos succeeded)" 500
	assert_equal "$(stat_of chaos failed)" 0
	recovered=$(stat_of chaos recovered)
	echo "recovered $recovered; $(grep -c ' start ' "$CHAOS_LOG") runs of 500 jobs" >&2
	(( recovered >= 1 ))
	assert_equal "$(jq -s 'map(.attempt - 1) | add' statuses)" "$recovered"
	# no handler outlived its worker: no process runs it, and no process
	# holds a job's lock (a handler's children inherit it)
	for pid in $(pgrep -f "bash $CHAOS"); do
		# another run of this suite may be going on: only ours count
		if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "CHAOS_LOG=$CHAOS_LOG"; then
			fail "handler $pid is still running: $(ps -o pid,stat,args -p "$pid")"
		fi
	done
	for id in $(cat ids); do
		flock -n "$LOCKS/$id" true || fail "the lock of job $id is still held"
	done
}

@test "G3 G2: a worker stopped past its lease has its handler killed on its side before the lease expires; another worker takes the job over; one outcome, the second worker's" {
	aq-enqueue -q lease --id j '{"sleep":5}' >/dev/null
	start_bg A aq-worker -q lease --lease 3s --worker-id A -- "$CHAOS"
	wait_for 100 grep -q '^j 1 start A ' "$CHAOS_LOG"
	handler=$(awk '$1 == "j" && $4 == "A" { print $5 }' "$CHAOS_LOG")
	kill -STOP "$(pid_of A)"
	# a witness waits for the handler's lock: it gets it the moment the
	# handler and all its children are gone, and notes the time without
	# starting another process
	start_bg witness bash -c 'exec 8>"$1"; timeout 30 flock 8 && echo "${EPOCHREALTIME/./}"' - "$LOCKS/j"
	wait_for 100 test -s witness.out
	died=$(( $(cat witness.out) / 1000 ))
	# no one else recovers expired leases in this test, so the lease seen
	# now is still the one A held when its handler died
	assert_equal "$(field lease j '[.status, .worker, .attempt]')" '["running","A",1]'
	expiry=$(rcli zscore 'aq:{lease}:active' j)
	echo "A's handler $handler gone at $died; A's lease expires at $expiry" >&2
	(( died < expiry ))

	start_bg B aq-worker -q lease --lease 3s --worker-id B -- "$CHAOS"
	wait_for 100 grep -q '^j 2 start B ' "$CHAOS_LOG"
	refute running "$handler"
	second=$(awk '$1 == "j" && $4 == "B" { print substr($6, 1, length($6) - 3) }' "$CHAOS_LOG")
	echo "B's run started at $second" >&2
	(( second >= expiry ))

	kill -CONT "$(pid_of A)"
	wait_for 50 grep -qE 'cannot renew its lease|lease was lost|its lease was lost|lease was taken over' A.err
	wait_for 100 job_is lease j succeeded
	stop_bg A
	stop_bg B
	assert_equal "$(rc_of A)" 0
	assert_equal "$(rc_of B)" 0
	cat A.err >&2
	assert_equal "$(field lease j '[.status, .worker, .attempt, .result.worker, .result.attempt]')" \
	    '["succeeded","B",2,"B",2]'
	# A's run never ended on its own; B's did, and nothing overlapped
	assert_equal "$(awk '$2 == "end" { print $1, $3 }' "$CHAOS_LOG")" "j B"
	assert_equal "$(cat "$OVERLAPS")" ""
	assert_equal "$(stat_of lease succeeded) $(stat_of lease recovered) $(stat_of lease failed) $(stat_of lease retried)" "1 1 0 0"
	# the job's one event is B's result
	assert_equal "$(rcli xlen 'aq:{lease}:events:j')" 1
}

@test "G5 G1: Redis stopped for 3 s and restarted with its data under 2 workers and aq-sweep --every: every job succeeds, no tool dies, the workers say they lost Redis and got it back, keep their leases and resume claiming" {
	redis_kill
	redis_run --appendonly yes --appendfsync always
	seq 100 | jq -c '{n: ., sleep: 0.1}' | aq-enqueue -q rs >enqueued
	jq -r .id enqueued >ids
	start_bg sweep aq-sweep --every 500ms
	start_bg w1 aq-worker -q rs -c 2 --worker-id rs1 -- "$CHAOS"
	start_bg w2 aq-worker -q rs -c 2 --worker-id rs2 -- "$CHAOS"
	wait_for 100 eval "(( \$(stat_of rs succeeded) >= 10 ))"

	redis_kill
	wait_for 100 grep -q 'lost the' w1.err
	wait_for 100 grep -q 'lost the' w2.err
	sleep 3 # the outage
	redis_run --appendonly yes --appendfsync always

	wait_for 600 finals_are rs 100
	assert running "$(pid_of w1)"
	assert running "$(pid_of w2)"

	# both workers claim again: 8 jobs held running until released; each
	# worker holds at most 4 (2 slots, 2 claimed ahead), so both must take
	# some, however long either took to reconnect
	seq 8 | jq -c '{n: ., hold: true}' | aq-enqueue -q rs >held
	jq -r .id held >held.ids
	cat held.ids >>ids
	wait_for 600 eval "(( \$(held_by rs1) > 0 && \$(held_by rs2) > 0 ))"
	touch "$LOCKS/release"
	wait_for 600 finals_are rs 108
	sweeper_alive=yes
	if ! running "$(pid_of sweep)"; then
		rc=0
		wait "$(pid_of sweep)" || rc=$?
		sweeper_alive="no: it exited with status $rc"
	fi
	stop_bg w1
	stop_bg w2
	assert_equal "$(rc_of w1) $(rc_of w2)" "0 0"
	cat w1.err w2.err sweep.err >&2
	assert_equal "aq-sweep still running: $sweeper_alive" "aq-sweep still running: yes"
	stop_bg sweep
	assert_equal "$(rc_of sweep)" 0

	aq-status -q rs <ids >statuses
	assert_equal "$(jq -r .status statuses | sort | uniq -c | xargs)" "108 succeeded"
	assert_equal "$(stat_of rs succeeded) $(stat_of rs failed) $(stat_of rs retried)" "108 0 0"
	assert_equal "$(cat "$OVERLAPS")" ""
	# what the handlers printed was recorded, during the outage too
	sed 's/.*/XLEN aq:{rs}:events:&/' ids | rcli >xlens
	assert_equal "$(grep -cvx 1 xlens)" 0
	# each worker said it lost Redis and got it back (which of its
	# connections noticed first is up to the kernel's scheduling) and kept
	# every lease it held; that each went on claiming after the restart is
	# shown by the held jobs above
	for w in w1 w2; do
		run cat "$w.err"
		assert_output --regexp 'lost the [a-z]+ connection to redis at unix://'
		assert_output --regexp 'the [a-z]+ connection to redis at unix://[^ ]+ is back'
		refute_output --regexp 'back in touch with redis: .*; [1-9][0-9]* lost'
	done
	redis_kill
	rm -rf "$REDIS_DIR/appendonlydir"
	redis_run
}

@test "G5: aq-sweep, aq-enqueue, aq-status and aq-cancel against a stopped Redis exit 69 with a message naming its URL" {
	url="unix://$REDIS_SOCK"
	check_down() {
		run aq-sweep
		assert_failure 69
		assert_output --partial "cannot connect to redis at $url"
		run aq-sweep -q q
		assert_failure 69
		assert_output --partial "$url"
		run aq-enqueue -q q '{}'
		assert_failure 69
		assert_output --partial "cannot connect to redis at $url"
		run aq-enqueue -q q <<<'{"n":1}'
		assert_failure 69
		assert_output --partial "$url"
		run aq-status -q q j
		assert_failure 69
		assert_output --partial "cannot connect to redis at $url"
		run aq-cancel -q q j
		assert_failure 69
		assert_output --partial "cannot connect to redis at $url"
		run aq-cancel -q q <<<'j'
		assert_failure 69
		assert_output --partial "$url"
	}
	# shut down cleanly: its socket is gone
	redis_kill
	[ ! -e "$REDIS_SOCK" ]
	check_down
	# killed: its socket is left, and refuses connections
	redis_run
	pid=$(cat "$REDIS_DIR/redis.pid")
	kill -KILL "$pid"
	wait_for 100 eval "! kill -0 $pid"
	[ -S "$REDIS_SOCK" ]
	check_down
	rm -f "$REDIS_SOCK"
	redis_run
}

@test "stats counters (aq(7)): enqueued, succeeded, failed, retried, recovered and cancelled count exactly what happened" {
	aq-enqueue -q st --id lost --priority 10 '{}' >/dev/null
	for i in 1 2 3 4; do aq-enqueue -q st --id "ok$i" '{}' >/dev/null; done
	for i in 1 2; do aq-enqueue -q st --id "perm$i" '{"exit":65}' >/dev/null; done
	for i in 1 2; do aq-enqueue -q st --id "temp$i" --max-attempts 2 '{"exit":75}' >/dev/null; done
	for i in 1 2 3; do aq-enqueue -q st --id "cx$i" '{}' >/dev/null; done
	run aq-cancel -q st cx1 cx2 cx3
	assert_success
	assert_equal "$(jq -r .status <<<"$output" | sort | uniq -c | xargs)" "3 cancelled"

	# a worker claims "lost" (the highest priority) and dies; its lease is
	# then expired by hand, and aq-sweep recovers the job
	start_bg A aq-worker -q st --max-jobs 1 --worker-id A -- sleep 60
	wait_for 100 job_is st lost running
	kill_worker A
	rcli zadd 'aq:{st}:active' XX 1 lost >/dev/null
	run aq-sweep -q st
	assert_success
	assert_output --partial '{"queue":"st","action":"recovered","id":"lost","status":"queued"}'
	assert_equal "$(field st lost '[.status, .attempt]')" '["queued",1]'

	start_bg B aq-worker -q st --backoff 100ms --worker-id B -- "$HANDLERS/record"
	wait_for 200 finals_are st 12
	stop_bg B
	assert_equal "$(rc_of B)" 0
	assert_equal "$(field st lost '[.status, .attempt, .worker]')" '["succeeded",2,"B"]'
	assert_equal "$(field st temp1 '[.status, .attempt]')" '["failed",2]'
	assert_equal "$(field st perm1 '[.status, .attempt]')" '["failed",1]'
	for c in enqueued succeeded failed retried recovered cancelled; do
		echo "$c $(stat_of st "$c")"
	done >counters
	assert_equal "$(paste -sd' ' counters)" \
	    "enqueued 12 succeeded 5 failed 4 retried 2 recovered 1 cancelled 3"
}

@test "G1 G2: a worker SIGKILLed mid-job: another worker runs the job again only after its lease expired, within lease + lease/3 + 1 s, with no aq-sweep" {
	# A's run would take 60 s: it must die with A; the run after it, 1 s
	aq-enqueue -q dead --id k '{"first_sleep":60,"sleep":1}' >/dev/null
	start_bg A aq-worker -q dead --lease 3s --worker-id A -- "$CHAOS"
	wait_for 100 grep -q '^k 1 start A ' "$CHAOS_LOG"
	handler=$(awk '$1 == "k" && $4 == "A" { print $5 }' "$CHAOS_LOG")
	start_bg B aq-worker -q dead --lease 3s --worker-id B -- "$CHAOS"
	wait_for 100 redis_is 2 zcard 'aq:{dead}:workers'
	expiry=$(rcli zscore 'aq:{dead}:active' k)
	killed=$(now_ms)
	kill_worker A
	# its handler dies with it (the keeper and PR_SET_PDEATHSIG), long
	# before its lease expires
	wait_for 20 eval "! running $handler"
	assert_equal "$(field dead k '[.status, .worker, .attempt]')" '["running","A",1]'
	wait_for 100 eval "[ \"\$(field dead k '[.status, .attempt]')\" = '[\"running\",2]' ]"
	started=$(rcli hget 'aq:{dead}:job:k' started)
	echo "killed at $killed, lease seen to expire at $expiry, run again at $started: $((started - killed)) ms" >&2
	(( started >= expiry ))
	(( started - killed <= 3000 + 1000 + 1000 ))
	assert_equal "$(field dead k .worker)" '"B"'
	assert_equal "$(field dead k .error)" '"lease of worker A expired (attempt 1 of 3)"'
	wait_for 100 job_is dead k succeeded
	stop_bg B
	assert_equal "$(field dead k '[.status, .worker, .attempt, .result.worker]')" '["succeeded","B",2,"B"]'
	assert_equal "$(stat_of dead recovered)" 1
	assert_equal "$(cat "$OVERLAPS")" ""
}

@test "G3 with a chance: Redis stopped under a running job: the handler gets SIGTERM (its trap runs) at two thirds of the lease, is gone before the lease would expire, and the job runs again" {
	redis_kill
	redis_run --appendonly yes --appendfsync always
	aq-enqueue -q trap --id t '{}' >/dev/null
	start_bg w aq-worker -q trap --lease 3s --worker-id T -- bash -c \
	    'trap "echo \"term \${EPOCHREALTIME/./}\" >>\"$BATS_TEST_TMPDIR/trap.log\"; exit 0" TERM
	     echo "start $AQ_ATTEMPT ${EPOCHREALTIME/./}" >>"$BATS_TEST_TMPDIR/trap.log"
	     [ "$AQ_ATTEMPT" -ge 2 ] && exit 0
	     sleep 60 & wait'
	wait_for 100 grep -q '^start 1 ' trap.log
	started=$(awk '/^start 1 / { print $3 }' trap.log)
	redis_kill
	wait_for 100 grep -q '^term ' trap.log
	termed=$(awk '/^term / { print $2 }' trap.log)
	echo "started $started, SIGTERM $(( (termed - started) / 1000 )) ms later" >&2
	# two thirds of the lease, counted from the last renewal (at most a
	# third of the lease before the stop)
	(( termed - started >= 1000000 ))
	(( termed - started < 3000000 ))
	grep -q 'its handler gets SIGTERM now and SIGKILL in' w.err
	redis_run --appendonly yes --appendfsync always
	# the job was given up: its lease expires, and it runs again
	wait_for 300 job_is trap t succeeded
	assert_equal "$(field trap t '[.status, .attempt]')" '["succeeded",2]'
	stop_bg w
}
