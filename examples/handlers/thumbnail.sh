#!/bin/sh
# thumbnail.sh: an aq handler in POSIX sh, using only coreutils and jq. It
# shows the handler protocol of aq-worker(1): the job's payload arrives as
# one JSON line on stdin, then end of input; every line written to stdout is
# an event of the job (progress, here), and the last one is the job's
# result; stderr goes to the worker's log and to the job's events; exit 65
# rejects a payload for good, without retries.
#
# It pretends to make a thumbnail (no image tools needed) of the job
# {"image": PATH, "width": N}; width defaults to 128. Run it with:
#
#   aq-enqueue -q thumbs '{"image":"photos/cat.jpg","width":200}'
#   aq-worker -q thumbs -c 4 -- examples/handlers/thumbnail.sh
set -eu

IFS= read -r job

# Check the payload before doing anything: a bad one fails at once (65).
if ! printf '%s\n' "$job" | jq -e 'type == "object" and (.image | type) == "string"
    and (.image | length) > 0 and ((.width // 128) | type == "number"
    and . >= 1 and . <= 4096 and . == floor)' >/dev/null 2>&1; then
	echo "thumbnail.sh: want {\"image\": PATH, \"width\": 1 to 4096}, got: $job" >&2
	exit 65
fi
image=$(printf '%s\n' "$job" | jq -r .image)
width=$(printf '%s\n' "$job" | jq -r '.width // 128')

# stderr: for the worker's log, prefixed by the job id there
echo "thumbnail.sh: attempt $AQ_ATTEMPT of $AQ_MAX_ATTEMPTS: ${width}px of $image" >&2

# progress events: one JSON line each, built by jq so any name is safe
jq -nc --arg image "$image" '{step: "decode", image: $image, progress: 0.5}'
sleep 0.1
name=$(basename -- "$image")
thumb="thumbs/${name%.*}-$width.jpg"
jq -nc --arg thumb "$thumb" '{step: "resize", thumbnail: $thumb, progress: 1}'

# the result: the last line
jq -nc --arg image "$image" --arg thumb "$thumb" --argjson width "$width" \
    --arg job "$AQ_JOB_ID" '{image: $image, thumbnail: $thumb, width: $width, job: $job}'
