#!/usr/bin/env bats
# cluster.bats: aq on Redis Cluster (three primaries, three replicas, on
# private ports of 127.0.0.1): with a redis+cluster:// URL, queues in
# different slots are served by different nodes, every job completes, a
# worker follows its queue's slot when it moves during a run, and the tools
# that do not route by the slot map yet say so.

load helpers

HANDLERS=$(cd "$BATS_TEST_DIRNAME/handlers" && pwd)

# free_cluster_port: a port P of 127.0.0.1 free, with P + 10000 (its
# cluster bus) free too.
free_cluster_port() {
	python3 -c 'import socket
while True:
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    if p + 10000 > 65535: continue
    b = socket.socket()
    try: b.bind(("127.0.0.1", p + 10000))
    except OSError: continue
    print(p); break'
}

# node_start N: cluster node N on a free port (its port in $CL_DIR/N.port).
node_start() {
	local port try
	for try in 1 2 3 4 5; do
		port=$(free_cluster_port)
		mkdir -p "$CL_DIR/$1"
		redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
		    --cluster-config-file "$CL_DIR/$1/nodes.conf" --dir "$CL_DIR/$1" \
		    --save '' --appendonly no --daemonize yes \
		    --pidfile "$CL_DIR/$1/redis.pid" --logfile "$CL_DIR/$1/redis.log"
		if wait_for 100 redis-cli -p "$port" ping; then
			echo "$port" >"$CL_DIR/$1.port"
			return 0
		fi
	done
	return 1
}

port_of() { cat "$CL_DIR/$1.port"; }
ncli() { redis-cli -p "$(port_of "$1")" "${@:2}"; }

cluster_ok() {
	local n
	for n in 1 2 3 4 5 6; do
		ncli $n cluster info | grep -q '^cluster_state:ok' || return 1
	done
}

setup_file() {
	CL_DIR=$(mktemp -d /tmp/aq-cluster.XXXXXX)
	export CL_DIR
	for n in 1 2 3 4 5 6; do node_start $n; done
	redis-cli --cluster create $(for n in 1 2 3 4 5 6; do echo "127.0.0.1:$(port_of $n)"; done) \
	    --cluster-replicas 1 --cluster-yes >"$CL_DIR/create.log" 2>&1
	wait_for 300 cluster_ok
}

teardown_file() {
	stop_pidfiles "$CL_DIR"/*/redis.pid
	rm -rf "$CL_DIR"
}

setup() {
	cd "$BATS_TEST_TMPDIR"
	wait_for 300 cluster_ok
	AQ_REDIS_URL="redis+cluster://127.0.0.1:$(port_of 1),127.0.0.1:$(port_of 2)"
	export AQ_REDIS_URL
	for n in 1 2 3 4 5 6; do
		[ "$(ncli $n role | head -1)" != master ] || ncli $n flushall >/dev/null
	done
	chaos_env
}

teardown() {
	show_logs_on_failure
	kill_started
	return 0
}

# owner SLOT: the port of the primary that serves SLOT (CLUSTER NODES).
owner() {
	ncli 1 cluster nodes | awk -v s="$1" '$3 ~ /master/ {
	    for (i = 9; i <= NF; i++) {
	        n = split($i, r, "-")
	        if (n == 1) r[2] = r[1]
	        if ($i !~ /^\[/ && s + 0 >= r[1] + 0 && s + 0 <= r[2] + 0) {
	            split($2, a, "[:@]"); print a[2]; exit
	        }
	    }
	}'
}

slot_of() { ncli 1 cluster keyslot "aq:{$1}:wait"; }

# stat Q FIELD: a counter of queue Q, asked of the node that serves it.
stat() { redis-cli -c -p "$(port_of 1)" hget "aq:{$1}:stats" "$2"; }

@test "queues in different slots live on different primaries, and every job completes" {
	# a, b and c hash to slots 15495, 3300 and 7365: one per primary
	owners=$(for q in a b c; do owner "$(slot_of $q)"; done | sort -u | wc -l)
	assert_equal "$owners" 3
	for q in a b c; do
		seq 1 100 | sed 's/.*/{"n":&}/' | aq-enqueue -q $q >"enq.$q"
		assert_equal "$(wc -l <"enq.$q")" 100
	done
	for q in a b c; do start_worker $q -q $q -c 4 --burst -- cat; done
	for q in a b c; do
		wait_for 300 eval "[ \"\$(stat $q succeeded)\" = 100 ]"
		# the keys are on the node that serves the slot, none elsewhere
		assert_equal "$(redis-cli -p "$(owner "$(slot_of $q)")" hget "aq:{$q}:stats" enqueued)" 100
	done
	assert_equal "$(redis-cli -c -p "$(port_of 1)" smembers aq:queues | sort | paste -sd' ')" "a b c"
}

# move_slot SLOT TO_PORT: migrate SLOT, key by key, to the primary TO_PORT.
move_slot() {
	local from to keys p
	from=$(owner "$1")
	src=$(redis-cli -p "$from" cluster myid)
	dst=$(redis-cli -p "$2" cluster myid)
	redis-cli -p "$2" cluster setslot "$1" importing "$src" >/dev/null
	redis-cli -p "$from" cluster setslot "$1" migrating "$dst" >/dev/null
	while keys=$(redis-cli -p "$from" cluster getkeysinslot "$1" 10 | paste -sd' ') && [ -n "$keys" ]; do
		# shellcheck disable=SC2086
		redis-cli -p "$from" migrate 127.0.0.1 "$2" "" 0 5000 keys $keys >/dev/null
	done
	for p in "$2" "$from"; do redis-cli -p "$p" cluster setslot "$1" node "$dst" >/dev/null; done
	for n in 1 2 3 4 5 6; do ncli $n cluster setslot "$1" node "$dst" >/dev/null 2>&1 || true; done
}

