#!/usr/bin/env bats
# errors.bats: the errors a new user meets, tool by tool: Redis unreachable
# or at a malformed URL, a refused password, a handler that cannot be run,
# a reader that goes away (| head -1), bad options. Each message says what
# failed and what to do; each loop says which tool failed.

load helpers

TOOLS=(aq-enqueue aq-status aq-cancel aq-retry aq-queue aq-worker aq-sweep aq-publish aq-subscribe aq-health)

setup_file() { redis_start; }
teardown_file() { redis_stop; }
setup() { cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null; }
teardown() {
	show_logs_on_failure
	# whatever failed: no pipeline of this test lives on, no password stays
	kill_started --children
	if [ -e "$BATS_TEST_TMPDIR/requirepass" ]; then
		redis-cli -s "$REDIS_SOCK" --no-auth-warning -a "$(cat "$BATS_TEST_TMPDIR/requirepass")" \
		    config set requirepass '' >/dev/null
	fi
	rcli acl deluser alice >/dev/null 2>&1
	return 0
}

# args_of TOOL: what the tool needs besides the option under test to do
# something small and end (options first: aq-worker's command comes last).
args_of() {
	case $1 in
	aq-enqueue) echo "{}" ;;
	aq-status | aq-cancel | aq-retry) echo "some-id" ;;
	aq-queue) echo "show" ;;
	aq-worker) echo "--burst -- true" ;;
	aq-publish) echo "chan" ;;
	aq-subscribe) echo "chan --timeout 5s" ;;
	*) ;;
	esac
}

# try TOOL OPTION...: run TOOL with OPTIONs and its args_of, stdin empty,
# bounded by 30 s (a tool stuck in a retry loop fails with 124).
try() {
	local tool=$1
	shift
	# shellcheck disable=SC2046 # args_of is split on purpose
	run timeout 30 "$tool" "$@" $(args_of "$tool") </dev/null
}

# expect TOOL STATUS TEXT...: the last run exited STATUS and its output
# holds each TEXT; else say which tool failed and how.
expect() {
	local tool=$1 want=$2 t
	shift 2
	if [ "$status" != "$want" ]; then
		echo "$tool: exit $status, want $want; it said: $output" >&2
		return 1
	fi
	for t in "$@"; do
		if [[ $output != *"$t"* ]]; then
			echo "$tool: the message lacks '$t'; it said: $output" >&2
			return 1
		fi
	done
}

# expect_not TOOL TEXT: the output of the last run does not hold TEXT.
expect_not() {
	if [[ $output == *"$2"* ]]; then
		echo "$1: the message shows '$2': $output" >&2
		return 1
	fi
}

# status_down TOOL: what the tool exits with when Redis is not usable:
# aq-health reports CRITICAL (2), the monitoring-plugin way.
status_down() { [ "$1" = aq-health ] && echo 2 || echo "$2"; }

# ---- 1. Redis unreachable, or at a malformed URL --------------------------

@test "unreachable: a unix socket that does not exist: every tool exits 69 saying so and what to do" {
	url="unix://$BATS_TEST_TMPDIR/none.sock"
	for tool in "${TOOLS[@]}"; do
		try "$tool" -u "$url"
		expect "$tool" "$(status_down "$tool" 69)" \
		    "$tool: " "redis at $url" "No such file or directory" \
		    "the socket $BATS_TEST_TMPDIR/none.sock does not exist" \
		    "is redis-server running there? if it runs elsewhere, give its URL in --redis-url"
	done
}

@test "unreachable: TCP connection refused: every tool exits 69 saying so and where the URL came from" {
	for tool in "${TOOLS[@]}"; do
		AQ_REDIS_URL=redis://127.0.0.1:1 try "$tool"
		expect "$tool" "$(status_down "$tool" 69)" \
		    "redis at redis://127.0.0.1:1: Connection refused; is redis-server running there? if it runs elsewhere, give its URL in AQ_REDIS_URL"
	done
}

@test "unreachable: a socket path that is a plain file, or a socket nobody listens on, is named as such" {
	: >plain
	run aq-status -u "unix://$BATS_TEST_TMPDIR/plain" x
	expect aq-status 69 "$BATS_TEST_TMPDIR/plain is not a socket; is redis-server running there?"
	# a socket left behind by a server that is gone
	python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$BATS_TEST_TMPDIR/stale.sock"
	run aq-enqueue -u "unix://$BATS_TEST_TMPDIR/stale.sock" '{}'
	expect aq-enqueue 69 "Connection refused: nothing listens on the socket"
}

