#!/usr/bin/env bats
# subscribe.bats: aq-subscribe against a private redis-server and real
# workers: a job's events replayed and live (1,000 of them, a 4 MiB one,
# resumed with --after, across a Redis restart), its end and exit codes, a
# queue's log, channels and patterns; aq-enqueue --wait, which follows the
# queue's log the same way; and the server-sent events of examples/sse.

load helpers

ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
SSE=$ROOT/examples/sse/aq-sse

setup_file() { redis_start; }
teardown_file() { redis_stop; }
setup() { cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null; }
teardown() {
	show_logs_on_failure
	# whatever happened, nothing this test started lives on
	kill_started
	redis_plain_again
	return 0
}


# xreaders N: N clients of Redis are blocked in XREAD (a follower waiting)
xreaders() { [ "$(rcli client list | grep -c 'cmd=xread')" -eq "$1" ]; }

# subscribers CHANNEL N: N clients are subscribed to aq:chan:CHANNEL
subscribers() { [ "$(rcli pubsub numsub "aq:chan:$1" | sed -n 2p)" = "$2" ]; }

# lines FILE N: FILE has N lines
lines() { [ "$(wc -l <"$1")" -eq "$2" ]; }

# stdout_data FILE: the data of the stdout events of aq-subscribe's output
stdout_data() { jq -r 'select(.type == "stdout") | .data' "$1"; }

# a handler that prints its first lines, then waits (bounded) for the file
# go in its working directory, then prints the rest: seq FROM MID, seq MID+1 TO
split_handler() { # split_handler FROM MID TO
	echo "seq $1 $2; i=0; while [ ! -e go ] && [ \$i -lt 600 ]; do sleep 0.05; i=\$((i + 1)); done; seq $(($2 + 1)) $3"
}

# ---- a job's events --------------------------------------------------------

@test "--job started before the worker: blocked until the job runs, then every event live, the end line, exit 0" {
	aq-enqueue -q ev --id j '{}' >/dev/null
	start_bg sub aq-subscribe -q ev --job j
	wait_for 100 xreaders 1
	[ ! -s sub.out ]
	aq-worker -q ev --burst -- sh -c 'echo "{\"step\":1}"; echo to-stderr >&2; echo "{\"step\":2}"' 2>/dev/null
	finish sub
	assert_equal "$(rc_of sub)" 0
	assert_equal "$(jq -c 'select(.type == "stdout") | [.data, .attempt]' sub.out | xargs)" '[{step:1},1] [{step:2},1]'
	assert_equal "$(jq -c 'select(.type == "stderr") | [.data, .attempt]' sub.out)" '["to-stderr",1]'
	assert_equal "$(tail -n 1 sub.out)" '{"type":"end","status":"succeeded"}'
	lines sub.out 4
	# every event carries its stream id, the one Redis holds
	assert_equal "$(jq -r 'select(.id) | .id' sub.out | xargs)" \
	    "$(rcli xrange 'aq:{ev}:events:j' - + | grep -E '^[0-9]+-[0-9]+$' | xargs)"
}

@test "--job started after the job began: the events so far are replayed, then the rest arrives live" {
	aq-enqueue -q ev --id j '{}' >/dev/null
	start_bg w aq-worker -q ev --burst -- sh -c "$(split_handler 1 3 6)"
	wait_for 100 redis_is 3 xlen 'aq:{ev}:events:j'
	start_bg sub aq-subscribe -q ev --job j
	wait_for 100 lines sub.out 3
	assert_equal "$(stdout_data sub.out | xargs)" "1 2 3"
	touch go
	finish sub
	finish w
	assert_equal "$(rc_of sub)" 0
	assert_equal "$(stdout_data sub.out | xargs)" "1 2 3 4 5 6"
	assert_equal "$(tail -n 1 sub.out)" '{"type":"end","status":"succeeded"}'
}

