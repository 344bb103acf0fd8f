#!/usr/bin/env bats
# admin.bats: queue administration: the failed jobs of a queue listed
# newest first (aq-status --state failed), retried or deleted (aq-retry);
# a queue paused, resumed, shown and purged (aq-queue), with the workers
# and aq-health seeing it.

load helpers

setup_file() { redis_start; }
teardown_file() { redis_stop; }
setup() { cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null; }
teardown() { kill_started --children; }

job() { # job QUEUE ID FIELD: a field of the job's hash
	rcli hget "aq:{$1}:job:$2" "$3"
}

# make_failed QUEUE ID...: each job enqueued with one attempt and failed
# by a worker of its own (exit 65), one after the other: finish times in
# order
make_failed() {
	local q=$1 id
	shift
	for id in "$@"; do
		aq-enqueue -q "$q" --id "$id" --max-attempts 1 '{}' >/dev/null
		aq-worker -q "$q" --burst -- sh -c 'read j; echo "{\"step\":1}"; echo boom >&2; exit 65' 2>/dev/null
		job_is "$q" "$id" failed
	done
}

# start_gated NAME ARGS...: a worker (start_bg NAME) whose handler runs
# until the file go exists in the test's directory (10 s at most), then
# succeeds
start_gated() {
	local name=$1
	shift
	start_bg "$name" aq-worker "$@" -- sh -c 'read j; for i in $(seq 200); do [ -e go ] && break; sleep 0.05; done; echo "{\"done\":1}"'
}

# calls: the commands Redis has run since the last CONFIG RESETSTAT
calls() {
	rcli info commandstats | sed -n 's/.*:calls=\([0-9]*\),.*/\1/p' | paste -sd+ | bc
}

# ---- the failed set and aq-status --state failed -------------------------

@test "failed jobs are listed newest first, in the record shape; --limit bounds them" {
	make_failed fq f1 f2 f3
	aq-enqueue -q fq --id ok '{}' >/dev/null
	aq-worker -q fq --burst -- true
	run aq-status -q fq --state failed
	assert_success
	assert_equal "$(jq -r .id <<<"$output" | paste -sd' ')" 'f3 f2 f1'
	assert_equal "$(jq -c '[.queue, .status, .attempt, .exit_code, .error]' <<<"${lines[0]}")" \
	    '["fq","failed",1,65,"exited with status 65\nboom"]'
	# the shape of aq-status by id
	assert_equal "${lines[2]}" "$(aq-status -q fq f1)"
	run aq-status -q fq --state failed --limit 2
	assert_success
	assert_equal "$(jq -r .id <<<"$output" | paste -sd' ')" 'f3 f2'
	assert_equal "$(rcli zcard 'aq:{fq}:failed')" 3
	assert_equal "$(rcli zscore 'aq:{fq}:failed' f1)" "$(job fq f1 finished)"
	run aq-status -q empty --state failed
	assert_success
	assert_output ''
}

@test "every way a job fails puts it on the failed set: out of attempts, a lost lease, --max-wait" {
	aq-enqueue -q ways --id tries --max-attempts 1 '{}' >/dev/null
	aq-worker -q ways --burst -- false 2>/dev/null
	# a lease that expired on the last attempt
	rcli hset 'aq:{ways}:job:lost' status running attempt 1 max_attempts 1 lease 1 worker gone >/dev/null
	rcli zadd 'aq:{ways}:active' 1000 lost >/dev/null
	aq-sweep -q ways >/dev/null
	aq-enqueue -q ways --id stale '{}' >/dev/null
	wait_for 50 eval "aq-sweep -q ways --max-wait 1ms >/dev/null; job_is ways stale failed"
	assert_equal "$(rcli zrange 'aq:{ways}:failed' 0 -1 | sort | paste -sd' ')" 'lost stale tries'
}

@test "a failed job is findable until its retention: the trim takes it off the failed set" {
	make_failed tq t1
	aq-sweep -q tq --retention 1h >/dev/null
	assert_equal "$(aq-status -q tq --state failed | jq -r .id)" t1
	wait_for 50 eval "aq-sweep -q tq --retention 1ms >/dev/null; ! job_is tq t1 failed"
	assert_equal "$(rcli zcard 'aq:{tq}:failed')" 0
	run aq-status -q tq --state failed
	assert_output ''
}