@test "a malformed Redis URL is a usage error (64) for every tool, naming its source, never its password" {
	echo 'unix://:hunter2@relative/path' >bad-url
	for tool in "${TOOLS[@]}"; do
		try "$tool" -u 'http://localhost'
		expect "$tool" 64 "$tool: invalid Redis URL (from --redis-url): URL must start with redis://, unix://, redis+sentinel:// or redis+cluster://" \
		    "want redis://[[user]:password@]host[:port][/db], unix://[[user]:password@]/path[?db=N], redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/name[/db] or redis+cluster://[[user]:password@]host[:port][,host[:port]...] (aq(7) CONFIGURATION)"
		AQ_REDIS_URL='redis://:hunter2@h:99999' try "$tool"
		expect "$tool" 64 "invalid Redis URL (from AQ_REDIS_URL): "
		expect_not "$tool" hunter2
		try "$tool" --redis-url-file bad-url
		expect "$tool" 64 "invalid Redis URL (from --redis-url-file bad-url): unix socket path must be absolute"
		expect_not "$tool" hunter2
		AQ_REDIS_URL= AQ_REDIS_URL_FILE=$BATS_TEST_TMPDIR/bad-url try "$tool"
		expect "$tool" 64 "invalid Redis URL (from AQ_REDIS_URL_FILE $BATS_TEST_TMPDIR/bad-url)"
		try "$tool" --redis-url-file missing-file
		expect "$tool" 66 "cannot open the Redis URL file missing-file (--redis-url-file): No such file or directory"
	done
	assert_equal "$(rcli dbsize)" 0
}

# ---- 2. a refused password ------------------------------------------------

@test "a wrong password: every tool exits 77 saying it was refused and where it is set, never showing it" {
	rcli acl setuser alice on '>s3cret' '~*' '&*' '+@all' >/dev/null
	aq-enqueue -q default --id waiting '{}' >/dev/null
	for tool in "${TOOLS[@]}"; do
		AQ_REDIS_URL="unix://alice:wr0ng-pw@$REDIS_SOCK" try "$tool"
		expect "$tool" "$(status_down "$tool" 77)" \
		    "redis at unix://alice:***@$REDIS_SOCK" \
		    "redis refused the password of user alice (WRONGPASS" \
		    "put the right user and password in the URL of AQ_REDIS_URL, as unix://user:password@/path or redis://user:password@host" \
		    "--redis-url-file or AQ_REDIS_URL_FILE keeps it out of ps"
		expect_not "$tool" wr0ng
	done
	# the worker refused at start: nothing was claimed, no worker registered
	assert_equal "$(rcli zrange 'aq:{default}:wait' 0 -1)" waiting
	assert_equal "$(rcli keys 'aq:{default}:worker*')" ""
}

@test "a wrong password from a URL file: every tool names the file to fix" {
	rcli acl setuser alice on '>s3cret' '~*' '&*' '+@all' >/dev/null
	echo "unix://alice:wr0ng-pw@$REDIS_SOCK" >url
	for tool in "${TOOLS[@]}"; do
		try "$tool" --redis-url-file url
		expect "$tool" "$(status_down "$tool" 77)" \
		    "put the right user and password in the URL of the file url (--redis-url-file)"
		expect_not "$tool" wr0ng
	done
}

@test "no password where redis wants one: every tool exits 77 saying it wants one and where it goes" {
	echo 'pw-x9' >requirepass
	rcli config set requirepass pw-x9 >/dev/null
	for tool in "${TOOLS[@]}"; do
		try "$tool"
		expect "$tool" "$(status_down "$tool" 77)" \
		    "redis wants a password and the URL gives none (NOAUTH" \
		    "put the password in the URL of AQ_REDIS_URL, as unix://:password@/path or redis://:password@host"
	done
}

