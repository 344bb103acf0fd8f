#!/usr/bin/env bats
# lines.bats: aq-worker --lines, one handler process per slot kept across
# jobs (a line in, a line out), and --prefetch, against a private
# redis-server: results, the aq_status answers, a handler that exits (the job
# retried, the process started again with a backoff), timeouts,
# cancellation, a lease lost under a stopped worker, a worker SIGKILLed,
# Redis restarted, the chaos of guarantees.bats, shutdown, jq as a
# handler, and stray output.

load helpers

HANDLERS=$(cd "$BATS_TEST_DIRNAME/handlers" && pwd)
LINER=$HANDLERS/liner

setup_file() { redis_start; }
teardown_file() { redis_stop; }
setup() {
	cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null
	export LINES_LOG=$BATS_TEST_TMPDIR/lines.log
	# the handlers' hang, unique to this run: no other "sleep 600" on the
	# machine passes for one left behind
	export LINER_HANG=600.$$
	: >"$LINES_LOG"
}
teardown() {
	show_logs_on_failure
	local pid
	for pid in $(cat "$BATS_TEST_TMPDIR"/worker.*.pid "$BATS_TEST_TMPDIR"/*.pid 2>/dev/null); do
		kill -CONT "$pid" 2>/dev/null
		kill -KILL "$pid" 2>/dev/null
	done
	return 0
}

field() { # field QUEUE ID JQ-FILTER
	aq-status -q "$1" "$2" | jq -c "$3"
}

starts() { grep -c '^start ' "$LINES_LOG"; }

# running PID: the process is alive (a zombie is not)
running() {
	local stat
	stat=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $stat != Z* ]]
}

@test "one process per slot serves every job: a line in, the next line out is the result" {
	seq 20 | jq -c '{n: .}' | aq-enqueue -q l >enq
	run aq-worker -q l --lines -c 2 --burst -- "$LINER"
	assert_success
	aq-status -q l <enq >st
	assert_equal "$(jq -r .status st | sort | uniq -c | xargs)" "20 succeeded"
	assert_equal "$(jq -r '.result.n' st | sort -n | paste -sd' ')" "$(seq 20 | paste -sd' ')"
	# two processes, started once each, given EOF at the end
	assert_equal "$(starts)" 2
	assert_equal "$(jq -r '.result.pid' st | sort -u | wc -l)" 2
	assert_equal "$(grep -c '^eof ' "$LINES_LOG")" 2
	(( $(jq -r '.result.seq' st | sort -n | tail -1) >= 10 ))
	# the result is not also an event: a line-mode job has stderr events only
	assert_equal "$(rcli xlen "aq:{l}:events:$(head -1 enq | jq -r .id)")" 0
}

@test "jq --unbuffered -c as a handler" {
	seq 5 | jq -c '{n: .}' | aq-enqueue -q jq >enq
	aq-worker -q jq --lines --burst -- jq --unbuffered -c '{square: (.n * .n)}' 2>/dev/null
	assert_equal "$(aq-status -q jq <enq | jq -c .result | paste -sd' ')" \
	    '{"square":1} {"square":4} {"square":9} {"square":16} {"square":25}'
	# try/catch answers a failure instead of nothing
	aq-enqueue -q jq --id bad --max-attempts 1 '{"n":"x"}' >/dev/null
	aq-worker -q jq --lines --burst -- jq --unbuffered -c \
	    'try {square: (.n * .n)} catch {aq_status: "failed", error: .}' 2>/dev/null
	assert_equal "$(field jq bad '[.status, .error]')" \
	    '["failed","string (\"x\") and string (\"x\") cannot be multiplied"]'
}

@test "an aq_status answer fails the attempt (failed: at once; retry: while attempts remain), and the process goes on" {
	aq-enqueue -q st --id f '{"do":"fail","n":3}' >/dev/null
	aq-enqueue -q st --id r --max-attempts 2 '{"do":"retry"}' >/dev/null
	aq-enqueue -q st --id ok '{"n":1}' >/dev/null
	run aq-worker -q st --lines --backoff 50ms --burst -- "$LINER"
	assert_success
	assert_equal "$(field st f '[.status, .attempt, .error]')" '["failed",1,"bad n 3"]'
	assert_equal "$(field st r '[.status, .attempt, .error]')" '["failed",2,"try again"]'
	assert_equal "$(field st ok '[.status, .result.n]')" '["succeeded",1]'
	assert_equal "$(starts)" 1
	assert_equal "$(rcli hget 'aq:{st}:stats' retried)" 1
}

@test "a handler that exits while it holds a job: the job is retried, the process started again after a backoff" {
	aq-enqueue -q ex --id crash --priority 1 '{"do":"exit","code":3,"once":true}' >/dev/null
	seq 3 | jq -c '{n: .}' | aq-enqueue -q ex >/dev/null
	run aq-worker -q ex --lines --backoff 50ms --burst -- "$LINER"
	assert_success
	assert_output --partial 'job crash: attempt 1 of 3 failed, will be retried (its handler exited with status 3 before it answered)'
	assert_equal "$(field ex crash '[.status, .attempt]')" '["succeeded",2]'
	assert_equal "$(starts)" 2
	assert_equal "$(rcli hget 'aq:{ex}:stats' succeeded)" 4
	# exit 65 fails the job at once
	aq-enqueue -q ex --id perm '{"do":"exit","code":65}' >/dev/null
	aq-worker -q ex --lines --burst -- "$LINER" 2>/dev/null
	assert_equal "$(field ex perm '[.status, .attempt, .exit_code]')" '["failed",1,65]'
}

@test "a handler that keeps exiting is started again with a growing backoff" {
	aq-enqueue -q bo --id down --max-attempts 4 '{"do":"exit","code":1}' >/dev/null
	start_worker w -q bo --lines --backoff 1ms -- "$LINER"
	wait_for 200 job_is bo down failed
	stop_worker w
	assert_equal "$(starts)" 4
	# at least 100, 200 and 400 ms between the starts
	mapfile -t t < <(awk '/^start / { print $3 }' "$LINES_LOG")
	for i in 1 2 3; do
		gap=$(( (t[i] - t[i-1]) / 1000 ))
		echo "start $i: $gap ms after the one before" >&2
		(( gap >= 100 << (i - 1) ))
	done
	grep -q 'slot 0: its handler exited; starting it again for the next job in' worker.w.err ||
	    grep -q 'will be retried (its handler exited with status 1 before it answered)' worker.w.err
}

@test "a timeout kills the slot's process (SIGTERM, then SIGKILL), the job is retried, and the next job gets a new process" {
	aq-enqueue -q to --id slow --priority 1 --timeout 500ms --max-attempts 1 '{"do":"hang"}' >/dev/null
	aq-enqueue -q to --id next '{"n":2}' >/dev/null
	run aq-worker -q to --lines --grace 300ms --burst -- "$LINER"
	assert_success
	assert_equal "$(field to slow '[.status, .error]')" '["failed","timed out after 500 ms"]'
	assert_equal "$(field to next '[.status, .result.n]')" '["succeeded",2]'
	assert_equal "$(starts)" 2
	grep -q '^term ' "$LINES_LOG"
	# no hung sleep of the old process is left
	refute pgrep -fx "sleep $LINER_HANG"
}

@test "cancelling a running line-mode job stops its process; the job ends cancelled" {
	aq-enqueue -q cx --id stop '{"do":"hang"}' >/dev/null
	start_worker w -q cx --lines --grace 1s -- "$LINER"
	wait_for 100 job_is cx stop running
	run aq-cancel -q cx stop
	assert_output --partial '"status":"cancelling"'
	wait_for 100 job_is cx stop cancelled
	aq-enqueue -q cx --id after '{"n":5}' >/dev/null
	wait_for 100 job_is cx after succeeded
	stop_worker w
	assert_equal "$(cat worker.w.rc)" 0
	assert_equal "$(starts)" 2
}

@test "stderr while a job is in flight is its event and its error's tail; between jobs it goes to the worker's stderr" {
	aq-enqueue -q se --id s '{"do":"stderr","n":9}' >/dev/null
	run aq-worker -q se --lines --burst -- "$LINER"
	assert_success
	assert_output --partial 's: complaint about 9'
	assert_equal "$(rcli xrange 'aq:{se}:events:s' - + | grep -c 'complaint about 9')" 1
	# a failed answer's error ends with what the job wrote to stderr
	aq-enqueue -q se --id f '{}' >/dev/null
	run aq-worker -q se --lines --burst -- sh -c \
	    'while read l; do echo "no disk" >&2; echo "{\"aq_status\":\"failed\",\"error\":\"gave up\"}"; done'
	assert_success
	assert_equal "$(field se f '[.status, .error]')" '["failed","gave up\nno disk"]'
	# what the process writes once its job is over is the worker's, by slot
	aq-enqueue -q se --id g '{}' >/dev/null
	export SOCK=$REDIS_SOCK
	start_worker w -q se --lines -- sh -c 'while read l; do echo "{}"
	    until [ "$(redis-cli -s "$SOCK" hget "aq:{se}:job:g" status)" = succeeded ]; do sleep 0.05; done
	    echo "idle now" >&2; done'
	wait_for 100 grep -q 'slot 0: idle now' worker.w.err
	stop_worker w
	refute grep -q '^g: idle now' worker.w.err
}

@test "a line with no job waiting for it is dropped, with a warning" {
	aq-enqueue -q xl --id a '{}' >/dev/null
	run aq-worker -q xl --lines --burst -- sh -c 'read l; echo first; echo second; while read l; do echo more; done'
	assert_success
	assert_output --partial 'slot 0: its handler wrote a line with no job waiting for it; dropped: second'
	assert_equal "$(field xl a .result)" '"first"'
}

@test "G3 in line mode: a worker stopped past its lease has the slot's process killed by its keeper before the lease expires" {
	aq-enqueue -q ls --id j '{"do":"hang"}' >/dev/null
	start_worker A -q ls --lines --lease 3s -- "$LINER"
	wait_for 100 grep -q '^start ' "$LINES_LOG"
	wait_for 100 job_is ls j running
	handler=$(awk '/^start / { print $2 }' "$LINES_LOG")
	kill -STOP "$(worker_pid A)"
	expiry=$(rcli zscore 'aq:{ls}:active' j)
	wait_for 100 eval "! running $handler"
	died=$(date +%s%3N)
	echo "handler $handler gone at $died, lease expires at $expiry" >&2
	(( died < expiry ))
	kill -CONT "$(worker_pid A)"
	stop_worker A
}

@test "SIGTERM: the running job finishes, the jobs claimed ahead go back unattempted, the processes get EOF, exit 0" {
	aq-enqueue -q sd --id first --priority 1 '{"n":1}' >/dev/null
	seq 2 6 | jq -c '{n: .}' | aq-enqueue -q sd >/dev/null
	# -c 1 --prefetch 4: one runs, four wait in the worker under their leases
	start_worker w -q sd --lines --prefetch 4 -- sh -c 'while read l; do sleep 0.5; echo "$l"; done'
	wait_for 100 job_is sd first running
	wait_for 100 redis_is 5 zcard 'aq:{sd}:active'
	stop_worker w
	assert_equal "$(cat worker.w.rc)" 0
	assert_equal "$(field sd first .status)" '"succeeded"'
	# the others are queued again, their attempt not counted
	assert_equal "$(rcli zcard 'aq:{sd}:active')" 0
	(( $(rcli zcard 'aq:{sd}:wait') >= 3 ))
	for id in $(rcli zrange 'aq:{sd}:wait' 0 -1); do
		assert_equal "$(field sd "$id" '[.status, .attempt]')" '["queued",0]'
	done
}

@test "--prefetch: a job cancelled while it waits in the worker never runs" {
	aq-enqueue -q pc --id busy --priority 1 '{"do":"hang"}' >/dev/null
	aq-enqueue -q pc --id waiting '{"n":1}' >/dev/null
	start_worker w -q pc --lines --prefetch 1 -- "$LINER"
	wait_for 100 redis_is 2 zcard 'aq:{pc}:active'
	assert_equal "$(field pc waiting .status)" '"running"'
	run aq-cancel -q pc waiting
	wait_for 100 job_is pc waiting cancelled
	stop_worker w
	grep -q 'job waiting: cancelled before it started' worker.w.err
	assert_equal "$(field pc waiting .error)" '"cancelled"'
}

@test "exec mode takes --prefetch too: with -c 2 every job still runs once, in its own process" {
	seq 30 | jq -c '{n: .}' | aq-enqueue -q ep >enq
	run aq-worker -q ep -c 2 --prefetch 6 --burst -- sh -c 'read p; echo "$$"'
	assert_success
	aq-status -q ep <enq >st
	assert_equal "$(jq -r .status st | sort | uniq -c | xargs)" "30 succeeded"
	assert_equal "$(jq -r .result st | sort -u | wc -l)" 30
	assert_equal "$(jq -r .attempt st | sort -u)" 1
}

@test "a timed-out job is retried while attempts remain, on a new process; one that ignores SIGTERM gets SIGKILL after --grace" {
	aq-enqueue -q tr --id again --timeout 500ms --max-attempts 2 '{"do":"hang1","n":1}' >/dev/null
	aq-enqueue -q tr --id deaf --timeout 500ms --max-attempts 1 --priority -1 '{"do":"deaf"}' >/dev/null
	run aq-worker -q tr --lines --grace 300ms --backoff 1ms --burst -- "$LINER"
	assert_success
	assert_output --partial 'job again: attempt 1 of 2 failed, will be retried (timed out after 500 ms)'
	assert_equal "$(field tr again '[.status, .attempt, .result.n]')" '["succeeded",2,1]'
	assert_equal "$(field tr deaf '[.status, .error]')" '["failed","timed out after 500 ms"]'
	# the deaf process did not trap the TERM: it was killed, never said "term"
	assert_equal "$(starts)" 3
	assert_equal "$(grep -c '^term ' "$LINES_LOG")" 1
	refute pgrep -fx "sleep $LINER_HANG"
}

@test "SIGKILL of a line-mode worker leaves no handler process running; its jobs run again elsewhere" {
	aq-enqueue -q sk --id j '{"do":"hang1","n":7}' >/dev/null
	start_worker A -q sk --lines -c 2 --lease 2s -- "$LINER"
	wait_for 100 job_is sk j running
	wait_for 100 test -e "$LINES_LOG.hung"
	pids=$(awk '/^start / { print $2 }' "$LINES_LOG")
	kill -KILL "$(worker_pid A)"
	for pid in $pids; do
		wait_for 100 eval "! running $pid"
	done
	refute pgrep -fx "sleep $LINER_HANG"
	start_worker B -q sk --lines --lease 2s -- "$LINER"
	wait_for 200 job_is sk j succeeded
	stop_worker B
	assert_equal "$(field sk j '[.attempt, .result.n]')" '[2,7]'
}

@test "Redis stopped and restarted under a line-mode worker: the job completes, its answer kept" {
	redis_kill
	redis_run --appendonly yes --appendfsync always
	aq-enqueue -q lr --id j '{"do":"sleep","secs":2,"n":3}' >/dev/null
	start_worker w -q lr --lines -- "$LINER"
	wait_for 100 job_is lr j running
	redis_kill
	wait_for 100 grep -q 'lost the' worker.w.err
	redis_run --appendonly yes --appendfsync always
	# the worker retries with a backoff of up to 5 s, then reports
	wait_for 300 job_is lr j succeeded || { cat worker.w.err; false; }
	stop_worker w
	assert_equal "$(cat worker.w.rc)" 0
	assert_equal "$(field lr j '[.attempt, .result.n]')" '[1,3]'
	run cat worker.w.err
	assert_output --partial 'still holding the leases of 1 job; 0 lost'
	redis_kill
	rm -f "$REDIS_DIR"/appendonlydir/* && redis_run
}

@test "G1 G2 in line mode: 100 jobs while workers are SIGKILLed and replaced 5 times: every job succeeds, none runs twice at once" {
	command -v flock >/dev/null || skip "flock (util-linux) is not installed"
	export LOCKS=$BATS_TEST_TMPDIR/locks OVERLAPS=$BATS_TEST_TMPDIR/overlaps
	mkdir -p "$LOCKS"
	: >"$OVERLAPS"
	# five kills at most, each costing the jobs it held (running or claimed
	# ahead) an attempt
	seq 100 | jq -c '{do: "lock", n: ., secs: 0.05}' | aq-enqueue -q gl --max-attempts 10 >enq
	start_bg sweep aq-sweep --every 250ms
	for round in 1 2 3 4 5; do
		start_worker "r$round" -q gl --lines -c 4 --lease 2s -- "$LINER"
		wait_for 100 eval "(( \$(rcli hget 'aq:{gl}:stats' succeeded || echo 0) >= $round * 10 ))"
		kill -KILL "$(worker_pid "r$round")"
	done
	start_worker last -q gl --lines -c 4 --lease 2s -- "$LINER"
	wait_for 600 eval "[ \"\$(rcli hget 'aq:{gl}:stats' succeeded)\" = 100 ]"
	stop_worker last
	kill -TERM "$(cat sweep.pid)"
	aq-status -q gl <enq >statuses
	assert_equal "$(jq -r .status statuses | sort | uniq -c | xargs)" "100 succeeded"
	assert_equal "$(cat "$OVERLAPS")" ""
	failed=$(rcli hget 'aq:{gl}:stats' failed)
	assert_equal "${failed:-0}" 0
	(( $(rcli hget 'aq:{gl}:stats' recovered) >= 1 ))
}