@test "--state takes failed only; --limit goes with it, within its range; ids or --state, not both" {
	run aq-status --state queued
	assert_failure 64
	assert_output --partial "aq-status: invalid --state 'queued': want failed"
	run aq-status --limit 5 x
	assert_failure 64
	assert_output --partial '--limit goes with --state'
	run aq-status --state failed --limit 0
	assert_failure 64
	assert_output --partial "invalid --limit '0': want a whole number from 1 to 100000"
	run aq-status --state failed some-id
	assert_failure 64
	assert_output --partial 'give ids or --state, not both'
}

# ---- aq-retry ---------------------------------------------------------------

@test "aq-retry: a failed job goes back on the queue afresh and succeeds on a worker" {
	make_failed rq r1
	assert_equal "$(rcli zscore 'aq:{rq}:done' r1)" "$(job rq r1 finished)"
	rcli del 'aq:{rq}:wake' >/dev/null
	run aq-retry -q rq r1
	assert_success
	assert_output '{"id":"r1","queue":"rq","status":"queued"}'
	assert_equal "$(job rq r1 status) $(job rq r1 attempt)" 'queued 0'
	assert_equal "$(rcli hmget 'aq:{rq}:job:r1' error exit_code finished result | paste -sd,)" ',,,'
	[[ $(job rq r1 queued_at) =~ ^[0-9]+$ ]]
	assert_equal "$(rcli zrange 'aq:{rq}:wait' 0 -1)" r1
	assert_equal "$(rcli zscore 'aq:{rq}:failed' r1)$(rcli zscore 'aq:{rq}:done' r1)" ''
	assert_equal "$(rcli llen 'aq:{rq}:wake')" 1
	assert_equal "$(rcli xrevrange 'aq:{rq}:log' + - COUNT 1 | sed -n '2,5p' | paste -sd' ')" \
	    'status queued ids r1'
	aq-worker -q rq --burst -- sh -c 'read j; echo "{\"ok\":true}"'
	assert_equal "$(aq-status -q rq r1 | jq -c '[.status, .attempt, .result, .error]')" \
	    '["succeeded",1,{"ok":true},null]'
	# its events of both attempts are kept
	assert_equal "$(rcli xlen 'aq:{rq}:events:r1')" 3
}

@test "aq-retry reads ids from stdin: aq-status --state failed piped in, bare ids" {
	make_failed pq a b c
	run bash -c 'aq-status -q pq --state failed --limit 2 | aq-retry'
	assert_success
	assert_equal "$(jq -r '.id + "=" + .queue + ":" + .status' <<<"$output" | paste -sd' ')" \
	    'c=pq:queued b=pq:queued'
	run bash -c 'echo a | aq-retry -q pq'
	assert_success
	assert_output '{"id":"a","queue":"pq","status":"queued"}'
	assert_equal "$(rcli zcard 'aq:{pq}:wait') $(rcli zcard 'aq:{pq}:failed')" '3 0'
}

@test "aq-retry refuses what is not failed, says its status; unknown ids; exit 1" {
	make_failed uq f
	aq-enqueue -q uq --id waiting '{}' >/dev/null
	run aq-retry -q uq waiting nosuch f
	assert_failure 1
	assert_line --index 0 '{"id":"waiting","queue":"uq","status":"queued","retried":false}'
	assert_line --index 1 '{"id":"nosuch","queue":"uq","status":"unknown"}'
	assert_line --index 2 '{"id":"f","queue":"uq","status":"queued"}'
	run aq-retry -q uq f
	assert_failure 1
	assert_output '{"id":"f","queue":"uq","status":"queued","retried":false}'
	assert_equal "$(job uq waiting attempt)" ''
}

