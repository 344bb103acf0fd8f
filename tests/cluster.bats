#!/usr/bin/env bats
# cluster.bats: aq on Redis Cluster (three primaries, three replicas, on
# private ports of 127.0.0.1): with a redis+cluster:// URL, queues in
# different slots are served by different nodes, every job completes, a
# worker follows its queue's slot when it moves during a run or a replica
# takes over, aq-sweep and aq-health work on every node, and one node down
# does not stop them on the others.

load helpers
bats_require_minimum_version 1.5.0

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
	pg_stop
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

# begin_move SLOT TO_PORT: mark SLOT as migrating to the primary TO_PORT.
begin_move() {
	local from src dst
	from=$(owner "$1")
	src=$(redis-cli -p "$from" cluster myid)
	dst=$(redis-cli -p "$2" cluster myid)
	redis-cli -p "$2" cluster setslot "$1" importing "$src" >/dev/null
	redis-cli -p "$from" cluster setslot "$1" migrating "$dst" >/dev/null
}

# finish_move SLOT TO_PORT: move the keys of SLOT, then the slot itself.
finish_move() {
	local from dst keys p n
	from=$(owner "$1")
	dst=$(redis-cli -p "$2" cluster myid)
	while keys=$(redis-cli -p "$from" cluster getkeysinslot "$1" 10 | paste -sd' ') && [ -n "$keys" ]; do
		# shellcheck disable=SC2086
		redis-cli -p "$from" migrate 127.0.0.1 "$2" "" 0 5000 keys $keys >/dev/null
	done
	for p in "$2" "$from"; do redis-cli -p "$p" cluster setslot "$1" node "$dst" >/dev/null; done
	for n in 1 2 3 4 5 6; do ncli $n cluster setslot "$1" node "$dst" >/dev/null 2>&1 || true; done
}

# move_slot SLOT TO_PORT: migrate SLOT, key by key, to the primary TO_PORT.
move_slot() {
	begin_move "$@"
	finish_move "$@"
}

# other_primary PORT: the port of a primary other than PORT.
other_primary() {
	local n p
	for n in 1 2 3 4 5 6; do
		p=$(port_of $n)
		[ "$(redis-cli -p "$p" role | head -1)" = master ] && [ "$p" != "$1" ] && echo "$p" && return
	done
}

# errors_of PORT KIND: how many KIND error replies (ASK, MOVED...) the
# server on PORT has given (INFO errorstats).
errors_of() {
	redis-cli -p "$1" info errorstats | tr -d '\r' |
	    awk -F'[=,]' -v k="errorstat_$2:count" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }'
}

