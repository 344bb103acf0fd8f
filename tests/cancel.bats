#!/usr/bin/env bats
# cancel.bats: aq-cancel takes queued and delayed jobs off their queue at
# once, tells the workers of a running job, leaves finished jobs alone, and
# reports unknown ids and bad input like aq-status.

load helpers

setup_file() { redis_start; }
teardown_file() { redis_stop; }
setup() { cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null; }
teardown() {
	show_logs_on_failure
	# a subscriber a failed test left behind
	[ -z "${sub_pid:-}" ] || kill "$sub_pid" 2>/dev/null
	return 0
}

job() { # job QUEUE ID FIELD: a field of the job's hash
	rcli hget "aq:{$1}:job:$2" "$3"
}

# subscribe CHANNEL FILE: a redis-cli subscribed to CHANNEL in the
# background, writing what it hears to FILE; its pid in sub_pid. Returns
# once the subscription is in place.
subscribe() {
	redis-cli -s "$REDIS_SOCK" subscribe "$1" >"$2" 2>&1 3>&- &
	sub_pid=$!
	wait_for 50 redis_is "$(printf '%s\n1' "$1")" pubsub numsub "$1"
}

@test "a queued job is cancelled: off the wait set, status cancelled, counted and logged" {
	aq-enqueue --id j1 '{"n":1}' >/dev/null
	run aq-cancel j1
	assert_success
	assert_output '{"id":"j1","queue":"default","status":"cancelled"}'
	assert_equal "$(rcli zscore 'aq:{default}:wait' j1)" ''
	assert_equal "$(job default j1 status)" cancelled
	assert_equal "$(job default j1 error)" cancelled
	assert_equal "$(job default j1 payload)" '{"n":1}'
	assert_equal "$(rcli hget 'aq:{default}:stats' cancelled)" 1
	assert_equal "$(rcli xrevrange 'aq:{default}:log' + - COUNT 1 | sed -n '2,5p' | paste -sd' ')" \
	    'status cancelled ids j1'
}

@test "a cancelled job records when it finished, by the Redis clock" {
	aq-enqueue --id j1 '{}' >/dev/null
	aq-cancel j1 >/dev/null
	created=$(job default j1 created)
	finished=$(job default j1 finished)
	[[ $finished =~ ^[0-9]+$ ]]
	(( finished >= created ))
	run aq-status j1
	assert_equal "$(jq -c '[.status, .error, (.finished * 1000 | round)]' <<<"$output")" \
	    "[\"cancelled\",\"cancelled\",$finished]"
}

@test "a delayed job is cancelled: off the delayed set" {
	aq-enqueue --id later --delay 1h '{}' >/dev/null
	assert_equal "$(rcli zcard 'aq:{default}:delayed')" 1
	run aq-cancel later
	assert_success
	assert_output '{"id":"later","queue":"default","status":"cancelled"}'
	assert_equal "$(rcli zcard 'aq:{default}:delayed')" 0
	assert_equal "$(job default later status)" cancelled
}

@test "several ids are cancelled at once, reported in input order, one log entry" {
	for id in a b c d; do aq-enqueue --id "$id" '{}' >/dev/null; done
	run aq-cancel c a d
	assert_success
	assert_equal "$(jq -r '.id + "=" + .status' <<<"$output" | paste -sd' ')" \
	    'c=cancelled a=cancelled d=cancelled'
	assert_equal "$(rcli zrange 'aq:{default}:wait' 0 -1)" b
	assert_equal "$(rcli hget 'aq:{default}:stats' cancelled)" 3
	assert_equal "$(rcli xlen 'aq:{default}:log')" 5
	assert_equal "$(rcli xrevrange 'aq:{default}:log' + - COUNT 1 | sed -n 5p)" 'c a d'
}

