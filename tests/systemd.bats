#!/usr/bin/env bats
# systemd.bats: the systemd units and the crontab lines of examples/ are
# valid (systemd-analyze verify, when it is installed), hold what they must,
# and run: the sweep's line sweeps the private redis-server, and the
# recurring job's line, fired by many hosts at once, enqueues its job once.

load helpers

ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
UNITS=$ROOT/examples/systemd
CRONTAB=$ROOT/examples/cron/aq-sweep.crontab
RECURRING=$ROOT/examples/cron/aq-recurring.crontab

setup_file() { redis_start; }
teardown_file() { redis_stop; }
setup() { cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null; }

# units_here: copies of the units in ./units, their ExecStart pointing at the
# tools just built and at /bin/true as the handler, since verify checks that
# each command exists and is executable.
units_here() {
	mkdir -p units
	cp "$UNITS"/* units/
	sed -i -e "s#/usr/local/bin/#$AQ_BIN/#g" \
	    -e 's#/usr/local/libexec/aq/%i-handler#/bin/true#' units/*
}

# key UNIT KEY: the value of KEY= in UNIT (the last one, as systemd takes it).
key() {
	sed -n "s/^$2=//p" "$UNITS/$1" | tail -1
}

@test "the units pass systemd-analyze verify" {
	command -v systemd-analyze >/dev/null || skip "no systemd-analyze"
	units_here
	# warnings (an unknown key, a bad value) are printed but do not change the
	# exit status, so the output must be empty too. --man=no: the man pages
	# of Documentation= are not installed here.
	SYSTEMD_LOG_LEVEL=warning run systemd-analyze verify --man=no \
	    units/aq-sweep.service units/aq-sweep.timer units/aq-worker@mail.service
	assert_success
	assert_output ''
	# and verify does catch a unit that is wrong
	sed -i 's/^KillMode=.*/KillMode=sometimes/' units/aq-worker@.service
	SYSTEMD_LOG_LEVEL=warning run systemd-analyze verify --man=no units/aq-worker@mail.service
	assert_output --partial 'kill mode'
}

@test "the units hold what the man pages say: a oneshot pass every minute, a worker per queue that drains on stop" {
	# checked by hand as well, for hosts without systemd-analyze
	for unit in aq-sweep.service aq-sweep.timer aq-worker@.service; do
		head -1 "$UNITS/$unit" | grep -q "^# $unit: "
		[ -n "$(key "$unit" Description)" ]
	done
	assert_equal "$(key aq-sweep.service Type)" oneshot
	assert_equal "$(key aq-sweep.service ExecStart)" /usr/local/bin/aq-sweep
	assert_equal "$(key aq-sweep.service EnvironmentFile)" -/etc/aq/aq.env
	assert_equal "$(key aq-sweep.timer OnCalendar)" minutely
	assert_equal "$(key aq-sweep.timer WantedBy)" timers.target
	exec_start=$(key aq-worker@.service ExecStart)
	[[ $exec_start == "/usr/local/bin/aq-worker -q %i "*" -- /usr/local/libexec/aq/%i-handler" ]]
	assert_equal "$(key aq-worker@.service EnvironmentFile)" -/etc/aq/aq.env
	assert_equal "$(key aq-worker@.service KillMode)" mixed
	assert_equal "$(key aq-worker@.service Restart)" on-failure
	# systemd waits longer than the grace and the 2 s after it
	grace=$(sed -n 's/.* --grace \([0-9]*\)s .*/\1/p' <<<"$exec_start")
	stop=$(key aq-worker@.service TimeoutStopSec)
	echo "grace ${grace}s, TimeoutStopSec=$stop" >&2
	((grace > 0 && stop > grace + 2))
}

