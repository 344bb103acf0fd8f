#!/usr/bin/env bats
# deps.bats: dependencies between jobs (aq-enqueue --after) against a private
# redis-server and real workers: a child waits, blocked, until its parents
# succeeded; a parent that fails or is cancelled cancels its children, down
# to the grandchildren; the edge cases of enqueue, cancel, retry and status.

load helpers

setup_file() { redis_start; }
teardown_file() { redis_stop; }
setup() { cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null; }
teardown() {
	show_logs_on_failure
	kill_started
	pg_stop # the ledger's test starts its own
	unset AQ_DATABASE_URL PG_DIR
}

field() { # field QUEUE ID JQ-FILTER
	aq-status -q "$1" "$2" | jq -c "$3"
}

# a handler that appends its job's id to the file $RUNLOG, one line a run
RUNLOG_HANDLER=(sh -c 'cat >/dev/null; echo "$AQ_JOB_ID" >>"$0"; echo "\"$AQ_JOB_ID done\""')

@test "a child runs only after all its parents succeeded, even at a higher priority" {
	aq-enqueue -q p --id a '{}' >/dev/null
	aq-enqueue -q p --id b '{}' >/dev/null
	run aq-enqueue -q p --id merge --priority 10 --after a,b '{"merge":true}'
	assert_success
	assert_output '{"id":"merge","queue":"p","status":"blocked"}'
	assert_equal "$(field p merge '[.status, .after, .waiting_for]')" '["blocked",["a","b"],["a","b"]]'
	assert_equal "$(rcli zscore 'aq:{p}:wait' merge)" ''
	assert_equal "$(rcli zcard 'aq:{p}:blocked')" 1
	assert_equal "$(rcli hget 'aq:{p}:job:a' children)" 1
	assert_equal "$(rcli hget 'aq:{p}:job:merge' children)" ''
	run aq-worker -q p -c 2 --burst -- "${RUNLOG_HANDLER[@]}" "$BATS_TEST_TMPDIR/runs"
	assert_success
	assert_equal "$(sort "$BATS_TEST_TMPDIR/runs" | paste -sd' ')" 'a b merge'
	assert_equal "$(tail -n 1 "$BATS_TEST_TMPDIR/runs")" merge
	assert_equal "$(field p merge '[.status, .attempt, .after]')" '["succeeded",1,["a","b"]]'
	# started after both parents finished, by the Redis clock
	last=$(aq-status -q p a b | jq -s 'map(.finished) | max')
	started=$(field p merge .started)
	jq -en "$started >= $last" >/dev/null
	# nothing is left of the dependency
	assert_equal "$(rcli keys '*deps*' | wc -w)" 0
	assert_equal "$(rcli keys '*children*' | wc -w)" 0
	assert_equal "$(rcli zcard 'aq:{p}:blocked')" 0
	assert_equal "$(rcli hget 'aq:{p}:job:a' children)" ''
}

@test "one parent done, one to go: the child waits for the one left only" {
	aq-enqueue -q p --id a '{}' >/dev/null
	aq-worker -q p --burst -- true 2>/dev/null
	aq-enqueue -q p --id b '{}' >/dev/null
	aq-enqueue -q p --id c --after a --after b '{}' >/dev/null
	assert_equal "$(field p c '[.status, .after, .waiting_for]')" '["blocked",["a","b"],["b"]]'
	aq-worker -q p --burst -- true 2>/dev/null
	assert_equal "$(field p c .status)" '"succeeded"'
}

@test "a parent that succeeded already: the child is queued at once" {
	aq-enqueue -q p --id a '{}' >/dev/null
	aq-worker -q p --burst -- true 2>/dev/null
	run aq-enqueue -q p --id c --after a '{}'
	assert_success
	assert_output '{"id":"c","queue":"p","status":"queued"}'
	assert_equal "$(rcli exists 'aq:{p}:children:a')" 0
	run aq-enqueue -q p --id d --after a --delay 1h '{}'
	assert_output '{"id":"d","queue":"p","status":"delayed"}'
}

@test "a released child keeps its priority and its delay" {
	aq-enqueue -q p --id a '{}' >/dev/null
	aq-enqueue -q p --id low --after a '{}' >/dev/null
	aq-enqueue -q p --id high --priority 5 --after a '{}' >/dev/null
	aq-enqueue -q p --id later --delay 1h --after a '{}' >/dev/null
	run aq-worker -q p --burst -c 1 -- "${RUNLOG_HANDLER[@]}" "$BATS_TEST_TMPDIR/runs"
	assert_success
	assert_equal "$(paste -sd' ' "$BATS_TEST_TMPDIR/runs")" 'a high low'
	assert_equal "$(field p later .status)" '"delayed"'
	assert_equal "$(rcli zscore 'aq:{p}:delayed' later)" "$(rcli hget 'aq:{p}:job:later' run_at)"
}