@test "aq-enqueue's output piped in cancels those jobs in their queue" {
	run bash -c 'seq 1 3 | aq-enqueue -q piped | aq-cancel'
	assert_success
	assert_equal "${#lines[@]}" 3
	assert_equal "$(jq -r '.queue + ":" + .status' <<<"$output" | sort -u)" 'piped:cancelled'
	assert_equal "$(rcli zcard 'aq:{piped}:wait')" 0
	assert_equal "$(rcli hget 'aq:{piped}:stats' cancelled)" 3
}

@test "an unknown id is reported as unknown, exit 1" {
	run aq-cancel nosuchjob
	assert_failure 1
	assert_output '{"id":"nosuchjob","queue":"default","status":"unknown"}'
	assert_equal "$(rcli exists 'aq:{default}:log' 'aq:{default}:stats')" 0
}

@test "a finished job is left alone: its status with already:true, exit 1" {
	rcli hset 'aq:{default}:job:done' status succeeded result '{"ok":1}' finished 1795000000000 >/dev/null
	rcli hset 'aq:{default}:job:bad' status failed error boom >/dev/null
	run aq-cancel done bad
	assert_failure 1
	assert_line --index 0 '{"id":"done","queue":"default","status":"succeeded","already":true}'
	assert_line --index 1 '{"id":"bad","queue":"default","status":"failed","already":true}'
	assert_equal "$(rcli hgetall 'aq:{default}:job:done' | paste -sd' ')" \
	    'status succeeded result {"ok":1} finished 1795000000000'
	assert_equal "$(job default bad status)" failed
	assert_equal "$(job default bad error)" boom
	assert_equal "$(rcli exists 'aq:{default}:log' 'aq:{default}:stats')" 0
}

@test "a running job is flagged and announced on the cancel channel: cancelling, exit 0" {
	rcli hset 'aq:{default}:job:run' status running lease 1 worker w1 >/dev/null
	rcli zadd 'aq:{default}:active' 9999999999999 run >/dev/null
	subscribe 'aq:{default}:cancel' heard
	run aq-cancel run
	assert_success
	assert_output '{"id":"run","queue":"default","status":"cancelling"}'
	wait_for 50 grep -qx run heard
	kill "$sub_pid"
	assert_equal "$(job default run cancel)" 1
	# its worker finishes it; until then it stays running and leased
	assert_equal "$(job default run status)" running
	assert_equal "$(rcli zscore 'aq:{default}:active' run)" 9999999999999
	assert_equal "$(rcli exists 'aq:{default}:log' 'aq:{default}:stats')" 0
}

@test "cancelling twice: a cancelled job is already cancelled; a running one is still cancelling" {
	aq-enqueue --id q1 '{}' >/dev/null
	rcli hset 'aq:{default}:job:run' status running lease 1 >/dev/null
	run aq-cancel q1 run
	assert_success
	run aq-cancel q1 run
	assert_failure 1
	assert_line --index 0 '{"id":"q1","queue":"default","status":"cancelled","already":true}'
	assert_line --index 1 '{"id":"run","queue":"default","status":"cancelling"}'
	assert_equal "$(rcli hget 'aq:{default}:stats' cancelled)" 1
	assert_equal "$(rcli xlen 'aq:{default}:log')" 2
	assert_equal "$(job default run cancel)" 1
}

@test "-q cancels ids of that queue" {
	aq-enqueue -q other --id j '{}' >/dev/null
	run aq-cancel j
	assert_failure 1
	assert_output --partial '"status":"unknown"'
	run aq-cancel -q other j
	assert_success
	assert_output '{"id":"j","queue":"other","status":"cancelled"}'
	run env AQ_QUEUE=other aq-cancel j
	assert_failure 1
	assert_output --partial '"already":true'
}

