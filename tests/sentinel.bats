#!/usr/bin/env bats
# sentinel.bats: aq under Redis Sentinel (a primary, a replica, three
# sentinels on private ports of 127.0.0.1): the tools find the primary
# through redis+sentinel:// URLs, say what each sentinel answered when none
# names it, refuse a server that is not the primary, and a failover in the
# middle of a run loses no job: the workers follow the new primary with
# their handlers running. aq-enqueue --replicas waits for replicas (WAIT).

load helpers

HANDLERS=$(cd "$BATS_TEST_DIRNAME/handlers" && pwd)

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# data_start NAME [ARGS...]: a redis-server on a free TCP port of 127.0.0.1
# (its port in $SEN_DIR/NAME.port), with ARGS (--replicaof ...). A port
# taken between its choice and the server's bind is chosen again.
data_start() {
	local name=$1 port try
	shift
	for try in 1 2 3 4 5; do
		port=$(free_port)
		redis-server --port "$port" --bind 127.0.0.1 --save '' \
		    --appendonly no --dir "$SEN_DIR" --dbfilename "$name.rdb" \
		    --daemonize yes --pidfile "$SEN_DIR/$name.pid" \
		    --logfile "$SEN_DIR/$name.log" "$@"
		if wait_for 100 redis-cli -p "$port" ping; then
			echo "$port" >"$SEN_DIR/$name.port"
			return 0
		fi
	done
	return 1
}

# sentinel_start N: the sentinel number N, watching the primary "aqm".
sentinel_start() {
	local port try
	for try in 1 2 3 4 5; do
		port=$(free_port)
		cat >"$SEN_DIR/s$1.conf" <<-EOF
		port $port
		bind 127.0.0.1
		daemonize yes
		pidfile $SEN_DIR/s$1.pid
		logfile $SEN_DIR/s$1.log
		dir $SEN_DIR
		sentinel monitor aqm 127.0.0.1 $(cat "$SEN_DIR/a.port") 2
		sentinel down-after-milliseconds aqm 2000
		sentinel failover-timeout aqm 10000
		EOF
		redis-server "$SEN_DIR/s$1.conf" --sentinel
		if wait_for 100 redis-cli -p "$port" ping; then
			echo "$port" >"$SEN_DIR/s$1.port"
			return 0
		fi
	done
	return 1
}

scli() { redis-cli -p "$(cat "$SEN_DIR/s$1.port")" "${@:2}"; }

# primary_port: the port the sentinels name for aqm now.
primary_port() { scli 1 sentinel get-master-addr-by-name aqm | sed -n 2p; }

# replica_port: the other data server's port.
replica_port() {
	local a b p
	a=$(cat "$SEN_DIR/a.port")
	b=$(cat "$SEN_DIR/b.port")
	p=$(primary_port)
	if [ "$p" = "$a" ]; then echo "$b"; else echo "$a"; fi
}

# in_sync: the replica follows the primary the sentinels name, its link is
# up, and every sentinel knows it as a replica it could promote.
in_sync() {
	local p r n
	p=$(primary_port)
	r=$(replica_port)
	[ "$(redis-cli -p "$p" role | head -1)" = master ] &&
	    redis-cli -p "$r" info replication | grep -q "^master_port:$p" &&
	    redis-cli -p "$r" info replication | grep -q '^master_link_status:up' || return 1
	for n in 1 2 3; do
		[ "$(scli $n sentinel get-master-addr-by-name aqm | sed -n 2p)" = "$p" ] &&
		    scli $n sentinel replicas aqm | grep -qx "127.0.0.1:$r" &&
		    [ "$(scli $n sentinel replicas aqm | grep -A1 -x flags | tail -1)" = slave ] ||
		    return 1
	done
}

setup_file() {
	SEN_DIR=$(mktemp -d /tmp/aq-sentinel.XXXXXX)
	export SEN_DIR
	data_start a
	data_start b --replicaof 127.0.0.1 "$(cat "$SEN_DIR/a.port")"
	wait_for 100 eval "redis-cli -p $(cat "$SEN_DIR/b.port") info replication | grep -q master_link_status:up"
	for n in 1 2 3; do sentinel_start $n; done
	wait_for 300 in_sync
}

