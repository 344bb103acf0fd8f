#!/usr/bin/env bats
# enqueue.bats: aq-enqueue against a private redis-server: every option, the
# records and keys it writes, and every kind of bad input.

load helpers

setup_file() { redis_start; }
teardown_file() { redis_stop; }
setup() { cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null; }

@test "a payload argument becomes a queued job with a UUIDv7 id" {
	run aq-enqueue '{"to":"ada@example.com"}'
	assert_success
	id=$(jq -r .id <<<"$output")
	[[ $id =~ ^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]]
	assert_equal "$(jq -c 'del(.id)' <<<"$output")" '{"queue":"default","status":"queued"}'
	assert_equal "$(rcli hget "aq:{default}:job:$id" payload)" '{"to":"ada@example.com"}'
	assert_equal "$(rcli hget "aq:{default}:job:$id" status)" queued
	assert_equal "$(rcli zscore 'aq:{default}:wait' "$id")" 1
}

@test "several payload arguments are enqueued in order" {
	run aq-enqueue 1 '"two"' '[3]'
	assert_success
	assert_equal "${#lines[@]}" 3
	mapfile -t ids < <(ids_of "$output")
	assert_equal "$(rcli zrange 'aq:{default}:wait' 0 -1 | paste -sd' ')" "${ids[*]}"
	assert_equal "$(rcli hget "aq:{default}:job:${ids[1]}" payload)" '"two"'
}

@test "JSON lines on stdin become one job each, output in input order" {
	run bash -c 'printf "%s\n" "{\"n\":1}" "{\"n\":2}" "{\"n\":3}" | aq-enqueue'
	assert_success
	assert_equal "${#lines[@]}" 3
	mapfile -t ids < <(ids_of "$output")
	for i in 0 1 2; do
		assert_equal "$(rcli hget "aq:{default}:job:${ids[i]}" payload)" "{\"n\":$((i + 1))}"
	done
	assert_equal "$(rcli zrange 'aq:{default}:wait' 0 -1 | paste -sd' ')" "${ids[*]}"
}

@test "the job record holds status, payload, created, max_attempts; priority and timeout when given" {
	run aq-enqueue '{}'
	id=$(jq -r .id <<<"$output")
	assert_equal "$(rcli hkeys "aq:{default}:job:$id" | sort | paste -sd' ')" \
	    "created max_attempts payload status"
	assert_equal "$(rcli hget "aq:{default}:job:$id" max_attempts)" 3
	run aq-enqueue --max-attempts 5 --timeout 90s --priority 7 '{}'
	assert_success
	id=$(jq -r .id <<<"$output")
	run rcli hgetall "aq:{default}:job:$id"
	assert_output --partial max_attempts$'\n'5
	assert_output --partial timeout_ms$'\n'90000
	assert_output --partial priority$'\n'7
	created=$(rcli hget "aq:{default}:job:$id" created)
	now=$(rcli time | head -1)
	(( created / 1000 <= now && created / 1000 >= now - 60 ))
}

@test "--queue, -q and AQ_QUEUE choose the queue; the flag wins" {
	run aq-enqueue --queue mail '{}'
	assert_output --partial '"queue":"mail"'
	run aq-enqueue -q sms '{}'
	assert_output --partial '"queue":"sms"'
	AQ_QUEUE=push run aq-enqueue '{}'
	assert_output --partial '"queue":"push"'
	AQ_QUEUE=push run aq-enqueue -q mail '{}'
	assert_output --partial '"queue":"mail"'
	assert_equal "$(rcli zcard 'aq:{mail}:wait')" 2
	assert_equal "$(rcli smembers aq:queues | sort | paste -sd' ')" "mail push sms"
}

@test "--prefix and AQ_PREFIX change the key prefix" {
	run aq-enqueue --prefix myapp -q q '{}'
	assert_success
	assert_equal "$(rcli zcard 'myapp:{q}:wait')" 1
	AQ_PREFIX=other run aq-enqueue -q q '{}'
	assert_equal "$(rcli zcard 'other:{q}:wait')" 1
	assert_equal "$(rcli sismember other:queues q)" 1
}

