#!/usr/bin/env bats
# worker.bats: aq-worker runs real handlers against a private redis-server:
# results and events, environment, exit codes, retries with backoff,
# timeouts, process groups, concurrency, shutdown, order, delays, leases,
# and a Redis restart under a running worker.

load helpers

HANDLERS=$(cd "$BATS_TEST_DIRNAME/handlers" && pwd)

setup_file() { redis_start; }
teardown_file() { redis_stop; }
setup() {
	cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null
	export RECORD=$BATS_TEST_TMPDIR/record PIDS=$BATS_TEST_TMPDIR/pids
	: >"$RECORD"
}
teardown() {
	show_logs_on_failure
	# whatever happened, no worker or handler of this test lives on
	local pid
	for pid in $(cat "$BATS_TEST_TMPDIR"/worker.*.pid 2>/dev/null); do
		kill -CONT "$pid" 2>/dev/null
		kill -KILL "$pid" 2>/dev/null
	done
	return 0
}


field() { # field QUEUE ID JQ-FILTER
	aq-status -q "$1" "$2" | jq -c "$3"
}

@test "a job's result is the handler's last stdout line; every line is an event" {
	aq-enqueue -q q --id j1 '{"n":1}' >/dev/null
	run aq-worker -q q --burst -- sh -c 'read p; echo "{\"step\":1}"; echo not json; echo "{\"done\":$p}"'
	assert_success
	assert_equal "$(field q j1 '[.status, .result, .exit_code, .attempt]')" '["succeeded",{"done":{"n":1}},0,1]'
	run rcli xrange 'aq:{q}:events:j1' - +
	assert_output --partial '{"step":1}'
	assert_output --partial '"not json"'
	assert_output --partial '{"done":{"n":1}}'
	assert_equal "$(rcli xlen 'aq:{q}:events:j1')" 3
}

@test "a handler that prints nothing succeeds with a null result; a non-JSON last line is a string" {
	aq-enqueue -q q --id quiet '{}' >/dev/null
	aq-worker -q q --burst -- true
	assert_equal "$(field q quiet .result)" null
	aq-enqueue -q q --id text '{}' >/dev/null
	aq-worker -q q --burst -- echo 'hello world'
	assert_equal "$(field q text .result)" '"hello world"'
}

@test "the handler gets the payload on stdin and AQ_* in its environment" {
	aq-enqueue -q envq --id e1 --max-attempts 4 '{"x":[1,"two"]}' >/dev/null
	run aq-worker -q envq --worker-id w-env --burst -- "$HANDLERS/env"
	assert_success
	assert_equal "$(field envq e1 .result)" \
	    '{"id":"e1","queue":"envq","attempt":"1","max_attempts":"4","worker":"w-env","payload":{"x":[1,"two"]}}'
}

@test "a payload is delivered byte for byte and never reaches a shell" {
	p='{"cmd":"$(touch pwned); rm -rf /","q":"`touch pwned2`","s":"a\"b\\c"}'
	aq-enqueue -q q --id bytes "$p" >/dev/null
	aq-worker -q q --burst -- sh -c 'cat > got'
	assert_equal "$(cat got)" "$p"
	[ ! -e pwned ] && [ ! -e pwned2 ]
}

@test "exit 0 succeeds, 65 fails at once, 75 and other codes retry, a signal retries" {
	aq-enqueue -q ex --id ok '0' >/dev/null
	aq-enqueue -q ex --id perm '65' >/dev/null
	aq-enqueue -q ex --id temp --max-attempts 2 '75' >/dev/null
	aq-enqueue -q ex --id other --max-attempts 2 '3' >/dev/null
	aq-enqueue -q ex --id sig --max-attempts 2 '"KILL"' >/dev/null
	run aq-worker -q ex --backoff 100ms --max-jobs 8 -- "$HANDLERS/exit"
	assert_success
	assert_equal "$(field ex ok '[.status,.attempt]')" '["succeeded",1]'
	assert_equal "$(field ex perm '[.status,.attempt,.exit_code]')" '["failed",1,65]'
	assert_equal "$(field ex temp '[.status,.attempt,.exit_code]')" '["failed",2,75]'
	assert_equal "$(field ex other '[.status,.attempt,.exit_code]')" '["failed",2,3]'
	assert_equal "$(field ex sig '[.status,.attempt]')" '["failed",2]'
	assert_equal "$(field ex sig .error)" '"killed by signal 9 (Killed)\nto stderr: \"KILL\""'
	assert_equal "$(rcli hget 'aq:{ex}:stats' retried)" 3
	assert_equal "$(rcli hget 'aq:{ex}:stats' failed)" 4
	assert_equal "$(rcli hget 'aq:{ex}:stats' succeeded)" 1
}

