#!/usr/bin/env bats
# health.bats: aq-health against a private redis-server: each field of its
# report against a state built here (waiting, delayed, running, counters,
# cancelled, recovered, the oldest waiting age across priorities, live and
# dead workers), every threshold and its exit code, Redis down, -q,
# --workers, the Prometheus format (checked by promtool when installed) and
# its label escaping, and the textfile units of examples/systemd.

load helpers

ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
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
	# whatever happened, no worker of this test lives on, and the server
	# is up for the next test
	local pid
	for pid in $(cat "$BATS_TEST_TMPDIR"/worker.*.pid 2>/dev/null); do
		kill -CONT "$pid" 2>/dev/null
		kill -KILL "$pid" 2>/dev/null
	done
	rcli ping >/dev/null 2>&1 || redis_run
	return 0
}


# now_ms: the clock of the Redis server, in epoch milliseconds.
now_ms() {
	rcli time | { read -r s && read -r us && echo $((s * 1000 + us / 1000)); }
}

# hc ARGS...: run aq-health ARGS; its stdout goes to $out, its stderr to
# $err, its exit status to $rc.
hc() {
	rc=0
	aq-health "$@" >"$BATS_TEST_TMPDIR/hc.out" 2>"$BATS_TEST_TMPDIR/hc.err" || rc=$?
	out=$(cat "$BATS_TEST_TMPDIR/hc.out")
	err=$(cat "$BATS_TEST_TMPDIR/hc.err")
}

# q QUEUE JQ-FILTER: FILTER applied to the object of QUEUE in $out.
q() {
	jq -c --arg q "$1" ".queues[] | select(.queue == \$q) | $2" <<<"$out"
}

# live_workers QUEUE N: aq-health counts N live workers in QUEUE.
live_workers() {
	[ "$(aq-health -q "$1" 2>/dev/null | jq '.queues[0].workers')" = "$2" ]
}

# prom_check FILE: FILE passes promtool check metrics, silently; true when
# promtool is not installed.
prom_check() {
	local said
	command -v promtool >/dev/null || return 0
	said=$(promtool check metrics <"$1" 2>&1) && [ -z "$said" ] && return 0
	echo "promtool check metrics: $said" >&2
	return 1
}

@test "an empty Redis: OK, Redis reachable with its version and memory, postgres null, no queues" {
	hc
	assert_equal "$rc" 0
	assert_equal "$(wc -l <hc.out)" 1
	assert_equal "$(jq -c '[.status, .redis.url, .redis.reachable, .postgres, .queues, .alerts]' <<<"$out")" \
	    "[\"OK\",\"$AQ_REDIS_URL\",true,null,[],[]]"
	assert_equal "$(jq -r .redis.version <<<"$out")" "$(rcli info server | sed -n 's/^redis_version:\([^\r]*\).*/\1/p')"
	jq -e '.redis.used_memory > 100000 and (.redis.used_memory | floor) == .redis.used_memory' <<<"$out"
	jq -e '.redis.latency_ms >= 0 and .redis.latency_ms < 1000' <<<"$out"
	jq -e 'has("workers") | not' <<<"$out"
	assert_equal "$err" 'aq-health: OK: 0 queues, 0 live workers'
}

@test "waiting and delayed jobs and the enqueued counter; no waiting job: oldest_waiting_s is null" {
	for i in 1 2 3 4 5; do aq-enqueue -q mail "{\"n\":$i}" >/dev/null; done
	aq-enqueue -q mail --delay 1h 1 2 3 >/dev/null
	aq-enqueue -q later --run-at "$(( $(date +%s) + 3600 ))" '"x"' >/dev/null
	hc
	assert_equal "$rc" 0
	assert_equal "$(q mail '[.waiting, .delayed, .active, .workers, .enqueued]')" '[5,3,0,0,8]'
	assert_equal "$(q later '[.waiting, .delayed, .oldest_waiting_s, .enqueued]')" '[0,1,null,1]'
	assert_equal "$(q mail '[.succeeded, .failed, .retried, .recovered, .cancelled]')" '[0,0,0,0,0]'
	q mail '.oldest_waiting_s' | jq -e '. >= 0 and . < 60'
	assert_equal "$(jq '.queues | length' <<<"$out")" 2
	assert_equal "$err" 'aq-health: OK: 2 queues, 0 live workers'
}

