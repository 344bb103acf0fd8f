#!/usr/bin/env bats
# publish.bats: aq-publish against a private redis-server: lines to a
# channel, in order and as they come; malformed and over-long lines
# skipped with their numbers; --job appending events that aq-subscribe
# --job prints, from outside a job and from inside its handler; usage
# errors and an unreachable Redis.

load helpers

setup_file() { redis_start; }
teardown_file() { redis_stop; }
setup() { cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null; }
teardown() {
	show_logs_on_failure
	# whatever happened, nothing this test started lives on
	kill_started
	return 0
}


# subscribed CHANNEL N: N clients are subscribed to the Redis channel CHANNEL
subscribed() { [ "$(rcli pubsub numsub "$1" | sed -n 2p)" = "$2" ]; }

lines() { [ "$(wc -l <"$1")" -eq "$2" ]; }

@test "each JSON line on stdin is published on aq:chan:NAME, in order, as it was written" {
	start_bg sub aq-subscribe --count 4 news
	wait_for 100 subscribed aq:chan:news 1
	run aq-publish news <<<'{"n":1}
  [1, 2,  3]  	
"text"
{"n":4}'
	assert_success
	assert_output ''
	finish sub
	assert_equal "$(rc_of sub)" 0
	assert_equal "$(cat sub.out)" '{"channel":"news","data":{"n":1}}
{"channel":"news","data":[1, 2,  3]}
{"channel":"news","data":"text"}
{"channel":"news","data":{"n":4}}'
}

@test "the channel is PREFIX:chan:NAME: --prefix changes it, and any Redis client can listen" {
	start_bg sub aq-subscribe --prefix other --count 1 news
	wait_for 100 subscribed other:chan:news 1
	# a raw Redis subscriber of the default prefix's channel
	start_bg raw redis-cli -s "$REDIS_SOCK" subscribe aq:chan:news
	wait_for 100 subscribed aq:chan:news 1
	echo '{"to":"aq"}' | aq-publish news
	echo '{"to":"other"}' | aq-publish --prefix other news
	finish sub
	assert_equal "$(cat sub.out)" '{"channel":"news","data":{"to":"other"}}'
	wait_for 100 grep -qF '{"to":"aq"}' raw.out
	refute grep -qF '{"to":"other"}' raw.out
}

@test "garbage on stdin: the good lines are published, each bad one reported with its line number, exit 65" {
	start_bg sub aq-subscribe --count 3 news
	wait_for 100 subscribed aq:chan:news 1
	printf '%s\n' '{"n":1}' 'not json' '' '{"n":' '{"n":2}' '{"a":1} {"b":2}' '   ' $'\xff\xfe' '{"n":3}' >in
	run aq-publish news <in
	assert_failure 65
	assert_line --partial 'aq-publish: line 2: '
	assert_line --partial 'aq-publish: line 4: '
	assert_line --partial 'aq-publish: line 6: '
	assert_line --partial 'aq-publish: line 8: '
	assert_equal "$(grep -c 'skipped$' <<<"$output")" 4
	finish sub
	assert_equal "$(jq -c .data sub.out | xargs)" '{n:1} {n:2} {n:3}'
}

@test "--max-line: a longer line is skipped with its number, the others are published" {
	start_bg sub aq-subscribe --count 2 news
	wait_for 100 subscribed aq:chan:news 1
	{ echo '"short"'; printf '"%s"\n' "$(head -c 100 /dev/zero | tr '\0' x)"; echo '"end"'; } >in
	run aq-publish --max-line 50 news <in
	assert_failure 65
	assert_output --partial 'line 2: longer than the limit of 50 bytes (--max-line), skipped'
	finish sub
	assert_equal "$(jq -r .data sub.out | xargs)" 'short end'
}