@test "1000 events arrive complete and in order, followed live from before the job ran" {
	aq-enqueue -q many --id j '{}' >/dev/null
	start_bg sub aq-subscribe -q many --job j
	wait_for 100 xreaders 1
	aq-worker -q many --burst -- seq 1000 2>/dev/null
	finish sub
	assert_equal "$(rc_of sub)" 0
	lines sub.out 1001
	stdout_data sub.out >got
	seq 1000 >want
	cmp want got
	# each id once, in the order of the stream
	jq -r 'select(.id) | .id' sub.out >ids
	assert_equal "$(sort -u ids | wc -l)" 1000
	sort -t - -k 1,1n -k 2,2n ids | cmp - ids
}

@test "an event line of 4 MiB arrives whole, live and replayed" {
	aq-enqueue -q big --id j '{}' >/dev/null
	start_bg sub aq-subscribe -q big --job j
	wait_for 100 xreaders 1
	aq-worker -q big --burst -- sh -c 'echo before; printf "{\"blob\":\""; head -c 4194304 /dev/zero | tr "\0" x; echo "\"}"; echo after' 2>/dev/null
	finish sub
	assert_equal "$(rc_of sub)" 0
	assert_equal "$(jq -c 'select(.type == "stdout") | if .data | type == "object" then (.data.blob | [length, (explode | unique | implode)]) else .data end' sub.out | xargs)" \
	    'before [4194304,x] after'
	aq-subscribe -q big --job j >replay
	cmp sub.out replay
}

@test "--after a stream id from the middle prints exactly the rest: live, like a browser that reconnects with Last-Event-ID" {
	aq-enqueue -q resume --id j '{}' >/dev/null
	start_bg w aq-worker -q resume --burst -- sh -c "$(split_handler 1 5 10)"
	# a first client sees five events and goes away; the job runs on
	run aq-subscribe -q resume --job j --count 5
	assert_success
	assert_equal "$(jq -r .data <<<"$output" | xargs)" "1 2 3 4 5"
	refute_output --partial '"end"'
	third=$(sed -n 3p <<<"$output" | jq -r .id)
	# it comes back having kept the third
	start_bg sub aq-subscribe -q resume --job j --after "$third"
	wait_for 100 lines sub.out 2
	touch go
	finish sub
	finish w
	assert_equal "$(rc_of sub)" 0
	assert_equal "$(stdout_data sub.out | xargs)" "4 5 6 7 8 9 10"
	assert_equal "$(tail -n 1 sub.out)" '{"type":"end","status":"succeeded"}'
	# the same after the job ended, and after its last event: the end only
	run aq-subscribe -q resume --job j --after "$third"
	assert_equal "$(jq -r 'select(.type == "stdout") | .data' <<<"$output" | xargs)" "4 5 6 7 8 9 10"
	last=$(jq -r 'select(.id) | .id' sub.out | tail -n 1)
	run aq-subscribe -q resume --job j --after "$last"
	assert_success
	assert_output '{"type":"end","status":"succeeded"}'
}

@test "Redis restarted (append-only) while a job is followed: the follower reconnects and resumes, nothing lost or repeated" {
	redis_kill
	redis_run --appendonly yes --appendfsync always
	aq-enqueue -q rs --id j '{}' >/dev/null
	start_bg sub aq-subscribe -q rs --job j
	wait_for 100 xreaders 1
	# a lease far longer than the outage: with 6 s, a worker reconnecting
	# late on a loaded machine (its backoff grows to 5 s) gave its handler
	# SIGTERM at two thirds of the lease, and the job ran again from 1
	start_bg w aq-worker -q rs --lease 60s -- sh -c "$(split_handler 1 100 200)"
	wait_for 100 lines sub.out 100

	redis_kill
	wait_for 100 grep -q 'lost the connection to redis' sub.err
	# the handler goes on at once: what it writes while the worker is
	# still reconnecting is kept and sent when it is back (aq-worker(1))
	touch go
	redis_run --appendonly yes --appendfsync always

	# the worker's reconnection backoff grows to 5 s: a bound well past it
	finish sub 600 || { cat sub.err w.err; false; }
	assert_equal "$(rc_of sub)" 0
	run cat w.err
	assert_output --regexp 'the [a-z ]+ connection to redis at .* is back'
	refute_output --partial 'lease was lost'
	stdout_data sub.out >got
	seq 200 >want
	cmp want got || { cat sub.err w.err; false; }
	jq -r 'select(.id) | .id' sub.out >ids
	assert_equal "$(sort -u ids | wc -l)" 200
	assert_equal "$(tail -n 1 sub.out)" '{"type":"end","status":"succeeded"}'
	assert_equal "$(grep -c 'lost the connection' sub.err)" 1
}