@test "a job a worker is running is active, and the worker is live" {
	aq-enqueue -q run --id long '{"sleep":60}' >/dev/null
	aq-enqueue -q run --id next '{}' >/dev/null
	# --prefetch 0: the next job is not claimed ahead, so it still waits
	start_worker w -q run --prefetch 0 -- "$HANDLERS/record"
	wait_for 50 job_is run long running
	hc -q run
	assert_equal "$rc" 0
	assert_equal "$(q run '[.waiting, .delayed, .active, .workers]')" '[1,0,1,1]'
	assert_equal "$err" 'aq-health: OK: 1 queue, 1 live worker'
}

@test "a job claimed ahead by a worker (--prefetch) is active too, under its lease" {
	aq-enqueue -q ahead --id long '{"sleep":60}' >/dev/null
	aq-enqueue -q ahead --id next '{}' >/dev/null
	start_worker w -q ahead --prefetch 1 -- "$HANDLERS/record"
	wait_for 50 job_is ahead long running
	wait_for 50 job_is ahead next running
	hc -q ahead
	assert_equal "$(q ahead '[.waiting, .delayed, .active, .workers]')" '[0,0,2,1]'
}

@test "the counters after a worker ran jobs that succeed, fail at once, and retry then fail" {
	aq-enqueue -q ex --id ok '0' >/dev/null
	aq-enqueue -q ex --id perm '65' >/dev/null
	aq-enqueue -q ex --id temp --max-attempts 2 '75' >/dev/null
	run aq-worker -q ex --backoff 100ms --max-jobs 4 -- "$HANDLERS/exit"
	assert_success
	hc -q ex
	assert_equal "$(q ex '[.enqueued, .succeeded, .failed, .retried, .recovered, .cancelled]')" '[3,1,2,1,0,0]'
	assert_equal "$(q ex '[.waiting, .delayed, .active]')" '[0,0,0]'
	# the same as the stats hash
	assert_equal "$(rcli hget 'aq:{ex}:stats' retried)" 1
}

@test "a cancelled job counts in cancelled and no longer waits" {
	aq-enqueue -q cx --id a '{}' >/dev/null
	aq-enqueue -q cx --id b '{}' >/dev/null
	aq-enqueue -q cx --id c --delay 1h '{}' >/dev/null
	aq-cancel -q cx a c >/dev/null
	hc -q cx
	assert_equal "$(q cx '[.waiting, .delayed, .enqueued, .cancelled]')" '[1,0,3,2]'
}

@test "a job recovered by aq-sweep after its worker died counts in recovered and waits again" {
	aq-enqueue -q rec --id j '{"sleep":60}' >/dev/null
	start_worker w -q rec --lease 1s -- "$HANDLERS/record"
	wait_for 50 job_is rec j running
	hc -q rec
	assert_equal "$(q rec '[.waiting, .active, .recovered]')" '[0,1,0]'
	# the worker dies; its keeper kills the handler; the lease expires
	kill -KILL "$(worker_pid w)"
	wait_for 50 eval 'aq-sweep -q rec >/dev/null && redis_is 1 hget "aq:{rec}:stats" recovered'
	hc -q rec
	assert_equal "$(q rec '[.waiting, .active, .workers, .recovered]')" '[1,0,0,1]'
	assert_equal "$rc" 0
}

@test "the oldest waiting age: a first job created an hour ago has waited about 3600 s" {
	aq-enqueue -q age --id first '{}' >/dev/null
	aq-enqueue -q age --id second '{}' >/dev/null
	rcli hset 'aq:{age}:job:first' created $(( $(now_ms) - 3600000 )) >/dev/null
	hc -q age
	assert_equal "$rc" 0
	q age .oldest_waiting_s | jq -e '. >= 3600 and . < 3610'
	# the age counts from when a job was queued last, not from its creation
	rcli hset 'aq:{age}:job:first' queued_at $(( $(now_ms) - 60000 )) >/dev/null
	hc -q age
	q age .oldest_waiting_s | jq -e '. >= 60 and . < 70'
}