teardown_file() {
	stop_pidfiles "$SEN_DIR"/*.pid
	rm -rf "$SEN_DIR"
}

setup() {
	cd "$BATS_TEST_TMPDIR"
	wait_for 300 in_sync
	AQ_REDIS_URL="redis+sentinel://127.0.0.1:$(cat "$SEN_DIR/s1.port"),127.0.0.1:$(cat "$SEN_DIR/s2.port"),127.0.0.1:$(cat "$SEN_DIR/s3.port")/aqm"
	export AQ_REDIS_URL
	redis-cli -p "$(primary_port)" flushall >/dev/null
	chaos_env
}

teardown() {
	show_logs_on_failure
	kill_started
	return 0
}

@test "every tool finds the primary through the sentinels" {
	run aq-enqueue -q s '{"n":1}' '{"n":2}'
	assert_success
	id=$(ids_of "$output" | head -1)
	assert_equal "$(redis-cli -p "$(primary_port)" zcard 'aq:{s}:wait')" 2
	run aq-worker -q s --burst -- cat
	assert_success
	run aq-status -q s "$id"
	assert_success
	assert_equal "$(jq -r .status <<<"$output")" succeeded
	run aq-queue show -q s
	assert_success
	assert_output --partial '"waiting":0'
	run aq-sweep -q s
	assert_success
	run aq-health
	assert_success
	assert_output --partial "\"url\":\"$AQ_REDIS_URL\""
	assert_output --partial "\"primary\":\"127.0.0.1:$(primary_port)\""
	aq-enqueue -q s --id c1 --delay 1h '{}' >/dev/null
	run aq-cancel -q s c1
	assert_success
	run aq-subscribe -q s --job c1
	assert_failure 1
	assert_output --partial cancelled
	start_bg sub aq-subscribe --count 1 news
	wait_for 100 eval "[ \"\$(redis-cli -p \$(primary_port) pubsub numsub aq:chan:news | tail -1)\" = 1 ]"
	echo '{"a":1}' | aq-publish news
	finish sub
	assert_equal "$(rc_of sub)" 0
	grep -qF '"a":1' "$BATS_TEST_TMPDIR/sub.out"
}

@test "no sentinel names the primary: exit 69, with what each one said and what to do" {
	p1=$(cat "$SEN_DIR/s1.port")
	data=$(primary_port)
	dead=$(free_port)
	run aq-enqueue -u "redis+sentinel://127.0.0.1:$dead,127.0.0.1:$data,127.0.0.1:$p1/nosuch" '{}'
	assert_failure 69
	assert_output --partial "no sentinel named the primary nosuch (127.0.0.1:$dead: Connection refused; "
	assert_output --partial "127.0.0.1:$data: ERR unknown command"
	assert_output --partial "(is it a sentinel?); 127.0.0.1:$p1: monitors no primary of that name)"
	assert_output --partial "the URL is in --redis-url"
	run aq-worker -u "redis+sentinel://127.0.0.1:$dead/aqm" --burst -- cat
	assert_failure 69
}

@test "a server the sentinels name that is not a primary is refused: exit 69, nothing written" {
	scli 1 sentinel monitor stale 127.0.0.1 "$(replica_port)" 1
	url="redis+sentinel://127.0.0.1:$(cat "$SEN_DIR/s1.port")/stale"
	run aq-enqueue -u "$url" '{}'
	assert_failure 69
	assert_output --partial "127.0.0.1:$(replica_port), which the sentinels name primary stale, is a slave: a failover is under way"
	run aq-worker -u "$url" -q s -- cat
	assert_failure 69
	assert_output --partial "is a slave: a failover is under way"
	scli 1 sentinel remove stale
	assert_equal "$(redis-cli -p "$(replica_port)" dbsize)" 0
}

@test "aq-enqueue --replicas: waits until replicas have the jobs, exit 75 when too few do" {
	run aq-enqueue -q r --replicas 1 '{"n":1}' '{"n":2}'
	assert_success
	assert_equal "$(redis-cli -p "$(replica_port)" zcard 'aq:{r}:wait')" 2
	run aq-enqueue -q r --replicas 2 --replicas-timeout 200ms '{"n":3}'
	assert_failure 75
	assert_output --partial '"status":"queued"'
	assert_output --partial "aq-enqueue: arguments 1-1: enqueued, but 1 of 2 replicas acknowledged them within 200 ms (--replicas-timeout): a failover now could lose them"
	run aq-enqueue -q r --replicas-timeout 1s '{}'
	assert_failure 64
	assert_output --partial -- '--replicas-timeout goes with --replicas'
	run aq-enqueue -q r --replicas 0 '{}'
	assert_failure 64
}

@test "aq-enqueue --replicas: the script is loaded again when Redis forgets it (NOSCRIPT)" {
	fifo=$BATS_TEST_TMPDIR/fifo
	mkfifo "$fifo"
	aq-enqueue -q ns --replicas 1 <"$fifo" >"$BATS_TEST_TMPDIR/out" &
	pid=$!
	exec 5>"$fifo"
	seq 1 10 >&5
	wait_for 50 eval "[ \"\$(redis-cli -p $(replica_port) zcard 'aq:{ns}:wait')\" = 10 ]"
	redis-cli -p "$(primary_port)" script flush >/dev/null
	seq 11 20 >&5
	exec 5>&-
	wait "$pid"
	assert_equal "$(redis-cli -p "$(replica_port)" zcard 'aq:{ns}:wait')" 20
	assert_equal "$(wc -l <"$BATS_TEST_TMPDIR/out")" 20
}

@test "aq-worker --replicas: a job starts once the replicas have its claim; with too few, it goes back unstarted" {
	aq-enqueue -q w --id j1 '{"sleep":0}' >/dev/null
	start_worker 2 -q w --lease 5s --replicas 2 -- "$HANDLERS/chaos"
	wait_for 100 grep -q "1 job claimed but not on 2 replicas within 500 ms: back on the queue, unstarted" "$BATS_TEST_TMPDIR/worker.2.err"
	stop_worker 2
	assert_equal "$(cat "$CHAOS_LOG")" ""
	run aq-status -q w j1
	assert_equal "$(jq -r '.status + " " + (.attempt|tostring)' <<<"$output")" "queued 0"
	run aq-worker -q w --lease 5s --replicas 1 --burst -- "$HANDLERS/chaos"
	assert_success
	job_is w j1 succeeded
	assert_equal "$(grep -c '^j1 1 start' "$CHAOS_LOG")" 1
}

# silent_start N: N listeners on free ports that take connections and never
# answer (sentinels behind a black hole); their ports in $SEN_DIR/silent.
silent_start() {
	local i
	: >"$SEN_DIR/silent"
	for ((i = 0; i < $1; i++)); do
		start_bg "silent$i" python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
print(s.getsockname()[1], flush=True); time.sleep(600)'
		wait_for 100 test -s "$BATS_TEST_TMPDIR/silent$i.out"
		cat "$BATS_TEST_TMPDIR/silent$i.out" >>"$SEN_DIR/silent"
	done
}

# kill_aq_clients: the primary drops every client but the sentinels'.
kill_aq_clients() {
	local p id
	p=$(primary_port)
	for id in $(redis-cli -p "$p" client list | grep -v 'name=sentinel-' |
	    grep -v 'cmd=client' | sed -n 's/^id=\([0-9]*\) .*/\1/p'); do
		redis-cli -p "$p" client kill id "$id" >/dev/null
	done
}

