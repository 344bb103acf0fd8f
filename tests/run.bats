#!/usr/bin/env bats
# run.bats: aq-run, direct execution with no Redis: JSON lines on stdin run
# through a handler with aq-worker's protocol, one final record per job on
# stdout. Every test but the last points AQ_REDIS_URL at a socket that does
# not exist: aq-run never needs Redis.

load helpers
bats_require_minimum_version 1.5.0

setup_file() { redis_start; export REAL_REDIS_URL=$AQ_REDIS_URL; }
teardown_file() { redis_stop; }
setup() {
	cd "$BATS_TEST_TMPDIR"
	export AQ_REDIS_URL=unix:///nonexistent/aq-run/redis.sock
}
teardown() {
	show_logs_on_failure
	kill_started
}

# with_status STATUS: the records of $output with that status, one a line.
with_status() {
	jq -c --arg s "$1" 'select(.status == $s)' <<<"$output"
}

@test "a job that succeeds: its record in aq-status's shape, the last stdout line its result" {
	run --separate-stderr aq-run -- sh -c 'read job; echo "{\"step\":1}"; echo "{\"got\":$job,\"id\":\"$AQ_JOB_ID\",\"attempt\":$AQ_ATTEMPT,\"of\":$AQ_MAX_ATTEMPTS,\"queue\":\"$AQ_QUEUE\"}"' <<<'{"n":7}'
	assert_success
	assert_equal "$(jq -c '[.status, .attempt, .max_attempts, .exit_code, .payload, .queue]' <<<"$output")" \
	    '["succeeded",1,3,0,{"n":7},"default"]'
	id=$(jq -r .id <<<"$output")
	assert_equal "$(jq -c .result <<<"$output")" "{\"got\":{\"n\":7},\"id\":\"$id\",\"attempt\":1,\"of\":3,\"queue\":\"default\"}"
	assert_equal "$(jq -c 'keys' <<<"$output")" \
	    '["attempt","created","exit_code","finished","id","max_attempts","payload","priority","queue","result","started","status","worker"]'
	jq -e '.finished >= .started and .started >= .created' <<<"$output"
}

@test "exit 65 fails the job at once, on attempt 1; aq-run exits 1; stderr is passed through, its tail the error" {
	run --separate-stderr aq-run -q imports -- sh -c 'echo "no such column" >&2; exit 65' <<<'"row"'
	assert_failure 1
	assert_equal "$(jq -c '[.status, .attempt, .exit_code, .queue, .error]' <<<"$output")" \
	    '["failed",1,65,"imports","exited with status 65\nno such column"]'
	id=$(jq -r .id <<<"$output")
	[[ $stderr == *"$id: no such column"* ]]
}

@test "exit 75 is retried with backoff until --max-attempts, then fails" {
	run --separate-stderr aq-run --max-attempts 3 --backoff 100ms -- sh -c 'echo "try $AQ_ATTEMPT" >&2; exit 75' <<<'{}'
	assert_failure 1
	assert_equal "$(jq -c '[.status, .attempt, .max_attempts, .exit_code]' <<<"$output")" '["failed",3,3,75]'
	assert_equal "$(grep -c 'failed, will be retried (exited with status 75)' <<<"$stderr")" 2
	[[ $stderr == *"try 3"* ]]
	# backoffs of 100 ms and 200 ms, each -25% at worst: 225 ms at least
	jq -e '.started - .created >= 0.2' <<<"$output"
}

@test "a job that fails once and then succeeds: succeeded on attempt 2, the first error kept" {
	run --separate-stderr aq-run --backoff 10ms -- sh -c '[ "$AQ_ATTEMPT" -ge 2 ] || { echo flaky >&2; exit 1; }; echo "\"ok\""' <<<'1'
	assert_success
	assert_equal "$(jq -c '[.status, .attempt, .result, .exit_code, .error]' <<<"$output")" \
	    '["succeeded",2,"ok",0,"exited with status 1\nflaky"]'
}

