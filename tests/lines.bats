#!/usr/bin/env bats
# lines.bats: aq-worker --lines, one handler process per slot kept across
# jobs (a line in, a line out), and --prefetch, against a private
# redis-server: results, the aq_status answers, a handler that exits (the job
# retried, the process started again with a backoff), timeouts,
# cancellation, a lease lost under a stopped worker, shutdown, jq as a
# handler, and stray output.

load helpers

HANDLERS=$(cd "$BATS_TEST_DIRNAME/handlers" && pwd)
LINER=$HANDLERS/liner

setup_file() { redis_start; }
teardown_file() { redis_stop; }
setup() {
	cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null
	export LINES_LOG=$BATS_TEST_TMPDIR/lines.log
	: >"$LINES_LOG"
}
teardown() {
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
	refute pgrep -f 'sleep 600'
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
