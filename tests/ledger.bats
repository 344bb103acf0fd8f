#!/usr/bin/env bats
# ledger.bats: the PostgreSQL ledger (aq(7) "The ledger"): durable enqueue,
# archive through the log's consumer group, restore after Redis lost its
# data, fallback reads, and PostgreSQL going away; against a private
# PostgreSQL (initdb, pg_ctl) and a private redis-server, both on unix
# sockets in temp dirs.

load helpers

setup_file() {
	redis_start
	pg_bin >/dev/null || skip "Debian's postgresql package is not installed"
	pg_start
}
teardown_file() {
	pg_stop
	redis_stop
}

setup() {
	pg_bin >/dev/null || skip "Debian's postgresql package is not installed"
	cd "$BATS_TEST_TMPDIR"
	rcli flushall >/dev/null
	[ -e "$PG_DIR/data/postmaster.pid" ] || pg_run
	psql_aq 'DROP SCHEMA IF EXISTS aq CASCADE' 2>/dev/null
	export AQ_DATABASE_URL=$PG_URL
}

teardown() {
	show_logs_on_failure
	kill_started
	rcli client unpause >/dev/null 2>&1 || true
	return 0
}

count() { psql_aq "SELECT count(*) FROM aq.$1"; }

# finished QUEUE N: N jobs of QUEUE reached a final state in Redis
finished() {
	local s f c
	s=$(rcli hget "aq:{$1}:stats" succeeded) f=$(rcli hget "aq:{$1}:stats" failed)
	c=$(rcli hget "aq:{$1}:stats" cancelled)
	(( ${s:-0} + ${f:-0} + ${c:-0} == $2 ))
}

@test "durable enqueue: every job aq-enqueue reported is in the ledger, queued, and the schema was made on first use" {
	seq 1000 | jq -c '{n: .}' | aq-enqueue -q d >out
	assert_equal "$(wc -l <out)" 1000
	jq -r .id out | sort >reported
	psql_aq "SELECT id FROM aq.jobs WHERE queue = 'd' AND status = 'queued'" | sort >held
	cmp reported held
	assert_equal "$(psql_aq 'SELECT version FROM aq.schema_version')" 1
	assert_equal "$(psql_aq "SELECT payload::text FROM aq.jobs WHERE id = '$(head -1 reported)'")" \
	    "$(rcli hget "aq:{d}:job:$(head -1 reported)" payload)"
	# options go in too
	aq-enqueue -q d --id opts --priority 7 --max-attempts 9 --timeout 30s --delay 1h '{"x":1}' >/dev/null
	assert_equal "$(psql_aq "SELECT status, priority, max_attempts, timeout_ms, run_at > now() FROM aq.jobs WHERE id = 'opts'")" \
	    'delayed|7|9|30000|t'
	assert_equal "$(psql_aq 'SELECT queue FROM aq.queues')" d
}

@test "durable enqueue: the ledger commits before Redis sees the jobs (a locked table holds them out of Redis)" {
	aq-enqueue -q lk '{}' >/dev/null # the schema
	mkfifo locker.in
	"$PG_BIN/psql" "$PG_URL" -qAt <locker.in >locker.out 2>&1 &
	echo $! >locker.pid
	exec 7>locker.in
	echo "BEGIN; LOCK TABLE aq.jobs IN EXCLUSIVE MODE; SELECT 'locked';" >&7
	wait_for 100 grep -q locked locker.out
	start_bg enq aq-enqueue -q lk '{"held":1}'
	wait_for 100 eval "[ \"\$(psql_aq \"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aq-enqueue' AND wait_event_type = 'Lock'\")\" = 1 ]"
	# blocked in PostgreSQL: Redis has nothing of it yet
	assert_equal "$(rcli zcard 'aq:{lk}:wait')" 1
	echo "COMMIT;" >&7
	exec 7>&-
	wait_for 100 eval "[ \"\$(rcli zcard 'aq:{lk}:wait')\" = 2 ]"
	wait "$(cat enq.pid)"
	rm enq.pid
	id=$(jq -r .id enq.out)
	assert_equal "$(psql_aq "SELECT status FROM aq.jobs WHERE id = '$id'")" queued
}