@test "one-shot tools ride out a slot migration: aq-enqueue waits while the slot moves, then follows MOVED; nothing lost, nothing twice" {
	slot=$(slot_of e)
	from=$(owner "$slot")
	to=$(other_primary "$from")
	aq-enqueue -q e --id first '{}' >/dev/null
	# an aq-status that reads ids as they come, and the map before the move
	mkfifo ids
	start_bg st sh -c "exec aq-status -q e <ids"
	exec 5>ids
	echo first >&5
	wait_for 100 grep -q '"id":"first"' "$BATS_TEST_TMPDIR/st.out"
	begin_move "$slot" "$to"
	asks=$(( $(errors_of "$from" ASK) + $(errors_of "$from" TRYAGAIN) ))
	start_bg enq sh -c 'seq 1 500 | sed "s/.*/{\"n\":&}/" | aq-enqueue -q e'
	# refused while the slot migrates (some of the script's keys are
	# there, its new ones not: TRYAGAIN; none: ASK)
	wait_for 100 eval "[ \$(( \$(errors_of $from ASK) + \$(errors_of $from TRYAGAIN) )) -gt $asks ]"
	kill -0 "$(pid_of enq)"
	finish_move "$slot" "$to"
	finish enq 300
	assert_equal "$(rc_of enq)" 0
	assert_equal "$(wc -l <"$BATS_TEST_TMPDIR/enq.out")" 500
	[ "$(errors_of "$from" MOVED)" -gt 0 ]
	run aq-queue show -q e
	assert_success
	assert_equal "$(jq .waiting <<<"$output")" 501
	assert_equal "$(redis-cli -p "$to" zcard 'aq:{e}:wait')" 501
	# the aq-status that started before the move follows MOVED
	echo first >&5
	exec 5>&-
	finish st
	assert_equal "$(rc_of st)" 0
	assert_equal "$(jq -r .status "$BATS_TEST_TMPDIR/st.out" | paste -sd' ')" "queued queued"
	# new ones find the job on its new node
	run aq-status -q e first
	assert_success
	assert_equal "$(jq -r .status <<<"$output")" queued
	run aq-cancel -q e first
	assert_success
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

@test "aq-publish and aq-subscribe: a channel, and the events of jobs on two nodes" {
	start_bg sub aq-subscribe --count 2 news
	wait_for 100 eval '[ "$(for n in 1 2 3 4 5 6; do ncli $n pubsub numsub aq:chan:news | tail -1; done | awk "{ s += \$1 } END { print s }")" = 1 ]'
	echo '{"a":1}' | aq-publish news
	echo '{"a":2}' | aq-publish news
	finish sub
	assert_equal "$(rc_of sub)" 0
	assert_equal "$(jq -c '[.channel, .data]' "$BATS_TEST_TMPDIR/sub.out" | paste -sd' ')" '["news",{"a":1}] ["news",{"a":2}]'
	for q in a c; do
		aq-enqueue -q $q --id "$q-e" '{}' >/dev/null
		echo '{"step":1}' | aq-publish -q $q --job "$q-e"
		aq-worker -q $q --burst -- cat >/dev/null
		run --separate-stderr aq-subscribe -q $q --job "$q-e"
		assert_success
		assert_equal "$(jq -r 'select(.type == "event") | .data.step' <<<"$output")" 1
		assert_equal "${lines[-1]}" '{"type":"end","status":"succeeded"}'
	done
}

# status_of Q ID: the status of job ID of queue Q, asked through the cluster.
status_of() { aq-status -q "$1" "$2" | jq -r .status; }

@test "aq-sweep: expired leases on three nodes are recovered in one pass, dead workers forgotten, finished jobs trimmed" {
	for q in a b c; do
		aq-enqueue -q $q --id "$q-done" '{}' >/dev/null
		aq-enqueue -q $q --id "$q-k" '{}' >/dev/null
	done
	for q in a b c; do aq-worker -q $q --max-jobs 1 -- cat >/dev/null; done
	for q in a b c; do
		start_bg "w$q" aq-worker -q $q --lease 1s --worker-id "w-$q" -- sh -c 'sleep 30'
	done
	for q in a b c; do wait_for 100 eval "[ \"\$(status_of $q $q-k)\" = running ]"; done
	for q in a b c; do kill -KILL "$(pid_of "w$q")"; done
	# each pass prints what it did; poll until the leases and heartbeats expired
	wait_for 100 eval 'aq-sweep --retention 0 >>passes.out && [ "$(grep -c recovered passes.out)" = 3 ] && [ "$(grep -c worker_removed passes.out)" = 3 ]'
	for q in a b c; do
		grep -qx "{\"queue\":\"$q\",\"action\":\"recovered\",\"id\":\"$q-k\",\"status\":\"queued\"}" passes.out
		grep -qx "{\"queue\":\"$q\",\"action\":\"worker_removed\",\"worker\":\"w-$q\"}" passes.out
		grep -qx "{\"queue\":\"$q\",\"action\":\"trimmed\",\"id\":\"$q-done\"}" passes.out
		assert_equal "$(status_of $q $q-k)" queued
	done
}

# registry_port: the port of the primary that serves aq:queues.
registry_port() { owner "$(ncli 1 cluster keyslot aq:queues)"; }

@test "aq-sweep with a ledger: archives the queues of three nodes; a node that lost its data gets its jobs back, and the registry on another node learns of them" {
	pg_bin >/dev/null || skip "Debian's postgresql package is not installed"
	pg_start
	export AQ_DATABASE_URL=$PG_URL
	# a queue with unfinished jobs, served by another node than the registry
	for q in b c; do
		[ "$(owner "$(slot_of $q)")" != "$(registry_port)" ] && lost=$q && break
	done
	for q in a b c; do seq 1 5 | jq -c '{n: .}' | aq-enqueue -q $q >/dev/null; done
	aq-worker -q a --burst -- cat >/dev/null
	run aq-sweep
	assert_success
	assert_equal "$(psql_aq "SELECT queue, status, count(*) FROM aq.jobs GROUP BY 1, 2 ORDER BY 1, 2" | paste -sd' ')" \
	    "a|succeeded|5 b|queued|5 c|queued|5"
	redis-cli -p "$(owner "$(slot_of $lost)")" flushall >/dev/null
	redis-cli -p "$(registry_port)" srem aq:queues "$lost" >/dev/null
	run aq-sweep
	assert_success
	assert_equal "$(grep -c "\"queue\":\"$lost\",\"action\":\"restored\"" <<<"$output")" 5
	refute_output --regexp '"queue":"[^"]*","action":"restored".*"queue":"[^'"$lost"']'
	assert_equal "$(redis-cli -c -p "$(port_of 1)" smembers aq:queues | sort | paste -sd' ')" "a b c"
	# a second pass restores nothing: each queue's ledger key records its node
	run aq-sweep
	assert_success
	refute_output --partial restored
	for q in b c; do aq-worker -q $q --burst -- cat >/dev/null; done
	run aq-sweep
	assert_success
	assert_equal "$(psql_aq "SELECT queue, status, count(*) FROM aq.jobs GROUP BY 1, 2 ORDER BY 1, 2" | paste -sd' ')" \
	    "a|succeeded|5 b|succeeded|5 c|succeeded|5"
}