@test "the crontab line has five time fields and a command, and the command sweeps" {
	mapfile -t entries < <(grep -v -e '^#' -e '^[[:space:]]*$' "$CRONTAB")
	assert_equal "${#entries[@]}" 1
	read -r -a f <<<"${entries[0]}"
	for i in 0 1 2 3 4; do
		[[ ${f[i]} =~ ^(\*|[0-9]+(-[0-9]+)?)(/[0-9]+)?(,(\*|[0-9]+(-[0-9]+)?)(/[0-9]+)?)*$ ]] ||
		    { echo "time field $((i + 1)) '${f[i]}' is not one of cron's" >&2; return 1; }
	done
	cmd=${entries[0]#"${f[0]} ${f[1]} ${f[2]} ${f[3]} ${f[4]} "}
	[ "$cmd" != "${entries[0]}" ]
	# % ends the command in a crontab: there must be none
	[[ $cmd != *%* ]]
	[[ $cmd == *"/usr/local/bin/aq-sweep"* ]]
	# run it as cron would (/bin/sh), with the tools built here, the URL in
	# a file, and a logger(1) that keeps the lines here
	printf '%s\n' "$AQ_REDIS_URL" >redis-url
	mkdir -p bin
	printf '#!/bin/sh\necho "logger $*" >>"%s/logged"\ncat >>"%s/logged"\n' \
	    "$BATS_TEST_TMPDIR" "$BATS_TEST_TMPDIR" >bin/logger
	chmod +x bin/logger
	cmd=${cmd//\/usr\/local\/bin\//$AQ_BIN/}
	cmd=${cmd//\/etc\/aq\/redis-url/$BATS_TEST_TMPDIR/redis-url}
	aq-enqueue -q cron --id done-1 '{}' >/dev/null
	aq-worker -q cron --burst -- true 2>/dev/null
	aq-enqueue -q cron --id due-1 --delay 1h '{}' >/dev/null
	rcli zadd 'aq:{cron}:delayed' XX 1000 due-1 >/dev/null
	run env -u AQ_REDIS_URL PATH="$BATS_TEST_TMPDIR/bin:$PATH" sh -c "$cmd"
	assert_success
	assert_output ''
	run cat logged
	assert_line 'logger -t aq-sweep'
	assert_line '{"queue":"cron","action":"promoted","id":"due-1"}'
	assert_equal "$(rcli hget 'aq:{cron}:job:due-1' status)" queued
}

@test "the recurring crontab line, fired by eight hosts at once, enqueues the hour's job once; it runs once" {
	mapfile -t entries < <(grep -v -e '^#' -e '^[[:space:]]*$' "$RECURRING")
	assert_equal "${#entries[@]}" 1
	read -r -a f <<<"${entries[0]}"
	cmd=${entries[0]#"${f[0]} ${f[1]} ${f[2]} ${f[3]} ${f[4]} "}
	# cron's own reading: an unescaped % would end the command, \% is a %
	[[ ${cmd//\\%/} != *%* ]]
	cmd=${cmd//\\%/%}
	printf '%s\n' "$AQ_REDIS_URL" >redis-url
	cmd=${cmd//\/usr\/local\/bin\//$AQ_BIN/}
	cmd=${cmd//\/etc\/aq\/redis-url/$BATS_TEST_TMPDIR/redis-url}
	cmd=${cmd%>/dev/null}
	before=hourly-report-$(date -u +%Y%m%dT%H)
	for host in 1 2 3 4 5 6 7 8; do
		env -u AQ_REDIS_URL sh -c "$cmd" >"fired.$host" 2>&1 &
	done
	wait
	cat fired.* >all
	after=hourly-report-$(date -u +%Y%m%dT%H)
	# the hour may have turned between two of them: then one job each hour
	hours=$(jq -r .id all | sort -u | wc -l)
	assert_equal "$(jq -r .id all | sort -u | grep -vcx -e "$before" -e "$after")" 0
	assert_equal "$(jq -c 'select(.duplicate | not)' all | wc -l)" "$hours"
	assert_equal "$(jq -c 'select(.duplicate == true)' all | wc -l)" $((8 - hours))
	assert_equal "$(rcli zcard 'aq:{reports}:wait')" "$hours"
	aq-worker -q reports --burst -- cat >/dev/null 2>&1
	assert_equal "$(rcli hget 'aq:{reports}:stats' succeeded)" "$hours"
}