@test "the idempotency key holds in the ledger: an id Redis trimmed long ago is not enqueued again" {
	aq-enqueue -q idem --id inv-1 '{"amount":42}' >/dev/null
	aq-worker -q idem --burst -- cat >/dev/null 2>&1
	run aq-sweep -q idem --retention 0
	assert_success
	assert_output --partial '"action":"trimmed","id":"inv-1"'
	assert_equal "$(rcli exists 'aq:{idem}:job:inv-1')" 0
	run aq-enqueue -q idem --id inv-1 '{"amount":42}'
	assert_success
	assert_output '{"id":"inv-1","queue":"idem","status":"succeeded","duplicate":true}'
	assert_equal "$(rcli exists 'aq:{idem}:job:inv-1')" 0
	assert_equal "$(rcli zcard 'aq:{idem}:wait')" 0
	# stdin with a fixed id: the first line takes it, the rest are duplicates
	run aq-enqueue -q idem --id inv-2 <<<$'{"a":1}\n{"a":2}'
	assert_success
	assert_line --index 0 '{"id":"inv-2","queue":"idem","status":"queued"}'
	assert_line --index 1 '{"id":"inv-2","queue":"idem","status":"queued","duplicate":true}'
	assert_equal "$(count "jobs WHERE id = 'inv-2'")" 1
}

@test "PostgreSQL unreachable: aq-enqueue exits 69 naming it, and nothing is enqueued anywhere" {
	aq-enqueue -q down '{}' >/dev/null # the schema
	pg_kill
	run aq-enqueue -q down '{"lost":1}'
	assert_failure 69
	assert_output --partial "aq-enqueue: cannot use the postgresql ledger at postgresql://aq@/aq?host=$PG_DIR:"
	run aq-enqueue -q down <<<'{"lost":2}'
	assert_failure 69
	assert_equal "$(rcli zcard 'aq:{down}:wait')" 1
	pg_run
	assert_equal "$(count jobs)" 1
}

@test "bad database URLs are usage errors naming their source, before anything connects, and never show a password" {
	run aq-enqueue -q q --database-url 'postgresql://u:s3cret@[oops' '{}'
	assert_failure 64
	assert_output --partial 'invalid database URL'
	assert_output --partial '(from --database-url)'
	refute_output --partial s3cret
	AQ_DATABASE_URL='host=/tmp password=s3cret nonsense=1' run aq-sweep
	assert_failure 64
	assert_output --partial '(from AQ_DATABASE_URL)'
	refute_output --partial s3cret
	run aq-status -q q --database-url-file /nonexistent j
	assert_failure 66
	assert_output --partial 'cannot open the database URL file /nonexistent'
	run aq-enqueue -q q --database-url x --database-url-file y '{}'
	assert_failure 64
	# a password kept in a file stays out of argv and messages
	echo "postgresql://aq:s3cret@/aq?host=$PG_DIR" >url
	run env -u AQ_DATABASE_URL aq-enqueue -q q --database-url-file url '{}'
	assert_success
	assert_equal "$(count jobs)" 1
}

@test "archive: aq-sweep writes each state change and the events of finished jobs, acknowledges the log, then lets them be trimmed" {
	seq 20 | jq -c '{n: .}' | aq-enqueue -q ar >enq
	run aq-sweep -q ar
	assert_success
	assert_output '{"queue":"ar","action":"archived","jobs":20,"finished":0,"events":0}'
	assert_equal "$(psql_aq "SELECT count(*) FROM aq.jobs WHERE seen")" 20
	aq-worker -q ar --burst -- sh -c 'read p; echo "{\"step\":1}"; echo "to stderr" >&2; echo "$p"' 2>/dev/null
	run aq-sweep -q ar
	assert_success
	assert_output '{"queue":"ar","action":"archived","jobs":20,"finished":20,"events":60}'
	assert_equal "$(psql_aq "SELECT status, count(*) FROM aq.jobs GROUP BY status")" 'succeeded|20'
	assert_equal "$(psql_aq "SELECT count(DISTINCT attempt) || ' ' || min(attempt) FROM aq.jobs")" '1 1'
	assert_equal "$(psql_aq "SELECT type, count(*) FROM aq.events GROUP BY type ORDER BY type")" $'stderr|20\nstdout|40'
	id=$(jq -r .id enq | head -1)
	assert_equal "$(psql_aq "SELECT result::text, worker IS NOT NULL, finished >= started FROM aq.jobs WHERE id = '$id'")" '{"n":1}|t|t'
	# the log is acknowledged; the finished jobs moved to the done set
	assert_equal "$(rcli xpending 'aq:{ar}:log' aq-archive | head -1)" 0
	assert_equal "$(rcli zcard 'aq:{ar}:unarchived') $(rcli zcard 'aq:{ar}:done')" "0 20"
	# a second pass has nothing to do; trimming then deletes what is archived
	run aq-sweep -q ar
	assert_success
	assert_output ''
	run aq-sweep -q ar --retention 0
	assert_equal "$(grep -c '"action":"trimmed"' <<<"$output")" 20
	assert_equal "$(count jobs) $(count events)" "20 60"
}