@test "a worker refused at start exits 77 at once, not after a reconnect loop" {
	rcli acl setuser alice on '>s3cret' '~*' '&*' '+@all' >/dev/null
	aq-enqueue -q w --id j '{}' >/dev/null
	# no --burst: a worker that retried would run until the timeout (124)
	run timeout 30 aq-worker -q w -u "unix://alice:wr0ng-pw@$REDIS_SOCK" -- true
	expect aq-worker 77 "redis refused the password of user alice"
	assert_equal "$(grep -c 'aq-worker:' <<<"$output")" 1
	run timeout 30 aq-subscribe -u "unix://alice:wr0ng-pw@$REDIS_SOCK" chan
	expect aq-subscribe 77 "redis refused the password of user alice"
	assert_equal "$(rcli hget 'aq:{w}:job:j' status)" queued
}

@test "a running worker whose password stops passing says so once, keeps its place, and is back when it passes again" {
	rcli acl setuser alice on '>s3cret' '~*' '&*' '+@all' >/dev/null
	start_worker pw -q pw -u "unix://alice:s3cret@$REDIS_SOCK" -- cat
	wait_for 100 redis_is 1 zcard 'aq:{pw}:workers'
	rcli acl setuser alice resetpass '>changed' >/dev/null
	rcli client kill user alice >/dev/null
	wait_for 100 grep -q "refused the [a-z ]* connection (WRONGPASS" worker.pw.err
	grep -q "the password of the URL, or its user's ACL, no longer passes; fix it and restart" worker.pw.err
	kill -0 "$(worker_pid pw)"
	rcli acl setuser alice resetpass '>s3cret' >/dev/null
	wait_for 150 grep -q 'is back' worker.pw.err
	refute grep -q s3cret worker.pw.err
	# once a streak for each connection, not once per retry
	(( $(grep -c 'refused the' worker.pw.err) <= 3 ))
	stop_worker pw
	assert_equal "$(cat worker.pw.rc)" 0
}

@test "aq-enqueue hello: a payload that is not JSON enqueues nothing and says how to write a string" {
	run aq-enqueue hello
	expect aq-enqueue 65 "aq-enqueue: argument 1: invalid JSON" \
	    "nothing enqueued: each payload argument is one JSON value; quote a string twice, as '\"text\"' in a shell"
	assert_equal "$(rcli dbsize)" 0
}

# ---- 3. a handler that cannot be run ---------------------------------------

# refused_handler CMD TEXT...: aq-worker -- CMD exits 64 with TEXT before
# anything is claimed (a job is waiting) or registered.
refused_handler() {
	local cmd=$1
	shift
	run timeout 30 aq-worker -q h -- "$cmd"
	expect "aq-worker -- $cmd" 64 "aq-worker: cannot run $cmd: " "$@"
	assert_equal "$(rcli zrange 'aq:{h}:wait' 0 -1)" j
	assert_equal "$(rcli zcard 'aq:{h}:workers')" 0
}

@test "handler: a path that does not exist is refused (64), naming the directory it was taken from" {
	aq-enqueue -q h --id j '{}' >/dev/null
	refused_handler ./nonexistent "No such file or directory; give the path of the handler after -- (a relative one starts from $BATS_TEST_TMPDIR)"
}

@test "handler: a command found nowhere in PATH is refused (64), saying how to name it" {
	aq-enqueue -q h --id j '{}' >/dev/null
	refused_handler no-such-handler-cmd "No such file or directory: no no-such-handler-cmd in any directory of PATH; give its path (./no-such-handler-cmd), or add its directory to PATH"
}

@test "handler: a file that is not executable is refused (64), saying how to fix it" {
	aq-enqueue -q h --id j '{}' >/dev/null
	printf '#!/bin/sh\ncat\n' >handler
	chmod 644 handler
	refused_handler ./handler "Permission denied: it is not executable; make it so (chmod +x ./handler), or give its interpreter first (-- sh ./handler)"
}

@test "handler: a directory is refused (64)" {
	aq-enqueue -q h --id j '{}' >/dev/null
	mkdir handlers
	refused_handler ./handlers "Is a directory; give the handler's file, not a directory"
	refused_handler /dev/null "Permission denied: not a regular file"
}