@test "stderr goes to the worker's stderr prefixed by the job id, and its tail is the error" {
	aq-enqueue -q q --id loud --max-attempts 1 '7' >/dev/null
	run aq-worker -q q --burst -- "$HANDLERS/exit"
	assert_output --partial 'loud: to stderr: 7'
	assert_equal "$(field q loud .error)" '"exited with status 7\nto stderr: 7"'
	run rcli xrange 'aq:{q}:events:loud' - +
	assert_output --partial stderr
}

@test "retries back off exponentially, with jitter, by the delays recorded" {
	aq-enqueue -q bo --id b '{"exit":75}' --max-attempts 4 >/dev/null
	run aq-worker -q bo --backoff 300ms --max-jobs 4 -- "$HANDLERS/record"
	assert_success
	mapfile -t starts < <(awk '{print $3}' "$RECORD")
	assert_equal "${#starts[@]}" 4
	# delays 300, 600, 1200 ms, each within +-25% (plus the handler's own time)
	for i in 1 2 3; do
		gap=$(( (starts[i] - starts[i-1]) / 1000000 ))
		want=$(( 300 * (1 << (i - 1)) ))
		echo "gap $i: $gap ms, want about $want" >&2
		(( gap >= want * 3 / 4 && gap <= want * 5 / 4 + 400 ))
	done
}

@test "a timeout stops a handler that ignores SIGTERM with SIGKILL after the grace, grandchildren too" {
	aq-enqueue -q to --id slow --timeout 500ms --max-attempts 1 '{}' >/dev/null
	run aq-worker -q to --grace 300ms --burst -- "$HANDLERS/stubborn"
	assert_success
	assert_equal "$(field to slow '[.status, .error]')" '["failed","timed out after 500 ms\nkilled by signal 9 (Killed)"]' ||
	    assert_equal "$(field to slow .status)" '"failed"'
	read -r handler grandchild <"$PIDS"
	wait_for 20 eval "! kill -0 $handler 2>/dev/null"
	wait_for 20 eval "! kill -0 $grandchild 2>/dev/null"
}

@test "the worker's --timeout applies to jobs without their own" {
	aq-enqueue -q to2 --id j --max-attempts 1 '{"sleep":30}' >/dev/null
	run aq-worker -q to2 --timeout 300ms --grace 200ms --burst -- "$HANDLERS/record"
	assert_success
	assert_output --partial 'timed out after 300 ms'
	assert_equal "$(field to2 j .status)" '"failed"'
}

@test "-c 4 runs four handlers at once: their run times overlap" {
	for i in 1 2 3 4; do aq-enqueue -q par --id "p$i" '{"sleep":1}' >/dev/null; done
	run aq-worker -q par -c 4 --burst -- "$HANDLERS/record"
	assert_success
	assert_equal "$(wc -l <"$RECORD")" 4
	latest_start=$(awk '{print $3}' "$RECORD" | sort -n | tail -1)
	earliest_end=$(awk '{print $4}' "$RECORD" | sort -n | head -1)
	(( latest_start < earliest_end ))
}

@test "jobs run by priority, then in the order they were enqueued" {
	aq-enqueue -q ord --id low --priority -1 '{}' >/dev/null
	aq-enqueue -q ord --id a '{}' >/dev/null
	aq-enqueue -q ord --id urgent --priority 5 '{}' >/dev/null
	aq-enqueue -q ord --id b '{}' >/dev/null
	aq-enqueue -q ord --id c '{}' >/dev/null
	run aq-worker -q ord --burst -- "$HANDLERS/record"
	assert_success
	assert_equal "$(awk '{print $1}' "$RECORD" | paste -sd' ')" "urgent a b c low"
}

@test "a delayed job does not run early and runs promptly when due, without a sweeper" {
	start_worker w -q dl -- "$HANDLERS/record"
	wait_for 50 redis_is 1 zcard 'aq:{dl}:workers'
	aq-enqueue -q dl --id later --delay 1500ms '{}' >/dev/null
	due=$(rcli hget 'aq:{dl}:job:later' run_at)
	wait_for 50 test -s "$RECORD"
	started_ms=$(( $(awk '{print $3}' "$RECORD") / 1000000 ))
	echo "due $due started $started_ms" >&2
	(( started_ms >= due ))
	(( started_ms <= due + 500 ))
	stop_worker w
}