@test "archive: without the ledger a queue's finished jobs are held for it, not trimmed, and aq-sweep says so" {
	aq-enqueue -q hold '{}' >/dev/null
	aq-sweep -q hold >/dev/null # the queue is now archived: it has a ledger key
	aq-worker -q hold --burst -- cat >/dev/null 2>&1
	run env -u AQ_DATABASE_URL aq-sweep -q hold --retention 0
	assert_success
	refute_output --partial '"action":"trimmed"'
	assert_output --partial 'queue hold is archived to a postgresql ledger, but no --database-url is given: its 1 finished jobs wait for the archive and are not trimmed (DEL aq:{hold}:ledger to stop archiving it)'
	assert_equal "$(rcli zcard 'aq:{hold}:unarchived')" 1
	run aq-sweep -q hold --retention 0
	assert_success
	assert_output --partial '"action":"trimmed"'
}

@test "restore: Redis flushed after enqueue: aq-sweep puts every job back with its attempts, and a worker completes them" {
	seq 30 | jq -c '{n: .}' | aq-enqueue -q rf >enq
	# five jobs fail once and wait for their retry: attempt 1, delayed
	aq-worker -q rf --max-jobs 5 --backoff 1h -- sh -c 'exit 75' 2>/dev/null
	aq-sweep -q rf >/dev/null
	assert_equal "$(psql_aq "SELECT status, attempt, count(*) FROM aq.jobs GROUP BY 1, 2 ORDER BY 1")" \
	    $'delayed|1|5\nqueued|0|25'
	rcli flushall >/dev/null
	run aq-sweep
	assert_success
	assert_equal "$(grep -c '"action":"restored"' <<<"$output")" 30
	assert_equal "$(grep -c '"action":"restored".*"status":"delayed"' <<<"$output")" 5
	assert_equal "$(rcli hget 'aq:{rf}:stats' restored)" 30
	assert_equal "$(rcli smembers aq:queues)" rf
	# a second pass restores nothing: the ledger key records this server
	run aq-sweep
	refute_output --partial restored
	# the retries are due now (as if the hour had passed)
	for id in $(rcli zrange 'aq:{rf}:delayed' 0 -1); do
		rcli hset "aq:{rf}:job:$id" run_at 0 >/dev/null
		rcli zadd 'aq:{rf}:delayed' 0 "$id" >/dev/null
	done
	aq-worker -q rf --burst -- cat 2>/dev/null
	aq-status -q rf <enq >statuses
	assert_equal "$(jq -r .status statuses | sort | uniq -c | xargs)" "30 succeeded"
	assert_equal "$(jq -r .attempt statuses | sort | uniq -c | xargs)" "25 1 5 2"
	aq-sweep >/dev/null
	assert_equal "$(psql_aq "SELECT status, count(*) FROM aq.jobs GROUP BY 1")" 'succeeded|30'
}

@test "restore: a job running when Redis lost it runs again; one out of attempts fails" {
	aq-enqueue -q rr --id again '{}' >/dev/null
	aq-enqueue -q rr --id spent --max-attempts 1 '{}' >/dev/null
	start_bg w aq-worker -q rr -c 2 -- sleep 60
	wait_for 100 redis_is 2 zcard 'aq:{rr}:active'
	aq-sweep -q rr >/dev/null
	assert_equal "$(psql_aq "SELECT id, status, attempt FROM aq.jobs ORDER BY id")" $'again|running|1\nspent|running|1'
	kill -KILL "$(cat w.pid)"
	rm w.pid
	rcli flushall >/dev/null
	run aq-sweep
	assert_success
	assert_line '{"queue":"rr","action":"restored","id":"again","status":"queued"}'
	assert_line '{"queue":"rr","action":"restored","id":"spent","status":"failed"}'
	assert_equal "$(aq-status -q rr spent | jq -c '[.status, .attempt, .error]')" \
	    '["failed",1,"redis lost this job while attempt 1 of 1 ran"]'
	aq-worker -q rr --burst -- cat 2>/dev/null
	assert_equal "$(aq-status -q rr again | jq -c '[.status, .attempt]')" '["succeeded",2]'
}

