#!/usr/bin/env bats
# docs.bats: the man pages are clean mdoc, and the examples in them and in the
# README's tour run as written; the demo runs and stops its own server.

load helpers

setup_file() { redis_start; }
teardown_file() { redis_stop; }

ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)

# The "$ command" lines of a rendered man page's EXAMPLES section.
man_examples() {
	mandoc -Tutf8 "$1" | col -bx | awk '
		/^[A-Z][A-Z ]*$/ { in_ex = ($0 == "EXAMPLES"); next }
		in_ex && /^ +\$ / { sub(/^ +\$ /, ""); print }'
}

# The "$ command" lines of the README's ```sh blocks.
readme_examples() {
	awk '/^```sh$/ { in_sh = 1; next } /^```$/ { in_sh = 0 }
		in_sh && /^\$ / { sub(/^\$ /, ""); print }' "$ROOT/README.md"
}

# run_examples: run each line of stdin with bash in a scratch directory;
# fail naming the first command that exits non-zero.
run_examples() {
	local cmd n=0
	cd "$BATS_TEST_TMPDIR"
	while IFS= read -r cmd; do
		n=$((n + 1))
		if ! bash -c "$cmd" </dev/null >"$BATS_TEST_TMPDIR/out" 2>&1; then
			echo "example failed: $cmd" >&2
			cat "$BATS_TEST_TMPDIR/out" >&2
			return 1
		fi
	done
	echo "$n"
}

@test "every man page is clean under mandoc -Tlint" {
	for page in "$ROOT"/man/*.[17]; do
		run mandoc -Tlint -Wwarning "$page"
		assert_success
		assert_output ''
	done
}

@test "every tool has a man page and its usage matches the SYNOPSIS options" {
	for tool in "$AQ_BIN"/aq-*; do
		name=$(basename "$tool")
		[ -e "$ROOT/man/$name.1" ]
		for opt in $("$tool" -h | grep -o -- '--[a-z-]*' | sort -u); do
			grep -q -- "Fl ${opt#-}" "$ROOT/man/$name.1" ||
			    grep -q -- "Fl \\\\-${opt#--}" "$ROOT/man/$name.1" ||
			    { echo "$name: $opt not in its man page" >&2; return 1; }
		done
	done
}

@test "the examples of aq-enqueue(1) run as written" {
	rcli flushall >/dev/null
	run bash -c "$(declare -f man_examples run_examples); BATS_TEST_TMPDIR='$BATS_TEST_TMPDIR'; man_examples '$ROOT/man/aq-enqueue.1' | run_examples"
	assert_success
	(( output > 0 ))
}

@test "the examples of aq-status(1) run as written" {
	rcli flushall >/dev/null
	run bash -c "$(declare -f man_examples run_examples); BATS_TEST_TMPDIR='$BATS_TEST_TMPDIR'; man_examples '$ROOT/man/aq-status.1' | run_examples"
	assert_success
	(( output > 0 ))
}

@test "the examples of aq-cancel(1) run as written" {
	rcli flushall >/dev/null
	run bash -c "$(declare -f man_examples run_examples); BATS_TEST_TMPDIR='$BATS_TEST_TMPDIR'; man_examples '$ROOT/man/aq-cancel.1' | run_examples"
	assert_success
	(( output > 0 ))
}

@test "the examples of aq-retry(1) run as written" {
	rcli flushall >/dev/null
	run bash -c "$(declare -f man_examples run_examples); BATS_TEST_TMPDIR='$BATS_TEST_TMPDIR'; man_examples '$ROOT/man/aq-retry.1' | run_examples"
	assert_success
	(( output > 0 ))
}

@test "the examples of aq-queue(1) run as written" {
	rcli flushall >/dev/null
	run bash -c "$(declare -f man_examples run_examples); BATS_TEST_TMPDIR='$BATS_TEST_TMPDIR'; man_examples '$ROOT/man/aq-queue.1' | run_examples"
	assert_success
	(( output > 0 ))
}

@test "the examples of aq-worker(1) run as written" {
	rcli flushall >/dev/null
	run bash -c "$(declare -f man_examples run_examples); BATS_TEST_TMPDIR='$BATS_TEST_TMPDIR'; man_examples '$ROOT/man/aq-worker.1' | run_examples"
	assert_success
	(( output > 0 ))
}

@test "the examples of aq-run(1) run as written, with no Redis" {
	run env AQ_REDIS_URL=unix:///nonexistent/redis.sock bash -c "$(declare -f man_examples run_examples); BATS_TEST_TMPDIR='$BATS_TEST_TMPDIR'; man_examples '$ROOT/man/aq-run.1' | run_examples"
	assert_success
	(( output >= 3 ))
}

@test "the examples of aq-publish(1) run as written" {
	rcli flushall >/dev/null
	run bash -c "$(declare -f man_examples run_examples); BATS_TEST_TMPDIR='$BATS_TEST_TMPDIR'; man_examples '$ROOT/man/aq-publish.1' | run_examples"
	assert_success
	(( output > 0 ))
}

@test "the examples of aq-subscribe(1) run as written" {
	rcli flushall >/dev/null
	run bash -c "$(declare -f man_examples run_examples); BATS_TEST_TMPDIR='$BATS_TEST_TMPDIR'; man_examples '$ROOT/man/aq-subscribe.1' | run_examples"
	assert_success
	(( output > 0 ))
}

@test "the examples of aq-health(1) run as written" {
	rcli flushall >/dev/null
	run bash -c "$(declare -f man_examples run_examples); BATS_TEST_TMPDIR='$BATS_TEST_TMPDIR'; man_examples '$ROOT/man/aq-health.1' | run_examples"
	assert_success
	(( output > 0 ))
}

@test "the examples of aq(7) run as written, the ledger's against a private PostgreSQL" {
	rcli flushall >/dev/null
	pg_start
	# each example runs in a shell of its own: the export the page shows is
	# made here, with the private server's URL
	run env AQ_DATABASE_URL="$PG_URL" PATH="$PG_BIN:$PATH" bash -c "$(declare -f man_examples run_examples); BATS_TEST_TMPDIR='$BATS_TEST_TMPDIR'; man_examples '$ROOT/man/aq.7' | grep -v '^export AQ_DATABASE_URL=' | run_examples"
	pg_stop
	assert_success
	(( output >= 8 ))
}

@test "the README's tour runs as written" {
	rcli flushall >/dev/null
	run bash -c "$(declare -f readme_examples run_examples); ROOT='$ROOT'; BATS_TEST_TMPDIR='$BATS_TEST_TMPDIR'; readme_examples | run_examples"
	assert_success
	(( output >= 5 ))
}

@test "the README starts with the two commands: make demo and make check" {
	run head -8 "$ROOT/README.md"
	assert_output --partial 'make demo'
	assert_output --partial 'make check'
}

@test "the demo runs on its own private redis-server and stops it" {
	run env -u AQ_REDIS_URL sh "$ROOT/examples/demo"
	assert_success
	assert_output --partial 'a private redis-server (pid '
	assert_output --partial '"duplicate":true'
	pid=$(sed -n 's/.*redis-server (pid \([0-9]*\)).*/\1/p' <<<"$output")
	wait_for 50 eval "! kill -0 $pid"
}

@test "the demo uses AQ_REDIS_URL when it is set" {
	run sh "$ROOT/examples/demo"
	assert_success
	refute_output --partial 'a private redis-server'
	assert [ "$(rcli keys 'aq:{demo-*}:wait' | wc -l)" -ge 1 ]
}