@test "exit codes of --job: 0 succeeded, 1 failed, 1 cancelled (live), 1 no such job, 75 on --timeout, 64 on bad usage" {
	aq-enqueue -q codes --id ok '{}' >/dev/null
	aq-enqueue -q codes --id bad --max-attempts 1 '{}' >/dev/null
	aq-worker -q codes --burst -- sh -c 'read p; [ "$AQ_JOB_ID" = ok ]' 2>/dev/null
	run aq-subscribe -q codes --job ok
	assert_success
	assert_output '{"type":"end","status":"succeeded"}'
	run aq-subscribe -q codes --job bad
	assert_failure 1
	assert_output '{"type":"end","status":"failed"}'

	# cancelled while it runs and is followed: the end is seen live
	aq-enqueue -q codes --id stop '{}' >/dev/null
	start_bg w aq-worker -q codes --grace 1s -- sh -c 'echo started; exec sleep 30'
	wait_for 100 redis_is 1 xlen 'aq:{codes}:events:stop'
	start_bg sub aq-subscribe -q codes --job stop
	wait_for 100 xreaders 1
	aq-cancel -q codes stop >/dev/null
	finish sub
	assert_equal "$(rc_of sub)" 1
	assert_equal "$(jq -c '[.type, .data // .status]' sub.out | xargs)" '[stdout,started] [end,cancelled]'

	run aq-subscribe -q codes --job nope
	assert_failure 1
	assert_output --partial 'no job nope in queue codes'

	# a job that does not end in time: what came is printed, then 75
	aq-enqueue -q codes --id later --delay 1h '{}' >/dev/null
	SECONDS=0
	run aq-subscribe -q codes --job later --timeout 1s
	assert_failure 75
	assert_output --partial 'timed out'
	(( SECONDS >= 1 && SECONDS < 5 ))

	for args in "--job ok chan" "--queue-log --job ok" "--after 1-0 chan" "--job ok --after x" \
	    "--job ok --count 0" "--job ok --timeout 0" "--job bad/id?" "bad!chan" ""; do
		run aq-subscribe -q codes $args
		assert_failure 64
	done
}

@test "--count on --job: exit 0 after N events, without the end line while the job runs" {
	aq-enqueue -q cnt --id j '{}' >/dev/null
	start_bg w aq-worker -q cnt --burst -- sh -c "$(split_handler 1 3 4)"
	run aq-subscribe -q cnt --job j --count 2
	assert_success
	assert_equal "$(jq -r .data <<<"$output" | xargs)" "1 2"
	touch go
	finish w
}

# ---- a queue's log ---------------------------------------------------------

@test "--queue-log prints the state changes from now on, one entry per batch, and --after replays from an entry" {
	aq-enqueue -q ql --id old '{}' >/dev/null
	start_bg log aq-subscribe -q ql --queue-log --count 3
	wait_for 100 xreaders 1
	aq-enqueue -q ql --id a '{}' >/dev/null
	aq-enqueue -q ql '{"n":1}' '{"n":2}' >enqueued
	aq-worker -q ql -c 8 --burst -- true 2>/dev/null
	finish log
	assert_equal "$(rc_of log)" 0
	lines log.out 3
	# from now: the job enqueued before is not in it
	assert_equal "$(jq -c '[.queue, .status, .ids]' log.out | head -n 2 | xargs)" \
	    "[ql,queued,[a]] [ql,queued,[$(jq -r .id enqueued | paste -sd, -)]]"
	assert_equal "$(sed -n 3p log.out | jq -r .status)" running
	assert_equal "$(sed -n 3p log.out | jq -r '.ids | length')" 4
	# every id is a stream id of the log, in order
	first=$(head -n 1 log.out | jq -r .id)
	run aq-subscribe -q ql --queue-log --after "$first" --count 2
	assert_success
	assert_equal "$output" "$(sed -n 2,3p log.out)"
	run aq-subscribe -q ql --queue-log --after 0 --count 1
	assert_success
	assert_equal "$(jq -c '[.status, .ids]' <<<"$output")" '["queued",["old"]]'
}