@test "restore: a job the ledger committed but Redis never got (aq-enqueue killed in between) is put on the queue after --restore-grace" {
	aq-enqueue -q lost '{}' >/dev/null # the schema
	aq-sweep -q lost >/dev/null        # and the queue's ledger key
	psql_aq "INSERT INTO aq.jobs (queue, id, status, payload, max_attempts) VALUES ('lost', 'orphan', 'queued', '{\"o\":1}', 3)"
	run aq-sweep -q lost
	refute_output --partial orphan # younger than the grace (1 minute)
	run aq-sweep -q lost --restore-grace 1ms
	assert_success
	assert_line '{"queue":"lost","action":"restored","id":"orphan","status":"queued"}'
	assert_equal "$(psql_aq "SELECT seen FROM aq.jobs WHERE id = 'orphan'")" t
	aq-worker -q lost --burst -- cat 2>/dev/null
	assert_equal "$(aq-status -q lost orphan | jq -c '[.status, .result]')" '["succeeded",{"o":1}]'
}

@test "aq-sweep killed between its commit and its acknowledgement: the rerun archives nothing twice and loses nothing" {
	seq 20 | jq -c '{n: .}' | aq-enqueue -q ka >enq
	aq-sweep -q ka >/dev/null
	aq-worker -q ka --burst -- sh -c 'read p; echo one; echo two' 2>/dev/null
	# hold the archive's upsert on a table lock
	mkfifo locker.in
	"$PG_BIN/psql" "$PG_URL" -qAt <locker.in >locker.out 2>&1 &
	echo $! >locker.pid
	exec 7>locker.in
	echo "BEGIN; LOCK TABLE aq.jobs IN EXCLUSIVE MODE; SELECT 'locked';" >&7
	wait_for 100 grep -q locked locker.out
	start_bg sweep aq-sweep -q ka --retention 0
	wait_for 100 eval "[ \"\$(psql_aq \"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aq-sweep' AND wait_event_type = 'Lock'\")\" = 1 ]"
	# its Redis reads are done; now no Redis write can pass, and the lock goes
	rcli client pause 60000 write >/dev/null
	echo "COMMIT;" >&7
	exec 7>&-
	wait_for 100 eval "[ \"\$(psql_aq \"SELECT count(*) FROM aq.jobs WHERE status = 'succeeded'\")\" = 20 ]"
	kill -KILL "$(cat sweep.pid)"
	wait "$(cat sweep.pid)" 2>/dev/null || true
	rm sweep.pid
	rcli client unpause >/dev/null
	# committed, not acknowledged: the entries are pending, nothing trimmable
	assert_equal "$(count events)" 40
	(( $(rcli xpending 'aq:{ka}:log' aq-archive | head -1) > 0 ))
	assert_equal "$(rcli zcard 'aq:{ka}:unarchived')" 20
	run aq-sweep -q ka --retention 0
	assert_success
	assert_line --index 0 '{"queue":"ka","action":"archived","jobs":20,"finished":20,"events":40}'
	assert_equal "$(grep -c '"action":"trimmed"' <<<"$output")" 20
	assert_equal "$(count jobs) $(count events)" "20 40"
	assert_equal "$(psql_aq "SELECT count(*) FROM (SELECT DISTINCT queue, job_id, ms, seq FROM aq.events) e")" 40
	assert_equal "$(rcli xpending 'aq:{ka}:log' aq-archive | head -1)" 0
}

@test "aq-sweep SIGKILLed at random moments while archiving, with --retention 0: whatever it trimmed is in the ledger, and the last run leaves every job and event there once" {
	seq 300 | jq -c '{n: .}' | aq-enqueue -q rk >enq
	jq -r .id enq >ids
	aq-worker -q rk -c 4 --burst -- sh -c 'read p; echo a; echo b; echo c' 2>/dev/null
	wait_for 100 finished rk 300
	for ((k = 0; k < 10; k++)); do
		start_bg sweep aq-sweep -q rk --batch 7 --retention 0
		sleep "0.0$((RANDOM % 10))" # a random moment, not a wait
		kill -KILL "$(cat sweep.pid)" 2>/dev/null || true
		wait "$(cat sweep.pid)" 2>/dev/null || true
		rm sweep.pid
		# no job left Redis before the ledger had it, with all its events
		gone=$(sed 's/.*/EXISTS aq:{rk}:job:&/' ids | rcli | grep -c '^0$' || true)
		archived=$(psql_aq "SELECT count(*) FROM aq.jobs j WHERE status = 'succeeded' AND (SELECT count(*) FROM aq.events e WHERE e.job_id = j.id) = 3")
		echo "kill $k: $gone trimmed, $archived archived" >&2
		(( gone <= archived ))
	done
	run aq-sweep -q rk --retention 0
	assert_success
	assert_equal "$(psql_aq "SELECT status, count(*) FROM aq.jobs GROUP BY 1")" 'succeeded|300'
	assert_equal "$(count events)" 900
	assert_equal "$(sed 's/.*/EXISTS aq:{rk}:job:&/' ids | rcli | sort | uniq -c | xargs)" "300 0"
}

