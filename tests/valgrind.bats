#!/usr/bin/env bats
# valgrind.bats: the tools' normal paths free everything and touch no
# uninitialised memory, under valgrind's memcheck (skipped without valgrind).

load helpers

setup_file() { redis_start; }
export VG_SUPP=$BATS_TEST_DIRNAME/valgrind.supp
teardown_file() { redis_stop; }
teardown() { pg_stop; }
setup() {
	command -v valgrind >/dev/null || skip "valgrind is not installed"
	[ -z "${AQ_SANITIZED:-}" ] || skip "sanitizer builds do not run under valgrind"
	cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null
}

vg() {
	valgrind -q --leak-check=full --show-leak-kinds=all \
	    --errors-for-leak-kinds=all --error-exitcode=99 \
	    --suppressions="$VG_SUPP" "$@"
}

@test "aq-enqueue: stdin lines, good and bad, and arguments, leak nothing" {
	run bash -c "$(declare -f vg); { seq 1 500; echo bad; } | vg aq-enqueue -q vg >jobs"
	assert_failure 65
	run bash -c "$(declare -f vg); vg aq-enqueue -q vg --id k --delay 1m --priority 2 '{\"a\":1}'"
	assert_success
	run bash -c "$(declare -f vg); vg aq-enqueue -q vg --id k '{}'"
	assert_success
	assert_output --partial '"duplicate":true'
}

@test "aq-status: found, unknown and bad lines leak nothing" {
	seq 1 300 | aq-enqueue -q vg >jobs
	run bash -c "$(declare -f vg); { cat jobs; echo unknown-id; echo 'bad id'; } | vg aq-status -q vg >/dev/null"
	assert_failure 65
	run bash -c "$(declare -f vg); vg aq-status -q vg \$(head -1 jobs | jq -r .id)"
	assert_success
}

@test "usage and connection errors exit cleanly under valgrind" {
	run bash -c "$(declare -f vg); vg aq-enqueue --priority 5000 '{}'"
	assert_failure 64
	run bash -c "$(declare -f vg); vg aq-status -u unix:///nonexistent/redis.sock x"
	assert_failure 69
}

@test "the ledger's paths (enqueue, archive, restore, trim, fallback reads, health) leak nothing" {
	pg_start || skip "Debian's postgresql package is not installed"
	export AQ_DATABASE_URL=$PG_URL
	run bash -c "$(declare -f vg); seq 1 300 | jq -c '{n: .}' | vg aq-enqueue -q vgl >jobs"
	assert_success
	run bash -c "$(declare -f vg); vg aq-enqueue -q vgl --id k '{}' && vg aq-enqueue -q vgl --id k '{}'"
	assert_success
	aq-worker -q vgl --burst -- sh -c 'read p; echo one; echo "$p"' 2>/dev/null
	run bash -c "$(declare -f vg); vg aq-sweep --retention 0 >/dev/null"
	assert_success
	run bash -c "$(declare -f vg); vg aq-status -q vgl k nosuch"
	assert_failure 1
	assert_output --partial '"status":"succeeded"'
	run bash -c "$(declare -f vg); vg aq-subscribe -q vgl --job k"
	assert_success
	run bash -c "$(declare -f vg); vg aq-health -q vgl >/dev/null"
	assert_success
	aq-enqueue -q vgl '{}' >/dev/null
	rcli flushall >/dev/null
	# the job just enqueued may be on its way from aq-enqueue: restored once
	# past --restore-grace
	run bash -c "$(declare -f vg); vg aq-sweep --restore-grace 1ms"
	assert_success
	assert_output --partial '"action":"restored"'
	pg_stop
}

@test "flow control, dependencies and aq-run leak nothing" {
	run bash -c "$(declare -f vg); vg aq-queue limit -q vgf --rate 100/1s --concurrency 2 && vg aq-queue show -q vgf"
	assert_success
	assert_output --partial '"limits":'
	aq-enqueue -q vgf --id p '{"n":1}' >/dev/null
	run bash -c "$(declare -f vg); vg aq-enqueue -q vgf --id c --after p '{\"n\":2}' && vg aq-enqueue -q vgf --after nosuch '{}'"
	assert_failure 65
	run bash -c "$(declare -f vg); vg aq-status -q vgf c"
	assert_success
	assert_output --partial '"waiting_for":["p"]'
	# the parent's first run asks for a throttle hold; the burst worker waits it out
	run bash -c "$(declare -f vg); vg aq-worker -q vgf --burst -c 2 -- sh -c 'read j; if mkdir once 2>/dev/null; then echo \"{\\\"retry_after\\\":0.2}\"; exit 69; fi; echo \"\$j\"' 2>worker.err"
	assert_success
	assert_equal "$(aq-status -q vgf p c | jq -r .status | sort -u)" succeeded
	run bash -c "$(declare -f vg); vg aq-health -q vgf >/dev/null"
	assert_success
	run bash -c "$(declare -f vg); printf '1\nbad\n2\n' | vg aq-run -c 2 --max-attempts 2 --backoff 10ms -- sh -c '[ \"\$AQ_ATTEMPT\" = 2 ] || exit 75; cat' >records 2>run.err"
	assert_failure 65
	assert_equal "$(jq -r .status records | sort -u)" succeeded
	run bash -c "$(declare -f vg); printf '1\n2\n' | vg aq-run --lines -- jq --unbuffered -c . >records"
	assert_success
}