@test "the oldest waiting age is the oldest across priority levels, whatever the level" {
	now=$(now_ms)
	aq-enqueue -q pri --id high --priority 5 '{}' >/dev/null
	aq-enqueue -q pri --id mid '{}' >/dev/null
	aq-enqueue -q pri --id mid2 '{}' >/dev/null
	aq-enqueue -q pri --id low --priority -1000 '{}' >/dev/null
	aq-enqueue -q pri --id top --priority 1000 '{}' >/dev/null
	rcli hset 'aq:{pri}:job:high' created $((now - 60000)) >/dev/null
	rcli hset 'aq:{pri}:job:mid' created $((now - 3600000)) >/dev/null
	rcli hset 'aq:{pri}:job:low' created $((now - 7200000)) >/dev/null
	hc -q pri
	q pri .oldest_waiting_s | jq -e '. >= 7200 and . < 7210'
	aq-cancel -q pri low >/dev/null
	hc -q pri
	q pri .oldest_waiting_s | jq -e '. >= 3600 and . < 3610'
	aq-cancel -q pri mid >/dev/null
	rcli hset 'aq:{pri}:job:top' created $((now - 600000)) >/dev/null
	hc -q pri
	q pri .oldest_waiting_s | jq -e '. >= 600 and . < 610'
	assert_equal "$(q pri .waiting)" 3
}

@test "--warn-depth and --crit-depth: above the threshold is WARNING (1) or CRITICAL (2), naming the queue" {
	for i in 1 2 3 4 5; do aq-enqueue -q deep "$i" >/dev/null; done
	aq-enqueue -q shallow 1 >/dev/null
	hc --warn-depth 5
	assert_equal "$rc" 0
	assert_equal "$(jq -r .status <<<"$out")" OK
	hc --warn-depth 4
	assert_equal "$rc" 1
	assert_equal "$err" 'aq-health: WARNING: queue deep: waiting 5 (warning above 4)'
	assert_equal "$(jq -c '[.status, .alerts]' <<<"$out")" '["WARNING",["queue deep: waiting 5 (warning above 4)"]]'
	hc --crit-depth 4
	assert_equal "$rc" 2
	assert_equal "$err" 'aq-health: CRITICAL: queue deep: waiting 5 (critical above 4)'
	assert_equal "$(jq -r .status <<<"$out")" CRITICAL
	# a crossed critical threshold hides the warning of the same check
	hc --warn-depth 0 --crit-depth 4 --prometheus
	assert_equal "$rc" 2
	[[ $err == 'aq-health: CRITICAL: '* ]]
	[[ $err == *'queue deep: waiting 5 (critical above 4)'* ]]
	[[ $err == *'queue shallow: waiting 1 (warning above 0)'* ]]
	[[ $err != *'queue deep: waiting 5 (warning'* ]]
	grep -qx 'aq_health_status 2' hc.out
	hc --warn-depth 1 --crit-depth 10
	assert_equal "$rc" 1
	assert_equal "$err" 'aq-health: WARNING: queue deep: waiting 5 (warning above 1)'
}

@test "--warn-age and --crit-age on the oldest waiting job, naming the queue; no waiting job, no alert" {
	aq-enqueue -q old --id j '{}' >/dev/null
	aq-enqueue -q idle --delay 1h '{}' >/dev/null
	rcli hset 'aq:{old}:job:j' created $(( $(now_ms) - 600000 )) >/dev/null
	hc --warn-age 1h --crit-age 2h
	assert_equal "$rc" 0
	hc --warn-age 5m
	assert_equal "$rc" 1
	[[ $err =~ ^'aq-health: WARNING: queue old: oldest waiting 60'[0-9]'s (warning above 300s)'$ ]]
	hc --warn-age 1m --crit-age 5m
	assert_equal "$rc" 2
	[[ $err =~ ^'aq-health: CRITICAL: queue old: oldest waiting 60'[0-9]'s (critical above 300s)'$ ]]
	assert_equal "$(jq -r .status <<<"$out")" CRITICAL
	# the idle queue holds only a delayed job: no age, no alert
	[[ $err != *idle* ]]
}