@test "PostgreSQL stopped: aq-sweep does its Redis work, trims nothing, exits 69 naming the database; restarted, it archives everything" {
	aq-enqueue -q pd --id slow '{}' >/dev/null
	seq 5 | jq -c '{n: .}' | aq-enqueue -q pd >/dev/null
	aq-sweep -q pd >/dev/null
	aq-worker -q pd --burst -- cat 2>/dev/null
	# a lease to recover, so there is Redis work to do
	aq-enqueue -q pd --id hung '{}' >/dev/null
	start_bg w aq-worker -q pd --max-jobs 1 -- sleep 60
	wait_for 100 job_is pd hung running
	kill -KILL "$(cat w.pid)"
	rm w.pid
	rcli zadd 'aq:{pd}:active' XX 1 hung >/dev/null
	pg_kill
	run aq-sweep -q pd --retention 0
	assert_failure 69
	assert_output --partial "aq-sweep: cannot use the postgresql ledger at postgresql://aq@/aq?host=$PG_DIR"
	assert_output --partial 'nothing is trimmed'
	assert_output --partial '{"queue":"pd","action":"recovered","id":"hung","status":"queued"}'
	refute_output --partial '"action":"trimmed"'
	assert_equal "$(rcli zcard 'aq:{pd}:unarchived')" 6
	# --every keeps going, and says when the ledger is back
	start_bg every aq-sweep -q pd --every 200ms --retention 0
	wait_for 100 grep -q 'trying again each pass' every.err
	pg_run
	wait_for 150 grep -q 'the postgresql ledger at .* is back' every.err
	wait_for 150 eval "[ \"\$(rcli zcard 'aq:{pd}:unarchived')\" = 0 ]"
	wait_for 100 grep -q '"action":"trimmed"' every.out
	kill -TERM "$(cat every.pid)"
	wait "$(cat every.pid)"
	rm every.pid
	assert_equal "$(psql_aq "SELECT status, count(*) FROM aq.jobs GROUP BY 1 ORDER BY 1")" $'queued|1\nsucceeded|6'
}

@test "concurrent first use: eight tools starting at once on an empty database migrate it once" {
	psql_aq 'DROP DATABASE IF EXISTS fresh' && psql_aq 'CREATE DATABASE fresh'
	url="postgresql://aq@/fresh?host=$PG_DIR"
	for i in 1 2 3 4 5 6 7 8; do
		if ((i % 2)); then
			aq-enqueue -q "c$i" --database-url "$url" '{}' >"out.$i" 2>"err.$i" &
		else
			aq-sweep -q "c$i" --database-url "$url" >"out.$i" 2>"err.$i" &
		fi
	done
	wait
	cat err.* >&2
	assert_equal "$(cat err.*)" ""
	assert_equal "$("$PG_BIN/psql" "$url" -qAtc 'SELECT version FROM aq.schema_version')" 1
	assert_equal "$("$PG_BIN/psql" "$url" -qAtc 'SELECT count(*) FROM aq.jobs')" 4
}

@test "fallback reads: finished jobs Redis trimmed are printed by aq-status and aq-subscribe --job as before" {
	aq-enqueue -q fb --id j '{"a":1}' >/dev/null
	aq-enqueue -q fb --id bad --max-attempts 1 '{"a":2}' >/dev/null
	aq-worker -q fb --burst -- sh -c 'read p; echo "{\"step\":1}"; echo "to stderr" >&2; [ "$AQ_JOB_ID" = j ] && echo "{\"done\":true}"' 2>/dev/null
	aq-status -q fb j bad >before.status
	aq-subscribe -q fb --job j >before.j
	aq-subscribe -q fb --job bad >before.bad || true
	after=$(sed -n 2p before.j | jq -r .id)
	aq-subscribe -q fb --job j --after "$after" >before.after
	aq-sweep -q fb --retention 0 >/dev/null
	assert_equal "$(rcli exists 'aq:{fb}:job:j' 'aq:{fb}:events:j')" 0
	run aq-status -q fb j bad nosuch
	assert_failure 1
	assert_equal "$(head -2 <<<"$output")" "$(cat before.status)"
	assert_line --index 2 '{"id":"nosuch","queue":"fb","status":"unknown"}'
	run aq-subscribe -q fb --job j
	assert_success
	assert_equal "$output" "$(cat before.j)"
	run aq-subscribe -q fb --job bad
	assert_failure 1
	assert_equal "$output" "$(cat before.bad)"
	run aq-subscribe -q fb --job j --after "$after"
	assert_equal "$output" "$(cat before.after)"
	run aq-subscribe -q fb --job nosuch
	assert_failure 1
	assert_output --partial 'no job nosuch in queue fb'
	# the ledger down: that is said, not "unknown"
	pg_kill
	run aq-status -q fb j
	assert_failure 69
	assert_output --partial 'cannot use the postgresql ledger at'
}

