#!/usr/bin/env bats
# nopq.bats: aq on a machine without PostgreSQL: no tool links libpq (it is
# loaded when a ledger is configured), so a ledger-off setup runs with libpq
# gone, and a ledger-on one says what is missing. "Gone" is a mount
# namespace in which libpq.so.5 is /dev/null, as on a machine that never
# had it.

load helpers

setup_file() { redis_start; }
teardown_file() { redis_stop; }
setup() {
	cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null
	unset AQ_DATABASE_URL AQ_DATABASE_URL_FILE
}

TOOLS="aq-enqueue aq-status aq-cancel aq-retry aq-queue aq-worker aq-sweep aq-publish aq-subscribe aq-health"

# without_libpq CMD...: run CMD where libpq.so.5 cannot be loaded (skips
# the test where a mount namespace cannot be made: not root)
without_libpq() {
	local lib
	lib=$(ldconfig -p 2>/dev/null | awk '$1 == "libpq.so.5" { print $NF; exit }')
	if [ -z "$lib" ]; then # not installed: nothing to hide
		"$@"
		return
	fi
	unshare -m true 2>/dev/null || skip "no mount namespace here (unshare -m needs root)"
	unshare -m sh -c 'mount --bind /dev/null "$1" && shift && exec "$@"' sh "$lib" "$@"
}

@test "no tool links libpq: it is loaded only when a ledger is configured" {
	command -v readelf >/dev/null || skip "readelf (binutils) is not installed"
	for t in $TOOLS; do
		run readelf -d "$AQ_BIN/$t"
		assert_success
		assert_output --partial 'NEEDED'
		refute_output --partial 'libpq' || fail "$t links libpq"
	done
}

@test "without libpq, a ledger-off setup runs every tool: enqueue, work, status, events, cancel, sweep, health" {
	cat >script <<-'EOF'
	set -e
	# libpq cannot be loaded here: the check that the test is what it says
	if python3 -c 'import ctypes; ctypes.CDLL("libpq.so.5")' 2>/dev/null; then
		echo "libpq.so.5 loads after all"; exit 1
	fi
	aq-enqueue -q off '{"a":1}' '{"a":2}' >enq
	aq-worker -q off --burst -- sh -c 'read p; echo "{\"got\":$p}"' 2>worker.err
	aq-status -q off <enq | jq -r .status | sort | uniq -c | xargs
	aq-subscribe -q off --job "$(jq -r .id enq | head -1)" | jq -r .type | tail -1
	aq-enqueue -q off --delay 1h '{}' | aq-cancel -q off | jq -r .status
	echo '{"n":1}' | aq-publish -q off --job "$(jq -r .id enq | head -1)"
	aq-sweep --retention 0 | jq -r .action | sort -u | xargs
	aq-health -q off 2>/dev/null | jq -c '[.status, .redis.reachable, .postgres]'
	EOF
	run without_libpq bash script
	assert_success
	assert_output - <<-'EOF'
	2 succeeded
	end
	cancelled
	trimmed
	["OK",true,null]
	EOF
	refute grep -qi 'postgres\|libpq' worker.err
}

@test "without libpq, a ledger-on setup stops before anything is enqueued, naming what is missing and its Debian package" {
	export AQ_DATABASE_URL="postgresql://aq@/aq?host=$BATS_TEST_TMPDIR"
	run without_libpq aq-enqueue -q on '{"a":1}'
	assert_failure 69
	assert_output --partial 'cannot load libpq.so.5, which the ledger needs (Debian: libpq5)'
	assert_equal "$(rcli exists 'aq:{on}:wait')" 0
	run without_libpq aq-sweep -q on
	assert_failure 69
	assert_output --partial 'cannot load libpq.so.5'
}