@test "a parent that fails cancels its children, and theirs" {
	aq-enqueue -q p --id f --max-attempts 1 '{}' >/dev/null
	aq-enqueue -q p --id c1 --after f '{}' >/dev/null
	aq-enqueue -q p --id c2 --after f '{}' >/dev/null
	aq-enqueue -q p --id g --after c1 '{}' >/dev/null
	run aq-worker -q p --burst -- false
	assert_success
	assert_equal "$(field p f .status)" '"failed"'
	assert_equal "$(aq-status -q p c1 c2 g | jq -c '[.id, .status, .error, .attempt]' | paste -sd' ')" \
	    '["c1","cancelled","parent f failed",0] ["c2","cancelled","parent f failed",0] ["g","cancelled","parent c1 cancelled",0]'
	assert_equal "$(rcli hget 'aq:{p}:stats' cancelled)" 3
	assert_equal "$(rcli zcard 'aq:{p}:blocked')" 0
	assert_equal "$(rcli keys '*deps*' | wc -w)" 0
	# the log says so, for aq-subscribe --queue-log, --wait and the ledger
	assert_equal "$(rcli --json xrange 'aq:{p}:log' - + |
	    jq -r '.[] | .[1] | select(.[1] == "cancelled") | .[3] | split(" ") | sort | join(" ")')" 'c1 c2 g'
}

@test "a grandchild runs last when all succeed" {
	aq-enqueue -q p --id p1 '{}' >/dev/null
	aq-enqueue -q p --id c --after p1 '{}' >/dev/null
	aq-enqueue -q p --id g --after c '{}' >/dev/null
	run aq-worker -q p -c 4 --burst -- "${RUNLOG_HANDLER[@]}" "$BATS_TEST_TMPDIR/runs"
	assert_success
	assert_equal "$(paste -sd' ' "$BATS_TEST_TMPDIR/runs")" 'p1 c g'
}

@test "a child of a parent that failed or was cancelled before it is cancelled at once" {
	aq-enqueue -q p --id f --max-attempts 1 '{}' >/dev/null
	aq-worker -q p --burst -- false 2>/dev/null
	aq-enqueue -q p --id x '{}' >/dev/null
	aq-cancel -q p x >/dev/null
	run aq-enqueue -q p --after f 1 2
	assert_success
	assert_equal "$(jq -r .status <<<"$output" | paste -sd' ')" 'cancelled cancelled'
	id=$(head -n 1 <<<"$output" | jq -r .id)
	assert_equal "$(field p "$id" '[.status, .error, .after]')" '["cancelled","parent f failed",["f"]]'
	run aq-enqueue -q p --id y --after x '{}'
	assert_output '{"id":"y","queue":"p","status":"cancelled"}'
	assert_equal "$(field p y .error)" '"parent x cancelled"'
	assert_equal "$(rcli zscore 'aq:{p}:done' y | grep -c .)" 1
	assert_equal "$(rcli hget 'aq:{p}:stats' enqueued)" 5
}

@test "a child of a queued parent that gets cancelled is cancelled" {
	aq-enqueue -q p --id par '{}' >/dev/null
	aq-enqueue -q p --id kid --after par '{}' >/dev/null
	run aq-cancel -q p par
	assert_success
	assert_equal "$(field p kid '[.status, .error]')" '["cancelled","parent par cancelled"]'
	assert_equal "$(rcli exists 'aq:{p}:children:par' 'aq:{p}:deps:kid')" 0
}

@test "a child of a running parent that gets cancelled is cancelled when the parent ends" {
	aq-enqueue -q p --id par '{}' >/dev/null
	aq-enqueue -q p --id kid --after par '{}' >/dev/null
	start_worker w -q p --grace 1s -- sh -c 'exec sleep 30'
	wait_for 100 job_is p par running
	assert_equal "$(field p kid .status)" '"blocked"'
	run aq-cancel -q p par
	assert_output --partial '"cancelling"'
	wait_for 100 job_is p par cancelled
	wait_for 50 job_is p kid cancelled
	assert_equal "$(field p kid .error)" '"parent par cancelled"'
	stop_worker w
}