@test "the ledger shows which tool is connected (fallback_application_name)" {
	start_bg sweep aq-sweep --every 100ms
	wait_for 100 eval "[ \"\$(psql_aq \"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aq-sweep'\")\" = 1 ]"
}

@test "a ledger-off setup works with PostgreSQL stopped: no tool touches it" {
	pg_kill
	unset AQ_DATABASE_URL
	run aq-enqueue -q off '{"a":1}'
	assert_success
	aq-worker -q off --burst -- cat 2>err
	refute grep -qi postgres err
	run aq-sweep --retention 0
	assert_success
	assert_output --partial '"action":"trimmed"'
	run aq-health -q off
	assert_success
	assert_output --partial '"postgres":null'
	refute_output --partial 'postgresql'
}

@test "aq-health with a ledger: its reachability, each queue's archive lag; down: CRITICAL (2) naming it" {
	seq 3 | jq -c '{n: .}' | aq-enqueue -q hl >/dev/null
	aq-sweep -q hl >/dev/null
	read_so_far=$(rcli xlen 'aq:{hl}:log')
	aq-worker -q hl --burst -- cat 2>/dev/null
	run aq-health -q hl
	assert_success
	# 3 finished jobs wait for the archive; the worker's log entries (its
	# claims and finishes, however it batched them) are not read yet
	lag=$(( $(rcli xlen 'aq:{hl}:log') - read_so_far ))
	(( lag >= 2 ))
	aq-health -q hl >report
	assert_equal "$(jq -c '[.postgres.reachable, .queues[0].unarchived, .queues[0].archive_log_lag]' report)" "[true,3,$lag]"
	run aq-health -q hl --warn-archive-lag 2 --crit-archive-lag 100
	assert_failure 1
	assert_output --partial "queue hl: archive lag $((lag + 3)) jobs and log entries (warning above 2 jobs and log entries)"
	run aq-health -q hl --prometheus
	assert_line 'aq_ledger_up 1'
	assert_line 'aq_queue_unarchived{queue="hl"} 3'
	if command -v promtool >/dev/null; then
		aq-health -q hl --prometheus 2>/dev/null | promtool check metrics
	fi
	aq-sweep -q hl >/dev/null
	run aq-health -q hl --crit-archive-lag 0
	assert_success
	pg_kill
	run aq-health -q hl
	assert_failure 2
	aq-health -q hl >report 2>/dev/null || true
	assert_equal "$(jq -c '.postgres.reachable' report)" false
	assert_output --partial "CRITICAL: postgresql ledger at postgresql://aq@/aq?host=$PG_DIR"
}

@test "archive: a job with more events than one read (2500) has every one archived, in order" {
	aq-enqueue -q many --id big '{}' >/dev/null
	aq-enqueue -q many --id small '{}' >/dev/null
	aq-worker -q many --burst -- sh -c 'read p; if [ "$AQ_JOB_ID" = big ]; then seq 2500; else echo 1; fi' 2>/dev/null
	run aq-sweep -q many
	assert_success
	assert_output --partial '"finished":2,"events":2501'
	assert_equal "$(psql_aq "SELECT count(*), min(data::text), max(data::text::int) FROM aq.events WHERE job_id = 'big'")" '2500|1|2500'
	aq-sweep -q many --retention 0 >/dev/null
	run aq-subscribe -q many --job big
	assert_success
	assert_equal "$(jq -r 'select(.type == "stdout") | .data' <<<"$output" | paste -sd' ')" "$(seq 2500 | paste -sd' ')"
}

@test "finished jobs wait for the ledger from the first enqueue: a sweeper without it, before any archive, trims none of them" {
	seq 3 | jq -c '{n: .}' | aq-enqueue -q held >enq
	assert_equal "$(rcli get 'aq:{held}:ledger')" unchecked
	aq-worker -q held --burst -- cat 2>/dev/null
	assert_equal "$(rcli zcard 'aq:{held}:unarchived') $(rcli zcard 'aq:{held}:done')" "3 0"
	run env -u AQ_DATABASE_URL aq-sweep -q held --retention 0
	assert_success
	refute_output --partial '"action":"trimmed"'
	assert_output --partial 'no --database-url is given: its 3 finished jobs wait'
	run aq-sweep -q held --retention 0
	assert_success
	assert_equal "$(grep -c '"action":"trimmed"' <<<"$output")" 3
	assert_equal "$(psql_aq "SELECT status, count(*) FROM aq.jobs WHERE queue = 'held' GROUP BY 1")" 'succeeded|3'
	# the check the key asked for was made: it holds the server's run id now
	assert_equal "$(rcli get 'aq:{held}:ledger')" "$(rcli info server | sed -n 's/^run_id:\(.*\)\r$/\1/p')"
}

