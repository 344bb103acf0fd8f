#!/usr/bin/env bats
# tls.bats: a Redis that takes TLS only (tls-port, port 0), reached through
# stunnel set up as aq(7) TLS writes it: every tool works through it, the
# certificate is checked, rediss:// and the plain port are refused with a
# message that says what to do, and restarting stunnel under a worker loses
# no job.

load helpers

ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
HANDLERS=$(cd "$BATS_TEST_DIRNAME/handlers" && pwd)

# tls_redis_start: a TLS-only redis-server on a free port of 127.0.0.1, with
# a self-signed certificate for localhost and a password; exports TLS_DIR,
# TLS_PORT.
tls_redis_start() {
	local try
	TLS_DIR=$(mktemp -d /tmp/aq-tls.XXXXXX)
	export TLS_DIR
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
	    -addext subjectAltName=DNS:localhost -keyout "$TLS_DIR/redis.key" \
	    -out "$TLS_DIR/ca.crt" 2>/dev/null
	for try in 1 2 3 4 5; do
		TLS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
		redis-server --port 0 --bind 127.0.0.1 --tls-port "$TLS_PORT" \
		    --tls-cert-file "$TLS_DIR/ca.crt" --tls-key-file "$TLS_DIR/redis.key" \
		    --tls-ca-cert-file "$TLS_DIR/ca.crt" --tls-auth-clients no \
		    --requirepass s3cret --save '' --appendonly no --dir "$TLS_DIR" \
		    --daemonize yes --pidfile "$TLS_DIR/redis.pid" \
		    --logfile "$TLS_DIR/redis.log"
		if wait_for 50 tls_cli ping; then
			export TLS_PORT
			return 0
		fi
	done
	return 1
}
tls_cli() {
	redis-cli --tls --cacert "$TLS_DIR/ca.crt" --sni localhost -h 127.0.0.1 \
	    -p "$TLS_PORT" --no-auth-warning -a s3cret "$@"
}

# stunnel_conf [HOST]: aq(7)'s stunnel configuration, as the page prints it,
# pointed at this test's server, socket and CA, checking the name HOST.
stunnel_conf() {
	local me
	me=$(id -un)
	mandoc -Tutf8 "$ROOT/man/aq.7" | col -bx |
	    sed -n '/^ *; \/etc\/stunnel\/aq-redis.conf/,/^ *checkHost/p' |
	    sed -e 's/^ *//' \
	    -e "s#/run/aq/redis.sock#$TLS_DIR/redis.sock#" \
	    -e "s#redis.example.com:6380#127.0.0.1:$TLS_PORT#" \
	    -e "s#/etc/aq/redis-ca.crt#$TLS_DIR/ca.crt#" \
	    -e "s#^checkHost = redis.example.com#checkHost = ${1:-localhost}#" \
	    -e "s#^setuid = aq#setuid = $me#" -e "s#^setgid = aq#setgid = $(id -gn)#"
}

# stunnel_start [HOST]: run stunnel4 in the foreground, in the background,
# until its socket answers a PING (when HOST is the right name).
stunnel_start() {
	stunnel_conf "$@" >"$TLS_DIR/stunnel.conf"
	grep -q '^client = yes' "$TLS_DIR/stunnel.conf"
	stunnel4 "$TLS_DIR/stunnel.conf" >"$TLS_DIR/stunnel.log" 2>&1 3>&- &
	echo $! >"$TLS_DIR/stunnel.pid"
	wait_for 50 test -S "$TLS_DIR/redis.sock"
}
stunnel_stop() {
	local pid
	pid=$(cat "$TLS_DIR/stunnel.pid" 2>/dev/null) || return 0
	kill "$pid" 2>/dev/null
	wait_for 100 eval "! kill -0 $pid"
	rm -f "$TLS_DIR/stunnel.pid"
}

