#!/usr/bin/env bats
# examples.bats: the example handlers of examples/handlers run under a real
# aq-worker against a private redis-server: their results, their events,
# and their exit codes for a bad payload (65) and a transient error (75).

load helpers

HANDLERS=$(cd "$BATS_TEST_DIRNAME/../examples/handlers" && pwd)
PIPELINE=$(cd "$BATS_TEST_DIRNAME/../examples/pipeline" && pwd)

setup_file() { redis_start; }
teardown_file() { redis_stop; }
setup() { cd "$BATS_TEST_TMPDIR" && rcli flushall >/dev/null; }

field() { # field QUEUE ID JQ-FILTER
	aq-status -q "$1" "$2" | jq -c "$3"
}

# events QUEUE ID: the job's events as JSON lines {type, data, attempt},
# data parsed back from its JSON text.
events() {
	redis-cli -s "$REDIS_SOCK" --json xrange "aq:{$1}:events:$2" - + |
	    jq -c '.[] | .[1] | {type: .[1], data: (.[3] | fromjson), attempt: (.[5] | tonumber)}'
}

@test "thumbnail.sh: progress events, then the thumbnail as the result" {
	aq-enqueue -q thumbs --id cat '{"image":"photos/cat.jpg","width":200}' >/dev/null
	aq-enqueue -q thumbs --id owl '{"image":"owl.png"}' >/dev/null
	run aq-worker -q thumbs -c 2 --burst -- "$HANDLERS/thumbnail.sh"
	assert_success
	assert_output --partial 'cat: thumbnail.sh: attempt 1 of 3: 200px of photos/cat.jpg'
	assert_equal "$(field thumbs cat '[.status, .exit_code, .result]')" \
	    '["succeeded",0,{"image":"photos/cat.jpg","thumbnail":"thumbs/cat-200.jpg","width":200,"job":"cat"}]'
	assert_equal "$(field thumbs owl .result.thumbnail)" '"thumbs/owl-128.jpg"'
	run events thumbs cat
	assert_equal "$(grep -c '"type":"stdout"' <<<"$output")" 3
	assert_equal "$(grep -c '"type":"stderr"' <<<"$output")" 1
	assert_output --partial '{"type":"stdout","data":{"step":"decode","image":"photos/cat.jpg","progress":0.5},"attempt":1}'
	assert_output --partial '{"type":"stdout","data":{"step":"resize","thumbnail":"thumbs/cat-200.jpg","progress":1},"attempt":1}'
	assert_equal "$(events thumbs cat | grep '"stdout"' | tail -1 | jq -c .data)" \
	    "$(field thumbs cat .result)"
}

@test "thumbnail.sh: a payload without an image fails at once (exit 65), nothing is retried" {
	aq-enqueue -q thumbs --id bad '{"width":100}' >/dev/null
	aq-enqueue -q thumbs --id odd '{"image":"x.jpg","width":1.5}' >/dev/null
	run aq-worker -q thumbs --burst -- "$HANDLERS/thumbnail.sh"
	assert_success
	for id in bad odd; do
		assert_equal "$(field thumbs "$id" '[.status, .attempt, .exit_code]')" '["failed",1,65]'
	done
	assert_equal "$(field thumbs bad .error)" \
	    '"exited with status 65\nthumbnail.sh: want {\"image\": PATH, \"width\": 1 to 4096}, got: {\"width\":100}"'
	assert_equal "$(rcli hget 'aq:{thumbs}:stats' retried)" ''
}

@test "sum.jq: the sum as the result; partial sums as events" {
	aq-enqueue -q sums --id ab '{"a":1,"b":2}' >/dev/null
	aq-enqueue -q sums --id list '{"numbers":[1,2,3.5]}' >/dev/null
	aq-enqueue -q sums --id none '{"numbers":[]}' >/dev/null
	run aq-worker -q sums --burst -- jq -c -f "$HANDLERS/sum.jq"
	assert_success
	assert_equal "$(field sums ab '[.status, .result]')" '["succeeded",{"sum":3}]'
	assert_equal "$(field sums list '[.status, .result]')" '["succeeded",{"sum":6.5}]'
	assert_equal "$(field sums none .result)" '{"sum":0}'
	assert_equal "$(events sums list | jq -c .data | paste -sd' ')" \
	    '{"partial":1} {"partial":3} {"partial":6.5} {"sum":6.5}'
}

@test "sum.jq: a payload it cannot add fails at once with exit 65 and jq's message" {
	aq-enqueue -q sums --id str '"1 + 2"' >/dev/null
	aq-enqueue -q sums --id mixed '{"numbers":[1,"2"]}' >/dev/null
	run aq-worker -q sums --burst -- jq -c -f "$HANDLERS/sum.jq"
	assert_success
	assert_equal "$(field sums str '[.status, .attempt, .exit_code]')" '["failed",1,65]'
	assert_equal "$(field sums str .error)" \
	    '"exited with status 65\nsum.jq: want {\"a\": number, \"b\": number} or {\"numbers\": [number, ...]}, got \"1 + 2\""'
	assert_equal "$(field sums mixed '[.status, .exit_code]')" '["failed",65]'
}

