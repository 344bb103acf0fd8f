#!/usr/bin/env bats
# limits.bats: a queue's flow control: rate and concurrency limits held
# across all its workers (aq-queue limit), changed under running workers;
# a handler's throttle hold (exit 69, or a line-mode answer) that holds
# the whole queue; a pause that lands while workers are claiming.

load helpers

setup_file() { redis_start; }
teardown_file() { redis_stop; }
setup() { cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null; }
teardown() {
	show_logs_on_failure
	kill_started --children
}

job() { # job QUEUE ID FIELD: a field of the job's hash
	rcli hget "aq:{$1}:job:$2" "$3"
}

# started QUEUE: the claim times (ms, the Redis clock's) of the queue's
# jobs, in order
started() {
	local key
	rcli --scan --pattern "aq:{$1}:job:*" | while read -r key; do
		rcli hget "$key" started
	done | sort -n
}

succeeded() { # succeeded QUEUE: its count of succeeded jobs
	rcli hget "aq:{$1}:stats" succeeded
}

# hold_end QUEUE: the end (ms) of the first throttle hold its log names
hold_end() {
	rcli xrange "aq:{$1}:log" - + | grep -A4 -x throttled | sed -n 5p
}

# round_trips: the EVALSHA and BLPOP calls Redis has had since the last
# CONFIG RESETSTAT (the commands scripts run are counted apart)
round_trips() {
	rcli info commandstats | sed -n 's/^cmdstat_\(evalsha\|blpop\):calls=\([0-9]*\),.*/\2/p' |
	    paste -sd+ | bc
}

# ---- aq-queue limit --------------------------------------------------------

@test "aq-queue limit sets, shows and clears the limits; aq-health shows them" {
	seq 2 | aq-enqueue -q lq >/dev/null
	run aq-queue limit -q lq --rate 100/1s --concurrency 5
	assert_success
	assert_output '{"queue":"lq","paused":false,"waiting":2,"delayed":0,"running":0,"limits":{"rate":100,"period_ms":1000,"concurrency":5}}'
	assert_equal "$(rcli hmget 'aq:{lq}:limits' rate period_ms concurrency | paste -sd' ')" '100 1000 5'
	# one wake-up marker per waiting job: a limit raised is used at once
	assert_equal "$(rcli llen 'aq:{lq}:wake')" 4
	assert_equal "$(aq-health -q lq 2>/dev/null | jq -c '.queues[0] | [.limits, .throttled_s]')" \
	    '[{"rate":100,"period_ms":1000,"concurrency":5},null]'
	run aq-health -q lq --prometheus
	assert_line 'aq_queue_rate_limit{queue="lq"} 100'
	assert_line 'aq_queue_rate_period_seconds{queue="lq"} 1.000'
	assert_line 'aq_queue_concurrency_limit{queue="lq"} 5'
	assert_line 'aq_queue_throttled_seconds{queue="lq"} 0.000'
	# each one changed or removed alone
	run aq-queue limit -q lq --rate 5/1m
	assert_output --partial '"limits":{"rate":5,"period_ms":60000,"concurrency":5}}'
	run aq-queue limit -q lq --concurrency off
	assert_output --partial '"limits":{"rate":5,"period_ms":60000}}'
	run aq-queue limit -q lq --clear
	assert_output '{"queue":"lq","paused":false,"waiting":2,"delayed":0,"running":0}'
	assert_equal "$(rcli exists 'aq:{lq}:limits' 'aq:{lq}:rate')" 0
	assert_equal "$(aq-health -q lq 2>/dev/null | jq -c '.queues[0] | [.limits, .throttled_s]')" \
	    '[null,null]'
	# limit registers the queue, as pause does
	aq-queue limit -q newq --concurrency 1 >/dev/null
	assert_equal "$(rcli sismember aq:queues newq)" 1
}