@test "an idle worker starts a new job at once" {
	start_worker w -q idle -- "$HANDLERS/record"
	wait_for 50 redis_is 1 zcard 'aq:{idle}:workers'
	aq-enqueue -q idle --id now '{}' >/dev/null
	created=$(rcli hget 'aq:{idle}:job:now' created)
	wait_for 50 test -s "$RECORD"
	started_ms=$(( $(awk '{print $3}' "$RECORD") / 1000000 ))
	(( started_ms - created < 500 ))
	stop_worker w
}

@test "SIGTERM mid-job: the job finishes and succeeds, the worker exits 0" {
	aq-enqueue -q term --id long '{"sleep":1}' >/dev/null
	start_worker w -q term -- "$HANDLERS/record"
	wait_for 50 job_is term long running
	stop_worker w
	assert_equal "$(cat worker.w.rc)" 0
	assert_equal "$(field term long .status)" '"succeeded"'
	assert_equal "$(rcli zcard 'aq:{term}:workers')" 0
}

@test "SIGTERM past the grace period: the handler is stopped and the job goes back on the queue" {
	aq-enqueue -q term2 --id long '{"sleep":60}' >/dev/null
	start_worker w -q term2 --grace 300ms -- "$HANDLERS/record"
	wait_for 50 job_is term2 long running
	stop_worker w
	assert_equal "$(cat worker.w.rc)" 0
	assert_equal "$(field term2 long '[.status, .attempt]')" '["queued",0]'
	assert_equal "$(rcli zcard 'aq:{term2}:wait')" 1
}

@test "a second SIGTERM stops at once: exit 75 and the job goes back on the queue" {
	aq-enqueue -q term3 --id long '{"sleep":60}' >/dev/null
	start_worker w -q term3 -- "$HANDLERS/record"
	wait_for 50 job_is term3 long running
	pid=$(worker_pid w)
	kill -TERM "$pid"
	wait_for 20 grep -q 'no new jobs' worker.w.err
	kill -TERM "$pid"
	wait_for 50 eval "! kill -0 $pid"
	run wait "$pid"
	assert_equal "$status" 75
	assert_equal "$(field term3 long .status)" '"queued"'
}

@test "SIGKILL of the worker leaves no handler or grandchild running" {
	aq-enqueue -q kill --id k '{}' >/dev/null
	start_worker w -q kill -- "$HANDLERS/stubborn"
	wait_for 50 test -s "$PIDS"
	read -r handler grandchild <"$PIDS"
	kill -KILL "$(worker_pid w)"
	wait_for 30 eval "! ps -o stat= -p $handler | grep -qv Z"
	wait_for 30 eval "! ps -o stat= -p $grandchild | grep -qv Z"
}

@test "a stopped worker's job is taken over after its lease; its own handler was killed; one outcome" {
	aq-enqueue -q lease --id j '{"sleep":3}' >/dev/null
	start_worker A -q lease --lease 1s --worker-id A -- "$HANDLERS/record"
	wait_for 50 job_is lease j running
	kill -STOP "$(worker_pid A)"
	start_worker B -q lease --lease 1s --worker-id B -- "$HANDLERS/record"
	wait_for 100 grep -q ' B$' "$RECORD"
	kill -CONT "$(worker_pid A)"
	wait_for 50 grep -q 'lease' worker.A.err
	stop_worker A
	stop_worker B
	assert_equal "$(field lease j '[.status, .worker, .attempt]')" '["succeeded","B",2]'
	# A's handler never finished: its worker's keeper killed it at the lease
	assert_equal "$(awk '{print $5}' "$RECORD" | paste -sd' ')" "B"
	assert_equal "$(rcli hget 'aq:{lease}:stats' recovered)" 1
}

