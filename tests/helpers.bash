# helpers.bash: what every bats file loads: bats-support and bats-assert, aq's
# bin/ first on PATH, and a private redis-server on a unix socket per file.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

AQ_BIN=${AQ_BIN:-$(cd "$BATS_TEST_DIRNAME/.." && pwd)/bin}
PATH="$AQ_BIN:$PATH"
export PATH AQ_BIN
unset AQ_QUEUE AQ_PREFIX AQ_REDIS_URL_FILE AQ_WORKER_ID

# wait_for TRIES CMD...: run CMD every 0.1 s until it succeeds, at most TRIES
# times; fails (and says what it waited for) when it never does.
wait_for() {
	local tries=$1 i
	shift
	for ((i = 0; i < tries; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "gave up waiting for: $*" >&2
	return 1
}

# redis_start [ARGS...]: start a private redis-server in a new temp dir (short
# path: unix socket paths are limited to 107 bytes) and export REDIS_DIR,
# REDIS_SOCK and AQ_REDIS_URL. Extra ARGS go to redis-server.
redis_start() {
	REDIS_DIR=$(mktemp -d /tmp/aq-test.XXXXXX)
	REDIS_SOCK=$REDIS_DIR/redis.sock
	export REDIS_DIR REDIS_SOCK AQ_REDIS_URL="unix://$REDIS_SOCK"
	redis_run "$@"
}

# redis_run [ARGS...]: (re)start the server of REDIS_DIR, wait until it answers.
redis_run() {
	redis-server --port 0 --unixsocket "$REDIS_SOCK" --unixsocketperm 700 \
	    --save '' --appendonly no --dir "$REDIS_DIR" --daemonize yes \
	    --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" "$@"
	wait_for 100 redis-cli -s "$REDIS_SOCK" ping
}

# redis_kill: stop the server by its pid and wait until it is gone.
redis_kill() {
	local pid
	pid=$(cat "$REDIS_DIR/redis.pid" 2>/dev/null) || return 0
	kill "$pid" 2>/dev/null || return 0
	wait_for 100 eval "! kill -0 $pid"
}

# redis_stop: redis_kill, then remove its directory.
redis_stop() {
	[ -n "${REDIS_DIR:-}" ] || return 0
	redis_kill
	rm -rf "$REDIS_DIR"
}

rcli() {
	redis-cli -s "$REDIS_SOCK" "$@"
}

# redis_is VALUE COMMAND...: the reply of COMMAND is VALUE (for wait_for,
# which must run the command on every try).
redis_is() {
	local want=$1
	shift
	[ "$(rcli "$@")" = "$want" ]
}

# enqueue_ids: the ids of aq-enqueue's output lines in $output, one a line.
ids_of() {
	jq -r .id <<<"$1"
}

# start_worker NAME ARGS...: run aq-worker ARGS in the background; its pid
# goes to worker.NAME.pid and its stderr to worker.NAME.err (in the test's
# temp dir). A test file's teardown kills what is left.
start_worker() {
	local name=$1
	shift
	aq-worker "$@" 2>"$BATS_TEST_TMPDIR/worker.$name.err" &
	echo $! >"$BATS_TEST_TMPDIR/worker.$name.pid"
}

worker_pid() { cat "$BATS_TEST_TMPDIR/worker.$1.pid"; }

# stop_worker NAME: SIGTERM, then wait for it (bounded); its exit status is
# left in worker.NAME.rc.
stop_worker() {
	local pid rc=0
	pid=$(worker_pid "$1")
	kill -TERM "$pid" 2>/dev/null
	wait_for 150 eval "! kill -0 $pid 2>/dev/null"
	wait "$pid" || rc=$?
	echo "$rc" >"$BATS_TEST_TMPDIR/worker.$1.rc"
}

job_is() { # job_is QUEUE ID STATUS
	[ "$(aq-status -q "$1" "$2" | jq -r .status)" = "$3" ]
}

# start_bg NAME CMD...: run CMD in the background, its stdout and stderr in
# NAME.out and NAME.err and its pid in NAME.pid, in the test's temp dir
# (fd 3, bats' own, is closed so bats does not wait for it).
start_bg() {
	local name=$1
	shift
	"$@" >"$BATS_TEST_TMPDIR/$name.out" 2>"$BATS_TEST_TMPDIR/$name.err" 3>&- &
	echo $! >"$BATS_TEST_TMPDIR/$name.pid"
}

# pid_of NAME, rc_of NAME: the pid of what start_bg started as NAME, and
# the exit status finish (or a test's own stop) left in NAME.rc.
pid_of() { cat "$BATS_TEST_TMPDIR/$1.pid"; }
rc_of() { cat "$BATS_TEST_TMPDIR/$1.rc"; }

# finish NAME [TRIES]: wait, bounded (TRIES tenths of a second, 15 s by
# default), for NAME to exit by itself; its exit status goes to NAME.rc.
# Fails when it is still running.
finish() {
	local pid rc=0
	pid=$(pid_of "$1")
	wait_for "${2:-150}" eval "! kill -0 $pid" || return 1
	wait "$pid" || rc=$?
	echo "$rc" >"$BATS_TEST_TMPDIR/$1.rc"
}

# show_logs_on_failure: in a teardown, when the test failed, the last lines
# of what the tools it started said (NAME.err, worker.NAME.err), so that a
# failure in CI says why.
show_logs_on_failure() {
	[ -z "${BATS_TEST_COMPLETED:-}" ] || return 0
	local f
	for f in "$BATS_TEST_TMPDIR"/*.err; do
		[ -s "$f" ] || continue
		echo "# --- ${f##*/}"
		tail -n 40 "$f"
	done >&2
}

# kill_started [--children]: SIGKILL what start_bg (or a NAME.pid file of
# the test's temp dir) started and is still running, stopped or not (with
# --children, its children first), and reap it: a teardown's first step.
kill_started() {
	local f pid
	for f in "$BATS_TEST_TMPDIR"/*.pid; do
		[ -e "$f" ] || continue
		pid=$(cat "$f")
		[ "${1:-}" != --children ] || pkill -KILL -P "$pid" 2>/dev/null
		{ kill -CONT "$pid"; kill -KILL "$pid" && wait "$pid"; } 2>/dev/null || true
	done
}

# chaos_env: the files of the chaos handler (tests/handlers/chaos) in the
# test's temp dir: LOCKS, OVERLAPS and CHAOS_LOG, exported and empty.
chaos_env() {
	export LOCKS=$BATS_TEST_TMPDIR/locks OVERLAPS=$BATS_TEST_TMPDIR/overlaps
	export CHAOS_LOG=$BATS_TEST_TMPDIR/chaos.log
	mkdir -p "$LOCKS"
	: >"$OVERLAPS"
	: >"$CHAOS_LOG"
}

# stop_pidfiles PIDFILE...: SIGTERM each server of a pid file (daemonized
# redis-servers of a file's setup), then wait, bounded, until all are gone.
stop_pidfiles() {
	local f
	for f in "$@"; do
		[ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
	done
	for f in "$@"; do
		[ -f "$f" ] && wait_for 100 eval "! kill -0 $(cat "$f") 2>/dev/null"
	done
	return 0
}

# redis_plain_again: after a test that stopped Redis, or ran it with an
# append-only file, the plain server again for the tests after it.
redis_plain_again() {
	if [ -d "$REDIS_DIR/appendonlydir" ] || ! rcli ping >/dev/null 2>&1; then
		redis_kill
		rm -rf "$REDIS_DIR/appendonlydir"
		redis_run
	fi
}

# pg_bin: the directory of Debian's PostgreSQL server programs (initdb,
# pg_ctl), the newest when several versions are installed.
pg_bin() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

# as_pg CMD...: run CMD as the owner of the private server: the postgres
# user when we are root (initdb refuses root), ourselves otherwise.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# pg_start: a private PostgreSQL in a new temp dir, on a unix socket there
# only (no TCP), trusting local connections; exports PG_DIR and PG_URL (a
# database "aq" owned by the superuser "aq"). Tests that need it skip
# without Debian's postgresql package.
pg_start() {
	local bin
	bin=$(pg_bin) || return 1
	PG_DIR=$(mktemp -d /tmp/aq-pg.XXXXXX)
	export PG_DIR PG_BIN=$bin PG_URL="postgresql://aq@/aq?host=$PG_DIR"
	[ "$(id -u)" != 0 ] || chown postgres "$PG_DIR"
	as_pg "$bin/initdb" -D "$PG_DIR/data" -U aq -A trust -E UTF8 --locale=C \
	    --no-sync >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; return 1; }
	pg_run
	as_pg "$bin/psql" -h "$PG_DIR" -U aq -d postgres -qAtc 'CREATE DATABASE aq' >/dev/null
}

# pg_run: (re)start the server of PG_DIR and wait until it accepts connections.
pg_run() {
	# fd 3 is bats' own: a server holding it would keep bats waiting
	as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
	    -o "-k $PG_DIR -c listen_addresses= -c fsync=off -c full_page_writes=off" \
	    start >/dev/null 3>&-
}

# pg_kill: stop the server (fast shutdown) and wait until it is gone.
pg_kill() {
	[ -n "${PG_DIR:-}" ] && [ -e "$PG_DIR/data/postmaster.pid" ] || return 0
	as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 60 stop >/dev/null
}

# pg_stop: pg_kill, then remove its directory.
pg_stop() {
	[ -n "${PG_DIR:-}" ] || return 0
	pg_kill
	rm -rf "$PG_DIR"
}

# psql_aq SQL...: run SQL in the test database, unaligned, tuples only.
psql_aq() {
	"$PG_BIN/psql" "$PG_URL" -qAt -v ON_ERROR_STOP=1 -c "$*"
}