@test "handler: a script whose #! interpreter does not exist, or ends in a CRLF, is refused (64) at start" {
	aq-enqueue -q h --id j '{}' >/dev/null
	printf '#!/nonexistent/sh\necho hi\n' >bad.sh
	printf '#!/bin/sh\r\necho hi\r\n' >crlf.sh
	chmod +x bad.sh crlf.sh
	refused_handler ./bad.sh "its #! line names /nonexistent/sh: No such file or directory; fix that line, or give an interpreter first (-- sh ./bad.sh)"
	refused_handler ./crlf.sh "its #! line names /bin/sh followed by a carriage return: the file has CRLF line ends; convert them (sed -i 's/\\r\$//' ./crlf.sh)"
	# a #! line with an argument, and a program that is no script, pass
	printf '#!/bin/sh -e\ncat\n' >good.sh
	chmod +x good.sh
	run timeout 30 aq-worker -q h --burst -- ./good.sh
	expect "aq-worker -- ./good.sh" 0
	assert_equal "$(rcli hget 'aq:{h}:job:j' status)" succeeded
}

# ---- 4. a reader that goes away: | head -1 --------------------------------

# pipe_head NAME 'CMD': run `CMD | head -n 1` in the background, CMD's
# stderr in NAME.err, head's line in NAME.out, and, once the pipeline has
# ended, CMD's exit status in NAME.rc (141: SIGPIPE).
pipe_head() {
	local name=$1 cmd=$2 d=$BATS_TEST_TMPDIR
	bash -c "$cmd 2>'$d/$name.err' | head -n 1 >'$d/$name.out'
	    echo \"\${PIPESTATUS[-2]}\" >'$d/$name.rc.tmp' && mv '$d/$name.rc.tmp' '$d/$name.rc'" \
	    </dev/null 3>&- &
	echo $! >"$d/$name.pid"
}

# ended_quietly NAME TOOL: the pipeline NAME ended within 10 s of head's
# exit, TOOL exited 0 or by SIGPIPE (141), and said nothing on stderr
# (aq-health's OK summary aside).
ended_quietly() {
	local name=$1 tool=$2 rc err
	if ! wait_for 100 test -e "$name.rc"; then
		echo "$tool | head -1: still running 10 s after head read '$(cat "$name.out")'; stderr: $(cat "$name.err")" >&2
		return 1
	fi
	rc=$(cat "$name.rc")
	err=$(grep -v '^aq-health: OK: ' "$name.err" || true)
	if [ "$rc" != 0 ] && [ "$rc" != 141 ]; then
		echo "$tool | head -1: exit $rc, want 0 or 141 (SIGPIPE); stderr: $err" >&2
		return 1
	fi
	if [ -n "$err" ]; then
		echo "$tool | head -1: said on stderr: $err" >&2
		return 1
	fi
}

@test "| head -1: aq-subscribe CHANNEL ends as soon as head exits, not at the next message" {
	pipe_head sub 'aq-subscribe news'
	wait_for 100 eval '[ "$(rcli pubsub numsub aq:chan:news | tail -1)" = 1 ]'
	aq-publish news <<<'{"n":1}'
	wait_for 100 test -s sub.out
	ended_quietly sub aq-subscribe
	assert_equal "$(cat sub.out)" '{"channel":"news","data":{"n":1}}'
	assert_equal "$(rcli pubsub numsub aq:chan:news | tail -1)" 0
}

@test "| head -1: aq-subscribe --job ends as soon as head exits, though the job runs on" {
	aq-enqueue -q pj --id j '{}' >/dev/null
	aq-publish -q pj --job j <<<'{"step":1}'
	pipe_head job 'aq-subscribe -q pj --job j'
	ended_quietly job 'aq-subscribe --job'
	assert_equal "$(jq -c .data job.out)" '{"step":1}'
	assert_equal "$(rcli hget 'aq:{pj}:job:j' status)" queued
}

@test "| head -1: aq-subscribe --queue-log ends as soon as head exits" {
	aq-enqueue -q pl '{}' >/dev/null
	pipe_head log 'aq-subscribe -q pl --queue-log --after 0-0'
	ended_quietly log 'aq-subscribe --queue-log'
	assert_equal "$(jq -r .status log.out)" queued
}

@test "| head -1: aq-enqueue with many lines: what it printed is enqueued, nothing is half done" {
	pipe_head enq 'seq 1 20000 | aq-enqueue -q many'
	ended_quietly enq aq-enqueue
	id=$(jq -r .id enq.out)
	assert_equal "$(rcli hget "aq:{many}:job:$id" status)" queued
	assert_equal "$(rcli zscore 'aq:{many}:wait' "$id")" 1
	# every job in the queue has its record, every record its place
	n=$(rcli zcard 'aq:{many}:wait')
	assert_equal "$(rcli --scan --pattern 'aq:{many}:job:*' | wc -l)" "$n"
}