@test "cancelling a blocked child: it never runs, its parent forgets it, its own child is cancelled" {
	aq-enqueue -q p --id par '{}' >/dev/null
	aq-enqueue -q p --id kid --after par '{}' >/dev/null
	aq-enqueue -q p --id grandkid --after kid '{}' >/dev/null
	run aq-cancel -q p kid
	assert_success
	assert_output --partial '"cancelled"'
	assert_equal "$(rcli smembers 'aq:{p}:children:par')" ''
	assert_equal "$(field p grandkid '[.status, .error]')" '["cancelled","parent kid cancelled"]'
	aq-worker -q p --burst -- "${RUNLOG_HANDLER[@]}" "$BATS_TEST_TMPDIR/runs" 2>/dev/null
	assert_equal "$(cat "$BATS_TEST_TMPDIR/runs")" par
	assert_equal "$(field p kid .status)" '"cancelled"'
}

@test "an unknown parent rejects the job (65), said per line; the good lines around are enqueued" {
	aq-enqueue -q p --id a '{}' >/dev/null
	run aq-enqueue -q p --after nosuch 1 2
	assert_failure 65
	assert_output --partial 'aq-enqueue: argument 1: --after nosuch: no such job in queue p'
	assert_output --partial 'aq-enqueue: argument 2: --after nosuch'
	assert_equal "$(rcli keys 'aq:{p}:job:*' | wc -l)" 1
	assert_equal "$(rcli hget 'aq:{p}:stats' enqueued)" 1
	# lines: a malformed one is skipped, the others wait for their parent
	run aq-enqueue -q p --after a <<<$'{"n":1}\n{bad\n{"n":3}'
	assert_failure 65
	assert_equal "$(grep -c '"blocked"' <<<"$output")" 2
	assert_output --partial 'line 2:'
	assert_equal "$(rcli zcard 'aq:{p}:blocked')" 2
	assert_equal "$(rcli scard 'aq:{p}:children:a')" 2
	# the parent in another queue is no parent of this one
	run aq-enqueue -q other --after a '{}'
	assert_failure 65
	assert_output --partial 'no such job in queue other'
}

@test "bad --after values are usage errors; a job cannot wait for itself" {
	run aq-enqueue --after 'a b' '{}'
	assert_failure 64
	assert_output --partial "invalid --after 'a b'"
	run aq-enqueue --after 'a,,b' '{}'
	assert_failure 64
	run aq-enqueue --after '' '{}'
	assert_failure 64
	run aq-enqueue --id me --after x,me '{}'
	assert_failure 64
	assert_output --partial 'a job cannot wait for itself'
	assert_equal "$(rcli dbsize)" 0
}

@test "enqueueing a child again by its --id is idempotent" {
	aq-enqueue -q p --id a '{}' >/dev/null
	aq-enqueue -q p --id c --after a '{}' >/dev/null
	run aq-enqueue -q p --id c --after a '{}'
	assert_success
	assert_output '{"id":"c","queue":"p","status":"blocked","duplicate":true}'
	assert_equal "$(rcli scard 'aq:{p}:children:a')" 1
	assert_equal "$(rcli zcard 'aq:{p}:blocked')" 1
	# even once its parent is gone
	aq-worker -q p --burst -- true 2>/dev/null
	rcli del 'aq:{p}:job:a' >/dev/null
	run aq-enqueue -q p --id c --after a '{}'
	assert_success
	assert_output '{"id":"c","queue":"p","status":"succeeded","duplicate":true}'
}

@test "aq-retry of a failed parent leaves its cancelled children cancelled" {
	aq-enqueue -q p --id f --max-attempts 1 '{}' >/dev/null
	aq-enqueue -q p --id c --after f '{}' >/dev/null
	aq-worker -q p --burst -- false 2>/dev/null
	run aq-retry -q p f
	assert_success
	aq-worker -q p --burst -- true 2>/dev/null
	assert_equal "$(field p f .status)" '"succeeded"'
	assert_equal "$(field p c .status)" '"cancelled"'
}

@test "aq-enqueue --wait on a child waits for it through its parents" {
	aq-enqueue -q p --id a '{}' >/dev/null
	aq-enqueue -q p --id f --max-attempts 1 '{}' >/dev/null
	start_bg ok aq-enqueue -q p --wait --wait-timeout 20s --after a '{"child":1}'
	start_bg bad aq-enqueue -q p --wait --wait-timeout 20s --after a,f '{"child":2}'
	wait_for 50 redis_is 2 zcard 'aq:{p}:blocked'
	start_worker w -q p -- sh -c 'cat >/dev/null; [ "$AQ_JOB_ID" != f ]'
	finish ok 200
	finish bad 200
	assert_equal "$(rc_of ok)" 0
	assert_equal "$(jq -r .status "$BATS_TEST_TMPDIR/ok.out")" succeeded
	assert_equal "$(rc_of bad)" 1
	assert_equal "$(jq -c '[.status, .error]' "$BATS_TEST_TMPDIR/bad.out")" '["cancelled","parent f failed"]'
	stop_worker w
}