@test "aq-retry of a running job is refused: it keeps running and ends normally" {
	aq-enqueue -q race --id long '{}' >/dev/null
	start_gated w -q race
	wait_for 100 job_is race long running
	token=$(job race long lease)
	run aq-retry -q race long
	assert_failure 1
	assert_output '{"id":"long","queue":"race","status":"running","retried":false}'
	run aq-retry -q race --delete long
	assert_failure 1
	assert_output '{"id":"long","queue":"race","status":"running","deleted":false}'
	assert_equal "$(job race long lease) $(rcli zcard 'aq:{race}:active')" "$token 1"
	touch go
	wait_for 100 job_is race long succeeded
	assert_equal "$(aq-status -q race long | jq -c '[.status, .attempt, .result]')" \
	    '["succeeded",1,{"done":1}]'
	kill -TERM "$(pid_of w)"
	finish w
	assert_equal "$(rc_of w)" 0
}

@test "aq-retry --all retries every failed job of the queue in batches, and no other queue's" {
	seq 1 300 | aq-enqueue -q many --max-attempts 1 >/dev/null
	aq-worker -q many -c 4 --burst -- false 2>/dev/null
	make_failed other o1
	assert_equal "$(rcli zcard 'aq:{many}:failed')" 300
	logged=$(rcli xlen 'aq:{many}:log')
	run aq-retry -q many --all
	assert_success
	assert_equal "${#lines[@]}" 300
	assert_equal "$(jq -r '.queue + ":" + .status' <<<"$output" | sort -u)" 'many:queued'
	assert_equal "$(rcli zcard 'aq:{many}:wait') $(rcli zcard 'aq:{many}:failed')" '300 0'
	# 256 jobs a call: two log entries of the retried jobs
	assert_equal "$(( $(rcli xlen 'aq:{many}:log') - logged ))" 2
	assert_equal "$(rcli xrevrange 'aq:{many}:log' + - COUNT 2 | grep -c '^queued$')" 2
	assert_equal "$(job other o1 status)" failed
	run aq-retry -q many --all
	assert_success
	assert_output ''
}

@test "aq-retry --delete deletes failed jobs with their events and set entries; refuses others" {
	make_failed dq d1 d2
	aq-enqueue -q dq --id waiting '{}' >/dev/null
	run aq-retry -q dq --delete d1 waiting nosuch
	assert_failure 1
	assert_line --index 0 '{"id":"d1","queue":"dq","status":"deleted"}'
	assert_line --index 1 '{"id":"waiting","queue":"dq","status":"queued","deleted":false}'
	assert_line --index 2 '{"id":"nosuch","queue":"dq","status":"unknown"}'
	assert_equal "$(rcli exists 'aq:{dq}:job:d1' 'aq:{dq}:events:d1')" 0
	assert_equal "$(rcli zrange 'aq:{dq}:failed' 0 -1) $(rcli zrange 'aq:{dq}:done' 0 -1)" 'd2 d2'
	assert_equal "$(aq-status -q dq d1 | jq -r .status)" unknown
	run aq-retry -q dq --delete --all
	assert_success
	assert_output '{"id":"d2","queue":"dq","status":"deleted"}'
	assert_equal "$(rcli exists 'aq:{dq}:job:d2')" 0
	assert_equal "$(job dq waiting status)" queued
}

@test "aq-retry --delete keeps a failed job the ledger has not archived yet; --all ends" {
	rcli set 'aq:{lq}:ledger' unchecked >/dev/null
	make_failed lq kept
	assert_equal "$(rcli zrange 'aq:{lq}:unarchived' 0 -1)" kept
	run aq-retry -q lq --delete kept
	assert_failure 1
	assert_output '{"id":"kept","queue":"lq","status":"failed","deleted":false,"archived":false}'
	run timeout 10 aq-retry -q lq --delete --all
	assert_failure 1
	assert_output '{"id":"kept","queue":"lq","status":"failed","deleted":false,"archived":false}'
	# archived (as aq-sweep's archive.lua moves it): now it goes
	rcli zadd 'aq:{lq}:done' "$(rcli zscore 'aq:{lq}:unarchived' kept)" kept >/dev/null
	rcli zrem 'aq:{lq}:unarchived' kept >/dev/null
	run aq-retry -q lq --delete kept
	assert_success
	assert_equal "$(rcli exists 'aq:{lq}:job:kept')" 0
	# retried, it leaves the unarchived set too
	make_failed lq again
	aq-retry -q lq again >/dev/null
	assert_equal "$(rcli zcard 'aq:{lq}:unarchived')" 0
}

