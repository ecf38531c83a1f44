#!/usr/bin/env bash
# Issue 17, item 4: under a steady load, workers killed from outside again and
# again and the server itself killed -9 and started again twice on the same
# data directory: every acknowledged task ends; a failed task's reason is one
# of the vocabulary docs/api.md documents, never internal, and it is its first
# failed page's reason as that page's page_failed event says; no page is
# recorded twice (one page_done or page_failed a page, however many runs).
# Every 8-page document's page 2 kills its worker on every run (the null
# engine's crash_page, a page that is the fault), so some tasks must fail, as
# worker_crashed, and their failed page stays in a running task while its 6
# later pages run, across the restarts; single-page images must succeed
# unless the outside kills happen to take one page three times
# (worker_crashed too).
source "$(dirname "$0")/lib.sh"

export OCRPOOL_NULL_OPTS=sleep_ms=200,crash_page=2
qpdf --empty --pages "$DATA/linn.pdf" "$DATA/c02-22.pdf" "$DATA/linn.pdf" "$DATA/c02-22.pdf" \
  "$DATA/linn.pdf" "$DATA/c02-22.pdf" "$DATA/linn.pdf" "$DATA/c02-22.pdf" -- "$TMP/eight.pdf"
IMAGES=(phototest.tif linn.png 8071_093.3B.tif crom.png)
ids=()
submitted=0
# submit_some N: N more tasks, 8-page PDFs and images in turn; their ids in ids.
submit_some() {
  local i id f
  for i in $(seq 1 "$1"); do
    submitted=$((submitted + 1))
    if [ $((submitted % 2)) -eq 0 ]; then f=$TMP/eight.pdf; else f=$DATA/${IMAGES[$((submitted / 2 % 4))]}; fi
    id=$(submit "$f" "engine=null&format=txt,json")
    [ -z "$id" ] || ids+=("$id")
  done
}
# unfinished: how many of ids are queued or running.
unfinished() {
  python3 - "$BASE" "${ids[@]}" <<'EOF'
import json, sys, urllib.request
n = 0
for id in sys.argv[2:]:
    t = json.load(urllib.request.urlopen(sys.argv[1] + '/v1/tasks/' + id))
    n += t['status'] in ('queued', 'running')
print(n)
EOF
}
# busy_pid: the pid of a worker running a job now, or nothing.
busy_pid() {
  curl -s "$BASE/v1/memory" | python3 -c '
import json, sys
busy = [w["pid"] for w in json.load(sys.stdin)["workers"] if w["state"] == "busy" and w["pid"] > 0]
print(busy[0] if busy else "")' 2>/dev/null
}
pid_gone() { ! kill -0 "$1" 2>/dev/null; }

start_server "$TMP/var" --workers 2 || { done_testing; exit 1; }
submit_some 12
check "12 tasks acknowledged" test "${#ids[@]}" -eq 12 || { stop_server; done_testing; exit 1; }

worker_kills=0
server_kills=0
for round in $(seq 1 15); do
  # Keep the load steady: more work whenever fewer than 6 tasks are left.
  [ "$(unfinished)" -ge 6 ] || submit_some 4
  victim=""
  wait_for 60 eval 'victim=$(busy_pid); [ -n "$victim" ]'
  if [ -n "$victim" ] && kill -KILL "$victim" 2>/dev/null; then
    worker_kills=$((worker_kills + 1))
    wait_for 30 pid_gone "$victim"
  fi
  if [ "$round" -eq 5 ] || [ "$round" -eq 10 ]; then
    workers=$(curl -s "$BASE/v1/memory" | python3 -c 'import json,sys; print(" ".join(str(w["pid"]) for w in json.load(sys.stdin)["workers"] if w["pid"]))')
    kill -KILL "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null
    server_kills=$((server_kills + 1))
    for p in $workers; do wait_for 30 pid_gone "$p"; done
    start_server "$TMP/var" --workers 2 || { done_testing; exit 1; }
  fi
done
check "15 rounds: $worker_kills workers killed from outside (at least 10)" test "$worker_kills" -ge 10
check "the server was killed -9 and started again twice" test "$server_kills" -eq 2
check "$submitted submissions, each acknowledged" test "${#ids[@]}" -eq "$submitted"

# Every acknowledged task ends.
ended=0
for id in "${ids[@]}"; do
  case $(wait_task "$id" 300) in succeeded | failed) ended=$((ended + 1)) ;; esac
done
check "every acknowledged task ended ($ended of ${#ids[@]})" test "$ended" -eq "${#ids[@]}"

# The reasons and the records, task by task, from the API.
check "failed tasks: a documented reason, not internal, their first failed page's; no page recorded twice" \
  python3 - "$BASE" "$(pwd)/docs/api.md" "${ids[@]}" <<'EOF'
import collections, json, re, sys, urllib.request
base, api_md, ids = sys.argv[1], sys.argv[2], sys.argv[3:]
# The vocabulary as docs/api.md lists it, from "`failure_reason` one of" to "`error` is".
text = open(api_md).read()
span = text[text.index('`failure_reason` one of'):text.index('`error` is')]
vocabulary = set(re.findall(r'`([a-z_]+)`', span)) - {'failure_reason'}
assert {'worker_crashed', 'out_of_memory', 'timeout'} <= vocabulary, vocabulary
get = lambda path: json.load(urllib.request.urlopen(base + path))
failed = succeeded = 0
problems = []
for id in ids:
    t = get('/v1/tasks/' + id)
    ev = get('/v1/tasks/' + id + '/events')['events']
    ends = collections.Counter(e['details']['page'] for e in ev if e['type'] in ('page_done', 'page_failed'))
    twice = {p: n for p, n in ends.items() if n > 1}
    if twice:
        problems.append('%s: pages recorded more than once: %s' % (id, twice))
    if ends and sorted(ends) != list(range(1, t['pages_total'] + 1)):
        problems.append('%s: pages ended %s of %d' % (id, sorted(ends), t['pages_total']))
    if t['status'] == 'succeeded':
        succeeded += 1
        pages = [p['page'] for p in get('/v1/tasks/%s/result?format=json' % id)['pages']]
        if pages != list(range(1, t['pages_total'] + 1)):
            problems.append('%s: result pages %s' % (id, pages))
        continue
    failed += 1
    reason = t['failure_reason']
    if reason not in vocabulary or reason == 'internal':
        problems.append('%s: failure_reason %r (%s)' % (id, reason, t['error']))
    page_fails = sorted((e['details']['page'], e['details']['reason']) for e in ev if e['type'] == 'page_failed')
    if page_fails and page_fails[0][1] != reason:
        problems.append('%s: failure_reason %r, first failed page %s' % (id, reason, page_fails[0]))
    if not page_fails and reason != 'worker_crashed':  # a document whose reading was killed 3 times
        problems.append('%s: failed %r with no failed page' % (id, reason))
print(succeeded, 'succeeded,', failed, 'failed')
assert failed > 0, 'no task failed: the crashing page 2 did not take'
assert succeeded > 0, 'no task succeeded'
assert not problems, '\n'.join(problems)
EOF
curl -s "$BASE/metrics" -o "$TMP/metrics"
check "metrics: no page failed as internal" python3 -c "
import re
text = open('$TMP/metrics').read()
n = re.findall(r'^ocrpool_pages_failed_total\{reason=\"internal\"\} (\d+)', text, re.M)
assert n in ([], ['0']), n"
stop_server
check "no worker is left running" test -z "$(pgrep -f "ocrpool worker" -P "$SERVER_PID" 2>/dev/null)"
done_testing