@test "--queue-log: 75 when --timeout runs out before --count entries" {
	run aq-subscribe -q quiet --queue-log --count 1 --timeout 300ms
	assert_failure 75
}

# ---- channels --------------------------------------------------------------

@test "channels: each message of any channel given, with its channel and data, until --count, exit 0" {
	start_bg sub aq-subscribe --count 3 alerts deploys
	wait_for 100 subscribers alerts 1
	wait_for 100 subscribers deploys 1
	echo '{"disk":"91%"}' | aq-publish alerts
	echo '"v1.4.2"' | aq-publish deploys
	echo '[1,2]' | aq-publish other
	rcli publish aq:chan:alerts 'not json' >/dev/null
	finish sub
	assert_equal "$(rc_of sub)" 0
	assert_equal "$(cat sub.out)" '{"channel":"alerts","data":{"disk":"91%"}}
{"channel":"deploys","data":"v1.4.2"}
{"channel":"alerts","data":"not json"}'
}

@test "--pattern: messages of every matching channel, with the pattern, until --count" {
	start_bg sub aq-subscribe --pattern --count 2 'news.*' 'sport.[ab]'
	wait_for 100 eval '[ "$(rcli pubsub numpat)" = 2 ]'
	echo '{"n":1}' | aq-publish news.eu
	echo '{"n":2}' | aq-publish weather.eu
	echo '{"n":3}' | aq-publish sport.c
	echo '{"n":4}' | aq-publish sport.b
	finish sub
	assert_equal "$(rc_of sub)" 0
	assert_equal "$(cat sub.out)" '{"pattern":"news.*","channel":"news.eu","data":{"n":1}}
{"pattern":"sport.[ab]","channel":"sport.b","data":{"n":4}}'
	run aq-subscribe --pattern --count 1 'bad pattern'
	assert_failure 64
}

@test "channels: after a Redis restart the subscriber subscribes again and prints what is published then" {
	start_bg sub aq-subscribe --count 2 news
	wait_for 100 subscribers news 1
	echo '{"n":1}' | aq-publish news
	wait_for 100 lines sub.out 1
	redis_kill
	redis_run
	wait_for 100 subscribers news 1
	echo '{"n":2}' | aq-publish news
	finish sub
	assert_equal "$(rc_of sub)" 0
	assert_equal "$(jq -c .data sub.out | xargs)" '{n:1} {n:2}'
	assert_equal "$(grep -c 'messages published meanwhile are lost' sub.err)" 1
}

@test "channels: --timeout waits for its duration, then exits 75; --count reached first exits 0" {
	SECONDS=0
	run aq-subscribe --timeout 1s quiet
	assert_failure 75
	assert_output --partial 'timed out'
	(( SECONDS >= 1 ))
	start_bg sub aq-subscribe --count 1 --timeout 20s news
	wait_for 100 subscribers news 1
	echo '{"n":1}' | aq-publish news
	finish sub
	assert_equal "$(rc_of sub)" 0
	assert_equal "$(cat sub.out)" '{"channel":"news","data":{"n":1}}'
}

# ---- aq-enqueue --wait -----------------------------------------------------

@test "aq-enqueue --wait: succeeding and failing jobs, the final records in input order, exit 1" {
	start_bg w aq-worker -q mix -c 4 -- sh -c 'read p; case $p in *fail*) echo "no good" >&2; exit 3;; esac; echo "{\"did\":$p}"'
	run aq-enqueue -q mix --max-attempts 1 --wait '{"n":1}' '{"n":2,"fail":1}' '{"n":3}' '{"n":4,"fail":1}' '{"n":5}'
	assert_failure 1
	assert_equal "$(jq -c '[.payload.n, .status]' <<<"$output" | xargs)" \
	    '[1,succeeded] [2,failed] [3,succeeded] [4,failed] [5,succeeded]'
	assert_equal "$(jq -c 'select(.status == "succeeded") | .result.did.n' <<<"$output" | xargs)" "1 3 5"
	assert_equal "$(jq -r 'select(.status == "failed") | .error' <<<"$output" | sort -u)" \
	    "$(printf 'exited with status 3\nno good')"
	# the records are those of aq-status
	assert_equal "$output" "$(jq -r .id <<<"$output" | aq-status -q mix)"
}