@test "aq-retry: bad lines are skipped (65); --all with ids, or a bad id argument, is a usage error" {
	make_failed bq good
	run bash -c 'printf "good\nbad id\n{nope\n" | aq-retry -q bq'
	assert_failure 65
	assert_line '{"id":"good","queue":"bq","status":"queued"}'
	assert_output --partial 'aq-retry: line 2: invalid id'
	assert_output --partial 'aq-retry: line 3: invalid JSON, skipped'
	run aq-retry --all x
	assert_failure 64
	assert_output --partial 'aq-retry: give ids or --all, not both'
	run aq-retry 'not valid'
	assert_failure 64
	assert_output --partial 'argument 1: invalid id'
}

# ---- aq-queue: pause, resume, show -----------------------------------------

@test "pause, resume and show print the queue's state; pause registers the queue, -q repeats" {
	seq 3 | aq-enqueue -q sa >/dev/null
	aq-enqueue -q sa --delay 1h '{}' >/dev/null
	run aq-queue pause -q sa -q sb
	assert_success
	assert_line --index 0 '{"queue":"sa","paused":true,"waiting":3,"delayed":1,"running":0}'
	assert_line --index 1 '{"queue":"sb","paused":true,"waiting":0,"delayed":0,"running":0}'
	assert_equal "$(rcli sismember aq:queues sb)" 1
	since=$(rcli get 'aq:{sa}:paused')
	[[ $since =~ ^[0-9]{13}$ ]]
	aq-queue pause -q sa >/dev/null
	assert_equal "$(rcli get 'aq:{sa}:paused')" "$since"
	run aq-queue show -q sa
	assert_output '{"queue":"sa","paused":true,"waiting":3,"delayed":1,"running":0}'
	rcli del 'aq:{sa}:wake' >/dev/null
	run aq-queue resume -q sa -q sb
	assert_success
	assert_line --index 0 '{"queue":"sa","paused":false,"waiting":3,"delayed":1,"running":0}'
	assert_equal "$(rcli exists 'aq:{sa}:paused' 'aq:{sb}:paused')" 0
	# one wake-up marker per waiting job, for the blocked workers
	assert_equal "$(rcli llen 'aq:{sa}:wake') $(rcli llen 'aq:{sb}:wake')" '3 0'
	run env AQ_QUEUE=sa aq-queue show
	assert_output --partial '"queue":"sa","paused":false'
}

@test "a pause under a running worker: its job finishes, new ones wait; resume, and they are claimed at once" {
	aq-enqueue -q pw --id first '{}' >/dev/null
	start_gated w -q pw
	wait_for 100 job_is pw first running
	run aq-queue pause -q pw
	assert_output '{"queue":"pw","paused":true,"waiting":0,"delayed":0,"running":1}'
	aq-enqueue -q pw --id second '{}' >/dev/null
	touch go
	wait_for 100 job_is pw first succeeded
	# the worker has looked again (the enqueue's wake-up is taken) and
	# claimed nothing
	wait_for 100 redis_is 0 llen 'aq:{pw}:wake'
	assert_equal "$(job pw second status) $(rcli zcard 'aq:{pw}:active')" 'queued 0'
	aq-queue resume -q pw >/dev/null
	wait_for 20 eval '! job_is pw second queued'
	wait_for 100 job_is pw second succeeded
	kill -TERM "$(pid_of w)"
	finish w
	assert_equal "$(rc_of w)" 0
}

