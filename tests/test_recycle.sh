#!/usr/bin/env bash
# Model policies from a YAML configuration (issue 4, acceptance 3, 4, 5, 7
# and 8), with real worker processes and real memory: a leaking engine's
# worker is recycled by max_memory_growth, idle workers exit, per-task
# isolation gives every task a fresh worker, max_concurrent holds, and a page
# past its model's memory limit is retried with a smaller batch and then fails
# with out_of_memory while the server goes on.
source "$(dirname "$0")/lib.sh"

cat >"$TMP/ocrpool.yaml" <<'YAML'
devices:
  cpu:
    budget: 2GB
models:
  - name: leaky            # the null engine told to leak 5 MB a page (OCRPOOL_NULL_OPTS below)
    engine: null
    languages: leaky
    recycle:
      max_memory_growth: 50MB
  - name: isolated
    engine: null
    languages: isolated
    recycle:
      isolate: per_task
  - name: single
    engine: null
    languages: single
    max_concurrent: 1
  - name: greedy           # allocates 300 MB a page under a 200 MB cap
    engine: null
    languages: greedy
    memory_limit: 200MB
    batch: 4
  - name: eng
    engine: tesseract
    languages: eng
    keep_alive: 2s
    recycle:
      idle_exit: 2s
YAML

# A bad configuration stops start-up with the file, the line and the reason.
printf 'models:\n  - name: x\n    engine: null\n    keep_alive: soon\n' >"$TMP/bad.yaml"
"$OCRPOOL" serve --config "$TMP/bad.yaml" --data-dir "$TMP/bad" --listen 127.0.0.1:0 2>"$TMP/bad.err"
rc=$?
check "a bad duration stops start-up (exit 2)" test "$rc" -eq 2
check "... naming file:line and the reason" grep -q "bad.yaml:4: \"keep_alive\": expected a duration" "$TMP/bad.err"
printf 'models:\n  - name: x\n    engine: null\n    recycel:\n      max_tasks: 3\n' >"$TMP/bad2.yaml"
"$OCRPOOL" serve --config "$TMP/bad2.yaml" --data-dir "$TMP/bad" --listen 127.0.0.1:0 2>"$TMP/bad2.err"
check "a misspelled key stops start-up with file:line" grep -q 'bad2.yaml:5: unknown key "recycel"' "$TMP/bad2.err"

# The leaking engine's behaviour is read by every null model; only the leaky
# one is submitted with it... so the options differ per server start.
events() { curl -s "$BASE/v1/tasks/$1/events" -o "$TMP/ev.json"; }

# ---- 4. leak: 5 MB a page, max_memory_growth 50 MB, 500 pages on one worker
export OCRPOOL_NULL_OPTS=leak_mb=5
qpdf --empty --pages $(for _ in $(seq 1 500); do printf '%s ' "$DATA/linn.pdf"; done) -- "$TMP/500.pdf"
start_server "$TMP/var" --workers 1 --config "$TMP/ocrpool.yaml" || { done_testing; exit 1; }
id=$(submit "$TMP/500.pdf" "model=leaky&dpi=30&format=json")
check "500 leaking pages: the task succeeds" test "$(wait_task "$id" 400)" = succeeded
events "$id"
check "... the worker was recycled about every 10 pages, at its growth cap, nothing failed" python3 -c "
import json
ev = json.load(open('$TMP/ev.json'))['events']
starts = [e['details'] for e in ev if e['type'] == 'page_started']
done = [e['details'] for e in ev if e['type'] == 'page_done']
assert len(done) == 500 and not any(e['type'] in ('page_failed', 'retried') for e in ev), len(done)
pids = []
for s in starts:
    if not pids or pids[-1][0] != s['pid']:
        pids.append([s['pid'], 0])
    pids[-1][1] += 1
runs = [n for _, n in pids]
assert len(set(p for p, _ in pids)) == len(pids), 'a recycled worker came back'
assert 35 <= len(runs) <= 60 and all(n <= 12 for n in runs), runs
peaks = [d['peak_memory_bytes'] for d in done]
assert max(peaks) - min(peaks) <= 60 * 2**20, (min(peaks), max(peaks))
print(len(runs), 'workers; pages per worker', sorted(set(runs)), 'peak spread', (max(peaks) - min(peaks)) >> 20, 'MB')"
check "the recycling is logged with its reason" grep -q "recycling worker 0 (pid [0-9]*): it grew past max_memory_growth" "$TMP/server.log"
stop_server
unset OCRPOOL_NULL_OPTS