@test "Redis stopped and restarted under a running worker: the job completes, its output kept" {
	redis_kill
	redis_run --appendonly yes --appendfsync always
	aq-enqueue -q rs --id j '{"sleep":2}' >/dev/null
	start_worker w -q rs -- "$HANDLERS/record"
	wait_for 50 job_is rs j running
	redis_kill
	wait_for 50 grep -q 'lost the' worker.w.err
	wait_for 50 test -s "$RECORD" # the handler ran on without Redis
	redis_run --appendonly yes --appendfsync always
	# the worker retries with a backoff of up to 5 s (aq-worker(1)), then
	# reports: a bound well past that, for slow (sanitized, loaded) machines;
	# on failure, what the worker said and what Redis holds
	wait_for 300 job_is rs j succeeded ||
	    { cat worker.w.err; rcli hgetall 'aq:{rs}:job:j'; false; }
	stop_worker w
	assert_equal "$(cat worker.w.rc)" 0
	run cat worker.w.err
	assert_output --partial 'is back'
	assert_output --partial 'still holding the leases of 1 job; 0 lost'
	# what the handler wrote during the outage was kept and recorded
	assert_equal "$(rcli xlen 'aq:{rs}:events:j')" 1
	assert_equal "$(field rs j .result)" '{"sleep":2}'
	redis_kill
	rm -f "$REDIS_DIR"/appendonlydir/* && redis_run
}

@test "--max-jobs stops after that many jobs; --burst when the queue is empty" {
	for i in 1 2 3; do aq-enqueue -q mj --id "m$i" '{}' >/dev/null; done
	run aq-worker -q mj --max-jobs 2 -- "$HANDLERS/record"
	assert_success
	assert_equal "$(wc -l <"$RECORD")" 2
	run aq-worker -q mj --burst -- "$HANDLERS/record"
	assert_success
	assert_equal "$(wc -l <"$RECORD")" 3
}

@test "the worker registers itself while it runs and unregisters on exit" {
	start_worker w -q reg --worker-id reg-1 -- "$HANDLERS/record"
	wait_for 50 redis_is 1 zcard 'aq:{reg}:workers'
	assert_equal "$(rcli hget 'aq:{reg}:worker:reg-1' pid)" "$(worker_pid w)"
	stop_worker w
	assert_equal "$(rcli zcard 'aq:{reg}:workers')" 0
	assert_equal "$(rcli exists 'aq:{reg}:worker:reg-1')" 0
}

@test "a command that cannot be run is refused before anything is claimed" {
	aq-enqueue -q bad '{}' >/dev/null
	run aq-worker -q bad -- ./no-such-handler
	assert_failure 64
	assert_output --partial 'aq-worker: cannot run ./no-such-handler: No such file or directory'
	run aq-worker -q bad -- /etc/passwd
	assert_failure 64
	assert_output --partial 'Permission denied'
	run aq-worker -q bad
	assert_failure 64
	assert_output --partial 'no command'
	assert_equal "$(rcli zcard 'aq:{bad}:wait')" 1
}

@test "a command that can no longer be run once the worker runs fails each attempt once, retried with backoff, and the worker goes on" {
	cp /bin/sh interp
	printf '#!%s\necho hi\n' "$PWD/interp" >h
	chmod +x h
	start_worker w -q gone -c 2 --backoff 50ms -- ./h
	wait_for 100 grep -q 'running ./h' worker.w.err
	rm interp
	seq 3 | jq -c '{n: .}' | aq-enqueue -q gone --max-attempts 2 >enq
	for id in $(jq -r .id enq); do wait_for 100 job_is gone "$id" failed; done
	stop_worker w
	assert_equal "$(cat worker.w.rc)" 0
	# two attempts each, said once each: no spin over the same job
	assert_equal "$(grep -c 'cannot run ./h' worker.w.err)" 6
	assert_equal "$(aq-status -q gone <enq | jq -r '[.attempt, .error] | @tsv' | sort -u)" \
	    "$(printf '2\tcannot run ./h: No such file or directory')"
}

@test "bad options are usage errors; Redis unreachable is exit 69" {
	run aq-worker -c 0 -- true
	assert_failure 64
	run aq-worker --lease 10ms -- true
	assert_failure 64
	run aq-worker --worker-id 'a b' -- true
	assert_failure 64
	run aq-worker -u "unix://$REDIS_DIR/none.sock" -- true
	assert_failure 69
	assert_output --partial 'cannot connect to redis'
	run aq-worker -h
	assert_success
	assert_output --partial 'usage: aq-worker'
}

@test "options after the command belong to the command" {
	aq-enqueue -q opt --id o '{}' >/dev/null
	aq-worker -q opt --burst -- echo -q --burst
	assert_equal "$(field opt o .result)" '"-q --burst"'
}

@test "binary garbage from a handler is recorded safely" {
	aq-enqueue -q junk --id g '{}' >/dev/null
	run aq-worker -q junk --burst -- sh -c 'head -c 3000 /dev/urandom; printf "\n\377\376\n"'
	assert_success
	assert_equal "$(field junk g .status)" '"succeeded"'
	aq-status -q junk g | jq -e .result >/dev/null
}

@test "cancel a running job: its handler gets SIGTERM within a second, the job ends cancelled" {
	aq-enqueue -q cx --id run '{"sleep":60}' >/dev/null
	start_worker w -q cx -- "$HANDLERS/record"
	wait_for 50 job_is cx run running
	run aq-cancel -q cx run
	assert_success
	assert_output --partial '"status":"cancelling"'
	wait_for 10 job_is cx run cancelled
	assert_equal "$(rcli hget 'aq:{cx}:stats' cancelled)" 1
	run cat worker.w.err
	assert_output --partial 'job run: cancelled; stopping its handler'
	stop_worker w
}

@test "cancel a queued job: it never runs" {
	aq-enqueue -q cq --id never '{}' >/dev/null
	aq-enqueue -q cq --id runs '{}' >/dev/null
	aq-cancel -q cq never >/dev/null
	run aq-worker -q cq --burst -- "$HANDLERS/record"
	assert_success
	assert_equal "$(awk '{print $1}' "$RECORD" | paste -sd' ')" runs
	assert_equal "$(field cq never .status)" '"cancelled"'
}

@test "a cancel notice missed by the worker is caught by its lease renewal" {
	aq-enqueue -q cm --id run '{"sleep":60}' >/dev/null
	start_worker w -q cm --lease 1500ms -- "$HANDLERS/record"
	wait_for 50 job_is cm run running
	# what aq-cancel does, without the pub/sub notice
	rcli hset 'aq:{cm}:job:run' cancel 1 >/dev/null
	wait_for 30 job_is cm run cancelled
	stop_worker w
}

@test "a daemon left behind by a handler does not hold its job open" {
	aq-enqueue -q daemon --id d '{}' >/dev/null
	run timeout 20 aq-worker -q daemon --burst -- sh -c \
	    'setsid sh -c "echo \$\$ >daemon.pid; exec sleep 30" & while [ ! -s daemon.pid ]; do sleep 0.05; done; echo "{\"ok\":1}"'
	kill "$(cat daemon.pid)"
	assert_success
	assert_output --partial 'still holds its output open'
	assert_equal "$(field daemon d '[.status, .result]')" '["succeeded",{"ok":1}]'
}

@test "a timed-out handler is retried even if it exits 65 on SIGTERM; old errors do not linger" {
	aq-enqueue -q t65 --id t --timeout 300ms --max-attempts 2 '{}' >/dev/null
	run aq-worker -q t65 --backoff 100ms --max-jobs 2 -- sh -c 'trap "exit 65" TERM; read p; if [ "$AQ_ATTEMPT" = 1 ]; then sleep 30 & wait; fi; echo fine'
	assert_success
	assert_equal "$(field t65 t '[.status, .attempt, .result, .error, .exit_code]')" '["succeeded",2,"fine",null,0]'
}

@test "a renewal says done, not lost, of a job whose outcome Redis applied: a report answered by a Redis that then died is not a lost lease" {
	# the race G5 G1 met: Redis applied a work call's report, then stopped
	# before its answer reached the worker; the renewal after the outage
	# still carries that report's lease
	lua=$(cat "$BATS_TEST_DIRNAME/../common/lua/lib.lua" "$BATS_TEST_DIRNAME/../common/lua/renew.lua")
	rcli hset 'aq:{rn}:job:held' status running lease 3 >/dev/null
	rcli hset 'aq:{rn}:job:reported' status succeeded lease 2 done 2 >/dev/null
	rcli hset 'aq:{rn}:job:taken' status running lease 5 done 3 >/dev/null
	k='aq:{rn}:'
	run rcli eval "$lua" 10 "${k}wait" "${k}delayed" "${k}active" "${k}stats" "${k}log" \
	    "${k}seq" "${k}wake" "${k}done" "${k}workers" "${k}worker:w" \
	    "$k" w 30000 40000 host 1 rn 0 0 1000 held 3 reported 2 taken 4
	assert_success
	assert_equal "$(head -3 <<<"$output" | xargs)" "ok done lost"
}