@test "silent sentinels are passed over, and do not hold up a worker: its lease lives through a reconnect" {
	silent_start 5
	url="redis+sentinel://$(sed 's/^/127.0.0.1:/' "$SEN_DIR/silent" | paste -sd,),127.0.0.1:$(cat "$SEN_DIR/s1.port")/aqm"
	run aq-enqueue -u "$url" -q q --id held '{"hold":true,"sleep":0}'
	assert_success
	start_worker 1 -u "$url" -q q --lease 9s -- "$HANDLERS/chaos"
	wait_for 200 grep -q '^held 1 start' "$CHAOS_LOG"
	# every reconnect asks five silent sentinels first (0.5 s each): the
	# three connections must not take turns at it on the worker's loop,
	# or the lease (renewed every 3 s, the handler stopped at 6 s) is gone
	kill_aq_clients
	wait_for 300 grep -q "the command connection to redis at .* is back" "$BATS_TEST_TMPDIR/worker.1.err"
	wait_for 300 grep -q "back in touch with redis: still holding the leases of 1 job; 0 lost" "$BATS_TEST_TMPDIR/worker.1.err"
	touch "$LOCKS/release"
	wait_for 300 job_is q held succeeded
	assert_equal "$(grep -c '^held .* start' "$CHAOS_LOG")" 1
	stop_worker 1
}