@test "a worker started on a paused queue claims nothing and does not spin" {
	aq-queue pause -q idle >/dev/null
	seq 3 | aq-enqueue -q idle >/dev/null
	start_bg w aq-worker -q idle -- cat
	wait_for 100 redis_is 1 zcard 'aq:{idle}:workers'
	# the enqueue's wake-ups are taken: each one look, and nothing claimed
	wait_for 100 redis_is 0 llen 'aq:{idle}:wake'
	rcli config resetstat >/dev/null
	sleep 2 # the window the commands are counted over, not a wait
	n=$(calls)
	# one claim and one BLPOP per 2 s wait (and a renewal now and then)
	(( n <= 10 )) || fail "the worker of a paused queue made $n Redis calls in 2 s"
	assert_equal "$(rcli zcard 'aq:{idle}:wait') $(rcli zcard 'aq:{idle}:active')" '3 0'
	kill -0 "$(pid_of w)"
	aq-queue resume -q idle >/dev/null
	wait_for 100 redis_is 0 zcard 'aq:{idle}:wait'
}

@test "a burst worker on a paused queue ends at once, as on an empty one" {
	aq-queue pause -q pb >/dev/null
	aq-enqueue -q pb --id j '{}' >/dev/null
	run timeout 10 aq-worker -q pb --burst -- cat
	assert_success
	assert_equal "$(job pb j status)" queued
}

# ---- aq-queue purge -------------------------------------------------------

@test "purge without --yes refuses (64), saying what it would do; nothing changes" {
	seq 4 | aq-enqueue -q pr >/dev/null
	run aq-queue purge -q pr
	assert_failure 64
	assert_output 'aq-queue: purge would cancel the 4 jobs waiting in queue pr (not the running or delayed ones); add --yes to do it'
	assert_equal "$(rcli zcard 'aq:{pr}:wait')" 4
}

@test "purge --yes cancels exactly the waiting jobs, one log entry per batch; running and delayed ones stay" {
	aq-enqueue -q pg --id running '{}' >/dev/null
	start_gated w -q pg
	wait_for 100 job_is pg running running
	aq-queue pause -q pg >/dev/null # so the worker claims none of the next
	seq 7 | aq-enqueue -q pg >waiting
	aq-enqueue -q pg --id later --delay 1h '{}' >/dev/null
	run aq-queue purge -q pg --yes --batch 3
	assert_success
	assert_equal "$(jq -r .id <<<"$output" | sort)" "$(jq -r .id waiting | sort)"
	assert_equal "$(jq -r '.queue + ":" + .status' <<<"$output" | sort -u)" 'pg:cancelled'
	assert_equal "$(aq-status -q pg <waiting | jq -r '.status + " " + .error' | sort -u)" 'cancelled purged'
	# 3 + 3 + 1: three log entries, as followers and the archive read them
	assert_equal "$(rcli xrange 'aq:{pg}:log' - + | grep -c '^cancelled$')" 3
	assert_equal "$(rcli hget 'aq:{pg}:stats' cancelled)" 7
	assert_equal "$(job pg running status) $(job pg later status)" 'running delayed'
	assert_equal "$(rcli zcard 'aq:{pg}:wait')" 0
	touch go
	wait_for 100 job_is pg running succeeded
}

@test "aq-queue: no command, an unknown one, or --yes without purge is a usage error" {
	run aq-queue
	assert_failure 64
	assert_output --partial 'aq-queue: no command: want pause, resume, limit, show or purge'
	run aq-queue stop
	assert_failure 64
	assert_output --partial "aq-queue: unknown command 'stop'"
	run aq-queue show --yes
	assert_failure 64
	assert_output --partial '--yes and --batch go with purge'
	run aq-queue pause extra
	assert_failure 64
	run aq-queue purge --yes --batch 0
	assert_failure 64
	assert_output --partial "invalid --batch '0': want a whole number from 1 to 10000"
}

# ---- aq-health ------------------------------------------------------------

@test "aq-health says which queues are paused, in JSON and for Prometheus" {
	aq-enqueue -q on '{}' >/dev/null
	aq-enqueue -q off '{}' >/dev/null
	aq-queue pause -q off >/dev/null
	run aq-health
	assert_success
	assert_equal "$(jq -c '[.queues[] | [.queue, .paused]]' <<<"$output")" \
	    '[["off",true],["on",false]]'
	run aq-health --prometheus
	assert_line '# TYPE aq_queue_paused gauge'
	assert_line 'aq_queue_paused{queue="off"} 1'
	assert_line 'aq_queue_paused{queue="on"} 0'
}