@test "--warn-workers and --crit-workers are minimums of live workers per queue" {
	aq-enqueue -q served '{"sleep":60}' >/dev/null
	aq-enqueue -q orphan '{}' >/dev/null
	start_worker w -q served -- "$HANDLERS/record"
	wait_for 50 live_workers served 1
	hc --warn-workers 1
	assert_equal "$rc" 1
	assert_equal "$err" 'aq-health: WARNING: queue orphan: 0 live workers (warning below 1)'
	hc --crit-workers 1
	assert_equal "$rc" 2
	assert_equal "$err" 'aq-health: CRITICAL: queue orphan: 0 live workers (critical below 1)'
	hc -q served --warn-workers 2 --crit-workers 1
	assert_equal "$rc" 1
	assert_equal "$err" 'aq-health: WARNING: queue served: 1 live worker (warning below 2)'
	hc -q served --crit-workers 1
	assert_equal "$rc" 0
	assert_equal "$err" 'aq-health: OK: 1 queue, 1 live worker'
	hc --warn-workers 2 --crit-workers 1
	assert_equal "$rc" 2
	[[ $err == 'aq-health: CRITICAL: '* ]]
	[[ $err == *'queue served: 1 live worker (warning below 2)'* ]]
	[[ $err == *'queue orphan: 0 live workers (critical below 1)'* ]]
	assert_equal "$(jq '.alerts | length' <<<"$out")" 2
}

@test "Redis down: CRITICAL (2), the report still printed with reachable false" {
	aq-enqueue -q mail 1 >/dev/null
	redis_kill
	hc
	assert_equal "$rc" 2
	assert_equal "$(jq -c '[.status, .redis.reachable, .postgres, .queues]' <<<"$out")" '["CRITICAL",false,null,[]]'
	jq -e '.redis.error | length > 0' <<<"$out"
	jq -e '.alerts | length == 1' <<<"$out"
	[[ $err == "aq-health: CRITICAL: redis at $AQ_REDIS_URL: "* ]]
	hc --prometheus -q mail
	assert_equal "$rc" 2
	grep -qx 'aq_up 0' hc.out
	grep -qx 'aq_health_status 2' hc.out
	refute grep -q '^aq_queue_waiting{' hc.out
	redis_run
	hc
	assert_equal "$rc" 0
}

@test "a dead worker stops counting as live once its heartbeat expires, before any sweep" {
	start_worker w -q dead --lease 1s --worker-id doomed -- "$HANDLERS/record"
	wait_for 50 live_workers dead 1
	kill -KILL "$(worker_pid w)"
	# a heartbeat lasts one lease (1 s) after the last renewal
	wait_for 50 live_workers dead 0
	# nothing removed it: it is only past its heartbeat
	[ -n "$(rcli zscore 'aq:{dead}:workers' doomed)" ]
	hc -q dead --workers
	assert_equal "$(jq -c .workers <<<"$out")" '[]'
}

@test "--workers lists each live worker: id, queue, host, pid, started, jobs, heartbeat" {
	aq-enqueue -q wl --id long '{"sleep":60}' >/dev/null
	start_worker w -q wl --worker-id w-list -- "$HANDLERS/record"
	wait_for 50 job_is wl long running
	wait_for 50 live_workers wl 1
	hc --workers
	assert_equal "$rc" 0
	assert_equal "$(jq -c '[.workers[] | {id, queue, host, pid}]' <<<"$out")" \
	    "[{\"id\":\"w-list\",\"queue\":\"wl\",\"host\":\"$(hostname)\",\"pid\":$(worker_pid w)}]"
	now=$(date +%s)
	jq -e --argjson now "$now" '.workers[0] | (.jobs | type) == "number" and
	    .started <= $now + 1 and .started > $now - 120 and
	    .heartbeat <= $now + 2 and .heartbeat > $now - 60' <<<"$out"
	hc --workers --prometheus
	grep -qx "aq_worker_jobs{queue=\"wl\",worker=\"w-list\",host=\"$(hostname)\"} [01]" hc.out
}

@test "--workers: each worker object has its members once" {
	start_worker w -q dup --worker-id w-dup -- "$HANDLERS/record"
	wait_for 50 live_workers dup 1
	hc -q dup --workers
	assert_equal "$(grep -o '"queue":' hc.out | wc -l)" 2 # the queue's, the worker's
}

@test "-q limits the report to the queues given, in their order; an unknown queue reads as zeros" {
	aq-enqueue -q a 1 >/dev/null
	aq-enqueue -q b 1 2 >/dev/null
	aq-enqueue -q c 1 2 3 >/dev/null
	hc
	assert_equal "$(jq -c '[.queues[].queue] | sort' <<<"$out")" '["a","b","c"]'
	hc -q c --queue a
	assert_equal "$(jq -c '[.queues[] | [.queue, .waiting]]' <<<"$out")" '[["c",3],["a",1]]'
	hc -q nowhere
	assert_equal "$rc" 0
	assert_equal "$(q nowhere '[.waiting, .delayed, .active, .oldest_waiting_s, .workers, .enqueued]')" '[0,0,0,null,0,0]'
	hc --prefix other
	assert_equal "$(jq -c .queues <<<"$out")" '[]'
}