@test "a line is published as soon as it is written, while the input stays open" {
	start_bg sub aq-subscribe --count 2 news
	wait_for 100 subscribed aq:chan:news 1
	# a producer that writes a line, then waits (bounded) for the file more
	start_bg pub sh -c '{ echo "{\"n\":1}"; i=0; while [ ! -e more ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i + 1)); done; echo "{\"n\":2}"; } | aq-publish news'
	wait_for 100 lines sub.out 1
	# the producer still holds the input open: aq-publish did not wait for its end
	kill -0 "$(pid_of pub)"
	assert_equal "$(cat sub.out)" '{"channel":"news","data":{"n":1}}'
	touch more
	finish pub
	finish sub
	assert_equal "$(rc_of pub) $(rc_of sub)" "0 0"
	assert_equal "$(jq -c .data sub.out | xargs)" '{n:1} {n:2}'
}

@test "--job appends each line as an event of type event, without attempt, that aq-subscribe --job prints" {
	aq-enqueue -q jq --id j '{}' >/dev/null
	aq-worker -q jq --burst -- echo '{"result":1}' 2>/dev/null
	run aq-publish -q jq --job j <<<'{"note":"checked"}
"by hand"'
	assert_success
	assert_output ''
	# in the stream: type event, the line as data, no attempt
	run rcli --json xrange 'aq:{jq}:events:j' - +
	assert_equal "$(jq -c '.[1:] | .[] | .[1]' <<<"$output")" '["type","event","data","{\"note\":\"checked\"}"]
["type","event","data","\"by hand\""]'
	run aq-subscribe -q jq --job j
	assert_success
	assert_equal "$(jq -c 'del(.id)' <<<"$output")" '{"type":"stdout","data":{"result":1},"attempt":1}
{"type":"event","data":{"note":"checked"}}
{"type":"event","data":"by hand"}
{"type":"end","status":"succeeded"}'
	# the job itself is not changed
	assert_equal "$(aq-status -q jq j | jq -c '[.status, .result]')" '["succeeded",{"result":1}]'
}

@test "--job from inside a handler: its lines join the job's events, live, between the handler's own" {
	aq-enqueue -q inside --id j '{}' >/dev/null
	start_bg sub aq-subscribe -q inside --job j
	wait_for 100 eval '[ "$(rcli client list | grep -c cmd=xread)" = 1 ]'
	aq-worker -q inside --burst -- sh -c 'echo first; printf "%s\n" "{\"helper\":1}" "{\"helper\":2}" | aq-publish --job "$AQ_JOB_ID"; echo last' 2>/dev/null
	finish sub
	assert_equal "$(rc_of sub)" 0
	assert_equal "$(jq -c '[.type, (.data // .status)]' sub.out | xargs)" \
	    '[stdout,first] [event,{helper:1}] [event,{helper:2}] [stdout,last] [end,succeeded]'
}

@test "--job for a job that does not exist: exit 1, nothing written" {
	aq-enqueue -q nj --id other '{}' >/dev/null
	run aq-publish -q nj --job nope <<<'{"n":1}'
	assert_failure 1
	assert_output --partial 'no job nope in queue nj'
	assert_equal "$(rcli exists 'aq:{nj}:events:nope')" 0
	# the id names a job of one queue only
	run aq-publish -q elsewhere --job other <<<'{"n":1}'
	assert_failure 1
}

@test "usage errors exit 64 and send nothing: no channel, two, a channel with --job, a bad name or id" {
	aq-enqueue -q u --id j '{}' >/dev/null
	for args in "" "a b" "--job j chan" "bad!name" "--job bad?id" "--max-line 0 chan" "--bogus chan"; do
		run aq-publish -q u $args <<<'{"n":1}'
		assert_failure 64
	done
	run aq-publish "$(head -c 201 /dev/zero | tr '\0' c)" <<<'{}'
	assert_failure 64
	assert_equal "$(rcli exists 'aq:{u}:events:j')" 0
	run aq-publish -h
	assert_success
	assert_output --partial 'usage: aq-publish'
}

@test "Redis unreachable: exit 69, naming it" {
	AQ_REDIS_URL=unix://$BATS_TEST_TMPDIR/none.sock run aq-publish news <<<'{"n":1}'
	assert_failure 69
	assert_output --partial 'none.sock'
	AQ_REDIS_URL=unix://$BATS_TEST_TMPDIR/none.sock run aq-subscribe news
	assert_failure 69
}