# ---- 8. isolate: per_task: a fresh worker for every task, gone after it
export OCRPOOL_NULL_OPTS=sleep_ms=50
qpdf --empty --pages "$DATA/linn.pdf" "$DATA/linn.pdf" "$DATA/linn.pdf" -- "$TMP/three.pdf"
start_server "$TMP/var2" --workers 2 --config "$TMP/ocrpool.yaml" || { done_testing; exit 1; }
ids=()
for _ in 1 2 3 4 5; do ids+=("$(submit "$TMP/three.pdf" "model=isolated&dpi=30")"); done
for id in "${ids[@]}"; do wait_task "$id" 120 >/dev/null; done
check "isolate: every task ran on its own fresh worker" python3 -c "
import json, urllib.request
seen = {}
for id in '${ids[*]}'.split():
    ev = json.load(urllib.request.urlopen('$BASE/v1/tasks/' + id + '/events'))['events']
    assert ev[-1]['type'] == 'succeeded', ev[-1]
    pids = {e['details']['pid'] for e in ev if e['type'] == 'page_started'}
    assert len(pids) == 1, pids
    pid = pids.pop()
    assert pid not in seen, (pid, 'served two tasks')
    seen[pid] = id"
gone=no
for _ in $(seq 1 100); do
  if [ -z "$(pgrep -P "$SERVER_PID")" ]; then gone=yes; break; fi
  sleep 0.1
done
check "isolate: no worker remains after the tasks" test "$gone" = yes
stop_server

# ---- 7. max_concurrent: 1: never two pages of that model at once, with 4 workers
export OCRPOOL_NULL_OPTS=sleep_ms=200
start_server "$TMP/var3" --workers 4 --config "$TMP/ocrpool.yaml" || { done_testing; exit 1; }
ids=()
for _ in 1 2 3; do ids+=("$(submit "$TMP/three.pdf" "model=single&dpi=30")"); done
for id in "${ids[@]}"; do wait_task "$id" 120 >/dev/null; done
check "max_concurrent 1: no two pages of the model overlapped" python3 -c "
import json, urllib.request
spans = []
for id in '${ids[*]}'.split():
    ev = json.load(urllib.request.urlopen('$BASE/v1/tasks/' + id + '/events'))['events']
    assert ev[-1]['type'] == 'succeeded', ev[-1]
    start = {}
    for e in ev:
        if e['type'] == 'page_started':
            start[e['details']['page']] = e['time']
        elif e['type'] == 'page_done':
            spans.append((start[e['details']['page']], e['time']))
spans.sort()
assert len(spans) == 9, spans
assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans"
stop_server

# ---- 5. OOM: 300 MB pages under a 200 MB cap, batch 4: 4, 2, 1, then out_of_memory
if [ -n "${OCRPOOL_SANITIZED:-}" ]; then
  echo "skipped the OOM part: AddressSanitizer's shadow memory cannot live under RLIMIT_DATA"
else
  export OCRPOOL_NULL_OPTS=alloc_mb=300
  start_server "$TMP/var4" --workers 2 --config "$TMP/ocrpool.yaml" || { done_testing; exit 1; }
  id=$(submit "$DATA/phototest.tif" "model=greedy")
  other=$(submit "$DATA/phototest.tif" "engine=null")
  check "OOM: the greedy task fails" test "$(wait_task "$id" 120)" = failed
  curl -s "$BASE/v1/tasks/$id" -o "$TMP/t.json"
  events "$id"
  check "... with out_of_memory, after batches 4, 2 and 1" python3 -c "
import json
t = json.load(open('$TMP/t.json'))
assert t['failure_reason'] == 'out_of_memory', t
assert 'ran out of memory 3 times' in t['error'] and 'limit 200 MB' in t['error'], t['error']
ev = json.load(open('$TMP/ev.json'))['events']
batches = [e['details']['batch'] for e in ev if e['type'] == 'page_started']
assert batches == [4, 2, 1], batches
assert sum(1 for e in ev if e['type'] == 'retried') == 2, ev"
  check "... the other task is unaffected" test "$(wait_task "$other" 60)" = succeeded
  check "... and the server still serves" curl -fs -o /dev/null "$BASE/healthz"
  stop_server
fi
unset OCRPOOL_NULL_OPTS

# ---- 3. idle: keep_alive 2 s, idle_exit 2 s: after the last task the workers
# exit and ocrpool's total PSS is back under 30 MB within 6 s.
start_server "$TMP/var5" --workers 2 --config "$TMP/ocrpool.yaml" || { done_testing; exit 1; }
a=$(submit "$DATA/linn.png" "model=eng")
b=$(submit "$DATA/phototest.tif" "model=eng")
wait_task "$a" 120 >/dev/null
wait_task "$b" 120 >/dev/null
check "idle: the tesseract tasks succeeded" test "$(wait_task "$b" 1)" = succeeded
total_pss() { # the server and its children, in kB
  local t=0 v
  for p in "$SERVER_PID" $(pgrep -P "$SERVER_PID"); do
    v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
back=no
for _ in $(seq 1 60); do
  sleep 0.1
  if [ -z "$(pgrep -P "$SERVER_PID")" ] && [ "$(total_pss)" -lt $((30 * 1024)) ]; then back=yes; break; fi
done
check "idle: workers gone and total PSS under 30 MB within 6 s ($(total_pss) kB now)" test "$back" = yes
check "idle: the exits are logged as idle_exit" grep -q "it was idle past idle_exit" "$TMP/server.log"
stop_server
done_testing