@test "--prometheus: the expected metric lines, and promtool check metrics passes" {
	aq-enqueue -q pm --id first 1 >/dev/null
	aq-enqueue -q pm 2 3 >/dev/null
	aq-enqueue -q pm --delay 1h 4 >/dev/null
	aq-cancel -q pm first >/dev/null
	rcli hset 'aq:{pm}:job:first' created 1 >/dev/null # no longer waits anyway
	hc --prometheus
	assert_equal "$rc" 0
	for line in 'aq_up 1' 'aq_health_status 0' \
	    'aq_queue_waiting{queue="pm"} 2' 'aq_queue_delayed{queue="pm"} 1' \
	    'aq_queue_active{queue="pm"} 0' 'aq_queue_workers{queue="pm"} 0' \
	    'aq_queue_jobs_total{queue="pm",event="enqueued"} 4' \
	    'aq_queue_jobs_total{queue="pm",event="succeeded"} 0' \
	    'aq_queue_jobs_total{queue="pm",event="failed"} 0' \
	    'aq_queue_jobs_total{queue="pm",event="retried"} 0' \
	    'aq_queue_jobs_total{queue="pm",event="recovered"} 0' \
	    'aq_queue_jobs_total{queue="pm",event="cancelled"} 1' \
	    '# TYPE aq_queue_jobs_total counter' '# TYPE aq_queue_waiting gauge' \
	    '# TYPE aq_up gauge' '# TYPE aq_redis_latency_seconds gauge' \
	    '# TYPE aq_redis_used_memory_bytes gauge'; do
		grep -qxF "$line" hc.out || { echo "missing: $line" >&2; return 1; }
	done
	grep -qE '^aq_queue_oldest_waiting_seconds\{queue="pm"\} [0-9]+\.[0-9]{3}$' hc.out
	grep -qE '^aq_redis_used_memory_bytes [1-9][0-9]*$' hc.out
	grep -qE '^aq_redis_latency_seconds 0\.[0-9]{6}$' hc.out
	refute grep -q aq_worker_jobs hc.out
	prom_check hc.out
}

@test "--prometheus passes promtool with --workers, with alerts, and with Redis down" {
	command -v promtool >/dev/null || skip "promtool is not installed"
	aq-enqueue -q pw --delay 1h 1 >/dev/null # a worker alone does not name its queue in aq:queues
	start_worker w -q pw --worker-id w-prom -- "$HANDLERS/record"
	wait_for 50 live_workers pw 1
	hc --prometheus --workers --crit-workers 2
	assert_equal "$rc" 2
	grep -qx 'aq_health_status 2' hc.out
	prom_check hc.out
	redis_kill
	hc --prometheus --workers
	assert_equal "$rc" 2
	prom_check hc.out
}

@test "labels: a queue name and worker id with odd characters, and values that need escaping" {
	aq-enqueue -q odd.Q_name-1 --delay 1h 1 >/dev/null
	start_worker w -q odd.Q_name-1 --worker-id 'w:1@build.host/x_y-z' -- "$HANDLERS/record"
	wait_for 50 live_workers odd.Q_name-1 1
	# what a worker id and host read from Redis could hold, escaped
	weird=$'we"ird\\id\nx'
	rcli zadd 'aq:{odd.Q_name-1}:workers' $(( $(now_ms) + 600000 )) "$weird" >/dev/null
	rcli hset "aq:{odd.Q_name-1}:worker:$weird" host 'h"o\st' pid 7 queue odd.Q_name-1 \
	    started 1000 jobs 2 heartbeat 1000 >/dev/null
	hc --prometheus --workers
	assert_equal "$rc" 0
	grep -qxF 'aq_queue_delayed{queue="odd.Q_name-1"} 1' hc.out
	grep -qxF 'aq_queue_jobs_total{queue="odd.Q_name-1",event="enqueued"} 1' hc.out
	grep -qxF "aq_worker_jobs{queue=\"odd.Q_name-1\",worker=\"w:1@build.host/x_y-z\",host=\"$(hostname)\"} 0" hc.out
	grep -qxF 'aq_worker_jobs{queue="odd.Q_name-1",worker="we\"ird\\id\nx",host="h\"o\\st"} 2' hc.out
	prom_check hc.out
	# and the JSON holds them as they are
	hc --workers
	assert_equal "$(jq -r --arg w "$weird" '.workers[] | select(.id == $w) | .host' <<<"$out")" 'h"o\st'
	assert_equal "$(jq -c '[.workers[].id] | sort' <<<"$out")" "$(jq -cn --arg w "$weird" '["w:1@build.host/x_y-z", $w] | sort')"
}

