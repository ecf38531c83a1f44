#!/usr/bin/env bash
# Memory pressure (issue 4: monitor and pressure, memory reports), with real
# memory: a page that uses far more than its estimate takes the server to
# critical; running tasks record memory_warning, a memory report is written,
# and with nothing idle left to free new submissions get 503 with Retry-After
# until the level has been back below critical for the cooldown, while the
# accepted work goes on. Under warning, low priorities wait. Reports are also
# written on demand and the last 20 are kept.
source "$(dirname "$0")/lib.sh"

skip_if_sanitized

cat >"$TMP/ocrpool.yaml" <<'YAML'
devices:
  cpu:
    budget: 300MB
    warning: 75%
    critical: 90%
pressure:
  cooldown: 1s
  defer_below: 5
models:
  - name: hog          # the null engine, told below to touch far more than its estimate
    engine: null
    languages: hog
YAML
memory() { curl -s "$BASE/v1/memory" -o "$TMP/memory.json"; }
# until_memory SECONDS EXPR: polls /v1/memory until the Python EXPR on d (the cpu device) holds.
until_memory() {
  for _ in $(seq 1 $(($1 * 20))); do
    memory
    python3 -c "
import json, sys
d = json.load(open('$TMP/memory.json'))['devices'][0]
sys.exit(0 if $2 else 1)" && return 0
    sleep 0.05
  done
  return 1
}

# ---- critical: one page touching 290 MB (its estimate is about 1 MB) for 8 s
export OCRPOOL_NULL_OPTS=alloc_mb=290,sleep_ms=8000
start_server "$TMP/var" --workers 2 --config "$TMP/ocrpool.yaml" || { done_testing; exit 1; }
hog=$(submit "$DATA/linn.pdf" "model=hog&dpi=30&format=json")
check "the hog takes memory to critical" until_memory 10 "d['level'] == 'critical'"
check "... and, nothing idle being left to free, submissions are refused" until_memory 3 "d['refusing_submissions']"
curl -s -D "$TMP/h" -o "$TMP/p.json" -X POST --data-binary "@$DATA/phototest.tif" "$BASE/v1/tasks?engine=null"
check "a submission now gets 503 with Retry-After and a problem body" python3 -c "
import json
h = open('$TMP/h').read().lower()
assert h.startswith('http/1.1 503') and 'retry-after: ' in h and 'application/problem+json' in h, h
p = json.load(open('$TMP/p.json'))
assert p['status'] == 503 and 'memory is critical' in p['detail'], p"
check "the accepted task goes on and succeeds" test "$(wait_task "$hog" 30)" = succeeded
check "after the cooldown below critical, submissions are accepted again" until_memory 5 \
  "d['level'] == 'ok' and not d['refusing_submissions'] and d['criticals'] == 1"
id=$(submit "$DATA/phototest.tif" "engine=null")
check "... and a new task runs" test "$(wait_task "$id" 30)" = succeeded
curl -s "$BASE/v1/tasks/$hog/events" -o "$TMP/ev.json"
check "the running task recorded a memory_warning at critical" python3 -c "
import json
ev = [e['details'] for e in json.load(open('$TMP/ev.json'))['events'] if e['type'] == 'memory_warning']
crit = [d for d in ev if d['level'] == 'critical']  # a warning may come first, sampled on the way up
assert crit and crit[0]['used_bytes'] > crit[0]['budget_bytes'] * 0.9, ev"
curl -s "$BASE/v1/memory/reports" -o "$TMP/reports.json"
name=$(python3 -c "import json; print(json.load(open('$TMP/reports.json'))['reports'][0]['name'])")
curl -s "$BASE/v1/memory/reports/$name" -o "$TMP/report.json"
check "entering critical wrote a memory report with the page in flight and the samples" python3 -c "
import json
r = json.load(open('$TMP/report.json'))
assert r['reason'] == 'critical', r['reason']
assert r['memory']['devices'][0]['budget_bytes'] == 300 << 20, r['memory']
p = r['scheduler']['pages_in_flight']
assert len(p) == 1 and p[0]['worker_used_bytes'] > 250 << 20, p
s = r['scheduler']['samples']
assert len(s) >= 3 and max(x[1] for x in s) > 270 << 20, s[-3:]
assert any(m['name'] == 'hog' for m in r['models']['models'])"
check "the report is a file in the data directory" test -s "$TMP/var/reports/$name"
check "an unknown report is 404" test "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/v1/memory/reports/memory-nope.json")" = 404
check "a name outside the reports is 404" test "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/v1/memory/reports/..%2Focrpool.db")" = 404
# The service writes at most one report per 200 ms turn: each request waits
# until the log says its report was written.
requested_written() { [ "$(grep -c 'memory report (requested) written' "$TMP/server.log")" -ge "$1" ]; }
for n in $(seq 1 21); do
  curl -s -o /dev/null -X POST "$BASE/v1/memory/report"
  wait_for 10 requested_written "$n"
done
check "reports on demand: the last 20 are kept" test "$(ls "$TMP/var/reports" | wc -l)" = 20
check "... the newest is the one requested" python3 -c "
import json, urllib.request
r = json.load(urllib.request.urlopen('$BASE/v1/memory/reports'))['reports']
newest = json.load(urllib.request.urlopen('$BASE/v1/memory/reports/' + r[0]['name']))
assert newest['reason'] == 'requested' and r[0]['name'] > r[-1]['name'], (newest['reason'], r[0], r[-1])"
check "the critical episode is logged" grep -q "memory: critical: .* in use of the 300 MB budget" "$TMP/server.log"
stop_server

# ---- warning: a page touching 240 MB; a priority-1 task waits, a priority-5 one does not
export OCRPOOL_NULL_OPTS=alloc_mb=240,sleep_ms=8000 # long enough to submit under warning on a loaded machine
start_server "$TMP/var2" --workers 2 --config "$TMP/ocrpool.yaml" || { done_testing; exit 1; }
hog=$(submit "$DATA/linn.pdf" "model=hog&dpi=30&format=json")
check "the hog takes memory to warning" until_memory 10 "d['level'] == 'warning'"
low=$(submit "$DATA/phototest.tif" "priority=1&lang=eng")
normal=$(submit "$DATA/phototest.tif" "priority=5&lang=eng")
check "the low-priority task waits while memory is under pressure (counted once)" until_memory 6 "d['deferred_tasks'] == 1"
check "the hog succeeds" test "$(wait_task "$hog" 30)" = succeeded
check "then the low-priority task runs and succeeds" test "$(wait_task "$low" 60)" = succeeded
check "... and so does the other" test "$(wait_task "$normal" 60)" = succeeded
check "the wait is logged" grep -q "task=\"[0-9a-f]*\" .*task [0-9a-f]* (priority 1) waits while memory is under pressure" "$TMP/server.log"
stop_server
done_testing