@test "PostgreSQL refuses a batch midway: the batches it committed before are printed and in Redis, the refused one is nowhere" {
	aq-enqueue -q mid '{"first":1}' >/dev/null # the schema
	psql_aq "CREATE FUNCTION aq.refuse() RETURNS trigger LANGUAGE plpgsql AS
	    \$\$BEGIN IF NEW.payload::text LIKE '%boom%' THEN
	    RAISE EXCEPTION 'refused by a test trigger'; END IF; RETURN NEW; END\$\$;
	    CREATE TRIGGER refuse BEFORE INSERT ON aq.jobs FOR EACH ROW EXECUTE FUNCTION aq.refuse()"
	# a batch with a ledger is 1000 jobs: lines 1-1000, then 1001 alone
	{ seq 1000 | jq -c '{n: .}'; echo '{"boom":1}'; } >lines
	rc=0
	aq-enqueue -q mid <lines >out 2>err || rc=$?
	assert_equal "$rc" 69
	assert_equal "$(wc -l <out)" 1000
	assert_equal "$(jq -r .status out | sort -u)" queued
	run cat err
	assert_output --partial 'cannot write the jobs of lines 1001-1001 to the postgresql ledger'
	assert_output --partial 'refused by a test trigger'
	assert_equal "$(rcli zcard 'aq:{mid}:wait')" 1001
	assert_equal "$(count jobs)" 1001
	assert_equal "$(psql_aq "SELECT count(*) FROM aq.jobs WHERE payload::text LIKE '%boom%'")" 0
}

@test "a queue enqueued without the ledger is known to it once archived: a flushed Redis loses none of its jobs" {
	seq 3 | jq -c '{n: .}' | env -u AQ_DATABASE_URL aq-enqueue -q noled >enq
	aq-sweep >/dev/null
	assert_equal "$(psql_aq "SELECT queue FROM aq.queues")" noled
	rcli flushall >/dev/null
	run aq-sweep
	assert_success
	assert_equal "$(grep -c '"queue":"noled","action":"restored"' <<<"$output")" 3
	aq-worker -q noled --burst -- cat 2>/dev/null
	aq-status -q noled <enq >statuses
	assert_equal "$(jq -r .status statuses | sort | uniq -c | xargs)" "3 succeeded"
}

@test "restore after a flush: a job Redis never reported and younger than --restore-grace may be on its way from aq-enqueue, and waits for the grace" {
	aq-enqueue -q young '{"y":1}' >enq
	rcli flushall >/dev/null
	run aq-sweep -q young
	assert_success
	refute_output --partial restored
	# the check was made; the job is left to the grace
	[ -n "$(rcli get 'aq:{young}:ledger')" ]
	run aq-sweep -q young --restore-grace 1ms
	assert_success
	assert_line "{\"queue\":\"young\",\"action\":\"restored\",\"id\":\"$(jq -r .id enq)\",\"status\":\"queued\"}"
}

@test "a record written by hand with numbers out of their columns' range is archived with NULLs, and the others with it" {
	seq 2 | jq -c '{n: .}' | aq-enqueue -q odd >enq
	id=$(jq -r .id enq | head -1)
	rcli hset "aq:{odd}:job:$id" priority 99999999999 created 99999999999999999 attempt x >/dev/null
	run aq-sweep -q odd
	assert_success
	assert_line '{"queue":"odd","action":"archived","jobs":2,"finished":0,"events":0}'
	assert_equal "$(psql_aq "SELECT priority, attempt FROM aq.jobs WHERE id = '$id'")" '0|0'
	assert_equal "$(psql_aq "SELECT count(*) FROM aq.jobs WHERE queue = 'odd' AND seen")" 2
}

