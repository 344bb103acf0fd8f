#!/bin/sh
# fan-out-in.sh: a fan-out/fan-in pipeline from a shell script: one job per
# file counts its words (fan out), and a merge job enqueued --after all of
# them adds the counts up (fan in); prints the merge job's result.
#
# usage: fan-out-in.sh FILE...
#
# It runs its own worker for the length of the run (any other workers of
# the queue help); the same script is the handler: fan-out-in.sh handle.
# Redis is AQ_REDIS_URL's; the queue is AQ_QUEUE, default "pipeline".
set -eu

queue=${AQ_QUEUE:-pipeline}

# handle: one job, its payload on stdin: {"file":PATH} -> {"file":..,"words":N};
# {"merge":[IDS]} -> {"files":N,"words":TOTAL} from the parts' results
handle() {
	payload=$(cat)
	if file=$(printf '%s\n' "$payload" | jq -er '.file // empty'); then
		[ -r "$file" ] || { echo "cannot read $file" >&2; exit 65; }
		words=$(wc -w <"$file")
		jq -nc --arg f "$file" --argjson w "$words" '{file: $f, words: $w}'
	else
		printf '%s\n' "$payload" | jq -r '.merge[]' |
		    aq-status -q "$AQ_QUEUE" |
		    jq -sc '{files: length, words: (map(.result.words) | add)}'
	fi
}

if [ "${1:-}" = handle ]; then
	handle
	exit
fi
if [ $# -eq 0 ] || [ "$1" = -h ]; then
	echo "usage: fan-out-in.sh FILE..." >&2
	exit 64
fi

tmp=$(mktemp -d)
worker=
cleanup() {
	[ -z "$worker" ] || { kill -TERM "$worker" 2>/dev/null; wait "$worker" || :; }
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

aq-worker -q "$queue" -c 4 -- "$0" handle 2>"$tmp/worker.log" &
worker=$!

# fan out: a job per file, its id kept
for f in "$@"; do
	jq -nc --arg f "$f" '{file: $f}'
done | aq-enqueue -q "$queue" | jq -r .id >"$tmp/parts"

# fan in: the merge waits, blocked, for every part; --wait waits for it
# (exit 1: it failed, or was cancelled because a part failed)
rc=0
jq -Rsc '{merge: split("\n") | map(select(length > 0))}' "$tmp/parts" |
    aq-enqueue -q "$queue" --wait --after "$(paste -sd, "$tmp/parts")" \
    >"$tmp/merge" || rc=$?
if [ "$rc" -eq 0 ]; then
	jq -c .result "$tmp/merge"
else
	jq -r '"fan-out-in.sh: merge \(.status): \(.error)"' "$tmp/merge" >&2
fi
exit "$rc"