@test "wordcount.py: progress events, then the counts as the result" {
	command -v python3 >/dev/null || skip "python3 is not installed"
	aq-enqueue -q words --id short '{"text":"The cat saw the other cat.\nThe end."}' >/dev/null
	seq 2500 >numbers.txt
	aq-enqueue -q words --id file "{\"path\":\"$BATS_TEST_TMPDIR/numbers.txt\"}" >/dev/null
	run aq-worker -q words -c 2 --burst -- "$HANDLERS/wordcount.py"
	assert_success
	assert_equal "$(field words short '[.status, .result]')" \
	    '["succeeded",{"lines":2,"words":8,"chars":34,"top":[["the",3],["cat",2],["saw",1]]}]'
	assert_equal "$(field words file '.result | [.lines, .words]')" '[2500,2500]'
	assert_equal "$(events words file | jq -c .data | head -3 | paste -sd' ')" \
	    '{"progress":{"lines":1000,"of":2500}} {"progress":{"lines":2000,"of":2500}} {"progress":{"lines":2500,"of":2500}}'
	assert_equal "$(events words file | wc -l)" 4
}

@test "wordcount.py: a bad payload fails at once with exit 65" {
	command -v python3 >/dev/null || skip "python3 is not installed"
	aq-enqueue -q words --id list '["not", "an", "object"]' >/dev/null
	aq-enqueue -q words --id num '{"text":42}' >/dev/null
	run aq-worker -q words --burst -- "$HANDLERS/wordcount.py"
	assert_success
	assert_output --partial 'list: wordcount.py: want an object with "text" or "path", got ["not", "an", "object"]'
	for id in list num; do
		assert_equal "$(field words "$id" '[.status, .attempt, .exit_code]')" '["failed",1,65]'
	done
	assert_equal "$(field words list .error)" \
	    '"exited with status 65\nwordcount.py: want an object with \"text\" or \"path\", got [\"not\", \"an\", \"object\"]"'
	run events words list
	assert_output --partial '"type":"stderr"'
}

@test "wordcount.py: a file not there yet exits 75 and is retried; it succeeds once the file is there" {
	command -v python3 >/dev/null || skip "python3 is not installed"
	aq-enqueue -q words --id later --max-attempts 3 \
	    "{\"path\":\"$BATS_TEST_TMPDIR/later.txt\"}" >/dev/null
	run aq-worker -q words --backoff 200ms --max-jobs 1 -- "$HANDLERS/wordcount.py"
	assert_success
	assert_equal "$(field words later '[.status, .attempt, .exit_code]')" '["delayed",1,75]'
	assert_equal "$(field words later .error)" \
	    "\"exited with status 75\\nwordcount.py: $BATS_TEST_TMPDIR/later.txt: not there yet (attempt 1 of 3)\""
	echo 'at last' >later.txt
	run aq-worker -q words --max-jobs 1 -- "$HANDLERS/wordcount.py"
	assert_success
	assert_equal "$(field words later '[.status, .attempt, .exit_code, .result.words]')" \
	    '["succeeded",2,0,2]'
	assert_equal "$(rcli hget 'aq:{words}:stats' retried)" 1
}

@test "fan-out-in.sh: a job per file, then the merge --after them all: the total" {
	printf 'one two three\n' >a.txt
	printf 'four five\nsix\n' >b.txt
	printf 'seven\n' >c.txt
	run "$PIPELINE/fan-out-in.sh" a.txt b.txt c.txt
	assert_success
	assert_output '{"files":3,"words":7}'
	# the merge job ran after every part, which all succeeded
	merge=$(rcli zrange 'aq:{pipeline}:done' -1 -1)
	assert_equal "$(field pipeline "$merge" '[.status, (.after | length)]')" '["succeeded",3]'
	last_part=$(aq-status -q pipeline $(field pipeline "$merge" '.after[]' | jq -r .) |
	    jq -s 'map(.finished) | max')
	jq -en "$(field pipeline "$merge" .started) >= $last_part" >/dev/null
	# its worker is gone
	assert_equal "$(rcli zcard 'aq:{pipeline}:workers')" 0
}

@test "fan-out-in.sh: a part that fails cancels the merge: exit 1, and why" {
	printf 'one\n' >a.txt
	run "$PIPELINE/fan-out-in.sh" a.txt missing.txt
	assert_failure 1
	assert_output --regexp 'fan-out-in.sh: merge cancelled: parent [0-9a-f-]+ failed'
}