@test "a ledger failure while archiving a queue releases its lock: the sweeper's session lives on, other sweepers can take the queue" {
	seq 2 | jq -c '{n: .}' | aq-enqueue -q lk >/dev/null
	psql_aq "CREATE FUNCTION aq.refuse() RETURNS trigger LANGUAGE plpgsql AS
	    \$\$BEGIN RAISE EXCEPTION 'refused by a test trigger'; END\$\$;
	    CREATE TRIGGER refuse BEFORE UPDATE ON aq.jobs FOR EACH ROW EXECUTE FUNCTION aq.refuse()"
	start_bg sweep aq-sweep -q lk --every 100ms
	wait_for 100 grep -q 'refused by a test trigger' sweep.err
	# between its passes, the sweeper's session holds no lock
	wait_for 100 eval "[ \"\$(psql_aq \"SELECT (SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aq-sweep') || ' ' || (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory')\")\" = '1 0' ]"
	psql_aq "DROP TRIGGER refuse ON aq.jobs"
	wait_for 100 eval "[ \"\$(psql_aq \"SELECT count(*) FROM aq.jobs WHERE queue = 'lk' AND seen\")\" = 2 ]"
}

@test "a database in another encoding (LATIN1) gets the text as it is: the tools speak UTF-8 to PostgreSQL" {
	psql_aq "CREATE DATABASE latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" 2>/dev/null ||
	    psql_aq "SELECT 1 FROM pg_database WHERE datname = 'latin'" | grep -q 1
	export AQ_DATABASE_URL=${PG_URL/\/aq\?//latin?}
	psql_latin() { PGCLIENTENCODING=UTF8 "$PG_BIN/psql" "$AQ_DATABASE_URL" -qAt -c "$*"; }
	psql_latin 'DROP SCHEMA IF EXISTS aq CASCADE' 2>/dev/null
	aq-enqueue -q enc '{"w":"café"}' >enq
	assert_equal "$(psql_latin "SELECT payload->>'w' FROM aq.jobs")" café
	aq-worker -q enc --burst -- cat 2>/dev/null
	aq-sweep -q enc --retention 0 >/dev/null
	assert_equal "$(aq-status -q enc <enq | jq -r .result.w)" café
}

@test "eight enqueuers racing on one id with a ledger: one job in the ledger and in Redis, seven duplicates, one run" {
	aq-enqueue -q race '{"first":1}' >/dev/null # the schema
	for host in 1 2 3 4 5 6 7 8; do
		aq-enqueue -q race --id daily-2026-12-05 "{\"host\":$host}" >"fired.$host" 2>&1 &
	done
	wait
	cat fired.* >all
	assert_equal "$(jq -c 'select(.duplicate | not)' all | wc -l)" 1
	assert_equal "$(jq -c 'select(.duplicate == true)' all | wc -l)" 7
	assert_equal "$(psql_aq "SELECT count(*) FROM aq.jobs WHERE queue = 'race' AND id = 'daily-2026-12-05'")" 1
	assert_equal "$(rcli zcard 'aq:{race}:wait')" 2
	aq-worker -q race --burst -- cat >/dev/null 2>&1
	assert_equal "$(rcli hget 'aq:{race}:stats' succeeded)" 2
	# the payload is the winner's, in both places
	winner=$(jq -r 'select(.duplicate | not) | .id' all)
	[ "$winner" = daily-2026-12-05 ]
	assert_equal "$(aq-status -q race daily-2026-12-05 | jq -c .result)" \
	    "$(psql_aq "SELECT payload FROM aq.jobs WHERE id = 'daily-2026-12-05'")"
}

@test "a keyed enqueue that waits on the same id committed by another enqueuer reports a duplicate and leaves Redis alone" {
	aq-enqueue -q kc '{"first":1}' >/dev/null # the schema
	# another enqueuer's transaction, held open: its row is inserted, not
	# committed
	mkfifo sql
	"$PG_BIN/psql" "$PG_URL" -qAt <sql >psql.out 2>&1 &
	exec 7>sql
	echo "BEGIN; INSERT INTO aq.jobs (queue, id, status, payload, max_attempts) VALUES ('kc', 'k1', 'queued', '{\"by\":\"other\"}', 3); SELECT 'inserted';" >&7
	wait_for 100 grep -q inserted psql.out
	aq-enqueue -q kc --id k1 '{"by":"this"}' >enq 2>enq.err &
	pid=$!
	# it waits for that row's fate
	wait_for 100 eval "[ \"\$(psql_aq \"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aq-enqueue' AND wait_event_type = 'Lock'\")\" = 1 ]"
	echo "COMMIT;" >&7
	exec 7>&-
	rc=0
	wait "$pid" || rc=$?
	assert_equal "$rc" 0
	# the row committed while it waited was not in its statement's snapshot:
	# it must still be seen as the id's job, never enqueued a second time
	assert_equal "$(jq -c '[.id, .duplicate, .status]' enq)" '["k1",true,"queued"]'
	assert_equal "$(rcli exists 'aq:{kc}:job:k1')" 0
	assert_equal "$(psql_aq "SELECT payload->>'by' FROM aq.jobs WHERE id = 'k1'")" other
}