@test "aq-enqueue --wait: every job succeeded, exit 0; a rejected line makes it 65, its neighbours still run" {
	start_bg w aq-worker -q okq -c 2 -- true
	run aq-enqueue -q okq --wait '{"n":1}' '{"n":2}'
	assert_success
	assert_equal "$(jq -r .status <<<"$output" | xargs)" "succeeded succeeded"
	run aq-enqueue -q okq --wait <<<'{"n":3}
not json
{"n":4}'
	assert_failure 65
	assert_equal "$(grep -v '^aq-enqueue:' <<<"$output" | jq -c '[.payload.n, .status]' | xargs)" \
	    "[3,succeeded] [4,succeeded]"
	assert_output --partial 'line 2:'
}

@test "aq-enqueue --wait for 10000 jobs: all succeeded, in input order, over one connection" {
	start_bg w aq-worker -q big -c 2 -- true
	wait_for 100 redis_is 1 zcard 'aq:{big}:workers'
	before=$(rcli info stats | sed -n 's/^total_connections_received:\([0-9]*\).*/\1/p')
	seq 10000 | jq -c '{n: .}' >in
	rc=0
	timeout 120 aq-enqueue -q big --wait <in >records || rc=$?
	after=$(rcli info stats | sed -n 's/^total_connections_received:\([0-9]*\).*/\1/p')
	assert_equal "$rc" 0
	lines records 10000
	assert_equal "$(jq -r .status records | sort | uniq -c | xargs)" "10000 succeeded"
	jq -r .payload.n records | cmp - <(seq 10000)
	# aq-enqueue's one connection, and the one that asked for the count
	assert_equal "$((after - before))" 2
}

@test "aq-enqueue --wait-timeout: 75 when the jobs are not done in time, with their records as they are" {
	SECONDS=0
	run aq-enqueue -q nowork --wait --wait-timeout 500ms '{"n":1}' '{"n":2}'
	assert_failure 75
	assert_output --partial 'timed out waiting for the jobs (--wait-timeout)'
	assert_equal "$(grep -v '^aq-enqueue:' <<<"$output" | jq -c '[.payload.n, .status]' | xargs)" \
	    "[1,queued] [2,queued]"
	(( SECONDS < 5 ))
	run aq-enqueue -q nowork --wait-timeout 1s '{}'
	assert_failure 64
}

# ---- examples/sse ----------------------------------------------------------