setup_file() {
	tls_redis_start
	export AQ_REDIS_URL="unix://:s3cret@$TLS_DIR/redis.sock"
}
teardown_file() {
	stunnel_stop
	kill "$(cat "$TLS_DIR/redis.pid")" 2>/dev/null
	wait_for 100 eval "! kill -0 $(cat "$TLS_DIR/redis.pid")"
	rm -rf "$TLS_DIR"
}
setup() {
	cd "$BATS_TEST_TMPDIR"
	tls_cli flushall >/dev/null
}
teardown() {
	show_logs_on_failure
	local pid
	for pid in $(cat "$BATS_TEST_TMPDIR"/*.pid 2>/dev/null); do
		kill -KILL "$pid" 2>/dev/null
	done
	stunnel_stop
}

@test "through stunnel as aq(7) sets it up: enqueue, a worker, status, events, sweep, health" {
	stunnel_start
	run tls_cli config get port
	assert_line 0   # no plain port: TLS only
	seq 20 | jq -c '{n: .}' | aq-enqueue -q t >ids
	aq-enqueue -q t --id watched '{"n":0}' >/dev/null
	aq-worker -q t -c 4 --burst -- "$HANDLERS/record" 2>err
	run aq-status -q t <ids
	assert_success
	[ "$(grep -c '"status":"succeeded"' <<<"$output")" = 20 ]
	run aq-subscribe -q t --job watched
	assert_success
	assert_line '{"type":"end","status":"succeeded"}'
	run aq-sweep -q t
	assert_success
	run aq-health -q t
	assert_success
	assert_output --partial '"succeeded":21'
	# and the TLS server saw them: connections came in over TLS
	tls_cli info stats | grep -q '^total_connections_received:[1-9]'
}

@test "stunnel checks the certificate: a name it does not match is a lost connection, exit 69" {
	stunnel_start other.example
	run aq-enqueue -q t '{}'
	assert_failure 69
	assert_output --partial 'aq-enqueue: '
	assert_output --partial "unix://:***@$TLS_DIR/redis.sock"
	refute_output --partial s3cret
	[ "$(tls_cli dbsize)" = 0 ]
	grep -q -i 'certificate\|verif\|host' "$TLS_DIR/stunnel.log"
}

@test "rediss:// is refused with a message that points at stunnel; the plain port of a TLS server is a connection error" {
	run aq-enqueue -u "rediss://:s3cret@127.0.0.1:$TLS_PORT" -q t '{}'
	assert_failure 64
	assert_output --partial 'rediss:// (TLS) is not supported'
	assert_output --partial 'stunnel'
	assert_output --partial 'aq(7) TLS'
	refute_output --partial s3cret
	AQ_REDIS_URL="redis://:s3cret@127.0.0.1:$TLS_PORT" run aq-enqueue -q t '{}'
	assert_failure 69
	assert_output --partial "redis://:***@127.0.0.1:$TLS_PORT"
	[ "$(tls_cli dbsize)" = 0 ]
}

@test "stunnel restarted under a running worker: the worker reconnects and every job succeeds once" {
	stunnel_start
	export RECORD=$BATS_TEST_TMPDIR/record
	aq-worker -q t -c 2 --backoff 10ms -- "$HANDLERS/record" 2>err 3>&- &
	echo $! >worker.pid
	seq 10 | jq -c '{n: .}' | aq-enqueue -q t >first
	wait_for 100 eval '[ "$(aq-status -q t <first | grep -c succeeded)" = 10 ]'
	stunnel_stop
	wait_for 100 grep -q 'lost' err
	stunnel_start
	# enqueued after the restart: the worker must have come back to run them
	wait_for 100 eval 'seq 11 20 | jq -c "{n: .}" | aq-enqueue -q t >second'
	wait_for 200 eval '[ "$(aq-status -q t <second | grep -c succeeded)" = 10 ]'
	kill -TERM "$(cat worker.pid)"
	wait_for 100 eval "! kill -0 $(cat worker.pid)"
	rm worker.pid
	# each job ran exactly once
	[ "$(wc -l <"$RECORD")" = 20 ]
	[ "$(cut -d' ' -f1 "$RECORD" | sort -u | wc -l)" = 20 ]
}
