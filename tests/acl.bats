#!/usr/bin/env bats
# acl.bats: the Redis ACL users of aq(7) ACCESS CONTROL, as the page gives
# them, hold what each role needs and no more: every tool of a role runs with
# only its user's rights (Redis denies nothing, ACL LOG stays empty), and a
# role is refused what is not its own. And a password is never in argv, ps
# or a message.

load helpers

ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
HANDLERS=$(cd "$BATS_TEST_DIRNAME/handlers" && pwd)

setup_file() { redis_start; }
teardown_file() { redis_stop; }
setup() {
	cd "$BATS_TEST_TMPDIR"
	rcli flushall >/dev/null
	load_users
	rcli acl log reset >/dev/null
}

# load_users: the users, as aq(7) writes them, each with its own password
load_users() {
	local rule user
	mandoc -Tutf8 "$ROOT/man/aq.7" | col -bx | sed -n 's/^ *\(ACL SETUSER .*\)$/\1/p' >acl.rules
	[ "$(wc -l <acl.rules)" = 4 ]
	while read -r rule; do
		user=$(awk '{ print $3 }' <<<"$rule")
		# shellcheck disable=SC2086
		rcli ${rule//PASSWORD/pw-$user} >/dev/null
	done <acl.rules
}
teardown() {
	show_logs_on_failure
	local pid
	for pid in $(cat "$BATS_TEST_TMPDIR"/*.pid 2>/dev/null); do
		kill -KILL "$pid" 2>/dev/null
	done
	return 0
}

as() { # as USER CMD...: run CMD with USER's URL in the environment
	local user=$1
	shift
	AQ_REDIS_URL="unix://$user:pw-$user@$REDIS_SOCK" "$@"
}

denied() { rcli acl log 50 | grep -A1 '^object$' | grep -v '^object$\|^--$' | sort -u; }

@test "the enqueuer enqueues, waits, looks up, cancels and publishes; the worker runs, renews, streams, retries and hears cancels; Redis denies them nothing" {
	as aq-enqueuer aq-enqueue -q r --id a '{"n":1}' >/dev/null
	seq 3 | jq -c '{n: .}' | as aq-enqueuer aq-enqueue -q r >/dev/null
	as aq-enqueuer aq-enqueue -q r --id a '{"n":1}' | grep -q '"duplicate":true'
	as aq-enqueuer aq-enqueue -q r --id later --delay 1h '{}' >/dev/null
	as aq-enqueuer aq-enqueue -q r --id flaky --max-attempts 2 '{"exit":75}' >/dev/null
	as aq-enqueuer aq-cancel -q r later | grep -q '"status":"cancelled"'
	as aq-worker aq-worker -q r --lease 1s --backoff 10ms --burst -- "$HANDLERS/record" 2>err
	as aq-enqueuer aq-status -q r a | grep -q '"status":"succeeded"'
	# its first attempt failed and waits for its retry
	assert_equal "$(as aq-enqueuer aq-status -q r flaky | jq -c '[.status, .attempt]')" '["delayed",1]'
	# a running job cancelled; line mode; a renewal or two (1 s lease)
	as aq-enqueuer aq-enqueue -q r --id long '{"sleep":30}' >/dev/null
	start_bg w env AQ_REDIS_URL="unix://aq-worker:pw-aq-worker@$REDIS_SOCK" \
	    aq-worker -q r --lease 1s -- "$HANDLERS/record"
	wait_for 100 job_is r long running
	sleep 1.5 # renewals happen; nothing to wait for
	as aq-enqueuer aq-cancel -q r long | grep -q cancelling
	wait_for 100 job_is r long cancelled
	kill -TERM "$(cat w.pid)"
	seq 3 | jq -c '{n: .}' | as aq-enqueuer aq-enqueue -q l --wait --wait-timeout 60s >waited &
	enq=$!
	wait_for 100 redis_is 3 zcard 'aq:{l}:wait'
	as aq-worker aq-worker -q l --lines --burst -- cat 2>/dev/null
	wait "$enq"
	assert_equal "$(jq -r .status waited | sort | uniq -c | xargs)" "3 succeeded"
	as aq-enqueuer aq-publish --job a -q r <<<'{"note":1}'
	as aq-enqueuer aq-publish news <<<'{"x":1}'
	assert_equal "$(denied)" ""
}

@test "the sweeper recovers, promotes, fails the stale, forgets the dead and trims; Redis denies it nothing" {
	aq-enqueue -q s --id old '{}' >/dev/null
	aq-enqueue -q s --id due --delay 1ms '{}' >/dev/null
	aq-enqueue -q s --id gone '{}' >/dev/null
	rcli hset 'aq:{s}:job:gone' status running lease 1 attempt 1 worker dead >/dev/null
	rcli zrem 'aq:{s}:wait' gone >/dev/null
	rcli zadd 'aq:{s}:active' 1 gone >/dev/null
	rcli zadd 'aq:{s}:workers' 1 dead >/dev/null
	run as aq-sweeper aq-sweep --max-wait 1ms --retention 0
	assert_success
	assert_output --partial '"action":"recovered"'
	assert_output --partial '"action":"worker_removed"'
	assert_output --partial '"action":"failed_stale"'
	assert_output --partial '"action":"trimmed"'
	assert_equal "$(denied)" ""
}

@test "the sweeper administers queues: aq-retry, aq-queue, aq-status --state failed; Redis denies it nothing" {
	aq-enqueue -q a --id f1 --max-attempts 1 '{}' >/dev/null
	aq-enqueue -q a --id f2 --max-attempts 1 '{}' >/dev/null
	aq-worker -q a --burst -- false 2>/dev/null
	assert_equal "$(as aq-sweeper aq-status -q a --state failed | jq -r .id | sort | paste -sd' ')" 'f1 f2'
	as aq-sweeper aq-retry -q a f1 | grep -q '"status":"queued"'
	as aq-sweeper aq-retry -q a --delete --all | grep -q '"status":"deleted"'
	as aq-sweeper aq-queue pause -q a | grep -q '"paused":true'
	# a worker of the paused queue claims nothing, and ends (--burst)
	as aq-worker aq-worker -q a --burst -- cat 2>/dev/null
	as aq-sweeper aq-queue show -q a | grep -q '"waiting":1'
	as aq-sweeper aq-queue resume -q a >/dev/null
	as aq-sweeper aq-queue purge -q a --yes | grep -q '"status":"cancelled"'
	assert_equal "$(denied)" ""
}

@test "flow control: the sweeper sets limits, the worker claims under them and holds the queue (exit 69), the monitor sees it; Redis denies nothing" {
	as aq-sweeper aq-queue limit -q fc --rate 2/1s --concurrency 1 | grep -q '"limits":'
	seq 3 | aq-enqueue -q fc >/dev/null
	aq-enqueue -q fc --id held '{}' >/dev/null
	as aq-worker aq-worker -q fc -c 2 --burst -- sh -c 'cat >/dev/null; [ "$AQ_JOB_ID" != held ] || ! mkdir once 2>/dev/null || { echo "{\"retry_after\":0.2}"; exit 69; }' 2>/dev/null
	assert_equal "$(rcli hget 'aq:{fc}:stats' succeeded)" 4
	assert_equal "$(rcli xrange 'aq:{fc}:log' - + | grep -c -x throttled)" 1
	as aq-monitor aq-health -q fc 2>/dev/null | jq -e '.queues[0].limits.rate == 2' >/dev/null
	as aq-monitor aq-health -q fc --prometheus | grep -q '^aq_queue_throttled_seconds'
	rcli set 'aq:{fc}:throttled' 1 PX 60000 >/dev/null
	as aq-sweeper aq-queue show -q fc | grep -q '"throttled_s":'
	as aq-sweeper aq-queue resume -q fc >/dev/null
	as aq-sweeper aq-queue limit -q fc --clear >/dev/null
	assert_equal "$(denied)" ""
}

@test "the monitor reads health, records and events, and may write nothing" {
	aq-enqueue -q m --id j '{}' >/dev/null
	aq-worker -q m --burst -- sh -c 'read p; echo hi' 2>/dev/null
	as aq-monitor aq-health --workers >/dev/null
	as aq-monitor aq-health --prometheus >/dev/null
	as aq-monitor aq-status -q m j | grep -q succeeded
	as aq-monitor aq-status -q m --state failed >/dev/null
	as aq-monitor aq-subscribe -q m --job j | grep -q '"type":"end"'
	as aq-monitor aq-subscribe -q m --queue-log --after 0-0 --count 1 >/dev/null
	start_bg sub env AQ_REDIS_URL="unix://aq-monitor:pw-aq-monitor@$REDIS_SOCK" \
	    aq-subscribe news --count 1 --timeout 30s
	wait_for 100 eval "[ \"\$(rcli pubsub numsub aq:chan:news | tail -1)\" = 1 ]"
	aq-publish news <<<'{"x":1}'
	wait_for 100 grep -q '"x":1' sub.out
	assert_equal "$(denied)" ""
	# but it cannot write
	run as aq-monitor aq-enqueue -q m '{}'
	assert_failure
	assert_output --partial 'NOPERM'
	run as aq-monitor aq-cancel -q m j
	assert_failure
	run as aq-worker aq-enqueue -q m '{}'
	assert_failure
	run as aq-enqueuer aq-sweep
	assert_failure
}

@test "a password is never in argv, ps or a message: the URL comes from the environment or a file, and messages show ***" {
	echo "unix://aq-worker:s3cret-w@$REDIS_SOCK" >url
	rcli acl setuser aq-worker '>s3cret-w' >/dev/null
	start_bg w aq-worker -q p --redis-url-file url -- cat
	wait_for 100 redis_is 1 zcard 'aq:{p}:workers'
	refute grep -q s3cret "/proc/$(cat w.pid)/cmdline"
	refute bash -c "ps -eo args | grep -v grep | grep -q s3cret"
	# messages: a wrong password, and a lost connection
	run aq-enqueue -q p -u "unix://aq-enqueuer:wrong-s3cret@$REDIS_SOCK" '{}'
	assert_failure 77
	refute_output --partial s3cret
	assert_output --partial '***'
	redis_kill
	wait_for 100 grep -q 'lost the' w.err
	redis_run
	load_users # a server without persistence forgets its users
	rcli acl setuser aq-worker '>s3cret-w' >/dev/null
	wait_for 100 grep -q 'is back' w.err
	refute grep -q s3cret w.err
	grep -q 'aq-worker:\*\*\*@' w.err
}

# noperms: how many NOPERM errors Redis has replied (INFO errorstats).
noperms() {
	rcli info errorstats | tr -d '\r' | sed -n 's/^errorstat_NOPERM:count=//p' | grep . || echo 0
}

@test "--replicas with a user that lacks +wait: refused at start (exit 77, naming +wait); taken away under a running worker, its claims go back unstarted and the refusal is said once, not at each claim" {
	rcli acl setuser aq-worker -wait >/dev/null
	as aq-enqueuer aq-enqueue -q nw --id j '{}' >/dev/null
	run as aq-worker aq-worker -q nw --replicas 1 -- cat
	assert_failure 77
	assert_output --partial "aq-worker: --replicas: redis at unix://aq-worker:***@$REDIS_SOCK refused WAIT: NOPERM"
	assert_output --partial 'the user needs +wait'
	assert_equal "$(aq-status -q nw j | jq -c '[.status, .attempt]')" '["queued",0]'
	# allowed at start (no replica: each claim waits, then goes back)...
	rcli acl setuser aq-worker +wait >/dev/null
	start_bg w env AQ_REDIS_URL="unix://aq-worker:pw-aq-worker@$REDIS_SOCK" \
	    aq-worker -q nw --replicas 1 -- cat
	wait_for 100 grep -q 'claimed but not on 1 replica' w.err
	# ... then taken away
	before=$(noperms)
	rcli acl setuser aq-worker -wait >/dev/null
	wait_for 300 eval '[ "$(noperms)" -ge $((before + 20)) ]'
	kill -TERM "$(pid_of w)"
	finish w
	assert_equal "$(rc_of w)" 0
	assert_equal "$(grep -c 'redis refused WAIT: NOPERM' w.err)" 1
	assert_equal "$(grep -c 'claimed but not on 1 replica' w.err)" 1
	assert_equal "$(aq-status -q nw j | jq -c '[.status, .attempt]')" '["queued",0]'
}