@test "examples/sse/aq-sse: a job's events as server-sent events, the end as event: end, resumed after Last-Event-ID" {
	[ -x "$SSE" ]
	aq-enqueue -q sse --id j '{}' >/dev/null
	aq-worker -q sse --burst -- sh -c 'echo "{\"progress\":0.5}"; echo "{\"progress\":1}"' 2>/dev/null
	aq-subscribe -q sse --job j >events
	id1=$(sed -n 1p events | jq -r .id)
	id2=$(sed -n 2p events | jq -r .id)

	run "$SSE" -q sse j
	assert_success
	assert_equal "$output" "id: $id1
event: stdout
data: $(sed -n 1p events)

id: $id2
event: stdout
data: $(sed -n 2p events)

event: end
data: {\"type\":\"end\",\"status\":\"succeeded\"}"
	# resumed: as a second argument, or as the header a CGI server passes
	run "$SSE" -q sse j "$id1"
	assert_success
	assert_equal "$(grep '^id: ' <<<"$output")" "id: $id2"
	HTTP_LAST_EVENT_ID=$id2 AQ_QUEUE=sse run "$SSE" j
	assert_success
	assert_equal "$output" 'event: end
data: {"type":"end","status":"succeeded"}'
	# as a CGI program: the headers first, the job from the query string
	GATEWAY_INTERFACE=CGI/1.1 QUERY_STRING="queue=sse&job=j" HTTP_LAST_EVENT_ID=$id1 run "$SSE"
	assert_success
	assert_line --index 0 'Content-Type: text/event-stream'
	assert_output --partial "id: $id2"
	run "$SSE" -q sse no-such-job
	assert_failure 1
}

@test "examples/sse/aq-sse follows a running job live" {
	aq-enqueue -q sse --id live '{}' >/dev/null
	start_bg w aq-worker -q sse --burst -- sh -c "$(split_handler 1 1 2)"
	start_bg sse "$SSE" -q sse live
	wait_for 100 grep -q '^event: stdout' sse.out
	touch go
	finish sse
	assert_equal "$(rc_of sse)" 0
	assert_equal "$(grep -c '^event: stdout' sse.out) $(grep -c '^event: end' sse.out)" "2 1"
}

@test "aq-enqueue --wait rides out a Redis restart: it reconnects, looks at the jobs again, and prints their records" {
	redis_kill
	redis_run --appendonly yes --appendfsync always
	start_bg enq aq-enqueue -q rw --wait '{"n":1}' '{"n":2}'
	wait_for 100 redis_is 2 zcard 'aq:{rw}:wait'
	redis_kill
	wait_for 100 grep -q 'lost the connection to redis at .* while waiting for the jobs' enq.err
	redis_run --appendonly yes --appendfsync always
	wait_for 100 grep -q 'is back; looking at the jobs again' enq.err
	aq-worker -q rw --burst -- jq -c '{double: (.n * 2)}' 2>/dev/null
	wait_for 100 eval "[ -s $BATS_TEST_TMPDIR/enq.out ] && ! kill -0 \$(cat $BATS_TEST_TMPDIR/enq.pid) 2>/dev/null"
	rc=0
	wait "$(cat enq.pid)" || rc=$?
	rm enq.pid
	assert_equal "$rc" 0
	assert_equal "$(jq -c '[.status, .result.double]' enq.out | paste -sd' ')" '["succeeded",2] ["succeeded",4]'
}

@test "--job: events the stream's cap trimmed before they were read are a gap line, never skipped in silence" {
	aq-enqueue -q gap --id g '{}' >/dev/null
	aq-worker -q gap --burst -- sh -c 'read p; seq 20' 2>/dev/null
	first=$(rcli xrange 'aq:{gap}:events:g' - + COUNT 1 | head -1)
	# as the worker's cap would, after a slow follower read the first one
	rcli xtrim 'aq:{gap}:events:g' MAXLEN 5 >/dev/null
	run aq-subscribe -q gap --job g --after "$first"
	assert_success
	# how many were lost after the given one cannot be counted: null
	assert_line --index 0 "{\"type\":\"gap\",\"after\":\"$first\",\"lost\":null}"
	assert_equal "$(jq -r 'select(.type == "stdout") | .data' <<<"$output" | paste -sd' ')" "16 17 18 19 20"
	assert_line --index 6 '{"type":"end","status":"succeeded"}'
	# a replay from the start of a capped stream says so too
	run aq-subscribe -q gap --job g
	assert_line --index 0 '{"type":"gap","after":"0-0","lost":15}'
	# a follower that already read into what is left has no gap
	kept=$(rcli xrange 'aq:{gap}:events:g' - + COUNT 1 | head -1)
	run aq-subscribe -q gap --job g --after "$kept"
	refute_output --partial gap
	assert_equal "$(jq -r 'select(.type == "stdout") | .data' <<<"$output" | paste -sd' ')" "17 18 19 20"
	aq-enqueue -q gap --id whole '{}' >/dev/null
	aq-worker -q gap --burst -- sh -c 'read p; seq 3' 2>/dev/null
	run aq-subscribe -q gap --job whole
	refute_output --partial gap
}

@test "--job: a follower slower than its job's writer, with the worker's cap, prints a gap line and every event it could read, in order" {
	aq-enqueue -q slow --id big '{}' >/dev/null
	aq-worker -q slow --burst -- sh -c 'read p; seq 30000' 2>/dev/null
	run aq-subscribe -q slow --job big
	assert_success
	lost=$(jq -r 'select(.type == "gap") | .lost' <<<"$output")
	got=$(jq -r 'select(.type == "stdout") | .data' <<<"$output" | wc -l)
	echo "lost $lost, got $got" >&2
	assert_equal "$((lost + got))" 30000
	jq -r 'select(.type == "stdout") | .data' <<<"$output" | sort -nc
}