@test "| head -1: aq-enqueue waiting for more input ends as soon as head exits" {
	mkfifo in
	pipe_head slow "aq-enqueue -q slow <'$BATS_TEST_TMPDIR/in'"
	exec 5>in
	echo '{"n":1}' >&5
	ended_quietly slow aq-enqueue
	exec 5>&-
	assert_equal "$(rcli zcard 'aq:{slow}:wait')" 1
}

@test "| head -1: aq-status and aq-cancel over many ids end quietly; each job is cancelled or not, whole" {
	seq 1 3000 | aq-enqueue -q ids | jq -r .id >ids
	pipe_head st "aq-status -q ids <'$BATS_TEST_TMPDIR/ids'"
	ended_quietly st aq-status
	assert_equal "$(jq -r .status st.out)" queued
	pipe_head can "aq-cancel -q ids <'$BATS_TEST_TMPDIR/ids'"
	ended_quietly can aq-cancel
	assert_equal "$(jq -r .status can.out)" cancelled
	# a job is cancelled (record and place) or still queued, never half
	cancelled=$(aq-status -q ids <ids | jq -r 'select(.status == "cancelled") | .id' | wc -l)
	assert_equal "$(( $(rcli zcard 'aq:{ids}:wait') + cancelled ))" 3000
	(( cancelled >= 1 ))
}

@test "| head -1: aq-status --state failed, aq-retry and aq-queue purge over many jobs end quietly; each job whole" {
	seq 1 3000 | aq-enqueue -q fl | jq -r .id >ids
	# failed the quick way: aq-sweep --max-wait fails each
	wait_for 50 eval "aq-sweep -q fl --max-wait 1ms --batch 100000 >/dev/null; redis_is 3000 zcard 'aq:{fl}:failed'"
	pipe_head st "aq-status -q fl --state failed --limit 3000"
	ended_quietly st 'aq-status --state failed'
	assert_equal "$(jq -r .status st.out)" failed
	pipe_head rt "aq-retry -q fl <'$BATS_TEST_TMPDIR/ids'"
	ended_quietly rt aq-retry
	assert_equal "$(jq -r .status rt.out)" queued
	# a job is retried (record and place) or still failed, never half
	assert_equal "$(( $(rcli zcard 'aq:{fl}:wait') + $(rcli zcard 'aq:{fl}:failed') ))" 3000
	assert_equal "$(rcli zcard 'aq:{fl}:wait')" "$(aq-status -q fl <ids | jq -r 'select(.status == "queued") | .id' | wc -l)"
	pipe_head pg "aq-queue purge -q fl --yes --batch 100"
	ended_quietly pg 'aq-queue purge'
	assert_equal "$(jq -r .status pg.out)" cancelled
	cancelled=$(aq-status -q fl <ids | jq -r 'select(.status == "cancelled") | .id' | wc -l)
	assert_equal "$(( $(rcli zcard 'aq:{fl}:wait') + $(rcli zcard 'aq:{fl}:failed') + cancelled ))" 3000
	(( cancelled >= 1 ))
}

@test "| head -1: aq-health ends quietly" {
	for i in $(seq 1 200); do echo "SADD aq:queues q$i"; done | rcli >/dev/null
	pipe_head hp 'aq-health --prometheus'
	ended_quietly hp aq-health
	assert_equal "$(cat hp.out)" '# HELP aq_up 1 when Redis answered, 0 when it did not.'
	pipe_head hj 'aq-health'
	ended_quietly hj aq-health
	assert_equal "$(jq -r .status hj.out)" OK
}

@test "| head -1: aq-sweep with many actions: each job promoted or still delayed, whole" {
	seq 1 3000 | aq-enqueue -q sw --delay 1h >/dev/null
	rcli zrange 'aq:{sw}:delayed' 0 -1 | sed 's/^/ZADD aq:{sw}:delayed XX 1000 /' | rcli >/dev/null
	pipe_head sw 'aq-sweep -q sw --batch 100'
	ended_quietly sw aq-sweep
	assert_equal "$(jq -r .action sw.out)" promoted
	assert_equal "$(( $(rcli zcard 'aq:{sw}:wait') + $(rcli zcard 'aq:{sw}:delayed') ))" 3000
	promoted=$(rcli zrange 'aq:{sw}:wait' 0 -1 | sed 's/^/HGET aq:{sw}:job:/; s/$/ status/' | rcli | sort -u)
	assert_equal "$promoted" queued
}