@test "a user-given --id is an idempotency key: a second enqueue changes nothing" {
	run aq-enqueue --id order-42 '{"v":1}'
	assert_success
	assert_output '{"id":"order-42","queue":"default","status":"queued"}'
	run aq-enqueue --id order-42 '{"v":2}'
	assert_success
	assert_output '{"id":"order-42","queue":"default","status":"queued","duplicate":true}'
	assert_equal "$(rcli hget 'aq:{default}:job:order-42' payload)" '{"v":1}'
	assert_equal "$(rcli zcard 'aq:{default}:wait')" 1
	assert_equal "$(rcli hget 'aq:{default}:stats' enqueued)" 1
}

@test "a duplicate reports the existing job's status" {
	aq-enqueue --id later --delay 1h '{}'
	run aq-enqueue --id later '{}'
	assert_output '{"id":"later","queue":"default","status":"delayed","duplicate":true}'
}

@test "the same id twice within one batch is a duplicate the second time" {
	run bash -c 'printf "1\n2\n" | aq-enqueue --id same'
	assert_success
	assert_line --index 0 '{"id":"same","queue":"default","status":"queued"}'
	assert_line --index 1 --partial '"duplicate":true'
	assert_equal "$(rcli hget 'aq:{default}:job:same' payload)" 1
}

@test "--priority: higher first, FIFO within a priority" {
	aq-enqueue --id low1 --priority -5 '{}'
	aq-enqueue --id mid1 '{}'
	aq-enqueue --id high1 --priority 10 '{}'
	aq-enqueue --id mid2 '{}'
	aq-enqueue --id high2 --priority 10 '{}'
	aq-enqueue --id low2 --priority -5 '{}'
	aq-enqueue --id top --priority 1000 '{}'
	aq-enqueue --id bottom --priority -1000 '{}'
	assert_equal "$(rcli zrange 'aq:{default}:wait' 0 -1 | paste -sd' ')" \
	    "top high1 high2 mid1 mid2 low1 low2 bottom"
}

@test "FIFO holds across batches and within a batch of many jobs" {
	seq 1 1000 | aq-enqueue >"$BATS_TEST_TMPDIR/out"
	ids_of "$(cat "$BATS_TEST_TMPDIR/out")" >"$BATS_TEST_TMPDIR/expected"
	rcli zrange 'aq:{default}:wait' 0 -1 >"$BATS_TEST_TMPDIR/got"
	cmp "$BATS_TEST_TMPDIR/expected" "$BATS_TEST_TMPDIR/got"
}

@test "--priority out of range or not a number is a usage error" {
	run aq-enqueue --priority 1001 '{}'
	assert_failure 64
	assert_output --partial 'invalid --priority'
	run aq-enqueue --priority x '{}'
	assert_failure 64
	run aq-enqueue --priority '' '{}'
	assert_failure 64
}

@test "--delay puts the job in the delayed set, due by the server clock" {
	run aq-enqueue --delay 90s '{}'
	assert_success
	assert_output --partial '"status":"delayed"'
	id=$(jq -r .id <<<"$output")
	created=$(rcli hget "aq:{default}:job:$id" created)
	assert_equal "$(rcli zscore 'aq:{default}:delayed' "$id")" $((created + 90000))
	assert_equal "$(rcli hget "aq:{default}:job:$id" run_at)" $((created + 90000))
	assert_equal "$(rcli zcard 'aq:{default}:wait')" 0
}