@test "a slot moved during a run: the worker follows it, a job held across it succeeds once, every job succeeds" {
	slot=$(slot_of m)
	from=$(owner "$slot")
	to=$(for n in 1 2 3 4 5 6; do p=$(port_of $n); [ "$(redis-cli -p "$p" role | head -1)" = master ] && [ "$p" != "$from" ] && echo "$p"; done | head -1)
	aq-enqueue -q m --id held '{"hold":true,"sleep":0}' >/dev/null
	seq 1 200 | sed 's/.*/{"n":&}/' | aq-enqueue -q m >/dev/null
	start_worker 1 -q m -c 4 --lease 20s -- "$HANDLERS/chaos"
	wait_for 100 grep -q '^held 1 start' "$CHAOS_LOG"
	wait_for 100 eval "[ \$(grep -c ' end ' '$CHAOS_LOG') -ge 20 ]"
	move_slot "$slot" "$to"
	assert_equal "$(owner "$slot")" "$to"
	wait_for 300 grep -q "the cluster serves the queue from 127.0.0.1:$to now" "$BATS_TEST_TMPDIR/worker.1.err"
	touch "$LOCKS/release"
	wait_for 600 eval "[ \"\$(stat m succeeded)\" = 201 ]"
	assert_equal "$(grep -c '^held .* start' "$CHAOS_LOG")" 1
	assert_equal "$(redis-cli -p "$to" hget 'aq:{m}:job:held' attempt)" 1
	assert_equal "$(cat "$OVERLAPS")" ""
	kill -0 "$(worker_pid 1)"
	stop_worker 1
	assert_equal "$(cat "$BATS_TEST_TMPDIR/worker.1.rc")" 0
}

# replica_of PORT: the port of a replica of the primary PORT.
replica_of() {
	local id
	id=$(redis-cli -p "$1" cluster myid)
	ncli 1 cluster nodes | awk -v id="$id" '$3 ~ /slave/ && $4 == id { split($2, a, "[:@]"); print a[2]; exit }'
}

@test "a CLUSTER FAILOVER during a run: the worker follows its queue to the new primary, every job succeeds once at a time" {
	slot=$(slot_of f)
	old=$(owner "$slot")
	new=$(replica_of "$old")
	[ -n "$new" ]
	seq 1 200 | sed 's/.*/{"n":&}/' | aq-enqueue -q f >/dev/null
	start_worker 1 -q f -c 4 --lease 10s --replicas 1 -- "$HANDLERS/chaos"
	start_worker 2 -q f -c 4 --lease 10s --replicas 1 -- "$HANDLERS/chaos"
	wait_for 100 eval "[ \$(grep -c ' end ' '$CHAOS_LOG') -ge 20 ]"
	run redis-cli -p "$new" cluster failover
	assert_output OK
	wait_for 300 eval "[ \"\$(owner $slot)\" = $new ]"
	wait_for 300 grep -q "the cluster serves the queue from 127.0.0.1:$new now" "$BATS_TEST_TMPDIR/worker.1.err"
	wait_for 900 eval "[ \"\$(stat f succeeded)\" = 200 ]"
	assert_equal "$(cat "$OVERLAPS")" ""
	kill -0 "$(worker_pid 1)"
	kill -0 "$(worker_pid 2)"
}

@test "aq-status, aq-cancel, aq-retry and aq-queue: ids and queues of several nodes in one run" {
	for q in a b c; do aq-enqueue -q $q --id "$q-1" '{}' >/dev/null; done
	aq-enqueue -q a --id a-2 --max-attempts 1 '{"exit":3}' >/dev/null
	# one line per job, each naming its queue, in input order
	run aq-status <<-EOF
	{"id":"a-1","queue":"a"}
	{"id":"b-1","queue":"b"}
	{"id":"c-1","queue":"c"}
	EOF
	assert_success
	assert_equal "$(jq -r '.id + " " + .status' <<<"$output" | paste -sd,)" "a-1 queued,b-1 queued,c-1 queued"
	run aq-cancel <<-EOF
	{"id":"b-1","queue":"b"}
	{"id":"c-1","queue":"c"}
	EOF
	assert_success
	run aq-queue show -q a -q b -q c
	assert_success
	assert_equal "$(jq -r '.queue + " " + (.waiting|tostring)' <<<"$output" | paste -sd,)" "a 2,b 0,c 0"
	run aq-worker -q a --burst -- sh -c 'cat >/dev/null; exit 3'
	run aq-status -q a --state failed
	assert_equal "$(jq -r .id <<<"$output")" a-2
	run aq-retry -q a --all
	assert_success
	assert_output --partial '"id":"a-2"'
	assert_equal "$(aq-status -q a a-2 | jq -r .status)" queued
	run aq-queue pause -q b -q c
	assert_success
	assert_equal "$(redis-cli -c -p "$(port_of 1)" smembers aq:queues | sort | paste -sd' ')" "a b c"
}

@test "a tool that does not route by the slot map yet refuses a cluster URL: exit 64, saying so" {
	for cmd in aq-health aq-sweep; do
		tool=${cmd%% *}
		# shellcheck disable=SC2086
		run $cmd
		assert_failure 64
		assert_output --partial "$tool: redis+cluster:// (from AQ_REDIS_URL): this tool does not route by the slot map yet"
	done
}
