# sum.jq: an aq handler written in jq. It shows that any filter is a
# handler: jq reads the job's payload from stdin, each value it prints is an
# event of the job, and the last one is the job's result; halt_error(65)
# rejects a bad payload for good (no retries), with its message on stderr,
# which ends up in the job's error.
#
#   {"a": 1, "b": 2}          -> result {"sum":3}
#   {"numbers": [1, 2, 3]}    -> events {"partial":1} {"partial":3} {"partial":6},
#                                then the result {"sum":6}
#
# Run it with -c, so that each value is one line:
#
#   aq-enqueue -q sums '{"a":1,"b":2}' '{"numbers":[1,2,3]}'
#   aq-worker -q sums -- jq -c -f examples/handlers/sum.jq

def reject:
  "sum.jq: want {\"a\": number, \"b\": number} or {\"numbers\": [number, ...]}, got \(tojson)\n"
  | halt_error(65);

if type != "object" then reject
elif has("numbers") then
  if (.numbers | type) == "array" and all(.numbers[]; type == "number") then
    (foreach .numbers[] as $n (0; . + $n; {partial: .})),
    {sum: (.numbers | add // 0)}
  else reject end
elif (.a | type) == "number" and (.b | type) == "number" then
  {sum: (.a + .b)}
else reject end
