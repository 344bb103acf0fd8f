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