@test "| head -1: aq-sweep --every ends as soon as head exits, not at its next pass" {
	aq-enqueue -q ev --id due --delay 1h '{}' >/dev/null
	rcli zadd 'aq:{ev}:delayed' XX 1000 due >/dev/null
	pipe_head every 'aq-sweep -q ev --every 1h'
	ended_quietly every 'aq-sweep --every'
	assert_equal "$(jq -r .id every.out)" due
}

# ---- 5. bad options ---------------------------------------------------------

@test "started with stdout or stdin closed (>&-, <&-), a tool writes nothing into Redis's connection" {
	run aq-enqueue -q fd '{"a":1}' >&-
	assert_success
	assert_equal "$(rcli zcard 'aq:{fd}:wait')" 1
	id=$(rcli zrange 'aq:{fd}:wait' 0 0)
	aq-status -q fd "$id" >&- 2>err || fail "aq-status >&- failed: $(cat err)"
	aq-cancel -q fd "$id" >&- <&- 2>err || fail "aq-cancel >&- <&- failed: $(cat err)"
	assert_equal "$(aq-status -q fd "$id" | jq -r .status)" cancelled
}

@test "an unknown option: every tool exits 64 naming it, with the usage and a pointer to -h" {
	for tool in "${TOOLS[@]}"; do
		try "$tool" --bogus
		expect "$tool" 64 "$tool: unknown option '--bogus'; see '$tool -h'" "usage: $tool"
		try "$tool" -Z
		expect "$tool" 64 "$tool: unknown option '-Z'; see '$tool -h'"
	done
	assert_equal "$(rcli dbsize)" 0
}

@test "a missing option value: every tool exits 64 naming the option" {
	for tool in "${TOOLS[@]}"; do
		run timeout 30 "$tool" -q </dev/null
		expect "$tool" 64 "$tool: option '-q' needs a value; see '$tool -h'" "usage: $tool"
		run timeout 30 "$tool" --prefix </dev/null
		expect "$tool" 64 "$tool: option '--prefix' needs a value"
		run timeout 30 "$tool" --redis </dev/null
		expect "$tool" 64 "$tool: option '--redis' is ambiguous: --redis-url, --redis-url-file"
	done
}

@test "a bad option value: every tool exits 64 naming the option and the accepted form" {
	while IFS='|' read -r tool opt value want; do
		try "$tool" "$opt" "$value"
		expect "$tool $opt '$value'" 64 "$tool: invalid $opt '$value': want $want" "; see '$tool -h'"
	done <<-'EOF'
		aq-enqueue|--priority|high|a whole number from -1000 to 1000
		aq-enqueue|--delay|5 parsecs|a duration like 250ms, 30s, 5m, 1h or plain seconds
		aq-enqueue|--max-attempts|0|a whole number from 1 to
		aq-status|--max-line|0|a size from 1 to 1G
		aq-cancel|--max-line|1X|a size from 1 to 1G
		aq-status|--limit|0|a whole number from 1 to 100000
		aq-retry|--max-line|0|a size from 1 to 1G
		aq-queue|--batch|-5|a whole number from 1 to 10000
		aq-worker|--concurrency|-1|a whole number from 1 to 1024
		aq-worker|--lease|5 parsecs|a duration like
		aq-worker|--grace|soon|a duration like
		aq-sweep|--every|5 parsecs|a duration like
		aq-sweep|--batch|0|a whole number from 1 to 100000
		aq-publish|--max-line|0|a size from 1 to 1G
		aq-subscribe|--timeout|5 parsecs|a duration like
		aq-subscribe|--count|-1|a whole number from 1 to
		aq-health|--warn-depth|-1|a whole number from 0 to
		aq-health|--crit-age|5 parsecs|a duration like
	EOF
	run aq-worker --burst=yes -- true
	expect aq-worker 64 "aq-worker: option '--burst' takes no value; see 'aq-worker -h'"
	assert_equal "$(rcli dbsize)" 0
}