@test "a JSON object's queue overrides -q for its line; queues can alternate" {
	aq-enqueue -q q1 --id x '{}' >/dev/null
	aq-enqueue -q q2 --id x '{}' >/dev/null
	aq-enqueue -q q2 --id y '{}' >/dev/null
	run bash -c 'printf "%s\n" "{\"id\":\"x\",\"queue\":\"q1\"}" y "\"x\"" | aq-cancel -q q2'
	assert_success
	assert_equal "$(jq -r '.queue + "/" + .id + "=" + .status' <<<"$output" | paste -sd' ')" \
	    'q1/x=cancelled q2/y=cancelled q2/x=cancelled'
	assert_equal "$(rcli hget 'aq:{q1}:stats' cancelled)" 1
	assert_equal "$(rcli hget 'aq:{q2}:stats' cancelled)" 2
}

@test "hundreds of ids over two queues go through in batches, in order" {
	seq 1 300 | aq-enqueue -q b1 >jobs
	seq 1 300 | aq-enqueue -q b2 >>jobs
	aq-cancel <jobs >out
	assert_equal "$(wc -l <out)" 600
	cmp <(jq -r '.queue + " " + .id' jobs) <(jq -r '.queue + " " + .id' out)
	assert_equal "$(jq -r .status out | sort -u)" cancelled
	assert_equal "$(rcli hget 'aq:{b1}:stats' cancelled) $(rcli hget 'aq:{b2}:stats' cancelled)" '300 300'
	# 256 ids per call: two log entries of cancellations per queue
	assert_equal "$(rcli xrange 'aq:{b1}:log' - + | grep -c '^cancelled$')" 2
}

@test "an invalid id argument is a usage error and nothing is cancelled" {
	aq-enqueue --id ok '{}' >/dev/null
	run aq-cancel ok 'not valid'
	assert_failure 64
	assert_output --partial 'argument 2: invalid id'
	assert_equal "$(job default ok status)" queued
}

@test "bad lines on stdin are skipped with their numbers; the good ones are cancelled; exit 65" {
	aq-enqueue --id good '{}' >/dev/null
	aq-enqueue --id fine '{}' >/dev/null
	run bash -c 'printf "good\nbad id\n{\"id\":5}\n\n{\"id\":\"x\",\"queue\":\"no/slash\"}\n{nope\nfine\nnosuchjob\n" | aq-cancel 2>err; echo "rc=$?"; cat err'
	assert_line --index 0 '{"id":"good","queue":"default","status":"cancelled"}'
	assert_line --index 1 '{"id":"fine","queue":"default","status":"cancelled"}'
	assert_line --index 2 '{"id":"nosuchjob","queue":"default","status":"unknown"}'
	assert_line --index 3 'rc=65'
	assert_line --index 4 'aq-cancel: line 2: invalid id (ids are 1 to 200 of A-Z a-z 0-9 . _ : @ / -), skipped'
	assert_output --partial 'line 3: no "id" string'
	assert_output --partial 'line 5: invalid "queue"'
	assert_output --partial 'line 6: invalid JSON'
	assert_equal "$(job default good status) $(job default fine status)" 'cancelled cancelled'
}

@test "garbage on stdin never crashes aq-cancel" {
	run bash -c 'head -c 20000 /dev/urandom | aq-cancel >/dev/null 2>&1; echo $?'
	assert_output 65
	run bash -c 'printf "\0\0\n\xff\xfe\n" | aq-cancel 2>&1 >/dev/null'
	assert_output --partial 'line 1'
	assert_output --partial 'line 2'
}

@test "Redis unreachable: exit 69 naming the URL" {
	run aq-cancel -u "unix://$REDIS_DIR/none.sock" x
	assert_failure 69
	assert_output --partial "cannot connect to redis at unix://$REDIS_DIR/none.sock"
}

@test "-h prints the usage, --version the version; an unknown option is a usage error" {
	run aq-cancel -h
	assert_success
	assert_output --partial 'usage: aq-cancel [-q queue]'
	run aq-cancel --help
	assert_success
	assert_output --partial 'usage: aq-cancel'
	run aq-cancel --version
	assert_success
	assert_output --regexp '^aq-cancel [0-9]+\.[0-9]+\.[0-9]+$'
	run aq-cancel --nope
	assert_failure 64
}