# all_succeeded Q N: the primary the sentinels name has N jobs of Q, all
# succeeded, none waiting or running.
all_succeeded() {
	local p
	p=$(primary_port)
	[ "$(redis-cli -p "$p" hget "aq:{$1}:stats" enqueued)" = "$2" ] &&
	    [ "$(redis-cli -p "$p" zcard "aq:{$1}:wait")" = 0 ] &&
	    [ "$(redis-cli -p "$p" zcard "aq:{$1}:active")" = 0 ] &&
	    [ "$(redis-cli -p "$p" zcard "aq:{$1}:delayed")" = 0 ] &&
	    [ "$(aq-status -q "$1" $(cat ids) | jq -r .status | sort -u)" = succeeded ]
}

@test "a failover during a run: the workers follow the new primary, a job held across it succeeds once, every job succeeds" {
	old=$(primary_port)
	aq-enqueue -q f --id held --replicas 1 '{"hold":true,"sleep":0}' >/dev/null
	seq 1 200 | sed 's/.*/{"n":&}/' | aq-enqueue -q f --replicas 1 >enq
	{ echo held; ids_of "$(cat enq)"; } >ids
	# --replicas 1: a claim the old primary takes after the promotion
	# never starts, so no job runs twice at once
	start_worker 1 -q f -c 4 --lease 10s --replicas 1 -- "$HANDLERS/chaos"
	start_worker 2 -q f -c 4 --lease 10s --replicas 1 -- "$HANDLERS/chaos"
	start_bg sweep aq-sweep -q f --every 1s
	# the held job runs, and the replica has its claim
	wait_for 100 grep -q '^held 1 start' "$CHAOS_LOG"
	wait_for 100 eval "redis-cli -p $(replica_port) zscore 'aq:{f}:active' held | grep -q ."
	wait_for 100 eval "[ \$(grep -c ' end ' '$CHAOS_LOG') -ge 20 ]"
	# asked of the last sentinel of the URL: the others hear of it up to
	# 2 s later, and would name the old primary to a worker that asked them
	run scli 3 sentinel failover aqm
	assert_output OK
	wait_for 300 eval "[ \"\$(primary_port)\" != $old ]"
	# the old primary is made a replica; the workers follow the new one
	wait_for 600 eval "redis-cli -p $old role | head -1 | grep -qx slave"
	for w in 1 2; do
		grep -q "giving up the command connection to redis at .*: the sentinels switched primary aqm to 127.0.0.1:$(primary_port); reconnecting" "$BATS_TEST_TMPDIR/worker.$w.err"
		wait_for 600 grep -q "back in touch with redis" "$BATS_TEST_TMPDIR/worker.$w.err"
	done
	touch "$LOCKS/release"
	wait_for 900 all_succeeded f 201
	# the held job ran once, its handler across the failover
	assert_equal "$(grep -c '^held .* start' "$CHAOS_LOG")" 1
	run aq-status -q f held
	assert_equal "$(jq -r .attempt <<<"$output")" 1
	# both workers lived through it, and nothing ran twice at once
	kill -0 "$(worker_pid 1)"
	kill -0 "$(worker_pid 2)"
	assert_equal "$(cat "$OVERLAPS")" ""
	stop_worker 1
	stop_worker 2
	assert_equal "$(cat "$BATS_TEST_TMPDIR/worker.1.rc")" 0
	assert_equal "$(cat "$BATS_TEST_TMPDIR/worker.2.rc")" 0
}