@test "a race: children enqueued while workers finish their parents all end, none stays blocked" {
	local n=40 i
	for ((i = 0; i < n; i++)); do
		if ((i % 4 == 3)); then echo '{"ok":false}'; else echo '{"ok":true}'; fi
	done | aq-enqueue -q r --max-attempts 1 | jq -r .id >parents
	start_worker w1 -q r -c 4 -- sh -c 'jq -e .ok >/dev/null || exit 65; echo "$AQ_JOB_ID" >>"$0"' "$BATS_TEST_TMPDIR/runs"
	start_worker w2 -q r -c 4 -- sh -c 'jq -e .ok >/dev/null || exit 65; echo "$AQ_JOB_ID" >>"$0"' "$BATS_TEST_TMPDIR/runs"
	i=0
	while read -r parent; do
		aq-enqueue -q r --id "child-$i" --after "$parent" '{"ok":true}' >/dev/null
		i=$((i + 1))
	done <parents
	done_count() {
		[ "$(aq-status -q r $(cat parents) $(seq -f 'child-%g' 0 $((n - 1))) |
		    jq -r .status | grep -cE '^(succeeded|failed|cancelled)$')" = $((2 * n)) ]
	}
	wait_for 300 done_count
	assert_equal "$(rcli zcard 'aq:{r}:blocked')" 0
	assert_equal "$(rcli keys '*deps*' | wc -w)" 0
	assert_equal "$(rcli keys '*children*' | wc -w)" 0
	# each child ran exactly once when its parent succeeded, never otherwise
	for ((i = 0; i < n; i++)); do
		want=succeeded
		((i % 4 != 3)) || want=cancelled
		assert_equal "child-$i $(field r "child-$i" .status)" "child-$i \"$want\""
	done
	assert_equal "$(grep -c '^child-' runs)" $((n - n / 4))
	assert_equal "$(grep '^child-' runs | sort | uniq -d)" ''
	stop_worker w1
	stop_worker w2
}

@test "aq-queue purge of a parent cancels its children; purge leaves blocked jobs be" {
	aq-enqueue -q p --id a '{}' >/dev/null
	aq-enqueue -q p --id c --after a '{}' >/dev/null
	run aq-queue purge -q p --yes
	assert_success
	assert_equal "$(field p a '[.status, .error]')" '["cancelled","purged"]'
	assert_equal "$(field p c '[.status, .error]')" '["cancelled","parent a cancelled"]'
}

@test "aq-health counts the blocked jobs" {
	aq-enqueue -q p --id a '{}' >/dev/null
	aq-enqueue -q p --after a 1 2 3 >/dev/null
	run aq-health -q p
	assert_equal "$(jq '.queues[0].blocked' <<<"$output")" 3
	run aq-health -q p --prometheus
	assert_line 'aq_queue_blocked{queue="p"} 3'
}

@test "with a ledger: a child is in it as blocked, a rejected one leaves no row, a lost blocked one is restored cancelled" {
	pg_bin >/dev/null || skip "Debian's postgresql package is not installed"
	pg_start
	export AQ_DATABASE_URL=$PG_URL
	aq-enqueue -q lq --id par '{}' >/dev/null
	run aq-enqueue -q lq --id kid --after par '{"k":1}'
	assert_output '{"id":"kid","queue":"lq","status":"blocked"}'
	assert_equal "$(psql_aq "SELECT status FROM aq.jobs WHERE id = 'kid'")" blocked
	run aq-enqueue -q lq --id orphan --after nosuch '{}'
	assert_failure 65
	assert_equal "$(psql_aq "SELECT count(*) FROM aq.jobs WHERE id = 'orphan'")" 0
	aq-sweep -q lq >/dev/null
	assert_equal "$(psql_aq "SELECT id, status FROM aq.jobs ORDER BY id")" $'kid|blocked\npar|queued'
	rcli flushall >/dev/null
	run aq-sweep -q lq
	assert_success
	assert_line '{"queue":"lq","action":"restored","id":"kid","status":"cancelled"}'
	assert_line '{"queue":"lq","action":"restored","id":"par","status":"queued"}'
	assert_equal "$(field lq kid '[.status, .error]')" \
	    '["cancelled","redis lost this job while it waited for its parents (--after); enqueue it again"]'
	pg_stop
}