@test "--timeout: SIGTERM, then SIGKILL after --grace for a handler that ignores it; nothing of it is left" {
	run --separate-stderr aq-run --timeout 300ms --grace 300ms --max-attempts 1 -- \
	    sh -c 'trap "" TERM; sleep 60 & echo $! > child-pid; echo $$ > handler-pid; wait; wait' <<<'{}'
	assert_failure 1
	assert_equal "$(jq -c '[.status, .attempt, .error]' <<<"$output")" '["failed",1,"timed out after 300 ms"]'
	[[ $stderr == *"timed out after 300 ms; stopping its handler"* ]]
	wait_for 50 eval "! kill -0 $(cat handler-pid) 2>/dev/null"
	wait_for 50 eval "! kill -0 $(cat child-pid) 2>/dev/null"
}

@test "-c 4 runs four handlers at once" {
	mkdir running
	# each handler waits (bounded) until all four have started: with fewer
	# at once none could finish, and each exits 65 after 10 s
	run --separate-stderr aq-run -c 4 --max-attempts 1 -- sh -c '
		touch "running/$AQ_JOB_ID"
		for i in $(seq 100); do
			[ "$(ls running | wc -l)" -ge 4 ] && { echo "\"together\""; exit 0; }
			sleep 0.1
		done
		exit 65' < <(printf '%s\n' 1 2 3 4)
	assert_success
	assert_equal "$(with_status succeeded | wc -l)" 4
	assert_equal "$(jq -r .result <<<"$output" | sort -u)" together
}

@test "a malformed line is reported with its line number, the others run, exit 65" {
	run --separate-stderr aq-run -- sh -c 'read j; echo "$j"' < <(printf '%s\n' '{"a":1}' 'not json' '' '{"a":' '[2]')
	assert_failure 65
	assert_equal "$(jq -c .result <<<"$output" | sort | paste -sd' ')" '[2] {"a":1}'
	[[ $stderr == *"aq-run: line 2: "*", skipped"* ]]
	[[ $stderr == *"aq-run: line 4: "*", skipped"* ]]
}

@test "a line longer than --max-line is skipped with its number" {
	run --separate-stderr aq-run --max-line 10 -- cat < <(printf '%s\n' '"short"' '"much too long a line"')
	assert_failure 65
	assert_equal "$(jq -c .result <<<"$output")" '"short"'
	[[ $stderr == *"line 2: longer than the limit of 10 bytes"* ]]
}

@test "jobs run as their lines come: a slow producer's first job is done before its last line" {
	mkfifo in
	start_bg run sh -c 'exec aq-run -- cat < in'
	exec 5>in
	echo '{"n":1}' >&5
	wait_for 100 grep -q '"n":1' "$BATS_TEST_TMPDIR/run.out"
	echo '{"n":2}' >&5
	exec 5>&-
	finish run
	assert_equal "$(rc_of run)" 0
	assert_equal "$(jq -c .result "$BATS_TEST_TMPDIR/run.out" | paste -sd' ')" '{"n":1} {"n":2}'
}

@test "SIGTERM: no more lines are read, the running job finishes within --grace, a waiting one is cancelled" {
	printf '%s\n' '{"n":1}' '{"n":2}' '{"n":3}' >jobs
	# (a job started in the background reads /dev/null unless it opens its input)
	start_bg run sh -c 'exec aq-run --grace 10s -- sh -c "touch started; while [ ! -e release ]; do sleep 0.05; done; cat" < jobs'
	wait_for 100 test -e started
	kill -TERM "$(pid_of run)"
	wait_for 100 grep -q '"status":"cancelled"' "$BATS_TEST_TMPDIR/run.out"
	touch release
	finish run
	assert_equal "$(rc_of run)" 1
	run jq -c '[.status, .payload.n, .attempt, .error]' "$BATS_TEST_TMPDIR/run.out"
	assert_equal "${lines[0]}" '["cancelled",2,0,"aq-run was stopped before attempt 1"]'
	assert_equal "${lines[1]}" '["succeeded",1,1,null]'
	assert_equal "${#lines[@]}" 2
	grep -q 'reading no more jobs' "$BATS_TEST_TMPDIR/run.err"
}