@test "usage: -h prints the usage; bad options, values and arguments exit 64" {
	run aq-health -h
	assert_success
	assert_output --partial 'usage: aq-health'
	for bad in --bogus '--warn-depth -1' '--crit-age never' '--warn-workers x' '-q a/b' 'extra'; do
		run aq-health $bad
		assert_failure 64
	done
}

@test "a write error exits 74" {
	[ -w /dev/full ] || skip "no /dev/full"
	rc=0
	aq-health >/dev/full 2>err || rc=$?
	assert_equal "$rc" 74
	grep -q 'cannot write to standard output' err
	rc=0
	aq-health --prometheus >/dev/full 2>err || rc=$?
	assert_equal "$rc" 74
}

# The command of aq-health-textfile.service as sh runs it: systemd's $$
# made $, the node exporter's directory made DIR, aq-health from PATH.
textfile_command() {
	sed -n 's/^ExecStart=//p' "$ROOT/examples/systemd/aq-health-textfile.service" |
	    sed -e 's/\$\$/$/g' -e "s|/var/lib/prometheus/node-exporter|$1|g" \
	    -e 's|/usr/local/bin/aq-health|aq-health|g'
}

@test "the textfile unit writes aq.prom atomically, publishes on alerts, keeps the last file on errors" {
	dir=$BATS_TEST_TMPDIR/textfile
	mkdir "$dir"
	cmd=$(textfile_command "$dir")
	[[ $cmd == "/bin/sh -c '"*"'" ]]
	aq-enqueue -q tf 1 2 >/dev/null
	eval "$cmd" 2>/dev/null
	grep -qx 'aq_queue_waiting{queue="tf"} 2' "$dir/aq.prom"
	assert_equal "$(ls "$dir")" aq.prom
	prom_check "$dir/aq.prom"
	# a new run replaces the file by a rename: a new inode, never rewritten in place
	inode=$(stat -c %i "$dir/aq.prom")
	aq-enqueue -q tf 3 >/dev/null
	eval "$cmd" 2>/dev/null
	grep -qx 'aq_queue_waiting{queue="tf"} 3' "$dir/aq.prom"
	[ "$(stat -c %i "$dir/aq.prom")" != "$inode" ]
	# Redis down: aq-health exits 2, the metrics still published, the unit succeeds
	redis_kill
	eval "$cmd" 2>/dev/null
	grep -qx 'aq_up 0' "$dir/aq.prom"
	redis_run
	# no usable output (an unreadable URL file: 66): the last file stays, the unit fails
	eval "$cmd" 2>/dev/null
	grep -qx 'aq_up 1' "$dir/aq.prom"
	rc=0
	AQ_REDIS_URL='' AQ_REDIS_URL_FILE=$dir/none eval "$cmd" 2>/dev/null || rc=$?
	assert_equal "$rc" 66
	grep -qx 'aq_up 1' "$dir/aq.prom"
	assert_equal "$(ls "$dir")" aq.prom
}

@test "the textfile units: a oneshot service started every minute by its timer" {
	service=$ROOT/examples/systemd/aq-health-textfile.service
	timer=$ROOT/examples/systemd/aq-health-textfile.timer
	grep -qx 'Type=oneshot' "$service"
	grep -qx 'OnCalendar=minutely' "$timer"
	grep -qx 'WantedBy=timers.target' "$timer"
	# every $ for the shell is escaped from systemd as $$
	assert_equal "$(sed -n 's/^ExecStart=//p' "$service" | sed 's/\$\$//g' | tr -cd '$')" ''
	command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed"
	cp "$service" "$timer" "$BATS_TEST_TMPDIR/"
	run systemd-analyze verify --man=no "$BATS_TEST_TMPDIR/aq-health-textfile.service" \
	    "$BATS_TEST_TMPDIR/aq-health-textfile.timer"
	assert_success
}
