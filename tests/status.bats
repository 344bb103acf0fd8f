#!/usr/bin/env bats
# status.bats: aq-status prints job records by id, from arguments or stdin,
# reports unknown ids, and rejects bad input line by line.

load helpers

setup_file() { redis_start; }
teardown_file() { redis_stop; }
setup() { cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null; }

@test "an id argument prints the job's record" {
	aq-enqueue --id j1 --priority 3 --max-attempts 4 --timeout 1.5s '{"x":[1,2]}' >/dev/null
	run aq-status j1
	assert_success
	assert_equal "$(jq -c 'del(.created)' <<<"$output")" \
	    '{"id":"j1","queue":"default","status":"queued","attempt":0,"max_attempts":4,"priority":3,"timeout":1.5,"payload":{"x":[1,2]}}'
	created=$(rcli hget 'aq:{default}:job:j1' created)
	assert_equal "$(jq -r '.created * 1000 | round' <<<"$output")" "$created"
}

@test "fields come in a fixed order: id, queue, status first" {
	aq-enqueue --id j1 '{}' >/dev/null
	run aq-status j1
	assert_equal "$(jq -r 'keys_unsorted | join(",")' <<<"$output")" \
	    'id,queue,status,attempt,max_attempts,priority,created,payload'
}

@test "a delayed job shows run_at" {
	aq-enqueue --id later --run-at 4102444800.25 '{}' >/dev/null
	run aq-status later
	assert_success
	assert_equal "$(jq -c '[.status, .run_at]' <<<"$output")" '["delayed",4102444800.25]'
}

@test "an unknown id is reported as status unknown, exit 1" {
	run aq-status nosuchjob
	assert_failure 1
	assert_output '{"id":"nosuchjob","queue":"default","status":"unknown"}'
}

@test "known and unknown ids keep their order; any unknown gives exit 1" {
	aq-enqueue --id a '{}' >/dev/null
	aq-enqueue --id c '{}' >/dev/null
	run aq-status a b c
	assert_failure 1
	assert_equal "$(jq -r '.id + "=" + .status' <<<"$output" | paste -sd' ')" 'a=queued b=unknown c=queued'
}

@test "-q looks ids up in that queue" {
	aq-enqueue -q other --id j '{}' >/dev/null
	run aq-status j
	assert_failure 1
	run aq-status -q other j
	assert_success
	assert_output --partial '"queue":"other"'
}

@test "ids on stdin: bare, as JSON strings, and aq-enqueue's output piped in" {
	aq-enqueue --id bare '{}' >/dev/null
	aq-enqueue --id quoted '{}' >/dev/null
	run bash -c 'printf "bare\n\"quoted\"\n" | aq-status'
	assert_success
	assert_equal "${#lines[@]}" 2
	run bash -c 'seq 1 3 | aq-enqueue -q piped | aq-status'
	assert_success
	assert_equal "$(jq -r '.queue + ":" + (.payload|tostring)' <<<"$output" | paste -sd' ')" 'piped:1 piped:2 piped:3'
}

@test "a JSON object's queue overrides -q for its line" {
	aq-enqueue -q q1 --id x '{}' >/dev/null
	run bash -c 'echo "{\"id\":\"x\",\"queue\":\"q1\"}" | aq-status -q q2'
	assert_success
	assert_output --partial '"queue":"q1"'
}

@test "a bad line on stdin is skipped with its number; the rest is printed; exit 65" {
	aq-enqueue --id good '{}' >/dev/null
	run bash -c 'printf "good\nbad id\n{\"id\":5}\n{\"id\":\"good\",\"queue\":\"no/slash\"}\n{nope\ngood\n" | aq-status 2>err; echo "rc=$?"; cat err'
	assert_line --index 0 --partial '"id":"good"'
	assert_line --index 1 --partial '"id":"good"'
	assert_line --index 2 'rc=65'
	assert_output --partial 'line 2: invalid id'
	assert_output --partial 'line 3: no "id" string'
	assert_output --partial 'line 4: invalid "queue"'
	assert_output --partial 'line 5: invalid JSON'
}

@test "garbage on stdin never crashes aq-status" {
	run bash -c 'head -c 20000 /dev/urandom | aq-status >/dev/null 2>&1; echo $?'
	assert_output 65
	run bash -c 'printf "\0\0\n\xff\xfe\n" | aq-status 2>&1 >/dev/null'
	assert_output --partial 'line 1'
	assert_output --partial 'line 2'
}

@test "an over-long line on stdin is skipped" {
	aq-enqueue --id ok '{}' >/dev/null
	run bash -c "{ printf 'x%.0s' {1..300}; echo; echo ok; } | aq-status --max-line 100"
	assert_failure 65
	assert_output --partial 'line 1: longer than the limit of 100 bytes'
	assert_output --partial '"id":"ok"'
}

@test "an invalid id argument is a usage error and nothing is printed" {
	run aq-status ok 'not valid'
	assert_failure 64
	assert_output --partial 'argument 2: invalid id'
}

@test "hundreds of ids go through in pipelined batches, in order" {
	seq 1 600 | aq-enqueue >"$BATS_TEST_TMPDIR/jobs"
	aq-status <"$BATS_TEST_TMPDIR/jobs" >"$BATS_TEST_TMPDIR/records"
	assert_equal "$(wc -l <"$BATS_TEST_TMPDIR/records")" 600
	cmp <(jq -r .id "$BATS_TEST_TMPDIR/jobs") <(jq -r .id "$BATS_TEST_TMPDIR/records")
	assert_equal "$(jq -s 'map(.payload) == [range(1;601)]' "$BATS_TEST_TMPDIR/records")" true
}

@test "a stored payload or result that is not JSON is shown as a string" {
	rcli hset 'aq:{default}:job:odd' status succeeded payload 'not json' result '{"ok":true}' \
	    attempt 2 exit_code 0 worker 'host:1' error $'line1\nline2\x01' >/dev/null
	run aq-status odd
	assert_success
	assert_equal "$(jq -c '[.payload, .result, .attempt, .exit_code, .worker, .error]' <<<"$output")" \
	    '["not json",{"ok":true},2,0,"host:1","line1\nline2\u0001"]'
}

@test "Redis unreachable: exit 69 naming the URL" {
	run aq-status -u "unix://$REDIS_DIR/none.sock" x
	assert_failure 69
	assert_output --partial "cannot connect to redis at unix://$REDIS_DIR/none.sock"
}

@test "-h prints the usage; an unknown option is a usage error" {
	run aq-status -h
	assert_success
	assert_output --partial 'usage: aq-status'
	run aq-status --nope
	assert_failure 64
}

@test "ids arriving slowly are answered as they arrive, not at the end of input (tail -f ids | aq-status)" {
	aq-enqueue --id slow1 '{}' >/dev/null
	aq-enqueue --id slow2 '{}' >/dev/null
	mkfifo ids
	aq-status <ids >out 2>err &
	exec 7>ids
	echo slow1 >&7
	wait_for 100 grep -q '"id":"slow1"' out
	echo slow2 >&7
	wait_for 100 grep -q '"id":"slow2"' out
	exec 7>&-
	wait
	assert_equal "$(wc -l <out)" 2
}