@test "aq-health reports each primary of the cluster, and the queues of each from its node" {
	for q in a b c; do seq 1 3 | jq -c '{n: .}' | aq-enqueue -q $q >/dev/null; done
	run --separate-stderr aq-health
	assert_success
	assert_equal "$stderr" "aq-health: OK: 3 queues, 0 live workers"
	assert_equal "$(jq -r '.redis.reachable' <<<"$output")" true
	assert_equal "$(jq '.redis.nodes | length' <<<"$output")" 3
	assert_equal "$(jq '[.redis.nodes[].slots] | add' <<<"$output")" 16384
	assert_equal "$(jq -r '[.redis.nodes[] | .reachable, .cluster_state | tostring] | unique | join(" ")' <<<"$output")" "ok true"
	assert_equal "$(jq -r '.redis.nodes[] | .node' <<<"$output" | sort | paste -sd' ')" \
	    "$(for q in a b c; do echo "127.0.0.1:$(owner "$(slot_of $q)")"; done | sort | paste -sd' ')"
	assert_equal "$(jq -r '.queues[] | .queue + " " + (.waiting|tostring)' <<<"$output" | paste -sd,)" "a 3,b 3,c 3"
	run --separate-stderr aq-health --prometheus
	assert_success
	assert_equal "$(grep -c '^aq_redis_node_up{node="127.0.0.1:[0-9]*"} 1$' <<<"$output")" 3
	assert_line 'aq_up 1'
	assert_line 'aq_queue_waiting{queue="b"} 3'
}

# This test stops a primary for good: it comes last.
@test "a primary down: aq-health is CRITICAL naming it and reports the other queues; aq-sweep sweeps the other nodes and exits 69" {
	for n in 1 2 3 4 5 6; do ncli $n config set cluster-require-full-coverage no >/dev/null; done
	for q in a b c; do aq-enqueue -q $q --id "$q-1" '{}' >/dev/null; done
	for q in a c; do aq-worker -q $q --burst -- cat >/dev/null; done
	dead=$(owner "$(slot_of b)")
	# its replica must not take over during the test
	redis-cli -p "$(replica_of "$dead")" config set cluster-replica-no-failover yes >/dev/null
	redis-cli -p "$dead" shutdown nosave || true
	wait_for 100 eval "! redis-cli -p $dead ping"
	# -q: the registry, aq:queues, may be on the node that is down
	run --separate-stderr aq-health -q a -q b -q c
	assert_failure 2
	assert_equal "$(jq -r '.redis.reachable' <<<"$output")" false
	assert_equal "$(jq -r ".redis.nodes[] | select(.node == \"127.0.0.1:$dead\") | .reachable" <<<"$output")" false
	assert_equal "$(jq -r '.queues[] | .queue' <<<"$output" | paste -sd' ')" \
	    "$(for q in a c; do [ "$(owner "$(slot_of $q)")" = "$dead" ] || echo $q; done | paste -sd' ')"
	assert_equal "$(jq -r '.status' <<<"$output")" CRITICAL
	assert_equal "$stderr" "aq-health: CRITICAL: redis at $AQ_REDIS_URL: 127.0.0.1:$dead, a node of the cluster: Connection refused ($(jq -r ".redis.nodes[] | select(.node == \"127.0.0.1:$dead\") | .slots" <<<"$output") slots); queue b: no figures: its node 127.0.0.1:$dead does not answer"
	run --separate-stderr aq-sweep -q a -q b -q c --retention 0
	assert_failure 69
	assert_equal "$stderr" "aq-sweep: cannot connect to redis at $AQ_REDIS_URL: 127.0.0.1:$dead, a node of the cluster: Connection refused"
	# the queues of the other nodes were swept
	assert_equal "$(jq -r '.queue + " " + .action + " " + .id' <<<"$output" | paste -sd,)" "a trimmed a-1,c trimmed c-1"
	run aq-sweep -q a -q c
	assert_success
	assert_output ""
}