@test "--delay accepts ms, s, m, h and plain seconds" {
	for d in 250ms:250 30s:30000 5m:300000 1h:3600000 2:2000 1.5:1500; do
		run aq-enqueue --delay "${d%%:*}" '{}'
		assert_success
		id=$(jq -r .id <<<"$output")
		created=$(rcli hget "aq:{default}:job:$id" created)
		assert_equal "$(rcli hget "aq:{default}:job:$id" run_at)" $((created + ${d##*:}))
	done
}

@test "--delay 0 and a past --run-at queue the job at once" {
	run aq-enqueue --delay 0 '{}'
	assert_output --partial '"status":"queued"'
	run aq-enqueue --run-at 1000000000 '{}'
	assert_output --partial '"status":"queued"'
	assert_equal "$(rcli zcard 'aq:{default}:wait')" 2
}

@test "--run-at takes epoch seconds and RFC 3339" {
	run aq-enqueue --run-at 4102444800 '{}'
	assert_output --partial '"status":"delayed"'
	assert_equal "$(rcli zscore 'aq:{default}:delayed' "$(jq -r .id <<<"$output")")" 4102444800000
	run aq-enqueue --run-at 2100-01-01T01:00:00.5+01:00 '{}'
	assert_equal "$(rcli zscore 'aq:{default}:delayed' "$(jq -r .id <<<"$output")")" 4102444800500
}

@test "bad --delay, --run-at, --timeout, --max-attempts are usage errors" {
	for args in "--delay 5x" "--delay -1" "--run-at tomorrow" "--run-at 2026-02-30T00:00:00Z" \
	    "--timeout 0" "--timeout 1y" "--max-attempts 0" "--max-attempts 1001" \
	    "--delay 1s --run-at 2100-01-01T00:00:00Z"; do
		# shellcheck disable=SC2086
		run aq-enqueue $args '{}'
		assert_failure 64
		assert_output --partial 'aq-enqueue: '
	done
	assert_equal "$(rcli dbsize)" 0
}

@test "an invalid queue name is a usage error that names it and where it came from" {
	run aq-enqueue -q 'bad name' '{}'
	assert_failure 64
	assert_output --partial "invalid queue name 'bad name' (from --queue)"
	run aq-enqueue -q 'a{b}' '{}'
	assert_failure 64
	run aq-enqueue -q "$(printf 'q%.0s' {1..101})" '{}'
	assert_failure 64
	AQ_QUEUE='x/y' run aq-enqueue '{}'
	assert_failure 64
	assert_output --partial '(from AQ_QUEUE)'
	assert_equal "$(rcli dbsize)" 0
}

@test "an invalid --id or --prefix is a usage error" {
	run aq-enqueue --id 'has space' '{}'
	assert_failure 64
	assert_output --partial 'invalid --id'
	run aq-enqueue --id "$(printf 'i%.0s' {1..201})" '{}'
	assert_failure 64
	run aq-enqueue --id 'a{b}' '{}'
	assert_failure 64
	run aq-enqueue --prefix 'a{b' '{}'
	assert_failure 64
	assert_output --partial 'invalid key prefix'
	assert_equal "$(rcli dbsize)" 0
}

@test "ids may use every allowed character and the longest length" {
	id="Az09._:@/-$(printf 'x%.0s' {1..190})"
	run aq-enqueue --id "$id" '{}'
	assert_success
	assert_equal "$(rcli exists "aq:{default}:job:$id")" 1
}

@test "an unknown option is a usage error with the usage line" {
	run aq-enqueue --bogus
	assert_failure 64
	assert_output --partial 'usage: aq-enqueue'
}

@test "-h and --help print the usage on stdout; --version the version" {
	run aq-enqueue -h
	assert_success
	assert_output --partial 'usage: aq-enqueue'
	run aq-enqueue --help
	assert_success
	run aq-enqueue --version
	assert_success
	assert_output --regexp '^aq-enqueue [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "a malformed line between good ones: good ones enqueued, line number on stderr, exit 65" {
	run bash -c 'printf "{\"n\":1}\n{\"n\":\n{\"n\":3}\n" | aq-enqueue 2>err; echo "rc=$?"; cat err >&2' 
	assert_output --partial 'rc=65'
	assert_equal "$(rcli zcard 'aq:{default}:wait')" 2
	run bash -c 'printf "{\"n\":1}\n{\"n\":\n{\"n\":3}\n" | aq-enqueue 2>&1 >/dev/null'
	assert_output --regexp '^aq-enqueue: line 2: invalid JSON at column [0-9]+: .*, skipped$'
}

@test "garbage of every kind is rejected line by line and never crashes" {
	{
		echo '{"ok":1}'
		echo 'not json'
		echo '{"a":1} {"b":2}'
		echo '[1,2'
		head -c 300 /dev/urandom | tr -d '\n'
		echo
		printf '\0\0\0\n'
		echo '"unterminated'
		echo '{"ok":2}'
	} >"$BATS_TEST_TMPDIR/garbage"
	run aq-enqueue <"$BATS_TEST_TMPDIR/garbage"
	assert_failure 65
	assert_equal "$(rcli zcard 'aq:{default}:wait')" 2
	run bash -c "aq-enqueue <'$BATS_TEST_TMPDIR/garbage' 2>&1 >/dev/null | cut -d: -f2 | paste -sd,"
	assert_output ' line 2, line 3, line 4, line 5, line 6, line 7'
}

@test "empty and blank lines are skipped, and still counted in line numbers" {
	run bash -c 'printf "\n{\"n\":1}\n   \n\t\n\nbad\n" | aq-enqueue 2>&1 >/dev/null'
	assert_output --partial 'line 6: invalid JSON'
	assert_equal "$(rcli zcard 'aq:{default}:wait')" 1
	run bash -c 'printf "\n\n" | aq-enqueue'
	assert_success
	assert_output ''
}

@test "CRLF line endings are accepted and the CR is not stored" {
	run bash -c 'printf "{\"n\":1}\r\n\"x\"\r\n" | aq-enqueue'
	assert_success
	assert_equal "${#lines[@]}" 2
	id=$(head -1 <<<"$output" | jq -r .id)
	assert_equal "$(rcli hget "aq:{default}:job:$id" payload | od -c | head -1)" \
	    "$(printf '{"n":1}\n' | od -c | head -1)"
}

@test "a last line without its newline is enqueued" {
	run bash -c 'printf "{\"n\":1}\n{\"n\":2}" | aq-enqueue'
	assert_success
	assert_equal "${#lines[@]}" 2
	id=$(tail -1 <<<"$output" | jq -r .id)
	assert_equal "$(rcli hget "aq:{default}:job:$id" payload)" '{"n":2}'
}

@test "invalid UTF-8 is rejected with its line number" {
	run bash -c 'printf "\"ok\"\n\"\xc3\x28\"\n\"\xe2\x82\xac\"\n" | aq-enqueue 2>&1 >/dev/null'
	assert_output --partial 'line 2: invalid JSON'
	assert_equal "$(rcli zcard 'aq:{default}:wait')" 2
}

@test "a line over --max-line is skipped and the next one is enqueued" {
	big=$(printf '"%0200d"' 0)
	run bash -c "printf '%s\n' '\"a\"' '$big' '\"b\"' | aq-enqueue --max-line 100"
	assert_failure 65
	assert_equal "${#lines[@]}" 3
	assert_line --index 0 'aq-enqueue: line 2: longer than the limit of 100 bytes (--max-line), skipped'
	assert_equal "$(rcli zcard 'aq:{default}:wait')" 2
}

@test "a line of exactly --max-line bytes is accepted" {
	line=$(printf '"%098d"' 0)
	assert_equal "${#line}" 100
	run bash -c "printf '%s\n' '$line' | aq-enqueue --max-line 100"
	assert_success
}

@test "a huge line without a newline is rejected without holding it in memory" {
	run bash -c '{ echo "\"a\""; head -c 50000000 /dev/zero | tr "\0" x; } | aq-enqueue --max-line 1K'
	assert_failure 65
	assert_output --partial 'line 2: longer than the limit of 1024 bytes'
	assert_equal "$(rcli zcard 'aq:{default}:wait')" 1
}

@test "a bad --max-line is a usage error" {
	run aq-enqueue --max-line 0
	assert_failure 64
	run aq-enqueue --max-line 2G
	assert_failure 64
	run aq-enqueue --max-line 12Q
	assert_failure 64
}

@test "payload arguments are all checked first: one bad one enqueues nothing" {
	run aq-enqueue '{"ok":1}' 'nope' '{"ok":2}'
	assert_failure 65
	assert_output --partial 'argument 2: invalid JSON'
	assert_equal "$(rcli zcard 'aq:{default}:wait')" 0
}

@test "--id with several payload arguments is a usage error" {
	run aq-enqueue --id x 1 2
	assert_failure 64
	assert_output --partial '--id names one job'
	assert_equal "$(rcli dbsize)" 0
}

@test "payload arguments are trimmed like lines" {
	run aq-enqueue '  {"a":1}	'
	id=$(jq -r .id <<<"$output")
	assert_equal "$(rcli hget "aq:{default}:job:$id" payload)" '{"a":1}'
}

@test "a multi-line payload argument is stored on one line" {
	run aq-enqueue "$(printf '{\n  "a": 1,\n  "b": [2]\n}')"
	assert_success
	id=$(jq -r .id <<<"$output")
	assert_equal "$(rcli hget "aq:{default}:job:$id" payload | wc -l)" 1
	assert_equal "$(rcli hget "aq:{default}:job:$id" payload | jq -c .)" '{"a":1,"b":[2]}'
}

@test "a payload is stored byte for byte: no shell, numbers and spacing kept" {
	p='{"cmd": "$(touch x); rm -rf /", "big": 123456789012345678901234567890, "f": 1.10}'
	run aq-enqueue "$p"
	assert_success
	id=$(jq -r .id <<<"$output")
	assert_equal "$(rcli hget "aq:{default}:job:$id" payload)" "$p"
	[ ! -e x ]
}

@test "the output is one JSON object per job, valid for jq" {
	run bash -c 'seq 1 50 | aq-enqueue | jq -e -s "length == 50 and all(.status == \"queued\")"'
	assert_success
}

@test "many lines go through in batches, not one script call per job" {
	rcli config resetstat >/dev/null
	run bash -c 'seq 1 5000 | aq-enqueue | wc -l'
	assert_output 5000
	assert_equal "$(rcli zcard 'aq:{default}:wait')" 5000
	calls=$(rcli info commandstats | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p' | tr -d '\r')
	(( calls >= 25 && calls <= 60 ))
	entries=$(rcli xlen 'aq:{default}:log')
	(( entries >= 25 && entries <= 60 ))
}

@test "stats, log stream, wake list and aq:queues are kept" {
	seq 1 100 | aq-enqueue -q w >/dev/null
	aq-enqueue -q w --delay 1h '{}' >/dev/null
	assert_equal "$(rcli hget 'aq:{w}:stats' enqueued)" 101
	assert_equal "$(rcli sismember aq:queues w)" 1
	assert_equal "$(rcli llen 'aq:{w}:wake')" 64
	run rcli xrange 'aq:{w}:log' - +
	assert_output --partial queued
	assert_output --partial delayed
}

@test "input lines arriving slowly are enqueued as they arrive, not at EOF" {
	fifo=$BATS_TEST_TMPDIR/fifo
	mkfifo "$fifo"
	aq-enqueue -q slow <"$fifo" >"$BATS_TEST_TMPDIR/out" &
	pid=$!
	exec 5>"$fifo"
	echo '{"n":1}' >&5
	wait_for 50 redis_is 1 zcard 'aq:{slow}:wait'
	wait_for 50 test -s "$BATS_TEST_TMPDIR/out"
	echo '{"n":2}' >&5
	exec 5>&-
	wait "$pid"
	assert_equal "$(rcli zcard 'aq:{slow}:wait')" 2
}

@test "the script is loaded again when Redis forgets it (NOSCRIPT)" {
	fifo=$BATS_TEST_TMPDIR/fifo
	mkfifo "$fifo"
	aq-enqueue -q ns <"$fifo" >"$BATS_TEST_TMPDIR/out" &
	pid=$!
	exec 5>"$fifo"
	seq 1 10 >&5
	wait_for 50 redis_is 10 zcard 'aq:{ns}:wait'
	rcli script flush >/dev/null
	seq 11 20 >&5
	exec 5>&-
	wait "$pid"
	assert_equal "$(rcli zcard 'aq:{ns}:wait')" 20
	assert_equal "$(wc -l <"$BATS_TEST_TMPDIR/out")" 20
}

@test "Redis unreachable: exit 69 and the message names the URL without its password" {
	run aq-enqueue -u "unix://:hunter2@$REDIS_DIR/nothing.sock" '{}'
	assert_failure 69
	assert_output --partial "aq-enqueue: cannot connect to redis at unix://:***@$REDIS_DIR/nothing.sock"
	refute_output --partial hunter2
	run aq-enqueue -u "redis://bob:hunter2@127.0.0.1:1/2" '{}'
	assert_failure 69
	assert_output --partial 'redis://bob:***@127.0.0.1:1/2'
	assert_output --partial 'Connection refused'
	refute_output --partial hunter2
}

@test "a malformed Redis URL is a usage error naming its source" {
	run aq-enqueue -u 'http://localhost' '{}'
	assert_failure 64
	assert_output --partial 'invalid Redis URL (from --redis-url)'
	AQ_REDIS_URL='redis://h:99999' run aq-enqueue '{}'
	assert_failure 64
	assert_output --partial '(from AQ_REDIS_URL)'
	run aq-enqueue -u 'rediss://h' '{}'
	assert_failure 64
	assert_output --partial 'TLS'
}

@test "a wrong password is refused with exit 77, the right one works" {
	rcli acl setuser alice on '>s3cret' '~*' '&*' '+@all' >/dev/null
	run aq-enqueue -u "unix://alice:wrong@$REDIS_SOCK" '{}'
	assert_failure 77
	assert_output --partial 'redis refused the password of user alice'
	refute_output --partial wrong@
	run aq-enqueue -u "unix://alice:s3cret@$REDIS_SOCK" '{}'
	assert_success
	rcli acl deluser alice >/dev/null
}

@test "requirepass: no password is refused, the password alone works" {
	rcli config set requirepass 'p@ss:word' >/dev/null
	run aq-enqueue '{}'
	assert_failure 77
	assert_output --partial 'redis wants a password and the URL gives none'
	run aq-enqueue -u "unix://:p%40ss%3Aword@$REDIS_SOCK" '{}'
	assert_success
	redis-cli -s "$REDIS_SOCK" --no-auth-warning -a 'p@ss:word' config set requirepass '' >/dev/null
}

@test "--redis-url-file and AQ_REDIS_URL_FILE keep the password out of argv" {
	rcli config set requirepass sekrit >/dev/null
	echo "unix://:sekrit@$REDIS_SOCK" >"$BATS_TEST_TMPDIR/url"
	run aq-enqueue --redis-url-file "$BATS_TEST_TMPDIR/url" '{}'
	assert_success
	AQ_REDIS_URL= AQ_REDIS_URL_FILE="$BATS_TEST_TMPDIR/url" run aq-enqueue '{}'
	assert_success
	run aq-enqueue --redis-url-file "$BATS_TEST_TMPDIR/missing" '{}'
	assert_failure 66
	assert_output --partial 'cannot open the Redis URL file'
	run aq-enqueue -u x --redis-url-file "$BATS_TEST_TMPDIR/url" '{}'
	assert_failure 64
	redis-cli -s "$REDIS_SOCK" --no-auth-warning -a sekrit config set requirepass '' >/dev/null
}

@test "the database of the URL is selected" {
	run aq-enqueue -u "unix://$REDIS_SOCK?db=3" -q dbq '{}'
	assert_success
	assert_equal "$(rcli -n 3 zcard 'aq:{dbq}:wait')" 1
	assert_equal "$(rcli -n 0 exists 'aq:{dbq}:wait')" 0
}

@test "a write error on stdout is reported and fails the run" {
	run bash -c "aq-enqueue '{}' >/dev/full"
	assert_failure 74
	assert_output --partial 'cannot write to standard output'
}