@test "SIGTERM: a handler still running when --grace is over is stopped and its job cancelled; a second signal kills at once" {
	echo '{}' >jobs
	start_bg run sh -c 'exec aq-run --grace 200ms -- sh -c "trap \"\" TERM; echo \$\$ > handler-pid; while :; do sleep 0.05; done" < jobs'
	wait_for 100 test -s handler-pid
	kill -TERM "$(pid_of run)"
	wait_for 30 grep -q 'grace period over' "$BATS_TEST_TMPDIR/run.err"
	kill -TERM "$(pid_of run)"
	finish run 50
	assert_equal "$(rc_of run)" 1
	assert_equal "$(jq -r .status "$BATS_TEST_TMPDIR/run.out")" cancelled
	wait_for 50 eval "! kill -0 $(cat handler-pid) 2>/dev/null"
}

@test "SIGTERM while waiting for input: aq-run ends at once, exit 0" {
	mkfifo in
	start_bg run sh -c 'exec aq-run -- cat < in'
	exec 5>in
	echo '1' >&5
	wait_for 100 grep -q '"result":1' "$BATS_TEST_TMPDIR/run.out"
	kill -TERM "$(pid_of run)"
	finish run 50
	exec 5>&-
	assert_equal "$(rc_of run)" 0
}

@test "--events: the handler's output lines as event lines, before the record" {
	run --separate-stderr aq-run --events -- sh -c 'echo "{\"progress\":50}"; echo warn >&2; echo "{\"done\":true}"' <<<'null'
	assert_success
	assert_equal "$(jq -c 'select(.type) | [.type, .data, .attempt]' <<<"$output" | sort | paste -sd' ')" \
	    '["stderr","warn",1] ["stdout",{"done":true},1] ["stdout",{"progress":50},1]'
	assert_equal "${#lines[@]}" 4
	assert_equal "$(jq -r .status <<<"${lines[3]}")" succeeded
}

@test "--lines: one process per slot serves every job, a line in and a line out" {
	run --separate-stderr aq-run --lines -c 2 -- jq --unbuffered -c '{sq: (. * .)}' < <(seq 1 5)
	assert_success
	assert_equal "$(jq -c '[.payload, .result.sq]' <<<"$output" | sort | paste -sd' ')" '[1,1] [2,4] [3,9] [4,16] [5,25]'
}

@test "a command that cannot be run is a usage error before any line is read" {
	run aq-run -- ./no-such-handler <<<'{}'
	assert_failure 64
	assert_output --partial 'cannot run ./no-such-handler'
	run aq-run <<<'{}'
	assert_failure 64
	assert_output --partial 'no command to run'
}

@test "the same handler through aq-worker and aq-run gives records with the same fields" {
	handler='read j; case $j in *ok*) echo "{\"done\":$j}" ;; *) echo bad >&2; exit 65 ;; esac'
	export AQ_REDIS_URL=$REAL_REDIS_URL
	rcli flushall >/dev/null
	ids=$(printf '%s\n' '"ok"' '"no"' | aq-enqueue -q same | jq -r .id)
	aq-worker -q same --burst -- sh -c "$handler" 2>/dev/null
	worker=$(aq-status -q same $ids | jq -c '{status, keys: keys}' | sort)
	ran=$(printf '%s\n' '"ok"' '"no"' | aq-run -q same -- sh -c "$handler" 2>/dev/null | jq -c '{status, keys: keys}' | sort)
	assert_equal "$ran" "$worker"
	assert_equal "$(wc -l <<<"$ran")" 2
}

@test "exit 69 (a throttled service) runs the job again after its retry_after, the attempt not counted; --throttle 0 makes it a failure" {
	run --separate-stderr aq-run --max-attempts 1 -- sh -c '[ -e held ] || { : >held; echo "{\"retry_after\":0.3}"; exit 69; }; echo "\"ok\""' <<<'{}'
	assert_success
	assert_equal "$(jq -c '[.status, .attempt, .result]' <<<"$output")" '["succeeded",1,"ok"]'
	[[ $stderr == *"throttled: its handler asked for the queue to be held 300 ms"* ]]
	jq -e '.started - .created >= 0.3' <<<"$output"
	rm held
	run --separate-stderr aq-run --max-attempts 1 --throttle 0 -- sh -c '[ -e held ] || { : >held; exit 69; }; echo "\"ok\""' <<<'{}'
	assert_failure 1
	assert_equal "$(jq -c '[.status, .attempt, .exit_code]' <<<"$output")" '["failed",1,69]'
}