@test "aq-queue limit: bad or missing values are usage errors; the options go with limit only" {
	run aq-queue limit -q bad
	assert_failure 64
	assert_output --partial 'aq-queue: limit wants --rate, --concurrency or --clear'
	for rate in 0/1s 5 5/0 5/x x/1s -1/1s 1000001/1s 5/2d; do
		run aq-queue limit --rate "$rate"
		assert_failure 64
		assert_output --partial "aq-queue: invalid --rate '$rate': want jobs/period"
	done
	run aq-queue limit --concurrency 0
	assert_failure 64
	assert_output --partial "invalid --concurrency '0': want a whole number from 1 to 1000000"
	run aq-queue show --rate 5/1s
	assert_failure 64
	assert_output --partial '--rate, --concurrency and --clear go with limit'
	assert_equal "$(rcli exists 'aq:{bad}:limits')" 0
}

# ---- rate -------------------------------------------------------------------

@test "rate limit held with 3 workers at -c 8: no window of 1 s saw more than 20 claims" {
	aq-queue limit -q rq --rate 20/1s >/dev/null
	seq 70 | aq-enqueue -q rq >/dev/null
	for w in 1 2 3; do start_bg "w$w" aq-worker -q rq -c 8 -- cat; done
	wait_for 200 redis_is 70 hget 'aq:{rq}:stats' succeeded
	mapfile -t t < <(started rq)
	assert_equal "${#t[@]}" 70
	# sliding window: claim i+20 comes a full period after claim i
	for ((i = 0; i + 20 < ${#t[@]}; i++)); do
		(( t[i + 20] - t[i] >= 1000 )) ||
		    fail "claims $i and $((i + 20)) are $((t[i + 20] - t[i])) ms apart"
	done
	# the limit was reached, not merely unneeded: 20 claims fit in a window
	for ((i = 0; i + 19 < ${#t[@]}; i++)); do
		(( t[i + 19] - t[i] >= 1000 )) || break
	done
	(( i + 19 < ${#t[@]} )) || fail "no 20 claims came within a period: the limit never held"
	# the rate set holds the claims of the last period only, then expires
	(( $(rcli zcard 'aq:{rq}:rate') <= 20 ))
	for w in 1 2 3; do kill -TERM "$(pid_of "w$w")"; done
	for w in 1 2 3; do finish "w$w" && assert_equal "$(rc_of "w$w")" 0; done
}

@test "workers held by a spent rate wait for the window, and do not spin" {
	aq-queue limit -q sq --rate 2/1h >/dev/null
	seq 5 | aq-enqueue -q sq >/dev/null
	for w in 1 2 3; do start_bg "w$w" aq-worker -q sq -c 8 -- cat; done
	wait_for 100 redis_is 2 hget 'aq:{sq}:stats' succeeded
	wait_for 100 redis_is 3 zcard 'aq:{sq}:workers'
	# a held claim clears the wake-up markers: none would be of use
	wait_for 100 redis_is 0 llen 'aq:{sq}:wake'
	rcli config resetstat >/dev/null
	sleep 2 # the window the commands are counted over, not a wait
	n=$(round_trips)
	# per worker one claim and one BLPOP per 2 s wait (parts of two waits
	# in the window), a renewal now and then; a spinning one makes hundreds
	(( n <= 20 )) || fail "3 held workers made $n round trips to Redis in 2 s"
	assert_equal "$(rcli zcard 'aq:{sq}:wait') $(succeeded sq)" '3 2'
	aq-queue limit -q sq --rate off >/dev/null
	wait_for 100 redis_is 5 hget 'aq:{sq}:stats' succeeded
}

@test "a burst worker waits out a rate limit while jobs wait, then ends" {
	aq-queue limit -q bq --rate 3/500ms >/dev/null
	seq 7 | aq-enqueue -q bq >/dev/null
	run timeout 20 aq-worker -q bq -c 4 --burst -- cat
	assert_success
	assert_equal "$(succeeded bq)" 7
	mapfile -t t < <(started bq)
	(( t[6] - t[0] >= 1000 )) || fail "7 claims at 3/500ms took $((t[6] - t[0])) ms"
}

# ---- concurrency ------------------------------------------------------------

@test "concurrency limit across 3 workers: never more handlers at once than the limit" {
	aq-queue limit -q cq --concurrency 3 >/dev/null
	# the handler counts the handlers running, under a lock, and notes
	# the count it saw
	cat >count.sh <<-'EOF'
	#!/bin/sh
	cat >/dev/null
	flock lock sh -c 'n=$(( $(cat now 2>/dev/null || echo 0) + 1 )); echo $n >now; echo $n >>seen'
	sleep 0.1
	flock lock sh -c 'echo $(( $(cat now) - 1 )) >now'
	EOF
	chmod +x count.sh
	seq 30 | aq-enqueue -q cq >/dev/null
	for w in 1 2 3; do start_bg "w$w" aq-worker -q cq -c 4 -- ./count.sh; done
	wait_for 300 redis_is 30 hget 'aq:{cq}:stats' succeeded
	assert_equal "$(wc -l <seen)" 30
	max=$(sort -n seen | tail -n 1)
	(( max <= 3 )) || fail "$max handlers ran at once under a limit of 3"
	for w in 1 2 3; do kill -TERM "$(pid_of "w$w")"; done
	for w in 1 2 3; do finish "w$w"; done
}

@test "a job ending on a concurrency-limited queue wakes a blocked worker for its slot" {
	aq-queue limit -q wq --concurrency 1 >/dev/null
	seq 2 | aq-enqueue -q wq >/dev/null
	rcli del 'aq:{wq}:wake' >/dev/null
	# it claims one job and no more: the report of its end claims nothing,
	# so the slot it frees is another worker's, woken for it
	run timeout 20 aq-worker -q wq --max-jobs 1 -- cat
	assert_success
	assert_equal "$(succeeded wq) $(rcli zcard 'aq:{wq}:wait')" '1 1'
	assert_equal "$(rcli llen 'aq:{wq}:wake')" 1
}

@test "no flow control set: the claim costs what it did, one EXISTS a call, and touches none of its keys" {
	seq 200 | aq-enqueue -q nq >/dev/null
	rcli config resetstat >/dev/null
	aq-worker -q nq -c 4 --burst -- sh -c 'cat >/dev/null' 2>/dev/null
	assert_equal "$(succeeded nq)" 200
	stat() { rcli info commandstats | sed -n "s/^cmdstat_$1:calls=\([0-9]*\),.*/\1/p"; }
	# an HMGET per job claimed and per job reported, no more
	assert_equal "$(stat hmget)" 400
	# per work call an EXISTS for flow control and one for the ledger
	(( $(stat exists) <= 2 * $(stat evalsha) )) ||
	    fail "$(stat exists) EXISTS for $(stat evalsha) script calls"
	assert_equal "$(stat zremrangebyscore)$(stat pttl)$(stat get)" ''
	assert_equal "$(rcli exists 'aq:{nq}:limits' 'aq:{nq}:rate' 'aq:{nq}:throttled')" 0
}

@test "a limit changed under running workers takes effect at once, no restart" {
	aq-queue limit -q ch --concurrency 1 >/dev/null
	seq 4 | aq-enqueue -q ch >/dev/null
	start_bg w aq-worker -q ch -c 4 -- sh -c 'cat >/dev/null; for i in $(seq 200); do [ -e go ] && break; sleep 0.05; done'
	wait_for 100 redis_is 1 zcard 'aq:{ch}:active'
	wait_for 100 redis_is 0 llen 'aq:{ch}:wake'
	assert_equal "$(rcli zcard 'aq:{ch}:wait')" 3
	aq-queue limit -q ch --concurrency 3 >/dev/null
	wait_for 50 redis_is 3 zcard 'aq:{ch}:active'
	aq-queue limit -q ch --clear >/dev/null
	wait_for 50 redis_is 4 zcard 'aq:{ch}:active'
	touch go
	wait_for 100 redis_is 4 hget 'aq:{ch}:stats' succeeded
}

# ---- a handler's throttle hold -----------------------------------------------

@test "exit 69 holds the queue for retry_after: the job goes back uncounted, the others wait; aq-health shows it" {
	aq-enqueue -q tq --id first --max-attempts 1 '{"n":1}' >/dev/null
	seq 2 4 | jq -c '{n: .}' | aq-enqueue -q tq >/dev/null
	start_bg log aq-subscribe -q tq --queue-log --after 0
	# the first job's first run asks for a hold of 3 s; the job claimed
	# ahead of the free slot goes back on the queue with it
	start_bg w aq-worker -q tq -c 1 -- sh -c 'read j; if [ "$AQ_JOB_ID" = first ] && mkdir once 2>/dev/null; then echo "{\"retry_after\":3}"; exit 69; fi; echo ok'
	wait_for 100 redis_is 1 exists 'aq:{tq}:throttled'
	# both say the hold while it lasts (known to have lasted through a
	# command when the key is still there after it: no timing luck)
	held=$(aq-health -q tq 2>/dev/null | jq '.queues[0].throttled_s')
	if [ "$(rcli exists 'aq:{tq}:throttled')" = 1 ]; then
		[[ $held =~ ^[0-9.]+$ ]] && (( ${held%.*} <= 3 )) || fail "throttled_s is $held"
	else
		[[ $held == null || $held =~ ^[0-9.]+$ ]] || fail "throttled_s is $held"
	fi
	run aq-queue show -q tq
	if [ "$(rcli exists 'aq:{tq}:throttled')" = 1 ]; then
		assert_output --partial '"throttled_s":'
	fi
	wait_for 200 redis_is 4 hget 'aq:{tq}:stats' succeeded
	until=$(hold_end tq)
	[[ $until =~ ^[0-9]{13}$ ]] || fail "no throttled log entry with its end: $until"
	# no job started again before the hold ended, the held one included
	for t in $(started tq); do
		(( t >= until )) || fail "a job started at $t, before the hold's end $until"
	done
	# its attempt was not counted: with one attempt, it still succeeded
	assert_equal "$(aq-status -q tq first | jq -c '[.status, .attempt, .result]')" \
	    '["succeeded",1,"ok"]'
	assert_equal "$(rcli hget 'aq:{tq}:stats' retried)" ''
	# the queue log says it, with the hold's end
	wait_for 50 grep -q '"status":"throttled"' log.out
	assert_equal "$(jq -c 'select(.status == "throttled") | [.ids, .until]' log.out)" \
	    "[[\"first\"],$until]"
	grep -q 'job first: attempt 1 of 1 throttled: its handler asked for the queue to be held 3000 ms' w.err
}

@test "line mode: a throttled answer holds the queue as exit 69 does" {
	aq-enqueue -q lt --id a '"a"' >/dev/null
	aq-enqueue -q lt --id b '"b"' >/dev/null
	start_bg w aq-worker -q lt --lines -- sh -c 'while read j; do if [ "$j" = "\"a\"" ] && mkdir once 2>/dev/null; then echo "{\"aq_status\":\"throttled\",\"retry_after\":1.5}"; else echo "$j"; fi; done'
	wait_for 100 redis_is 2 hget 'aq:{lt}:stats' succeeded
	until=$(hold_end lt)
	[[ $until =~ ^[0-9]{13}$ ]] || fail "no throttled log entry with its end"
	(( $(job lt a started) >= until ))
	assert_equal "$(aq-status -q lt a | jq -c '[.status, .attempt, .result]')" '["succeeded",1,"a"]'
}

@test "--throttle sets the hold of an exit 69 naming none; --throttle 0 makes it an ordinary failure" {
	aq-enqueue -q dq --id d '{}' >/dev/null
	start_bg w aq-worker -q dq --throttle 1s -- sh -c 'cat >/dev/null; mkdir once 2>/dev/null && exit 69; echo ok'
	wait_for 100 redis_is 1 hget 'aq:{dq}:stats' succeeded
	assert_equal "$(rcli xrange 'aq:{dq}:log' - + | grep -c -x throttled)" 1
	grep -q 'held 1000 ms' w.err
	kill -TERM "$(pid_of w)"
	finish w
	# a retry_after that is no number of seconds: said, and --throttle held
	aq-enqueue -q rb --id b '{}' >/dev/null
	start_bg w2 aq-worker -q rb --throttle 500ms -- sh -c 'cat >/dev/null; mkdir once2 2>/dev/null && { echo "{\"retry_after\":\"soon\"}"; exit 69; }; echo ok'
	wait_for 100 job_is rb b succeeded
	grep -q "job b: its handler's retry_after is not a number of seconds above 0 and at most 86400; the queue is held 500 ms" w2.err
	kill -TERM "$(pid_of w2)"
	finish w2
	aq-enqueue -q dz --id z --max-attempts 1 '{}' >/dev/null
	run timeout 20 aq-worker -q dz --burst --throttle 0 -- sh -c 'cat >/dev/null; exit 69'
	assert_equal "$(aq-status -q dz z | jq -c '[.status, .exit_code]')" '["failed",69]'
	assert_equal "$(rcli exists 'aq:{dz}:throttled')" 0
	run aq-worker --throttle 2d -- true
	assert_failure 64
	assert_output --partial "invalid --throttle '2d': want 1d or less"
}

@test "resume ends a throttle hold; a manual pause outlives one" {
	aq-enqueue -q rs --id r '{}' >/dev/null
	rcli set 'aq:{rs}:throttled' 9999999999999 PX 3600000 >/dev/null
	aq-queue pause -q rs >/dev/null
	start_bg w aq-worker -q rs -- cat
	wait_for 100 redis_is 1 zcard 'aq:{rs}:workers'
	assert_equal "$(job rs r status)" queued
	# the hold ends (as its expiry would): the manual pause still holds
	rcli del 'aq:{rs}:throttled' >/dev/null
	wait_for 100 redis_is 0 llen 'aq:{rs}:wake'
	assert_equal "$(job rs r status)" queued
	rcli set 'aq:{rs}:throttled' 9999999999999 PX 3600000 >/dev/null
	run aq-queue resume -q rs
	assert_output '{"queue":"rs","paused":false,"waiting":1,"delayed":0,"running":0}'
	assert_equal "$(rcli exists 'aq:{rs}:throttled' 'aq:{rs}:paused')" 0
	wait_for 100 job_is rs r succeeded
}

# ---- pause during a claim ---------------------------------------------------

@test "pause during a claim: once acknowledged, no job is claimed; running ones finish" {
	seq 600 | aq-enqueue -q pq >/dev/null
	for w in 1 2 3; do start_bg "w$w" aq-worker -q pq -c 8 -- sh -c 'cat >/dev/null; sleep 0.05'; done
	wait_for 200 eval '(( $(succeeded pq || echo 0) >= 24 ))'
	aq-queue pause -q pq >/dev/null
	since=$(rcli get 'aq:{pq}:paused')
	waiting=$(rcli zcard 'aq:{pq}:wait')
	(( waiting > 0 )) || skip "the workers were done before the pause"
	# what was claimed before runs to its end, claimed ahead or running
	wait_for 200 redis_is 0 zcard 'aq:{pq}:active'
	assert_equal "$(rcli zcard 'aq:{pq}:wait')" "$waiting"
	assert_equal "$(( $(succeeded pq) + waiting ))" 600
	for t in $(started pq); do
		(( t <= since )) || fail "a job was claimed at $t, after the pause at $since"
	done
	# the log agrees: no claim logged after the pause
	run bash -c "redis-cli -s '$REDIS_SOCK' xrange 'aq:{pq}:log' $((since + 1)) + | grep -x running"
	assert_failure 1
	aq-queue resume -q pq >/dev/null
	wait_for 300 redis_is 600 hget 'aq:{pq}:stats' succeeded
}
