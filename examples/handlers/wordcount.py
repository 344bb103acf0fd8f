#!/usr/bin/env python3
# wordcount.py: an aq handler in Python 3. It shows the handler protocol of
# aq-worker(1) from a program: the payload is json.load()ed from stdin;
# progress events are printed one JSON line each, flushed at once so that
# they are recorded as they happen; the result is the last line; a bad
# payload exits 65 (failed at once, no retry); a transient error, here a
# file that is not there (yet), exits 75, so the job is retried later with
# backoff while attempts remain.
#
# The job is {"text": "..."} or {"path": "/some/file.txt"}. Run it with:
#
#   aq-enqueue -q words '{"text":"the cat saw the other cat"}'
#   aq-worker -q words -c 4 -- examples/handlers/wordcount.py
import collections
import json
import os
import sys

EX_DATAERR = 65   # this job can never succeed: do not retry
EX_TEMPFAIL = 75  # try again later


def event(**fields):
    print(json.dumps(fields), flush=True)


def fail(code, message):
    # stderr: the worker's log, the job's events, and the job's error
    print(f"wordcount.py: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def main():
    try:
        job = json.load(sys.stdin)
    except ValueError as e:
        fail(EX_DATAERR, f"the payload is not JSON: {e}")
    if not isinstance(job, dict):
        fail(EX_DATAERR, f"want an object with \"text\" or \"path\", got {json.dumps(job)}")
    if isinstance(job.get("text"), str):
        lines = job["text"].splitlines()
    elif isinstance(job.get("path"), str):
        try:
            with open(job["path"], encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            attempt = os.environ.get("AQ_ATTEMPT", "?")
            tries = os.environ.get("AQ_MAX_ATTEMPTS", "?")
            fail(EX_TEMPFAIL, f"{job['path']}: not there yet (attempt {attempt} of {tries})")
        except (UnicodeDecodeError, IsADirectoryError) as e:
            fail(EX_DATAERR, f"{job['path']}: not a UTF-8 text file: {e}")
        except OSError as e:
            fail(EX_TEMPFAIL, f"{job['path']}: {e.strerror}")
    else:
        fail(EX_DATAERR, f"want an object with \"text\" or \"path\", got {json.dumps(job)}")

    counts = collections.Counter()
    words = chars = 0
    for n, line in enumerate(lines, 1):
        found = line.lower().split()
        counts.update(w.strip(".,;:!?\"'()") for w in found)
        words += len(found)
        chars += len(line)
        if n % 1000 == 0:
            event(progress={"lines": n, "of": len(lines)})
    event(progress={"lines": len(lines), "of": len(lines)})
    counts.pop("", None)
    print(json.dumps({"lines": len(lines), "words": words, "chars": chars,
                      "top": counts.most_common(3)}))


if __name__ == "__main__":
    main()
